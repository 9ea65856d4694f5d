//! The size guard of the families (`families::MAX_ENTRIES`, `families::check_storage`): a size whose arrays would not
//! fit is a typed error returned before anything is allocated, and the documented largest sizes pass the guard.

use bilevel::BilevelError;
use bilevel::families::data_cleaning::DataCleaningSpec;
use bilevel::families::finite_sum::FiniteSumSpec;
use bilevel::families::hyperparameter::HyperparameterSpec;
use bilevel::families::low_rank::LowRankSpec;
use bilevel::families::meta_learning::MetaLearningSpec;
use bilevel::families::nonlinear_coupling::NonlinearCouplingSpec;
use bilevel::families::pruning::PruningSpec;
use bilevel::families::quadratic::QuadraticSpec;
use bilevel::families::representation::RepresentationSpec;
use bilevel::families::weakly_convex::WeaklyConvexSpec;
use bilevel::families::{self, MAX_ENTRIES, check_storage, entries};
use std::time::{Duration, Instant};

/// The sizes of the audit (each crashed with a failed allocation or ran out of memory before the guard), one
/// parameter of one family each.
const TOO_LARGE: &[(&str, &str, i64)] = &[
    ("quadratic", "d_l", 100_000),
    ("quadratic", "d_l", 30_000),
    ("quadratic", "d_l", 100_000_000),
    ("hyperparameter", "p", 100_000_000),
    ("hyperparameter", "n", 100_000_000),
    ("representation", "k", 100_000),
    ("pruning", "p", 100_000),
    ("pruning", "m", 100_000_000),
    ("data_cleaning", "m", 100_000_000),
    ("meta_learning", "d", 100_000_000),
    ("meta_learning", "tasks", 100_000_000),
    ("weakly_convex", "d_l", 100_000_000),
    ("nonlinear_coupling", "d_l", 100_000_000),
    ("finite_sum", "n_lower", 1_000_000_000),
    ("finite_sum", "d_l", 100_000),
    ("low_rank", "d_l", 100_000_000),
    ("low_rank", "d_u", 100_000_000),
];

/// The InvalidParameter a too-large size must give: naming the parameter, with the GiB needed, the limit and a way
/// out, within milliseconds (nothing proportional to the size is allocated).
fn assert_refused(
    family: &str,
    param: &str,
    value: impl std::fmt::Display,
    build: impl FnOnce() -> Option<BilevelError>,
) -> String {
    let start = Instant::now();
    let err = build().unwrap_or_else(|| panic!("{family} {param} = {value} built"));
    let took = start.elapsed();
    assert!(
        took < Duration::from_millis(200),
        "{family} {param} = {value}: refused after {took:?}"
    );
    let BilevelError::InvalidParameter { name, reason, .. } = &err else {
        panic!("{family} {param} = {value}: {err:?} is not InvalidParameter");
    };
    assert!(
        name.contains(param),
        "{family}: the error names {name}, not {param}: {err}"
    );
    let text = err.to_string();
    for needle in ["GiB", "above the limit of 2.0 GiB", "MAX_ENTRIES", family] {
        assert!(
            reason.contains(needle),
            "{family} {param} = {value}: no {needle:?} in {text}"
        );
    }
    assert!(text.starts_with(&format!("invalid parameter {name} = ")), "{text}");
    text
}

#[test]
fn every_sized_family_refuses_too_large_sizes_with_a_typed_error_before_allocating() {
    let start = Instant::now();
    for &(family, param, value) in TOO_LARGE {
        let mut t = toml::Table::new();
        t.insert(param.into(), toml::Value::Integer(value));
        let text = assert_refused(family, param, value, || families::build_with(family, &t).err());
        // One size too large at the others' defaults: named alone, with the largest value that fits.
        assert!(
            text.starts_with(&format!("invalid parameter {param} = {value}: ")),
            "{text}"
        );
        assert!(
            text.contains(&format!("; {param} <= ")) && text.contains(" would fit"),
            "{text}"
        );
    }
    // The whole list takes milliseconds: nothing was allocated or generated.
    assert!(start.elapsed() < Duration::from_secs(1), "{:?}", start.elapsed());
}

