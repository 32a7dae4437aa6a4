//! In-place CPU updates for the most used named optimizers.
//!
//! Composed from candle ops, one step of [`crate::adam`] makes several passes
//! over every parameter-sized tensor and allocates a fresh tensor for each op
//! (page faults and all), then one more for `w + u`. [`Optimizer::fused`]
//! runs the same update as one pass per parameter: it reads `w`, `g` and the
//! state once and writes `w` and the state back in place, threaded over
//! chunks with rayon, as PyTorch's `foreach`/`fused` kernels do.
//!
//! | [`Fused`] | the chain it equals | bytes moved per f32 parameter |
//! |---|---|---|
//! | `Sgd` | [`crate::sgd`] | read `g`, `w`; write `w`: 12 |
//! | `Momentum` | [`crate::momentum`], [`crate::nesterov`] | read `g`, `m`, `w`; write `m`, `w`: 20 |
//! | `Adam` | [`crate::adam`] | read `g`, `m`, `v`, `w`; write `m`, `v`, `w`: 28 |
//! | `AdamW` | [`crate::adamw`] | as Adam |
//!
//! The fused update is the chain's arithmetic in the chain's order, in f32
//! with the same f64 → f32 coefficients, and its state *is* the chain's state
//! value: a checkpoint written by one loads into the other. On other devices
//! or dtypes [`Optimizer::fused`] runs the chain itself. `tests/fused.rs`
//! checks every rule against its chain.
//!
//! [`Optimizer::fused`]: crate::Optimizer::fused

use std::cell::RefCell;
use std::sync::Arc;

use candle_core::{CpuStorage, InplaceOp1, InplaceOp2, Layout, Tensor};
use rayon::prelude::*;

use crate::mask::{Mask, MaskedState};
use crate::{
    AdamConfig, AdamState, Boxed, Error, OptState, Params, Result, Schedule, Transform, Tree, adam,
    adamw, boxed, momentum, nesterov, sgd,
};

/// A named optimizer that [`crate::Optimizer::fused`] runs in place.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Fused {
    /// [`crate::sgd`]: `w ← w − η(t)·g`.
    Sgd,
    /// [`crate::momentum`] (or [`crate::nesterov`]): `m ← g + μm`,
    /// `w ← w − η(t)·m` (Nesterov: `w ← w − η(t)·(g + μm)`).
    Momentum {
        /// The momentum coefficient `μ` in `[0, 1)`.
        beta: f64,
        /// Nesterov's look-ahead form.
        nesterov: bool,
    },
    /// [`crate::adam`]: `w ← w − η(t)·m̂/(√(v̂ + ε_root) + ε)`.
    Adam(AdamConfig),
    /// [`crate::adamw`]: Adam plus decoupled weight decay `λw` on the
    /// parameters `mask` selects, scaled by `η(t)`.
    AdamW {
        /// Adam's moments and epsilons.
        cfg: AdamConfig,
        /// The decoupled decay `λ ≥ 0`.
        weight_decay: f64,
        /// Which parameters decay.
        mask: Mask,
    },
}

impl Fused {
    /// The composed chain this rule equals, for a learning-rate `schedule`.
    pub fn chain(&self, schedule: Arc<dyn Schedule>) -> Boxed {
        match self {
            Fused::Sgd => boxed(sgd(schedule)),
            Fused::Momentum {
                beta,
                nesterov: false,
            } => boxed(momentum(schedule, *beta)),
            Fused::Momentum {
                beta,
                nesterov: true,
            } => boxed(nesterov(schedule, *beta)),
            Fused::Adam(cfg) => boxed(adam(schedule, *cfg)),
            Fused::AdamW {
                cfg,
                weight_decay,
                mask,
            } => boxed(adamw(schedule, *cfg, *weight_decay, mask.clone())),
        }
    }
}

/// The chain's state, by rule: the same values, saved under the same keys.
#[derive(Clone)]
enum State {
    Sgd((u64,)),
    Momentum((Tree, u64)),
    Adam((AdamState, u64)),
    AdamW((AdamState, MaskedState<()>, u64)),
}

impl State {
    /// Gives every state tensor its own storage, so that updating it in place
    /// cannot be seen through a tree it was loaded from or saved to.
    fn own(&mut self) -> Result<()> {
        let own = |tree: &mut Tree| -> Result<()> {
            *tree = tree.map(|_, t| Ok(t.copy()?))?;
            Ok(())
        };
        match self {
            State::Sgd(_) => Ok(()),
            State::Momentum((trace, _)) => own(trace),
            State::Adam((adam, _)) | State::AdamW((adam, _, _)) => {
                own(&mut adam.mu)?;
                own(&mut adam.nu)
            }
        }
    }
}

