//! Shared helpers for the integration tests: central finite differences and random points.

#![allow(dead_code)]

use bilevel::Vector;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

/// Central difference of a scalar function along each coordinate. The truncation error is O(h²·f''') and the
/// rounding error O(eps·|f|/h); h = 1e-5 balances them near 1e-10 for the O(1) quantities of the families.
pub fn fd_gradient(f: impl Fn(&Vector) -> f64, x: &Vector, h: f64) -> Vector {
    Vector::from_fn(x.len(), |i, _| {
        let mut xp = x.clone();
        let mut xm = x.clone();
        xp[i] += h;
        xm[i] -= h;
        (f(&xp) - f(&xm)) / (2.0 * h)
    })
}

/// Central difference Jacobian of a vector function: column i is d out / d x_i.
pub fn fd_jacobian(f: impl Fn(&Vector) -> Vector, x: &Vector, h: f64) -> bilevel::Matrix {
    let n_out = f(x).len();
    let mut jac = bilevel::Matrix::zeros(n_out, x.len());
    for i in 0..x.len() {
        let mut xp = x.clone();
        let mut xm = x.clone();
        xp[i] += h;
        xm[i] -= h;
        jac.set_column(i, &((f(&xp) - f(&xm)) / (2.0 * h)));
    }
    jac
}

/// A standard normal vector scaled by `scale`, from a seeded stream.
pub fn random_vector(rng: &mut ChaCha8Rng, n: usize, scale: f64) -> Vector {
    Vector::from_fn(n, |_, _| scale * Distribution::<f64>::sample(&StandardNormal, rng))
}

/// A seeded stream.
pub fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

/// max |a − b| / max(1, max |b|): relative error with an absolute floor near zero.
pub fn rel_err(a: &Vector, b: &Vector) -> f64 {
    (a - b).amax() / b.amax().max(1.0)
}
