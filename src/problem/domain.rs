//! The upper-level feasible set $\Theta$ and its Euclidean projection $\mathcal{P}\_\Theta$ (Algs 4, 5, 8, 9).
//!
//! Constructors are the only door: a box or a ball can only be made by [`Domain::new_box`], [`Domain::new_ball`]
//! or deserialisation, all of which check the invariants (finite corners with `lo ≤ hi`, a finite centre and a
//! radius > 0), so [`Domain::project`] never meets an empty or inverted set.

use crate::error::{BilevelError, Result};
use crate::linalg::{Vector, check_vector};
use serde::{Deserialize, Serialize};

/// A closed convex set $\Theta\subseteq\mathbb{R}^{d_u}$ with a cheap projection.
///
/// JSON form: `{"kind": "unbounded"}`, `{"kind": "box", "lo": [..], "hi": [..]}`,
/// `{"kind": "ball", "center": [..], "radius": r}`; reading it checks the same invariants as the constructors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Domain {
    /// $\Theta = \mathbb{R}^{d_u}$.
    Unbounded,
    /// $\Theta = \\{\theta : lo \le \theta \le hi\\}$ componentwise.
    Box(BoxSet),
    /// $\Theta = \\{\theta : \\|\theta - c\\| \le r\\}$.
    Ball(BallSet),
}

/// A checked box $\\{lo \le \theta \le hi\\}$: equal lengths, finite corners, `lo ≤ hi` (build it with
/// [`Domain::new_box`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawBox")]
pub struct BoxSet {
    lo: Vec<f64>,
    hi: Vec<f64>,
}

