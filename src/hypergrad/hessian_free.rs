//! Hessian-free hypergradients (Sow, Ji & Liang, NeurIPS 2022a; the lecture's "avoid IG approximation completely by
//! Hessian-free approaches"): the Jacobian of the unrolled inner GD map is estimated from first-order oracles only.
//!
//! With $\varphi^T(\theta)$ the $T$-step gradient-descent output of [`super::itd`] ($d\varphi^0/d\theta = 0$) and
//! $Z_T = d\varphi^T/d\theta$, the target is the ITD hypergradient of the truncated dynamics,
//! $\nabla F_T = \nabla_\theta f_u + Z_T^\top\nabla_\phi f_u$ at $(\theta,\varphi^T)$. Jacobian-vector products
//! $Z_T u$ are replaced by differences of whole trajectories, so only $\nabla_\phi f_l$, $\nabla_\theta f_u$ and
//! $\nabla_\phi f_u$ are ever called (no Hessian-vector or cross products):
//! - [`finite_difference`]: coordinate directions,
//!   forward $Z_T e_i \approx (\varphi^T(\theta+\delta e_i)-\varphi^T(\theta))/\delta$ (error $O(\delta)$) or central
//!   $(\varphi^T(\theta+\delta e_i)-\varphi^T(\theta-\delta e_i))/(2\delta)$ (error $O(\delta^2)$); $d_u$ or $2d_u$
//!   extra trajectories. Test: `hessian_free_fd_error_vanishes_at_order_1_and_2`.
//! - [`gaussian_smoothing`] (PZOBO's estimator): $Q$ Gaussian directions $u_q\sim N(0,I_{d_u})$,
//!   $\hat g = \nabla_\theta f_u + \frac1Q\sum_q u_q\\,\langle(\varphi^T(\theta+\delta u_q)-\varphi^T(\theta))/\delta,
//!   \nabla_\phi f_u\rangle$; unbiased for the gradient of the Gaussian-smoothed $\varphi^T$ (exactly unbiased for
//!   $\nabla F_T$ when $\varphi^T$ is affine in $\theta$). Test: `hessian_free_gaussian_smoothing_is_unbiased_on_quadratic`.

use super::itd::{ItdParams, ItdSamples, gd_step};
use crate::error::{BilevelError, Result};
use crate::linalg::{Matrix, Vector, check_vector};
use crate::problem::{Oracle, Sample};
use rand::RngExt;
use rand_distr::StandardNormal;
use serde::Serialize;

/// Finite-difference scheme of [`finite_difference`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Difference {
    /// $(\varphi^T(\theta+\delta e_i)-\varphi^T(\theta))/\delta$: error $O(\delta)$, $d_u$ extra trajectories.
    Forward,
    /// $(\varphi^T(\theta+\delta e_i)-\varphi^T(\theta-\delta e_i))/(2\delta)$: error $O(\delta^2)$, $2d_u$ extra.
    Central,
}

/// Parameters of the Hessian-free estimators.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct HessianFreeParams {
    /// The unrolled dynamics ($\beta$, $T$).
    pub itd: ItdParams,
    /// Smoothing / difference step $\delta > 0$.
    pub delta: f64,
}

impl HessianFreeParams {
    /// Error unless the ITD parameters pass [`ItdParams::check`] and $\delta$ is finite and positive.
    pub fn check(&self, l_l: f64) -> Result<()> {
        self.itd.check(l_l)?;
        self.check_delta()
    }

    fn check_delta(&self) -> Result<()> {
        if !(self.delta.is_finite() && self.delta > 0.0) {
            return Err(BilevelError::invalid(
                "hessian_free.delta",
                self.delta,
                "must be finite and > 0",
            ));
        }
        Ok(())
    }
}

