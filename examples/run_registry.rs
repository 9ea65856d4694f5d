//! Run claims from a registry file instead of the compiled-in one (design iterations without rebuilding the crate):
//! `cargo run --release --example run_registry <claims.toml> <prefix,prefix> [seed]`. Prints the report table with
//! each claim's regime ratio (start / mean at the largest horizon) and its means.

use bilevel::claims::{Registry, run_all, table};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let text = std::fs::read_to_string(args.first().ok_or("registry path")?)?;
    let prefixes: Vec<String> = args.get(1).ok_or("prefixes")?.split(',').map(String::from).collect();
    let seed: u64 = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(0);
    let reg = Registry::parse(&text)?;
    let specs: Vec<_> = reg
        .claim
        .into_iter()
        .filter(|c| prefixes.iter().any(|p| c.id.starts_with(p.as_str())))
        .collect();
    let res = run_all(&specs, seed, |_| {})?;
    println!("{}", table(&res, 3, true));
    for r in &res {
        println!(
            "{}: ratio {:?} start {:?} means {:?}",
            r.id, r.regime_ratio, r.start_value, r.means
        );
    }
    Ok(())
}
