//! Deterministic rates of AID-BiO and ITD-BiO (Ji, Yang & Liang 2021) and ITD's bias as a function of $T$
//! (`theory/aid-itd.md`). The predicted factors come from the family's exact matrices by dense algebra (Hessians,
//! $\phi^\star$, $J$), never from the estimators under test.
//!
//! - Outer rates, on the quadratic with exact oracles: the whole iteration $(\theta^k,\phi^k)\mapsto
//!   (\theta^{k+1},\phi^{k+1})$ is affine there, so its linear part $M$ (built here from $H$, $C$, $J$ and the upper
//!   gradients, not from the solvers) gives the exact asymptotic factor $\rho(M)$, and its fixed point the limit.
//! - ITD's bias in $T$: $e_T = \\|\nabla F_T(\theta) - \nabla F(\theta)\\|$ from the warm start
//!   $\varphi^0 = \phi^\star(\theta)$ (what ITD-BiO sees at its fixed point: $e_T = \\|J^\top(I-\beta H)^T
//!   \nabla_\phi f_u\\|$, factor $q = \max_i|1-\beta\lambda_i(H(\theta))|$).

use super::deterministic::{Estimator, RateBug, RateSpec};
use crate::algorithms::{double_loop::DoubleLoop, itd_bio::ItdBio};
use crate::error::{BilevelError, Result};
use crate::families;
use crate::hypergrad::cg::CgOptions;
use crate::hypergrad::itd;
use crate::linalg::{Matrix, Vector, spd_solve_vec};
use crate::problem::{Bilevel, Oracle, Sample};
use crate::solver::{self, Iterate, Observer, Schedule, Solver};

/// Dense Jacobian of a map by central differences with step 1: exact up to rounding for an affine map (the
/// quadratic's, checked by [`affine_defect`]).
fn jacobian(f: &dyn Fn(&Vector) -> Result<Vector>, x: &Vector) -> Result<Matrix> {
    let n = x.len();
    let m = f(x)?.len();
    let mut jac = Matrix::zeros(m, n);
    let mut xp = x.clone();
    for j in 0..n {
        xp[j] = x[j] + 1.0;
        let fp = f(&xp)?;
        xp[j] = x[j] - 1.0;
        let fm = f(&xp)?;
        xp[j] = x[j];
        jac.set_column(j, &((fp - fm) * 0.5));
    }
    Ok(jac)
}

/// Relative defect of the linearisation between two points: 0 (up to rounding) iff the map is affine there.
fn affine_defect(f: &dyn Fn(&Vector) -> Result<Vector>, m: &Matrix, x: &Vector) -> Result<f64> {
    let y = x.map(|v| v + 0.7);
    let lhs = f(&y)? - f(x)?;
    let rhs = m * (&y - x);
    Ok((&lhs - &rhs).norm() / rhs.norm().max(1e-300))
}

/// Spectral radius (largest modulus of a complex eigenvalue).
fn spectral_radius(m: &Matrix) -> f64 {
    m.complex_eigenvalues().iter().map(|c| c.norm()).fold(0.0, f64::max)
}

/// The upper gradients at $(\theta,\phi)$, exact.
fn upper(p: &dyn Bilevel, theta: &Vector, phi: &Vector) -> (Vector, Vector) {
    let d = p.dims();
    let (mut gt, mut gp) = (Vector::zeros(d.d_u), Vector::zeros(d.d_l));
    p.grad_theta_fu(Sample::Exact, theta, phi, &mut gt);
    p.grad_phi_fu(Sample::Exact, theta, phi, &mut gp);
    (gt, gp)
}

/// Which outer method the dense model describes.
#[derive(Clone, Copy)]
enum Outer {
    /// AID-BiO with an exact inverse ($z = H^{-1}\nabla_\phi f_u$ at $\phi^{k+1}$).
    Aid,
    /// ITD-BiO: $Z_T = (I - A^T)J$ on the quadratic ($H$ and $C$ constant), warm start $\varphi^0 = \phi^k$.
    Itd,
}

