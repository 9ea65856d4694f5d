//! Representation learning, eq (6): a linear feature map $\Theta$ (upper level) under a ridge head $\phi$
//! (lower level).
//!
//! $$f_l(\theta,\phi) = \frac1m\sum_{j<m}\tfrac12(\phi^\top\Theta x_j - y_j)^2 + \rho\\|\phi\\|^2,\qquad
//! f_u(\theta,\phi) = \frac1n\sum_{i<n}\tfrac12(\phi^\top\Theta\bar x_i - \bar y_i)^2,$$
//! with $\Theta\in\mathbb{R}^{k\times p}$ stored row-major in $\theta\in\mathbb{R}^{d_u}$ ($\Theta_{rc} =
//! \theta_{rp+c}$), $d_u = kp \ne d_l = k$, and $\Theta$ confined to the box $[-R, R]^{kp}$. With $A = X^\top X/m$,
//! $b = X^\top y/m$: $\nabla^2_{\phi\phi} f_l = \Theta A\Theta^\top + 2\rho I$,
//! $\phi^\star(\theta) = (\Theta A\Theta^\top + 2\rho I)^{-1}\Theta b$, and per sample
//! $\partial^2\ell_j/\partial\Theta_{rc}\partial\phi_a = \delta_{ar}r_jx_{jc} + (\Theta x_j)\_a\phi_r x_{jc}$ with
//! $r_j = \phi^\top\Theta x_j - y_j$. The LL Hessian depends on $\theta$; $F$ is nonconvex (the problem is
//! invariant under $\Theta\to-\Theta$, $\phi\to-\phi$) and $\theta^\star$ is not unique (`None`).
//! Finite sums, sampled as in [`super::data`].
//!
//! # Constants on $\Theta$ (with $T = R\sqrt{kp}\ge\\|\Theta\\|$, $\lambda_A = \lambda_{\max}(A)$)
//! $\mu_l = 2\rho$ exact ($\Theta = 0\in\Theta$); $L_l = \lambda_A T^2 + 2\rho$ a bound. The ridge bound gives
//! $\\|\phi^\star\\|\le B_\phi = \\|y\\|/(2\sqrt{2\rho m})$. Because $f_u$ is bilinear in $(\Theta,\phi)$,
//! $\nabla_\theta f_u$ is quadratic in $\phi$ and $\nabla_\phi f_u$ is Lipschitz in $\theta$ only with a
//! constant growing with $\\|\phi\\|$: **the lecture's global Lipschitz assumptions on $f_u$ fail**, declared as
//! `None` (`l_fu_phi`, `l_fu_theta`: not Lipschitz), and the cross derivative and $\nabla_\phi f_u$ are unbounded (`None`).
//! They hold on the bounded region $\Theta\times\\{\\|\phi\\|\le B_\phi\\}$, where
//! [`super::data::RegionBounds`] gives valid $L_\phi$, $L_F$ (weak convexity declared as $L_F$) with
//! $C = 2\lambda_ATB_\phi + \\|b\\|$, $G = \mathrm{mean}\_i(TB_\phi\\|\bar x_i\\| + |\bar y_i|)T\\|\bar x_i\\|$,
//! $L_u = \mathrm{mean}\_i[(B_\phi^2 + T^2)\\|\bar x_i\\|^2 + (TB_\phi\\|\bar x_i\\| + |\bar y_i|)\\|\bar x_i\\|]$,
//! $L_2 = 2\lambda_A\max(B_\phi, T)$; $\nabla^2 f_l$ is $2\lambda_AT$-Lipschitz in $\phi$.

use super::data::{Dataset, RegionBounds, check_sizes, draw_word, for_each_in_batch, lambda_max, ridge_norm_bound};
use super::random::gaussian_vector;
use crate::error::{BilevelError, Result};
use crate::linalg::{Matrix, Vector, spd_solve_vec};
use crate::problem::{Bilevel, Constants, Dims, Domain, Level, Sample};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

