//! The bilevel problem of the lecture's eqs (1)–(3) as a set of oracles.
//!
//! $$\min_{\theta\in\Theta} F(\theta) = f_u(\theta, \phi^\star(\theta)),\qquad
//! \phi^\star(\theta) = \arg\min_{\phi} f_l(\theta, \phi).$$
//!
//! A family implements [`Bilevel`]: the first- and second-order oracles of $f_u$ and $f_l$ at an exact point or at
//! a drawn [`Sample`], plus what it knows in closed form ($\phi^\star$, $F$, $\nabla F$, $\theta^\star$, its
//! [`Constants`] and its set $\Theta$). Algorithms never call a family directly: they go through an [`Oracle`],
//! which checks dimensions, draws samples from the run's random stream and counts every call per level and kind.
//!
//! # Conventions
//! - The cross derivative $\nabla^2_{\theta\phi} f_l \in \mathbb{R}^{d_u\times d_l}$ has entries
//!   $\partial^2 f_l / \partial\theta_i\partial\phi_j$. [`Bilevel::cross_fl`] multiplies it by $w\in\mathbb{R}^{d_l}$,
//!   [`Bilevel::cross_t_fl`] multiplies its transpose by $u\in\mathbb{R}^{d_u}$.
//! - The Jacobian of the lower-level solution is $J = d\phi^\star/d\theta \in \mathbb{R}^{d_l\times d_u}$, so that
//!   $J = -[\nabla^2_{\phi\phi} f_l]^{-1} [\nabla^2_{\theta\phi} f_l]^\top$ and
//!   $\nabla F = \nabla_\theta f_u + J^\top \nabla_\phi f_u$. The lecture's (16)–(17) write the transpose of $J$
//!   (its "IG" is $J^\top \in \mathbb{R}^{d_u\times d_l}$); (15) holds in this convention as
//!   $[\nabla^2_{\theta\phi} f_l]^\top + \nabla^2_{\phi\phi} f_l\\, J = 0$.

mod checked;
mod domain;
mod noise;
mod oracle;
pub mod philox;

pub use checked::Checked;
pub use domain::{BallSet, BoxSet, Domain};
pub use noise::{NoiseLevels, Noisy};
pub use oracle::{Counts, MAX_DENSE_ENTRIES, Oracle, check_dense, check_dense_or};

use crate::error::Result;
use crate::linalg::{Matrix, Vector, spd_solve};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

/// Which level an oracle call or a sample belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Level {
    /// The upper level, $f_u$.
    Upper,
    /// The lower level, $f_l$.
    Lower,
}

/// Where an oracle is evaluated: at the exact (expected) objective, or at one drawn sample.
///
/// A drawn sample is one random word; a family turns it into whatever it needs (a data index, a minibatch, a seed
/// for additive noise). Every quantity evaluated at the same `Sample` uses the same randomness, as a minibatch does:
/// this is what lets momentum methods (SUSTAIN, eqs 21–22) difference two points at one sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Sample {
    /// The exact objective (the expectation over samples).
    Exact,
    /// One draw, identified by its random word.
    Draw(u64),
}

/// The constants of the lecture's assumption slides, as they hold for a family on its set $\Theta$.
///
/// Each is exact where the family can compute it (quadratic families), otherwise a valid bound on $\Theta$;
/// `None` means the quantity is not bounded on the family's domain. Tests check every declared constant on sampled
/// points, so a theorem's assumptions are verified rather than assumed.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct Constants {
    /// $\mu_l$: strong convexity of $f_l(\theta,\cdot)$, uniformly over $\theta\in\Theta$.
    pub mu_l: f64,
    /// $L_l$: Lipschitz constant of $\nabla_\phi f_l(\theta,\cdot)$ (largest LL Hessian eigenvalue).
    pub l_l: f64,
    /// The largest eigenvalue of the LL Hessian **at one drawn sample** (a minibatch of a finite-sum family), when it
    /// can exceed $L_l$; `None` when drawn samples carry only zero-mean additive noise. Methods that take many steps
    /// on one sample (ITD-BiO and PZOBO unroll $T$ steps on the same minibatch) need $\beta < 2/L_{\text{sample}}$.
    pub l_l_sample: Option<f64>,
    /// $C_{\theta\phi}$: bound on $\\|\nabla^2_{\theta\phi} f_l\\|$.
    pub cross_bound: Option<f64>,
    /// Lipschitz constant in $\phi$ of $\nabla_\theta f_u$ and $\nabla_\phi f_u$ (`None`: not Lipschitz).
    pub l_fu_phi: Option<f64>,
    /// Lipschitz constant in $\theta$ of $\nabla_\phi f_u$ (`None`: not Lipschitz).
    pub l_fu_theta: Option<f64>,
    /// Bound on $\\|\nabla_\phi f_u\\|$ over $\Theta\times\mathbb{R}^{d_l}$.
    pub grad_phi_fu_bound: Option<f64>,
    /// Lipschitz constant in $\phi$ of $\nabla^2_{\phi\phi} f_l$ and $\nabla^2_{\theta\phi} f_l$ (0 if quadratic in $\phi$).
    pub l_hess_phi: Option<f64>,
    /// $L_\phi$: Lipschitz constant of $\phi^\star$ on $\Theta$.
    pub l_phi_star: f64,
    /// $L_F$: Lipschitz constant of $\nabla F$ on $\Theta$.
    pub l_f: f64,
    /// $\mu_F$ of (39) (with $c_F = \mu_F/2$): strong convexity of $F$ on $\Theta$, if $F$ is strongly convex.
    pub mu_f: Option<f64>,
    /// $\rho_F$: weak-convexity modulus, $F + (\rho_F/2)\\|\cdot\\|^2$ convex on $\Theta$ (0 when $F$ is convex).
    pub weak_convexity: f64,
}

