//! Meta-learning with a proximal lower level (iMAML; personalised federated learning, listed with eqs (4)–(9)).
//!
//! $T$ quadratic tasks, task $t$ with training loss $L_t(\varphi) = \tfrac12\varphi^\top Q_t\varphi - c_t^\top\varphi$
//! and validation loss $V_t(\varphi) = \tfrac12\varphi^\top R_t\varphi - e_t^\top\varphi$. The lower level adapts
//! each task's parameters $\phi_t$ near the meta-parameters $\theta\in\mathbb{R}^d$, the upper level scores the
//! adapted parameters:
//! $$f_l(\theta,\phi) = \sum_{t<T}\Big[L_t(\phi_t) + \frac\lambda2\\|\phi_t - \theta\\|^2\Big],\qquad
//! f_u(\theta,\phi) = \frac1T\sum_{t<T}V_t(\phi_t),$$
//! with $\phi = (\phi_0,\dots,\phi_{T-1})$, $d_l = Td \ne d_u = d$. In closed form
//! $\phi_t^\star(\theta) = (Q_t + \lambda I)^{-1}(c_t + \lambda\theta) = M_t\theta + m_t$ with
//! $M_t = \lambda(Q_t + \lambda I)^{-1} = (I + Q_t/\lambda)^{-1}$ (the iMAML Jacobian),
//! $\nabla^2_{\theta\phi} f_l = -\lambda[I\ \cdots\ I]$, and
//! $$F(\theta) = \tfrac12\theta^\top A_F\theta + g_F^\top\theta + c_F,\quad A_F = \frac1T\sum_t M_t^\top R_tM_t,\quad
//! g_F = \frac1T\sum_t M_t^\top(R_tm_t - e_t).$$
//! $R_t\succ0$ makes $F$ strongly convex: $\theta^\star = -A_F^{-1}g_F$ ($\Theta = \mathbb{R}^d$). $F$, $\nabla F$ and
//! $J$ are computed from $M_t$, $A_F$, $g_F$, independently of the generic formula (13). The family is deterministic
//! (wrap it in [`crate::problem::Noisy`] for stochastic oracles).
//!
//! # Constants (all exact)
//! $\mu_l = \min_t\lambda_{\min}(Q_t) + \lambda$, $L_l = \max_t\lambda_{\max}(Q_t) + \lambda$,
//! $C_{\theta\phi} = \lambda\sqrt T$, $\nabla_\phi f_u$ is $\max_t\lambda_{\max}(R_t)/T$-Lipschitz, $L_\phi = \\|M\\|$
//! ($M$ the stacked $M_t$), $L_F = \lambda_{\max}(A_F)$, $\mu_F = \lambda_{\min}(A_F)$. $\nabla_\phi f_u$ is
//! unbounded (`None`).

use super::random::{gaussian_vector, spd_with_spectrum};
use crate::error::{BilevelError, Result};
use crate::linalg::{Matrix, Vector, spd_solve_vec, spectral_norm, sym_eig_range, symmetrize};
use crate::problem::{Bilevel, Constants, Dims, Domain, Level, Sample};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

/// Parameters of [`MetaLearning`]; checked by [`MetaLearningSpec::build`].
///
/// Size limit: the instance holds, per task, $Q_t$, $R_t$, $M_t$ and a block of the stacked Jacobian ($d\times d$),
/// [`MetaLearningSpec::entries`] $\le$ [`MAX_ENTRIES`](super::MAX_ENTRIES) (2 GiB).
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetaLearningSpec {
    /// Parameter dimension $d = d_u$.
    pub d: usize,
    /// Number of tasks $T$ ($d_l = Td$).
    pub tasks: usize,
    /// Proximal weight $\lambda > 0$.
    pub lambda: f64,
    /// Spectrum $[q_{\min}, q_{\max}]$ of the training Hessians $Q_t$ ($q_{\min} > -\lambda$ keeps $f_l$ strongly convex;
    /// here $q_{\min} > 0$ is required).
    pub q_range: (f64, f64),
    /// Spectrum of the validation Hessians $R_t$ (both ends $> 0$).
    pub r_range: (f64, f64),
    /// Seed of the generator.
    pub seed: u64,
}

