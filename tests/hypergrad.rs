//! Issue 3: the hypergradient machinery, each estimator against an exact answer computed independently (dense
//! linear algebra, closed forms, finite differences), never against its own output.

use crate::common::{fd_gradient, fd_jacobian, random_vector, rel_err, rng};
use bilevel::families::quadratic::{Quadratic, QuadraticSpec};
use bilevel::hypergrad::cg::{self, CgOptions};
use bilevel::hypergrad::hessian_free::{self, Difference, HessianFreeParams};
use bilevel::hypergrad::itd::{self, ItdParams, ItdSamples};
use bilevel::hypergrad::neumann::{self, NeumannParams};
use bilevel::hypergrad::value_function::{ValueFunctionParams, regularized_value};
use bilevel::hypergrad::{InverseMethod, Workspace, estimate, exact};
use bilevel::linalg::{spd_solve_vec, sym_eig_range};
use bilevel::problem::{Bilevel, Constants, Dims, Domain, Level, NoiseLevels, Noisy, Oracle, Sample};
use bilevel::{BilevelError, Matrix, Vector};
use rand_chacha::ChaCha8Rng;
use std::sync::Arc;

// ---------------------------------------------------------------------------------------------------------------
// Test-only problems
// ---------------------------------------------------------------------------------------------------------------

/// $f_l = \tfrac12\phi^\top D\phi + \theta^\top M\phi$ with $D = \mathrm{diag}(1,-1,2)$ **indefinite**;
/// $f_u = \tfrac12\\|\phi\\|^2 + \tfrac12\\|\theta\\|^2$. Only the oracles are meaningful (there is no $\phi^\star$).
struct Indefinite {
    d: Matrix,
    m: Matrix,
    domain: Domain,
}

impl Indefinite {
    fn new() -> Self {
        Indefinite {
            d: Matrix::from_diagonal(&Vector::from_vec(vec![1.0, -1.0, 2.0])),
            m: Matrix::from_row_slice(2, 3, &[1.0, 0.5, -0.3, 0.2, -1.0, 0.4]),
            domain: Domain::Unbounded,
        }
    }
}

impl Bilevel for Indefinite {
    fn name(&self) -> &str {
        "indefinite (test)"
    }
    fn dims(&self) -> Dims {
        Dims { d_u: 2, d_l: 3 }
    }
    fn draw(&self, _: Level, _: &mut ChaCha8Rng) -> Sample {
        Sample::Exact
    }
    fn f_u(&self, _: Sample, t: &Vector, p: &Vector) -> f64 {
        0.5 * p.norm_squared() + 0.5 * t.norm_squared()
    }
    fn f_l(&self, _: Sample, t: &Vector, p: &Vector) -> f64 {
        0.5 * p.dot(&(&self.d * p)) + t.dot(&(&self.m * p))
    }
    fn grad_theta_fl(&self, _: Sample, _: &Vector, p: &Vector, out: &mut Vector) {
        *out = &self.m * p;
    }
    fn grad_theta_fu(&self, _: Sample, t: &Vector, _: &Vector, out: &mut Vector) {
        out.copy_from(t);
    }
    fn grad_phi_fu(&self, _: Sample, _: &Vector, p: &Vector, out: &mut Vector) {
        out.copy_from(p);
    }
    fn grad_phi_fl(&self, _: Sample, t: &Vector, p: &Vector, out: &mut Vector) {
        *out = &self.d * p + self.m.transpose() * t;
    }
    fn hvp_fl(&self, _: Sample, _: &Vector, _: &Vector, v: &Vector, out: &mut Vector) {
        *out = &self.d * v;
    }
    fn cross_fl(&self, _: Sample, _: &Vector, _: &Vector, w: &Vector, out: &mut Vector) {
        *out = &self.m * w;
    }
    fn cross_t_fl(&self, _: Sample, _: &Vector, _: &Vector, u: &Vector, out: &mut Vector) {
        *out = self.m.transpose() * u;
    }
    fn phi_star(&self, _: &Vector) -> Vector {
        Vector::zeros(3)
    }
    fn theta_star(&self) -> Option<Vector> {
        None
    }
    fn constants(&self) -> Constants {
        Constants::default()
    }
    fn domain(&self) -> &Domain {
        &self.domain
    }
    fn describe(&self) -> String {
        "test problem with an indefinite lower-level Hessian".into()
    }
}

/// A family whose lower-level Hessian depends on $\theta$ (and whose cross derivative depends on $\phi$), with
/// $d_u = 2 \ne d_l = 3$ and non-square coupling so that transpose bugs cannot hide:
/// $$f_l = \tfrac12\phi^\top(A + \mathrm{diag}(s\odot s))\phi - b^\top\phi + \theta^\top M\phi,\quad s = K\theta,$$
/// $$f_u = \tfrac12\\|\phi - c\\|^2 + \tfrac12\\|\theta\\|^2 + \theta^\top N\phi.$$
/// $\nabla^2_{\theta\phi} f_l\,w = K^\top(2\,s\odot\phi\odot w) + Mw$, $\phi^\star = (A+\mathrm{diag}(s^2))^{-1}(b - M^\top\theta)$.
/// Its oracles are checked against finite differences in `theta_hessian_oracles_match_fd`.
struct ThetaHessian {
    a: Matrix,
    k: Matrix,
    b: Vector,
    m: Matrix,
    c: Vector,
    n: Matrix,
    domain: Domain,
}

impl ThetaHessian {
    fn new() -> Self {
        ThetaHessian {
            // Spread spectrum (≈ 0.47, 2.0, 4.0): the slowest ITD mode is well separated from the next one.
            a: Matrix::from_row_slice(3, 3, &[4.0, 0.3, 0.1, 0.3, 2.0, -0.2, 0.1, -0.2, 0.5]),
            k: Matrix::from_row_slice(3, 2, &[1.0, 0.4, -0.5, 0.8, 0.3, -0.7]),
            b: Vector::from_vec(vec![1.0, -0.5, 0.7]),
            m: Matrix::from_row_slice(2, 3, &[0.6, -0.4, 0.3, 0.2, 0.5, -0.8]),
            c: Vector::from_vec(vec![0.3, 0.9, -0.4]),
            n: Matrix::from_row_slice(2, 3, &[0.2, -0.1, 0.3, -0.3, 0.25, 0.1]),
            domain: Domain::Unbounded,
        }
    }
    fn s(&self, t: &Vector) -> Vector {
        &self.k * t
    }
    fn hess(&self, t: &Vector) -> Matrix {
        let s = self.s(t);
        &self.a + Matrix::from_diagonal(&s.component_mul(&s))
    }
}

impl Bilevel for ThetaHessian {
    fn name(&self) -> &str {
        "theta-hessian (test)"
    }
    fn dims(&self) -> Dims {
        Dims { d_u: 2, d_l: 3 }
    }
    fn draw(&self, _: Level, _: &mut ChaCha8Rng) -> Sample {
        Sample::Exact
    }
    fn f_u(&self, _: Sample, t: &Vector, p: &Vector) -> f64 {
        0.5 * (p - &self.c).norm_squared() + 0.5 * t.norm_squared() + t.dot(&(&self.n * p))
    }
    fn f_l(&self, _: Sample, t: &Vector, p: &Vector) -> f64 {
        0.5 * p.dot(&(self.hess(t) * p)) - self.b.dot(p) + t.dot(&(&self.m * p))
    }
    fn grad_theta_fl(&self, _: Sample, t: &Vector, p: &Vector, out: &mut Vector) {
        // ½ Σ (Kθ)_i² φ_i² + θᵀMφ: Kᵀ((Kθ) ⊙ φ ⊙ φ) + Mφ.
        let s = self.s(t);
        *out = self.k.transpose() * s.component_mul(p).component_mul(p) + &self.m * p;
    }
    fn grad_theta_fu(&self, _: Sample, t: &Vector, p: &Vector, out: &mut Vector) {
        *out = t + &self.n * p;
    }
    fn grad_phi_fu(&self, _: Sample, t: &Vector, p: &Vector, out: &mut Vector) {
        *out = p - &self.c + self.n.transpose() * t;
    }
    fn grad_phi_fl(&self, _: Sample, t: &Vector, p: &Vector, out: &mut Vector) {
        *out = self.hess(t) * p - &self.b + self.m.transpose() * t;
    }
    fn hvp_fl(&self, _: Sample, t: &Vector, _: &Vector, v: &Vector, out: &mut Vector) {
        *out = self.hess(t) * v;
    }
    fn cross_fl(&self, _: Sample, t: &Vector, p: &Vector, w: &Vector, out: &mut Vector) {
        let s = self.s(t);
        *out = self.k.transpose() * (s.component_mul(p).component_mul(w) * 2.0) + &self.m * w;
    }
    fn cross_t_fl(&self, _: Sample, t: &Vector, p: &Vector, u: &Vector, out: &mut Vector) {
        let s = self.s(t);
        *out = s.component_mul(p).component_mul(&(&self.k * u)) * 2.0 + self.m.transpose() * u;
    }
    fn phi_star(&self, t: &Vector) -> Vector {
        spd_solve_vec("test", &self.hess(t), &(&self.b - self.m.transpose() * t)).unwrap()
    }
    fn theta_star(&self) -> Option<Vector> {
        None
    }
    fn constants(&self) -> Constants {
        Constants::default()
    }
    fn domain(&self) -> &Domain {
        &self.domain
    }
    fn describe(&self) -> String {
        "test family with a theta-dependent lower-level Hessian".into()
    }
}

