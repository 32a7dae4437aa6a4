//! Sharpness of a minimum, after Keskar et al. (2017).
//!
//! Keskar, Mudigere, Nocedal, Smelyanskiy and Tang (2017), "On Large-Batch
//! Training for Deep Learning: Generalization Gap and Sharp Minima", ICLR, §2.2.1,
//! eq. 4: for a loss `f`, parameters `x ∈ ℝⁿ` and a matrix `A ∈ ℝ^{n×p}`,
//!
//! ```text
//! φ_{x,f}(ε, A) = 100 · (max_{y ∈ C_ε} f(x + Ay) − f(x)) / (1 + f(x)),
//! C_ε = { z ∈ ℝᵖ : −ε(|(A⁺x)_i| + 1) ≤ z_i ≤ ε(|(A⁺x)_i| + 1) },
//! ```
//!
//! in the full space (`A = I`) or in a random `p`-dimensional subspace. The
//! maximum is approximated, as in the paper, by a few iterations of a
//! box-constrained quasi-Newton method ([`minimize_box`] on `−f`) from `y = 0`.
//!
//! The random `A` has orthonormal columns (Gram–Schmidt, twice, of a seeded
//! Gaussian matrix: a uniformly random `p`-frame), so `A⁺ = Aᵀ` and the box is
//! measured in orthonormal coordinates. Storing `A` costs `8·n·p` bytes.

use bigbatch_optim::Tree;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};

use crate::boxqn::{BoxConfig, minimize_box};
use crate::flat::{flatten, unflatten};
use crate::{Error, ExampleSubset, GradientOracle, Result};

/// The space in which the loss is maximised.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Subspace {
    /// `A = I`: every parameter moves (seed-independent).
    Full,
    /// `A` has `dim` random orthonormal columns drawn from the seed
    /// (Keskar et al. use `p = 100`).
    Random {
        /// The subspace dimension `p` (at most the number of parameters).
        dim: usize,
    },
}

impl Subspace {
    /// The random subspace of Keskar et al. (2017): `p = 100`.
    pub const KESKAR: Subspace = Subspace::Random { dim: 100 };
}

/// Settings of [`sharpness`] and [`sharpness_of`].
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct SharpnessConfig {
    /// The box size `ε`. Default `1e-3` (Keskar et al. report `1e-3` and `5e-4`).
    pub epsilon: f64,
    /// Full space or a random subspace. Default [`Subspace::Full`].
    pub subspace: Subspace,
    /// Seed of the random subspace (ChaCha8). Default 0.
    pub seed: u64,
    /// Quasi-Newton iterations. Default 10, as in the paper.
    pub max_iters: usize,
    /// Quasi-Newton memory. Default 10.
    pub memory: usize,
    /// The training examples the loss is evaluated on by [`sharpness_of`]
    /// (ignored by [`sharpness`], whose closure chooses). Default
    /// [`ExampleSubset::All`].
    pub examples: ExampleSubset,
}

impl Default for SharpnessConfig {
    fn default() -> Self {
        Self {
            epsilon: 1e-3,
            subspace: Subspace::Full,
            seed: 0,
            max_iters: 10,
            memory: 10,
            examples: ExampleSubset::All,
        }
    }
}

/// The outcome of a sharpness measurement.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SharpnessResult {
    /// `φ = 100·(max f − f(x))/(1 + f(x))`.
    pub sharpness: f64,
    /// `f(x)`.
    pub loss: f64,
    /// The largest loss found in the box, `f(x + Ay*)`.
    pub max_loss: f64,
    /// The maximiser `y*` in subspace coordinates.
    pub y: Vec<f64>,
    /// Quasi-Newton iterations done.
    pub iterations: usize,
    /// Loss-and-gradient evaluations done (the first is at `x`).
    pub evaluations: usize,
}