/// Sizes of a problem.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Dims {
    /// Upper-level dimension $d_u$.
    pub d_u: usize,
    /// Lower-level dimension $d_l$.
    pub d_l: usize,
}

/// A bilevel problem: oracles of $f_u$, $f_l$ and what the family knows in closed form.
///
/// The oracle methods are the unchecked core: they assume correctly sized arguments (a wrong size may panic inside
/// nalgebra) and are meant to be called through an [`Oracle`], which checks sizes and counts calls, or through the
/// `try_` methods of [`Checked`] (implemented for every `Bilevel`), which return typed errors. Output arguments are
/// overwritten.
pub trait Bilevel: Send + Sync {
    /// Short registry name, e.g. `quadratic`.
    fn name(&self) -> &str;
    /// $d_u$ and $d_l$.
    fn dims(&self) -> Dims;

    /// Draw one sample of `level` from `rng`. Deterministic families return [`Sample::Exact`].
    fn draw(&self, level: Level, rng: &mut ChaCha8Rng) -> Sample;

    /// $f_u(\theta, \phi)$ at sample `s`.
    fn f_u(&self, s: Sample, theta: &Vector, phi: &Vector) -> f64;
    /// $f_l(\theta, \phi)$ at sample `s`.
    fn f_l(&self, s: Sample, theta: &Vector, phi: &Vector) -> f64;
    /// `out` ← $\nabla_\theta f_u(\theta, \phi)$ (length $d_u$).
    fn grad_theta_fu(&self, s: Sample, theta: &Vector, phi: &Vector, out: &mut Vector);
    /// `out` ← $\nabla_\phi f_u(\theta, \phi)$ (length $d_l$).
    fn grad_phi_fu(&self, s: Sample, theta: &Vector, phi: &Vector, out: &mut Vector);
    /// `out` ← $\nabla_\phi f_l(\theta, \phi)$ (length $d_l$).
    fn grad_phi_fl(&self, s: Sample, theta: &Vector, phi: &Vector, out: &mut Vector);
    /// `out` ← $\nabla_\theta f_l(\theta, \phi)$ (length $d_u$); used by the value-function methods (28)–(29).
    fn grad_theta_fl(&self, s: Sample, theta: &Vector, phi: &Vector, out: &mut Vector);
    /// `out` ← $\nabla^2_{\phi\phi} f_l(\theta, \phi)\\, v$ (length $d_l$).
    fn hvp_fl(&self, s: Sample, theta: &Vector, phi: &Vector, v: &Vector, out: &mut Vector);
    /// `out` ← $\nabla^2_{\theta\phi} f_l(\theta, \phi)\\, w$ for $w\in\mathbb{R}^{d_l}$ (length $d_u$).
    fn cross_fl(&self, s: Sample, theta: &Vector, phi: &Vector, w: &Vector, out: &mut Vector);
    /// `out` ← $[\nabla^2_{\theta\phi} f_l(\theta, \phi)]^\top u$ for $u\in\mathbb{R}^{d_u}$ (length $d_l$).
    fn cross_t_fl(&self, s: Sample, theta: &Vector, phi: &Vector, u: &Vector, out: &mut Vector);

    /// Dense $\nabla^2_{\phi\phi} f_l$ ($d_l\times d_l$), built from products; for checks and small $d$.
    fn hess_fl(&self, s: Sample, theta: &Vector, phi: &Vector) -> Matrix {
        let d = self.dims().d_l;
        let mut h = Matrix::zeros(d, d);
        let mut e = Vector::zeros(d);
        let mut col = Vector::zeros(d);
        for j in 0..d {
            e[j] = 1.0;
            self.hvp_fl(s, theta, phi, &e, &mut col);
            h.set_column(j, &col);
            e[j] = 0.0;
        }
        h
    }

