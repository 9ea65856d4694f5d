//! A family whose hypergradient surrogate is nonlinear in $\phi$ and whose cross derivative depends on $\phi$, with
//! exact $\phi^\star$, $F$, $\nabla F$ and $\theta^\star$ (issue 10 §1: the instance where lower-level error is a
//! **bias**, not only variance).
//!
//! $$f_l(\theta,\phi) = \tfrac12 h(\theta)\\,\\|\phi - A\theta\\|^2,\quad h(\theta) = 1 + \gamma\sum_i\sin^2\theta_i,\qquad
//! f_u(\theta,\phi) = \tfrac12\\|\phi - A\theta^\circ\\|^2,$$
//! $A = U\\,\mathrm{diag}(s)$ with $U\in\mathbb{R}^{d_l\times d_u}$ orthonormal columns (seeded, non-symmetric,
//! $d_l > d_u$) and singular values $s$ spread from `s_max` down to `s_min`, $\Theta = [-R, R]^{d_u}$. Then
//! $$\phi^\star(\theta) = A\theta,\quad F(\theta) = \tfrac12\\|A(\theta - \theta^\circ)\\|^2 = \tfrac12\sum_i s_i^2(\theta_i -
//! \theta^\circ_i)^2,\quad \theta^\star = \mathrm{clip}(\theta^\circ, -R, R)$$
//! (separable because $A^\top A = \mathrm{diag}(s^2)$, so the box-constrained minimiser is the clipped one; with
//! $|\theta^\circ_i| > R$ the constraint is active at $\theta^\star$).
//!
//! # Why the mechanism matters here
//! $\nabla_\phi f_l = h(\theta)(\phi - A\theta)$, so the cross derivative
//! $\nabla^2_{\theta\phi} f_l = \nabla h(\theta)(\phi - A\theta)^\top - h(\theta)A^\top$ depends on $\phi$, and the surrogate
//! (13) at an arbitrary $\phi = A\theta + e$ is
//! $$\bar\nabla f(\theta,\phi) = A^\top(\phi - A\theta^\circ) - \frac{\nabla h(\theta)}{h(\theta)}(\phi - A\theta)^\top(\phi -
//! A\theta^\circ) = \nabla F(\theta) + A^\top e - \frac{\nabla h}{h}\big(e^\top A(\theta - \theta^\circ) + \\|e\\|^2\big),$$
//! quadratic in $e$: zero-mean lower-level error of second moment $\mathbb{E}\\|e\\|^2$ biases the hypergradient by
//! $-(\nabla h/h)\\,\mathbb{E}\\|e\\|^2$ (on the quadratic family the surrogate is affine in $\phi$ and that error
//! averages out). With $\nabla h_i = \gamma\sin 2\theta_i$ the bias is nonzero near $\theta^\star$ unless
//! $\theta^\star_i\in\frac\pi2\mathbb{Z}$; the default $\theta^\circ = (0.6, -0.7)$ gives $|\nabla h/h|\approx0.78$.
//!
//! # Constants on $\Theta$ (exact unless stated)
//! $\mu_l = 1$, $L_l = 1 + \gamma d_u\sin^2(\min(R,\pi/2))$ (the largest $h$), $L_\phi = s_{\max}$,
//! $\mu_F = s_{\min}^2$, $L_F = s_{\max}^2$, $\rho_F = 0$; $\nabla_\phi f_u = \phi - A\theta^\circ$ is 1-Lipschitz in
//! $\phi$ and constant in $\theta$; $\nabla^2_{\phi\phi} f_l = hI$ does not depend on $\phi$, while the cross derivative
//! is $\\|\nabla h\\|\le\gamma\sqrt{d_u}$-Lipschitz in $\phi$ (declared `l_hess_phi`); the cross derivative and
//! $\nabla_\phi f_u$ are unbounded in $\phi$ (`None`). Samples carry only the additive noise of
//! [`crate::problem::Noisy`].

use super::random::gaussian_matrix;
use crate::error::{BilevelError, Result};
use crate::linalg::{Matrix, Vector};
use crate::problem::{Bilevel, Constants, Dims, Domain, Level, Sample};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

