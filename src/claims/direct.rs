//! Direct sample complexity (issue 9 §3): for a grid of $\varepsilon$, the mean number of samples of each kind
//! spent until $\mathbb{E}\\|\nabla F(\theta^k)\\|^2$ first falls below $\varepsilon$.
//!
//! The complexity claims fit $\log S$ against $\log(1/\bar\varepsilon_K)$ over the horizons, i.e. they re-express the
//! rate fit ($S$ is a fixed function of $K$). This module measures the definition instead. Each replicate of the
//! claim's run records $\\|\nabla F(\theta^k)\\|^2$ (last iterate, exact) and the oracle counts at a dense geometric
//! grid of $k$; the mean curve over replicates is the estimand $\mathbb{E}\\|\nabla F(\theta^k)\\|^2$. For each
//! $\varepsilon$, $S(\varepsilon)$ is the mean count at the first recorded $k$ where the mean curve is below
//! $\varepsilon$; for horizon-dependent schedules ($\alpha\propto K^{-a}$) each horizon's run gives one such $S$ and
//! the smallest is kept (the budget the theorem would choose). Counts are split by kind: upper-level gradients,
//! lower-level gradients, Hessian-vector products and cross products (the second-order samples the complexity
//! claims do not count).
//!
//! The $\varepsilon$ grid is honest by construction (theory/README.md, "Honest regimes"): it starts 100× below
//! $\\|\nabla F(\theta^0)\\|^2$ and ends at the smallest mean the runs reach — 1.5× above it for horizon-dependent
//! schedules, whose runs end on a floor where the first crossing is decided by Monte Carlo fluctuation; if that range spans less than a factor 2, the grid is empty
//! and no exponent is reported. Exponents are least-squares slopes of
//! $\log S$ on $\log(1/\varepsilon)$ (point estimates; no interval), reported next to the table's exponent and to
//! $p=-1/r$ with $r$ the fitted last-iterate rate of the same runs.

use super::run::{BOOTSTRAP_LEVEL, BOOTSTRAP_RESAMPLES, build_solver, start_point};
use super::spec::{ClaimSpec, HorizonMode};
use crate::error::Result;
use crate::problem::{Bilevel, Counts, Oracle};
use crate::solver::{self, Metric, Recorder};
use crate::stats::{self, Bootstrap, Interval, Rule, SeedKey, Verdict};
use rayon::prelude::*;
use serde::Serialize;

/// The number of $\varepsilon$ values.
pub const EPS_POINTS: usize = 8;
/// Dense checkpoints per run.
pub const CURVE_POINTS: usize = 48;
/// At most this many replicates (the curve is a mean of an exact quantity, read at its first crossings; 40 keep the report fast).
pub const MAX_REPLICATES: usize = 40;
/// The honest-regime factor: the $\varepsilon$ grid starts this far below the start's $\\|\nabla F(\theta^0)\\|^2$.
pub const REGIME_FACTOR: f64 = 100.0;

/// For horizon-dependent schedules the $\varepsilon$ grid ends this factor above the smallest mean reached (their runs
/// end on a floor).
pub const FLOOR_MARGIN: f64 = 1.5;
/// The $\varepsilon$ grid must span at least this factor (else no exponent is reported).
pub const MIN_SPAN: f64 = 2.0;

/// Samples of each kind (means over replicates).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, serde::Deserialize, Default)]
pub struct KindCounts {
    /// Upper-level gradients $\nabla_\theta f_u$.
    pub upper_grad: f64,
    /// Lower-level gradients $\nabla_\phi f_l$.
    pub lower_grad: f64,
    /// Hessian-vector products $\nabla^2_{\phi\phi}f_l\\,v$ (dense Hessians counted in `dense`).
    pub hvp: f64,
    /// Cross products $\nabla^2_{\theta\phi}f_l\\,w$ and their transposes.
    pub cross: f64,
    /// Dense Hessians or cross matrices formed (STABLE).
    pub dense: f64,
}

impl KindCounts {
    fn of(c: &Counts) -> Self {
        KindCounts {
            upper_grad: c.fu_grad_theta as f64,
            lower_grad: c.fl_grad_phi as f64,
            hvp: c.fl_hvp as f64,
            cross: (c.fl_cross + c.fl_cross_t) as f64,
            dense: c.fl_dense as f64,
        }
    }
    fn add_scaled(&mut self, o: &KindCounts, w: f64) {
        self.upper_grad += w * o.upper_grad;
        self.lower_grad += w * o.lower_grad;
        self.hvp += w * o.hvp;
        self.cross += w * o.cross;
        self.dense += w * o.dense;
    }
    fn get(&self, kind: usize) -> f64 {
        [self.upper_grad, self.lower_grad, self.hvp, self.cross, self.dense][kind]
    }
}

