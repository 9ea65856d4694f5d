//! Hypergradient estimators: eqs (13)–(18), (23)–(24), (26), (30)–(32) and Alg 7 of the lecture.
//!
//! # Implicit gradient (AID)
//! The implicit estimators approximate the surrogate
//! $$\bar\nabla f(\theta,\phi) = \nabla_\theta f_u(\theta,\phi) - \nabla^2_{\theta\phi} f_l(\theta,\phi)\\,
//! [\nabla^2_{\phi\phi} f_l(\theta,\phi)]^{-1}\nabla_\phi f_u(\theta,\phi),$$
//! which equals $\nabla F(\theta)$ at $\phi = \phi^\star(\theta)$ (eq (13) with (17)). The lecture's (18) and Alg 9
//! write $\nabla^2_\theta f_l$ where the cross derivative $\nabla^2_{\theta\phi} f_l$ is meant; the code uses the
//! cross derivative. They differ only in how $z \approx [\nabla^2_{\phi\phi} f_l]^{-1}\nabla_\phi f_u$ is obtained:
//! [`InverseMethod`], dispatched by [`estimate`] / [`inverse_hvp`].
//!
//! | module | estimator | lecture | test in `tests/hypergrad.rs` |
//! |---|---|---|---|
//! | [`exact`] | dense implicit gradient (reference) | (13), (16)–(18) | `exact_hypergradient_*` |
//! | [`cg`] | conjugate gradient, corrected return | (23), Alg 7 | `cg_*` |
//! | [`neumann`] | truncated Neumann, Ghadimi–Wang, stocBiO | (24) and the stochastic IG slide | `neumann_*`, `ghadimi_wang_*`, `stocbio_*` |
//! | [`itd`] | forward / reverse / truncated-reverse ITD | (30)–(32) | `itd_*` |
//! | [`hessian_free`] | finite-difference and Gaussian-smoothing Jacobians of the GD map (Sow et al. 2022a) | Hessian-free slide | `hessian_free_*` |
//! | [`value_function`] | regularised value function $v_a$ | (26) | `value_function_*` |
//!
//! # Slips of the lecture found and tested here
//! - Alg 7 returns $x_i$ where $x_{i+1}$ is meant ([`cg::solve_alg7_literal`] keeps the printed version).
//! - (24) omits the scale $\eta$: $H^{-1} = \eta\sum_n (I-\eta H)^n$ for $0<\eta<2/L_l$.
//! - (31) drops a $\beta$ in $A_2 = I - \beta\nabla^2_{\phi\phi} f_l$ ([`itd::lecture_eq31`]).

pub mod cg;
pub mod exact;
pub mod hessian_free;
pub mod itd;
pub mod neumann;
pub mod value_function;

use crate::error::{BilevelError, Result};
use crate::linalg::Vector;
use crate::problem::{Level, Oracle};
use serde::Serialize;

/// How the inverse-Hessian-vector product $z = [\nabla^2_{\phi\phi} f_l]^{-1} v$ is computed.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "method", rename_all = "snake_case")]
pub enum InverseMethod {
    /// Dense Cholesky solve with the Hessian at one lower-level sample (BA, Alg 1–2; small $d_l$ only).
    Dense,
    /// Conjugate gradient, Alg 7, at one lower-level sample (AID-BiO, Alg 3).
    Cg(cg::CgOptions),
    /// Deterministic truncated Neumann series (24) at one lower-level sample.
    Neumann(neumann::NeumannParams),
    /// Ghadimi–Wang random truncation: fresh Hessian sample per factor (BSA, TTSA).
    GhadimiWang(neumann::NeumannParams),
    /// The stocBiO estimator: all partial products summed, fresh Hessian sample per factor.
    Stocbio(neumann::NeumannParams),
}

impl InverseMethod {
    /// Check the method's parameters against the lower-level smoothness constant `l_l`.
    pub fn check(&self, l_l: f64) -> Result<()> {
        match self {
            InverseMethod::Dense => Ok(()),
            InverseMethod::Cg(o) => o.check(),
            InverseMethod::Neumann(p) | InverseMethod::GhadimiWang(p) | InverseMethod::Stocbio(p) => p.check(l_l),
        }
    }
}