/// Parameters of [`NonlinearCoupling`]; checked by [`NonlinearCouplingSpec::build`].
///
/// Size limit: $A$ ($d_l\times d_u$, three such arrays during the construction),
/// [`NonlinearCouplingSpec::entries`] $\le$ [`MAX_ENTRIES`](super::MAX_ENTRIES) (2 GiB).
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NonlinearCouplingSpec {
    /// Lower-level dimension $d_l$ (must exceed $d_u$ = the length of `theta_opt`).
    pub d_l: usize,
    /// The unconstrained minimiser $\theta^\circ$ of $F$ (its length is $d_u$).
    pub theta_opt: Vec<f64>,
    /// Strength $\gamma\ge0$ of the $\theta$-dependence of the LL curvature $h(\theta)$.
    pub gamma: f64,
    /// Largest singular value of $A$.
    pub s_max: f64,
    /// Smallest singular value of $A$ ($0 < s_{\min}\le s_{\max}$).
    pub s_min: f64,
    /// Half-width $R$ of $\Theta = [-R, R]^{d_u}$.
    pub radius: f64,
    /// Seed of $U$.
    pub seed: u64,
}

impl Default for NonlinearCouplingSpec {
    fn default() -> Self {
        NonlinearCouplingSpec {
            d_l: 3,
            theta_opt: vec![0.6, -0.7],
            gamma: 1.0,
            s_max: 1.0,
            s_min: 0.8,
            radius: 3.0,
            seed: 0,
        }
    }
}

impl NonlinearCouplingSpec {
    /// The `f64` entries the instance holds and its construction forms, checked by
    /// [`NonlinearCouplingSpec::build`] against [`MAX_ENTRIES`](super::MAX_ENTRIES), with $d_u$ the length of
    /// `theta_opt`: $3d_ud_l + 2d_l + d_u^2 + 8d_u$ (saturating).
    pub fn entries(&self) -> u64 {
        Self::count(self.theta_opt.len(), self.d_l)
    }

    fn count(d_u: usize, d_l: usize) -> u64 {
        super::entries(&[&[3, d_u, d_l], &[2, d_l], &[d_u, d_u], &[8, d_u]])
    }

    /// Check the parameters and build the instance.
    pub fn build(&self) -> Result<NonlinearCoupling> {
        let d_u = self.theta_opt.len();
        if d_u == 0 {
            return Err(BilevelError::invalid("theta_opt", "[]", "must have length d_u >= 1"));
        }
        if self.d_l <= d_u {
            return Err(BilevelError::invalid(
                "d_l",
                self.d_l,
                "must exceed d_u = len(theta_opt)",
            ));
        }
        if self.theta_opt.iter().any(|x| !x.is_finite()) {
            return Err(BilevelError::invalid("theta_opt", "non-finite", "must be finite"));
        }
        if !(self.gamma.is_finite() && self.gamma >= 0.0) {
            return Err(BilevelError::invalid("gamma", self.gamma, "must be finite and >= 0"));
        }
        if !(self.s_min.is_finite() && self.s_min > 0.0) {
            return Err(BilevelError::invalid("s_min", self.s_min, "must be finite and > 0"));
        }
        if !(self.s_max.is_finite() && self.s_max >= self.s_min) {
            return Err(BilevelError::invalid(
                "s_max",
                self.s_max,
                "must be finite and >= s_min",
            ));
        }
        if !(self.radius.is_finite() && self.radius > 0.0) {
            return Err(BilevelError::invalid("radius", self.radius, "must be finite and > 0"));
        }
        super::check_storage(
            "nonlinear_coupling",
            &[("d_u", d_u), ("d_l", self.d_l)],
            |v| Self::count(v[0], v[1]),
            "d_l x d_u A, its orthonormal factor and the Gaussian it comes from, and d_l-vectors",
            "lower d_l (d_u is the length of theta_opt)",
        )?;
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        // Orthonormal columns: thin QR of a Gaussian d_l × d_u matrix.
        let u = gaussian_matrix(&mut rng, self.d_l, d_u).qr().q();
        let s = Vector::from_fn(d_u, |i, _| {
            if d_u == 1 {
                self.s_max
            } else {
                self.s_max + (self.s_min - self.s_max) * i as f64 / (d_u - 1) as f64
            }
        });
        let a = &u * Matrix::from_diagonal(&s);
        let theta_opt = Vector::from_vec(self.theta_opt.clone());
        let c = &a * &theta_opt;
        let r = self.radius;
        let theta_star = theta_opt.map(|x| x.clamp(-r, r));
        let sin_max = r.min(std::f64::consts::FRAC_PI_2).sin();
        let constants = Constants {
            mu_l: 1.0,
            l_l: 1.0 + self.gamma * d_u as f64 * sin_max * sin_max,
            l_l_sample: None,
            cross_bound: None,
            l_fu_phi: Some(1.0),
            l_fu_theta: Some(0.0),
            grad_phi_fu_bound: None,
            l_hess_phi: Some(self.gamma * (d_u as f64).sqrt()),
            l_phi_star: self.s_max,
            l_f: self.s_max * self.s_max,
            mu_f: Some(self.s_min * self.s_min),
            weak_convexity: 0.0,
        };
        Ok(NonlinearCoupling {
            spec: self.clone(),
            a,
            s2: s.map(|x| x * x),
            c,
            theta_opt,
            theta_star,
            constants,
            domain: Domain::new_box(vec![-r; d_u], vec![r; d_u])?,
        })
    }
}