/// A checked ball $\\{\\|\theta - c\\| \le r\\}$: finite centre, finite radius > 0 (build it with
/// [`Domain::new_ball`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawBall")]
pub struct BallSet {
    center: Vec<f64>,
    radius: f64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBox {
    lo: Vec<f64>,
    hi: Vec<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBall {
    center: Vec<f64>,
    radius: f64,
}

impl TryFrom<RawBox> for BoxSet {
    type Error = BilevelError;
    fn try_from(r: RawBox) -> Result<Self> {
        BoxSet::new(r.lo, r.hi)
    }
}

impl TryFrom<RawBall> for BallSet {
    type Error = BilevelError;
    fn try_from(r: RawBall) -> Result<Self> {
        BallSet::new(r.center, r.radius)
    }
}

impl BoxSet {
    fn new(lo: Vec<f64>, hi: Vec<f64>) -> Result<Self> {
        if lo.len() != hi.len() {
            return Err(BilevelError::DimensionMismatch {
                what: "box upper corner".into(),
                expected: lo.len(),
                got: hi.len(),
            });
        }
        crate::linalg::check_finite("box corners", &lo)?;
        crate::linalg::check_finite("box corners", &hi)?;
        if let Some(i) = lo.iter().zip(&hi).position(|(a, b)| a > b) {
            return Err(BilevelError::invalid(
                "box",
                format!("lo[{i}] = {} > hi[{i}] = {}", lo[i], hi[i]),
                "every lower bound must be <= its upper bound",
            ));
        }
        Ok(BoxSet { lo, hi })
    }
    /// Lower corner.
    pub fn lo(&self) -> &[f64] {
        &self.lo
    }
    /// Upper corner.
    pub fn hi(&self) -> &[f64] {
        &self.hi
    }
}

impl BallSet {
    fn new(center: Vec<f64>, radius: f64) -> Result<Self> {
        crate::linalg::check_finite("ball centre", &center)?;
        if !(radius.is_finite() && radius > 0.0) {
            return Err(BilevelError::invalid("radius", radius, "must be finite and > 0"));
        }
        Ok(BallSet { center, radius })
    }
    /// Centre $c$.
    pub fn center(&self) -> &[f64] {
        &self.center
    }
    /// Radius $r > 0$.
    pub fn radius(&self) -> f64 {
        self.radius
    }
}

impl Domain {
    /// A box, checked: equal lengths, finite corners, `lo ≤ hi`.
    pub fn new_box(lo: Vec<f64>, hi: Vec<f64>) -> Result<Self> {
        Ok(Domain::Box(BoxSet::new(lo, hi)?))
    }

    /// A ball, checked: finite centre, radius finite and > 0.
    pub fn new_ball(center: Vec<f64>, radius: f64) -> Result<Self> {
        Ok(Domain::Ball(BallSet::new(center, radius)?))
    }

    /// The dimension of the set, `None` for $\mathbb{R}^d$ (any $d$).
    pub fn dim(&self) -> Option<usize> {
        match self {
            Domain::Unbounded => None,
            Domain::Box(b) => Some(b.lo.len()),
            Domain::Ball(b) => Some(b.center.len()),
        }
    }

    /// Error unless the set lives in $\mathbb{R}^d$.
    pub fn check_dim(&self, d: usize) -> Result<()> {
        match self.dim() {
            Some(got) if got != d => Err(BilevelError::DimensionMismatch {
                what: "domain".into(),
                expected: d,
                got,
            }),
            _ => Ok(()),
        }
    }

    /// In-place Euclidean projection $\theta \leftarrow \mathcal{P}\_\Theta(\theta)$: the unchecked form used inside
    /// the algorithms, where `theta` has the problem's $d_u$ by construction. It never panics; a `theta` of another
    /// length is projected on the common coordinates only, so user input goes through [`Domain::projected`].
    pub fn project(&self, theta: &mut Vector) {
        match self {
            Domain::Unbounded => {}
            Domain::Box(b) => {
                for ((t, l), h) in theta.iter_mut().zip(&b.lo).zip(&b.hi) {
                    *t = t.clamp(*l, *h);
                }
            }
            Domain::Ball(b) => {
                let dist = theta
                    .iter()
                    .zip(&b.center)
                    .map(|(t, c)| (t - c).powi(2))
                    .sum::<f64>()
                    .sqrt();
                if dist > b.radius {
                    let s = b.radius / dist;
                    for (t, c) in theta.iter_mut().zip(&b.center) {
                        *t = c + s * (*t - c);
                    }
                }
            }
        }
    }

    /// Whether `theta` lies in $\Theta$ up to an absolute slack `tol` (false for a `theta` of the wrong length).
    pub fn contains(&self, theta: &Vector, tol: f64) -> bool {
        if self.dim().is_some_and(|d| d != theta.len()) {
            return false;
        }
        match self {
            Domain::Unbounded => true,
            Domain::Box(b) => theta
                .iter()
                .zip(&b.lo)
                .zip(&b.hi)
                .all(|((t, l), h)| *t >= l - tol && *t <= h + tol),
            Domain::Ball(b) => {
                theta
                    .iter()
                    .zip(&b.center)
                    .map(|(t, c)| (t - c).powi(2))
                    .sum::<f64>()
                    .sqrt()
                    <= b.radius + tol
            }
        }
    }

    /// Checked projection for user input: error unless `theta` is finite and (for a box or a ball) has the set's
    /// dimension.
    pub fn projected(&self, theta: &Vector) -> Result<Vector> {
        check_vector("theta", theta, self.dim().unwrap_or(theta.len()))?;
        let mut t = theta.clone();
        self.project(&mut t);
        Ok(t)
    }

    /// Short human-readable form, e.g. `box[-2,2]^3`.
    pub fn label(&self) -> String {
        match self {
            Domain::Unbounded => "R^d".into(),
            Domain::Box(b) => {
                let (lo, hi) = (&b.lo, &b.hi);
                let same = lo.iter().all(|l| *l == lo[0]) && hi.iter().all(|h| *h == hi[0]);
                if same && !lo.is_empty() {
                    format!("box[{},{}]^{}", lo[0], hi[0], lo.len())
                } else {
                    "box".into()
                }
            }
            Domain::Ball(b) => format!("ball(r={})", b.radius),
        }
    }
}
