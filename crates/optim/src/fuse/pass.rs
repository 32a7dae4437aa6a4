//! The in-place passes of a fused step.
//!
//! A parameter whose chain has no reduction takes one pass: read `g`, `w` and
//! the state once, write `w` and the state once. Each reduction that applies
//! to it adds a pass before, which runs the chain up to the reduction and
//! sums the squares it needs. A stateful update advances its state in the
//! first pass that reaches it; later passes read the advanced state back, and
//! skip whatever the update's output does not read (LAMB's second pass reads
//! `m`, `v` and `w`, not `g`). Global reductions (a clip over all parameters)
//! finish their pass over every parameter before any parameter's last pass.
//!
//! A pass is one loop over the parameter ([`super::Kernel`]), cut into
//! chunks of [`CHUNK`] elements run on rayon's pool. Norms are summed in f64
//! in [`LANES`] fixed lanes per chunk and the chunks added in order, so no
//! result depends on the number of threads.

use std::cell::RefCell;

use candle_core::Tensor;
use rayon::prelude::*;

use super::kernel::{Kernel, Pass, Stage, StageVisitor, Stages};
use super::open::open;
use super::{Member, Plan, Role};
use crate::{Error, Result};

/// Elements per rayon task: large enough to amortise scheduling, small
/// enough to split a ResNet-50 layer across threads.
pub(crate) const CHUNK: usize = 1 << 15;

/// Lanes of the f64 norm accumulators: wide enough to vectorise, fixed so
/// that the sums do not depend on the thread count.
const LANES: usize = 16;

/// What a pass does with the updates it computes.
#[derive(Clone, Copy)]
pub(crate) enum Finish {
    /// `w ← w + u`.
    Apply,
    /// Sum the squares of the measure (and of `w` if `weight`).
    Measure { weight: bool },
}

/// A chain's kernel as the driver calls it: one pass over one parameter.
pub(crate) trait Run: Send + Sync {
    /// Runs `pass` over `w` (in place) with the gradient `g`; returns
    /// `(‖w‖², ‖measure‖²)` for a norm pass, zeros otherwise.
    fn run(&self, pass: Pass<'_>, w: &Tensor, g: &Tensor, finish: Finish) -> Result<(f64, f64)>;
}

impl<K: Kernel> Run for K {
    fn run(&self, pass: Pass<'_>, w: &Tensor, g: &Tensor, finish: Finish) -> Result<(f64, f64)> {
        match finish {
            Finish::Apply => self.stages(
                pass,
                Runner::<false> {
                    w,
                    g,
                    weight: false,
                },
            ),
            // Only chains with a reduction compile a norm loop.
            Finish::Measure { weight } if K::REDUCES => {
                self.stages(pass, Runner::<true> { w, g, weight })
            }
            Finish::Measure { .. } => unreachable!("norm passes end at a reduction"),
        }
    }
}

/// Runs the pass whose stages it visits.
struct Runner<'t, const MEASURE: bool> {
    w: &'t Tensor,
    g: &'t Tensor,
    weight: bool,
}

impl<'p, const MEASURE: bool> StageVisitor<'p> for Runner<'_, MEASURE> {
    type Out = Result<(f64, f64)>;

    fn visit<S: Stages<'p>>(self, stages: S) -> Self::Out {
        let mut tensors = Vec::new();
        stages.tensors(&mut tensors);
        let weight = self.weight;
        // The loop over one chunk is all that is compiled per chain and
        // pass; the threading around it is not.
        let chunk = |w: &mut [f32], g: &[f32], state: Vec<&mut [f32]>| {
            let stages = stages.bind(&mut state.into_iter());
            if MEASURE {
                measure(stages, w, g, weight)
            } else {
                wide(
                    #[inline(always)]
                    || apply_loop(stages, w, g),
                );
                (0.0, 0.0)
            }
        };
        let mut sums = (0.0, 0.0);
        open(
            self.w,
            self.g,
            &tensors,
            &mut |w: &mut [f32], g: &[f32], state: Vec<&mut [f32]>| {
                sums = execute(w, g, state, &chunk);
                Ok(())
            },
        )?;
        Ok(sums)
    }
}

