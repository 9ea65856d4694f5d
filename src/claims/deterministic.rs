//! Deterministic linear rates (CG, Neumann, ITD) in the same registry: no Monte Carlo, an error sequence
//! $e_k$ from the estimator against the exact answer, the slope of $\ln e_k$ against $k$ on a tail, compared with
//! $\ln q$ predicted from the family's spectrum.

use super::run::ClaimResult;
use super::spec::{Kind, ProblemSpec};
use crate::error::{BilevelError, Result};
use crate::families;
use crate::hypergrad::{cg, itd, neumann};
use crate::linalg::{Vector, spd_solve_vec};
use crate::problem::{Oracle, Sample};
use crate::stats::{ClaimKind, Interval, Rule, Verdict};
use serde::{Deserialize, Serialize};
use std::time::Instant;

/// Which estimator's error sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Estimator {
    /// CG (Alg 7) on $Hx = v$: $e_k = \\|x_k - x^\star\\|\_H/\\|x_0 - x^\star\\|\_H$, bound
    /// $q = (\sqrt\kappa-1)/(\sqrt\kappa+1)$.
    Cg,
    /// Truncated Neumann series (24) with $\eta = 1/L_l$: $e_N = \\|z_N - H^{-1}v\\|$, $q = 1 - \mu_l/L_l$.
    Neumann,
    /// Forward ITD (32) with $\beta = 1/L_l$ from $\phi^0 = 0$: $e_T = \\|\hat\nabla F_T(\theta) - \nabla F(\theta)\\|$,
    /// $q = \max_i|1-\beta\lambda_i| = 1 - \mu_l/L_l$.
    Itd,
    /// AID-BiO (Alg 3, Ji et al. 2021) on the quadratic, exact oracles, $T$ warm-started inner GD steps and $N$
    /// warm-started CG steps: $e_k = \\|\theta^k - \theta^\star\\|$; predicted factor $\rho(M)$ of the affine outer
    /// iteration with an exact inverse (`theory/aid-itd.md`).
    AidBio,
    /// ITD-BiO on the quadratic, exact oracles, $T$ warm-started steps: $e_k = \\|\theta^k - \bar\theta_T\\|$ to its
    /// biased limit; predicted factor $\rho(M)$ of the affine outer iteration.
    ItdBio,
    /// Reverse ITD from the warm start $\varphi^0 = \phi^\star(\theta)$: $e_T = \\|\nabla F_T - \nabla F\\|$, $q =
    /// \max_i|1-\beta\lambda_i(H(\theta))|$, $\beta = 1/L_l$ (ITD-BiO's bias at its fixed point).
    ItdWarm,
}

/// A planted near-miss bug of a deterministic rate's run (its power test).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RateBug {
    /// AID-BiO's CG starts from $z=0$ every outer iteration (no warm start).
    CgColdStart,
    /// AID-BiO's inner loop restarts from $\varphi = 0$ every outer iteration (no warm start of $\varphi$).
    AidInnerColdStart,
    /// ITD-BiO unrolls from $\varphi^0 = 0$ every outer iteration (no warm start).
    ItdColdStart,
    /// Reverse ITD's backward products use $I - H$ instead of $I - \beta H$ (the lecture's eq (31) slip).
    DroppedBeta,
}

impl Estimator {
    /// The error $e_k$ in words, for reports and plots.
    pub fn error_name(&self) -> &'static str {
        match self {
            Estimator::Cg => "CG error |x_k - x*|_H / |x_0 - x*|_H",
            Estimator::Neumann => "Neumann error |z_N - H^-1 v|",
            Estimator::Itd => "ITD error |grad F_T - grad F|",
            Estimator::AidBio => "AID-BiO |theta_k - theta*|",
            Estimator::ItdBio => "ITD-BiO |theta_k - theta_bar_T|",
            Estimator::ItdWarm => "ITD error from phi*: |grad F_T - grad F|",
        }
    }
}

