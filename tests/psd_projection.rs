//! Issue 12 §2: STABLE's projection onto $\{H\succeq\mu I\}$ by Lanczos and a certificate
//! (`algorithms::psd_projection`) against the eigendecomposition clamp, at $d_l = 150$–$300$, the same for the
//! Cholesky-only route of $16 \le d_l < 256$ (shifted inverse iteration) at $d_l = 16$–$200$, and whole STABLE runs
//! through the projections.

use bilevel::Vector;
use bilevel::algorithms::psd_projection::{
    LANCZOS_MAX_STEPS, LANCZOS_TOL, Route, SHIFTED_MAX_SOLVES, project_psd_floor_rank_one, project_psd_floor_shifted,
    smallest_eigenpair, smallest_eigenpair_shifted,
};
use bilevel::algorithms::stable::{Stable, project_psd_floor};
use bilevel::families::quadratic::QuadraticSpec;
use bilevel::families::random::{orthogonal, spd_with_spectrum};
use bilevel::linalg::Matrix;
use bilevel::problem::{Bilevel, NoiseLevels, Noisy, Oracle};
use bilevel::solver::{Iterate, Schedule, Solver};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::sync::Arc;

const MU: f64 = 1.0;

fn rel(a: &Matrix, b: &Matrix) -> f64 {
    (a - b).norm() / b.norm()
}

/// The crate's Hessian noise shape: $c(ab^\top + ba^\top)$ with random signs $a, b$.
fn rank_two(rng: &mut ChaCha8Rng, d: usize, c: f64) -> Matrix {
    let mut sign = || if rng.random::<bool>() { 1.0 } else { -1.0 };
    let a = Vector::from_fn(d, |_, _| sign());
    let b = Vector::from_fn(d, |_, _| sign());
    (&a * b.transpose() + &b * a.transpose()) * c
}

fn below(h: &Matrix, mu: f64) -> usize {
    h.clone().symmetric_eigenvalues().iter().filter(|&&l| l < mu).count()
}

type Projection = fn(&Matrix, f64) -> (Matrix, Route, usize);

/// STABLE's tracked recursion with $\tau = 0.5$, projected densely, noise pushing $\sim2$ below $\mu$, four steps at
/// each size, through `project`: at most one eigenvalue below $\mu$ (theory/stable.md), agreement with the clamp to
/// $10^{-9}$ relative, the rank-one route whenever one eigenvalue is below $\mu$ and the input returned as is when
/// none is, at most `max_steps` steps. Returns how many cases took the rank-one route.
fn recursion_agrees_with_the_clamp(seed: u64, sizes: &[usize], project: Projection, max_steps: usize) -> usize {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut rank_one = 0;
    for &d in sizes {
        let a = spd_with_spectrum(&mut rng, d, MU, 10.0 * MU);
        let mut p = a.clone();
        for step in 0..4 {
            let e = rank_two(&mut rng, d, 4.0 / d as f64);
            let h = &p * 0.5 + (&a + e) * 0.5;
            let n_below = below(&h, MU);
            assert!(n_below <= 1, "d = {d}, step {step}: {n_below} eigenvalues below mu");
            let dense = project_psd_floor(&h, MU);
            let (fast, route, steps) = project(&h, MU);
            let err = rel(&fast, &dense);
            assert!(
                err <= 1e-9,
                "d = {d}, step {step}: relative difference {err:e} ({route:?})"
            );
            if n_below == 1 {
                assert_eq!(route, Route::RankOne, "d = {d}, step {step}");
                assert!((&dense - &h).norm() > 1e-3, "the projection must move H");
                rank_one += 1;
            } else {
                assert_eq!((route, &fast), (Route::Feasible, &dense), "d = {d}, step {step}");
            }
            assert!(steps > 0 && steps <= max_steps, "d = {d}, step {step}: {steps} steps");
            p = dense;
        }
    }
    rank_one
}