/// Result of [`finite_difference`].
#[derive(Debug, Clone, PartialEq)]
pub struct HessianFreeOutput {
    /// The estimate $\hat Z_T$ of $d\varphi^T/d\theta$ ($d_l\times d_u$).
    pub jacobian: Matrix,
    /// $\varphi^T(\theta)$.
    pub phi_t: Vector,
    /// $\nabla_\theta f_u + \hat Z_T^\top\nabla_\phi f_u$ at $(\theta,\varphi^T)$.
    pub hypergradient: Vector,
}

/// `phi` ← $\varphi^T(\theta)$ from `phi0` with first-order calls only.
fn final_iterate(
    o: &mut Oracle,
    s: Sample,
    theta: &Vector,
    phi0: &Vector,
    p: &ItdParams,
    phi: &mut Vector,
    grad: &mut Vector,
) -> Result<()> {
    phi.copy_from(phi0);
    for _ in 0..p.steps {
        gd_step(o, s, theta, p.beta, phi, grad)?;
    }
    Ok(())
}

fn check_inputs(o: &Oracle, theta: &Vector, phi0: &Vector, p: &HessianFreeParams) -> Result<()> {
    p.itd.check_basic()?;
    p.check_delta()?;
    check_vector("theta", theta, o.dims().d_u)?;
    check_vector("phi0", phi0, o.dims().d_l)
}

/// Hessian-free hypergradient with a coordinate-wise finite-difference Jacobian of the unrolled map (module docs).
///
/// Oracle calls: $(d_u + 1)T$ (forward) or $(2d_u+1)T$ (central) gradients of $f_l$, two upper gradients; no
/// second-order calls (asserted in `hessian_free_uses_first_order_oracles_only`).
pub fn finite_difference(
    o: &mut Oracle,
    theta: &Vector,
    phi0: &Vector,
    p: &HessianFreeParams,
    scheme: Difference,
    samples: ItdSamples,
) -> Result<HessianFreeOutput> {
    check_inputs(o, theta, phi0, p)?;
    let d = o.dims();
    let s = samples.lower;
    let mut grad = Vector::zeros(d.d_l);
    let mut phi_t = Vector::zeros(d.d_l);
    final_iterate(o, s, theta, phi0, &p.itd, &mut phi_t, &mut grad)?;
    let mut jac = Matrix::zeros(d.d_l, d.d_u);
    let mut shifted = theta.clone();
    let mut plus = Vector::zeros(d.d_l);
    let mut minus = Vector::zeros(d.d_l);
    for i in 0..d.d_u {
        shifted[i] = theta[i] + p.delta;
        final_iterate(o, s, &shifted, phi0, &p.itd, &mut plus, &mut grad)?;
        let col = match scheme {
            Difference::Forward => (&plus - &phi_t) / p.delta,
            Difference::Central => {
                shifted[i] = theta[i] - p.delta;
                final_iterate(o, s, &shifted, phi0, &p.itd, &mut minus, &mut grad)?;
                (&plus - &minus) / (2.0 * p.delta)
            }
        };
        shifted[i] = theta[i];
        jac.set_column(i, &col);
    }
    let mut g = Vector::zeros(d.d_u);
    let mut gp = Vector::zeros(d.d_l);
    o.grad_theta_fu(samples.upper, theta, &phi_t, &mut g)?;
    o.grad_phi_fu(samples.upper, theta, &phi_t, &mut gp)?;
    g.gemv_tr(1.0, &jac, &gp, 1.0);
    if !g.iter().all(|x| x.is_finite()) {
        return Err(BilevelError::NonFinite {
            what: "Hessian-free hypergradient".into(),
        });
    }
    Ok(HessianFreeOutput {
        jacobian: jac,
        phi_t,
        hypergradient: g,
    })
}

