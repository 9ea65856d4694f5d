//! Conjugate gradient for $Hx = v$ using only Hessian-vector products: the lecture's Alg 7 (eq (23)).
//!
//! Alg 7 as printed returns $x_i$ on convergence; the iterate that satisfies the stopping test is $x_{i+1}$
//! (the residual $r_{i+1}$ belongs to $x_{i+1}$), so this implementation returns $x_{i+1}$. In exact arithmetic CG
//! terminates in at most $d$ steps, and $\\|x_k - x^\star\\|\_H \le 2\left(\frac{\sqrt\kappa-1}{\sqrt\kappa+1}\right)^k
//! \\|x_0 - x^\star\\|\_H$.

use crate::error::{BilevelError, Result};
use crate::linalg::Vector;
use crate::problem::{Oracle, Sample};
use serde::Serialize;

/// Stopping rule and bookkeeping of [`solve`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct CgOptions {
    /// Stop when $r^\top r \le$ `tol` (Alg 7's $\varepsilon$, on the squared residual).
    pub tol: f64,
    /// At most this many iterations (each one Hessian-vector product).
    pub max_iter: usize,
    /// Keep every iterate $x_0, x_1, \dots$ in [`CgOutput::iterates`].
    pub keep_iterates: bool,
}

impl Default for CgOptions {
    fn default() -> Self {
        CgOptions {
            tol: 1e-20,
            max_iter: 100,
            keep_iterates: false,
        }
    }
}

impl CgOptions {
    /// Error unless `tol ≥ 0` is finite and `max_iter ≥ 1`.
    pub fn check(&self) -> Result<()> {
        if !(self.tol.is_finite() && self.tol >= 0.0) {
            return Err(BilevelError::invalid("cg.tol", self.tol, "must be finite and >= 0"));
        }
        if self.max_iter == 0 {
            return Err(BilevelError::invalid("cg.max_iter", 0, "must be >= 1"));
        }
        Ok(())
    }
}

/// Result of [`solve`].
#[derive(Debug, Clone, PartialEq)]
pub struct CgOutput {
    /// The returned solution.
    pub x: Vector,
    /// Iterations performed (one Hessian-vector product each, plus one for the initial residual).
    pub iterations: usize,
    /// $r^\top r$ at the returned solution.
    pub residual_sq: f64,
    /// Whether the stopping test was met (otherwise `max_iter` was reached).
    pub converged: bool,
    /// $x_0, x_1, \dots$ if requested.
    pub iterates: Vec<Vector>,
}

/// Solve $\nabla^2_{\phi\phi} f_l(\theta,\phi)\\,x = v$ at sample `s`, warm-started at `x0`: Alg 7 with the
/// corrected return ($x_{i+1}$, see the module docs).
///
/// Cost: one Hessian-vector product for $r_0 = v - Hx_0$ plus one per iteration.
/// Errors: wrong sizes; non-finite input; non-positive curvature $d^\top Hd \le 0$
/// ([`BilevelError::NotPositiveDefinite`]), which means the Hessian is not positive definite.
///
/// Tested in `tests/hypergrad.rs` (`cg_*`): termination in $d_l$ steps, the $\kappa$ bound at every iterate,
/// typed errors on an indefinite Hessian and on non-finite input, warm start at the solution.
pub fn solve(
    o: &mut Oracle,
    s: Sample,
    theta: &Vector,
    phi: &Vector,
    v: &Vector,
    x0: &Vector,
    opts: &CgOptions,
) -> Result<CgOutput> {
    solve_shifted(o, s, theta, phi, 0.0, v, x0, opts)
}

/// Solve $(\nabla^2_{\phi\phi} f_l(\theta,\phi) + \sigma I)\\,x = v$ by the same CG as [`solve`] (used for the
/// regularised inner problem of (26), where $\sigma = a_1$). `shift` must be finite and $\ge 0$.
#[allow(clippy::too_many_arguments)]
pub fn solve_shifted(
    o: &mut Oracle,
    s: Sample,
    theta: &Vector,
    phi: &Vector,
    shift: f64,
    v: &Vector,
    x0: &Vector,
    opts: &CgOptions,
) -> Result<CgOutput> {
    opts.check()?;
    if !(shift.is_finite() && shift >= 0.0) {
        return Err(BilevelError::invalid("cg.shift", shift, "must be finite and >= 0"));
    }
    let d_l = o.dims().d_l;
    crate::linalg::check_vector("cg right-hand side", v, d_l)?;
    crate::linalg::check_vector("cg warm start", x0, d_l)?;
    cg_core(
        |x: &Vector, out: &mut Vector| {
            o.hvp_fl(s, theta, phi, x, out)?;
            if shift != 0.0 {
                out.axpy(shift, x, 1.0);
            }
            Ok(())
        },
        v,
        x0,
        opts,
    )
}

