//! The crate-level example of `src/lib.rs`, printing its numbers: `cargo run --release --example quickstart`.
//!
//! Builds a quadratic bilevel problem seen through noisy oracles, checks a stochastic hypergradient estimate
//! against the exact one, runs TTSA with its default step sizes over independent replicates, fits the exponent of
//! E|theta^K - theta*|^2 and judges it against the lecture's O(K^(-2/3)) bound (eqs (45), (47)).

use bilevel::algorithms;
use bilevel::families::quadratic::QuadraticSpec;
use bilevel::hypergrad::{self, InverseMethod, Workspace, exact};
use bilevel::problem::{Bilevel, NoiseLevels, Noisy, Oracle};
use bilevel::solver::{self, Metric, Recorder};
use bilevel::stats::{ClaimKind, FitConfig, Rule, SeedKey, Table, Tail, fit_power_law, geometric_grid, run_replicates};
use bilevel::{Result, Vector};
use std::sync::Arc;

fn main() -> Result<()> {
    // A quadratic family (d_u = 2, d_l = 3) whose phi*, F, grad F and theta* are closed forms, seen through noisy
    // oracles: standard deviation 0.1 on the gradients and cross derivatives, exact Hessians.
    let spec = QuadraticSpec {
        d_u: 2,
        d_l: 3,
        kappa: 2.0,
        mu_f: 1.0,
        seed: 1,
        ..Default::default()
    };
    let exact_problem: Arc<dyn Bilevel> = Arc::new(spec.build()?);
    let noise = NoiseLevels {
        hess_fl: 0.0,
        ..NoiseLevels::uniform(0.1)
    };
    let p = Noisy::new(exact_problem.clone(), noise)?;

    // 1. The implicit-function hypergradient (13) by dense solves, and the family's closed form.
    let theta = Vector::from_vec(vec![1.0, -0.5]);
    let exact_grad = exact::hypergradient(&*exact_problem, &theta)?;
    let closed = exact_problem.grad_f(&theta)?;
    println!("exact hypergradient {:?}", exact_grad.as_slice());
    println!("closed form         {:?}", closed.as_slice());

    // 2. A stochastic estimate (one upper sample, a dense solve with one lower sample) at phi = phi*(theta).
    let phi = exact_problem.phi_star(&theta);
    let mut o = Oracle::new(&p, 7);
    let (mut ws, mut est) = (Workspace::new(2, 3), Vector::zeros(2));
    let (mut sum, mut sum_sq, n) = (Vector::zeros(2), Vector::zeros(2), 4000u64);
    for _ in 0..n {
        hypergrad::estimate(&mut o, &InverseMethod::Dense, &theta, &phi, &mut ws, &mut est)?;
        sum += &est;
        sum_sq += est.component_mul(&est);
    }
    for i in 0..2 {
        let mean = sum[i] / n as f64;
        let std_err = ((sum_sq[i] / n as f64 - mean * mean) / n as f64).sqrt();
        println!(
            "coordinate {i}: mean estimate {mean:.5} ± {std_err:.5} (s.e.), exact {:.5}, z = {:+.2}",
            exact_grad[i],
            (mean - exact_grad[i]) / std_err
        );
    }
    println!("oracle calls: {:?}", o.counts());

    // 3. TTSA with its defaults over R = 200 replicates, |theta^K - theta*|^2 averaged over the last 10% of
    //    iterations, at 6 horizons read from one run per replicate.
    let ks = geometric_grid(100, 3000, 6)?;
    let k_max = ks[ks.len() - 1];
    let start = std::time::Instant::now();
    let rows = run_replicates(1, "example/ttsa", 200, |rng, _| {
        let mut o = Oracle::with_rng(&p, rng);
        let mut ttsa = algorithms::build("ttsa", &p, k_max)?;
        let mut rec = Recorder::new(&[Metric::ThetaErrSq], &ks, false).with_window(0.1);
        let (theta0, phi0) = (Vector::from_element(2, 1.0), Vector::zeros(3));
        solver::run(&mut *ttsa, &mut o, &theta0, &phi0, k_max, &mut rec)?;
        Ok(rec
            .finish()
            .windows
            .unwrap_or_default()
            .iter()
            .map(|v| v[0])
            .collect::<Vec<f64>>())
    })?;
    println!(
        "TTSA, 200 replicates of {k_max} iterations: {:.2} s",
        start.elapsed().as_secs_f64()
    );

    // 4. Fit the exponent on the last 5 horizons with a bootstrap interval; judge the bound with tolerance 0.05.
    let cfg = FitConfig::new(SeedKey::new(1, "example/ttsa")).with_tail(Tail::Last(5));
    let fit = fit_power_law(&ks, &Table::from_rows(&rows)?, &cfg)?;
    let rule = Rule::new(ClaimKind::Bound, -2.0 / 3.0, 0.05)?;
    for (k, (m, se)) in ks.iter().zip(fit.means.iter().zip(&fit.std_errors)) {
        println!("K = {k:5}: mean {m:.3e} ± {se:.1e}");
    }
    println!(
        "fitted exponent {:.3}, 99% interval [{:.3}, {:.3}]; bound -2/3 with tolerance 0.05: {:?}",
        fit.exponent,
        fit.interval.lo,
        fit.interval.hi,
        rule.judge(&fit.interval)
    );
    Ok(())
}
