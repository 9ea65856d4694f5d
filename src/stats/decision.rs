//! Decision rules: judge a fitted exponent's interval against the theory exponent $r$ with tolerance $\tau$.
//!
//! # Convention
//! An exponent is what the fit returns: for a decaying metric $\mathbb{E}\\,m_K \sim K^{s}$ it is negative, and the
//! theory exponent is written negative too (TTSA's $\mathbb{E}\\|\theta^k-\theta^\star\\|^2 = O(k^{-2/3})$ has
//! $r = -2/3$). For sample complexity $S \sim \varepsilon^{-p}$ it is positive. In both cases *smaller is better*,
//! and a bound claim says "the true exponent $s^\star$ is at most $r$".
//!
//! # The rules
//! Let $[\ell, u]$ be the two-sided interval at level $1-\alpha$ ([`super::bootstrap`]). Each rule has three
//! outcomes: **Pass** (the data demonstrate the claim within tolerance), **Fail** (the data contradict it beyond the
//! tolerance), **Inconclusive** (neither: the interval is too wide for $\tau$; add replicates, do not suspect a bug).
//! A test asserts [`Verdict::Pass`].
//!
//! | kind | theory says | Pass | Fail |
//! |---|---|---|---|
//! | [`ClaimKind::Bound`] | $s^\star \le r$ | $u \le r+\tau$ | $\ell > r+\tau$ |
//! | [`ClaimKind::Tight`] | $s^\star = r$ | $r-\tau \le \ell$ and $u \le r+\tau$ | $u < r-\tau$ or $\ell > r+\tau$ |
//! | [`ClaimKind::RefutedAbove`] | lecture's $r$ is wrong, truth is slower: $s^\star > r+\tau$ | $\ell > r+\tau$ | $u \le r+\tau$ |
//! | [`ClaimKind::RefutedBelow`] | lecture's $r$ is wrong, truth is faster: $s^\star < r-\tau$ | $u < r-\tau$ | $\ell \ge r-\tau$ |
//!
//! *Why these.* Passing requires positive evidence: the whole interval must sit where the claim allows (for
//! tight claims this is the interval-inclusion form of the two one-sided tests of equivalence, TOST). Failing
//! requires the whole interval to sit where the claim forbids. So both wrong verdicts are controlled by the
//! interval's level, and $\tau$ (written next to the claim and justified by log factors, the $\alpha/\beta$
//! coupling correction, finite-$K$ curvature; theory/README.md, "Tolerances") absorbs the fit's systematic bias, which the
//! bootstrap cannot see.
//!
//! *Refutations are one-sided.* A refutation states on which side of the lecture's exponent the truth lies.
//! [`ClaimKind::RefutedAbove`] is the exact negation of a bound ("the lecture's bound is false"): a decay that is
//! *faster* than the lecture says never refutes a bound, and a two-sided rule would have counted it as one.
//! [`ClaimKind::RefutedBelow`] refutes a claimed lower rate (the truth is better than stated).
//!
//! # Nominal error rates (if the interval has its nominal coverage and $\tau$ covers the bias)
//! Write $\alpha = 1 - \text{level}$; each end of the interval misses $s^\star$ with probability $\alpha/2$. "Holds"
//! and "false" are meant up to the tolerance: for a bound, holds = $s^\star \le r+\tau$, false = $s^\star > r+\tau$;
//! for tight, holds = $|s^\star - r| \le \tau$, false = $|s^\star - r| > \tau$; refuted-above holds when
//! $s^\star > r+\tau$, refuted-below when $s^\star < r-\tau$.
//!
//! | kind | false failure: Fail although the claim holds | false pass: Pass although it is false |
//! |---|---|---|
//! | Bound | $\le \alpha/2$ (Fail needs $\ell > r+\tau \ge s^\star$) | $\le \alpha/2$ ($u \le r+\tau < s^\star$) |
//! | Tight | $\le \alpha$ (either end can miss; $=\alpha$ only when $\tau = 0$ and $s^\star = r$; $\approx\alpha/2$ when $s^\star$ is at an edge of the band) | $\le \alpha/2$ |
//! | RefutedAbove, RefutedBelow | $\le \alpha/2$ | $\le \alpha/2$ |
//!
//! (For the refutations, "holds" = the truth lies beyond the band on the stated side.)
//! With the default level 0.99: bound 0.5 %, tight 1 %, refuted 0.5 %. *Measured* (the expanded interval of
//! [`super::bootstrap`] on a synthetic power law with lognormal noise, 1000 experiments, $\tau = 0$, $s^\star = r$):
//! each end missed $s^\star$ in 0.7–0.8 % of experiments at $R = 40$ and $R = 200$ (1.0–1.2 % at $R = 10$), so a
//! bound claim's real false-failure rate is about 0.7 % and a tight claim's about 1.5 % at $R \ge 40$; use
//! $R \ge 40$ replicates. These are per claim; a suite of $n$
//! claims run at one seed fails falsely with probability up to $n$ times that (union bound), which the many-seed
//! sweep (theory/README.md, item 8 of "How a rate claim is judged") should be read against. Inconclusive is not a false failure but a lack of power: it
//! becomes rare once the bootstrap standard error is well below $\tau - |s^\star - r|$ (for tight claims) or
//! below $r + \tau - s^\star$ (for bound claims); plan $R$ from [`super::PowerLawFit::bootstrap_se`], which shrinks
//! like $R^{-1/2}$.