impl OptState for State {
    fn save(&self, prefix: &str, out: &mut Tree) -> Result<()> {
        let mut tree = Tree::new();
        match self {
            State::Sgd(s) => s.save(prefix, &mut tree)?,
            State::Momentum(s) => s.save(prefix, &mut tree)?,
            State::Adam(s) => s.save(prefix, &mut tree)?,
            State::AdamW(s) => s.save(prefix, &mut tree)?,
        }
        // Copies: the tensors here are updated in place by the next step.
        for (name, t) in tree.iter() {
            out.insert(name, t.copy()?);
        }
        Ok(())
    }

    fn load(&mut self, prefix: &str, saved: &Tree) -> Result<()> {
        match self {
            State::Sgd(s) => s.load(prefix, saved)?,
            State::Momentum(s) => s.load(prefix, saved)?,
            State::Adam(s) => s.load(prefix, saved)?,
            State::AdamW(s) => s.load(prefix, saved)?,
        }
        self.own()
    }
}

/// A [`Fused`] rule, its schedule and its state: the engine behind
/// [`crate::Optimizer::fused`] on the CPU.
#[derive(Clone)]
pub(crate) struct FusedUpdate {
    rule: Fused,
    schedule: Arc<dyn Schedule>,
    state: State,
}

impl std::fmt::Debug for FusedUpdate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FusedUpdate")
            .field("rule", &self.rule)
            .finish_non_exhaustive()
    }
}

impl FusedUpdate {
    /// The chain's initial state for `params`, validated by the chain's `init`.
    pub(crate) fn new(rule: Fused, schedule: Arc<dyn Schedule>, params: &Tree) -> Result<Self> {
        let init = rule.chain(schedule.clone()).init(params)?;
        let state = match rule {
            Fused::Sgd => State::Sgd(init.downcast()?),
            Fused::Momentum { .. } => State::Momentum(init.downcast()?),
            Fused::Adam(_) => State::Adam(init.downcast()?),
            Fused::AdamW { .. } => State::AdamW(init.downcast()?),
        };
        Ok(Self {
            rule,
            schedule,
            state,
        })
    }

    /// Saves the state as the chain's state saves (copies, not views).
    pub(crate) fn save(&self, prefix: &str, out: &mut Tree) -> Result<()> {
        self.state.save(prefix, out)
    }

    /// Loads a state saved by [`FusedUpdate::save`] or by the chain.
    pub(crate) fn load(&mut self, prefix: &str, saved: &Tree) -> Result<()> {
        self.state.load(prefix, saved)
    }

    /// One update of every parameter in place.
    pub(crate) fn step(&mut self, params: &Params, grads: &Tree) -> Result<()> {
        params.tree().check_same_names(grads)?;
        match (&self.rule, &mut self.state) {
            (Fused::Sgd, State::Sgd((count,))) => {
                let lr = neg(self.schedule.at(*count));
                for (_, w, g) in pairs(params, grads)? {
                    update(w, &g, |w, g| sgd_kernel(w, g, lr))?;
                }
                *count += 1;
            }
            (&Fused::Momentum { beta, nesterov }, State::Momentum((trace, count))) => {
                let lr = neg(self.schedule.at(*count));
                let mu = beta as f32;
                for (name, w, g) in pairs(params, grads)? {
                    match trace.get(name) {
                        // μ = 0: the chain keeps no trace.
                        None => update(w, &g, |w, g| sgd_kernel(w, g, lr))?,
                        Some(m) => open(m, |m| {
                            update(w, &g, |w, g| momentum_kernel(w, m, g, mu, lr, nesterov))
                        })?,
                    }
                }
                *count += 1;
            }
            (Fused::Adam(cfg), State::Adam((adam, count))) => {
                let k = AdamCoefficients::new(cfg, adam.count + 1, self.schedule.at(*count));
                for (name, w, g) in pairs(params, grads)? {
                    adam_step(name, w, &g, adam, &k, None)?;
                }
                adam.count += 1;
                *count += 1;
            }
            (
                Fused::AdamW {
                    cfg, weight_decay, ..
                },
                State::AdamW((adam, decayed, count)),
            ) => {
                let k = AdamCoefficients::new(cfg, adam.count + 1, self.schedule.at(*count));
                for (name, w, g) in pairs(params, grads)? {
                    let decay = decayed.selected().contains(name) && *weight_decay != 0.0;
                    adam_step(name, w, &g, adam, &k, decay.then_some(*weight_decay as f32))?;
                }
                adam.count += 1;
                *count += 1;
            }
            _ => {
                return Err(Error::StateMismatch {
                    reason: "fused optimizer state belongs to another rule".into(),
                });
            }
        }
        Ok(())
    }
}

/// Elements per rayon task: large enough to amortise scheduling, small
/// enough to split a ResNet-50 layer across threads.
const CHUNK: usize = 1 << 15;

