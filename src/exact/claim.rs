//! Exact curves of a registry claim: the expected metric on the claim's own grid and statistic, the exact slopes
//! (on the claim's fit window and far out), and the consistency check of Monte Carlo means against them.

use super::moments::{Correction, ExactMethod, ExactRun};
use crate::claims::{AlgoSpec, ClaimSpec, HorizonMode, Measure, ResolvedAlgo, Statistic, run_group_band_only};
use crate::error::{BilevelError, Result};
use crate::families::quadratic::{Quadratic, QuadraticSpec};
use crate::linalg::Vector;
use crate::problem::{Bilevel, Constants};
use crate::solver::Metric;
use crate::stats::geometric_grid;
use rayon::prelude::*;
use serde::Serialize;

/// The window fraction of [`Statistic::Window`] (the claim runner's `WINDOW_FRACTION`).
const WINDOW: f64 = 0.1;

/// The instance and starting point of a claim, when its moments close.
struct Setup {
    q: Quadratic,
    theta0: Vector,
    phi0: Vector,
}

fn setup(spec: &ClaimSpec) -> Result<Setup> {
    if spec.problem.family != "quadratic" {
        return Err(BilevelError::Unsupported(format!(
            "exact moments need the quadratic family (affine oracles); '{}' is not",
            spec.problem.family
        )));
    }
    let qs: QuadraticSpec = toml::Value::Table(spec.problem.params.clone())
        .try_into()
        .map_err(|e| BilevelError::Malformed(format!("parameters of family 'quadratic': {e}")))?;
    let q = qs.build()?;
    let d = q.dims();
    let theta0 = match &spec.problem.theta0 {
        Some(t) => Vector::from_vec(t.clone()),
        None => Vector::from_element(d.d_u, 1.0),
    };
    crate::linalg::check_vector("theta0", &theta0, d.d_u)?;
    // Unbounded Theta (checked by ExactRun): the stationary start is theta*.
    let theta0 = if spec.problem.theta0_stationary {
        q.theta_star().expect("the quadratic knows theta*")
    } else {
        theta0
    };
    let phi0 = if spec.problem.phi0_on_solution {
        q.phi_star(&theta0)
    } else {
        Vector::zeros(d.d_l)
    };
    Ok(Setup { q, theta0, phi0 })
}

