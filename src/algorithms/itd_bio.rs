//! ITD-BiO: iterative differentiation inside the outer loop (Ji, Yang & Liang, ICML 2021; the lecture's
//! eqs (30)–(32)).
//!
//! Each outer iteration unrolls $T$ lower-level gradient steps warm-started at $\phi^k$ and differentiates through
//! them in reverse mode ([`crate::hypergrad::itd::reverse`]):
//! $$\varphi^0 = \phi^k,\quad \varphi^t = \varphi^{t-1} - \beta\nabla_\phi f_l(\theta^k,\varphi^{t-1};\xi_k),\quad
//! \phi^{k+1} = \varphi^T,$$
//! $$\theta^{k+1} = \mathcal{P}\_\Theta\big(\theta^k - \alpha_k\nabla F_T(\theta^k)\big),\qquad
//! \nabla F_T = \nabla_\theta f_u(\theta^k,\varphi^T;\bar\xi_k) + Z_T^\top\nabla_\phi f_u(\theta^k,\varphi^T;\bar\xi_k),$$
//! with $Z_T = d\varphi^T/d\theta$ from the recursion (32), $Z_t = (I-\beta\nabla^2_{\phi\phi} f_l)Z_{t-1} -
//! \beta[\nabla^2_{\theta\phi} f_l]^\top$, $Z_0 = 0$: the warm start is treated as a constant, as in the paper.
//! With `truncate = Some(T')` only the last $T'$ steps are back-propagated.
//!
//! # Bias
//! ITD differentiates the truncated dynamics, not $\phi^\star$, so it is biased even with exact oracles. At a fixed
//! point of the iteration the warm start makes the lower level exact ($\varphi^0 = \phi^\star(\theta)$ is a fixed
//! point of the GD map), so the whole bias comes from $Z_0 = 0$: on a quadratic ($\nabla^2_{\phi\phi} f_l = H$
//! constant) $Z_T = (I - (I-\beta H)^T)J$ and
//! $$\nabla F_T(\theta) = \nabla F(\theta) - J^\top (I-\beta H)^T\nabla_\phi f_u(\theta,\phi^\star(\theta)),$$
//! so the limit $\bar\theta_T$ satisfies $\\|\bar\theta_T - \theta^\star\\| \le q^T\\|J\\|\\,\\|\nabla_\phi f_u(\bar\theta_T,
//! \phi^\star(\bar\theta_T))\\|/\mu_F$ with $q = \max_i|1-\beta\lambda_i(H)|$ (unconstrained $\Theta$). It decays
//! geometrically in $T$ (Grazzi et al. 2020 bound ITD's error by $O(Tq^T)$; the factor $T$ needs a Hessian that
//! varies along the trajectory). Test: `algorithms2::itd_bio_converges_to_its_biased_point_and_the_bias_shrinks_with_t`
//! (the limit is computed in closed form and the bound checked for $T = 2, 4, 8, 16, 32$).
//!
//! # Schedule and assumptions
//! Constant $\alpha$ (the paper: $\alpha\le 1/L_F$, deterministic $O(\kappa^3\varepsilon^{-1})$ with $T\sim\kappa\log$),
//! $0<\beta<2/L_l$ so the GD map contracts. With a stochastic oracle one lower sample $\xi_k$ is used for all $T$
//! steps and their derivative (a minibatch, as [`crate::hypergrad::itd`] does), one upper sample $\bar\xi_k$.
//! The unroll then multiplies $T$ times by the same sampled $I-\beta\nabla^2_{\phi\phi} f_l(\cdot;\xi_k)$, so it needs
//! $\beta<2/L_l(\xi)$ for **every sample**, not only $\beta<2/L_l$ for the mean: on the finite-sum families with
//! minibatch 1 a step $1/L_l$ expands along the unroll. The default is therefore $\beta = 1/L_{\text{sample}}$ with
//! the family's declared per-sample constant [`crate::problem::Constants::l_l_sample`] (test
//! `algorithms2::new_methods_are_registered_and_run_on_every_family`); a run that still expands stops with
//! [`BilevelError::Diverged`].
//!
//! # Exact expected curve
//! On the quadratic family one iteration is affine in the state (the sample's gradient noise enters once, through
//! $\beta\sum_{s<T}A^s$), and the reverse pass's $K = \beta\sum_{j<T'}(A-\beta E)^j$ at the sample's one Hessian noise
//! $E$ and one cross noise is independent of the state, so its second moments follow a closed recursion
//! ([`crate::exact`], `ExactMethod::ItdBio`; $\mathbb{E}K$ and $\mathbb{E}[K\otimes K]$ by enumerating $E$'s finite law, $d_l\le8$;
//! derivation in `theory/exact-moments.md` §2). With Hessian noise $\mathbb{E}K\ne\beta\sum_{j<T'}A^j$ for $T'\ge3$:
//! the shared sample biases the mean. Tests: `exact::exact_consistency_itd_bio_and_a_reverse_loop_one_step_short`
//! (gradient noise; a reverse pass one step short is rejected) and
//! `exact::exact_consistency_itd_bio_hessian_noise_and_fresh_hessian_samples` (Hessian and cross noise; backward
//! Hessian products at fresh samples are rejected).
//!
//! # Oracle cost per iteration
//! One upper sample, one lower sample; $T$ gradients $\nabla_\phi f_l$, $T'-1$ Hessian-vector products, $T'$
//! cross products ($T' = T$ untruncated), one $\nabla_\theta f_u$ and one $\nabla_\phi f_u$. Test:
//! `algorithms2::oracle_counts_of_the_new_methods_match_the_docs`.