/// The observation of theory/stable.md: $H = (1-\tau)P + \tau(A + E)$ with $P\succeq\mu I$, $A\succeq\mu I$ and $E$ of
/// rank two with one negative eigenvalue has at most one eigenvalue below $\mu$, and then the rank-one update agrees
/// with the eigendecomposition clamp to $10^{-9}$ relative in Frobenius norm (bound $\approx 3.4\times10^{-11}$).
#[test]
fn rank_one_projection_equals_the_eigen_clamp() {
    let rank_one = recursion_agrees_with_the_clamp(12, &[150, 200, 300], project_psd_floor_rank_one, LANCZOS_MAX_STEPS);
    assert!(
        rank_one >= 8,
        "only {rank_one} of 12 cases exercised the rank-one route"
    );
}

/// The tolerance can fail: the rank-one update with $\lambda_{\min}$ off by $10^{-6}$ (or the right $\lambda$) differs
/// from the clamp by more than $10^{-9}$ relative.
#[test]
fn a_wrong_eigenvalue_fails_the_comparison() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let d = 200;
    let a = spd_with_spectrum(&mut rng, d, MU, 10.0 * MU);
    let h = &a + rank_two(&mut rng, d, 3.0 / d as f64);
    assert_eq!(below(&h, MU), 1);
    let dense = project_psd_floor(&h, MU);
    let pair = smallest_eigenpair(&h, LANCZOS_TOL, LANCZOS_MAX_STEPS).expect("converges");
    let fix = |lambda: f64| &h + &pair.vector * pair.vector.transpose() * (MU - lambda);
    assert!(rel(&fix(pair.value), &dense) <= 1e-9);
    let wrong = rel(&fix(pair.value - 1e-6), &dense);
    assert!(wrong > 1e-9, "a wrong eigenvalue must be detected: {wrong:e}");
}

/// Lanczos returns the smallest eigenvalue to within its residual bound, with a residual below the tolerance.
#[test]
fn lanczos_finds_the_smallest_eigenpair() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    for d in [150, 250] {
        let a = spd_with_spectrum(&mut rng, d, MU, 10.0 * MU);
        let h = &a + rank_two(&mut rng, d, 3.0 / d as f64);
        let lmin = h.clone().symmetric_eigenvalues().min();
        let pair = smallest_eigenpair(&h, LANCZOS_TOL, LANCZOS_MAX_STEPS).expect("converges");
        let r = (&h * &pair.vector - &pair.vector * pair.value).norm();
        assert!(r <= LANCZOS_TOL * h.norm(), "d = {d}: residual {r:e}");
        assert!((pair.value - lmin).abs() <= 1e-9, "d = {d}: {} vs {lmin}", pair.value);
        assert!((pair.vector.norm() - 1.0).abs() < 1e-12);
    }
}

/// Too few steps for the tolerance: no eigenpair (the projection then falls back), rather than an unconverged one.
#[test]
fn lanczos_without_convergence_returns_none() {
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let d = 200;
    let h = spd_with_spectrum(&mut rng, d, MU, 10.0 * MU) + rank_two(&mut rng, d, 3.0 / d as f64);
    assert!(smallest_eigenpair(&h, LANCZOS_TOL, 5).is_none());
    let pair = smallest_eigenpair(&h, LANCZOS_TOL, LANCZOS_MAX_STEPS).expect("converges with enough steps");
    assert!(pair.steps > 5);
}

/// Two eigenvalues below $\mu$ (two independent rank-two noises): the certificate fails and the eigendecomposition
/// decides, bit for bit as the dense path.
#[test]
fn two_eigenvalues_below_take_the_fallback() {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let d = 180;
    let a = spd_with_spectrum(&mut rng, d, MU, 10.0 * MU);
    let h = &a + rank_two(&mut rng, d, 3.0 / d as f64) + rank_two(&mut rng, d, 3.0 / d as f64);
    assert_eq!(below(&h, MU), 2, "the construction must put two eigenvalues below mu");
    let (fast, route, _) = project_psd_floor_rank_one(&h, MU);
    assert_eq!(route, Route::Eigen);
    assert_eq!(fast, project_psd_floor(&h, MU));
}

/// A feasible input, including one with $\lambda_{\min} = \mu$ up to rounding, is returned as is.
#[test]
fn feasible_input_is_returned_as_is() {
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    for (lo, d) in [(MU, 200), (1.5 * MU, 160)] {
        let a = spd_with_spectrum(&mut rng, d, lo, 10.0 * MU);
        let (out, route, _) = project_psd_floor_rank_one(&a, MU);
        assert_eq!(route, Route::Feasible, "lambda_min = {lo}");
        assert_eq!(out, a);
    }
}

