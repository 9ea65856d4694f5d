//! Which (algorithm, family) pairs the defaults of [`super::build`] do not solve, and why.
//!
//! Every registered pair either converges with the defaults (the CLI's `bilevel run`: $K = 1000$, seed 0, noise
//! off and $\sigma = 0.1$, $\theta^0 = \mathcal{P}\_\Theta(\mathbf 1)$, $\phi^0 = 0$) or is listed in [`LIMITATIONS`]
//! with its reason. `tests/robustness.rs` checks both directions: every unlisted pair converges by the criterion of
//! `theory/robustness.md`, and every listed reason is verified (a fix that makes a reason false fails the test until
//! the entry is removed). `bilevel list` can print [`LIMITATIONS`]; [`limitation`] looks a pair up.

use serde::Serialize;

/// When a limitation applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum When {
    /// With and without oracle noise.
    Always,
    /// Only with additive oracle noise ([`crate::problem::Noisy`], `--noise > 0`).
    WithNoise,
}

/// Why the defaults do not solve a pair; each kind names the check that verifies it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// The algorithm ignores the implicit term $J^\top\nabla_\phi f_u$ of (13): it runs and its lower level
    /// converges, but its limit is stationary for $F$ only where that term vanishes. A baseline, not a solver.
    /// Verified: the run finishes without error and its lower-level gap shrinks.
    IgnoresImplicitGradient,
    /// Every default upper step is at most $1/(2L_F)$, and the family's declared $L_F$ is a worst-case bound on
    /// $\Theta$ so large that $K/(2L_F)\cdot\\|\nabla F(\theta^0)\\| < 10^{-2}$: with exact
    /// gradients $\theta$ moves less than $10^{-2}$ (about 1% of the width of $\Theta$) in $K$ steps.
    /// Verified from the constants (no run needed).
    FrozenUpperStep,
    /// The method inverts a drawn Hessian sample (dense solve or CG), and the additive Hessian noise makes samples of
    /// this family indefinite ($\sigma_H$ is comparable to $\mu_l$). Verified: the noisy run fails with
    /// [`crate::BilevelError::NotPositiveDefinite`].
    IndefiniteHessianSample,
    /// The method's $\phi$ converges to a biased point, not to $\phi^\star(\theta)$: the penalty's minimiser
    /// (penalty, primal-dual: bias $O(\\|\nabla_\phi f_u\\|/(\rho\mu_l))$) or one minibatch's lower-level minimiser
    /// (ITD-BiO, PZOBO unroll on a single sample). With $\mu_l = 0.2$ the bias is $O(1)$. Verified: the run finishes,
    /// the upper level meets the criterion, and the lower-level gap does *not* shrink.
    BiasedLowerLevel,
    /// The family's scale defeats the constants-only defaults (benchmark_bilevel's finite sum: rank-one samples, a
    /// per-sample $L_l$ far above the mean's), so the pair needs explicit steps. Verified: the default run fails with
    /// an error or does not meet the convergence criterion (so a fix that makes it converge fails the check until
    /// the entry is removed).
    ExplicitStepsNeeded,
}

/// One declared limitation of the defaults.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Limitation {
    /// Algorithm name, or `*` for every algorithm.
    pub algorithm: &'static str,
    /// Family name.
    pub family: &'static str,
    /// With or without noise.
    pub when: When,
    /// The kind of reason (what the test verifies).
    pub reason: Reason,
    /// The reason in one line, with what to do instead.
    pub explanation: &'static str,
}

const FROZEN: &str = "the declared L_F is a worst-case bound on Theta (1e4 to 4e7), so the default upper step \
                      1/(2 L_F) leaves theta where it starts; pass explicit upper steps (bilevel run --alpha; in the \
                      library, the solver's constructor)";
const INDEFINITE: &str = "additive Hessian noise makes this family's Hessian samples indefinite, and the method \
                          inverts one sample; run it without noise (--noise 0), or use stocbio/ttsa (Neumann series)";
