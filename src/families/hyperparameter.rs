//! Hyperparameter optimisation, eq (4): per-coordinate ridge regularisation tuned on validation data.
//!
//! $$f_l(\theta,\phi) = \frac1m\sum_{j<m}\tfrac12(x_j^\top\phi - y_j)^2 + \\|\theta\odot\phi\\|^2,\qquad
//! f_u(\theta,\phi) = \frac1n\sum_{i<n}\tfrac12(\bar x_i^\top\phi - \bar y_i)^2,$$
//! training data $(x_j, y_j)$, validation data $(\bar x_i,\bar y_i)$, $d_u = d_l = p$, $\Theta = [\ell, h]^p$.
//! With $A = X^\top X/m$, $b = X^\top y/m$ (and $\bar A$, $\bar b$ for validation):
//! $$\nabla^2_{\phi\phi} f_l = A + 2\\,\mathrm{diag}(\theta^2),\qquad \nabla^2_{\theta\phi} f_l = 4\\,\mathrm{diag}(\theta\odot\phi),
//! \qquad \phi^\star(\theta) = (A + 2\\,\mathrm{diag}(\theta^2))^{-1}b.$$
//! The LL Hessian depends on $\theta$, so iterative differentiation keeps its factor $t$ (references §3): this
//! is the family for ITD tests. $F$ is smooth but not convex in general; $\theta^\star$ has no closed form
//! (`theta_star` is `None`).
//!
//! Both levels are finite sums, sampled as in [`super::data`] (minibatch of `batch` indices per draw).
//!
//! # Constants on $\Theta$
//! $\mu_l = \lambda_{\min}(A) + 2\ell^2$ and $L_l = \lambda_{\max}(A) + 2h^2$ are exact (attained at
//! $\theta = \ell\mathbf 1$, $h\mathbf 1$). $\\|\phi^\star\\|\le B_\phi = \min(\\|b\\|/\mu_l, \\|y\\|/\sqrt{m\mu_l})$
//! (the second from $\phi^{\star\top}H\phi^\star = b^\top\phi^\star\le\\|y\\|m^{-1/2}(\phi^{\star\top}A\phi^\star)^{1/2}$). The cross derivative and
//! $\nabla_\phi f_u$ grow with $\\|\phi\\|$: unbounded on $\Theta\times\mathbb{R}^{d_l}$ (`None`; the lecture's
//! bounded-cross and bounded-gradient assumptions fail globally, they hold on the bounded region used below).
//! $L_\phi$ and $L_F$ are valid bounds from [`super::data::RegionBounds`] with $C = 4hB_\phi$,
//! $G = \lambda_{\max}(\bar A)B_\phi + \\|\bar b\\|$, $L_u = \lambda_{\max}(\bar A)$, $L_2 = 4\max(B_\phi, h)$;
//! the weak-convexity modulus is declared as $L_F$ (valid, not tight).

use super::data::{Dataset, RegionBounds, check_sizes, draw_word, for_each_in_batch, lambda_max, lambda_min};
use super::random::gaussian_vector;
use crate::error::{BilevelError, Result};
use crate::linalg::{Matrix, Vector, spd_solve_vec};
use crate::problem::{Bilevel, Constants, Dims, Domain, Level, Sample};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

/// Parameters of [`Hyperparameter`]; checked by [`HyperparameterSpec::build`].
///
/// Size limit: the instance holds the $(m + n)\times p$ data and $A$, and `phi_star` factors a $p\times p$ Hessian,
/// [`HyperparameterSpec::entries`] $\le$ [`MAX_ENTRIES`](super::MAX_ENTRIES) (2 GiB).
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HyperparameterSpec {
    /// Number of features $p = d_u = d_l$.
    pub p: usize,
    /// Training samples $m$.
    pub m: usize,
    /// Validation samples $n$.
    pub n: usize,
    /// Minibatch size of one draw.
    pub batch: usize,
    /// Lower corner $\ell > 0$ of $\Theta = [\ell, h]^p$.
    pub lo: f64,
    /// Upper corner $h$.
    pub hi: f64,
    /// Label noise standard deviation.
    pub label_noise: f64,
    /// Seed of the data generator.
    pub seed: u64,
}

impl Default for HyperparameterSpec {
    fn default() -> Self {
        HyperparameterSpec {
            p: 4,
            m: 40,
            n: 30,
            batch: 1,
            lo: 0.05,
            hi: 1.0,
            label_noise: 0.5,
            seed: 0,
        }
    }
}

impl HyperparameterSpec {
    /// The `f64` entries the instance holds and its `phi_star` forms, checked by [`HyperparameterSpec::build`]
    /// against [`MAX_ENTRIES`](super::MAX_ENTRIES): $(m + n)(p + 1) + 3p^2 + 3p$ (saturating).
    pub fn entries(&self) -> u64 {
        Self::count(self.p, self.m, self.n)
    }