/// Sizes whose products overflow `usize` (or whose counts saturate `u64`) are the same typed error, not a panic or
/// a wrapped-around small allocation.
#[test]
fn sizes_whose_products_overflow_are_refused_not_wrapped() {
    let huge = usize::MAX;
    assert_refused("quadratic", "d_l", huge, || {
        QuadraticSpec {
            d_l: huge,
            ..Default::default()
        }
        .build()
        .err()
    });
    assert_refused("low_rank", "d_l", huge, || {
        LowRankSpec {
            d_l: huge,
            ..Default::default()
        }
        .build()
        .err()
    });
    // k p overflows usize (the dimension of theta): refused by the count, before the product is formed.
    let half = 1usize << 33;
    assert_refused("representation", "k", half, || {
        RepresentationSpec {
            k: half,
            p: half,
            ..Default::default()
        }
        .build()
        .err()
    });
    assert_refused("meta_learning", "tasks", half, || {
        MetaLearningSpec {
            tasks: half,
            d: half,
            ..Default::default()
        }
        .build()
        .err()
    });
    assert_refused("finite_sum", "n_lower", huge, || {
        FiniteSumSpec {
            n_lower: huge,
            n_upper: huge,
            ..Default::default()
        }
        .build()
        .err()
    });
    assert_refused("hyperparameter", "m", huge, || {
        HyperparameterSpec {
            m: huge,
            ..Default::default()
        }
        .build()
        .err()
    });
    assert_refused("pruning", "n", huge, || {
        PruningSpec {
            n: huge,
            ..Default::default()
        }
        .build()
        .err()
    });
    assert_refused("data_cleaning", "p", huge, || {
        DataCleaningSpec {
            p: huge,
            ..Default::default()
        }
        .build()
        .err()
    });
    assert_refused("weakly_convex", "d_u", huge, || {
        WeaklyConvexSpec {
            d_u: huge,
            ..Default::default()
        }
        .build()
        .err()
    });
    assert_refused("nonlinear_coupling", "d_l", huge, || {
        NonlinearCouplingSpec {
            d_l: huge,
            ..Default::default()
        }
        .build()
        .err()
    });
    // A size parameter at 0 (low_rank's rank may be) is never offered as the way out.
    let text = assert_refused("low_rank", "d_l", huge, || {
        LowRankSpec {
            d_l: huge,
            rank: 0,
            ..Default::default()
        }
        .build()
        .err()
    });
    assert!(text.starts_with(&format!("invalid parameter d_l = {huge}: ")), "{text}");
    // A saturated count says so instead of printing u64::MAX as a size.
    let e = QuadraticSpec {
        d_l: huge,
        ..Default::default()
    }
    .build()
    .unwrap_err()
    .to_string();
    assert!(e.contains("more than 1.8e19 f64 entries"), "{e}");
    assert_eq!(entries(&[&[huge, huge, 2]]), u64::MAX);
    assert_eq!(entries(&[&[huge], &[huge], &[huge]]), u64::MAX);
}

/// The largest sizes the module docs' table lists pass the guard and the next ones do not: the table and the
/// counts agree, and the guard rejects nothing below the limit (checked on the counts, without building).
#[test]
fn the_documented_largest_sizes_are_exactly_at_the_limit() {
    fn edge(family: &str, at: u64, above: u64) {
        assert!(
            at <= MAX_ENTRIES,
            "{family}: the documented largest size needs {at} > {MAX_ENTRIES} entries"
        );
        assert!(above > MAX_ENTRIES, "{family}: one more fits too ({above} entries)");
    }
    let q = |d_l| {
        QuadraticSpec {
            d_l,
            ..Default::default()
        }
        .entries()
    };
    edge("quadratic", q(11582), q(11583));
    let h = |p| {
        HyperparameterSpec {
            p,
            ..Default::default()
        }
        .entries()
    };
    edge("hyperparameter", h(9447), h(9448));
    let r = |k| {
        RepresentationSpec {
            k,
            ..Default::default()
        }
        .entries()
    };
    edge("representation", r(11581), r(11582));
    let pr = |p| {
        PruningSpec {
            p,
            ..Default::default()
        }
        .entries()
    };
    edge("pruning", pr(9447), pr(9448));
    let dc = |m| {
        DataCleaningSpec {
            m,
            ..Default::default()
        }
        .entries()
    };
    edge("data_cleaning", dc(38_347_900), dc(38_347_901));
    let ml = |d| {
        MetaLearningSpec {
            d,
            ..Default::default()
        }
        .entries()
    };
    edge("meta_learning", ml(3492), ml(3493));
    let mt = |tasks| {
        MetaLearningSpec {
            tasks,
            ..Default::default()
        }
        .entries()
    };
    edge("meta_learning", mt(3_050_402), mt(3_050_403));
    let wc = |d_l| {
        WeaklyConvexSpec {
            d_l,
            ..Default::default()
        }
        .entries()
    };
    edge("weakly_convex", wc(7326), wc(7327));
    let nc = |d_l| {
        NonlinearCouplingSpec {
            d_l,
            ..Default::default()
        }
        .entries()
    };
    edge("nonlinear_coupling", nc(33_554_429), nc(33_554_430));
    let fs = |n_lower| {
        FiniteSumSpec {
            n_lower,
            ..Default::default()
        }
        .entries()
    };
    edge("finite_sum", fs(12_782_591), fs(12_782_592));
    let fd = |d_l| {
        FiniteSumSpec {
            d_l,
            ..Default::default()
        }
        .entries()
    };
    edge("finite_sum", fd(11510), fd(11511));
    let lr = |d_l| {
        LowRankSpec {
            d_l,
            ..Default::default()
        }
        .entries()
    };
    edge("low_rank", lr(15_790_319), lr(15_790_320));
    // benchmark_bilevel's finite sum and low_rank at d_l = 1e5 (the sizes the docs use) are far below the limit.
    assert!(FiniteSumSpec::benchmark().entries() < MAX_ENTRIES / 4);
    assert!(
        LowRankSpec {
            d_l: 100_000,
            ..Default::default()
        }
        .entries()
            < MAX_ENTRIES / 100
    );
    // Just above the limit, the build itself refuses (still without allocating).
    assert_refused("quadratic", "d_l", 11583, || {
        QuadraticSpec {
            d_l: 11583,
            ..Default::default()
        }
        .build()
        .err()
    });
    assert_refused("weakly_convex", "d_l", 7327, || {
        WeaklyConvexSpec {
            d_l: 7327,
            ..Default::default()
        }
        .build()
        .err()
    });
}

