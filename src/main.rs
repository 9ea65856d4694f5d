//! The `bilevel` command-line tool: list what the crate holds, run the theory report.

use bilevel::algorithms;
use bilevel::claims;
use bilevel::families::{self, REGISTRY};
use bilevel::problem::{NoiseLevels, Noisy, Oracle};
use bilevel::solver::{self, Metric, Recorder};
use bilevel::{BilevelError, Vector};
use clap::{Parser, Subcommand};
use serde_json::json;
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Parser)]
#[command(
    name = "bilevel",
    version,
    about = "Reference implementation and theory test-suite for stochastic bilevel optimization"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List the families (and, as they land, algorithms and claims).
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Run one algorithm on one problem and print the recorded metrics.
    Run {
        /// Algorithm name (see `bilevel list`).
        #[arg(long)]
        algo: String,
        /// Problem (family) name (see `bilevel list`).
        #[arg(long)]
        problem: String,
        /// Outer iterations K.
        #[arg(long, default_value_t = 1000)]
        iters: usize,
        /// Seed of the run (the family instance is built from seed 0).
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Standard deviation of the additive oracle noise; 0 turns the noise off.
        #[arg(long, default_value_t = 0.1, allow_negative_numbers = true)]
        noise: f64,
        /// Print JSON.
        #[arg(long, conflicts_with = "csv")]
        json: bool,
        /// Print CSV.
        #[arg(long)]
        csv: bool,
    },
    /// Run every rate claim of theory/claims.toml and print the verdicts (the README's main command).
    Report {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Also write one SVG plot per claim into this directory.
        #[arg(long)]
        out: Option<std::path::PathBuf>,
        /// Master seed of the replicate streams.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Only claims whose id starts with this prefix.
        #[arg(long)]
        only: Option<String>,
    },
    /// Run every claim under master seeds 0..N and report how often each passes (the lucky-seed check).
    Sweep {
        /// Number of master seeds.
        #[arg(long, default_value_t = 20)]
        seeds: u64,
        /// Only claims whose id starts with this prefix.
        #[arg(long)]
        only: Option<String>,
    },
    /// Write golden files (docs/golden-format.md): the built-in instances, or your own quadratic instance.
    Golden {
        /// Output directory (created if missing).
        #[arg(long)]
        out: std::path::PathBuf,
        /// A quadratic instance in JSON (format: docs/golden-format.md); writes `<file stem>.json` into --out.
        #[arg(long)]
        instance: Option<std::path::PathBuf>,
    },
    /// Compare another implementation's output (golden schema) with a golden file; exit 1 on a mismatch.
    Check {
        /// The golden file.
        golden: std::path::PathBuf,
        /// Their output in the same schema (any subset of the sections).
        theirs: std::path::PathBuf,
        /// One relative tolerance for every section instead of the documented per-section ones.
        #[arg(long)]
        rtol: Option<f64>,
        /// Number of worst fields to print.
        #[arg(long, default_value_t = 10)]
        worst: usize,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::List { json } => list(json),
        Command::Report { json, out, seed, only } => report(json, out.as_deref(), seed, only.as_deref()),
        Command::Sweep { seeds, only } => sweep(seeds, only.as_deref()),
        Command::Golden { out, instance } => golden(&out, instance.as_deref()),
        Command::Check {
            golden,
            theirs,
            rtol,
            worst,
        } => check(&golden, &theirs, rtol, worst),
        Command::Run {
            algo,
            problem,
            iters,
            seed,
            noise,
            json,
            csv,
        } => run(&algo, &problem, iters, seed, noise, json, csv),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            if let Some(hint) = hint(&e) {
                eprintln!("hint: {hint}");
            }
            ExitCode::from(2)
        }
    }
}

