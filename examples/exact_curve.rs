//! Exact expected curves far beyond Monte Carlo horizons (issue 9 §1): the claim `ttsa-sc/lower-gap`'s TTSA run
//! on the quadratic, E|theta^K - theta*|^2, E|phi^K - phi*(theta^{K-1})|^2 and E|grad F(theta^K)|^2 at
//! K = 10^2..10^6 from the moment recursion, with the wall time of the 10^6 iterations and the local slopes.
//!
//! `cargo run --release --example exact_curve [claim-id] [K_max] [beta-power]` (the optional power replaces the
//! claim's $\beta_k$ power, e.g. 0.6 for a $k^{-3/5}$ typo); also prints the claim's exact slopes.

use bilevel::claims::{AlgoSpec, Registry, Statistic};
use bilevel::exact::{exact_curves, exact_slopes};
use bilevel::solver::Metric;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let id = args.first().map(String::as_str).unwrap_or("ttsa-sc/lower-gap");
    let kmax: usize = args.get(1).map(|s| s.parse()).transpose()?.unwrap_or(1_000_000);
    let mut spec = Registry::builtin()?
        .claim
        .into_iter()
        .find(|c| c.id == id)
        .ok_or_else(|| format!("no claim {id}"))?;
    if let Some(p) = args.get(2) {
        let p: f64 = p.parse()?;
        match &mut spec.algorithm {
            AlgoSpec::Ttsa { beta, .. } | AlgoSpec::Stable { beta, .. } | AlgoSpec::Bsa { beta, .. } => beta.power = p,
            other => return Err(format!("no beta power to replace in {other:?}").into()),
        }
    }
    println!(
        "exact slopes of {id} (its metric, statistic, grid and fit window): {:?}",
        exact_slopes(&spec)?
    );
    let mut grid = vec![];
    let mut k = 100.0_f64;
    while (k as usize) <= kmax {
        grid.push(k as usize);
        k *= 10f64.sqrt();
    }
    let pairs = [
        (Metric::ThetaErrSq, Statistic::Last),
        (Metric::PhiGapSq, Statistic::Last),
        (Metric::GradNormSq, Statistic::Last),
    ];
    let t = std::time::Instant::now();
    let curves = exact_curves(&spec, &pairs, &grid)?;
    let secs = t.elapsed().as_secs_f64();
    println!(
        "{id}: {} iterations of the recursion in {secs:.2} s",
        grid.last().unwrap_or(&0)
    );
    println!(
        "{:>9} {:>13} {:>7} {:>13} {:>7} {:>13} {:>7}",
        "K", "theta_err_sq", "slope", "phi_gap_sq", "slope", "grad_norm_sq", "slope"
    );
    for i in 0..grid.len() {
        let mut line = format!("{:>9}", grid[i]);
        for c in &curves {
            let slope = if i == 0 {
                f64::NAN
            } else {
                (c.means[i] / c.means[i - 1]).ln() / (grid[i] as f64 / grid[i - 1] as f64).ln()
            };
            line += &format!(" {:>13.5e} {:>7.3}", c.means[i], slope);
        }
        println!("{line}");
    }
    Ok(())
}
