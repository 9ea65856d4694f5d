//! A matrix-free quadratic family for large $d_l$: diagonal plus low-rank lower-level Hessian.
//!
//! $$f_l(\theta,\phi) = \tfrac12\phi^\top H\phi + \theta^\top M\phi + b_l^\top\phi,\quad H = D + VV^\top,\qquad
//! f_u(\theta,\phi) = \tfrac12\theta^\top P\theta + \theta^\top N\phi + \tfrac q2\\|\phi\\|^2 + p_u^\top\theta + q_u^\top\phi,$$
//! with $D$ diagonal (entries geometric in $[\mu, \kappa_D\mu]$), $V\in\mathbb{R}^{d_l\times r}$, and
//! $M, N\in\mathbb{R}^{d_u\times d_l}$. Every oracle is matrix-free: a Hessian-vector product costs $O(rd_l)$, a cross
//! product $O(d_ud_l)$; no $d_l\times d_l$ matrix is ever formed (except by the dense `hess_fl`, which no first-order
//! or Neumann method calls). Solves use the Woodbury identity
//! $H^{-1} = D^{-1} - D^{-1}V(I_r + V^\top D^{-1}V)^{-1}V^\top D^{-1}$, $O(r d_l + r^3)$ per right-hand side. As
//! for [`quadratic`](super::quadratic): $\phi^\star(\theta) = J\theta + \phi_0$ with $J = -H^{-1}M^\top$,
//! $\phi_0 = -H^{-1}b_l$, and $F(\theta) = \tfrac12\theta^\top A_F\theta + g_F^\top\theta + c_F$ with
//! $A_F = P + NJ + J^\top N^\top + qJ^\top J$ (computed from $J$, independently of the generic formula (13)); $P$ is
//! shifted so that $\lambda_{\min}(A_F)\ge\mu_F$.
//!
//! Construction: $O(d_l d_u (r + d_u) + r^3 + d_u^3)$ time and $O(d_l(d_u + r))$ memory — $d_l = 10^5$ builds in
//! about 0.1 s (82 ms measured on the loaded 2-core machine, `docs/performance.md`). The family is deterministic
//! (wrap it in [`crate::problem::Noisy`] for stochastic oracles; the noise model is $O(d)$ per product too).
//!
//! # Constants
//! Exact: $C_{\theta\phi} = \\|M\\|$, $L_\phi = \\|J\\|$, $L_F$, $\mu_F$ (spectra of $d_u\times d_u$ matrices),
//! $\\|N\\|$, $l_{\text{hess}} = 0$. Valid bounds (Weyl): $\mu_l = \min_i D_{ii} \le \lambda_{\min}(H)$ and
//! $L_l = \max_i D_{ii} + \\|V\\|^2 \ge \lambda_{\max}(H)$, so the lower-level condition number may be overstated.

use super::quadratic::minimize_quadratic_on;
use super::random::{gaussian_matrix, gaussian_vector, spd_with_spectrum};
use crate::error::{BilevelError, Result};
use crate::linalg::{Matrix, Vector, spd_solve, sym_eig_range, symmetrize};
use crate::problem::{Bilevel, Constants, Dims, Domain, Level, Sample};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

/// Parameters of [`LowRank`]; checked by [`LowRankSpec::build`].
///
/// Size limit: the instance holds $M$, $N$, $J$ ($d_u\times d_l$), $V$, $D^{-1}V$ ($d_l\times r$) and four
/// $d_l$-vectors, [`LowRankSpec::entries`] $\le$ [`MAX_ENTRIES`](super::MAX_ENTRIES) (2 GiB), so
/// $d_l\le 1.5\cdot10^7$ at $d_u = 3$, $r = 2$.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LowRankSpec {
    /// $d_u$.
    pub d_u: usize,
    /// $d_l$.
    pub d_l: usize,
    /// Rank $r$ of $V$.
    pub rank: usize,
    /// Smallest diagonal entry $\mu$ of $D$.
    pub mu_l: f64,
    /// Ratio $\kappa_D$ of the largest to the smallest diagonal entry of $D$.
    pub kappa_d: f64,
    /// Scale of $V$ (entries $N(0, s^2/d_l)$, so $\\|V\\|^2\approx s^2(1+\sqrt{r/d_l})^2$).
    pub low_rank_scale: f64,
    /// Scale of the cross matrix $M$ (entries $N(0, s^2/d_l)$).
    pub cross_scale: f64,
    /// Scale of the upper-level coupling $N$ (entries $N(0, s^2/d_l)$).
    pub upper_coupling: f64,
    /// Weight $q\ge0$ of $\tfrac q2\\|\phi\\|^2$ in $f_u$.
    pub upper_phi: f64,
    /// Lower bound imposed on $\lambda_{\min}(A_F)$.
    pub mu_f: f64,
    /// $\Theta$.
    pub domain: Domain,
    /// Seed of the generator.
    pub seed: u64,
}