    fn count(p: usize, m: usize, n: usize) -> u64 {
        super::entries(&[&[m, p], &[n, p], &[m], &[n], &[3, p, p], &[3, p]])
    }

    /// Check the parameters and generate the data.
    pub fn build(&self) -> Result<Hyperparameter> {
        if self.p == 0 {
            return Err(BilevelError::invalid("p", self.p, "must be >= 1"));
        }
        check_sizes(self.batch, &[("m", self.m), ("n", self.n)])?;
        if !(self.lo.is_finite() && self.lo > 0.0) {
            return Err(BilevelError::invalid("lo", self.lo, "must be finite and > 0"));
        }
        if !(self.hi.is_finite() && self.hi >= self.lo) {
            return Err(BilevelError::invalid("hi", self.hi, "must be finite and >= lo"));
        }
        if !(self.label_noise.is_finite() && self.label_noise >= 0.0) {
            return Err(BilevelError::invalid(
                "label_noise",
                self.label_noise,
                "must be finite and >= 0",
            ));
        }
        super::check_storage(
            "hyperparameter",
            &[("p", self.p), ("m", self.m), ("n", self.n)],
            |v| Self::count(v[0], v[1], v[2]),
            "(m + n) x p data, p x p A, and the p x p Hessian phi_star factors with its copy",
            "lower the sizes named (the construction also eigendecomposes p x p matrices, O(p^3) time)",
        )?;
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        let p = self.p;
        // Features on different scales (0.5 to 2): per-coordinate regularisation has something to tune.
        let scales = Vector::from_fn(p, |i, _| {
            if p == 1 {
                1.0
            } else {
                0.5 * 4f64.powf(i as f64 / (p - 1) as f64)
            }
        });
        let w = gaussian_vector(&mut rng, p);
        let train = Dataset::linear(&mut rng, self.m, &scales, &w, self.label_noise);
        let val = Dataset::linear(&mut rng, self.n, &scales, &w, self.label_noise);
        let domain = Domain::new_box(vec![self.lo; p], vec![self.hi; p])?;
        let (a, b) = train.moments();
        let (a_v, b_v) = val.moments();
        let mu_l = lambda_min(&a) + 2.0 * self.lo * self.lo;
        if mu_l <= 0.0 {
            return Err(BilevelError::NotPositiveDefinite {
                what: "lower-level Hessian".into(),
                min_eig: mu_l,
            });
        }
        let lam_a = lambda_max(&a);
        let lam_v = lambda_max(&a_v);
        // φ*ᵀHφ* = bᵀφ* ≤ (‖y‖/√m)(φ*ᵀAφ*)^{1/2} ≤ (‖y‖/√m)(φ*ᵀHφ*)^{1/2}, so ‖φ*‖² ≤ ‖y‖²/(m μ_l).
        let b_phi = (b.norm() / mu_l).min(train.y.norm() / (self.m as f64 * mu_l).sqrt());
        let region = RegionBounds {
            mu: mu_l,
            cross: 4.0 * self.hi * b_phi,
            grad_phi_fu: lam_v * b_phi + b_v.norm(),
            hess_fu: lam_v,
            third_fl: 4.0 * b_phi.max(self.hi),
        };
        let l_f = region.l_f();
        let constants = Constants {
            mu_l,
            l_l: lam_a + 2.0 * self.hi * self.hi,
            l_l_sample: Some(train.max_row_norm_sq() + 2.0 * self.hi * self.hi),
            cross_bound: None,
            l_fu_phi: Some(lam_v),
            l_fu_theta: Some(0.0),
            grad_phi_fu_bound: None,
            l_hess_phi: Some(4.0 * self.hi),
            l_phi_star: region.l_phi_star(),
            l_f,
            mu_f: None,
            weak_convexity: l_f,
        };
        Ok(Hyperparameter {
            spec: self.clone(),
            train,
            val,
            a,
            b,
            constants,
            domain,
        })
    }
}

/// The hyperparameter-optimisation family of eq (4) (see the module docs).
#[derive(Debug, Clone)]
pub struct Hyperparameter {
    spec: HyperparameterSpec,
    /// Training set (lower level).
    pub train: Dataset,
    /// Validation set (upper level).
    pub val: Dataset,
    a: Matrix,
    b: Vector,
    constants: Constants,
    domain: Domain,
}

impl Hyperparameter {
    /// The parameters it was built from.
    pub fn spec(&self) -> &HyperparameterSpec {
        &self.spec
    }

    fn upper_residuals(&self, s: Sample, phi: &Vector, mut f: impl FnMut(usize, f64, f64)) {
        for_each_in_batch(s, Level::Upper, self.val.len(), self.spec.batch, |i, w| {
            let r = self.val.x.row(i).transpose().dot(phi) - self.val.y[i];
            f(i, r, w);
        });
    }

