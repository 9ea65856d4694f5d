//! Power-law fit of $\mathbb{E}[\text{metric}]$ against the horizon $K$, with a bootstrap interval for the exponent.
//!
//! # The model and why each step is there
//! A rate claim says $\mathbb{E}\\,m_K \approx c\\,K^{r}$ for large $K$. Given a replicates × horizons table
//! $m_{ih}$ (replicate $i$, horizon $K_h$):
//! 1. **Estimand = mean.** $\bar m_h = \frac1R\sum_i m_{ih}$ estimates $\mathbb{E}[m_{K_h}]$, the quantity the
//!    theorems bound. The mean of $\log m$ estimates $\mathbb{E}\log m \le \log \mathbb{E} m$ (Jensen), a different
//!    quantity whose gap can drift with $K$ when the spread of $m$ changes with $K$; so logs are taken only after
//!    averaging (theory/README.md, item 2 of "How a rate claim is judged").
//! 2. **Least squares on the tail.** $\log \bar m_h = \hat c + \hat r \log K_h$ is fitted by ordinary least
//!    squares on the last horizons only ([`Tail`], default: the last half of the grid, rounded up), because rates
//!    are asymptotic: early horizons carry transients (the initial gap, warm-up of step sizes) that bend the curve.
//!    Giving every horizon in the tail equal weight suits a geometric grid ([`super::geometric_grid`]).
//! 3. **Interval by bootstrap over replicates** ([`super::bootstrap`]): refit on $B$ resamples of whole replicate
//!    rows and take the percentile interval of the $B$ slopes; this respects the correlation between horizons.
//!
//! The constant $\hat c$ is the intercept of the log–log line ($\bar m \approx e^{\hat c} K^{\hat r}$). $R^2$ is
//! that of the tail fit on the full-sample means; it diagnoses curvature, it is not a pass criterion.

use super::bootstrap::{Bootstrap, Interval, bootstrap_stats, percentile_interval, std_dev};
use super::seeds::SeedKey;
use super::table::Table;
use crate::error::{BilevelError, Result};
use serde::Serialize;
use std::ops::Range;

/// Which horizons (columns, in grid order) the fit uses: always a final segment of the grid.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub enum Tail {
    /// The last $\lceil f\cdot H\rceil$ of the $H$ horizons, $0 < f \le 1$. The default is $f = 1/2$.
    LastFraction(f64),
    /// The last $n$ horizons.
    Last(usize),
}

impl Default for Tail {
    fn default() -> Self {
        Tail::LastFraction(0.5)
    }
}

impl Tail {
    /// The column range of the tail among `horizons` columns.
    ///
    /// # Errors
    /// [`BilevelError::InvalidParameter`] for a fraction outside $(0,1]$, or when the tail has fewer than 2
    /// horizons (a line needs two points) or more horizons than the grid.
    pub fn range(&self, horizons: usize) -> Result<Range<usize>> {
        let len = match *self {
            Tail::LastFraction(f) => {
                if !(f > 0.0 && f <= 1.0) {
                    return Err(BilevelError::invalid("tail fraction", f, "must lie in (0, 1]"));
                }
                (f * horizons as f64).ceil() as usize
            }
            Tail::Last(n) => n,
        };
        if len < 2 {
            return Err(BilevelError::invalid(
                "tail",
                format!("{len} of {horizons} horizons"),
                "the fitted tail needs at least 2 horizons",
            ));
        }
        if len > horizons {
            return Err(BilevelError::invalid(
                "tail",
                format!("{len} of {horizons} horizons"),
                "the tail is longer than the grid",
            ));
        }
        Ok(horizons - len..horizons)
    }
}

/// Settings of a fit: the tail, the bootstrap, and the seed of the bootstrap streams.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FitConfig {
    /// Horizons used by the fit.
    pub tail: Tail,
    /// Number of resamples and interval level.
    pub bootstrap: Bootstrap,
    /// Seeds the bootstrap resamples ([`SeedKey::bootstrap`]); usually the claim's own key.
    pub seed: SeedKey,
}

impl FitConfig {
    /// Defaults (last half of the grid, $B = 2000$, level 0.99, expanded interval) with the bootstrap seeded by `seed`.
    pub fn new(seed: SeedKey) -> Self {
        Self {
            tail: Tail::default(),
            bootstrap: Bootstrap::default(),
            seed,
        }
    }