impl Default for LowRankSpec {
    fn default() -> Self {
        LowRankSpec {
            d_u: 3,
            d_l: 20,
            rank: 2,
            mu_l: 1.0,
            kappa_d: 4.0,
            low_rank_scale: 1.0,
            cross_scale: 1.0,
            upper_coupling: 0.5,
            upper_phi: 1.0,
            mu_f: 0.5,
            domain: Domain::Unbounded,
            seed: 0,
        }
    }
}

impl LowRankSpec {
    /// The `f64` entries the instance holds, checked by [`LowRankSpec::build`] against
    /// [`MAX_ENTRIES`](super::MAX_ENTRIES): $(3d_u + 2r + 4)d_l + 2d_u^2 + r^2 + 3d_u$ (saturating).
    pub fn entries(&self) -> u64 {
        Self::count(self.d_u, self.d_l, self.rank)
    }

    fn count(d_u: usize, d_l: usize, r: usize) -> u64 {
        super::entries(&[
            &[3, d_u, d_l],
            &[2, d_l, r],
            &[4, d_l],
            &[2, d_u, d_u],
            &[r, r],
            &[3, d_u],
        ])
    }

    /// Check the parameters and generate the instance.
    pub fn build(&self) -> Result<LowRank> {
        for (name, v) in [("d_u", self.d_u), ("d_l", self.d_l)] {
            if v == 0 {
                return Err(BilevelError::invalid(name, v, "must be >= 1"));
            }
        }
        if self.rank > self.d_l {
            return Err(BilevelError::invalid("rank", self.rank, "must be <= d_l"));
        }
        if !(self.mu_l.is_finite() && self.mu_l > 0.0) {
            return Err(BilevelError::invalid("mu_l", self.mu_l, "must be finite and > 0"));
        }
        if !(self.kappa_d.is_finite() && self.kappa_d >= 1.0) {
            return Err(BilevelError::invalid(
                "kappa_d",
                self.kappa_d,
                "must be finite and >= 1",
            ));
        }
        for (n, v) in [
            ("low_rank_scale", self.low_rank_scale),
            ("cross_scale", self.cross_scale),
            ("upper_coupling", self.upper_coupling),
            ("upper_phi", self.upper_phi),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(BilevelError::invalid(n, v, "must be finite and >= 0"));
            }
        }
        if !(self.mu_f.is_finite() && self.mu_f > 0.0) {
            return Err(BilevelError::invalid("mu_f", self.mu_f, "must be finite and > 0"));
        }
        self.domain.check_dim(self.d_u)?;
        super::check_storage(
            "low_rank",
            &[("d_u", self.d_u), ("d_l", self.d_l), ("rank", self.rank)],
            |v| Self::count(v[0], v[1], v[2]),
            "d_u x d_l M, N and J, d_l x rank V and D^-1 V, four d_l-vectors",
            "lower d_l or d_u",
        )?;
        let (d_u, d_l, r) = (self.d_u, self.d_l, self.rank);
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        let s = 1.0 / (d_l as f64).sqrt();
        let diag = Vector::from_fn(d_l, |i, _| {
            if d_l == 1 {
                self.mu_l
            } else {
                self.mu_l * self.kappa_d.powf(i as f64 / (d_l - 1) as f64)
            }
        });
        let v = gaussian_matrix(&mut rng, d_l, r) * (self.low_rank_scale * s);
        let m = gaussian_matrix(&mut rng, d_u, d_l) * (self.cross_scale * s);
        let b_l = gaussian_vector(&mut rng, d_l);
        let p = spd_with_spectrum(&mut rng, d_u, 1.0, 2.0);
        let n = gaussian_matrix(&mut rng, d_u, d_l) * (self.upper_coupling * s);
        let p_u = gaussian_vector(&mut rng, d_u);
        let q_u = gaussian_vector(&mut rng, d_l);
        LowRank::from_parts(
            diag,
            v,
            m,
            b_l,
            p,
            n,
            self.upper_phi,
            p_u,
            q_u,
            self.mu_f,
            self.domain.clone(),
        )
    }
}