impl Default for MetaLearningSpec {
    fn default() -> Self {
        MetaLearningSpec {
            d: 3,
            tasks: 4,
            lambda: 1.0,
            q_range: (0.5, 5.0),
            r_range: (0.5, 2.0),
            seed: 0,
        }
    }
}

/// The heap cost of one task beyond its arrays, counted as `f64` entries: six matrix and vector headers (216 bytes)
/// and the allocator's overhead of their six buffers.
const TASK_OVERHEAD: usize = 40;

impl MetaLearningSpec {
    /// The `f64` entries the instance holds and its construction forms, checked by [`MetaLearningSpec::build`]
    /// against [`MAX_ENTRIES`](super::MAX_ENTRIES): $T(4d^2 + 4d + 40) + 6d^2 + 3d$ (saturating).
    pub fn entries(&self) -> u64 {
        Self::count(self.d, self.tasks)
    }

    fn count(d: usize, tasks: usize) -> u64 {
        super::entries(&[
            &[4, tasks, d, d],
            &[4, tasks, d],
            &[TASK_OVERHEAD, tasks],
            &[6, d, d],
            &[3, d],
        ])
    }

    /// Check the parameters and generate the tasks.
    pub fn build(&self) -> Result<MetaLearning> {
        for (name, v) in [("d", self.d), ("tasks", self.tasks)] {
            if v == 0 {
                return Err(BilevelError::invalid(name, v, "must be >= 1"));
            }
        }
        if !(self.lambda.is_finite() && self.lambda > 0.0) {
            return Err(BilevelError::invalid("lambda", self.lambda, "must be finite and > 0"));
        }
        for (name, (lo, hi)) in [("q_range", self.q_range), ("r_range", self.r_range)] {
            if !(lo.is_finite() && hi.is_finite() && lo > 0.0 && hi >= lo) {
                return Err(BilevelError::invalid(
                    name,
                    format!("({lo}, {hi})"),
                    "must satisfy 0 < lo <= hi < inf",
                ));
            }
        }
        super::check_storage(
            "meta_learning",
            &[("d", self.d), ("tasks", self.tasks)],
            |v| Self::count(v[0], v[1]),
            "per task d x d Q_t, R_t, M_t and its block of the stacked Jacobian, three d-vectors and the task's \
             headers, and the transient copies of one Haar construction",
            "lower the sizes named (each task also costs two d x d Haar constructions, O(d^3) time)",
        )?;
        let (d, nt, lambda) = (self.d, self.tasks, self.lambda);
        // The storage check bounds T d, so d_l = T d and every block offset t d fit in a usize.
        let d_l = nt
            .checked_mul(d)
            .ok_or_else(|| BilevelError::invalid("tasks", nt, "tasks d overflows"))?;
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        let mut tasks = Vec::with_capacity(nt);
        for _ in 0..nt {
            let q = spd_with_spectrum(&mut rng, d, self.q_range.0, self.q_range.1);
            let c = gaussian_vector(&mut rng, d);
            let r = spd_with_spectrum(&mut rng, d, self.r_range.0, self.r_range.1);
            let e = gaussian_vector(&mut rng, d);
            let q_lam = &q + Matrix::identity(d, d) * lambda;
            let m_t = crate::linalg::spd_solve("Q_t + lambda I", &q_lam, &(Matrix::identity(d, d) * lambda))?;
            let m_t = symmetrize(&m_t);
            let off = spd_solve_vec("Q_t + lambda I", &q_lam, &c)?;
            tasks.push(Task {
                q,
                c,
                r,
                e,
                m: m_t,
                off,
            });
        }
        let tf = nt as f64;
        let mut a_f = Matrix::zeros(d, d);
        let mut g_f = Vector::zeros(d);
        let mut c_f = 0.0;
        let mut stacked = Matrix::zeros(d_l, d);
        let (mut mu_l, mut l_l, mut l_r) = (f64::INFINITY, 0.0f64, 0.0f64);
        for (t, k) in tasks.iter().enumerate() {
            a_f += k.m.transpose() * &k.r * &k.m / tf;
            g_f += k.m.transpose() * (&k.r * &k.off - &k.e) / tf;
            c_f += (0.5 * k.off.dot(&(&k.r * &k.off)) - k.e.dot(&k.off)) / tf;
            stacked.view_mut((t * d, 0), (d, d)).copy_from(&k.m);
            let (lo, hi) = sym_eig_range(&k.q);
            mu_l = mu_l.min(lo + lambda);
            l_l = l_l.max(hi + lambda);
            l_r = l_r.max(sym_eig_range(&k.r).1);
        }
        let a_f = symmetrize(&a_f);
        let theta_star = -spd_solve_vec("A_F", &a_f, &g_f)?;
        let (mu_f, l_f) = sym_eig_range(&a_f);
        let constants = Constants {
            l_l_sample: None,
            mu_l,
            l_l,
            cross_bound: Some(lambda * tf.sqrt()),
            l_fu_phi: Some(l_r / tf),
            l_fu_theta: Some(0.0),
            grad_phi_fu_bound: None,
            l_hess_phi: Some(0.0),
            l_phi_star: spectral_norm(&stacked),
            l_f,
            mu_f: Some(mu_f),
            weak_convexity: 0.0,
        };
        Ok(MetaLearning {
            spec: self.clone(),
            tasks,
            stacked,
            a_f,
            g_f,
            c_f,
            theta_star,
            constants,
            domain: Domain::Unbounded,
        })
    }
}

