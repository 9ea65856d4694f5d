//! A finite-sum quadratic with benchmark_bilevel's construction (benchopt; Dagréou, Ablin, Vaiter & Moreau 2022).
//!
//! Each level is an average of $n$ quadratics whose Hessians are rank one, with a controlled spectrum of the mean:
//! $$f_l(\theta,\phi) = \frac1{n_l}\sum_{i<n_l}\ell_i(\theta,\phi),\qquad
//! \ell_i = \tfrac12\phi^\top(x_ix_i^\top + \rho I)\phi + \theta^\top u_iw_i^\top\phi + b_i^\top\phi,$$
//! $$f_u(\theta,\phi) = \frac1{n_u}\sum_{j<n_u}g_j(\theta,\phi),\qquad
//! g_j = \tfrac12\phi^\top y_jy_j^\top\phi + \tfrac12\theta^\top(k_jk_j^\top + \pi I)\theta
//! \ + \theta^\top u'\_jw\_j'^\top\phi + e_j^\top\phi + h_j^\top\theta.$$
//! As in benchmark_bilevel's `gen_matrices`: $x_i = Az_i$ with $z_i$ standard normal and $A = P\\,\mathrm{diag}(\sqrt{s})\\,P$
//! ($P$ a random Householder reflection, the orthogonal factor of a Gaussian vector's SVD there), $s$ log-spaced in
//! $[\mu, L_{\text{inner}}]$, so $\mathbb{E}[x_ix_i^\top] = A^2$ has spectrum $[\mu, L_{\text{inner}}]$; likewise $y_j$
//! (spectrum $[\mu, L_{\text{outer}}]$ in $\phi$) and $k_j$ (in $\theta$, with a zero eigenvalue as there). The cross
//! terms are rank one, $u_i = UDz_i$ and $w_i = Vz_i$ with $U, V$ random reflections and $D$ ($d_u\times d_l$) holding
//! log-spaced singular values in $[\mu, L_{\text{cross}}]$, so $\mathbb{E}[u_iw_i^\top] = UDV^\top$. Linear terms are
//! standard normal. The ridge $\rho\ge0$ is the regulariser (0 in benchmark_bilevel); the upper ridge $\pi$ is chosen so
//! that $\lambda_{\min}(A_F)\ge\mu_F$ (benchmark_bilevel redraws instead until $A_F\succ0$).
//!
//! # Exact answers from the full-batch matrices
//! The averages $\bar H = \frac1{n_l}\sum_i x_ix_i^\top + \rho I$, $\bar C$, $\bar b$ and the upper-level ones are
//! formed once ($O(n d^2)$); then, as for [`quadratic`](super::quadratic), $\phi^\star(\theta) = J\theta + \phi_0$,
//! $J = -\bar H^{-1}\bar C^\top$, $\phi_0 = -\bar H^{-1}\bar b$, and $F$ is the quadratic with
//! $A_F = \bar K + \bar EJ + J^\top\bar E^\top + J^\top\bar GJ$.
//!
//! # Sampling and constants
//! A draw is a minibatch of `batch` indices per level, uniform with replacement ([`super::data`]): unbiased.
//! $\mu_l$, $L_l$ are the exact extreme eigenvalues of $\bar H$. One drawn minibatch has Hessian
//! $\frac1b\sum x_ix_i^\top + \rho I \preceq (\max_i\\|x_i\\|^2 + \rho)I$, far above $L_l$ (a rank-one sample carries the
//! whole trace): `l_l_sample` declares it. $C_{\theta\phi} = \\|\bar C\\|$, $L_\phi = \\|J\\|$, $L_F$, $\mu_F$ exact.
//! Construction costs $O((n_l + n_u)d^2 + d^3)$ with $d = \max(d_u, d_l)$; an oracle at a minibatch $O(b\\,d)$, at the
//! exact objective $O(d^2)$ (the averaged matrices).

use super::data::{check_sizes, draw_word, for_each_in_batch};
use super::quadratic::minimize_quadratic_on;
use super::random::gaussian_vector;
use crate::error::{BilevelError, Result};
use crate::linalg::{Matrix, Vector, spd_solve, spectral_norm, sym_eig_range, symmetrize};
use crate::problem::{Bilevel, Constants, Dims, Domain, Level, Sample};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

