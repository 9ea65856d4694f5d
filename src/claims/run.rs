//! Running a claim: build the problem and the algorithm from the spec, run $R$ replicates in parallel, fit, judge.

use super::resolve::ResolvedAlgo;
use super::spec::{AlgoSpec, ClaimSpec, HorizonMode, Kind, Measure, Statistic, WINDOW_FRACTION};
use crate::algorithms::{
    alternating::Alternating, double_loop::DoubleLoop, itd_bio::ItdBio, stable::Stable, sustain::Sustain, ttsa::Ttsa,
    vrbo::Vrbo,
};
use crate::error::{BilevelError, Result};
use crate::families;
use crate::linalg::Vector;
use crate::problem::{Bilevel, Constants, Noisy, Oracle};
use crate::solver::{self, Iterate, Metric, Recorder, Solver};
use crate::stats::{self, Table};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Instant;

/// Bootstrap resamples and level of every claim's interval (see `theory/README.md` for the false-failure rates).
pub const BOOTSTRAP_RESAMPLES: usize = 1000;
/// Two-sided level of the bootstrap percentile interval.
pub const BOOTSTRAP_LEVEL: f64 = 0.99;

/// The outcome of one claim (deserialisable, so that `bilevel merge` can combine the shards of a report).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClaimResult {
    /// Claim id.
    pub id: String,
    /// Bound, tight or refuted.
    pub kind: Kind,
    /// The theory's exponent.
    pub theory_exponent: f64,
    /// The fitted exponent.
    pub fitted_exponent: f64,
    /// Its bootstrap interval.
    pub interval: [f64; 2],
    /// The tolerance used.
    pub tolerance: f64,
    /// `pass` or `fail`: for a claim, whether its rule passed; for a power test, whether the planted bug was
    /// caught (its rule returned Fail; Inconclusive does not count as caught).
    pub verdict: String,
    /// The rule's own verdict: `pass`, `fail` or `inconclusive`.
    pub rule_verdict: String,
    /// For power tests: the claim whose rule this entry applies to a planted bug.
    pub power_for: Option<String>,
    /// For power tests: the planted bug, in words.
    pub bug: Option<String>,
    /// The measured quantity in words (metric and statistic, or the deterministic error): the plots' axis label.
    pub quantity: String,
    /// Replicates.
    pub replicates: usize,
    /// Horizons.
    pub horizons: Vec<usize>,
    /// Index of the first horizon in the fitted tail.
    pub fit_from: usize,
    /// Mean metric at each horizon (the estimand).
    pub means: Vec<f64>,
    /// Its standard error at each horizon.
    pub std_errors: Vec<f64>,
    /// Mean samples (upper or lower, for complexity claims) at each horizon.
    pub samples: Option<Vec<f64>>,
    /// The honest-regime exemption of the claim ([`super::ClaimSpec::regime`]).
    pub regime: Option<String>,
    /// The metric at the start $(\theta^0,\phi^0)$ (deterministic; `None` for the deterministic rates).
    pub start_value: Option<f64>,
    /// For stationarity measures ($\\|\nabla F\\|^2$, the Moreau measure): the metric at the start over the mean
    /// metric at the largest horizon. The honest-regime rule asks for $\ge 100$: below it the fit sees the start
    /// (theory/README.md, "Honest regimes").
    pub regime_ratio: Option<f64>,
    /// Direct sample complexity of the claim's run, for complexity claims ([`super::direct`]).
    pub direct: Option<super::direct::DirectComplexity>,
    /// Where the exact curve decided or explained the verdict ([`super::judge::exact_rule`]), why, in words: e.g. a
    /// tight claim whose interval misses the theory exponent, passed because the exact curve predicts the miss, or
    /// failed because it does not or because there is none.
    #[serde(default)]
    pub reason: Option<String>,
    /// Wall time in seconds.
    pub seconds: f64,
    /// The exponent the claim fits, from the exact expected curve on its own grid and fit window
    /// ([`crate::exact`], issue 9 §1); `None` where the moment recursion does not apply or was not computed.
    pub exact_slope_grid: Option<f64>,
    /// The same exponent on [`crate::exact::far_grid`] ($10^5$–$10^6$).
    pub exact_slope_far: Option<f64>,
}

impl ClaimResult {
    /// Whether the entry did what it should: a claim passed, or a power test caught its bug.
    pub fn ok(&self) -> bool {
        self.verdict == "pass"
    }
}