/// One task's data.
#[derive(Debug, Clone, PartialEq)]
pub struct Task {
    /// Training Hessian $Q_t$.
    pub q: Matrix,
    /// Training linear term $c_t$.
    pub c: Vector,
    /// Validation Hessian $R_t$.
    pub r: Matrix,
    /// Validation linear term $e_t$.
    pub e: Vector,
    /// $M_t = \lambda(Q_t+\lambda I)^{-1}$.
    pub m: Matrix,
    /// $m_t = (Q_t+\lambda I)^{-1}c_t$.
    pub off: Vector,
}

/// The proximal meta-learning family (see the module docs).
#[derive(Debug, Clone)]
pub struct MetaLearning {
    spec: MetaLearningSpec,
    /// The tasks.
    pub tasks: Vec<Task>,
    stacked: Matrix,
    a_f: Matrix,
    g_f: Vector,
    c_f: f64,
    theta_star: Vector,
    constants: Constants,
    domain: Domain,
}

impl MetaLearning {
    /// The parameters it was built from.
    pub fn spec(&self) -> &MetaLearningSpec {
        &self.spec
    }

    fn block<'a>(&self, phi: &'a Vector, t: usize) -> nalgebra::DVectorView<'a, f64> {
        let d = self.spec.d;
        phi.rows(t * d, d)
    }
}

