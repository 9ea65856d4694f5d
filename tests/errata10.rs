//! The lecture errata of issue 10 §3, each shown numerically (theory/lecture-errata.md lists them). Every quantity is
//! computed here from the families' exact oracles, independently of the crate's estimators.

use crate::common::{random_vector, rng};
use bilevel::families::hyperparameter::HyperparameterSpec;
use bilevel::families::quadratic::QuadraticSpec;
use bilevel::families::ttsa_tight::TtsaTightSpec;
use bilevel::families::weakly_convex::WeaklyConvexSpec;
use bilevel::hypergrad::itd::{self, ItdParams, ItdSamples};
use bilevel::linalg::{spd_solve_vec, sym_eig_range};
use bilevel::problem::{Bilevel, Oracle, Sample};
use bilevel::{Matrix, Vector};

/// (39)/(49) as printed, $F(\theta)\ge F(\theta') + \langle\nabla F(\theta),\theta-\theta'\rangle + c_F\\|\theta-\theta'\\|^2$,
/// takes the gradient at the wrong point: for $F=\theta^2/2$ and $c_F = 0$ it states $-\tfrac12(\theta-\theta')^2\ge0$
/// (concavity). With $\nabla F(\theta')$ it holds, and with $c_F = \mu_F/2$ on a strongly convex $F$.
#[test]
fn eq39_as_printed_describes_concavity() {
    let tight = TtsaTightSpec::default().build().unwrap();
    let quad = QuadraticSpec {
        d_u: 3,
        d_l: 4,
        seed: 5,
        ..Default::default()
    }
    .build()
    .unwrap();
    let mut r = rng(39);
    for (p, c_f) in [
        (&tight as &dyn Bilevel, 0.0),
        (&quad as &dyn Bilevel, 0.5 * quad.constants().mu_f.unwrap()),
    ] {
        let d_u = p.dims().d_u;
        let (mut printed_fails, mut corrected_holds) = (0, 0);
        for _ in 0..50 {
            let mut t = random_vector(&mut r, d_u, 0.8);
            let mut t2 = random_vector(&mut r, d_u, 0.8);
            p.domain().project(&mut t);
            p.domain().project(&mut t2);
            let dist2 = (&t - &t2).norm_squared();
            let printed = p.value_f(&t2) + p.grad_f(&t).unwrap().dot(&(&t - &t2)) + c_f * dist2;
            let corrected = p.value_f(&t2) + p.grad_f(&t2).unwrap().dot(&(&t - &t2)) + c_f * dist2;
            if p.value_f(&t) < printed - 1e-12 {
                printed_fails += 1;
            }
            if p.value_f(&t) >= corrected - 1e-12 {
                corrected_holds += 1;
            }
        }
        assert_eq!(
            printed_fails,
            50,
            "{}: (39) as printed must fail at every pair",
            p.name()
        );
        assert_eq!(corrected_holds, 50, "{}: (39) with grad F(theta') must hold", p.name());
    }
    // F = θ²/2, c_F = 0, θ = 1, θ' = 0: printed says 1/2 ≥ 0 + 1·1 = 1.
    let one = Vector::from_element(1, 1.0);
    let zero = Vector::zeros(1);
    assert!(tight.value_f(&one) < tight.value_f(&zero) + tight.grad_f(&one).unwrap().dot(&(&one - &zero)));
}

/// (37) defines $\hat\theta(\vartheta) = \arg\min_\theta F(\theta) + \tfrac\rho2\\|\theta-\vartheta\\|^2$ for any $\rho>0$; it is
/// a single point only when $\rho>\rho_F$. On the weakly convex family ($F$ even, curvature $-\rho_F$ at 0), with
/// $\rho = \rho_F/2$ and $\vartheta = 0$ the objective has two distinct global minimisers $\pm\theta_m$, both below
/// the value at 0; with $\rho = 2\rho_F$ descent from the same two starts meets at one point.
#[test]
fn eq37_needs_rho_above_the_weak_convexity_modulus() {
    let w = WeaklyConvexSpec::default().build().unwrap();
    let rho_f = w.constants().weak_convexity;
    assert!(rho_f > 0.0);
    let l = w.constants().l_f;
    let descend = |rho: f64, start: &Vector| {
        let step = 1.0 / (l + rho);
        let mut t = start.clone();
        for _ in 0..200_000 {
            let g = w.grad_f(&t).unwrap() + rho * &t;
            let mut n = &t - step * g;
            w.domain().project(&mut n);
            let moved = (&n - &t).amax();
            t = n;
            if moved < 1e-15 {
                break;
            }
        }
        t
    };
    let obj = |rho: f64, t: &Vector| w.value_f(t) + 0.5 * rho * t.norm_squared();
    // Start along the direction of negative curvature of F + (ρ/2)|θ|² at 0.
    let zero = Vector::zeros(w.dims().d_u);
    let mut e = Vector::zeros(w.dims().d_u);
    let h = 1e-4;
    let mut best = (f64::INFINITY, 0);
    for i in 0..e.len() {
        let mut ei = zero.clone();
        ei[i] = h;
        let c = (w.value_f(&ei) - w.value_f(&zero)) / (h * h);
        if c < best.0 {
            best = (c, i);
        }
    }
    e[best.1] = 0.1;
    let neg = -&e;
    let rho = 0.5 * rho_f;
    let (a, b) = (descend(rho, &e), descend(rho, &neg));
    assert!((&a + &b).amax() < 1e-6, "F is even: the minimisers are a pair");
    assert!((&a - &b).norm() > 0.1, "rho < rho_F: two distinct minimisers {a} {b}");
    assert!((obj(rho, &a) - obj(rho, &b)).abs() < 1e-12);
    assert!(obj(rho, &a) < obj(rho, &zero) - 1e-6);
    let rho = 2.0 * rho_f;
    let (a, b) = (descend(rho, &e), descend(rho, &neg));
    assert!((&a - &b).amax() < 1e-6, "rho > rho_F: one minimiser");
    assert!((&a - &w.prox(&zero, rho).unwrap()).amax() < 1e-6);
}

