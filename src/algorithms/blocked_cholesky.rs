//! A blocked Cholesky factorisation for STABLE at research sizes.
//!
//! nalgebra's `Cholesky::new` is a left-looking column-`axpy` loop: every column re-reads all the columns before it,
//! so at $d = 1000$ it runs at the speed of memory (≈ 55 ms, about 6 GFlop/s on the 2-core test VM). The right-looking
//! blocked form below does the same $d^3/3$ flops, but almost all of them as matrix–matrix products on panels of
//! [`BLOCK`] columns (nalgebra's `gemm`, i.e. `matrixmultiply`), which keep the panel in cache. The factor is that of
//! nalgebra up to rounding (test `psd_projection::blocked_cholesky_equals_nalgebra`); it is packed into a
//! [`nalgebra::Cholesky`] so that the solves are nalgebra's. STABLE uses it only for $d_l\ge$
//! [`super::psd_projection::LANCZOS_MIN_DIM`]: every registered claim keeps nalgebra's factor and its bits.

use crate::linalg::Matrix;
use nalgebra::{Cholesky, Dyn};

/// Panel width of [`cholesky`].
pub const BLOCK: usize = 64;

/// `col[dst][rows] −= f · col[src][rows]` on the column-major data of an `n`-row matrix (`src < dst`): slices, so the
/// loop vectorises without bounds checks.
fn axpy_column(data: &mut [f64], n: usize, dst: usize, src: usize, rows: std::ops::Range<usize>, f: f64) {
    let (left, right) = data.split_at_mut(dst * n);
    let s = &left[src * n + rows.start..src * n + rows.end];
    let d = &mut right[rows.start..rows.end];
    for (x, y) in d.iter_mut().zip(s) {
        *x -= f * y;
    }
}

/// Unblocked (left-looking) Cholesky of the `b × b` diagonal block at `(k, k)`, and the solve of the panel below it,
/// $L_{21} = A_{21}L_{11}^{-\top}$, in the same column sweep: column $j$ of the block column is updated by the
/// columns before it from row $j$ down to row $n$. Reads the lower triangle only; `false` if a pivot is not positive
/// (or not finite).
fn factor_block_column(m: &mut Matrix, k: usize, b: usize) -> bool {
    let n = m.nrows();
    let data = m.as_mut_slice();
    for j in k..k + b {
        for p in k..j {
            let f = data[p * n + j];
            if f != 0.0 {
                axpy_column(data, n, j, p, j..n, f);
            }
        }
        let diag = data[j * n + j];
        if !(diag > 0.0 && diag.is_finite()) {
            return false;
        }
        let s = diag.sqrt();
        data[j * n + j] = s;
        for x in &mut data[j * n + j + 1..(j + 1) * n] {
            *x /= s;
        }
    }
    true
}

/// Cholesky factor $LL^\top$ of a symmetric matrix (its lower triangle is read), blocked by [`BLOCK`] columns.
/// `None` when the matrix is not numerically positive definite (a non-positive pivot), as `Matrix::cholesky`.
pub fn cholesky(mut m: Matrix) -> Option<Cholesky<f64, Dyn>> {
    let n = m.nrows();
    if m.ncols() != n {
        return None;
    }
    let mut k = 0;
    while k < n {
        let b = BLOCK.min(n - k);
        if !factor_block_column(&mut m, k, b) {
            return None;
        }
        let rest = n - k - b;
        if rest > 0 {
            // Trailing update of the lower triangle, one block column at a time: A22 −= L21 L21ᵀ.
            let panel = m.view((k + b, k), (rest, b)).clone_owned();
            let mut j = 0;
            while j < rest {
                let w = BLOCK.min(rest - j);
                let top = panel.rows(j, w).transpose();
                let mut target = m.view_mut((k + b + j, k + b + j), (rest - j, w));
                target.gemm(-1.0, &panel.rows(j, rest - j), &top, 1.0);
                j += w;
            }
        }
        k += b;
    }
    Some(Cholesky::pack_dirty(m))
}