/// `−η` in f32, as [`crate::scale_by_learning_rate`]'s `affine(−η, 0)` uses it.
fn neg(lr: f64) -> f32 {
    -lr as f32
}

/// `w ← w + (−η)·g`.
fn sgd_kernel(w: &mut [f32], g: &[f32], neg_lr: f32) -> candle_core::Result<()> {
    let rows = w.par_chunks_mut(CHUNK).zip(g.par_chunks(CHUNK));
    rows.for_each(|(w, g)| {
        wide(
            #[inline(always)]
            || {
                for (w, &g) in w.iter_mut().zip(g) {
                    *w += g * neg_lr;
                }
            },
        )
    });
    Ok(())
}

/// `m ← g + μm`, `w ← w + (−η)·m` (Nesterov: `(−η)·(g + μm)`).
fn momentum_kernel(
    w: &mut [f32],
    m: &mut [f32],
    g: &[f32],
    mu: f32,
    neg_lr: f32,
    nesterov: bool,
) -> candle_core::Result<()> {
    same_len(w, m)?;
    let rows = w.par_chunks_mut(CHUNK).zip(m.par_chunks_mut(CHUNK));
    rows.zip(g.par_chunks(CHUNK)).for_each(|((w, m), g)| {
        wide(
            #[inline(always)]
            || {
                for ((w, m), &g) in w.iter_mut().zip(m).zip(g) {
                    *m = g + *m * mu;
                    let u = if nesterov { g + *m * mu } else { *m };
                    *w += u * neg_lr;
                }
            },
        )
    });
    Ok(())
}

fn same_len(w: &[f32], state: &[f32]) -> candle_core::Result<()> {
    if w.len() != state.len() {
        candle_core::bail!("state has {} elements, parameter {}", state.len(), w.len());
    }
    Ok(())
}

/// Runs `f` compiled for AVX-512 or AVX2 where the CPU has them (detected at
/// run time; the default x86-64 target has only SSE2). The loops inside are
/// the same IEEE operations, four to sixteen lanes at a time, so the results
/// do not depend on the path taken.
#[inline(always)]
fn wide(f: impl FnOnce()) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU supports AVX-512F, checked just above.
            return unsafe { avx512(f) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2, checked just above.
            return unsafe { avx2(f) };
        }
    }
    f()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn avx512(f: impl FnOnce()) {
    f()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn avx2(f: impl FnOnce()) {
    f()
}

/// Adam's per-step constants, as the chain's `affine` calls cast them.
struct AdamCoefficients {
    one_minus_b1: f32,
    b1: f32,
    one_minus_b2: f32,
    b2: f32,
    inv_bc2: f32,
    eps_root: f32,
    bc1: f32,
    eps_bc1: f32,
    neg_lr: f32,
}

impl AdamCoefficients {
    fn new(cfg: &AdamConfig, count: u64, lr: f64) -> Self {
        let t = i32::try_from(count).unwrap_or(i32::MAX);
        let bc1 = 1.0 - cfg.b1.powi(t);
        let bc2 = 1.0 - cfg.b2.powi(t);
        Self {
            one_minus_b1: (1.0 - cfg.b1) as f32,
            b1: cfg.b1 as f32,
            one_minus_b2: (1.0 - cfg.b2) as f32,
            b2: cfg.b2 as f32,
            inv_bc2: (1.0 / bc2) as f32,
            eps_root: cfg.eps_root as f32,
            bc1: bc1 as f32,
            eps_bc1: (cfg.eps * bc1) as f32,
            neg_lr: neg(lr),
        }
    }
}

/// One Adam (or AdamW, with `decay = Some(λ)`) update of one parameter.
fn adam_step(
    name: &str,
    w: &Tensor,
    g: &Tensor,
    state: &AdamState,
    k: &AdamCoefficients,
    decay: Option<f32>,
) -> Result<()> {
    let (mu, nu) = (moment(&state.mu, name)?, moment(&state.nu, name)?);
    let step = open(mu, |m| {
        open(nu, |v| {
            update(w, g, |w, g| {
                same_len(w, m)?;
                same_len(w, v)?;
                let rows = w.par_chunks_mut(CHUNK).zip(m.par_chunks_mut(CHUNK));
                let rows = rows.zip(v.par_chunks_mut(CHUNK)).zip(g.par_chunks(CHUNK));
                rows.for_each(|(((w, m), v), g)| match decay {
                    None => wide(
                        #[inline(always)]
                        || adam_chunk::<false>(w, m, v, g, k, 0.0),
                    ),
                    Some(lambda) => wide(
                        #[inline(always)]
                        || adam_chunk::<true>(w, m, v, g, k, lambda),
                    ),
                });
                Ok(())
            })
        })
    });
    Ok(step?)
}

/// Adam on one chunk, in the chain's order: moments, `m/((√(v/bc2 + ε_root))·bc1 + ε·bc1)`,
/// AdamW's `+ λw`, then `w ← w + (−η)·u`.
#[inline(always)]
fn adam_chunk<const DECAY: bool>(
    w: &mut [f32],
    m: &mut [f32],
    v: &mut [f32],
    g: &[f32],
    k: &AdamCoefficients,
    lambda: f32,
) {
    for (((w, m), v), &g) in w.iter_mut().zip(m).zip(v).zip(g) {
        *m = g * k.one_minus_b1 + *m * k.b1;
        *v = (g * g) * k.one_minus_b2 + *v * k.b2;
        let denom = (*v * k.inv_bc2 + k.eps_root).sqrt() * k.bc1 + k.eps_bc1;
        let mut u = *m / denom;
        if DECAY {
            u += *w * lambda;
        }
        *w += u * k.neg_lr;
    }
}

fn moment<'a>(tree: &'a Tree, name: &str) -> Result<&'a Tensor> {
    tree.get(name).ok_or_else(|| Error::StateMismatch {
        reason: format!("no optimizer state for `{name}`"),
    })
}

