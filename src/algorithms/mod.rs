//! Every algorithm of the lecture behind one [`crate::solver::Solver`] interface, one file each.
//!
//! | name | file | lecture | paper |
//! |---|---|---|---|
//! | `alternating`, `alternating-multi` | [`alternating`] | §2 "Alternating optimization" | — |
//! | `ba`, `bsa`, `aid-bio`, `stocbio` | [`double_loop`] | Algs 1–3, eq (18), Alg 7, eq (24) | Ghadimi & Wang 2018; Ji et al. 2021 |
//! | `ttsa`, `momentum` | [`ttsa`] | Algs 4/8/9, eqs (20), (40)–(52) | Hong et al. 2023 |
//! | `stable`, `stable-alg6-literal` | [`stable`] | Algs 5–6 | Chen et al. 2022 |
//! | `sustain` | [`sustain`] | eqs (21)–(22) | Khanduri et al. 2021 |
//! | `penalty`, `primal-dual` | [`value_function`] | eqs (25)–(29) | Liu et al. 2021; Sow et al. 2022b |
//! | `itd-bio` | [`itd_bio`] | eqs (30)–(32) | Ji et al. 2021 |
//! | `pzobo` | [`pzobo`] | Hessian-free slide | Sow et al. 2022a |
//! | `vrbo` | [`vrbo`] | — (variance reduction) | Yang, Ji & Liang 2021 |
//!
//! STABLE's projection and factor at $d_l\ge256$ live in [`psd_projection`] and [`blocked_cholesky`].
//!
//! [`build`] makes each with default parameters derived from a family's declared constants (for demos and the
//! CLI); the theory claims set their own schedules explicitly. [`support::LIMITATIONS`] lists the (algorithm,
//! family) pairs these defaults do not solve, with the reason.

pub mod alternating;
pub mod blocked_cholesky;
pub mod common;
pub mod double_loop;
pub mod itd_bio;
pub mod psd_projection;
pub mod pzobo;
pub mod stable;
pub mod support;
pub mod sustain;
pub mod ttsa;
pub mod value_function;
pub mod vrbo;

use crate::error::{BilevelError, Result};
use crate::hypergrad::cg::CgOptions;
use crate::problem::Bilevel;
use crate::solver::{Schedule, Solver};
use common::NeumannGrowth;
pub use support::{LIMITATIONS, Limitation, limitation};

/// Registered algorithm names with a one-line summary, in the order `bilevel list` prints them.
pub const ALGORITHMS: &[(&str, &str)] = &[
    (
        "alternating",
        "alternating GD, one LL step per UL step; ignores the implicit gradient",
    ),
    (
        "alternating-multi",
        "alternating GD, 10 LL steps per UL step; ignores the implicit gradient",
    ),
    (
        "ba",
        "BA, Alg 1: inner GD + exact Hessian inverse (Ghadimi & Wang 2018)",
    ),
    (
        "bsa",
        "BSA, Alg 2: sqrt(k) inner SGD steps + Ghadimi-Wang Neumann (Ghadimi & Wang 2018)",
    ),
    (
        "aid-bio",
        "AID-BiO, Alg 3: inner GD + warm-started conjugate gradient, Alg 7 (Ji et al. 2021)",
    ),
    (
        "stocbio",
        "stocBiO: inner SGD + stocBiO Neumann estimator, minibatch (Ji et al. 2021)",
    ),
    (
        "ttsa",
        "TTSA, Algs 4/8/9: one LL step, UL step at phi^{k+1}, log-growing Neumann (Hong et al. 2023)",
    ),
    (
        "momentum",
        "TTSA with heavy-ball averaging of the hypergradient, eq (20)",
    ),
    (
        "stable",
        "STABLE, Alg 5: tracked Hessians + full correction term (Chen et al. 2022)",
    ),
    (
        "stable-alg6-literal",
        "the lecture's Alg 6 as printed (correction inside beta, sign flipped)",
    ),
    (
        "sustain",
        "SUSTAIN, eqs (21)-(22): STORM double momentum (Khanduri et al. 2021)",
    ),
    ("penalty", "value-function penalty, eqs (26)-(28)"),
    ("primal-dual", "value-function primal-dual, eq (29) (Sow et al. 2022b)"),
    (
        "itd-bio",
        "ITD-BiO, eqs (30)-(32): T warm-started inner steps, reverse-mode ITD (Ji et al. 2021)",
    ),
    (
        "pzobo",
        "PZOBO: Hessian-free, Gaussian-smoothing Jacobian of the inner GD map (Sow et al. 2022a)",
    ),
    (
        "vrbo",
        "VRBO: SPIDER variance reduction on both levels, periodic large batch (Yang, Ji & Liang 2021)",
    ),
];

