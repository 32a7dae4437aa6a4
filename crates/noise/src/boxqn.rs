//! A box-constrained quasi-Newton minimiser: projected L-BFGS.
//!
//! Keskar et al. (2017), "On Large-Batch Training for Deep Learning: Generalization
//! Gap and Sharp Minima", ICLR, maximise the loss over a box with L-BFGS-B
//! (Byrd, Lu, Nocedal and Zhu 1995, "A Limited Memory Algorithm for Bound
//! Constrained Optimization", SIAM J. Sci. Comput.). No maintained pure-Rust
//! L-BFGS-B crate exists (`argmin`'s L-BFGS has no bounds; the `lbfgsb` crate
//! wraps C code), so this is a projected L-BFGS in the spirit of Bertsekas
//! (1982) and Kim, Sra and Dhillon (2010):
//!
//! 1. variables at a bound whose gradient pushes outward are *active* and held
//!    fixed; the others are *free*;
//! 2. the direction is the L-BFGS two-loop recursion (Nocedal 1980) on the free
//!    variables, falling back to steepest descent if it is not a descent
//!    direction;
//! 3. a backtracking Armijo search along the projected path
//!    `x(t) = P(x + t d)` keeps every iterate in the box.
//!
//! It stops when the projected gradient `|P(x − ∇f) − x|_∞ ≤ pgtol`, when the
//! relative decrease of `f` falls below `ftol` (SciPy's `factr·eps`), or after
//! `max_iters` iterations. A test compares it with SciPy's L-BFGS-B.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Settings of [`minimize_box`].
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct BoxConfig {
    /// At most this many iterations (SciPy's `maxiter`). Default 100.
    pub max_iters: usize,
    /// Correction pairs kept (SciPy's `m`). Default 10.
    pub memory: usize,
    /// Stop when `|P(x − ∇f) − x|_∞ ≤ pgtol` (SciPy's `pgtol`). Default 1e-5.
    pub pgtol: f64,
    /// Stop when `(f_k − f_{k+1}) / max(|f_k|, |f_{k+1}|, 1) ≤ ftol` (SciPy's
    /// `factr·eps`). Default 2.2e-9.
    pub ftol: f64,
    /// At most this many halvings of the step per line search. Default 30.
    pub max_backtracks: usize,
}

impl Default for BoxConfig {
    fn default() -> Self {
        Self {
            max_iters: 100,
            memory: 10,
            pgtol: 1e-5,
            ftol: 1e7 * f64::EPSILON,
            max_backtracks: 30,
        }
    }
}

/// The outcome of [`minimize_box`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BoxResult {
    /// The best point found (always inside the box).
    pub x: Vec<f64>,
    /// `f(x)`.
    pub f: f64,
    /// Iterations done.
    pub iterations: usize,
    /// Evaluations of `f` (and its gradient) done.
    pub evaluations: usize,
    /// Whether a tolerance was met (false: the iteration limit was reached or
    /// no step decreased `f`).
    pub converged: bool,
}

fn project(x: &mut [f64], lower: &[f64], upper: &[f64]) {
    for ((xi, lo), hi) in x.iter_mut().zip(lower).zip(upper) {
        *xi = xi.clamp(*lo, *hi);
    }
}