/// The [`ExactMethod`] of a claim's algorithm at `horizon`, from the one resolution of its spec
/// ([`AlgoSpec::resolve`], which `claims::build_solver` reads too).
///
/// # Errors
/// The resolution's errors; [`BilevelError::Unsupported`] for the variants without a recursion.
pub fn method_for(algo: &AlgoSpec, k: &Constants, horizon: usize) -> Result<ExactMethod> {
    Ok(match algo.resolve(k, horizon)? {
        ResolvedAlgo::Ttsa {
            alpha,
            beta,
            neumann,
            stale_phi,
            momentum,
            swap_momentum_weights,
            // The recursion does not check timescales; it follows whatever steps the claim gives.
            enforce_timescales: _,
            // The recursion needs an unbounded Theta (setup refuses a box), where the projection is the identity.
            no_projection: _,
            upper_step_beta,
        } => ExactMethod::Ttsa {
            // The recursion's upper step is alpha_k: the planted mix-up is that schedule replaced by beta_k.
            alpha: if upper_step_beta { beta } else { alpha },
            beta,
            neumann,
            momentum,
            swap_momentum_weights,
            stale_phi,
        },
        ResolvedAlgo::Stable {
            alpha,
            beta,
            tau: _,
            literal_alg6,
            no_correction,
        } => ExactMethod::Stable {
            alpha,
            beta,
            correction: if no_correction {
                Correction::None
            } else if literal_alg6 {
                Correction::LiteralAlg6
            } else {
                Correction::Full
            },
        },
        ResolvedAlgo::Bsa {
            alpha,
            beta,
            inner,
            neumann,
            beta_per_inner_step,
        } => {
            if beta_per_inner_step {
                return Err(BilevelError::Unsupported(
                    "exact moments: BSA with inner steps indexed by the inner counter is not implemented".into(),
                ));
            }
            ExactMethod::Bsa {
                alpha,
                beta,
                inner,
                neumann,
            }
        }
        ResolvedAlgo::Alternating {
            alpha,
            beta,
            inner_steps,
        } => ExactMethod::Alternating {
            alpha,
            beta,
            inner_steps,
        },
        ResolvedAlgo::Stocbio {
            alpha,
            beta,
            inner,
            neumann,
            batch,
            no_inner_minibatch,
            one_hessian_sample,
        } => ExactMethod::Stocbio {
            alpha,
            beta,
            inner,
            neumann,
            batch,
            no_inner_minibatch,
            one_hessian_sample,
        },
        ResolvedAlgo::ItdBio {
            alpha,
            beta,
            steps,
            truncate,
            fresh_hessian_samples,
        } => ExactMethod::ItdBio {
            alpha,
            beta,
            steps,
            backprop: truncate.unwrap_or(steps),
            fresh_hessian_samples,
        },
        ResolvedAlgo::Sustain {
            alpha,
            c_beta,
            c_eta,
            neumann,
            no_momentum,
            stale_sample,
        } => {
            if no_momentum || stale_sample {
                return Err(BilevelError::Unsupported(
                    "exact moments: SUSTAIN's planted bugs (no_momentum, stale_sample) are not implemented".into(),
                ));
            }
            ExactMethod::Sustain {
                alpha,
                c_beta,
                c_eta,
                neumann,
            }
        }
        ResolvedAlgo::Vrbo { .. } => {
            return Err(BilevelError::Unsupported(
                "exact moments: VRBO's recursion (periodic refresh, batch means of differences) is not implemented"
                    .into(),
            ));
        }
    })
}

/// Expected upper samples and lower-level gradient samples ($S(f_u)$, $S(f_l)$ as the claim runner counts them)
/// after `kk` iterations: one upper sample and one LL gradient per iteration, $\sum_{k<K}t_k$ LL gradients for BSA,
/// $B$ upper samples and $TB$ LL gradients per iteration for stocBiO.
fn samples(method: &ExactMethod, kk: usize) -> (f64, f64) {
    match method {
        ExactMethod::Bsa { inner, .. } => (kk as f64, (0..kk).map(|k| inner.at(k) as f64).sum()),
        ExactMethod::Alternating { inner_steps, .. } => (kk as f64, (kk * inner_steps) as f64),
        ExactMethod::ItdBio { steps, .. } => (kk as f64, (kk * steps) as f64),
        // One LL sample per iteration, its gradient evaluated at two points from k = 1 on while eta > 0.
        ExactMethod::Sustain { alpha, c_eta, .. } => (
            kk as f64,
            (0..kk)
                .map(|k| {
                    let a = alpha.at(k);
                    if k > 0 && c_eta * a * a < 1.0 { 2.0 } else { 1.0 }
                })
                .sum(),
        ),
        ExactMethod::Stocbio {
            inner,
            batch,
            no_inner_minibatch,
            ..
        } => {
            let per_step = if *no_inner_minibatch { 1 } else { *batch };
            ((kk * batch) as f64, (kk * inner * per_step) as f64)
        }
        _ => (kk as f64, kk as f64),
    }
}

/// For each metric: the values $\mathbb{E}\\,m_k$ and cumulative sums $c_k = \sum_{j=1}^{k}\mathbb{E}\\,m_j$,
/// $k = 0..=K$ (allocated once, before the loop).
fn trajectory(run: &mut ExactRun, metrics: &[Metric], kmax: usize) -> Result<Vec<(Vec<f64>, Vec<f64>)>> {
    let mut out: Vec<(Vec<f64>, Vec<f64>)> = Vec::with_capacity(metrics.len());
    for m in metrics {
        let mut vals = Vec::with_capacity(kmax + 1);
        vals.push(run.expect(*m)?);
        let mut cum = Vec::with_capacity(kmax + 1);
        cum.push(0.0);
        out.push((vals, cum));
    }
    for k in 1..=kmax {
        run.step()?;
        for (m, (vals, cum)) in metrics.iter().zip(out.iter_mut()) {
            let v = run.expect(*m)?;
            vals.push(v);
            cum.push(cum[k - 1] + v);
        }
    }
    Ok(out)
}

