//! One resolution of a claim's algorithm for a family and a horizon: schedules, Neumann truncation, minibatch and
//! planted-bug switches, in numbers. [`super::build_solver`] builds the solver from it and
//! [`crate::exact::method_for`] the exact recursion, so a new spec field is resolved once, here, and both read it.

use super::spec::AlgoSpec;
use crate::algorithms::common::NeumannGrowth;
use crate::algorithms::double_loop::InnerSteps;
use crate::error::{BilevelError, Result};
use crate::hypergrad::neumann::NeumannParams;
use crate::problem::Constants;
use crate::solver::Schedule;

/// The exponent that [`AlgoSpec::Ttsa`]'s `beta_power_typo` puts in place of the spec's $\beta_k$ exponent
/// (the planted bug: $k^{-3/5}$ for $k^{-2/3}$).
pub const BETA_TYPO_POWER: f64 = 0.6;

/// A claim's algorithm with every parameter in numbers (see the module docs).
#[derive(Debug, Clone, PartialEq)]
pub enum ResolvedAlgo {
    /// TTSA and eq (20) momentum.
    Ttsa {
        /// $\alpha_k$.
        alpha: Schedule,
        /// $\beta_k$ (with the typo's exponent when the spec plants it).
        beta: Schedule,
        /// Neumann truncation.
        neumann: NeumannGrowth,
        /// Upper step at the stale $\phi^k$ (planted bug).
        stale_phi: bool,
        /// Eq (20)'s weight on the old direction.
        momentum: Option<f64>,
        /// Eq (20)'s weights swapped (planted bug).
        swap_momentum_weights: bool,
        /// Check $\alpha_k/\beta_k\to0$.
        enforce_timescales: bool,
        /// Upper step without the projection onto $\Theta$ (planted bug).
        no_projection: bool,
        /// Upper step taken with $\beta_k$ instead of $\alpha_k$ (planted bug).
        upper_step_beta: bool,
    },
    /// Alternating gradient descent.
    Alternating {
        /// $\alpha_k$.
        alpha: Schedule,
        /// $\beta_k$.
        beta: Schedule,
        /// Inner steps.
        inner_steps: usize,
    },
    /// BSA.
    Bsa {
        /// $\alpha_k$.
        alpha: Schedule,
        /// $\beta_k$.
        beta: Schedule,
        /// $t_k$.
        inner: InnerSteps,
        /// Neumann truncation.
        neumann: NeumannGrowth,
        /// Inner steps indexed by the inner counter.
        beta_per_inner_step: bool,
    },
    /// stocBiO.
    Stocbio {
        /// $\alpha_k$.
        alpha: Schedule,
        /// $\beta_k$.
        beta: Schedule,
        /// Inner steps.
        inner: usize,
        /// Neumann truncation.
        neumann: NeumannGrowth,
        /// Minibatch $B_K = \lceil bK^a\rceil$ at the claim's horizon.
        batch: usize,
        /// Inner SGD with one sample (planted bug).
        no_inner_minibatch: bool,
        /// One Hessian sample for every Neumann factor (planted bug).
        one_hessian_sample: bool,
    },
    /// STABLE.
    Stable {
        /// $\alpha_k$.
        alpha: Schedule,
        /// $\beta_k$.
        beta: Schedule,
        /// Tracking weight.
        tau: f64,
        /// Alg 6 as printed (planted bug).
        literal_alg6: bool,
        /// No correction term (planted bug).
        no_correction: bool,
    },
    /// ITD-BiO.
    ItdBio {
        /// $\alpha_k$.
        alpha: Schedule,
        /// Inner step $\beta$.
        beta: f64,
        /// $T$.
        steps: usize,
        /// Back-propagated steps $T'$ (`None`: all).
        truncate: Option<usize>,
        /// Reverse-pass Hessian products at fresh samples (planted bug).
        fresh_hessian_samples: bool,
    },
    /// SUSTAIN.
    Sustain {
        /// $\alpha_k$.
        alpha: Schedule,
        /// $\beta_k = c_\beta\alpha_k$.
        c_beta: f64,
        /// $1-\eta_k = c_\eta\alpha_k^2$.
        c_eta: f64,
        /// Neumann truncation.
        neumann: NeumannGrowth,
        /// $\eta = 0$ (planted bug).
        no_momentum: bool,
        /// Old-point evaluation at another sample (planted bug).
        stale_sample: bool,
    },
    /// VRBO at the claim's horizon.
    Vrbo {
        /// $\alpha$.
        alpha: Schedule,
        /// $\beta$.
        beta: f64,
        /// Refresh period $q$.
        period: usize,
        /// Refresh batch $S$ (equal to `batch` under the planted bug).
        large_batch: usize,
        /// Correction batch $b$.
        batch: usize,
        /// Inner steps $m$.
        inner: usize,
        /// Neumann scale and length.
        neumann: NeumannParams,
        /// Old-point evaluation at fresh samples (planted bug).
        stale_sample: bool,
    },
}

/// $\lceil cK^{a}\rceil$, at least 1: VRBO's horizon-tied sizes.
fn horizon_size(name: &str, c: f64, horizon: usize, power: f64) -> Result<usize> {
    if !(c.is_finite() && c > 0.0) {
        return Err(BilevelError::invalid(name, c, "must be finite and > 0"));
    }
    Ok((c * (horizon as f64).powf(power)).ceil().max(1.0) as usize)
}

