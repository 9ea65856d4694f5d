//! The instance on which TTSA's $k^{-2/3}$ bound on the upper-level error is attained (references §6).
//!
//! $$f_l(\theta,\phi) = \tfrac12(\phi - a\theta)^2,\qquad f_u(\theta,\phi) = \tfrac12\theta^2 + \theta\\,\psi_\delta(\phi - a\theta),
//! \qquad \psi_\delta(u) = \sqrt{\delta^2 + u^2} - \delta,$$
//! $d_u = d_l = 1$, $\Theta = [-R, R]$. Then $\phi^\star(\theta) = a\theta$, $\psi_\delta(0) = 0$, so
//! $F(\theta) = \tfrac12\theta^2$ exactly, $\nabla F(\theta) = \theta$, $\theta^\star = 0$, $\mu_F = L_F = 1$. The surrogate
//! of (13) at an arbitrary $\phi$ is $\bar\nabla f(\theta,\phi) = \theta + \psi_\delta(\phi - a\theta)$: zero-mean LL
//! noise $u$ of size $\sqrt{\beta_k}$ enters as a **bias** $\mathbb{E}\psi_\delta(u)\approx\mathbb{E}|u| - \delta\sim
//! k^{-1/3}$, so $\mathbb{E}\theta_k^2\asymp k^{-2/3}$ (TTSA, Alg 8–9, eqs (40)–(44)).
//!
//! # Why $\delta\ll\sqrt{\beta_K}$
//! $\psi_\delta$ is a smoothed $|u|$: for $|u|\gg\delta$ it is $|u| - \delta$, for $|u|\ll\delta$ it is $u^2/(2\delta)$.
//! Only while the LL error $|u|\sim\sigma\sqrt{\beta_k}$ stays well above $\delta$ is the bias of order
//! $\sqrt{\beta_k}$; once $\sigma\sqrt{\beta_k}\lesssim\delta$ the bias becomes $\sigma^2\beta_k/\delta\sim k^{-2/3}$, the UL
//! error decays faster, and the fitted slope steepens. The relative correction is about $\delta/(\sigma\sqrt{\beta_K})$,
//! so keep that ratio small over the fitted window. The default $\delta = 5\cdot10^{-3}$ gives ratio $\le 0.1$ while
//! $\sigma^2\beta_K\ge 2.5\cdot10^{-3}$ (e.g. $\sigma = 1$, $\beta_k = k^{-2/3}$, $K\le 8000$); build with a smaller
//! $\delta$ for longer horizons. The default is not smaller because $\partial^3 f_u/\partial\phi^3$ reaches
//! $\approx0.86R/\delta^2$: central differences with step $10^{-5}$ (the crate's generic oracle tests) stay below
//! their $10^{-6}$ tolerance only for $\delta\gtrsim 4\cdot10^{-3}$.
//!
//! # Constants (honest: $f_u$ has curvature $\sim1/\delta$ in $\phi$)
//! $\mu_l = L_l = 1$, $C_{\theta\phi} = |a|$, $L_\phi = |a|$, $L_F = \mu_F = 1$, $\rho_F = 0$, $\\|\nabla_\phi f_u\\| =
//! |\theta\psi_\delta'|\le R$. With $|\psi_\delta'|\le1$ and $0 < \psi_\delta''\le1/\delta$:
//! $\nabla_\theta f_u = \theta + \psi_\delta(u) - a\theta\psi_\delta'(u)$ and $\nabla_\phi f_u = \theta\psi_\delta'(u)$ are
//! Lipschitz in $\phi$ with constant $\le 1 + |a|R/\delta$ (declared `l_fu_phi`), and $\nabla_\phi f_u$ is Lipschitz in
//! $\theta$ with the same bound (`l_fu_theta`). These are the $L$ of $\\|\bar\nabla f - \nabla F\\|\le L\\|\phi -
//! \phi^\star\\|$: large, by design.

use crate::error::{BilevelError, Result};
use crate::linalg::{Matrix, Vector};
use crate::problem::{Bilevel, Constants, Dims, Domain, Level, Sample};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

/// Parameters of [`TtsaTight`]; checked by [`TtsaTightSpec::build`].
///
/// Size limit: none needed; the family is one-dimensional ($d_u = d_l = 1$) and has no size parameter.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TtsaTightSpec {
    /// Coupling $a$ ($\phi^\star = a\theta$), nonzero.
    pub a: f64,
    /// Smoothing $\delta > 0$ of $\psi_\delta$.
    pub delta: f64,
    /// Half-width $R$ of $\Theta = [-R, R]$.
    pub radius: f64,
}

impl Default for TtsaTightSpec {
    fn default() -> Self {
        TtsaTightSpec {
            a: 1.0,
            delta: 5e-3,
            radius: 1.0,
        }
    }
}

