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
//!    product $\nabla^2_{\phi\phi} f_l\,v$, the cross products with $\nabla^2_{\theta\phi} f_l$) and what it knows in
//!    closed form: $\phi^\star(\theta)$ (14), $J = d\phi^\star/d\theta$ (15)–(17), $F$ and $\nabla F$ (13). Start with
//!    [`families::quadratic`], where everything is a matrix formula.
//! 2. **Stochastic oracles.** [`problem::Noisy`] adds zero-mean noise at drawn samples; [`problem::Oracle`] checks
//!    sizes, draws samples from the run's ChaCha8 stream and counts every call, so sample complexities are measured.
//! 3. **Hypergradients.** [`hypergrad::estimate`] forms $\nabla_\theta f_u - \nabla^2_{\theta\phi} f_l\, z$ with
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
//! # Notation
//! $\theta\in\mathbb{R}^{d_u}$ upper level, $\phi\in\mathbb{R}^{d_l}$ lower level, $J = d\phi^\star/d\theta\in
//! \mathbb{R}^{d_l\times d_u}$ (see [`problem`] for the convention and how it relates to the lecture's (15)–(17)).
//! $\varepsilon$-stationarity is $\mathbb{E}\\|\nabla F\\|^2\le\varepsilon$ (squared), eq (34).
#![deny(missing_docs)]

pub mod algorithms;
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
