//! The strongly convex quadratic family: every quantity of eqs (13)–(17) in closed form.
//!
//! $$f_l(\theta,\phi) = \tfrac12\phi^\top H\phi + \theta^\top M\phi + b_l^\top\phi,\qquad
//! f_u(\theta,\phi) = \tfrac12\theta^\top P\theta + \theta^\top N\phi + \tfrac12\phi^\top Q\phi + p_u^\top\theta + q_u^\top\phi,$$
//! with $H\succ0$ of condition number $\kappa$, a non-square cross matrix $M\in\mathbb{R}^{d_u\times d_l}$ (so a
//! transpose bug cannot typecheck silently in tests), $Q\succeq0$. Then $\nabla^2_{\theta\phi} f_l = M$,
//! $\phi^\star(\theta) = J\theta + \phi_0$ with $J = -H^{-1}M^\top$, $\phi_0 = -H^{-1}b_l$, and
//! $$F(\theta) = \tfrac12\theta^\top A_F\theta + g_F^\top\theta + c_F,\quad A_F = P + NJ + J^\top N^\top + J^\top QJ.$$
//! $P$ is shifted so that $\lambda_{\min}(A_F) \ge \mu_F$: $F$ is $\mu_F$-strongly convex, $\theta^\star$ is unique.
//! $F$, $\nabla F$ and $\theta^\star$ are computed from $A_F$, $g_F$ directly, independently of the generic
//! implicit-gradient formula, so tests can compare the two.
//!
//! # Construction cost
//! Up to $d_l$ = [`HAAR_MAX_DIM`] (every claim and golden instance): Haar eigenvectors from a dense QR, dense
//! Cholesky solves, eigenvalues and SVDs, $O(d_l^3)$ once (nalgebra's unblocked kernels: ~0.1 s at $d_l = 256$).
//! Above it, [`QuadraticSpec::build`] switches to a factored construction in $O(d_l^2(K + d_u + r))$ time
//! ($K = 16$ reflections, $r$ = [`Q_RANK`]): $H = U\Lambda U^\top$ with $U$ a product of Householder reflections
//! ([`ReflectedSpd`]), so solves and the spectrum come from the factors, and $Q = RR^\top$ with $R$ of rank $r$,
//! so $\\|Q\\| = \sigma_{\max}(R)^2$. The previous all-dense path took 1.7 s at $d_l = 1000$ and 29.5 s at
//! $d_l = 2000$ (its eigen/SVD kernels are cache-bound, hence the apparent $d^4$); `docs/performance.md` has the new
//! times. [`Quadratic::from_parts`] (a user's matrices) stays dense, $O(d_l^3)$.

use super::random::{ReflectedSpd, gaussian_matrix, gaussian_vector, spd_with_spectrum};
use crate::error::{BilevelError, Result};
use crate::linalg::{Matrix, Vector, spd_solve_vec, spectral_norm, sym_eig_range, symmetrize};
use crate::problem::{Bilevel, Constants, Dims, Domain, Level, Sample};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

/// Parameters of [`Quadratic`]; checked by [`QuadraticSpec::build`].
///
/// Size limit: the instance holds $H$, $Q$ ($d_l\times d_l$) and $M$, $N$, $J$ ($d_u\times d_l$),
/// [`QuadraticSpec::entries`] $\le$ [`MAX_ENTRIES`](super::MAX_ENTRIES) (2 GiB), so $d_l\le 11582$ at $d_u = 3$;
/// [`low_rank`](super::low_rank) is the matrix-free family for larger $d_l$.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QuadraticSpec {
    /// $d_u$.
    pub d_u: usize,
    /// $d_l$.
    pub d_l: usize,
    /// $\mu_l = \lambda_{\min}(H)$.
    pub mu_l: f64,
    /// $\kappa = \lambda_{\max}(H)/\lambda_{\min}(H)$.
    pub kappa: f64,
    /// Scale of the cross matrix $M$ (entries $N(0, s^2/d_l)$).
    pub cross_scale: f64,
    /// Scale of the upper-level coupling $N$ (entries $N(0, s^2/d_l)$).
    pub upper_coupling: f64,
    /// Lower bound imposed on $\lambda_{\min}(A_F)$.
    pub mu_f: f64,
    /// $\Theta$.
    pub domain: Domain,
    /// Seed of the generator.
    pub seed: u64,
}