/// Parameters of [`FiniteSum`]; checked by [`FiniteSumSpec::build`]. Defaults are small (registry tests); the
/// benchmark_bilevel configuration is [`FiniteSumSpec::benchmark`].
///
/// Size limit: the per-sample factors ($3d_l + d_u$ per lower, $3(d_l + d_u)$ per upper sample) and $\bar H$,
/// $\bar G$ ($d_l\times d_l$), [`FiniteSumSpec::entries`] $\le$ [`MAX_ENTRIES`](super::MAX_ENTRIES) (2 GiB).
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FiniteSumSpec {
    /// $d_u$ (benchmark_bilevel's `dim_outer`).
    pub d_u: usize,
    /// $d_l$ (`dim_inner`).
    pub d_l: usize,
    /// Lower-level samples $n_l$ (`n_samples_inner`).
    pub n_lower: usize,
    /// Upper-level samples $n_u$ (`n_samples_outer`).
    pub n_upper: usize,
    /// $\mu$: bottom of every spectrum (`mu_inner`).
    pub mu: f64,
    /// Top of the spectrum of $\mathbb{E}[x x^\top]$ (`L_inner_inner`).
    pub l_inner: f64,
    /// Top of the spectrum of $\mathbb{E}[y y^\top]$ and $\mathbb{E}[k k^\top]$ (`L_inner_outer`, `L_outer_outer`).
    pub l_outer: f64,
    /// Top singular value of the mean cross matrices (`L_cross_inner`, `L_cross_outer`).
    pub l_cross: f64,
    /// Lower-level ridge $\rho\ge0$.
    pub ridge: f64,
    /// Lower bound imposed on $\lambda_{\min}(A_F)$.
    pub mu_f: f64,
    /// Minibatch size per draw.
    pub batch: usize,
    /// $\Theta$.
    pub domain: Domain,
    /// Seed of the generator.
    pub seed: u64,
}

impl Default for FiniteSumSpec {
    fn default() -> Self {
        FiniteSumSpec {
            d_u: 3,
            d_l: 6,
            n_lower: 64,
            n_upper: 32,
            mu: 0.1,
            l_inner: 1.0,
            l_outer: 1.0,
            l_cross: 0.1,
            ridge: 0.0,
            mu_f: 0.01,
            batch: 4,
            domain: Domain::Unbounded,
            seed: 0,
        }
    }
}

impl FiniteSumSpec {
    /// The `f64` entries the instance holds, checked by [`FiniteSumSpec::build`] against
    /// [`MAX_ENTRIES`](super::MAX_ENTRIES): $n_l(3d_l + d_u) + 3n_u(d_l + d_u) + 2d_l^2 + 3d_ud_l + 2d_u^2 + 3(d_l + d_u)$
    /// (saturating).
    pub fn entries(&self) -> u64 {
        Self::count(self.d_u, self.d_l, self.n_lower, self.n_upper)
    }

    fn count(d_u: usize, d_l: usize, nl: usize, nu: usize) -> u64 {
        super::entries(&[
            &[3, nl, d_l],
            &[nl, d_u],
            &[3, nu, d_l],
            &[3, nu, d_u],
            &[2, d_l, d_l],
            &[3, d_u, d_l],
            &[2, d_u, d_u],
            &[3, d_l],
            &[3, d_u],
        ])
    }

    /// benchmark_bilevel's quadratic configuration: $d_u = 10$, $d_l = 100$, $n_l = 32768$, $n_u = 1024$,
    /// minibatch 64.
    pub fn benchmark() -> Self {
        FiniteSumSpec {
            d_u: 10,
            d_l: 100,
            n_lower: 32_768,
            n_upper: 1024,
            batch: 64,
            ..Default::default()
        }
    }