/// The diagonal-plus-low-rank quadratic family (module docs give the formulas).
#[derive(Debug, Clone)]
pub struct LowRank {
    dims: Dims,
    /// Diagonal of $D$.
    pub diag: Vector,
    /// Low-rank factor $V$ ($d_l\times r$).
    pub v: Matrix,
    /// Cross matrix $M$ ($d_u\times d_l$).
    pub m: Matrix,
    /// LL linear term $b_l$.
    pub b_l: Vector,
    /// UL $\theta\theta$ block (after the shift).
    pub p: Matrix,
    /// UL coupling $N$ ($d_u\times d_l$).
    pub n: Matrix,
    /// UL weight $q$ of $\tfrac q2\\|\phi\\|^2$.
    pub q: f64,
    /// UL linear term in $\theta$.
    pub p_u: Vector,
    /// UL linear term in $\phi$.
    pub q_u: Vector,
    /// $J = -H^{-1}M^\top$ ($d_l\times d_u$).
    pub j: Matrix,
    /// $\phi_0 = -H^{-1}b_l$.
    pub phi0: Vector,
    a_f: Matrix,
    g_f: Vector,
    c_f: f64,
    theta_star: Vector,
    constants: Constants,
    domain: Domain,
    /// Rank $r$ of $V$.
    rank: usize,
}

/// $\\|A\\|$ from the eigenvalues of the small Gram matrix $AA^\top$ or $A^\top A$.
fn norm_small(a: &Matrix) -> f64 {
    if a.is_empty() {
        return 0.0;
    }
    let g = if a.nrows() <= a.ncols() {
        a * a.transpose()
    } else {
        a.transpose() * a
    };
    sym_eig_range(&g).1.max(0.0).sqrt()
}

