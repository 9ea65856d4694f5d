//! Seeded generators of the matrices the families are built from.

use crate::linalg::{Matrix, Vector};
use rand::RngExt;
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;

/// `rows × cols` matrix of iid standard normals, generated column-major.
pub fn gaussian_matrix(rng: &mut ChaCha8Rng, rows: usize, cols: usize) -> Matrix {
    Matrix::from_fn(rows, cols, |_, _| rng.sample::<f64, _>(StandardNormal))
}

/// Vector of iid standard normals.
pub fn gaussian_vector(rng: &mut ChaCha8Rng, n: usize) -> Vector {
    Vector::from_fn(n, |_, _| rng.sample::<f64, _>(StandardNormal))
}

/// A random orthogonal `n × n` matrix (Q factor of a Gaussian matrix).
pub fn orthogonal(rng: &mut ChaCha8Rng, n: usize) -> Matrix {
    gaussian_matrix(rng, n, n).qr().q()
}

/// Symmetric positive definite matrix with eigenvalues geometrically spaced from `lo` to `hi` and random
/// eigenvectors. The smallest and largest eigenvalues are exactly `lo` and `hi` (up to rounding).
pub fn spd_with_spectrum(rng: &mut ChaCha8Rng, n: usize, lo: f64, hi: f64) -> Matrix {
    let u = orthogonal(rng, n);
    let eig = Vector::from_fn(n, |i, _| {
        if n == 1 {
            lo
        } else {
            lo * (hi / lo).powf(i as f64 / (n - 1) as f64)
        }
    });
    let m = &u * Matrix::from_diagonal(&eig) * u.transpose();
    (&m + m.transpose()) * 0.5
}
