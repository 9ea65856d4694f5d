//! STABLE's projection onto $\\{H\succeq\mu I\\}$ at research sizes, without an eigendecomposition in the common case.
//!
//! The Frobenius projection clamps the eigenvalues of $H$ at $\mu$. When exactly one eigenvalue $\lambda_1$ lies below
//! $\mu$ it is the rank-one update
//! $$\mathcal{P}\_{\succeq\mu I}(H) = H + (\mu - \lambda_1)\\,v_1v_1^\top,$$
//! so only the smallest eigenpair is needed. That is the common case of STABLE with Hessian noise on the quadratic
//! family: $H^k = (1-\tau)H^{k-1} + \tau(A + E_k)$ with $H^{k-1}\succeq\mu I$ (projected), $A\succeq\mu_l I\succeq\mu I$
//! and the rank-two noise $E_k = c(ab^\top + ba^\top)$, which has one negative eigenvalue; by Weyl's interlacing for
//! a rank-one negative term at most one eigenvalue of $H^k$ is below $\mu$ (theory/stable.md, "The projection at
//! research sizes"). For other families the count is not guaranteed, so it is certified at every step. Where many
//! eigenvalues fall below $\mu$ every step falls back: on `finite_sum` (minibatch Hessians of rank `batch`, ridge 0)
//! STABLE at $d_l = 300$, batch 32 took 26.0 ms per iteration against 23.4 ms on the dense path (10 fallbacks in 10
//! steps; Lanczos and the failed certificate are the extra); set `Stable::lanczos_min_dim = usize::MAX` there.
//!
//! [`project_psd_floor_rank_one`], for a symmetric $H$, with the slack $\varepsilon$ of
//! [`super::stable::project_psd_floor`] ($\varepsilon = 10^{-12}s$, $s = \max(\mu,\max_{ij}|H_{ij}|)$):
//! 1. the smallest Ritz pair $(\theta, v)$ by Lanczos ([`smallest_eigenpair`]: full reorthogonalisation, a fixed start
//!    vector, so the result depends on $H$ only), stopped when $\\|Hv-\theta v\\|\le$ [`LANCZOS_TOL`]$\cdot\\|H\\|\_F$;
//! 2. $\theta\ge\mu-\varepsilon$: the Cholesky certificate of $H-(\mu-\varepsilon)I$ (as the dense path) returns $H$;
//! 3. $\theta<\mu-\varepsilon$: a Cholesky factor of $H + c\\,vv^\top - (\mu-\varepsilon)I$, $c = \mu-\theta+s$,
//!    certifies $\lambda_2(H)\ge\mu-\varepsilon$ **whatever the accuracy of $v$**: for $c\ge0$,
//!    $\lambda_2(H)\ge\lambda_1(H + c\\,vv^\top)$ (interlacing). Then $H + (\mu-\theta)vv^\top$ is returned; its
//!    Frobenius distance to the exact projection is $\lesssim 2r + \sqrt2\\,r(\mu-\theta)/(\mu-\varepsilon-\theta)$ ($r$
//!    the residual; Davis–Kahan with the certified gap $\lambda_2-\theta\ge\mu-\varepsilon-\theta$), about $3.4\\,r$
//!    when $\lambda_1$ lies more than about $(r^2c)^{1/3}$ below the floor (the certificate also proves
//!    $(v^\top v_1)^2\ge(\mu-\varepsilon-\lambda_1)/c$, so $|\theta-\lambda_1|\le r\sqrt{c/(\mu-\varepsilon-\lambda_1)}$;
//!    closer to the floor both corrections are that small; theory/stable.md);
//! 4. otherwise (Lanczos did not converge, a second eigenvalue below $\mu-\varepsilon$, or a failed certificate) the
//!    eigendecomposition clamp, exactly as the dense path.
//!
//! Between [`SHIFTED_MIN_DIM`] and [`LANCZOS_MIN_DIM`] Lanczos needs nearly $d$ steps (the tracked matrix's lowest
//! eigenvalues cluster at $\mu$), while a Cholesky factor is cheap (≈ 50 of them cost one nalgebra
//! tridiagonalisation at $d = 100$). There [`project_psd_floor_shifted`] keeps the dense path's feasibility
//! certificate and replaces the eigendecomposition by [`smallest_eigenpair_shifted`]: shifts below $\lambda_1$ found
//! by Cholesky success ($H-\sigma I$ has a factor iff $\sigma<\lambda_1$), inverse iteration with the factor of
//! the highest such shift, and the same certificate (steps 3–4). On STABLE's quadratic with Hessian noise a rank-one
//! projection took ≈ 15 factors and solves together (4–12 factors, 4–9 solves), and an iteration 0.78 against
//! 1.73 ms at $d_l = 100$, 6.5 against 13.3 ms at 200 (`docs/performance.md`, "Session 5").
//!
//! Cost: $m$ matrix–vector products ($m$ the Lanczos steps, $O(m d^2 + m^2 d)$; $m\approx80$ at $d = 1000$) and one
//! blocked Cholesky ($d^3/3$ flops, mostly `gemm`) instead of a symmetric eigendecomposition ($\approx 9d^3$,
//! cache-bound in nalgebra): 45 ms against 0.9–1.2 s at $d = 1000$. STABLE uses it for $d_l\ge$ [`LANCZOS_MIN_DIM`];
//! below, the shifted route down to [`SHIFTED_MIN_DIM`], then the dense path, which keeps every registered claim's
//! bits. Tests:
//! `psd_projection::*` in `tests/psd_projection.rs`.

