//! Running a claim: build the problem and the algorithm from the spec, run $R$ replicates in parallel, fit, judge.

use super::spec::{AlgoSpec, ClaimSpec, HorizonMode, Kind, Measure, Statistic, WINDOW_FRACTION};
use crate::algorithms::{
    alternating::Alternating, double_loop::DoubleLoop, stable::Stable, sustain::Sustain, ttsa::Ttsa,
};
use crate::error::{BilevelError, Result};
use crate::families;
use crate::linalg::Vector;
use crate::problem::{Bilevel, Constants, Noisy, Oracle};
use crate::solver::{self, Metric, Recorder, Solver};
use crate::stats::{self, ClaimKind, FitConfig, Interval, Rule, SeedKey, Table, Tail, Verdict};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use std::sync::Arc;
use std::time::Instant;

/// Bootstrap resamples and level of every claim's interval (see `theory/README.md` for the false-failure rates).
pub const BOOTSTRAP_RESAMPLES: usize = 1000;
/// Two-sided level of the bootstrap percentile interval.
pub const BOOTSTRAP_LEVEL: f64 = 0.99;

/// The outcome of one claim.
#[derive(Debug, Clone, Serialize)]
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

/// The solver of a claim for horizon `horizon`.
pub fn build_solver(algo: &AlgoSpec, k: &Constants, horizon: usize) -> Result<Box<dyn Solver>> {
    Ok(match algo {
        AlgoSpec::Ttsa {
            alpha,
            beta,
            neumann,
            stale_phi,
            momentum,
            swap_momentum_weights,
        } => {
            let mut t = Ttsa::new(
                alpha.resolve(k, horizon)?,
                beta.resolve(k, horizon)?,
                neumann.resolve(k),
            );
            t.stale_phi = *stale_phi;
            t.momentum = *momentum;
            t.swap_momentum_weights = *swap_momentum_weights;
            Box::new(t)
        }
        AlgoSpec::Alternating {
            alpha,
            beta,
            inner_steps,
        } => Box::new(Alternating::new(
            alpha.resolve(k, horizon)?,
            beta.resolve(k, horizon)?,
            *inner_steps,
        )),
        AlgoSpec::Bsa {
            alpha,
            beta,
            c_inner,
            neumann,
            inner_fixed,
        } => {
            let mut d = DoubleLoop::bsa(
                alpha.resolve(k, horizon)?,
                beta.resolve(k, horizon)?,
                *c_inner,
                neumann.resolve(k),
            );
            if let Some(t) = inner_fixed {
                d.inner = crate::algorithms::double_loop::InnerSteps::Fixed(*t);
            }
            Box::new(d)
        }
        AlgoSpec::Stocbio {
            alpha,
            beta,
            inner,
            batch_c,
            batch_power,
            neumann,
            no_inner_minibatch,
        } => {
            let batch = (batch_c * (horizon as f64).powf(*batch_power)).ceil().max(1.0) as usize;
            let mut d = DoubleLoop::stocbio(
                alpha.resolve(k, horizon)?,
                beta.resolve(k, horizon)?,
                *inner,
                neumann.resolve(k),
                batch,
            );
            d.no_inner_minibatch = *no_inner_minibatch;
            Box::new(d)
        }
        AlgoSpec::Stable {
            alpha,
            beta,
            tau,
            literal_alg6,
            no_correction,
        } => {
            let mut s = Stable::new(alpha.resolve(k, horizon)?, beta.resolve(k, horizon)?, *tau, k.mu_l);
            s.literal_alg6 = *literal_alg6;
            s.no_correction = *no_correction;
            Box::new(s)
        }
        AlgoSpec::Sustain {
            alpha,
            beta0_l_l,
            eta_c,
            neumann,
        } => {
            let a = alpha.resolve(k, horizon)?;
            let a0 = a.at(0);
            Box::new(Sustain::new(
                a,
                beta0_l_l / (k.l_l * a0),
                eta_c / (a0 * a0),
                neumann.resolve(k),
            ))
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
/// point of $F$ on $\Theta$ (a local minimiser from a generic start).
fn stationary_point(p: &dyn Bilevel, mut theta: Vector) -> Result<Vector> {
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

fn replicate(
    spec: &ClaimSpec,
    metrics: &[Metric],
    average: bool,
    p: &dyn Bilevel,
    grid: &[usize],
    mut rng: ChaCha8Rng,
) -> Result<Replicate> {
    let k = p.constants();
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
            let mut rec = rec.with_average_stride(Metric::MoreauGradSq, (grid[0] / 64).max(1));
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
                let mut rec = rec.with_average_stride(Metric::MoreauGradSq, (kk / 128).max(1));
                solver::run(s.as_mut(), &mut o, &theta0, &phi0, kk, &mut rec)?;
                take(&rec.finish(), 0);
            }
        }
    }
    Ok(out)
}

/// The stats crate's decision kind for a claim kind.
fn rule_kind(k: Kind) -> ClaimKind {
    match k {
        Kind::Bound => ClaimKind::Bound,
        Kind::Tight => ClaimKind::Tight,
        Kind::Refuted => ClaimKind::Refuted,
    }
}

/// Run `spec` alone under `master_seed` and judge it.
pub fn run_claim(spec: &ClaimSpec, master_seed: u64) -> Result<ClaimResult> {
    Ok(run_group(&[spec], master_seed)?.remove(0))
}

/// Simulate the run shared by `specs` once (they must share it: see [`ClaimSpec::run`]) and judge each claim.
pub fn run_group(specs: &[&ClaimSpec], master_seed: u64) -> Result<Vec<ClaimResult>> {
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
    let seconds = start.elapsed().as_secs_f64();
    specs
        .iter()
        .map(|spec| {
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
            judge(spec, master_seed, &grid, &metric, &upper, &lower, seconds)
        })
        .collect()
}

#[allow(clippy::too_many_arguments)]
fn judge(
    spec: &ClaimSpec,
    master_seed: u64,
    grid: &[usize],
    metric: &Table,
    upper: &Table,
    lower: &Table,
    seconds: f64,
) -> Result<ClaimResult> {
    let h = spec.horizons;
    let tail = Tail::Last(h.tail.unwrap_or(grid.len()));
    let cfg = FitConfig::new(SeedKey::new(master_seed, &spec.id))
        .with_tail(tail)
        .with_bootstrap(BOOTSTRAP_RESAMPLES, BOOTSTRAP_LEVEL);
    let used = match spec.measure {
        Measure::ComplexityLower => Some(lower),
        Measure::ComplexityUpper => Some(upper),
        Measure::Slope => None,
    };
    let (fitted, interval): (f64, Interval) = match used {
        None => {
            let f = stats::fit_power_law(grid, metric, &cfg)?;
            (f.exponent, f.interval)
        }
        Some(u) => {
            let f = stats::fit_sample_complexity(u, metric, &cfg)?;
            (f.exponent, f.interval)
        }
    };
    let rule = Rule::new(rule_kind(spec.kind), spec.theory_exponent, spec.tolerance)?;
    let verdict = rule.judge(&interval);
    let ok = if spec.power_for.is_some() {
        verdict == Verdict::Fail
    } else {
        verdict == Verdict::Pass
    };
    Ok(ClaimResult {
        id: spec.id.clone(),
        kind: spec.kind,
        theory_exponent: spec.theory_exponent,
        fitted_exponent: fitted,
        interval: [interval.lo, interval.hi],
        tolerance: spec.tolerance,
        verdict: if ok { "pass".into() } else { "fail".into() },
        rule_verdict: format!("{verdict:?}").to_lowercase(),
        power_for: spec.power_for.clone(),
        replicates: spec.replicates,
        horizons: grid.to_vec(),
        fit_from: grid.len() - h.tail.unwrap_or(grid.len()).min(grid.len()),
        means: metric.means(),
        std_errors: metric.std_errors()?,
        samples: used.map(|u| u.means()),
        seconds,
        exact_slope_grid: None,
        exact_slope_far: None,
    })
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
        let out = run_group(&group, master_seed).map_err(|e| match e {
            BilevelError::Diverged { iter, what } => BilevelError::Diverged {
                iter,
                what: format!("run {run}: {what}"),
            },
            other => other,
        })?;
        for (i, r) in idx.into_iter().zip(out) {
            progress(&r);
            results[i] = Some(r);
        }
    }
    Ok(results.into_iter().map(|r| r.expect("every claim judged")).collect())
}