use super::bootstrap::Interval;
use crate::error::{BilevelError, Result};
use serde::{Deserialize, Serialize};

/// What a claim asserts about the true exponent $s^\star$ relative to the theory exponent $r$.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClaimKind {
    /// The theory is an upper bound: $s^\star \le r$ (decays at least as fast, or needs at most as many samples).
    Bound,
    /// The family attains the bound: $s^\star = r$ within tolerance.
    Tight,
    /// The lecture's exponent $r$ is false on the slow side: $s^\star > r+\tau$ (decays slower, or needs more
    /// samples, than stated) — the negation of [`ClaimKind::Bound`].
    RefutedAbove,
    /// The lecture's exponent $r$ is false on the fast side: $s^\star < r-\tau$ (decays faster, or needs fewer
    /// samples, than stated).
    RefutedBelow,
}

/// The outcome of judging an interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// The interval lies where the claim allows.
    Pass,
    /// The interval lies where the claim forbids.
    Fail,
    /// The interval straddles a boundary: too few replicates for this tolerance.
    Inconclusive,
}

impl Verdict {
    /// Whether the verdict is [`Verdict::Pass`].
    pub fn passed(self) -> bool {
        self == Verdict::Pass
    }
}

/// A decision rule: claim kind, theory exponent $r$, tolerance $\tau \ge 0$.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Rule {
    /// What the claim asserts.
    pub kind: ClaimKind,
    /// Theory exponent $r$ (negative for a decay rate).
    pub theory: f64,
    /// Tolerance $\tau \ge 0$.
    pub tolerance: f64,
}

impl Rule {
    /// A checked rule.
    ///
    /// # Errors
    /// [`BilevelError::InvalidParameter`] for a non-finite $r$ or a negative or non-finite $\tau$.
    pub fn new(kind: ClaimKind, theory: f64, tolerance: f64) -> Result<Self> {
        let rule = Self {
            kind,
            theory,
            tolerance,
        };
        rule.check()?;
        Ok(rule)
    }

    /// Validate $r$ finite and $\tau \ge 0$ finite (use after deserialising).
    ///
    /// # Errors
    /// As [`Rule::new`].
    pub fn check(&self) -> Result<()> {
        if !self.theory.is_finite() {
            return Err(BilevelError::invalid("theory exponent", self.theory, "must be finite"));
        }
        if !(self.tolerance.is_finite() && self.tolerance >= 0.0) {
            return Err(BilevelError::invalid(
                "tolerance",
                self.tolerance,
                "must be finite and >= 0",
            ));
        }
        Ok(())
    }

    /// The band $[r-\tau, r+\tau]$.
    pub fn band(&self) -> (f64, f64) {
        (self.theory - self.tolerance, self.theory + self.tolerance)
    }