/// The statistic at horizon `kk` from a trajectory (the claim runner's definitions: `Recorder`).
fn statistic_at(stat: Statistic, vals: &[f64], cum: &[f64], kk: usize) -> f64 {
    match stat {
        Statistic::Last => vals[kk],
        Statistic::Average => {
            if kk == 0 {
                vals[0]
            } else {
                cum[kk] / kk as f64
            }
        }
        Statistic::Window => {
            if kk == 0 {
                return vals[0];
            }
            let len = ((WINDOW * kk as f64).ceil() as usize).clamp(1, kk);
            (cum[kk] - cum[kk - len]) / len as f64
        }
    }
}

/// Exact expectations of a claim's statistic of `metric`, and the expected sample counts, on `grid`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExactCurve {
    /// Horizons.
    pub horizons: Vec<usize>,
    /// $\mathbb{E}$ of the statistic at each horizon.
    pub means: Vec<f64>,
    /// Expected upper samples at each horizon.
    pub upper_samples: Vec<f64>,
    /// Expected lower-level gradient samples at each horizon.
    pub lower_samples: Vec<f64>,
}

/// The exact curve of `spec`'s algorithm and instance for `metric` and `statistic` on `grid` (anytime: one
/// recursion to the largest horizon; per-horizon: one recursion per horizon with that horizon's schedules).
///
/// # Errors
/// [`BilevelError::Unsupported`] where the recursion does not close (another family, a bounded $\Theta$, an
/// algorithm or noise without a recursion, a metric that is not a quadratic form).
pub fn exact_curve(spec: &ClaimSpec, metric: Metric, statistic: Statistic, grid: &[usize]) -> Result<ExactCurve> {
    Ok(exact_curves(spec, &[(metric, statistic)], grid)?.remove(0))
}

/// [`exact_curve`] for several (metric, statistic) pairs from one recursion.
///
/// # Errors
/// As [`exact_curve`].
pub fn exact_curves(spec: &ClaimSpec, pairs: &[(Metric, Statistic)], grid: &[usize]) -> Result<Vec<ExactCurve>> {
    let st = setup(spec)?;
    let k = st.q.constants();
    let noise = spec.problem.noise;
    let mut out: Vec<ExactCurve> = pairs
        .iter()
        .map(|_| ExactCurve {
            horizons: grid.to_vec(),
            means: Vec::with_capacity(grid.len()),
            upper_samples: Vec::with_capacity(grid.len()),
            lower_samples: Vec::with_capacity(grid.len()),
        })
        .collect();
    let kmax = *grid
        .iter()
        .max()
        .ok_or_else(|| BilevelError::invalid("grid", "[]", "must not be empty"))?;
    let mut metrics: Vec<Metric> = Vec::new();
    for (m, _) in pairs {
        if !metrics.contains(m) {
            metrics.push(*m);
        }
    }
    let mut push = |method: &ExactMethod, tr: &[(Vec<f64>, Vec<f64>)], kk: usize| {
        for ((m, stat), c) in pairs.iter().zip(out.iter_mut()) {
            let i = metrics.iter().position(|x| x == m).expect("metric traced");
            c.means.push(statistic_at(*stat, &tr[i].0, &tr[i].1, kk));
            let (u, l) = samples(method, kk);
            c.upper_samples.push(u);
            c.lower_samples.push(l);
        }
    };
    match spec.horizons.mode {
        HorizonMode::Anytime => {
            let method = method_for(&spec.algorithm, &k, kmax)?;
            let mut run = ExactRun::new(&st.q, noise, method.clone(), &st.theta0, &st.phi0)?;
            let tr = trajectory(&mut run, &metrics, kmax)?;
            for &kk in grid {
                push(&method, &tr, kk);
            }
        }
        HorizonMode::PerHorizon => {
            // One independent recursion per horizon: in parallel, pushed in grid order.
            let per: Vec<Result<_>> = grid
                .par_iter()
                .map(|&kk| {
                    let method = method_for(&spec.algorithm, &k, kk)?;
                    let mut run = ExactRun::new(&st.q, noise, method.clone(), &st.theta0, &st.phi0)?;
                    let tr = trajectory(&mut run, &metrics, kk)?;
                    Ok((method, tr))
                })
                .collect();
            for (&kk, r) in grid.iter().zip(per) {
                let (method, tr) = r?;
                push(&method, &tr, kk);
            }
        }
    }
    Ok(out)
}