impl Bilevel for MetaLearning {
    fn name(&self) -> &str {
        "meta_learning"
    }
    fn dims(&self) -> Dims {
        Dims {
            d_u: self.spec.d,
            d_l: self.spec.d * self.spec.tasks,
        }
    }
    fn draw(&self, _level: Level, _rng: &mut ChaCha8Rng) -> Sample {
        Sample::Exact
    }
    fn f_u(&self, _s: Sample, _theta: &Vector, phi: &Vector) -> f64 {
        let tf = self.spec.tasks as f64;
        self.tasks
            .iter()
            .enumerate()
            .map(|(t, k)| {
                let p = self.block(phi, t);
                0.5 * p.dot(&(&k.r * p)) - k.e.dot(&p)
            })
            .sum::<f64>()
            / tf
    }
    fn f_l(&self, _s: Sample, theta: &Vector, phi: &Vector) -> f64 {
        let lambda = self.spec.lambda;
        self.tasks
            .iter()
            .enumerate()
            .map(|(t, k)| {
                let p = self.block(phi, t);
                0.5 * p.dot(&(&k.q * p)) - k.c.dot(&p) + 0.5 * lambda * (p - theta).norm_squared()
            })
            .sum()
    }
    fn grad_theta_fu(&self, _s: Sample, _theta: &Vector, _phi: &Vector, out: &mut Vector) {
        out.fill(0.0);
    }
    fn grad_phi_fu(&self, _s: Sample, _theta: &Vector, phi: &Vector, out: &mut Vector) {
        let (d, tf) = (self.spec.d, self.spec.tasks as f64);
        for (t, k) in self.tasks.iter().enumerate() {
            let mut o = out.rows_mut(t * d, d);
            o.copy_from(&k.e);
            o.gemv(1.0 / tf, &k.r, &phi.rows(t * d, d), -1.0 / tf);
        }
    }
    fn grad_phi_fl(&self, _s: Sample, theta: &Vector, phi: &Vector, out: &mut Vector) {
        let (d, lambda) = (self.spec.d, self.spec.lambda);
        for (t, k) in self.tasks.iter().enumerate() {
            let p = phi.rows(t * d, d);
            let mut o = out.rows_mut(t * d, d);
            // Q_t φ_t − c_t + λ(φ_t − θ)
            o.copy_from(&(lambda * (p - theta) - &k.c));
            o.gemv(1.0, &k.q, &p, 1.0);
        }
    }
    fn grad_theta_fl(&self, _s: Sample, theta: &Vector, phi: &Vector, out: &mut Vector) {
        // −λ Σ_t (φ_t − θ).
        let d = self.spec.d;
        out.fill(0.0);
        for t in 0..self.spec.tasks {
            *out -= self.spec.lambda * (phi.rows(t * d, d) - theta);
        }
    }
    fn hvp_fl(&self, _s: Sample, _theta: &Vector, _phi: &Vector, v: &Vector, out: &mut Vector) {
        let (d, lambda) = (self.spec.d, self.spec.lambda);
        for (t, k) in self.tasks.iter().enumerate() {
            let vt = v.rows(t * d, d);
            let mut o = out.rows_mut(t * d, d);
            o.copy_from(&vt);
            o.gemv(1.0, &k.q, &vt, lambda);
        }
    }
    fn cross_fl(&self, _s: Sample, _theta: &Vector, _phi: &Vector, w: &Vector, out: &mut Vector) {
        let d = self.spec.d;
        out.fill(0.0);
        for t in 0..self.spec.tasks {
            *out -= self.spec.lambda * w.rows(t * d, d);
        }
    }
    fn cross_t_fl(&self, _s: Sample, _theta: &Vector, _phi: &Vector, u: &Vector, out: &mut Vector) {
        let d = self.spec.d;
        for t in 0..self.spec.tasks {
            out.rows_mut(t * d, d).copy_from(&(-self.spec.lambda * u));
        }
    }
    fn phi_star(&self, theta: &Vector) -> Vector {
        let d = self.spec.d;
        let mut out = Vector::zeros(d * self.spec.tasks);
        for (t, k) in self.tasks.iter().enumerate() {
            out.rows_mut(t * d, d).copy_from(&(&k.m * theta + &k.off));
        }
        out
    }
    fn jacobian_phi_star(&self, _theta: &Vector) -> Result<Matrix> {
        Ok(self.stacked.clone())
    }
    fn value_f(&self, theta: &Vector) -> f64 {
        0.5 * theta.dot(&(&self.a_f * theta)) + self.g_f.dot(theta) + self.c_f
    }
    fn grad_f(&self, theta: &Vector) -> Result<Vector> {
        Ok(&self.a_f * theta + &self.g_f)
    }
    fn theta_star(&self) -> Option<Vector> {
        Some(self.theta_star.clone())
    }
    fn constants(&self) -> Constants {
        self.constants.clone()
    }
    fn domain(&self) -> &Domain {
        &self.domain
    }
    fn describe(&self) -> String {
        format!(
            "proximal meta-learning (iMAML / personalised FL): T={} quadratic tasks in d={}, lambda={}, mu_F={:.3}",
            self.spec.tasks,
            self.spec.d,
            self.spec.lambda,
            self.constants.mu_f.unwrap_or(0.0)
        )
    }
}
