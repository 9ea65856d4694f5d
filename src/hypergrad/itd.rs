//! Iterative differentiation (ITD): the derivative of $T$ unrolled gradient steps, the lecture's eqs (30)–(32).
//!
//! The lower level is approximated by $T$ gradient steps from $\varphi^0$ (with $d\varphi^0/d\theta = 0$):
//! $$\varphi^t = \varphi^{t-1} - \beta\nabla_\phi f_l(\theta,\varphi^{t-1}),\qquad t = 1,\dots,T,$$
//! and the hypergradient is the exact gradient of the truncated objective $F_T(\theta) = f_u(\theta,\varphi^T(\theta))$:
//! $$\nabla F_T(\theta) = \nabla_\theta f_u(\theta,\varphi^T) + Z_T^\top\nabla_\phi f_u(\theta,\varphi^T),\qquad
//! Z_t = \frac{d\varphi^t}{d\theta} = A_t Z_{t-1} + B_t,\ Z_0 = 0\quad\text{(32)},$$
//! with $A_t = I - \beta\nabla^2_{\phi\phi} f_l(\theta,\varphi^{t-1})$ ($d_l\times d_l$) and
//! $B_t = -\beta[\nabla^2_{\theta\phi} f_l(\theta,\varphi^{t-1})]^\top$ ($d_l\times d_u$; the crate's cross derivative is
//! $d_u\times d_l$, see [`crate::problem`]).
//!
//! - [`forward`] (Franceschi et al. 2017): propagates $Z_t$ column by column with Hessian-vector and transposed cross
//!   products. Memory $O(d_l d_u)$, cost $T d_u$ products of each kind: it scales with $d_u$.
//! - [`reverse`]: stores the trajectory and back-propagates $\lambda \leftarrow A_t^\top\lambda$,
//!   $g \mathrel{+}= B_t^\top\lambda$. Memory $O(T d_l)$, cost $T$ products of each kind, independent of $d_u$.
//!   With `truncate = Some(T')` only the last $T'$ steps are back-propagated (truncated back-propagation,
//!   Shaban et al. 2019), memory $O(T' d_l)$.
//! - [`lecture_eq30`], [`lecture_eq31`]: the lecture's closed forms of $Z_1$ and $Z_2$. (30) is right; (31) as printed
//!   drops a $\beta$: it writes $(I - \nabla^2_{\phi\phi} f_l)$ where $A_2 = I - \beta\nabla^2_{\phi\phi} f_l$ is meant.
//!
//! Both modes give the exact derivative of the truncated dynamics, so they agree with each other and with finite
//! differences of $F_T$ (test `itd_forward_reverse_match_fd_*` in `tests/hypergrad.rs`). As $T$ grows,
//! $\nabla F_T\to\nabla F$ geometrically at rate $q = \max_i|1-\beta\lambda_i|$, with an extra factor $t$ when the
//! second derivatives vary along the trajectory (Grazzi et al. 2020; tests `itd_converges_at_the_spectral_rate_*`).
//! That factor comes from $A_t$, $B_t$ varying with $\varphi^{t-1}$, not from $\theta$: a LL Hessian that is
//! $\theta$-independent but $\phi$-dependent shows it too (`itd_factor_t_comes_from_the_trajectory_not_from_theta`),
//! and it is an upper bound whose size depends on the instance.
//! Measured costs: `docs/itd-cost.md`.

use crate::error::{BilevelError, Result};
use crate::linalg::{Matrix, Vector, check_vector};
use crate::problem::{Oracle, Sample};
use serde::Serialize;
use std::collections::VecDeque;

/// Step size $\beta$ and number of steps $T$ of the unrolled lower-level gradient descent.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ItdParams {
    /// Lower-level step $\beta > 0$ (the GD map contracts for $\beta < 2/L_l$).
    pub beta: f64,
    /// Number of unrolled steps $T \ge 1$.
    pub steps: usize,
}