fn quadratic(d_u: usize, d_l: usize, mu_l: f64, kappa: f64, seed: u64) -> Quadratic {
    QuadraticSpec {
        d_u,
        d_l,
        mu_l,
        kappa,
        seed,
        ..Default::default()
    }
    .build()
    .unwrap()
}

/// Central differences: h = 1e-5 on O(1) smooth quantities gives ~1e-10 accuracy (see `common::fd_gradient`);
/// 1e-7 leaves a margin for the larger third derivatives of unrolled maps.
const FD_H: f64 = 1e-5;
const FD_TOL: f64 = 1e-7;

// ---------------------------------------------------------------------------------------------------------------
// Exact implicit gradient
// ---------------------------------------------------------------------------------------------------------------

#[test]
fn theta_hessian_oracles_match_fd() {
    let p = ThetaHessian::new();
    let mut r = rng(1);
    let t = random_vector(&mut r, 2, 0.7);
    let ph = random_vector(&mut r, 3, 1.0);
    let w = random_vector(&mut r, 3, 1.0);
    let u = random_vector(&mut r, 2, 1.0);
    let e = Sample::Exact;
    let g = |t: &Vector, ph: &Vector| {
        let mut o = Vector::zeros(3);
        p.grad_phi_fl(e, t, ph, &mut o);
        o
    };
    let mut out3 = Vector::zeros(3);
    let mut out2 = Vector::zeros(2);
    p.grad_phi_fl(e, &t, &ph, &mut out3);
    assert!(rel_err(&out3, &fd_gradient(|x| p.f_l(e, &t, x), &ph, FD_H)) < FD_TOL);
    p.grad_phi_fu(e, &t, &ph, &mut out3);
    assert!(rel_err(&out3, &fd_gradient(|x| p.f_u(e, &t, x), &ph, FD_H)) < FD_TOL);
    p.grad_theta_fu(e, &t, &ph, &mut out2);
    assert!(rel_err(&out2, &fd_gradient(|x| p.f_u(e, x, &ph), &t, FD_H)) < FD_TOL);
    p.grad_theta_fl(e, &t, &ph, &mut out2);
    assert!(rel_err(&out2, &fd_gradient(|x| p.f_l(e, x, &ph), &t, FD_H)) < FD_TOL);
    p.hvp_fl(e, &t, &ph, &w, &mut out3);
    assert!(rel_err(&out3, &(fd_jacobian(|x| g(&t, x), &ph, FD_H) * &w)) < FD_TOL);
    // ∂/∂θ of ∇_φ f_l is [∇²_θφ f_l]ᵀ (d_l × d_u).
    let ct = fd_jacobian(|x| g(x, &ph), &t, FD_H);
    p.cross_t_fl(e, &t, &ph, &u, &mut out3);
    assert!(rel_err(&out3, &(&ct * &u)) < FD_TOL);
    p.cross_fl(e, &t, &ph, &w, &mut out2);
    assert!(rel_err(&out2, &(ct.transpose() * &w)) < FD_TOL);
    // φ* is a stationary point.
    p.grad_phi_fl(e, &t, &p.phi_star(&t), &mut out3);
    assert!(out3.amax() < 1e-12, "grad at phi* = {out3}");
}

