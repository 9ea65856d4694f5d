//! One interface for every algorithm: a [`Solver`] steps an [`Iterate`] passed by value, [`run`] drives it and
//! feeds [`Observer`]s, [`Schedule`]s give step sizes. Modelled on argmin's `Solver`/`State`/observer split.
//!
//! Indexing: the iterate after $k$ steps is $(\theta^k, \phi^k)$ from $(\theta^0,\phi^0)$; `step` uses the
//! schedules at index $k$ (so $\alpha_0$ is the first step). `theta_prev` is $\theta^{k-1}$, which the lecture's
//! lower-level gap $\\|\phi^k - \phi^\star(\theta^{k-1})\\|$ needs.

mod record;
mod schedule;

pub use record::{Metric, Recorder, Trace, moreau_rho, prox};
pub use schedule::Schedule;

use crate::error::{BilevelError, Result};
use crate::linalg::{Vector, check_vector};
use crate::problem::Oracle;

/// The state of a run after $k$ outer iterations.
#[derive(Debug, Clone, PartialEq)]
pub struct Iterate {
    /// Outer iterations completed.
    pub k: usize,
    /// $\theta^k$.
    pub theta: Vector,
    /// $\phi^k$.
    pub phi: Vector,
    /// $\theta^{k-1}$ ($=\theta^0$ at $k=0$).
    pub theta_prev: Vector,
}

impl Iterate {
    /// The starting point $(\theta^0,\phi^0)$.
    pub fn start(theta: Vector, phi: Vector) -> Self {
        Iterate {
            k: 0,
            theta_prev: theta.clone(),
            theta,
            phi,
        }
    }
}

/// A bilevel algorithm.
///
/// [`run`] is the checked way to drive one: it checks the start point's sizes and finiteness, calls `init` once,
/// then `step`, and stops on a diverging or non-finite iterate. Calling `init` and `step` by hand is the
/// implementor's interface: `init` does not check the iterate's sizes (the oracle calls of `step` do), and `step`
/// before `init` is a logic error whose message may name an internal buffer.
pub trait Solver: Send {
    /// Registry name.
    fn name(&self) -> &'static str;
    /// Check the parameters against the problem (step-size conditions of the algorithm's theorem included) and
    /// reset internal state (momentum buffers, tracked matrices) for a run from `state`.
    fn init(&mut self, o: &mut Oracle, state: &Iterate) -> Result<()>;
    /// One outer iteration: $(\theta^k,\phi^k) \to (\theta^{k+1},\phi^{k+1})$. Implementations set `theta_prev`
    /// and increment `k`.
    fn step(&mut self, o: &mut Oracle, state: Iterate) -> Result<Iterate>;
}

/// Something that looks at every iterate (after `init` at $k=0$ and after every step).
pub trait Observer {
    /// Called with the oracle (for counts and the problem's closed forms) and the current iterate.
    fn observe(&mut self, o: &Oracle, state: &Iterate) -> Result<()>;
}

/// Divergence factor $C$ of [`divergence_limit`]: an iterate $C$ times larger than everything at the start has left
/// any region where a family's constants hold (`theory/robustness.md`).
pub const DIVERGENCE_FACTOR: f64 = 1e6;

/// The size beyond which [`run`] declares a run diverged, relative to its start:
/// $C\\,(\max(\\|\theta^0\\|\_\infty, \\|\phi^0\\|\_\infty, \\|\phi^\star(\theta^0)\\|\_\infty) + 1)$ with
/// $C$ = [`DIVERGENCE_FACTOR`]. The lower-level solution $\phi^\star(\theta^0)$ sets the scale of $\phi$, so a lower
/// level that runs away from it is caught even while $\theta$ stays put; the $+1$ is the scale of a start at 0.
/// Error if $\phi^\star(\theta^0)$ is not finite.
pub fn divergence_limit(o: &Oracle, theta0: &Vector, phi0: &Vector) -> Result<f64> {
    use crate::problem::Checked;
    let star = o.problem().try_phi_star(theta0)?;
    let scale = theta0.amax().max(phi0.amax()).max(star.amax());
    if !scale.is_finite() {
        return Err(BilevelError::NonFinite {
            what: "phi*(theta0)".into(),
        });
    }
    Ok(DIVERGENCE_FACTOR * (scale + 1.0))
}

/// Run `solver` for `iters` outer iterations from $(\theta^0,\phi^0)$, projecting nothing itself (algorithms that
/// project do so in `step`). After each step the run is declared diverged ([`BilevelError::Diverged`]) if an
/// iterate of either level is non-finite or exceeds [`divergence_limit`], a bound relative to the start.
/// Test: `tests/robustness.rs` (`divergence_is_relative_to_the_start`).
pub fn run(
    solver: &mut dyn Solver,
    o: &mut Oracle,
    theta0: &Vector,
    phi0: &Vector,
    iters: usize,
    observer: &mut dyn Observer,
) -> Result<Iterate> {
    let d = o.dims();
    check_vector("theta0", theta0, d.d_u)?;
    check_vector("phi0", phi0, d.d_l)?;
    let limit = divergence_limit(o, theta0, phi0)?;
    let mut state = Iterate::start(theta0.clone(), phi0.clone());
    solver.init(o, &state)?;
    observer.observe(o, &state)?;
    for _ in 0..iters {
        state = solver.step(o, state)?;
        let (t, p) = (state.theta.amax(), state.phi.amax());
        // amax ignores NaN in comparisons, so test finiteness of every entry.
        let finite = state.theta.iter().chain(state.phi.iter()).all(|x| x.is_finite());
        if !finite || t > limit || p > limit {
            let level = if !finite {
                "a non-finite iterate".to_string()
            } else if t > limit {
                format!("upper level: max |theta| = {t:.3e}")
            } else {
                format!("lower level: max |phi| = {p:.3e}")
            };
            return Err(BilevelError::Diverged {
                iter: state.k,
                what: format!(
                    "{level} exceeds {limit:.3e} = {DIVERGENCE_FACTOR:e} x (start scale + 1); the step sizes are too \
                     large for this problem"
                ),
            });
        }
        observer.observe(o, &state)?;
    }
    Ok(state)
}

/// An observer that records nothing.
pub struct NoObserver;

impl Observer for NoObserver {
    fn observe(&mut self, _o: &Oracle, _state: &Iterate) -> Result<()> {
        Ok(())
    }
}
