//! Issue 2 §4: every family's oracles, closed forms and declared constants, checked against finite differences
//! and sampled points, never against themselves. Runs over the whole registry, so a new family is covered by adding
//! it there.

use crate::common::{fd_gradient, fd_jacobian, random_vector, rel_err, rng};
use bilevel::families::{self, REGISTRY};
use bilevel::linalg::{spectral_norm, sym_eig_range};
use bilevel::problem::{Bilevel, Domain, Level, NoiseLevels, Noisy, Oracle, Sample};
use bilevel::{BilevelError, Matrix, Vector};
use proptest::prelude::*;
use rand::RngExt;
use rand_chacha::ChaCha8Rng;
use std::sync::Arc;

/// Finite-difference step and tolerance: see `common::fd_gradient`. Central differences with h = 1e-5 on O(1)
/// smooth quantities are accurate to ~1e-9; 1e-6 leaves three orders of margin for larger third derivatives.
const FD_H: f64 = 1e-5;
const FD_TOL: f64 = 1e-6;
/// Relative slack on declared constants: they are exact eigenvalues/norms, so only rounding separates them.
const CONST_SLACK: f64 = 1e-8;

fn all() -> Vec<Arc<dyn Bilevel>> {
    REGISTRY
        .iter()
        .map(|e| (e.build)(7).expect("registered family builds"))
        .collect()
}

/// A point of Θ: uniform in a box, in a ball by projection, and N(0, 1.5²) when unbounded.
fn sample_theta(p: &dyn Bilevel, r: &mut ChaCha8Rng) -> Vector {
    let d_u = p.dims().d_u;
    match p.domain() {
        Domain::Box(b) => Vector::from_fn(d_u, |i, _| b.lo()[i] + (b.hi()[i] - b.lo()[i]) * r.random::<f64>()),
        d => {
            let mut t = random_vector(r, d_u, 1.5);
            d.project(&mut t);
            t
        }
    }
}

fn sample_phi(p: &dyn Bilevel, theta: &Vector, r: &mut ChaCha8Rng) -> Vector {
    p.phi_star(theta) + random_vector(r, p.dims().d_l, 1.0)
}

fn grad(p: &dyn Bilevel, s: Sample, t: &Vector, ph: &Vector, which: u8) -> Vector {
    let d = p.dims();
    let mut out = Vector::zeros(if which == 0 { d.d_u } else { d.d_l });
    match which {
        0 => p.grad_theta_fu(s, t, ph, &mut out),
        1 => p.grad_phi_fu(s, t, ph, &mut out),
        _ => p.grad_phi_fl(s, t, ph, &mut out),
    }
    out
}