    /// Judge `interval` by the table in the module docs; a reversed or NaN interval is [`Verdict::Inconclusive`].
    pub fn judge(&self, interval: &Interval) -> Verdict {
        // An interval built by hand (its fields are public) may be reversed or NaN: it decides nothing.
        if interval.lo.partial_cmp(&interval.hi).is_none_or(|o| o.is_gt()) {
            return Verdict::Inconclusive;
        }
        let (lo_band, hi_band) = self.band();
        let inside = lo_band <= interval.lo && interval.hi <= hi_band;
        // A tight claim fails when the interval misses the band on either side.
        let outside = interval.hi < lo_band || interval.lo > hi_band;
        let (pass, fail) = match self.kind {
            ClaimKind::Bound => (interval.hi <= hi_band, interval.lo > hi_band),
            ClaimKind::Tight => (inside, outside),
            ClaimKind::RefutedAbove => (interval.lo > hi_band, interval.hi <= hi_band),
            ClaimKind::RefutedBelow => (interval.hi < lo_band, interval.lo >= lo_band),
        };
        if pass {
            Verdict::Pass
        } else if fail {
            Verdict::Fail
        } else {
            Verdict::Inconclusive
        }
    }

    /// Nominal upper bound on $P(\text{Fail})$ when the claim holds, for an interval at two-sided `level`
    /// (module docs): $\alpha/2$ for bound and the one-sided refutations, $\alpha$ for tight.
    pub fn false_failure_rate(&self, level: f64) -> f64 {
        let alpha = 1.0 - level;
        match self.kind {
            ClaimKind::Bound | ClaimKind::RefutedAbove | ClaimKind::RefutedBelow => alpha / 2.0,
            ClaimKind::Tight => alpha,
        }
    }

    /// Nominal upper bound on $P(\text{Pass})$ when the claim is false: $\alpha/2$ for every kind (each pass
    /// condition is one end of the interval beyond one edge of the band).
    pub fn false_pass_rate(&self, level: f64) -> f64 {
        (1.0 - level) / 2.0
    }
}

/// Level of the sweep's check that a claim's failures across seeds are no more than its rule's own false failures
/// ([`sweep_allowance`]; theory/README.md, "Decision rules", item 8).
pub const SWEEP_LEVEL: f64 = 0.05;

/// $P(X \ge k)$ for $X \sim \mathrm{Binomial}(n, p)$: statrs' survival function at $k-1$ (a regularised incomplete
/// beta, no cancellation in $1 - P(X < k)$).
pub fn binomial_upper_tail(n: u64, p: f64, k: u64) -> f64 {
    use statrs::distribution::{Binomial, DiscreteCDF};
    if k == 0 {
        return 1.0;
    }
    match Binomial::new(p, n) {
        Ok(b) => b.sf(k - 1),
        Err(_) => f64::NAN,
    }
}

/// $P(X \ge k)$ for $X$ the number of successes of independent trials with probabilities `p` (Poisson-binomial),
/// exactly, by the dynamic programme over trials. Increasing in every $p_i$, so an upper bound on each $p_i$ gives an
/// upper bound on the tail.
pub fn poisson_binomial_upper_tail(p: &[f64], k: usize) -> f64 {
    if k == 0 {
        return 1.0;
    }
    // below[j] = P(exactly j successes so far), for j < k.
    let mut below = vec![0.0; k];
    below[0] = 1.0;
    for &pi in p {
        for j in (0..k).rev() {
            below[j] = below[j] * (1.0 - pi) + if j > 0 { below[j - 1] * pi } else { 0.0 };
        }
    }
    (1.0 - below.iter().sum::<f64>()).max(0.0)
}

/// How many of `seeds` independent runs a correct claim may fail in a sweep: the largest $k$ with
/// $P(\mathrm{Binomial}(\text{seeds}, p) \ge k) \ge$ `level`, where $p$ is the rule's per-seed false-failure rate
/// ([`Rule::false_failure_rate`]). A claim with more failures than this fails the sweep: its rule fails more often
/// than the rule's level allows, at the sweep's `level` (a binomial test). With $p = 0.01$ (a tight claim at the
/// 99% level), `level` $= 0.05$: 1 of 20 seeds, 3 of 100.
pub fn sweep_allowance(seeds: u64, p: f64, level: f64) -> u64 {
    (1..=seeds)
        .take_while(|&k| binomial_upper_tail(seeds, p, k) >= level)
        .last()
        .unwrap_or(0)
}
