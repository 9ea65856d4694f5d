//! The regularised optimal value function of the lecture's eq (26) (BVFIM, Liu et al., ICML 2021):
//! $$v_a(\theta) = \min_{\phi} f_l(\theta,\phi) + \frac{a_1}{2}\\|\phi\\|^2 + a_2,\qquad a_1, a_2 > 0,$$
//! a smooth, strictly feasible upper bound on $v(\theta) = \min_\phi f_l(\theta,\phi)$ used by (27)–(29). Here
//! $\Phi = \mathbb{R}^{d_l}$. The inner problem is $(\mu_l + a_1)$-strongly convex; it is solved by damped Newton
//! with CG on $\nabla^2_{\phi\phi} f_l + a_1 I$ (products only; one step when $f_l$ is quadratic in $\phi$).
//!
//! For every $\theta$ and any lower-level minimiser $\hat\phi(\theta)$:
//! $$v(\theta) + a_2 \le v_a(\theta) \le v(\theta) + a_2 + \frac{a_1}{2}\\|\hat\phi(\theta)\\|^2,$$
//! (lower: the penalty is non-negative; upper: evaluate the objective at $\hat\phi$). Test:
//! `value_function_sandwich_and_closed_form` (two families quadratic in $\phi$, also against the closed form) and
//! `value_function_sandwich_with_damped_newton` (a family that is not quadratic in $\phi$, Newton started far
//! away) in `tests/hypergrad.rs`; typed errors in `value_function_rejects_non_positive_a`.

use super::cg::{self, CgOptions};
use crate::error::{BilevelError, Result};
use crate::linalg::{Vector, check_vector};
use crate::problem::{Oracle, Sample};
use serde::Serialize;

/// Parameters $a = (a_1, a_2)$ of (26) and the inner solver's stopping rule.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ValueFunctionParams {
    /// Regularisation $a_1 > 0$.
    pub a1: f64,
    /// Offset $a_2 > 0$.
    pub a2: f64,
    /// Stop Newton when $\\|\nabla_\phi(f_l + \tfrac{a_1}{2}\\|\phi\\|^2)\\|\le$ `grad_tol`.
    pub grad_tol: f64,
    /// At most this many Newton steps.
    pub max_newton: usize,
    /// CG options for each Newton system.
    pub cg: CgOptions,
}

impl ValueFunctionParams {
    /// $a_1$, $a_2$ with default solver settings (gradient tolerance $10^{-10}$, 50 Newton steps).
    pub fn new(a1: f64, a2: f64) -> Result<Self> {
        let p = ValueFunctionParams {
            a1,
            a2,
            grad_tol: 1e-10,
            max_newton: 50,
            cg: CgOptions::default(),
        };
        p.check()?;
        Ok(p)
    }

    /// Error unless $a_1 > 0$, $a_2 > 0$ (both finite), `grad_tol` $\ge 0$, `max_newton` $\ge 1$, CG options valid.
    pub fn check(&self) -> Result<()> {
        if !(self.a1.is_finite() && self.a1 > 0.0) {
            return Err(BilevelError::invalid("a1", self.a1, "eq (26) needs a1 > 0 (finite)"));
        }
        if !(self.a2.is_finite() && self.a2 > 0.0) {
            return Err(BilevelError::invalid("a2", self.a2, "eq (26) needs a2 > 0 (finite)"));
        }
        if !(self.grad_tol.is_finite() && self.grad_tol >= 0.0) {
            return Err(BilevelError::invalid(
                "grad_tol",
                self.grad_tol,
                "must be finite and >= 0",
            ));
        }
        if self.max_newton == 0 {
            return Err(BilevelError::invalid("max_newton", 0, "must be >= 1"));
        }
        self.cg.check()
    }
}

/// Result of [`regularized_value`].
#[derive(Debug, Clone, PartialEq)]
pub struct ValueFunctionOutput {
    /// $v_a(\theta)$.
    pub value: f64,
    /// The minimiser $\phi_a(\theta)$ of the regularised inner problem.
    pub phi: Vector,
    /// Newton steps taken.
    pub newton_steps: usize,
    /// Norm of the regularised gradient at `phi`.
    pub grad_norm: f64,
    /// Whether `grad_tol` was reached.
    pub converged: bool,
}

/// $v_a(\theta)$ of eq (26) at sample `s`, starting the inner solver at `phi0`.
///
/// Damped Newton on $h(\phi) = f_l(\theta,\phi) + \frac{a_1}{2}\\|\phi\\|^2$: direction $p$ from CG on
/// $(\nabla^2_{\phi\phi} f_l + a_1 I)p = -\nabla h$, then backtracking (halving) until the Armijo condition
/// $h(\phi + tp)\le h(\phi) + 10^{-4}t\nabla h^\top p$ holds.
pub fn regularized_value(
    o: &mut Oracle,
    s: Sample,
    theta: &Vector,
    phi0: &Vector,
    p: &ValueFunctionParams,
) -> Result<ValueFunctionOutput> {
    p.check()?;
    let d = o.dims();
    check_vector("theta", theta, d.d_u)?;
    check_vector("phi0", phi0, d.d_l)?;
    let a1 = p.a1;
    let mut phi = phi0.clone();
    let mut grad = Vector::zeros(d.d_l);
    let h_of =
        |o: &mut Oracle, phi: &Vector| -> Result<f64> { Ok(o.f_l(s, theta, phi)? + 0.5 * a1 * phi.norm_squared()) };
    let mut h = h_of(o, &phi)?;
    let zero = Vector::zeros(d.d_l);
    let mut steps = 0;
    loop {
        o.grad_phi_fl(s, theta, &phi, &mut grad)?;
        grad.axpy(a1, &phi, 1.0);
        let gnorm = grad.norm();
        if !gnorm.is_finite() || !h.is_finite() {
            return Err(BilevelError::NonFinite {
                what: "regularised lower-level objective of (26)".into(),
            });
        }
        if gnorm <= p.grad_tol || steps == p.max_newton {
            return Ok(ValueFunctionOutput {
                value: h + p.a2,
                phi,
                newton_steps: steps,
                grad_norm: gnorm,
                converged: gnorm <= p.grad_tol,
            });
        }
        let rhs = -&grad;
        let dir = cg::solve_shifted(o, s, theta, &phi, a1, &rhs, &zero, &p.cg)?.x;
        let slope = grad.dot(&dir);
        let mut t = 1.0;
        let mut accepted = false;
        for _ in 0..60 {
            let trial = &phi + t * &dir;
            let h_trial = h_of(o, &trial)?;
            if h_trial <= h + 1e-4 * t * slope {
                phi = trial;
                h = h_trial;
                accepted = true;
                break;
            }
            t *= 0.5;
        }
        steps += 1;
        if !accepted {
            // No decrease representable in floating point: phi is a minimiser to rounding.
            o.grad_phi_fl(s, theta, &phi, &mut grad)?;
            grad.axpy(a1, &phi, 1.0);
            let gnorm = grad.norm();
            return Ok(ValueFunctionOutput {
                value: h + p.a2,
                phi,
                newton_steps: steps,
                grad_norm: gnorm,
                converged: gnorm <= p.grad_tol,
            });
        }
    }
}