/// Every first- and second-order oracle against central differences at random points, for the exact objective and
/// at a drawn sample (where the sampled oracles must be derivatives of the sampled values).
fn check_oracles(p: &dyn Bilevel, seed: u64) {
    let mut r = rng(seed);
    let theta = sample_theta(p, &mut r);
    let phi = sample_phi(p, &theta, &mut r);
    let mut o = Oracle::new(p, seed);
    for s in [Sample::Exact, o.draw(Level::Lower)] {
        let name = p.name();
        let gt = fd_gradient(|t| p.f_u(s, t, &phi), &theta, FD_H);
        assert!(
            rel_err(&grad(p, s, &theta, &phi, 0), &gt) < FD_TOL,
            "{name}: grad_theta_fu"
        );
        let gp = fd_gradient(|ph| p.f_u(s, &theta, ph), &phi, FD_H);
        assert!(
            rel_err(&grad(p, s, &theta, &phi, 1), &gp) < FD_TOL,
            "{name}: grad_phi_fu"
        );
        let glt = fd_gradient(|t| p.f_l(s, t, &phi), &theta, FD_H);
        let mut out_t = Vector::zeros(p.dims().d_u);
        p.grad_theta_fl(s, &theta, &phi, &mut out_t);
        assert!(rel_err(&out_t, &glt) < FD_TOL, "{name}: grad_theta_fl");
        let gl = fd_gradient(|ph| p.f_l(s, &theta, ph), &phi, FD_H);
        assert!(
            rel_err(&grad(p, s, &theta, &phi, 2), &gl) < FD_TOL,
            "{name}: grad_phi_fl"
        );
        // Hessian: d(∇φ f_l)/dφ; cross: d(∇φ f_l)/dθ is the transpose of ∇²θφ f_l (d_l × d_u).
        let h_fd = fd_jacobian(|ph| grad(p, s, &theta, ph, 2), &phi, FD_H);
        let h = p.hess_fl(s, &theta, &phi);
        assert!((&h - &h_fd).amax() / h.amax().max(1.0) < FD_TOL, "{name}: hess_fl");
        let ct_fd = fd_jacobian(|t| grad(p, s, t, &phi, 2), &theta, FD_H);
        let c = p.cross_matrix_fl(s, &theta, &phi);
        assert_eq!(
            (c.nrows(), c.ncols()),
            (p.dims().d_u, p.dims().d_l),
            "{name}: cross shape"
        );
        assert!(
            (c.transpose() - &ct_fd).amax() / c.amax().max(1.0) < FD_TOL,
            "{name}: cross_fl"
        );
        // Products agree with the dense matrices, including the transposed product.
        let v = random_vector(&mut r, p.dims().d_l, 1.0);
        let u = random_vector(&mut r, p.dims().d_u, 1.0);
        let mut out_l = Vector::zeros(p.dims().d_l);
        let mut out_u = Vector::zeros(p.dims().d_u);
        p.hvp_fl(s, &theta, &phi, &v, &mut out_l);
        assert!(rel_err(&out_l, &(&h * &v)) < 1e-12, "{name}: hvp vs dense");
        p.cross_fl(s, &theta, &phi, &v, &mut out_u);
        assert!(rel_err(&out_u, &(&c * &v)) < 1e-12, "{name}: cross vs dense");
        p.cross_t_fl(s, &theta, &phi, &u, &mut out_l);
        assert!(
            rel_err(&out_l, &(c.transpose() * &u)) < 1e-12,
            "{name}: cross_t vs dense"
        );
    }
}

/// φ* satisfies stationarity (14); J satisfies the implicit-function identity (15) and matches differences of
/// φ*; ∇F matches differences of F and the generic formula (13); θ* is projected-stationary.
fn check_closed_forms(p: &dyn Bilevel, seed: u64) {
    let name = p.name();
    let mut r = rng(seed);
    let theta = sample_theta(p, &mut r);
    let phi = p.phi_star(&theta);
    let g = grad(p, Sample::Exact, &theta, &phi, 2);
    assert!(
        g.amax() < 1e-9 * (1.0 + phi.amax()),
        "{name}: (14) stationarity, |grad| = {}",
        g.amax()
    );
    let j = p.jacobian_phi_star(&theta).unwrap();
    let h = p.hess_fl(Sample::Exact, &theta, &phi);
    let c = p.cross_matrix_fl(Sample::Exact, &theta, &phi);
    let ift = c.transpose() + &h * &j;
    assert!(
        ift.amax() < 1e-9 * (1.0 + c.amax()),
        "{name}: (15) identity, residual {}",
        ift.amax()
    );
    let j_fd = fd_jacobian(|t| p.phi_star(t), &theta, FD_H);
    assert!(
        (&j - &j_fd).amax() / j.amax().max(1.0) < FD_TOL,
        "{name}: J vs differences of phi*"
    );
    let gf = p.grad_f(&theta).unwrap();
    let gf_fd = fd_gradient(|t| p.value_f(t), &theta, FD_H);
    assert!(rel_err(&gf, &gf_fd) < FD_TOL, "{name}: grad F vs differences of F");
    // The generic formula (13) with J from (16)-(17), by dense solve, independent of any override.
    let mut g13 = grad(p, Sample::Exact, &theta, &phi, 0);
    let hinv_ct = h.clone().cholesky().unwrap().solve(&c.transpose());
    g13 -= hinv_ct.transpose() * grad(p, Sample::Exact, &theta, &phi, 1);
    assert!(rel_err(&gf, &g13) < 1e-9, "{name}: grad F vs formula (13)");
    assert!((p.value_f(&theta) - p.f_u(Sample::Exact, &theta, &phi)).abs() < 1e-10 * (1.0 + p.value_f(&theta).abs()));
    if let Some(ts) = p.theta_star() {
        // Projected stationarity: θ* = P_Θ(θ* − t∇F(θ*)) for a small step t.
        let g = p.grad_f(&ts).unwrap();
        let t = 0.1 / p.constants().l_f.max(1e-12);
        let moved = p.domain().projected(&(&ts - t * &g)).unwrap();
        assert!(
            (&moved - &ts).amax() < 1e-9,
            "{name}: theta* not projected-stationary ({})",
            (&moved - &ts).amax()
        );
        assert!(p.domain().contains(&ts, 1e-12), "{name}: theta* outside Theta");
    }
}

