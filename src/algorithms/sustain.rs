//! SUSTAIN: double momentum, eqs (21)–(22) (Khanduri, Zeng, Hong, Wai, Wang & Yang, NeurIPS 2021).
//!
//! STORM-style recursive momentum on both levels, each correction evaluated at one fresh sample at the new and
//! the old point ([`Oracle::replay`] draws the same samples, including the Neumann depth):
//! $$\tilde h_l^k = \nabla_\phi f_l(\theta^k,\phi^k;\xi_k) + \eta_l^k\big(\tilde h_l^{k-1} - \nabla_\phi f_l(\theta^{k-1},\phi^{k-1};\xi_k)\big),$$
//! $$\tilde h_u^k = \hat\nabla f(\theta^k,\phi^k;\bar\xi_k) + \eta_u^k\big(\tilde h_u^{k-1} - \hat\nabla f(\theta^{k-1},\phi^{k-1};\bar\xi_k)\big),$$
//! $$\phi^{k+1} = \phi^k - \beta_k\tilde h_l^k,\qquad \theta^{k+1} = \mathcal{P}\_\Theta(\theta^k - \alpha_k\tilde h_u^k).$$
//! (The lecture's form $(1-\eta)g^k + \eta(\tilde h^{k-1} + g^k - g^{k-1})$ is the same expression.) Schedule:
//! $\alpha_k = c_\alpha/(k+k_0)^{1/3}$, $\beta_k = c_\beta\alpha_k$, $1-\eta^k = c_\eta\alpha_k^2$ (capped at 1).
//! Guarantee: $\tilde O(\varepsilon^{-3/2})$ samples (references §4). The hypergradient uses the Ghadimi–Wang
//! estimator with growing truncation.

use super::common::{NeumannGrowth, upper_step};
use crate::error::{BilevelError, Result};
use crate::hypergrad::{InverseMethod, Workspace, estimate_prechecked};
use crate::linalg::Vector;
use crate::problem::{Level, Oracle};
use crate::solver::{Iterate, Schedule, Solver};

/// SUSTAIN with the schedule of the module docs.
#[derive(Debug, Clone)]
pub struct Sustain {
    /// Upper-level steps $\alpha_k$ (power 1/3 in the theorem).
    pub alpha: Schedule,
    /// $\beta_k = c_\beta\\,\alpha_k$.
    pub c_beta: f64,
    /// $1-\eta_u^k = 1-\eta_l^k = \min(1, c_\eta\alpha_k^2)$.
    pub c_eta: f64,
    /// Neumann truncation schedule.
    pub neumann: NeumannGrowth,
    /// Planted bug: $\eta_k = 0$, plain stochastic directions without the recursive correction.
    pub no_momentum: bool,
    /// Planted bug: the correction's evaluation at the previous point uses a fresh sample instead of the one used
    /// at the new point (the difference $g(x^k;\xi)-g(x^{k-1};\xi')$ then carries the full noise).
    pub stale_sample: bool,
    ws: Workspace,
    hu: Vector,
    hl: Vector,
    gl: Vector,
    gu: Vector,
    old_l: Vector,
    old_u: Vector,
    prev_theta: Vector,
    prev_phi: Vector,
    started: bool,
}

impl Sustain {
    /// New solver.
    pub fn new(alpha: Schedule, c_beta: f64, c_eta: f64, neumann: NeumannGrowth) -> Self {
        Sustain {
            alpha,
            c_beta,
            c_eta,
            neumann,
            no_momentum: false,
            stale_sample: false,
            ws: Workspace::new(0, 0),
            hu: Vector::zeros(0),
            hl: Vector::zeros(0),
            gl: Vector::zeros(0),
            gu: Vector::zeros(0),
            old_l: Vector::zeros(0),
            old_u: Vector::zeros(0),
            prev_theta: Vector::zeros(0),
            prev_phi: Vector::zeros(0),
            started: false,
        }
    }
}

impl Solver for Sustain {
    fn name(&self) -> &'static str {
        "sustain"
    }
    fn init(&mut self, o: &mut Oracle, _state: &Iterate) -> Result<()> {
        let l_l = o.problem().constants().l_l;
        self.alpha.check("alpha")?;
        for (n, v) in [("c_beta", self.c_beta), ("c_eta", self.c_eta)] {
            if !(v.is_finite() && v > 0.0) {
                return Err(BilevelError::invalid(n, v, "must be finite and > 0"));
            }
        }
        let beta0 = self.c_beta * self.alpha.at(0);
        if beta0 >= 2.0 / l_l {
            return Err(BilevelError::StepCondition(format!(
                "beta_0 = c_beta * alpha_0 = {beta0} must be < 2/L_l = {}",
                2.0 / l_l
            )));
        }
        self.neumann.check(l_l)?;
        let d = o.dims();
        self.ws = Workspace::new(d.d_u, d.d_l);
        self.hu = Vector::zeros(d.d_u);
        self.hl = Vector::zeros(d.d_l);
        self.gl = Vector::zeros(d.d_l);
        self.gu = Vector::zeros(d.d_u);
        self.old_l = Vector::zeros(d.d_l);
        self.old_u = Vector::zeros(d.d_u);
        self.prev_theta = Vector::zeros(d.d_u);
        self.prev_phi = Vector::zeros(d.d_l);
        self.started = false;
        Ok(())
    }
    fn step(&mut self, o: &mut Oracle, mut st: Iterate) -> Result<Iterate> {
        let k = st.k;
        let alpha = self.alpha.at(k);
        let keep = if self.no_momentum {
            0.0
        } else {
            1.0 - (self.c_eta * alpha * alpha).min(1.0)
        };
        let method = InverseMethod::GhadimiWang(self.neumann.at(k));
        // Lower level: one sample, two points.
        let s = o.draw(Level::Lower);
        o.grad_phi_fl(s, &st.theta, &st.phi, &mut self.gl)?;
        // Upper level: the estimator's draws are replayed at the old point.
        let snap = o.snapshot();
        estimate_prechecked(o, &method, &st.theta, &st.phi, &mut self.ws, &mut self.gu)?;
        if self.started && keep > 0.0 {
            let (ws, old_u, tp, pp) = (&mut self.ws, &mut self.old_u, &self.prev_theta, &self.prev_phi);
            if self.stale_sample {
                let s_old = o.draw(Level::Lower);
                o.grad_phi_fl(s_old, tp, pp, &mut self.old_l)?;
                estimate_prechecked(o, &method, tp, pp, ws, old_u)?;
            } else {
                o.grad_phi_fl(s, tp, pp, &mut self.old_l)?;
                o.replay(snap, |o| estimate_prechecked(o, &method, tp, pp, ws, old_u))?;
            }
            // h ← g(new) + keep·(h − g(old)).
            self.hl -= &self.old_l;
            self.hl *= keep;
            self.hl += &self.gl;
            self.hu -= &self.old_u;
            self.hu *= keep;
            self.hu += &self.gu;
        } else {
            self.hl.copy_from(&self.gl);
            self.hu.copy_from(&self.gu);
        }
        self.started = true;
        self.prev_theta.copy_from(&st.theta);
        self.prev_phi.copy_from(&st.phi);
        st.phi.axpy(-self.c_beta * alpha, &self.hl, 1.0);
        st.theta_prev.copy_from(&st.theta);
        upper_step(o, &mut st.theta, alpha, &self.hu);
        st.k += 1;
        Ok(st)
    }
}
