//! A weakly convex (nonconvex) upper level with a known modulus: the setting of TTSA's weakly convex theorem and
//! of the Moreau-envelope stationarity measure, eqs (37)–(38).
//!
//! $$f_l(\theta,\phi) = \tfrac12(\phi - A\theta)^\top S(\phi - A\theta),\qquad
//! f_u(\theta,\phi) = c\sum_{i<d_l}\cos\phi_i + \tfrac p2\\|\theta\\|^2,$$
//! $A\in\mathbb{R}^{d_l\times d_u}$ Gaussian, $S\succ0$, $\Theta = [-R, R]^{d_u}$, and $p = r\\,c\\,\lambda_{\max}(A^\top A)$
//! with a ratio $r\ge0$. Then $\phi^\star(\theta) = A\theta$, $J = A$, $\nabla^2_{\theta\phi} f_l = -A^\top S$ and
//! $$F(\theta) = c\sum_i\cos(A\theta)\_i + \tfrac p2\\|\theta\\|^2,\qquad \nabla F = -cA^\top\sin(A\theta) + p\theta,
//! \qquad \nabla^2F = pI - cA^\top\mathrm{diag}(\cos A\theta)A.$$
//! Since $\mathrm{diag}(\cos)\preceq I$ with equality at $\theta = 0\in\Theta$, the weak-convexity modulus is exactly
//! $\rho_F = \max(0, (1-r)\\,c\\,\lambda_{\max}(A^\top A))$: $F$ is nonconvex iff $r < 1$ (default $r = 1/2$).
//! $F$ is even, so $\theta^\star$ is not unique (`None`).
//!
//! [`WeaklyConvex::prox`] computes the proximal map $\hat\theta(\vartheta)$ of (37) for $\rho > \rho_F$ and
//! [`WeaklyConvex::moreau_gap`] the measure $\\|\hat\theta(\vartheta) - \vartheta\\|^2$ of (38)
//! ($\varepsilon$-nearly stationary when $\le\varepsilon/\rho^2$).
//!
//! # Constants
//! Exact: $\mu_l = \lambda_{\min}(S)$, $L_l = \lambda_{\max}(S)$, $C_{\theta\phi} = \\|A^\top S\\|$, $L_\phi = \\|A\\|$,
//! $\nabla_\phi f_u = -c\sin\phi$ is $c$-Lipschitz and bounded by $c\sqrt{d_l}$ (the lecture's bounded-gradient
//! assumption holds), $\rho_F$ as above. A bound: $L_F = p + c\\|A\\|^2$.

use super::random::{gaussian_matrix, spd_with_spectrum};
use crate::error::{BilevelError, Result};
use crate::linalg::{Matrix, Vector, check_vector, spectral_norm, sym_eig_range};
use crate::problem::{Bilevel, Constants, Dims, Domain, Level, Sample};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

/// Parameters of [`WeaklyConvex`]; checked by [`WeaklyConvexSpec::build`].
///
/// Size limit: $S$ ($d_l\times d_l$, five copies during its construction) and $A$, $A^\top S$,
/// [`WeaklyConvexSpec::entries`] $\le$ [`MAX_ENTRIES`](super::MAX_ENTRIES) (2 GiB), so $d_l\le 7326$ at $d_u = 2$.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WeaklyConvexSpec {
    /// $d_u$.
    pub d_u: usize,
    /// $d_l$.
    pub d_l: usize,
    /// Amplitude $c > 0$ of the cosine term.
    pub amplitude: f64,
    /// Ratio $r\ge0$: $p = r\\,c\\,\lambda_{\max}(A^\top A)$ ($F$ nonconvex iff $r < 1$).
    pub curvature_ratio: f64,
    /// Half-width $R$ of $\Theta = [-R, R]^{d_u}$.
    pub radius: f64,
    /// Spectrum $[s_{\min}, s_{\max}]$ of $S$.
    pub s_range: (f64, f64),
    /// Seed of the generator.
    pub seed: u64,
}