impl LowRank {
    /// Build from the factors. Checks positivity of $D$, finiteness and sizes; $O(d_l d_u(r + d_u))$.
    #[allow(clippy::too_many_arguments)]
    pub fn from_parts(
        diag: Vector,
        v: Matrix,
        m: Matrix,
        b_l: Vector,
        mut p: Matrix,
        n: Matrix,
        q: f64,
        p_u: Vector,
        q_u: Vector,
        mu_f: f64,
        domain: Domain,
    ) -> Result<Self> {
        use crate::linalg::{check_matrix, check_vector};
        let d_l = diag.len();
        let d_u = m.nrows();
        let r = v.ncols();
        check_vector("D", &diag, d_l)?;
        if let Some(&bad) = diag.iter().find(|&&x| x <= 0.0) {
            return Err(BilevelError::NotPositiveDefinite {
                what: "D".into(),
                min_eig: bad,
            });
        }
        check_matrix("V", &v, d_l, r)?;
        check_matrix("M", &m, d_u, d_l)?;
        check_vector("b_l", &b_l, d_l)?;
        check_matrix("P", &p, d_u, d_u)?;
        check_matrix("N", &n, d_u, d_l)?;
        check_vector("p_u", &p_u, d_u)?;
        check_vector("q_u", &q_u, d_l)?;
        if !(q.is_finite() && q >= 0.0) {
            return Err(BilevelError::invalid("q", q, "must be finite and >= 0"));
        }
        domain.check_dim(d_u)?;
        // Woodbury: H^{-1}B = D^{-1}B − D^{-1}V C^{-1} Vᵀ D^{-1}B with C = I + Vᵀ D^{-1} V (r × r, SPD).
        let mut dinv_v = v.clone();
        for (i, mut row) in dinv_v.row_iter_mut().enumerate() {
            row /= diag[i];
        }
        let c = Matrix::identity(r, r) + v.transpose() * &dinv_v;
        let solve = |b: &Matrix| -> Result<Matrix> {
            let mut x = b.clone();
            for (i, mut row) in x.row_iter_mut().enumerate() {
                row /= diag[i];
            }
            if r > 0 {
                let y = spd_solve("I + V' D^-1 V", &c, &(v.transpose() * &x))?;
                x -= &dinv_v * y;
            }
            Ok(x)
        };
        let j = -solve(&m.transpose())?;
        let phi0 = -solve(&Matrix::from_column_slice(d_l, 1, b_l.as_slice()))?
            .column(0)
            .into_owned();
        let coupling = &n * &j;
        let jtj = j.transpose() * &j;
        let mut a_f = symmetrize(&(&p + &coupling + coupling.transpose() + &jtj * q));
        let (lo, _) = sym_eig_range(&a_f);
        if lo < mu_f {
            let shift = mu_f - lo;
            for i in 0..d_u {
                p[(i, i)] += shift;
                a_f[(i, i)] += shift;
            }
        }
        let g_f = &n * &phi0 + j.transpose() * (&phi0 * q) + &p_u + j.transpose() * &q_u;
        let c_f = 0.5 * q * phi0.norm_squared() + q_u.dot(&phi0);
        let theta_star = minimize_quadratic_on(&a_f, &g_f, &domain)?;
        let (mu_f_exact, l_f) = sym_eig_range(&a_f);
        let n_norm = norm_small(&n);
        let constants = Constants {
            mu_l: diag.min(),
            l_l: diag.max() + norm_small(&v).powi(2),
            l_l_sample: None,
            cross_bound: Some(norm_small(&m)),
            l_fu_phi: Some(n_norm.max(q)),
            l_fu_theta: Some(n_norm),
            grad_phi_fu_bound: None,
            l_hess_phi: Some(0.0),
            l_phi_star: norm_small(&j),
            l_f,
            mu_f: Some(mu_f_exact),
            weak_convexity: 0.0,
        };
        Ok(LowRank {
            dims: Dims { d_u, d_l },
            diag,
            v,
            m,
            b_l,
            p,
            n,
            q,
            p_u,
            q_u,
            j,
            phi0,
            a_f,
            g_f,
            c_f,
            theta_star,
            constants,
            domain,
            rank: r,
        })
    }

    /// `out ← β·out + H x` without temporaries beyond $r$ scalars per column of $V$: $O(r d_l)$.
    fn apply_h(&self, x: &Vector, out: &mut Vector, beta: f64) {
        match self.rank {
            0 => self.apply_h_fused::<0>(x, out, beta),
            1 => self.apply_h_fused::<1>(x, out, beta),
            2 => self.apply_h_fused::<2>(x, out, beta),
            3 => self.apply_h_fused::<3>(x, out, beta),
            4 => self.apply_h_fused::<4>(x, out, beta),
            _ => {
                for ((o, d), xi) in out.iter_mut().zip(self.diag.iter()).zip(x.iter()) {
                    *o = beta * *o + d * xi;
                }
                for k in 0..self.rank {
                    let col = self.v.column(k);
                    let t = col.dot(x);
                    out.axpy(t, &col, 1.0);
                }
            }
        }
    }

    /// [`Self::apply_h`] for rank `R`: the dot products $t = V^\top x$ (four partial sums each, so the pass
    /// vectorises), then one fused pass $out = \beta\\,out + Dx + Vt$; 2 + R vector reads instead of 3 + 5R.
    fn apply_h_fused<const R: usize>(&self, x: &Vector, out: &mut Vector, beta: f64) {
        let d = x.len();
        let x = x.as_slice();
        let cols: [&[f64]; R] = std::array::from_fn(|k| &self.v.as_slice()[k * d..(k + 1) * d]);
        let t: [f64; R] = std::array::from_fn(|k| dot4(cols[k], x));
        // Slices, not nalgebra's strided iterators: the loop then vectorises.
        let (out, diag) = (&mut out.as_mut_slice()[..d], &self.diag.as_slice()[..d]);
        for i in 0..d {
            let mut y = beta * out[i] + diag[i] * x[i];
            for k in 0..R {
                y += t[k] * cols[k][i];
            }
            out[i] = y;
        }
    }
}

