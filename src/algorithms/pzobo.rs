//! PZOBO: a Hessian-free bilevel method (Sow, Ji & Liang, "On the convergence theory for Hessian-free bilevel
//! algorithms", NeurIPS 2022a; the lecture's "avoid IG approximation completely by Hessian-free approaches").
//!
//! Same outer loop as ITD-BiO ([`super::itd_bio`]), but the Jacobian $Z_T = d\varphi^T/d\theta$ of the $T$-step inner
//! GD map is estimated by Gaussian smoothing, from first-order oracles only
//! ([`crate::hypergrad::hessian_free::gaussian_smoothing_into`]):
//! $$\varphi^0 = \phi^k,\quad \varphi^T(\theta) = \text{$T$ steps of }\varphi\leftarrow\varphi-\beta\nabla_\phi f_l(\theta,\varphi;\xi_k),
//! \quad\phi^{k+1} = \varphi^T(\theta^k),$$
//! $$\hat g^k = \nabla_\theta f_u(\theta^k,\varphi^T;\bar\xi_k) + \frac1Q\sum_{q=1}^Q u_q\Big\langle
//! \frac{\varphi^T(\theta^k+\delta u_q)-\varphi^T(\theta^k)}{\delta},\nabla_\phi f_u(\theta^k,\varphi^T;\bar\xi_k)\Big\rangle,
//! \quad u_q\sim N(0,I_{d_u}),$$
//! $$\theta^{k+1} = \mathcal{P}\_\Theta(\theta^k - \alpha_k\hat g^k).$$
//! All $Q+1$ trajectories start at $\phi^k$ and use the same lower sample $\xi_k$, so additive oracle noise cancels
//! in the differences. As for ITD-BiO, the one-sample unroll needs $\beta<2/L_l(\xi)$ for every sample (see
//! [`super::itd_bio`]).
//!
//! # Bias and variance
//! $\mathbb{E}\_u\hat g$ is the ITD hypergradient of the Gaussian-smoothed map $\mathbb{E}\_u\varphi^T(\theta+\delta u)$:
//! it inherits ITD's truncation bias ([`super::itd_bio`], $O(q^T)$) and adds a smoothing bias of order $\delta^2$
//! (the odd Gaussian moments vanish) that is **exactly zero when $\varphi^T$ is affine in $\theta$**, as on the
//! quadratic family: there the mean step of PZOBO is the step of ITD-BiO for every $\delta$, and the limit is
//! ITD-BiO's $\bar\theta_T$. The directions add variance $\propto d_u/Q$ that does not vanish at $\bar\theta_T$
//! (where $Z_T^\top\nabla_\phi f_u\ne0$), so a constant $\alpha$ leaves a noise floor even with exact oracles;
//! $\alpha_k\propto1/k$ removes it. Tests: `algorithms2::pzobo_converges_to_the_itd_limit_with_decaying_steps`,
//! `algorithms2::pzobo_smoothing_bias_is_zero_on_affine_maps_and_shrinks_with_delta_otherwise`.
//!
//! # Schedule and assumptions
//! The paper: constant $\alpha$, $0<\beta<2/L_l$, $T\sim\kappa\log(1/\varepsilon)$, $\delta$ small;
//! $\tilde O(d_u\\,\mathrm{poly}(\kappa)\\,\varepsilon^{-1})$ gradient evaluations (linear in $d_u$ through $Q$;
//! references §4, \[recall, low\]).
//!
//! # Oracle cost per iteration
//! One upper sample, one lower sample; $(Q+1)T$ gradients $\nabla_\phi f_l$, one $\nabla_\theta f_u$, one
//! $\nabla_\phi f_u$, $Qd_u$ normal draws from the run's stream; **no** Hessian-vector, cross or dense second-order
//! call. Test: `algorithms2::oracle_counts_of_the_new_methods_match_the_docs`.

use super::common::{check_lower_step, upper_step};
use crate::error::{BilevelError, Result};
use crate::hypergrad::hessian_free::{HessianFreeParams, SmoothingWorkspace, gaussian_smoothing_into};
use crate::hypergrad::itd::{ItdParams, ItdSamples};
use crate::linalg::Vector;
use crate::problem::{Level, Oracle};
use crate::solver::{Iterate, Schedule, Solver};

/// PZOBO (module docs).
#[derive(Debug, Clone)]
pub struct Pzobo {
    /// Upper-level steps $\alpha_k$.
    pub alpha: Schedule,
    /// Inner step $\beta$ ($0<\beta<2/L_l$).
    pub beta: f64,
    /// Inner steps $T\ge1$.
    pub steps: usize,
    /// Smoothing parameter $\delta>0$.
    pub delta: f64,
    /// Gaussian directions $Q\ge1$ per iteration.
    pub directions: usize,
    ws: SmoothingWorkspace,
    g: Vector,
}

impl Pzobo {
    /// PZOBO with the given parameters.
    pub fn new(alpha: Schedule, beta: f64, steps: usize, delta: f64, directions: usize) -> Self {
        Pzobo {
            alpha,
            beta,
            steps,
            delta,
            directions,
            ws: SmoothingWorkspace::new(0, 0),
            g: Vector::zeros(0),
        }
    }
    fn params(&self) -> HessianFreeParams {
        HessianFreeParams {
            itd: ItdParams {
                beta: self.beta,
                steps: self.steps,
            },
            delta: self.delta,
        }
    }
}

impl Solver for Pzobo {
    fn name(&self) -> &'static str {
        "pzobo"
    }
    fn init(&mut self, o: &mut Oracle, _state: &Iterate) -> Result<()> {
        let l_l = o.problem().constants().l_l;
        self.alpha.check("alpha")?;
        check_lower_step(&Schedule::constant(self.beta), l_l)?;
        self.params().check(l_l)?;
        if self.directions == 0 {
            return Err(BilevelError::invalid("directions", 0, "must be >= 1"));
        }
        let d = o.dims();
        self.ws = SmoothingWorkspace::new(d.d_u, d.d_l);
        self.g = Vector::zeros(d.d_u);
        Ok(())
    }
    fn step(&mut self, o: &mut Oracle, mut st: Iterate) -> Result<Iterate> {
        let samples = ItdSamples {
            upper: o.draw(Level::Upper),
            lower: o.draw(Level::Lower),
        };
        let p = self.params();
        gaussian_smoothing_into(
            o,
            &st.theta,
            &st.phi,
            &p,
            self.directions,
            samples,
            &mut self.ws,
            &mut self.g,
        )?;
        st.phi.copy_from(&self.ws.phi_t);
        st.theta_prev.copy_from(&st.theta);
        upper_step(o, &mut st.theta, self.alpha.at(st.k), &self.g);
        st.k += 1;
        Ok(st)
    }
}
