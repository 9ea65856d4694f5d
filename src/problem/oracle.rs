//! The counting wrapper every algorithm calls: checks sizes, draws samples, counts calls per level and kind.

use super::{Bilevel, Dims, Level, Sample};
use crate::error::{BilevelError, Result};
use crate::linalg::{Matrix, Vector};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

/// Oracle calls of one run, per level and per kind.
///
/// `upper_samples` and `lower_samples` are the sample complexities $S(f_u)$ and $S(f_l)$ of the lecture's table:
/// the number of independent draws. The other fields count evaluations (several may share one sample).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Counts {
    /// Draws of upper-level samples.
    pub upper_samples: u64,
    /// Draws of lower-level samples.
    pub lower_samples: u64,
    /// Evaluations of $f_u$.
    pub fu_value: u64,
    /// Evaluations of $\nabla_\theta f_u$.
    pub fu_grad_theta: u64,
    /// Evaluations of $\nabla_\phi f_u$.
    pub fu_grad_phi: u64,
    /// Evaluations of $f_l$.
    pub fl_value: u64,
    /// Evaluations of $\nabla_\phi f_l$.
    pub fl_grad_phi: u64,
    /// Evaluations of $\nabla_\theta f_l$.
    pub fl_grad_theta: u64,
    /// Hessian-vector products $\nabla^2_{\phi\phi} f_l\\,v$.
    pub fl_hvp: u64,
    /// Cross products $\nabla^2_{\theta\phi} f_l\\,w$.
    pub fl_cross: u64,
    /// Transposed cross products $[\nabla^2_{\theta\phi} f_l]^\top u$.
    pub fl_cross_t: u64,
    /// Dense Hessians or cross matrices formed (each counts once).
    pub fl_dense: u64,
}

impl Counts {
    /// Upper-level gradient evaluations ($\nabla_\theta f_u$ and $\nabla_\phi f_u$ calls).
    pub fn upper_gradients(&self) -> u64 {
        self.fu_grad_theta + self.fu_grad_phi
    }
    /// Lower-level first- and second-order evaluations.
    pub fn lower_evaluations(&self) -> u64 {
        self.fl_grad_phi + self.fl_grad_theta + self.fl_hvp + self.fl_cross + self.fl_cross_t + self.fl_dense
    }
    /// Field-wise difference `self − earlier` (calls made since `earlier`, an earlier snapshot of the same
    /// counter). A field of `earlier` above `self`'s (the arguments swapped) gives 0, not a wrapped count.
    pub fn since(&self, earlier: &Counts) -> Counts {
        Counts {
            upper_samples: self.upper_samples.saturating_sub(earlier.upper_samples),
            lower_samples: self.lower_samples.saturating_sub(earlier.lower_samples),
            fu_value: self.fu_value.saturating_sub(earlier.fu_value),
            fu_grad_theta: self.fu_grad_theta.saturating_sub(earlier.fu_grad_theta),
            fu_grad_phi: self.fu_grad_phi.saturating_sub(earlier.fu_grad_phi),
            fl_value: self.fl_value.saturating_sub(earlier.fl_value),
            fl_grad_phi: self.fl_grad_phi.saturating_sub(earlier.fl_grad_phi),
            fl_grad_theta: self.fl_grad_theta.saturating_sub(earlier.fl_grad_theta),
            fl_hvp: self.fl_hvp.saturating_sub(earlier.fl_hvp),
            fl_cross: self.fl_cross.saturating_sub(earlier.fl_cross),
            fl_cross_t: self.fl_cross_t.saturating_sub(earlier.fl_cross_t),
            fl_dense: self.fl_dense.saturating_sub(earlier.fl_dense),
        }
    }
}