fn stable_run(d_l: usize, lanczos_min_dim: usize, iters: usize) -> (Vec<Iterate>, Stable) {
    stable_run_with(d_l, lanczos_min_dim, usize::MAX, iters)
}

fn stable_run_with(d_l: usize, lanczos_min_dim: usize, shifted_min_dim: usize, iters: usize) -> (Vec<Iterate>, Stable) {
    let q: Arc<dyn Bilevel> = Arc::new(
        QuadraticSpec {
            d_u: 5,
            d_l,
            seed: 4,
            ..Default::default()
        }
        .build()
        .unwrap(),
    );
    let p = Noisy::new(q, NoiseLevels::uniform(0.1)).unwrap();
    let k = p.constants();
    let mut s = Stable::new(
        Schedule::constant(0.2 / k.l_f),
        Schedule::constant(0.5 / k.l_l_sample.unwrap_or(k.l_l)),
        0.5,
        k.mu_l,
    );
    s.lanczos_min_dim = lanczos_min_dim;
    s.shifted_min_dim = shifted_min_dim;
    let mut o = Oracle::new(&p, 11);
    let mut st = Iterate::start(Vector::from_element(5, 1.0), Vector::zeros(d_l));
    s.init(&mut o, &st).unwrap();
    let mut out = Vec::with_capacity(iters);
    for _ in 0..iters {
        st = s.step(&mut o, st).unwrap();
        out.push(st.clone());
    }
    (out, s)
}

/// A whole STABLE run at $d_l = 160$ with Hessian noise, through the rank-one projection and through the
/// eigendecomposition: the iterates agree to $10^{-8}$ relative, the rank-one route is taken, the fallback never
/// (interlacing, theory/stable.md), and the Lanczos path is deterministic.
#[test]
fn stable_runs_agree_through_both_projections() {
    let (fast, s_fast) = stable_run(160, 0, 30);
    let (dense, s_dense) = stable_run(160, usize::MAX, 30);
    let mut worst: f64 = 0.0;
    for (a, b) in fast.iter().zip(&dense) {
        worst = worst.max((&a.theta - &b.theta).norm() / b.theta.norm());
        worst = worst.max((&a.phi - &b.phi).norm() / b.phi.norm());
    }
    assert!(worst <= 1e-8, "iterates differ by {worst:e} relative");
    let r = s_fast.projection_routes();
    assert!(r.rank_one >= 5, "rank-one route not exercised: {r:?}");
    assert_eq!(r.eigen, 0, "fallback taken on the quadratic: {r:?}");
    assert_eq!(r.feasible + r.rank_one + r.eigen, 30);
    assert_eq!(s_dense.projection_routes().lanczos_steps, 0);
    let (again, _) = stable_run(160, 0, 30);
    assert_eq!(fast, again, "same seed, same bits");
}

/// The blocked Cholesky used above the threshold is nalgebra's factor up to rounding, at sizes around the block
/// width, and refuses an indefinite matrix.
#[test]
fn blocked_cholesky_equals_nalgebra() {
    use bilevel::algorithms::blocked_cholesky::{BLOCK, cholesky};
    let mut rng = ChaCha8Rng::seed_from_u64(21);
    for d in [1, BLOCK - 1, BLOCK, BLOCK + 1, 3 * BLOCK + 5] {
        let a = spd_with_spectrum(&mut rng, d, 0.5, 20.0);
        let reference = a.clone().cholesky().expect("spd");
        let blocked = cholesky(a.clone()).expect("spd");
        let err = rel(&blocked.l(), &reference.l());
        assert!(err <= 1e-13, "d = {d}: factors differ by {err:e}");
        let b = Vector::from_fn(d, |i, _| (i as f64 + 0.5).sin());
        let x = blocked.solve(&b);
        let res = (&a * &x - &b).norm() / b.norm();
        assert!(res <= 1e-12, "d = {d}: residual {res:e}");
        let indefinite = &a - Matrix::identity(d, d) * 0.6;
        assert!(cholesky(indefinite).is_none(), "d = {d}: indefinite matrix factored");
    }
}

