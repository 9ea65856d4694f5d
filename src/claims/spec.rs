//! The schema of `theory/claims.toml`: one `[[claim]]` per judged statement.

use crate::algorithms::common::NeumannGrowth;
use crate::error::{BilevelError, Result};
use crate::problem::{Constants, NoiseLevels};
use crate::solver::{Metric, Schedule};
use serde::{Deserialize, Serialize};

/// The whole registry file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Registry {
    /// The claims, in report order.
    pub claim: Vec<ClaimSpec>,
    /// The deterministic linear rates (CG, Neumann, ITD).
    #[serde(default)]
    pub rate: Vec<super::deterministic::RateSpec>,
    /// Planted bugs caught by tests rather than by a rate claim.
    #[serde(default)]
    pub bug: Vec<BugSpec>,
}

/// What kind of statement a claim makes (theory/README.md, "How a rate claim is judged").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// An upper bound: the measured exponent is at least as steep as the theory's (within tolerance).
    Bound,
    /// A bound the family is built to attain: the measured exponent matches the theory's.
    Tight,
    /// A statement of the lecture that is false on the slow side: the true exponent exceeds the stated one by more
    /// than the tolerance (decays slower / needs more samples). The negation of a bound.
    #[serde(rename = "refuted_above")]
    RefutedAbove,
    /// A statement of the lecture that is false on the fast side: the true exponent is below the stated one by more
    /// than the tolerance (decays faster / needs fewer samples).
    #[serde(rename = "refuted_below")]
    RefutedBelow,
}

impl Kind {
    /// The short label of reports and listings: `bound`, `tight`, `refuted>` (the truth lies above the statement's
    /// band), `refuted<` (below it).
    pub fn label(self) -> &'static str {
        match self {
            Kind::Bound => "bound",
            Kind::Tight => "tight",
            Kind::RefutedAbove => "refuted>",
            Kind::RefutedBelow => "refuted<",
        }
    }
}

/// What is fitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Measure {
    /// The exponent $r$ of $\mathbb{E}[\text{metric}] \sim K^{r}$.
    Slope,
    /// The exponent $p$ of $S(f_u) \sim \varepsilon^{-p}$ with $\varepsilon$ = the mean metric; $S(f_u)$ = upper-level
    /// samples (each gives $\nabla_\theta f_u$ and $\nabla_\phi f_u$).
    ComplexityUpper,
    /// The exponent $p$ of $S(f_l) \sim \varepsilon^{-p}$; $S(f_l)$ = stochastic gradient estimates
    /// $\nabla_\phi f_l$, as the lecture defines sample complexity under eq (34). Second-order samples (Hessian and
    /// cross products of the Neumann estimators) are not counted: they add the $\log$ factors of the $\tilde O$.
    ComplexityLower,
}

/// Which iterate the metric is read at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Statistic {
    /// The last iterate $K$.
    Last,
    /// The mean over $k = 1..K$, i.e. the expectation at a uniformly random iterate $\tilde K$.
    Average,
    /// The mean over the last 10% of iterations, $k\in(0.9K, K]$: the same exponent as the last iterate for a
    /// power law, with far less Monte Carlo variance ([`crate::solver::Recorder::with_window`]).
    Window,
}

impl Statistic {
    /// In words, for reports and plots.
    pub fn describe(&self) -> &'static str {
        match self {
            Statistic::Last => "last iterate",
            Statistic::Average => "average over k = 1..K",
            Statistic::Window => "mean over the last 10% of iterations",
        }
    }
}

/// The window fraction of [`Statistic::Window`].
pub const WINDOW_FRACTION: f64 = 0.1;

/// How horizons are obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HorizonMode {
    /// Anytime schedules: one run to $K_{\max}$ per replicate, every horizon read from it.
    Anytime,
    /// Horizon-dependent schedules: one run per $K$.
    PerHorizon,
}

/// The horizon grid.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Horizons {
    /// Smallest horizon.
    pub min: usize,
    /// Largest horizon.
    pub max: usize,
    /// Number of geometric grid points.
    pub points: usize,
    /// Anytime or per-horizon.
    pub mode: HorizonMode,
    /// Fit on the last `tail` horizons (default: all).
    #[serde(default)]
    pub tail: Option<usize>,
}

