//! Constructors are the only door, user data gets typed errors (never a panic), divergence is judged relative to
//! the start, and the defaults converge on every (algorithm, family) pair or the pair's limitation is declared and
//! verified. Criteria and their reasons: `theory/robustness.md`.

use bilevel::algorithms::{self, support::Reason};
use bilevel::families::{self, quadratic::Quadratic, quadratic::QuadraticSpec};
use bilevel::hypergrad::{self, InverseMethod};
use bilevel::problem::{Bilevel, Checked, Domain, Level, NoiseLevels, Noisy, Oracle, Sample};
use bilevel::solver::{self, Iterate, NoObserver, Schedule, Solver};
use bilevel::stats::{FitConfig, SeedKey, Table, fit_power_law, geometric_grid};
use bilevel::{BilevelError, Matrix, Result, Vector};
use proptest::prelude::*;
use rayon::prelude::*;
use std::sync::Arc;

// ---------------------------------------------------------------- constructors are the only door

#[test]
fn domain_invariants_are_checked_by_every_door() {
    assert!(matches!(
        Domain::new_box(vec![1.0], vec![0.0]),
        Err(BilevelError::InvalidParameter { .. })
    ));
    assert!(matches!(
        Domain::new_box(vec![0.0, 0.0], vec![1.0]),
        Err(BilevelError::DimensionMismatch { .. })
    ));
    assert!(matches!(
        Domain::new_box(vec![f64::NAN], vec![1.0]),
        Err(BilevelError::NonFinite { .. })
    ));
    for r in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        assert!(matches!(
            Domain::new_ball(vec![0.0], r),
            Err(BilevelError::InvalidParameter { .. })
        ));
    }
    // Deserialisation is a door too: the same checks, and the JSON form is unchanged.
    let bad_box = r#"{"kind":"box","lo":[1.0],"hi":[0.0]}"#;
    assert!(serde_json::from_str::<Domain>(bad_box).is_err());
    let bad_ball = r#"{"kind":"ball","center":[0.0],"radius":-1.0}"#;
    assert!(serde_json::from_str::<Domain>(bad_ball).is_err());
    let extra = r#"{"kind":"box","lo":[0.0],"hi":[1.0],"mid":[0.5]}"#;
    assert!(serde_json::from_str::<Domain>(extra).is_err());
    let good = Domain::new_box(vec![-1.0, 0.0], vec![1.0, 2.0]).unwrap();
    let json = serde_json::to_string(&good).unwrap();
    assert_eq!(json, r#"{"kind":"box","lo":[-1.0,0.0],"hi":[1.0,2.0]}"#);
    assert_eq!(serde_json::from_str::<Domain>(&json).unwrap(), good);
    let ball = Domain::new_ball(vec![0.0, 1.0], 2.0).unwrap();
    let json = serde_json::to_string(&ball).unwrap();
    assert_eq!(json, r#"{"kind":"ball","center":[0.0,1.0],"radius":2.0}"#);
    assert_eq!(serde_json::from_str::<Domain>(&json).unwrap(), ball);
    // A wrong-length theta: a typed error from the checked projection, `false` from `contains`.
    let t = Vector::from_element(3, 5.0);
    assert!(matches!(
        good.projected(&t),
        Err(BilevelError::DimensionMismatch { .. })
    ));
    assert!(!good.contains(&t, 0.0));
}

fn quad() -> Quadratic {
    QuadraticSpec::default().build().unwrap()
}

fn from_parts_with(q: &Quadratic, p: Matrix, qq: Matrix) -> Result<Quadratic> {
    Quadratic::from_parts(
        q.h.clone(),
        q.m.clone(),
        q.b_l.clone(),
        p,
        q.n.clone(),
        qq,
        q.p_u.clone(),
        q.q_u.clone(),
        0.5,
        Domain::Unbounded,
    )
}

/// A non-symmetric P or Q is rejected: only its symmetric part enters f_u, so the documented
/// grad_theta f_u = P theta + ... would be false for the matrix the user passed.
#[test]
fn non_symmetric_p_or_q_is_a_typed_error() {
    let q = quad();
    let mut p = q.p.clone();
    p[(0, 1)] += 0.3;
    assert!(matches!(
        from_parts_with(&q, p, q.q.clone()),
        Err(BilevelError::InvalidParameter { name, .. }) if name == "P"
    ));
    let mut qq = q.q.clone();
    qq[(1, 0)] -= 0.3;
    assert!(matches!(
        from_parts_with(&q, q.p.clone(), qq),
        Err(BilevelError::InvalidParameter { name, .. }) if name == "Q"
    ));
    // Round-off far below the 1e-10 relative tolerance passes.
    let mut p = q.p.clone();
    p[(0, 1)] += 1e-14;
    assert!(from_parts_with(&q, p, q.q.clone()).is_ok());
}

#[test]
fn degenerate_build_inputs_are_typed_errors() {
    let p = quad();
    for name in algorithms::names() {
        assert!(
            matches!(
                algorithms::build(name, &p, 0),
                Err(BilevelError::InvalidParameter { .. })
            ),
            "{name} with horizon 0"
        );
    }
    // Constants that cannot set a step: wrap the quadratic and corrupt one constant at a time.
    let base: Arc<dyn Bilevel> = Arc::new(quad());
    type Corrupt = fn(&mut bilevel::problem::Constants);
    let corruptions: [Corrupt; 6] = [
        |k| k.l_f = f64::INFINITY,
        |k| k.l_f = 0.0,
        |k| k.l_l = f64::NAN,
        |k| k.mu_l = -1.0,
        |k| k.mu_l = 2.0 * k.l_l,
        |k| k.l_l_sample = Some(f64::INFINITY),
    ];
    for corrupt in corruptions {
        let mut k = base.constants();
        corrupt(&mut k);
        let bad = WithConstants(base.clone(), k);
        assert!(matches!(
            algorithms::build("ttsa", &bad, 10),
            Err(BilevelError::InvalidParameter { .. })
        ));
    }
    // Schedules: a horizon schedule is checked where a solver uses it.
    assert!(Schedule::constant(0.0).check("alpha").is_err());
    assert!(Schedule::decay(1.0, 0.0, 1.0).check("alpha").is_err());
    assert!(Schedule::decay(1.0, 1.0, f64::NAN).check("alpha").is_err());
}

/// A problem with replaced constants (everything else delegated).
struct WithConstants(Arc<dyn Bilevel>, bilevel::problem::Constants);

impl Bilevel for WithConstants {
    fn name(&self) -> &str {
        self.0.name()
    }
    fn dims(&self) -> bilevel::problem::Dims {
        self.0.dims()
    }
    fn draw(&self, level: Level, rng: &mut rand_chacha::ChaCha8Rng) -> Sample {
        self.0.draw(level, rng)
    }
    fn f_u(&self, s: Sample, t: &Vector, p: &Vector) -> f64 {
        self.0.f_u(s, t, p)
    }
    fn f_l(&self, s: Sample, t: &Vector, p: &Vector) -> f64 {
        self.0.f_l(s, t, p)
    }
    fn grad_theta_fu(&self, s: Sample, t: &Vector, p: &Vector, o: &mut Vector) {
        self.0.grad_theta_fu(s, t, p, o)
    }
    fn grad_phi_fu(&self, s: Sample, t: &Vector, p: &Vector, o: &mut Vector) {
        self.0.grad_phi_fu(s, t, p, o)
    }
    fn grad_phi_fl(&self, s: Sample, t: &Vector, p: &Vector, o: &mut Vector) {
        self.0.grad_phi_fl(s, t, p, o)
    }
    fn grad_theta_fl(&self, s: Sample, t: &Vector, p: &Vector, o: &mut Vector) {
        self.0.grad_theta_fl(s, t, p, o)
    }
    fn hvp_fl(&self, s: Sample, t: &Vector, p: &Vector, v: &Vector, o: &mut Vector) {
        self.0.hvp_fl(s, t, p, v, o)
    }
    fn cross_fl(&self, s: Sample, t: &Vector, p: &Vector, w: &Vector, o: &mut Vector) {
        self.0.cross_fl(s, t, p, w, o)
    }
    fn cross_t_fl(&self, s: Sample, t: &Vector, p: &Vector, u: &Vector, o: &mut Vector) {
        self.0.cross_t_fl(s, t, p, u, o)
    }
    fn phi_star(&self, t: &Vector) -> Vector {
        self.0.phi_star(t)
    }
    fn theta_star(&self) -> Option<Vector> {
        self.0.theta_star()
    }
    fn constants(&self) -> bilevel::problem::Constants {
        self.1.clone()
    }
    fn domain(&self) -> &Domain {
        self.0.domain()
    }
    fn describe(&self) -> String {
        self.0.describe()
    }
}

// ---------------------------------------------------------------- divergence relative to the start

/// Multiplies one level by `factor` each step (a stand-in for a too-large step size).
struct Blowup {
    factor: f64,
    upper: bool,
}

impl Solver for Blowup {
    fn name(&self) -> &'static str {
        "blowup"
    }
    fn init(&mut self, _o: &mut Oracle, _s: &Iterate) -> Result<()> {
        Ok(())
    }
    fn step(&mut self, _o: &mut Oracle, mut s: Iterate) -> Result<Iterate> {
        s.theta_prev = s.theta.clone();
        if self.upper {
            s.theta *= self.factor;
        } else {
            s.phi *= self.factor;
        }
        s.k += 1;
        Ok(s)
    }
}