/// A problem as an algorithm sees it: checked, counted oracles and the run's random stream.
///
/// One `Oracle` per run (per replicate): it owns the replicate's `ChaCha8Rng`, so runs are independent and
/// reproducible whatever the number of threads.
///
/// # Example
/// A noisy quadratic: a drawn sample gives the same noise to every quantity evaluated at it (a minibatch), sizes are
/// checked, and every call is counted.
/// ```
/// use bilevel::families::quadratic::QuadraticSpec;
/// use bilevel::problem::{Bilevel, Level, NoiseLevels, Noisy, Oracle};
/// use bilevel::{BilevelError, Vector};
/// use std::sync::Arc;
/// # fn main() -> bilevel::Result<()> {
/// let q: Arc<dyn Bilevel> = Arc::new(QuadraticSpec { d_u: 2, d_l: 3, ..Default::default() }.build()?);
/// let p = Noisy::new(q.clone(), NoiseLevels::uniform(0.5))?;
/// let mut o = Oracle::new(&p, 42);
/// let (theta, phi) = (Vector::from_element(2, 1.0), Vector::zeros(3));
/// let mut g = Vector::zeros(3);
/// let s = o.draw(Level::Lower);
/// o.grad_phi_fl(s, &theta, &phi, &mut g)?;
/// let mut g_again = Vector::zeros(3);
/// o.grad_phi_fl(s, &theta, &phi, &mut g_again)?; // same sample, same noise
/// assert_eq!(g, g_again);
/// let mut exact = Vector::zeros(3);
/// q.grad_phi_fl(bilevel::problem::Sample::Exact, &theta, &phi, &mut exact);
/// assert!((&g - &exact).norm() > 0.0); // the noise is there
/// assert_eq!((o.counts().lower_samples, o.counts().fl_grad_phi), (1, 2));
/// // A wrong size is a typed error, not a panic.
/// let short = Vector::zeros(2);
/// assert!(matches!(o.grad_phi_fl(s, &theta, &short, &mut g), Err(BilevelError::DimensionMismatch { .. })));
/// # Ok(())
/// # }
/// ```
pub struct Oracle<'a> {
    problem: &'a dyn Bilevel,
    rng: ChaCha8Rng,
    counts: Counts,
    dims: Dims,
}

impl<'a> Oracle<'a> {
    /// Wrap `problem` with a random stream seeded by `seed`.
    pub fn new(problem: &'a dyn Bilevel, seed: u64) -> Self {
        Self::with_rng(problem, ChaCha8Rng::seed_from_u64(seed))
    }

    /// Wrap `problem` with a given random stream.
    pub fn with_rng(problem: &'a dyn Bilevel, rng: ChaCha8Rng) -> Self {
        let dims = problem.dims();
        Oracle {
            problem,
            rng,
            counts: Counts::default(),
            dims,
        }
    }