/// The family of a claim with its noise.
pub fn build_problem(spec: &ClaimSpec) -> Result<Arc<dyn Bilevel>> {
    let base = families::build_with(&spec.problem.family, &spec.problem.params)?;
    let n = spec.problem.noise;
    let any = [
        n.value,
        n.grad_theta_fu,
        n.grad_phi_fu,
        n.grad_phi_fl,
        n.hess_fl,
        n.cross_fl,
    ]
    .iter()
    .any(|x| *x != 0.0);
    Ok(if any { Arc::new(Noisy::new(base, n)?) } else { base })
}

/// The solver of a claim for horizon `horizon`, from the one resolution of its spec ([`AlgoSpec::resolve`], which
/// the exact recursion reads too).
pub fn build_solver(algo: &AlgoSpec, k: &Constants, horizon: usize) -> Result<Box<dyn Solver>> {
    Ok(match algo.resolve(k, horizon)? {
        ResolvedAlgo::Ttsa {
            alpha,
            beta,
            neumann,
            stale_phi,
            momentum,
            swap_momentum_weights,
            enforce_timescales,
            no_projection,
            upper_step_beta,
        } => {
            let mut t = Ttsa::new(alpha, beta, neumann);
            t.stale_phi = stale_phi;
            t.momentum = momentum;
            t.swap_momentum_weights = swap_momentum_weights;
            t.enforce_timescales = enforce_timescales;
            t.skip_projection = no_projection;
            t.upper_step_beta = upper_step_beta;
            Box::new(t)
        }
        ResolvedAlgo::Alternating {
            alpha,
            beta,
            inner_steps,
        } => Box::new(Alternating::new(alpha, beta, inner_steps)),
        ResolvedAlgo::Bsa {
            alpha,
            beta,
            inner,
            neumann,
            beta_per_inner_step,
        } => {
            let mut d = DoubleLoop::bsa(alpha, beta, 1.0, neumann);
            d.inner = inner;
            d.beta_per_inner_step = beta_per_inner_step;
            Box::new(d)
        }
        ResolvedAlgo::Stocbio {
            alpha,
            beta,
            inner,
            neumann,
            batch,
            no_inner_minibatch,
            one_hessian_sample,
        } => {
            let mut d = DoubleLoop::stocbio(alpha, beta, inner, neumann, batch);
            d.no_inner_minibatch = no_inner_minibatch;
            d.one_hessian_sample = one_hessian_sample;
            Box::new(d)
        }
        ResolvedAlgo::Stable {
            alpha,
            beta,
            tau,
            literal_alg6,
            no_correction,
        } => {
            let mut s = Stable::new(alpha, beta, tau, k.mu_l);
            s.literal_alg6 = literal_alg6;
            s.no_correction = no_correction;
            Box::new(s)
        }
        ResolvedAlgo::ItdBio {
            alpha,
            beta,
            steps,
            truncate,
            fresh_hessian_samples,
        } => {
            let mut s = ItdBio::new(alpha, beta, steps);
            s.truncate = truncate;
            s.fresh_hessian_samples = fresh_hessian_samples;
            Box::new(s)
        }
        ResolvedAlgo::Sustain {
            alpha,
            c_beta,
            c_eta,
            neumann,
            no_momentum,
            stale_sample,
        } => {
            let mut s = Sustain::new(alpha, c_beta, c_eta, neumann);
            s.no_momentum = no_momentum;
            s.stale_sample = stale_sample;
            Box::new(s)
        }
        ResolvedAlgo::Vrbo {
            alpha,
            beta,
            period,
            large_batch,
            batch,
            inner,
            neumann,
            stale_sample,
        } => {
            let mut s = Vrbo::new(alpha, beta, period, large_batch, batch, inner, neumann);
            s.stale_sample = stale_sample;
            Box::new(s)
        }
    })
}

/// One replicate of a simulation: every metric in `metrics` (last iterate, and running average if `average`) and
/// the upper and lower samples used, at every horizon.
struct Replicate {
    last: Vec<Vec<f64>>,
    avg: Vec<Vec<f64>>,
    win: Vec<Vec<f64>>,
    upper: Vec<f64>,
    lower: Vec<f64>,
}