/// The limit is C (max(|theta0|, |phi0|, |phi*(theta0)|) + 1): a lower level that grows 10x per step from a start of
/// scale s is caught at the first k with 10^k |phi0| > C (s + 1), far below the old absolute 1e12, and either level
/// is caught; a bounded run is not.
#[test]
fn divergence_is_relative_to_the_start() {
    let p = quad();
    let theta0 = Vector::from_element(3, 0.5);
    let phi0 = Vector::from_element(5, 0.25);
    let o = Oracle::new(&p, 0);
    let scale = theta0.amax().max(phi0.amax()).max(p.phi_star(&theta0).amax());
    let limit = solver::DIVERGENCE_FACTOR * (scale + 1.0);
    assert_eq!(solver::divergence_limit(&o, &theta0, &phi0).unwrap(), limit);
    assert!(limit < 1e12);
    for upper in [false, true] {
        let start = if upper { theta0.amax() } else { phi0.amax() };
        let expected = (1..).find(|k| start * 10f64.powi(*k) > limit).unwrap() as usize;
        let mut o = Oracle::new(&p, 0);
        let mut s = Blowup { factor: 10.0, upper };
        match solver::run(&mut s, &mut o, &theta0, &phi0, 100, &mut NoObserver) {
            Err(BilevelError::Diverged { iter, what }) => {
                assert_eq!(iter, expected, "{what}");
                assert!(
                    what.contains(if upper { "upper level" } else { "lower level" }),
                    "{what}"
                );
            }
            other => panic!("expected divergence, got {other:?}"),
        }
    }
    // Non-finite iterates are divergence too; a bounded run is not.
    let mut o = Oracle::new(&p, 0);
    let mut s = Blowup {
        factor: f64::NAN,
        upper: false,
    };
    assert!(matches!(
        solver::run(&mut s, &mut o, &theta0, &phi0, 3, &mut NoObserver),
        Err(BilevelError::Diverged { iter: 1, .. })
    ));
    let mut o = Oracle::new(&p, 0);
    let mut s = Blowup {
        factor: 1.0,
        upper: false,
    };
    assert!(solver::run(&mut s, &mut o, &theta0, &phi0, 50, &mut NoObserver).is_ok());
}