    /// Check the parameters and generate the instance.
    pub fn build(&self) -> Result<FiniteSum> {
        for (name, v) in [("d_u", self.d_u), ("d_l", self.d_l)] {
            if v == 0 {
                return Err(BilevelError::invalid(name, v, "must be >= 1"));
            }
        }
        check_sizes(self.batch, &[("n_lower", self.n_lower), ("n_upper", self.n_upper)])?;
        if !(self.mu.is_finite() && self.mu > 0.0) {
            return Err(BilevelError::invalid("mu", self.mu, "must be finite and > 0"));
        }
        for (n, v) in [
            ("l_inner", self.l_inner),
            ("l_outer", self.l_outer),
            ("l_cross", self.l_cross),
        ] {
            if !(v.is_finite() && v >= self.mu) {
                return Err(BilevelError::invalid(n, v, "must be finite and >= mu"));
            }
        }
        if !(self.ridge.is_finite() && self.ridge >= 0.0) {
            return Err(BilevelError::invalid("ridge", self.ridge, "must be finite and >= 0"));
        }
        if !(self.mu_f.is_finite() && self.mu_f > 0.0) {
            return Err(BilevelError::invalid("mu_f", self.mu_f, "must be finite and > 0"));
        }
        self.domain.check_dim(self.d_u)?;
        super::check_storage(
            "finite_sum",
            &[
                ("d_u", self.d_u),
                ("d_l", self.d_l),
                ("n_lower", self.n_lower),
                ("n_upper", self.n_upper),
            ],
            |v| Self::count(v[0], v[1], v[2], v[3]),
            "the per-sample factors as columns, 3 d_l + d_u per lower and 3 (d_l + d_u) per upper sample, d_l x d_l \
             H and G, d_u x d_l C, E and J",
            "lower the sizes named (the construction is O((n_lower + n_upper) d^2 + d^3) time, d = max(d_u, d_l))",
        )?;
        FiniteSum::generate(self)
    }
}

/// `n` log-spaced values from `lo` to `hi` (benchmark_bilevel's `logspace`).
fn logspace(n: usize, lo: f64, hi: f64) -> Vec<f64> {
    (0..n)
        .map(|i| {
            if n == 1 {
                lo
            } else {
                lo * (hi / lo).powf(i as f64 / (n - 1) as f64)
            }
        })
        .collect()
}

/// $x \leftarrow Px$ for the reflection $P = I - 2vv^\top$ ($\\|v\\| = 1$).
fn reflect(v: &Vector, x: &mut Vector) {
    let t = 2.0 * v.dot(x);
    x.axpy(-t, v, 1.0);
}

/// A unit vector uniform on the sphere.
fn unit(rng: &mut ChaCha8Rng, n: usize) -> Vector {
    let v = gaussian_vector(rng, n);
    let norm = v.norm();
    v / norm
}

/// `n` vectors $P\\,\mathrm{diag}(\sqrt s)\\,Pz$ (with a fresh reflection $P$), stacked as columns: $\mathbb{E}[xx^\top]$
/// has eigenvalues $s$.
fn correlated(rng: &mut ChaCha8Rng, n: usize, s: &[f64]) -> Matrix {
    let d = s.len();
    let p = unit(rng, d);
    let mut out = Matrix::zeros(d, n);
    for i in 0..n {
        let mut z = gaussian_vector(rng, d);
        reflect(&p, &mut z);
        for (zk, sk) in z.iter_mut().zip(s) {
            *zk *= sk.sqrt();
        }
        reflect(&p, &mut z);
        out.set_column(i, &z);
    }
    out
}

/// Rank-one cross factors $u = UDz\in\mathbb{R}^{d_u}$, $w = Vz\in\mathbb{R}^{d_l}$ ($z\in\mathbb{R}^{d_l}$), columns of
/// the two returned matrices; $\mathbb{E}[uw^\top] = UDV^\top$.
fn cross_factors(rng: &mut ChaCha8Rng, n: usize, d_u: usize, d_l: usize, sv: &[f64]) -> (Matrix, Matrix) {
    let (pu, pv) = (unit(rng, d_u), unit(rng, d_l));
    let mut us = Matrix::zeros(d_u, n);
    let mut ws = Matrix::zeros(d_l, n);
    for i in 0..n {
        let z = gaussian_vector(rng, d_l);
        let mut w = z.clone();
        reflect(&pv, &mut w);
        let mut u = Vector::from_fn(d_u, |k, _| if k < sv.len() { sv[k] * z[k] } else { 0.0 });
        reflect(&pu, &mut u);
        us.set_column(i, &u);
        ws.set_column(i, &w);
    }
    (us, ws)
}

/// Gaussian vectors as the columns of a `d × n` matrix.
fn gaussian_columns(rng: &mut ChaCha8Rng, d: usize, n: usize) -> Matrix {
    let mut m = Matrix::zeros(d, n);
    for i in 0..n {
        m.set_column(i, &gaussian_vector(rng, d));
    }
    m
}