/// Hard spectra, whatever the route and for both rank-one projections: eigenvalues just inside the slack, a second eigenvalue exactly at $\mu$, two
/// nearly equal eigenvalues below $\mu$, five below, one far below. The result agrees with the clamp to $10^{-9}$
/// relative, and only a matrix with at most one eigenvalue below $\mu - \varepsilon$ avoids the fallback.
#[test]
fn hard_spectra_agree_with_the_clamp() {
    let mut rng = ChaCha8Rng::seed_from_u64(30);
    let d = 160;
    let eps = 1e-12 * 10.0;
    let cases: Vec<(&str, Vec<f64>)> = vec![
        ("inside the slack", vec![MU - 0.1 * eps]),
        ("second at mu", vec![MU - 0.3, MU]),
        ("two nearly equal below", vec![MU - 0.5, MU - 0.5 + 1e-9]),
        ("five below", vec![0.2, 0.4, 0.6, 0.8, 0.9]),
        ("one far below", vec![-50.0]),
        ("one just below the slack", vec![MU - 10.0 * eps]),
    ];
    for (name, low) in cases {
        let u = orthogonal(&mut rng, d);
        let lambda = Vector::from_fn(d, |i, _| {
            low.get(i)
                .copied()
                .unwrap_or(MU + 9.0 * MU * (i - low.len() + 1) as f64 / (d - low.len()) as f64)
        });
        let h = &u * Matrix::from_diagonal(&lambda) * u.transpose();
        let h = (&h + h.transpose()) * 0.5;
        let dense = project_psd_floor(&h, MU);
        for (how, project) in [
            ("lanczos", project_psd_floor_rank_one as Projection),
            ("shifted", project_psd_floor_shifted),
        ] {
            let (fast, route, _) = project(&h, MU);
            let err = rel(&fast, &dense);
            assert!(err <= 1e-9, "{name}, {how}: relative difference {err:e} ({route:?})");
            let below_floor = low.iter().filter(|&&l| l < MU - eps).count();
            if below_floor >= 2 {
                assert_eq!(route, Route::Eigen, "{name}, {how}");
            }
        }
    }
}

/// The Cholesky-only route (`project_psd_floor_shifted`, STABLE's projection for $16\le d_l<256$) on the same
/// recursion: the same agreement with the clamp, within its step limit (six search factors, then a factor and a solve
/// per step).
#[test]
fn shifted_projection_equals_the_eigen_clamp() {
    let max_steps = 2 + 6 + 2 * SHIFTED_MAX_SOLVES;
    let rank_one = recursion_agrees_with_the_clamp(21, &[16, 40, 100, 200], project_psd_floor_shifted, max_steps);
    assert!(
        rank_one >= 10,
        "only {rank_one} of 16 cases exercised the rank-one route"
    );
}

/// The shifted eigenpair is the smallest one, to its residual bound; a wrong $\lambda_1$ by $10^{-6}$ fails the
/// comparison of [`shifted_projection_equals_the_eigen_clamp`]; a non-finite input gives `Err`.
#[test]
fn shifted_inverse_iteration_finds_the_smallest_eigenpair() {
    let mut rng = ChaCha8Rng::seed_from_u64(22);
    for d in [16, 64, 150] {
        let a = spd_with_spectrum(&mut rng, d, MU, 10.0 * MU);
        let h = &a + rank_two(&mut rng, d, 3.0 / d as f64);
        let lmin = h.clone().symmetric_eigenvalues().min();
        assert!(lmin < MU, "d = {d}: the construction must put an eigenvalue below mu");
        let pair = smallest_eigenpair_shifted(&h, MU, LANCZOS_TOL).expect("converges");
        let r = (&h * &pair.vector - &pair.vector * pair.value).norm();
        assert!(r <= LANCZOS_TOL * h.norm(), "d = {d}: residual {r:e}");
        assert!((pair.value - lmin).abs() <= 1e-9, "d = {d}: {} vs {lmin}", pair.value);
        let dense = project_psd_floor(&h, MU);
        let fix = |lambda: f64| &h + &pair.vector * pair.vector.transpose() * (MU - lambda);
        assert!(rel(&fix(pair.value), &dense) <= 1e-9);
        assert!(
            rel(&fix(pair.value - 1e-6), &dense) > 1e-9,
            "d = {d}: a wrong eigenvalue must be detected"
        );
    }
    let mut bad = Matrix::identity(20, 20);
    bad[(3, 4)] = f64::NAN;
    assert!(smallest_eigenpair_shifted(&bad, MU, LANCZOS_TOL).is_err());
}

