//! Model pruning, eq (8): a soft mask $\theta\in[0, h]^p$ (upper level) on the weights $\phi$ of a ridge
//! regression (lower level).
//!
//! $$f_l(\theta,\phi) = \frac1m\sum_{j<m}\tfrac12\big((\theta\odot\phi)^\top x_j - y_j\big)^2 + \rho\\|\phi\\|^2,\qquad
//! f_u(\theta,\phi) = \frac1n\sum_{i<n}\tfrac12\big((\theta\odot\phi)^\top\bar x_i - \bar y_i\big)^2.$$
//! With $D = \mathrm{diag}(\theta)$, $A = X^\top X/m$, $b = X^\top y/m$: $\nabla^2_{\phi\phi} f_l = DAD + 2\rho I$,
//! $\phi^\star(\theta) = (DAD + 2\rho I)^{-1}Db$, and
//! $\nabla^2_{\theta\phi} f_l = \mathrm{diag}(s) + \mathrm{diag}(\phi)A\\,\mathrm{diag}(\theta)$ with
//! $s = A(\theta\odot\phi) - b$. The LL Hessian depends on $\theta$; $F$ is nonconvex in general and
//! $\theta^\star$ is not known (`None`). Finite sums, sampled as in [`super::data`].
//!
//! # Constants on $\Theta = [0, h]^p$ ($\lambda_A = \lambda_{\max}(A)$)
//! $\mu_l = 2\rho$ (at $\theta = 0$) and $L_l = \lambda_Ah^2 + 2\rho$ (at $\theta = h\mathbf 1$) are exact.
//! $\\|\phi^\star\\|\le B_\phi = \\|y\\|/(2\sqrt{2\rho m})$ (ridge bound). As for eq (6), $f_u$ is bilinear in
//! $(\theta,\phi)$: **its gradients are not globally Lipschitz** (`l_fu_phi`, `l_fu_theta` are `None`: not Lipschitz) and the
//! cross derivative and $\nabla_\phi f_u$ are unbounded (`None`). On $\Theta\times\\{\\|\phi\\|\le B_\phi\\}$,
//! [`super::data::RegionBounds`] gives valid $L_\phi$, $L_F$ (weak convexity declared as $L_F$) with
//! $C = 2\lambda_AhB_\phi + \\|b\\|$, $G = \mathrm{mean}\_i(hB_\phi\\|\bar x_i\\| + |\bar y_i|)h\\|\bar x_i\\|$,
//! $L_u = \mathrm{mean}\_i[B_\phi^2\\|\bar x_i\\|\_\infty^2 + h^2\\|\bar x_i\\|^2 + (hB_\phi\\|\bar x_i\\| +
//! |\bar y_i|)\\|\bar x_i\\|\_\infty]$, $L_2 = 2\lambda_A\max(B_\phi, h)$; $\nabla^2 f_l$ is $2\lambda_Ah$-Lipschitz in $\phi$.

use super::data::{Dataset, RegionBounds, check_sizes, draw_word, for_each_in_batch, lambda_max, ridge_norm_bound};
use super::random::gaussian_vector;
use crate::error::{BilevelError, Result};
use crate::linalg::{Matrix, Vector, spd_solve_vec};
use crate::problem::{Bilevel, Constants, Dims, Domain, Level, Sample};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

/// Parameters of [`Pruning`]; checked by [`PruningSpec::build`].
///
/// Size limit: the instance holds the $(m + n)\times p$ data and $A$, and `phi_star` factors a $p\times p$ Hessian,
/// [`PruningSpec::entries`] $\le$ [`MAX_ENTRIES`](super::MAX_ENTRIES) (2 GiB).
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PruningSpec {
    /// Number of weights $p = d_u = d_l$.
    pub p: usize,
    /// Training samples $m$.
    pub m: usize,
    /// Validation samples $n$.
    pub n: usize,
    /// Minibatch size of one draw.
    pub batch: usize,
    /// Ridge weight $\rho > 0$.
    pub rho: f64,
    /// Upper corner $h$ of the mask box $[0, h]^p$.
    pub hi: f64,
    /// Label noise standard deviation.
    pub label_noise: f64,
    /// Seed of the data generator.
    pub seed: u64,
}

impl Default for PruningSpec {
    fn default() -> Self {
        PruningSpec {
            p: 5,
            m: 40,
            n: 30,
            batch: 1,
            rho: 0.1,
            hi: 1.0,
            label_noise: 0.3,
            seed: 0,
        }
    }
}

impl PruningSpec {
    /// The `f64` entries the instance holds and its `phi_star` forms, checked by [`PruningSpec::build`] against
    /// [`MAX_ENTRIES`](super::MAX_ENTRIES): $(m + n)(p + 1) + 3p^2 + 3p$ (saturating).
    pub fn entries(&self) -> u64 {
        Self::count(self.p, self.m, self.n)
    }

