//! Cost of the statistics engine at a realistic claim size: 200 replicates × 12 horizons, 1000 bootstrap resamples.
//!
//! Run with `cargo bench --bench stats`. The fit is measured on the default thread pool and on one thread (the
//! per-resample work is what a claim pays when the machine is busy with other replicates).

use bilevel::stats::{FitConfig, SeedKey, Table, Tail, fit_power_law, fit_sample_complexity, geometric_grid};
use criterion::{Criterion, criterion_group, criterion_main};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::hint::black_box;

const REPLICATES: usize = 200;
const HORIZONS: usize = 12;
const RESAMPLES: usize = 1000;

fn table(ks: &[usize]) -> Table {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let data: Vec<f64> = (0..REPLICATES)
        .flat_map(|_| {
            ks.iter()
                .map(|&k| (k as f64).powf(-2.0 / 3.0) * (0.5 + rng.random::<f64>()))
                .collect::<Vec<_>>()
        })
        .collect();
    Table::new(REPLICATES, HORIZONS, data).unwrap()
}

fn bench(c: &mut Criterion) {
    let ks = geometric_grid(10, 100_000, HORIZONS).unwrap();
    let values = table(&ks);
    let cfg = FitConfig::new(SeedKey::new(1, "bench")).with_bootstrap(RESAMPLES, 0.99);
    let all = cfg.with_tail(Tail::LastFraction(1.0));
    let one_thread = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();

    c.bench_function("fit_power_law 200x12 B=1000 tail=6", |b| {
        b.iter(|| fit_power_law(black_box(&ks), black_box(&values), &cfg).unwrap())
    });
    c.bench_function("fit_power_law 200x12 B=1000 tail=12", |b| {
        b.iter(|| fit_power_law(black_box(&ks), black_box(&values), &all).unwrap())
    });
    c.bench_function("fit_power_law 200x12 B=1000 tail=6, 1 thread", |b| {
        b.iter(|| one_thread.install(|| fit_power_law(black_box(&ks), black_box(&values), &cfg).unwrap()))
    });
    c.bench_function("fit_sample_complexity 200x12 B=1000 tail=6", |b| {
        b.iter(|| fit_sample_complexity(black_box(&values), black_box(&values), &cfg).unwrap())
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