/// One deterministic rate of the registry (`[[rate]]` in `theory/claims.toml`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateSpec {
    /// Unique id.
    pub id: String,
    /// The statement.
    pub title: String,
    /// Paper and lecture equation.
    pub source: String,
    /// Note in `theory/`.
    pub note: String,
    /// Bound (faster than $q$ allowed) or tight.
    pub kind: Kind,
    /// Tolerance on $\ln q$.
    pub tolerance: f64,
    /// Why.
    pub tolerance_reason: String,
    /// Estimator.
    pub estimator: Estimator,
    /// The family (noise ignored: deterministic).
    pub problem: ProblemSpec,
    /// Steps $k = 1..n$.
    pub steps: usize,
    /// Fit on the last `tail` steps.
    pub tail: usize,
    /// Inner steps $T$ per outer iteration (outer rates only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inner: Option<usize>,
    /// CG steps $N$ per outer iteration (AID-BiO only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub solver_steps: Option<usize>,
    /// Outer step $\alpha = $ `alpha_scale`$/\lambda_{\max}(\nabla^2F)$ (outer rates; default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alpha_scale: Option<f64>,
    /// A power test: the id of the rate whose rule must Fail on this run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub power_for: Option<String>,
    /// The planted bug in words (power tests).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bug: Option<String>,
    /// The planted bug's switch (power tests).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub planted: Option<RateBug>,
}

fn fit_slope(ks: &[f64], errs: &[f64]) -> f64 {
    let n = ks.len() as f64;
    let ys: Vec<f64> = errs.iter().map(|e| e.ln()).collect();
    let (mx, my) = (ks.iter().sum::<f64>() / n, ys.iter().sum::<f64>() / n);
    let sxy: f64 = ks.iter().zip(&ys).map(|(x, y)| (x - mx) * (y - my)).sum();
    let sxx: f64 = ks.iter().map(|x| (x - mx).powi(2)).sum();
    sxy / sxx
}

/// The error sequence $e_1..e_n$ and the predicted factor $q$.
fn errors(spec: &RateSpec) -> Result<(Vec<f64>, f64)> {
    let p = families::build_with(&spec.problem.family, &spec.problem.params)?;
    let k = p.constants();
    let d = p.dims();
    let (mu, l) = (k.mu_l, k.l_l);
    let theta = Vector::from_fn(d.d_u, |i, _| 0.3 + 0.1 * i as f64);
    let phi = p.phi_star(&theta);
    // A right-hand side with a component along every eigenvector (a deterministic, non-special vector).
    let v = Vector::from_fn(d.d_l, |i, _| 1.0 + 0.37 * i as f64 - 0.05 * (i * i) as f64);
    let mut o = Oracle::new(p.as_ref(), 0);
    let s = Sample::Exact;
    let h = p.hess_fl(s, &theta, &phi);
    let x_star = spd_solve_vec("H", &h, &v)?;
    let n = spec.steps;
    Ok(match spec.estimator {
        Estimator::Cg => {
            let opts = cg::CgOptions {
                tol: 0.0,
                max_iter: n,
                keep_iterates: true,
            };
            let out = cg::solve(&mut o, s, &theta, &phi, &v, &Vector::zeros(d.d_l), &opts)?;
            let hnorm = |x: &Vector| {
                let e = x - &x_star;
                e.dot(&(&h * &e)).sqrt()
            };
            let e0 = hnorm(&out.iterates[0]);
            let errs = out.iterates[1..].iter().map(|x| hnorm(x) / e0).collect();
            let kappa = l / mu;
            (errs, (kappa.sqrt() - 1.0) / (kappa.sqrt() + 1.0))
        }
        Estimator::Neumann => {
            let (mut z, mut a, mut b) = (Vector::zeros(d.d_l), Vector::zeros(d.d_l), Vector::zeros(d.d_l));
            let mut errs = Vec::with_capacity(n);
            for terms in 1..=n {
                let np = neumann::NeumannParams { eta: 1.0 / l, terms };
                neumann::truncated_into(&mut o, s, &theta, &phi, &v, &np, &mut z, &mut a, &mut b)?;
                errs.push((&z - &x_star).norm());
            }
            (errs, 1.0 - mu / l)
        }
        Estimator::AidBio | Estimator::ItdBio => super::aid_itd::outer_errors(spec)?,
        Estimator::ItdWarm => super::aid_itd::bias_errors(spec)?,
        Estimator::Itd => {
            let exact = p.grad_f(&theta)?;
            let phi0 = Vector::zeros(d.d_l);
            let mut errs = Vec::with_capacity(n);
            for steps in 1..=n {
                let ip = itd::ItdParams { beta: 1.0 / l, steps };
                let f = itd::forward(&mut o, &theta, &phi0, &ip, itd::ItdSamples::EXACT)?;
                errs.push((&f.hypergradient - &exact).norm());
            }
            (errs, 1.0 - mu / l)
        }
    })
}

