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

/// Unblocked Cholesky of the `b × b` diagonal block at `(k, k)`, reading its lower triangle only; `false` if a pivot
/// is not positive (or not finite).
fn factor_diagonal_block(m: &mut Matrix, k: usize, b: usize) -> bool {
    for j in k..k + b {
        for p in k..j {
            let f = m[(j, p)];
            if f != 0.0 {
                for i in j..k + b {
                    m[(i, j)] -= f * m[(i, p)];
                }
            }
        }
        let diag = m[(j, j)];
        if !(diag > 0.0 && diag.is_finite()) {
            return false;
        }
        let s = diag.sqrt();
        m[(j, j)] = s;
        for i in j + 1..k + b {
            m[(i, j)] /= s;
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
    let mut panel = Matrix::zeros(0, 0);
    let mut k = 0;
    while k < n {
        let b = BLOCK.min(n - k);
        if !factor_diagonal_block(&mut m, k, b) {
            return None;
        }
        let rest = n - k - b;
        if rest > 0 {
            // Panel L21 = A21 L11^{-T}, column by column (contiguous column-major axpys).
            for j in 0..b {
                let c = k + j;
                for p in 0..j {
                    let f = m[(c, k + p)];
                    if f != 0.0 {
                        for i in k + b..n {
                            m[(i, c)] -= f * m[(i, k + p)];
                        }
                    }
                }
                let s = m[(c, c)];
                for i in k + b..n {
                    m[(i, c)] /= s;
                }
            }
            // Trailing update of the lower triangle, one block column at a time: A22 −= L21 L21ᵀ.
            panel = m.view((k + b, k), (rest, b)).clone_owned();
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
    drop(panel);
    Some(Cholesky::pack_dirty(m))
}