const BIASED: &str = "phi converges to a biased point (the penalty's minimiser, or one minibatch's lower-level \
                      minimiser for unrolled methods), O(1) away from phi* when mu_l is small; theta is unaffected here";
const FINITE_SUM: &str = "benchmark_bilevel's finite sum: one sample's Hessian is rank one plus a small ridge, so the \
                          per-sample L_l is far above the mean's; the default steps, scaled by it, barely move phi in \
                          1000 iterations, and methods that invert or unroll one sample fail; pass explicit steps \
                          (bilevel run --alpha/--beta; docs/performance.md)";
const FINITE_SUM_SEEDS: &str = "benchmark_bilevel's finite sum: whether the default steps converge depends on the \
                                minibatches drawn (primal-dual diverges, stocbio's lower level stalls, at most seeds; \
                                theory/robustness.md); pass explicit steps (bilevel run --alpha/--beta)";
const IGNORES: &str = "ignores the implicit gradient J^T grad_phi f_u of eq (13): a baseline whose limit is \
                       stationary for F only where that term vanishes";

/// The declared limitations of the defaults, in the order `bilevel list` prints them.
pub const LIMITATIONS: &[Limitation] = &[
    // Family-specific entries first: `limitation` returns the first match.
    Limitation {
        algorithm: "aid-bio",
        family: "finite_sum",
        when: When::Always,
        reason: Reason::ExplicitStepsNeeded,
        explanation: FINITE_SUM,
    },
    Limitation {
        algorithm: "alternating",
        family: "finite_sum",
        when: When::Always,
        reason: Reason::ExplicitStepsNeeded,
        explanation: FINITE_SUM,
    },
    Limitation {
        algorithm: "alternating-multi",
        family: "finite_sum",
        when: When::Always,
        reason: Reason::ExplicitStepsNeeded,
        explanation: FINITE_SUM,
    },
    Limitation {
        algorithm: "ba",
        family: "finite_sum",
        when: When::Always,
        reason: Reason::ExplicitStepsNeeded,
        explanation: FINITE_SUM,
    },
    Limitation {
        algorithm: "itd-bio",
        family: "finite_sum",
        when: When::Always,
        reason: Reason::ExplicitStepsNeeded,
        explanation: FINITE_SUM,
    },
    Limitation {
        algorithm: "momentum",
        family: "finite_sum",
        when: When::Always,
        reason: Reason::ExplicitStepsNeeded,
        explanation: FINITE_SUM,
    },
    Limitation {
        algorithm: "pzobo",
        family: "finite_sum",
        when: When::Always,
        reason: Reason::ExplicitStepsNeeded,
        explanation: FINITE_SUM,
    },
    Limitation {
        algorithm: "stable",
        family: "finite_sum",
        when: When::Always,
        reason: Reason::ExplicitStepsNeeded,
        explanation: FINITE_SUM,
    },
    Limitation {
        algorithm: "ttsa",
        family: "finite_sum",
        when: When::Always,
        reason: Reason::ExplicitStepsNeeded,
        explanation: FINITE_SUM,
    },
    Limitation {
        algorithm: "stable-alg6-literal",
        family: "finite_sum",
        when: When::Always,
        reason: Reason::ExplicitStepsNeeded,
        explanation: FINITE_SUM,
    },
    Limitation {
        algorithm: "stocbio",
        family: "finite_sum",
        when: When::Always,
        reason: Reason::ExplicitStepsNeeded,
        explanation: FINITE_SUM_SEEDS,
    },
    Limitation {
        algorithm: "primal-dual",
        family: "finite_sum",
        when: When::Always,
        reason: Reason::ExplicitStepsNeeded,
        explanation: FINITE_SUM_SEEDS,
    },
    Limitation {
        algorithm: "alternating",
        family: "*",
        when: When::Always,
        reason: Reason::IgnoresImplicitGradient,
        explanation: IGNORES,
    },
    Limitation {
        algorithm: "alternating-multi",
        family: "*",
        when: When::Always,
        reason: Reason::IgnoresImplicitGradient,
        explanation: IGNORES,
    },
    Limitation {
        algorithm: "*",
        family: "hyperparameter",
        when: When::Always,
        reason: Reason::FrozenUpperStep,
        explanation: FROZEN,
    },
    Limitation {
        algorithm: "*",
        family: "representation",
        when: When::Always,
        reason: Reason::FrozenUpperStep,
        explanation: FROZEN,
    },
    Limitation {
        algorithm: "*",
        family: "data_cleaning",
        when: When::Always,
        reason: Reason::FrozenUpperStep,
        explanation: FROZEN,
    },
    // L_F = 7e5 on pruning: theta moved by 6e-7 in 2000 iterations of TTSA with the defaults (its start is already
    // near-stationary, so the convergence check alone did not flag it; the newcomer audit of session 6 did).
    Limitation {
        algorithm: "*",
        family: "pruning",
        when: When::Always,
        reason: Reason::FrozenUpperStep,
        explanation: FROZEN,
    },
    Limitation {
        algorithm: "ba",
        family: "representation",
        when: When::WithNoise,
        reason: Reason::IndefiniteHessianSample,
        explanation: INDEFINITE,
    },
    Limitation {
        algorithm: "aid-bio",
        family: "representation",
        when: When::WithNoise,
        reason: Reason::IndefiniteHessianSample,
        explanation: INDEFINITE,
    },
    Limitation {
        algorithm: "ba",
        family: "pruning",
        when: When::WithNoise,
        reason: Reason::IndefiniteHessianSample,
        explanation: INDEFINITE,
    },
    Limitation {
        algorithm: "aid-bio",
        family: "pruning",
        when: When::WithNoise,
        reason: Reason::IndefiniteHessianSample,
        explanation: INDEFINITE,
    },
    Limitation {
        algorithm: "ba",
        family: "data_cleaning",
        when: When::WithNoise,
        reason: Reason::IndefiniteHessianSample,
        explanation: INDEFINITE,
    },
    Limitation {
        algorithm: "aid-bio",
        family: "data_cleaning",
        when: When::WithNoise,
        reason: Reason::IndefiniteHessianSample,
        explanation: INDEFINITE,
    },
    Limitation {
        algorithm: "penalty",
        family: "pruning",
        when: When::Always,
        reason: Reason::BiasedLowerLevel,
        explanation: BIASED,
    },
    Limitation {
        algorithm: "primal-dual",
        family: "pruning",
        when: When::Always,
        reason: Reason::BiasedLowerLevel,
        explanation: BIASED,
    },
    Limitation {
        algorithm: "itd-bio",
        family: "pruning",
        when: When::Always,
        reason: Reason::BiasedLowerLevel,
        explanation: BIASED,
    },
    Limitation {
        algorithm: "pzobo",
        family: "pruning",
        when: When::Always,
        reason: Reason::BiasedLowerLevel,
        explanation: BIASED,
    },
];

/// The limitations that apply to `algorithm` on `family` (with noise when `noisy`), most specific first: entries
/// naming the algorithm before `*` entries. Empty: the defaults converge on this pair.
pub fn limitations(algorithm: &str, family: &str, noisy: bool) -> Vec<&'static Limitation> {
    let matches = |l: &&Limitation| {
        (l.algorithm == algorithm || l.algorithm == "*")
            && (l.family == family || l.family == "*")
            && match l.when {
                When::Always => true,
                When::WithNoise => noisy,
            }
    };
    let mut out: Vec<_> = LIMITATIONS.iter().filter(matches).collect();
    out.sort_by_key(|l| l.algorithm == "*");
    out
}

/// The first (most specific) limitation of the pair, if any.
pub fn limitation(algorithm: &str, family: &str, noisy: bool) -> Option<&'static Limitation> {
    limitations(algorithm, family, noisy).into_iter().next()
}