    /// The wrapped problem (uncounted access to closed forms and constants).
    pub fn problem(&self) -> &'a dyn Bilevel {
        self.problem
    }
    /// $d_u$, $d_l$.
    pub fn dims(&self) -> Dims {
        self.dims
    }
    /// Calls so far.
    pub fn counts(&self) -> Counts {
        self.counts
    }
    /// The run's random stream (for algorithm-level randomness such as a Neumann truncation index).
    pub fn rng(&mut self) -> &mut ChaCha8Rng {
        &mut self.rng
    }

    /// Draw one sample of `level` (counted as one sample of that level).
    pub fn draw(&mut self, level: Level) -> Sample {
        match level {
            Level::Upper => self.counts.upper_samples += 1,
            Level::Lower => self.counts.lower_samples += 1,
        }
        self.problem.draw(level, &mut self.rng)
    }

    fn check(&self, what: &str, v: &Vector, expected: usize) -> Result<()> {
        if v.len() != expected {
            return Err(BilevelError::DimensionMismatch {
                what: what.to_string(),
                expected,
                got: v.len(),
            });
        }
        Ok(())
    }

    fn check_point(&self, theta: &Vector, phi: &Vector) -> Result<()> {
        self.check("theta", theta, self.dims.d_u)?;
        self.check("phi", phi, self.dims.d_l)
    }

    /// $f_u(\theta,\phi)$ at `s`.
    pub fn f_u(&mut self, s: Sample, theta: &Vector, phi: &Vector) -> Result<f64> {
        self.check_point(theta, phi)?;
        self.counts.fu_value += 1;
        Ok(self.problem.f_u(s, theta, phi))
    }
    /// $f_l(\theta,\phi)$ at `s`.
    pub fn f_l(&mut self, s: Sample, theta: &Vector, phi: &Vector) -> Result<f64> {
        self.check_point(theta, phi)?;
        self.counts.fl_value += 1;
        Ok(self.problem.f_l(s, theta, phi))
    }
    /// `out` ← $\nabla_\theta f_u$ at `s`.
    pub fn grad_theta_fu(&mut self, s: Sample, theta: &Vector, phi: &Vector, out: &mut Vector) -> Result<()> {
        self.check_point(theta, phi)?;
        self.check("output of grad_theta_fu", out, self.dims.d_u)?;
        self.counts.fu_grad_theta += 1;
        self.problem.grad_theta_fu(s, theta, phi, out);
        Ok(())
    }
    /// `out` ← $\nabla_\phi f_u$ at `s`.
    pub fn grad_phi_fu(&mut self, s: Sample, theta: &Vector, phi: &Vector, out: &mut Vector) -> Result<()> {
        self.check_point(theta, phi)?;
        self.check("output of grad_phi_fu", out, self.dims.d_l)?;
        self.counts.fu_grad_phi += 1;
        self.problem.grad_phi_fu(s, theta, phi, out);
        Ok(())
    }
    /// `out` ← $\nabla_\phi f_l$ at `s`.
    pub fn grad_phi_fl(&mut self, s: Sample, theta: &Vector, phi: &Vector, out: &mut Vector) -> Result<()> {
        self.check_point(theta, phi)?;
        self.check("output of grad_phi_fl", out, self.dims.d_l)?;
        self.counts.fl_grad_phi += 1;
        self.problem.grad_phi_fl(s, theta, phi, out);
        Ok(())
    }
    /// `out` ← $\nabla_\theta f_l$ at `s`.
    pub fn grad_theta_fl(&mut self, s: Sample, theta: &Vector, phi: &Vector, out: &mut Vector) -> Result<()> {
        self.check_point(theta, phi)?;
        self.check("output of grad_theta_fl", out, self.dims.d_u)?;
        self.counts.fl_grad_theta += 1;
        self.problem.grad_theta_fl(s, theta, phi, out);
        Ok(())
    }
    /// The run's random stream as it is now, to replay the same draws later with [`Oracle::replay`].
    pub fn snapshot(&self) -> ChaCha8Rng {
        self.rng.clone()
    }
    /// Run `f` with the random stream reset to `snapshot`, so it draws the same samples (and the same
    /// algorithm-level randomness) as the code that ran after the snapshot was taken; then restore the stream.
    /// Replayed draws are the same samples, so they do not add to `upper_samples`/`lower_samples`; evaluations
    /// are counted as usual. This is how recursive-momentum methods (eqs 21–22) evaluate one sample at two points.
    pub fn replay<T>(&mut self, snapshot: ChaCha8Rng, f: impl FnOnce(&mut Self) -> Result<T>) -> Result<T> {
        let saved = std::mem::replace(&mut self.rng, snapshot);
        let (us, ls) = (self.counts.upper_samples, self.counts.lower_samples);
        let out = f(self);
        self.counts.upper_samples = us;
        self.counts.lower_samples = ls;
        self.rng = saved;
        out
    }
    /// `out` ← $\nabla^2_{\phi\phi} f_l\\,v$ at `s`.
    pub fn hvp_fl(&mut self, s: Sample, theta: &Vector, phi: &Vector, v: &Vector, out: &mut Vector) -> Result<()> {
        self.check_point(theta, phi)?;
        self.check("v of hvp_fl", v, self.dims.d_l)?;
        self.check("output of hvp_fl", out, self.dims.d_l)?;
        self.counts.fl_hvp += 1;
        self.problem.hvp_fl(s, theta, phi, v, out);
        Ok(())
    }
    /// `out` ← $\nabla^2_{\theta\phi} f_l\\,w$ at `s`.
    pub fn cross_fl(&mut self, s: Sample, theta: &Vector, phi: &Vector, w: &Vector, out: &mut Vector) -> Result<()> {
        self.check_point(theta, phi)?;
        self.check("w of cross_fl", w, self.dims.d_l)?;
        self.check("output of cross_fl", out, self.dims.d_u)?;
        self.counts.fl_cross += 1;
        self.problem.cross_fl(s, theta, phi, w, out);
        Ok(())
    }
    /// `out` ← $[\nabla^2_{\theta\phi} f_l]^\top u$ at `s`.
    pub fn cross_t_fl(&mut self, s: Sample, theta: &Vector, phi: &Vector, u: &Vector, out: &mut Vector) -> Result<()> {
        self.check_point(theta, phi)?;
        self.check("u of cross_t_fl", u, self.dims.d_u)?;
        self.check("output of cross_t_fl", out, self.dims.d_l)?;
        self.counts.fl_cross_t += 1;
        self.problem.cross_t_fl(s, theta, phi, u, out);
        Ok(())
    }
    /// Dense $\nabla^2_{\phi\phi} f_l$ at `s` (counted once in `fl_dense`).
    pub fn hess_fl(&mut self, s: Sample, theta: &Vector, phi: &Vector) -> Result<Matrix> {
        self.check_point(theta, phi)?;
        let d_l = self.dims().d_l;
        check_dense("a dense lower-level Hessian", d_l, d_l)?;
        self.counts.fl_dense += 1;
        Ok(self.problem.hess_fl(s, theta, phi))
    }
    /// Dense $\nabla^2_{\theta\phi} f_l$ at `s` (counted once in `fl_dense`).
    pub fn cross_matrix_fl(&mut self, s: Sample, theta: &Vector, phi: &Vector) -> Result<Matrix> {
        self.check_point(theta, phi)?;
        let d = self.dims();
        check_dense("a dense cross-derivative matrix", d.d_u, d.d_l)?;
        self.counts.fl_dense += 1;
        Ok(self.problem.cross_matrix_fl(s, theta, phi))
    }
}