/// Dense pieces of the ITD recursion (32) at one trajectory: $A_t = I-\beta H(\varphi^{t-1})$,
/// $B_t = -\beta[\nabla^2_{\theta\phi}f_l(\varphi^{t-1})]^\top$.
fn itd_pieces(
    p: &dyn Bilevel,
    theta: &Vector,
    phi0: &Vector,
    beta: f64,
    t_max: usize,
) -> (Vec<Matrix>, Vec<Matrix>, Vector) {
    let d = p.dims();
    let mut phi = phi0.clone();
    let mut g = Vector::zeros(d.d_l);
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for _ in 0..t_max {
        a.push(Matrix::identity(d.d_l, d.d_l) - beta * p.hess_fl(Sample::Exact, theta, &phi));
        b.push(-beta * p.cross_matrix_fl(Sample::Exact, theta, &phi).transpose());
        p.grad_phi_fl(Sample::Exact, theta, &phi, &mut g);
        phi.axpy(-beta, &g, 1.0);
    }
    (a, b, phi)
}

/// The lecture's reverse-mode loop runs $t = T-1\to1$ and adds $B_{t+1}^\top\alpha_{t+1}$, i.e. $B_T\ldots B_2$: it
/// never adds $B_1^\top\alpha_1$. The full loop ($t = T\to1$) equals forward mode $Z_T^\top v$ and the crate's
/// `itd::reverse`; the printed loop misses exactly $B_1^\top A_2^\top\cdots A_T^\top v$: on the hyperparameter family
/// from a warm start, 57% at $T=2$ down to 11% at $T=8$ (printed in the test output; theory/lecture-errata.md).
#[test]
fn itd_reverse_loop_as_printed_drops_the_first_term() {
    let p = HyperparameterSpec::default().build().unwrap();
    let d = p.dims();
    let theta = Vector::from_element(d.d_u, 0.5);
    let beta = 1.0 / p.constants().l_l_sample.unwrap().max(p.constants().l_l);
    let v = random_vector(&mut rng(31), d.d_l, 1.0);
    // A warm start φ⁰ ≠ 0: on this family B_1 ∝ diag(θ ⊙ φ⁰) vanishes at φ⁰ = 0.
    let phi0 = Vector::from_element(d.d_l, 0.5);
    let mut rel = Vec::new();
    for t_max in 2..=8 {
        let (a, b, phi_t) = itd_pieces(&p, &theta, &phi0, beta, t_max);
        // Forward mode: Z_t = A_t Z_{t-1} + B_t, Z_0 = 0.
        let mut z = Matrix::zeros(d.d_l, d.d_u);
        for t in 0..t_max {
            z = &a[t] * z + &b[t];
        }
        let exact = z.transpose() * &v;
        // Reverse, full: α_T = v; for t = T → 1: g += B_tᵀ α_t, α_{t-1} = A_tᵀ α_t (indices 1-based).
        let (mut g_full, mut alpha) = (Vector::zeros(d.d_u), v.clone());
        for t in (0..t_max).rev() {
            g_full += b[t].transpose() * &alpha;
            alpha = a[t].transpose() * alpha;
        }
        // Reverse as printed: for t = T−1 → 1: g += B_{t+1}ᵀ α_{t+1}, α_t = A_{t+1}ᵀ α_{t+1}.
        let (mut g_lit, mut alpha) = (Vector::zeros(d.d_u), v.clone());
        for t in (1..t_max).rev() {
            g_lit += b[t].transpose() * &alpha;
            alpha = a[t].transpose() * alpha;
        }
        assert!((&g_full - &exact).amax() < 1e-12 * (1.0 + exact.amax()));
        let missing = b[0].transpose() * &alpha;
        assert!((&g_lit + &missing - &exact).amax() < 1e-12 * (1.0 + exact.amax()));
        // The crate's reverse mode (with f_u's gradient as v at φ^T) is the full loop, not the printed one.
        let mut o = Oracle::new(&p, 0);
        let out = itd::reverse(
            &mut o,
            &theta,
            &phi0,
            &ItdParams { beta, steps: t_max },
            ItdSamples::EXACT,
            None,
        )
        .unwrap();
        let mut gu = Vector::zeros(d.d_l);
        p.grad_phi_fu(Sample::Exact, &theta, &phi_t, &mut gu);
        let mut want = Vector::zeros(d.d_u);
        p.grad_theta_fu(Sample::Exact, &theta, &phi_t, &mut want);
        let mut z = Matrix::zeros(d.d_l, d.d_u);
        for t in 0..t_max {
            z = &a[t] * z + &b[t];
        }
        want += z.transpose() * gu;
        assert!(
            (&out.hypergradient - &want).amax() < 1e-10 * (1.0 + want.amax()),
            "T = {t_max}"
        );
        rel.push((&g_lit - &exact).norm() / exact.norm());
    }
    println!("printed reverse loop, relative error for T = 2..8: {rel:.3?}");
    assert!(
        rel.iter().all(|r| *r > 0.01),
        "the printed loop is wrong at every T >= 2: {rel:?}"
    );
    assert!(rel[0] > 0.1, "and by more than 10% at T = 2: {rel:?}");
}

