//! Speed at research sizes (issue 12 §5): per-iteration time of TTSA, stocBiO and STABLE on the quadratic family at
//! $d_l = 10, 100, 1000$ ($d_u = 10$), noise off and on ($\sigma = 0.1$ on every gradient and second-order oracle),
//! beside one dense $d\times d$ mat-vec and one Hessian-vector product of the quadratic, bare and with its noise;
//! building the quadratic at $d_l = 2000$; TTSA on the matrix-free `low_rank` family at $d_l = 10^5$ with noise on.
//! After criterion's own report it prints the table of `docs/performance.md`:
//! medians of criterion's samples and the ratios the targets are stated in, all from this one run.
//!
//! Also STABLE's projection at $d_l = 1000$ (rank-one route against the eigendecomposition) and STABLE forced
//! through the eigendecomposition (`stable-eigen`), the "before" of the STABLE / TTSA ratio.
//!
//! Run with `cargo bench --bench perf`. Set `PERF_QUICK=1` to skip $d = 1000$ (a minute less).

use bilevel::Vector;
use bilevel::families::low_rank::LowRankSpec;
use bilevel::families::quadratic::QuadraticSpec;
use bilevel::linalg::Matrix;
use bilevel::problem::{Bilevel, NoiseLevels, Noisy, Oracle, Sample};
use bilevel::solver::{Iterate, Solver};
use criterion::{Criterion, criterion_group, criterion_main};
use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Per-iteration times (seconds) of every criterion sample, by case name.
static SAMPLES: Mutex<BTreeMap<String, Vec<f64>>> = Mutex::new(BTreeMap::new());

fn record(name: &str, per_iter: f64) {
    SAMPLES
        .lock()
        .unwrap()
        .entry(name.to_string())
        .or_default()
        .push(per_iter);
}

fn median(name: &str) -> Option<f64> {
    let map = SAMPLES.lock().unwrap();
    let mut v = map.get(name)?.clone();
    v.sort_by(f64::total_cmp);
    Some(v[v.len() / 2])
}

const D_U: usize = 10;
const SIGMA: f64 = 0.1;

fn dims() -> Vec<usize> {
    if std::env::var_os("PERF_QUICK").is_some() {
        vec![10, 100]
    } else {
        vec![10, 100, 1000]
    }
}

fn problem(d_l: usize, sigma: f64) -> Arc<dyn Bilevel> {
    let q: Arc<dyn Bilevel> = Arc::new(
        QuadraticSpec {
            d_u: D_U,
            d_l,
            seed: 1,
            ..Default::default()
        }
        .build()
        .expect("valid spec"),
    );
    Arc::new(Noisy::new(q, NoiseLevels::uniform(sigma)).expect("valid noise"))
}

/// Time `iters` steps of `solver` (after a short warm-up that leaves $k > 0$, so Neumann lengths are typical).
fn time_steps(solver: &mut dyn Solver, o: &mut Oracle, st: &mut Option<Iterate>, iters: u64) -> Duration {
    let start = Instant::now();
    for _ in 0..iters {
        let s = st.take().expect("iterate");
        *st = Some(black_box(solver.step(o, s).expect("step")));
    }
    start.elapsed()
}