#[test]
fn exact_hypergradient_matches_closed_form_and_fd() {
    for seed in 0..4 {
        let q = quadratic(3, 5, 1.0, 10.0, seed);
        let theta = random_vector(&mut rng(seed + 10), 3, 1.0);
        let ig = exact::hypergradient(&q, &theta).unwrap();
        // Closed form from A_F, g_F (built without the implicit-gradient formula).
        let closed = &q.a_f * &theta + &q.g_f;
        // Tolerance: both are a handful of dense O(1) products and one solve with kappa = 10: rounding ~1e-14.
        assert!(rel_err(&ig, &closed) < 1e-11, "seed {seed}: {ig} vs {closed}");
        // F(θ) = f_u(θ, φ*(θ)) with φ* = Jθ + φ0, differentiated numerically.
        let f = |t: &Vector| q.f_u(Sample::Exact, t, &(&q.j * t + &q.phi0));
        assert!(rel_err(&ig, &fd_gradient(f, &theta, FD_H)) < FD_TOL);
    }
    let p = ThetaHessian::new();
    for seed in 0..4 {
        let theta = random_vector(&mut rng(seed + 20), 2, 0.8);
        let ig = exact::hypergradient(&p, &theta).unwrap();
        let f = |t: &Vector| p.f_u(Sample::Exact, t, &p.phi_star(t));
        assert!(
            rel_err(&ig, &fd_gradient(f, &theta, FD_H)) < FD_TOL,
            "theta-hessian seed {seed}"
        );
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Conjugate gradient, Alg 7
// ---------------------------------------------------------------------------------------------------------------

fn h_norm(h: &Matrix, e: &Vector) -> f64 {
    e.dot(&(h * e)).sqrt()
}

/// Steps until the true relative residual ‖v − Hx_k‖/‖v‖ drops below `tol` (None if not within `max`), and the
/// residual at step d_l (or the last step).
fn cg_steps_to(q: &Quadratic, v: &Vector, tol: f64, max: usize) -> (Option<usize>, f64) {
    let d_l = v.len();
    let mut o = Oracle::new(q, 0);
    let opts = CgOptions {
        tol: 0.0,
        max_iter: max,
        keep_iterates: true,
    };
    let (t, z) = (Vector::zeros(q.dims().d_u), Vector::zeros(d_l));
    let out = cg::solve(&mut o, Sample::Exact, &t, &z, v, &z, &opts).unwrap();
    let res: Vec<f64> = out.iterates.iter().map(|x| (v - &q.h * x).norm() / v.norm()).collect();
    (res.iter().position(|&r| r < tol), res[d_l.min(res.len() - 1)])
}

#[test]
fn cg_terminates_in_d_steps() {
    // Well-conditioned instances: at step d_l only rounding is left (~1e-15·kappa); 1e-12 is "to rounding".
    for (d_l, kappa) in [(5, 10.0), (8, 4.0), (10, 10.0)] {
        let q = quadratic(3, d_l, 1.0, kappa, 2);
        let v = random_vector(&mut rng(1003), d_l, 1.0); // not q's seed: q's eigenvectors come from that stream
        let (k, res_at_d) = cg_steps_to(&q, &v, 1e-12, d_l);
        assert!(
            k.is_some_and(|k| k <= d_l),
            "d_l {d_l} kappa {kappa}: residual at d_l {res_at_d:e}"
        );
        // One step earlier it is not done: finite termination, not fast convergence, is what is observed.
        let (k_short, _) = cg_steps_to(&q, &v, 1e-8, d_l - 1);
        assert!(k_short.is_none(), "d_l {d_l}: converged before step d_l - 1");
    }
    // Ill-conditioned instances: in floating point, loss of orthogonality delays termination by a few steps
    // (Greenbaum & Strakos 1992). Measured: kappa = 100, d_l = 12 leaves ~1e-7 at step 12 and reaches 1e-12 at
    // step ~15; kappa = 1000, d_l = 20 needs ~33 steps. What holds in floating point: within 2 d_l steps.
    for (d_l, kappa) in [(12, 100.0), (20, 1000.0)] {
        let q = quadratic(3, d_l, 1.0, kappa, 2);
        let v = random_vector(&mut rng(1003), d_l, 1.0);
        let (k, res_at_d) = cg_steps_to(&q, &v, 1e-12, 2 * d_l);
        println!("CG d_l={d_l} kappa={kappa}: relative residual {res_at_d:.1e} at step d_l, below 1e-12 at step {k:?}");
        assert!(k.is_some_and(|k| k <= 2 * d_l), "d_l {d_l} kappa {kappa}");
    }
}

#[test]
fn cg_error_bound_holds_at_every_iterate() {
    for (d_l, kappa, seed) in [(12, 100.0, 1), (30, 50.0, 2), (8, 4.0, 3)] {
        let q = quadratic(2, d_l, 0.5, kappa, seed);
        let mut r = rng(seed + 1000); // not q's seed: q's eigenvectors come from that stream
        let v = random_vector(&mut r, d_l, 1.0);
        let x0 = random_vector(&mut r, d_l, 1.0);
        let x_star = spd_solve_vec("H", &q.h, &v).unwrap();
        let (lo, hi) = sym_eig_range(&q.h);
        let rho = ((hi / lo).sqrt() - 1.0) / ((hi / lo).sqrt() + 1.0);
        let mut o = Oracle::new(&q, 0);
        let opts = CgOptions {
            tol: 0.0,
            max_iter: d_l,
            keep_iterates: true,
        };
        let out = cg::solve(
            &mut o,
            Sample::Exact,
            &Vector::zeros(2),
            &Vector::zeros(d_l),
            &v,
            &x0,
            &opts,
        )
        .unwrap();
        assert_eq!(out.iterates.len(), d_l + 1);
        let e0 = h_norm(&q.h, &(&x0 - &x_star));
        for (k, xk) in out.iterates.iter().enumerate() {
            let ek = h_norm(&q.h, &(xk - &x_star));
            let bound = 2.0 * rho.powi(k as i32) * e0;
            // Rounding floor: x* itself is known to ~1e-15 relative in the H-norm.
            assert!(
                ek <= bound + 1e-12 * h_norm(&q.h, &x_star),
                "k = {k}: {ek:e} > {bound:e}"
            );
        }
        // The bound is not vacuous: at k = 3 the error has really dropped by a large factor but not to zero.
        let e3 = h_norm(&q.h, &(&out.iterates[3] - &x_star));
        assert!(e3 < e0 && e3 > 1e-8 * e0);
    }
}

#[test]
fn cg_typed_errors_on_indefinite_hessian_and_non_finite_input() {
    let p = Indefinite::new();
    let mut o = Oracle::new(&p, 0);
    let (t, ph) = (Vector::zeros(2), Vector::zeros(3));
    let opts = CgOptions::default();
    let z = Vector::zeros(3);
    // Along the negative eigenvector: curvature −1 at the first step.
    let err = cg::solve(
        &mut o,
        Sample::Exact,
        &t,
        &ph,
        &Vector::from_vec(vec![0.0, 1.0, 0.0]),
        &z,
        &opts,
    );
    assert!(matches!(err, Err(BilevelError::NotPositiveDefinite { min_eig, .. }) if min_eig < 0.0));
    // A generic right-hand side: the conjugate directions diagonalise H (Sylvester's law of inertia), so a full CG
    // run must meet one direction with d'Hd < 0 — the first curvature here is +2, the error comes later.
    let err = cg::solve(
        &mut o,
        Sample::Exact,
        &t,
        &ph,
        &Vector::from_vec(vec![1.0, 1.0, 1.0]),
        &z,
        &opts,
    );
    assert!(matches!(err, Err(BilevelError::NotPositiveDefinite { .. })), "{err:?}");
    // Through the dispatcher, both the CG and the dense path refuse.
    for method in [InverseMethod::Cg(opts), InverseMethod::Dense] {
        let mut ws = Workspace::new(2, 3);
        let mut out = Vector::zeros(2);
        let err = estimate(
            &mut o,
            &method,
            &t,
            &Vector::from_vec(vec![0.0, 1.0, 0.0]),
            &mut ws,
            &mut out,
        );
        assert!(
            matches!(err, Err(BilevelError::NotPositiveDefinite { .. })),
            "{method:?}: {err:?}"
        );
    }
    // Non-finite input.
    let q = quadratic(3, 5, 1.0, 10.0, 0);
    let mut o = Oracle::new(&q, 0);
    let (t, ph) = (Vector::zeros(3), Vector::zeros(5));
    let mut bad = Vector::from_element(5, 1.0);
    bad[2] = f64::NAN;
    let ok = Vector::from_element(5, 1.0);
    let z = Vector::zeros(5);
    let err = cg::solve(&mut o, Sample::Exact, &t, &ph, &bad, &z, &opts);
    assert!(matches!(err, Err(BilevelError::NonFinite { .. })));
    bad[2] = f64::INFINITY;
    let err = cg::solve(&mut o, Sample::Exact, &t, &ph, &ok, &bad, &opts);
    assert!(matches!(err, Err(BilevelError::NonFinite { .. })));
    // A non-finite point (where the Hessian depends on θ) makes the products non-finite: a typed error, not NaN.
    let th = ThetaHessian::new();
    let mut o_th = Oracle::new(&th, 0);
    let nan_theta = Vector::from_vec(vec![f64::NAN, 0.0]);
    let err = cg::solve(
        &mut o_th,
        Sample::Exact,
        &nan_theta,
        &Vector::zeros(3),
        &Vector::from_element(3, 1.0),
        &Vector::zeros(3),
        &opts,
    );
    assert!(matches!(err, Err(BilevelError::NonFinite { .. })), "{err:?}");
    let bad_opts = CgOptions { max_iter: 0, ..opts };
    assert!(matches!(
        cg::solve(&mut o, Sample::Exact, &t, &ph, &ok, &z, &bad_opts),
        Err(BilevelError::InvalidParameter { .. })
    ));
    // Wrong size.
    assert!(matches!(
        cg::solve(&mut o, Sample::Exact, &t, &ph, &Vector::zeros(4), &z, &opts),
        Err(BilevelError::DimensionMismatch { .. })
    ));
}

#[test]
fn cg_warm_start_at_the_solution_returns_immediately() {
    let q = quadratic(3, 5, 1.0, 10.0, 4);
    let v = random_vector(&mut rng(5), 5, 1.0);
    let x_star = spd_solve_vec("H", &q.h, &v).unwrap();
    let mut o = Oracle::new(&q, 0);
    let out = cg::solve(
        &mut o,
        Sample::Exact,
        &Vector::zeros(3),
        &Vector::zeros(5),
        &v,
        &x_star,
        &CgOptions::default(),
    )
    .unwrap();
    assert_eq!(out.iterations, 0);
    assert!(out.converged);
    assert_eq!(out.x, x_star);
    assert_eq!(o.counts().fl_hvp, 1, "only the initial residual is computed");
    // The dispatcher keeps the solution in ws.z: the next call at the same point is a warm start that does no
    // iteration (Alg 3's warm start across iterations).
    let theta = random_vector(&mut rng(6), 3, 1.0);
    let phi = random_vector(&mut rng(7), 5, 1.0);
    let method = InverseMethod::Cg(CgOptions::default());
    let mut ws = Workspace::new(3, 5);
    let mut g1 = Vector::zeros(3);
    estimate(&mut o, &method, &theta, &phi, &mut ws, &mut g1).unwrap();
    let before = o.counts();
    let mut g2 = Vector::zeros(3);
    estimate(&mut o, &method, &theta, &phi, &mut ws, &mut g2).unwrap();
    assert_eq!(o.counts().since(&before).fl_hvp, 1);
    assert!(rel_err(&g2, &g1) < 1e-12);
}

#[test]
fn cg_alg7_as_printed_returns_a_worse_iterate() {
    for (d_l, kappa, seed) in [(5, 10.0, 0), (8, 4.0, 1), (12, 100.0, 2)] {
        let q = quadratic(3, d_l, 1.0, kappa, seed);
        let v = random_vector(&mut rng(seed + 40), d_l, 1.0);
        let x_star = spd_solve_vec("H", &q.h, &v).unwrap();
        let (t, p, z) = (Vector::zeros(3), Vector::zeros(d_l), Vector::zeros(d_l));
        let eps = 1e-16 * v.norm_squared(); // stop at a relative residual of 1e-8
        let mut o = Oracle::new(&q, 0);
        let literal = cg::solve_alg7_literal(&mut o, Sample::Exact, &t, &p, &v, &z, eps, 100).unwrap();
        let opts = CgOptions {
            tol: eps,
            max_iter: 100,
            keep_iterates: true,
        };
        let fixed = cg::solve(&mut o, Sample::Exact, &t, &p, &v, &z, &opts).unwrap();
        assert!(fixed.converged);
        let err_fixed = (&fixed.x - &x_star).norm() / x_star.norm();
        let err_literal = (&literal - &x_star).norm() / x_star.norm();
        // The printed return is exactly the previous iterate x_i (same recurrences up to rounding) ...
        let prev = &fixed.iterates[fixed.iterations - 1];
        if kappa <= 10.0 {
            // Well conditioned: rounding stays at ~1e-15 and the two α formulas (d'r vs r'r, equal in exact
            // arithmetic) give the same iterates. At kappa = 100 loss of orthogonality amplifies their rounding
            // difference (measured 2e-3 apart), so only the error comparison below is made there.
            assert!(rel_err(&literal, prev) < 1e-10);
        }
        // ... which has not met the stopping test: its error is larger than x_{i+1}'s by the last step's reduction
        // factor (measured: 6e13, 2e11 and 5e2 here). Any factor > 1 shows the slip; 10 is a margin over rounding.
        assert!(
            err_literal > 10.0 * err_fixed,
            "d_l {d_l}: literal {err_literal:e}, corrected {err_fixed:e}"
        );
        println!("alg7 d_l={d_l} kappa={kappa}: error as printed {err_literal:.3e}, corrected {err_fixed:.3e}");
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Neumann series (24) and its stochastic versions
// ---------------------------------------------------------------------------------------------------------------

fn mat_pow(a: &Matrix, n: usize) -> Matrix {
    let mut out = Matrix::identity(a.nrows(), a.ncols());
    for _ in 0..n {
        out = &out * a;
    }
    out
}

fn truncated(o: &mut Oracle, v: &Vector, p: &NeumannParams) -> Vector {
    let d = v.len();
    let (mut out, mut a, mut b) = (Vector::zeros(d), Vector::zeros(d), Vector::zeros(d));
    let d_u = o.dims().d_u;
    neumann::truncated_into(
        o,
        Sample::Exact,
        &Vector::zeros(d_u),
        &Vector::zeros(d),
        v,
        p,
        &mut out,
        &mut a,
        &mut b,
    )
    .unwrap();
    out
}

#[test]
fn neumann_truncation_error_is_exactly_the_remainder() {
    let q = quadratic(3, 6, 1.0, 10.0, 5);
    let l = q.constants().l_l;
    let v = random_vector(&mut rng(8), 6, 1.0);
    let h_inv_v = spd_solve_vec("H", &q.h, &v).unwrap();
    let mut o = Oracle::new(&q, 0);
    for eta_l in [0.5, 1.0, 1.9] {
        let eta = eta_l / l;
        let a = Matrix::identity(6, 6) - &q.h * eta;
        for n in [1, 2, 5, 20, 60] {
            let got = truncated(&mut o, &v, &NeumannParams { eta, terms: n });
            let remainder = mat_pow(&a, n) * &h_inv_v;
            let err = &h_inv_v - &got;
            // Rounding only: N products with ‖I − ηH‖ < 1 accumulate ~N·eps relative error.
            assert!(
                (&err - &remainder).norm() <= 1e-12 * h_inv_v.norm(),
                "eta L = {eta_l}, N = {n}: {:e}",
                (&err - &remainder).norm()
            );
        }
    }
}

#[test]
fn neumann_is_tight_along_the_smallest_eigenvector() {
    let q = quadratic(3, 6, 0.5, 8.0, 6);
    let eig = q.h.clone().symmetric_eigen();
    let i_min = eig.eigenvalues.imin();
    let mu = eig.eigenvalues[i_min];
    let u = eig.eigenvectors.column(i_min).into_owned();
    let l = q.constants().l_l;
    let eta = 1.0 / l;
    let err0 = (&u / mu).norm(); // ‖H⁻¹u‖ = ‖err_0‖
    let mut o = Oracle::new(&q, 0);
    for n in [1, 3, 10, 40] {
        let got = truncated(&mut o, &u, &NeumannParams { eta, terms: n });
        let ratio = (&u / mu - got).norm() / err0;
        let predicted = (1.0 - eta * mu).powi(n as i32);
        // Exact identity up to rounding in the computed eigenpair (~1e-15) times N.
        assert!(
            (ratio / predicted - 1.0).abs() < 1e-10,
            "N = {n}: {ratio} vs {predicted}"
        );
    }
}

#[test]
fn neumann_step_condition_is_a_typed_error() {
    let l = 10.0;
    for eta in [2.0 / l, 2.5 / l, -0.1, 0.0, f64::NAN] {
        let p = NeumannParams { eta, terms: 5 };
        assert!(p.check(l).is_err(), "eta = {eta}");
        assert!(InverseMethod::Neumann(p).check(l).is_err());
        assert!(InverseMethod::GhadimiWang(p).check(l).is_err());
    }
    assert!(matches!(
        NeumannParams { eta: 2.0 / l, terms: 5 }.check(l),
        Err(BilevelError::StepCondition(_))
    ));
    assert!(
        NeumannParams {
            eta: 1.99 / l,
            terms: 5
        }
        .check(l)
        .is_ok()
    );
    assert!(matches!(
        NeumannParams { eta: 0.1, terms: 0 }.check(l),
        Err(BilevelError::InvalidParameter { .. })
    ));
    // N = 0 is an error in the estimators themselves, not a panic in the random truncation.
    let q = quadratic(3, 5, 1.0, 10.0, 0);
    let mut o = Oracle::new(&q, 0);
    let (t, ph, v) = (Vector::zeros(3), Vector::zeros(5), Vector::from_element(5, 1.0));
    let (mut out, mut a, mut b) = (Vector::zeros(5), Vector::zeros(5), Vector::zeros(5));
    let p0 = NeumannParams { eta: 0.05, terms: 0 };
    assert!(neumann::ghadimi_wang_into(&mut o, &t, &ph, &v, &p0, &mut out, &mut a, &mut b).is_err());
    assert!(neumann::stocbio_into(&mut o, &t, &ph, &v, &p0, &mut out, &mut a, &mut b).is_err());
}

/// Monte Carlo draws of a stochastic Neumann estimator at fixed (θ, φ, v).
fn draws(p: &dyn Bilevel, seed: u64, v: &Vector, params: &NeumannParams, reps: usize, stocbio: bool) -> Vec<Vector> {
    let d = p.dims();
    let mut o = Oracle::new(p, seed);
    let (t, ph) = (Vector::zeros(d.d_u), Vector::zeros(d.d_l));
    let (mut a, mut b) = (Vector::zeros(d.d_l), Vector::zeros(d.d_l));
    (0..reps)
        .map(|_| {
            let mut out = Vector::zeros(d.d_l);
            if stocbio {
                neumann::stocbio_into(&mut o, &t, &ph, v, params, &mut out, &mut a, &mut b).unwrap();
            } else {
                neumann::ghadimi_wang_into(&mut o, &t, &ph, v, params, &mut out, &mut a, &mut b).unwrap();
            }
            out
        })
        .collect()
}

/// Mean vector and per-coordinate sample variance.
fn mean_var(xs: &[Vector]) -> (Vector, Vector) {
    let n = xs.len() as f64;
    let mean = xs.iter().fold(Vector::zeros(xs[0].len()), |acc, x| acc + x) / n;
    let var = xs
        .iter()
        .fold(Vector::zeros(xs[0].len()), |acc, x| acc + (x - &mean).map(|e| e * e))
        / (n - 1.0);
    (mean, var)
}

/// Noisy quadratic for the stochastic estimators: κ = 2, μ = 1, η = 1/L = 1/2, so ημ = 1/2 and the series
/// saturates within a few terms. Hessian noise σ_H = 0.5: the second-moment contraction
/// ‖I − ηH‖² + η²σ_H²(d+1)/d ≤ 0.25 + 0.075 < 1, so no moment blows up with N.
fn noisy_quadratic() -> (Quadratic, Noisy, f64) {
    let q = quadratic(3, 5, 1.0, 2.0, 11);
    let levels = NoiseLevels {
        hess_fl: 0.5,
        ..Default::default()
    };
    let noisy = Noisy::new(Arc::new(q.clone()), levels).unwrap();
    let eta = 1.0 / q.constants().l_l;
    (q, noisy, eta)
}

/// z for the confidence intervals: 5 standard errors is a two-sided 5.7e-7 tail per coordinate, so even over all
/// coordinates and configurations below a false alarm on a fresh seed has probability < 1e-5.
const Z_CI: f64 = 5.0;

#[test]
fn ghadimi_wang_and_stocbio_means_match_the_truncated_series() {
    let (q, noisy, eta) = noisy_quadratic();
    let v = random_vector(&mut rng(12), 5, 1.0);
    let h_inv_v = spd_solve_vec("H", &q.h, &v).unwrap();
    let a = Matrix::identity(5, 5) - &q.h * eta;
    let reps = 100_000;
    // Small N so that the truncation bias (1 − ημ)^N = 2^-N is resolved by the Monte Carlo (power check below).
    for n in [2, 3] {
        let params = NeumannParams { eta, terms: n };
        let target = &h_inv_v - mat_pow(&a, n) * &h_inv_v; // H⁻¹(I − (I − ηH)^N) v
        for stocbio in [false, true] {
            let xs = draws(&noisy, 100 + n as u64, &v, &params, reps, stocbio);
            let (mean, var) = mean_var(&xs);
            let se = var.map(|s| (s / reps as f64).sqrt());
            for i in 0..5 {
                assert!(
                    (mean[i] - target[i]).abs() <= Z_CI * se[i],
                    "stocbio={stocbio} N={n} coord {i}: mean {} target {} se {}",
                    mean[i],
                    target[i],
                    se[i]
                );
            }
            // Power: the truncation bias (I − ηH)^N H⁻¹v is resolved, i.e. the test would catch an estimator whose
            // mean were H⁻¹v (no truncation) or the truncated sum with one term too many or too few.
            let bias = &h_inv_v - &target;
            let resolvable = (0..5).any(|i| bias[i].abs() > 2.0 * Z_CI * se[i]);
            assert!(resolvable, "N = {n}: the bias is below the Monte Carlo resolution");
        }
    }
}

/// Least-squares slope of y on x.
fn slope(x: &[f64], y: &[f64]) -> f64 {
    let n = x.len() as f64;
    let (mx, my) = (x.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
    let sxy: f64 = x.iter().zip(y).map(|(a, b)| (a - mx) * (b - my)).sum();
    let sxx: f64 = x.iter().map(|a| (a - mx) * (a - mx)).sum();
    sxy / sxx
}

#[test]
fn ghadimi_wang_variance_grows_linearly_and_stocbio_is_smaller() {
    let (_q, noisy, eta) = noisy_quadratic();
    let v = random_vector(&mut rng(13), 5, 1.0);
    let grid = [32usize, 64, 128, 256, 512];
    let reps = 40_000;
    let mut log_n = Vec::new();
    let mut log_var = Vec::new();
    for &n in &grid {
        let xs = draws(
            &noisy,
            200 + n as u64,
            &v,
            &NeumannParams { eta, terms: n },
            reps,
            false,
        );
        let total_var = mean_var(&xs).1.sum();
        println!("GW N = {n}: total variance {total_var:.4}");
        log_n.push((n as f64).ln());
        log_var.push(total_var.ln());
    }
    let s = slope(&log_n, &log_var);
    println!("GW variance log-log slope in N: {s:.3}");
    // Theory: Var = aN − b with b = ‖mean‖² ≥ 0 (a = η² Σ_p E‖Π(I − ηH_i)v‖² once the sum has saturated, which
    // takes a few terms since ημ = 1/2). The offset steepens the local slope to 1/(1 − b/(aN)): here b/(aN) ≲ 4/N,
    // i.e. ≤ +0.13 at N = 32 and +0.01 at N = 512, so the fitted slope lies in ~[1.0, 1.05]. Monte Carlo: the
    // estimator's kurtosis grows like N, so the variance estimate has relative error ~ √(N/R) ≤ 0.11 at N = 512,
    // giving a slope standard error ≲ 0.04. Tolerance 0.15 = offset + 3 standard errors.
    assert!((s - 1.0).abs() < 0.15, "slope {s}");

    // stocBiO at equal N: the random truncation's variance (the term that grows like N) is gone; only the Hessian
    // noise remains, bounded in N. At N = 64 GW's variance is ~N times larger, so a factor-4 margin is far beyond
    // the Monte Carlo error (≤ 10% on each variance at R = 40 000).
    for n in [8usize, 64] {
        let params = NeumannParams { eta, terms: n };
        let gw = mean_var(&draws(&noisy, 300 + n as u64, &v, &params, reps, false))
            .1
            .sum();
        let sb = mean_var(&draws(&noisy, 400 + n as u64, &v, &params, reps, true))
            .1
            .sum();
        println!("N = {n}: variance GW {gw:.4}, stocBiO {sb:.4}");
        assert!(sb * 4.0 < gw, "N = {n}: stocBiO {sb} vs GW {gw}");
    }
}

#[test]
fn dispatcher_exact_methods_equal_the_dense_surrogate() {
    let q = quadratic(3, 5, 1.0, 10.0, 9);
    let mut r = rng(14);
    let theta = random_vector(&mut r, 3, 1.0);
    let phi = random_vector(&mut r, 5, 1.0); // not φ*(θ): the surrogate, not ∇F
    let exact_sur = exact::surrogate(&q, Sample::Exact, &theta, &phi).unwrap();
    let eta = 1.0 / q.constants().l_l;
    for method in [
        InverseMethod::Dense,
        InverseMethod::Cg(CgOptions::default()),
        // (1 − ημ)^N = 0.9^400 ≈ 5e-19: the truncation error is below rounding.
        InverseMethod::Neumann(NeumannParams { eta, terms: 400 }),
        // With exact (deterministic) samples stocBiO is the truncated series itself.
        InverseMethod::Stocbio(NeumannParams { eta, terms: 400 }),
    ] {
        method.check(q.constants().l_l).unwrap();
        let mut o = Oracle::new(&q, 0);
        let mut ws = Workspace::new(3, 5);
        let mut out = Vector::zeros(3);
        estimate(&mut o, &method, &theta, &phi, &mut ws, &mut out).unwrap();
        assert!(rel_err(&out, &exact_sur) < 1e-10, "{method:?}: {out} vs {exact_sur}");
        // One upper sample (two gradients at it) and one cross product per estimate.
        let c = o.counts();
        assert_eq!((c.fu_grad_theta, c.fu_grad_phi, c.fl_cross), (1, 1, 1), "{method:?}");
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Iterative differentiation, eqs (30)–(32)
// ---------------------------------------------------------------------------------------------------------------

/// φ^T(θ) by T gradient steps, written out here with direct (uncounted) family calls: independent of `itd`.
fn unrolled(p: &dyn Bilevel, theta: &Vector, phi0: &Vector, beta: f64, steps: usize) -> Vec<Vector> {
    let mut traj = vec![phi0.clone()];
    let mut g = Vector::zeros(phi0.len());
    for t in 0..steps {
        p.grad_phi_fl(Sample::Exact, theta, &traj[t], &mut g);
        traj.push(&traj[t] - &g * beta);
    }
    traj
}

/// F_T(θ) = f_u(θ, φ^T(θ)).
fn f_truncated(p: &dyn Bilevel, theta: &Vector, phi0: &Vector, beta: f64, steps: usize) -> f64 {
    let traj = unrolled(p, theta, phi0, beta, steps);
    p.f_u(Sample::Exact, theta, &traj[steps])
}

/// β = 1/L(θ) from the dense Hessian at θ (φ-independent for both test families).
fn beta_at(p: &dyn Bilevel, theta: &Vector) -> (f64, Vector) {
    let h = p.hess_fl(Sample::Exact, theta, &Vector::zeros(p.dims().d_l));
    let eig = h.symmetric_eigen().eigenvalues;
    (1.0 / eig.max(), eig)
}

fn check_forward_reverse_fd(p: &dyn Bilevel, seed: u64) {
    let d = p.dims();
    let mut r = rng(seed + 1000); // not the quadratic's seed
    let theta = random_vector(&mut r, d.d_u, 0.8);
    let phi0 = random_vector(&mut r, d.d_l, 1.0);
    let (beta, _) = beta_at(p, &theta);
    let mut o = Oracle::new(p, 0);
    for steps in 1..=10 {
        let params = ItdParams { beta, steps };
        let fwd = itd::forward(&mut o, &theta, &phi0, &params, ItdSamples::EXACT).unwrap();
        let rev = itd::reverse(&mut o, &theta, &phi0, &params, ItdSamples::EXACT, None).unwrap();
        let fd = fd_gradient(|t| f_truncated(p, t, &phi0, beta, steps), &theta, FD_H);
        let name = p.name();
        assert!(
            rel_err(&fwd.hypergradient, &fd) < FD_TOL,
            "{name} T={steps}: forward {} fd {fd}",
            fwd.hypergradient
        );
        // Forward and reverse are the same sum in a different order: rounding only.
        assert!(
            rel_err(&rev.hypergradient, &fwd.hypergradient) < 1e-12,
            "{name} T={steps}: reverse"
        );
        // Z_T is dφ^T/dθ.
        let z_fd = fd_jacobian(|t| unrolled(p, t, &phi0, beta, steps)[steps].clone(), &theta, FD_H);
        assert!((&fwd.z - &z_fd).amax() < FD_TOL, "{name} T={steps}: Z_T");
        assert!(rel_err(&fwd.phi_t, &unrolled(p, &theta, &phi0, beta, steps)[steps]) < 1e-14);
    }
}

#[test]
fn itd_forward_reverse_match_fd_on_quadratic() {
    for seed in 0..3 {
        check_forward_reverse_fd(&quadratic(3, 5, 1.0, 10.0, seed), seed);
    }
}

#[test]
fn itd_forward_reverse_match_fd_on_theta_dependent_hessian() {
    for seed in 0..3 {
        check_forward_reverse_fd(&ThetaHessian::new(), seed + 30);
    }
}

#[test]
fn itd_truncated_reverse_matches_dense_sum() {
    // Z_T^{(T')} = Σ_{t=T−T'+1}^{T} A_T ⋯ A_{t+1} B_t with dense A_t, B_t from the family's dense matrices.
    let p = ThetaHessian::new();
    let mut r = rng(50);
    let theta = random_vector(&mut r, 2, 0.8);
    let phi0 = random_vector(&mut r, 3, 1.0);
    let (beta, _) = beta_at(&p, &theta);
    let steps = 9;
    let traj = unrolled(&p, &theta, &phi0, beta, steps);
    let e = Sample::Exact;
    let a = |t: usize| Matrix::identity(3, 3) - p.hess_fl(e, &theta, &traj[t - 1]) * beta;
    let b = |t: usize| -p.cross_matrix_fl(e, &theta, &traj[t - 1]).transpose() * beta;
    let mut o = Oracle::new(&p, 0);
    let (mut gt, mut gp) = (Vector::zeros(2), Vector::zeros(3));
    p.grad_theta_fu(e, &theta, &traj[steps], &mut gt);
    p.grad_phi_fu(e, &theta, &traj[steps], &mut gp);
    for kept in [1, 2, 4, 9] {
        let mut z = Matrix::zeros(3, 2);
        for t in (steps - kept + 1)..=steps {
            let mut term = b(t);
            for s in (t + 1)..=steps {
                term = a(s) * term;
            }
            z += term;
        }
        let want = &gt + z.transpose() * &gp;
        let got = itd::reverse(
            &mut o,
            &theta,
            &phi0,
            &ItdParams { beta, steps },
            ItdSamples::EXACT,
            Some(kept),
        )
        .unwrap()
        .hypergradient;
        assert!(rel_err(&got, &want) < 1e-12, "T' = {kept}");
    }
    let bad = itd::reverse(
        &mut o,
        &theta,
        &phi0,
        &ItdParams { beta, steps },
        ItdSamples::EXACT,
        Some(steps + 1),
    );
    assert!(matches!(bad, Err(BilevelError::InvalidParameter { .. })));
}

#[test]
fn itd_lecture_eq30_and_eq31() {
    // L = 1 here, so β = 1 is a legal step and both β ≠ 1 and β = 1 can be tried.
    let q = quadratic(3, 5, 0.1, 10.0, 3);
    let th = ThetaHessian::new();
    for (p, betas) in [
        (&q as &dyn Bilevel, vec![0.3, 1.0]),
        (&th as &dyn Bilevel, vec![0.2, 1.0]),
    ] {
        let mut r = rng(60);
        let d = p.dims();
        let theta = random_vector(&mut r, d.d_u, 0.5);
        let phi0 = random_vector(&mut r, d.d_l, 1.0);
        let mut o = Oracle::new(p, 0);
        for beta in betas {
            let e = Sample::Exact;
            let z1 = itd::forward(&mut o, &theta, &phi0, &ItdParams { beta, steps: 1 }, ItdSamples::EXACT)
                .unwrap()
                .z;
            let eq30 = itd::lecture_eq30(&mut o, e, &theta, &phi0, beta).unwrap();
            assert!((&eq30 - &z1).amax() < 1e-14, "(30) is right as printed");
            let z2 = itd::forward(&mut o, &theta, &phi0, &ItdParams { beta, steps: 2 }, ItdSamples::EXACT)
                .unwrap()
                .z;
            let printed = itd::lecture_eq31(&mut o, e, &theta, &phi0, beta, false).unwrap();
            let restored = itd::lecture_eq31(&mut o, e, &theta, &phi0, beta, true).unwrap();
            assert!(
                (&restored - &z2).amax() < 1e-13,
                "(31) with the β restored equals forward mode"
            );
            let gap = (&printed - &z2).amax() / z2.amax();
            if beta == 1.0 {
                assert!(gap < 1e-13, "{}: at β = 1 the missing β does not matter", p.name());
            } else {
                // The gap is β(1 − β)·H(φ¹)·C(φ⁰)ᵀ: O(1) relative to Z_2 here.
                assert!(
                    gap > 0.05,
                    "{}: (31) as printed should differ at β = {beta}, gap {gap}",
                    p.name()
                );
            }
        }
    }
}

#[test]
fn itd_oracle_counts_forward_scales_with_d_u_and_reverse_does_not() {
    let q = quadratic(4, 6, 1.0, 10.0, 1);
    let (theta, phi0) = (Vector::zeros(4), Vector::zeros(6));
    let steps = 7;
    let params = ItdParams { beta: 0.05, steps };
    let mut o = Oracle::new(&q, 0);
    itd::forward(&mut o, &theta, &phi0, &params, ItdSamples::EXACT).unwrap();
    let c = o.counts();
    assert_eq!(
        (c.fl_grad_phi, c.fl_hvp, c.fl_cross_t, c.fl_cross),
        (7, 4 * 6, 4 * 7, 0)
    );
    let mut o = Oracle::new(&q, 0);
    itd::reverse(&mut o, &theta, &phi0, &params, ItdSamples::EXACT, None).unwrap();
    let c = o.counts();
    assert_eq!((c.fl_grad_phi, c.fl_hvp, c.fl_cross, c.fl_cross_t), (7, 6, 7, 0));
    let mut o = Oracle::new(&q, 0);
    itd::reverse(&mut o, &theta, &phi0, &params, ItdSamples::EXACT, Some(3)).unwrap();
    let c = o.counts();
    assert_eq!((c.fl_grad_phi, c.fl_hvp, c.fl_cross), (7, 2, 3));
    // Typed errors on bad parameters.
    for bad in [ItdParams { beta: 0.0, steps }, ItdParams { beta: 0.1, steps: 0 }] {
        assert!(itd::forward(&mut o, &theta, &phi0, &bad, ItdSamples::EXACT).is_err());
    }
    assert!(matches!(
        ItdParams { beta: 0.25, steps }.check(q.constants().l_l),
        Err(BilevelError::StepCondition(_))
    ));
}

/// Error vectors ∇F_T − ∇F for T = 1..=t_max (reverse mode: its cost does not depend on d_u).
fn itd_error_vectors(p: &dyn Bilevel, theta: &Vector, phi0: &Vector, beta: f64, t_max: usize) -> Vec<Vector> {
    let exact = exact::hypergradient(p, theta).unwrap();
    let mut o = Oracle::new(p, 0);
    (1..=t_max)
        .map(|steps| {
            let g = itd::reverse(&mut o, theta, phi0, &ItdParams { beta, steps }, ItdSamples::EXACT, None)
                .unwrap()
                .hypergradient;
            g - &exact
        })
        .collect()
}

/// Errors ‖∇F_T − ∇F‖ for T = 1..=t_max.
fn itd_errors(p: &dyn Bilevel, theta: &Vector, phi0: &Vector, beta: f64, t_max: usize) -> Vec<f64> {
    itd_error_vectors(p, theta, phi0, beta, t_max)
        .iter()
        .map(|e| e.norm())
        .collect()
}

/// The rate q = max_i |1 − βλ_i| and the T-window for fitting it: from where the second-slowest mode (rate q₂) has
/// fallen below 1e-3 of the slowest one, (q₂/q)^T ≤ 1e-3, and q^T ≤ 1e-3 (so that products of two decaying
/// factors, O(t q^{2t}), are ≤ 1e-3 of the leading O(t q^t) term), to where
/// q^T = 1e-10 (still five orders above rounding).
fn window(eig: &Vector, beta: f64) -> (f64, usize, usize) {
    let mut rates: Vec<f64> = eig.iter().map(|l| (1.0 - beta * l).abs()).collect();
    rates.sort_by(|a, b| b.total_cmp(a));
    let (q, q2) = (rates[0], rates.get(1).copied().unwrap_or(0.0));
    let lo = (1e-3f64.ln() / (q2 / q).ln()).max(1e-3f64.ln() / q.ln()).ceil() as usize;
    let hi = (1e-10f64.ln() / q.ln()).floor() as usize;
    assert!(hi >= lo + 10, "window {lo}..{hi} too short: q = {q}, q2 = {q2}");
    (q, lo, hi)
}

/// Checks that the error vectors are ε_t ≈ (a t + b)·q^t over the window with a ≠ 0 (the factor t), and that
/// the rate fitted from ln(‖ε_t‖/t) matches q. Each coordinate of ε_t/q^t is fitted by a line (a_i t + b_i); if the
/// model holds, ln(‖ε_t‖/t) = t ln q + ln(‖a t + b‖/t), so the fitted slope must equal ln q plus the slope of
/// ln(‖a t + b‖/t) over the window (computed from the fitted a, b: the finite-t correction, O(1/t)). Tolerance on
/// that difference: 0.2% of |ln q|, for the 1% misfit allowed in the affine model. Returns the fitted rate.
fn check_t_times_geometric(errs: &[Vector], lo: usize, hi: usize, rate: f64, what: &str) -> f64 {
    let ts: Vec<f64> = (lo..=hi).map(|t| t as f64).collect();
    let u: Vec<Vector> = (lo..=hi).map(|t| &errs[t - 1] / rate.powi(t as i32)).collect();
    let d = u[0].len();
    let (mut a, mut b) = (Vector::zeros(d), Vector::zeros(d));
    for i in 0..d {
        let ui: Vec<f64> = u.iter().map(|v| v[i]).collect();
        a[i] = slope(&ts, &ui);
        b[i] = ui.iter().sum::<f64>() / ui.len() as f64 - a[i] * ts.iter().sum::<f64>() / ts.len() as f64;
    }
    let model = |t: f64| &a * t + &b;
    let misfit = ts
        .iter()
        .zip(&u)
        .map(|(&t, u)| (model(t) - u).norm() / u.norm())
        .fold(0.0, f64::max);
    let growth = model(hi as f64).norm() / model(lo as f64).norm();
    let ls: Vec<f64> = (lo..=hi).map(|t| (errs[t - 1].norm() / t as f64).ln()).collect();
    let fitted = slope(&ts, &ls).exp();
    let correction = slope(&ts, &ts.iter().map(|&t| (model(t).norm() / t).ln()).collect::<Vec<_>>());
    println!(
        "ITD {what}: rate {rate:.5}, fitted on err/t {fitted:.5} (finite-t correction {correction:+.2e}); \
         |a| = {:.3e}, |b| = {:.3e}, misfit {misfit:.1e}, growth x{growth:.2} over {lo}..{hi}",
        a.norm(),
        b.norm()
    );
    // The model holds to 1% over the window (the next eigenmode and the O(t q^{2t}) terms are ≤ 1e-3 relative
    // there, see `window`).
    assert!(misfit < 0.01, "{what}: error/q^t is not affine in t (misfit {misfit})");
    // The factor t is really there: ‖ε_t‖/q^t grows by > 50% over the window (it is constant without it).
    assert!(growth > 1.5, "{what}: no factor t (growth {growth})");
    assert!(
        (fitted.ln() - rate.ln() - correction).abs() <= 2e-3 * rate.ln().abs(),
        "{what}: fitted {fitted} vs {rate} (correction {correction})"
    );
    fitted
}

#[test]
fn itd_converges_at_the_spectral_rate_on_quadratic() {
    let q = quadratic(3, 5, 1.0, 10.0, 7);
    let mut r = rng(70);
    let theta = random_vector(&mut r, 3, 1.0);
    let phi0 = random_vector(&mut r, 5, 1.0);
    for beta_l in [1.0, 1.9] {
        let (b1, eig) = beta_at(&q, &theta);
        let beta = beta_l * b1;
        let (rate, lo, hi) = window(&eig, beta);
        let errs = itd_errors(&q, &theta, &phi0, beta, hi);
        let ts: Vec<f64> = (lo..=hi).map(|t| t as f64).collect();
        let ls: Vec<f64> = (lo..=hi).map(|t| errs[t - 1].ln()).collect();
        let fitted = slope(&ts, &ls).exp();
        println!("ITD quadratic beta*L = {beta_l}: fitted rate {fitted:.5}, max|1 - beta lambda| = {rate:.5}");
        // The LL Hessian and cross derivative are constant: the error is a sum of pure geometric modes (and their
        // products), the slowest being `rate`; in the window every other term is ≤ 1e-3 of it (see `window`).
        // 1% on ln(rate) covers that.
        assert!(
            (fitted.ln() / rate.ln() - 1.0).abs() < 0.01,
            "fitted {fitted} vs {rate}"
        );
        // No factor t: ‖ε_t‖/q^t is constant over the window (to the same 1e-3 contamination, times a margin of 10).
        let growth = (errs[hi - 1] / rate.powi(hi as i32)) / (errs[lo - 1] / rate.powi(lo as i32));
        assert!((growth - 1.0).abs() < 1e-2, "quadratic: error/q^t grew by {growth}");
    }
}

#[test]
fn itd_converges_at_the_spectral_rate_times_t_on_theta_dependent_hessian() {
    let p = ThetaHessian::new();
    let mut r = rng(80);
    // θ with a large s₃ = (Kθ)₃: the slowest mode (mostly e₃) then has a strong φ-dependence of its own cross
    // derivative (2 s₃ φ₃ K₃·), which is what makes the factor t visible. The factor is an upper bound, not
    // universal: the slope c₁ is the slow mode's self-coupling, and at other θ it can be tiny (at a random θ of
    // this family we measured e_t/q^t flat to 3% over 37..181).
    let theta = Vector::from_vec(vec![0.5, -1.0]);
    let phi0 = random_vector(&mut r, 3, 1.0);
    let (beta, eig) = beta_at(&p, &theta);
    let (rate, lo, hi) = window(&eig, beta);
    let errs = itd_error_vectors(&p, &theta, &phi0, beta, hi);
    // The cross derivative depends on φ, so B_t − B* = O(q^t) and the sum over t gives an error ~ (c₁t + c₀)q^t
    // (Grazzi et al. 2020).
    check_t_times_geometric(&errs, lo, hi, rate, "theta-dependent Hessian");
}

// ---------------------------------------------------------------------------------------------------------------
// Hessian-free (Sow et al. 2022a)
// ---------------------------------------------------------------------------------------------------------------

#[test]
fn hessian_free_uses_first_order_oracles_only() {
    let p = ThetaHessian::new();
    let (theta, phi0) = (Vector::from_vec(vec![0.3, -0.2]), Vector::from_element(3, 0.5));
    let hf = HessianFreeParams {
        itd: ItdParams { beta: 0.2, steps: 6 },
        delta: 1e-4,
    };
    for (scheme, runs) in [(Difference::Forward, 2 + 1), (Difference::Central, 2 * 2 + 1)] {
        let mut o = Oracle::new(&p, 0);
        hessian_free::finite_difference(&mut o, &theta, &phi0, &hf, scheme, ItdSamples::EXACT).unwrap();
        let c = o.counts();
        assert_eq!((c.fl_hvp, c.fl_cross, c.fl_cross_t, c.fl_dense), (0, 0, 0, 0));
        assert_eq!(c.fl_grad_phi, 6 * runs);
    }
    let mut o = Oracle::new(&p, 0);
    let mut out = Vector::zeros(2);
    hessian_free::gaussian_smoothing(&mut o, &theta, &phi0, &hf, 5, ItdSamples::EXACT, &mut out).unwrap();
    let c = o.counts();
    assert_eq!(
        (c.fl_hvp, c.fl_cross, c.fl_cross_t, c.fl_dense, c.fl_grad_phi),
        (0, 0, 0, 0, 6 * 6)
    );
    let bad = HessianFreeParams { delta: 0.0, ..hf };
    assert!(
        hessian_free::finite_difference(&mut o, &theta, &phi0, &bad, Difference::Forward, ItdSamples::EXACT).is_err()
    );
}

#[test]
fn hessian_free_fd_error_vanishes_at_order_1_and_2() {
    let p = ThetaHessian::new();
    let mut r = rng(90);
    let theta = random_vector(&mut r, 2, 0.8);
    let phi0 = random_vector(&mut r, 3, 1.0);
    let (beta, _) = beta_at(&p, &theta);
    let itd_p = ItdParams { beta, steps: 5 };
    let mut o = Oracle::new(&p, 0);
    // The exact hypergradient of the same truncated dynamics (forward ITD, itself checked against finite
    // differences of F_T above).
    let target = itd::forward(&mut o, &theta, &phi0, &itd_p, ItdSamples::EXACT)
        .unwrap()
        .hypergradient;
    for (scheme, order, deltas) in [
        (Difference::Forward, 1.0, [1e-2, 5e-3, 2.5e-3, 1.25e-3, 6.25e-4]),
        (Difference::Central, 2.0, [1e-1, 5e-2, 2.5e-2, 1.25e-2, 6.25e-3]),
    ] {
        let mut ld = Vec::new();
        let mut le = Vec::new();
        for delta in deltas {
            let hf = HessianFreeParams { itd: itd_p, delta };
            let g = hessian_free::finite_difference(&mut o, &theta, &phi0, &hf, scheme, ItdSamples::EXACT)
                .unwrap()
                .hypergradient;
            ld.push(delta.ln());
            le.push((g - &target).norm().ln());
        }
        let s = slope(&ld, &le);
        println!("Hessian-free {scheme:?}: fitted order {s:.3}");
        // Deltas are small enough that the next Taylor term is a ≤ 5% correction and large enough that rounding
        // (~1e-16/δ) is ≥ 1e4 below the truncation error: the fitted order is within 0.1 of the theory.
        assert!((s - order).abs() < 0.1, "{scheme:?}: order {s}");
        assert!(le[4] < le[0] - 2.0, "{scheme:?}: the error must vanish");
    }
}

#[test]
fn hessian_free_gaussian_smoothing_is_unbiased_on_quadratic() {
    // φ^T is affine in θ for the quadratic: the difference quotient is exactly Z_T u, so E[ĝ] = ∇F_T.
    let q = quadratic(3, 5, 1.0, 10.0, 8);
    let mut r = rng(91);
    let theta = random_vector(&mut r, 3, 1.0);
    let phi0 = random_vector(&mut r, 5, 1.0);
    let itd_p = ItdParams { beta: 0.05, steps: 8 };
    let mut o = Oracle::new(&q, 5);
    let target = itd::forward(&mut o, &theta, &phi0, &itd_p, ItdSamples::EXACT)
        .unwrap()
        .hypergradient;
    let hf = HessianFreeParams {
        itd: itd_p,
        delta: 1e-3,
    };
    let reps = 20_000;
    let xs: Vec<Vector> = (0..reps)
        .map(|_| {
            let mut out = Vector::zeros(3);
            hessian_free::gaussian_smoothing(&mut o, &theta, &phi0, &hf, 1, ItdSamples::EXACT, &mut out).unwrap();
            out
        })
        .collect();
    let (mean, var) = mean_var(&xs);
    for i in 0..3 {
        let se = (var[i] / reps as f64).sqrt();
        assert!(
            (mean[i] - target[i]).abs() <= Z_CI * se,
            "coord {i}: {} vs {} (se {se})",
            mean[i],
            target[i]
        );
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Regularised value function (26)
// ---------------------------------------------------------------------------------------------------------------

#[test]
fn value_function_sandwich_and_closed_form() {
    let q = quadratic(3, 5, 1.0, 10.0, 12);
    let th = ThetaHessian::new();
    let e = Sample::Exact;
    for (a1, a2) in [(0.1, 0.5), (1.0, 1e-3), (5.0, 2.0)] {
        let params = ValueFunctionParams::new(a1, a2).unwrap();
        for p in [&q as &dyn Bilevel, &th as &dyn Bilevel] {
            let d = p.dims();
            let mut r = rng(100);
            let mut o = Oracle::new(p, 0);
            for _ in 0..5 {
                let theta = random_vector(&mut r, d.d_u, 1.0);
                let phi_star = p.phi_star(&theta);
                let v = p.f_l(e, &theta, &phi_star);
                let out = regularized_value(&mut o, e, &theta, &Vector::zeros(d.d_l), &params).unwrap();
                assert!(out.converged);
                let scale = 1e-12 * (1.0 + v.abs()); // rounding in the values
                let upper = v + a2 + 0.5 * a1 * phi_star.norm_squared();
                assert!(v + a2 <= out.value + scale, "{}: lower side", p.name());
                assert!(out.value <= upper + scale, "{}: upper side", p.name());
                // Not trivially: both sides are strict when φ* ≠ 0.
                assert!(out.value > v + a2 + 1e-9 && out.value < upper - 1e-9);
                // Closed form (both families are quadratic in φ): φ_a = (H(θ) + a₁I)⁻¹(−∇_φ f_l(θ, 0)).
                let mut g0 = Vector::zeros(d.d_l);
                p.grad_phi_fl(e, &theta, &Vector::zeros(d.d_l), &mut g0);
                let h = p.hess_fl(e, &theta, &phi_star) + Matrix::identity(d.d_l, d.d_l) * a1;
                let phi_a = spd_solve_vec("H + a1 I", &h, &(-g0)).unwrap();
                let closed = p.f_l(e, &theta, &phi_a) + 0.5 * a1 * phi_a.norm_squared() + a2;
                assert!(
                    (out.value - closed).abs() < 1e-10 * (1.0 + closed.abs()),
                    "{}",
                    p.name()
                );
                assert!(rel_err(&out.phi, &phi_a) < 1e-9);
                // One Newton step solves a quadratic; a second may polish CG's 1e-10 residual.
                assert!(out.newton_steps <= 2);
            }
        }
    }
}

#[test]
fn value_function_rejects_non_positive_a() {
    for (a1, a2, name) in [
        (0.0, 1.0, "a1"),
        (-1.0, 1.0, "a1"),
        (f64::NAN, 1.0, "a1"),
        (1.0, 0.0, "a2"),
        (1.0, -0.5, "a2"),
        (1.0, f64::INFINITY, "a2"),
    ] {
        match ValueFunctionParams::new(a1, a2) {
            Err(BilevelError::InvalidParameter { name: n, .. }) => assert_eq!(n, name),
            other => panic!("a = ({a1}, {a2}): expected InvalidParameter, got {other:?}"),
        }
    }
    // A hand-built parameter set is checked when used.
    let q = quadratic(3, 5, 1.0, 10.0, 0);
    let mut o = Oracle::new(&q, 0);
    let mut params = ValueFunctionParams::new(1.0, 1.0).unwrap();
    params.a1 = 0.0;
    assert!(regularized_value(&mut o, Sample::Exact, &Vector::zeros(3), &Vector::zeros(5), &params).is_err());
}

/// A family that is not quadratic in φ, so the damped Newton of (26) really iterates:
/// $f_l = \sum_i e^{\phi_i} - c_i(\theta)\phi_i$ with $c = e^{K\theta}$, hence $\phi^\star = K\theta$ and
/// $v(\theta) = \sum_i c_i(1 - \log c_i)$; $f_u = \tfrac12\\|\phi\\|^2 + \tfrac12\\|\theta\\|^2$.
struct ExpFamily {
    k: Matrix,
    domain: Domain,
}

impl ExpFamily {
    fn c(&self, t: &Vector) -> Vector {
        (&self.k * t).map(f64::exp)
    }
}

impl Bilevel for ExpFamily {
    fn name(&self) -> &str {
        "exp (test)"
    }
    fn dims(&self) -> Dims {
        Dims { d_u: 2, d_l: 3 }
    }
    fn draw(&self, _: Level, _: &mut ChaCha8Rng) -> Sample {
        Sample::Exact
    }
    fn f_u(&self, _: Sample, t: &Vector, p: &Vector) -> f64 {
        0.5 * p.norm_squared() + 0.5 * t.norm_squared()
    }
    fn f_l(&self, _: Sample, t: &Vector, p: &Vector) -> f64 {
        p.map(f64::exp).sum() - self.c(t).dot(p)
    }
    fn grad_theta_fl(&self, _: Sample, t: &Vector, p: &Vector, out: &mut Vector) {
        *out = -(self.k.transpose() * self.c(t).component_mul(p));
    }
    fn grad_theta_fu(&self, _: Sample, t: &Vector, _: &Vector, out: &mut Vector) {
        out.copy_from(t);
    }
    fn grad_phi_fu(&self, _: Sample, _: &Vector, p: &Vector, out: &mut Vector) {
        out.copy_from(p);
    }
    fn grad_phi_fl(&self, _: Sample, t: &Vector, p: &Vector, out: &mut Vector) {
        *out = p.map(f64::exp) - self.c(t);
    }
    fn hvp_fl(&self, _: Sample, _: &Vector, p: &Vector, v: &Vector, out: &mut Vector) {
        *out = p.map(f64::exp).component_mul(v);
    }
    fn cross_fl(&self, _: Sample, t: &Vector, _: &Vector, w: &Vector, out: &mut Vector) {
        *out = -(self.k.transpose() * self.c(t).component_mul(w));
    }
    fn cross_t_fl(&self, _: Sample, t: &Vector, _: &Vector, u: &Vector, out: &mut Vector) {
        *out = -self.c(t).component_mul(&(&self.k * u));
    }
    fn phi_star(&self, t: &Vector) -> Vector {
        &self.k * t
    }
    fn theta_star(&self) -> Option<Vector> {
        None
    }
    fn constants(&self) -> Constants {
        Constants::default()
    }
    fn domain(&self) -> &Domain {
        &self.domain
    }
    fn describe(&self) -> String {
        "test family, not quadratic in phi".into()
    }
}

#[test]
fn value_function_sandwich_with_damped_newton() {
    let p = ExpFamily {
        k: Matrix::from_row_slice(3, 2, &[0.8, -0.3, 0.2, 0.9, -0.6, 0.4]),
        domain: Domain::Unbounded,
    };
    let e = Sample::Exact;
    let mut r = rng(110);
    let mut o = Oracle::new(&p, 0);
    // Its oracles against finite differences first (the sandwich below relies on them).
    let t = random_vector(&mut r, 2, 1.0);
    let ph = random_vector(&mut r, 3, 1.0);
    let mut g = Vector::zeros(3);
    p.grad_phi_fl(e, &t, &ph, &mut g);
    assert!(rel_err(&g, &fd_gradient(|x| p.f_l(e, &t, x), &ph, FD_H)) < FD_TOL);
    let mut gt = Vector::zeros(2);
    p.grad_theta_fl(e, &t, &ph, &mut gt);
    assert!(rel_err(&gt, &fd_gradient(|x| p.f_l(e, x, &ph), &t, FD_H)) < FD_TOL);
    for (a1, a2) in [(0.05, 0.1), (1.0, 1.0)] {
        let params = ValueFunctionParams::new(a1, a2).unwrap();
        for start in [-5.0, 0.0, 3.0] {
            let theta = random_vector(&mut r, 2, 1.0);
            let phi_star = p.phi_star(&theta);
            let c = p.c(&theta);
            let v = c.iter().map(|ci| ci * (1.0 - ci.ln())).sum::<f64>(); // closed form of min f_l
            let out = regularized_value(&mut o, e, &theta, &Vector::from_element(3, start), &params).unwrap();
            assert!(out.converged, "a1 {a1} start {start}");
            let slack = 1e-12 * (1.0 + v.abs()); // rounding in the values
            let upper = v + a2 + 0.5 * a1 * phi_star.norm_squared();
            assert!(
                v + a2 <= out.value + slack && out.value <= upper + slack,
                "a1 {a1} start {start}"
            );
            // The minimiser is stationary: e^φ − c + a₁φ = 0 componentwise.
            let res = out.phi.map(f64::exp) - &c + &out.phi * a1;
            assert!(res.amax() < 1e-9);
        }
    }
}

#[test]
fn itd_factor_t_comes_from_the_trajectory_not_from_theta() {
    // ExpFamily: ∇²_φφ f_l = diag(e^φ) does NOT depend on θ, but it varies along the trajectory φ^t, so A_t − A* =
    // O(q^t) and the ITD error is again ~ t·q^t. The factor t disappears only when the second derivatives are
    // constant along the trajectory (f_l quadratic in φ with a φ-independent cross derivative), not merely when the
    // LL Hessian is θ-independent as references.md §3 puts it.
    let p = ExpFamily {
        k: Matrix::from_row_slice(3, 2, &[0.8, -0.3, 0.2, 0.9, -0.6, 0.4]),
        domain: Domain::Unbounded,
    };
    let theta = Vector::from_vec(vec![1.0, -0.5]);
    let phi_star = p.phi_star(&theta);
    let phi0 = &phi_star + Vector::from_vec(vec![0.5, -0.4, 0.3]);
    let eig = phi_star.map(f64::exp); // the Hessian at φ*
    // θ chosen so that the Hessian at φ* has well-separated eigenvalues (e^{Kθ} ≈ 2.59, 0.78, 0.45): with
    // β = 1/L the two slowest modes contract at 0.826 and 0.699 (see `window`).
    let beta = 1.0 / eig.max();
    let (rate, lo, hi) = window(&eig, beta);
    let errs = itd_error_vectors(&p, &theta, &phi0, beta, hi);
    check_t_times_geometric(&errs, lo, hi, rate, "exp family");
}

/// `estimate` refuses a Neumann scale outside $0 < \eta < 2/L_l$ and a workspace of other sizes with typed errors;
/// it used to return a wrong estimate as `Ok` (e.g. $[1481.6, -2515.7]$ against the exact $[1.66, 0.58]$ for
/// $\eta = -1$) or panic inside nalgebra (newcomer audit, session 6).
#[test]
fn estimate_checks_its_method_and_workspace() {
    let p = QuadraticSpec {
        d_u: 2,
        d_l: 3,
        ..Default::default()
    }
    .build()
    .unwrap();
    let l_l = p.constants().l_l;
    let (theta, phi) = (Vector::from_element(2, 0.5), Vector::zeros(3));
    let mut o = Oracle::new(&p, 0);
    let mut out = Vector::zeros(2);
    for eta in [-1.0, 0.0, 2.0 / l_l, f64::NAN] {
        for m in [
            InverseMethod::Neumann(NeumannParams { eta, terms: 5 }),
            InverseMethod::GhadimiWang(NeumannParams { eta, terms: 5 }),
        ] {
            let mut ws = Workspace::new(2, 3);
            let r = estimate(&mut o, &m, &theta, &phi, &mut ws, &mut out);
            assert!(matches!(r, Err(BilevelError::StepCondition(_))), "{m:?}: {r:?}");
        }
    }
    let ok = InverseMethod::Neumann(NeumannParams {
        eta: 1.0 / l_l,
        terms: 5,
    });
    assert!(estimate(&mut o, &ok, &theta, &phi, &mut Workspace::new(2, 3), &mut out).is_ok());
    let mut ws = Workspace::new(2, 3);
    ws.scratch[1] = Vector::zeros(4);
    let r = estimate(&mut o, &ok, &theta, &phi, &mut ws, &mut out);
    assert!(matches!(r, Err(BilevelError::DimensionMismatch { .. })), "{r:?}");
}
