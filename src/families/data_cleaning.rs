//! Data cleaning (data subset selection, listed with eqs (4)–(9)): per-sample weights $\theta\in[\ell,1]^m$ on a
//! partly corrupted training set, tuned on clean validation data.
//!
//! $$f_l(\theta,\phi) = \frac1m\sum_{j<m}\theta_j\\,\tfrac12(x_j^\top\phi - y_j)^2 + \frac\rho2\\|\phi\\|^2,\qquad
//! f_u(\theta,\phi) = \frac1n\sum_{i<n}\tfrac12(\bar x_i^\top\phi - \bar y_i)^2,$$
//! $d_u = m$ (one weight per training sample), $d_l = p$. With $r_j = x_j^\top\phi - y_j$:
//! $\nabla^2_{\phi\phi} f_l = \frac1m\sum_j\theta_jx_jx_j^\top + \rho I$ (depends on $\theta$),
//! $\nabla^2_{\theta\phi} f_l = \frac1m\mathrm{diag}(r)X$, and $\phi^\star(\theta)$ is a weighted ridge solve. The
//! first `corrupted` training labels get an extra $N(0, 3^2)$ error. $\theta^\star$ is not known (`None`).
//! Finite sums, sampled as in [`super::data`]: a drawn index $j$ contributes $\theta_j\frac12r_j^2$, whose mean is
//! the exact LL loss.
//!
//! # Constants on $\Theta = [\ell,1]^m$ ($A = X^\top X/m$)
//! $\mu_l = \ell\lambda_{\min}(A) + \rho$ and $L_l = \lambda_{\max}(A) + \rho$ are exact (at $\theta = \ell\mathbf1$,
//! $\mathbf 1$). $\\|\phi^\star\\|\le B_\phi = \min(\frac1m\sum_j|y_j|\\|x_j\\|/\mu_l,\ \\|y\\|/(2\sqrt{\rho m}),\ \\|y\\|/\sqrt{m\mu_l})$
//! (the last from $\phi^{\star\top}H\phi^\star = b_\theta^\top\phi^\star\le\\|y\\|m^{-1/2}(\phi^{\star\top}H\phi^\star)^{1/2}$ as $\theta_j\le1$).
//! $\nabla_\phi f_u$ and the cross derivative grow with $\\|\phi\\|$ (`None`). On $\Theta\times\\{\\|\phi\\|\le
//! B_\phi\\}$, [`super::data::RegionBounds`] gives valid $L_\phi$, $L_F$ (weak convexity declared as $L_F$) with
//! $C = \frac1m(\sum_j(\\|x_j\\|B_\phi + |y_j|)^2\\|x_j\\|^2)^{1/2}$, $G = \lambda_{\max}(\bar A)B_\phi + \\|\bar b\\|$,
//! $L_u = \lambda_{\max}(\bar A)$, $L_2 = \frac1m(\sum_j\\|x_j\\|^4)^{1/2}$ (also the Lipschitz constant in $\phi$
//! of the cross derivative).

use super::data::{Dataset, RegionBounds, check_sizes, draw_word, for_each_in_batch, lambda_max, lambda_min};
use super::random::gaussian_vector;
use crate::error::{BilevelError, Result};
use crate::linalg::{Vector, spd_solve_vec};
use crate::problem::{Bilevel, Constants, Dims, Domain, Level, Sample};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use serde::Serialize;

/// Parameters of [`DataCleaning`]; checked by [`DataCleaningSpec::build`].
///
/// Size limit: the instance holds the $(m + n)\times p$ data and the box of the $m$ weights, and `phi_star` forms a
/// $p\times p$ Hessian, [`DataCleaningSpec::entries`] $\le$ [`MAX_ENTRIES`](super::MAX_ENTRIES) (2 GiB).
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DataCleaningSpec {
    /// Features $p = d_l$.
    pub p: usize,
    /// Training samples $m = d_u$.
    pub m: usize,
    /// Validation samples $n$.
    pub n: usize,
    /// How many training labels are corrupted (the first ones).
    pub corrupted: usize,
    /// Minibatch size of one draw.
    pub batch: usize,
    /// Ridge weight $\rho > 0$.
    pub rho: f64,
    /// Smallest weight $\ell\in(0, 1]$.
    pub lo: f64,
    /// Label noise standard deviation of clean samples.
    pub label_noise: f64,
    /// Seed of the data generator.
    pub seed: u64,
}

impl Default for DataCleaningSpec {
    fn default() -> Self {
        DataCleaningSpec {
            p: 3,
            m: 10,
            n: 30,
            corrupted: 3,
            batch: 1,
            rho: 0.1,
            lo: 0.05,
            label_noise: 0.2,
            seed: 0,
        }
    }
}

impl DataCleaningSpec {
    /// The `f64` entries the instance holds and its `phi_star` forms, checked by [`DataCleaningSpec::build`]
    /// against [`MAX_ENTRIES`](super::MAX_ENTRIES): $(m + n)(p + 1) + 3p^2 + 3m + p$ (saturating).
    pub fn entries(&self) -> u64 {
        Self::count(self.p, self.m, self.n)
    }

