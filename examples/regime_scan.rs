//! Choose a claim's horizons before spending Monte Carlo (issue 9 §3, honest regimes): the exact expected curve of
//! a registry claim (quadratic family, methods with a moment recursion: theory/exact-moments.md), with overrides,
//! printing at each horizon the mean of the claim's metric and statistic, the ratio start/mean and the local slope.
//!
//! `cargo run --release --example regime_scan <claim-id> <K1,K2,...> [dotted.key=toml-value ...]`, e.g.
//! `... bsa/rate 1000,10000,100000 algorithm.alpha.c=3.0 problem.theta0=[3.0,-3.0]`.

use bilevel::claims::{ClaimSpec, Registry};
use bilevel::exact::exact_curves;

fn set(v: &mut toml::Value, path: &str, new: toml::Value) -> Result<(), String> {
    let mut cur = v;
    let keys: Vec<&str> = path.split('.').collect();
    for (i, k) in keys.iter().enumerate() {
        let t = cur
            .as_table_mut()
            .ok_or_else(|| format!("{path}: not a table at {k}"))?;
        if i + 1 == keys.len() {
            t.insert((*k).into(), new);
            return Ok(());
        }
        cur = t
            .entry((*k).to_string())
            .or_insert(toml::Value::Table(Default::default()));
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let id = args.first().ok_or("claim id")?;
    let grid: Vec<usize> = args
        .get(1)
        .ok_or("grid")?
        .split(',')
        .map(|s| s.parse())
        .collect::<Result<_, _>>()?;
    // A horizon K = 0 has no iterate to measure (its slope and p-value would print as -0 and inf).
    if grid.contains(&0) {
        return Err("every horizon of the grid must be >= 1".into());
    }
    let spec = Registry::builtin()?
        .claim
        .into_iter()
        .find(|c| &c.id == id)
        .ok_or("no such claim")?;
    let mut v = toml::Value::try_from(&spec)?;
    for kv in &args[2..] {
        let (k, val) = kv.split_once('=').ok_or("key=value")?;
        let parsed: toml::Table = toml::from_str(&format!("x = {val}"))?;
        set(&mut v, k, parsed["x"].clone())?;
    }
    let spec: ClaimSpec = v.try_into()?;
    // The metric at the start, as the claim runner evaluates it (ClaimResult::start_value).
    let t = std::time::Instant::now();
    let c = exact_curves(&spec, &[(spec.metric, spec.statistic)], &grid)?.remove(0);
    let p = bilevel::claims::build_problem(&spec)?;
    let (theta0, phi0) = bilevel::claims::start_point(&spec, p.as_ref())?;
    let o0 = bilevel::problem::Oracle::new(p.as_ref(), 0);
    let start = spec.metric.eval(&o0, &bilevel::solver::Iterate::start(theta0, phi0))?;
    println!("{id}: start {start:.4e} ({:.1} s)", t.elapsed().as_secs_f64());
    for i in 0..grid.len() {
        let sl = if i == 0 {
            f64::NAN
        } else {
            (c.means[i] / c.means[i - 1]).ln() / (grid[i] as f64 / grid[i - 1] as f64).ln()
        };
        let sp = if i == 0 {
            f64::NAN
        } else {
            (c.upper_samples[i] / c.upper_samples[i - 1]).ln() / (c.means[i - 1] / c.means[i]).ln()
        };
        let spl = if i == 0 {
            f64::NAN
        } else {
            (c.lower_samples[i] / c.lower_samples[i - 1]).ln() / (c.means[i - 1] / c.means[i]).ln()
        };
        println!(
            "K {:>8} mean {:.4e} ratio {:>8.1} slope {:>7.3} p_u {:>6.3} p_l {:>6.3}",
            grid[i],
            c.means[i],
            start / c.means[i],
            sl,
            sp,
            spl
        );
    }
    Ok(())
}