impl ItdParams {
    /// Error unless $T\ge1$ and $0<\beta<2/L_l$ (outside that range $\varphi^t$ diverges along the top eigenvector).
    pub fn check(&self, l_l: f64) -> Result<()> {
        self.check_basic()?;
        if !(l_l.is_finite() && l_l > 0.0) {
            return Err(BilevelError::invalid("L_l", l_l, "must be finite and > 0"));
        }
        if self.beta >= 2.0 / l_l {
            return Err(BilevelError::StepCondition(format!(
                "ITD step beta = {} must satisfy beta < 2/L_l = {} (L_l = {l_l})",
                self.beta,
                2.0 / l_l
            )));
        }
        Ok(())
    }

    /// The checks that do not need $L_l$: $\beta$ finite and positive, $T\ge1$.
    pub(crate) fn check_basic(&self) -> Result<()> {
        if !(self.beta.is_finite() && self.beta > 0.0) {
            return Err(BilevelError::invalid("itd.beta", self.beta, "must be finite and > 0"));
        }
        if self.steps == 0 {
            return Err(BilevelError::invalid("itd.steps", 0, "must be >= 1"));
        }
        Ok(())
    }
}

/// Which samples the unrolled dynamics and the upper objective are evaluated at ([`Sample::Exact`] for the
/// deterministic hypergradient). One lower sample is used for all $T$ steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ItdSamples {
    /// Sample of $f_u$.
    pub upper: Sample,
    /// Sample of $f_l$ (every step of the dynamics).
    pub lower: Sample,
}

impl ItdSamples {
    /// Both levels exact.
    pub const EXACT: ItdSamples = ItdSamples {
        upper: Sample::Exact,
        lower: Sample::Exact,
    };
}

/// Result of [`forward`].
#[derive(Debug, Clone, PartialEq)]
pub struct ForwardOutput {
    /// $Z_T = d\varphi^T/d\theta$ ($d_l\times d_u$).
    pub z: Matrix,
    /// $\varphi^T$.
    pub phi_t: Vector,
    /// $\nabla F_T(\theta)$.
    pub hypergradient: Vector,
}

/// Result of [`reverse`].
#[derive(Debug, Clone, PartialEq)]
pub struct ReverseOutput {
    /// $\varphi^T$.
    pub phi_t: Vector,
    /// $\nabla F_T(\theta)$ (or its truncated back-propagation).
    pub hypergradient: Vector,
}

fn check_inputs(o: &Oracle, theta: &Vector, phi0: &Vector, p: &ItdParams) -> Result<()> {
    p.check_basic()?;
    let d = o.dims();
    check_vector("theta", theta, d.d_u)?;
    check_vector("phi0", phi0, d.d_l)
}

fn check_finite_output(what: &str, v: &Vector) -> Result<()> {
    if v.iter().all(|x| x.is_finite()) {
        Ok(())
    } else {
        Err(BilevelError::NonFinite { what: what.into() })
    }
}

/// `phi` ← $\varphi - \beta\nabla_\phi f_l(\theta,\varphi)$ (one step of the inner GD map), `grad` scratch.
pub(crate) fn gd_step(
    o: &mut Oracle,
    s: Sample,
    theta: &Vector,
    beta: f64,
    phi: &mut Vector,
    grad: &mut Vector,
) -> Result<()> {
    o.grad_phi_fl(s, theta, phi, grad)?;
    phi.axpy(-beta, grad, 1.0);
    Ok(())
}

/// The trajectory $\varphi^0,\dots,\varphi^T$ of the unrolled gradient descent (for checks and goldens).
pub fn trajectory(o: &mut Oracle, s: Sample, theta: &Vector, phi0: &Vector, p: &ItdParams) -> Result<Vec<Vector>> {
    check_inputs(o, theta, phi0, p)?;
    let mut out = Vec::with_capacity(p.steps + 1);
    let mut phi = phi0.clone();
    let mut grad = Vector::zeros(phi0.len());
    out.push(phi.clone());
    for _ in 0..p.steps {
        gd_step(o, s, theta, p.beta, &mut phi, &mut grad)?;
        out.push(phi.clone());
    }
    Ok(out)
}