/// Reusable buffers for [`estimate`], so that a Monte Carlo loop allocates nothing per iteration.
#[derive(Debug, Clone)]
pub struct Workspace {
    /// $\nabla_\phi f_u$ at the upper sample.
    pub g_phi: Vector,
    /// $z\approx H^{-1}\nabla_\phi f_u$ (also the warm start of CG).
    pub z: Vector,
    /// $\nabla^2_{\theta\phi} f_l\\, z$.
    pub cross: Vector,
    /// Scratch of length $d_l$ for the estimators.
    pub scratch: [Vector; 3],
}

impl Workspace {
    /// Error unless every buffer has the size [`Workspace::new`] gives for `d` (its fields are public).
    pub fn check(&self, d: crate::problem::Dims) -> Result<()> {
        let sizes = [
            ("workspace g_phi", &self.g_phi, d.d_l),
            ("workspace z", &self.z, d.d_l),
            ("workspace cross", &self.cross, d.d_u),
            ("workspace scratch[0]", &self.scratch[0], d.d_l),
            ("workspace scratch[1]", &self.scratch[1], d.d_l),
            ("workspace scratch[2]", &self.scratch[2], d.d_l),
        ];
        sizes
            .into_iter()
            .try_for_each(|(what, v, expected)| crate::linalg::check_len(what, v, expected))
    }

    /// Buffers for a problem of sizes $d_u$, $d_l$.
    pub fn new(d_u: usize, d_l: usize) -> Self {
        Workspace {
            g_phi: Vector::zeros(d_l),
            z: Vector::zeros(d_l),
            cross: Vector::zeros(d_u),
            scratch: [Vector::zeros(d_l), Vector::zeros(d_l), Vector::zeros(d_l)],
        }
    }
}

/// Samples used by one hypergradient estimate: one upper sample for $\nabla f_u$, one lower sample for the cross
/// derivative, and (inside the method) one or more lower samples for the Hessian.
///
/// `out` ← $\nabla_\theta f_u - \nabla^2_{\theta\phi} f_l\\, z$ with $z \approx H^{-1}\nabla_\phi f_u$ by `method`.
/// With exact samples ([`Sample::Exact`](crate::problem::Sample::Exact) everywhere, as for a deterministic family) and an exact method this is
/// $\bar\nabla f(\theta,\phi)$. `ws.z` on entry is the CG warm start (Alg 3 warm-starts across iterations).
///
/// Tests: `dispatcher_exact_methods_equal_the_dense_surrogate` (Dense, CG, Neumann, stocBiO against
/// [`exact::surrogate`] at $\phi\ne\phi^\star$, and the samples/calls used),
/// `cg_warm_start_at_the_solution_returns_immediately` (warm start through `ws.z`),
/// `cg_typed_errors_on_indefinite_hessian_and_non_finite_input`.
///
/// # Example
/// On a noise-free family every exact method (dense, CG with $d_l$ steps) gives the exact hypergradient at
/// $\phi^\star(\theta)$, and a truncated Neumann series (24) approaches it as its length grows.
/// ```
/// use bilevel::families::quadratic::QuadraticSpec;
/// use bilevel::hypergrad::{self, InverseMethod, Workspace, cg::CgOptions, exact, neumann::NeumannParams};
/// use bilevel::problem::{Bilevel, Oracle};
/// use bilevel::Vector;
/// # fn main() -> bilevel::Result<()> {
/// let q = QuadraticSpec { d_u: 3, d_l: 5, kappa: 4.0, ..Default::default() }.build()?;
/// let theta = Vector::from_vec(vec![0.5, -1.0, 2.0]);
/// let (phi, truth) = (q.phi_star(&theta), exact::hypergradient(&q, &theta)?);
/// let mut o = Oracle::new(&q, 0);
/// let (mut ws, mut out) = (Workspace::new(3, 5), Vector::zeros(3));
/// let cg = InverseMethod::Cg(CgOptions { max_iter: 5, ..CgOptions::default() });
/// for method in [InverseMethod::Dense, cg] {
///     hypergrad::estimate(&mut o, &method, &theta, &phi, &mut ws, &mut out)?;
///     assert!((&out - &truth).norm() < 1e-8 * truth.norm());
/// }
/// let l_l = q.constants().l_l;
/// let err = |terms: usize, o: &mut Oracle, ws: &mut Workspace, out: &mut Vector| {
///     let m = InverseMethod::Neumann(NeumannParams { eta: 1.0 / l_l, terms });
///     hypergrad::estimate(o, &m, &theta, &phi, ws, out).map(|_| (&*out - &truth).norm())
/// };
/// let (e10, e40) = (err(10, &mut o, &mut ws, &mut out)?, err(40, &mut o, &mut ws, &mut out)?);
/// assert!(e40 < 0.1 * e10);
/// # Ok(())
/// # }
/// ```
pub fn estimate(
    o: &mut Oracle,
    method: &InverseMethod,
    theta: &Vector,
    phi: &Vector,
    ws: &mut Workspace,
    out: &mut Vector,
) -> Result<()> {
    check_method_and_workspace(o, method, ws)?;
    estimate_prechecked(o, method, theta, phi, ws, out)
}

