// Scratch probe (not committed).
use bilevel::Vector;
use bilevel::algorithms::stable::Stable;
use bilevel::families::quadratic::QuadraticSpec;
use bilevel::problem::{Bilevel, NoiseLevels, Noisy, Oracle};
use bilevel::solver::{Iterate, Schedule, Solver};
use std::sync::Arc;
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let d: usize = args[1].parse().unwrap();
    let n: usize = args[2].parse().unwrap();
    let min_dim: usize = args[3].parse().unwrap();
    let algo = args.get(4).cloned().unwrap_or("stable".into());
    let q: Arc<dyn Bilevel> = Arc::new(QuadraticSpec { d_u: 10, d_l: d, seed: 1, ..Default::default() }.build().unwrap());
    let p: Arc<dyn Bilevel> = Arc::new(Noisy::new(q, NoiseLevels::uniform(0.1)).unwrap());
    let mut o = Oracle::new(p.as_ref(), 3);
    let st0 = Iterate::start(Vector::zeros(10), Vector::zeros(d));
    if algo == "stable" {
        let k = p.constants();
        let mut s = Stable::new(Schedule::constant(0.2 / k.l_f), Schedule::constant(0.5 / k.l_l), 0.5, k.mu_l);
        s.lanczos_min_dim = min_dim;
        s.init(&mut o, &st0).unwrap();
        let mut st = st0;
        let t = Instant::now();
        for _ in 0..n {
            st = s.step(&mut o, st).unwrap();
        }
        println!("stable d={d} n={n}: {:.3} ms/iter routes {:?} |theta|={:.6e}", t.elapsed().as_secs_f64() * 1e3 / n as f64, s.projection_routes(), st.theta.norm());
    } else {
        let mut s = bilevel::algorithms::build(&algo, p.as_ref(), 10_000).unwrap();
        s.init(&mut o, &st0).unwrap();
        let mut st = st0;
        let t = Instant::now();
        for _ in 0..n {
            st = s.step(&mut o, st).unwrap();
        }
        println!("{algo} d={d} n={n}: {:.3} ms/iter", t.elapsed().as_secs_f64() * 1e3 / n as f64);
    }
}