/// Ordinary least-squares slope of `y` on `x`.
fn ols(x: &[f64], y: &[f64]) -> f64 {
    let n = x.len() as f64;
    let (mx, my) = (x.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
    let sxy: f64 = x.iter().zip(y).map(|(a, b)| (a - mx) * (b - my)).sum();
    let sxx: f64 = x.iter().map(|a| (a - mx) * (a - mx)).sum();
    sxy / sxx
}

/// The exponent a claim fits, computed from an exact curve over its indices `from..`: the slope of
/// $\log\mathbb{E}m$ on $\log K$ (rate), or of $\log S$ on $\log(1/\varepsilon)$ (sample complexity).
fn exponent(measure: Measure, c: &ExactCurve, from: usize) -> f64 {
    let lx = |v: &[f64]| v[from..].iter().map(|x| x.ln()).collect::<Vec<f64>>();
    match measure {
        Measure::Slope => {
            let k: Vec<f64> = c.horizons.iter().map(|&h| h as f64).collect();
            ols(&lx(&k), &lx(&c.means))
        }
        Measure::ComplexityUpper | Measure::ComplexityLower => {
            let s = if measure == Measure::ComplexityUpper {
                &c.upper_samples
            } else {
                &c.lower_samples
            };
            let inv_eps: Vec<f64> = lx(&c.means).iter().map(|x| -x).collect();
            ols(&inv_eps, &lx(s))
        }
    }
}

/// The far grid for the slope beyond Monte Carlo horizons: $10^5..10^6$ (anytime runs: one recursion),
/// $10^4..10^5$ for per-horizon runs (one recursion per horizon; BSA's inner loop makes $10^6$ costly).
pub fn far_grid(mode: HorizonMode) -> Vec<usize> {
    match mode {
        HorizonMode::Anytime => vec![100_000, 177_828, 316_228, 562_341, 1_000_000],
        HorizonMode::PerHorizon => vec![10_000, 31_623, 100_000],
    }
}

/// The exact exponents of a claim (the judgement data of issue 9 §1).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ExactSlopes {
    /// The exponent the claim fits, from the exact means on the claim's own grid and fit window.
    pub grid: f64,
    /// The same exponent fitted on [`far_grid`].
    pub far: f64,
    /// The largest horizon of the far grid.
    pub far_horizon: usize,
}

/// [`ExactSlopes`] of `spec`, `None` where the recursion does not apply (unsupported family, algorithm, noise or
/// metric); other errors are returned.
pub fn exact_slopes(spec: &ClaimSpec) -> Result<Option<ExactSlopes>> {
    Ok(exact_slopes_group(&[spec])?.remove(0))
}