use super::blocked_cholesky;
use super::stable::PROJECTION_SLACK;
use crate::linalg::{Matrix, Vector};

/// Smallest $d_l$ at which STABLE projects by [`project_psd_floor_rank_one`] and factors with
/// [`super::blocked_cholesky::cholesky`] (the default of `Stable::lanczos_min_dim`). Measured crossover
/// (`docs/performance.md`, "Session 4"): on the quadratic family with Hessian noise, Lanczos needs nearly $d$ steps
/// at small $d$ (the tracked matrix's lowest eigenvalues cluster at $\mu$), and STABLE's iteration, dense path vs
/// this one, took 2.2 vs 4.3 ms at $d_l = 128$, 7.8 vs 8.4 at 200, 21 vs 12 at 256, 35 vs 14 at 300, 157 vs 30 at
/// 500. Every registered claim and golden run has $d_l\le 8$ and keeps the dense path's bits.
pub const LANCZOS_MIN_DIM: usize = 256;

/// Relative residual $\\|Hv-\theta v\\| / \\|H\\|\_F$ at which Lanczos stops: gives the projection to
/// $\approx 3.4\times10^{-11}$ relative in Frobenius norm (module docs, step 3).
pub const LANCZOS_TOL: f64 = 1e-11;

/// Most Lanczos steps before [`project_psd_floor_rank_one`] falls back to the eigendecomposition.
pub const LANCZOS_MAX_STEPS: usize = 400;

/// The smallest Ritz pair found by [`smallest_eigenpair`].
#[derive(Debug, Clone)]
pub struct EigenPair {
    /// Rayleigh quotient $\theta = v^\top Hv$.
    pub value: f64,
    /// Unit Ritz vector $v$.
    pub vector: Vector,
    /// Residual $\\|Hv-\theta v\\|$, computed from $v$ (not the Lanczos estimate).
    pub residual: f64,
    /// Lanczos steps (matrix–vector products, not counting the final residual check).
    pub steps: usize,
}

/// Route taken by [`project_psd_floor_rank_one`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Certified feasible: the input (symmetrised) returned as is.
    Feasible,
    /// One eigenvalue below $\mu$: the rank-one update.
    RankOne,
    /// The eigendecomposition clamp (fallback).
    Eigen,
}

/// How often each [`Route`] was taken, and the Lanczos steps spent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RouteCounts {
    /// [`Route::Feasible`] count.
    pub feasible: u64,
    /// [`Route::RankOne`] count.
    pub rank_one: u64,
    /// [`Route::Eigen`] count.
    pub eigen: u64,
    /// Eigenpair steps over all calls: Lanczos steps, or on the shifted route Cholesky factors and solves.
    pub lanczos_steps: u64,
}

impl RouteCounts {
    /// Count one projection.
    pub fn record(&mut self, route: Route, steps: usize) {
        match route {
            Route::Feasible => self.feasible += 1,
            Route::RankOne => self.rank_one += 1,
            Route::Eigen => self.eigen += 1,
        }
        self.lanczos_steps += steps as u64;
    }
}