impl Default for WeaklyConvexSpec {
    fn default() -> Self {
        WeaklyConvexSpec {
            d_u: 2,
            d_l: 3,
            amplitude: 1.0,
            curvature_ratio: 0.5,
            radius: 3.0,
            s_range: (1.0, 4.0),
            seed: 0,
        }
    }
}

impl WeaklyConvexSpec {
    /// The `f64` entries the instance holds and its construction forms, checked by [`WeaklyConvexSpec::build`]
    /// against [`MAX_ENTRIES`](super::MAX_ENTRIES): $5d_l^2 + 2d_ud_l + d_u^2 + 2d_u$ (saturating; the Haar
    /// construction of $S$ holds up to five $d_l\times d_l$ matrices at once).
    pub fn entries(&self) -> u64 {
        Self::count(self.d_u, self.d_l)
    }

    fn count(d_u: usize, d_l: usize) -> u64 {
        super::entries(&[&[5, d_l, d_l], &[2, d_u, d_l], &[d_u, d_u], &[2, d_u]])
    }

    /// Check the parameters and generate the instance.
    pub fn build(&self) -> Result<WeaklyConvex> {
        for (name, v) in [("d_u", self.d_u), ("d_l", self.d_l)] {
            if v == 0 {
                return Err(BilevelError::invalid(name, v, "must be >= 1"));
            }
        }
        if !(self.amplitude.is_finite() && self.amplitude > 0.0) {
            return Err(BilevelError::invalid(
                "amplitude",
                self.amplitude,
                "must be finite and > 0",
            ));
        }
        if !(self.curvature_ratio.is_finite() && self.curvature_ratio >= 0.0) {
            return Err(BilevelError::invalid(
                "curvature_ratio",
                self.curvature_ratio,
                "must be finite and >= 0",
            ));
        }
        if !(self.radius.is_finite() && self.radius > 0.0) {
            return Err(BilevelError::invalid("radius", self.radius, "must be finite and > 0"));
        }
        let (s_lo, s_hi) = self.s_range;
        if !(s_lo.is_finite() && s_hi.is_finite() && s_lo > 0.0 && s_hi >= s_lo) {
            return Err(BilevelError::invalid(
                "s_range",
                format!("({s_lo}, {s_hi})"),
                "must satisfy 0 < lo <= hi < inf",
            ));
        }
        super::check_storage(
            "weakly_convex",
            &[("d_u", self.d_u), ("d_l", self.d_l)],
            |v| Self::count(v[0], v[1]),
            "d_l x d_l S with the transient copies of its Haar construction, d_l x d_u A and A' S",
            "lower the sizes named (S's Haar construction is a dense QR, O(d_l^3) time)",
        )?;
        let (d_u, d_l) = (self.d_u, self.d_l);
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        let a = gaussian_matrix(&mut rng, d_l, d_u) / (d_l as f64).sqrt();
        let s = spd_with_spectrum(&mut rng, d_l, s_lo, s_hi);
        let c = self.amplitude;
        let ata_max = sym_eig_range(&(a.transpose() * &a)).1;
        let p = self.curvature_ratio * c * ata_max;
        let (mu_l, l_l) = sym_eig_range(&s);
        let constants = Constants {
            l_l_sample: None,
            mu_l,
            l_l,
            cross_bound: Some(spectral_norm(&(a.transpose() * &s))),
            l_fu_phi: Some(c),
            l_fu_theta: Some(0.0),
            grad_phi_fu_bound: Some(c * (d_l as f64).sqrt()),
            l_hess_phi: Some(0.0),
            l_phi_star: ata_max.sqrt(),
            l_f: p + c * ata_max,
            mu_f: None,
            weak_convexity: (c * ata_max - p).max(0.0),
        };
        let domain = Domain::new_box(vec![-self.radius; d_u], vec![self.radius; d_u])?;
        Ok(WeaklyConvex {
            spec: self.clone(),
            a,
            s,
            p,
            constants,
            domain,
        })
    }
}

