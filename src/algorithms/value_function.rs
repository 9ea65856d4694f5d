//! Value-function methods, eqs (25)–(29): no implicit gradient at all.
//!
//! The lower-level constraint $\phi\in\arg\min f_l(\theta,\cdot)$ is replaced by $f_l(\theta,\phi)\le\tilde v_a(\theta)$ with
//! the smooth upper bound (26) $\tilde v_a(\theta) = \min_z f_l(\theta,z) + \tfrac{a_1}2\\|z\\|^2 + a_2$. Both methods track
//! its minimiser $z$ by $N$ warm-started gradient steps per iteration, and use Danskin's theorem
//! $\nabla\tilde v_a(\theta) = \nabla_\theta f_l(\theta,z^\star)$.
//! - `penalty`, eq (28): gradient steps on $f_u + \rho\max\\{0, f_l - \tilde v_a\\}$ in $(\theta,\phi)$, fixed $\rho$.
//! - `primal-dual`, eq (29) (Sow et al. 2022b): the same Lagrangian $f_u + \rho(f_l - \tilde v_a)$ with a primal
//!   descent step and a projected dual ascent step $\rho\leftarrow\max\\{0, \rho + \gamma(f_l - \tilde v_a)\\}$.
//!
//! These methods only have asymptotic guarantees (BVFIM, Liu et al. 2021; references §4): no rate is tested. The
//! test `algorithms::value_function_methods_approach_theta_star` checks that the solution's bias shrinks with
//! $a_1, a_2$ (penalty: and with $\rho$). Per iteration: $N$ lower samples for $z$, one lower sample for the
//! constraint ($f_l$, $\nabla f_l$ at $\phi$ and at $z$), one upper sample.

use super::common::upper_step;
use crate::error::{BilevelError, Result};
use crate::linalg::Vector;
use crate::problem::{Level, Oracle};
use crate::solver::{Iterate, Schedule, Solver};

/// Penalty (28) or primal-dual (29).
#[derive(Debug, Clone)]
pub struct ValueFunction {
    /// Primal steps for $\theta$ and $\phi$.
    pub alpha: Schedule,
    /// Step of the inner gradient steps on $z$.
    pub gamma_z: f64,
    /// Inner steps per iteration, $N\ge1$.
    pub inner: usize,
    /// $a_1 > 0$ of (26).
    pub a1: f64,
    /// $a_2 > 0$ of (26).
    pub a2: f64,
    /// Penalty $\rho$ (fixed for `penalty`; the initial multiplier for `primal-dual`).
    pub rho: f64,
    /// Dual step $\gamma$: `None` for the penalty method (28), `Some` for primal-dual (29).
    pub dual_step: Option<f64>,
    z: Vector,
    g_z: Vector,
    g_u: Vector,
    g_p: Vector,
    g_t: Vector,
    g_tz: Vector,
    rho_now: f64,
}

impl ValueFunction {
    /// The penalty method (28).
    pub fn penalty(alpha: Schedule, gamma_z: f64, inner: usize, a1: f64, a2: f64, rho: f64) -> Self {
        Self::make(alpha, gamma_z, inner, a1, a2, rho, None)
    }
    /// The primal-dual method (29) with dual step `dual_step`, starting from multiplier `rho0`.
    pub fn primal_dual(
        alpha: Schedule,
        gamma_z: f64,
        inner: usize,
        a1: f64,
        a2: f64,
        rho0: f64,
        dual_step: f64,
    ) -> Self {
        Self::make(alpha, gamma_z, inner, a1, a2, rho0, Some(dual_step))
    }
    fn make(alpha: Schedule, gamma_z: f64, inner: usize, a1: f64, a2: f64, rho: f64, dual: Option<f64>) -> Self {
        ValueFunction {
            alpha,
            gamma_z,
            inner,
            a1,
            a2,
            rho,
            dual_step: dual,
            z: Vector::zeros(0),
            g_z: Vector::zeros(0),
            g_u: Vector::zeros(0),
            g_p: Vector::zeros(0),
            g_t: Vector::zeros(0),
            g_tz: Vector::zeros(0),
            rho_now: rho,
        }
    }
    /// The current multiplier $\rho$ (changes only for primal-dual).
    pub fn multiplier(&self) -> f64 {
        self.rho_now
    }
}

