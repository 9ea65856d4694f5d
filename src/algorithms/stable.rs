//! STABLE, Alg 5 (Chen, Sun, Xiao & Yin, AISTATS 2022), and the lecture's Alg 6 taken literally.
//!
//! Tracked second-order estimates (recursive, STORM-style, one sample at both points):
//! $$H^k_{\phi\phi} = \mathcal{P}\_{\succeq\mu_l I}\Big(\hat H_{\phi\phi}(\theta^k,\phi^k;\xi_k) + (1-\tau)\big(H^{k-1}\_{\phi\phi} -
//! \hat H_{\phi\phi}(\theta^{k-1},\phi^{k-1};\xi_k)\big)\Big),$$
//! and likewise $H^k_{\theta\phi}$ (unprojected). Then
//! $$\theta^{k+1} = \mathcal{P}\_\Theta\Big(\theta^k - \alpha_k\big[\nabla_\theta f_u - H^k_{\theta\phi}(H^k_{\phi\phi})^{-1}\nabla_\phi f_u\big]{}(\theta^k,\phi^k)\Big),$$
//! $$\phi^{k+1} = \phi^k - \beta_k\nabla_\phi f_l(\theta^k,\phi^k) - (H^k_{\phi\phi})^{-1}(H^k_{\theta\phi})^\top(\theta^{k+1}-\theta^k).$$
//! The last term is the correction: $\phi^\star(\theta^{k+1}) - \phi^\star(\theta^k) \approx J(\theta^{k+1}-\theta^k)$ with
//! $J = -H^{-1}[\nabla^2_{\theta\phi} f_l]^\top$, applied in full (Alg 5). The lecture's Alg 6 puts it inside
//! $\beta_k[\dots]$ with the sign flipped, $\phi^{k+1} = \phi^k - \beta_k[\nabla_\phi f_l - H^{-1}H_{\theta\phi}^\top(\theta^{k+1}-\theta^k)]$:
//! it then moves $\phi$ by $-\beta_k J\Delta\theta$ instead of $+J\Delta\theta$ and no longer tracks $\phi^\star$
//! (`literal_alg6 = true`, name `stable-alg6-literal`; the test `algorithms::stable_alg5_tracks_alg6_does_not`).
//!
//! Guarantees: $O(\varepsilon^{-2})$ samples at both levels with $\alpha=\beta\propto K^{-1/2}$ (nonconvex);
//! $O(1/K)$ for strongly convex $F$ with $\propto 1/k$ steps. Per iteration: one upper sample, one lower sample
//! for $\nabla_\phi f_l$, one lower sample for both tracked matrices (evaluated at two points).
//!
//! Cost per iteration: four dense second-order oracles ($O(d_l^2)$ each when the family stores its Hessian), the
//! tracked update in place, and — only when the tracked matrix changed — the projection and a Cholesky factor,
//! $O(d_l^3)$. The projection costs a Cholesky of $H - \mu I$ when $H$ is feasible; when it is not, below
//! $d_l =$ [`SHIFTED_MIN_DIM`] (every registered claim) a symmetric eigendecomposition ([`project_psd_floor`]); from
//! there to [`LANCZOS_MIN_DIM`] the smallest eigenpair by shifted inverse iteration with Cholesky factors only and a
//! certificate factor ([`project_psd_floor_shifted`]); from that size on a Lanczos smallest eigenpair
//! ($\approx80$ mat-vecs at $d_l = 1000$) and one certificate Cholesky ([`project_psd_floor_rank_one`]); both with
//! the eigendecomposition only as a fallback (module [`super::psd_projection`]). Above `LANCZOS_MIN_DIM` both
//! Cholesky factors are blocked ([`super::blocked_cholesky`]). When the sampled Hessian depends neither on the point
//! nor on the sample (a quadratic without Hessian noise) the tracked matrix stays bit-for-bit the same and the factor
//! of the first step is reused, so the iteration is $O(d_l^2)$; with Hessian noise it changes every step: at
//! $d_l = 1000$ an iteration took 76 ms CPU against 1.11 s with the eigendecomposition, 13× a TTSA iteration, and at
//! $d_l = 100$ 0.78 against 1.73 ms (`docs/performance.md`, "Session 4" and "Session 5").

