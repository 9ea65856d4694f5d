//! The exact implicit gradient by dense solves: the reference every estimator is compared with.
//!
//! $\nabla F(\theta) = \nabla_\theta f_u - \nabla^2_{\theta\phi} f_l\\,[\nabla^2_{\phi\phi} f_l]^{-1}\nabla_\phi f_u$ at
//! $(\theta,\phi^\star(\theta))$: eq (13) with the Jacobian of (16)–(17) (in this crate's convention
//! $J = -H^{-1}[\nabla^2_{\theta\phi} f_l]^\top$, see [`crate::problem`]). These functions call the family
//! directly (uncounted): they are for checks and metrics, not for algorithms.

use crate::error::Result;
use crate::linalg::{Vector, check_vector, spd_solve_vec};
use crate::problem::{Bilevel, Sample};

/// $\bar\nabla f(\theta,\phi)$ of (18) (with the cross derivative) at sample `s`, by a dense solve. Used as the
/// reference in `dispatcher_exact_methods_equal_the_dense_surrogate`.
pub fn surrogate(p: &dyn Bilevel, s: Sample, theta: &Vector, phi: &Vector) -> Result<Vector> {
    let d = p.dims();
    check_vector("theta", theta, d.d_u)?;
    check_vector("phi", phi, d.d_l)?;
    let mut g_theta = Vector::zeros(d.d_u);
    let mut g_phi = Vector::zeros(d.d_l);
    p.grad_theta_fu(s, theta, phi, &mut g_theta);
    p.grad_phi_fu(s, theta, phi, &mut g_phi);
    let h = p.hess_fl(s, theta, phi);
    let z = spd_solve_vec("lower-level Hessian", &h, &g_phi)?;
    let mut cz = Vector::zeros(d.d_u);
    p.cross_fl(s, theta, phi, &z, &mut cz);
    Ok(g_theta - cz)
}

/// $\nabla F(\theta)$ by the implicit-function formula at $\phi^\star(\theta)$ (dense solve). Test:
/// `exact_hypergradient_matches_closed_form_and_fd` (against the quadratic family's $A_F\theta + g_F$ and finite
/// differences of $F$, also on a family whose LL Hessian depends on $\theta$).
pub fn hypergradient(p: &dyn Bilevel, theta: &Vector) -> Result<Vector> {
    check_vector("theta", theta, p.dims().d_u)?;
    surrogate(p, Sample::Exact, theta, &p.phi_star(theta))
}