/// Error unless the constants that set the default steps are usable: $0 < \mu_l \le L_l < \infty$,
/// $0 < L_F < \infty$, and a per-sample constant, if declared, finite and $\ge L_l$.
fn check_constants(k: &crate::problem::Constants) -> Result<()> {
    let positive = |name: &str, v: f64| {
        if v.is_finite() && v > 0.0 {
            Ok(())
        } else {
            Err(BilevelError::invalid(
                name,
                v,
                "the default step sizes need this constant finite and > 0; build the solver with explicit steps",
            ))
        }
    };
    positive("constants.mu_l", k.mu_l)?;
    positive("constants.l_l", k.l_l)?;
    positive("constants.l_f", k.l_f)?;
    if k.mu_l > k.l_l {
        return Err(BilevelError::invalid(
            "constants.mu_l",
            k.mu_l,
            "must be <= constants.l_l (strong convexity cannot exceed smoothness)",
        ));
    }
    if let Some(s) = k.l_l_sample {
        positive("constants.l_l_sample", s)?;
    }
    Ok(())
}

/// Registered algorithm names.
pub fn names() -> Vec<&'static str> {
    ALGORITHMS.iter().map(|(n, _)| n).copied().collect()
}

/// TTSA's default steps when $F$ is not strongly convex: $\beta = K^{-2/5}/L_s$ and
/// $\alpha = \min(K^{-3/5}/(2L_F),\ \beta/2)$. The cap binds only for short horizons,
/// $K < (L_s/L_F)^5$ (below 45 iterations on `weakly_convex`), where the uncapped $\alpha$ would reach $\beta$ and
/// fail the two-timescale check $\alpha < \beta$ ([`common::check_timescales`]) that the defaults must pass.
pub fn horizon_timescales(l_f: f64, l_sample: f64, iters: usize) -> (Schedule, Schedule) {
    let beta = Schedule::horizon(1.0 / l_sample, iters, 0.4);
    let alpha = Schedule::horizon(0.5 / l_f, iters, 0.6);
    (Schedule::constant(alpha.at(0).min(0.5 * beta.at(0))), beta)
}

