//! TTSA, Algs 4/8/9 (Hong, Wai, Wang & Yang, SIOPT 2023), and its heavy-ball-averaged variant, eq (20).
//!
//! $$\phi^{k+1} = \phi^k - \beta_k\nabla_\phi f_l(\theta^k,\phi^k;\xi_k),\qquad
//! \theta^{k+1} = \mathcal{P}\_\Theta\big(\theta^k - \alpha_k h^k\big),\quad h^k = \hat\nabla f(\theta^k,\phi^{k+1}),$$
//! the upper step at the **new** lower iterate $\phi^{k+1}$, with the Ghadimi–Wang Neumann estimator whose length
//! grows like $\log k$ ([`NeumannGrowth`]). Guarantees (references §4):
//! - $F$ strongly convex, $\alpha_k = c_\alpha/(k+k_\alpha)$, $\beta_k = c_\beta/(k+k_\beta)^{2/3}$:
//!   $\mathbb{E}\\|\theta^k-\theta^\star\\|^2 = O(k^{-2/3})$ and $\mathbb{E}\\|\phi^k-\phi^\star(\theta^{k-1})\\|^2 = O(k^{-2/3})$,
//!   eqs (44)–(48) — squared errors; the lecture's unsquared $\Delta_\theta$ does not decay at that rate.
//! - $F$ weakly convex, $\alpha\asymp K^{-3/5}$, $\beta\asymp K^{-2/5}$: the Moreau measure (38) at a uniformly random
//!   iterate is $O(K^{-2/5})$, eqs (50)–(52).
//!
//! With `momentum = Some(η)` the upper step uses $h^k \leftarrow \eta h^{k-1} + (1-\eta)\hat\nabla f(\theta^k,\phi^{k+1})$,
//! eq (20) (name `momentum`).
//!
//! Per iteration: one lower sample for the LL step; one upper sample, one lower sample for the cross product and
//! $p\le N_k$ lower samples for the Neumann product.

use super::common::{NeumannGrowth, check_lower_step, check_timescales, lower_step, upper_step};
use crate::error::{BilevelError, Result};
use crate::hypergrad::{InverseMethod, Workspace, estimate_prechecked};
use crate::linalg::Vector;
use crate::problem::Oracle;
use crate::solver::{Iterate, Schedule, Solver};

/// TTSA (and eq (20) momentum when `momentum` is set).
#[derive(Debug, Clone)]
pub struct Ttsa {
    /// Upper-level steps $\alpha_k$.
    pub alpha: Schedule,
    /// Lower-level steps $\beta_k$.
    pub beta: Schedule,
    /// Neumann truncation schedule.
    pub neumann: NeumannGrowth,
    /// Momentum weight $\eta\in[0,1)$ of eq (20) on the old direction; `None` for plain TTSA.
    pub momentum: Option<f64>,
    /// Enforce the two-timescale condition $\alpha_k/\beta_k\to0$ in `init` (turn off only to study violations).
    pub enforce_timescales: bool,
    /// Evaluate the upper step at the stale $\phi^k$ instead of $\phi^{k+1}$ (a plausible bug, for power tests).
    pub stale_phi: bool,
    /// Planted bug: eq (20) with the weights swapped, $h^k \leftarrow (1-\eta)h^{k-1} + \eta\hat\nabla f$ (invisible
    /// at $\eta = 0.5$; test `planted_bugs::momentum_weights_match_eq20_by_hand`).
    pub swap_momentum_weights: bool,
    /// Planted bug: the upper step $\theta - \alpha_k h$ without the projection on $\Theta$ of Alg 4 / eq (49) (on
    /// an unbounded $\Theta$ the projection is the identity and the bug is invisible; power test
    /// `power/ttsa-wc/moreau/no-projection`).
    pub skip_projection: bool,
    /// Planted bug: the upper step taken with the lower level's step $\beta_k$ instead of $\alpha_k$ (a schedule
    /// mix-up that the two-timescale check in `init` cannot see: both schedules are right, one is used twice;
    /// power test `power/ttsa-wc/step-average/upper-step-beta`).
    pub upper_step_beta: bool,
    ws: Workspace,
    h: Vector,
    dir: Vector,
    buf_l: Vector,
    phi_old: Vector,
}

impl Ttsa {
    /// TTSA with the given schedules.
    pub fn new(alpha: Schedule, beta: Schedule, neumann: NeumannGrowth) -> Self {
        Ttsa {
            alpha,
            beta,
            neumann,
            momentum: None,
            enforce_timescales: true,
            stale_phi: false,
            swap_momentum_weights: false,
            skip_projection: false,
            upper_step_beta: false,
            ws: Workspace::new(0, 0),
            h: Vector::zeros(0),
            dir: Vector::zeros(0),
            buf_l: Vector::zeros(0),
            phi_old: Vector::zeros(0),
        }
    }
}

impl Solver for Ttsa {
    fn name(&self) -> &'static str {
        if self.momentum.is_some() { "momentum" } else { "ttsa" }
    }
    fn init(&mut self, o: &mut Oracle, _state: &Iterate) -> Result<()> {
        let l_l = o.problem().constants().l_l;
        if self.enforce_timescales {
            check_timescales(&self.alpha, &self.beta)?;
        } else {
            self.alpha.check("alpha")?;
        }
        check_lower_step(&self.beta, l_l)?;
        self.neumann.check(l_l)?;
        if let Some(eta) = self.momentum
            && !(0.0..1.0).contains(&eta)
        {
            return Err(BilevelError::invalid("momentum", eta, "must be in [0, 1)"));
        }
        let d = o.dims();
        self.ws = Workspace::new(d.d_u, d.d_l);
        self.h = Vector::zeros(d.d_u);
        self.dir = Vector::zeros(d.d_u);
        self.buf_l = Vector::zeros(d.d_l);
        self.phi_old = Vector::zeros(d.d_l);
        Ok(())
    }
    fn step(&mut self, o: &mut Oracle, mut st: Iterate) -> Result<Iterate> {
        let k = st.k;
        if self.stale_phi {
            self.phi_old.copy_from(&st.phi);
        }
        lower_step(o, &st.theta, &mut st.phi, self.beta.at(k), &mut self.buf_l)?;
        let method = InverseMethod::GhadimiWang(self.neumann.at(k));
        let at_phi = if self.stale_phi { &self.phi_old } else { &st.phi };
        estimate_prechecked(o, &method, &st.theta, at_phi, &mut self.ws, &mut self.h)?;
        match self.momentum {
            None => self.dir.copy_from(&self.h),
            // h^{-1} = 0 would shrink the first step by (1 − η): start the average at the first estimate.
            Some(_) if k == 0 => self.dir.copy_from(&self.h),
            Some(eta) => {
                let (old, new) = if self.swap_momentum_weights {
                    (1.0 - eta, eta)
                } else {
                    (eta, 1.0 - eta)
                };
                self.dir *= old;
                self.dir.axpy(new, &self.h, 1.0);
            }
        }
        st.theta_prev.copy_from(&st.theta);
        let alpha = if self.upper_step_beta {
            self.beta.at(k)
        } else {
            self.alpha.at(k)
        };
        if self.skip_projection {
            st.theta.axpy(-alpha, &self.dir, 1.0);
        } else {
            upper_step(o, &mut st.theta, alpha, &self.dir);
        }
        st.k += 1;
        Ok(st)
    }
}