/// One outer iteration on the stacked state $x = (\theta, \phi)$, by dense algebra: $T$ GD steps
/// $\phi\mapsto A^T\phi + (I - A^T)\phi^\star(\theta)$ with $A = I - \beta H$, then $\theta \mapsto \theta - \alpha\hat g$.
fn dense_step(p: &dyn Bilevel, outer: Outer, alpha: f64, beta: f64, t: usize, x: &Vector) -> Result<Vector> {
    let d = p.dims();
    let theta = x.rows(0, d.d_u).into_owned();
    let phi = x.rows(d.d_u, d.d_l).into_owned();
    let star = p.phi_star(&theta);
    let h = p.hess_fl(Sample::Exact, &theta, &star);
    let a = Matrix::identity(d.d_l, d.d_l) - &h * beta;
    let at = (0..t).fold(Matrix::identity(d.d_l, d.d_l), |acc, _| &acc * &a);
    let phi1 = &at * &phi + (Matrix::identity(d.d_l, d.d_l) - &at) * &star;
    let (gt, gp) = upper(p, &theta, &phi1);
    let hg = match outer {
        Outer::Aid => {
            let c = p.cross_matrix_fl(Sample::Exact, &theta, &phi1);
            let z = spd_solve_vec("H", &p.hess_fl(Sample::Exact, &theta, &phi1), &gp)?;
            gt - c * z
        }
        Outer::Itd => {
            let zt = (Matrix::identity(d.d_l, d.d_l) - &at) * p.jacobian_phi_star(&theta)?;
            gt + zt.transpose() * gp
        }
    };
    let mut out = Vector::zeros(d.d_u + d.d_l);
    out.rows_mut(0, d.d_u).copy_from(&(theta - hg * alpha));
    out.rows_mut(d.d_u, d.d_l).copy_from(&phi1);
    Ok(out)
}

/// Records $\\|\theta^k - \bar\theta\\|$ after every outer iteration.
struct ThetaError {
    target: Vector,
    errs: Vec<f64>,
}

impl Observer for ThetaError {
    fn observe(&mut self, _o: &Oracle, state: &Iterate) -> Result<()> {
        if state.k > 0 {
            self.errs.push((&state.theta - &self.target).norm());
        }
        Ok(())
    }
}

/// The fixed start of every deterministic rate: $\theta^0_i = 0.3 + 0.1i$.
pub(super) fn theta_start(d_u: usize) -> Vector {
    Vector::from_fn(d_u, |i, _| 0.3 + 0.1 * i as f64)
}

/// What the outer-rate claims need from the spec.
fn outer_params(spec: &RateSpec) -> Result<(usize, f64)> {
    let inner = spec
        .inner
        .ok_or_else(|| BilevelError::invalid("inner", "none", "the outer rates need `inner` (T)"))?;
    let scale = spec.alpha_scale.unwrap_or(1.0);
    if inner == 0 || !(scale.is_finite() && scale > 0.0) {
        return Err(BilevelError::invalid(
            "inner/alpha_scale",
            format!("{inner}/{scale}"),
            "need T >= 1 and a finite alpha_scale > 0",
        ));
    }
    Ok((inner, scale))
}