/// Build algorithm `name` with default parameters for problem `p` and horizon `iters`.
///
/// Errors: an unknown name; a horizon `iters = 0`; constants that cannot set a step (non-finite or $\le 0$
/// $\mu_l$, $L_l$, $L_F$, or $\mu_l > L_l$). Which (algorithm, family) pairs these defaults do not solve is
/// declared in [`support::LIMITATIONS`] (checked both ways by `tests/robustness.rs`).
///
/// Every lower-level step is taken at a drawn sample, so the defaults use the per-sample constant
/// $L_s = \max(L_l, L_{\text{sample}})$ ([`crate::problem::Constants::l_l_sample`]; $L_s = L_l$ when samples carry only
/// additive noise) and $\kappa = L_s/\mu_l$. Defaults: $\beta = 1/L_s$ for lower-level steps, $\alpha = 1/(2L_F)$
/// for constant upper steps, Neumann scale $\eta = 1/L_s$ with $N_k = \lceil\kappa\ln(k+2)\rceil$; TTSA on a strongly
/// convex $F$ uses $\alpha_k = c_\alpha/(k+k_\alpha)$ with $c_\alpha = 2/\mu_F$ (references §6: $c_\alpha\gtrsim 2/\mu_F$
/// or the rate degrades), $\alpha_0 = 1/(2L_F)$, and $\beta_k = (1/L_s)/(k+1)^{2/3}$; otherwise the horizon-dependent
/// $\alpha = \min(K^{-3/5}/(2L_F), \beta/2)$, $\beta = K^{-2/5}/L_s$ ([`horizon_timescales`]). BSA uses $\alpha = K^{-1/2}/(2L_F)$ as in its theorem.
/// ITD-BiO and PZOBO unroll $T = \lceil\kappa\ln 100\rceil$ steps (capped at 500) of size $1/L_s$, so that
/// $q^T\le(1-1/\kappa)^T\le 1/100$; PZOBO uses $\delta = 10^{-3}$, $Q = d_u$ directions and, because its directions
/// make every step a stochastic gradient, $\alpha_k = c/(k+k_0)$ with $c = 2/\mu_F$, $\alpha_0 = 1/(2L_F)$ when $F$ is
/// strongly convex, else $\alpha = K^{-1/2}/(2L_F)$. VRBO uses
/// $q = b = \lceil\sqrt K\rceil$, $S = qb$, $m = 1$, $\alpha = 1/(5L_F)$, $\beta = 1/(2L_s)$ and a stocBiO Neumann
/// length $N = \lceil\kappa\ln 10^4\rceil$ (capped at 1000) with $\eta = 1/L_s$: relative truncation bias $\le10^{-4}$.
pub fn build(name: &str, p: &dyn Bilevel, iters: usize) -> Result<Box<dyn Solver>> {
    if iters == 0 {
        return Err(BilevelError::invalid(
            "iters",
            0,
            "the horizon K must be >= 1 (horizon-dependent steps scale with K)",
        ));
    }
    let k = p.constants();
    check_constants(&k)?;
    let (l_l, mu_l, l_f) = (k.l_l, k.mu_l, k.l_f);
    // Every lower-level step, Neumann scale and unrolled step is taken at one drawn sample (a minibatch of a
    // finite-sum family), whose Hessian can exceed L_l: stepping by 1/L_l then expands along its top eigenvector
    // (ba, aid-bio and alternating-multi diverged on data_cleaning). So they all use L_sample >= L_l.
    let l_sample = k.l_l_sample.unwrap_or(l_l).max(l_l);
    let alpha = Schedule::constant(0.5 / l_f);
    let beta = Schedule::constant(1.0 / l_sample);
    let growth = NeumannGrowth::for_constants(mu_l, l_sample);
    let kappa = l_sample / mu_l;
    let unroll = ((kappa * 100f64.ln()).ceil() as usize).clamp(1, 500);
    let cg = CgOptions {
        max_iter: p.dims().d_l.max(1),
        ..CgOptions::default()
    };
    let (ttsa_alpha, ttsa_beta) = match k.mu_f {
        Some(mu_f) => {
            let c_alpha = 2.0 / mu_f;
            (
                Schedule::decay(c_alpha, c_alpha * 2.0 * l_f, 1.0),
                Schedule::decay(1.0 / l_sample, 1.0, 2.0 / 3.0),
            )
        }
        None => horizon_timescales(l_f, l_sample, iters),
    };
    use alternating::Alternating;
    use double_loop::DoubleLoop;
    Ok(match name {
        "alternating" => Box::new(Alternating::new(alpha, beta, 1)),
        "alternating-multi" => Box::new(Alternating::new(alpha, beta, 10)),
        "ba" => Box::new(DoubleLoop::ba(alpha, beta, 10)),
        // BSA's theorem takes a constant α ∝ K^{-1/2}: the Ghadimi–Wang estimator's variance grows with N_k, so
        // a K-independent α leaves a variance floor.
        "bsa" => Box::new(DoubleLoop::bsa(
            Schedule::horizon(0.5 / l_f, iters, 0.5),
            beta,
            1.0,
            growth,
        )),
        "aid-bio" => Box::new(DoubleLoop::aid_bio(alpha, beta, 10, cg)),
        "stocbio" => Box::new(DoubleLoop::stocbio(alpha, beta, 10, growth, 4)),
        "ttsa" => Box::new(ttsa::Ttsa::new(ttsa_alpha, ttsa_beta, growth)),
        "momentum" => {
            let mut t = ttsa::Ttsa::new(ttsa_alpha, ttsa_beta, growth);
            t.momentum = Some(0.5);
            Box::new(t)
        }
        "stable" | "stable-alg6-literal" => {
            let mut s = stable::Stable::new(
                Schedule::constant(0.2 / l_f),
                Schedule::constant(0.5 / l_sample),
                0.5,
                mu_l,
            );
            s.literal_alg6 = name == "stable-alg6-literal";
            Box::new(s)
        }
        "sustain" => {
            let a0 = 0.5 / l_f;
            Box::new(sustain::Sustain::new(
                Schedule::decay(a0, 1.0, 1.0 / 3.0),
                1.0 / (l_sample * a0),
                1.0 / (a0 * a0),
                growth,
            ))
        }
        "penalty" | "primal-dual" => {
            let (a1, a2, rho) = (1e-3, 1e-3, 10.0);
            let step = Schedule::constant(0.5 / (l_f + rho * l_sample));
            let gz = 1.0 / (l_sample + a1);
            Box::new(if name == "penalty" {
                value_function::ValueFunction::penalty(step, gz, 5, a1, a2, rho)
            } else {
                value_function::ValueFunction::primal_dual(step, gz, 5, a1, a2, rho, 1.0)
            })
        }
        "itd-bio" => Box::new(itd_bio::ItdBio::new(alpha, 1.0 / l_sample, unroll)),
        "pzobo" => {
            // The random directions make the step a stochastic gradient even with exact oracles: SGD schedules.
            let a = match k.mu_f {
                Some(mu_f) => Schedule::decay(2.0 / mu_f, 4.0 * l_f / mu_f, 1.0),
                None => Schedule::horizon(0.5 / l_f, iters, 0.5),
            };
            Box::new(pzobo::Pzobo::new(a, 1.0 / l_sample, unroll, 1e-3, p.dims().d_u))
        }
        "vrbo" => {
            let q = (iters.max(1) as f64).sqrt().ceil() as usize;
            let terms = ((kappa * 1e4f64.ln()).ceil() as usize).clamp(1, 1000);
            Box::new(vrbo::Vrbo::new(
                Schedule::constant(0.2 / l_f),
                0.5 / l_sample,
                q,
                q * q,
                q,
                1,
                crate::hypergrad::neumann::NeumannParams {
                    eta: 1.0 / l_sample,
                    terms,
                },
            ))
        }
        _ => {
            return Err(BilevelError::Unknown {
                kind: "algorithm".into(),
                name: name.into(),
                accepted: names().join(", "),
            });
        }
    })
}