/// The stochastic implicit-gradient slide (after (24)): $C_1\prod_{i=0}^{p}[I - C_2\nabla^2_{\phi\phi}f_l]$ has $p+1$
/// factors. With $p$ uniform on $\\{0,\dots,t_{\max}-1\\}$, $C_1 = t_{\max}\eta$, $C_2 = \eta$ its mean is
/// $\eta\sum_{p<t_{\max}}(I-\eta H)^{p+1}v\to(I-\eta H)H^{-1}v = H^{-1}v - \eta v$: a bias $-\eta v$ that does not vanish
/// as $t_{\max}$ grows; with $\prod_{i=1}^{p}$ ($p$ factors, Ghadimi–Wang) the mean tends to $H^{-1}v$.
#[test]
fn stochastic_neumann_slide_with_p_plus_one_factors_is_biased() {
    let q = QuadraticSpec {
        d_u: 2,
        d_l: 5,
        kappa: 10.0,
        seed: 2,
        ..Default::default()
    }
    .build()
    .unwrap();
    let d = q.dims();
    let theta = Vector::zeros(d.d_u);
    let h = q.hess_fl(Sample::Exact, &theta, &Vector::zeros(d.d_l));
    let eta = 1.0 / sym_eig_range(&h).1;
    let v = random_vector(&mut rng(24), d.d_l, 1.0);
    let target = spd_solve_vec("H", &h, &v).unwrap();
    let m = Matrix::identity(d.d_l, d.d_l) - eta * &h;
    let mut last = (0.0, 0.0);
    for t_max in [10usize, 100, 1000] {
        // Exact means over p uniform on {0..t_max−1}: (1/t_max)·t_max·η·Σ_p M^p v and Σ_p M^{p+1} v.
        let (mut sum_p, mut pow) = (Vector::zeros(d.d_l), v.clone());
        for _ in 0..t_max {
            sum_p += &pow;
            pow = &m * pow;
        }
        let correct = eta * &sum_p;
        let printed = eta * (&m * &sum_p);
        last = ((&correct - &target).norm(), (&printed - &target + eta * &v).norm());
        let bias = (&printed - &target).norm();
        assert!(bias > 0.5 * eta * v.norm(), "t_max = {t_max}: printed bias {bias}");
    }
    assert!(last.0 < 1e-10, "p factors: unbiased in the limit ({})", last.0);
    assert!(last.1 < 1e-10, "p+1 factors: the bias tends to -eta v ({})", last.1);
}

/// (43) and (45) write $\prod_{i}(1-d_1\alpha^k)$ where $\prod_i(1-d_1\alpha^i)$ is meant. With $\alpha^j = c/(j+2)$ the
/// printed product $(1-d_1c/(k+2))^{k+1}\to e^{-d_1c}$ does not vanish, so the printed (43) would keep a constant
/// multiple of $\Delta_\theta^0$ and could not give (47); the intended product decays like $k^{-d_1c}$.
#[test]
fn eq43_products_need_alpha_i_not_alpha_k() {
    let (c, d1) = (2.0, 1.0);
    let alpha = |j: usize| c / (j as f64 + 2.0);
    for k in [1_000usize, 100_000] {
        let printed: f64 = (0..=k).map(|_| 1.0 - d1 * alpha(k)).product();
        let intended: f64 = (1..=k).map(|i| 1.0 - d1 * alpha(i)).product();
        assert!((printed - (-d1 * c).exp()).abs() < 2e-3, "k = {k}: printed {printed}");
        // ∏_{i=1}^{k} (1 − 2/(i+2)) = ∏ i/(i+2) = 2/((k+1)(k+2)) exactly.
        let exact = 2.0 / ((k as f64 + 1.0) * (k as f64 + 2.0));
        assert!((intended / exact - 1.0).abs() < 1e-9, "k = {k}: {intended} vs {exact}");
    }
}