/// $(\nabla_\theta f_u, \nabla_\phi f_u)$ at $(\theta,\varphi^T)$.
fn upper_gradients(o: &mut Oracle, s: Sample, theta: &Vector, phi_t: &Vector) -> Result<(Vector, Vector)> {
    let d = o.dims();
    let mut gt = Vector::zeros(d.d_u);
    let mut gp = Vector::zeros(d.d_l);
    o.grad_theta_fu(s, theta, phi_t, &mut gt)?;
    o.grad_phi_fu(s, theta, phi_t, &mut gp)?;
    Ok((gt, gp))
}

/// Forward-mode ITD (eq (32), Franceschi et al. 2017): $Z_t = A_t Z_{t-1} + B_t$ from $Z_0 = 0$, one column of $Z$ at a
/// time with products only, then $\nabla F_T = \nabla_\theta f_u + Z_T^\top\nabla_\phi f_u$ at $(\theta,\varphi^T)$.
///
/// Oracle calls: $T$ gradients of $f_l$, $d_u(T-1)$ Hessian-vector products (none at $t = 1$, where
/// $Z_0 = 0$), $d_u T$ transposed cross products, two upper gradients. Memory: $Z$ ($d_l d_u$) and $O(d_l)$.
///
/// Tested by `itd_forward_reverse_match_fd_*` (against central differences of $F_T$) and `itd_oracle_counts`.
pub fn forward(
    o: &mut Oracle,
    theta: &Vector,
    phi0: &Vector,
    p: &ItdParams,
    samples: ItdSamples,
) -> Result<ForwardOutput> {
    check_inputs(o, theta, phi0, p)?;
    let d = o.dims();
    let s = samples.lower;
    let beta = p.beta;
    let mut z = Matrix::zeros(d.d_l, d.d_u);
    let mut phi = phi0.clone();
    let mut col = Vector::zeros(d.d_l);
    let mut hz = Vector::zeros(d.d_l);
    let mut b_col = Vector::zeros(d.d_l);
    let mut e = Vector::zeros(d.d_u);
    let mut grad = Vector::zeros(d.d_l);
    for t in 1..=p.steps {
        // Z_t = (I − βH(φ^{t−1})) Z_{t−1} − β C(φ^{t−1})ᵀ, column j at a time.
        for j in 0..d.d_u {
            col.copy_from(&z.column(j));
            if t > 1 {
                o.hvp_fl(s, theta, &phi, &col, &mut hz)?;
                col.axpy(-beta, &hz, 1.0);
            }
            e[j] = 1.0;
            o.cross_t_fl(s, theta, &phi, &e, &mut b_col)?;
            e[j] = 0.0;
            col.axpy(-beta, &b_col, 1.0);
            z.set_column(j, &col);
        }
        gd_step(o, s, theta, beta, &mut phi, &mut grad)?;
    }
    let (mut g, gp) = upper_gradients(o, samples.upper, theta, &phi)?;
    g.gemv_tr(1.0, &z, &gp, 1.0);
    check_finite_output("forward ITD hypergradient", &g)?;
    Ok(ForwardOutput {
        z,
        phi_t: phi,
        hypergradient: g,
    })
}

/// Reverse-mode ITD: run the $T$ steps storing $\varphi^{t-1}$, then from $\lambda = \nabla_\phi f_u(\theta,\varphi^T)$,
/// $g = \nabla_\theta f_u(\theta,\varphi^T)$, for $t = T,\dots,1$:
/// $g \mathrel{+}= B_t^\top\lambda = -\beta\nabla^2_{\theta\phi} f_l(\theta,\varphi^{t-1})\lambda$, then
/// $\lambda\leftarrow A_t^\top\lambda = \lambda - \beta\nabla^2_{\phi\phi} f_l(\theta,\varphi^{t-1})\lambda$.
/// This computes $\nabla_\theta f_u + \sum_t B_t^\top A_{t+1}^\top\cdots A_T^\top\nabla_\phi f_u = \nabla F_T$.
///
/// `truncate = Some(T')` back-propagates only through the last $T'$ steps ($1\le T'\le T$; only those states are
/// stored). Oracle calls: $T$ gradients of $f_l$, $T'-1$ Hessian-vector products, $T'$ cross products, two upper
/// gradients. Memory: $T' d_l$ numbers for the trajectory.
///
/// Tested by `itd_forward_reverse_match_fd_*`, `itd_truncated_reverse_matches_dense_sum` and `itd_oracle_counts`.
pub fn reverse(
    o: &mut Oracle,
    theta: &Vector,
    phi0: &Vector,
    p: &ItdParams,
    samples: ItdSamples,
    truncate: Option<usize>,
) -> Result<ReverseOutput> {
    reverse_with(o, theta, phi0, p, samples, truncate, p.beta, false)
}

