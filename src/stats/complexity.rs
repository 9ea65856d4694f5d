//! Sample-complexity fit: the exponent $p$ in $S \sim \varepsilon^{-p}$.
//!
//! # The model
//! The lecture's complexity table states how many samples $S$ reach $\varepsilon$-stationarity,
//! $\mathbb{E}\\|\nabla F\\|^2 \le \varepsilon$ (squared norm, eq (34)). Each horizon $K_h$ of a run gives a pair
//! (samples used $S_{ih}$, error $\varepsilon_{ih}$) per replicate. With $\bar S_h$, $\bar\varepsilon_h$ the means
//! over replicates (the estimands, as in [`super::fit`]), fit by least squares on the tail
//! $$\log \bar S_h = c + p\\,\log(1/\bar\varepsilon_h).$$
//! Both coordinates are random here, so the bootstrap resamples replicate rows of the *pair* of tables jointly and
//! refits both means. For most algorithms $S_h$ is deterministic given $K_h$ and the fit is the reciprocal of the
//! rate fit in disguise; the general form also covers adaptive batch sizes and random inner-loop lengths.
//!
//! Decision rules ([`super::decision`]) apply unchanged: $p$ is positive and a bound claim says $p \le p_{\text{theory}}$.

use super::bootstrap::{Interval, bootstrap_stats, percentile_interval, std_dev};
use super::fit::{FitConfig, check_common, log_positive, ols};
use super::table::Table;
use crate::error::{BilevelError, Result};
use serde::Serialize;
use std::ops::Range;

/// The fitted sample complexity $\bar S \approx e^{c}\\,\bar\varepsilon^{-p}$ with a bootstrap interval for $p$.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SampleComplexityFit {
    /// Fitted exponent $\hat p$ (positive: fewer samples buy a larger error).
    pub exponent: f64,
    /// Percentile bootstrap interval for $p$.
    pub interval: Interval,
    /// Standard deviation of the bootstrap slopes.
    pub bootstrap_se: f64,
    /// Intercept $\hat c$.
    pub constant: f64,
    /// $R^2$ of the tail fit.
    pub r_squared: f64,
    /// Mean samples $\bar S_h$ at every horizon.
    pub mean_samples: Vec<f64>,
    /// Mean error $\bar\varepsilon_h$ at every horizon.
    pub mean_error: Vec<f64>,
    /// Standard errors of $\bar S_h$.
    pub se_samples: Vec<f64>,
    /// Standard errors of $\bar\varepsilon_h$.
    pub se_error: Vec<f64>,
    /// Number of replicates $R$.
    pub replicates: usize,
    /// Number of horizons $H$.
    pub horizons: usize,
    /// Columns used by the fit.
    pub tail: Range<usize>,
    /// Number of bootstrap resamples $B$.
    pub resamples: usize,
    /// Level at which the bootstrap percentiles were taken (above `interval.level` when expanded).
    pub percentile_level: f64,
}

/// Fit $\log \bar S = c + p\log(1/\bar\varepsilon)$ on the tail with a joint bootstrap over replicates.
///
/// `samples` and `error` are replicates × horizons tables of the same shape (row $i$ = replicate $i$).
///
/// # Errors
/// [`BilevelError::DimensionMismatch`] when the shapes differ; [`BilevelError::InvalidParameter`] for $R < 2$, a
/// tail of fewer than 2 horizons, a non-positive mean in the tail, equal mean errors over the whole tail (no
/// slope), or an invalid bootstrap.
pub fn fit_sample_complexity(samples: &Table, error: &Table, cfg: &FitConfig) -> Result<SampleComplexityFit> {
    if samples.replicates() != error.replicates() {
        return Err(BilevelError::DimensionMismatch {
            what: "replicates of the error table vs the samples table".into(),
            expected: samples.replicates(),
            got: error.replicates(),
        });
    }
    if samples.horizons() != error.horizons() {
        return Err(BilevelError::DimensionMismatch {
            what: "horizons of the error table vs the samples table".into(),
            expected: samples.horizons(),
            got: error.horizons(),
        });
    }
    let (tail, percentile_level) = check_common(cfg, samples)?;
    let n = tail.len();
    let (mean_samples, mean_error) = (samples.means(), error.means());
    let (se_samples, se_error) = (samples.std_errors()?, error.std_errors()?);

    let mut x = vec![0.0; n];
    let mut y = vec![0.0; n];
    log_positive(&mean_error[tail.clone()], tail.start, "mean error", &mut x)?;
    x.iter_mut().for_each(|v| *v = -*v);
    log_positive(&mean_samples[tail.clone()], tail.start, "mean samples", &mut y)?;
    let no_slope = || {
        BilevelError::invalid(
            "error",
            "equal means over the tail",
            "log(1/eps) must vary over the tail to fit a slope",
        )
    };
    let line = ols(&x, &y).ok_or_else(no_slope)?;

    let mut slopes = bootstrap_stats(
        &cfg.seed,
        samples.replicates(),
        cfg.bootstrap.resamples,
        || (vec![0.0; n], vec![0.0; n]),
        |counts, (bx, by)| {
            error.weighted_means_into(counts, tail.clone(), bx);
            samples.weighted_means_into(counts, tail.clone(), by);
            for v in bx.iter_mut().chain(by.iter_mut()) {
                if *v <= 0.0 {
                    return Err(BilevelError::invalid(
                        "bootstrap mean",
                        *v,
                        "a resample has a non-positive mean; samples and errors must be positive",
                    ));
                }
                *v = v.ln();
            }
            bx.iter_mut().for_each(|v| *v = -*v);
            ols(bx, by).map(|l| l.slope).ok_or_else(no_slope)
        },
    )?;
    let bootstrap_se = std_dev(&slopes);
    let mut interval = percentile_interval(&mut slopes, percentile_level);
    interval.level = cfg.bootstrap.level;
    Ok(SampleComplexityFit {
        exponent: line.slope,
        interval,
        bootstrap_se,
        constant: line.intercept,
        r_squared: line.r_squared,
        mean_samples,
        mean_error,
        se_samples,
        se_error,
        replicates: samples.replicates(),
        horizons: samples.horizons(),
        tail,
        resamples: cfg.bootstrap.resamples,
        percentile_level,
    })
}