/// A step-size schedule in units of a family constant: the constant is $c/u$ with $u$ = `per` (default 1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchedSpec {
    /// `constant`, `decay` ($c/(k+k_0)^a$) or `horizon` ($cK^{-a}$).
    pub kind: String,
    /// The numerator.
    pub c: f64,
    /// Divide `c` by this family constant: `mu_l`, `l_l`, `mu_f`, `l_f`.
    #[serde(default)]
    pub per: Option<String>,
    /// Offset $k_0$ of `decay`.
    #[serde(default = "one")]
    pub k0: f64,
    /// Power $a$.
    #[serde(default)]
    pub power: f64,
}

fn one() -> f64 {
    1.0
}

/// The family constant named `name`.
pub fn constant(k: &Constants, name: &str) -> Result<f64> {
    Ok(match name {
        "mu_l" => k.mu_l,
        "l_l" => k.l_l,
        "l_f" => k.l_f,
        "mu_f" => k.mu_f.ok_or_else(|| {
            BilevelError::Unsupported("schedule per mu_f on a family that is not strongly convex".into())
        })?,
        "kappa" => k.l_l / k.mu_l,
        other => {
            return Err(BilevelError::Unknown {
                kind: "constant".into(),
                name: other.into(),
                accepted: "mu_l, l_l, mu_f, l_f, kappa".into(),
            });
        }
    })
}

impl SchedSpec {
    /// The schedule for a family with constants `k` and horizon `horizon`.
    pub fn resolve(&self, k: &Constants, horizon: usize) -> Result<Schedule> {
        let c = match &self.per {
            None => self.c,
            Some(n) => self.c / constant(k, n)?,
        };
        let s = match self.kind.as_str() {
            "constant" => Schedule::constant(c),
            "decay" => Schedule::decay(c, self.k0, self.power),
            "horizon" => {
                // C·K^-POWER with POWER < 0 grows with the horizon: refused as the decay's power is.
                if !(self.power.is_finite() && self.power >= 0.0) {
                    return Err(BilevelError::invalid(
                        "schedule.power",
                        self.power,
                        "must be finite and >= 0 (a horizon step C*K^-POWER must not grow with K)",
                    ));
                }
                Schedule::horizon(c, horizon, self.power)
            }
            other => {
                return Err(BilevelError::Unknown {
                    kind: "schedule kind".into(),
                    name: other.into(),
                    accepted: "constant, decay, horizon".into(),
                });
            }
        };
        s.check("schedule")?;
        Ok(s)
    }
}

/// Neumann truncation: the default $\log$ growth ([`NeumannGrowth::for_constants`]) or a fixed length.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct NeumannSpec {
    /// A fixed number of terms instead of the $\log k$ growth (the "fixed Neumann length" bug of the power tests).
    #[serde(default)]
    pub fixed: Option<usize>,
}

impl NeumannSpec {
    /// The truncation schedule for constants `k`.
    pub fn resolve(&self, k: &Constants) -> NeumannGrowth {
        let g = NeumannGrowth::for_constants(k.mu_l, k.l_l);
        match self.fixed {
            Some(n) => NeumannGrowth::fixed(g.eta, n),
            None => g,
        }
    }
}