/// [`exact_slopes`] for claims that share one simulation (same problem, algorithm and horizons: a registry run),
/// from one recursion on the claims' grid and one on the far grid.
///
/// # Errors
/// Errors other than [`BilevelError::Unsupported`].
pub fn exact_slopes_group(specs: &[&ClaimSpec]) -> Result<Vec<Option<ExactSlopes>>> {
    let Some(first) = specs.first() else {
        return Ok(Vec::new());
    };
    let supported: Vec<bool> = specs.iter().map(|s| ExactRun::supports(s.metric)).collect();
    let pairs: Vec<(Metric, Statistic)> = specs
        .iter()
        .zip(&supported)
        .filter(|(_, ok)| **ok)
        .map(|(s, _)| (s.metric, s.statistic))
        .collect();
    if pairs.is_empty() {
        return Ok(vec![None; specs.len()]);
    }
    let h = first.horizons;
    let grid = geometric_grid(h.min, h.max, h.points)?;
    let from = grid.len() - h.tail.unwrap_or(grid.len()).min(grid.len());
    let far_g = far_grid(h.mode);
    // The near and far recursions are independent: run them side by side.
    let (near, far) = rayon::join(
        || exact_curves(first, &pairs, &grid),
        || exact_curves(first, &pairs, &far_g),
    );
    let near = match near {
        Ok(c) => c,
        Err(BilevelError::Unsupported(_)) => return Ok(vec![None; specs.len()]),
        Err(e) => return Err(e),
    };
    let far = far?;
    let mut i = 0;
    Ok(specs
        .iter()
        .zip(&supported)
        .map(|(s, ok)| {
            if !*ok {
                return None;
            }
            let r = ExactSlopes {
                grid: exponent(s.measure, &near[i], from),
                far: exponent(s.measure, &far[i], 0),
                far_horizon: *far_g.last().expect("non-empty"),
            };
            i += 1;
            Some(r)
        })
        .collect())
}

/// The exact slopes the decision rule judges each of `specs` against ([`crate::claims::judge::exact_rule`]): a
/// claim's own, and for a power test those of the claim it names (the algorithm as specified, not the planted
/// bug), looked up in the built-in registry (`None` if it is not there). Seed-independent, so each distinct
/// computation is done once per process (a sweep asks for the same run under every seed), and a unit that asks while
/// another computes the same group waits for that result instead of computing it again (the report runs a claim's
/// unit and its power tests' units concurrently, and all of them judge against the claim's exact slopes).
///
/// # Errors
/// Errors of the recursion other than [`BilevelError::Unsupported`].
pub fn judging_slopes(specs: &[&ClaimSpec]) -> Result<Vec<Option<ExactSlopes>>> {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex, OnceLock};
    type Slot = Arc<OnceLock<Result<Vec<Option<ExactSlopes>>>>>;
    static CACHE: OnceLock<Mutex<HashMap<String, Slot>>> = OnceLock::new();
    let registry = if specs.iter().any(|s| s.power_for.is_some()) {
        Some(crate::claims::Registry::builtin()?)
    } else {
        None
    };
    // The subject of each spec: itself, or the claim its power test names.
    let subjects: Vec<Option<ClaimSpec>> = specs
        .iter()
        .map(|s| match (&s.power_for, &registry) {
            (Some(parent), Some(reg)) => reg.claim.iter().find(|c| &c.id == parent).cloned(),
            _ => Some((*s).clone()),
        })
        .collect();
    let mut out = vec![None; specs.len()];
    let mut runs: Vec<&str> = Vec::new();
    for s in subjects.iter().flatten() {
        if !runs.contains(&s.run_name()) {
            runs.push(s.run_name());
        }
    }
    for run in runs {
        let idx: Vec<usize> = (0..specs.len())
            .filter(|i| subjects[*i].as_ref().is_some_and(|s| s.run_name() == run))
            .collect();
        let group: Vec<&ClaimSpec> = idx.iter().filter_map(|i| subjects[*i].as_ref()).collect();
        let key = serde_json::to_string(&group)
            .map_err(|e| BilevelError::Malformed(format!("claim spec not serialisable: {e}")))?;
        let slot: Slot = CACHE
            .get_or_init(|| Mutex::new(HashMap::new()))
            .lock()
            .map_err(|_| BilevelError::Unsupported("exact-slope cache poisoned".into()))?
            .entry(key)
            .or_default()
            .clone();
        // The map's lock is released here; `get_or_init` runs the recursion once and blocks concurrent callers.
        let slopes = slot.get_or_init(|| exact_slopes_group(&group)).clone()?;
        for (i, e) in idx.into_iter().zip(slopes) {
            out[i] = e;
        }
    }
    Ok(out)
}