/// The declared constants hold on sampled points (strong convexity, Lipschitz bounds, weak convexity).
fn check_constants(p: &dyn Bilevel, seed: u64) {
    let name = p.name();
    let k = p.constants();
    let mut r = rng(seed);
    let up = 1.0 + CONST_SLACK;
    let down = 1.0 - CONST_SLACK;
    for _ in 0..20 {
        let t1 = sample_theta(p, &mut r);
        let t2 = sample_theta(p, &mut r);
        let ph1 = sample_phi(p, &t1, &mut r);
        let ph2 = sample_phi(p, &t1, &mut r);
        let dphi = (&ph1 - &ph2).norm();
        let dth = (&t1 - &t2).norm();
        let g1 = grad(p, Sample::Exact, &t1, &ph1, 2);
        let g2 = grad(p, Sample::Exact, &t1, &ph2, 2);
        let inner = (&g1 - &g2).dot(&(&ph1 - &ph2));
        assert!(inner >= k.mu_l * dphi * dphi * down, "{name}: mu_l");
        assert!((&g1 - &g2).norm() <= k.l_l * dphi * up, "{name}: l_l");
        let (lo, hi) = sym_eig_range(&p.hess_fl(Sample::Exact, &t1, &ph1));
        assert!(
            lo >= k.mu_l * down && hi <= k.l_l * up,
            "{name}: Hessian spectrum [{lo}, {hi}]"
        );
        // At drawn samples (minibatches) the Hessian stays below the declared per-sample constant.
        let s = Oracle::new(p, r.random()).draw(Level::Lower);
        let (_, hi_s) = sym_eig_range(&p.hess_fl(s, &t1, &ph1));
        let l_sample = k.l_l_sample.unwrap_or(k.l_l).max(k.l_l);
        assert!(hi_s <= l_sample * up, "{name}: sample Hessian top {hi_s} > {l_sample}");
        if let Some(cb) = k.cross_bound {
            assert!(
                spectral_norm(&p.cross_matrix_fl(Sample::Exact, &t1, &ph1)) <= cb * up,
                "{name}: cross bound"
            );
        }
        for which in [0u8, 1] {
            let a = grad(p, Sample::Exact, &t1, &ph1, which);
            let b = grad(p, Sample::Exact, &t1, &ph2, which);
            if let Some(l) = k.l_fu_phi {
                assert!((&a - &b).norm() <= l * dphi * up + 1e-12, "{name}: l_fu_phi");
            }
        }
        let a = grad(p, Sample::Exact, &t1, &ph1, 1);
        let b = grad(p, Sample::Exact, &t2, &ph1, 1);
        assert!(
            (&a - &b).norm() <= k.l_fu_theta.unwrap_or(f64::INFINITY) * dth * up + 1e-12,
            "{name}: l_fu_theta"
        );
        if let Some(bound) = k.grad_phi_fu_bound {
            assert!(a.norm() <= bound * up, "{name}: grad_phi_fu bound");
        }
        if let Some(lh) = k.l_hess_phi {
            let dh = spectral_norm(&(p.hess_fl(Sample::Exact, &t1, &ph1) - p.hess_fl(Sample::Exact, &t1, &ph2)));
            assert!(dh <= lh * dphi * up + 1e-12, "{name}: l_hess_phi");
        }
        assert!(
            (p.phi_star(&t1) - p.phi_star(&t2)).norm() <= k.l_phi_star * dth * up,
            "{name}: l_phi_star"
        );
        let gf1 = p.grad_f(&t1).unwrap();
        let gf2 = p.grad_f(&t2).unwrap();
        assert!((&gf1 - &gf2).norm() <= k.l_f * dth * up + 1e-12, "{name}: l_f");
        let curv = (&gf1 - &gf2).dot(&(&t1 - &t2));
        assert!(
            curv >= -k.weak_convexity * dth * dth * up - 1e-12,
            "{name}: weak convexity"
        );
        if let Some(mu_f) = k.mu_f {
            assert!(curv >= mu_f * dth * dth * down, "{name}: mu_f");
        }
    }
}