/// **Planted bug** (a near miss of [`reverse`]): the backward loop multiplies by $A_t^\top = I -
/// \nabla^2_{\phi\phi} f_l$, dropping the step $\beta$ the way the lecture's eq (31) drops it (see
/// `theory/lecture-errata.md`). The forward steps are right; only the derivative is wrong, so the estimate no longer
/// tends to $\nabla F$: its Jacobian sum tends to $\beta J$ (or blows up when $L_l > 2$). Caught by
/// `power/rate/itd-bias-warm/dropped-beta` and `power/rate/itd-bias-cold/dropped-beta` (`theory/aid-itd.md`).
pub fn reverse_dropped_beta(
    o: &mut Oracle,
    theta: &Vector,
    phi0: &Vector,
    p: &ItdParams,
    samples: ItdSamples,
) -> Result<ReverseOutput> {
    reverse_with(o, theta, phi0, p, samples, None, 1.0, false)
}

/// **Planted bug** (a near miss of [`reverse`]): each backward Hessian-vector product at a freshly drawn lower
/// sample instead of the unroll's `samples.lower` (the stochastic-Hessian habit of the Neumann estimators). Without
/// Hessian noise it equals [`reverse`]; with it the backward factors are independent, so
/// $\mathbb{E}\prod(A-\beta E_j) = A^s$ where the unroll's one sample gives $\mathbb{E}(A-\beta E)^s \ne A^s$
/// ($s\ge2$): the mean hypergradient moves. Caught by
/// `exact::exact_consistency_itd_bio_hessian_noise_and_fresh_hessian_samples`.
pub fn reverse_fresh_hessian_samples(
    o: &mut Oracle,
    theta: &Vector,
    phi0: &Vector,
    p: &ItdParams,
    samples: ItdSamples,
    truncate: Option<usize>,
) -> Result<ReverseOutput> {
    reverse_with(o, theta, phi0, p, samples, truncate, p.beta, true)
}

/// [`reverse`] with the step `gamma` of the backward Hessian products ($\beta$ when correct), and with those
/// products at fresh lower samples when `fresh_hvp` (planted bug).
#[allow(clippy::too_many_arguments)]
fn reverse_with(
    o: &mut Oracle,
    theta: &Vector,
    phi0: &Vector,
    p: &ItdParams,
    samples: ItdSamples,
    truncate: Option<usize>,
    gamma: f64,
    fresh_hvp: bool,
) -> Result<ReverseOutput> {
    check_inputs(o, theta, phi0, p)?;
    let kept = truncate.unwrap_or(p.steps);
    if kept == 0 || kept > p.steps {
        return Err(BilevelError::invalid(
            "itd.truncate",
            kept,
            "must satisfy 1 <= T' <= T (the number of steps)",
        ));
    }
    let d = o.dims();
    let s = samples.lower;
    let beta = p.beta;
    let mut stored: VecDeque<Vector> = VecDeque::with_capacity(kept);
    let mut phi = phi0.clone();
    let mut grad = Vector::zeros(d.d_l);
    for _ in 0..p.steps {
        if stored.len() == kept {
            // Reuse the oldest buffer: no allocation after the first T' steps.
            let mut old = stored.pop_front().expect("non-empty");
            old.copy_from(&phi);
            stored.push_back(old);
        } else {
            stored.push_back(phi.clone());
        }
        gd_step(o, s, theta, beta, &mut phi, &mut grad)?;
    }
    let (mut g, mut lambda) = upper_gradients(o, samples.upper, theta, &phi)?;
    let mut cu = Vector::zeros(d.d_u);
    let mut hl = Vector::zeros(d.d_l);
    for (k, state) in stored.iter().enumerate().rev() {
        o.cross_fl(s, theta, state, &lambda, &mut cu)?;
        g.axpy(-beta, &cu, 1.0);
        if k > 0 {
            let sh = if fresh_hvp {
                o.draw(crate::problem::Level::Lower)
            } else {
                s
            };
            o.hvp_fl(sh, theta, state, &lambda, &mut hl)?;
            lambda.axpy(-gamma, &hl, 1.0);
        }
    }
    check_finite_output("reverse ITD hypergradient", &g)?;
    Ok(ReverseOutput {
        phi_t: phi,
        hypergradient: g,
    })
}

