//! The crate-level example of `src/lib.rs`, runnable and with its numbers printed:
//! `cargo run --release --example quickstart`.
//!
//! Builds a quadratic bilevel problem with noisy oracles, checks a stochastic hypergradient estimator against the
//! exact one, runs TTSA (Alg 5) with its default step sizes over independent replicates and judges the rate of
//! E|theta^K - theta*|^2 against the lecture's O(K^{-2/3}) bound.

use bilevel::algorithms;
use bilevel::families::quadratic::QuadraticSpec;
use bilevel::hypergrad::{self, InverseMethod, Workspace, exact};
use bilevel::problem::{Bilevel, NoiseLevels, Noisy, Oracle};
use bilevel::solver::{self, Metric, Recorder};
use bilevel::stats::{ClaimKind, FitConfig, Rule, SeedKey, Table, fit_power_law, geometric_grid, run_replicates};
use bilevel::{Result, Vector};
use std::sync::Arc;

fn main() -> Result<()> {
    // 1. A quadratic family with d_u = 2 != d_l = 3 (closed-form phi*, F, grad F, theta*), and additive noise on
    //    every gradient and second-order oracle.
    let spec = QuadraticSpec {
        d_u: 2,
        d_l: 3,
        kappa: 2.0,
        mu_f: 1.0,
        seed: 1,
        ..Default::default()
    };
    let exact_problem: Arc<dyn Bilevel> = Arc::new(spec.build()?);
    let p = Noisy::new(exact_problem.clone(), NoiseLevels::uniform(0.1))?;

    // 2. The exact hypergradient (13) against the closed form, and a stochastic estimate (one upper sample, dense
    //    solve with one Hessian sample) averaged over 20000 draws at phi = phi*(theta).
    let theta = Vector::from_vec(vec![1.0, -0.5]);
    let g = exact::hypergradient(&*exact_problem, &theta)?;
    println!(
        "exact hypergradient {:?}, closed form {:?}",
        g.as_slice(),
        exact_problem.grad_f(&theta)?.as_slice()
    );
    let phi = exact_problem.phi_star(&theta);
    let mut o = Oracle::new(&p, 7);
    let (mut ws, mut est, mut mean) = (Workspace::new(2, 3), Vector::zeros(2), Vector::zeros(2));
    let draws = 20_000;
    for _ in 0..draws {
        hypergrad::estimate(&mut o, &InverseMethod::Dense, &theta, &phi, &mut ws, &mut est)?;
        mean += &est / draws as f64;
    }
    println!(
        "mean stochastic estimate {:?}, |mean - exact| = {:.2e}",
        mean.as_slice(),
        (&mean - &g).norm()
    );
    println!("oracle calls: {:?}", o.counts());

    // 3. TTSA with its defaults, R replicates, E|theta^K - theta*|^2 recorded on a geometric grid of horizons.
    let ks = geometric_grid(100, 3000, 6)?;
    let k_max = *ks.last().expect("a grid");
    let rows = run_replicates(1, "quickstart/ttsa", 64, |rng, _| {
        let mut o = Oracle::with_rng(&p, rng);
        let mut ttsa = algorithms::build("ttsa", &p, k_max)?;
        let mut rec = Recorder::new(&[Metric::ThetaErrSq], &ks, false);
        solver::run(
            &mut *ttsa,
            &mut o,
            &Vector::from_element(2, 1.0),
            &Vector::zeros(3),
            k_max,
            &mut rec,
        )?;
        let trace = rec.finish();
        Ok(trace.values.iter().map(|v| v[0]).collect::<Vec<f64>>())
    })?;

    // 4. Fit the exponent of the mean with a bootstrap interval and judge it as a bound.
    let fit = fit_power_law(
        &ks,
        &Table::from_rows(&rows)?,
        &FitConfig::new(SeedKey::new(1, "quickstart/ttsa")),
    )?;
    let rule = Rule::new(ClaimKind::Bound, -2.0 / 3.0, 0.05)?;
    println!("horizons {ks:?}\nmeans {:?}", fit.means);
    println!(
        "fitted exponent {:.3}, 99% interval [{:.3}, {:.3}], verdict {:?}",
        fit.exponent,
        fit.interval.lo,
        fit.interval.hi,
        rule.judge(&fit.interval)
    );
    Ok(())
}