impl TtsaTightSpec {
    /// Check the parameters and build the instance.
    pub fn build(&self) -> Result<TtsaTight> {
        if !(self.a.is_finite() && self.a != 0.0) {
            return Err(BilevelError::invalid("a", self.a, "must be finite and nonzero"));
        }
        if !(self.delta.is_finite() && self.delta > 0.0) {
            return Err(BilevelError::invalid("delta", self.delta, "must be finite and > 0"));
        }
        if !(self.radius.is_finite() && self.radius > 0.0) {
            return Err(BilevelError::invalid("radius", self.radius, "must be finite and > 0"));
        }
        let (a, r) = (self.a.abs(), self.radius);
        let lip = 1.0 + a * r / self.delta;
        let constants = Constants {
            mu_l: 1.0,
            l_l: 1.0,
            l_l_sample: None,
            cross_bound: Some(a),
            l_fu_phi: Some(lip),
            l_fu_theta: Some(lip),
            grad_phi_fu_bound: Some(r),
            l_hess_phi: Some(0.0),
            l_phi_star: a,
            l_f: 1.0,
            mu_f: Some(1.0),
            weak_convexity: 0.0,
        };
        Ok(TtsaTight {
            spec: self.clone(),
            constants,
            domain: Domain::new_box(vec![-r], vec![r])?,
        })
    }
}

/// The TTSA-tight family (see the module docs).
#[derive(Debug, Clone)]
pub struct TtsaTight {
    spec: TtsaTightSpec,
    constants: Constants,
    domain: Domain,
}

impl TtsaTight {
    /// The parameters it was built from.
    pub fn spec(&self) -> &TtsaTightSpec {
        &self.spec
    }

    /// $\psi_\delta(u) = \sqrt{\delta^2+u^2} - \delta$, computed as $u^2/(\sqrt{\delta^2+u^2}+\delta)$ (no cancellation).
    pub fn psi(&self, u: f64) -> f64 {
        let d = self.spec.delta;
        u * u / ((d * d + u * u).sqrt() + d)
    }

    /// $\psi_\delta'(u) = u/\sqrt{\delta^2+u^2}$.
    pub fn dpsi(&self, u: f64) -> f64 {
        let d = self.spec.delta;
        u / (d * d + u * u).sqrt()
    }

    /// The surrogate $\bar\nabla f(\theta,\phi) = \theta + \psi_\delta(\phi - a\theta)$ of (13) at an arbitrary $\phi$.
    pub fn surrogate(&self, theta: f64, phi: f64) -> f64 {
        theta + self.psi(phi - self.spec.a * theta)
    }
}

impl Bilevel for TtsaTight {
    fn name(&self) -> &str {
        "ttsa_tight"
    }
    fn dims(&self) -> Dims {
        Dims { d_u: 1, d_l: 1 }
    }
    fn draw(&self, _level: Level, _rng: &mut ChaCha8Rng) -> Sample {
        Sample::Exact
    }
    fn f_u(&self, _s: Sample, theta: &Vector, phi: &Vector) -> f64 {
        let (t, u) = (theta[0], phi[0] - self.spec.a * theta[0]);
        0.5 * t * t + t * self.psi(u)
    }
    fn f_l(&self, _s: Sample, theta: &Vector, phi: &Vector) -> f64 {
        let u = phi[0] - self.spec.a * theta[0];
        0.5 * u * u
    }
    fn grad_theta_fu(&self, _s: Sample, theta: &Vector, phi: &Vector, out: &mut Vector) {
        let (t, u) = (theta[0], phi[0] - self.spec.a * theta[0]);
        out[0] = t + self.psi(u) - self.spec.a * t * self.dpsi(u);
    }
    fn grad_phi_fu(&self, _s: Sample, theta: &Vector, phi: &Vector, out: &mut Vector) {
        let (t, u) = (theta[0], phi[0] - self.spec.a * theta[0]);
        out[0] = t * self.dpsi(u);
    }
    fn grad_phi_fl(&self, _s: Sample, theta: &Vector, phi: &Vector, out: &mut Vector) {
        out[0] = phi[0] - self.spec.a * theta[0];
    }
    fn grad_theta_fl(&self, _s: Sample, theta: &Vector, phi: &Vector, out: &mut Vector) {
        out[0] = -self.spec.a * (phi[0] - self.spec.a * theta[0]);
    }
    fn hvp_fl(&self, _s: Sample, _theta: &Vector, _phi: &Vector, v: &Vector, out: &mut Vector) {
        out[0] = v[0];
    }
    fn cross_fl(&self, _s: Sample, _theta: &Vector, _phi: &Vector, w: &Vector, out: &mut Vector) {
        out[0] = -self.spec.a * w[0];
    }
    fn cross_t_fl(&self, _s: Sample, _theta: &Vector, _phi: &Vector, u: &Vector, out: &mut Vector) {
        out[0] = -self.spec.a * u[0];
    }
    fn phi_star(&self, theta: &Vector) -> Vector {
        Vector::from_element(1, self.spec.a * theta[0])
    }
    fn jacobian_phi_star(&self, _theta: &Vector) -> Result<Matrix> {
        Ok(Matrix::from_element(1, 1, self.spec.a))
    }
    fn theta_star(&self) -> Option<Vector> {
        Some(Vector::zeros(1))
    }
    fn constants(&self) -> Constants {
        self.constants.clone()
    }
    fn domain(&self) -> &Domain {
        &self.domain
    }
    fn describe(&self) -> String {
        format!(
            "TTSA-tight instance (references §6): F = theta^2/2, a={}, delta={}, Theta=[-{},{}]",
            self.spec.a, self.spec.delta, self.spec.radius, self.spec.radius
        )
    }
}