/// The instance of the module docs.
#[derive(Debug, Clone)]
pub struct NonlinearCoupling {
    spec: NonlinearCouplingSpec,
    /// $A = U\mathrm{diag}(s)$ ($d_l\times d_u$).
    pub a: Matrix,
    s2: Vector,
    c: Vector,
    theta_opt: Vector,
    theta_star: Vector,
    constants: Constants,
    domain: Domain,
}

thread_local! {
    /// The last $((\gamma, \theta)$ bits, $h)$ of [`NonlinearCoupling::h`] on this thread ($\theta$ padded with `u64::MAX`, the
    /// bits of a NaN no caller passes).
    static H_MEMO: std::cell::Cell<([u64; 5], f64)> = const { std::cell::Cell::new(([u64::MAX; 5], f64::NAN)) };
}

impl NonlinearCoupling {
    /// The parameters it was built from.
    pub fn spec(&self) -> &NonlinearCouplingSpec {
        &self.spec
    }
    /// $h(\theta) = 1 + \gamma\sum_i\sin^2\theta_i$.
    ///
    /// The last value is kept per thread, keyed by the bits of $(\gamma, \theta)$ for $d_u \le 4$: a Neumann series
    /// asks for $h$ at one $\theta$ once per product, and glibc's `sin` (which saves and restores the rounding mode)
    /// was a quarter of the `nl/*` claims' CPU. The value returned is the one computed, bit for bit. Unchecked, as
    /// the [`Bilevel`] methods: the sum runs over whatever `theta` holds, so a `theta` of
    /// another length than $d_u$ gives $h$ of that vector, not an error.
    pub fn h(&self, theta: &Vector) -> f64 {
        let compute = || 1.0 + self.spec.gamma * theta.iter().map(|t| t.sin().powi(2)).sum::<f64>();
        let n = theta.len();
        if n > 4 {
            return compute();
        }
        let mut key = [u64::MAX; 5];
        key[0] = self.spec.gamma.to_bits();
        for (k, t) in key[1..].iter_mut().zip(theta.iter()) {
            *k = t.to_bits();
        }
        H_MEMO.with(|m| {
            let (last, value) = m.get();
            if last == key {
                return value;
            }
            let v = compute();
            m.set((key, v));
            v
        })
    }
    /// $\partial h/\partial\theta_i = \gamma\sin 2\theta_i$.
    fn dh(&self, theta: &Vector, i: usize) -> f64 {
        self.spec.gamma * (2.0 * theta[i]).sin()
    }
    /// $\phi - A\theta$.
    fn resid(&self, theta: &Vector, phi: &Vector) -> Vector {
        let mut r = phi.clone();
        r.gemv(-1.0, &self.a, theta, 1.0);
        r
    }
}