/// Parameters of [`Representation`]; checked by [`RepresentationSpec::build`].
///
/// Size limit: the instance holds the $(m + n)\times p$ data, $A$ and the box of $\theta\in\mathbb{R}^{kp}$, and
/// `phi_star` factors a $k\times k$ Hessian, [`RepresentationSpec::entries`] $\le$
/// [`MAX_ENTRIES`](super::MAX_ENTRIES) (2 GiB).
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RepresentationSpec {
    /// Input dimension $p$.
    pub p: usize,
    /// Feature dimension $k = d_l$.
    pub k: usize,
    /// Training samples $m$.
    pub m: usize,
    /// Validation samples $n$.
    pub n: usize,
    /// Minibatch size of one draw.
    pub batch: usize,
    /// Ridge weight $\rho > 0$.
    pub rho: f64,
    /// Half-width $R$ of the box $\Theta = [-R, R]^{kp}$.
    pub radius: f64,
    /// Label noise standard deviation.
    pub label_noise: f64,
    /// Seed of the data generator.
    pub seed: u64,
}

impl Default for RepresentationSpec {
    fn default() -> Self {
        RepresentationSpec {
            p: 4,
            k: 2,
            m: 40,
            n: 30,
            batch: 1,
            rho: 0.1,
            radius: 1.0,
            label_noise: 0.3,
            seed: 0,
        }
    }
}

impl RepresentationSpec {
    /// The `f64` entries the instance holds and its `phi_star` forms, checked by [`RepresentationSpec::build`]
    /// against [`MAX_ENTRIES`](super::MAX_ENTRIES): $(m + n)(p + 1) + p^2 + 4kp + 2k^2 + 3p$ (saturating).
    pub fn entries(&self) -> u64 {
        Self::count(self.p, self.k, self.m, self.n)
    }

    fn count(p: usize, k: usize, m: usize, n: usize) -> u64 {
        super::entries(&[&[m, p], &[n, p], &[m], &[n], &[p, p], &[4, k, p], &[2, k, k], &[3, p]])
    }

