//! The statistics engine of the rate claims: seeds, the Monte Carlo runner, horizon grids, power-law and
//! sample-complexity fits with bootstrap intervals, and the decision rules.
//!
//! # How a rate claim is judged (theory/README.md), and which module does each step
//! 1. **Horizons on a geometric grid** ([`geometric_grid`]): a power law is a line in log–log coordinates, and a
//!    geometric grid spreads the points evenly along it.
//! 2. **$R$ independent replicates** ([`run_replicates`], streams from [`seeds`]): the estimand is
//!    $\mathbb{E}[\text{metric}]$, estimated by the mean over replicates, never the mean of logs (Jensen's gap can
//!    drift with $K$) nor of norms when the theorem is about squares. Each replicate has its own ChaCha8 stream
//!    derived from (master seed, claim id, replicate), so results are bit-identical for any thread count.
//! 3. **Fit on the tail** ([`fit_power_law`], [`fit_sample_complexity`]): least squares of $\log \bar m$ on
//!    $\log K$ over the last horizons (rates are asymptotic); the interval comes from the bootstrap over
//!    replicates ([`bootstrap`]), because horizons read from one run are correlated and the regression's own
//!    standard error would be wrong.
//! 4. **Decide from the interval** ([`Rule::judge`]) with a tolerance $\tau$ written next to the claim, with
//!    controlled false-failure rates (see [`decision`]).
//!
//! Everything here is independent of the algorithms: a claim supplies a closure that runs one replicate with the
//! stream it is given and returns its metric at every horizon.
//!
//! # Example
//! ```
//! use bilevel::stats::{ClaimKind, FitConfig, Rule, SeedKey, Table, fit_power_law, geometric_grid, run_replicates};
//! use rand::RngExt;
//! let ks = geometric_grid(10, 10_000, 8).unwrap();
//! // A toy "algorithm": metric = K^{-1} times a mean-one random factor.
//! let rows = run_replicates(42, "doc/claim", 64, |mut rng, _| {
//!     Ok(ks.iter().map(|&k| (0.5 + rng.random::<f64>()) / k as f64).collect::<Vec<f64>>())
//! })
//! .unwrap();
//! let cfg = FitConfig::new(SeedKey::new(42, "doc/claim")).with_bootstrap(1000, 0.99);
//! let fit = fit_power_law(&ks, &Table::from_rows(&rows).unwrap(), &cfg).unwrap();
//! let rule = Rule::new(ClaimKind::Tight, -1.0, 0.05).unwrap();
//! assert!(rule.judge(&fit.interval).passed());
//! ```

pub mod bootstrap;
pub mod complexity;
pub mod decision;
pub mod fit;
pub mod grid;
pub mod runner;
pub mod seeds;
pub mod table;

pub use bootstrap::{Bootstrap, Interval};
pub use complexity::{SampleComplexityFit, fit_sample_complexity};
pub use decision::{ClaimKind, Rule, Verdict};
pub use fit::{FitConfig, PowerLawFit, Tail, fit_power_law};
pub use grid::geometric_grid;
pub use runner::run_replicates;
pub use seeds::SeedKey;
pub use table::Table;