#[test]
fn registry_is_complete_and_names_are_unique() {
    let names = families::names();
    let mut sorted = names.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), names.len());
    assert!(matches!(families::build("nope", 0), Err(BilevelError::Unknown { .. })));
}

#[test]
fn closed_forms_hold_for_every_family() {
    for p in all() {
        for seed in 0..5 {
            check_closed_forms(p.as_ref(), seed);
        }
    }
}

#[test]
fn declared_constants_hold_for_every_family() {
    for p in all() {
        check_constants(p.as_ref(), 11);
    }
}

#[test]
fn noisy_oracles_are_derivatives_of_noisy_values() {
    // Value noise shifts values by a constant per sample, so derivatives of sampled values stay exact oracles.
    for p in all() {
        let noisy = Noisy::new(p.clone(), NoiseLevels::uniform(0.0)).unwrap();
        check_oracles(&noisy, 3);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, .. ProptestConfig::default() })]
    #[test]
    fn oracles_match_finite_differences(seed in any::<u64>()) {
        for p in all() {
            check_oracles(p.as_ref(), seed);
        }
    }
}

/// Mean over n draws vs the exact value, per component: |mean − exact| ≤ 5·sd/√n, sd from the sample. With
/// ≲ 100 components checked, the chance that a correct oracle fails is below 100 × 6e-7.
fn assert_unbiased(draws: &[Vector], exact: &Vector, what: &str) {
    let n = draws.len() as f64;
    let mean = draws.iter().fold(Vector::zeros(exact.len()), |a, d| a + d) / n;
    for i in 0..exact.len() {
        let var = draws.iter().map(|d| (d[i] - mean[i]).powi(2)).sum::<f64>() / (n - 1.0);
        let tol = 5.0 * (var / n).sqrt() + 1e-12;
        assert!(
            (mean[i] - exact[i]).abs() <= tol,
            "{what}[{i}]: mean {} vs exact {} (tol {tol})",
            mean[i],
            exact[i]
        );
    }
}