    /// Check the parameters and generate the data.
    pub fn build(&self) -> Result<Representation> {
        for (name, v) in [("p", self.p), ("k", self.k)] {
            if v == 0 {
                return Err(BilevelError::invalid(name, v, "must be >= 1"));
            }
        }
        check_sizes(self.batch, &[("m", self.m), ("n", self.n)])?;
        if !(self.rho.is_finite() && self.rho > 0.0) {
            return Err(BilevelError::invalid("rho", self.rho, "must be finite and > 0"));
        }
        if !(self.radius.is_finite() && self.radius > 0.0) {
            return Err(BilevelError::invalid("radius", self.radius, "must be finite and > 0"));
        }
        if !(self.label_noise.is_finite() && self.label_noise >= 0.0) {
            return Err(BilevelError::invalid(
                "label_noise",
                self.label_noise,
                "must be finite and >= 0",
            ));
        }
        super::check_storage(
            "representation",
            &[("p", self.p), ("k", self.k), ("m", self.m), ("n", self.n)],
            |v| Self::count(v[0], v[1], v[2], v[3]),
            "(m + n) x p data, p x p A, the k x p feature map twice, the box of the k p entries of theta, and the \
             k x k Hessian phi_star factors with its copy",
            "lower the sizes named (the construction also eigendecomposes a p x p matrix, O(p^3) time)",
        )?;
        let (p, k) = (self.p, self.k);
        // The storage check bounds k p, so every index of the feature map (r p + c < k p) fits in a usize.
        let d_u = k
            .checked_mul(p)
            .ok_or_else(|| BilevelError::invalid("k", k, "k p overflows"))?;
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        let w = gaussian_vector(&mut rng, p);
        let ones = Vector::from_element(p, 1.0);
        let train = Dataset::linear(&mut rng, self.m, &ones, &w, self.label_noise);
        let val = Dataset::linear(&mut rng, self.n, &ones, &w, self.label_noise);
        let domain = Domain::new_box(vec![-self.radius; d_u], vec![self.radius; d_u])?;
        let (a, b) = train.moments();
        let lam_a = lambda_max(&a);
        let t = self.radius * (d_u as f64).sqrt();
        let b_phi = ridge_norm_bound(&train.y, 2.0 * self.rho);
        let mu_l = 2.0 * self.rho;
        let vn = val.row_norms();
        let nv = val.len() as f64;
        let resid = |i: usize| t * b_phi * vn[i] + val.y[i].abs();
        let region = RegionBounds {
            mu: mu_l,
            cross: 2.0 * lam_a * t * b_phi + b.norm(),
            grad_phi_fu: (0..val.len()).map(|i| resid(i) * t * vn[i]).sum::<f64>() / nv,
            hess_fu: (0..val.len())
                .map(|i| (b_phi * b_phi + t * t) * vn[i] * vn[i] + resid(i) * vn[i])
                .sum::<f64>()
                / nv,
            third_fl: 2.0 * lam_a * b_phi.max(t),
        };
        let l_f = region.l_f();
        let constants = Constants {
            mu_l,
            l_l: lam_a * t * t + 2.0 * self.rho,
            l_l_sample: Some(train.max_row_norm_sq() * t * t + 2.0 * self.rho),
            cross_bound: None,
            l_fu_phi: None,
            l_fu_theta: None,
            grad_phi_fu_bound: None,
            l_hess_phi: Some(2.0 * lam_a * t),
            l_phi_star: region.l_phi_star(),
            l_f,
            mu_f: None,
            weak_convexity: l_f,
        };
        Ok(Representation {
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

/// The representation-learning family of eq (6) (see the module docs).
#[derive(Debug, Clone)]
pub struct Representation {
    spec: RepresentationSpec,
    /// Training set (lower level).
    pub train: Dataset,
    /// Validation set (upper level).
    pub val: Dataset,
    a: Matrix,
    b: Vector,
    constants: Constants,
    domain: Domain,
}

/// $(\Theta x)\_a$ for row $j$ of `x`, $\Theta$ row-major in `theta` with `p` columns.
fn feature(theta: &Vector, x: &Matrix, j: usize, a: usize, p: usize) -> f64 {
    (0..p).map(|c| theta[a * p + c] * x[(j, c)]).sum()
}

impl Representation {
    /// The parameters it was built from.
    pub fn spec(&self) -> &RepresentationSpec {
        &self.spec
    }

    /// The feature map $\Theta$ ($k\times p$) of a flattened $\theta$.
    ///
    /// # Panics
    /// When `theta` is shorter than $kp$ (unchecked, as the [`Bilevel`] methods).
    pub fn feature_map(&self, theta: &Vector) -> Matrix {
        Matrix::from_fn(self.spec.k, self.spec.p, |r, c| theta[r * self.spec.p + c])
    }

    fn data(&self, level: Level) -> &Dataset {
        match level {
            Level::Upper => &self.val,
            Level::Lower => &self.train,
        }
    }

    /// Calls `f(j, r_j, weight)` over the minibatch of `s` at `level`.
    fn residuals(&self, s: Sample, level: Level, theta: &Vector, phi: &Vector, mut f: impl FnMut(usize, f64, f64)) {
        let d = self.data(level);
        let (p, k) = (self.spec.p, self.spec.k);
        for_each_in_batch(s, level, d.len(), self.spec.batch, |j, w| {
            let u: f64 = (0..k).map(|a| phi[a] * feature(theta, &d.x, j, a, p)).sum();
            f(j, u - d.y[j], w);
        });
    }

    fn loss(&self, s: Sample, level: Level, theta: &Vector, phi: &Vector) -> f64 {
        let mut v = 0.0;
        self.residuals(s, level, theta, phi, |_, r, w| v += w * 0.5 * r * r);
        v
    }

    /// `out` ← mean of $r_j\\,\Theta x_j$ (the data part of $\nabla_\phi$).
    fn grad_phi_data(&self, s: Sample, level: Level, theta: &Vector, phi: &Vector, out: &mut Vector) {
        let d = self.data(level);
        let p = self.spec.p;
        self.residuals(s, level, theta, phi, |j, r, w| {
            for (a, o) in out.iter_mut().enumerate() {
                *o += w * r * feature(theta, &d.x, j, a, p);
            }
        });
    }
}

impl Bilevel for Representation {
    fn name(&self) -> &str {
        "representation"
    }
    fn dims(&self) -> Dims {
        Dims {
            d_u: self.spec.k * self.spec.p,
            d_l: self.spec.k,
        }
    }
    fn draw(&self, _level: Level, rng: &mut ChaCha8Rng) -> Sample {
        draw_word(rng)
    }
    fn f_u(&self, s: Sample, theta: &Vector, phi: &Vector) -> f64 {
        self.loss(s, Level::Upper, theta, phi)
    }
    fn f_l(&self, s: Sample, theta: &Vector, phi: &Vector) -> f64 {
        self.loss(s, Level::Lower, theta, phi) + self.spec.rho * phi.norm_squared()
    }
    fn grad_theta_fu(&self, s: Sample, theta: &Vector, phi: &Vector, out: &mut Vector) {
        out.fill(0.0);
        let p = self.spec.p;
        self.residuals(s, Level::Upper, theta, phi, |i, r, w| {
            for (idx, o) in out.iter_mut().enumerate() {
                *o += w * r * phi[idx / p] * self.val.x[(i, idx % p)];
            }
        });
    }
    fn grad_phi_fu(&self, s: Sample, theta: &Vector, phi: &Vector, out: &mut Vector) {
        out.fill(0.0);
        self.grad_phi_data(s, Level::Upper, theta, phi, out);
    }
    fn grad_phi_fl(&self, s: Sample, theta: &Vector, phi: &Vector, out: &mut Vector) {
        out.copy_from(phi);
        *out *= 2.0 * self.spec.rho;
        self.grad_phi_data(s, Level::Lower, theta, phi, out);
    }
    fn grad_theta_fl(&self, s: Sample, theta: &Vector, phi: &Vector, out: &mut Vector) {
        // ∂r_j/∂Θ_(a,c) = φ_a x_jc on the training data; ρ‖φ‖² does not depend on θ.
        out.fill(0.0);
        let p = self.spec.p;
        self.residuals(s, Level::Lower, theta, phi, |j, r, w| {
            for (idx, o) in out.iter_mut().enumerate() {
                *o += w * r * phi[idx / p] * self.train.x[(j, idx % p)];
            }
        });
    }
    fn hvp_fl(&self, s: Sample, theta: &Vector, _phi: &Vector, v: &Vector, out: &mut Vector) {
        out.copy_from(v);
        *out *= 2.0 * self.spec.rho;
        let (p, k) = (self.spec.p, self.spec.k);
        for_each_in_batch(s, Level::Lower, self.train.len(), self.spec.batch, |j, w| {
            let zv: f64 = (0..k).map(|a| v[a] * feature(theta, &self.train.x, j, a, p)).sum();
            for (a, o) in out.iter_mut().enumerate() {
                *o += w * zv * feature(theta, &self.train.x, j, a, p);
            }
        });
    }
    fn cross_fl(&self, s: Sample, theta: &Vector, phi: &Vector, wv: &Vector, out: &mut Vector) {
        out.fill(0.0);
        let (p, k) = (self.spec.p, self.spec.k);
        self.residuals(s, Level::Lower, theta, phi, |j, r, w| {
            let zw: f64 = (0..k).map(|a| wv[a] * feature(theta, &self.train.x, j, a, p)).sum();
            for (idx, o) in out.iter_mut().enumerate() {
                let (row, c) = (idx / p, idx % p);
                *o += w * (r * wv[row] + zw * phi[row]) * self.train.x[(j, c)];
            }
        });
    }
    fn cross_t_fl(&self, s: Sample, theta: &Vector, phi: &Vector, u: &Vector, out: &mut Vector) {
        out.fill(0.0);
        let (p, k) = (self.spec.p, self.spec.k);
        self.residuals(s, Level::Lower, theta, phi, |j, r, w| {
            // (U x_j)_a with U the d_u-vector u read as a k×p matrix.
            let ux = |a: usize| feature(u, &self.train.x, j, a, p);
            let phi_ux: f64 = (0..k).map(|a| phi[a] * ux(a)).sum();
            for (a, o) in out.iter_mut().enumerate() {
                *o += w * (r * ux(a) + phi_ux * feature(theta, &self.train.x, j, a, p));
            }
        });
    }
    fn phi_star(&self, theta: &Vector) -> Vector {
        let big_theta = self.feature_map(theta);
        let mut h = &big_theta * &self.a * big_theta.transpose();
        for a in 0..self.spec.k {
            h[(a, a)] += 2.0 * self.spec.rho;
        }
        // ΘAΘᵀ + 2ρI ⪰ 2ρI ≻ 0 for every θ, so the solve cannot fail.
        spd_solve_vec("lower-level Hessian", &h, &(&big_theta * &self.b))
            .unwrap_or_else(|_| Vector::from_element(self.spec.k, f64::NAN))
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
            "representation learning, eq (6): linear features k={} from p={}, ridge head rho={}, m={}, n={}, batch {}, Theta={}",
            self.spec.k,
            self.spec.p,
            self.spec.rho,
            self.spec.m,
            self.spec.n,
            self.spec.batch,
            self.domain.label()
        )
    }
}