/// Two eigenvalues below $\mu$: the shifted route's certificate fails and the eigendecomposition decides, bit for
/// bit as the dense path; a feasible input is returned as is.
#[test]
fn shifted_route_falls_back_or_returns_the_input() {
    let mut rng = ChaCha8Rng::seed_from_u64(23);
    let d = 60;
    let a = spd_with_spectrum(&mut rng, d, MU, 10.0 * MU);
    let h = &a + rank_two(&mut rng, d, 3.0 / d as f64) + rank_two(&mut rng, d, 3.0 / d as f64);
    assert_eq!(below(&h, MU), 2, "the construction must put two eigenvalues below mu");
    let (fast, route, _) = project_psd_floor_shifted(&h, MU);
    assert_eq!(route, Route::Eigen);
    assert_eq!(fast, project_psd_floor(&h, MU));
    let (out, route, _) = project_psd_floor_shifted(&a, MU);
    assert_eq!((route, &out), (Route::Feasible, &a));
}

/// A whole STABLE run at $d_l = 48$ through the shifted route and through the eigendecomposition agree to
/// $10^{-8}$ relative; the rank-one route is taken and the fallback never; same seed, same bits.
#[test]
fn stable_runs_agree_through_the_shifted_projection() {
    let run = |shifted_min_dim| stable_run_with(48, usize::MAX, shifted_min_dim, 30);
    let ((fast, s_fast), (dense, s_dense)) = (run(0), run(usize::MAX));
    let mut worst: f64 = 0.0;
    for (a, b) in fast.iter().zip(&dense) {
        worst = worst.max((&a.theta - &b.theta).norm() / b.theta.norm());
        worst = worst.max((&a.phi - &b.phi).norm() / b.phi.norm());
    }
    assert!(worst <= 1e-8, "iterates differ by {worst:e} relative");
    let r = s_fast.projection_routes();
    assert!(r.rank_one >= 5, "rank-one route not exercised: {r:?}");
    assert_eq!(r.eigen, 0, "fallback taken on the quadratic: {r:?}");
    assert_eq!(r.feasible + r.rank_one + r.eigen, 30);
    assert_eq!(s_dense.projection_routes(), Default::default());
    assert_eq!(fast, run(0).0, "same seed, same bits");
}

/// Edge inputs of the shifted route: $d = 1$ (the exact clamp), the zero matrix and non-finite entries (the dense
/// path's result, bit for bit, through the fallback), a matrix exactly at the floor (returned as is).
#[test]
fn shifted_route_edge_inputs() {
    let one = Matrix::from_element(1, 1, 0.25);
    let (out, route, _) = project_psd_floor_shifted(&one, MU);
    assert!((out[(0, 0)] - MU).abs() <= 1e-12, "{route:?}: {}", out[(0, 0)]);
    let zero = Matrix::zeros(20, 20);
    let (out, route, _) = project_psd_floor_shifted(&zero, MU);
    assert_eq!((route, &out), (Route::Eigen, &project_psd_floor(&zero, MU)));
    for x in [f64::NAN, f64::INFINITY] {
        let mut bad = Matrix::identity(20, 20) * 2.0;
        bad[(3, 4)] = x;
        bad[(4, 3)] = x;
        let (out, route, _) = project_psd_floor_shifted(&bad, MU);
        assert_eq!(route, Route::Eigen, "{x}");
        let dense = project_psd_floor(&bad, MU);
        assert!(
            out.iter().zip(dense.iter()).all(|(a, b)| a.to_bits() == b.to_bits()),
            "{x}"
        );
    }
    let at_floor = Matrix::identity(20, 20) * MU;
    let (out, route, _) = project_psd_floor_shifted(&at_floor, MU);
    assert_eq!((route, &out), (Route::Feasible, &at_floor));
}
