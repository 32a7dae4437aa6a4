//! Hessian-vector products, the top Hessian eigenvalue, and the Hessian-aware
//! noise scale `B_noise = tr(HΣ)/(GᵀHG)`.
//!
//! McCandlish et al. (2018), "An Empirical Model of Large-Batch Training",
//! arXiv:1812.06162, §2.1: for a quadratic model of the loss, the optimal step
//! size at batch size `B` is `ε_opt(B) = ε_max / (1 + B_noise/B)` with
//! `ε_max = |G|²/(GᵀHG)`. Hessian-vector products come from central finite
//! differences of gradients, so any model with a gradient works; the top
//! eigenvalue is found by power iteration on them (as in Yao et al. 2018,
//! "Hessian-based Analysis of Large Batch Training and Robustness to
//! Adversaries", NeurIPS).

use bigbatch_optim::Tree;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};

use crate::flat::{dot, lin_comb, unflatten, weighted_sum};
pub use bigbatch_record::{HessianNoiseScale, optimal_learning_rate};

use crate::{Error, GradientOracle, Result};

/// A linear map `v ↦ H v` by a (fixed) Hessian.
///
/// Implemented by [`FiniteDifferenceHvp`] and by any closure
/// `FnMut(&Tree) -> Result<Tree>` (e.g. an exact product in a test).
pub trait HessianVectorProduct {
    /// `H v`, shaped like `v`.
    ///
    /// # Errors
    /// Whatever the evaluation reports.
    fn hvp(&mut self, v: &Tree) -> Result<Tree>;
}

impl<F: FnMut(&Tree) -> Result<Tree>> HessianVectorProduct for F {
    fn hvp(&mut self, v: &Tree) -> Result<Tree> {
        self(v)
    }
}

/// `H v ≈ (∇f(x + h v) − ∇f(x − h v)) / (2h)`, the Hessian of the mean loss over
/// fixed examples at fixed parameters `x`, by central differences of gradients.
///
/// The step is `h = rel_step · (1 + |x|) / |v|`, so the perturbation `h v` has
/// norm `rel_step·(1 + |x|)`: relative to the weights' scale, independent of
/// how `v` is normalised. Central differences have truncation error `O(h²)`
/// and rounding error `O(u/h)` for unit roundoff `u`, balanced near
/// `h ∝ u^{1/3}` (≈ 5e-3 for `f32`, 6e-6 for `f64`); the default `1e-3` suits
/// `f32` models. Each product costs two gradient evaluations on the same
/// examples.
pub struct FiniteDifferenceHvp<'a, O> {
    oracle: &'a mut O,
    params: Tree,
    params_norm: f64,
    examples: Vec<usize>,
    rel_step: f64,
    evaluations: usize,
}

impl<'a, O: GradientOracle> FiniteDifferenceHvp<'a, O> {
    /// The default relative step, suited to `f32` models.
    pub const DEFAULT_REL_STEP: f64 = 1e-3;

    /// Products by the Hessian of the mean loss over `examples` at `params`.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] unless `rel_step > 0`; [`Error::TooFewPoints`]
    /// for no example; a candle error from the norm.
    pub fn new(
        oracle: &'a mut O,
        params: &Tree,
        examples: Vec<usize>,
        rel_step: f64,
    ) -> Result<Self> {
        if !(rel_step > 0. && rel_step.is_finite()) {
            return Err(Error::InvalidConfig {
                name: "rel_step",
                value: rel_step,
                reason: "must be positive and finite",
            });
        }
        if examples.is_empty() {
            return Err(Error::TooFewPoints {
                what: "examples for Hessian-vector products",
                needed: 1,
                got: 0,
            });
        }
        Ok(Self {
            oracle,
            params_norm: params.squared_norm()?.sqrt(),
            params: params.clone(),
            examples,
            rel_step,
            evaluations: 0,
        })
    }

    /// How many gradient evaluations the products have cost so far.
    pub fn evaluations(&self) -> usize {
        self.evaluations
    }
}

