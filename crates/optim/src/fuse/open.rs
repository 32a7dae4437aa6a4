//! Opening candle tensors for writing in place: a parameter with its
//! gradient, and any number of state tensors, as f32 slices.

use std::cell::RefCell;

use candle_core::{CpuStorage, InplaceOp1, InplaceOp2, Layout, Tensor};

/// What runs on the opened slices: `(w, g, state)`.
pub(crate) type Body<'a> =
    dyn FnMut(&mut [f32], &[f32], Vec<&mut [f32]>) -> candle_core::Result<()> + 'a;

/// Runs `body(w, g, state)` with the parameter `w` and the `state` tensors
/// open for writing and `g` for reading, each as its contiguous f32 slice.
///
/// # Errors
/// A candle error if a tensor is not a contiguous f32 CPU tensor, or if a
/// state tensor's length differs from the parameter's.
pub(crate) fn open(
    w: &Tensor,
    g: &Tensor,
    state: &[&Tensor],
    mut body: impl FnMut(&mut [f32], &[f32], Vec<&mut [f32]>) -> candle_core::Result<()>,
) -> candle_core::Result<()> {
    with_slices(w, g, |w, g| {
        let len = w.len();
        let body: &mut Body<'_> = &mut body;
        open_rest(state, Vec::with_capacity(state.len()), len, &mut |s| {
            body(w, g, s)
        })
    })
}

/// Opens `rest` one tensor at a time (each inside the previous one's lock),
/// then runs `body` on all the slices.
fn open_rest(
    rest: &[&Tensor],
    opened: Vec<&mut [f32]>,
    len: usize,
    body: &mut dyn FnMut(Vec<&mut [f32]>) -> candle_core::Result<()>,
) -> candle_core::Result<()> {
    let Some((first, rest)) = rest.split_first() else {
        return body(opened);
    };
    with_slice(first, |s| {
        if s.len() != len {
            candle_core::bail!("optimizer state has {} elements, parameter {len}", s.len());
        }
        let mut opened = opened;
        opened.push(s);
        open_rest(rest, opened, len, body)
    })
}

type Kernel<'a> = dyn FnOnce(&mut [f32], &[f32]) -> candle_core::Result<()> + 'a;
type Opened<'a> = dyn FnOnce(&mut [f32]) -> candle_core::Result<()> + 'a;

/// Runs `f(w, g)` on `w` opened for writing in place and `g` for reading.
fn with_slices(
    w: &Tensor,
    g: &Tensor,
    f: impl FnOnce(&mut [f32], &[f32]) -> candle_core::Result<()>,
) -> candle_core::Result<()> {
    w.inplace_op2(g, &Update(RefCell::new(Some(Box::new(f)))))
}

/// Runs `f(slice)` on `t` opened for writing in place.
fn with_slice(
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
