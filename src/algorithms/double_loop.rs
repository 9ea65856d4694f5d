//! Double-loop implicit-gradient methods: BA and BSA (Algs 1–2, Ghadimi & Wang 2018), AID-BiO (Alg 3, Ji et al.
//! 2021) and stocBiO (Ji et al. 2021). They share one update and differ in the inner-loop length and in how the
//! inverse-Hessian-vector product is estimated:
//!
//! $$\phi \leftarrow \phi - \beta\\,\nabla_\phi f_l(\theta^k,\phi)\ \ (t_k\text{ steps, warm-started at }\phi^k),\qquad
//! \theta^{k+1} = \mathcal{P}\_\Theta\big(\theta^k - \alpha_k\\,\hat\nabla f(\theta^k,\phi^{k+1})\big),$$
//! with $\hat\nabla f = \nabla_\theta f_u - \nabla^2_{\theta\phi} f_l\\,z$, $z\approx[\nabla^2_{\phi\phi} f_l]^{-1}\nabla_\phi f_u$
//! (eq (18) with the cross derivative; the lecture's $\nabla^2_\theta f_l$ there is a slip).
//!
//! | name | $t_k$ | $z$ | guarantee (references §4) |
//! |---|---|---|---|
//! | `ba` | fixed $T$ | dense solve (Alg 1) | deterministic convergence |
//! | `bsa` | $\lceil\sqrt{k+1}\rceil$ | Ghadimi–Wang Neumann, $\log$-growing $N$ | $S(f_u)=O(\varepsilon^{-2})$, $S(f_l)=O(\varepsilon^{-3})$ |
//! | `aid-bio` | fixed $T$ | CG (Alg 7), warm-started across iterations | $O(\kappa^3\varepsilon^{-1})$ gradients, deterministic |
//! | `stocbio` | fixed $T$ | stocBiO Neumann, minibatch $B$ | $O(\varepsilon^{-2})$ samples |

use super::common::{NeumannGrowth, check_lower_step, lower_step, upper_step};
use crate::error::{BilevelError, Result};
use crate::hypergrad::{InverseMethod, Workspace, cg::CgOptions, estimate_prechecked};
use crate::linalg::Vector;
use crate::problem::Oracle;
use crate::solver::{Iterate, Schedule, Solver};

/// Inner-loop length.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub enum InnerSteps {
    /// $t_k = T$.
    Fixed(usize),
    /// $t_k = \lceil c\sqrt{k+1}\rceil$ (BSA's schedule, the source of its $\varepsilon^{-3}$ lower-level count).
    Sqrt(f64),
}

impl InnerSteps {
    /// $t_k$.
    pub fn at(&self, k: usize) -> usize {
        match *self {
            InnerSteps::Fixed(t) => t,
            InnerSteps::Sqrt(c) => (c * ((k + 1) as f64).sqrt()).ceil().max(1.0) as usize,
        }
    }
}

/// How $z$ is estimated, per iteration.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub enum Inverse {
    /// A fixed method (dense, CG, fixed-length Neumann).
    Fixed(InverseMethod),
    /// Ghadimi–Wang with a growing truncation.
    GhadimiWang(NeumannGrowth),
    /// stocBiO with a growing truncation.
    Stocbio(NeumannGrowth),
}