/// A method outside its conditions (a Neumann scale $\eta\le0$ or $\ge2/L_l$) would return a wrong answer as `Ok`,
/// and a workspace of other sizes would panic inside nalgebra: both are user input at the public doors.
fn check_method_and_workspace(o: &Oracle, method: &InverseMethod, ws: &Workspace) -> Result<()> {
    method.check(o.problem().constants().l_l)?;
    ws.check(o.dims())
}

/// [`estimate`] without the method and workspace checks: for the solvers, whose `init` checked the method and
/// sized the workspace once, so that their inner loop does not repeat it every iteration.
pub(crate) fn estimate_prechecked(
    o: &mut Oracle,
    method: &InverseMethod,
    theta: &Vector,
    phi: &Vector,
    ws: &mut Workspace,
    out: &mut Vector,
) -> Result<()> {
    let su = o.draw(Level::Upper);
    o.grad_theta_fu(su, theta, phi, out)?;
    o.grad_phi_fu(su, theta, phi, &mut ws.g_phi)?;
    inverse_hvp_prechecked(o, method, theta, phi, ws)?;
    let sc = o.draw(Level::Lower);
    o.cross_fl(sc, theta, phi, &ws.z, &mut ws.cross)?;
    *out -= &ws.cross;
    if !out.iter().all(|x| x.is_finite()) {
        return Err(BilevelError::NonFinite {
            what: "hypergradient estimate".into(),
        });
    }
    Ok(())
}

/// `ws.z` ← an estimate of $[\nabla^2_{\phi\phi} f_l(\theta,\phi)]^{-1}$ `ws.g_phi` by `method`.
pub fn inverse_hvp(
    o: &mut Oracle,
    method: &InverseMethod,
    theta: &Vector,
    phi: &Vector,
    ws: &mut Workspace,
) -> Result<()> {
    check_method_and_workspace(o, method, ws)?;
    inverse_hvp_prechecked(o, method, theta, phi, ws)
}

/// [`inverse_hvp`] without the checks (see [`estimate_prechecked`]).
fn inverse_hvp_prechecked(
    o: &mut Oracle,
    method: &InverseMethod,
    theta: &Vector,
    phi: &Vector,
    ws: &mut Workspace,
) -> Result<()> {
    match method {
        InverseMethod::Dense => {
            let s = o.draw(Level::Lower);
            let h = o.hess_fl(s, theta, phi)?;
            ws.z = crate::linalg::spd_solve_vec("lower-level Hessian sample", &h, &ws.g_phi)?;
        }
        InverseMethod::Cg(opts) => {
            let s = o.draw(Level::Lower);
            let x0 = ws.z.clone();
            let res = cg::solve(o, s, theta, phi, &ws.g_phi, &x0, opts)?;
            ws.z = res.x;
        }
        InverseMethod::Neumann(p) => {
            let s = o.draw(Level::Lower);
            let [a, b, _] = &mut ws.scratch;
            neumann::truncated_into(o, s, theta, phi, &ws.g_phi, p, &mut ws.z, a, b)?;
        }
        InverseMethod::GhadimiWang(p) => {
            let [a, b, _] = &mut ws.scratch;
            neumann::ghadimi_wang_into(o, theta, phi, &ws.g_phi, p, &mut ws.z, a, b)?;
        }
        InverseMethod::Stocbio(p) => {
            let [a, b, _] = &mut ws.scratch;
            neumann::stocbio_into(o, theta, phi, &ws.g_phi, p, &mut ws.z, a, b)?;
        }
    }
    Ok(())
}

/// Convenience: the estimate at exact samples, i.e. $\bar\nabla f(\theta,\phi)$ up to the method's own error.
pub fn surrogate_with(o: &mut Oracle, method: &InverseMethod, theta: &Vector, phi: &Vector) -> Result<Vector> {
    let d = o.dims();
    let mut ws = Workspace::new(d.d_u, d.d_l);
    let mut out = Vector::zeros(d.d_u);
    estimate(o, method, theta, phi, &mut ws, &mut out)?;
    Ok(out)
}
