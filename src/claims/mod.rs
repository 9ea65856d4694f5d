//! The theory test-suite: the claims registry `theory/claims.toml`, its runner and its report.
//!
//! A claim names an algorithm, a family, a schedule, the measured quantity with its exact definition, the theory
//! exponent, its kind ([`Kind`]: bound, tight, refuted above or below) and a tolerance with its reason. [`run_claim`] runs $R$
//! independent replicates (in parallel, bit-identical for any thread count), fits the exponent of the mean on the
//! tail of a geometric horizon grid, gets an interval by bootstrapping replicates, and judges it with the
//! [`crate::stats::Rule`] of its kind. Power tests are registry entries with `power_for`: the same rule applied to
//! a planted bug, which must fail; `[[bug]]` entries ([`BugSpec`]) name the tests that catch bugs no rate sees.
//! [`direct`] measures sample complexity directly. `cargo test` and `bilevel report` run the same code.

mod deterministic;
pub mod direct;
mod report;
mod run;
mod spec;

pub use deterministic::{Estimator, RateSpec, run_rate};
pub use report::{bug_table, plot, table};
pub use run::{
    BOOTSTRAP_LEVEL, BOOTSTRAP_RESAMPLES, ClaimResult, build_problem, build_solver, run_all, run_claim, run_group,
    start_point,
};
pub use spec::{
    AlgoSpec, BugSpec, ClaimSpec, HorizonMode, Horizons, Kind, Measure, NeumannSpec, ProblemSpec, Registry, SchedSpec,
    Statistic,
};
