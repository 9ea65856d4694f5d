//! Exact expected curves by moment recursions (issue 9 §1).
//!
//! On the quadratic family ([`crate::families::quadratic`]) with the additive noise of [`crate::problem::Noisy`],
//! every oracle is affine in the state with random coefficients drawn from fresh samples, independent of the
//! state; the Ghadimi–Wang depth $p$ is independent too. So for TTSA (Algs 4/8/9), eq (20) momentum, BSA (Alg 2),
//! stocBiO, SUSTAIN (eqs (21)–(22)), alternating GD, STABLE (Alg 5, gradient noise only) and ITD-BiO
//! (eqs (30)–(32); with Hessian noise for $d_l\le8$, [`hessian_noise`]) the first and second moments of $(\theta, h, \phi, \theta^{k-1})$ ($h$: the momentum buffer, if any) obey
//! a closed linear recursion ([`ExactRun`]), which gives $\mathbb{E}\\|\theta^k-\theta^\star\\|^2$,
//! $\mathbb{E}\\|\phi^k-\phi^\star(\theta^{k-1})\\|^2$, $\mathbb{E}\\|\nabla F(\theta^k)\\|^2$ exactly at every $k$,
//! far beyond Monte Carlo horizons. Derivation, the methods covered and why the others are not:
//! `theory/exact-moments.md`.
//!
//! Two uses ([`claim`]):
//! - **consistency** ([`consistency`]): at each horizon the claim runner's Monte Carlo mean must agree with the
//!   exact expectation within [`Z_THRESHOLD`] standard errors; with a planted constant-only bug it must not.
//!   Tests: `exact::*` in `tests/exact.rs`.
//! - **judgement** ([`exact_slopes`], [`judging_slopes`]): the exact exponent on a claim's own grid and fit window,
//!   and on a far grid ($10^5$–$10^6$); reported per claim as `exact_slope_grid` / `exact_slope_far`, and used by
//!   the decision rule ([`crate::claims::judge::exact_rule`]).
//!
//! [`moments`] needs no feature; [`claim`] reads registry claims and needs the `claims` feature (on by default).

#[cfg(feature = "claims")]
pub mod claim;
pub mod hessian_noise;
pub mod moments;

#[cfg(feature = "claims")]
pub use claim::{
    Comparison, Consistency, ExactCurve, ExactSlopes, Z_THRESHOLD, consistency, exact_curve, exact_curves,
    exact_slopes, exact_slopes_group, far_grid, judging_slopes, method_for,
};
pub use moments::{Correction, ExactMethod, ExactRun};