/// Fitted exponents $p$ of $S\sim\varepsilon^{-p}$ per kind (`None` where the kind is never used).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, serde::Deserialize, Default)]
pub struct KindExponents {
    /// Upper-level gradients.
    pub upper_grad: Option<f64>,
    /// Lower-level gradients.
    pub lower_grad: Option<f64>,
    /// Hessian-vector products.
    pub hvp: Option<f64>,
    /// Cross products.
    pub cross: Option<f64>,
    /// Dense second-order matrices.
    pub dense: Option<f64>,
}

/// Bootstrap intervals $[\text{lo}, \text{hi}]$ of [`KindExponents`] (`None` where the kind is never used or too
/// few resamples give a slope).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, serde::Deserialize, Default)]
pub struct KindIntervals {
    /// Upper-level gradients.
    pub upper_grad: Option<[f64; 2]>,
    /// Lower-level gradients.
    pub lower_grad: Option<[f64; 2]>,
    /// Hessian-vector products.
    pub hvp: Option<[f64; 2]>,
    /// Cross products.
    pub cross: Option<[f64; 2]>,
    /// Dense second-order matrices.
    pub dense: Option<[f64; 2]>,
}

impl KindIntervals {
    fn get(&self, kind: usize) -> Option<[f64; 2]> {
        [self.upper_grad, self.lower_grad, self.hvp, self.cross, self.dense][kind]
    }
}

/// The kind a complexity claim counts: upper-level gradients for `complexity_upper`, lower-level gradients for
/// `complexity_lower` (the lecture's $S(f_u)$, $S(f_l)$).
pub fn kind_of(measure: super::spec::Measure) -> Option<usize> {
    match measure {
        super::spec::Measure::ComplexityUpper => Some(0),
        super::spec::Measure::ComplexityLower => Some(1),
        super::spec::Measure::Slope => None,
    }
}

/// The direct measurement for one run.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct DirectComplexity {
    /// Replicates used.
    pub replicates: usize,
    /// $\\|\nabla F(\theta^0)\\|^2$.
    pub start_grad_norm_sq: f64,
    /// The smallest mean $\mathbb{E}\\|\nabla F(\theta^k)\\|^2$ reached over the recorded $k$ (and horizons).
    pub smallest_mean: f64,
    /// The $\varepsilon$ grid (empty when the runs never reach $\\|\nabla F(\theta^0)\\|^2/100$).
    pub eps: Vec<f64>,
    /// Mean samples of each kind spent until the mean curve first falls below each $\varepsilon$.
    pub samples: Vec<KindCounts>,
    /// Fitted $p$ per kind (empty grid: all `None`).
    pub exponents: KindExponents,
    /// Bootstrap intervals of `exponents` (module docs).
    #[serde(default)]
    pub intervals: KindIntervals,
    /// Two-sided level of `intervals` (nominal; the percentiles are taken at the expanded level).
    #[serde(default)]
    pub level: f64,
    /// For a complexity claim: its own rule (kind, table exponent, tolerance) applied to the interval of the kind it
    /// counts (informational: module docs). Set by the claim runner.
    #[serde(default)]
    pub rule_verdict: Option<Verdict>,
    /// For a complexity claim: whether the interval of the kind it counts contains $p=-1/r$.
    #[serde(default)]
    pub contains_p_from_rate: Option<bool>,
    /// The last-iterate rate $r$ of $\mathbb{E}\\|\nabla F(\theta^K)\\|^2\sim K^{r}$ over the horizons, and $-1/r$.
    pub rate: Option<f64>,
    /// $p = -1/r$ (what the complexity claims' re-expression of the rate gives for $S = K$).
    pub p_from_rate: Option<f64>,
}

/// One horizon's mean curve: checkpoints, mean $\\|\nabla F\\|^2$, mean counts.
struct Curve {
    mean: Vec<f64>,
    counts: Vec<KindCounts>,
}