/// How to fix the most common mistakes.
fn hint(e: &BilevelError) -> Option<&'static str> {
    match e {
        BilevelError::Unknown { .. } => Some("run `bilevel list` to see the accepted names"),
        BilevelError::InvalidParameter { .. } => Some("see `bilevel help` for the accepted ranges"),
        BilevelError::StepCondition(_) | BilevelError::Diverged { .. } => {
            Some("reduce the step sizes, or lower --noise; the defaults follow the family's constants")
        }
        BilevelError::DimensionMismatch { .. } => Some("check the sizes in your input against `bilevel list --json`"),
        _ => None,
    }
}

fn list(as_json: bool) -> Result<(), BilevelError> {
    let mut fams = Vec::new();
    for entry in REGISTRY {
        let p = (entry.build)(0)?;
        fams.push((entry, p));
    }
    if as_json {
        let families: Vec<_> = fams
            .iter()
            .map(|(e, p)| {
                json!({
                    "name": e.name,
                    "summary": e.summary,
                    "d_u": p.dims().d_u,
                    "d_l": p.dims().d_l,
                    "domain": p.domain(),
                    "theta_star_known": p.theta_star().is_some(),
                    "constants": p.constants(),
                })
            })
            .collect();
        let algorithms: Vec<_> = algorithms::ALGORITHMS
            .iter()
            .map(|(n, summary)| json!({"name": n, "summary": summary}))
            .collect();
        let reg = claims::Registry::builtin()?;
        let claim_ids: Vec<_> = reg
            .claim
            .iter()
            .map(|c| json!({"id": c.id, "kind": c.kind, "title": c.title, "power_for": c.power_for}))
            .chain(
                reg.rate
                    .iter()
                    .map(|r| json!({"id": r.id, "kind": r.kind, "title": r.title, "power_for": null})),
            )
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(
                &json!({ "families": families, "algorithms": algorithms, "claims": claim_ids })
            )
            .expect("serialisable")
        );
    } else {
        println!("{:<22} {:>4} {:>4}  summary", "family", "d_u", "d_l");
        for (e, p) in &fams {
            println!("{:<22} {:>4} {:>4}  {}", e.name, p.dims().d_u, p.dims().d_l, e.summary);
        }
        println!("\n{:<22} summary", "algorithm");
        for (n, summary) in algorithms::ALGORITHMS {
            println!("{n:<22} {summary}");
        }
    }
    Ok(())
}

fn selected(only: Option<&str>) -> Result<(Vec<claims::ClaimSpec>, Vec<claims::RateSpec>), BilevelError> {
    let reg = claims::Registry::builtin()?;
    let keep = |id: &str| only.is_none_or(|p| id.starts_with(p));
    let specs: Vec<_> = reg.claim.iter().filter(|c| keep(&c.id)).cloned().collect();
    let rates: Vec<_> = reg.rate.iter().filter(|r| keep(&r.id)).cloned().collect();
    if specs.is_empty() && rates.is_empty() {
        let ids: Vec<&str> = reg
            .claim
            .iter()
            .map(|c| c.id.as_str())
            .chain(reg.rate.iter().map(|r| r.id.as_str()))
            .collect();
        return Err(BilevelError::Unknown {
            kind: "claim prefix".into(),
            name: only.unwrap_or("").into(),
            accepted: ids.join(", "),
        });
    }
    Ok((specs, rates))
}

fn progress_bar(n: u64) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::with_draw_target(Some(n), indicatif::ProgressDrawTarget::stderr());
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} {elapsed} {msg}").expect("valid template"),
    );
    bar
}