impl Default for QuadraticSpec {
    fn default() -> Self {
        QuadraticSpec {
            d_u: 3,
            d_l: 5,
            mu_l: 1.0,
            kappa: 10.0,
            cross_scale: 1.0,
            upper_coupling: 0.5,
            mu_f: 0.5,
            domain: Domain::Unbounded,
            seed: 0,
        }
    }
}

impl QuadraticSpec {
    /// The `f64` entries the instance holds, checked by [`QuadraticSpec::build`] against
    /// [`MAX_ENTRIES`](super::MAX_ENTRIES): $2d_l^2 + 3d_ud_l + 3d_l + 2d_u^2 + 3d_u$ (saturating).
    pub fn entries(&self) -> u64 {
        Self::count(self.d_u, self.d_l)
    }

    fn count(d_u: usize, d_l: usize) -> u64 {
        super::entries(&[&[2, d_l, d_l], &[3, d_u, d_l], &[3, d_l], &[2, d_u, d_u], &[3, d_u]])
    }

    /// Check the parameters and generate the instance.
    pub fn build(&self) -> Result<Quadratic> {
        if self.d_u == 0 {
            return Err(BilevelError::invalid("d_u", self.d_u, "must be >= 1"));
        }
        if self.d_l == 0 {
            return Err(BilevelError::invalid("d_l", self.d_l, "must be >= 1"));
        }
        if !(self.mu_l.is_finite() && self.mu_l > 0.0) {
            return Err(BilevelError::invalid("mu_l", self.mu_l, "must be finite and > 0"));
        }
        if !(self.kappa.is_finite() && self.kappa >= 1.0) {
            return Err(BilevelError::invalid("kappa", self.kappa, "must be finite and >= 1"));
        }
        for (n, v) in [
            ("cross_scale", self.cross_scale),
            ("upper_coupling", self.upper_coupling),
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
            "quadratic",
            &[("d_u", self.d_u), ("d_l", self.d_l)],
            |v| Self::count(v[0], v[1]),
            "dense d_l x d_l H and Q, d_u x d_l M, N and J",
            "for larger d_l use the matrix-free family low_rank (--problem low_rank, O((d_u + rank) d_l) entries)",
        )?;
        if self.d_l > HAAR_MAX_DIM {
            return self.build_large();
        }
        let (d_u, d_l) = (self.d_u, self.d_l);
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        let h = spd_with_spectrum(&mut rng, d_l, self.mu_l, self.mu_l * self.kappa);
        let s = 1.0 / (d_l as f64).sqrt();
        let m = gaussian_matrix(&mut rng, d_u, d_l) * (self.cross_scale * s);
        let b_l = gaussian_vector(&mut rng, d_l);
        let p = spd_with_spectrum(&mut rng, d_u, 1.0, 2.0);
        let n = gaussian_matrix(&mut rng, d_u, d_l) * (self.upper_coupling * s);
        let r = gaussian_matrix(&mut rng, d_l, d_l) * s;
        let q = symmetrize(&(&r * r.transpose()));
        let p_u = gaussian_vector(&mut rng, d_u);
        let q_u = gaussian_vector(&mut rng, d_l);
        Quadratic::from_parts(h, m, b_l, p, n, q, p_u, q_u, self.mu_f, self.domain.clone())
    }

    /// The construction above $d_l$ = [`HAAR_MAX_DIM`]: $H = U\Lambda U^\top$ with $U$ a product of
    /// [`REFLECTIONS`](super::random::REFLECTIONS) Householder reflections, $Q = RR^\top$ with $R$ of rank
    /// [`Q_RANK`]; every solve, spectrum and norm from the factors. $O(d_l^2 (K + d_u))$ time.
    fn build_large(&self) -> Result<Quadratic> {
        let (d_u, d_l) = (self.d_u, self.d_l);
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        let h_f = ReflectedSpd::random(&mut rng, d_l, self.mu_l, self.mu_l * self.kappa);
        let s = 1.0 / (d_l as f64).sqrt();
        let m = gaussian_matrix(&mut rng, d_u, d_l) * (self.cross_scale * s);
        let b_l = gaussian_vector(&mut rng, d_l);
        let p = spd_with_spectrum(&mut rng, d_u, 1.0, 2.0);
        let n = gaussian_matrix(&mut rng, d_u, d_l) * (self.upper_coupling * s);
        // Rank-Q_RANK factor with the same per-entry scale as the dense construction's R.
        let r = gaussian_matrix(&mut rng, d_l, Q_RANK.min(d_l)) * s;
        let q = symmetrize(&(&r * r.transpose()));
        let p_u = gaussian_vector(&mut rng, d_u);
        let q_u = gaussian_vector(&mut rng, d_l);
        let j = -h_f.solve(&m.transpose());
        let phi0 = -h_f
            .solve(&Matrix::from_column_slice(d_l, 1, b_l.as_slice()))
            .column(0)
            .into_owned();
        let q_norm = spectral_norm(&r).powi(2);
        let spectrum = (h_f.eigenvalues.min(), h_f.eigenvalues.max());
        Quadratic::assemble(
            h_f.dense(),
            m,
            b_l,
            p,
            n,
            q,
            p_u,
            q_u,
            Solved {
                j,
                phi0,
                spectrum,
                q_norm,
            },
            self.mu_f,
            self.domain.clone(),
        )
    }
}

