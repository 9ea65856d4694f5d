//! Family-specific facts (issue 2 §3): finite-sum sampling, the proximal map of (37), the TTSA-tight instance,
//! the meta-learning closed form against an independent derivation, and typed errors for bad parameters.
//! The generic checks every family must pass live in `problem_model`.

use crate::common::{fd_gradient, random_vector, rel_err, rng};
use bilevel::families::data::for_each_in_batch;
use bilevel::families::data_cleaning::DataCleaningSpec;
use bilevel::families::finite_sum::FiniteSumSpec;
use bilevel::families::hyperparameter::HyperparameterSpec;
use bilevel::families::low_rank::LowRankSpec;
use bilevel::families::meta_learning::MetaLearningSpec;
use bilevel::families::pruning::PruningSpec;
use bilevel::families::representation::RepresentationSpec;
use bilevel::families::ttsa_tight::TtsaTightSpec;
use bilevel::families::weakly_convex::{WeaklyConvex, WeaklyConvexSpec};
use bilevel::linalg::sym_eig_range;
use bilevel::problem::{Bilevel, Domain, Level, Oracle, Sample};
use bilevel::{BilevelError, Matrix, Vector};
use rand::RngExt;
use rand_chacha::ChaCha8Rng;
use std::sync::Arc;

fn uniform_in(domain: &Domain, d: usize, r: &mut ChaCha8Rng) -> Vector {
    match domain {
        Domain::Box(b) => Vector::from_fn(d, |i, _| b.lo()[i] + (b.hi()[i] - b.lo()[i]) * r.random::<f64>()),
        _ => random_vector(r, d, 1.5),
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Finite-sum sampling, without additive noise.

/// |mean − exact| ≤ 5·sd/√n per component, sd from the sample (a normal-approximation z-test at 5σ: with the
/// ~200 components checked below, a correct sampler fails with probability < 200 × 6e-7). Also returns the largest
/// sample standard deviation so callers can check that the draws really vary.
fn mean_matches(draws: &[Vector], exact: &Vector, what: &str) -> f64 {
    let n = draws.len() as f64;
    let mean = draws.iter().fold(Vector::zeros(exact.len()), |a, d| a + d) / n;
    let mut sd_max = 0.0f64;
    for i in 0..exact.len() {
        let var = draws.iter().map(|d| (d[i] - mean[i]).powi(2)).sum::<f64>() / (n - 1.0);
        sd_max = sd_max.max(var.sqrt());
        let tol = 5.0 * (var / n).sqrt() + 1e-12;
        assert!(
            (mean[i] - exact[i]).abs() <= tol,
            "{what}[{i}]: mean {} vs exact {} (tol {tol})",
            mean[i],
            exact[i]
        );
    }
    sd_max
}

/// Every sampled oracle of a finite-sum family, with no additive noise, averages to the exact one; the sampled
/// values vary (so the test is about sampling, not about a deterministic family).
fn check_finite_sum_unbiased(p: &dyn Bilevel, seed: u64) {
    let name = p.name().to_string();
    let mut r = rng(seed);
    let d = p.dims();
    let theta = uniform_in(p.domain(), d.d_u, &mut r);
    let phi = p.phi_star(&theta) + random_vector(&mut r, d.d_l, 1.0);
    let v = random_vector(&mut r, d.d_l, 1.0);
    let u = random_vector(&mut r, d.d_u, 1.0);
    let mut o = Oracle::new(p, seed);
    let n = 6000;
    let mut got: Vec<Vec<Vector>> = (0..8).map(|_| Vec::with_capacity(n)).collect();
    for k in 0..n {
        // Alternate the level of the draw: both kinds of words must give unbiased oracles at both levels.
        let s = o.draw(if k % 2 == 0 { Level::Lower } else { Level::Upper });
        assert!(matches!(s, Sample::Draw(_)), "{name}: finite-sum families draw words");
        for (kind, slot) in got.iter_mut().enumerate() {
            let mut out = Vector::zeros(if kind == 2 || kind == 6 { d.d_u } else { d.d_l });
            match kind {
                0 => out = Vector::from_element(1, p.f_u(s, &theta, &phi)),
                1 => out = Vector::from_element(1, p.f_l(s, &theta, &phi)),
                2 => p.grad_theta_fu(s, &theta, &phi, &mut out),
                3 => p.grad_phi_fu(s, &theta, &phi, &mut out),
                4 => p.grad_phi_fl(s, &theta, &phi, &mut out),
                5 => p.hvp_fl(s, &theta, &phi, &v, &mut out),
                6 => p.cross_fl(s, &theta, &phi, &v, &mut out),
                _ => p.cross_t_fl(s, &theta, &phi, &u, &mut out),
            }
            slot.push(out);
        }
    }
    let e = Sample::Exact;
    let mut ex = [
        Vector::from_element(1, p.f_u(e, &theta, &phi)),
        Vector::from_element(1, p.f_l(e, &theta, &phi)),
        Vector::zeros(d.d_u),
        Vector::zeros(d.d_l),
        Vector::zeros(d.d_l),
        Vector::zeros(d.d_l),
        Vector::zeros(d.d_u),
        Vector::zeros(d.d_l),
    ];
    p.grad_theta_fu(e, &theta, &phi, &mut ex[2]);
    p.grad_phi_fu(e, &theta, &phi, &mut ex[3]);
    p.grad_phi_fl(e, &theta, &phi, &mut ex[4]);
    p.hvp_fl(e, &theta, &phi, &v, &mut ex[5]);
    p.cross_fl(e, &theta, &phi, &v, &mut ex[6]);
    p.cross_t_fl(e, &theta, &phi, &u, &mut ex[7]);
    let kinds = [
        "f_u",
        "f_l",
        "grad_theta_fu",
        "grad_phi_fu",
        "grad_phi_fl",
        "hvp_fl",
        "cross_fl",
        "cross_t_fl",
    ];
    for (k, what) in kinds.iter().enumerate() {
        let sd = mean_matches(&got[k], &ex[k], &format!("{name} {what}"));
        // Values and the LL gradient depend on the drawn data point: the draws must vary.
        if k == 0 || k == 1 || k == 4 {
            assert!(sd > 1e-3, "{name} {what}: sampled values do not vary (sd {sd})");
        }
    }
}

#[test]
fn finite_sum_sampling_is_unbiased_without_noise() {
    let fams: Vec<Arc<dyn Bilevel>> = vec![
        Arc::new(HyperparameterSpec::default().build().unwrap()),
        Arc::new(
            HyperparameterSpec {
                batch: 5,
                ..Default::default()
            }
            .build()
            .unwrap(),
        ),
        Arc::new(RepresentationSpec::default().build().unwrap()),
        Arc::new(PruningSpec::default().build().unwrap()),
        Arc::new(DataCleaningSpec::default().build().unwrap()),
        Arc::new(FiniteSumSpec::default().build().unwrap()),
    ];
    for (i, p) in fams.iter().enumerate() {
        check_finite_sum_unbiased(p.as_ref(), 40 + i as u64);
    }
}

#[test]
fn minibatch_indices_are_uniform() {
    // Pearson chi-square of index counts over n = 10 cells with 20000 draws of batch 3: 9 degrees of freedom,
    // P(χ²₉ > 33.7) = 1e-4, so a uniform sampler passes and an index map biased by even 10% on one cell
    // (excess ≈ (0.1·6000)²/6000 = 60) fails.
    let (n, batch, draws) = (10usize, 3usize, 20000u64);
    for level in [Level::Upper, Level::Lower] {
        let mut counts = vec![0u64; n];
        let mut r = rng(9);
        for _ in 0..draws {
            let word = r.random::<u64>();
            let mut weight_sum = 0.0;
            for_each_in_batch(Sample::Draw(word), level, n, batch, |j, w| {
                counts[j] += 1;
                weight_sum += w;
            });
            assert!((weight_sum - 1.0).abs() < 1e-15, "batch weights sum to one");
        }
        let expected = (draws as f64) * batch as f64 / n as f64;
        let chi2: f64 = counts.iter().map(|&c| (c as f64 - expected).powi(2) / expected).sum();
        assert!(chi2 < 33.7, "{level:?}: chi2 = {chi2}, counts {counts:?}");
    }
    // The two levels use different streams of one word: the same word gives different minibatches.
    let collect = |level| {
        let mut v = Vec::new();
        for_each_in_batch(Sample::Draw(12345), level, 1000, 8, |j, _| v.push(j));
        v
    };
    assert_ne!(collect(Level::Upper), collect(Level::Lower));
    // Exact is the full average.
    let mut seen = Vec::new();
    for_each_in_batch(Sample::Exact, Level::Lower, 7, 3, |j, w| {
        assert_eq!(w, 1.0 / 7.0);
        seen.push(j);
    });
    assert_eq!(seen, (0..7).collect::<Vec<_>>());
}

#[test]
fn hyperparameter_lower_hessian_depends_on_theta() {
    // The reason this family serves the ITD tests: ∇²φφ f_l = A + 2 diag(θ²) moves with θ, by exactly
    // 2 diag(θ₁² − θ₂²).
    let p = HyperparameterSpec::default().build().unwrap();
    let t1 = Vector::from_element(4, 0.1);
    let t2 = Vector::from_element(4, 0.9);
    let phi = Vector::zeros(4);
    let dh = p.hess_fl(Sample::Exact, &t2, &phi) - p.hess_fl(Sample::Exact, &t1, &phi);
    let expected = Matrix::from_diagonal(&Vector::from_element(4, 2.0 * (0.81 - 0.01)));
    assert!((dh - expected).amax() < 1e-12);
}

// ---------------------------------------------------------------------------------------------------------------
// The proximal map of (37) and the measure of (38).

fn prox_objective(w: &WeaklyConvex, theta: &Vector, vartheta: &Vector, rho: f64) -> f64 {
    w.value_f(theta) + 0.5 * rho * (theta - vartheta).norm_squared()
}

#[test]
fn prox_is_projected_stationary_and_a_global_minimiser() {
    let w = WeaklyConvexSpec::default().build().unwrap();
    let rho_f = w.constants().weak_convexity;
    assert!(rho_f > 0.0, "the default instance is nonconvex");
    let mut r = rng(21);
    for k in 0..40 {
        let rho = rho_f * [1.05, 1.5, 3.0, 10.0][k % 4];
        // ϑ inside and outside Θ = [−3, 3]².
        let vartheta = random_vector(&mut r, 2, 3.0);
        let th = w.prox(&vartheta, rho).unwrap();
        assert!(w.domain().contains(&th, 0.0), "prox lands in Theta");
        // Projected stationarity of the prox problem: θ̂ = P_Θ(θ̂ − t∇Φ(θ̂)). ∇F is the closed form, itself
        // checked against differences of F in problem_model. 1e-10: the solver stops at distance ≤ 1e-12 from θ̂
        // and ∇Φ is (L_F + ρ)-Lipschitz with L_F + ρ < 10 here.
        let grad = w.grad_f(&th).unwrap() + rho * (&th - &vartheta);
        let t = 1.0 / (w.constants().l_f + rho);
        let moved = w.domain().projected(&(&th - t * &grad)).unwrap();
        assert!(
            (&moved - &th).amax() < 1e-10,
            "projected stationarity, moved {}",
            (&moved - &th).amax()
        );
        // Global minimality against random feasible points (Φ is strongly convex for ρ > ρ_F; the comparison uses
        // values only, independent of any gradient).
        let best = prox_objective(&w, &th, &vartheta, rho);
        for _ in 0..200 {
            let z = uniform_in(w.domain(), 2, &mut r);
            assert!(prox_objective(&w, &z, &vartheta, rho) >= best - 1e-12);
        }
    }
}

#[test]
fn moreau_envelope_gradient_matches_differences() {
    // ∇M_{1/ρ}(ϑ) = ρ(ϑ − θ̂(ϑ)) for ρ > ρ_F (Moreau envelope of a ρ_F-weakly convex function). Central
    // differences of M with h = 1e-5: truncation h²·M'''/6 and prox error 1e-12/h ≈ 1e-7 dominate; tolerance 1e-6.
    let w = WeaklyConvexSpec::default().build().unwrap();
    let rho = 2.0 * w.constants().weak_convexity;
    let mut r = rng(22);
    for _ in 0..10 {
        let vartheta = random_vector(&mut r, 2, 2.0);
        let g = rho * (&vartheta - w.prox(&vartheta, rho).unwrap());
        let g_fd = fd_gradient(|v| w.moreau_envelope(v, rho).unwrap(), &vartheta, 1e-5);
        assert!(rel_err(&g, &g_fd) < 1e-6, "{g} vs {g_fd}");
        // (38): the gap is ‖θ̂ − ϑ‖² = ‖∇M‖²/ρ².
        let gap = w.moreau_gap(&vartheta, rho).unwrap();
        assert!((gap - g.norm_squared() / (rho * rho)).abs() < 1e-12);
    }
    // θ = 0 is stationary (∇F(0) = 0) and Φ is convex, so θ̂(0) = 0 and the gap vanishes.
    assert!(w.moreau_gap(&Vector::zeros(2), rho).unwrap() < 1e-24);
}

#[test]
fn weak_convexity_modulus_is_attained_at_zero() {
    // The declared ρ_F is exact: the smallest eigenvalue of ∇²F(0), from second differences of F alone, is −ρ_F.
    // Second differences with h = 1e-4 on O(1) values: error h²·F''''/12 + eps·F/h² ≈ 1e-8; tolerance 1e-6.
    let w = WeaklyConvexSpec::default().build().unwrap();
    let h = 1e-4;
    let f = |x: f64, y: f64| w.value_f(&Vector::from_vec(vec![x, y]));
    let hxx = (f(h, 0.0) - 2.0 * f(0.0, 0.0) + f(-h, 0.0)) / (h * h);
    let hyy = (f(0.0, h) - 2.0 * f(0.0, 0.0) + f(0.0, -h)) / (h * h);
    let hxy = (f(h, h) - f(h, -h) - f(-h, h) + f(-h, -h)) / (4.0 * h * h);
    let (lo, _) = sym_eig_range(&Matrix::from_row_slice(2, 2, &[hxx, hxy, hxy, hyy]));
    assert!(
        (lo + w.constants().weak_convexity).abs() < 1e-6,
        "{lo} vs -{}",
        w.constants().weak_convexity
    );
}

#[test]
fn prox_rejects_rho_at_or_below_the_modulus() {
    let w = WeaklyConvexSpec::default().build().unwrap();
    let rho_f = w.constants().weak_convexity;
    for rho in [rho_f, 0.5 * rho_f, 0.0, -1.0, f64::NAN, f64::INFINITY] {
        assert!(
            matches!(
                w.prox(&Vector::zeros(2), rho),
                Err(BilevelError::InvalidParameter { .. })
            ),
            "rho = {rho}"
        );
    }
}

#[test]
fn prox_rejects_a_wrong_size_point() {
    let w = WeaklyConvexSpec::default().build().unwrap();
    let rho = 2.0 * w.constants().weak_convexity;
    assert!(matches!(
        w.prox(&Vector::zeros(3), rho),
        Err(BilevelError::DimensionMismatch { .. })
    ));
}

#[test]
fn prox_rejects_a_non_finite_point() {
    let w = WeaklyConvexSpec::default().build().unwrap();
    let rho = 2.0 * w.constants().weak_convexity;
    let bad = Vector::from_vec(vec![f64::NAN, 0.0]);
    assert!(matches!(w.moreau_gap(&bad, rho), Err(BilevelError::NonFinite { .. })));
}

// ---------------------------------------------------------------------------------------------------------------
// The TTSA-tight instance.

#[test]
fn ttsa_tight_f_is_half_theta_squared_and_theta_star_is_zero() {
    let p = TtsaTightSpec::default().build().unwrap();
    let mut r = rng(31);
    for _ in 0..200 {
        let t = Vector::from_element(1, 2.0 * r.random::<f64>() - 1.0);
        let phi = p.phi_star(&t);
        // ψ_δ(0) = 0 exactly and φ* − aθ = 0 exactly in floating point, so F = θ²/2 to the last bit.
        assert_eq!(p.f_u(Sample::Exact, &t, &phi), 0.5 * t[0] * t[0]);
        assert_eq!(p.value_f(&t), 0.5 * t[0] * t[0]);
        assert!((p.grad_f(&t).unwrap()[0] - t[0]).abs() < 1e-15);
        assert!(p.value_f(&t) >= 0.0);
    }
    assert_eq!(p.theta_star(), Some(Vector::zeros(1)));
    assert_eq!(p.grad_f(&Vector::zeros(1)).unwrap()[0], 0.0);
}

#[test]
fn ttsa_tight_surrogate_is_theta_plus_psi() {
    // The surrogate of (13) at an arbitrary φ, ∇θ f_u − ∇²θφ f_l [∇²φφ f_l]⁻¹ ∇φ f_u assembled from the oracles,
    // equals θ + ψ_δ(φ − aθ) (references §6): the LL error enters as a bias ψ_δ ≥ 0.
    let p = TtsaTightSpec {
        a: -1.7,
        delta: 1e-3,
        radius: 2.0,
    }
    .build()
    .unwrap();
    let mut r = rng(32);
    for _ in 0..200 {
        let t = Vector::from_element(1, 4.0 * r.random::<f64>() - 2.0);
        let phi = p.phi_star(&t) + random_vector(&mut r, 1, 0.1);
        let (mut gt, mut gp, mut hv, mut c) = (Vector::zeros(1), Vector::zeros(1), Vector::zeros(1), Vector::zeros(1));
        p.grad_theta_fu(Sample::Exact, &t, &phi, &mut gt);
        p.grad_phi_fu(Sample::Exact, &t, &phi, &mut gp);
        p.hvp_fl(Sample::Exact, &t, &phi, &Vector::from_element(1, 1.0), &mut hv);
        p.cross_fl(Sample::Exact, &t, &phi, &Vector::from_element(1, 1.0), &mut c);
        let surrogate = gt[0] - c[0] / hv[0] * gp[0];
        let u = phi[0] + 1.7 * t[0];
        let psi = (1e-6 + u * u).sqrt() - 1e-3;
        // Both sides O(1); the closed form ψ loses ~1e-16/δ to cancellation: tolerance 1e-12.
        assert!(
            (surrogate - (t[0] + psi)).abs() < 1e-12,
            "{surrogate} vs {}",
            t[0] + psi
        );
        assert!((p.surrogate(t[0], phi[0]) - surrogate).abs() < 1e-12);
    }
    // No cancellation in ψ for |u| ≪ δ: ψ(u) = u²/(2δ)(1 + O(u²/δ²)).
    assert!((p.psi(1e-9) / (1e-18 / 2e-3) - 1.0).abs() < 1e-12);
}

// ---------------------------------------------------------------------------------------------------------------
// Meta-learning: the closed form against an independent derivation.

#[test]
fn meta_learning_phi_star_matches_gradient_descent_on_the_lower_level() {
    // φ* from the closed form vs plain gradient descent on f_l using only the ∇φ f_l oracle (checked against
    // differences of f_l in problem_model): step 1/L_l, κ = 6/1.5 = 4, 400 steps contract the error by
    // (1 − 1/4)^400 ≈ 1e-50.
    let p = MetaLearningSpec::default().build().unwrap();
    let k = p.constants();
    let mut r = rng(41);
    let d_l = p.dims().d_l;
    for _ in 0..5 {
        let theta = random_vector(&mut r, 3, 1.5);
        let mut phi = Vector::zeros(d_l);
        let mut g = Vector::zeros(d_l);
        for _ in 0..400 {
            p.grad_phi_fl(Sample::Exact, &theta, &phi, &mut g);
            phi -= &g / k.l_l;
        }
        assert!(rel_err(&p.phi_star(&theta), &phi) < 1e-12);
    }
}

#[test]
fn meta_learning_gradient_matches_the_imaml_formula() {
    // iMAML (Rajeswaran et al. 2019): the meta-gradient is (1/T) Σ_t (I + Q_t/λ)⁻¹ ∇V_t(φ_t*), with
    // φ_t* = argmin L_t(φ) + λ/2‖φ − θ‖² computed here from the raw task data by an LU solve — not from the
    // family's stored M_t, A_F, g_F.
    let p = MetaLearningSpec::default().build().unwrap();
    let lambda = p.spec().lambda;
    let mut r = rng(42);
    for _ in 0..5 {
        let theta = random_vector(&mut r, 3, 1.5);
        let mut g = Vector::zeros(3);
        let mut f = 0.0;
        for task in &p.tasks {
            let i3 = Matrix::identity(3, 3);
            let phi_t = (&task.q + &i3 * lambda)
                .lu()
                .solve(&(&task.c + lambda * &theta))
                .unwrap();
            let grad_v = &task.r * &phi_t - &task.e;
            g += (&i3 + &task.q / lambda).lu().solve(&grad_v).unwrap() / p.tasks.len() as f64;
            f += (0.5 * phi_t.dot(&(&task.r * &phi_t)) - task.e.dot(&phi_t)) / p.tasks.len() as f64;
        }
        assert!(rel_err(&p.grad_f(&theta).unwrap(), &g) < 1e-12);
        assert!((p.value_f(&theta) - f).abs() < 1e-12 * (1.0 + f.abs()));
    }
    // θ* is where the iMAML gradient vanishes, and no nearby point is better.
    let ts = p.theta_star().unwrap();
    let g_fd = fd_gradient(|t| p.value_f(t), &ts, 1e-5);
    assert!(g_fd.amax() < 1e-8, "differences of F at theta*: {g_fd}");
    for _ in 0..100 {
        let z = &ts + random_vector(&mut r, 3, 0.1);
        assert!(p.value_f(&z) > p.value_f(&ts));
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Typed errors for bad parameters: one test per error.

macro_rules! bad_param {
    ($name:ident, $spec:expr, $pat:pat) => {
        #[test]
        fn $name() {
            let r = $spec.build();
            assert!(matches!(r, Err($pat)), "{:?}", r.err());
        }
    };
}

bad_param!(
    hyperparameter_rejects_zero_features,
    HyperparameterSpec {
        p: 0,
        ..Default::default()
    },
    BilevelError::InvalidParameter { .. }
);
bad_param!(
    hyperparameter_rejects_zero_batch,
    HyperparameterSpec {
        batch: 0,
        ..Default::default()
    },
    BilevelError::InvalidParameter { .. }
);
bad_param!(
    hyperparameter_rejects_empty_training_set,
    HyperparameterSpec {
        m: 0,
        ..Default::default()
    },
    BilevelError::InvalidParameter { .. }
);
bad_param!(
    hyperparameter_rejects_empty_validation_set,
    HyperparameterSpec {
        n: 0,
        ..Default::default()
    },
    BilevelError::InvalidParameter { .. }
);
bad_param!(
    hyperparameter_rejects_nonpositive_lower_corner,
    HyperparameterSpec {
        lo: 0.0,
        ..Default::default()
    },
    BilevelError::InvalidParameter { .. }
);
bad_param!(
    hyperparameter_rejects_inverted_box,
    HyperparameterSpec {
        lo: 1.0,
        hi: 0.5,
        ..Default::default()
    },
    BilevelError::InvalidParameter { .. }
);
bad_param!(
    hyperparameter_rejects_nan_noise,
    HyperparameterSpec {
        label_noise: f64::NAN,
        ..Default::default()
    },
    BilevelError::InvalidParameter { .. }
);

bad_param!(
    representation_rejects_zero_features,
    RepresentationSpec {
        k: 0,
        ..Default::default()
    },
    BilevelError::InvalidParameter { .. }
);
bad_param!(
    representation_rejects_zero_inputs,
    RepresentationSpec {
        p: 0,
        ..Default::default()
    },
    BilevelError::InvalidParameter { .. }
);
bad_param!(
    representation_rejects_nonpositive_ridge,
    RepresentationSpec {
        rho: 0.0,
        ..Default::default()
    },
    BilevelError::InvalidParameter { .. }
);
bad_param!(
    representation_rejects_infinite_radius,
    RepresentationSpec {
        radius: f64::INFINITY,
        ..Default::default()
    },
    BilevelError::InvalidParameter { .. }
);
bad_param!(
    representation_rejects_zero_batch,
    RepresentationSpec {
        batch: 0,
        ..Default::default()
    },
    BilevelError::InvalidParameter { .. }
);

bad_param!(
    pruning_rejects_zero_weights,
    PruningSpec {
        p: 0,
        ..Default::default()
    },
    BilevelError::InvalidParameter { .. }
);
bad_param!(
    pruning_rejects_negative_ridge,
    PruningSpec {
        rho: -0.1,
        ..Default::default()
    },
    BilevelError::InvalidParameter { .. }
);
bad_param!(
    pruning_rejects_nonpositive_mask_bound,
    PruningSpec {
        hi: 0.0,
        ..Default::default()
    },
    BilevelError::InvalidParameter { .. }
);
bad_param!(
    pruning_rejects_empty_validation_set,
    PruningSpec {
        n: 0,
        ..Default::default()
    },
    BilevelError::InvalidParameter { .. }
);

bad_param!(
    data_cleaning_rejects_more_corrupted_than_samples,
    DataCleaningSpec {
        corrupted: 11,
        ..Default::default()
    },
    BilevelError::InvalidParameter { .. }
);
bad_param!(
    data_cleaning_rejects_weight_floor_above_one,
    DataCleaningSpec {
        lo: 1.5,
        ..Default::default()
    },
    BilevelError::InvalidParameter { .. }
);
bad_param!(
    data_cleaning_rejects_zero_weight_floor,
    DataCleaningSpec {
        lo: 0.0,
        ..Default::default()
    },
    BilevelError::InvalidParameter { .. }
);
bad_param!(
    data_cleaning_rejects_nonpositive_ridge,
    DataCleaningSpec {
        rho: 0.0,
        ..Default::default()
    },
    BilevelError::InvalidParameter { .. }
);
bad_param!(
    data_cleaning_rejects_empty_training_set,
    DataCleaningSpec {
        m: 0,
        corrupted: 0,
        ..Default::default()
    },
    BilevelError::InvalidParameter { .. }
);

bad_param!(
    meta_learning_rejects_zero_tasks,
    MetaLearningSpec {
        tasks: 0,
        ..Default::default()
    },
    BilevelError::InvalidParameter { .. }
);
bad_param!(
    meta_learning_rejects_zero_dimension,
    MetaLearningSpec {
        d: 0,
        ..Default::default()
    },
    BilevelError::InvalidParameter { .. }
);
bad_param!(
    meta_learning_rejects_nonpositive_lambda,
    MetaLearningSpec {
        lambda: 0.0,
        ..Default::default()
    },
    BilevelError::InvalidParameter { .. }
);
bad_param!(
    meta_learning_rejects_inverted_q_range,
    MetaLearningSpec {
        q_range: (2.0, 1.0),
        ..Default::default()
    },
    BilevelError::InvalidParameter { .. }
);
bad_param!(
    meta_learning_rejects_singular_validation,
    MetaLearningSpec {
        r_range: (0.0, 1.0),
        ..Default::default()
    },
    BilevelError::InvalidParameter { .. }
);

bad_param!(
    weakly_convex_rejects_zero_amplitude,
    WeaklyConvexSpec {
        amplitude: 0.0,
        ..Default::default()
    },
    BilevelError::InvalidParameter { .. }
);
bad_param!(
    weakly_convex_rejects_negative_ratio,
    WeaklyConvexSpec {
        curvature_ratio: -0.1,
        ..Default::default()
    },
    BilevelError::InvalidParameter { .. }
);
bad_param!(
    weakly_convex_rejects_nonpositive_radius,
    WeaklyConvexSpec {
        radius: 0.0,
        ..Default::default()
    },
    BilevelError::InvalidParameter { .. }
);
bad_param!(
    weakly_convex_rejects_bad_s_range,
    WeaklyConvexSpec {
        s_range: (0.0, 1.0),
        ..Default::default()
    },
    BilevelError::InvalidParameter { .. }
);
bad_param!(
    weakly_convex_rejects_zero_dimension,
    WeaklyConvexSpec {
        d_l: 0,
        ..Default::default()
    },
    BilevelError::InvalidParameter { .. }
);

bad_param!(
    ttsa_tight_rejects_zero_coupling,
    TtsaTightSpec {
        a: 0.0,
        ..Default::default()
    },
    BilevelError::InvalidParameter { .. }
);
bad_param!(
    ttsa_tight_rejects_nonpositive_delta,
    TtsaTightSpec {
        delta: 0.0,
        ..Default::default()
    },
    BilevelError::InvalidParameter { .. }
);
bad_param!(
    ttsa_tight_rejects_nan_radius,
    TtsaTightSpec {
        radius: f64::NAN,
        ..Default::default()
    },
    BilevelError::InvalidParameter { .. }
);

/// `nonlinear_coupling`'s dense second-order oracles (computed once per call, for STABLE) have the bits of the
/// column-by-column builds from its products, which is how the trait builds them and how they were computed before.
#[test]
fn nonlinear_coupling_dense_oracles_equal_their_product_builds_bit_for_bit() {
    use bilevel::families::nonlinear_coupling::NonlinearCouplingSpec;
    let p = NonlinearCouplingSpec::default().build().unwrap();
    let d = p.dims();
    let mut r = rng(11);
    let bits = |m: &Matrix| m.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    for _ in 0..50 {
        let theta = random_vector(&mut r, d.d_u, 2.0);
        let phi = random_vector(&mut r, d.d_l, 2.0);
        let (mut h, mut c) = (Matrix::zeros(d.d_l, d.d_l), Matrix::zeros(d.d_u, d.d_l));
        let (mut hcol, mut ccol) = (Vector::zeros(d.d_l), Vector::zeros(d.d_u));
        for j in 0..d.d_l {
            let e = Vector::from_fn(d.d_l, |i, _| if i == j { 1.0 } else { 0.0 });
            p.hvp_fl(Sample::Exact, &theta, &phi, &e, &mut hcol);
            h.set_column(j, &hcol);
            p.cross_fl(Sample::Exact, &theta, &phi, &e, &mut ccol);
            c.set_column(j, &ccol);
        }
        assert_eq!(bits(&p.hess_fl(Sample::Exact, &theta, &phi)), bits(&h));
        assert_eq!(bits(&p.cross_matrix_fl(Sample::Exact, &theta, &phi)), bits(&c));
    }
}

/// `nonlinear_coupling`'s per-thread memo of h(θ) never returns another family's or another point's value: two
/// instances with different γ and points that differ in one bit, interleaved.
#[test]
fn nonlinear_coupling_h_memo_is_keyed_by_gamma_and_theta() {
    use bilevel::families::nonlinear_coupling::NonlinearCouplingSpec;
    let spec = NonlinearCouplingSpec::default();
    let p1 = spec.build().unwrap();
    let p2 = NonlinearCouplingSpec {
        gamma: spec.gamma * 2.0,
        ..spec.clone()
    }
    .build()
    .unwrap();
    let by_hand = |gamma: f64, t: &Vector| 1.0 + gamma * (t[0].sin().powi(2) + t[1].sin().powi(2));
    let t = Vector::from_vec(vec![0.3, -1.1]);
    let t_next = Vector::from_vec(vec![0.3, f64::from_bits((-1.1f64).to_bits() + 1)]);
    for (p, gamma, theta) in [
        (&p1, spec.gamma, &t),
        (&p2, 2.0 * spec.gamma, &t),
        (&p2, 2.0 * spec.gamma, &t_next),
        (&p1, spec.gamma, &t_next),
        (&p1, spec.gamma, &t),
    ] {
        assert_eq!(p.h(theta).to_bits(), by_hand(gamma, theta).to_bits());
    }
    assert_ne!(p1.h(&t).to_bits(), p1.h(&t_next).to_bits());
}

/// `nonlinear_coupling`: F, its gradient and θ* are the closed forms of the module docs, the cross derivative depends
/// on φ, and the surrogate (13) at φ = Aθ + e is ∇F + Aᵀe − (∇h/h)(eᵀA(θ − θ°) + |e|²), i.e. quadratic in e, so that
/// zero-mean lower-level error is a bias −(∇h/h)E|e|² (issue 10 §1).
#[test]
fn nonlinear_coupling_surrogate_is_quadratic_in_the_lower_level_error() {
    use bilevel::families::nonlinear_coupling::NonlinearCouplingSpec;
    let spec = NonlinearCouplingSpec::default();
    let p = spec.build().unwrap();
    let t_opt = Vector::from_vec(spec.theta_opt.clone());
    let mut r = rng(10);
    let d = p.dims();
    assert!(d.d_l > d.d_u);
    // A = U diag(s): AᵀA = diag(s²), so F is separable and θ* is θ° clipped to the box.
    let ata = p.a.transpose() * &p.a;
    assert!((ata[(0, 0)] - spec.s_max.powi(2)).abs() < 1e-12 && (ata[(1, 1)] - spec.s_min.powi(2)).abs() < 1e-12);
    assert!(ata[(0, 1)].abs() < 1e-12);
    assert!((p.theta_star().unwrap() - &t_opt).amax() < 1e-15);
    let face = NonlinearCouplingSpec {
        radius: 0.65,
        ..spec.clone()
    }
    .build()
    .unwrap();
    assert_eq!(face.theta_star().unwrap().as_slice(), &[0.6, -0.65]);
    for _ in 0..5 {
        let theta = random_vector(&mut r, d.d_u, 1.0);
        let e = random_vector(&mut r, d.d_l, 0.7);
        let phi = p.phi_star(&theta) + &e;
        // Surrogate (13) from the oracles at φ, with the exact inverse H = h I.
        let h = p.h(&theta);
        let mut gp = Vector::zeros(d.d_l);
        p.grad_phi_fu(Sample::Exact, &theta, &phi, &mut gp);
        let mut surrogate = Vector::zeros(d.d_u);
        p.cross_fl(Sample::Exact, &theta, &phi, &(&gp / h), &mut surrogate);
        surrogate = -surrogate;
        let dh = Vector::from_fn(d.d_u, |i, _| spec.gamma * (2.0 * theta[i]).sin());
        let want = p.grad_f(&theta).unwrap() + p.a.transpose() * &e
            - &dh / h * (e.dot(&(&p.a * (&theta - &t_opt))) + e.norm_squared());
        assert!((&surrogate - &want).amax() < 1e-12, "{surrogate} vs {want}");
        // The cross derivative depends on φ.
        let c0 = p.cross_matrix_fl(Sample::Exact, &theta, &p.phi_star(&theta));
        let c1 = p.cross_matrix_fl(Sample::Exact, &theta, &phi);
        assert!((&c1 - &c0).amax() > 1e-3);
        // F(θ) = ½ Σ s_i² (θ_i − θ°_i)² = f_u(θ, φ*(θ)).
        let f = 0.5 * (&p.a * (&theta - &t_opt)).norm_squared();
        assert!((p.value_f(&theta) - f).abs() < 1e-12);
    }
    // Typed errors for bad parameters.
    for bad in [
        NonlinearCouplingSpec { d_l: 2, ..spec.clone() },
        NonlinearCouplingSpec {
            s_min: 0.0,
            ..spec.clone()
        },
        NonlinearCouplingSpec {
            gamma: f64::NAN,
            ..spec.clone()
        },
        NonlinearCouplingSpec {
            theta_opt: vec![],
            ..spec.clone()
        },
    ] {
        assert!(
            matches!(bad.build(), Err(BilevelError::InvalidParameter { .. })),
            "{bad:?}"
        );
    }
}

/// Above `HAAR_MAX_DIM` the quadratic family is built from reflections in O(d²): its closed forms must still be those
/// of the dense formulas, checked here against independent dense solves and spectra at d_l = 300.
#[test]
fn large_quadratic_closed_forms_match_dense_algebra() {
    use bilevel::families::quadratic::{HAAR_MAX_DIM, QuadraticSpec};
    use bilevel::linalg::{spd_solve, spectral_norm, sym_eig_range};
    let d_l = HAAR_MAX_DIM + 44;
    let q = QuadraticSpec {
        d_u: 4,
        d_l,
        kappa: 20.0,
        ..Default::default()
    }
    .build()
    .unwrap();
    // Spectrum as specified: λ_min = μ_l = 1, λ_max = κ μ_l = 20, up to rounding.
    let (lo, hi) = sym_eig_range(&q.h);
    assert!(
        (lo - 1.0).abs() < 1e-10 && (hi - 20.0).abs() < 1e-9,
        "spectrum [{lo}, {hi}]"
    );
    let k = q.constants();
    assert!((k.mu_l - lo).abs() < 1e-10 && (k.l_l - hi).abs() < 1e-9);
    // J and φ0 against a Cholesky solve with the dense H.
    let j = -spd_solve("H", &q.h, &q.m.transpose()).unwrap();
    assert!((&j - &q.j).amax() < 1e-11 * j.amax().max(1.0), "J");
    let b = bilevel::Matrix::from_column_slice(d_l, 1, q.b_l.as_slice());
    let phi0 = -spd_solve("H", &q.h, &b).unwrap();
    assert!((phi0.column(0) - &q.phi0).amax() < 1e-11 * phi0.amax().max(1.0), "phi0");
    // Q ⪰ 0 and the declared ‖Q‖ bound, against a dense spectrum.
    let (q_lo, q_hi) = sym_eig_range(&q.q);
    assert!(q_lo > -1e-12, "Q not PSD: {q_lo}");
    let l_fu_phi = k.l_fu_phi.unwrap();
    assert!(
        (l_fu_phi - spectral_norm(&q.n).max(q_hi)).abs() < 1e-10 * l_fu_phi,
        "l_fu_phi"
    );
    // ∇F from the generic implicit formula (16)-(17) equals the closed form.
    let theta = Vector::from_element(4, 0.3);
    let generic = q.grad_f(&theta).unwrap();
    let via_j = {
        let phi = q.phi_star(&theta);
        let mut gt = Vector::zeros(4);
        let mut gp = Vector::zeros(d_l);
        q.grad_theta_fu(bilevel::problem::Sample::Exact, &theta, &phi, &mut gt);
        q.grad_phi_fu(bilevel::problem::Sample::Exact, &theta, &phi, &mut gp);
        gt + j.transpose() * gp
    };
    assert!((generic - via_j).amax() < 1e-9, "grad F");
}

/// The matrix-free family at d_l = 10^5 (issue 12 §2): TTSA with noise on runs on Hessian-vector and cross products
/// only — no dense matrix is formed — and φ* from the Woodbury solve is stationary for f_l at that size.
#[test]
fn low_rank_at_a_hundred_thousand_runs_ttsa_without_dense_matrices() {
    use bilevel::problem::{NoiseLevels, Noisy};
    use bilevel::solver::Iterate;
    let d_l = 100_000;
    let base: Arc<dyn Bilevel> = Arc::new(
        LowRankSpec {
            d_l,
            ..Default::default()
        }
        .build()
        .unwrap(),
    );
    let theta = Vector::from_element(3, 0.7);
    let phi = base.phi_star(&theta);
    let mut g = Vector::zeros(d_l);
    base.grad_phi_fl(Sample::Exact, &theta, &phi, &mut g);
    // Stationarity (14) at rounding level: |∇φ f_l| is a sum of O(r + d_u) terms of size O(|φ|) per coordinate.
    assert!(g.amax() < 1e-10 * (1.0 + phi.amax()), "grad at phi*: {}", g.amax());
    let p = Noisy::new(base, NoiseLevels::uniform(0.1)).unwrap();
    let mut solver = bilevel::algorithms::build("ttsa", &p, 1000).unwrap();
    let mut o = Oracle::new(&p, 1);
    let mut st = Iterate::start(Vector::zeros(3), Vector::zeros(d_l));
    solver.init(&mut o, &st).unwrap();
    for _ in 0..3 {
        st = solver.step(&mut o, st).unwrap();
    }
    let c = o.counts();
    assert_eq!(c.fl_dense, 0, "TTSA formed a dense matrix");
    assert!(c.fl_hvp > 0 && c.fl_cross > 0);
    assert!(st.phi.iter().chain(st.theta.iter()).all(|x| x.is_finite()));
}

/// benchmark_bilevel's sizes (d_u = 10, d_l = 100, n_l = 32768, n_u = 1024) build, and the exact answers come from
/// the full-batch matrices: φ* is stationary for the averaged objective, the mean spectrum is the one asked for, and
/// the per-sample bound exceeds L_l. (That minibatch oracles average to the full-batch ones is
/// `finite_sum_sampling_is_unbiased_without_noise`.)
#[test]
fn finite_sum_at_benchmark_sizes_has_full_batch_answers() {
    let spec = FiniteSumSpec::benchmark();
    let p = spec.build().unwrap();
    assert_eq!((p.dims().d_u, p.dims().d_l), (10, 100));
    let theta = Vector::from_element(10, 0.3);
    let phi = p.phi_star(&theta);
    let mut g = Vector::zeros(100);
    p.grad_phi_fl(Sample::Exact, &theta, &phi, &mut g);
    // Rounding level relative to the terms of the gradient (H̄ φ has entries O(L_l |φ|)).
    assert!(g.amax() < 1e-10 * (1.0 + phi.amax()), "grad at phi*: {}", g.amax());
    let k = p.constants();
    // Mean spectrum controlled: [mu, L_inner] up to the sampling error of n = 32768 rank-one terms (relative
    // O(sqrt(d_l/n)) ≈ 0.06 on the top; the bottom is mu = 0.1 with the same relative error).
    assert!(k.mu_l > 0.05 && k.mu_l < 0.2, "mu_l {}", k.mu_l);
    assert!(k.l_l > 0.8 && k.l_l < 1.3, "L_l {}", k.l_l);
    // A rank-one sample carries the whole trace: E|x|^2 = sum of the spectrum, far above L_l.
    assert!(k.l_l_sample.unwrap() > 10.0 * k.l_l);
}