impl<O: GradientOracle> HessianVectorProduct for FiniteDifferenceHvp<'_, O> {
    fn hvp(&mut self, v: &Tree) -> Result<Tree> {
        let v_norm = v.squared_norm()?.sqrt();
        if v_norm == 0. {
            return Ok(v.zeros_like()?);
        }
        let h = self.rel_step * (1. + self.params_norm) / v_norm;
        let plus = lin_comb(1., &self.params, h, v)?;
        let minus = lin_comb(1., &self.params, -h, v)?;
        let (_, g_plus) = self.oracle.loss_and_grad(&plus, &self.examples)?;
        let (_, g_minus) = self.oracle.loss_and_grad(&minus, &self.examples)?;
        self.evaluations += 2;
        lin_comb(0.5 / h, &g_plus, -0.5 / h, &g_minus)
    }
}

/// Settings of [`top_hessian_eigenvalue`].
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct PowerIterationConfig {
    /// At most this many Hessian-vector products. Default 100.
    pub max_iters: usize,
    /// Stop when the Rayleigh quotient changes by at most `tol·|λ|`. Default 1e-4.
    pub tol: f64,
    /// Seed of the Gaussian start vector (ChaCha8). Default 0.
    pub seed: u64,
}

impl Default for PowerIterationConfig {
    fn default() -> Self {
        Self {
            max_iters: 100,
            tol: 1e-4,
            seed: 0,
        }
    }
}

/// The result of [`top_hessian_eigenvalue`].
#[derive(Clone, Debug)]
pub struct TopEigen {
    /// The Rayleigh quotient `vᵀHv` of the last unit vector.
    pub value: f64,
    /// The last unit vector, an estimate of the eigenvector.
    pub vector: Tree,
    /// How many Hessian-vector products were used.
    pub iterations: usize,
    /// Whether the tolerance was met before `max_iters`.
    pub converged: bool,
}

/// The eigenvalue of largest magnitude of `H` by power iteration
/// `v ← Hv/|Hv|`, `λ = vᵀHv`, from a seeded Gaussian start shaped like `like`.
///
/// At a minimum the Hessian is positive semi-definite and this is the top
/// eigenvalue ("sharpness" in the Hessian sense). Convergence is geometric in
/// `|λ₂/λ₁|`.
///
/// ```
/// use bigbatch_noise::{PowerIterationConfig, top_hessian_eigenvalue};
/// use bigbatch_optim::Tree;
/// use candle_core::{Device, Tensor};
/// # fn main() -> Result<(), bigbatch_noise::Error> {
/// let mut like = Tree::new();
/// like.insert("w", Tensor::new(&[0f64, 0.], &Device::Cpu)?);
/// let d = Tensor::new(&[3f64, 1.], &Device::Cpu)?;
/// // H = diag(3, 1).
/// let mut hvp = |v: &Tree| v.map(|_, t| Ok((t * &d)?)).map_err(Into::into);
/// let eig = top_hessian_eigenvalue(&mut hvp, &like, &PowerIterationConfig::default())?;
/// assert!((eig.value - 3.).abs() < 1e-3);
/// # Ok(()) }
/// ```
///
/// # Errors
/// [`Error::InvalidConfig`] for `max_iters == 0` or a negative `tol`;
/// [`Error::NonFinite`] if a product is not finite; errors from `hvp`.
pub fn top_hessian_eigenvalue(
    hvp: &mut impl HessianVectorProduct,
    like: &Tree,
    config: &PowerIterationConfig,
) -> Result<TopEigen> {
    if config.max_iters == 0 {
        return Err(Error::InvalidConfig {
            name: "max_iters",
            value: 0.,
            reason: "must be at least 1",
        });
    }
    if config.tol.is_nan() || config.tol < 0. {
        return Err(Error::InvalidConfig {
            name: "tol",
            value: config.tol,
            reason: "must be non-negative",
        });
    }
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    let start: Vec<f64> = (0..like.elem_count())
        .map(|_| StandardNormal.sample(&mut rng))
        .collect();
    let mut v = normalized(unflatten(&start, like)?)?;
    let mut value = f64::NAN;
    for iteration in 1..=config.max_iters {
        let hv = hvp.hvp(&v)?;
        let rayleigh = dot(&v, &hv)?;
        if !rayleigh.is_finite() {
            return Err(Error::NonFinite {
                what: "Hessian-vector product",
            });
        }
        let converged = (rayleigh - value).abs() <= config.tol * rayleigh.abs();
        value = rayleigh;
        if converged || hv.squared_norm()? == 0. {
            return Ok(TopEigen {
                value,
                vector: v,
                iterations: iteration,
                converged: true,
            });
        }
        v = normalized(hv)?;
    }
    Ok(TopEigen {
        value,
        vector: v,
        iterations: config.max_iters,
        converged: false,
    })
}

