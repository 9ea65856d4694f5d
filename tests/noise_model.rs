//! The low-rank Hessian and cross-derivative noise of `problem::Noisy` (module docs of `problem::noise`): the
//! products apply the same matrix the dense accessors return, the matrices have mean zero and the second moments
//! that the docs state (and that the exact moment recursions use), checked by Monte Carlo against the closed forms.

use crate::common::rng;
use bilevel::families;
use bilevel::families::quadratic::QuadraticSpec;
use bilevel::linalg::{spectral_norm, sym_eig_range};
use bilevel::problem::{Bilevel, Level, NoiseLevels, Noisy, Oracle, Sample};
use bilevel::{Matrix, Vector};
use rand::RngExt;
use rand_distr::StandardNormal;
use std::sync::Arc;

fn noisy(sigma_h: f64, sigma_c: f64) -> Noisy {
    let levels = NoiseLevels {
        hess_fl: sigma_h,
        cross_fl: sigma_c,
        ..NoiseLevels::default()
    };
    Noisy::new(families::build("quadratic", 1).unwrap(), levels).unwrap()
}

fn gaussian_matrix(r: &mut rand_chacha::ChaCha8Rng, n: usize, m: usize) -> Matrix {
    Matrix::from_fn(n, m, |_, _| r.sample::<f64, _>(StandardNormal))
}

/// The quadratic family at `d_u`, `d_l` with Hessian noise `sigma_h` and cross noise `sigma_c`.
fn noisy_at(d_u: usize, d_l: usize, sigma_h: f64, sigma_c: f64) -> Noisy {
    let levels = NoiseLevels {
        hess_fl: sigma_h,
        cross_fl: sigma_c,
        ..NoiseLevels::default()
    };
    let q = QuadraticSpec {
        d_u,
        d_l,
        seed: 1,
        ..Default::default()
    };
    Noisy::new(Arc::new(q.build().unwrap()), levels).unwrap()
}

/// At the default sizes the products take the one-block path ($d_u$, $d_l \le 64$); at (70, 130) the general one
/// (sign words across blocks, $n_u = 2$).
#[test]
fn low_rank_noise_products_apply_the_dense_matrices() {
    for p in [noisy(0.7, 0.4), noisy_at(70, 130, 0.7, 0.4)] {
        products_apply_the_dense_matrices(&p);
    }
}

fn products_apply_the_dense_matrices(p: &Noisy) {
    let d = p.dims();
    let mut o = Oracle::new(p, 3);
    let mut r = rng(11);
    let theta = Vector::from_fn(d.d_u, |_, _| r.sample::<f64, _>(StandardNormal));
    let phi = Vector::from_fn(d.d_l, |_, _| r.sample::<f64, _>(StandardNormal));
    let v = Vector::from_fn(d.d_l, |_, _| r.sample::<f64, _>(StandardNormal));
    let u = Vector::from_fn(d.d_u, |_, _| r.sample::<f64, _>(StandardNormal));
    for _ in 0..20 {
        let s = o.draw(Level::Lower);
        let (e, g) = (p.hess_noise(s), p.cross_noise(s));
        // Structure: E symmetric of rank <= 2 with |E| <= σ_H √(2 d_l) surely; G of rank 1 with |G| = σ_C √d_u.
        assert!((&e - e.transpose()).amax() < 1e-15);
        let (lo, hi) = sym_eig_range(&e);
        assert!(lo.abs().max(hi.abs()) <= 0.7 * (2.0 * d.d_l as f64).sqrt() + 1e-12);
        assert!((spectral_norm(&g) - 0.4 * (d.d_u as f64).sqrt()).abs() < 1e-12);
        assert!(
            e.clone()
                .svd(false, false)
                .singular_values
                .iter()
                .filter(|x| **x > 1e-12)
                .count()
                <= 2
        );
        assert!(
            g.clone()
                .svd(false, false)
                .singular_values
                .iter()
                .filter(|x| **x > 1e-12)
                .count()
                <= 1
        );
        let (mut hv, mut hv0) = (Vector::zeros(d.d_l), Vector::zeros(d.d_l));
        p.hvp_fl(s, &theta, &phi, &v, &mut hv);
        p.hvp_fl(Sample::Exact, &theta, &phi, &v, &mut hv0);
        assert!((&hv - &hv0 - &e * &v).amax() < 1e-13);
        let (mut cw, mut cw0) = (Vector::zeros(d.d_u), Vector::zeros(d.d_u));
        p.cross_fl(s, &theta, &phi, &v, &mut cw);
        p.cross_fl(Sample::Exact, &theta, &phi, &v, &mut cw0);
        assert!((&cw - &cw0 - &g * &v).amax() < 1e-13);
        let (mut ct, mut ct0) = (Vector::zeros(d.d_l), Vector::zeros(d.d_l));
        p.cross_t_fl(s, &theta, &phi, &u, &mut ct);
        p.cross_t_fl(Sample::Exact, &theta, &phi, &u, &mut ct0);
        assert!((&ct - &ct0 - g.transpose() * &u).amax() < 1e-13);
    }
}