/// Largest $d_l$ built with Haar eigenvectors (a dense QR); larger instances use the factored construction (module docs).
/// Instances up to this size are bit-identical to those of earlier versions (the golden files pin them).
pub const HAAR_MAX_DIM: usize = 256;

/// Rank of the upper-level block $Q = RR^\top$ above [`HAAR_MAX_DIM`].
pub const Q_RANK: usize = 16;

/// What [`Quadratic::assemble`] needs from the lower-level solve and the spectra.
struct Solved {
    /// $J = -H^{-1}M^\top$.
    j: Matrix,
    /// $\phi_0 = -H^{-1}b_l$.
    phi0: Vector,
    /// $(\lambda_{\min}(H), \lambda_{\max}(H))$.
    spectrum: (f64, f64),
    /// $\\|Q\\|$.
    q_norm: f64,
}

/// The strongly convex quadratic bilevel family (module docs give the formulas).
///
/// The public fields are a read-only view of the instance: $J$, $\phi_0$, $A_F$, $g_F$, $c_F$, $\theta^\star$ and the
/// constants are derived from the others by [`Quadratic::from_parts`], so to change a matrix build a new instance
/// with `from_parts` (which re-checks everything) instead of editing a field.
#[derive(Debug, Clone)]
pub struct Quadratic {
    dims: Dims,
    /// LL Hessian $H$.
    pub h: Matrix,
    /// Cross matrix $M = \nabla^2_{\theta\phi} f_l$ ($d_u\times d_l$).
    pub m: Matrix,
    /// LL linear term $b_l$.
    pub b_l: Vector,
    /// UL $\theta\theta$ block $P$ (after the shift that makes $F$ strongly convex).
    pub p: Matrix,
    /// UL coupling $N$ ($d_u\times d_l$).
    pub n: Matrix,
    /// UL $\phi\phi$ block $Q\succeq0$.
    pub q: Matrix,
    /// UL linear term in $\theta$.
    pub p_u: Vector,
    /// UL linear term in $\phi$.
    pub q_u: Vector,
    /// $J = -H^{-1}M^\top$.
    pub j: Matrix,
    /// $\phi_0 = -H^{-1}b_l$.
    pub phi0: Vector,
    /// $A_F = \nabla^2 F$.
    pub a_f: Matrix,
    /// $g_F = \nabla F(0)$.
    pub g_f: Vector,
    /// $c_F = F(0)$.
    pub c_f: f64,
    theta_star: Vector,
    constants: Constants,
    domain: Domain,
}