/// Measure the direct sample complexity of `spec`'s run (its problem, algorithm and horizons).
pub fn measure(spec: &ClaimSpec, master_seed: u64, p: &dyn Bilevel) -> Result<DirectComplexity> {
    let h = spec.horizons;
    let grid = stats::geometric_grid(h.min, h.max, h.points)?;
    let runs: Vec<usize> = match h.mode {
        HorizonMode::Anytime => vec![h.max],
        HorizonMode::PerHorizon => grid.clone(),
    };
    let reps = spec.replicates.min(MAX_REPLICATES);
    let (theta0, phi0) = start_point(spec, p)?;
    let g0 = p.grad_f(&theta0)?.norm_squared();
    let k = p.constants();
    let per_rep = stats::run_replicates(
        master_seed,
        &format!("{}/direct", spec.run_name()),
        reps,
        |mut rng, _| {
            use rand::{Rng, SeedableRng};
            let mut out = Vec::with_capacity(runs.len());
            for &kk in &runs {
                let sub = rand_chacha::ChaCha8Rng::seed_from_u64(rng.next_u64());
                // The dense grid plus the claim's horizons (where the rate r is read).
                let mut cps = stats::geometric_grid(1, kk, CURVE_POINTS.min(kk))?;
                cps.extend(grid.iter().filter(|g| **g <= kk));
                cps.sort_unstable();
                cps.dedup();
                let mut s = build_solver(&spec.algorithm, &k, kk)?;
                let mut o = Oracle::with_rng(p, sub);
                let mut rec = Recorder::new(&[Metric::GradNormSq], &cps, false);
                solver::run(s.as_mut(), &mut o, &theta0, &phi0, kk, &mut rec)?;
                let t = rec.finish();
                let vals: Vec<f64> = t.values.iter().map(|v| v[0]).collect();
                let counts: Vec<KindCounts> = t.counts.iter().map(KindCounts::of).collect();
                out.push((t.checkpoints, vals, counts));
            }
            Ok(out)
        },
    )?;
    let curves = mean_curves(&per_rep, &vec![1u32; reps]);
    let smallest = curves
        .iter()
        .flat_map(|(_, c)| c.mean.iter().copied())
        .fold(f64::INFINITY, f64::min);
    let hi = g0 / REGIME_FACTOR;
    // The grid stops FLOOR_MARGIN above the smallest mean: near the floor the first crossing is decided by the
    // Monte Carlo fluctuation of the mean curve, not by the algorithm. It must span a factor MIN_SPAN to fit a slope.
    // An anytime run's smallest mean is its last point, still decreasing (no floor): a hair above it suffices.
    let lo = match h.mode {
        HorizonMode::Anytime => (1.0 + 1e-9) * smallest,
        HorizonMode::PerHorizon => FLOOR_MARGIN * smallest,
    };
    let eps: Vec<f64> = if lo * MIN_SPAN <= hi {
        let (a, b) = (hi.ln(), lo.ln());
        (0..EPS_POINTS)
            .map(|i| (a + (b - a) * i as f64 / (EPS_POINTS - 1) as f64).exp())
            .collect()
    } else {
        Vec::new()
    };
    let samples = first_crossings(&eps, &curves);
    let [upper_grad, lower_grad, hvp, cross, dense] = slopes(&eps, &samples);
    let exponents = KindExponents {
        upper_grad,
        lower_grad,
        hvp,
        cross,
        dense,
    };
    let intervals = if eps.is_empty() {
        KindIntervals::default()
    } else {
        bootstrap_intervals(
            &SeedKey::new(master_seed, &format!("{}/direct", spec.run_name())),
            &per_rep,
            &eps,
        )?
    };
    // Last-iterate rate over the horizons of the claim's grid (the tail it fits).
    let tail = h.tail.unwrap_or(grid.len()).min(grid.len());
    let at_horizon: Vec<(f64, f64)> = grid[grid.len() - tail..]
        .iter()
        .filter_map(|&kk| {
            let (cps, c) = match h.mode {
                HorizonMode::Anytime => &curves[0],
                HorizonMode::PerHorizon => &curves[grid.iter().position(|g| *g == kk)?],
            };
            let i = cps.iter().position(|x| *x == kk)?;
            (c.mean[i] > 0.0).then(|| ((kk as f64).ln(), c.mean[i].ln()))
        })
        .collect();
    let rate = ls_slope(&at_horizon);
    Ok(DirectComplexity {
        replicates: reps,
        start_grad_norm_sq: g0,
        smallest_mean: smallest,
        eps,
        samples,
        exponents,
        intervals,
        level: BOOTSTRAP_LEVEL,
        rule_verdict: None,
        contains_p_from_rate: None,
        rate,
        p_from_rate: rate.filter(|r| *r < 0.0).map(|r| -1.0 / r),
    })
}

impl DirectComplexity {
    /// Fill [`DirectComplexity::rule_verdict`] and [`DirectComplexity::contains_p_from_rate`] for a complexity
    /// claim counting `kind` (see [`kind_of`]) with rule `rule`.
    pub fn compare(&mut self, kind: usize, rule: &Rule) {
        let iv = self.intervals.get(kind);
        self.rule_verdict = iv.map(|[lo, hi]| {
            rule.judge(&Interval {
                lo,
                hi,
                level: self.level,
            })
        });
        self.contains_p_from_rate = iv.zip(self.p_from_rate).map(|([lo, hi], p)| lo <= p && p <= hi);
    }
}