/// `z` ← $[\nabla^2_{\theta\phi} f_l(\theta,\varphi)]^\top$ as a dense $d_l\times d_u$ matrix (column $j$ by one
/// transposed cross product with $e_j$).
fn cross_t_matrix(o: &mut Oracle, s: Sample, theta: &Vector, phi: &Vector) -> Result<Matrix> {
    let d = o.dims();
    let mut m = Matrix::zeros(d.d_l, d.d_u);
    let mut e = Vector::zeros(d.d_u);
    let mut col = Vector::zeros(d.d_l);
    for j in 0..d.d_u {
        e[j] = 1.0;
        o.cross_t_fl(s, theta, phi, &e, &mut col)?;
        e[j] = 0.0;
        m.set_column(j, &col);
    }
    Ok(m)
}

/// The lecture's eq (30): $Z_1 = d\varphi^1/d\theta = -\beta\nabla^2_{\theta\phi} f_l(\theta,\varphi^0)$ (in the crate's
/// convention the transpose, $d_l\times d_u$). Correct as printed; checked against [`forward`] with $T = 1$ in
/// `itd_lecture_eq30_and_eq31`.
pub fn lecture_eq30(o: &mut Oracle, s: Sample, theta: &Vector, phi0: &Vector, beta: f64) -> Result<Matrix> {
    ItdParams { beta, steps: 1 }.check_basic()?;
    check_vector("theta", theta, o.dims().d_u)?;
    check_vector("phi0", phi0, o.dims().d_l)?;
    Ok(cross_t_matrix(o, s, theta, phi0)? * (-beta))
}

/// The lecture's eq (31) for $Z_2 = d\varphi^2/d\theta$.
///
/// As printed (`restore_beta = false`):
/// $Z_2 = -\beta[(I - \nabla^2_{\phi\phi} f_l(\theta,\varphi^1))\nabla^2_{\theta\phi} f_l(\theta,\varphi^0) +
/// \nabla^2_{\theta\phi} f_l(\theta,\varphi^1)]$, which is **wrong unless $\beta = 1$**: the chain rule (32) gives
/// $A_2 = I - \beta\nabla^2_{\phi\phi} f_l(\theta,\varphi^1)$. With `restore_beta = true` the factor is
/// $(I - \beta\nabla^2_{\phi\phi} f_l)$ and the formula equals [`forward`] at $T = 2$. Test:
/// `itd_lecture_eq30_and_eq31`.
pub fn lecture_eq31(
    o: &mut Oracle,
    s: Sample,
    theta: &Vector,
    phi0: &Vector,
    beta: f64,
    restore_beta: bool,
) -> Result<Matrix> {
    ItdParams { beta, steps: 2 }.check_basic()?;
    check_vector("theta", theta, o.dims().d_u)?;
    check_vector("phi0", phi0, o.dims().d_l)?;
    let d = o.dims();
    let mut phi1 = phi0.clone();
    let mut grad = Vector::zeros(d.d_l);
    gd_step(o, s, theta, beta, &mut phi1, &mut grad)?;
    let c0 = cross_t_matrix(o, s, theta, phi0)?;
    let c1 = cross_t_matrix(o, s, theta, &phi1)?;
    let gamma = if restore_beta { beta } else { 1.0 };
    let mut out = Matrix::zeros(d.d_l, d.d_u);
    let mut h = Vector::zeros(d.d_l);
    for j in 0..d.d_u {
        let c0j = c0.column(j).into_owned();
        o.hvp_fl(s, theta, &phi1, &c0j, &mut h)?;
        let col = (&c0j - &h * gamma + c1.column(j)) * (-beta);
        out.set_column(j, &col);
    }
    Ok(out)
}
