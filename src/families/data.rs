//! Shared pieces of the data-driven families (eqs (4), (6), (8) and data cleaning): seeded regression data sets,
//! finite-sum sampling, and a smoothness lemma that turns bounds on a bounded region into valid $L_\phi$, $L_F$.
//!
//! # Finite-sum sampling
//! A data family's objective at level $\ell$ is an average over its data set $\\{(x_j, y_j)\\}\_{j<n}$ (training
//! set for $f_l$, validation set for $f_u$) plus a deterministic regulariser. At [`Sample::Exact`] an oracle
//! averages over all $n$ points. At [`Sample::Draw`]`(w)` it averages over a minibatch of $b$ indices drawn
//! uniformly **with replacement** from the Philox4x64-10 stream of key $(w, 16)$ for the upper level and $(w, 17)$
//! for the lower level (`problem::philox`). Each index is uniform on $\\{0,\dots,n-1\\}$, so every sampled oracle (linear in the
//! per-sample terms) is an unbiased estimate of the exact one, and every quantity at one sample uses one
//! minibatch. No allocation: the indices are regenerated from the word on each call.

use crate::linalg::{Matrix, Vector, sym_eig_range};
use crate::problem::philox::PhiloxStream;
use crate::problem::{Level, Sample};
use rand::{Rng, RngExt};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;

/// A regression data set: rows of `x` are the inputs $x_j\in\mathbb{R}^p$, `y` the targets.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    /// $n\times p$ inputs, one sample per row.
    pub x: Matrix,
    /// $n$ targets.
    pub y: Vector,
}

impl Dataset {
    /// $n$ samples $x_j = s\odot g_j$ ($g_j$ standard normal, per-feature scales $s$) and
    /// $y_j = x_j^\top w + \sigma\varepsilon_j$.
    pub fn linear(rng: &mut ChaCha8Rng, n: usize, scales: &Vector, w: &Vector, sigma: f64) -> Self {
        let p = scales.len();
        let x = Matrix::from_fn(n, p, |_, c| scales[c] * rng.sample::<f64, _>(StandardNormal));
        let y = Vector::from_fn(n, |j, _| {
            x.row(j).transpose().dot(w) + sigma * rng.sample::<f64, _>(StandardNormal)
        });
        Dataset { x, y }
    }

    /// Number of samples $n$.
    pub fn len(&self) -> usize {
        self.x.nrows()
    }

    /// Whether the set has no samples.
    pub fn is_empty(&self) -> bool {
        self.x.nrows() == 0
    }

    /// $A = X^\top X/n$ and $b = X^\top y/n$.
    pub fn moments(&self) -> (Matrix, Vector) {
        let n = self.len() as f64;
        (self.x.transpose() * &self.x / n, self.x.transpose() * &self.y / n)
    }

    /// $\max_j \\|x_j\\|^2$: a bound on $\lambda_{\max}$ of any minibatch average of $x_jx_j^\top$ (a convex
    /// combination of rank-one matrices).
    pub fn max_row_norm_sq(&self) -> f64 {
        (0..self.len())
            .map(|j| self.x.row(j).norm_squared())
            .fold(0.0, f64::max)
    }

    /// Per-sample norms $\\|x_j\\|$.
    pub fn row_norms(&self) -> Vec<f64> {
        (0..self.len()).map(|j| self.x.row(j).norm()).collect()
    }

    /// Per-sample max-norms $\\|x_j\\|\_\infty$.
    pub fn row_amax(&self) -> Vec<f64> {
        (0..self.len()).map(|j| self.x.row(j).amax()).collect()
    }
}

/// The minibatch of a sample: calls `f(j, weight)` for every term of the average at `s` (see the module docs).
///
/// At [`Sample::Exact`]: every $j<n$ with weight $1/n$. At [`Sample::Draw`]: $b$ uniform indices with weight $1/b$.
///
/// # Panics
/// At a drawn sample with `n = 0` (no index to draw; the families build with $n\ge1$).
pub fn for_each_in_batch(s: Sample, level: Level, n: usize, batch: usize, mut f: impl FnMut(usize, f64)) {
    match s {
        Sample::Exact => {
            let w = 1.0 / n as f64;
            for j in 0..n {
                f(j, w);
            }
        }
        Sample::Draw(word) => {
            // Philox with key (word, 16) upper or (word, 17) lower: kinds apart from the noise oracles' 1..=8, so a
            // sample's minibatch and its additive noise are independent (`problem::noise`).
            let mut rng = PhiloxStream::new(
                word,
                match level {
                    Level::Upper => 16,
                    Level::Lower => 17,
                },
            );
            let w = 1.0 / batch as f64;
            for _ in 0..batch {
                f(rng.random_range(0..n), w);
            }
        }
    }
}