/// PZOBO-style Gaussian-smoothing hypergradient (module docs) with `directions` $= Q\ge1$ directions drawn from the
/// oracle's stream. `out` ← $\hat g$ (length $d_u$).
///
/// Oracle calls: $(Q+1)T$ gradients of $f_l$, two upper gradients; no second-order calls.
pub fn gaussian_smoothing(
    o: &mut Oracle,
    theta: &Vector,
    phi0: &Vector,
    p: &HessianFreeParams,
    directions: usize,
    samples: ItdSamples,
    out: &mut Vector,
) -> Result<()> {
    let mut ws = SmoothingWorkspace::new(o.dims().d_u, o.dims().d_l);
    gaussian_smoothing_into(o, theta, phi0, p, directions, samples, &mut ws, out)
}

/// Buffers of [`gaussian_smoothing_into`], so that an algorithm calling it every iteration allocates nothing.
#[derive(Debug, Clone)]
pub struct SmoothingWorkspace {
    /// On return: $\varphi^T(\theta)$, the unperturbed final iterate (the warm start of the next outer iteration).
    pub phi_t: Vector,
    grad: Vector,
    gp: Vector,
    u: Vector,
    shifted: Vector,
    plus: Vector,
}

impl SmoothingWorkspace {
    /// Buffers for sizes $d_u$, $d_l$.
    pub fn new(d_u: usize, d_l: usize) -> Self {
        SmoothingWorkspace {
            phi_t: Vector::zeros(d_l),
            grad: Vector::zeros(d_l),
            gp: Vector::zeros(d_l),
            u: Vector::zeros(d_u),
            shifted: Vector::zeros(d_u),
            plus: Vector::zeros(d_l),
        }
    }
}

/// [`gaussian_smoothing`] with caller-owned buffers; `ws.phi_t` ← $\varphi^T(\theta)$ on return. Same draws, same
/// calls and the same result as [`gaussian_smoothing`] (which calls it).
#[allow(clippy::too_many_arguments)]
pub fn gaussian_smoothing_into(
    o: &mut Oracle,
    theta: &Vector,
    phi0: &Vector,
    p: &HessianFreeParams,
    directions: usize,
    samples: ItdSamples,
    ws: &mut SmoothingWorkspace,
    out: &mut Vector,
) -> Result<()> {
    check_inputs(o, theta, phi0, p)?;
    if directions == 0 {
        return Err(BilevelError::invalid("hessian_free.directions", 0, "must be >= 1"));
    }
    let d = o.dims();
    crate::linalg::check_len("output of gaussian_smoothing", out, d.d_u)?;
    // A workspace of other sizes (e.g. built by the caller for another problem) is rebuilt, not trusted.
    let sized = [&ws.phi_t, &ws.grad, &ws.gp, &ws.plus].iter().all(|v| v.len() == d.d_l)
        && ws.u.len() == d.d_u
        && ws.shifted.len() == d.d_u;
    if !sized {
        *ws = SmoothingWorkspace::new(d.d_u, d.d_l);
    }
    let s = samples.lower;
    let SmoothingWorkspace {
        phi_t,
        grad,
        gp,
        u,
        shifted,
        plus,
    } = ws;
    final_iterate(o, s, theta, phi0, &p.itd, phi_t, grad)?;
    o.grad_theta_fu(samples.upper, theta, phi_t, out)?;
    o.grad_phi_fu(samples.upper, theta, phi_t, gp)?;
    let weight = 1.0 / (directions as f64 * p.delta);
    for _ in 0..directions {
        for x in u.iter_mut() {
            *x = o.rng().sample(StandardNormal);
        }
        shifted.copy_from(theta);
        shifted.axpy(p.delta, u, 1.0);
        final_iterate(o, s, shifted, phi0, &p.itd, plus, grad)?;
        *plus -= &*phi_t;
        let c = plus.dot(gp) * weight;
        out.axpy(c, u, 1.0);
    }
    if !out.iter().all(|x| x.is_finite()) {
        return Err(BilevelError::NonFinite {
            what: "Gaussian-smoothing hypergradient".into(),
        });
    }
    Ok(())
}