    /// Same settings with another tail.
    pub fn with_tail(mut self, tail: Tail) -> Self {
        self.tail = tail;
        self
    }

    /// Same settings with $B$ = `resamples` and two-sided `level` (expansion unchanged).
    pub fn with_bootstrap(mut self, resamples: usize, level: f64) -> Self {
        self.bootstrap.resamples = resamples;
        self.bootstrap.level = level;
        self
    }

    /// Same settings with the small-sample expansion of the interval on or off.
    pub fn with_expansion(mut self, expanded: bool) -> Self {
        self.bootstrap.expanded = expanded;
        self
    }
}

/// A least-squares line $y = a + s x$ and its $R^2$.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Line {
    pub slope: f64,
    pub intercept: f64,
    pub r_squared: f64,
}

/// Ordinary least squares of `y` on `x` (centred sums). `None` when all `x` are equal.
pub(crate) fn ols(x: &[f64], y: &[f64]) -> Option<Line> {
    let n = x.len() as f64;
    let mx = x.iter().sum::<f64>() / n;
    let my = y.iter().sum::<f64>() / n;
    let (mut sxx, mut sxy, mut syy) = (0.0, 0.0, 0.0);
    for (xi, yi) in x.iter().zip(y) {
        let (dx, dy) = (xi - mx, yi - my);
        sxx += dx * dx;
        sxy += dx * dy;
        syy += dy * dy;
    }
    if sxx <= 0.0 {
        return None;
    }
    let slope = sxy / sxx;
    let ss_res = (syy - slope * sxy).max(0.0);
    let r_squared = if syy > 0.0 { 1.0 - ss_res / syy } else { 1.0 };
    Some(Line {
        slope,
        intercept: my - slope * mx,
        r_squared,
    })
}

/// Natural logs of positive means into `out`; the error names the first non-positive one (column `offset + j`).
pub(crate) fn log_positive(means: &[f64], offset: usize, what: &str, out: &mut [f64]) -> Result<()> {
    for (j, (o, &m)) in out.iter_mut().zip(means).enumerate() {
        if m <= 0.0 {
            return Err(BilevelError::invalid(
                &format!("{what} at horizon index {}", offset + j),
                m,
                "a log-log fit needs positive means",
            ));
        }
        *o = m.ln();
    }
    Ok(())
}

/// Checks shared by the fits: valid config, $R \ge 2$; returns the tail range and the percentile level.
pub(crate) fn check_common(cfg: &FitConfig, table: &Table) -> Result<(Range<usize>, f64)> {
    cfg.bootstrap.check()?;
    if table.replicates() < 2 {
        return Err(BilevelError::invalid(
            "replicates",
            table.replicates(),
            "the bootstrap over replicates needs at least 2",
        ));
    }
    let tail = cfg.tail.range(table.horizons())?;
    Ok((tail, cfg.bootstrap.percentile_level(table.replicates())?))
}

/// The fitted power law $\mathbb{E}\\,m_K \approx e^{c} K^{r}$ with a bootstrap interval for $r$.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PowerLawFit {
    /// Fitted exponent $\hat r$ (negative for a decaying metric).
    pub exponent: f64,
    /// Percentile bootstrap interval for $r$.
    pub interval: Interval,
    /// Standard deviation of the bootstrap slopes (the exponent's standard error; for planning replicates).
    pub bootstrap_se: f64,
    /// Intercept $\hat c$ of the log–log line.
    pub constant: f64,
    /// $R^2$ of the tail fit.
    pub r_squared: f64,
    /// Means $\bar m_h$ at every horizon of the grid.
    pub means: Vec<f64>,
    /// Standard errors of the means, $s_h/\sqrt R$, at every horizon.
    pub std_errors: Vec<f64>,
    /// Number of replicates $R$.
    pub replicates: usize,
    /// Number of horizons $H$ in the grid.
    pub horizons: usize,
    /// Columns used by the fit.
    pub tail: Range<usize>,
    /// Number of bootstrap resamples $B$.
    pub resamples: usize,
    /// Level at which the bootstrap percentiles were taken (above `interval.level` when expanded).
    pub percentile_level: f64,
}

