//! The one matrix product behind the dense and convolution kernels: `gemm`
//! over strided operands, single-threaded or split over the threads.

use candle_core::WithDType;
use gemm::{Parallelism, gemm};
use rayon::prelude::*;

/// Row-major matrix operand for [`matmul`]: pointer, row stride, column stride.
#[derive(Clone, Copy)]
pub(super) struct Mat<T> {
    ptr: *const T,
    rs: isize,
    cs: isize,
}

impl<T> Mat<T> {
    /// A contiguous row-major `(rows, cols)` matrix (`cols` is the row stride).
    pub(super) fn rows(data: &[T], cols: usize) -> Self {
        Self {
            ptr: data.as_ptr(),
            rs: cols as isize,
            cs: 1,
        }
    }

    /// The transpose of a contiguous row-major matrix with `cols` columns.
    pub(super) fn transposed(data: &[T], cols: usize) -> Self {
        Self {
            ptr: data.as_ptr(),
            rs: 1,
            cs: cols as isize,
        }
    }

    /// The operand from row `r` and column `c` on (same strides).
    fn offset(self, r: usize, c: usize) -> Self {
        Self {
            ptr: self
                .ptr
                .wrapping_offset(r as isize * self.rs + c as isize * self.cs),
            ..self
        }
    }
}

/// `dst (m × n) (+)= lhs (m × k) · rhs (k × n)`, `dst` contiguous row-major;
/// accumulates when `accumulate`.
///
/// # Panics
/// If `dst` is shorter than `m·n` (the operands are checked by the callers'
/// slicing, which panics on a short buffer before any pointer is taken).
pub(super) fn matmul<T: WithDType>(
    [m, n, k]: [usize; 3],
    dst: &mut [T],
    lhs: Mat<T>,
    rhs: Mat<T>,
    accumulate: bool,
    par: Parallelism,
) {
    assert!(dst.len() >= m * n, "matmul: destination too short");
    // SAFETY: every caller takes `lhs` from a slice of at least m·k elements
    // and `rhs` from one of at least k·n, laid out with the given strides, and
    // `dst` holds m·n elements (checked above); the slices outlive the call and
    // `dst` does not alias the operands (it is a distinct `&mut`).
    unsafe { gemm_raw([m, n, k], dst.as_mut_ptr(), n, lhs, rhs, accumulate, par) }
}

/// Products below this many multiply-adds stay on one thread (a rayon
/// hand-off costs a few microseconds; this is about 20 µs of one core's work).
const SPLIT_MACS: usize = 1 << 21;

/// Fewest output rows or columns per thread: below this `gemm`'s register
/// tiles (up to 48 × 8 with AVX-512) run mostly empty.
const MIN_PART: usize = 16;

/// [`matmul`] threaded by splitting the *output*: the longer of its `m` rows
/// or `n` columns is cut into one even part per thread and each part is its
/// own single-threaded product; `post(row)` then runs on each of the part's
/// row segments while they are still in cache (an activation, say).
///
/// For the dense layers' shapes (batch 32–512, 10–784 features) this beats
/// `gemm`'s own threading, which can even run slower than one thread when
/// `m` is a small batch (`crates/bench/PERF.md`, entry 16).
///
/// # Panics
/// As [`matmul`].
pub(super) fn matmul_split<T: WithDType>(
    [m, n, k]: [usize; 3],
    dst: &mut [T],
    lhs: Mat<T>,
    rhs: Mat<T>,
    accumulate: bool,
    post: impl Fn(&mut [T]) + Sync,
) {
    assert!(dst.len() >= m * n, "matmul: destination too short");
    // SAFETY: `dst` holds m·n initialised elements (asserted above); the
    // operands are as `matmul` requires of its callers.
    unsafe { split([m, n, k], dst.as_mut_ptr(), lhs, rhs, accumulate, post) }
}

/// [`matmul_split`] into a new `m × n` buffer, written once by `gemm` (no
/// zeroing pass first).
pub(super) fn matmul_split_new<T: WithDType>(
    [m, n, k]: [usize; 3],
    lhs: Mat<T>,
    rhs: Mat<T>,
) -> Vec<T> {
    let mut dst = Vec::with_capacity(m * n);
    // SAFETY: the buffer has room for m·n elements; with `accumulate` false
    // `gemm` only writes the destination (it never reads it), and the parts
    // cover all m·n elements, so every one is initialised before `set_len`.
    unsafe {
        split([m, n, k], dst.as_mut_ptr(), lhs, rhs, false, |_| {});
        dst.set_len(m * n);
    }
    dst
}

/// The body of [`matmul_split`] on a raw destination.
///
/// # Safety
/// `dst` must address `m·n` elements that no one else accesses during the
/// call, initialised if `accumulate`; `lhs` and `rhs` as in [`gemm_raw`].
unsafe fn split<T: WithDType>(
    [m, n, k]: [usize; 3],
    dst: *mut T,
    lhs: Mat<T>,
    rhs: Mat<T>,
    accumulate: bool,
    post: impl Fn(&mut [T]) + Sync,
) {
    let threads = candle_core::utils::get_num_threads();
    let long = m.max(n);
    let parts = if m * n * k < SPLIT_MACS {
        1
    } else {
        threads.min(long / MIN_PART).max(1)
    };
    let per = long.div_ceil(parts.max(1)).max(1);
    let by_rows = m >= n;
    let out = Out(dst);
    let part = |i: usize| {
        let lo = (i * per).min(long);
        let len = per.min(long - lo);
        let (pm, pn, start, lhs, rhs) = if by_rows {
            (len, n, lo * n, lhs.offset(lo, 0), rhs)
        } else {
            (m, len, lo, lhs, rhs.offset(0, lo))
        };
        // SAFETY: part `i` covers rows (or columns) `[lo, lo + len)` of the
        // m × n destination (this function's contract); the parts are
        // disjoint, so no two threads touch one element. `lhs` and `rhs` are
        // offset to the part's rows or columns inside the callers' operands,
        // and the destination aliases neither. `post` sees the part's rows
        // after `gemm` has written them.
        unsafe {
            let ptr = out.at(start);
            gemm_raw([pm, pn, k], ptr, n, lhs, rhs, accumulate, Parallelism::None);
            for r in 0..pm {
                post(std::slice::from_raw_parts_mut(ptr.add(r * n), pn));
            }
        }
    };
    if parts == 1 {
        part(0);
    } else {
        (0..parts).into_par_iter().for_each(part);
    }
}

