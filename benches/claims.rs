//! Cost of the rate suite's hot paths: one TTSA replicate (the Monte Carlo inner loop) and one claim end to end.
//! `cargo bench --bench claims`. The suite's wall time is tracked here, not by timed tests.

use bilevel::claims::{self, Registry};
use bilevel::linalg::Vector;
use bilevel::problem::Oracle;
use bilevel::solver::{self, NoObserver};
use criterion::{Criterion, criterion_group, criterion_main};

fn replicate(c: &mut Criterion) {
    let reg = Registry::builtin().unwrap();
    let spec = reg.claim.iter().find(|s| s.id == "ttsa-sc/lower-gap").unwrap();
    let p = claims::build_problem(spec).unwrap();
    let k = p.constants();
    let d = p.dims();
    c.bench_function("ttsa-sc replicate, 1000 iterations", |b| {
        b.iter(|| {
            let mut s = claims::build_solver(&spec.algorithm, &k, 1000).unwrap();
            let mut o = Oracle::new(p.as_ref(), 1);
            let theta0 = Vector::from_element(d.d_u, 1.0);
            solver::run(
                s.as_mut(),
                &mut o,
                &theta0,
                &Vector::zeros(d.d_l),
                1000,
                &mut NoObserver,
            )
            .unwrap()
        })
    });
}

fn claim(c: &mut Criterion) {
    let reg = Registry::builtin().unwrap();
    let spec = reg.claim.iter().find(|s| s.id == "ttsa-wc/moreau").unwrap().clone();
    let mut g = c.benchmark_group("claim end to end");
    g.sample_size(10);
    g.bench_function("ttsa-wc/moreau (100 replicates, 6 horizons)", |b| {
        b.iter(|| claims::run_claim(&spec, 0).unwrap())
    });
    g.finish();
}

criterion_group!(benches, replicate, claim);
criterion_main!(benches);