/// The finite-sum quadratic (module docs give the formulas). Per-sample factors are stored as columns.
#[derive(Debug, Clone)]
pub struct FiniteSum {
    dims: Dims,
    batch: usize,
    ridge: f64,
    /// Upper ridge $\pi$ (added so that $\lambda_{\min}(A_F)\ge\mu_F$).
    pub upper_ridge: f64,
    // Lower level: x_i, u_i, w_i, b_i.
    x: Matrix,
    cu: Matrix,
    cw: Matrix,
    b: Matrix,
    // Upper level: y_j, k_j, u'_j, w'_j, e_j, h_j.
    y: Matrix,
    k: Matrix,
    eu: Matrix,
    ew: Matrix,
    e: Matrix,
    h: Matrix,
    /// Full-batch lower Hessian $\bar H$.
    pub h_bar: Matrix,
    /// Full-batch cross matrix $\bar C$ ($d_u\times d_l$).
    pub c_bar: Matrix,
    /// Full-batch lower linear term $\bar b$.
    pub b_bar: Vector,
    g_bar: Matrix,
    k_bar: Matrix,
    e_bar: Matrix,
    ee_bar: Vector,
    hh_bar: Vector,
    /// $J = -\bar H^{-1}\bar C^\top$.
    pub j: Matrix,
    /// $\phi_0 = -\bar H^{-1}\bar b$.
    pub phi0: Vector,
    a_f: Matrix,
    g_f: Vector,
    c_f: f64,
    theta_star: Vector,
    constants: Constants,
    domain: Domain,
}

/// Column mean of `m`.
fn mean_col(m: &Matrix) -> Vector {
    m.column_mean()
}

/// $\frac1n\sum_i a_ib_i^\top$ for columns $a_i$, $b_i$.
fn mean_outer(a: &Matrix, b: &Matrix) -> Matrix {
    a * b.transpose() / a.ncols() as f64
}

impl FiniteSum {
    fn generate(spec: &FiniteSumSpec) -> Result<Self> {
        let (d_u, d_l) = (spec.d_u, spec.d_l);
        let (nl, nu) = (spec.n_lower, spec.n_upper);
        let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
        let x = correlated(&mut rng, nl, &logspace(d_l, spec.mu, spec.l_inner));
        let (cu, cw) = cross_factors(&mut rng, nl, d_u, d_l, &logspace(d_u.min(d_l), spec.mu, spec.l_cross));
        let b = gaussian_columns(&mut rng, d_l, nl);
        let y = correlated(&mut rng, nu, &logspace(d_l, spec.mu, spec.l_outer));
        let mut ks = vec![0.0];
        ks.extend(logspace(d_u.saturating_sub(1), spec.mu, spec.l_outer));
        ks.truncate(d_u);
        let k = correlated(&mut rng, nu, &ks);
        let (eu, ew) = cross_factors(&mut rng, nu, d_u, d_l, &logspace(d_u.min(d_l), spec.mu, spec.l_cross));
        let e = gaussian_columns(&mut rng, d_l, nu);
        let h = gaussian_columns(&mut rng, d_u, nu);
        let mut h_bar = symmetrize(&mean_outer(&x, &x));
        for i in 0..d_l {
            h_bar[(i, i)] += spec.ridge;
        }
        let c_bar = mean_outer(&cu, &cw);
        let b_bar = mean_col(&b);
        let g_bar = symmetrize(&mean_outer(&y, &y));
        let mut k_bar = symmetrize(&mean_outer(&k, &k));
        let e_bar = mean_outer(&eu, &ew);
        let ee_bar = mean_col(&e);
        let hh_bar = mean_col(&h);
        let j = -spd_solve("full-batch lower Hessian", &h_bar, &c_bar.transpose())?;
        let phi0 = -spd_solve(
            "full-batch lower Hessian",
            &h_bar,
            &Matrix::from_column_slice(d_l, 1, b_bar.as_slice()),
        )?
        .column(0)
        .into_owned();
        let coupling = &e_bar * &j;
        let mut a_f = symmetrize(&(&k_bar + &coupling + coupling.transpose() + j.transpose() * &g_bar * &j));
        let (lo, _) = sym_eig_range(&a_f);
        let upper_ridge = (spec.mu_f - lo).max(0.0);
        for i in 0..d_u {
            k_bar[(i, i)] += upper_ridge;
            a_f[(i, i)] += upper_ridge;
        }
        let g_f = &e_bar * &phi0 + j.transpose() * (&g_bar * &phi0) + &hh_bar + j.transpose() * &ee_bar;
        let c_f = 0.5 * phi0.dot(&(&g_bar * &phi0)) + ee_bar.dot(&phi0);
        let theta_star = minimize_quadratic_on(&a_f, &g_f, &spec.domain)?;
        let (mu_l, l_l) = sym_eig_range(&h_bar);
        let (mu_f, l_f) = sym_eig_range(&a_f);
        let max_x = x.column_iter().map(|c| c.norm_squared()).fold(0.0, f64::max);
        let constants = Constants {
            mu_l,
            l_l,
            l_l_sample: Some(max_x + spec.ridge),
            cross_bound: Some(spectral_norm(&c_bar)),
            l_fu_phi: Some(spectral_norm(&e_bar).max(sym_eig_range(&g_bar).1)),
            l_fu_theta: Some(spectral_norm(&e_bar)),
            grad_phi_fu_bound: None,
            l_hess_phi: Some(0.0),
            l_phi_star: spectral_norm(&j),
            l_f,
            mu_f: Some(mu_f),
            weak_convexity: 0.0,
        };
        Ok(FiniteSum {
            dims: Dims { d_u, d_l },
            batch: spec.batch,
            ridge: spec.ridge,
            upper_ridge,
            x,
            cu,
            cw,
            b,
            y,
            k,
            eu,
            ew,
            e,
            h,
            h_bar,
            c_bar,
            b_bar,
            g_bar,
            k_bar,
            e_bar,
            ee_bar,
            hh_bar,
            j,
            phi0,
            a_f,
            g_f,
            c_f,
            theta_star,
            constants,
            domain: spec.domain.clone(),
        })
    }