/// The algorithm of a claim with its parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "kebab-case", deny_unknown_fields)]
pub enum AlgoSpec {
    /// [`crate::algorithms::ttsa::Ttsa`].
    Ttsa {
        /// $\alpha_k$.
        alpha: SchedSpec,
        /// $\beta_k$.
        beta: SchedSpec,
        /// Neumann truncation.
        #[serde(default)]
        neumann: NeumannSpec,
        /// Evaluate the UL step at the stale $\phi^k$ (a planted bug).
        #[serde(default)]
        stale_phi: bool,
        /// Eq (20) momentum: the weight $\eta$ on the old direction (`None`: plain TTSA).
        #[serde(default)]
        momentum: Option<f64>,
        /// Swap eq (20)'s weights, $h \leftarrow (1-\eta)h + \eta\hat\nabla f$ (a planted bug).
        #[serde(default)]
        swap_momentum_weights: bool,
        /// The upper step without the projection on $\Theta$ (a planted bug, sets
        /// [`crate::algorithms::ttsa::Ttsa::skip_projection`]).
        #[serde(default)]
        no_projection: bool,
        /// The upper step with $\beta_k$ instead of $\alpha_k$ (a planted bug, sets
        /// [`crate::algorithms::ttsa::Ttsa::upper_step_beta`]).
        #[serde(default)]
        upper_step_beta: bool,
        /// Skip TTSA's two-timescale check $\alpha_k/\beta_k\to0$ (sets
        /// [`crate::algorithms::ttsa::Ttsa::enforce_timescales`] to false): only for the claims that show what
        /// happens at one timescale (theory/single-timescale.md).
        #[serde(default)]
        allow_single_timescale: bool,
        /// Replace $\beta_k$'s exponent by 3/5 while `beta` says 2/3 (a planted bug: the typo $k^{-3/5}$;
        /// [`super::resolve::BETA_TYPO_POWER`]).
        #[serde(default)]
        beta_power_typo: bool,
    },
    /// [`crate::algorithms::alternating::Alternating`] (drops the implicit gradient).
    Alternating {
        /// $\alpha_k$.
        alpha: SchedSpec,
        /// $\beta_k$.
        beta: SchedSpec,
        /// Inner steps.
        #[serde(default = "one_usize")]
        inner_steps: usize,
    },
    /// [`crate::algorithms::double_loop::DoubleLoop::bsa`].
    Bsa {
        /// $\alpha$.
        alpha: SchedSpec,
        /// $\beta$.
        beta: SchedSpec,
        /// $t_k = \lceil c\sqrt{k+1}\rceil$.
        c_inner: f64,
        /// Neumann truncation.
        #[serde(default)]
        neumann: NeumannSpec,
        /// $\beta$ indexed by the inner step $t$ (decreasing inner steps, restarted every outer iteration; see
        /// [`crate::algorithms::double_loop::DoubleLoop::beta_per_inner_step`]).
        #[serde(default)]
        beta_per_inner_step: bool,
        /// A fixed inner-loop length instead of $\lceil c\sqrt{k+1}\rceil$ (the planted bug is `Some(1)`).
        #[serde(default)]
        inner_fixed: Option<usize>,
    },
    /// [`crate::algorithms::double_loop::DoubleLoop::stocbio`], minibatch $B_K = \lceil b K^{a}\rceil$.
    Stocbio {
        /// $\alpha$.
        alpha: SchedSpec,
        /// $\beta$.
        beta: SchedSpec,
        /// Inner steps.
        inner: usize,
        /// $b$.
        batch_c: f64,
        /// $a$.
        #[serde(default)]
        batch_power: f64,
        /// Neumann truncation.
        #[serde(default)]
        neumann: NeumannSpec,
        /// Inner SGD steps with one sample instead of the minibatch (a planted bug).
        #[serde(default)]
        no_inner_minibatch: bool,
        /// One Hessian sample for every Neumann factor instead of a fresh one per factor (a planted bug, sets
        /// [`crate::algorithms::double_loop::DoubleLoop::one_hessian_sample`]).
        #[serde(default)]
        one_hessian_sample: bool,
    },
    /// [`crate::algorithms::stable::Stable`].
    Stable {
        /// $\alpha_k$.
        alpha: SchedSpec,
        /// $\beta_k$.
        beta: SchedSpec,
        /// Tracking weight.
        tau: f64,
        /// Alg 6 as printed (a planted bug).
        #[serde(default)]
        literal_alg6: bool,
        /// Drop the lower step's correction term (a planted bug).
        #[serde(default)]
        no_correction: bool,
    },
    /// [`crate::algorithms::itd_bio::ItdBio`]: $T$ unrolled inner steps of constant size, reverse-mode ITD.
    ItdBio {
        /// $\alpha_k$.
        alpha: SchedSpec,
        /// The inner step $\beta$: a `constant` schedule (ITD-BiO's step does not decay).
        beta: SchedSpec,
        /// Unrolled steps $T$.
        steps: usize,
        /// Back-propagate only the last $T'$ steps (`None`: all $T$; $T' = T-1$ is the planted bug that drops
        /// $B_1^\top A_2^\top\cdots A_T^\top\nabla_\phi f_u$, the first step's term).
        #[serde(default)]
        truncate: Option<usize>,
        /// The reverse pass's Hessian products each at a fresh lower sample instead of the unroll's (a planted bug,
        /// sets [`crate::algorithms::itd_bio::ItdBio::fresh_hessian_samples`]).
        #[serde(default)]
        fresh_hessian_samples: bool,
    },
    /// [`crate::algorithms::sustain::Sustain`].
    Sustain {
        /// $\alpha_k$.
        alpha: SchedSpec,
        /// $\beta_k = c_\beta\alpha_k$, in units of $1/L_l$ relative to $\alpha_0$: $c_\beta = $ `beta0_l_l` $/(L_l\alpha_0)$.
        beta0_l_l: f64,
        /// $1-\eta_k = c_\eta\alpha_k^2$ with $c_\eta = $ `eta_c` $/\alpha_0^2$.
        eta_c: f64,
        /// Neumann truncation.
        #[serde(default)]
        neumann: NeumannSpec,
        /// $\eta = 0$: no recursive correction (a planted bug).
        #[serde(default)]
        no_momentum: bool,
        /// The correction's old-point evaluation at a different sample (a planted bug).
        #[serde(default)]
        stale_sample: bool,
    },
    /// [`crate::algorithms::vrbo::Vrbo`] with the sizes of Yang, Ji & Liang's theorem tied to the horizon $K$
    /// ($\varepsilon\sim K^{-1}$, theory/vrbo.md): refresh period $q = \lceil c_q\sqrt K\rceil$, correction batch
    /// $b = \lceil c_b\sqrt K\rceil$, refresh batch $S = \lceil c_S K\rceil$, constant steps, Neumann length
    /// $N = \lceil\kappa\ln(K+2)\rceil$ (or `neumann.fixed`).
    Vrbo {
        /// $\alpha$ (a `constant` schedule: VRBO's steps do not decay).
        alpha: SchedSpec,
        /// $\beta$ (a `constant` schedule).
        beta: SchedSpec,
        /// Inner SPIDER steps $m$ per outer step.
        #[serde(default = "one_usize")]
        inner: usize,
        /// $c_q$.
        period_c: f64,
        /// $c_b$.
        batch_c: f64,
        /// $c_S$.
        large_batch_c: f64,
        /// Neumann truncation (its length at $k = K$).
        #[serde(default)]
        neumann: NeumannSpec,
        /// The correction's old-point evaluation at fresh samples (a planted bug,
        /// [`crate::algorithms::vrbo::Vrbo::stale_sample`]).
        #[serde(default)]
        stale_sample: bool,
        /// The refresh with the correction batch, $S = b\sim\sqrt K$ instead of $S\sim K$ (a planted bug: the two
        /// batch sizes mixed up, so the refresh error $\sigma^2/S$ no longer falls like $\varepsilon$).
        #[serde(default)]
        refresh_small_batch: bool,
    },
}