/// Fit $\log \bar m_h = c + r\log K_h$ on the tail and bootstrap the interval for $r$ (see the module docs).
///
/// `horizons[h]` is $K_h$ (strictly increasing, $\ge 1$); `values` has one column per horizon.
///
/// # Errors
/// [`BilevelError::DimensionMismatch`] when `horizons.len()` differs from the table's columns;
/// [`BilevelError::InvalidParameter`] for $R < 2$, a tail of fewer than 2 horizons, horizons not strictly
/// increasing or zero, a non-positive mean in the tail (of the data or of a bootstrap resample), or an invalid
/// bootstrap.
///
/// # Example
/// ```
/// use bilevel::stats::{FitConfig, SeedKey, Table, fit_power_law};
/// // Two replicates of an exact K^{-1/2} law (scaled by 1 and 3): the fitted exponent is exact.
/// let ks = [1usize, 4, 16, 64];
/// let rows: Vec<Vec<f64>> = [1.0, 3.0].iter().map(|s| ks.iter().map(|&k| s / (k as f64).sqrt()).collect()).collect();
/// // With R = 2 the expanded interval would need ~10^18 resamples: use the plain one.
/// let cfg = FitConfig::new(SeedKey::new(1, "doc/fit")).with_bootstrap(400, 0.99).with_expansion(false);
/// let fit = fit_power_law(&ks, &Table::from_rows(&rows).unwrap(), &cfg).unwrap();
/// assert!((fit.exponent + 0.5).abs() < 1e-12);
/// ```
pub fn fit_power_law(horizons: &[usize], values: &Table, cfg: &FitConfig) -> Result<PowerLawFit> {
    if horizons.len() != values.horizons() {
        return Err(BilevelError::DimensionMismatch {
            what: "horizons vs table columns".into(),
            expected: values.horizons(),
            got: horizons.len(),
        });
    }
    if horizons.first() == Some(&0) || horizons.windows(2).any(|w| w[1] <= w[0]) {
        return Err(BilevelError::invalid(
            "horizons",
            format!("{horizons:?}"),
            "must be >= 1 and strictly increasing",
        ));
    }
    let (tail, percentile_level) = check_common(cfg, values)?;
    let means = values.means();
    let std_errors = values.std_errors()?;

    // x_h = log K_h centred over the tail; then slope = Σ x̃_h y_h / Σ x̃_h² needs no centring of y.
    let x: Vec<f64> = horizons[tail.clone()].iter().map(|&k| (k as f64).ln()).collect();
    let mut y = vec![0.0; tail.len()];
    log_positive(&means[tail.clone()], tail.start, "mean metric", &mut y)?;
    let line = ols(&x, &y)
        .ok_or_else(|| BilevelError::invalid("horizons", format!("{horizons:?}"), "tail horizons have equal logs"))?;
    let mx = x.iter().sum::<f64>() / x.len() as f64;
    let xc: Vec<f64> = x.iter().map(|xi| xi - mx).collect();
    let sxx: f64 = xc.iter().map(|v| v * v).sum();

    let mut slopes = bootstrap_stats(
        &cfg.seed,
        values.replicates(),
        cfg.bootstrap.resamples,
        || vec![0.0; tail.len()],
        |counts, buf| {
            values.weighted_means_into(counts, tail.clone(), buf);
            let mut sxy = 0.0;
            for (j, (&m, &xj)) in buf.iter().zip(&xc).enumerate() {
                if m <= 0.0 {
                    return Err(BilevelError::invalid(
                        &format!("bootstrap mean at horizon index {}", tail.start + j),
                        m,
                        "a resample has a non-positive mean; the metric must be positive",
                    ));
                }
                sxy += xj * m.ln();
            }
            Ok(sxy / sxx)
        },
    )?;
    let bootstrap_se = std_dev(&slopes);
    let mut interval = percentile_interval(&mut slopes, percentile_level);
    interval.level = cfg.bootstrap.level;
    Ok(PowerLawFit {
        exponent: line.slope,
        interval,
        bootstrap_se,
        constant: line.intercept,
        r_squared: line.r_squared,
        means,
        std_errors,
        replicates: values.replicates(),
        horizons: values.horizons(),
        tail,
        resamples: cfg.bootstrap.resamples,
        percentile_level,
    })
}