fn bench_iterations(c: &mut Criterion) {
    let mut g = c.benchmark_group("iter");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(200))
        .measurement_time(Duration::from_secs(1));
    for d in dims() {
        for sigma in [0.0, SIGMA] {
            let p = problem(d, sigma);
            for algo in ["ttsa", "stocbio", "stable"] {
                let name = format!("{algo}/d{d}/noise{sigma}");
                let mut solver = bilevel::algorithms::build(algo, p.as_ref(), 10_000).expect("algorithm");
                let mut o = Oracle::new(p.as_ref(), 3);
                let st0 = Iterate::start(Vector::zeros(D_U), Vector::zeros(d));
                solver.init(&mut o, &st0).expect("init");
                let mut st = Some(st0);
                time_steps(solver.as_mut(), &mut o, &mut st, 2);
                g.bench_function(&name, |b| {
                    b.iter_custom(|iters| {
                        let t = time_steps(solver.as_mut(), &mut o, &mut st, iters);
                        record(&name, t.as_secs_f64() / iters as f64);
                        t
                    })
                });
            }
        }
        // One Hessian-vector product of the quadratic, bare and with the noise at a fresh sample each time, chained
        // (each input depends on the last output, as in a Neumann product): the oracle-level cost of the noise.
        let bare: Arc<dyn Bilevel> = Arc::new(
            QuadraticSpec {
                d_u: D_U,
                d_l: d,
                seed: 1,
                ..Default::default()
            }
            .build()
            .expect("valid spec"),
        );
        for (sigma, p) in [(0.0, Arc::clone(&bare)), (SIGMA, problem(d, SIGMA))] {
            let name = format!("hvp/d{d}/noise{sigma}");
            let (theta, phi) = (Vector::zeros(D_U), Vector::zeros(d));
            let mut v = Vector::from_fn(d, |i, _| (i as f64 * 0.37).sin());
            let mut out = Vector::zeros(d);
            let mut word = 0u64;
            g.bench_function(&name, |b| {
                b.iter_custom(|iters| {
                    let start = Instant::now();
                    for i in 0..iters {
                        word = word.wrapping_add(0x9E37_79B9_7F4A_7C15);
                        p.hvp_fl(Sample::Draw(word), &theta, &phi, &v, &mut out);
                        v.axpy(-0.1, &out, 1.0);
                        if i % 64 == 0 {
                            // Keep v away from subnormals, which would time the FPU's slow path.
                            let n = v.norm();
                            v /= n;
                        }
                    }
                    let t = start.elapsed();
                    record(&name, t.as_secs_f64() / iters as f64);
                    t
                })
            });
        }
        // One dense mat-vec at the same d, the unit of an exact Hessian-vector product.
        let name = format!("matvec/d{d}");
        let a = Matrix::from_fn(d, d, |i, j| ((i * 31 + j * 17) % 13) as f64 - 6.0);
        let x = Vector::from_element(d, 0.5);
        let mut y = Vector::zeros(d);
        g.bench_function(&name, |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    y.gemv(1.0, &a, black_box(&x), 0.0);
                }
                let t = start.elapsed();
                record(&name, t.as_secs_f64() / iters as f64);
                t
            })
        });
    }
    // The matrix-free family at d_l = 10^5, noise on.
    let d = 100_000;
    let lr: Arc<dyn Bilevel> = Arc::new(
        LowRankSpec {
            d_l: d,
            seed: 1,
            ..Default::default()
        }
        .build()
        .expect("valid spec"),
    );
    for sigma in [0.0, SIGMA] {
        let p: Arc<dyn Bilevel> = Arc::new(Noisy::new(lr.clone(), NoiseLevels::uniform(sigma)).expect("noise"));
        let name = format!("ttsa/low_rank_d{d}/noise{sigma}");
        let mut solver = bilevel::algorithms::build("ttsa", p.as_ref(), 10_000).expect("algorithm");
        let mut o = Oracle::new(p.as_ref(), 3);
        let st0 = Iterate::start(Vector::zeros(3), Vector::zeros(d));
        solver.init(&mut o, &st0).expect("init");
        let mut st = Some(st0);
        time_steps(solver.as_mut(), &mut o, &mut st, 2);
        g.bench_function(&name, |b| {
            b.iter_custom(|iters| {
                let t = time_steps(solver.as_mut(), &mut o, &mut st, iters);
                record(&name, t.as_secs_f64() / iters as f64);
                t
            })
        });
    }
    g.finish();
}

/// STABLE's projection at $d_l = 1000$ (issue 12 §2): the rank-one route (Lanczos + certificate) against the
/// eigendecomposition, on a tracked matrix of a noisy run; and STABLE forced through the eigendecomposition, the
/// "before" of the STABLE / TTSA ratio.
fn bench_stable_projection(c: &mut Criterion) {
    use bilevel::algorithms::psd_projection::project_psd_floor_rank_one;
    use bilevel::algorithms::stable::{Stable, project_psd_floor};
    use bilevel::problem::Level;
    use bilevel::solver::Schedule;
    if std::env::var_os("PERF_QUICK").is_some() {
        return;
    }
    let mut g = c.benchmark_group("stable");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(200))
        .measurement_time(Duration::from_secs(1));
    let d = 1000;
    let p = problem(d, SIGMA);
    let mut o = Oracle::new(p.as_ref(), 3);
    let (theta, phi) = (Vector::zeros(D_U), Vector::zeros(d));
    // The tracked recursion H ← P(H/2 + Ĥ/2) for a few samples, then one unprojected update.
    let mut h = Matrix::identity(d, d);
    for _ in 0..6 {
        let s = o.draw(Level::Lower);
        let hp = o.hess_fl(s, &theta, &phi).expect("hessian");
        h = project_psd_floor_rank_one(&(h * 0.5 + hp * 0.5), 1.0).0;
    }
    let s = o.draw(Level::Lower);
    let h = h * 0.5 + o.hess_fl(s, &theta, &phi).expect("hessian") * 0.5;
    for (name, rank_one) in [("project/d1000/rank-one", true), ("project/d1000/eigen", false)] {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    if rank_one {
                        black_box(project_psd_floor_rank_one(black_box(&h), 1.0));
                    } else {
                        black_box(project_psd_floor(black_box(&h), 1.0));
                    }
                }
                let t = start.elapsed();
                record(name, t.as_secs_f64() / iters as f64);
                t
            })
        });
    }
    let name = format!("stable-eigen/d{d}/noise{SIGMA}");
    let k = p.constants();
    let mut solver = Stable::new(
        Schedule::constant(0.2 / k.l_f),
        Schedule::constant(0.5 / k.l_l_sample.unwrap_or(k.l_l)),
        0.5,
        k.mu_l,
    );
    solver.lanczos_min_dim = usize::MAX;
    solver.shifted_min_dim = usize::MAX;
    let mut o = Oracle::new(p.as_ref(), 3);
    let st0 = Iterate::start(Vector::zeros(D_U), Vector::zeros(d));
    solver.init(&mut o, &st0).expect("init");
    let mut st = Some(st0);
    time_steps(&mut solver, &mut o, &mut st, 2);
    g.bench_function(&name, |b| {
        b.iter_custom(|iters| {
            let t = time_steps(&mut solver, &mut o, &mut st, iters);
            record(&name, t.as_secs_f64() / iters as f64);
            t
        })
    });
    g.finish();
}