/// One replicate's record per run: checkpoints, $\\|\nabla F\\|^2$, counts.
type RepRuns = Vec<(Vec<usize>, Vec<f64>, Vec<KindCounts>)>;

/// Mean curves over replicates with multiplicities `mult` (all ones: the plain mean; a bootstrap resample otherwise).
fn mean_curves(per_rep: &[RepRuns], mult: &[u32]) -> Vec<(Vec<usize>, Curve)> {
    let total: u32 = mult.iter().sum();
    let w = 1.0 / f64::from(total);
    (0..per_rep[0].len())
        .map(|j| {
            let (cps, v0, c0) = &per_rep[0][j];
            let mut mean = vec![0.0; v0.len()];
            let mut counts = vec![KindCounts::default(); c0.len()];
            for (r, &m) in per_rep.iter().zip(mult) {
                if m == 0 {
                    continue;
                }
                let (_, v, c) = &r[j];
                let wm = w * f64::from(m);
                for i in 0..mean.len() {
                    mean[i] += wm * v[i];
                    counts[i].add_scaled(&c[i], wm);
                }
            }
            (cps.clone(), Curve { mean, counts })
        })
        .collect()
}

/// $S(\varepsilon)$ per kind: the smallest over horizons of the counts at the first checkpoint below $\varepsilon$
/// (all zero where no curve gets below it).
fn first_crossings(eps: &[f64], curves: &[(Vec<usize>, Curve)]) -> Vec<KindCounts> {
    eps.iter()
        .map(|&e| {
            let mut best: Option<KindCounts> = None;
            for (_, c) in curves {
                if let Some(i) = c.mean.iter().position(|m| *m < e) {
                    let s = c.counts[i];
                    if best.is_none_or(|b| s.upper_grad + s.lower_grad < b.upper_grad + b.lower_grad) {
                        best = Some(s);
                    }
                }
            }
            best.unwrap_or_default()
        })
        .collect()
}

/// The slope of $\log S$ on $\log(1/\varepsilon)$ per kind, over the $\varepsilon$ where the kind was used.
fn slopes(eps: &[f64], samples: &[KindCounts]) -> [Option<f64>; 5] {
    std::array::from_fn(|kind| {
        let pts: Vec<(f64, f64)> = eps
            .iter()
            .zip(samples)
            .filter(|(_, s)| s.get(kind) > 0.0)
            .map(|(e, s)| ((1.0 / e).ln(), s.get(kind).ln()))
            .collect();
        ls_slope(&pts)
    })
}

/// Bootstrap intervals of the per-kind slopes (module docs): resample $b$ reads its multiplicities from
/// `key.bootstrap(b)`, so the result does not depend on the thread count.
fn bootstrap_intervals(key: &SeedKey, per_rep: &[RepRuns], eps: &[f64]) -> Result<KindIntervals> {
    let boot = Bootstrap {
        resamples: BOOTSTRAP_RESAMPLES,
        level: BOOTSTRAP_LEVEL,
        expanded: true,
    };
    let level = boot.percentile_level(per_rep.len())?;
    let draws: Vec<[Option<f64>; 5]> = (0..BOOTSTRAP_RESAMPLES)
        .into_par_iter()
        .map(|b| {
            let mut mult = vec![0u32; per_rep.len()];
            stats::bootstrap::resample_counts(key, b, &mut mult);
            let curves = mean_curves(per_rep, &mult);
            slopes(eps, &first_crossings(eps, &curves))
        })
        .collect();
    let interval = |kind: usize| -> Option<[f64; 2]> {
        let mut xs: Vec<f64> = draws.iter().filter_map(|d| d[kind]).collect();
        // Every resample must give a slope: an interval over the resamples that happen to reach the grid would be
        // conditional on that event.
        if xs.len() < BOOTSTRAP_RESAMPLES {
            return None;
        }
        let iv = stats::bootstrap::percentile_interval(&mut xs, level);
        Some([iv.lo, iv.hi])
    };
    Ok(KindIntervals {
        upper_grad: interval(0),
        lower_grad: interval(1),
        hvp: interval(2),
        cross: interval(3),
        dense: interval(4),
    })
}

/// Least-squares slope of `y` on `x` (`None` with fewer than 3 points or no spread in `x`).
fn ls_slope(pts: &[(f64, f64)]) -> Option<f64> {
    if pts.len() < 3 {
        return None;
    }
    let n = pts.len() as f64;
    let mx = pts.iter().map(|p| p.0).sum::<f64>() / n;
    let my = pts.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = pts.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = pts.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    (sxx > 0.0).then(|| sxy / sxx)
}
