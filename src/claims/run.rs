//! Running a claim: build the problem and the algorithm from the spec, run $R$ replicates in parallel, fit, judge.

use super::spec::{AlgoSpec, ClaimSpec, HorizonMode, Kind, Measure, Statistic};
use crate::algorithms::{
    alternating::Alternating, double_loop::DoubleLoop, stable::Stable, sustain::Sustain, ttsa::Ttsa,
};
use crate::error::{BilevelError, Result};
use crate::families;
use crate::linalg::Vector;
use crate::problem::{Bilevel, Constants, Noisy, Oracle};
use crate::solver::{self, Recorder, Solver};
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
    /// Mean metric at each horizon (the estimand).
    pub means: Vec<f64>,
    /// Its standard error at each horizon.
    pub std_errors: Vec<f64>,
    /// Mean samples (upper or lower, for complexity claims) at each horizon.
    pub samples: Option<Vec<f64>>,
    /// Wall time in seconds.
    pub seconds: f64,
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
        } => {
            let mut t = Ttsa::new(
                alpha.resolve(k, horizon)?,
                beta.resolve(k, horizon)?,
                neumann.resolve(k),
            );
            t.stale_phi = *stale_phi;
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
        } => Box::new(DoubleLoop::bsa(
            alpha.resolve(k, horizon)?,
            beta.resolve(k, horizon)?,
            *c_inner,
            neumann.resolve(k),
        )),
        AlgoSpec::Stocbio {
            alpha,
            beta,
            inner,
            batch_c,
            batch_power,
            neumann,
        } => {
            let batch = (batch_c * (horizon as f64).powf(*batch_power)).ceil().max(1.0) as usize;
            Box::new(DoubleLoop::stocbio(
                alpha.resolve(k, horizon)?,
                beta.resolve(k, horizon)?,
                *inner,
                neumann.resolve(k),
                batch,
            ))
        }
        AlgoSpec::Stable {
            alpha,
            beta,
            tau,
            literal_alg6,
        } => {
            let mut s = Stable::new(alpha.resolve(k, horizon)?, beta.resolve(k, horizon)?, *tau, k.mu_l);
            s.literal_alg6 = *literal_alg6;
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

/// One replicate: the metric (last or averaged) and the samples used, at every horizon.
fn replicate(spec: &ClaimSpec, p: &dyn Bilevel, grid: &[usize], mut rng: ChaCha8Rng) -> Result<(Vec<f64>, Vec<f64>)> {
    let k = p.constants();
    let d = p.dims();
    let mut theta0 = match &spec.problem.theta0 {
        Some(t) => Vector::from_vec(t.clone()),
        None => Vector::from_element(d.d_u, 1.0),
    };
    p.domain().project(&mut theta0);
    let phi0 = Vector::zeros(d.d_l);
    let average = spec.statistic == Statistic::Average;
    let pick = |trace: &solver::Trace, i: usize| match &trace.averages {
        Some(a) if average => a[i][0],
        _ => trace.values[i][0],
    };
    let samples = |c: &crate::problem::Counts| match spec.measure {
        Measure::ComplexityLower => c.lower_samples as f64,
        _ => c.upper_samples as f64,
    };
    let (mut metric, mut used) = (Vec::with_capacity(grid.len()), Vec::with_capacity(grid.len()));
    match spec.horizons.mode {
        HorizonMode::Anytime => {
            let kmax = *grid.last().expect("non-empty grid");
            let mut s = build_solver(&spec.algorithm, &k, kmax)?;
            let mut o = Oracle::with_rng(p, rng);
            let mut rec = Recorder::new(&[spec.metric], grid, average);
            solver::run(s.as_mut(), &mut o, &theta0, &phi0, kmax, &mut rec)?;
            let trace = rec.finish();
            for i in 0..grid.len() {
                metric.push(pick(&trace, i));
                used.push(samples(&trace.counts[i]));
            }
        }
        HorizonMode::PerHorizon => {
            for &kk in grid {
                // An independent stream per horizon, drawn from the replicate's stream.
                let sub = ChaCha8Rng::seed_from_u64(rng.next_u64());
                let mut s = build_solver(&spec.algorithm, &k, kk)?;
                let mut o = Oracle::with_rng(p, sub);
                let mut rec = Recorder::new(&[spec.metric], &[kk], average);
                solver::run(s.as_mut(), &mut o, &theta0, &phi0, kk, &mut rec)?;
                let trace = rec.finish();
                metric.push(pick(&trace, 0));
                used.push(samples(&trace.counts[0]));
            }
        }
    }
    Ok((metric, used))
}

/// The stats crate's decision kind for a claim kind.
fn rule_kind(k: Kind) -> ClaimKind {
    match k {
        Kind::Bound => ClaimKind::Bound,
        Kind::Tight => ClaimKind::Tight,
        Kind::Refuted => ClaimKind::Refuted,
    }
}

/// Run `spec` under `master_seed` and judge it.
pub fn run_claim(spec: &ClaimSpec, master_seed: u64) -> Result<ClaimResult> {
    let start = Instant::now();
    let p = build_problem(spec)?;
    let h = spec.horizons;
    let grid = stats::geometric_grid(h.min, h.max, h.points)?;
    let rows = stats::run_replicates(master_seed, &spec.id, spec.replicates, |rng, _| {
        replicate(spec, p.as_ref(), &grid, rng)
    })?;
    let metric = Table::from_rows(&rows.iter().map(|r| r.0.clone()).collect::<Vec<_>>())?;
    let used = Table::from_rows(&rows.iter().map(|r| r.1.clone()).collect::<Vec<_>>())?;
    let tail = Tail::Last(h.tail.unwrap_or(grid.len()));
    let cfg = FitConfig::new(SeedKey::new(master_seed, &spec.id))
        .with_tail(tail)
        .with_bootstrap(BOOTSTRAP_RESAMPLES, BOOTSTRAP_LEVEL);
    let (fitted, interval): (f64, Interval) = match spec.measure {
        Measure::Slope => {
            let f = stats::fit_power_law(&grid, &metric, &cfg)?;
            (f.exponent, f.interval)
        }
        Measure::ComplexityUpper | Measure::ComplexityLower => {
            let f = stats::fit_sample_complexity(&used, &metric, &cfg)?;
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
        horizons: grid,
        means: metric.means(),
        std_errors: metric.std_errors()?,
        samples: matches!(spec.measure, Measure::ComplexityUpper | Measure::ComplexityLower).then(|| used.means()),
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// Run every claim of `specs` (sequentially; each claim is parallel over replicates).
pub fn run_all(
    specs: &[ClaimSpec],
    master_seed: u64,
    mut progress: impl FnMut(&ClaimResult),
) -> Result<Vec<ClaimResult>> {
    let mut out = Vec::with_capacity(specs.len());
    for s in specs {
        let r = run_claim(s, master_seed).map_err(|e| match e {
            BilevelError::Diverged { iter, what } => BilevelError::Diverged {
                iter,
                what: format!("claim {}: {what}", s.id),
            },
            other => other,
        })?;
        progress(&r);
        out.push(r);
    }
    Ok(out)
}