/// Largest dense matrix an oracle or a solver allocates, in entries: $2^{28}$ f64 = 2 GiB, also the families'
/// limit per instance (`families::MAX_ENTRIES` is this constant), so that a matrix-free family at $d_l = 10^5$ with a method that
/// needs dense second derivatives (STABLE, the dense-solve estimator) gets a typed error, not an 80 GB allocation
/// failure.
pub const MAX_DENSE_ENTRIES: u64 = 1 << 28;

/// Error unless a dense `rows` × `cols` matrix fits [`MAX_DENSE_ENTRIES`]; `what` names the matrix. The error
/// names $d_l$ for a square matrix, and both sizes for a $d_u\times d_l$ one (either may be the large one), and
/// advises a method with Hessian-vector products only ([`check_dense_or`] gives other advice).
pub fn check_dense(what: &str, rows: usize, cols: usize) -> Result<()> {
    check_dense_or(
        what,
        rows,
        cols,
        "at this size use a method with Hessian-vector products only (ttsa, stocbio, bsa, aid-bio, sustain)",
    )
}

/// [`check_dense`] with the error's last clause, what to do instead, given by the caller.
pub fn check_dense_or(what: &str, rows: usize, cols: usize, instead: &str) -> Result<()> {
    let entries = (rows as u64).saturating_mul(cols as u64);
    if entries <= MAX_DENSE_ENTRIES {
        return Ok(());
    }
    let (name, value) = if rows == cols {
        ("d_l", cols.to_string())
    } else {
        ("d_u, d_l", format!("{rows}, {cols}"))
    };
    Err(BilevelError::invalid(
        name,
        value,
        &format!(
            "{what} ({rows} x {cols}) would take {:.1} GiB, above the limit of 2 GiB \
             (bilevel::problem::MAX_DENSE_ENTRIES); {instead}",
            entries as f64 * 8.0 / (1u64 << 30) as f64
        ),
    ))
}