fn normalized(v: Tree) -> Result<Tree> {
    let norm = v.squared_norm()?.sqrt();
    Ok(v.map(|_, t| Ok(t.affine(1. / norm, 0.)?))?)
}

/// `B_noise = tr(HΣ)/(GᵀHG)` from `k ≥ 2` disjoint micro-batch mean gradients
/// `(b_j, G_j)` at the same weights and a Hessian-vector product `hvp`.
///
/// With `B = Σ b_j`, `G_B = Σ b_j G_j / B` and `D_j = G_j − G_B`, each `D_j` has
/// mean zero and covariance `Σ(1/b_j − 1/B)`, so
///
/// ```text
/// tr(HΣ) ≈ 1/(k−1) · Σ_j b_j D_jᵀ H D_j        GᵀHG ≈ G_Bᵀ H G_B − tr(HΣ)/B
/// tr(Σ)  ≈ 1/(k−1) · Σ_j b_j |D_j|²            |G|² ≈ |G_B|² − tr(Σ)/B
/// ```
///
/// are unbiased for a Hessian independent of the gradient noise (evaluate `H`
/// on other examples than the `G_j`, or on a large fixed set). Costs `k + 1`
/// products (`2(k+1)` gradient evaluations with [`FiniteDifferenceHvp`]).
///
/// # Errors
/// [`Error::TooFewPoints`] for fewer than two micro-batches;
/// [`Error::InvalidBatchSizes`] for an empty one; errors from `hvp`.
pub fn hessian_noise_scale(
    hvp: &mut impl HessianVectorProduct,
    micro_grads: &[(usize, Tree)],
) -> Result<HessianNoiseScale> {
    let k = micro_grads.len();
    if k < 2 {
        return Err(Error::TooFewPoints {
            what: "micro-batches",
            needed: 2,
            got: k,
        });
    }
    let total: usize = micro_grads.iter().map(|(b, _)| b).sum();
    if micro_grads.iter().any(|(b, _)| *b == 0) {
        return Err(Error::InvalidBatchSizes {
            small: 0.,
            big: total as f64,
        });
    }
    let big = total as f64;
    let g_big = weighted_sum(micro_grads.iter().map(|(b, g)| (*b as f64 / big, g)))?;
    let mut trace_sigma = 0.;
    let mut trace_h_sigma = 0.;
    for (b, g) in micro_grads {
        let d = lin_comb(1., g, -1., &g_big)?;
        trace_sigma += *b as f64 * d.squared_norm()?;
        trace_h_sigma += *b as f64 * dot(&d, &hvp.hvp(&d)?)?;
    }
    trace_sigma /= (k - 1) as f64;
    trace_h_sigma /= (k - 1) as f64;
    let g_sq = g_big.squared_norm()? - trace_sigma / big;
    let g_h_g = dot(&g_big, &hvp.hvp(&g_big)?)? - trace_h_sigma / big;
    Ok(HessianNoiseScale {
        g_sq,
        trace_sigma,
        g_h_g,
        trace_h_sigma,
        b_simple: trace_sigma / g_sq,
        b_noise: trace_h_sigma / g_h_g,
        eps_max: g_sq / g_h_g,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{FnOracle, flatten};
    use candle_core::{Device, Tensor};

    fn vec_tree(v: &[f64]) -> Result<Tree> {
        let mut t = Tree::new();
        t.insert("w", Tensor::new(v, &Device::Cpu)?);
        Ok(t)
    }

    /// f(x) = ¼ Σ x_i⁴ + ½ xᵀAx with A symmetric: ∇f = x³ + Ax, H = diag(3x²) + A.
    #[test]
    fn finite_difference_hvp_matches_the_analytic_hessian() -> anyhow::Result<()> {
        let a = [[2., 0.5, 0.], [0.5, 1., -0.3], [0., -0.3, 4.]];
        let mut oracle = FnOracle::new(1, |p: &Tree, _: &[usize]| {
            let x = flatten(p)?;
            let g: Vec<f64> = (0..3)
                .map(|i| x[i].powi(3) + (0..3).map(|j| a[i][j] * x[j]).sum::<f64>())
                .collect();
            Ok((0., vec_tree(&g)?))
        });
        let x = [0.7, -1.2, 0.3];
        let v = [1., 2., -0.5];
        let params = vec_tree(&x)?;
        let mut hvp = FiniteDifferenceHvp::new(&mut oracle, &params, vec![0], 1e-4)?;
        let hv = flatten(&hvp.hvp(&vec_tree(&v)?)?)?;
        assert_eq!(hvp.evaluations(), 2);
        for i in 0..3 {
            let exact = 3. * x[i] * x[i] * v[i] + (0..3).map(|j| a[i][j] * v[j]).sum::<f64>();
            assert!(
                (hv[i] - exact).abs() < 1e-6 * (1. + exact.abs()),
                "{i}: {} vs {exact}",
                hv[i]
            );
        }
        Ok(())
    }

    #[test]
    fn power_iteration_finds_the_top_eigenvalue_of_a_quadratic() -> anyhow::Result<()> {
        // H = Q diag(5, 2, 1, 0.5) Qᵀ with a Householder Q = I − 2uuᵀ/|u|².
        let lambdas = [5., 2., 1., 0.5];
        let u: [f64; 4] = [1., -2., 0.5, 1.5];
        let uu: f64 = u.iter().map(|x| x * x).sum();
        let q = |i: usize, j: usize| f64::from(u8::from(i == j)) - 2. * u[i] * u[j] / uu;
        let h: Vec<Vec<f64>> = (0..4)
            .map(|i| {
                (0..4)
                    .map(|j| (0..4).map(|k| q(i, k) * lambdas[k] * q(j, k)).sum())
                    .collect()
            })
            .collect();
        let mut hvp = |v: &Tree| -> Result<Tree> {
            let v = flatten(v)?;
            vec_tree(
                &(0..4)
                    .map(|i| (0..4).map(|j| h[i][j] * v[j]).sum())
                    .collect::<Vec<f64>>(),
            )
        };
        let like = vec_tree(&[0.; 4])?;
        let cfg = PowerIterationConfig {
            max_iters: 200,
            tol: 1e-12,
            seed: 3,
        };
        let eig = top_hessian_eigenvalue(&mut hvp, &like, &cfg)?;
        assert!(eig.converged);
        assert!((eig.value - 5.).abs() < 1e-9, "{}", eig.value);
        // The vector is ±the first column of Q.
        let v = flatten(&eig.vector)?;
        let overlap: f64 = (0..4).map(|i| v[i] * q(i, 0)).sum();
        assert!((overlap.abs() - 1.).abs() < 1e-6);
        assert!(matches!(
            top_hessian_eigenvalue(
                &mut hvp,
                &like,
                &PowerIterationConfig {
                    max_iters: 0,
                    ..cfg
                }
            ),
            Err(Error::InvalidConfig {
                name: "max_iters",
                ..
            })
        ));
        Ok(())
    }

    #[test]
    fn hessian_noise_scale_is_exact_for_two_symmetric_micro_batches() -> anyhow::Result<()> {
        // H = diag(2, 1); micro-batches of 4 with G_1 = [1, 1], G_2 = [3, -1].
        // G_B = [2, 0], D = ±[1, −1]; tr(HΣ) = 4·(3) + 4·(3) = 24, GᵀHG = 8 − 24/8 = 5.
        let mut hvp = |v: &Tree| -> Result<Tree> {
            let v = flatten(v)?;
            vec_tree(&[2. * v[0], v[1]])
        };
        let e = hessian_noise_scale(
            &mut hvp,
            &[(4, vec_tree(&[1., 1.])?), (4, vec_tree(&[3., -1.])?)],
        )?;
        assert!((e.trace_h_sigma - 24.).abs() < 1e-12);
        assert!((e.g_h_g - 5.).abs() < 1e-12);
        assert!((e.trace_sigma - 16.).abs() < 1e-12);
        assert!((e.g_sq - 2.).abs() < 1e-12);
        assert!((e.b_noise - 24. / 5.).abs() < 1e-12);
        assert!((e.eps_max - 2. / 5.).abs() < 1e-12);
        assert!((e.optimal_learning_rate(24. / 5.) - 0.2).abs() < 1e-12);
        assert!(matches!(
            hessian_noise_scale(&mut hvp, &[(4, vec_tree(&[1., 1.])?)]),
            Err(Error::TooFewPoints { .. })
        ));
        Ok(())
    }
}