/// The weakly convex family (see the module docs).
#[derive(Debug, Clone)]
pub struct WeaklyConvex {
    spec: WeaklyConvexSpec,
    /// $A$ ($d_l\times d_u$).
    pub a: Matrix,
    /// $S$ ($d_l\times d_l$).
    pub s: Matrix,
    /// $p$, the weight of $\tfrac12\\|\theta\\|^2$.
    pub p: f64,
    constants: Constants,
    domain: Domain,
}

impl WeaklyConvex {
    /// The parameters it was built from.
    pub fn spec(&self) -> &WeaklyConvexSpec {
        &self.spec
    }

    /// $\nabla F(\theta) = -cA^\top\sin(A\theta) + p\theta$ into `out`.
    fn grad_f_into(&self, theta: &Vector, out: &mut Vector) {
        let sin = (&self.a * theta).map(f64::sin);
        out.copy_from(theta);
        out.gemv_tr(-self.spec.amplitude, &self.a, &sin, self.p);
    }

    /// The proximal map of (37): $\hat\theta(\vartheta) = \arg\min_{\theta\in\Theta} F(\theta) +
    /// \frac\rho2\\|\theta - \vartheta\\|^2$, for $\rho > \rho_F$.
    ///
    /// The objective is $(\rho - \rho_F)$-strongly convex and $(L_F + \rho)$-smooth, so projected gradient with step
    /// $1/(L_F+\rho)$ contracts by $q = 1 - (\rho-\rho_F)/(L_F+\rho)$ per step and
    /// $\\|\theta_k - \hat\theta\\|\le\\|\theta_{k+1} - \theta_k\\|/(1-q)$; it stops when that bound is below $10^{-12}$.
    ///
    /// # Errors
    /// [`BilevelError::InvalidParameter`] unless $\rho$ is finite and $> \rho_F$ (for $\rho\le\rho_F$ the problem may
    /// be nonconvex and $\hat\theta$ not unique); [`BilevelError::DimensionMismatch`] or
    /// [`BilevelError::NonFinite`] for a bad $\vartheta$; [`BilevelError::Diverged`] if the accuracy is not reached
    /// within $\lceil 60/(1-q)\rceil$ steps (only when rounding dominates, i.e. $\rho$ extremely close to $\rho_F$).
    pub fn prox(&self, vartheta: &Vector, rho: f64) -> Result<Vector> {
        let k = &self.constants;
        if !(rho.is_finite() && rho > k.weak_convexity && rho > 0.0) {
            return Err(BilevelError::invalid(
                "rho",
                rho,
                &format!(
                    "must be finite and exceed the weak-convexity modulus rho_F = {}",
                    k.weak_convexity
                ),
            ));
        }
        check_vector("vartheta", vartheta, self.spec.d_u)?;
        let lip = k.l_f + rho;
        let contraction = 1.0 - (rho - k.weak_convexity) / lip;
        let max_iter = (60.0 / (1.0 - contraction)).ceil() as usize + 100;
        let mut x = vartheta.clone();
        self.domain.project(&mut x);
        let mut g = Vector::zeros(self.spec.d_u);
        for _ in 0..max_iter {
            self.grad_f_into(&x, &mut g);
            g.axpy(rho, &(&x - vartheta), 1.0);
            let mut next = &x - &g / lip;
            self.domain.project(&mut next);
            let moved = (&next - &x).norm();
            x = next;
            if moved <= 1e-12 * (1.0 - contraction) {
                return Ok(x);
            }
        }
        Err(BilevelError::Diverged {
            iter: max_iter,
            what: format!("prox of F at rho = {rho} did not reach 1e-12"),
        })
    }

    /// The measure of (38): $\\|\hat\theta(\vartheta) - \vartheta\\|^2$ (errors as [`WeaklyConvex::prox`]).
    pub fn moreau_gap(&self, vartheta: &Vector, rho: f64) -> Result<f64> {
        Ok((self.prox(vartheta, rho)? - vartheta).norm_squared())
    }