    fn count(p: usize, m: usize, n: usize) -> u64 {
        super::entries(&[&[m, p], &[n, p], &[4, m], &[n], &[3, p, p], &[p]])
    }

    /// Check the parameters and generate the data.
    pub fn build(&self) -> Result<DataCleaning> {
        if self.p == 0 {
            return Err(BilevelError::invalid("p", self.p, "must be >= 1"));
        }
        check_sizes(self.batch, &[("m", self.m), ("n", self.n)])?;
        if self.corrupted > self.m {
            return Err(BilevelError::invalid("corrupted", self.corrupted, "must be <= m"));
        }
        if !(self.rho.is_finite() && self.rho > 0.0) {
            return Err(BilevelError::invalid("rho", self.rho, "must be finite and > 0"));
        }
        if !(self.lo.is_finite() && self.lo > 0.0 && self.lo <= 1.0) {
            return Err(BilevelError::invalid("lo", self.lo, "must lie in (0, 1]"));
        }
        if !(self.label_noise.is_finite() && self.label_noise >= 0.0) {
            return Err(BilevelError::invalid(
                "label_noise",
                self.label_noise,
                "must be finite and >= 0",
            ));
        }
        super::check_storage(
            "data_cleaning",
            &[("p", self.p), ("m", self.m), ("n", self.n)],
            |v| Self::count(v[0], v[1], v[2]),
            "(m + n) x p data, the box of the m weights, and the p x p Hessian phi_star forms, a rank-one term and \
             its factor",
            "lower the sizes named (the construction also eigendecomposes p x p matrices, O(p^3) time)",
        )?;
        let (p, m) = (self.p, self.m);
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        let w = gaussian_vector(&mut rng, p);
        let ones = Vector::from_element(p, 1.0);
        let mut train = Dataset::linear(&mut rng, m, &ones, &w, self.label_noise);
        for j in 0..self.corrupted {
            train.y[j] += 3.0 * rng.sample::<f64, _>(StandardNormal);
        }
        let val = Dataset::linear(&mut rng, self.n, &ones, &w, self.label_noise);
        let domain = Domain::new_box(vec![self.lo; m], vec![1.0; m])?;
        let (a, _) = train.moments();
        let (a_v, b_v) = val.moments();
        let mu_l = self.lo * lambda_min(&a) + self.rho;
        let tn = train.row_norms();
        let mf = m as f64;
        let b_phi = ((0..m).map(|j| train.y[j].abs() * tn[j]).sum::<f64>() / mf / mu_l)
            .min(train.y.norm() / (2.0 * (self.rho * mf).sqrt()))
            .min(train.y.norm() / (mf * mu_l).sqrt());
        let lam_v = lambda_max(&a_v);
        let fourth = (0..m).map(|j| tn[j].powi(4)).sum::<f64>().sqrt() / mf;
        let region = RegionBounds {
            mu: mu_l,
            cross: (0..m)
                .map(|j| ((tn[j] * b_phi + train.y[j].abs()) * tn[j]).powi(2))
                .sum::<f64>()
                .sqrt()
                / mf,
            grad_phi_fu: lam_v * b_phi + b_v.norm(),
            hess_fu: lam_v,
            third_fl: fourth,
        };
        let l_f = region.l_f();
        let constants = Constants {
            mu_l,
            l_l: lambda_max(&a) + self.rho,
            l_l_sample: Some(train.max_row_norm_sq() + self.rho),
            cross_bound: None,
            l_fu_phi: Some(lam_v),
            l_fu_theta: Some(0.0),
            grad_phi_fu_bound: None,
            l_hess_phi: Some(fourth),
            l_phi_star: region.l_phi_star(),
            l_f,
            mu_f: None,
            weak_convexity: l_f,
        };
        Ok(DataCleaning {
            spec: self.clone(),
            train,
            val,
            constants,
            domain,
        })
    }
}

/// The data-cleaning family (see the module docs).
#[derive(Debug, Clone)]
pub struct DataCleaning {
    spec: DataCleaningSpec,
    /// Training set (lower level); its first `corrupted` labels carry the extra error.
    pub train: Dataset,
    /// Clean validation set (upper level).
    pub val: Dataset,
    constants: Constants,
    domain: Domain,
}

impl DataCleaning {
    /// The parameters it was built from.
    pub fn spec(&self) -> &DataCleaningSpec {
        &self.spec
    }

    fn data(&self, level: Level) -> &Dataset {
        match level {
            Level::Upper => &self.val,
            Level::Lower => &self.train,
        }
    }

    /// Calls `f(j, r_j, weight)` with $r_j = x_j^\top\phi - y_j$ over the minibatch of `s` at `level`.
    fn residuals(&self, s: Sample, level: Level, phi: &Vector, mut f: impl FnMut(usize, f64, f64)) {
        let d = self.data(level);
        for_each_in_batch(s, level, d.len(), self.spec.batch, |j, w| {
            f(j, d.x.row(j).transpose().dot(phi) - d.y[j], w);
        });
    }
}

