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
//! Inside a pass, a parameter is cut into chunks of [`CHUNK`] elements, run
//! on rayon's pool, and a chunk into blocks of [`BLOCK`] elements that stay
//! in cache while each update of the chain runs over the block in turn
//! (vectorised interpretation, as in MonetDB/X100 and numexpr: one dynamic
//! call per update per block, a tight loop inside). Norms are summed in f64
//! in [`LANES`] fixed lanes per chunk and the chunks added in order, so no
//! result depends on the number of threads.

use candle_core::Tensor;
use rayon::prelude::*;

use super::elementwise::Kernel;
use super::open::open;
use super::reduction::ReduceKernel;
use super::{Action, Member, Plan};
use crate::Result;

/// Elements per rayon task: large enough to amortise scheduling, small
/// enough to split a ResNet-50 layer across threads.
pub(crate) const CHUNK: usize = 1 << 15;

/// Elements per block: the update `u` and a block of `w`, `g` and every
/// state tensor (5 arrays for Adam, 40 KiB) stay in L1/L2 between updates.
pub(crate) const BLOCK: usize = 2048;

/// Lanes of the f64 norm accumulators: wide enough to vectorise, fixed so
/// that the sums do not depend on the thread count.
const LANES: usize = 16;

const _: () = assert!(CHUNK.is_multiple_of(BLOCK) && BLOCK.is_multiple_of(LANES));

/// One step of a parameter's pass.
enum Op<'p> {
    /// An elementwise update; `replay` if its state was advanced by an earlier pass.
    Map {
        kernel: &'p dyn Kernel,
        replay: bool,
        state: &'p [Tensor],
    },
    /// A reduction's factor, applied.
    Rescale {
        reduction: &'p dyn ReduceKernel,
        factor: f64,
    },
}

/// What a pass does with the update it computed.
#[derive(Clone, Copy)]
enum Finish<'p> {
    /// `w ← w + u`.
    Apply,
    /// Sum `‖w‖²` and `‖measure(u, w)‖²`.
    Measure(&'p dyn ReduceKernel),
}

/// The plan's passes, for the parameters `params` (`(name, w, contiguous
/// g)`, in the plan's order).
struct Passes<'p> {
    members: &'p [Member],
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
    let members = plan.members.as_slice();
    let mut passes = Passes {
        members,
        params,
        factors: vec![vec![None; members.len()]; params.len()],
        committed: vec![0; params.len()],
    };
    for (j, member) in members.iter().enumerate() {
        let Action::Reduce(r) = &member.action else {
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
    /// The factors of the per-parameter reductions before member `end` that
    /// apply to parameter `p`, each from a pass up to it.
    fn factors_before(&mut self, p: usize, end: usize) -> Result<()> {
        let members = self.members;
        for (j, member) in members[..end].iter().enumerate() {
            if let Action::Reduce(r) = &member.action
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
        let members = self.members;
        let mut ops = Vec::with_capacity(end);
        for (j, member) in members[..end].iter().enumerate() {
            let Some(state) = &member.applies[p] else {
                continue;
            };
            match &member.action {
                Action::Map(kernel) => ops.push(Op::Map {
                    kernel: kernel.as_ref(),
                    replay: j < self.committed[p],
                    state,
                }),
                Action::Reduce(reduction) => {
                    let Some(factor) = self.factors[p][j] else {
                        unreachable!("a reduction's factor is known before any later pass")
                    };
                    if factor != 1.0 {
                        ops.push(Op::Rescale {
                            reduction: reduction.as_ref(),
                            factor,
                        });
                    }
                }
            }
        }
        // A replayed update that ignores its input makes everything before
        // it dead: start there, without reading `g`.
        let ignores_input = |op: &Op<'_>| matches!(op, Op::Map { kernel, replay: true, .. } if !kernel.output_reads_update());
        let start = ops.iter().rposition(ignores_input);
        let reads_g = start.is_none();
        let ops = &ops[start.unwrap_or(0)..];
        let finish = match members.get(end).map(|m| &m.action) {
            None => Finish::Apply,
            Some(Action::Reduce(r)) => Finish::Measure(r.as_ref()),
            Some(Action::Map(_)) => unreachable!("norm passes end at a reduction"),
        };
        let state: Vec<&Tensor> = ops
            .iter()
            .flat_map(|op| match op {
                Op::Map { state, .. } => state.iter().collect(),
                Op::Rescale { .. } => Vec::new(),
            })
            .collect();
        let (_, w, g) = &self.params[p];
        let mut sums = (0.0, 0.0);
        open(w, g, &state, |w, g, state| {
            sums = execute(ops, w, g, state, reads_g, finish);
            Ok(())
        })?;
        self.committed[p] = self.committed[p].max(end);
        Ok(sums)
    }
}

/// Runs `ops` over a parameter, chunk by chunk in parallel; returns the
/// squared norms, chunk sums added in chunk order.
fn execute(
    ops: &[Op<'_>],
    w: &mut [f32],
    g: &[f32],
    state: Vec<&mut [f32]>,
    reads_g: bool,
    finish: Finish<'_>,
) -> (f64, f64) {
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
        .map(|((w, g), mut state)| chunk(ops, w, g, &mut state, reads_g, finish))
        .collect();
    partial
        .iter()
        .fold((0.0, 0.0), |(a, b), (x, y)| (a + x, b + y))
}

/// Runs `ops` over one chunk, block by block.
fn chunk(
    ops: &[Op<'_>],
    w: &mut [f32],
    g: &[f32],
    state: &mut [&mut [f32]],
    reads_g: bool,
    finish: Finish<'_>,
) -> (f64, f64) {
    let mut buf = [0f32; BLOCK];
    let (mut w_sq, mut x_sq) = ([0f64; LANES], [0f64; LANES]);
    for start in (0..w.len()).step_by(BLOCK) {
        let at = start..w.len().min(start + BLOCK);
        let u = &mut buf[..at.len()];
        if reads_g {
            u.copy_from_slice(&g[at.clone()]);
        }
        let mut offset = 0;
        for op in ops {
            match *op {
                Op::Map { kernel, replay, .. } => {
                    let n = kernel.state_len();
                    let s = &mut state[offset..offset + n];
                    kernel.run(replay, u, &w[at.clone()], s, at.clone());
                    offset += n;
                }
                Op::Rescale { reduction, factor } => reduction.rescale(u, factor),
            }
        }
        match finish {
            Finish::Apply => add(&mut w[at], u),
            Finish::Measure(r) => {
                r.measure(u, &w[at.clone()]);
                sum_squares(&mut x_sq, u);
                if r.reads_weight() {
                    sum_squares(&mut w_sq, &w[at]);
                }
            }
        }
    }
    (w_sq.iter().sum(), x_sq.iter().sum())
}

/// `w ← w + u`, as candle's `w + u`.
fn add(w: &mut [f32], u: &[f32]) {
    wide(
        #[inline(always)]
        || {
            for (w, u) in w.iter_mut().zip(u) {
                *w += *u;
            }
        },
    );
}

/// Adds `a²` into `acc` in f64: element `i` into lane `i mod LANES` (blocks
/// are whole multiples of `LANES`, so the lane is the index in the chunk),
/// one clean reduction LLVM vectorises.
fn sum_squares(acc: &mut [f64; LANES], a: &[f32]) {
    let mut lanes = *acc;
    wide(
        #[inline(always)]
        || {
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
        },
    );
    *acc = lanes;
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