    /// Dense $\nabla^2_{\theta\phi} f_l$ ($d_u\times d_l$), built from products; for checks and small $d$.
    fn cross_matrix_fl(&self, s: Sample, theta: &Vector, phi: &Vector) -> Matrix {
        let Dims { d_u, d_l } = self.dims();
        let mut c = Matrix::zeros(d_u, d_l);
        let mut e = Vector::zeros(d_l);
        let mut col = Vector::zeros(d_u);
        for j in 0..d_l {
            e[j] = 1.0;
            self.cross_fl(s, theta, phi, &e, &mut col);
            c.set_column(j, &col);
            e[j] = 0.0;
        }
        c
    }

    /// $\phi^\star(\theta)$ in closed form (a solve at most).
    ///
    /// # Panics
    /// May panic when `theta` is not of length $d_u$: unchecked, as every method here (a `Result` reports numerical
    /// failures only). User code calls [`Checked::try_phi_star`], which returns
    /// [`crate::BilevelError::DimensionMismatch`] instead.
    fn phi_star(&self, theta: &Vector) -> Vector;

    /// $J = d\phi^\star/d\theta$ ($d_l\times d_u$). Default: the implicit-function formula (16)–(17),
    /// $J = -[\nabla^2_{\phi\phi} f_l]^{-1}[\nabla^2_{\theta\phi} f_l]^\top$ at $\phi^\star(\theta)$, by a dense solve;
    /// an error when those dense matrices exceed [`MAX_DENSE_ENTRIES`] (before forming them).
    ///
    /// # Panics
    /// May panic when `theta` is not of length $d_u$: unchecked, as every method here (a `Result` reports numerical
    /// failures and sizes only). User code calls [`Checked::try_jacobian_phi_star`], which returns
    /// [`crate::BilevelError::DimensionMismatch`] instead.
    fn jacobian_phi_star(&self, theta: &Vector) -> Result<Matrix> {
        // Dense d_l x d_l and d_u x d_l matrices: refuse sizes above the dense limit before forming them (the
        // exact gradient behind metrics such as grad_norm_sq goes through here).
        let d = self.dims();
        let instead =
            "the exact Jacobian of phi* (and grad F, and the metrics built on it) needs them: use smaller sizes";
        check_dense_or("the Jacobian's lower-level Hessian", d.d_l, d.d_l, instead)?;
        check_dense_or("the Jacobian's cross derivative", d.d_u, d.d_l, instead)?;
        let phi = self.phi_star(theta);
        let h = self.hess_fl(Sample::Exact, theta, &phi);
        let c = self.cross_matrix_fl(Sample::Exact, theta, &phi);
        Ok(-spd_solve("lower-level Hessian at phi*", &h, &c.transpose())?)
    }

    /// $F(\theta) = f_u(\theta, \phi^\star(\theta))$.
    ///
    /// # Panics
    /// May panic when `theta` is not of length $d_u$: unchecked, as every method here (a `Result` reports numerical
    /// failures only). User code calls [`Checked::try_value_f`], which returns
    /// [`crate::BilevelError::DimensionMismatch`] instead.
    fn value_f(&self, theta: &Vector) -> f64 {
        self.f_u(Sample::Exact, theta, &self.phi_star(theta))
    }

    /// $\nabla F(\theta) = \nabla_\theta f_u + J^\top\nabla_\phi f_u$ at $(\theta,\phi^\star(\theta))$, eq (13).
    ///
    /// # Panics
    /// May panic when `theta` is not of length $d_u$: unchecked, as every method here (a `Result` reports numerical
    /// failures only). User code calls [`Checked::try_grad_f`], which returns
    /// [`crate::BilevelError::DimensionMismatch`] instead.
    fn grad_f(&self, theta: &Vector) -> Result<Vector> {
        let Dims { d_u, d_l } = self.dims();
        let phi = self.phi_star(theta);
        let j = self.jacobian_phi_star(theta)?;
        let mut gt = Vector::zeros(d_u);
        let mut gp = Vector::zeros(d_l);
        self.grad_theta_fu(Sample::Exact, theta, &phi, &mut gt);
        self.grad_phi_fu(Sample::Exact, theta, &phi, &mut gp);
        gt.gemv_tr(1.0, &j, &gp, 1.0);
        Ok(gt)
    }

    /// The minimiser $\theta^\star$ of $F$ over $\Theta$, where the family knows it.
    fn theta_star(&self) -> Option<Vector>;

    /// The constants of the lecture's assumptions, as they hold for this family on $\Theta$.
    fn constants(&self) -> Constants;

    /// The upper-level feasible set $\Theta$.
    fn domain(&self) -> &Domain;

    /// One-line description, with the lecture's equation it instantiates.
    fn describe(&self) -> String;
}