/// Keskar sharpness of a loss given as `f(x) -> (value, gradient)` over flat
/// parameters, at `x`.
///
/// ```
/// use bigbatch_noise::{SharpnessConfig, sharpness};
/// # fn main() -> Result<(), bigbatch_noise::Error> {
/// // f(x) = x², at x = 1 with ε = 0.1: the box is |y| ≤ 0.2, max f = 1.44.
/// let f = |x: &[f64]| Ok((x[0] * x[0], vec![2. * x[0]]));
/// let cfg = SharpnessConfig { epsilon: 0.1, ..Default::default() };
/// let s = sharpness(f, &[1.], &cfg)?;
/// assert!((s.sharpness - 100. * 0.44 / 2.).abs() < 1e-9);
/// # Ok(()) }
/// ```
///
/// # Errors
/// [`Error::InvalidConfig`] for `ε ≤ 0`, no iteration, or a subspace of
/// dimension 0 or above `x.len()`; [`Error::LengthMismatch`] if a gradient has
/// the wrong length; [`Error::NonFinite`] if `f(x)` is not finite; errors from `f`.
pub fn sharpness(
    mut f: impl FnMut(&[f64]) -> Result<(f64, Vec<f64>)>,
    x: &[f64],
    config: &SharpnessConfig,
) -> Result<SharpnessResult> {
    validate(config, x.len())?;
    let n = x.len();
    let basis = match config.subspace {
        Subspace::Full => None,
        Subspace::Random { dim } => Some(random_orthonormal(n, dim, config.seed)),
    };
    // A⁺x and the box half-widths ε(|(A⁺x)_i| + 1).
    let a_pinv_x = match &basis {
        None => x.to_vec(),
        Some(cols) => cols.iter().map(|c| dot(c, x)).collect(),
    };
    let upper: Vec<f64> = a_pinv_x
        .iter()
        .map(|v| config.epsilon * (v.abs() + 1.))
        .collect();
    let lower: Vec<f64> = upper.iter().map(|v| -v).collect();
    let p = upper.len();

    let mut loss = None;
    let objective = |y: &[f64]| -> Result<(f64, Vec<f64>)> {
        let point: Vec<f64> = match &basis {
            None => x.iter().zip(y).map(|(a, b)| a + b).collect(),
            Some(cols) => {
                let mut point = x.to_vec();
                for (c, yi) in cols.iter().zip(y) {
                    point.iter_mut().zip(c).for_each(|(v, ci)| *v += yi * ci);
                }
                point
            }
        };
        let (value, grad) = f(&point)?;
        if grad.len() != n {
            return Err(Error::LengthMismatch {
                what: "loss gradient",
                expected: n,
                found: grad.len(),
            });
        }
        loss.get_or_insert(value);
        let reduced = match &basis {
            None => grad,
            Some(cols) => cols.iter().map(|c| dot(c, &grad)).collect(),
        };
        Ok((-value, reduced.iter().map(|v| -v).collect()))
    };
    let box_config = BoxConfig {
        max_iters: config.max_iters,
        memory: config.memory,
        ..BoxConfig::default()
    };
    let result = minimize_box(objective, &vec![0.; p], &lower, &upper, &box_config)?;
    let Some(loss) = loss else {
        return Err(Error::NonFinite { what: "loss at x" });
    };
    let max_loss = -result.f;
    Ok(SharpnessResult {
        sharpness: 100. * (max_loss - loss) / (1. + loss),
        loss,
        max_loss,
        y: result.x,
        iterations: result.iterations,
        evaluations: result.evaluations,
    })
}

/// Keskar sharpness of a model at `params`, through its [`GradientOracle`] on
/// the examples chosen by `config.examples`. Parameters are flattened in
/// sorted name order ([`flatten`]); each evaluation rebuilds a tree of the
/// same dtypes and devices.
///
/// # Errors
/// As [`sharpness`], plus errors from the oracle and the conversions.
pub fn sharpness_of(
    oracle: &mut impl GradientOracle,
    params: &Tree,
    config: &SharpnessConfig,
) -> Result<SharpnessResult> {
    let examples = config.examples.indices(oracle.num_examples())?;
    let x = flatten(params)?;
    let f = |point: &[f64]| -> Result<(f64, Vec<f64>)> {
        let tree = unflatten(point, params)?;
        let (loss, grad) = oracle.loss_and_grad(&tree, &examples)?;
        Ok((loss, flatten(&grad)?))
    };
    sharpness(f, &x, config)
}