/// Minimises `f` over the box `lower ≤ x ≤ upper` from `x0` (projected into
/// the box), where `f(x)` returns the value and the gradient.
///
/// ```
/// use bigbatch_noise::{BoxConfig, minimize_box};
/// # fn main() -> Result<(), bigbatch_noise::Error> {
/// // min (x−2)² + (y+1)² over [0, 1]²: the corner (1, 0).
/// let f = |x: &[f64]| Ok(((x[0] - 2.).powi(2) + (x[1] + 1.).powi(2), vec![2. * (x[0] - 2.), 2. * (x[1] + 1.)]));
/// let r = minimize_box(f, &[0.5, 0.5], &[0., 0.], &[1., 1.], &BoxConfig::default())?;
/// assert_eq!(r.x, [1., 0.]);
/// assert!(r.converged);
/// # Ok(()) }
/// ```
///
/// # Errors
/// [`Error::LengthMismatch`] if the lengths of `x0`, the bounds or a returned
/// gradient differ; [`Error::InvalidConfig`] for `lower > upper` or
/// `memory == 0`; [`Error::NonFinite`] if `f` is not finite at the start;
/// errors from `f`.
pub fn minimize_box(
    mut f: impl FnMut(&[f64]) -> Result<(f64, Vec<f64>)>,
    x0: &[f64],
    lower: &[f64],
    upper: &[f64],
    config: &BoxConfig,
) -> Result<BoxResult> {
    let n = x0.len();
    for (what, len) in [("lower bounds", lower.len()), ("upper bounds", upper.len())] {
        if len != n {
            return Err(Error::LengthMismatch {
                what,
                expected: n,
                found: len,
            });
        }
    }
    if let Some((lo, _)) = lower
        .iter()
        .zip(upper)
        .find(|(lo, hi)| lo.partial_cmp(hi).is_none_or(|o| o.is_gt()))
    {
        return Err(Error::InvalidConfig {
            name: "lower",
            value: *lo,
            reason: "every lower bound must be at most its upper bound",
        });
    }
    if config.memory == 0 {
        return Err(Error::InvalidConfig {
            name: "memory",
            value: 0.,
            reason: "must be at least 1",
        });
    }
    let mut eval = |x: &[f64]| -> Result<(f64, Vec<f64>)> {
        let (fx, g) = f(x)?;
        if g.len() != n {
            return Err(Error::LengthMismatch {
                what: "gradient",
                expected: n,
                found: g.len(),
            });
        }
        Ok((fx, g))
    };

    let mut x = x0.to_vec();
    project(&mut x, lower, upper);
    let (mut fx, mut g) = eval(&x)?;
    if !fx.is_finite() || g.iter().any(|v| !v.is_finite()) {
        return Err(Error::NonFinite {
            what: "objective at the starting point",
        });
    }
    let mut evaluations = 1;
    let mut memory: VecDeque<(Vec<f64>, Vec<f64>)> = VecDeque::with_capacity(config.memory);
    let mut converged = false;
    let mut iterations = 0;

    while iterations < config.max_iters {
        // Projected-gradient optimality test.
        let pg = (0..n)
            .map(|i| ((x[i] - g[i]).clamp(lower[i], upper[i]) - x[i]).abs())
            .fold(0., f64::max);
        if pg <= config.pgtol {
            converged = true;
            break;
        }
        let free: Vec<bool> = (0..n)
            .map(|i| !((x[i] <= lower[i] && g[i] > 0.) || (x[i] >= upper[i] && g[i] < 0.)))
            .collect();
        let mut d = two_loop(&g, &free, &memory);
        let mut slope: f64 = d.iter().zip(&g).map(|(a, b)| a * b).sum();
        if slope.is_nan() || slope >= 0. {
            memory.clear();
            d = (0..n).map(|i| if free[i] { -g[i] } else { 0. }).collect();
            slope = -d.iter().map(|v| v * v).sum::<f64>();
        }
        if slope == 0. {
            converged = true;
            break;
        }
        let d_norm = d.iter().map(|v| v * v).sum::<f64>().sqrt();
        let mut t = if memory.is_empty() {
            (1. / d_norm).min(1.)
        } else {
            1.
        };

        let mut accepted = None;
        for _ in 0..=config.max_backtracks {
            let mut trial: Vec<f64> = x.iter().zip(&d).map(|(xi, di)| xi + t * di).collect();
            project(&mut trial, lower, upper);
            let decrease: f64 = trial
                .iter()
                .zip(&x)
                .zip(&g)
                .map(|((a, b), gi)| (a - b) * gi)
                .sum();
            let (ft, gt) = eval(&trial)?;
            evaluations += 1;
            if ft.is_finite() && ft <= fx + 1e-4 * decrease.min(0.) && decrease < 0. {
                accepted = Some((trial, ft, gt));
                break;
            }
            t *= 0.5;
        }
        iterations += 1;
        let Some((x_new, f_new, g_new)) = accepted else {
            if memory.is_empty() {
                break;
            }
            // Retry from steepest descent with a fresh memory.
            memory.clear();
            continue;
        };
        let s: Vec<f64> = x_new.iter().zip(&x).map(|(a, b)| a - b).collect();
        let y: Vec<f64> = g_new.iter().zip(&g).map(|(a, b)| a - b).collect();
        let sy: f64 = s.iter().zip(&y).map(|(a, b)| a * b).sum();
        let yy: f64 = y.iter().map(|v| v * v).sum();
        if sy > f64::EPSILON * yy {
            if memory.len() == config.memory {
                memory.pop_front();
            }
            memory.push_back((s, y));
        }
        let rel = (fx - f_new) / fx.abs().max(f_new.abs()).max(1.);
        (x, fx, g) = (x_new, f_new, g_new);
        if rel <= config.ftol {
            converged = true;
            break;
        }
    }
    Ok(BoxResult {
        x,
        f: fx,
        iterations,
        evaluations,
        converged,
    })
}