/// A data family's draw: one random word (the minibatch is derived from it).
pub fn draw_word(rng: &mut ChaCha8Rng) -> Sample {
    Sample::Draw(rng.next_u64())
}

/// Bounds that hold on a convex region $R = \Theta\times\\{\phi : \\|\phi\\|\le B_\phi\\}$ containing the graph of
/// $\phi^\star$, from which [`RegionBounds::l_phi_star`] and [`RegionBounds::l_f`] follow.
///
/// With $s = \\|\Delta\theta\\| + \\|\Delta\phi\\|$ for two points of $R$:
/// $\\|\Delta\nabla_\theta f_u\\|, \\|\Delta\nabla_\phi f_u\\| \le L_u s$;
/// $\\|\Delta\nabla^2_{\theta\phi} f_l\\|, \\|\Delta\nabla^2_{\phi\phi} f_l\\| \le L_2 s$;
/// $\\|\nabla^2_{\theta\phi} f_l\\|\le C$ and $\\|\nabla_\phi f_u\\|\le G$ on $R$; $\nabla^2_{\phi\phi} f_l\succeq\mu I$.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RegionBounds {
    /// $\mu$: lower bound on the LL Hessian over $\Theta$.
    pub mu: f64,
    /// $C$: bound on $\\|\nabla^2_{\theta\phi} f_l\\|$ on $R$.
    pub cross: f64,
    /// $G$: bound on $\\|\nabla_\phi f_u\\|$ on $R$.
    pub grad_phi_fu: f64,
    /// $L_u$: Lipschitz constant of $\nabla f_u$ on $R$ (in the norm $s$).
    pub hess_fu: f64,
    /// $L_2$: Lipschitz constant of $\nabla^2 f_l$ blocks on $R$ (in the norm $s$).
    pub third_fl: f64,
}

impl RegionBounds {
    /// $L_\phi = C/\mu$: $J = -H^{-1}[\nabla^2_{\theta\phi} f_l]^\top$ on the graph, so $\\|J\\|\le C/\mu$.
    pub fn l_phi_star(&self) -> f64 {
        self.cross / self.mu
    }

    /// $L_F = (1+L_\phi)(1 + C/\mu)(L_u + G L_2/\mu)$.
    ///
    /// Proof: $\nabla F = \nabla_\theta f_u - C H^{-1}\nabla_\phi f_u$ on the graph; between two graph points
    /// $s\le(1+L_\phi)\\|\Delta\theta\\|$, the segment stays in $R$ (convex), and
    /// $\\|\Delta(CH^{-1}g)\\|\le s\\,(L_2G/\mu + CL_2G/\mu^2 + CL_u/\mu)$ by the product rule with
    /// $\\|\Delta H^{-1}\\|\le L_2 s/\mu^2$. Adding $L_u s$ for $\nabla_\theta f_u$ gives the bound.
    pub fn l_f(&self) -> f64 {
        (1.0 + self.l_phi_star())
            * (1.0 + self.cross / self.mu)
            * (self.hess_fu + self.grad_phi_fu * self.third_fl / self.mu)
    }
}

/// Largest eigenvalue of a symmetric matrix.
pub fn lambda_max(m: &Matrix) -> f64 {
    sym_eig_range(m).1
}

/// Smallest eigenvalue of a symmetric matrix.
pub fn lambda_min(m: &Matrix) -> f64 {
    sym_eig_range(m).0
}

/// Ridge bound: the minimiser of $\frac{1}{2n}\\|Z\phi - y\\|^2 + \frac{\lambda}{2}\\|\phi\\|^2$ has
/// $\\|\phi\\|\le \\|y\\|/(2\sqrt{\lambda n})$ whatever $Z$, since $\\|(Z^\top Z+\lambda I)^{-1}Z^\top\\|\le
/// 1/(2\sqrt\lambda)$.
pub fn ridge_norm_bound(y: &Vector, lambda: f64) -> f64 {
    y.norm() / (2.0 * (lambda * y.len() as f64).sqrt())
}

/// Check a batch size and a sample count (shared by the data families' specs).
pub fn check_sizes(batch: usize, sets: &[(&str, usize)]) -> crate::error::Result<()> {
    use crate::error::BilevelError;
    if batch == 0 {
        return Err(BilevelError::invalid("batch", batch, "must be >= 1"));
    }
    for (name, n) in sets {
        if *n == 0 {
            return Err(BilevelError::invalid(name, n, "must be >= 1"));
        }
    }
    Ok(())
}