/// Fixed, generic start vector: $q_i = \\{(i+1)\varphi\\} - 1/2$ (fractional part, $\varphi$ the golden ratio),
/// normalised. No random stream is touched, so a run's bits do not depend on the projection's internals.
fn start_vector(d: usize) -> Vector {
    const PHI: f64 = 0.618_033_988_749_894_9;
    let mut q = Vector::from_fn(d, |i, _| ((i + 1) as f64 * PHI).fract() - 0.5);
    let n = q.norm();
    q /= n;
    q
}

/// Smallest eigenpair of a symmetric matrix by Lanczos with full reorthogonalisation (a classical Gram–Schmidt
/// pass per step, repeated when it cancels more than 30% of the vector: "twice is enough") from a fixed start
/// vector, stopped when the residual of the Ritz pair, recomputed from the Ritz vector, is at most
/// `tol`$\cdot\\|H\\|\_F$. The tridiagonal's smallest eigenpair comes from bisection and inverse iteration, $O(m)$
/// per step. `None` if the residual is not reached within `max_steps` steps.
///
/// The Ritz value is an upper bound of $\lambda_{\min}$ and lies within the residual of some eigenvalue; that it is
/// the smallest one is not guaranteed by a Krylov method (callers certify it). `h` must be symmetric.
pub fn smallest_eigenpair(h: &Matrix, tol: f64, max_steps: usize) -> Option<EigenPair> {
    let d = h.nrows();
    if d == 0 || h.ncols() != d || max_steps == 0 {
        return None;
    }
    let norm = h.norm();
    if !norm.is_finite() {
        return None;
    }
    let target = tol * norm;
    let m = max_steps.min(d);
    // The basis grows by doubling (≈ 95 of up to 400 columns are used at d = 1000): no 3 MB zeroed up front.
    let mut q = Matrix::zeros(d, m.min(64));
    q.set_column(0, &start_vector(d));
    let mut alpha: Vec<f64> = Vec::with_capacity(m);
    let mut beta: Vec<f64> = Vec::with_capacity(m);
    let mut w = Vector::zeros(d);
    let mut coef = Vector::zeros(m);
    let mut hv = Vector::zeros(d);
    let mut tri = Tridiagonal::with_capacity(m);
    for j in 0..m {
        w.gemv(1.0, h, &q.column(j), 0.0);
        let a = q.column(j).dot(&w);
        alpha.push(a);
        w.axpy(-a, &q.column(j), 1.0);
        if j > 0 {
            w.axpy(-beta[j - 1], &q.column(j - 1), 1.0);
        }
        // Full reorthogonalisation against q_0..q_j.
        for _ in 0..2 {
            let before = w.norm();
            let qj = q.columns(0, j + 1);
            let mut c = coef.rows_mut(0, j + 1);
            c.gemv_tr(1.0, &qj, &w, 0.0);
            w.gemv(-1.0, &qj, &c, 1.0);
            if w.norm() > 0.7 * before {
                break;
            }
        }
        let b = w.norm();
        let steps = j + 1;
        let invariant = b <= f64::EPSILON * norm || steps == d;
        let (_, y) = tri.smallest(&alpha, &beta);
        // Lanczos estimate of the residual: β_j |y_last| (y a unit vector).
        if invariant || b * y[steps - 1].abs() <= 0.5 * target || steps == m {
            let mut v = Vector::zeros(d);
            v.gemv(1.0, &q.columns(0, steps), &Vector::from_column_slice(y), 0.0);
            let n = v.norm();
            if n.is_nan() || n <= 0.0 {
                return None;
            }
            v /= n;
            let (theta, residual) = rayleigh(h, &v, &mut hv);
            if residual <= target {
                return Some(EigenPair {
                    value: theta,
                    vector: v,
                    residual,
                    steps,
                });
            }
            if invariant || steps == m {
                return None;
            }
        }
        beta.push(b);
        w /= b;
        if j + 1 == q.ncols() {
            q.resize_horizontally_mut((2 * q.ncols()).min(m), 0.0);
        }
        q.set_column(j + 1, &w);
    }
    None
}