/// $a\cdot b$ with four interleaved partial sums (independent chains: the loop vectorises and does not wait on
/// one add's latency per element).
fn dot4(a: &[f64], b: &[f64]) -> f64 {
    let mut acc = [0.0; 4];
    let (ca, cb) = (a.chunks_exact(4), b.chunks_exact(4));
    let tail: f64 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
    for (p, q) in ca.zip(cb) {
        for j in 0..4 {
            acc[j] += p[j] * q[j];
        }
    }
    (acc[0] + acc[1]) + (acc[2] + acc[3]) + tail
}

impl Bilevel for LowRank {
    fn name(&self) -> &str {
        "low_rank"
    }
    fn dims(&self) -> Dims {
        self.dims
    }
    fn draw(&self, _level: Level, _rng: &mut ChaCha8Rng) -> Sample {
        Sample::Exact
    }
    fn f_u(&self, _s: Sample, theta: &Vector, phi: &Vector) -> f64 {
        0.5 * theta.dot(&(&self.p * theta))
            + theta.dot(&(&self.n * phi))
            + 0.5 * self.q * phi.norm_squared()
            + self.p_u.dot(theta)
            + self.q_u.dot(phi)
    }
    fn f_l(&self, _s: Sample, theta: &Vector, phi: &Vector) -> f64 {
        let vt_phi = self.v.tr_mul(phi);
        let quad = phi.iter().zip(self.diag.iter()).map(|(x, d)| d * x * x).sum::<f64>() + vt_phi.norm_squared();
        0.5 * quad + theta.dot(&(&self.m * phi)) + self.b_l.dot(phi)
    }
    fn grad_theta_fu(&self, _s: Sample, theta: &Vector, phi: &Vector, out: &mut Vector) {
        out.copy_from(&self.p_u);
        out.gemv(1.0, &self.p, theta, 1.0);
        out.gemv(1.0, &self.n, phi, 1.0);
    }
    fn grad_phi_fu(&self, _s: Sample, theta: &Vector, phi: &Vector, out: &mut Vector) {
        out.copy_from(&self.q_u);
        out.gemv_tr(1.0, &self.n, theta, 1.0);
        out.axpy(self.q, phi, 1.0);
    }
    fn grad_phi_fl(&self, _s: Sample, theta: &Vector, phi: &Vector, out: &mut Vector) {
        self.apply_h(phi, out, 0.0);
        *out += &self.b_l;
        out.gemv_tr(1.0, &self.m, theta, 1.0);
    }
    fn grad_theta_fl(&self, _s: Sample, _theta: &Vector, phi: &Vector, out: &mut Vector) {
        out.gemv(1.0, &self.m, phi, 0.0);
    }
    fn hvp_fl(&self, _s: Sample, _theta: &Vector, _phi: &Vector, v: &Vector, out: &mut Vector) {
        self.apply_h(v, out, 0.0);
    }
    fn cross_fl(&self, _s: Sample, _theta: &Vector, _phi: &Vector, w: &Vector, out: &mut Vector) {
        out.gemv(1.0, &self.m, w, 0.0);
    }
    fn cross_t_fl(&self, _s: Sample, _theta: &Vector, _phi: &Vector, u: &Vector, out: &mut Vector) {
        out.gemv_tr(1.0, &self.m, u, 0.0);
    }
    fn hess_fl(&self, _s: Sample, _theta: &Vector, _phi: &Vector) -> Matrix {
        Matrix::from_diagonal(&self.diag) + &self.v * self.v.transpose()
    }
    fn cross_matrix_fl(&self, _s: Sample, _theta: &Vector, _phi: &Vector) -> Matrix {
        self.m.clone()
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
            "matrix-free quadratic, H = D + V V' (rank {}): d_u={}, d_l={}, mu_F={:.3}",
            self.rank,
            self.dims.d_u,
            self.dims.d_l,
            self.constants.mu_f.unwrap_or(0.0)
        )
    }
}