fn bench_construction(c: &mut Criterion) {
    let mut g = c.benchmark_group("build");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(100))
        .measurement_time(Duration::from_secs(2));
    let name = "quadratic/d_l2000";
    g.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                let spec = QuadraticSpec {
                    d_u: D_U,
                    d_l: 2000,
                    ..Default::default()
                };
                black_box(spec.build().expect("build"));
            }
            let t = start.elapsed();
            record(name, t.as_secs_f64() / iters as f64);
            t
        })
    });
    let name = "low_rank/d_l100000";
    g.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                black_box(
                    LowRankSpec {
                        d_l: 100_000,
                        ..Default::default()
                    }
                    .build()
                    .expect("build"),
                );
            }
            let t = start.elapsed();
            record(name, t.as_secs_f64() / iters as f64);
            t
        })
    });
    g.finish();
}

fn fmt(s: f64) -> String {
    if s >= 1.0 {
        format!("{s:.2} s")
    } else if s >= 1e-3 {
        format!("{:.2} ms", s * 1e3)
    } else if s >= 1e-6 {
        format!("{:.1} µs", s * 1e6)
    } else {
        format!("{:.0} ns", s * 1e9)
    }
}

fn report(_c: &mut Criterion) {
    println!("\n| d | algorithm | noise off | noise on (σ = {SIGMA}) | on/off | per mat-vec (off) |");
    println!("|---|---|---|---|---|---|");
    for d in dims() {
        let mv = median(&format!("matvec/d{d}")).unwrap_or(f64::NAN);
        for algo in ["ttsa", "stocbio", "stable"] {
            let off = median(&format!("{algo}/d{d}/noise0")).unwrap_or(f64::NAN);
            let on = median(&format!("{algo}/d{d}/noise{SIGMA}")).unwrap_or(f64::NAN);
            println!(
                "| {d} | {algo} | {} | {} | {:.2} | {:.0} |",
                fmt(off),
                fmt(on),
                on / off,
                off / mv
            );
        }
        println!("| {d} | dense mat-vec | {} | | | 1 |", fmt(mv));
        let (h0, h1) = (
            median(&format!("hvp/d{d}/noise0")).unwrap_or(f64::NAN),
            median(&format!("hvp/d{d}/noise{SIGMA}")).unwrap_or(f64::NAN),
        );
        println!(
            "| {d} | one Hessian-vector product | {} | {} | {:.2} | {:.1} |",
            fmt(h0),
            fmt(h1),
            h1 / h0,
            h0 / mv
        );
        for sigma in ["0", "0.1"] {
            let tt = median(&format!("ttsa/d{d}/noise{sigma}")).unwrap_or(f64::NAN);
            let st = median(&format!("stable/d{d}/noise{sigma}")).unwrap_or(f64::NAN);
            println!("STABLE / TTSA at d = {d}, noise {sigma}: {:.2}", st / tt);
        }
    }
    if std::env::var_os("PERF_QUICK").is_none() {
        let tt = median("ttsa/d1000/noise0.1").unwrap_or(f64::NAN);
        let eig = median("stable-eigen/d1000/noise0.1").unwrap_or(f64::NAN);
        println!(
            "STABLE through the eigendecomposition / TTSA at d = 1000, noise 0.1: {:.2}",
            eig / tt
        );
        let r1 = median("project/d1000/rank-one").unwrap_or(f64::NAN);
        let pe = median("project/d1000/eigen").unwrap_or(f64::NAN);
        println!(
            "projection at d = 1000: rank-one {}, eigendecomposition {} ({:.1}x)",
            fmt(r1),
            fmt(pe),
            pe / r1
        );
    }
    for name in ["quadratic/d_l2000", "low_rank/d_l100000"] {
        println!("build {name}: {}", fmt(median(name).unwrap_or(f64::NAN)));
    }
    for sigma in ["0", "0.1"] {
        let name = format!("ttsa/low_rank_d100000/noise{sigma}");
        println!("{name}: {} per iteration", fmt(median(&name).unwrap_or(f64::NAN)));
    }
}

criterion_group!(
    benches,
    bench_iterations,
    bench_stable_projection,
    bench_construction,
    report
);
criterion_main!(benches);