impl Solver for ValueFunction {
    fn name(&self) -> &'static str {
        if self.dual_step.is_some() {
            "primal-dual"
        } else {
            "penalty"
        }
    }
    fn init(&mut self, o: &mut Oracle, state: &Iterate) -> Result<()> {
        let l_l = o.problem().constants().l_l;
        self.alpha.check("alpha")?;
        for (n, v) in [("a1", self.a1), ("a2", self.a2)] {
            if !(v.is_finite() && v > 0.0) {
                return Err(BilevelError::invalid(n, v, "(26) needs a1, a2 > 0"));
            }
        }
        if !(self.rho.is_finite() && self.rho >= 0.0) {
            return Err(BilevelError::invalid("rho", self.rho, "must be finite and >= 0"));
        }
        if let Some(g) = self.dual_step
            && !(g.is_finite() && g > 0.0)
        {
            return Err(BilevelError::invalid("dual_step", g, "must be finite and > 0"));
        }
        if !(self.gamma_z > 0.0 && self.gamma_z < 2.0 / (l_l + self.a1)) {
            return Err(BilevelError::StepCondition(format!(
                "gamma_z = {} must be in (0, 2/(L_l + a1)) = (0, {}) for the inner steps on z to converge",
                self.gamma_z,
                2.0 / (l_l + self.a1)
            )));
        }
        if self.inner == 0 {
            return Err(BilevelError::invalid("inner", 0, "must be >= 1"));
        }
        let d = o.dims();
        self.z = state.phi.clone();
        self.g_z = Vector::zeros(d.d_l);
        self.g_u = Vector::zeros(d.d_u);
        self.g_p = Vector::zeros(d.d_l);
        self.g_t = Vector::zeros(d.d_u);
        self.g_tz = Vector::zeros(d.d_u);
        self.rho_now = self.rho;
        Ok(())
    }
    fn step(&mut self, o: &mut Oracle, mut st: Iterate) -> Result<Iterate> {
        let k = st.k;
        // z ← z − γ(∇_φ f_l(θ, z) + a1 z), N times: the minimiser of (26).
        for _ in 0..self.inner {
            let s = o.draw(Level::Lower);
            o.grad_phi_fl(s, &st.theta, &self.z, &mut self.g_z)?;
            self.g_z.axpy(self.a1, &self.z, 1.0);
            self.z.axpy(-self.gamma_z, &self.g_z, 1.0);
        }
        let s = o.draw(Level::Lower);
        let v_a = o.f_l(s, &st.theta, &self.z)? + 0.5 * self.a1 * self.z.norm_squared() + self.a2;
        let gap = o.f_l(s, &st.theta, &st.phi)? - v_a;
        // Weight of the constraint gradient: ρ·1[gap > 0] for (28), ρ for (29).
        let w = match self.dual_step {
            None if gap > 0.0 => self.rho_now,
            None => 0.0,
            Some(_) => self.rho_now,
        };
        let su = o.draw(Level::Upper);
        o.grad_theta_fu(su, &st.theta, &st.phi, &mut self.g_u)?;
        o.grad_phi_fu(su, &st.theta, &st.phi, &mut self.g_p)?;
        if w > 0.0 {
            o.grad_theta_fl(s, &st.theta, &st.phi, &mut self.g_t)?;
            o.grad_theta_fl(s, &st.theta, &self.z, &mut self.g_tz)?;
            self.g_u.axpy(w, &self.g_t, 1.0);
            self.g_u.axpy(-w, &self.g_tz, 1.0);
            o.grad_phi_fl(s, &st.theta, &st.phi, &mut self.g_z)?;
            self.g_p.axpy(w, &self.g_z, 1.0);
        }
        let alpha = self.alpha.at(k);
        st.theta_prev.copy_from(&st.theta);
        upper_step(o, &mut st.theta, alpha, &self.g_u);
        st.phi.axpy(-alpha, &self.g_p, 1.0);
        if let Some(gamma) = self.dual_step {
            self.rho_now = (self.rho_now + gamma * gap).max(0.0);
        }
        st.k += 1;
        Ok(st)
    }
}