/// A destination pointer shared by threads writing disjoint parts.
#[derive(Clone, Copy)]
struct Out<T>(*mut T);

// SAFETY: `matmul_split` hands each thread a disjoint part of the buffer.
unsafe impl<T: Send> Send for Out<T> {}
// SAFETY: as above; the pointer itself is only read.
unsafe impl<T: Send> Sync for Out<T> {}

impl<T> Out<T> {
    /// The pointer `start` elements in (a method, so closures capture the
    /// whole `Send` wrapper rather than its raw field).
    fn at(self, start: usize) -> *mut T {
        self.0.wrapping_add(start)
    }
}

// SAFETY (for `Mat` crossing threads): `Mat` is a read-only view of a slice
// that outlives the parallel section in `matmul_split`.
unsafe impl<T: Sync> Send for Mat<T> {}
// SAFETY: as above.
unsafe impl<T: Sync> Sync for Mat<T> {}

/// `gemm` on an `m × n` destination with row stride `dst_rs`.
///
/// # Safety
/// `dst` must address an `m × n` block with row stride `dst_rs` that no one
/// else accesses during the call; `lhs` an `m × k` and `rhs` a `k × n`
/// readable block with their strides.
unsafe fn gemm_raw<T: WithDType>(
    [m, n, k]: [usize; 3],
    dst: *mut T,
    dst_rs: usize,
    lhs: Mat<T>,
    rhs: Mat<T>,
    accumulate: bool,
    par: Parallelism,
) {
    // SAFETY: forwarded from this function's contract.
    unsafe {
        gemm(
            m,
            n,
            k,
            dst,
            1,
            dst_rs as isize,
            accumulate,
            lhs.ptr,
            lhs.cs,
            lhs.rs,
            rhs.ptr,
            rhs.cs,
            rhs.rs,
            T::one(),
            T::one(),
            false,
            false,
            false,
            par,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `lhs · rhs` by the definition, in f64.
    fn naive(m: usize, n: usize, k: usize, a: &[f64], b: &[f64]) -> Vec<f64> {
        let mut out = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                out[i * n + j] = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
            }
        }
        out
    }

    #[test]
    fn split_products_equal_the_definition_with_and_without_accumulating() {
        // Shapes split by rows, by columns, too small to split, and with a
        // remainder part; `post` must see every element exactly once.
        for (m, n, k) in [(3, 5, 7), (300, 40, 200), (40, 300, 200), (129, 129, 129)] {
            let a: Vec<f64> = (0..m * k).map(|i| ((i * 7 % 13) as f64) - 6.0).collect();
            let b: Vec<f64> = (0..k * n).map(|i| ((i * 5 % 11) as f64) - 5.0).collect();
            let want = naive(m, n, k, &a, &b);
            let fresh = matmul_split_new([m, n, k], Mat::rows(&a, k), Mat::rows(&b, n));
            assert_eq!(fresh, want, "{m}×{n}×{k} into a new buffer");
            for accumulate in [false, true] {
                let mut dst = vec![1.0; m * n];
                let seen = std::sync::atomic::AtomicUsize::new(0);
                matmul_split(
                    [m, n, k],
                    &mut dst,
                    Mat::rows(&a, k),
                    Mat::rows(&b, n),
                    accumulate,
                    |row| {
                        seen.fetch_add(row.len(), std::sync::atomic::Ordering::Relaxed);
                        row.iter_mut().for_each(|v| *v *= 2.0);
                    },
                );
                assert_eq!(seen.into_inner(), m * n, "{m}×{n}×{k}");
                let base = if accumulate { 1.0 } else { 0.0 };
                for (got, w) in dst.iter().zip(&want) {
                    // Small integers: exact in any summation order.
                    assert_eq!(*got, 2.0 * (w + base), "{m}×{n}×{k}");
                }
            }
        }
    }

    #[test]
    fn transposed_operands_split_by_columns() {
        // dst (m × n) = aᵀ · bᵀ with a stored (k × m) and b stored (n × k).
        let (m, n, k) = (20, 200, 90);
        let a: Vec<f64> = (0..k * m).map(|i| ((i % 17) as f64) - 8.0).collect();
        let b: Vec<f64> = (0..n * k).map(|i| ((i % 19) as f64) - 9.0).collect();
        let at: Vec<f64> = (0..m * k).map(|i| a[(i % k) * m + i / k]).collect();
        let bt: Vec<f64> = (0..k * n).map(|i| b[(i % n) * k + i / n]).collect();
        let mut dst = vec![0.0; m * n];
        let (lhs, rhs) = (Mat::transposed(&a, m), Mat::transposed(&b, k));
        matmul_split([m, n, k], &mut dst, lhs, rhs, false, |_| {});
        assert_eq!(dst, naive(m, n, k, &at, &bt));
    }
}
