//! Scaling updates by a constant or by a scheduled learning rate.

use crate::fuse::{Elementwise, FuseVisitor, apply};
use crate::num::Num;
use crate::{Plan, Result, Schedule, Transform, Tree};

/// `u ↦ c·u` (candle's `affine(c, 0)`): the update of [`scale`] and of
/// [`scale_by_learning_rate`] (`c = −η(t)`).
#[derive(Clone, Copy)]
struct Multiply(f64);

impl Elementwise<0> for Multiply {
    #[inline(always)]
    fn output<T: Num>(&self, u: &T, _: &T, _: &[T; 0]) -> Result<T, T::Error> {
        u.affine(self.0, 0.)
    }
}

/// Multiplies every update by a constant; see [`scale`].
#[derive(Clone, Copy, Debug)]
pub struct Scale {
    factor: f64,
}

/// `u ↦ factor · u` (optax's `scale`).
///
/// ```
/// use bigbatch_optim::{scale, Transform, Tree};
/// use candle_core::{Device, Tensor};
/// # fn main() -> Result<(), bigbatch_optim::Error> {
/// let mut g = Tree::new();
/// g.insert("w", Tensor::new(&[2f32], &Device::Cpu)?);
/// let (u, ()) = scale(-0.5).update(g.clone(), (), &g)?;
/// assert_eq!(u.get("w").unwrap().to_vec1::<f32>()?, [-1.]);
/// # Ok(()) }
/// ```
pub fn scale(factor: f64) -> Scale {
    Scale { factor }
}

impl Transform for Scale {
    type State = ();

    fn init(&self, _: &Tree) -> Result<()> {
        Ok(())
    }

    fn update(&self, updates: Tree, state: (), params: &Tree) -> Result<(Tree, ())> {
        let (updates, []) = apply(&Multiply(self.factor), &updates, params, [])?;
        Ok((updates, state))
    }

    fn fusable(&self) -> bool {
        true
    }

    fn fuse_kernel<V: FuseVisitor>(
        &self,
        state: (),
        plan: &mut Plan,
        v: V,
    ) -> Result<((), V::Out)> {
        let kernel = plan.pure(Multiply(self.factor), true);
        Ok((state, v.visit(plan, kernel)?))
    }
}

/// Descends along the updates with a scheduled step size; see [`scale_by_learning_rate`].
#[derive(Clone, Debug)]
pub struct ScaleByLearningRate<S> {
    schedule: S,
}

/// `u ↦ −η(t) · u`, where `t` counts the updates so far (the state).
///
/// This is where the minus sign of gradient descent lives: every other transform
/// works on ascent directions, and the final updates are added to the parameters.
/// The schedule is any [`Schedule`]: a plain `f64` or one from [`crate::schedule`].
///
/// ```
/// use bigbatch_optim::{scale_by_learning_rate, schedule::Linear, Transform, Tree};
/// use candle_core::{Device, Tensor};
/// # fn main() -> Result<(), bigbatch_optim::Error> {
/// let mut g = Tree::new();
/// g.insert("w", Tensor::new(&[1f64], &Device::Cpu)?);
/// let tx = scale_by_learning_rate(Linear::new(0.0, 1.0, 4)?);
/// let (u, t) = tx.update(g.clone(), tx.init(&g)?, &g)?;
/// assert_eq!(u.get("w").unwrap().to_vec1::<f64>()?, [-0.0]);
/// let (u, _) = tx.update(g.clone(), t, &g)?;
/// assert_eq!(u.get("w").unwrap().to_vec1::<f64>()?, [-0.25]);
/// # Ok(()) }
/// ```
pub fn scale_by_learning_rate<S: Schedule>(schedule: S) -> ScaleByLearningRate<S> {
    ScaleByLearningRate { schedule }
}

impl<S: Schedule> Transform for ScaleByLearningRate<S> {
    type State = u64;

    fn init(&self, _: &Tree) -> Result<u64> {
        Ok(0)
    }

    fn update(&self, updates: Tree, count: u64, params: &Tree) -> Result<(Tree, u64)> {
        let descend = Multiply(-self.schedule.at(count));
        let (updates, []) = apply(&descend, &updates, params, [])?;
        Ok((updates, count + 1))
    }

    fn fusable(&self) -> bool {
        true
    }

    fn fuse_kernel<V: FuseVisitor>(
        &self,
        count: u64,
        plan: &mut Plan,
        v: V,
    ) -> Result<(u64, V::Out)> {
        let kernel = plan.pure(Multiply(-self.schedule.at(count)), true);
        Ok((count + 1, v.visit(plan, kernel)?))
    }
}