/// Projected gradient descent on the exact $F$ with step $1/L_F$ from `theta` until it stops moving: a stationary
/// point of $F$ on $\Theta$ (a local minimiser from a generic start). The start of claims with
/// `theta0_stationary` (and of `bilevel run` on such a spec).
pub fn stationary_point(p: &dyn Bilevel, mut theta: Vector) -> Result<Vector> {
    let step = 1.0 / p.constants().l_f;
    for _ in 0..100_000 {
        let mut next = &theta - step * p.grad_f(&theta)?;
        p.domain().project(&mut next);
        let moved = (&next - &theta).amax();
        theta = next;
        if moved < 1e-14 {
            return Ok(theta);
        }
    }
    Err(BilevelError::Diverged {
        iter: 100_000,
        what: "projected gradient to a stationary start did not settle".into(),
    })
}

/// The start $(\theta^0,\phi^0)$ of a claim's runs (deterministic).
pub fn start_point(spec: &ClaimSpec, p: &dyn Bilevel) -> Result<(Vector, Vector)> {
    let d = p.dims();
    let mut theta0 = match &spec.problem.theta0 {
        Some(t) => Vector::from_vec(t.clone()),
        None => Vector::from_element(d.d_u, 1.0),
    };
    p.domain().project(&mut theta0);
    if spec.problem.theta0_stationary {
        theta0 = stationary_point(p, theta0)?;
    }
    let phi0 = if spec.problem.phi0_on_solution {
        p.phi_star(&theta0)
    } else {
        Vector::zeros(d.d_l)
    };
    Ok((theta0, phi0))
}

fn replicate(
    spec: &ClaimSpec,
    metrics: &[Metric],
    average: bool,
    p: &dyn Bilevel,
    grid: &[usize],
    mut rng: ChaCha8Rng,
) -> Result<Replicate> {
    let k = p.constants();
    let (theta0, phi0) = start_point(spec, p)?;
    let mut out = Replicate {
        last: vec![Vec::with_capacity(grid.len()); metrics.len()],
        avg: vec![Vec::with_capacity(grid.len()); metrics.len()],
        win: vec![Vec::with_capacity(grid.len()); metrics.len()],
        upper: Vec::with_capacity(grid.len()),
        lower: Vec::with_capacity(grid.len()),
    };
    let mut take = |trace: &solver::Trace, i: usize| {
        for m in 0..metrics.len() {
            out.last[m].push(trace.values[i][m]);
            if let Some(a) = &trace.averages {
                out.avg[m].push(a[i][m]);
            }
            if let Some(w) = &trace.windows {
                out.win[m].push(w[i][m]);
            }
        }
        out.upper.push(trace.counts[i].upper_samples as f64);
        // S(f_l) counts stochastic gradient estimates of f_l (the lecture's definition under eq (34)); Hessian and
        // cross samples are second-order samples, not part of S(f_l).
        out.lower.push(trace.counts[i].fl_grad_phi as f64);
    };
    match spec.horizons.mode {
        HorizonMode::Anytime => {
            let kmax = *grid.last().expect("non-empty grid");
            let mut s = build_solver(&spec.algorithm, &k, kmax)?;
            let mut o = Oracle::with_rng(p, rng);
            // Averages over every iterate; the costly Moreau metric over a regular subsample (~64 per smallest horizon).
            let rec = Recorder::new(metrics, grid, average).with_window(WINDOW_FRACTION);
            let stride = (grid[0] / 64).max(1);
            let rec = rec.with_average_stride(Metric::MoreauGradSq, stride);
            let rec = rec.with_average_stride(Metric::MoreauGrad, stride);
            let mut rec = rec.with_average_stride(Metric::MoreauGradSqUnconstrained, stride);
            solver::run(s.as_mut(), &mut o, &theta0, &phi0, kmax, &mut rec)?;
            let trace = rec.finish();
            for i in 0..grid.len() {
                take(&trace, i);
            }
        }
        HorizonMode::PerHorizon => {
            for &kk in grid {
                // An independent stream per horizon, drawn from the replicate's stream.
                let sub = ChaCha8Rng::seed_from_u64(rng.next_u64());
                let mut s = build_solver(&spec.algorithm, &k, kk)?;
                let mut o = Oracle::with_rng(p, sub);
                let rec = Recorder::new(metrics, &[kk], average).with_window(WINDOW_FRACTION);
                let stride = (kk / 128).max(1);
                let rec = rec.with_average_stride(Metric::MoreauGradSq, stride);
                let rec = rec.with_average_stride(Metric::MoreauGrad, stride);
                let mut rec = rec.with_average_stride(Metric::MoreauGradSqUnconstrained, stride);
                solver::run(s.as_mut(), &mut o, &theta0, &phi0, kk, &mut rec)?;
                take(&rec.finish(), 0);
            }
        }
    }
    Ok(out)
}

