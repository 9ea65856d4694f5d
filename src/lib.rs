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
//! - [`stats`]: the Monte Carlo runner, seeds, horizon grids, power-law fits with bootstrap intervals, decision
//!   rules for rate claims.
//! - [`linalg`]: vector/matrix types and checks. [`error`]: the typed errors.
//!
//! # Notation
//! $\theta\in\mathbb{R}^{d_u}$ upper level, $\phi\in\mathbb{R}^{d_l}$ lower level, $J = d\phi^\star/d\theta\in
//! \mathbb{R}^{d_l\times d_u}$ (see [`problem`] for the convention and how it relates to the lecture's (15)–(17)).
//! $\varepsilon$-stationarity is $\mathbb{E}\\|\nabla F\\|^2\le\varepsilon$ (squared), eq (34).
#![deny(missing_docs)]

pub mod algorithms;
pub mod claims;
pub mod error;
pub mod families;
pub mod golden;
pub mod hypergrad;
pub mod linalg;
pub mod problem;
pub mod solver;
pub mod stats;

pub use error::{BilevelError, Result};
pub use linalg::{Matrix, Vector};