/// The double-loop solver; see the module docs for the four named configurations.
#[derive(Debug, Clone)]
pub struct DoubleLoop {
    name: &'static str,
    /// Upper-level steps $\alpha_k$.
    pub alpha: Schedule,
    /// Inner (lower-level) step $\beta$.
    pub beta: Schedule,
    /// Inner-loop length.
    pub inner: InnerSteps,
    /// Inverse-Hessian-vector product estimator.
    pub inverse: Inverse,
    /// Minibatch size $B$: each inner step uses the mean of $B$ lower-level gradient samples and the UL step the
    /// mean of $B$ independent hypergradient estimates (stocBiO's batches $S$; 1 for the others).
    pub batch: usize,
    /// Index the inner step by the inner counter: step $t$ of every inner loop is $\beta_t$ (restarting at $t=0$ each
    /// outer iteration), the decreasing inner steps of Ghadimi & Wang's BSA under which the warm-started inner error
    /// is $O(1/t_k)$. Default `false`: every inner step of outer iteration $k$ is $\beta_k$.
    pub beta_per_inner_step: bool,
    /// Planted bug of stocBiO: the inner SGD steps use one sample instead of the minibatch of `batch` (the UL
    /// hypergradient keeps its batch).
    pub no_inner_minibatch: bool,
    /// Planted bug of stocBiO: one Hessian sample for every factor of the Neumann partial sums (the truncated
    /// series (24) at one sample, [`InverseMethod::Neumann`]) instead of a fresh sample per factor. Invisible
    /// without Hessian noise; with it $\mathbb{E}(I-\eta(H+E))^q \ne (I-\eta H)^q$ for $q\ge2$, so the mean
    /// hypergradient moves. Caught by `exact::exact_consistency_stocbio_hessian_noise_and_one_hessian_sample`.
    pub one_hessian_sample: bool,
    /// Planted bug of AID-BiO: CG starts from $z = 0$ at every outer iteration instead of the previous solution
    /// (Alg 3's warm start, which Ji et al.'s analysis assumes). With fewer CG steps than $d_l$ the hypergradient
    /// keeps an error that no outer iteration removes; caught by `power/rate/aid-bio-linear/cg-cold-start`.
    pub cg_cold_start: bool,
    /// Planted bug of AID-BiO: the inner loop restarts from $\varphi = 0$ at every outer iteration instead of the
    /// previous $\varphi^k$ (Alg 3's warm start, which Ji et al.'s analysis assumes). With $T$ fixed the lower-level
    /// error $(I-\beta H)^T\varphi^\star$ never vanishes, so $\theta$ settles at a biased point; caught by
    /// `power/rate/aid-bio-linear/inner-cold-start`.
    pub inner_cold_start: bool,
    ws: Workspace,
    h: Vector,
    acc: Vector,
    buf_l: Vector,
    acc_l: Vector,
}

impl DoubleLoop {
    fn new(name: &'static str, alpha: Schedule, beta: Schedule, inner: InnerSteps, inverse: Inverse) -> Self {
        DoubleLoop {
            name,
            alpha,
            beta,
            inner,
            inverse,
            batch: 1,
            beta_per_inner_step: false,
            no_inner_minibatch: false,
            one_hessian_sample: false,
            cg_cold_start: false,
            inner_cold_start: false,
            ws: Workspace::new(0, 0),
            h: Vector::zeros(0),
            acc: Vector::zeros(0),
            buf_l: Vector::zeros(0),
            acc_l: Vector::zeros(0),
        }
    }
    /// BA, Alg 1: `inner` GD steps, exact (dense) inverse at a lower sample.
    pub fn ba(alpha: Schedule, beta: Schedule, inner: usize) -> Self {
        Self::new(
            "ba",
            alpha,
            beta,
            InnerSteps::Fixed(inner),
            Inverse::Fixed(InverseMethod::Dense),
        )
    }
    /// BSA, Alg 2 made stochastic (Ghadimi & Wang 2018): $t_k=\lceil c\sqrt{k+1}\rceil$ inner SGD steps,
    /// Ghadimi–Wang Neumann estimator with growing truncation.
    pub fn bsa(alpha: Schedule, beta: Schedule, c_inner: f64, neumann: NeumannGrowth) -> Self {
        Self::new(
            "bsa",
            alpha,
            beta,
            InnerSteps::Sqrt(c_inner),
            Inverse::GhadimiWang(neumann),
        )
    }
    /// AID-BiO, Alg 3: `inner` steps, CG warm-started at the previous solution.
    pub fn aid_bio(alpha: Schedule, beta: Schedule, inner: usize, cg: CgOptions) -> Self {
        Self::new(
            "aid-bio",
            alpha,
            beta,
            InnerSteps::Fixed(inner),
            Inverse::Fixed(InverseMethod::Cg(cg)),
        )
    }
    /// stocBiO: `inner` SGD steps with minibatch `batch`, stocBiO Neumann estimator, minibatch `batch` of
    /// hypergradient estimates (Ji et al. 2021 use batches for both; without the inner batch the lower-level error
    /// keeps a floor $\beta\sigma^2$ and $\varepsilon$ stalls).
    pub fn stocbio(alpha: Schedule, beta: Schedule, inner: usize, neumann: NeumannGrowth, batch: usize) -> Self {
        let mut s = Self::new(
            "stocbio",
            alpha,
            beta,
            InnerSteps::Fixed(inner),
            Inverse::Stocbio(neumann),
        );
        s.batch = batch;
        s
    }