use super::common::{check_lower_step, upper_step};
use crate::error::{BilevelError, Result};
use crate::hypergrad::itd::{ItdParams, ItdSamples, reverse, reverse_fresh_hessian_samples};
use crate::problem::{Level, Oracle};
use crate::solver::{Iterate, Schedule, Solver};

/// ITD-BiO with reverse-mode ITD through $T$ warm-started inner steps.
#[derive(Debug, Clone)]
pub struct ItdBio {
    /// Upper-level steps $\alpha_k$.
    pub alpha: Schedule,
    /// Inner step $\beta$ ($0<\beta<2/L_l$).
    pub beta: f64,
    /// Inner steps $T\ge1$ per outer iteration.
    pub steps: usize,
    /// Back-propagate only the last $T'$ steps (`None`: all $T$).
    pub truncate: Option<usize>,
    /// Planted bug: each outer iteration unrolls from $\varphi^0 = 0$ instead of the warm start $\phi^k$. The
    /// lower-level error $(I-\beta H)^T\phi^\star$ then never vanishes and the iteration settles at another point;
    /// caught by `power/rate/itd-bio-linear/cold-start`.
    pub cold_start: bool,
    /// Planted bug: the reverse pass's Hessian-vector products each at a fresh lower sample instead of the unroll's
    /// ([`crate::hypergrad::itd::reverse_fresh_hessian_samples`]). Invisible without Hessian noise; caught by
    /// `exact::exact_consistency_itd_bio_hessian_noise_and_fresh_hessian_samples`.
    pub fresh_hessian_samples: bool,
}

impl ItdBio {
    /// ITD-BiO with full back-propagation.
    pub fn new(alpha: Schedule, beta: f64, steps: usize) -> Self {
        ItdBio {
            alpha,
            beta,
            steps,
            truncate: None,
            cold_start: false,
            fresh_hessian_samples: false,
        }
    }
}

impl Solver for ItdBio {
    fn name(&self) -> &'static str {
        "itd-bio"
    }
    fn init(&mut self, o: &mut Oracle, _state: &Iterate) -> Result<()> {
        let l_l = o.problem().constants().l_l;
        self.alpha.check("alpha")?;
        check_lower_step(&Schedule::constant(self.beta), l_l)?;
        ItdParams {
            beta: self.beta,
            steps: self.steps,
        }
        .check(l_l)?;
        if let Some(t) = self.truncate
            && !(1..=self.steps).contains(&t)
        {
            return Err(BilevelError::invalid("truncate", t, "must satisfy 1 <= T' <= T"));
        }
        Ok(())
    }
    fn step(&mut self, o: &mut Oracle, mut st: Iterate) -> Result<Iterate> {
        let samples = ItdSamples {
            upper: o.draw(Level::Upper),
            lower: o.draw(Level::Lower),
        };
        let p = ItdParams {
            beta: self.beta,
            steps: self.steps,
        };
        if self.cold_start {
            st.phi.fill(0.0);
        }
        let out = if self.fresh_hessian_samples {
            reverse_fresh_hessian_samples(o, &st.theta, &st.phi, &p, samples, self.truncate)?
        } else {
            reverse(o, &st.theta, &st.phi, &p, samples, self.truncate)?
        };
        st.phi = out.phi_t;
        st.theta_prev.copy_from(&st.theta);
        upper_step(o, &mut st.theta, self.alpha.at(st.k), &out.hypergradient);
        st.k += 1;
        Ok(st)
    }
}
