//! Time and peak heap memory of forward- vs reverse-mode ITD (eqs (30)–(32)) as $d_u$, $d_l$ and $T$ grow, on the
//! quadratic family. Run with `cargo bench --bench itd`; the numbers in `docs/itd-cost.md` come from here.
//!
//! Memory is measured by a counting global allocator: the peak of live heap bytes during one call, minus what was
//! live before it (the problem instance itself is excluded).

use bilevel::Vector;
use bilevel::families::quadratic::{Quadratic, QuadraticSpec};
use bilevel::hypergrad::itd::{self, ItdParams, ItdSamples};
use bilevel::problem::Oracle;
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Peak live heap bytes allocated during `f`, above the level live when it started.
fn peak_bytes(f: impl FnOnce()) -> usize {
    let base = LIVE.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    f();
    PEAK.load(Ordering::Relaxed) - base
}

fn problem(d_u: usize, d_l: usize) -> Quadratic {
    QuadraticSpec {
        d_u,
        d_l,
        mu_l: 1.0,
        kappa: 10.0,
        seed: 1,
        ..Default::default()
    }
    .build()
    .expect("valid spec")
}

/// (label, d_u, d_l, T): one axis varies at a time.
fn grid() -> Vec<(&'static str, usize, usize, usize)> {
    let mut g = Vec::new();
    for d_u in [1, 4, 16, 64] {
        g.push(("d_u", d_u, 64, 32));
    }
    for d_l in [16, 64, 256] {
        g.push(("d_l", 8, d_l, 32));
    }
    for t in [16, 64, 256, 1024] {
        g.push(("T", 8, 64, t));
    }
    g
}

fn bench(c: &mut Criterion) {
    println!("peak heap bytes per call (label d_u d_l T forward reverse):");
    for (label, d_u, d_l, steps) in grid() {
        let q = problem(d_u, d_l);
        let theta = Vector::from_element(d_u, 0.1);
        let phi0 = Vector::zeros(d_l);
        let params = ItdParams { beta: 0.1, steps };
        let fwd = peak_bytes(|| {
            let mut o = Oracle::new(&q, 0);
            black_box(itd::forward(&mut o, &theta, &phi0, &params, ItdSamples::EXACT).unwrap());
        });
        let rev = peak_bytes(|| {
            let mut o = Oracle::new(&q, 0);
            black_box(itd::reverse(&mut o, &theta, &phi0, &params, ItdSamples::EXACT, None).unwrap());
        });
        println!("MEM {label} {d_u} {d_l} {steps} {fwd} {rev}");
        let mut group = c.benchmark_group(format!("itd_{label}"));
        let id = format!("du{d_u}_dl{d_l}_T{steps}");
        group.bench_function(BenchmarkId::new("forward", &id), |b| {
            b.iter(|| {
                let mut o = Oracle::new(&q, 0);
                black_box(itd::forward(&mut o, &theta, &phi0, &params, ItdSamples::EXACT).unwrap())
            })
        });
        group.bench_function(BenchmarkId::new("reverse", &id), |b| {
            b.iter(|| {
                let mut o = Oracle::new(&q, 0);
                black_box(itd::reverse(&mut o, &theta, &phi0, &params, ItdSamples::EXACT, None).unwrap())
            })
        });
        group.finish();
    }
}

fn config() -> Criterion {
    // Short runs: the machine is shared; the forward/reverse ratios of interest are 2–100×, far above the noise.
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench
}
criterion_main!(benches);