impl Quadratic {
    /// Build from explicit matrices (e.g. a user's instance). Checks sizes, finiteness, $H\succ0$, $Q\succeq0$, and
    /// that $H$, $P$ and $Q$ are symmetric (relative tolerance $10^{-10}$): a non-symmetric $P$ or $Q$ is a typed
    /// error, never silently symmetrised, because $\nabla_\theta f_u = P\theta + \dots$ holds only for a symmetric
    /// $P$. Shifts $P$ by a multiple of $I$ if needed so that $\lambda_{\min}(A_F)\ge\mu_F$ (reported in
    /// [`Quadratic::p`]).
    #[allow(clippy::too_many_arguments)]
    pub fn from_parts(
        h: Matrix,
        m: Matrix,
        b_l: Vector,
        p: Matrix,
        n: Matrix,
        q: Matrix,
        p_u: Vector,
        q_u: Vector,
        mu_f: f64,
        domain: Domain,
    ) -> Result<Self> {
        use crate::linalg::{check_matrix, check_spd, check_symmetric, check_vector};
        let d_l = h.nrows();
        let d_u = m.nrows();
        if d_u == 0 || d_l == 0 {
            // nalgebra's eigendecomposition panics on an empty matrix.
            return Err(BilevelError::invalid(
                "d_u, d_l",
                format!("{d_u}, {d_l}"),
                "must be >= 1",
            ));
        }
        check_spd("H", &h)?;
        check_matrix("M", &m, d_u, d_l)?;
        check_vector("b_l", &b_l, d_l)?;
        check_matrix("P", &p, d_u, d_u)?;
        check_matrix("N", &n, d_u, d_l)?;
        check_matrix("Q", &q, d_l, d_l)?;
        check_symmetric("P", &p)?;
        check_symmetric("Q", &q)?;
        // mu_f = -inf means "no shift" (golden instances keep P as given); +inf or NaN cannot be a bound.
        if mu_f.is_nan() || mu_f == f64::INFINITY {
            return Err(BilevelError::invalid(
                "mu_f",
                mu_f,
                "must be a number < +inf (-inf: do not shift P)",
            ));
        }
        check_vector("p_u", &p_u, d_u)?;
        check_vector("q_u", &q_u, d_l)?;
        domain.check_dim(d_u)?;
        let (q_lo, _) = sym_eig_range(&q);
        if q_lo < -1e-12 * q.amax().max(1.0) {
            return Err(BilevelError::invalid("Q", q_lo, "must be positive semidefinite"));
        }
        let hinv_mt = crate::linalg::spd_solve("H", &h, &m.transpose())?;
        let j = -hinv_mt;
        let phi0 = -spd_solve_vec("H", &h, &b_l)?;
        let spectrum = sym_eig_range(&h);
        let q_norm = spectral_norm(&q);
        Self::assemble(
            h,
            m,
            b_l,
            p,
            n,
            q,
            p_u,
            q_u,
            Solved {
                j,
                phi0,
                spectrum,
                q_norm,
            },
            mu_f,
            domain,
        )
    }

    /// The rest of the construction, once $J$, $\phi_0$ and the spectra are known: the shift of $P$, $A_F$, $g_F$,
    /// $\theta^\star$ and the constants. $O(d_l^2 d_u)$.
    #[allow(clippy::too_many_arguments)]
    fn assemble(
        h: Matrix,
        m: Matrix,
        b_l: Vector,
        mut p: Matrix,
        n: Matrix,
        q: Matrix,
        p_u: Vector,
        q_u: Vector,
        solved: Solved,
        mu_f: f64,
        domain: Domain,
    ) -> Result<Self> {
        let Solved {
            j,
            phi0,
            spectrum,
            q_norm,
        } = solved;
        let (d_u, d_l) = (m.nrows(), m.ncols());
        let coupling = &n * &j;
        let mut a_f = symmetrize(&(&p + &coupling + coupling.transpose() + j.transpose() * &q * &j));
        let (lo, _) = sym_eig_range(&a_f);
        if lo < mu_f {
            let shift = mu_f - lo;
            for i in 0..d_u {
                p[(i, i)] += shift;
                a_f[(i, i)] += shift;
            }
        }
        let p = symmetrize(&p);
        let g_f = &n * &phi0 + j.transpose() * (&q * &phi0) + &p_u + j.transpose() * &q_u;
        let c_f = 0.5 * phi0.dot(&(&q * &phi0)) + q_u.dot(&phi0);
        let theta_star = minimize_quadratic_on(&a_f, &g_f, &domain)?;
        let (mu_l, l_l) = spectrum;
        let (mu_f_exact, l_f) = sym_eig_range(&a_f);
        let constants = Constants {
            l_l_sample: None,
            mu_l,
            l_l,
            cross_bound: Some(spectral_norm(&m)),
            l_fu_phi: Some(spectral_norm(&n).max(q_norm)),
            l_fu_theta: Some(spectral_norm(&n)),
            grad_phi_fu_bound: None,
            l_hess_phi: Some(0.0),
            l_phi_star: spectral_norm(&j),
            l_f,
            mu_f: Some(mu_f_exact),
            weak_convexity: 0.0,
        };
        // Finite entries can overflow in A_F (an upper coupling of 1e300 gave mu_F = -2.5e284 on a family declared
        // strongly convex): refuse the instance rather than declare constants that are not.
        let declared = [mu_l, l_l, l_f, mu_f_exact, constants.l_phi_star];
        // (With a requested mu_F the shift must leave A_F positive definite; mu_f = -inf, no shift, is checked by the
        // golden instance's own build.)
        if !declared.iter().all(|c| c.is_finite()) || (mu_f > f64::NEG_INFINITY && mu_f_exact <= 0.0) {
            return Err(BilevelError::invalid(
                "quadratic parts",
                format!("mu_l = {mu_l:e}, L_l = {l_l:e}, mu_F = {mu_f_exact:e}, L_F = {l_f:e}"),
                "the parts overflow (or A_F is not positive definite after the shift): rescale them",
            ));
        }
        Ok(Quadratic {
            dims: Dims { d_u, d_l },
            h,
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
        })
    }
}