    fn lower_residuals(&self, s: Sample, phi: &Vector, mut f: impl FnMut(usize, f64, f64)) {
        for_each_in_batch(s, Level::Lower, self.train.len(), self.spec.batch, |j, w| {
            let r = self.train.x.row(j).transpose().dot(phi) - self.train.y[j];
            f(j, r, w);
        });
    }
}

impl Bilevel for Hyperparameter {
    fn name(&self) -> &str {
        "hyperparameter"
    }
    fn dims(&self) -> Dims {
        Dims {
            d_u: self.spec.p,
            d_l: self.spec.p,
        }
    }
    fn draw(&self, _level: Level, rng: &mut ChaCha8Rng) -> Sample {
        draw_word(rng)
    }
    fn f_u(&self, s: Sample, _theta: &Vector, phi: &Vector) -> f64 {
        let mut v = 0.0;
        self.upper_residuals(s, phi, |_, r, w| v += w * 0.5 * r * r);
        v
    }
    fn f_l(&self, s: Sample, theta: &Vector, phi: &Vector) -> f64 {
        let mut v = theta.component_mul(phi).norm_squared();
        self.lower_residuals(s, phi, |_, r, w| v += w * 0.5 * r * r);
        v
    }
    fn grad_theta_fu(&self, _s: Sample, _theta: &Vector, _phi: &Vector, out: &mut Vector) {
        out.fill(0.0);
    }
    fn grad_phi_fu(&self, s: Sample, _theta: &Vector, phi: &Vector, out: &mut Vector) {
        out.fill(0.0);
        self.upper_residuals(s, phi, |i, r, w| {
            for (o, x) in out.iter_mut().zip(self.val.x.row(i).iter()) {
                *o += w * r * x;
            }
        });
    }
    fn grad_phi_fl(&self, s: Sample, theta: &Vector, phi: &Vector, out: &mut Vector) {
        for k in 0..out.len() {
            out[k] = 2.0 * theta[k] * theta[k] * phi[k];
        }
        self.lower_residuals(s, phi, |j, r, w| {
            for (o, x) in out.iter_mut().zip(self.train.x.row(j).iter()) {
                *o += w * r * x;
            }
        });
    }
    fn grad_theta_fl(&self, _s: Sample, theta: &Vector, phi: &Vector, out: &mut Vector) {
        // ∂/∂θ_k of θ_k²φ_k²; the data term does not depend on θ.
        for k in 0..out.len() {
            out[k] = 2.0 * theta[k] * phi[k] * phi[k];
        }
    }
    fn hvp_fl(&self, s: Sample, theta: &Vector, _phi: &Vector, v: &Vector, out: &mut Vector) {
        for k in 0..out.len() {
            out[k] = 2.0 * theta[k] * theta[k] * v[k];
        }
        for_each_in_batch(s, Level::Lower, self.train.len(), self.spec.batch, |j, w| {
            let row = self.train.x.row(j);
            let xv = row.transpose().dot(v);
            for (o, x) in out.iter_mut().zip(row.iter()) {
                *o += w * xv * x;
            }
        });
    }
    fn cross_fl(&self, _s: Sample, theta: &Vector, phi: &Vector, w: &Vector, out: &mut Vector) {
        for k in 0..out.len() {
            out[k] = 4.0 * theta[k] * phi[k] * w[k];
        }
    }
    fn cross_t_fl(&self, _s: Sample, theta: &Vector, phi: &Vector, u: &Vector, out: &mut Vector) {
        for k in 0..out.len() {
            out[k] = 4.0 * theta[k] * phi[k] * u[k];
        }
    }
    fn phi_star(&self, theta: &Vector) -> Vector {
        let mut h = self.a.clone();
        for k in 0..theta.len() {
            h[(k, k)] += 2.0 * theta[k] * theta[k];
        }
        // A + 2 diag(θ²) ⪰ A + 2ℓ² I ≻ 0 on Θ (checked at build); outside Θ it stays ⪰ A ≻ 0 when m ≥ p.
        spd_solve_vec("lower-level Hessian", &h, &self.b)
            .unwrap_or_else(|_| Vector::from_element(theta.len(), f64::NAN))
    }
    fn theta_star(&self) -> Option<Vector> {
        None
    }
    fn constants(&self) -> Constants {
        self.constants.clone()
    }
    fn domain(&self) -> &Domain {
        &self.domain
    }
    fn describe(&self) -> String {
        format!(
            "hyperparameter optimisation, eq (4): per-coordinate ridge, p={}, m={} train, n={} validation, batch {}, Theta={}",
            self.spec.p,
            self.spec.m,
            self.spec.n,
            self.spec.batch,
            self.domain.label()
        )
    }
}