/// The Rayleigh quotient $\theta = v^\top Hv$ of a unit `v` and the residual $\\|Hv-\theta v\\|$, computed from `v`
/// (`hv` is scratch).
fn rayleigh(h: &Matrix, v: &Vector, hv: &mut Vector) -> (f64, f64) {
    hv.gemv(1.0, h, v, 0.0);
    let theta = v.dot(hv);
    hv.axpy(-theta, v, 1.0);
    (theta, hv.norm())
}

/// Workspace for the smallest eigenpair of the Lanczos tridiagonal $T$ (diagonal `a`, off-diagonal `b`).
struct Tridiagonal {
    dl: Vec<f64>,
    dd: Vec<f64>,
    du: Vec<f64>,
    du2: Vec<f64>,
    swap: Vec<bool>,
    y: Vec<f64>,
}

impl Tridiagonal {
    fn with_capacity(m: usize) -> Self {
        Tridiagonal {
            dl: Vec::with_capacity(m),
            dd: Vec::with_capacity(m),
            du: Vec::with_capacity(m),
            du2: Vec::with_capacity(m),
            swap: Vec::with_capacity(m),
            y: Vec::with_capacity(m),
        }
    }

    /// Number of eigenvalues of $T$ below `x` (Sturm sequence of the $LDL^\top$ pivots of $T - xI$, tiny pivots
    /// replaced by $-$`pivmin` as LAPACK's `dstebz` does).
    fn count_below(a: &[f64], b: &[f64], x: f64, pivmin: f64) -> usize {
        let mut count = 0;
        let mut p = 1.0;
        for i in 0..a.len() {
            p = a[i] - x - if i == 0 { 0.0 } else { b[i - 1] * b[i - 1] / p };
            if p.abs() < pivmin {
                p = -pivmin;
            }
            if p < 0.0 {
                count += 1;
            }
        }
        count
    }

