//! The theory test-suite: the claims registry `theory/claims.toml`, its runner and its report.
//!
//! A claim names an algorithm, a family, a schedule, the measured quantity with its exact definition, the theory
//! exponent, its kind ([`Kind`]: bound, tight, refuted above or below) and a tolerance with its reason. [`run_claim`] runs $R$
//! independent replicates (in parallel, bit-identical for any thread count), fits the exponent of the mean on the
//! tail of a geometric horizon grid, gets an interval by bootstrapping replicates, and judges it with the
//! [`crate::stats::Rule`] of its kind. Power tests are registry entries with `power_for`: the same rule applied to
//! a planted bug, which must fail; `[[bug]]` entries ([`BugSpec`]) name the tests that catch bugs no rate sees.
//! [`direct`] measures sample complexity directly. `cargo test` and `bilevel report` run the same code.
//!
//! Needs the `claims` feature (on by default); [`plot`] needs `plots`.
//!
//! # Example
//! ```
//! use bilevel::claims::{self, Kind, Registry};
//! # fn main() -> bilevel::Result<()> {
//! let reg = Registry::builtin()?; // theory/claims.toml, compiled in and checked
//! let spec = reg.claim.iter().find(|c| c.id == "ttsa-sc/lower-gap").expect("a registered claim");
//! assert_eq!(spec.kind, Kind::Tight);
//! assert!(!spec.tolerance_reason.is_empty()); // every tolerance carries its reason
//! // Every power test applies the rule of a registered claim to a planted bug.
//! for p in reg.claim.iter().filter(|c| c.power_for.is_some()) {
//!     assert!(reg.claim.iter().any(|c| Some(&c.id) == p.power_for.as_ref()), "{}", p.id);
//! }
//! // The deterministic rates (CG, Neumann, ITD) take milliseconds; `run_claim` runs a Monte Carlo claim.
//! let results = reg.rate.iter().map(claims::run_rate).collect::<bilevel::Result<Vec<_>>>()?;
//! assert!(results.iter().all(|r| r.ok()));
//! print!("{}", claims::table(&results, 3, false));
//! # Ok(())
//! # }
//! ```

mod aid_itd;
mod deterministic;
pub mod direct;
pub mod judge;
#[cfg(feature = "plots")]
mod plot;
mod report;
mod resolve;
mod run;
mod spec;

pub use deterministic::{Estimator, RateBug, RateSpec, run_rate};
pub use judge::false_failure_rate;
#[cfg(feature = "plots")]
pub use plot::plot;
pub use report::{bug_table, exact_table, table};
pub use resolve::{BETA_TYPO_POWER, ResolvedAlgo};
pub use run::{
    BOOTSTRAP_LEVEL, BOOTSTRAP_RESAMPLES, ClaimResult, build_problem, build_solver, run_all, run_claim, run_group,
    run_group_band_only, run_group_judged, start_point, stationary_point,
};
pub use spec::{
    AlgoSpec, BugSpec, ClaimSpec, HorizonMode, Horizons, Kind, Measure, NeumannSpec, ProblemSpec, Registry, SchedSpec,
    Statistic,
};
