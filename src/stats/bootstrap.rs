//! The bootstrap over replicates and the percentile interval.
//!
//! # Why resample replicates, not residuals
//! Step 3 of the method. When every horizon of a replicate is read from one run (anytime schedules), the metric
//! values of one replicate at different horizons are correlated, so the regression's own standard error, which
//! assumes independent residuals, is wrong (too small when the correlation is positive). Replicates, in contrast,
//! are independent by construction ([`super::seeds`]), so resampling whole replicate rows with replacement
//! reproduces the joint law of the per-horizon means, correlations included, and the spread of the refitted slope
//! estimates the sampling error of the fitted exponent. Finite-$K$ bias (log factors, curvature) is *not* sampling
//! error: the bootstrap cannot see it, which is what a claim's tolerance is for.
//!
//! # The resample
//! Resample $b$ draws $R$ indices $i_1,\dots,i_R$ with [`super::seeds::uniform_index`] from the stream
//! [`SeedKey::bootstrap`]`(b)`, in order, and recomputes the means from the multiplicities. Each resample has its
//! own stream, so resamples run in parallel and the result does not depend on the thread count.
//!
//! # The interval
//! The percentile interval at level $1-\alpha$: the empirical $\alpha/2$ and $1-\alpha/2$ quantiles of the $B$
//! bootstrap slopes, quantile $q(p)$ by linear interpolation between order statistics (Hyndman–Fan type 7:
//! $h = (B-1)p$, $q = x_{(\lfloor h\rfloor)} + (h-\lfloor h\rfloor)(x_{(\lfloor h\rfloor+1)} - x_{(\lfloor h\rfloor)})$,
//! 0-based). The percentile interval is transformation-respecting and needs no normality of the slope; its coverage
//! error is $O(R^{-1/2})$ for one end alone and $O(R^{-1})$ for the two-sided interval (Hall 1988; Efron &
//! Tibshirani 1993, ch. 13–14). The coverage actually achieved is measured in `tests/stats.rs`.

use super::seeds::{SeedKey, uniform_index};
use crate::error::{BilevelError, Result};
use rayon::prelude::*;
use serde::Serialize;

/// A confidence interval $[\text{lo}, \text{hi}]$ at two-sided level `level`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Interval {
    /// Lower end.
    pub lo: f64,
    /// Upper end.
    pub hi: f64,
    /// Two-sided confidence level $1-\alpha$, e.g. 0.99.
    pub level: f64,
}

impl Interval {
    /// Whether $\text{lo} \le x \le \text{hi}$.
    pub fn contains(&self, x: f64) -> bool {
        self.lo <= x && x <= self.hi
    }

    /// $\text{hi} - \text{lo}$.
    pub fn width(&self) -> f64 {
        self.hi - self.lo
    }
}

/// Bootstrap settings: $B$ resamples and the two-sided level $1-\alpha$ of the percentile interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Bootstrap {
    /// Number of resamples $B$.
    pub resamples: usize,
    /// Two-sided level $1-\alpha \in (0,1)$.
    pub level: f64,
}

impl Default for Bootstrap {
    /// $B = 2000$, level 0.99: each tail of the interval rests on $B\alpha/2 = 10$ resamples.
    fn default() -> Self {
        Self {
            resamples: 2000,
            level: 0.99,
        }
    }
}

impl Bootstrap {
    /// Validate: $0 < 1-\alpha < 1$ and $B\alpha/2 \ge 1$, so that each end of the interval lies inside the
    /// bootstrap sample rather than at its extreme order statistic.
    ///
    /// # Errors
    /// [`BilevelError::InvalidParameter`] naming the offending field.
    pub fn check(&self) -> Result<()> {
        if !(self.level > 0.0 && self.level < 1.0) {
            return Err(BilevelError::invalid("level", self.level, "must lie in (0, 1)"));
        }
        let per_tail = self.resamples as f64 * (1.0 - self.level) / 2.0;
        if per_tail < 1.0 {
            return Err(BilevelError::invalid(
                "resamples",
                self.resamples,
                "need resamples * (1 - level) / 2 >= 1 (e.g. >= 200 for level 0.99)",
            ));
        }
        Ok(())
    }
}

/// Empirical quantile of ascending `sorted` at $p \in [0,1]$ (Hyndman–Fan type 7, see the module docs).
pub fn quantile_sorted(sorted: &[f64], p: f64) -> f64 {
    debug_assert!(!sorted.is_empty());
    let h = (sorted.len() - 1) as f64 * p.clamp(0.0, 1.0);
    let lo = h.floor() as usize;
    let hi = (lo + 1).min(sorted.len() - 1);
    sorted[lo] + (h - lo as f64) * (sorted[hi] - sorted[lo])
}

/// The percentile interval of the bootstrap statistics `stats` (sorted in place) at two-sided `level`.
pub fn percentile_interval(stats: &mut [f64], level: f64) -> Interval {
    stats.sort_unstable_by(f64::total_cmp);
    let a = (1.0 - level) / 2.0;
    Interval {
        lo: quantile_sorted(stats, a),
        hi: quantile_sorted(stats, 1.0 - a),
        level,
    }
}

/// Sample standard deviation of `xs` ($n-1$ denominator); 0 for fewer than 2 values.
pub(crate) fn std_dev(xs: &[f64]) -> f64 {
    if xs.len() < 2 {
        return 0.0;
    }
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    (xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / (n - 1.0)).sqrt()
}

/// Multiplicities of resample `b` of `replicates` rows: `counts[i]` = how often row `i` was drawn.
pub fn resample_counts(key: &SeedKey, b: usize, counts: &mut [u32]) {
    let n = counts.len();
    counts.fill(0);
    let mut rng = key.bootstrap(b);
    for _ in 0..n {
        counts[uniform_index(&mut rng, n)] += 1;
    }
}

/// Compute `stat(counts_b, scratch)` for every resample $b < B$ in parallel, in resample order.
///
/// `init` builds a per-thread scratch (buffers reused across resamples, so the loop allocates nothing per
/// resample). The first error by resample index is returned.
pub(crate) fn bootstrap_stats<W, I, S>(
    key: &SeedKey,
    replicates: usize,
    resamples: usize,
    init: I,
    stat: S,
) -> Result<Vec<f64>>
where
    I: Fn() -> W + Sync + Send,
    S: Fn(&[u32], &mut W) -> Result<f64> + Sync + Send,
{
    let results: Vec<Result<f64>> = (0..resamples)
        .into_par_iter()
        .map_init(
            || (vec![0u32; replicates], init()),
            |(counts, scratch), b| {
                resample_counts(key, b, counts);
                stat(counts, scratch)
            },
        )
        .collect();
    results.into_iter().collect()
}