/// `(name, parameter, contiguous gradient)` in sorted name order.
fn pairs<'a>(params: &'a Params, grads: &'a Tree) -> Result<Vec<(&'a str, &'a Tensor, Tensor)>> {
    params
        .iter()
        .map(|(name, var)| {
            let g = grads.get(name).ok_or_else(|| Error::TreeMismatch {
                name: name.to_owned(),
            })?;
            if g.dims() != var.dims() || g.dtype() != var.dtype() {
                return Err(Error::BadInput {
                    name: "gradient",
                    expected: "its parameter's shape and dtype",
                    found: g.dims().to_vec(),
                });
            }
            Ok((name, var.as_tensor(), g.contiguous()?))
        })
        .collect()
}

type Kernel<'a> = dyn FnOnce(&mut [f32], &[f32]) -> candle_core::Result<()> + 'a;
type Opened<'a> = dyn FnOnce(&mut [f32]) -> candle_core::Result<()> + 'a;

/// Runs `kernel(w, g)` on the parameter `w` opened for writing in place.
fn update(
    w: &Tensor,
    g: &Tensor,
    kernel: impl FnOnce(&mut [f32], &[f32]) -> candle_core::Result<()>,
) -> candle_core::Result<()> {
    w.inplace_op2(g, &Update(RefCell::new(Some(Box::new(kernel)))))
}

/// Runs `f(slice)` on the state tensor `t` opened for writing in place.
fn open(
    t: &Tensor,
    f: impl FnOnce(&mut [f32]) -> candle_core::Result<()>,
) -> candle_core::Result<()> {
    t.inplace_op1(&Open(RefCell::new(Some(Box::new(f)))))
}

struct Update<'a>(RefCell<Option<Box<Kernel<'a>>>>);

impl InplaceOp2 for Update<'_> {
    fn name(&self) -> &'static str {
        "fused-update"
    }

    fn cpu_fwd(
        &self,
        w: &mut CpuStorage,
        lw: &Layout,
        g: &CpuStorage,
        lg: &Layout,
    ) -> candle_core::Result<()> {
        let w = slice_mut(w, lw)?;
        let g = &g.as_slice::<f32>()?[offsets(lg)?];
        if w.len() != g.len() {
            candle_core::bail!("gradient has {} elements, parameter {}", g.len(), w.len());
        }
        let kernel = self.0.borrow_mut().take();
        kernel.map_or(Ok(()), |k| k(w, g))
    }
}

struct Open<'a>(RefCell<Option<Box<Opened<'a>>>>);

impl InplaceOp1 for Open<'_> {
    fn name(&self) -> &'static str {
        "fused-open"
    }

    fn cpu_fwd(&self, s: &mut CpuStorage, l: &Layout) -> candle_core::Result<()> {
        let s = slice_mut(s, l)?;
        let f = self.0.borrow_mut().take();
        f.map_or(Ok(()), |f| f(s))
    }
}

fn offsets(l: &Layout) -> candle_core::Result<std::ops::Range<usize>> {
    match l.contiguous_offsets() {
        Some((start, end)) => Ok(start..end),
        None => candle_core::bail!("the fused update needs contiguous tensors"),
    }
}

fn slice_mut<'a>(s: &'a mut CpuStorage, l: &Layout) -> candle_core::Result<&'a mut [f32]> {
    let range = offsets(l)?;
    match s {
        CpuStorage::F32(v) => Ok(&mut v[range]),
        _ => candle_core::bail!("the fused update needs f32 tensors"),
    }
}