// ---------------------------------------------------------------- no panic on user data (proptest)

fn vec_of(len: usize, x: f64) -> Vector {
    Vector::from_fn(len, |i, _| x * (i as f64 + 1.0).sin())
}

fn any_value() -> impl Strategy<Value = f64> {
    prop_oneof![
        4 => -1e3..1e3f64,
        1 => Just(f64::NAN),
        1 => Just(f64::INFINITY),
        1 => Just(0.0),
        1 => Just(1e300),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Families, the checked closed forms and the Oracle: random lengths and values give a value or a typed error.
    #[test]
    fn closed_forms_and_oracle_never_panic(fam in 0usize..8, seed in 0u64..4, du in 0usize..14, dl in 0usize..14,
                                           x in any_value(), right in any::<bool>()) {
        let name = families::names()[fam];
        let p = families::build(name, seed).unwrap();
        let d = p.dims();
        let (du, dl) = if right { (d.d_u, d.d_l) } else { (du, dl) };
        let (t, f) = (vec_of(du, x), vec_of(dl, x));
        let sized = du == d.d_u && dl == d.d_l && x.is_finite();
        let r = p.try_phi_star(&t);
        // Outside Theta phi* may not exist (data_cleaning's negative weights make f_l non-convex), and at extreme
        // theta it may overflow: then a typed NonFinite, never Ok(NaN) or Ok(inf) as before session 6.
        let outside = du == d.d_u && (!p.domain().contains(&t, 0.0) || x.abs() > 100.0);
        let overflow = outside && matches!(r, Err(BilevelError::NonFinite { .. }));
        prop_assert!(r.is_ok() || overflow || du != d.d_u || !x.is_finite(), "{name}: {r:?}");
        if let Ok(v) = &r {
            prop_assert!(v.iter().all(|y| y.is_finite()), "{name}: {v:?}");
        }
        if du != d.d_u {
            let typed = matches!(r, Err(BilevelError::DimensionMismatch { .. }));
            prop_assert!(typed, "{name}: {r:?}");
        }
        let _ = p.try_value_f(&t);
        let _ = p.try_grad_f(&t);
        let _ = p.try_jacobian_phi_star(&t);
        let _ = p.try_f_u(Sample::Exact, &t, &f);
        let _ = p.try_f_l(Sample::Exact, &t, &f);
        let _ = p.try_hess_fl(Sample::Exact, &t, &f);
        let _ = hypergrad::exact::hypergradient(p.as_ref(), &t);
        let mut o = Oracle::new(p.as_ref(), seed);
        let s = o.draw(Level::Lower);
        let mut out_u = Vector::zeros(du);
        let mut out_l = Vector::zeros(dl);
        let r = o.grad_phi_fl(s, &t, &f, &mut out_l);
        prop_assert!(r.is_ok() == (du == d.d_u && dl == d.d_l), "{name}: {r:?}");
        let _ = o.grad_theta_fu(s, &t, &f, &mut out_u);
        let _ = o.hvp_fl(s, &t, &f, &f, &mut out_l);
        let _ = o.cross_fl(s, &t, &f, &f, &mut out_u);
        let _ = o.cross_t_fl(s, &t, &f, &t, &mut out_l);
        let _ = o.hess_fl(s, &t, &f);
        for method in [InverseMethod::Dense, InverseMethod::Cg(Default::default())] {
            let r = hypergrad::surrogate_with(&mut o, &method, &t, &f);
            if !sized {
                prop_assert!(r.is_err());
            }
        }
        let _ = p.domain().projected(&t);
    }

    /// algorithms::build and solver::run with random names, horizons and starting points.
    #[test]
    fn build_and_run_never_panic(algo in 0usize..17, fam in 0usize..8, iters in 0usize..4, du in 0usize..12,
                                 dl in 0usize..12, x in any_value()) {
        let names = algorithms::names();
        let name = names.get(algo).copied().unwrap_or("no-such-algorithm");
        let p = families::build(families::names()[fam], 0).unwrap();
        match algorithms::build(name, p.as_ref(), iters) {
            Err(e) => prop_assert!(iters == 0 || name == "no-such-algorithm", "{e}"),
            Ok(mut s) => {
                let mut o = Oracle::new(p.as_ref(), 0);
                let r = solver::run(s.as_mut(), &mut o, &vec_of(du, x), &vec_of(dl, x), iters, &mut NoObserver);
                let d = p.dims();
                if du != d.d_u || dl != d.d_l {
                    let typed = matches!(r, Err(BilevelError::DimensionMismatch { .. }))
                        || (!x.is_finite() && matches!(r, Err(BilevelError::NonFinite { .. })));
                    prop_assert!(typed, "{r:?}");
                }
            }
        }
    }

    /// Statistics entry points with random shapes and values.
    #[test]
    fn stats_never_panic(reps in 0usize..5, hs in 0usize..7, len in 0usize..40, x in any_value(),
                         kmin in 0usize..50, kmax in 0usize..200, points in 0usize..8) {
        let data: Vec<f64> = (0..len).map(|i| x * (i as f64 + 1.0)).collect();
        if let Ok(t) = Table::new(reps, hs, data) {
            let _ = t.means();
            let _ = t.std_errors();
            let ks: Vec<usize> = (1..=hs + (len % 2)).map(|i| 10 * i).collect();
            let cfg = FitConfig::new(SeedKey::new(0, "robustness")).with_bootstrap(50, 0.9);
            let _ = fit_power_law(&ks, &t, &cfg);
        }
        let _ = geometric_grid(kmin, kmax, points);
    }

    /// Domain constructors and projection with random corners, radii and points.
    #[test]
    fn domain_never_panics(lo in any_value(), hi in any_value(), n in 0usize..5, m in 0usize..5, r in any_value(),
                           x in any_value()) {
        let b = Domain::new_box(vec![lo; n], vec![hi; m]);
        if let Ok(d) = &b {
            prop_assert!(n == m && (n == 0 || lo <= hi));
            let t = d.projected(&vec_of(n, x));
            if x.is_finite() {
                prop_assert!(d.contains(&t.unwrap(), 1e-9 * hi.abs().max(lo.abs()).max(1.0)));
            }
        }
        let ball = Domain::new_ball(vec![lo; n], r);
        if let Ok(d) = &ball {
            prop_assert!(r > 0.0 && r.is_finite());
            let _ = d.projected(&vec_of(m, x));
        }
    }
}

// ---------------------------------------------------------------- defaults converge, or the limitation is real

/// The CLI's `run` defaults: K = 1000, seed 0, instance seed 0, theta0 = P(1), phi0 = 0.
const K: usize = 1000;
/// Convergence: the squared gradient mapping and the squared lower-level gap each fall to `REL` of their start or
/// below `ABS` (theory/robustness.md gives the reasons).
const REL: f64 = 0.2;
const ABS: f64 = 1e-3;

/// Squared gradient mapping with unit step: |theta - P(theta - grad F)|^2 (= |grad F|^2 off the boundary).
fn stationarity(p: &dyn Bilevel, theta: &Vector) -> f64 {
    let g = p.try_grad_f(theta).unwrap();
    let next = p.domain().projected(&(theta - g)).unwrap();
    (theta - next).norm_squared()
}

fn ll_gap(p: &dyn Bilevel, theta: &Vector, phi: &Vector) -> f64 {
    (phi - p.try_phi_star(theta).unwrap()).norm_squared()
}

fn shrank(start: f64, end: f64) -> bool {
    end <= REL * start || end <= ABS
}

fn check_pair(algo: &str, fam: &str, noise: f64) -> std::result::Result<(), String> {
    let base = families::build(fam, 0).unwrap();
    let noisy = Noisy::new(base.clone(), NoiseLevels::uniform(noise)).unwrap();
    let p: &dyn Bilevel = if noise > 0.0 { &noisy } else { base.as_ref() };
    let d = p.dims();
    let theta0 = p.domain().projected(&Vector::from_element(d.d_u, 1.0)).unwrap();
    let phi0 = Vector::zeros(d.d_l);
    let lims = algorithms::support::limitations(algo, fam, noise > 0.0);
    let lim = lims.first();
    if lims.iter().any(|l| l.reason == Reason::FrozenUpperStep) {
        // Verified from the constants: K steps of at most 1/(2 L_F) at the starting gradient move theta < 1e-2.
        let k = p.constants();
        let g = p.try_grad_f(&theta0).unwrap().norm();
        let reach = K as f64 * 0.5 / k.l_f * g;
        return if reach < 1e-2 {
            Ok(())
        } else {
            Err(format!("declared frozen, but K/(2 L_F) |grad F| = {reach:.3e}"))
        };
    }
    let mut s = algorithms::build(algo, p, K).map_err(|e| e.to_string())?;
    let mut o = Oracle::new(p, 0);
    let run = solver::run(s.as_mut(), &mut o, &theta0, &phi0, K, &mut NoObserver);
    let (g0, l0) = (stationarity(p, &theta0), ll_gap(p, &theta0, &phi0));
    match (lim.map(|l| l.reason), run) {
        (Some(Reason::IndefiniteHessianSample), Err(BilevelError::NotPositiveDefinite { .. })) => Ok(()),
        (Some(Reason::IndefiniteHessianSample), other) => Err(format!(
            "declared indefinite Hessian samples, but the run gave {other:?}"
        )),
        (Some(Reason::ExplicitStepsNeeded), Err(_)) => Ok(()),
        (_, Err(e)) => Err(format!("run failed: {e}")),
        (Some(Reason::ExplicitStepsNeeded), Ok(last)) => {
            let (g1, l1) = (stationarity(p, &last.theta), ll_gap(p, &last.theta, &last.phi));
            if shrank(g0, g1) && shrank(l0, l1) {
                Err(format!(
                    "declared to need explicit steps, but the defaults converge: stationarity {g0:.3e} -> {g1:.3e}, \
                     lower-level gap {l0:.3e} -> {l1:.3e}"
                ))
            } else {
                Ok(())
            }
        }
        (Some(Reason::IgnoresImplicitGradient), Ok(last)) => {
            let l1 = ll_gap(p, &last.theta, &last.phi);
            if shrank(l0, l1) {
                Ok(())
            } else {
                Err(format!("baseline: lower-level gap {l0:.3e} -> {l1:.3e}"))
            }
        }
        (Some(Reason::BiasedLowerLevel), Ok(last)) => {
            let (g1, l1) = (stationarity(p, &last.theta), ll_gap(p, &last.theta, &last.phi));
            if shrank(g0, g1) && !shrank(l0, l1) {
                Ok(())
            } else {
                Err(format!(
                    "declared biased lower level: stationarity {g0:.3e} -> {g1:.3e}, lower-level gap {l0:.3e} -> {l1:.3e}"
                ))
            }
        }
        (Some(r), Ok(_)) => Err(format!("unexpected reason {r:?}")),
        (None, Ok(last)) => {
            let (g1, l1) = (stationarity(p, &last.theta), ll_gap(p, &last.theta, &last.phi));
            if shrank(g0, g1) && shrank(l0, l1) {
                Ok(())
            } else {
                Err(format!(
                    "not converged: stationarity {g0:.3e} -> {g1:.3e}, lower-level gap {l0:.3e} -> {l1:.3e}"
                ))
            }
        }
    }
}

/// Every (algorithm, family) pair with the defaults, noise off and on: converges, or its declared limitation is
/// verified (so a stale declaration fails too).
#[test]
fn defaults_converge_on_every_pair_or_the_limitation_is_declared() {
    let pairs: Vec<(&str, &str, f64)> = algorithms::names()
        .into_iter()
        .flat_map(|a| families::names().into_iter().map(move |f| (a, f)))
        .flat_map(|(a, f)| [(a, f, 0.0), (a, f, 0.1)])
        .collect();
    let failures: Vec<String> = pairs
        .par_iter()
        .filter_map(|&(a, f, n)| {
            check_pair(a, f, n)
                .err()
                .map(|e| format!("{a} on {f} (noise {n}): {e}"))
        })
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Every declared limitation names a registered algorithm (or `*`) and family, and has an explanation.
#[test]
fn limitations_name_registered_pairs() {
    for l in algorithms::LIMITATIONS {
        assert!(
            l.algorithm == "*" || algorithms::names().contains(&l.algorithm),
            "{l:?}"
        );
        assert!(l.family == "*" || families::names().contains(&l.family), "{l:?}");
        assert!(!l.explanation.is_empty());
    }
    assert!(algorithms::limitation("ttsa", "quadratic", true).is_none());
    assert_eq!(
        algorithms::limitation("ba", "pruning", true).map(|l| l.reason),
        Some(Reason::IndefiniteHessianSample)
    );
    // Without noise the indefinite-sample limitation does not apply; pruning's frozen upper step (L_F = 7e5) does.
    let without = algorithms::support::limitations("ba", "pruning", false);
    assert!(
        without.iter().all(|l| l.reason != Reason::IndefiniteHessianSample),
        "{without:?}"
    );
    assert_eq!(without.first().map(|l| l.reason), Some(Reason::FrozenUpperStep));
}

// ---------------------------------------------------------------- family parameters (proptest)

fn default_table(name: &str) -> toml::Table {
    use bilevel::families::*;
    let t = match name {
        "quadratic" => toml::Table::try_from(quadratic::QuadraticSpec::default()),
        "hyperparameter" => toml::Table::try_from(hyperparameter::HyperparameterSpec::default()),
        "representation" => toml::Table::try_from(representation::RepresentationSpec::default()),
        "pruning" => toml::Table::try_from(pruning::PruningSpec::default()),
        "data_cleaning" => toml::Table::try_from(data_cleaning::DataCleaningSpec::default()),
        "meta_learning" => toml::Table::try_from(meta_learning::MetaLearningSpec::default()),
        "weakly_convex" => toml::Table::try_from(weakly_convex::WeaklyConvexSpec::default()),
        "ttsa_tight" => toml::Table::try_from(ttsa_tight::TtsaTightSpec::default()),
        _ => unreachable!("registered families only"),
    };
    t.unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Every family's parameters, one perturbed at a time (zero, negative, huge, NaN, infinite): a family or a
    /// typed error, never a panic; what builds has $0 < \mu_l \le L_l$, and default solvers refuse infinite bounds.
    #[test]
    fn family_parameters_never_panic(fam in 0usize..8, field in 0usize..16, x in any_value(), n in -2i64..20,
                                     noise in any_value()) {
        let name = families::names()[fam];
        let mut t = default_table(name);
        let keys: Vec<String> = t.keys().cloned().collect();
        let key = &keys[field % keys.len()];
        let v = match t[key] {
            toml::Value::Integer(_) => toml::Value::Integer(n),
            toml::Value::Float(_) => toml::Value::Float(x),
            _ => t[key].clone(),
        };
        t.insert(key.clone(), v);
        if let Ok(p) = families::build_with(name, &t) {
            let k = p.constants();
            // L_l may be +inf (documented: unbounded on Theta); algorithms::build then refuses with a typed error.
            prop_assert!(k.mu_l > 0.0 && k.mu_l.is_finite() && k.mu_l <= k.l_l * (1.0 + 1e-12), "{name}: {k:?}");
            if !k.l_l.is_finite() || !k.l_f.is_finite() {
                let refused = matches!(algorithms::build("ttsa", p.as_ref(), 10), Err(BilevelError::InvalidParameter { .. }));
                prop_assert!(refused);
            }
            let levels = NoiseLevels::uniform(noise);
            let r = Noisy::new(p.clone(), levels);
            prop_assert!(r.is_ok() == (noise.is_finite() && noise >= 0.0));
        }
    }
}

// ---------------------------------------------------------------- hypergradient estimators (proptest)

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Every estimator with random parameters, point sizes and workspace sizes: a value or a typed error.
    #[test]
    fn estimators_never_panic(fam in 0usize..8, du in 0usize..13, dl in 0usize..13, wu in 0usize..13,
                              wl in 0usize..13, x in any_value(), step in any_value(), terms in 0usize..12,
                              delta in any_value(), right in any::<bool>()) {
        use bilevel::hypergrad::hessian_free::{self, Difference, HessianFreeParams, SmoothingWorkspace};
        use bilevel::hypergrad::itd::{self, ItdParams, ItdSamples};
        use bilevel::hypergrad::neumann::NeumannParams;
        let p = families::build(families::names()[fam], 0).unwrap();
        let mut o = Oracle::new(p.as_ref(), 1);
        // Half the cases use the problem's own sizes, so the estimators run past their checks.
        let (du, dl, wu, wl) = if right { let d = p.dims(); (d.d_u, d.d_l, d.d_u, d.d_l) } else { (du, dl, wu, wl) };
        let (t, f) = (vec_of(du, x), vec_of(dl, x));
        let eta = step.abs() * 1e-3;
        let np = NeumannParams { eta, terms };
        for method in [
            InverseMethod::Neumann(np),
            InverseMethod::GhadimiWang(np),
            InverseMethod::Stocbio(np),
            InverseMethod::Dense,
            InverseMethod::Cg(Default::default()),
        ] {
            let mut ws = hypergrad::Workspace::new(wu, wl);
            let mut out = Vector::zeros(wu);
            let _ = hypergrad::estimate(&mut o, &method, &t, &f, &mut ws, &mut out);
        }
        let ip = ItdParams { beta: eta, steps: terms };
        let s = ItdSamples::EXACT;
        let _ = itd::forward(&mut o, &t, &f, &ip, s);
        let _ = itd::reverse(&mut o, &t, &f, &ip, s, Some(terms / 2));
        let _ = itd::trajectory(&mut o, Sample::Exact, &t, &f, &ip);
        let hp = HessianFreeParams { itd: ip, delta };
        let _ = hessian_free::finite_difference(&mut o, &t, &f, &hp, Difference::Central, s);
        let mut ws = SmoothingWorkspace::new(wu, wl);
        let mut out = Vector::zeros(wu);
        let _ = hessian_free::gaussian_smoothing_into(&mut o, &t, &f, &hp, terms, s, &mut ws, &mut out);
    }
}

/// Empty parts are a typed error, not a panic inside nalgebra's eigendecomposition (newcomer audit, session 6).
#[test]
fn empty_quadratic_parts_are_a_typed_error() {
    let z = |r, c| Matrix::zeros(r, c);
    let r = Quadratic::from_parts(
        z(0, 0),
        z(0, 0),
        Vector::zeros(0),
        z(0, 0),
        z(0, 0),
        z(0, 0),
        Vector::zeros(0),
        Vector::zeros(0),
        0.5,
        Domain::Unbounded,
    );
    assert!(matches!(r, Err(BilevelError::InvalidParameter { .. })), "{:?}", r.err());
}

/// Quadratic parameters whose products overflow are refused at build: an upper coupling of 1e300 used to build an
/// instance whose declared mu_F was -2.5e284 on a family declared strongly convex, and whose grad F was inf
/// (library audit, session 6).
#[test]
fn overflowing_quadratic_parameters_are_refused() {
    let r = QuadraticSpec {
        upper_coupling: 1e300,
        ..Default::default()
    }
    .build();
    assert!(
        matches!(r, Err(BilevelError::InvalidParameter { .. })),
        "{:?}",
        r.map(|q| q.constants())
    );
    assert!(
        QuadraticSpec {
            upper_coupling: 1e3,
            ..Default::default()
        }
        .build()
        .is_ok()
    );
}