    fn count(p: usize, m: usize, n: usize) -> u64 {
        super::entries(&[&[m, p], &[n, p], &[m], &[n], &[3, p, p], &[3, p]])
    }

    /// Check the parameters and generate the data (a sparse ground truth: every other weight is zero).
    pub fn build(&self) -> Result<Pruning> {
        if self.p == 0 {
            return Err(BilevelError::invalid("p", self.p, "must be >= 1"));
        }
        check_sizes(self.batch, &[("m", self.m), ("n", self.n)])?;
        if !(self.rho.is_finite() && self.rho > 0.0) {
            return Err(BilevelError::invalid("rho", self.rho, "must be finite and > 0"));
        }
        if !(self.hi.is_finite() && self.hi > 0.0) {
            return Err(BilevelError::invalid("hi", self.hi, "must be finite and > 0"));
        }
        if !(self.label_noise.is_finite() && self.label_noise >= 0.0) {
            return Err(BilevelError::invalid(
                "label_noise",
                self.label_noise,
                "must be finite and >= 0",
            ));
        }
        super::check_storage(
            "pruning",
            &[("p", self.p), ("m", self.m), ("n", self.n)],
            |v| Self::count(v[0], v[1], v[2]),
            "(m + n) x p data, p x p A, and the p x p Hessian phi_star factors with its copy",
            "lower the sizes named (the construction also eigendecomposes a p x p matrix, O(p^3) time)",
        )?;
        let p = self.p;
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        let mut w = gaussian_vector(&mut rng, p);
        for i in (1..p).step_by(2) {
            w[i] = 0.0;
        }
        let ones = Vector::from_element(p, 1.0);
        let train = Dataset::linear(&mut rng, self.m, &ones, &w, self.label_noise);
        let val = Dataset::linear(&mut rng, self.n, &ones, &w, self.label_noise);
        let domain = Domain::new_box(vec![0.0; p], vec![self.hi; p])?;
        let (a, b) = train.moments();
        let lam_a = lambda_max(&a);
        let h = self.hi;
        let b_phi = ridge_norm_bound(&train.y, 2.0 * self.rho);
        let mu_l = 2.0 * self.rho;
        let (vn, vinf) = (val.row_norms(), val.row_amax());
        let nv = val.len() as f64;
        let resid = |i: usize| h * b_phi * vn[i] + val.y[i].abs();
        let region = RegionBounds {
            mu: mu_l,
            cross: 2.0 * lam_a * h * b_phi + b.norm(),
            grad_phi_fu: (0..val.len()).map(|i| resid(i) * h * vn[i]).sum::<f64>() / nv,
            hess_fu: (0..val.len())
                .map(|i| (b_phi * vinf[i]).powi(2) + (h * vn[i]).powi(2) + resid(i) * vinf[i])
                .sum::<f64>()
                / nv,
            third_fl: 2.0 * lam_a * b_phi.max(h),
        };
        let l_f = region.l_f();
        let constants = Constants {
            mu_l,
            l_l: lam_a * h * h + 2.0 * self.rho,
            l_l_sample: Some(train.max_row_norm_sq() * h * h + 2.0 * self.rho),
            cross_bound: None,
            l_fu_phi: None,
            l_fu_theta: None,
            grad_phi_fu_bound: None,
            l_hess_phi: Some(2.0 * lam_a * h),
            l_phi_star: region.l_phi_star(),
            l_f,
            mu_f: None,
            weak_convexity: l_f,
        };
        Ok(Pruning {
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

/// The model-pruning family of eq (8) (see the module docs).
#[derive(Debug, Clone)]
pub struct Pruning {
    spec: PruningSpec,
    /// Training set (lower level).
    pub train: Dataset,
    /// Validation set (upper level).
    pub val: Dataset,
    a: Matrix,
    b: Vector,
    constants: Constants,
    domain: Domain,
}

impl Pruning {
    /// The parameters it was built from.
    pub fn spec(&self) -> &PruningSpec {
        &self.spec
    }

    fn data(&self, level: Level) -> &Dataset {
        match level {
            Level::Upper => &self.val,
            Level::Lower => &self.train,
        }
    }

    /// Calls `f(j, r_j, weight)` with $r_j = (\theta\odot\phi)^\top x_j - y_j$ over the minibatch of `s`.
    fn residuals(&self, s: Sample, level: Level, theta: &Vector, phi: &Vector, mut f: impl FnMut(usize, f64, f64)) {
        let d = self.data(level);
        for_each_in_batch(s, level, d.len(), self.spec.batch, |j, w| {
            let u: f64 = (0..theta.len()).map(|i| theta[i] * phi[i] * d.x[(j, i)]).sum();
            f(j, u - d.y[j], w);
        });
    }

    fn loss(&self, s: Sample, level: Level, theta: &Vector, phi: &Vector) -> f64 {
        let mut v = 0.0;
        self.residuals(s, level, theta, phi, |_, r, w| v += w * 0.5 * r * r);
        v
    }

    /// `out` += mean of $r_j\\,(a\odot x_j)$ at `level` (with $a = \theta$ for $\nabla_\phi$, $a = \phi$ for $\nabla_\theta$).
    fn add_grad(&self, s: Sample, level: Level, theta: &Vector, phi: &Vector, a: &Vector, out: &mut Vector) {
        let d = self.data(level);
        self.residuals(s, level, theta, phi, |j, r, w| {
            for (i, o) in out.iter_mut().enumerate() {
                *o += w * r * a[i] * d.x[(j, i)];
            }
        });
    }
}

impl Bilevel for Pruning {
    fn name(&self) -> &str {
        "pruning"
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
    fn f_u(&self, s: Sample, theta: &Vector, phi: &Vector) -> f64 {
        self.loss(s, Level::Upper, theta, phi)
    }
    fn f_l(&self, s: Sample, theta: &Vector, phi: &Vector) -> f64 {
        self.loss(s, Level::Lower, theta, phi) + self.spec.rho * phi.norm_squared()
    }
    fn grad_theta_fu(&self, s: Sample, theta: &Vector, phi: &Vector, out: &mut Vector) {
        out.fill(0.0);
        self.add_grad(s, Level::Upper, theta, phi, phi, out);
    }
    fn grad_phi_fu(&self, s: Sample, theta: &Vector, phi: &Vector, out: &mut Vector) {
        out.fill(0.0);
        self.add_grad(s, Level::Upper, theta, phi, theta, out);
    }
    fn grad_phi_fl(&self, s: Sample, theta: &Vector, phi: &Vector, out: &mut Vector) {
        out.copy_from(phi);
        *out *= 2.0 * self.spec.rho;
        self.add_grad(s, Level::Lower, theta, phi, theta, out);
    }
    fn grad_theta_fl(&self, s: Sample, theta: &Vector, phi: &Vector, out: &mut Vector) {
        // The mask enters as θ ⊙ φ: ∂r_j/∂θ_i = φ_i x_ji on the training data.
        out.fill(0.0);
        self.add_grad(s, Level::Lower, theta, phi, phi, out);
    }
    fn hvp_fl(&self, s: Sample, theta: &Vector, _phi: &Vector, v: &Vector, out: &mut Vector) {
        out.copy_from(v);
        *out *= 2.0 * self.spec.rho;
        let x = &self.train.x;
        for_each_in_batch(s, Level::Lower, self.train.len(), self.spec.batch, |j, w| {
            let zv: f64 = (0..v.len()).map(|i| theta[i] * x[(j, i)] * v[i]).sum();
            for (i, o) in out.iter_mut().enumerate() {
                *o += w * zv * theta[i] * x[(j, i)];
            }
        });
    }
    fn cross_fl(&self, s: Sample, theta: &Vector, phi: &Vector, wv: &Vector, out: &mut Vector) {
        out.fill(0.0);
        let x = &self.train.x;
        self.residuals(s, Level::Lower, theta, phi, |j, r, w| {
            let zw: f64 = (0..wv.len()).map(|i| theta[i] * x[(j, i)] * wv[i]).sum();
            for (i, o) in out.iter_mut().enumerate() {
                *o += w * x[(j, i)] * (r * wv[i] + phi[i] * zw);
            }
        });
    }
    fn cross_t_fl(&self, s: Sample, theta: &Vector, phi: &Vector, u: &Vector, out: &mut Vector) {
        out.fill(0.0);
        let x = &self.train.x;
        self.residuals(s, Level::Lower, theta, phi, |j, r, w| {
            let pu: f64 = (0..u.len()).map(|i| phi[i] * x[(j, i)] * u[i]).sum();
            for (a, o) in out.iter_mut().enumerate() {
                *o += w * x[(j, a)] * (r * u[a] + theta[a] * pu);
            }
        });
    }
    fn phi_star(&self, theta: &Vector) -> Vector {
        let p = self.spec.p;
        let h = Matrix::from_fn(p, p, |i, k| {
            theta[i] * self.a[(i, k)] * theta[k] + if i == k { 2.0 * self.spec.rho } else { 0.0 }
        });
        // DAD + 2ρI ⪰ 2ρI ≻ 0 for every θ, so the solve cannot fail.
        spd_solve_vec("lower-level Hessian", &h, &theta.component_mul(&self.b))
            .unwrap_or_else(|_| Vector::from_element(p, f64::NAN))
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
            "model pruning, eq (8): soft mask on p={} ridge weights, rho={}, m={}, n={}, batch {}, Theta={}",
            self.spec.p,
            self.spec.rho,
            self.spec.m,
            self.spec.n,
            self.spec.batch,
            self.domain.label()
        )
    }
}