#[test]
fn sampled_oracles_are_unbiased() {
    for base in all() {
        let p = Noisy::new(base.clone(), NoiseLevels::uniform(0.7)).unwrap();
        let mut r = rng(5);
        let theta = sample_theta(&p, &mut r);
        let phi = sample_phi(&p, &theta, &mut r);
        let v = random_vector(&mut r, p.dims().d_l, 1.0);
        let u = random_vector(&mut r, p.dims().d_u, 1.0);
        let mut o = Oracle::new(&p, 99);
        let n = 4000;
        let mut got: Vec<Vec<Vector>> = (0..6).map(|_| Vec::with_capacity(n)).collect();
        for _ in 0..n {
            let s = o.draw(Level::Lower);
            for (kind, slot) in got.iter_mut().enumerate() {
                let d = p.dims();
                let mut out = Vector::zeros(if kind == 0 || kind == 4 { d.d_u } else { d.d_l });
                match kind {
                    0 => p.grad_theta_fu(s, &theta, &phi, &mut out),
                    1 => p.grad_phi_fu(s, &theta, &phi, &mut out),
                    2 => p.grad_phi_fl(s, &theta, &phi, &mut out),
                    3 => p.hvp_fl(s, &theta, &phi, &v, &mut out),
                    4 => p.cross_fl(s, &theta, &phi, &v, &mut out),
                    _ => p.cross_t_fl(s, &theta, &phi, &u, &mut out),
                }
                slot.push(out);
            }
        }
        let e = Sample::Exact;
        let mut ex_u = Vector::zeros(p.dims().d_u);
        let mut ex_l = Vector::zeros(p.dims().d_l);
        let name = p.name().to_string();
        p.grad_theta_fu(e, &theta, &phi, &mut ex_u);
        assert_unbiased(&got[0], &ex_u, &format!("{name} grad_theta_fu"));
        p.grad_phi_fu(e, &theta, &phi, &mut ex_l);
        assert_unbiased(&got[1], &ex_l, &format!("{name} grad_phi_fu"));
        p.grad_phi_fl(e, &theta, &phi, &mut ex_l);
        assert_unbiased(&got[2], &ex_l, &format!("{name} grad_phi_fl"));
        p.hvp_fl(e, &theta, &phi, &v, &mut ex_l);
        assert_unbiased(&got[3], &ex_l, &format!("{name} hvp_fl"));
        p.cross_fl(e, &theta, &phi, &v, &mut ex_u);
        assert_unbiased(&got[4], &ex_u, &format!("{name} cross_fl"));
        p.cross_t_fl(e, &theta, &phi, &u, &mut ex_l);
        assert_unbiased(&got[5], &ex_l, &format!("{name} cross_t_fl"));
        // The noise is really there: the draws are not all equal to the exact value.
        assert!(got[2].iter().any(|g| (g - &ex_l).amax() > 1e-3), "{name}: noise absent");
    }
}