/// Run `spec` alone under `master_seed` and judge it.
pub fn run_claim(spec: &ClaimSpec, master_seed: u64) -> Result<ClaimResult> {
    Ok(run_group(&[spec], master_seed)?.remove(0))
}

/// Simulate the run shared by `specs` once (they must share it: see [`ClaimSpec::run`]) and judge each claim, with
/// the exact curves where they exist ([`crate::exact::judging_slopes`], [`super::judge::exact_rule`]).
pub fn run_group(specs: &[&ClaimSpec], master_seed: u64) -> Result<Vec<ClaimResult>> {
    simulate_group(specs, master_seed, true)
}

/// [`run_group`] judged by the band rule alone, without computing exact curves: for callers that read only the
/// Monte Carlo means (the exact consistency check compares them with the exact curve itself).
pub fn run_group_band_only(specs: &[&ClaimSpec], master_seed: u64) -> Result<Vec<ClaimResult>> {
    simulate_group(specs, master_seed, false)
}

fn simulate_group(specs: &[&ClaimSpec], master_seed: u64, with_exact: bool) -> Result<Vec<ClaimResult>> {
    let start = Instant::now();
    let first = specs[0];
    let p = build_problem(first)?;
    let h = first.horizons;
    let grid = stats::geometric_grid(h.min, h.max, h.points)?;
    let mut metrics: Vec<Metric> = Vec::new();
    for s in specs {
        if !metrics.contains(&s.metric) {
            metrics.push(s.metric);
        }
    }
    let average = specs.iter().any(|s| s.statistic == Statistic::Average);
    let reps = stats::run_replicates(master_seed, first.run_name(), first.replicates, |rng, _| {
        replicate(first, &metrics, average, p.as_ref(), &grid, rng)
    })?;
    let upper = Table::from_rows(&reps.iter().map(|r| r.upper.clone()).collect::<Vec<_>>())?;
    let lower = Table::from_rows(&reps.iter().map(|r| r.lower.clone()).collect::<Vec<_>>())?;
    // The metrics at the start: deterministic, so evaluated once, with an oracle whose stream is never drawn.
    let (theta0, phi0) = start_point(first, p.as_ref())?;
    let o0 = Oracle::new(p.as_ref(), 0);
    let at_start = Iterate::start(theta0, phi0);
    let start_values: Vec<f64> = metrics.iter().map(|m| m.eval(&o0, &at_start)).collect::<Result<_>>()?;
    let direct = if specs
        .iter()
        .any(|s| s.measure != Measure::Slope && s.power_for.is_none())
    {
        Some(super::direct::measure(first, master_seed, p.as_ref())?)
    } else {
        None
    };
    // The exact curves the rule judges against (seed-independent; cached across seeds).
    let exact = if with_exact {
        crate::exact::judging_slopes(specs)?
    } else {
        vec![None; specs.len()]
    };
    let seconds = start.elapsed().as_secs_f64();
    specs
        .iter()
        .zip(exact)
        .map(|(spec, exact)| {
            let m = metrics.iter().position(|x| *x == spec.metric).expect("metric recorded");
            let rows: Vec<&Vec<f64>> = reps
                .iter()
                .map(|r| match spec.statistic {
                    Statistic::Average => &r.avg[m],
                    Statistic::Window => &r.win[m],
                    Statistic::Last => &r.last[m],
                })
                .collect();
            let metric = Table::from_rows(&rows)?;
            let mut r = judge(spec, exact, master_seed, &grid, &metric, &upper, &lower, seconds)?;
            let at0 = start_values[m];
            r.start_value = Some(at0);
            if matches!(
                spec.metric,
                Metric::GradNormSq | Metric::MoreauGradSq | Metric::MoreauGradSqUnconstrained
            ) {
                r.regime_ratio = Some(at0 / r.means.last().copied().unwrap_or(f64::NAN));
            }
            if spec.measure != Measure::Slope {
                r.direct = direct.clone();
                // The claim's own rule on the direct interval of the kind it counts: informational (direct.rs).
                if let (Some(d), Some(kind)) = (r.direct.as_mut(), super::direct::kind_of(spec.measure)) {
                    let rule = crate::stats::Rule::new(
                        super::judge::rule_kind(spec.kind),
                        spec.theory_exponent,
                        spec.tolerance,
                    )?;
                    d.compare(kind, &rule);
                }
            }
            Ok(r)
        })
        .collect()
}

