//! Momentum as a trace of past updates (heavy ball and Nesterov).

use crate::{Result, Transform, Tree};

/// Accumulates a decaying trace of updates; see [`trace`].
#[derive(Clone, Copy, Debug)]
pub struct Trace {
    decay: f64,
    nesterov: bool,
}

/// Momentum: `m ← g + μ·m`, then `u = m` (heavy ball) or `u = g + μ·m` (Nesterov).
///
/// This is PyTorch's `SGD(momentum=μ, dampening=0, nesterov=…)` buffer and optax's
/// `trace` (Polyak 1964; Sutskever et al. 2013 for the Nesterov form).
pub fn trace(decay: f64, nesterov: bool) -> Trace {
    Trace { decay, nesterov }
}

impl Transform for Trace {
    type State = Tree;

    fn init(&self, params: &Tree) -> Result<Tree> {
        params.zeros_like()
    }

    fn update(&self, updates: Tree, trace: Tree, _: &Tree) -> Result<(Tree, Tree)> {
        let trace = updates.zip_map(&trace, |_, g, m| Ok((g + m.affine(self.decay, 0.)?)?))?;
        let updates = if self.nesterov {
            updates.zip_map(&trace, |_, g, m| Ok((g + m.affine(self.decay, 0.)?)?))?
        } else {
            trace.clone()
        };
        Ok((updates, trace))
    }
}