/// One chunk of a pass: `(w, g, state slices) -> (‖w‖², ‖measure‖²)`.
type Chunk<'c> = dyn Fn(&mut [f32], &[f32], Vec<&mut [f32]>) -> (f64, f64) + Sync + 'c;

/// The plan's passes, for the parameters `params` (`(name, w, contiguous
/// g)`, in the plan's order).
struct Passes<'p> {
    plan: &'p Plan,
    kernel: &'p dyn Run,
    params: &'p [(&'p str, &'p Tensor, Tensor)],
    /// Per parameter and member: a reduction's factor, once known.
    factors: Vec<Vec<Option<f64>>>,
    /// Per parameter: how many leading members have advanced their state.
    committed: Vec<usize>,
}

/// Runs one fused step: every parameter updated in place, every state
/// tensor advanced.
///
/// # Errors
/// A candle error if a tensor is not a contiguous f32 CPU tensor or a state
/// tensor is not shaped like its parameter.
pub(crate) fn run(plan: &Plan, params: &[(&str, &Tensor, Tensor)]) -> Result<()> {
    let Some(kernel) = plan.kernel.as_deref() else {
        return Err(Error::NotFusable {
            transform: "a plan without a kernel",
        });
    };
    let members = plan.members.as_slice();
    let mut passes = Passes {
        plan,
        kernel,
        params,
        factors: vec![vec![None; members.len()]; params.len()],
        committed: vec![0; params.len()],
    };
    for (j, member) in members.iter().enumerate() {
        let Role::Reduce(r) = &member.role else {
            continue;
        };
        if !r.global() {
            continue;
        }
        let (mut w_sq, mut x_sq) = (0.0, 0.0);
        for p in (0..params.len()).filter(|&p| member.applies[p].is_some()) {
            passes.factors_before(p, j)?;
            let (a, b) = passes.pass(p, j)?;
            (w_sq, x_sq) = (w_sq + a, x_sq + b);
        }
        let factor = r.factor(w_sq, x_sq);
        for p in (0..params.len()).filter(|&p| member.applies[p].is_some()) {
            passes.factors[p][j] = Some(factor);
        }
    }
    for p in 0..params.len() {
        passes.factors_before(p, members.len())?;
        passes.pass(p, members.len())?;
    }
    Ok(())
}

impl Passes<'_> {
    fn members(&self) -> &[Member] {
        &self.plan.members
    }

    /// The factors of the per-parameter reductions before member `end` that
    /// apply to parameter `p`, each from a pass up to it.
    fn factors_before(&mut self, p: usize, end: usize) -> Result<()> {
        for j in 0..end {
            let member = &self.plan.members[j];
            if let Role::Reduce(r) = &member.role
                && !r.global()
                && member.applies[p].is_some()
                && self.factors[p][j].is_none()
            {
                let (w_sq, x_sq) = self.pass(p, j)?;
                self.factors[p][j] = Some(r.factor(w_sq, x_sq));
            }
        }
        Ok(())
    }

    /// One pass over parameter `p` through the members before `end`: then
    /// the norms for member `end` (a reduction), or, at the end of the
    /// chain, `w ← w + u`. Returns the squared norms (0 for the last pass).
    fn pass(&mut self, p: usize, end: usize) -> Result<(f64, f64)> {
        let committed = self.committed[p];
        // A replayed update that ignores its input makes everything before
        // it dead: start there (the loop then never reads `g`).
        let start = (0..end)
            .rev()
            .find(|&j| {
                let member = &self.members()[j];
                j < committed
                    && member.applies[p].is_some()
                    && matches!(
                        member.role,
                        Role::Map {
                            stateful: true,
                            replay_reads_update: false
                        }
                    )
            })
            .unwrap_or(0);
        let finish = match self.members().get(end).map(|m| &m.role) {
            None => Finish::Apply,
            Some(Role::Reduce(r)) => Finish::Measure {
                weight: r.reads_weight(),
            },
            Some(Role::Map { .. }) => unreachable!("norm passes end at a reduction"),
        };
        let pass = Pass {
            plan: self.plan,
            param: p,
            start,
            end,
            committed,
            factors: &self.factors[p],
        };
        let (_, w, g) = &self.params[p];
        let sums = self.kernel.run(pass, w, g, finish)?;
        self.committed[p] = committed.max(end);
        Ok(sums)
    }
}