fn report(as_json: bool, out: Option<&std::path::Path>, seed: u64, only: Option<&str>) -> Result<(), BilevelError> {
    let (specs, rates) = selected(only)?;
    let bar = progress_bar((specs.len() + rates.len()) as u64);
    let mut results = Vec::new();
    for r in &rates {
        results.push(claims::run_rate(r)?);
        bar.inc(1);
    }
    results.extend(claims::run_all(&specs, seed, |r| {
        bar.set_message(r.id.clone());
        bar.inc(1);
    })?);
    bar.finish_and_clear();
    // Exact expected slopes where the moment recursion applies (issue 9 §1): seed-independent, report only.
    let n_rates = rates.len();
    bilevel::exact::attach_exact_slopes(&specs, &mut results[n_rates..])?;
    if let Some(dir) = out {
        for r in &results {
            claims::plot(r, dir)?;
        }
    }
    if as_json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({ "seed": seed, "claims": results })).expect("serialisable")
        );
    } else {
        print!("{}", claims::table(&results, 3, true));
        let failed = results.iter().filter(|r| !r.ok()).count();
        println!("\n{} passed, {} failed", results.len() - failed, failed);
    }
    if results.iter().all(|r| r.ok()) {
        Ok(())
    } else {
        Err(BilevelError::Unsupported("some claims failed: see the table".into()))
    }
}

fn sweep(seeds: u64, only: Option<&str>) -> Result<(), BilevelError> {
    // The deterministic rates do not depend on the seed: the sweep runs the Monte Carlo claims only.
    let (specs, _) = selected(only)?;
    let bar = progress_bar(seeds * specs.len() as u64);
    let mut passes = vec![0u64; specs.len()];
    for seed in 0..seeds {
        let results = claims::run_all(&specs, seed, |_| bar.inc(1))?;
        for (p, r) in passes.iter_mut().zip(&results) {
            *p += r.ok() as u64;
        }
    }
    bar.finish_and_clear();
    println!("{:<52} {:>10}", "claim", "passes");
    for (s, p) in specs.iter().zip(&passes) {
        println!("{:<52} {:>6}/{seeds}", s.id, p);
    }
    let all = passes.iter().all(|p| *p == seeds);
    println!(
        "\n{} of {} claims passed under every seed",
        passes.iter().filter(|p| **p == seeds).count(),
        specs.len()
    );
    if all {
        Ok(())
    } else {
        Err(BilevelError::Unsupported("some claims failed under some seed".into()))
    }
}

/// Checkpoints of `bilevel run`: 0, then a geometric grid up to `iters` (about 8 per decade), then `iters`.
fn checkpoints(iters: usize) -> Vec<usize> {
    let mut c = vec![0];
    let mut x = 1.0f64;
    while (x as usize) < iters {
        c.push(x as usize);
        x *= 1.333;
    }
    c.push(iters);
    c.dedup();
    c
}