use super::blocked_cholesky;
use super::common::{check_lower_step, upper_step};
use super::psd_projection::{
    LANCZOS_MIN_DIM, RouteCounts, SHIFTED_MIN_DIM, feasible, project_psd_floor_rank_one, project_psd_floor_shifted,
};
use crate::error::{BilevelError, Result};
use crate::linalg::{Matrix, Vector};
use crate::problem::{Level, Oracle};
use crate::solver::{Iterate, Schedule, Solver};
use nalgebra::{Cholesky, Dyn};

/// STABLE (Alg 5), or Alg 6 as printed when `literal_alg6` is set.
#[derive(Debug, Clone)]
pub struct Stable {
    /// Upper-level steps $\alpha_k$.
    pub alpha: Schedule,
    /// Lower-level steps $\beta_k$.
    pub beta: Schedule,
    /// Tracking weight $\tau\in(0,1]$ ($\tau=1$: the plain sample).
    pub tau: f64,
    /// Lower eigenvalue bound $\mu$ of the projection $\\{H\succeq\mu I\\}$.
    pub mu: f64,
    /// Apply the lecture's Alg 6 literally (for the comparison test).
    pub literal_alg6: bool,
    /// Planted bug: drop the correction $-(H^k_{\phi\phi})^{-1}(H^k_{\theta\phi})^\top(\theta^{k+1}-\theta^k)$ from the
    /// lower step (plain SGD on $\phi$; test `planted_bugs::stable_correction_term_by_hand`).
    pub no_correction: bool,
    /// Smallest $d_l$ projected by [`project_psd_floor_rank_one`] (Lanczos and a certificate); default
    /// [`LANCZOS_MIN_DIM`] (`0` forces it, `usize::MAX` never).
    pub lanczos_min_dim: usize,
    /// Smallest $d_l$ projected by [`project_psd_floor_shifted`] (Cholesky factors only) below `lanczos_min_dim`;
    /// default [`SHIFTED_MIN_DIM`] (`usize::MAX` never).
    pub shifted_min_dim: usize,
    routes: RouteCounts,
    h_pp: Matrix,
    h_tp: Matrix,
    g_u: Vector,
    g_p: Vector,
    g_l: Vector,
    z: Vector,
    dtheta: Vector,
    prev_theta: Vector,
    prev_phi: Vector,
    started: bool,
    /// Cholesky factor of `h_pp`, kept across steps while the tracked matrix does not change.
    chol: Option<Cholesky<f64, Dyn>>,
    /// Whether the last projection returned its input exactly (then an unchanged input needs no new factor).
    fixed_point: bool,
}

impl Stable {
    /// STABLE with tracking weight `tau` and projection level `mu`.
    pub fn new(alpha: Schedule, beta: Schedule, tau: f64, mu: f64) -> Self {
        Stable {
            alpha,
            beta,
            tau,
            mu,
            literal_alg6: false,
            no_correction: false,
            lanczos_min_dim: LANCZOS_MIN_DIM,
            shifted_min_dim: SHIFTED_MIN_DIM,
            routes: RouteCounts::default(),
            h_pp: Matrix::zeros(0, 0),
            h_tp: Matrix::zeros(0, 0),
            g_u: Vector::zeros(0),
            g_p: Vector::zeros(0),
            g_l: Vector::zeros(0),
            z: Vector::zeros(0),
            dtheta: Vector::zeros(0),
            prev_theta: Vector::zeros(0),
            prev_phi: Vector::zeros(0),
            started: false,
            chol: None,
            fixed_point: false,
        }
    }
}

