//! Dense linear-algebra helpers: the vector and matrix types, checks, spectra.

use crate::error::{BilevelError, Result};
use nalgebra::{DMatrix, DVector};

/// Column vector of `f64`.
pub type Vector = DVector<f64>;
/// Dense matrix of `f64`.
pub type Matrix = DMatrix<f64>;

/// Error unless `v` has length `expected`.
pub fn check_len(what: &str, v: &Vector, expected: usize) -> Result<()> {
    if v.len() != expected {
        return Err(BilevelError::DimensionMismatch {
            what: what.to_string(),
            expected,
            got: v.len(),
        });
    }
    Ok(())
}

/// Error unless every entry of `v` is finite.
pub fn check_finite(what: &str, v: &[f64]) -> Result<()> {
    if v.iter().all(|x| x.is_finite()) {
        Ok(())
    } else {
        Err(BilevelError::NonFinite { what: what.to_string() })
    }
}

/// Error unless `v` has length `expected` and finite entries.
pub fn check_vector(what: &str, v: &Vector, expected: usize) -> Result<()> {
    check_len(what, v, expected)?;
    check_finite(what, v.as_slice())
}

/// Error unless `m` is `rows × cols` with finite entries.
pub fn check_matrix(what: &str, m: &Matrix, rows: usize, cols: usize) -> Result<()> {
    if m.nrows() != rows {
        return Err(BilevelError::DimensionMismatch {
            what: format!("{what} (rows)"),
            expected: rows,
            got: m.nrows(),
        });
    }
    if m.ncols() != cols {
        return Err(BilevelError::DimensionMismatch {
            what: format!("{what} (columns)"),
            expected: cols,
            got: m.ncols(),
        });
    }
    check_finite(what, m.as_slice())
}

/// Smallest and largest eigenvalue of the symmetric part of `m`.
///
/// # Panics
/// When `m` is not square or is empty (nalgebra); [`check_spd`] is the checked form.
pub fn sym_eig_range(m: &Matrix) -> (f64, f64) {
    let s = symmetrize(m);
    let e = s.symmetric_eigenvalues();
    (e.min(), e.max())
}

/// `(m + mᵀ)/2`.
///
/// # Panics
/// When `m` is not square.
pub fn symmetrize(m: &Matrix) -> Matrix {
    (m + m.transpose()) * 0.5
}

/// Error unless `m` is square, finite and symmetric: $\max_{ij}|m_{ij} - m_{ji}| \le 10^{-10}\max(1, \max|m|)$
/// (round-off of a matrix written out in decimal passes; a genuinely non-symmetric matrix does not).
pub fn check_symmetric(what: &str, m: &Matrix) -> Result<()> {
    check_matrix(what, m, m.nrows(), m.nrows())?;
    let scale = m.amax().max(1.0);
    let asym = (m - m.transpose()).amax();
    if asym > 1e-10 * scale {
        return Err(BilevelError::invalid(
            what,
            format!("a non-symmetric matrix (max |m_ij - m_ji| = {asym:e})"),
            "must be symmetric; only the symmetric part of a quadratic form is identifiable, so pass (m + m^T)/2",
        ));
    }
    Ok(())
}

/// Error unless `m` is square, finite, symmetric ([`check_symmetric`]) and positive definite.
pub fn check_spd(what: &str, m: &Matrix) -> Result<()> {
    check_symmetric(what, m)?;
    let (lo, _) = sym_eig_range(m);
    if lo <= 0.0 {
        return Err(BilevelError::NotPositiveDefinite {
            what: what.to_string(),
            min_eig: lo,
        });
    }
    Ok(())
}

/// Largest singular value (spectral norm) of `m`; 0 for an empty matrix.
pub fn spectral_norm(m: &Matrix) -> f64 {
    if m.is_empty() {
        return 0.0;
    }
    m.singular_values().max()
}

/// Solve `a x = b` for symmetric positive definite `a` by Cholesky; a non-square `a` or a `b` with other rows is
/// [`BilevelError::DimensionMismatch`].
pub fn spd_solve(what: &str, a: &Matrix, b: &Matrix) -> Result<Matrix> {
    check_solve_sizes(what, a, b.nrows())?;
    let chol = a.clone().cholesky().ok_or_else(|| BilevelError::NotPositiveDefinite {
        what: what.to_string(),
        min_eig: sym_eig_range(a).0,
    })?;
    Ok(chol.solve(b))
}

/// Solve `a x = b` for symmetric positive definite `a` and a vector right-hand side (sizes checked as
/// [`spd_solve`]).
pub fn spd_solve_vec(what: &str, a: &Matrix, b: &Vector) -> Result<Vector> {
    check_solve_sizes(what, a, b.len())?;
    let chol = a.clone().cholesky().ok_or_else(|| BilevelError::NotPositiveDefinite {
        what: what.to_string(),
        min_eig: sym_eig_range(a).0,
    })?;
    Ok(chol.solve(b))
}

/// Error unless `a` is square, non-empty, and has `rhs_rows` rows.
fn check_solve_sizes(what: &str, a: &Matrix, rhs_rows: usize) -> Result<()> {
    let n = a.nrows();
    for (part, expected, got) in [("columns", n, a.ncols()), ("right-hand side rows", n, rhs_rows)] {
        if expected != got || n == 0 {
            return Err(BilevelError::DimensionMismatch {
                what: format!("{what} ({part})"),
                expected,
                got,
            });
        }
    }
    Ok(())
}