impl Bilevel for NonlinearCoupling {
    fn name(&self) -> &str {
        "nonlinear_coupling"
    }
    fn dims(&self) -> Dims {
        Dims {
            d_u: self.theta_opt.len(),
            d_l: self.spec.d_l,
        }
    }
    fn draw(&self, _level: Level, _rng: &mut ChaCha8Rng) -> Sample {
        Sample::Exact
    }
    fn f_u(&self, _s: Sample, _theta: &Vector, phi: &Vector) -> f64 {
        0.5 * (phi - &self.c).norm_squared()
    }
    fn f_l(&self, _s: Sample, theta: &Vector, phi: &Vector) -> f64 {
        0.5 * self.h(theta) * self.resid(theta, phi).norm_squared()
    }
    fn grad_theta_fu(&self, _s: Sample, _theta: &Vector, _phi: &Vector, out: &mut Vector) {
        out.fill(0.0);
    }
    fn grad_phi_fu(&self, _s: Sample, _theta: &Vector, phi: &Vector, out: &mut Vector) {
        out.copy_from(phi);
        *out -= &self.c;
    }
    fn grad_phi_fl(&self, _s: Sample, theta: &Vector, phi: &Vector, out: &mut Vector) {
        out.copy_from(phi);
        out.gemv(-1.0, &self.a, theta, 1.0);
        *out *= self.h(theta);
    }
    fn grad_theta_fl(&self, _s: Sample, theta: &Vector, phi: &Vector, out: &mut Vector) {
        // ½∇h‖r‖² − h Aᵀr with r = φ − Aθ.
        let r = self.resid(theta, phi);
        let half_r2 = 0.5 * r.norm_squared();
        out.gemv_tr(-self.h(theta), &self.a, &r, 0.0);
        for i in 0..out.len() {
            out[i] += self.dh(theta, i) * half_r2;
        }
    }
    fn hvp_fl(&self, _s: Sample, theta: &Vector, _phi: &Vector, v: &Vector, out: &mut Vector) {
        out.copy_from(v);
        *out *= self.h(theta);
    }
    fn cross_fl(&self, _s: Sample, theta: &Vector, phi: &Vector, w: &Vector, out: &mut Vector) {
        // [∇h rᵀ − h Aᵀ] w.
        let rw = self.resid(theta, phi).dot(w);
        out.gemv_tr(-self.h(theta), &self.a, w, 0.0);
        for i in 0..out.len() {
            out[i] += self.dh(theta, i) * rw;
        }
    }
    fn cross_t_fl(&self, _s: Sample, theta: &Vector, phi: &Vector, u: &Vector, out: &mut Vector) {
        // [r ∇hᵀ − h A] u.
        let hu: f64 = (0..u.len()).map(|i| self.dh(theta, i) * u[i]).sum();
        out.copy_from(phi);
        out.gemv(-1.0, &self.a, theta, 1.0);
        *out *= hu;
        out.gemv(-self.h(theta), &self.a, u, 1.0);
    }
    fn hess_fl(&self, _s: Sample, theta: &Vector, _phi: &Vector) -> Matrix {
        // h(θ) I with the entries of the trait's column-by-column build (1·h and 0·h), one h instead of d_l
        // (STABLE asks for this matrix twice per step).
        let d = self.spec.d_l;
        Matrix::identity(d, d) * self.h(theta)
    }
    fn cross_matrix_fl(&self, _s: Sample, theta: &Vector, phi: &Vector) -> Matrix {
        // Entry (k, j) = (−h A_jk) + ∇h_k r_j: the operations `cross_fl` does on the unit vector e_j, with h, ∇h and r
        // computed once instead of once per column.
        let (h, r) = (self.h(theta), self.resid(theta, phi));
        let dh: Vec<f64> = (0..theta.len()).map(|k| self.dh(theta, k)).collect();
        Matrix::from_fn(theta.len(), self.spec.d_l, |k, j| -h * self.a[(j, k)] + dh[k] * r[j])
    }
    fn phi_star(&self, theta: &Vector) -> Vector {
        &self.a * theta
    }
    fn jacobian_phi_star(&self, _theta: &Vector) -> Result<Matrix> {
        Ok(self.a.clone())
    }
    fn value_f(&self, theta: &Vector) -> f64 {
        0.5 * (theta - &self.theta_opt)
            .iter()
            .zip(self.s2.iter())
            .map(|(d, s2)| s2 * d * d)
            .sum::<f64>()
    }
    fn grad_f(&self, theta: &Vector) -> Result<Vector> {
        Ok((theta - &self.theta_opt).component_mul(&self.s2))
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
            "nonlinear coupling: f_l = h(theta)/2 |phi - A theta|^2, h = 1 + {} sum sin^2, f_u = |phi - A theta_opt|^2/2, d_u={}, d_l={}, Theta={}",
            self.spec.gamma,
            self.theta_opt.len(),
            self.spec.d_l,
            self.domain.label()
        )
    }
}