/// Monte Carlo mean of `f` over `n` samples with its entrywise standard error.
fn mc_mean(p: &Noisy, n: usize, f: impl Fn(&Matrix, &Matrix) -> Matrix) -> (Matrix, Matrix) {
    let mut o = Oracle::new(p, 17);
    let (mut sum, mut sq): (Option<Matrix>, Option<Matrix>) = (None, None);
    for _ in 0..n {
        let s = o.draw(Level::Lower);
        let x = f(&p.hess_noise(s), &p.cross_noise(s));
        let x2 = x.component_mul(&x);
        sum = Some(sum.map_or(x.clone(), |a| a + &x));
        sq = Some(sq.map_or(x2.clone(), |a| a + &x2));
    }
    let nf = n as f64;
    let mean = sum.unwrap() / nf;
    let var = sq.unwrap() / nf - mean.component_mul(&mean);
    (mean, var.map(|v| (v.max(0.0) / nf).sqrt()))
}

/// |mean − expected| ≤ 5 standard errors entrywise (plus rounding): with ≲ 100 entries a correct model fails with
/// probability below 1e-4.
fn assert_close(what: &str, (mean, se): (Matrix, Matrix), expected: &Matrix) {
    for i in 0..mean.nrows() {
        for j in 0..mean.ncols() {
            let tol = 5.0 * se[(i, j)] + 1e-12;
            assert!(
                (mean[(i, j)] - expected[(i, j)]).abs() <= tol,
                "{what}[{i},{j}]: {} vs {} (tol {tol})",
                mean[(i, j)],
                expected[(i, j)]
            );
        }
    }
}

#[test]
fn low_rank_noise_has_mean_zero_and_the_documented_second_moments() {
    let (sh, sc) = (0.8, 0.6);
    let p = noisy(sh, sc);
    let d = p.dims();
    let (dl, du) = (d.d_l, d.d_u);
    let mut r = rng(5);
    // A non-symmetric M exposes the transpose in E[E M E] = (σ²/d)(Mᵀ + tr(M) I).
    let m = gaussian_matrix(&mut r, dl, dl);
    let nm = gaussian_matrix(&mut r, du, du);
    let n = 40_000;
    assert_close("E[E]", mc_mean(&p, n, |e, _| e.clone()), &Matrix::zeros(dl, dl));
    assert_close("E[G]", mc_mean(&p, n, |_, g| g.clone()), &Matrix::zeros(du, dl));
    let want_eme = (m.transpose() + Matrix::identity(dl, dl) * m.trace()) * (sh * sh / dl as f64);
    assert_close("E[E M E]", mc_mean(&p, n, |e, _| e * &m * e), &want_eme);
    let want_gmg = Matrix::identity(du, du) * (m.trace() * sc * sc / dl as f64);
    assert_close("E[G M G^T]", mc_mean(&p, n, |_, g| g * &m * g.transpose()), &want_gmg);
    let want_gng = Matrix::identity(dl, dl) * (nm.trace() * sc * sc / dl as f64);
    assert_close("E[G^T N G]", mc_mean(&p, n, |_, g| g.transpose() * &nm * g), &want_gng);
    // Hessian and cross noise are independent: E[E M Gᵀ] = 0.
    let mu = gaussian_matrix(&mut r, dl, dl);
    assert_close(
        "E[E M G^T]",
        mc_mean(&p, n, |e, g| e * &mu * g.transpose()),
        &Matrix::zeros(dl, du),
    );
}