    fn method_at(&self, k: usize) -> InverseMethod {
        match self.inverse {
            Inverse::Fixed(m) => m,
            Inverse::GhadimiWang(g) => InverseMethod::GhadimiWang(g.at(k)),
            Inverse::Stocbio(g) if self.one_hessian_sample => InverseMethod::Neumann(g.at(k)),
            Inverse::Stocbio(g) => InverseMethod::Stocbio(g.at(k)),
        }
    }
}

impl Solver for DoubleLoop {
    fn name(&self) -> &'static str {
        self.name
    }
    fn init(&mut self, o: &mut Oracle, _state: &Iterate) -> Result<()> {
        let l_l = o.problem().constants().l_l;
        self.alpha.check("alpha")?;
        check_lower_step(&self.beta, l_l)?;
        if self.batch == 0 {
            return Err(BilevelError::invalid("batch", 0, "must be >= 1"));
        }
        if let InnerSteps::Fixed(0) = self.inner {
            return Err(BilevelError::invalid("inner_steps", 0, "must be >= 1"));
        }
        if let InnerSteps::Sqrt(c) = self.inner
            && !(c.is_finite() && c > 0.0)
        {
            return Err(BilevelError::invalid("c_inner", c, "must be finite and > 0"));
        }
        match self.inverse {
            Inverse::Fixed(m) => m.check(l_l)?,
            Inverse::GhadimiWang(g) | Inverse::Stocbio(g) => g.check(l_l)?,
        }
        let d = o.dims();
        self.ws = Workspace::new(d.d_u, d.d_l);
        self.h = Vector::zeros(d.d_u);
        self.acc = Vector::zeros(d.d_u);
        self.buf_l = Vector::zeros(d.d_l);
        self.acc_l = Vector::zeros(d.d_l);
        Ok(())
    }
    fn step(&mut self, o: &mut Oracle, mut st: Iterate) -> Result<Iterate> {
        if self.inner_cold_start {
            st.phi.fill(0.0);
        }
        for t in 0..self.inner.at(st.k) {
            let beta = self.beta.at(if self.beta_per_inner_step { t } else { st.k });
            if self.batch == 1 || self.no_inner_minibatch {
                lower_step(o, &st.theta, &mut st.phi, beta, &mut self.buf_l)?;
            } else {
                // φ ← φ − β·(1/B)Σ_b ∇φ f_l(θ, φ; ξ_b): all B gradients at the same φ.
                self.acc_l.fill(0.0);
                for _ in 0..self.batch {
                    let s = o.draw(crate::problem::Level::Lower);
                    o.grad_phi_fl(s, &st.theta, &st.phi, &mut self.buf_l)?;
                    self.acc_l += &self.buf_l;
                }
                st.phi.axpy(-beta / self.batch as f64, &self.acc_l, 1.0);
            }
        }
        let method = self.method_at(st.k);
        self.acc.fill(0.0);
        if self.cg_cold_start {
            self.ws.z.fill(0.0);
        }
        for _ in 0..self.batch {
            // ws.z keeps the previous solution: CG's warm start across iterations (Alg 3).
            estimate_prechecked(o, &method, &st.theta, &st.phi, &mut self.ws, &mut self.h)?;
            self.acc += &self.h;
        }
        self.acc /= self.batch as f64;
        st.theta_prev.copy_from(&st.theta);
        upper_step(o, &mut st.theta, self.alpha.at(st.k), &self.acc);
        st.k += 1;
        Ok(st)
    }
}