    /// Visit the lower-level minibatch of `s` (`Exact` is handled by the callers with the averaged matrices).
    fn lower_batch(&self, s: Sample, f: impl FnMut(usize, f64)) {
        for_each_in_batch(s, Level::Lower, self.x.ncols(), self.batch, f);
    }

    fn upper_batch(&self, s: Sample, f: impl FnMut(usize, f64)) {
        for_each_in_batch(s, Level::Upper, self.y.ncols(), self.batch, f);
    }
}

impl Bilevel for FiniteSum {
    fn name(&self) -> &str {
        "finite_sum"
    }
    fn dims(&self) -> Dims {
        self.dims
    }
    fn draw(&self, _level: Level, rng: &mut ChaCha8Rng) -> Sample {
        draw_word(rng)
    }
    fn f_u(&self, s: Sample, theta: &Vector, phi: &Vector) -> f64 {
        let ridge = 0.5 * self.upper_ridge * theta.norm_squared();
        if s == Sample::Exact {
            return 0.5 * phi.dot(&(&self.g_bar * phi))
                + 0.5 * theta.dot(&(&self.k_bar * theta))
                + theta.dot(&(&self.e_bar * phi))
                + self.ee_bar.dot(phi)
                + self.hh_bar.dot(theta);
        }
        let mut v = ridge;
        self.upper_batch(s, |j, w| {
            let yp = self.y.column(j).dot(phi);
            let kt = self.k.column(j).dot(theta);
            let c = self.eu.column(j).dot(theta) * self.ew.column(j).dot(phi);
            v += w * (0.5 * yp * yp + 0.5 * kt * kt + c + self.e.column(j).dot(phi) + self.h.column(j).dot(theta));
        });
        v
    }
    fn f_l(&self, s: Sample, theta: &Vector, phi: &Vector) -> f64 {
        if s == Sample::Exact {
            return 0.5 * phi.dot(&(&self.h_bar * phi)) + theta.dot(&(&self.c_bar * phi)) + self.b_bar.dot(phi);
        }
        let mut v = 0.5 * self.ridge * phi.norm_squared();
        self.lower_batch(s, |i, w| {
            let xp = self.x.column(i).dot(phi);
            let c = self.cu.column(i).dot(theta) * self.cw.column(i).dot(phi);
            v += w * (0.5 * xp * xp + c + self.b.column(i).dot(phi));
        });
        v
    }
    fn grad_theta_fu(&self, s: Sample, theta: &Vector, phi: &Vector, out: &mut Vector) {
        if s == Sample::Exact {
            out.copy_from(&self.hh_bar);
            out.gemv(1.0, &self.k_bar, theta, 1.0);
            out.gemv(1.0, &self.e_bar, phi, 1.0);
            return;
        }
        out.copy_from(theta);
        *out *= self.upper_ridge;
        self.upper_batch(s, |j, w| {
            let k = self.k.column(j);
            out.axpy(w * k.dot(theta), &k, 1.0);
            out.axpy(w * self.ew.column(j).dot(phi), &self.eu.column(j), 1.0);
            out.axpy(w, &self.h.column(j), 1.0);
        });
    }
    fn grad_phi_fu(&self, s: Sample, theta: &Vector, phi: &Vector, out: &mut Vector) {
        if s == Sample::Exact {
            out.copy_from(&self.ee_bar);
            out.gemv(1.0, &self.g_bar, phi, 1.0);
            out.gemv_tr(1.0, &self.e_bar, theta, 1.0);
            return;
        }
        out.fill(0.0);
        self.upper_batch(s, |j, w| {
            let y = self.y.column(j);
            out.axpy(w * y.dot(phi), &y, 1.0);
            out.axpy(w * self.eu.column(j).dot(theta), &self.ew.column(j), 1.0);
            out.axpy(w, &self.e.column(j), 1.0);
        });
    }
    fn grad_phi_fl(&self, s: Sample, theta: &Vector, phi: &Vector, out: &mut Vector) {
        if s == Sample::Exact {
            out.copy_from(&self.b_bar);
            out.gemv(1.0, &self.h_bar, phi, 1.0);
            out.gemv_tr(1.0, &self.c_bar, theta, 1.0);
            return;
        }
        out.copy_from(phi);
        *out *= self.ridge;
        self.lower_batch(s, |i, w| {
            let x = self.x.column(i);
            out.axpy(w * x.dot(phi), &x, 1.0);
            out.axpy(w * self.cu.column(i).dot(theta), &self.cw.column(i), 1.0);
            out.axpy(w, &self.b.column(i), 1.0);
        });
    }
    fn grad_theta_fl(&self, s: Sample, theta: &Vector, phi: &Vector, out: &mut Vector) {
        // f_l has no θθ term: ∇_θ f_l = C φ, the cross product with w = φ.
        self.cross_fl(s, theta, phi, phi, out);
    }
    fn hvp_fl(&self, s: Sample, _theta: &Vector, _phi: &Vector, v: &Vector, out: &mut Vector) {
        if s == Sample::Exact {
            out.gemv(1.0, &self.h_bar, v, 0.0);
            return;
        }
        out.copy_from(v);
        *out *= self.ridge;
        self.lower_batch(s, |i, w| {
            let x = self.x.column(i);
            out.axpy(w * x.dot(v), &x, 1.0);
        });
    }
    fn cross_fl(&self, s: Sample, _theta: &Vector, _phi: &Vector, wv: &Vector, out: &mut Vector) {
        if s == Sample::Exact {
            out.gemv(1.0, &self.c_bar, wv, 0.0);
            return;
        }
        out.fill(0.0);
        self.lower_batch(s, |i, w| {
            out.axpy(w * self.cw.column(i).dot(wv), &self.cu.column(i), 1.0);
        });
    }
    fn cross_t_fl(&self, s: Sample, _theta: &Vector, _phi: &Vector, u: &Vector, out: &mut Vector) {
        if s == Sample::Exact {
            out.gemv_tr(1.0, &self.c_bar, u, 0.0);
            return;
        }
        out.fill(0.0);
        self.lower_batch(s, |i, w| {
            out.axpy(w * self.cu.column(i).dot(u), &self.cw.column(i), 1.0);
        });
    }
    fn phi_star(&self, theta: &Vector) -> Vector {
        &self.j * theta + &self.phi0
    }
    fn jacobian_phi_star(&self, _theta: &Vector) -> Result<Matrix> {
        Ok(self.j.clone())
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
            "finite-sum quadratic (benchmark_bilevel construction): d_u={}, d_l={}, n_l={}, n_u={}, batch={}, kappa={:.1}",
            self.dims.d_u,
            self.dims.d_l,
            self.x.ncols(),
            self.y.ncols(),
            self.batch,
            self.constants.l_l / self.constants.mu_l
        )
    }
}