/// One comparison of the consistency check.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    /// The metric (last iterate).
    pub metric: Metric,
    /// The horizon.
    pub horizon: usize,
    /// Monte Carlo mean over the replicates.
    pub mc_mean: f64,
    /// Its standard error.
    pub std_error: f64,
    /// The exact expectation.
    pub exact: f64,
    /// $z = (\bar m - \mathbb{E}m)/\mathrm{se}$.
    pub z: f64,
}

/// The consistency check of one run: every comparison, and whether all $|z|$ are within the threshold.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Consistency {
    /// All comparisons, metric-major.
    pub comparisons: Vec<Comparison>,
    /// $\max|z|$.
    pub max_abs_z: f64,
    /// The threshold.
    pub z_threshold: f64,
    /// `max_abs_z <= z_threshold`.
    pub consistent: bool,
}

/// Default threshold of [`consistency`]: $|z|\le 4.5$. Two-sided Gaussian tail $6.8\cdot10^{-6}$ per comparison;
/// the suite makes fewer than 260 comparisons, so the family-wise false-alarm rate is below $1.8\cdot10^{-3}$
/// (Bonferroni; the note discusses the skewness of means of squared errors).
pub const Z_THRESHOLD: f64 = 4.5;

/// Run `spec`'s simulation with the crate's own claim runner (`replicates` replicates, master seed `seed`) and
/// compare the Monte Carlo mean of each of `metrics` (last iterate) at each horizon with the exact expectation of
/// `reference`'s algorithm (the same spec, or the correct algorithm when `spec` carries a planted bug).
///
/// # Errors
/// [`BilevelError::Unsupported`] where the recursion does not apply to `reference`; the runner's errors.
pub fn consistency(
    spec: &ClaimSpec,
    reference: &ClaimSpec,
    metrics: &[Metric],
    replicates: usize,
    seed: u64,
    z_threshold: f64,
) -> Result<Consistency> {
    let h = spec.horizons;
    let grid = geometric_grid(h.min, h.max, h.points)?;
    let variants: Vec<ClaimSpec> = metrics
        .iter()
        .map(|m| {
            let mut s = spec.clone();
            s.metric = *m;
            s.statistic = Statistic::Last;
            s.measure = Measure::Slope;
            s.replicates = replicates;
            s.run = Some(format!("exact-consistency/{}", spec.run_name()));
            s.power_for = None;
            s
        })
        .collect();
    let refs: Vec<&ClaimSpec> = variants.iter().collect();
    // Only the Monte Carlo means are read: no exact slopes for the verdicts.
    let results = run_group_band_only(&refs, seed)?;
    let mut comparisons = Vec::new();
    for (m, r) in metrics.iter().zip(&results) {
        let exact = exact_curve(reference, *m, Statistic::Last, &grid)?;
        for (i, &horizon) in grid.iter().enumerate() {
            let z = (r.means[i] - exact.means[i]) / r.std_errors[i];
            comparisons.push(Comparison {
                metric: *m,
                horizon,
                mc_mean: r.means[i],
                std_error: r.std_errors[i],
                exact: exact.means[i],
                z,
            });
        }
    }
    let max_abs_z = comparisons.iter().map(|c| c.z.abs()).fold(0.0, f64::max);
    Ok(Consistency {
        comparisons,
        max_abs_z,
        z_threshold,
        consistent: max_abs_z <= z_threshold,
    })
}
