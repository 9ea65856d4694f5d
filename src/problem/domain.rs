//! The upper-level feasible set $\Theta$ and its Euclidean projection $\mathcal{P}\_\Theta$ (Algs 4, 5, 8, 9).

use crate::error::{BilevelError, Result};
use crate::linalg::{Vector, check_vector};
use serde::Serialize;

/// A closed convex set $\Theta\subseteq\mathbb{R}^{d_u}$ with a cheap projection.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum Domain {
    /// $\Theta = \mathbb{R}^{d_u}$.
    Unbounded,
    /// $\Theta = \\{\theta : lo \le \theta \le hi\\}$ componentwise.
    Box {
        /// Lower corner.
        lo: Vec<f64>,
        /// Upper corner.
        hi: Vec<f64>,
    },
    /// $\Theta = \\{\theta : \\|\theta - c\\| \le r\\}$.
    Ball {
        /// Centre $c$.
        center: Vec<f64>,
        /// Radius $r$.
        radius: f64,
    },
}

impl Domain {
    /// A box, checked: equal lengths, finite corners, `lo ≤ hi`.
    pub fn new_box(lo: Vec<f64>, hi: Vec<f64>) -> Result<Self> {
        if lo.len() != hi.len() {
            return Err(BilevelError::DimensionMismatch {
                what: "box upper corner".into(),
                expected: lo.len(),
                got: hi.len(),
            });
        }
        crate::linalg::check_finite("box corners", &lo)?;
        crate::linalg::check_finite("box corners", &hi)?;
        if lo.iter().zip(&hi).any(|(a, b)| a > b) {
            return Err(BilevelError::invalid(
                "box",
                "lo > hi",
                "every lower bound must be ≤ its upper bound",
            ));
        }
        Ok(Domain::Box { lo, hi })
    }

    /// A ball, checked: finite centre, radius > 0.
    pub fn new_ball(center: Vec<f64>, radius: f64) -> Result<Self> {
        crate::linalg::check_finite("ball centre", &center)?;
        if !(radius.is_finite() && radius > 0.0) {
            return Err(BilevelError::invalid("radius", radius, "must be finite and > 0"));
        }
        Ok(Domain::Ball { center, radius })
    }

    /// Error unless the set lives in $\mathbb{R}^d$.
    pub fn check_dim(&self, d: usize) -> Result<()> {
        let got = match self {
            Domain::Unbounded => return Ok(()),
            Domain::Box { lo, .. } => lo.len(),
            Domain::Ball { center, .. } => center.len(),
        };
        if got != d {
            return Err(BilevelError::DimensionMismatch {
                what: "domain".into(),
                expected: d,
                got,
            });
        }
        Ok(())
    }

    /// In-place Euclidean projection $\theta \leftarrow \mathcal{P}\_\Theta(\theta)$.
    pub fn project(&self, theta: &mut Vector) {
        match self {
            Domain::Unbounded => {}
            Domain::Box { lo, hi } => {
                for ((t, l), h) in theta.iter_mut().zip(lo).zip(hi) {
                    *t = t.clamp(*l, *h);
                }
            }
            Domain::Ball { center, radius } => {
                let dist = theta
                    .iter()
                    .zip(center)
                    .map(|(t, c)| (t - c).powi(2))
                    .sum::<f64>()
                    .sqrt();
                if dist > *radius {
                    let s = radius / dist;
                    for (t, c) in theta.iter_mut().zip(center) {
                        *t = c + s * (*t - c);
                    }
                }
            }
        }
    }

    /// Whether `theta` lies in $\Theta$ up to an absolute slack `tol`.
    pub fn contains(&self, theta: &Vector, tol: f64) -> bool {
        match self {
            Domain::Unbounded => true,
            Domain::Box { lo, hi } => theta
                .iter()
                .zip(lo)
                .zip(hi)
                .all(|((t, l), h)| *t >= l - tol && *t <= h + tol),
            Domain::Ball { center, radius } => {
                theta
                    .iter()
                    .zip(center)
                    .map(|(t, c)| (t - c).powi(2))
                    .sum::<f64>()
                    .sqrt()
                    <= radius + tol
            }
        }
    }

    /// Checked projection for user input.
    pub fn projected(&self, theta: &Vector) -> Result<Vector> {
        if let Domain::Box { lo, .. } = self {
            check_vector("theta", theta, lo.len())?;
        }
        if let Domain::Ball { center, .. } = self {
            check_vector("theta", theta, center.len())?;
        }
        let mut t = theta.clone();
        self.project(&mut t);
        Ok(t)
    }

    /// Short human-readable form, e.g. `box[-2,2]^3`.
    pub fn label(&self) -> String {
        match self {
            Domain::Unbounded => "R^d".into(),
            Domain::Box { lo, hi } => {
                let same = lo.iter().all(|l| *l == lo[0]) && hi.iter().all(|h| *h == hi[0]);
                if same && !lo.is_empty() {
                    format!("box[{},{}]^{}", lo[0], hi[0], lo.len())
                } else {
                    "box".into()
                }
            }
            Domain::Ball { radius, .. } => format!("ball(r={radius})"),
        }
    }
}