impl AlgoSpec {
    /// This algorithm for a family with constants `k` at horizon `horizon`.
    ///
    /// # Errors
    /// An unknown schedule kind or constant, or a schedule that is not positive and finite.
    pub fn resolve(&self, k: &Constants, horizon: usize) -> Result<ResolvedAlgo> {
        Ok(match self {
            AlgoSpec::Ttsa {
                alpha,
                beta,
                neumann,
                stale_phi,
                momentum,
                swap_momentum_weights,
                allow_single_timescale,
                beta_power_typo,
                no_projection,
                upper_step_beta,
            } => {
                let beta = if *beta_power_typo {
                    let mut b = beta.clone();
                    b.power = BETA_TYPO_POWER;
                    b.resolve(k, horizon)?
                } else {
                    beta.resolve(k, horizon)?
                };
                ResolvedAlgo::Ttsa {
                    alpha: alpha.resolve(k, horizon)?,
                    beta,
                    neumann: neumann.resolve(k),
                    stale_phi: *stale_phi,
                    momentum: *momentum,
                    swap_momentum_weights: *swap_momentum_weights,
                    enforce_timescales: !*allow_single_timescale,
                    no_projection: *no_projection,
                    upper_step_beta: *upper_step_beta,
                }
            }
            AlgoSpec::Alternating {
                alpha,
                beta,
                inner_steps,
            } => ResolvedAlgo::Alternating {
                alpha: alpha.resolve(k, horizon)?,
                beta: beta.resolve(k, horizon)?,
                inner_steps: *inner_steps,
            },
            AlgoSpec::Bsa {
                alpha,
                beta,
                c_inner,
                neumann,
                beta_per_inner_step,
                inner_fixed,
            } => ResolvedAlgo::Bsa {
                alpha: alpha.resolve(k, horizon)?,
                beta: beta.resolve(k, horizon)?,
                inner: match inner_fixed {
                    Some(t) => InnerSteps::Fixed(*t),
                    None => InnerSteps::Sqrt(*c_inner),
                },
                neumann: neumann.resolve(k),
                beta_per_inner_step: *beta_per_inner_step,
            },
            AlgoSpec::Stocbio {
                alpha,
                beta,
                inner,
                batch_c,
                batch_power,
                neumann,
                no_inner_minibatch,
                one_hessian_sample,
            } => ResolvedAlgo::Stocbio {
                alpha: alpha.resolve(k, horizon)?,
                beta: beta.resolve(k, horizon)?,
                inner: *inner,
                neumann: neumann.resolve(k),
                batch: (batch_c * (horizon as f64).powf(*batch_power)).ceil().max(1.0) as usize,
                no_inner_minibatch: *no_inner_minibatch,
                one_hessian_sample: *one_hessian_sample,
            },
            AlgoSpec::Stable {
                alpha,
                beta,
                tau,
                literal_alg6,
                no_correction,
            } => ResolvedAlgo::Stable {
                alpha: alpha.resolve(k, horizon)?,
                beta: beta.resolve(k, horizon)?,
                tau: *tau,
                literal_alg6: *literal_alg6,
                no_correction: *no_correction,
            },
            AlgoSpec::ItdBio {
                alpha,
                beta,
                steps,
                truncate,
                fresh_hessian_samples,
            } => {
                if beta.kind != "constant" {
                    return Err(BilevelError::invalid(
                        "itd-bio beta",
                        &beta.kind,
                        "must be a constant schedule (ITD-BiO's inner step does not decay)",
                    ));
                }
                ResolvedAlgo::ItdBio {
                    alpha: alpha.resolve(k, horizon)?,
                    beta: beta.resolve(k, horizon)?.at(0),
                    steps: *steps,
                    truncate: *truncate,
                    fresh_hessian_samples: *fresh_hessian_samples,
                }
            }
            AlgoSpec::Sustain {
                alpha,
                beta0_l_l,
                eta_c,
                neumann,
                no_momentum,
                stale_sample,
            } => {
                let a = alpha.resolve(k, horizon)?;
                let a0 = a.at(0);
                ResolvedAlgo::Sustain {
                    alpha: a,
                    c_beta: beta0_l_l / (k.l_l * a0),
                    c_eta: eta_c / (a0 * a0),
                    neumann: neumann.resolve(k),
                    no_momentum: *no_momentum,
                    stale_sample: *stale_sample,
                }
            }
            AlgoSpec::Vrbo {
                alpha,
                beta,
                inner,
                period_c,
                batch_c,
                large_batch_c,
                neumann,
                stale_sample,
                refresh_small_batch,
            } => {
                for (name, s) in [("vrbo alpha", alpha), ("vrbo beta", beta)] {
                    if s.kind != "constant" {
                        return Err(BilevelError::invalid(
                            name,
                            &s.kind,
                            "must be a constant schedule (the theorem's steps are constant)",
                        ));
                    }
                }
                // The theorem's sizes with eps ~ 1/K: q = b ~ eps^(-1/2), S ~ eps^(-1) (theory/vrbo.md).
                let batch = horizon_size("vrbo batch_c", *batch_c, horizon, 0.5)?;
                let large_batch = if *refresh_small_batch {
                    batch
                } else {
                    horizon_size("vrbo large_batch_c", *large_batch_c, horizon, 1.0)?
                };
                ResolvedAlgo::Vrbo {
                    alpha: alpha.resolve(k, horizon)?,
                    beta: beta.resolve(k, horizon)?.at(0),
                    period: horizon_size("vrbo period_c", *period_c, horizon, 0.5)?,
                    large_batch,
                    batch,
                    inner: *inner,
                    neumann: neumann.resolve(k).at(horizon),
                    stale_sample: *stale_sample,
                }
            }
        })
    }
}