fn one_usize() -> usize {
    1
}

/// The problem of a claim: a family, its parameters, the noise, the start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProblemSpec {
    /// Registered family name.
    pub family: String,
    /// The family's parameters (its `Spec` fields).
    #[serde(default)]
    pub params: toml::Table,
    /// Additive noise levels.
    #[serde(default)]
    pub noise: NoiseLevels,
    /// $\theta^0$ (default: all ones, projected on $\Theta$).
    #[serde(default)]
    pub theta0: Option<Vec<f64>>,
    /// Start the lower level on its solution, $\phi^0 = \phi^\star(\theta^0)$ (default: $\phi^0 = 0$), so that
    /// an averaged lower-level measure is not dominated by the initial lower-level transient.
    #[serde(default)]
    pub phi0_on_solution: bool,
    /// Replace $\theta^0$ by the stationary point that projected gradient descent on the exact $F$ reaches from it
    /// (for measures that must not be dominated by the upper-level transient).
    #[serde(default)]
    pub theta0_stationary: bool,
}

/// One claim of the registry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimSpec {
    /// Unique id, e.g. `ttsa-sc/lower-gap`.
    pub id: String,
    /// Name of the simulation this claim reads (default: its id). Claims naming the same run must have identical
    /// problem, algorithm, horizons and replicates; the run is simulated once and its replicate streams are derived
    /// from this name, so a claim's numbers do not depend on which other claims are selected.
    #[serde(default)]
    pub run: Option<String>,
    /// One line: the statement.
    pub title: String,
    /// Paper theorem and the lecture's equations.
    pub source: String,
    /// The note in `theory/` that states the theorem, the assumptions and the result.
    pub note: String,
    /// Bound, tight or refuted (one-sided: above or below).
    pub kind: Kind,
    /// The theory's exponent ($r<0$ for a decaying metric; $p>0$ for a sample complexity $\varepsilon^{-p}$).
    pub theory_exponent: f64,
    /// Tolerance $\tau$ of the decision.
    pub tolerance: f64,
    /// Why the tolerance is what it is.
    pub tolerance_reason: String,
    /// What is fitted.
    pub measure: Measure,
    /// The recorded metric.
    pub metric: Metric,
    /// Last iterate or average.
    pub statistic: Statistic,
    /// Independent replicates $R$.
    pub replicates: usize,
    /// The horizon grid.
    pub horizons: Horizons,
    /// The problem.
    pub problem: ProblemSpec,
    /// The algorithm.
    pub algorithm: AlgoSpec,
    /// If set, this entry is a power test: the named claim's rule applied to a planted bug, expected to fail.
    #[serde(default)]
    pub power_for: Option<String>,
    /// The planted bug, in words.
    #[serde(default)]
    pub bug: Option<String>,
    /// Set when a claim on a stationarity measure is fitted where the start still dominates (the honest-regime
    /// ratio of [`super::ClaimResult::regime_ratio`] is below 100): why the claim is kept and what it then shows.
    /// The report marks such claims (`*` after the kind).
    #[serde(default)]
    pub regime: Option<String>,
}

