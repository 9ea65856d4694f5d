//! Neumann-series inverse-Hessian-vector products, eq (24), deterministic and stochastic.
//!
//! The lecture's (24) omits the scale: $H^{-1} = \eta\sum_{n\ge0}(I-\eta H)^n$ for $0<\eta<2/L_l$. Truncated after
//! $N$ terms the error is exactly $(I-\eta H)^N H^{-1}v$.
//! - [`truncated_into`]: $\eta\sum_{n=0}^{N-1}(I-\eta H)^n v$ with one Hessian (one sample).
//! - [`ghadimi_wang_into`] (Ghadimi & Wang 2018, used by BSA and TTSA): draw $p$ uniform on $\\{0,\dots,N-1\\}$,
//!   return $N\eta\prod_{i=1}^{p}(I-\eta H_i)v$ with an independent Hessian sample $H_i$ per factor. Its mean is
//!   $H^{-1}(I-(I-\eta H)^N)v$.
//! - [`stocbio_into`] (Ji et al. 2021): $\eta\sum_{q=0}^{N-1}\prod_{j=1}^{q}(I-\eta H_j)v$ along one running
//!   product: the same mean, smaller variance.

use crate::error::{BilevelError, Result};
use crate::linalg::Vector;
use crate::problem::{Level, Oracle, Sample};
use rand::RngExt;
use serde::Serialize;

/// Scale $\eta$ and number of terms $N$ of a Neumann estimator.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct NeumannParams {
    /// Scale $\eta$, with $0 < \eta < 2/L_l$.
    pub eta: f64,
    /// Number of terms $N \ge 1$.
    pub terms: usize,
}

impl NeumannParams {
    /// Error unless $N\ge1$ and $0<\eta<2/L_l$ (the series diverges along the top eigenvector otherwise).
    pub fn check(&self, l_l: f64) -> Result<()> {
        self.check_terms()?;
        if !(l_l.is_finite() && l_l > 0.0) {
            return Err(BilevelError::invalid("L_l", l_l, "must be finite and > 0"));
        }
        if !(self.eta.is_finite() && self.eta > 0.0 && self.eta < 2.0 / l_l) {
            return Err(BilevelError::StepCondition(format!(
                "Neumann scale eta = {} must satisfy 0 < eta < 2/L_l = {} (L_l = {l_l}); the series diverges otherwise",
                self.eta,
                2.0 / l_l
            )));
        }
        Ok(())
    }

    /// Error unless $N \ge 1$ (checked by every estimator, so that $N = 0$ is an error, not a panic).
    fn check_terms(&self) -> Result<()> {
        if self.terms == 0 {
            return Err(BilevelError::invalid("neumann.terms", 0, "must be >= 1"));
        }
        Ok(())
    }
}

/// `term` ← $(I - \eta H_s)$ `term`, using `tmp` as scratch.
fn contract(
    o: &mut Oracle,
    s: Sample,
    theta: &Vector,
    phi: &Vector,
    eta: f64,
    term: &mut Vector,
    tmp: &mut Vector,
) -> Result<()> {
    o.hvp_fl(s, theta, phi, term, tmp)?;
    term.axpy(-eta, tmp, 1.0);
    Ok(())
}

/// `out` ← $\eta\sum_{n=0}^{N-1}(I-\eta H_s)^n v$ at one sample `s` ($N-1$ Hessian-vector products): eq (24) with
/// the scale $\eta$. Tests: `neumann_truncation_error_is_exactly_the_remainder` (error $=(I-\eta H)^N H^{-1}v$),
/// `neumann_is_tight_along_the_smallest_eigenvector`, `neumann_step_condition_is_a_typed_error`.
#[allow(clippy::too_many_arguments)]
pub fn truncated_into(
    o: &mut Oracle,
    s: Sample,
    theta: &Vector,
    phi: &Vector,
    v: &Vector,
    p: &NeumannParams,
    out: &mut Vector,
    term: &mut Vector,
    tmp: &mut Vector,
) -> Result<()> {
    partial_sums(o, Some(s), theta, phi, v, p, out, term, tmp)
}

/// $\eta\sum_{q=0}^{N-1}\prod_{j=1}^{q}(I-\eta H_j)v$ along one running product: every factor at sample `at`, or at
/// a fresh lower sample when `at` is `None` (the truncated series and the stocBiO estimator differ only there).
#[allow(clippy::too_many_arguments)]
fn partial_sums(
    o: &mut Oracle,
    at: Option<Sample>,
    theta: &Vector,
    phi: &Vector,
    v: &Vector,
    p: &NeumannParams,
    out: &mut Vector,
    term: &mut Vector,
    tmp: &mut Vector,
) -> Result<()> {
    p.check_terms()?;
    term.copy_from(v);
    out.copy_from(v);
    for _ in 1..p.terms {
        let s = match at {
            Some(s) => s,
            None => o.draw(Level::Lower),
        };
        contract(o, s, theta, phi, p.eta, term, tmp)?;
        *out += &*term;
    }
    *out *= p.eta;
    Ok(())
}

/// `out` ← $N\eta\prod_{i=1}^{p}(I-\eta H_i)v$, $p\sim U\\{0,\dots,N-1\\}$ from the run's stream, a fresh lower
/// sample per factor ($p$ samples and products): the lecture's stochastic-IG slide with $C_1 = N\eta$,
/// $C_2 = \eta$, $t_{\max} = N-1$. Tests: `ghadimi_wang_and_stocbio_means_match_the_truncated_series`,
/// `ghadimi_wang_variance_grows_linearly_and_stocbio_is_smaller` (variance $\propto N$).
#[allow(clippy::too_many_arguments)]
pub fn ghadimi_wang_into(
    o: &mut Oracle,
    theta: &Vector,
    phi: &Vector,
    v: &Vector,
    p: &NeumannParams,
    out: &mut Vector,
    _term: &mut Vector,
    tmp: &mut Vector,
) -> Result<()> {
    p.check_terms()?;
    let depth = o.rng().random_range(0..p.terms);
    out.copy_from(v);
    for _ in 0..depth {
        let s = o.draw(Level::Lower);
        contract(o, s, theta, phi, p.eta, out, tmp)?;
    }
    *out *= p.terms as f64 * p.eta;
    Ok(())
}

/// `out` ← $\eta\sum_{q=0}^{N-1}\prod_{j=1}^{q}(I-\eta H_j)v$, a fresh lower sample per factor ($N-1$ samples)
/// (Ji, Yang & Liang 2021). Tests: `ghadimi_wang_and_stocbio_means_match_the_truncated_series`,
/// `ghadimi_wang_variance_grows_linearly_and_stocbio_is_smaller` (variance bounded in $N$).
#[allow(clippy::too_many_arguments)]
pub fn stocbio_into(
    o: &mut Oracle,
    theta: &Vector,
    phi: &Vector,
    v: &Vector,
    p: &NeumannParams,
    out: &mut Vector,
    term: &mut Vector,
    tmp: &mut Vector,
) -> Result<()> {
    partial_sums(o, None, theta, phi, v, p, out, term, tmp)
}
