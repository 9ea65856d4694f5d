//! # bilevel
//!
//! A verified reference implementation and theory test-suite for stochastic bilevel optimization, following the
//! lecture notes "Algorithms and Analysis of Stochastic Bi-level Optimization Problems" (Dash & Ram, 2023).
//! Equation and algorithm numbers in this documentation are the lecture's.
//!
//! The problem, eqs (1)–(3):
//! $$\min_{\theta\in\Theta} F(\theta) = f_u(\theta,\phi^\star(\theta)) \quad\text{s.t.}\quad
//! \phi^\star(\theta) = \arg\min_{\phi\in\mathbb{R}^{d_l}} f_l(\theta,\phi),$$
//! with $f_l(\theta,\cdot)$ strongly convex, so $\phi^\star$ is single-valued.
//!
//! # Module map
//! - [`problem`]: the oracles of $f_u$, $f_l$ ([`problem::Bilevel`]), samples, additive noise, the counting
//!   [`problem::Oracle`], the set $\Theta$, the constants of the lecture's assumption slides.
//! - [`families`]: synthetic families with exact $\phi^\star$, $F$, $\nabla F$ (and $\theta^\star$ where known).
//! - [`hypergrad`]: hypergradient estimators: exact, CG (Alg 7), Neumann (24) and its stochastic versions, ITD
//!   (30)–(32), Hessian-free, the regularised value function (26).
//! - [`solver`]: the `Solver` interface (init/step over an iterate passed by value), schedules, observers, metrics.
//! - [`algorithms`]: the 16 algorithms, one file each, with defaults derived from a family's constants.
//! - [`claims`]: the registry `theory/claims.toml`, its runner, the report and the plots.
//! - [`stats`]: the Monte Carlo runner, seeds, horizon grids, power-law fits with bootstrap intervals, decision
//!   rules for rate claims.
//! - [`exact`]: exact expected curves on the quadratic family by closed moment recursions (issue 9 §1).
//! - [`golden`]: golden files for other implementations and the conformance checker.
//! - [`linalg`]: vector/matrix types and checks. [`error`]: the typed errors.
//!
//! # A guided tour: from the problem to the algorithms to the claims
//! 1. **The problem.** A family implements [`problem::Bilevel`]: oracles of $f_u$, $f_l$ (gradients, the Hessian-vector
//!    product $\nabla^2_{\phi\phi} f_l\\,v$, the cross products with $\nabla^2_{\theta\phi} f_l$) and what it knows in
//!    closed form: $\phi^\star(\theta)$ (14), $J = d\phi^\star/d\theta$ (15)–(17), $F$ and $\nabla F$ (13). Start with
//!    [`families::quadratic`], where everything is a matrix formula.
//! 2. **Stochastic oracles.** [`problem::Noisy`] adds zero-mean noise at drawn samples; [`problem::Oracle`] checks
//!    sizes, draws samples from the run's ChaCha8 stream and counts every call, so sample complexities are measured.
//! 3. **Hypergradients.** [`hypergrad::estimate`] forms $\nabla_\theta f_u - \nabla^2_{\theta\phi} f_l\\, z$ with
//!    $z\approx[\nabla^2_{\phi\phi} f_l]^{-1}\nabla_\phi f_u$ (18) by a dense solve, CG (Alg 7, (23)), Neumann (24)
//!    or its stochastic versions; [`hypergrad::itd`] differentiates unrolled inner steps (30)–(32).
//! 4. **Algorithms.** [`algorithms`] implements Algs 1–9 and (19)–(22), (25)–(29) behind one
//!    [`solver::Solver`] interface; [`solver::run`] drives them and [`solver::Recorder`] records the exact metrics
//!    ((34), (38), the squared errors of TTSA's theorem).
//! 5. **Claims.** [`claims`] runs each rate claim of `theory/claims.toml` over Monte Carlo replicates ([`stats`]),
//!    fits the exponent with a bootstrap interval and judges it against the lecture's (40)–(52).
//! 6. **Golden files.** [`golden`] writes the values of steps 1–4 on fixed instances (with the noise tape of a
//!    stochastic run) so that other implementations can check themselves: `docs/golden-format.md`.
//!
//! `docs/equations.md` maps every equation (1)–(52) and Algorithm 1–9 to the item that implements it and its test.
//!
//! # Example: build a problem, check a hypergradient, run TTSA, judge its rate
//! The whole pipeline in a few lines (about 1 s in release; `examples/quickstart.rs` is the same program printing
//! its numbers, `cargo run --release --example quickstart`). The rate check reproduces, at a smaller size, the
//! registry's claim `ttsa-sc/upper-err-quadratic`: the lecture's bound
//! $\mathbb{E}\\|\theta^K-\theta^\star\\|^2 = O(K^{-2/3})$ (eqs (45), (47)) with its tolerance 0.05. Run under master
//! seeds 1 to 12, the upper end of the interval stayed at or below $-0.75$, well inside the bound's $-0.617$.
//! ```
//! use bilevel::algorithms;
//! use bilevel::families::quadratic::QuadraticSpec;
//! use bilevel::hypergrad::{self, InverseMethod, Workspace, exact};
//! use bilevel::problem::{Bilevel, NoiseLevels, Noisy, Oracle};
//! use bilevel::solver::{self, Metric, Recorder};
//! use bilevel::stats::{ClaimKind, FitConfig, Rule, SeedKey, Table, Tail, Verdict};
//! use bilevel::stats::{fit_power_law, geometric_grid, run_replicates};
//! use bilevel::Vector;
//! use std::sync::Arc;
//! # fn main() -> bilevel::Result<()> {
//! // A quadratic family (d_u = 2, d_l = 3) whose phi*, F, grad F and theta* are closed forms, seen through
//! // noisy oracles: standard deviation 0.1 on the gradients and cross derivatives, exact Hessians.
//! let spec = QuadraticSpec { d_u: 2, d_l: 3, kappa: 2.0, mu_f: 1.0, seed: 1, ..Default::default() };
//! let exact_problem: Arc<dyn Bilevel> = Arc::new(spec.build()?);
//! let noise = NoiseLevels { hess_fl: 0.0, ..NoiseLevels::uniform(0.1) };
//! let p = Noisy::new(exact_problem.clone(), noise)?;
//!
//! // 1. The implicit-function hypergradient (13) by dense solves equals the family's closed form A_F theta + g_F.
//! let theta = Vector::from_vec(vec![1.0, -0.5]);
//! let exact_grad = exact::hypergradient(&*exact_problem, &theta)?;
//! assert!((&exact_grad - exact_problem.grad_f(&theta)?).norm() < 1e-10);
//!
//! // 2. A stochastic estimate (one upper sample, a dense solve with one lower sample) is unbiased at
//! //    phi = phi*(theta): over 4000 draws its mean is within 4 standard errors of the exact value.
//! let phi = exact_problem.phi_star(&theta);
//! let mut o = Oracle::new(&p, 7);
//! let (mut ws, mut est) = (Workspace::new(2, 3), Vector::zeros(2));
//! let (mut sum, mut sum_sq, n) = (Vector::zeros(2), Vector::zeros(2), 4000);
//! for _ in 0..n {
//!     hypergrad::estimate(&mut o, &InverseMethod::Dense, &theta, &phi, &mut ws, &mut est)?;
//!     sum += &est;
//!     sum_sq += est.component_mul(&est);
//! }
//! for i in 0..2 {
//!     let mean = sum[i] / n as f64;
//!     let std_err = ((sum_sq[i] / n as f64 - mean * mean) / n as f64).sqrt();
//!     assert!((mean - exact_grad[i]).abs() < 4.0 * std_err);
//! }
//! assert_eq!(o.counts().upper_samples, n); // every draw is counted: sample complexities are measured
//!
//! // 3. TTSA (Alg 4) with its default steps (alpha_k ~ 1/k, beta_k ~ k^(-2/3)) over R = 200 independent
//! //    replicates, each recording |theta^K - theta*|^2 (mean over the last 10% of iterations) at 6 horizons.
//! let ks = geometric_grid(100, 3000, 6)?;
//! let k_max = ks[ks.len() - 1];
//! let rows = run_replicates(1, "example/ttsa", 200, |rng, _| {
//!     let mut o = Oracle::with_rng(&p, rng);
//!     let mut ttsa = algorithms::build("ttsa", &p, k_max)?;
//!     let mut rec = Recorder::new(&[Metric::ThetaErrSq], &ks, false).with_window(0.1);
//!     let (theta0, phi0) = (Vector::from_element(2, 1.0), Vector::zeros(3));
//!     solver::run(&mut *ttsa, &mut o, &theta0, &phi0, k_max, &mut rec)?;
//!     Ok(rec.finish().windows.unwrap_or_default().iter().map(|v| v[0]).collect::<Vec<f64>>())
//! })?;
//!
//! // 4. Fit the exponent of the mean on the last 5 horizons, with a bootstrap interval over replicates, and judge
//! //    the bound: pass when the whole interval lies below -2/3 + 0.05.
//! let cfg = FitConfig::new(SeedKey::new(1, "example/ttsa")).with_tail(Tail::Last(5));
//! let fit = fit_power_law(&ks, &Table::from_rows(&rows)?, &cfg)?;
//! let rule = Rule::new(ClaimKind::Bound, -2.0 / 3.0, 0.05)?;
//! assert_eq!(rule.judge(&fit.interval), Verdict::Pass);
//! // The bound is loose on a quadratic (the exponent is near -1: theory/ttsa-strongly-convex.md).
//! assert!(fit.exponent < -0.8);
//! # Ok(())
//! # }
//! ```
//!
//! # Features
//! - `cli` (default): the `bilevel` binary; implies `claims` and `plots` and adds clap and indicatif.
//! - `claims`: the registry `theory/claims.toml`, its runner and the report table ([`claims`],
//!   [`families::build_with`]); adds toml.
//! - `plots`: one SVG per claim (`claims::plot`); implies `claims`, adds plotters.
//!
//! With `default-features = false` the library keeps the problems, families, estimators, algorithms, statistics and
//! golden files, and depends on none of clap, plotters, indicatif or toml (`cargo build --no-default-features --lib`;
//! the integration tests need `cli`).
//!
//! # Notation
//! $\theta\in\mathbb{R}^{d_u}$ upper level, $\phi\in\mathbb{R}^{d_l}$ lower level, $J = d\phi^\star/d\theta\in
//! \mathbb{R}^{d_l\times d_u}$ (see [`problem`] for the convention and how it relates to the lecture's (15)–(17)).
//! $\varepsilon$-stationarity is $\mathbb{E}\\|\nabla F\\|^2\le\varepsilon$ (squared), eq (34).
#![deny(missing_docs)]

pub mod algorithms;
#[cfg(feature = "claims")]
pub mod claims;
pub mod error;
pub mod exact;
pub mod families;
pub mod golden;
pub mod hypergrad;
pub mod linalg;
pub mod problem;
pub mod solver;
pub mod stats;

pub use error::{BilevelError, Result};
pub use linalg::{Matrix, Vector};