/// A planted bug that no rate claim can see, with the test that catches it (`[[bug]]` in the registry).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BugSpec {
    /// The algorithm (registry name).
    pub algorithm: String,
    /// The switch that plants it (e.g. `Stable.no_correction`).
    pub switch: String,
    /// The bug, in words.
    pub bug: String,
    /// The test that catches it (`module::test_name`), or the exact branch's consistency check.
    pub caught_by: String,
    /// Why no rate claim sees it, with the measured numbers.
    pub why: String,
}

impl ClaimSpec {
    /// The simulation this claim reads.
    pub fn run_name(&self) -> &str {
        self.run.as_deref().unwrap_or(&self.id)
    }
    /// Whether `other` describes the same simulation (same problem, algorithm, horizons, replicates).
    pub fn same_simulation(&self, other: &ClaimSpec) -> bool {
        self.problem == other.problem
            && self.algorithm == other.algorithm
            && self.horizons == other.horizons
            && self.replicates == other.replicates
    }
}

impl Registry {
    /// Parse and check the registry text.
    pub fn parse(text: &str) -> Result<Self> {
        let reg: Registry =
            toml::from_str(text).map_err(|e| BilevelError::Malformed(format!("claims registry: {e}")))?;
        let mut ids = std::collections::HashSet::new();
        for c in &reg.claim {
            if !ids.insert(c.id.clone()) {
                return Err(BilevelError::Malformed(format!("duplicate claim id '{}'", c.id)));
            }
            if !(c.tolerance.is_finite() && c.tolerance >= 0.0) {
                return Err(BilevelError::invalid(
                    "tolerance",
                    c.tolerance,
                    "must be finite and >= 0",
                ));
            }
            if c.tolerance_reason.trim().is_empty() {
                return Err(BilevelError::Malformed(format!(
                    "claim '{}' has no tolerance_reason",
                    c.id
                )));
            }
            if c.replicates < 2 {
                return Err(BilevelError::invalid("replicates", c.replicates, "must be >= 2"));
            }
        }
        for (i, c) in reg.claim.iter().enumerate() {
            if let Some(first) = reg.claim[..i].iter().find(|o| o.run_name() == c.run_name())
                && !first.same_simulation(c)
            {
                return Err(BilevelError::Malformed(format!(
                    "claims '{}' and '{}' share run '{}' but describe different simulations",
                    first.id,
                    c.id,
                    c.run_name()
                )));
            }
        }
        for c in &reg.claim {
            if let Some(target) = &c.power_for
                && !ids.contains(target)
            {
                return Err(BilevelError::Malformed(format!(
                    "power test '{}' names unknown claim '{target}'",
                    c.id
                )));
            }
        }
        Ok(reg)
    }

    /// The registry shipped with the crate (`theory/claims.toml`, compiled in).
    pub fn builtin() -> Result<Self> {
        Self::parse(include_str!("../../theory/claims.toml"))
    }
}