/// Outer error sequence of AID-BiO or ITD-BiO and the predicted factor $\rho(M)$.
pub(super) fn outer_errors(spec: &RateSpec) -> Result<(Vec<f64>, f64)> {
    if spec.problem.family != "quadratic" {
        return Err(BilevelError::invalid(
            "family",
            &spec.problem.family,
            "the outer rates are exact on the quadratic only (the iteration must be affine)",
        ));
    }
    let p = families::build_with(&spec.problem.family, &spec.problem.params)?;
    let p = p.as_ref();
    let d = p.dims();
    let (t, scale) = outer_params(spec)?;
    let beta = 1.0 / p.constants().l_l;
    // α = scale / λ_max(∇²F), with ∇²F from the closed-form ∇F (affine on the quadratic).
    let theta0 = theta_start(d.d_u);
    let hess_f = jacobian(&|th: &Vector| p.grad_f(th), &theta0)?;
    let lam_max = crate::linalg::sym_eig_range(&crate::linalg::symmetrize(&hess_f)).1;
    let alpha = scale / lam_max;
    let outer = match spec.estimator {
        Estimator::AidBio => Outer::Aid,
        _ => Outer::Itd,
    };
    let step = |x: &Vector| dense_step(p, outer, alpha, beta, t, x);
    let x0 = Vector::zeros(d.d_u + d.d_l);
    let m = jacobian(&step, &x0)?;
    let defect = affine_defect(&step, &m, &x0)?;
    if defect > 1e-8 {
        return Err(BilevelError::invalid(
            "family",
            format!("defect {defect:e}"),
            "the outer iteration is not affine on this instance",
        ));
    }
    let rho = spectral_radius(&m);
    // Fixed point x̄ = x0 + (I − M)^{-1}(S(x0) − x0).
    let n = d.d_u + d.d_l;
    let fixed = (Matrix::identity(n, n) - &m)
        .lu()
        .solve(&(step(&x0)? - &x0))
        .ok_or_else(|| BilevelError::invalid("outer map", "I - M singular", "the iteration has no unique limit"))?;
    let target = fixed.rows(0, d.d_u).into_owned();
    let bug = spec.planted;
    let mut solver: Box<dyn Solver> = match spec.estimator {
        Estimator::AidBio => {
            let n_cg = spec
                .solver_steps
                .ok_or_else(|| BilevelError::invalid("solver_steps", "none", "AID-BiO needs CG steps N"))?;
            let mut s = DoubleLoop::aid_bio(
                Schedule::constant(alpha),
                Schedule::constant(beta),
                t,
                CgOptions {
                    tol: 0.0,
                    max_iter: n_cg,
                    keep_iterates: false,
                },
            );
            s.cg_cold_start = bug == Some(RateBug::CgColdStart);
            s.inner_cold_start = bug == Some(RateBug::AidInnerColdStart);
            Box::new(s)
        }
        _ => {
            let mut s = ItdBio::new(Schedule::constant(alpha), beta, t);
            s.cold_start = bug == Some(RateBug::ItdColdStart);
            Box::new(s)
        }
    };
    let mut o = Oracle::new(p, 0);
    let mut rec = ThetaError {
        target,
        errs: Vec::with_capacity(spec.steps),
    };
    let phi0 = Vector::zeros(d.d_l);
    solver::run(solver.as_mut(), &mut o, &theta0, &phi0, spec.steps, &mut rec)?;
    Ok((rec.errs, rho))
}

/// ITD's hypergradient error against $T$ at a fixed $\theta$, and $q = \max_i|1-\beta\lambda_i(H(\theta))|$ from the
/// eigenvalues of the exact LL Hessian ($\beta = 1/L_l$), from the warm start $\varphi^0 = \phi^\star(\theta)$.
pub(super) fn bias_errors(spec: &RateSpec) -> Result<(Vec<f64>, f64)> {
    let p = families::build_with(&spec.problem.family, &spec.problem.params)?;
    let p = p.as_ref();
    let d = p.dims();
    let mut theta = theta_start(d.d_u);
    p.domain().project(&mut theta);
    let star = p.phi_star(&theta);
    let beta = 1.0 / p.constants().l_l;
    let h = p.hess_fl(Sample::Exact, &theta, &star);
    let q = h
        .symmetric_eigenvalues()
        .iter()
        .map(|l| (1.0 - beta * l).abs())
        .fold(0.0, f64::max);
    let exact = p.grad_f(&theta)?;
    let phi0 = star;
    let mut o = Oracle::new(p, 0);
    let mut errs = Vec::with_capacity(spec.steps);
    for steps in 1..=spec.steps {
        let ip = itd::ItdParams { beta, steps };
        let out = if spec.planted == Some(RateBug::DroppedBeta) {
            itd::reverse_dropped_beta(&mut o, &theta, &phi0, &ip, itd::ItdSamples::EXACT)?
        } else {
            itd::reverse(&mut o, &theta, &phi0, &ip, itd::ItdSamples::EXACT, None)?
        };
        errs.push((&out.hypergradient - &exact).norm());
    }
    Ok((errs, q))
}
