//! Pieces several algorithms share: one lower-level SGD step, a projected upper-level step, timescale checks.

use crate::error::{BilevelError, Result};
use crate::linalg::Vector;
use crate::problem::{Level, Oracle};
use crate::solver::Schedule;

/// $\phi \leftarrow \phi - \beta\\,\nabla_\phi f_l(\theta,\phi;\xi)$ with one fresh lower sample $\xi$ (eq (11)).
pub fn lower_step(o: &mut Oracle, theta: &Vector, phi: &mut Vector, beta: f64, buf: &mut Vector) -> Result<()> {
    let s = o.draw(Level::Lower);
    o.grad_phi_fl(s, theta, phi, buf)?;
    phi.axpy(-beta, buf, 1.0);
    Ok(())
}

/// $\theta \leftarrow \mathcal{P}\_\Theta(\theta - \alpha h)$.
pub fn upper_step(o: &Oracle, theta: &mut Vector, alpha: f64, h: &Vector) {
    theta.axpy(-alpha, h, 1.0);
    o.problem().domain().project(theta);
}

/// Error unless a lower-level gradient step of size $\beta_0$ is stable: $\beta_0 < 2/L_l$ (the LL recursion
/// $I - \beta H$ expands along the top eigenvector otherwise).
pub fn check_lower_step(beta: &Schedule, l_l: f64) -> Result<()> {
    beta.check("beta")?;
    let b0 = beta.at(0);
    if b0 >= 2.0 / l_l {
        return Err(BilevelError::StepCondition(format!(
            "beta_0 = {b0} must be < 2/L_l = {} (L_l = {l_l}) or the lower level diverges",
            2.0 / l_l
        )));
    }
    Ok(())
}

/// Error unless $\alpha_k/\beta_k \to 0$ (two-timescale separation, Alg 4's condition): the upper step must decay
/// strictly faster than the lower one, or both be constants with $\alpha < \beta$ (horizon-dependent schedules).
pub fn check_timescales(alpha: &Schedule, beta: &Schedule) -> Result<()> {
    alpha.check("alpha")?;
    beta.check("beta")?;
    match (alpha, beta) {
        (Schedule::Constant { c: a }, Schedule::Constant { c: b }) if a >= b => {
            Err(BilevelError::StepCondition(format!(
                "two-timescale separation needs the upper step below the lower one: alpha {alpha} must be < beta {beta} \
             (constant or horizon-dependent steps)"
            )))
        }
        (Schedule::Constant { .. }, Schedule::Constant { .. }) => Ok(()),
        _ if alpha.power() > beta.power() => Ok(()),
        _ => Err(BilevelError::StepCondition(format!(
            "two-timescale separation needs alpha_k/beta_k -> 0: alpha {alpha} must decay faster than beta {beta}"
        ))),
    }
}

/// A Neumann truncation that grows like $\log k$: $N_k = \min(N_{\max}, \max(N_{\min}, \lceil c\ln(k+2)\rceil))$.
///
/// TTSA and BSA need the Neumann bias $(1-\eta\mu_l)^{N_k}$ to vanish: with $c = 1/(\eta\mu_l)$ it is at most
/// $1/(k+2)$. A fixed $N$ leaves a constant bias and a plateau (references §6, and the power test
/// `fixed Neumann length`).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct NeumannGrowth {
    /// Scale $\eta$ ($0<\eta<2/L_l$).
    pub eta: f64,
    /// Growth constant $c$.
    pub c_log: f64,
    /// $N_{\min}\ge1$.
    pub min_terms: usize,
    /// $N_{\max}$ (a cap; equal to $N_{\min}$ gives a fixed length).
    pub max_terms: usize,
}

impl NeumannGrowth {
    /// $\eta = 1/L_l$, $c = 1/(\eta\mu_l) = \kappa$: bias at most $1/(k+2)$.
    pub fn for_constants(mu_l: f64, l_l: f64) -> Self {
        NeumannGrowth {
            eta: 1.0 / l_l,
            c_log: l_l / mu_l,
            min_terms: 1,
            max_terms: 10_000,
        }
    }
    /// A fixed length $N$ (no growth).
    pub fn fixed(eta: f64, terms: usize) -> Self {
        NeumannGrowth {
            eta,
            c_log: 0.0,
            min_terms: terms,
            max_terms: terms,
        }
    }
    /// $N_k$ as parameters of the estimator.
    pub fn at(&self, k: usize) -> crate::hypergrad::neumann::NeumannParams {
        let grown = (self.c_log * ((k + 2) as f64).ln()).ceil() as usize;
        crate::hypergrad::neumann::NeumannParams {
            eta: self.eta,
            terms: grown.clamp(self.min_terms, self.max_terms),
        }
    }
    /// Check $\eta$ against $L_l$ and the bounds.
    pub fn check(&self, l_l: f64) -> Result<()> {
        if self.min_terms == 0 || self.max_terms < self.min_terms {
            return Err(BilevelError::invalid(
                "neumann.min_terms/max_terms",
                format!("{}/{}", self.min_terms, self.max_terms),
                "need 1 <= min_terms <= max_terms",
            ));
        }
        if !(self.c_log.is_finite() && self.c_log >= 0.0) {
            return Err(BilevelError::invalid(
                "neumann.c_log",
                self.c_log,
                "must be finite and >= 0",
            ));
        }
        self.at(0).check(l_l)
    }
}