fn run(
    algo: &str,
    problem: &str,
    iters: usize,
    seed: u64,
    noise: f64,
    json: bool,
    csv: bool,
) -> Result<(), BilevelError> {
    if !(noise.is_finite() && noise >= 0.0) {
        return Err(BilevelError::invalid(
            "--noise",
            noise,
            "must be a finite number >= 0 (0 turns the noise off)",
        ));
    }
    if iters == 0 {
        return Err(BilevelError::invalid("--iters", 0, "must be >= 1"));
    }
    let base = families::build(problem, 0)?;
    let noisy = Noisy::new(Arc::clone(&base), NoiseLevels::uniform(noise))?;
    let p: &dyn bilevel::problem::Bilevel = if noise > 0.0 { &noisy } else { base.as_ref() };
    let mut solver = algorithms::build(algo, p, iters)?;
    let mut o = Oracle::new(p, seed);
    let metrics: Vec<Metric> = [Metric::GradNormSq, Metric::ThetaErrSq, Metric::PhiGapSq, Metric::FValue]
        .into_iter()
        .filter(|m| m.available(&o))
        .collect();
    let d = p.dims();
    // θ⁰ = P_Θ(1), φ⁰ = 0: a fixed, documented start away from θ*.
    let mut theta0 = Vector::from_element(d.d_u, 1.0);
    p.domain().project(&mut theta0);
    let phi0 = Vector::zeros(d.d_l);
    let mut rec = Recorder::new(&metrics, &checkpoints(iters), false);
    let last = solver::run(solver.as_mut(), &mut o, &theta0, &phi0, iters, &mut rec)?;
    let trace = rec.finish();
    if json {
        let rows: Vec<_> = trace
            .checkpoints
            .iter()
            .zip(&trace.values)
            .zip(&trace.counts)
            .map(|((k, v), c)| {
                let mut row = serde_json::Map::new();
                row.insert("k".into(), json!(k));
                for (m, x) in trace.metrics.iter().zip(v) {
                    row.insert(m.key().into(), json!(x));
                }
                row.insert("counts".into(), json!(c));
                serde_json::Value::Object(row)
            })
            .collect();
        let mut fin = rows.last().cloned().unwrap_or_default();
        if let Some(obj) = fin.as_object_mut() {
            obj.insert("theta".into(), json!(last.theta.as_slice()));
            obj.insert("phi".into(), json!(last.phi.as_slice()));
        }
        let out = json!({
            "algorithm": algo, "problem": problem, "iters": iters, "seed": seed, "noise": noise,
            "trace": rows, "final": fin,
        });
        println!("{}", serde_json::to_string_pretty(&out).expect("serialisable"));
    } else {
        let sep = if csv { "," } else { " " };
        let head: Vec<String> = std::iter::once("k".to_string())
            .chain(trace.metrics.iter().map(|m| m.key().to_string()))
            .chain(["upper_samples".into(), "lower_samples".into()])
            .collect();
        if csv {
            println!("{}", head.join(sep));
        } else {
            println!(
                "{}",
                head.iter().map(|h| format!("{h:>16}")).collect::<Vec<_>>().join(sep)
            );
        }
        for ((k, v), c) in trace.checkpoints.iter().zip(&trace.values).zip(&trace.counts) {
            let cells: Vec<String> = std::iter::once(k.to_string())
                .chain(v.iter().map(|x| format!("{x:.6e}")))
                .chain([c.upper_samples.to_string(), c.lower_samples.to_string()])
                .collect();
            if csv {
                println!("{}", cells.join(sep));
            } else {
                println!(
                    "{}",
                    cells.iter().map(|h| format!("{h:>16}")).collect::<Vec<_>>().join(sep)
                );
            }
        }
    }
    Ok(())
}

/// `bilevel golden`: write the built-in golden files, or the golden file of a user's instance.
fn golden(out: &std::path::Path, instance: Option<&std::path::Path>) -> Result<(), BilevelError> {
    use bilevel::golden;
    let files = match instance {
        None => golden::generate::generate_builtins()?,
        Some(path) => {
            let inst = golden::read_instance(path)?;
            let name = path
                .file_stem()
                .and_then(|s| s.to_str())
                .filter(|s| !s.is_empty())
                .unwrap_or("instance");
            let (du, dl) = (inst.d_u, inst.d_l);
            let provenance = format!("user instance {} (d_u={du}, d_l={dl})", path.display());
            vec![golden::generate::generate(name, &provenance, &inst, 20)?]
        }
    };
    for path in golden::write_all(&files, out)? {
        println!("wrote {}", path.display());
    }
    Ok(())
}

/// `bilevel check`: compare field by field; exit 0 when every field is within tolerance, 1 on a mismatch.
fn check(
    golden: &std::path::Path,
    theirs: &std::path::Path,
    rtol: Option<f64>,
    worst: usize,
) -> Result<(), BilevelError> {
    use bilevel::golden::check::{Tolerances, check_files};
    let tol = match rtol {
        Some(r) if r.is_finite() && r >= 0.0 => Tolerances::uniform(r),
        Some(r) => return Err(BilevelError::invalid("--rtol", r, "must be finite and >= 0")),
        None => Tolerances::conformance(),
    };
    let report = check_files(golden, theirs, &tol)?;
    print!("{}", report.render(worst));
    if !report.ok() {
        std::process::exit(1);
    }
    Ok(())
}