#[test]
fn same_seed_same_bits_and_one_sample_one_realisation() {
    let p = Noisy::new(families::build("quadratic", 1).unwrap(), NoiseLevels::uniform(0.5)).unwrap();
    let theta = Vector::from_element(3, 0.2);
    let phi = Vector::from_element(5, -0.1);
    let run = |seed| {
        let mut o = Oracle::new(&p, seed);
        let mut out = Vector::zeros(5);
        (0..50)
            .map(|_| {
                let s = o.draw(Level::Lower);
                o.grad_phi_fl(s, &theta, &phi, &mut out).unwrap();
                out.iter().map(|x| x.to_bits()).collect::<Vec<_>>()
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(run(4), run(4));
    assert_ne!(run(4), run(5));
    // One sample, one realisation: the noise does not depend on the point, so a difference at one sample is exact
    // (what SUSTAIN's recursive momentum relies on), and the order of requests does not matter.
    let mut o = Oracle::new(&p, 8);
    let s = o.draw(Level::Lower);
    let phi2 = Vector::from_element(5, 0.4);
    let (mut a, mut b, mut ea, mut eb) = (Vector::zeros(5), Vector::zeros(5), Vector::zeros(5), Vector::zeros(5));
    p.grad_phi_fl(s, &theta, &phi, &mut a);
    let hess_first = p.hess_fl(s, &theta, &phi);
    p.grad_phi_fl(s, &theta, &phi2, &mut b);
    p.grad_phi_fl(Sample::Exact, &theta, &phi, &mut ea);
    p.grad_phi_fl(Sample::Exact, &theta, &phi2, &mut eb);
    assert!(rel_err(&(&a - &b), &(&ea - &eb)) < 1e-12);
    assert_eq!(hess_first, p.hess_fl(s, &theta, &phi));
    assert_eq!(
        hess_first,
        p.hess_fl(s, &theta, &phi).transpose(),
        "Hessian sample symmetric"
    );
}

#[test]
fn counting_wrapper_counts_exactly_what_was_called() {
    let p = families::build("quadratic", 0).unwrap();
    let mut o = Oracle::new(p.as_ref(), 0);
    let (t, ph) = (Vector::zeros(3), Vector::zeros(5));
    let (mut u, mut l) = (Vector::zeros(3), Vector::zeros(5));
    let s = o.draw(Level::Upper);
    o.draw(Level::Lower);
    o.draw(Level::Lower);
    o.f_u(s, &t, &ph).unwrap();
    o.f_l(s, &t, &ph).unwrap();
    o.grad_theta_fu(s, &t, &ph, &mut u).unwrap();
    for _ in 0..2 {
        o.grad_phi_fu(s, &t, &ph, &mut l).unwrap();
    }
    for _ in 0..3 {
        o.grad_phi_fl(s, &t, &ph, &mut l).unwrap();
    }
    for _ in 0..4 {
        o.hvp_fl(s, &t, &ph, &ph.clone(), &mut l).unwrap();
    }
    for _ in 0..5 {
        o.cross_fl(s, &t, &ph, &ph.clone(), &mut u).unwrap();
    }
    for _ in 0..6 {
        o.cross_t_fl(s, &t, &ph, &t.clone(), &mut l).unwrap();
    }
    o.hess_fl(s, &t, &ph).unwrap();
    let c = o.counts();
    assert_eq!(
        (
            c.upper_samples,
            c.lower_samples,
            c.fu_value,
            c.fl_value,
            c.fu_grad_theta,
            c.fu_grad_phi
        ),
        (1, 2, 1, 1, 1, 2)
    );
    assert_eq!(
        (c.fl_grad_phi, c.fl_hvp, c.fl_cross, c.fl_cross_t, c.fl_dense),
        (3, 4, 5, 6, 1)
    );
    // A failed (wrong-size) call is an error and is not counted.
    let err = o.grad_phi_fl(s, &Vector::zeros(4), &ph, &mut l).unwrap_err();
    assert!(
        matches!(
            err,
            BilevelError::DimensionMismatch {
                expected: 3,
                got: 4,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(o.counts().fl_grad_phi, 3);
    assert!(matches!(
        o.hvp_fl(s, &t, &ph, &Vector::zeros(2), &mut l),
        Err(BilevelError::DimensionMismatch { .. })
    ));
    assert!(matches!(
        o.cross_fl(s, &t, &ph, &ph.clone(), &mut l),
        Err(BilevelError::DimensionMismatch { .. })
    ));
}

#[test]
fn bad_input_gives_typed_errors() {
    use bilevel::families::quadratic::{Quadratic, QuadraticSpec};
    let bad = |s: QuadraticSpec| s.build().unwrap_err();
    let d = QuadraticSpec::default();
    assert!(matches!(
        bad(QuadraticSpec { d_u: 0, ..d.clone() }),
        BilevelError::InvalidParameter { .. }
    ));
    assert!(matches!(
        bad(QuadraticSpec {
            kappa: 0.5,
            ..d.clone()
        }),
        BilevelError::InvalidParameter { .. }
    ));
    assert!(matches!(
        bad(QuadraticSpec {
            mu_l: f64::NAN,
            ..d.clone()
        }),
        BilevelError::InvalidParameter { .. }
    ));
    assert!(matches!(
        bad(QuadraticSpec {
            mu_f: -1.0,
            ..d.clone()
        }),
        BilevelError::InvalidParameter { .. }
    ));
    assert!(matches!(
        bad(QuadraticSpec {
            cross_scale: -1.0,
            ..d.clone()
        }),
        BilevelError::InvalidParameter { .. }
    ));
    let wrong_box = Domain::new_box(vec![-1.0; 2], vec![1.0; 2]).unwrap();
    assert!(matches!(
        bad(QuadraticSpec {
            domain: wrong_box,
            ..d.clone()
        }),
        BilevelError::DimensionMismatch { .. }
    ));
    assert!(matches!(
        Domain::new_box(vec![1.0], vec![0.0]),
        Err(BilevelError::InvalidParameter { .. })
    ));
    assert!(matches!(
        Domain::new_box(vec![0.0], vec![f64::NAN]),
        Err(BilevelError::NonFinite { .. })
    ));
    assert!(matches!(
        Domain::new_ball(vec![0.0], -1.0),
        Err(BilevelError::InvalidParameter { .. })
    ));
    assert!(matches!(
        Noisy::new(families::build("quadratic", 0).unwrap(), NoiseLevels::uniform(-1.0)),
        Err(BilevelError::InvalidParameter { .. })
    ));
    // Explicit parts: an indefinite H, a non-symmetric H, a wrongly sized M, an indefinite Q, a NaN.
    let q = QuadraticSpec::default().build().unwrap();
    let parts = |h: Matrix, m: Matrix, qq: Matrix, b: Vector| {
        Quadratic::from_parts(
            h,
            m,
            b,
            q.p.clone(),
            q.n.clone(),
            qq,
            q.p_u.clone(),
            q.q_u.clone(),
            0.5,
            Domain::Unbounded,
        )
    };
    let mut indefinite = q.h.clone();
    indefinite[(0, 0)] = -50.0;
    assert!(matches!(
        parts(indefinite, q.m.clone(), q.q.clone(), q.b_l.clone()),
        Err(BilevelError::NotPositiveDefinite { .. })
    ));
    let mut nonsym = q.h.clone();
    nonsym[(0, 1)] += 1.0;
    assert!(matches!(
        parts(nonsym, q.m.clone(), q.q.clone(), q.b_l.clone()),
        Err(BilevelError::InvalidParameter { .. })
    ));
    assert!(matches!(
        parts(q.h.clone(), q.m.transpose(), q.q.clone(), q.b_l.clone()),
        Err(BilevelError::DimensionMismatch { .. })
    ));
    assert!(matches!(
        parts(
            q.h.clone(),
            q.m.clone(),
            -q.q.clone() - Matrix::identity(5, 5),
            q.b_l.clone()
        ),
        Err(BilevelError::InvalidParameter { .. })
    ));
    let mut nan_b = q.b_l.clone();
    nan_b[0] = f64::NAN;
    assert!(matches!(
        parts(q.h.clone(), q.m.clone(), q.q.clone(), nan_b),
        Err(BilevelError::NonFinite { .. })
    ));
}

#[test]
fn projections_land_in_the_set_and_fix_its_points() {
    let bx = Domain::new_box(vec![-1.0, 0.0], vec![1.0, 2.0]).unwrap();
    let ball = Domain::new_ball(vec![1.0, 1.0], 0.5).unwrap();
    let mut r = rng(3);
    for _ in 0..200 {
        let x = random_vector(&mut r, 2, 3.0);
        for d in [&bx, &ball] {
            let p = d.projected(&x).unwrap();
            assert!(d.contains(&p, 1e-12));
            // Idempotent up to rounding: rescaling onto the sphere can land one ulp outside.
            assert!(
                (d.projected(&p).unwrap() - &p).amax() < 1e-14,
                "projection is idempotent"
            );
            if d.contains(&x, 0.0) {
                assert_eq!(p, x);
            }
        }
    }
    assert!(matches!(
        bx.projected(&Vector::zeros(3)),
        Err(BilevelError::DimensionMismatch { .. })
    ));
}