impl Bilevel for DataCleaning {
    fn name(&self) -> &str {
        "data_cleaning"
    }
    fn dims(&self) -> Dims {
        Dims {
            d_u: self.spec.m,
            d_l: self.spec.p,
        }
    }
    fn draw(&self, _level: Level, rng: &mut ChaCha8Rng) -> Sample {
        draw_word(rng)
    }
    fn f_u(&self, s: Sample, _theta: &Vector, phi: &Vector) -> f64 {
        let mut v = 0.0;
        self.residuals(s, Level::Upper, phi, |_, r, w| v += w * 0.5 * r * r);
        v
    }
    fn f_l(&self, s: Sample, theta: &Vector, phi: &Vector) -> f64 {
        let mut v = 0.5 * self.spec.rho * phi.norm_squared();
        self.residuals(s, Level::Lower, phi, |j, r, w| v += w * theta[j] * 0.5 * r * r);
        v
    }
    fn grad_theta_fu(&self, _s: Sample, _theta: &Vector, _phi: &Vector, out: &mut Vector) {
        out.fill(0.0);
    }
    fn grad_phi_fu(&self, s: Sample, _theta: &Vector, phi: &Vector, out: &mut Vector) {
        out.fill(0.0);
        self.residuals(s, Level::Upper, phi, |i, r, w| {
            for (o, x) in out.iter_mut().zip(self.val.x.row(i).iter()) {
                *o += w * r * x;
            }
        });
    }
    fn grad_phi_fl(&self, s: Sample, theta: &Vector, phi: &Vector, out: &mut Vector) {
        out.copy_from(phi);
        *out *= self.spec.rho;
        self.residuals(s, Level::Lower, phi, |j, r, w| {
            for (o, x) in out.iter_mut().zip(self.train.x.row(j).iter()) {
                *o += w * theta[j] * r * x;
            }
        });
    }
    fn grad_theta_fl(&self, s: Sample, _theta: &Vector, phi: &Vector, out: &mut Vector) {
        // θ_j weighs sample j's loss: ∂/∂θ_j = ½ r_j² (for the drawn samples).
        out.fill(0.0);
        self.residuals(s, Level::Lower, phi, |j, r, w| out[j] += w * 0.5 * r * r);
    }
    fn hvp_fl(&self, s: Sample, theta: &Vector, _phi: &Vector, v: &Vector, out: &mut Vector) {
        out.copy_from(v);
        *out *= self.spec.rho;
        for_each_in_batch(s, Level::Lower, self.train.len(), self.spec.batch, |j, w| {
            let row = self.train.x.row(j);
            let xv = row.transpose().dot(v);
            for (o, x) in out.iter_mut().zip(row.iter()) {
                *o += w * theta[j] * xv * x;
            }
        });
    }
    fn cross_fl(&self, s: Sample, _theta: &Vector, phi: &Vector, wv: &Vector, out: &mut Vector) {
        // Row j of the cross derivative is (weight) r_j x_jᵀ: only the drawn samples' weights move ∇φ f_l.
        out.fill(0.0);
        self.residuals(s, Level::Lower, phi, |j, r, w| {
            out[j] += w * r * self.train.x.row(j).transpose().dot(wv);
        });
    }
    fn cross_t_fl(&self, s: Sample, _theta: &Vector, phi: &Vector, u: &Vector, out: &mut Vector) {
        out.fill(0.0);
        self.residuals(s, Level::Lower, phi, |j, r, w| {
            for (o, x) in out.iter_mut().zip(self.train.x.row(j).iter()) {
                *o += w * u[j] * r * x;
            }
        });
    }
    fn phi_star(&self, theta: &Vector) -> Vector {
        let (p, m) = (self.spec.p, self.spec.m);
        let x = &self.train.x;
        let mut h = crate::linalg::Matrix::identity(p, p) * self.spec.rho;
        let mut rhs = Vector::zeros(p);
        for j in 0..m {
            let row = x.row(j).transpose();
            h += (theta[j] / m as f64) * &row * row.transpose();
            rhs += (theta[j] * self.train.y[j] / m as f64) * &row;
        }
        // ρI + (1/m)Σθ_j x_j x_jᵀ ≻ 0 for θ ≥ 0; a failed solve (θ far outside Θ) reports NaN, never panics.
        spd_solve_vec("lower-level Hessian", &h, &rhs).unwrap_or_else(|_| Vector::from_element(p, f64::NAN))
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
            "data cleaning (subset selection, HPO slide): m={} sample weights in {}, {} corrupted, p={}, n={} clean validation, batch {}",
            self.spec.m,
            self.domain.label(),
            self.spec.corrupted,
            self.spec.p,
            self.spec.n,
            self.spec.batch
        )
    }
}