/// `new[i] ← new[i] + (tracked[i] − old[i])·w` entry by entry: the recursive-momentum update of a tracked matrix
/// without temporaries.
fn track(new: &mut Matrix, tracked: &Matrix, old: &Matrix, w: f64) {
    for ((n, t), o) in new.iter_mut().zip(tracked.iter()).zip(old.iter()) {
        *n += (t - o) * w;
    }
}

/// Relative slack of the feasibility certificate in [`project_psd_floor`].
pub const PROJECTION_SLACK: f64 = 1e-12;

/// Projection of a symmetric matrix onto $\\{H\succeq\mu I\\}$ in Frobenius norm: clamp eigenvalues at $\mu$.
///
/// A matrix with $H \succeq (\mu - \varepsilon)I$, $\varepsilon$ = [`PROJECTION_SLACK`]$\cdot\max(\mu, \max|H_{ij}|)$, is
/// returned as is (certified by a Cholesky factor of $H - (\mu-\varepsilon)I$, no eigendecomposition): the default
/// $\mu = \mu_l$ puts the exact Hessian of a quadratic on the boundary, where rounding alone would otherwise decide
/// between the identity and an $O(d^3)$ eigendecomposition that moves eigenvalues by $\sim10^{-16}$.
pub fn project_psd_floor(h: &Matrix, mu: f64) -> Matrix {
    let sym = crate::linalg::symmetrize(h);
    let floor = mu - PROJECTION_SLACK * mu.max(sym.amax());
    if feasible(sym.clone(), floor, |m| m.cholesky().is_some()) {
        return sym;
    }
    let mut e = sym.symmetric_eigen();
    for l in e.eigenvalues.iter_mut() {
        *l = l.max(mu);
    }
    e.recompose()
}

impl Stable {
    /// Routes taken by the rank-one projections since `init` (all zero on the dense path, $d_l$ below both
    /// thresholds).
    pub fn projection_routes(&self) -> RouteCounts {
        self.routes
    }
}