/// Minimiser of $\tfrac12\theta^\top A\theta + g^\top\theta$ over $\Theta$ for $A\succ0$: a solve when unconstrained
/// or when the solve lands inside, otherwise projected gradient with step $1/\lambda_{\max}$ until the iterate
/// stops moving (linear convergence at rate $1-\lambda_{\min}/\lambda_{\max}$).
pub fn minimize_quadratic_on(a: &Matrix, g: &Vector, domain: &Domain) -> Result<Vector> {
    crate::linalg::check_finite("g", g.as_slice())?;
    let free = -spd_solve_vec("A_F", a, g)?;
    if domain.contains(&free, 0.0) {
        return Ok(free);
    }
    let (_, hi) = sym_eig_range(a);
    let step = 1.0 / hi;
    let mut x = free;
    domain.project(&mut x);
    for _ in 0..1_000_000 {
        let grad = a * &x + g;
        let mut next = &x - step * grad;
        domain.project(&mut next);
        let moved = (&next - &x).amax();
        x = next;
        if moved <= 1e-16 * x.amax().max(1.0) {
            break;
        }
    }
    Ok(x)
}

impl Bilevel for Quadratic {
    fn name(&self) -> &str {
        "quadratic"
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
            + 0.5 * phi.dot(&(&self.q * phi))
            + self.p_u.dot(theta)
            + self.q_u.dot(phi)
    }
    fn f_l(&self, _s: Sample, theta: &Vector, phi: &Vector) -> f64 {
        0.5 * phi.dot(&(&self.h * phi)) + theta.dot(&(&self.m * phi)) + self.b_l.dot(phi)
    }
    fn grad_theta_fu(&self, _s: Sample, theta: &Vector, phi: &Vector, out: &mut Vector) {
        out.copy_from(&self.p_u);
        out.gemv(1.0, &self.p, theta, 1.0);
        out.gemv(1.0, &self.n, phi, 1.0);
    }
    fn grad_phi_fu(&self, _s: Sample, theta: &Vector, phi: &Vector, out: &mut Vector) {
        out.copy_from(&self.q_u);
        out.gemv_tr(1.0, &self.n, theta, 1.0);
        out.gemv(1.0, &self.q, phi, 1.0);
    }
    fn grad_phi_fl(&self, _s: Sample, theta: &Vector, phi: &Vector, out: &mut Vector) {
        out.copy_from(&self.b_l);
        out.gemv(1.0, &self.h, phi, 1.0);
        out.gemv_tr(1.0, &self.m, theta, 1.0);
    }
    fn grad_theta_fl(&self, _s: Sample, _theta: &Vector, phi: &Vector, out: &mut Vector) {
        out.gemv(1.0, &self.m, phi, 0.0);
    }
    fn hvp_fl(&self, _s: Sample, _theta: &Vector, _phi: &Vector, v: &Vector, out: &mut Vector) {
        out.gemv(1.0, &self.h, v, 0.0);
    }
    fn cross_fl(&self, _s: Sample, _theta: &Vector, _phi: &Vector, w: &Vector, out: &mut Vector) {
        out.gemv(1.0, &self.m, w, 0.0);
    }
    fn cross_t_fl(&self, _s: Sample, _theta: &Vector, _phi: &Vector, u: &Vector, out: &mut Vector) {
        out.gemv_tr(1.0, &self.m, u, 0.0);
    }
    fn hess_fl(&self, _s: Sample, _theta: &Vector, _phi: &Vector) -> Matrix {
        self.h.clone()
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
            "strongly convex quadratic, eqs (1)-(3): d_u={}, d_l={}, kappa(H)={:.3}, mu_F={:.3}",
            self.dims.d_u,
            self.dims.d_l,
            self.constants.l_l / self.constants.mu_l,
            self.constants.mu_f.unwrap_or(0.0)
        )
    }
}