    /// Smallest eigenvalue of $T$ (bisection to rounding) and a unit eigenvector (two steps of inverse iteration
    /// with a partially pivoted tridiagonal LU, LAPACK's `dgttrf`/`dgtts2`).
    fn smallest(&mut self, a: &[f64], b: &[f64]) -> (f64, &[f64]) {
        let n = a.len();
        let b = &b[..n - 1];
        let mut lo = f64::INFINITY;
        let mut hi = f64::INFINITY;
        let mut bmax: f64 = 0.0;
        for i in 0..n {
            let left = if i > 0 { b[i - 1].abs() } else { 0.0 };
            let right = if i + 1 < n { b[i].abs() } else { 0.0 };
            lo = lo.min(a[i] - left - right);
            hi = hi.min(a[i]);
            bmax = bmax.max(left).max(right);
        }
        let pivmin = f64::MIN_POSITIVE * bmax.max(1.0).powi(2);
        for _ in 0..200 {
            let mid = 0.5 * (lo + hi);
            if hi - lo <= 2.0 * f64::EPSILON * lo.abs().max(hi.abs()) + pivmin || mid <= lo || mid >= hi {
                break;
            }
            if Self::count_below(a, b, mid, pivmin) >= 1 {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        let theta = 0.5 * (lo + hi);
        // LU of T − θI with partial pivoting; exact zero pivots perturbed (the usual inverse-iteration guard).
        let tiny = f64::EPSILON * (a.iter().fold(0.0_f64, |m, x| m.max(x.abs())) + bmax).max(f64::MIN_POSITIVE);
        self.dd.clear();
        self.dd.extend(a.iter().map(|x| x - theta));
        self.dl.clear();
        self.dl.extend_from_slice(b);
        self.du.clear();
        self.du.extend_from_slice(b);
        self.du2.clear();
        self.du2.resize(n.saturating_sub(2), 0.0);
        self.swap.clear();
        self.swap.resize(n.saturating_sub(1), false);
        let (dl, dd, du, du2) = (&mut self.dl, &mut self.dd, &mut self.du, &mut self.du2);
        for i in 0..n.saturating_sub(1) {
            if dd[i].abs() >= dl[i].abs() {
                if dd[i] == 0.0 {
                    dd[i] = tiny;
                }
                let fact = dl[i] / dd[i];
                dl[i] = fact;
                dd[i + 1] -= fact * du[i];
            } else {
                let fact = dd[i] / dl[i];
                dd[i] = dl[i];
                dl[i] = fact;
                let temp = du[i];
                du[i] = dd[i + 1];
                dd[i + 1] = temp - fact * dd[i + 1];
                if i + 2 < n {
                    du2[i] = du[i + 1];
                    du[i + 1] *= -fact;
                }
                self.swap[i] = true;
            }
        }
        if dd[n - 1] == 0.0 {
            dd[n - 1] = tiny;
        }
        self.y.clear();
        self.y.resize(n, 1.0);
        let y = &mut self.y;
        for _ in 0..2 {
            for i in 0..n - 1 {
                if self.swap[i] {
                    let temp = y[i];
                    y[i] = y[i + 1];
                    y[i + 1] = temp - dl[i] * y[i];
                } else {
                    y[i + 1] -= dl[i] * y[i];
                }
            }
            y[n - 1] /= dd[n - 1];
            if n > 1 {
                y[n - 2] = (y[n - 2] - du[n - 2] * y[n - 1]) / dd[n - 2];
            }
            for i in (0..n.saturating_sub(2)).rev() {
                y[i] = (y[i] - du[i] * y[i + 1] - du2[i] * y[i + 2]) / dd[i];
            }
            let norm = y.iter().map(|x| x * x).sum::<f64>().sqrt();
            if !(norm.is_finite() && norm > 0.0) {
                break;
            }
            y.iter_mut().for_each(|x| *x /= norm);
        }
        (theta, &self.y)
    }
}

/// The eigendecomposition clamp $\sum_i\max(\lambda_i,\mu)\\,v_iv_i^\top$ of a symmetric matrix.
pub fn eigen_clamp(sym: Matrix, mu: f64) -> Matrix {
    let mut e = sym.symmetric_eigen();
    for l in e.eigenvalues.iter_mut() {
        *l = l.max(mu);
    }
    e.recompose()
}

/// `h ← h + c·vvᵀ`, computing $c\\,(v_iv_j)$ so that a symmetric `h` stays symmetric bit for bit.
fn add_rank_one(h: &mut Matrix, c: f64, v: &Vector) {
    let d = v.len();
    for j in 0..d {
        let vj = v[j];
        for i in 0..d {
            h[(i, j)] += c * (v[i] * vj);
        }
    }
}

/// Projection of a symmetric matrix onto $\\{H\succeq\mu I\\}$ in Frobenius norm by the smallest eigenpair and a
/// certificate (module docs), with the eigendecomposition clamp as fallback. Returns the projection (of the
/// symmetrised input), the route taken and the Lanczos steps spent.
///
/// Same contract as [`super::stable::project_psd_floor`]: a matrix certified $\succeq(\mu-\varepsilon)I$ is returned as
/// is; the result agrees with the exact clamp to about $3.4$ [`LANCZOS_TOL`] relative in Frobenius norm.
pub fn project_psd_floor_rank_one(h: &Matrix, mu: f64) -> (Matrix, Route, usize) {
    let sym = crate::linalg::symmetrize(h);
    let scale = mu.max(sym.amax());
    let floor = mu - PROJECTION_SLACK * scale;
    let Some(pair) = smallest_eigenpair(&sym, LANCZOS_TOL, LANCZOS_MAX_STEPS) else {
        return (eigen_clamp(sym, mu), Route::Eigen, LANCZOS_MAX_STEPS.min(h.nrows()));
    };
    let factors = |m: Matrix| blocked_cholesky::cholesky(m).is_some();
    if pair.value >= floor {
        if feasible(sym.clone(), floor, factors) {
            return (sym, Route::Feasible, pair.steps);
        }
        // Lanczos missed an eigenvalue below the floor: decide densely.
        return (eigen_clamp(sym, mu), Route::Eigen, pair.steps);
    }
    let (out, route) = certified_rank_one(sym, mu, scale, &pair, factors);
    (out, route, pair.steps)
}

/// The floor's certificate: whether `factors` finds a Cholesky factor of $H - \text{floor}\cdot I$ ($H$ = `sym`),
/// i.e. $H\succeq$ floor$\cdot I$ up to rounding. The dense path ([`super::stable::project_psd_floor`]) and both
/// rank-one routes decide feasibility with it. Takes `sym` by value and factors it in place: a caller that still
/// needs $H$ passes a clone.
pub fn feasible(sym: Matrix, floor: f64, factors: impl Fn(Matrix) -> bool) -> bool {
    let mut shifted = sym;
    for i in 0..shifted.nrows() {
        shifted[(i, i)] -= floor;
    }
    factors(shifted)
}

/// Steps 3–4 of the module docs for a pair with $\theta$ below the floor $\mu - $ [`PROJECTION_SLACK`]$\cdot$`scale`:
/// the rank-one update if a factor of $H + c\\,vv^\top - (\mu-\varepsilon)I$ exists (`factors` tells), else the
/// eigendecomposition clamp.
fn certified_rank_one(
    sym: Matrix,
    mu: f64,
    scale: f64,
    pair: &EigenPair,
    factors: impl Fn(Matrix) -> bool,
) -> (Matrix, Route) {
    let floor = mu - PROJECTION_SLACK * scale;
    // λ₂(H) ≥ λ₁(H + c vvᵀ) for c ≥ 0, so a factor of H + c vvᵀ − floor·I certifies λ₂(H) ≥ floor. The shift s
    // makes v's own direction clearly positive, whatever v's accuracy.
    let mut cert = sym.clone();
    add_rank_one(&mut cert, mu - pair.value + scale, &pair.vector);
    if !feasible(cert, floor, factors) {
        return (eigen_clamp(sym, mu), Route::Eigen);
    }
    let mut out = sym;
    add_rank_one(&mut out, mu - pair.value, &pair.vector);
    (out, Route::RankOne)
}

/// Smallest $d_l$ at which STABLE projects by [`project_psd_floor_shifted`] (below [`LANCZOS_MIN_DIM`]); smaller
/// sizes, every registered claim and golden run among them ($d_l \le 8$), keep the eigendecomposition and its bits.
/// Measured (`docs/performance.md`, "Session 5"): a STABLE iteration with Hessian noise, eigendecomposition vs this
/// route, took 0.013 vs 0.011 ms at $d_l = 12$, 0.021 vs 0.016 at 16, 0.077 vs 0.052 at 32; at 256 it equals the
/// Lanczos route (14.8 vs 15.2 ms), which wins above (27 vs 49 ms at 384).
pub const SHIFTED_MIN_DIM: usize = 16;

/// Most inverse-iteration solves of [`smallest_eigenpair_shifted`].
pub const SHIFTED_MAX_SOLVES: usize = 40;

/// Smallest eigenpair of a symmetric `h` with $\lambda_1 <$ `hi` $\le \lambda_2$ expected (STABLE's common case:
/// `hi` is the floor, a Cholesky factor of $H - \text{hi}\\,I$ has just failed), from Cholesky factors and solves
/// only: a factor costs $d^3/3$ flops against the $\approx 9d^3$ of an eigendecomposition (nalgebra's
/// tridiagonalisation alone costs ≈ 50 factors at $d = 100$). $H-\sigma I$ has a factor iff $\sigma<\lambda_1$ (up
/// to rounding), so every successful factor is a lower bound $\ell$ and every failed one an upper bound $b$:
/// 1. search down from `hi` at distances growing 8× from $10^{-4}$ of the Gershgorin interval until a shift has a
///    factor: at most five tries, then Gershgorin's lower bound (which has one unless $H = 0$ or rounding);
/// 2. inverse iteration from a fixed start vector with the factor of the highest such shift $\ell$: a solve contracts
///    the other components by $(\lambda_1-\ell)/(\lambda_2-\ell)$; after each solve the Rayleigh quotient $\theta$
///    (an upper bound of $\lambda_1$) and residual $r$; stop when $r \le$ `tol`$\cdot\\|H\\|\_F$;
/// 3. otherwise try a new factor at $\max(\theta - 2r, (\ell + b)/2)$: just below $\lambda_1$ once $v$ is good
///    (then the solves contract fast), at least bisection's progress while it is not.
///
/// `Err(steps)` if [`SHIFTED_MAX_SOLVES`] solves do not reach the residual (e.g. a second eigenvalue next to
/// $\lambda_1$), Gershgorin's bound has no factor, a solve is not finite, or the input is not finite. At most
/// $6 +$ `SHIFTED_MAX_SOLVES` factors and as many solves. As for Lanczos, that $\theta$ is the smallest eigenvalue is
/// for the caller to certify. `steps` counts the factors and the solves.
pub fn smallest_eigenpair_shifted(h: &Matrix, hi: f64, tol: f64) -> Result<EigenPair, usize> {
    let d = h.nrows();
    if d == 0 || h.ncols() != d {
        return Err(0);
    }
    let norm = h.norm();
    if !(norm.is_finite() && hi.is_finite()) {
        return Err(0);
    }
    let factor = |sigma: f64| {
        let mut m = h.clone();
        for i in 0..d {
            m[(i, i)] -= sigma;
        }
        m.cholesky()
    };
    // Gershgorin: every eigenvalue is at least min_i (h_ii − Σ_{j≠i} |h_ij|); a margin for rounding.
    let gershgorin = (0..d)
        .map(|i| h[(i, i)] - (h.column(i).iter().map(|x| x.abs()).sum::<f64>() - h[(i, i)].abs()))
        .fold(f64::INFINITY, f64::min);
    let bottom = gershgorin.min(hi) - 1e-8 * norm;
    // λ₁ is usually just below `hi`: search down from it, at distances growing 8× from 10⁻⁴ of the Gershgorin
    // interval, for a shift with a factor (at most five tries, then Gershgorin's bound).
    let (mut top, mut factors) = (hi, 0usize);
    let mut step = 1e-4 * (hi - bottom);
    let (mut lo, mut chol) = loop {
        let c = (hi - step).max(bottom);
        factors += 1;
        match factor(c) {
            Some(f) => break (c, f),
            None if c > bottom => top = c,
            None => return Err(factors),
        }
        step *= 8.0;
    };
    let mut steps = factors;
    let target = tol * norm;
    let mut v = start_vector(d);
    let mut hv = Vector::zeros(d);
    for _ in 0..SHIFTED_MAX_SOLVES {
        chol.solve_mut(&mut v);
        steps += 1;
        let n = v.norm();
        if !(n.is_finite() && n > 0.0) {
            return Err(steps);
        }
        v /= n;
        let (theta, residual) = rayleigh(h, &v, &mut hv);
        if residual <= target {
            return Ok(EigenPair {
                value: theta,
                vector: v,
                residual,
                steps,
            });
        }
        // θ ≥ λ₁ (a Rayleigh quotient). Move the shift up: to θ − 2r once v is good (just below λ₁, so that the
        // next solves contract fast), at least to the bracket's midpoint (bisection's progress when v is poor).
        top = top.min(theta);
        let c = (theta - 2.0 * residual).max(0.5 * (lo + top));
        if c > lo && c < top {
            steps += 1;
            match factor(c) {
                Some(f) => {
                    chol = f;
                    lo = c;
                }
                None => top = c,
            }
        }
    }
    Err(steps)
}

/// Projection onto $\\{H\succeq\mu I\\}$ for STABLE between [`SHIFTED_MIN_DIM`] and [`LANCZOS_MIN_DIM`]: the
/// dense path's feasibility certificate (a Cholesky factor of $H-(\mu-\varepsilon)I$, returning the input), else
/// the smallest eigenpair by [`smallest_eigenpair_shifted`] and the rank-one update certified as in
/// [`project_psd_floor_rank_one`] (module docs, steps 3–4), else the eigendecomposition clamp. Returns the
/// projection, the route and the steps (factors and solves).
pub fn project_psd_floor_shifted(h: &Matrix, mu: f64) -> (Matrix, Route, usize) {
    let sym = crate::linalg::symmetrize(h);
    let scale = mu.max(sym.amax());
    let floor = mu - PROJECTION_SLACK * scale;
    let factors = |m: Matrix| m.cholesky().is_some();
    if feasible(sym.clone(), floor, factors) {
        return (sym, Route::Feasible, 1);
    }
    let pair = match smallest_eigenpair_shifted(&sym, floor, LANCZOS_TOL) {
        Ok(pair) => pair,
        Err(spent) => return (eigen_clamp(sym, mu), Route::Eigen, 1 + spent),
    };
    let steps = 1 + pair.steps;
    if pair.value >= floor {
        // Rounding put the Rayleigh quotient above the floor that no factor certified: decide densely.
        return (eigen_clamp(sym, mu), Route::Eigen, steps);
    }
    let (out, route) = certified_rank_one(sym, mu, scale, &pair, factors);
    (out, route, steps + 1)
}