/// Compute and judge a deterministic rate. The "interval" is the point estimate itself (no sampling error);
/// the tolerance covers the pre-asymptotic curvature of $\ln e_k$ and rounding near machine precision.
pub fn run_rate(spec: &RateSpec) -> Result<super::ClaimResult> {
    let start = Instant::now();
    if spec.tail < 2 || spec.tail > spec.steps {
        return Err(BilevelError::invalid("tail", spec.tail, "need 2 <= tail <= steps"));
    }
    if spec.power_for.is_some() != spec.planted.is_some() || spec.power_for.is_some() != spec.bug.is_some() {
        return Err(BilevelError::invalid(
            "power_for/bug/planted",
            &spec.id,
            "a power test of a rate sets all three; a rate none",
        ));
    }
    let (errs, q) = errors(spec)?;
    let from = spec.steps - spec.tail;
    let ks: Vec<f64> = (from + 1..=spec.steps).map(|k| k as f64).collect();
    let tail = &errs[from..];
    if tail.iter().any(|e| !(e.is_finite() && *e > 0.0)) {
        return Err(BilevelError::NonFinite {
            what: format!(
                "rate {}: an error in the fitted tail is zero or non-finite (shorten the tail)",
                spec.id
            ),
        });
    }
    let slope = fit_slope(&ks, tail);
    let kind = match spec.kind {
        Kind::Bound => ClaimKind::Bound,
        Kind::Tight => ClaimKind::Tight,
        Kind::RefutedAbove => ClaimKind::RefutedAbove,
        Kind::RefutedBelow => ClaimKind::RefutedBelow,
    };
    let rule = Rule::new(kind, q.ln(), spec.tolerance)?;
    let verdict = rule.judge(&Interval {
        lo: slope,
        hi: slope,
        level: 1.0,
    });
    Ok(ClaimResult {
        id: spec.id.clone(),
        kind: spec.kind,
        theory_exponent: q.ln(),
        fitted_exponent: slope,
        interval: [slope, slope],
        tolerance: spec.tolerance,
        // A power test passes when its planted bug Fails the rule (an inconclusive verdict is not a catch).
        verdict: if (verdict == Verdict::Pass) == spec.power_for.is_none() && verdict != Verdict::Inconclusive {
            "pass".into()
        } else {
            "fail".into()
        },
        rule_verdict: format!("{verdict:?}").to_lowercase(),
        power_for: spec.power_for.clone(),
        bug: spec.bug.clone(),
        quantity: spec.estimator.error_name().into(),
        replicates: 1,
        horizons: (1..=spec.steps).collect(),
        fit_from: from,
        means: errs,
        std_errors: vec![0.0; spec.steps],
        samples: None,
        regime: None,
        start_value: None,
        regime_ratio: None,
        direct: None,
        reason: None,
        seconds: start.elapsed().as_secs_f64(),
        exact_slope_grid: None,
        exact_slope_far: None,
    })
}
