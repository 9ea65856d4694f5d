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
/// eigenvectors. The smallest and largest eigenvalues are exactly `lo` and `hi` (up to rounding). A test-data
/// generator: `0 < lo <= hi` finite is the caller's to ensure (otherwise the result is not positive definite).
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

/// A symmetric positive definite matrix $U\Lambda U^\top$ kept in factored form, with $U = P_1\cdots P_K$ a product of
/// $K$ random Householder reflections $P_i = I - 2v_iv_i^\top$ ($v_i$ uniform on the sphere) and $\Lambda$ diagonal.
///
/// The large-dimension substitute for [`spd_with_spectrum`], whose Haar eigenvectors cost a dense QR
/// ($O(n^3)$ with a large constant in nalgebra's unblocked code: seconds at $n = 1000$, half a minute at $n = 2000$).
/// Here forming the matrix costs $O(Kn^2)$ and a solve with $m$ right-hand sides $O(Knm)$, with the spectrum exact
/// by construction. The eigenvectors are $U e_i$: $U - I$ has rank $\le K$, so the matrix is dense but is a diagonal
/// plus a rank-$2K$ term; every family quantity built from Gaussian couplings has a rotation-invariant law in
/// $\phi$-space, so only the spectrum matters to the algorithms.
#[derive(Debug, Clone)]
pub struct ReflectedSpd {
    /// Unit reflection vectors $v_1,\dots,v_K$.
    pub reflections: Vec<Vector>,
    /// The eigenvalues (diagonal of $\Lambda$).
    pub eigenvalues: Vector,
}

/// Number of reflections in [`ReflectedSpd::random`].
pub const REFLECTIONS: usize = 16;

impl ReflectedSpd {
    /// Eigenvalues geometrically spaced from `lo` to `hi` (as [`spd_with_spectrum`]), [`REFLECTIONS`] reflections.
    pub fn random(rng: &mut ChaCha8Rng, n: usize, lo: f64, hi: f64) -> Self {
        let eigenvalues = Vector::from_fn(n, |i, _| {
            if n == 1 {
                lo
            } else {
                lo * (hi / lo).powf(i as f64 / (n - 1) as f64)
            }
        });
        let reflections = (0..REFLECTIONS)
            .map(|_| {
                let v = gaussian_vector(rng, n);
                let norm = v.norm();
                v / norm
            })
            .collect();
        ReflectedSpd {
            reflections,
            eigenvalues,
        }
    }

    /// The dense matrix $U\Lambda U^\top$, by two-sided reflections of $\Lambda$: $O(Kn^2)$.
    pub fn dense(&self) -> Matrix {
        let n = self.eigenvalues.len();
        let mut a = Matrix::from_diagonal(&self.eigenvalues);
        let mut w = Vector::zeros(n);
        // U Λ Uᵀ = P_1(…(P_K Λ P_K)…)P_1: apply the innermost reflection first.
        for v in self.reflections.iter().rev() {
            // P A P = A − 2 v wᵀ − 2 w vᵀ + 4 (vᵀw) v vᵀ with w = A v (A symmetric, |v| = 1).
            w.gemv(1.0, &a, v, 0.0);
            let alpha = v.dot(&w);
            let (vs, ws) = (v.as_slice(), w.as_slice());
            for (j, col) in a.as_mut_slice().chunks_exact_mut(n).enumerate() {
                // Column j gains v (4α v_j − 2 w_j) − 2 v_j w.
                let (cv, cw) = (4.0 * alpha * vs[j] - 2.0 * ws[j], -2.0 * vs[j]);
                for ((x, vi), wi) in col.iter_mut().zip(vs).zip(ws) {
                    *x += cv * vi + cw * wi;
                }
            }
        }
        crate::linalg::symmetrize(&a)
    }

    /// $x \leftarrow Ux$ (`transpose = false`) or $U^\top x$, column by column: $O(Kn)$ per column.
    fn rotate(&self, x: &mut Matrix, transpose: bool) {
        let mut apply = |v: &Vector| {
            for mut col in x.column_iter_mut() {
                let t = 2.0 * v.dot(&col);
                col.axpy(-t, v, 1.0);
            }
        };
        if transpose {
            self.reflections.iter().for_each(&mut apply);
        } else {
            self.reflections.iter().rev().for_each(&mut apply);
        }
    }

    /// $(U\Lambda U^\top)^{-1} B$: $O(Knm)$ for $m$ columns.
    pub fn solve(&self, b: &Matrix) -> Matrix {
        let mut x = b.clone();
        self.rotate(&mut x, true);
        for (i, mut row) in x.row_iter_mut().enumerate() {
            row /= self.eigenvalues[i];
        }
        self.rotate(&mut x, false);
        x
    }
}