    /// The Moreau envelope of (37): $M_{1/\rho}(\vartheta) = F(\hat\theta) + \frac\rho2\\|\hat\theta - \vartheta\\|^2$.
    pub fn moreau_envelope(&self, vartheta: &Vector, rho: f64) -> Result<f64> {
        let t = self.prox(vartheta, rho)?;
        Ok(self.value_f(&t) + 0.5 * rho * (&t - vartheta).norm_squared())
    }
}

impl Bilevel for WeaklyConvex {
    fn name(&self) -> &str {
        "weakly_convex"
    }
    fn dims(&self) -> Dims {
        Dims {
            d_u: self.spec.d_u,
            d_l: self.spec.d_l,
        }
    }
    fn draw(&self, _level: Level, _rng: &mut ChaCha8Rng) -> Sample {
        Sample::Exact
    }
    fn f_u(&self, _s: Sample, theta: &Vector, phi: &Vector) -> f64 {
        self.spec.amplitude * phi.iter().map(|x| x.cos()).sum::<f64>() + 0.5 * self.p * theta.norm_squared()
    }
    fn f_l(&self, _s: Sample, theta: &Vector, phi: &Vector) -> f64 {
        let r = phi - &self.a * theta;
        0.5 * r.dot(&(&self.s * &r))
    }
    fn grad_theta_fu(&self, _s: Sample, theta: &Vector, _phi: &Vector, out: &mut Vector) {
        out.copy_from(theta);
        *out *= self.p;
    }
    fn grad_phi_fu(&self, _s: Sample, _theta: &Vector, phi: &Vector, out: &mut Vector) {
        for (o, x) in out.iter_mut().zip(phi.iter()) {
            *o = -self.spec.amplitude * x.sin();
        }
    }
    fn grad_phi_fl(&self, _s: Sample, theta: &Vector, phi: &Vector, out: &mut Vector) {
        let r = phi - &self.a * theta;
        out.gemv(1.0, &self.s, &r, 0.0);
    }
    fn grad_theta_fl(&self, _s: Sample, theta: &Vector, phi: &Vector, out: &mut Vector) {
        // −Aᵀ S (φ − Aθ).
        let sr = &self.s * (phi - &self.a * theta);
        out.gemv_tr(-1.0, &self.a, &sr, 0.0);
    }
    fn hvp_fl(&self, _s: Sample, _theta: &Vector, _phi: &Vector, v: &Vector, out: &mut Vector) {
        out.gemv(1.0, &self.s, v, 0.0);
    }
    fn cross_fl(&self, _s: Sample, _theta: &Vector, _phi: &Vector, w: &Vector, out: &mut Vector) {
        // −Aᵀ S w
        let sw = &self.s * w;
        out.gemv_tr(-1.0, &self.a, &sw, 0.0);
    }
    fn cross_t_fl(&self, _s: Sample, _theta: &Vector, _phi: &Vector, u: &Vector, out: &mut Vector) {
        // −S A u
        let au = &self.a * u;
        out.gemv(-1.0, &self.s, &au, 0.0);
    }
    fn phi_star(&self, theta: &Vector) -> Vector {
        &self.a * theta
    }
    fn jacobian_phi_star(&self, _theta: &Vector) -> Result<Matrix> {
        Ok(self.a.clone())
    }
    fn value_f(&self, theta: &Vector) -> f64 {
        self.spec.amplitude * (&self.a * theta).iter().map(|x| x.cos()).sum::<f64>()
            + 0.5 * self.p * theta.norm_squared()
    }
    fn grad_f(&self, theta: &Vector) -> Result<Vector> {
        let mut g = Vector::zeros(self.spec.d_u);
        self.grad_f_into(theta, &mut g);
        Ok(g)
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
            "weakly convex F (cosine UL over a quadratic LL), prox of eq (37): d_u={}, d_l={}, rho_F={:.4}, Theta={}",
            self.spec.d_u,
            self.spec.d_l,
            self.constants.weak_convexity,
            self.domain.label()
        )
    }
}