#[test]
fn check_storage_accepts_up_to_the_limit_and_names_what_is_at_fault() {
    let count = |v: &[usize]| entries(&[&[v[0], v[1]]]);
    let limit = MAX_ENTRIES as usize;
    // Exactly at the limit and just below: accepted.
    assert!(check_storage("f", &[("a", limit), ("b", 1)], count, "a x b", "lower a").is_ok());
    assert!(check_storage("f", &[("a", limit - 1), ("b", 1)], count, "a x b", "lower a").is_ok());
    assert!(check_storage("f", &[("a", 1 << 14), ("b", 1 << 14)], count, "a x b", "lower a").is_ok());
    // One entry above: the parameter at fault, its largest fitting value at the other's value, the GiB, the way out.
    let e = check_storage("f", &[("a", limit + 1), ("b", 1)], count, "a x b", "lower a").unwrap_err();
    let BilevelError::InvalidParameter { name, value, reason } = &e else {
        panic!("{e:?}")
    };
    assert_eq!((name.as_str(), value.as_str()), ("a", &*(limit + 1).to_string()));
    assert!(reason.contains(&format!("a <= {limit} would fit (at b = 1)")), "{e}");
    assert!(
        reason.contains("2.0 GiB (a x b)") && reason.ends_with("; lower a"),
        "{e}"
    );
    // Both too large on their own: both named, each with its bound.
    let e = check_storage("f", &[("a", 1 << 20), ("b", 1 << 20)], count, "a x b", "lower a or b").unwrap_err();
    let text = e.to_string();
    assert!(
        text.starts_with("invalid parameter (a, b) = (1048576, 1048576): f would hold 1.10e12 f64 entries, 8192.0 GiB"),
        "{text}"
    );
    assert!(text.contains("a <= 256 or b <= 256 would fit; lower a or b"), "{text}");
    // No parameter at fault on its own (the count is above the limit even at size 1): all are named, with no bound.
    let floor = |v: &[usize]| entries(&[&[v[0]], &[v[1]], &[MAX_ENTRIES as usize]]);
    let e = check_storage("f", &[("a", 1), ("b", 1)], floor, "a + b", "none").unwrap_err();
    assert!(e.to_string().starts_with("invalid parameter (a, b) = (1, 1): "), "{e}");
    assert!(!e.to_string().contains("would fit"), "{e}");
}

/// Methods that need dense second derivatives refuse a matrix-free family whose d_l makes them too large, with a
/// typed error before allocating (STABLE's tracked Hessian, the oracle's dense Hessian and cross matrix), where they
/// used to abort on an 80 GB allocation.
#[test]
fn dense_second_derivatives_are_refused_above_the_limit() {
    use bilevel::problem::{Oracle, Sample, check_dense};
    assert!(check_dense("m", 16384, 16384).is_ok());
    assert!(check_dense("m", 16384, 16385).is_err());
    assert!(check_dense("m", usize::MAX, usize::MAX).is_err());
    // A d_u x d_l matrix names both sizes (d_u may be the large one: representation's d_u = k p).
    let e = check_dense("m", 200_000, 2_000).unwrap_err().to_string();
    assert!(e.contains("d_u, d_l = 200000, 2000"), "{e}");
    let p = bilevel::families::build_with("low_rank", &toml::toml! { d_l = 100000 }).unwrap();
    let d = p.dims();
    let (theta, phi) = (bilevel::Vector::zeros(d.d_u), bilevel::Vector::zeros(d.d_l));
    let mut o = Oracle::new(p.as_ref(), 0);
    let e = o.hess_fl(Sample::Exact, &theta, &phi).unwrap_err().to_string();
    assert!(e.contains("GiB") && e.contains("Hessian-vector"), "{e}");
    let mut s = bilevel::algorithms::build("stable", p.as_ref(), 10).unwrap();
    let st = bilevel::solver::Iterate::start(theta.clone(), phi.clone());
    let e = s.init(&mut o, &st).unwrap_err().to_string();
    assert!(e.contains("STABLE's tracked lower-level Hessian"), "{e}");
}