fn validate(config: &SharpnessConfig, n: usize) -> Result<()> {
    if !(config.epsilon > 0. && config.epsilon.is_finite()) {
        return Err(Error::InvalidConfig {
            name: "epsilon",
            value: config.epsilon,
            reason: "must be positive and finite",
        });
    }
    if config.max_iters == 0 {
        return Err(Error::InvalidConfig {
            name: "max_iters",
            value: 0.,
            reason: "must be at least 1",
        });
    }
    if let Subspace::Random { dim } = config.subspace
        && (dim == 0 || dim > n)
    {
        return Err(Error::InvalidConfig {
            name: "subspace dim",
            value: dim as f64,
            reason: "must be between 1 and the number of parameters",
        });
    }
    if n == 0 {
        return Err(Error::TooFewPoints {
            what: "parameters",
            needed: 1,
            got: 0,
        });
    }
    Ok(())
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// `p` orthonormal columns of length `n`: modified Gram–Schmidt applied twice
/// ("twice is enough", Giraud et al. 2005) to i.i.d. Gaussian columns, which
/// yields a Haar-distributed frame. A column that collapses (probability 0) is
/// redrawn.
fn random_orthonormal(n: usize, p: usize, seed: u64) -> Vec<Vec<f64>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut cols: Vec<Vec<f64>> = Vec::with_capacity(p);
    while cols.len() < p {
        let mut v: Vec<f64> = (0..n).map(|_| StandardNormal.sample(&mut rng)).collect();
        for _ in 0..2 {
            for c in &cols {
                let proj = dot(c, &v);
                v.iter_mut().zip(c).for_each(|(vi, ci)| *vi -= proj * ci);
            }
        }
        let norm = dot(&v, &v).sqrt();
        if norm > 1e-8 {
            v.iter_mut().for_each(|vi| *vi /= norm);
            cols.push(v);
        }
    }
    cols
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FnOracle;
    use candle_core::{Device, Tensor};

    /// f(x) = Σ ½h_i x_i² + c_i x_i, separable with curvature of both signs.
    struct Quadratic {
        h: Vec<f64>,
        c: Vec<f64>,
    }

    impl Quadratic {
        fn eval(&self, x: &[f64]) -> (f64, Vec<f64>) {
            let v = (0..x.len())
                .map(|i| 0.5 * self.h[i] * x[i] * x[i] + self.c[i] * x[i])
                .sum();
            let g = (0..x.len()).map(|i| self.h[i] * x[i] + self.c[i]).collect();
            (v, g)
        }

        /// The exact box maximum, coordinate by coordinate: the larger endpoint
        /// where the coordinate is convex, the clamped stationary point where
        /// it is concave.
        fn box_max(&self, x: &[f64], eps: f64) -> f64 {
            (0..x.len())
                .map(|i| {
                    let r = eps * (x[i].abs() + 1.);
                    let q = |z: f64| 0.5 * self.h[i] * z * z + self.c[i] * z;
                    let (lo, hi) = (x[i] - r, x[i] + r);
                    if self.h[i] > 0. {
                        q(lo).max(q(hi))
                    } else {
                        q((-self.c[i] / self.h[i]).clamp(lo, hi))
                    }
                })
                .sum()
        }
    }

    fn quadratic() -> Quadratic {
        Quadratic {
            h: vec![2., -1., 0.5, -3., 4., 1.],
            c: vec![0.3, 0.2, -0.1, 0.5, 0., -0.4],
        }
    }

    const X: [f64; 6] = [0.5, -0.2, 1., 0.1, -0.3, 0.2];

    #[test]
    fn full_space_sharpness_of_a_quadratic_equals_the_closed_form() -> anyhow::Result<()> {
        let q = quadratic();
        for eps in [1e-3, 0.1, 0.5] {
            let cfg = SharpnessConfig {
                epsilon: eps,
                max_iters: 50,
                ..Default::default()
            };
            let s = sharpness(|x| Ok(q.eval(x)), &X, &cfg)?;
            let fx = q.eval(&X).0;
            let expected = 100. * (q.box_max(&X, eps) - fx) / (1. + fx);
            assert!((s.loss - fx).abs() < 1e-15);
            assert!(
                (s.sharpness - expected).abs() <= 1e-5 * expected.abs(),
                "ε {eps}: {} vs {expected}",
                s.sharpness
            );
        }
        // The default budget of 10 iterations already gets within 1e-5 here.
        let s = sharpness(|x| Ok(q.eval(x)), &X, &SharpnessConfig::default())?;
        assert!(s.iterations <= 10);
        let fx = q.eval(&X).0;
        let expected = 100. * (q.box_max(&X, 1e-3) - fx) / (1. + fx);
        assert!((s.sharpness - expected).abs() <= 1e-5 * expected.abs());
        Ok(())
    }

    #[test]
    fn full_space_is_seed_invariant_and_subspaces_reproduce_from_the_seed() -> anyhow::Result<()> {
        let q = quadratic();
        let run = |subspace, seed| {
            let cfg = SharpnessConfig {
                epsilon: 0.1,
                subspace,
                seed,
                ..Default::default()
            };
            sharpness(|x| Ok(q.eval(x)), &X, &cfg)
        };
        assert_eq!(run(Subspace::Full, 1)?, run(Subspace::Full, 2)?);
        let sub = Subspace::Random { dim: 3 };
        let a = run(sub, 7)?;
        assert_eq!(a, run(sub, 7)?);
        assert_ne!(a.sharpness, run(sub, 8)?.sharpness);
        // A subspace can only find less than the full space.
        assert!(a.sharpness <= run(Subspace::Full, 0)?.sharpness + 1e-9);
        Ok(())
    }

    #[test]
    fn random_basis_is_orthonormal() {
        let cols = random_orthonormal(50, 10, 3);
        for i in 0..10 {
            for j in 0..10 {
                let expected = if i == j { 1. } else { 0. };
                assert!((dot(&cols[i], &cols[j]) - expected).abs() < 1e-12);
            }
        }
    }

    /// Logistic loss plus a sine term (concave in places, so the maximiser has
    /// an interior coordinate). Golden values from SciPy 1.17.1's L-BFGS-B run
    /// to convergence on the same full-space problem (NumPy 2.4.6):
    ///
    /// ```python
    /// import numpy as np
    /// from scipy.optimize import minimize
    /// a = np.array([[1.0, -0.5, 0.3], [0.2, 1.5, -1.0], [-1.2, 0.4, 0.9],
    ///               [0.7, 0.7, 0.7], [-0.3, -1.1, 0.5], [1.4, -0.2, -0.8]])
    /// lab = np.array([1.0, -1.0, 1.0, 1.0, -1.0, -1.0])
    /// w0 = np.array([0.5, -0.3, 0.8])
    /// def f(w):
    ///     m = lab * (a @ w)
    ///     val = np.mean(np.log1p(np.exp(-m))) + 0.3 * np.sum(np.sin(2.0 * w))
    ///     grad = a.T @ (-lab / (1.0 + np.exp(m))) / len(lab) + 0.6 * np.cos(2.0 * w)
    ///     return val, grad
    /// eps = 0.2
    /// half = eps * (np.abs(w0) + 1.0)          # A = I, so A^+ x = x
    /// neg = lambda y: tuple(-v for v in f(w0 + y))
    /// r = minimize(neg, np.zeros(3), jac=True, method="L-BFGS-B", bounds=list(zip(-half, half)),
    ///              options=dict(maxiter=1000, ftol=1e-15, gtol=1e-12, maxcor=10))
    /// fx = f(w0)[0]
    /// print(repr(fx), repr(-r.fun), [float(v) for v in r.x], 100 * (-r.fun - fx) / (1 + fx))
    /// # 0.9654265098163397 1.1998093475228095 [0.30000000000000004, 0.26, -0.22675745725174348]
    /// #   11.92529135716053
    /// ```
    #[test]
    fn maximiser_matches_scipy_lbfgsb() -> anyhow::Result<()> {
        let a = [
            [1.0, -0.5, 0.3],
            [0.2, 1.5, -1.0],
            [-1.2, 0.4, 0.9],
            [0.7, 0.7, 0.7],
            [-0.3, -1.1, 0.5],
            [1.4, -0.2, -0.8],
        ];
        let lab = [1.0, -1.0, 1.0, 1.0, -1.0, -1.0];
        let n = lab.len() as f64;
        // Through the Tree bridge, to exercise `sharpness_of` as a model would.
        let mut oracle = FnOracle::new(6, |p: &Tree, idx: &[usize]| {
            assert_eq!(idx, [0, 1, 2, 3, 4, 5]);
            let w = flatten(p)?;
            let mut val = 0.3 * w.iter().map(|v| (2. * v).sin()).sum::<f64>();
            let mut grad: Vec<f64> = w.iter().map(|v| 0.6 * (2. * v).cos()).collect();
            for (row, l) in a.iter().zip(lab) {
                let m = l * dot(row, &w);
                val += (-m).exp().ln_1p() / n;
                let s = -l / (1. + m.exp()) / n;
                grad.iter_mut().zip(row).for_each(|(g, r)| *g += s * r);
            }
            let mut t = Tree::new();
            t.insert("w", Tensor::new(grad.as_slice(), &Device::Cpu)?);
            Ok((val, t))
        });
        let mut params = Tree::new();
        params.insert("w", Tensor::new(&[0.5f64, -0.3, 0.8], &Device::Cpu)?);
        let cfg = SharpnessConfig {
            epsilon: 0.2,
            max_iters: 100,
            ..Default::default()
        };
        let s = sharpness_of(&mut oracle, &params, &cfg)?;
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-5 * b.abs().max(1.);
        assert!(close(s.loss, 0.965_426_509_816_339_7), "{s:?}");
        assert!(close(s.max_loss, 1.199_809_347_522_809_5), "{s:?}");
        assert!(close(s.sharpness, 11.925_291_357_160_53), "{s:?}");
        for (y, g) in s.y.iter().zip([0.3, 0.26, -0.226_757_457_251_743_48]) {
            assert!(close(*y, g), "{s:?}");
        }
        Ok(())
    }

    #[test]
    fn invalid_settings_are_rejected() {
        let f = |x: &[f64]| Ok((x[0], vec![1.]));
        let bad = |cfg: SharpnessConfig| sharpness(f, &[1.], &cfg);
        assert!(matches!(
            bad(SharpnessConfig {
                epsilon: 0.,
                ..Default::default()
            }),
            Err(Error::InvalidConfig {
                name: "epsilon",
                ..
            })
        ));
        assert!(matches!(
            bad(SharpnessConfig {
                subspace: Subspace::KESKAR,
                ..Default::default()
            }),
            Err(Error::InvalidConfig {
                name: "subspace dim",
                ..
            })
        ));
    }
}