/// Conjugate gradient on an operator given as a product `hvp(x, out)`: `out` ← $Hx$.
fn cg_core(
    mut hvp: impl FnMut(&Vector, &mut Vector) -> Result<()>,
    v: &Vector,
    x0: &Vector,
    opts: &CgOptions,
) -> Result<CgOutput> {
    let d_l = v.len();
    let mut x = x0.clone();
    let mut hd = Vector::zeros(d_l);
    // r_0 = v − H x_0, d_0 = r_0.
    hvp(&x, &mut hd)?;
    let mut r = v - &hd;
    let mut d = r.clone();
    let mut rr = r.dot(&r);
    if !rr.is_finite() {
        return Err(BilevelError::NonFinite {
            what: "CG initial residual".into(),
        });
    }
    let mut iterates = Vec::new();
    if opts.keep_iterates {
        iterates.push(x.clone());
    }
    let mut iterations = 0;
    let mut converged = rr <= opts.tol;
    while !converged && iterations < opts.max_iter {
        hvp(&d, &mut hd)?;
        let curvature = d.dot(&hd);
        if !curvature.is_finite() {
            return Err(BilevelError::NonFinite {
                what: format!("CG curvature at iteration {iterations}"),
            });
        }
        if curvature <= 0.0 {
            return Err(BilevelError::NotPositiveDefinite {
                what: format!("lower-level Hessian (CG curvature d'Hd at iteration {iterations})"),
                min_eig: curvature / d.dot(&d),
            });
        }
        let alpha = rr / curvature;
        x.axpy(alpha, &d, 1.0);
        r.axpy(-alpha, &hd, 1.0);
        let rr_next = r.dot(&r);
        iterations += 1;
        if opts.keep_iterates {
            iterates.push(x.clone());
        }
        converged = rr_next <= opts.tol;
        let beta = rr_next / rr;
        rr = rr_next;
        // d ← r + β d
        d *= beta;
        d += &r;
    }
    Ok(CgOutput {
        x,
        iterations,
        residual_sq: rr,
        converged,
        iterates,
    })
}

/// The lecture's Alg 7 **exactly as printed**, kept to demonstrate its slip: on convergence
/// ($r_{i+1}^\top r_{i+1}\le\varepsilon$) it returns $x_i$, the iterate *before* the last update, whose residual
/// is $r_i$, not $r_{i+1}$. Also as printed: $\alpha_i = d_i^\top r_i / d_i^\top H d_i$, the loop runs
/// $i = 0,\dots,n$ and falls through to $x_{n+1}$.
///
/// Do not use it to solve systems: use [`solve`]. The test `cg_alg7_as_printed_returns_a_worse_iterate` in
/// `tests/hypergrad.rs` shows that its answer is far worse than the corrected one.
#[allow(clippy::too_many_arguments)]
pub fn solve_alg7_literal(
    o: &mut Oracle,
    s: Sample,
    theta: &Vector,
    phi: &Vector,
    v: &Vector,
    x0: &Vector,
    eps: f64,
    n: usize,
) -> Result<Vector> {
    let d_l = o.dims().d_l;
    crate::linalg::check_vector("cg right-hand side", v, d_l)?;
    crate::linalg::check_vector("cg warm start", x0, d_l)?;
    if !(eps.is_finite() && eps > 0.0) {
        return Err(BilevelError::invalid("alg7.eps", eps, "must be finite and > 0"));
    }
    let mut x = x0.clone();
    let mut hd = Vector::zeros(d_l);
    o.hvp_fl(s, theta, phi, &x, &mut hd)?;
    let mut r = v - &hd;
    let mut d = r.clone();
    for i in 0..=n {
        o.hvp_fl(s, theta, phi, &d, &mut hd)?;
        let curvature = d.dot(&hd);
        if !(curvature.is_finite() && curvature > 0.0) {
            return Err(BilevelError::NotPositiveDefinite {
                what: format!("lower-level Hessian (Alg 7 curvature at iteration {i})"),
                min_eig: curvature / d.dot(&d),
            });
        }
        let alpha = d.dot(&r) / curvature;
        let x_i = x.clone();
        x.axpy(alpha, &d, 1.0);
        let rr = r.dot(&r);
        r.axpy(-alpha, &hd, 1.0);
        let rr_next = r.dot(&r);
        let beta = rr_next / rr;
        d *= beta;
        d += &r;
        if rr_next <= eps {
            return Ok(x_i); // "return x_i", as printed
        }
    }
    Ok(x)
}