/// A problem that only reports its sizes: every other method is unreachable, so a test shows that the default
/// `jacobian_phi_star` refuses before forming anything.
struct SizesOnly(bilevel::problem::Dims, bilevel::problem::Domain);

impl bilevel::problem::Bilevel for SizesOnly {
    fn name(&self) -> &str {
        "sizes-only"
    }
    fn dims(&self) -> bilevel::problem::Dims {
        self.0
    }
    fn draw(&self, _: bilevel::problem::Level, _: &mut rand_chacha::ChaCha8Rng) -> bilevel::problem::Sample {
        unreachable!()
    }
    fn f_u(&self, _: bilevel::problem::Sample, _: &bilevel::Vector, _: &bilevel::Vector) -> f64 {
        unreachable!()
    }
    fn f_l(&self, _: bilevel::problem::Sample, _: &bilevel::Vector, _: &bilevel::Vector) -> f64 {
        unreachable!()
    }
    fn grad_theta_fu(
        &self,
        _: bilevel::problem::Sample,
        _: &bilevel::Vector,
        _: &bilevel::Vector,
        _: &mut bilevel::Vector,
    ) {
        unreachable!()
    }
    fn grad_phi_fu(
        &self,
        _: bilevel::problem::Sample,
        _: &bilevel::Vector,
        _: &bilevel::Vector,
        _: &mut bilevel::Vector,
    ) {
        unreachable!()
    }
    fn grad_phi_fl(
        &self,
        _: bilevel::problem::Sample,
        _: &bilevel::Vector,
        _: &bilevel::Vector,
        _: &mut bilevel::Vector,
    ) {
        unreachable!()
    }
    fn grad_theta_fl(
        &self,
        _: bilevel::problem::Sample,
        _: &bilevel::Vector,
        _: &bilevel::Vector,
        _: &mut bilevel::Vector,
    ) {
        unreachable!()
    }
    fn hvp_fl(
        &self,
        _: bilevel::problem::Sample,
        _: &bilevel::Vector,
        _: &bilevel::Vector,
        _: &bilevel::Vector,
        _: &mut bilevel::Vector,
    ) {
        unreachable!()
    }
    fn cross_fl(
        &self,
        _: bilevel::problem::Sample,
        _: &bilevel::Vector,
        _: &bilevel::Vector,
        _: &bilevel::Vector,
        _: &mut bilevel::Vector,
    ) {
        unreachable!()
    }
    fn cross_t_fl(
        &self,
        _: bilevel::problem::Sample,
        _: &bilevel::Vector,
        _: &bilevel::Vector,
        _: &bilevel::Vector,
        _: &mut bilevel::Vector,
    ) {
        unreachable!()
    }
    fn phi_star(&self, _: &bilevel::Vector) -> bilevel::Vector {
        unreachable!()
    }
    fn theta_star(&self) -> Option<bilevel::Vector> {
        None
    }
    fn constants(&self) -> bilevel::problem::Constants {
        unreachable!()
    }
    fn domain(&self) -> &bilevel::problem::Domain {
        &self.1
    }
    fn describe(&self) -> String {
        String::new()
    }
}

/// The default implicit-function Jacobian (behind grad F and the metrics of families without a closed form) forms a
/// dense d_l x d_l Hessian and a d_u x d_l cross matrix: above the dense limit it is a typed error before either
/// is formed (representation at k = 8200 spent minutes and ~6 GB there before; review of session 6).
#[test]
fn the_default_jacobian_refuses_dense_matrices_above_the_limit() {
    use bilevel::problem::{Bilevel, Dims, Domain};
    let theta = bilevel::Vector::zeros(3);
    for (d_u, d_l, named) in [(3, 20_000, "d_l = 20000"), (40_000, 8_000, "d_u, d_l = 40000, 8000")] {
        let p = SizesOnly(Dims { d_u, d_l }, Domain::Unbounded);
        let e = p.jacobian_phi_star(&theta).unwrap_err().to_string();
        assert!(e.contains(named) && e.contains("Jacobian"), "{e}");
    }
}