/// Runs `chunk` over a parameter, chunk by chunk in parallel; returns the
/// squared norms, chunk sums added in chunk order.
fn execute(w: &mut [f32], g: &[f32], state: Vec<&mut [f32]>, chunk: &Chunk<'_>) -> (f64, f64) {
    let chunks = w.len().div_ceil(CHUNK);
    let mut per_chunk: Vec<Vec<&mut [f32]>> = (0..chunks)
        .map(|_| Vec::with_capacity(state.len()))
        .collect();
    for s in state {
        for (c, piece) in s.chunks_mut(CHUNK).enumerate() {
            per_chunk[c].push(piece);
        }
    }
    let partial: Vec<(f64, f64)> = w
        .par_chunks_mut(CHUNK)
        .zip(g.par_chunks(CHUNK))
        .zip(per_chunk)
        .map(|((w, g), state)| chunk(w, g, state))
        .collect();
    partial
        .iter()
        .fold((0.0, 0.0), |(a, b), (x, y)| (a + x, b + y))
}

/// The pass that applies the update: `w ← w + u`, as candle's `w + u`.
#[inline(always)]
fn apply_loop<S: Stage>(stages: S, w: &mut [f32], g: &[f32]) {
    let n = w.len();
    let g = &g[..n];
    let mut stages = stages.trim(n);
    for i in 0..n {
        let u = stages.step::<false>(i, g[i], w[i]);
        w[i] += u;
    }
}

thread_local! {
    /// A chunk's measures, between the loop that computes them and the sums.
    static MEASURES: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// A norm pass over one chunk: the measures into a scratch buffer (in
/// cache), then their squares and `w`'s summed in clean loops of their own.
fn measure<S: Stage>(stages: S, w: &[f32], g: &[f32], weight: bool) -> (f64, f64) {
    let mut stages = Some(stages);
    with_scratch(w.len(), &mut |x| {
        if let Some(stages) = stages.take() {
            wide(
                #[inline(always)]
                || measure_loop(stages, w, g, x),
            );
        }
    });
    with_scratch(w.len(), &mut |x| {
        let w_sq = if weight { sum_squares(w) } else { 0.0 };
        (w_sq, sum_squares(x))
    })
}

/// Runs `f` on this thread's scratch buffer of `n` elements.
fn with_scratch<T>(n: usize, f: &mut dyn FnMut(&mut [f32]) -> T) -> T {
    MEASURES.with_borrow_mut(|buf| {
        if buf.len() < n {
            buf.resize(n, 0.0);
        }
        f(&mut buf[..n])
    })
}

#[inline(always)]
fn measure_loop<S: Stage>(stages: S, w: &[f32], g: &[f32], x: &mut [f32]) {
    let n = x.len();
    let (w, g) = (&w[..n], &g[..n]);
    let mut stages = stages.trim(n);
    for i in 0..n {
        x[i] = stages.step::<true>(i, g[i], w[i]);
    }
}

/// `Σ a²` in f64: element `i` into lane `i mod LANES`, lanes added in order,
/// so the result does not depend on the SIMD width.
fn sum_squares(a: &[f32]) -> f64 {
    let mut sum = 0.0;
    wide(
        #[inline(always)]
        || sum = lanes_of_squares(a),
    );
    sum
}

/// [`sum_squares`]'s loop: the lanes a local array (in registers), one
/// clean reduction LLVM vectorises.
#[inline(always)]
fn lanes_of_squares(a: &[f32]) -> f64 {
    let mut lanes = [0f64; LANES];
    let blocks = a.chunks_exact(LANES);
    let rest = blocks.remainder();
    for block in blocks {
        for i in 0..LANES {
            let x = f64::from(block[i]);
            lanes[i] += x * x;
        }
    }
    for (i, &x) in rest.iter().enumerate() {
        let x = f64::from(x);
        lanes[i] += x * x;
    }
    lanes.iter().sum()
}

/// Runs `f` compiled for AVX-512 or AVX2 where the CPU has them (detected at
/// run time; the default x86-64 target has only SSE2). The loops inside are
/// the same IEEE operations, four to sixteen lanes at a time, so the results
/// do not depend on the path taken.
#[inline(always)]
pub(crate) fn wide(f: impl FnOnce()) {
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