/// `−H·g` on the free variables by the L-BFGS two-loop recursion, with inner
/// products restricted to the free variables and pairs without positive
/// curvature there skipped; zero on the active ones.
fn two_loop(g: &[f64], free: &[bool], memory: &VecDeque<(Vec<f64>, Vec<f64>)>) -> Vec<f64> {
    let dotf = |a: &[f64], b: &[f64]| -> f64 {
        a.iter()
            .zip(b)
            .zip(free)
            .filter(|(_, f)| **f)
            .map(|((x, y), _)| x * y)
            .sum()
    };
    let mut q: Vec<f64> = g
        .iter()
        .zip(free)
        .map(|(gi, f)| if *f { *gi } else { 0. })
        .collect();
    let pairs: Vec<(&Vec<f64>, &Vec<f64>, f64)> = memory
        .iter()
        .filter_map(|(s, y)| {
            let sy = dotf(s, y);
            (sy > 0.).then_some((s, y, 1. / sy))
        })
        .collect();
    let mut alphas = Vec::with_capacity(pairs.len());
    for (s, y, rho) in pairs.iter().rev() {
        let a = rho * dotf(s, &q);
        for i in 0..q.len() {
            if free[i] {
                q[i] -= a * y[i];
            }
        }
        alphas.push(a);
    }
    if let Some((s, y, _)) = pairs.last() {
        let gamma = dotf(s, y) / dotf(y, y);
        q.iter_mut().for_each(|v| *v *= gamma);
    }
    for ((s, y, rho), a) in pairs.iter().zip(alphas.iter().rev()) {
        let b = rho * dotf(y, &q);
        for i in 0..q.len() {
            if free[i] {
                q[i] += (a - b) * s[i];
            }
        }
    }
    q.iter().map(|v| -v).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The 4-D Rosenbrock function Σ 100(x_{i+1} − x_i²)² + (1 − x_i)².
    fn rosenbrock(x: &[f64]) -> Result<(f64, Vec<f64>)> {
        let n = x.len();
        let mut f = 0.;
        let mut g = vec![0.; n];
        for i in 0..n - 1 {
            let a = x[i + 1] - x[i] * x[i];
            let b = 1. - x[i];
            f += 100. * a * a + b * b;
            g[i] += -400. * x[i] * a - 2. * b;
            g[i + 1] += 200. * a;
        }
        Ok((f, g))
    }

    /// Golden values from SciPy 1.17.1's L-BFGS-B (script below, run with
    /// NumPy 2.4.6):
    ///
    /// ```python
    /// import numpy as np
    /// from scipy.optimize import minimize, rosen, rosen_der
    /// lo = np.array([-2.0, -2.0, 0.4, -2.0]); hi = np.array([0.9, 2.0, 2.0, 0.1])
    /// r = minimize(rosen, np.array([0.5, 1.0, 1.5, 0.0]), jac=rosen_der, method="L-BFGS-B",
    ///              bounds=list(zip(lo, hi)),
    ///              options=dict(maxiter=1000, ftol=1e-15, gtol=1e-12, maxcor=10))
    /// print(repr(r.fun), [float(v) for v in r.x])
    /// # 0.8953242971400553 [0.7979778003265228, 0.6355027313323679, 0.4, 0.1]
    /// ```
    ///
    /// Two bounds are active at the solution.
    #[test]
    fn matches_scipy_lbfgsb_on_bounded_rosenbrock() -> anyhow::Result<()> {
        let golden_f = 0.895_324_297_140_055_3;
        let golden_x = [0.797_977_800_326_522_8, 0.635_502_731_332_367_9, 0.4, 0.1];
        let cfg = BoxConfig {
            max_iters: 1000,
            pgtol: 1e-12,
            ftol: 1e-15,
            ..Default::default()
        };
        let lo = [-2., -2., 0.4, -2.];
        let hi = [0.9, 2., 2., 0.1];
        let r = minimize_box(rosenbrock, &[0.5, 1., 1.5, 0.], &lo, &hi, &cfg)?;
        assert!(
            (r.f - golden_f).abs() <= 1e-5 * golden_f.abs().max(1e-3),
            "{r:?}"
        );
        for (a, b) in r.x.iter().zip(golden_x) {
            assert!((a - b).abs() <= 1e-5 * b.abs().max(1.), "{r:?}");
        }
        Ok(())
    }

    #[test]
    fn unconstrained_rosenbrock_converges_to_the_minimum() -> anyhow::Result<()> {
        let big = [10.; 4];
        let cfg = BoxConfig {
            max_iters: 500,
            pgtol: 1e-10,
            ftol: 0.,
            ..Default::default()
        };
        let r = minimize_box(
            rosenbrock,
            &[-1.2, 1., -1.2, 1.],
            &big.map(|v| -v),
            &big,
            &cfg,
        )?;
        assert!(r.converged, "{r:?}");
        for v in &r.x {
            assert!((v - 1.).abs() < 1e-6, "{r:?}");
        }
        Ok(())
    }

    #[test]
    fn iterates_stay_in_the_box_and_the_limit_is_respected() -> anyhow::Result<()> {
        let lo = [-0.5, 0., 0.2, -1.];
        let hi = [0.5, 0.1, 0.7, 1.];
        let mut outside = false;
        let f = |x: &[f64]| {
            outside |= x.iter().zip(&lo).zip(&hi).any(|((v, l), h)| v < l || v > h);
            rosenbrock(x)
        };
        let cfg = BoxConfig {
            max_iters: 3,
            ..Default::default()
        };
        let r = minimize_box(f, &[3., 3., 3., 3.], &lo, &hi, &cfg)?;
        assert!(!outside);
        assert!(r.iterations <= 3);
        assert!(matches!(
            minimize_box(rosenbrock, &[0.; 4], &[0.; 3], &hi, &cfg),
            Err(Error::LengthMismatch {
                expected: 4,
                found: 3,
                ..
            })
        ));
        assert!(matches!(
            minimize_box(rosenbrock, &[0.; 4], &hi, &lo, &cfg),
            Err(Error::InvalidConfig { name: "lower", .. })
        ));
        Ok(())
    }
}