#[allow(clippy::too_many_arguments)]
fn judge(
    spec: &ClaimSpec,
    exact: Option<crate::exact::ExactSlopes>,
    master_seed: u64,
    grid: &[usize],
    metric: &Table,
    upper: &Table,
    lower: &Table,
    seconds: f64,
) -> Result<ClaimResult> {
    // The same code judges other implementations' data (`bilevel judge`).
    let mut target = super::judge::Target::from_claim(spec)?;
    target.horizons = Some(grid.to_vec());
    target.exact = exact;
    let samples = match spec.measure {
        Measure::ComplexityLower => Some(lower),
        Measure::ComplexityUpper => Some(upper),
        Measure::Slope => None,
    };
    let mut r = super::judge::judge_tables(&target, master_seed, grid, metric, samples, seconds)?;
    r.regime = spec.regime.clone();
    Ok(r)
}

/// The result of a power test whose planted bug made a replicate diverge (caught; rule verdict `diverged`).
fn diverged(spec: &ClaimSpec, iter: usize) -> ClaimResult {
    ClaimResult {
        id: spec.id.clone(),
        kind: spec.kind,
        theory_exponent: spec.theory_exponent,
        fitted_exponent: f64::INFINITY,
        interval: [f64::INFINITY, f64::INFINITY],
        tolerance: spec.tolerance,
        verdict: "pass".into(),
        rule_verdict: format!("diverged (iteration {iter})"),
        power_for: spec.power_for.clone(),
        quantity: format!("{} ({})", spec.metric.key(), spec.statistic.describe()),
        replicates: spec.replicates,
        horizons: Vec::new(),
        fit_from: 0,
        means: Vec::new(),
        std_errors: Vec::new(),
        samples: None,
        bug: spec.bug.clone(),
        regime: spec.regime.clone(),
        start_value: None,
        regime_ratio: None,
        direct: None,
        reason: None,
        seconds: 0.0,
        exact_slope_grid: None,
        exact_slope_far: None,
    }
}

/// [`run_group`], where a planted bug that makes the run diverge counts as caught (every claim of the group is a
/// power test: no rate can hold for a divergent metric); any other divergence is an error naming the run. The
/// report, the sweep and their shards all judge groups through this.
pub fn run_group_judged(group: &[&ClaimSpec], master_seed: u64) -> Result<Vec<ClaimResult>> {
    match run_group(group, master_seed) {
        Ok(out) => Ok(out),
        Err(BilevelError::Diverged { iter, .. }) if group.iter().all(|s| s.power_for.is_some()) => {
            Ok(group.iter().map(|s| diverged(s, iter)).collect())
        }
        Err(BilevelError::Diverged { iter, what }) => Err(BilevelError::Diverged {
            iter,
            what: format!("run {}: {what}", group.first().map_or("", |s| s.run_name())),
        }),
        Err(other) => Err(other),
    }
}

/// Run every claim of `specs`, simulating each shared run once (groups in order of first appearance; each run is
/// parallel over replicates). Results come back in the order of `specs`.
pub fn run_all(
    specs: &[ClaimSpec],
    master_seed: u64,
    mut progress: impl FnMut(&ClaimResult),
) -> Result<Vec<ClaimResult>> {
    let mut order: Vec<&str> = Vec::new();
    for s in specs {
        if !order.contains(&s.run_name()) {
            order.push(s.run_name());
        }
    }
    let mut results: Vec<Option<ClaimResult>> = vec![None; specs.len()];
    for run in order {
        let idx: Vec<usize> = (0..specs.len()).filter(|i| specs[*i].run_name() == run).collect();
        let group: Vec<&ClaimSpec> = idx.iter().map(|i| &specs[*i]).collect();
        let out = run_group_judged(&group, master_seed)?;
        for (i, r) in idx.into_iter().zip(out) {
            progress(&r);
            results[i] = Some(r);
        }
    }
    Ok(results.into_iter().map(|r| r.expect("every claim judged")).collect())
}