impl Solver for Stable {
    fn name(&self) -> &'static str {
        if self.literal_alg6 {
            "stable-alg6-literal"
        } else {
            "stable"
        }
    }
    fn init(&mut self, o: &mut Oracle, _state: &Iterate) -> Result<()> {
        let k = o.problem().constants();
        self.alpha.check("alpha")?;
        check_lower_step(&self.beta, k.l_l)?;
        if !(self.tau > 0.0 && self.tau <= 1.0) {
            return Err(BilevelError::invalid("tau", self.tau, "must be in (0, 1]"));
        }
        if !(self.mu.is_finite() && self.mu > 0.0) {
            return Err(BilevelError::invalid("mu", self.mu, "must be finite and > 0"));
        }
        let d = o.dims();
        // The tracked Hessian is dense: refuse before allocating it (a matrix-free family at d_l = 1e5 would ask 80 GB).
        crate::problem::check_dense("STABLE's tracked lower-level Hessian", d.d_l, d.d_l)?;
        crate::problem::check_dense("STABLE's tracked cross derivative", d.d_u, d.d_l)?;
        self.h_pp = Matrix::zeros(d.d_l, d.d_l);
        self.h_tp = Matrix::zeros(d.d_u, d.d_l);
        self.g_u = Vector::zeros(d.d_u);
        self.g_p = Vector::zeros(d.d_l);
        self.g_l = Vector::zeros(d.d_l);
        self.z = Vector::zeros(d.d_l);
        self.dtheta = Vector::zeros(d.d_u);
        self.prev_theta = Vector::zeros(d.d_u);
        self.prev_phi = Vector::zeros(d.d_l);
        self.started = false;
        self.chol = None;
        self.fixed_point = false;
        self.routes = RouteCounts::default();
        Ok(())
    }
    fn step(&mut self, o: &mut Oracle, mut st: Iterate) -> Result<Iterate> {
        let k = st.k;
        // Tracked second-order estimates at one fresh sample, evaluated at the current and previous points.
        let s = o.draw(Level::Lower);
        let mut hp = o.hess_fl(s, &st.theta, &st.phi)?;
        let mut ht = o.cross_matrix_fl(s, &st.theta, &st.phi)?;
        if self.started {
            let hp_old = o.hess_fl(s, &self.prev_theta, &self.prev_phi)?;
            let ht_old = o.cross_matrix_fl(s, &self.prev_theta, &self.prev_phi)?;
            // In place, the same operations entry by entry as hp + (H^{k-1} − hp_old)(1 − τ).
            track(&mut hp, &self.h_pp, &hp_old, 1.0 - self.tau);
            track(&mut ht, &self.h_tp, &ht_old, 1.0 - self.tau);
        }
        self.h_tp = ht;
        // The tracked matrix is unchanged (a Hessian that depends neither on the point nor on the sample) and the last
        // projection returned its input: the projection and the factor are those of the last step, bit for bit.
        let unchanged = self.started && self.fixed_point && hp == self.h_pp;
        self.started = true;
        if !unchanged || self.chol.is_none() {
            let projected = if hp.nrows() >= self.lanczos_min_dim {
                let (p, route, steps) = project_psd_floor_rank_one(&hp, self.mu);
                self.routes.record(route, steps);
                p
            } else if hp.nrows() >= self.shifted_min_dim {
                let (p, route, steps) = project_psd_floor_shifted(&hp, self.mu);
                self.routes.record(route, steps);
                p
            } else {
                project_psd_floor(&hp, self.mu)
            };
            self.fixed_point = projected == hp;
            self.h_pp = projected;
            // The last factor's storage, overwritten: no fresh d_l × d_l allocation (and its page faults) per step.
            let mut m = match self.chol.take() {
                Some(c) => c.unpack_dirty(),
                None => Matrix::zeros(self.h_pp.nrows(), self.h_pp.ncols()),
            };
            m.copy_from(&self.h_pp);
            // Above the threshold the blocked factor (same factor up to rounding, ≈4× faster at d_l = 1000).
            let chol = if self.h_pp.nrows() >= self.lanczos_min_dim {
                blocked_cholesky::cholesky(m)
            } else {
                m.cholesky()
            };
            let chol = chol.ok_or_else(|| BilevelError::NotPositiveDefinite {
                what: "tracked lower-level Hessian".into(),
                min_eig: crate::linalg::sym_eig_range(&self.h_pp).0,
            })?;
            self.chol = Some(chol);
        }
        let chol = self.chol.as_ref().expect("factor set above");
        // Upper step at (θ^k, φ^k).
        let su = o.draw(Level::Upper);
        o.grad_theta_fu(su, &st.theta, &st.phi, &mut self.g_u)?;
        o.grad_phi_fu(su, &st.theta, &st.phi, &mut self.g_p)?;
        self.z.copy_from(&self.g_p);
        chol.solve_mut(&mut self.z);
        self.g_u.gemv(-1.0, &self.h_tp, &self.z, 1.0);
        self.prev_theta.copy_from(&st.theta);
        self.prev_phi.copy_from(&st.phi);
        st.theta_prev.copy_from(&st.theta);
        upper_step(o, &mut st.theta, self.alpha.at(k), &self.g_u);
        // Lower step with the correction term, gradient at (θ^k, φ^k).
        let sl = o.draw(Level::Lower);
        o.grad_phi_fl(sl, &st.theta_prev, &st.phi, &mut self.g_l)?;
        self.dtheta.copy_from(&st.theta);
        self.dtheta -= &st.theta_prev;
        // z ← H^{-1} H_θφᵀ Δθ.
        self.z.gemv_tr(1.0, &self.h_tp, &self.dtheta, 0.0);
        chol.solve_mut(&mut self.z);
        let beta = self.beta.at(k);
        st.phi.axpy(-beta, &self.g_l, 1.0);
        if self.no_correction {
            // Planted bug: no correction term.
        } else if self.literal_alg6 {
            st.phi.axpy(beta, &self.z, 1.0);
        } else {
            st.phi.axpy(-1.0, &self.z, 1.0);
        }
        st.k += 1;
        Ok(st)
    }
}
