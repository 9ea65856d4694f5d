//! The `bilevel` command-line tool: list what the crate holds, run any problem, run the theory report (sharded
//! across machines if need be). Usage: docs/cli.md.

mod cli;

use bilevel::BilevelError;
use bilevel::algorithms;
use bilevel::claims;
use bilevel::families::REGISTRY;
use clap::{Parser, Subcommand};
use cli::output::{emit, emitln};
use cli::{CliResult, Failure};
use serde_json::json;
use std::process::ExitCode;

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
    /// List the families (with their declared constants), the algorithms and the claims, and explain the verdicts.
    #[command(after_help = cli::shard::VERDICT_LEGEND)]
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Run one algorithm on one problem and print the recorded metrics.
    Run(Box<cli::run::RunArgs>),
    /// Run every rate claim of theory/claims.toml and print the verdicts (the README's main command).
    #[command(after_help = cli::shard::VERDICT_LEGEND)]
    Report {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Also write one SVG plot per claim into this directory (checked for writing before any claim runs).
        #[arg(long)]
        out: Option<std::path::PathBuf>,
        /// Master seed of the replicate streams.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Only claims whose id starts with one of these comma-separated prefixes (ids: `bilevel list`).
        #[arg(long)]
        only: Option<String>,
        /// Run only shard I of N (1 <= I <= N) of the work and print its partial result as JSON, for
        /// `bilevel merge` (docs/cli.md).
        #[arg(long, value_name = "I/N", value_parser = cli::shard::parse_shard)]
        shard: Option<cli::shard::Shard>,
        /// Show progress on stderr even when it is not a terminal (on a terminal it is always shown).
        #[arg(long)]
        progress: bool,
    },
    /// Run every claim under master seeds 0..N and report how often each passes (the lucky-seed check). A claim
    /// passes the sweep when it fails under at most as many seeds as its rule's own false-failure rate allows (1% tight,
    /// 0.5% bound or refuted; binomial test at level 5%: 1 of 20, 3 of 100); a power test must catch its bug under
    /// every seed. Exit 1 otherwise.
    #[command(after_help = cli::shard::VERDICT_LEGEND)]
    Sweep {
        /// Number of master seeds N, in 1..=10000.
        #[arg(long, default_value_t = 20)]
        seeds: u64,
        /// Only claims whose id starts with one of these comma-separated prefixes (ids: `bilevel list`).
        #[arg(long)]
        only: Option<String>,
        /// Print JSON (passes, failing seeds, allowed failures, sweep verdict and fitted exponents per claim) instead
        /// of a table.
        #[arg(long)]
        json: bool,
        /// Run only shard I of N (1 <= I <= N) of the (simulation, seed) work and print its partial result as
        /// JSON, for `bilevel merge` (docs/cli.md).
        #[arg(long, value_name = "I/N", value_parser = cli::shard::parse_shard)]
        shard: Option<cli::shard::Shard>,
        /// Show progress on stderr even when it is not a terminal (on a terminal it is always shown).
        #[arg(long)]
        progress: bool,
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
        #[arg(long, allow_negative_numbers = true)]
        rtol: Option<f64>,
        /// Number of worst fields to print.
        #[arg(long, default_value_t = 10)]
        worst: usize,
    },
    /// Combine the partial results of `report --shard I/N` or `sweep --shard I/N` (one file per shard) into exactly
    /// the output of one machine.
    #[command(after_help = cli::shard::VERDICT_LEGEND)]
    Merge {
        /// The shard files, in any order.
        #[arg(required = true)]
        files: Vec<std::path::PathBuf>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// For a report: also write one SVG plot per claim into this directory.
        #[arg(long)]
        out: Option<std::path::PathBuf>,
    },
    /// Judge another implementation's Monte Carlo output (CSV or JSON: replicate, k, metric[, samples]) with the
    /// claims' fit, bootstrap and decision (docs/judge.md); exit 1 when the verdict is fail.
    Judge {
        /// The records: CSV with header `replicate,k,metric[,samples]`, or a JSON array of such objects.
        input: std::path::PathBuf,
        /// Judge against this registry claim (its exponent, kind, tolerance, horizons and replicates).
        #[arg(long, conflicts_with_all = ["exponent", "kind"])]
        claim: Option<String>,
        /// Theory exponent of a custom target (r < 0 for a decaying metric).
        #[arg(long, allow_negative_numbers = true, requires_all = ["kind", "tolerance"])]
        exponent: Option<f64>,
        /// Kind of a custom target: bound, tight, refuted_above or refuted_below.
        #[arg(long, requires = "exponent")]
        kind: Option<String>,
        /// Tolerance of a custom target's decision.
        #[arg(long, requires = "exponent", allow_negative_numbers = true)]
        tolerance: Option<f64>,
        /// A custom target's measure: slope, complexity_upper or complexity_lower (a registry claim has its own).
        #[arg(long, default_value = "slope", requires = "exponent", conflicts_with = "claim")]
        measure: String,
        /// Fit a custom target on the last N horizons (default: all; a registry claim has its own).
        #[arg(long, requires = "exponent", conflicts_with = "claim")]
        tail: Option<usize>,
        /// Master seed of the bootstrap streams.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Also write the plot (SVG) into this directory.
        #[arg(long)]
        out: Option<std::path::PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) if !e.use_stderr() => {
            // --help and --version: print them (a closed pipe ends quietly).
            let _ = emit(&e.render().to_string());
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprint!("{}", e.render());
            eprintln!("hint: `bilevel help` lists the commands, `bilevel help <command>` their options and ranges");
            return ExitCode::from(2);
        }
    };
    let command = match &cli.command {
        Command::List { .. } => "list",
        Command::Run(_) => "run",
        Command::Report { .. } => "report",
        Command::Sweep { .. } => "sweep",
        Command::Golden { .. } => "golden",
        Command::Check { .. } => "check",
        Command::Merge { .. } => "merge",
        Command::Judge { .. } => "judge",
    };
    let result: CliResult = match cli.command {
        Command::List { json } => list(json),
        Command::Report {
            json,
            out,
            seed,
            only,
            shard,
            progress,
        } => report(json, out.as_deref(), seed, only.as_deref(), shard, progress),
        Command::Sweep {
            seeds,
            only,
            json,
            shard,
            progress,
        } => sweep(seeds, only.as_deref(), json, shard, progress),
        Command::Golden { out, instance } => golden(&out, instance.as_deref()),
        Command::Check {
            golden,
            theirs,
            rtol,
            worst,
        } => check(&golden, &theirs, rtol, worst).map_err(Failure::from),
        Command::Run(args) => cli::run::run(&args),
        Command::Merge { files, json, out } => merge(&files, json, out.as_deref()),
        Command::Judge {
            input,
            claim,
            exponent,
            kind,
            tolerance,
            measure,
            tail,
            seed,
            out,
        } => cli::judge::judge(&cli::judge::Args {
            input,
            claim,
            exponent,
            kind,
            tolerance,
            measure,
            tail,
            seed,
            out,
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            // Exit 1 is a verdict (claims failed), not a malfunction: say it plainly.
            match (&f.error, f.code) {
                (BilevelError::Unsupported(m), 1) => eprintln!("error: {m}"),
                (e, _) => eprintln!("error: {e}"),
            }
            let hint = f.hint.unwrap_or_else(|| cli::hints::hint(&f.error, command));
            eprintln!("hint: {hint}");
            ExitCode::from(f.code)
        }
    }
}

fn list(as_json: bool) -> CliResult {
    let mut fams = Vec::new();
    for entry in REGISTRY {
        let p = (entry.build)(0)?;
        fams.push((entry, p));
    }
    let reg = claims::Registry::builtin()?;
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
        let claim_ids: Vec<_> = reg
            .claim
            .iter()
            .map(|c| json!({"id": c.id, "kind": c.kind, "title": c.title, "power_for": c.power_for, "note": c.note}))
            .chain(reg.rate.iter().map(
                |r| json!({"id": r.id, "kind": r.kind, "title": r.title, "power_for": r.power_for, "note": r.note}),
            ))
            .collect();
        emitln(
            &serde_json::to_string_pretty(&json!({
                "families": families,
                "algorithms": algorithms,
                "limitations": algorithms::LIMITATIONS,
                "claims": claim_ids,
            }))
            .expect("serialisable"),
        )?;
        return Ok(());
    }
    let num = |x: Option<f64>| match x {
        Some(v) if v.is_finite() && v.abs() < 1e4 => format!("{v:.4}"),
        Some(v) if v.is_finite() => format!("{v:.3e}"),
        Some(_) => "inf".into(),
        None => "-".into(),
    };
    let mut s = format!("{:<22} {:>4} {:>4}  summary\n", "family", "d_u", "d_l");
    for (e, p) in &fams {
        s += &format!(
            "{:<22} {:>4} {:>4}  {}\n",
            e.name,
            p.dims().d_u,
            p.dims().d_l,
            e.summary
        );
    }
    s += "\ndeclared constants (exact where computable, else valid bounds on Theta; '-' = none, inf = unbounded):\n";
    s += &format!(
        "{:<22} {:>9} {:>9} {:>9} {:>9} {:>9} {:>10}\n",
        "family", "mu_l", "L_l", "kappa", "mu_F", "L_F", "L_l/sample"
    );
    for (e, p) in &fams {
        let k = p.constants();
        s += &format!(
            "{:<22} {:>9} {:>9} {:>9} {:>9} {:>9} {:>10}\n",
            e.name,
            num(Some(k.mu_l)),
            num(Some(k.l_l)),
            num(Some(k.l_l / k.mu_l)),
            num(k.mu_f),
            num(Some(k.l_f)),
            num(k.l_l_sample)
        );
    }
    s += "(all constants: `bilevel list --json`; family parameters: `bilevel run --param NAME=VALUE`)\n";
    s += &format!("\n{:<22} summary\n", "algorithm");
    for (n, summary) in algorithms::ALGORITHMS {
        s += &format!("{n:<22} {summary}\n");
    }
    s += "\nknown limitations (pairs whose defaults do not converge; `run` warns before running them):\n";
    s += &limitations_grouped();
    s += &format!("\n{:<56} {:<8} title\n", "claim", "kind");
    for c in &reg.claim {
        let kind = if c.power_for.is_some() {
            "power".to_string()
        } else {
            c.kind.label().to_string()
        };
        s += &format!("{:<56} {:<8} {}\n", c.id, kind, c.title);
    }
    for r in &reg.rate {
        let kind = if r.power_for.is_some() {
            "power".to_string()
        } else {
            format!("{:?}", r.kind).to_lowercase()
        };
        s += &format!("{:<56} {:<8} {}\n", r.id, kind, r.title);
    }
    s += &format!("\n{}", cli::shard::VERDICT_LEGEND);
    emit(&s)?;
    Ok(())
}

/// `algorithms::LIMITATIONS` grouped by explanation (printed once), then by (family, when), listing the algorithms.
fn limitations_grouped() -> String {
    use algorithms::support::When;
    /// (family, when, algorithms) sharing one explanation.
    type Row = (&'static str, When, Vec<&'static str>);
    let mut groups: Vec<(&str, Vec<Row>)> = Vec::new();
    for l in algorithms::LIMITATIONS {
        let gi = match groups.iter().position(|(e, _)| *e == l.explanation) {
            Some(i) => i,
            None => {
                groups.push((l.explanation, Vec::new()));
                groups.len() - 1
            }
        };
        let rows = &mut groups[gi].1;
        match rows.iter_mut().find(|(f, w, _)| *f == l.family && *w == l.when) {
            Some(row) => row.2.push(l.algorithm),
            None => rows.push((l.family, l.when, vec![l.algorithm])),
        }
    }
    let mut s = String::new();
    for (explanation, rows) in groups {
        for (family, when, algs) in rows {
            let when = match when {
                When::Always => "always",
                When::WithNoise => "with noise",
            };
            let family = if family == "*" { "every family" } else { family };
            let algs = if algs == ["*"] {
                "every algorithm".to_string()
            } else {
                algs.join(", ")
            };
            s += &format!("  {family} ({when}): {algs}\n");
        }
        s += &format!("      {explanation}\n");
    }
    s
}

/// The claims and rates selected by `--only` (comma-separated id prefixes); an error if none.
fn selected(only: Option<&str>) -> CliResult<(Vec<claims::ClaimSpec>, Vec<claims::RateSpec>)> {
    let reg = claims::Registry::builtin()?;
    let specs: Vec<_> = reg.claim.iter().filter(|c| cli::keep(only, &c.id)).cloned().collect();
    let rates: Vec<_> = reg.rate.iter().filter(|r| cli::keep(only, &r.id)).cloned().collect();
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
        }
        .into());
    }
    Ok((specs, rates))
}

/// Print a shard's partial result as JSON.
fn print_partial(partial: &cli::shard::Partial) -> CliResult {
    emitln(&serde_json::to_string(partial).expect("serialisable"))?;
    Ok(())
}

fn report(
    as_json: bool,
    out: Option<&std::path::Path>,
    seed: u64,
    only: Option<&str>,
    shard: Option<cli::shard::Shard>,
    progress: bool,
) -> CliResult {
    use cli::shard;
    if shard.is_some() && out.is_some() {
        return Err(Failure::with_hint(
            BilevelError::Unsupported("a shard draws no plots".into()),
            "give --out to `bilevel merge`, which has every claim's result",
        ));
    }
    let (specs, rates) = selected(only)?;
    if let Some(dir) = out {
        cli::check_writable_dir(dir)?;
    }
    let plan = shard::report_units(&specs, &rates, seed);
    let mut bar = cli::output::Progress::new((specs.len() + rates.len()) as u64, "claims", progress);
    let done = shard::execute(&plan, &specs, &rates, shard, &mut bar)?;
    let ids: Vec<String> = rates
        .iter()
        .map(|r| r.id.clone())
        .chain(specs.iter().map(|c| c.id.clone()))
        .collect();
    if let Some(s) = shard {
        return print_partial(&shard::Partial {
            format: shard::FORMAT.into(),
            command: "report".into(),
            shard: s,
            seed: Some(seed),
            seeds: None,
            only: only.map(str::to_string),
            ids,
            units: plan.len(),
            done,
        });
    }
    // Exact expected slopes (issue 9 §1) come with each judged claim: the rule uses them.
    let results = shard::report_results(ids.len(), &done);
    if let Some(dir) = out {
        for r in &results {
            claims::plot(r, dir)?;
        }
    }
    shard::print_report(&results, seed, as_json, only.is_none())
}

fn sweep(seeds: u64, only: Option<&str>, as_json: bool, shard: Option<cli::shard::Shard>, progress: bool) -> CliResult {
    use cli::shard;
    if seeds == 0 || seeds > cli::MAX_SEEDS {
        return Err(Failure::with_hint(
            BilevelError::invalid("--seeds", seeds, &format!("must be in 1..={}", cli::MAX_SEEDS)),
            "`bilevel help sweep` lists the range; for more seeds than one machine can run, shard the sweep \
             (--shard I/N, docs/cli.md)",
        ));
    }
    // The deterministic rates do not depend on the seed: the sweep runs the Monte Carlo claims only.
    let (specs, rates) = selected(only)?;
    if specs.is_empty() {
        let ids: Vec<&str> = rates.iter().map(|r| r.id.as_str()).collect();
        return Err(Failure::with_hint(
            BilevelError::Unsupported(format!(
                "--only {} selects only deterministic rates ({}), which do not depend on the seed",
                only.unwrap_or(""),
                ids.join(", ")
            )),
            format!("run them once with `bilevel report --only {}`", only.unwrap_or("")),
        ));
    }
    let plan = shard::sweep_units(&specs, seeds);
    let mut bar = cli::output::Progress::new(seeds * specs.len() as u64, "claim runs", progress);
    let done = shard::execute(&plan, &specs, &[], shard, &mut bar)?;
    let ids: Vec<String> = specs.iter().map(|c| c.id.clone()).collect();
    if let Some(s) = shard {
        return print_partial(&shard::Partial {
            format: shard::FORMAT.into(),
            command: "sweep".into(),
            shard: s,
            seed: None,
            seeds: Some(seeds),
            only: only.map(str::to_string),
            ids,
            units: plan.len(),
            done,
        });
    }
    shard::print_sweep(&ids, seeds, &done, as_json)
}

/// `bilevel merge`: the output of one machine from the shards' partial results.
fn merge(files: &[std::path::PathBuf], as_json: bool, out: Option<&std::path::Path>) -> CliResult {
    use cli::shard;
    let (head, units) = shard::merge_files(files)?;
    match head.command.as_str() {
        "report" => {
            if let Some(dir) = out {
                cli::check_writable_dir(dir)?;
            }
            // The shards judged with the exact slopes already (claims::run_group_judged), as the unsharded report.
            let results = shard::report_results(head.ids.len(), &units);
            if let Some(dir) = out {
                for r in &results {
                    claims::plot(r, dir)?;
                }
            }
            shard::print_report(&results, head.seed.unwrap_or(0), as_json, head.only.is_none())
        }
        "sweep" => {
            if out.is_some() {
                return Err(Failure::with_hint(
                    BilevelError::Unsupported("a sweep has no plots".into()),
                    "drop --out (plots come from `bilevel report --out DIR`)",
                ));
            }
            shard::print_sweep(&head.ids, head.seeds.unwrap_or(0), &units, as_json)
        }
        other => Err(BilevelError::Malformed(format!("unknown shard command '{other}'")).into()),
    }
}

/// Whether two paths name one file: the same device and inode on Unix (so a hard link or a symlink to the input is
/// caught, not only another spelling of its path), the same canonical path elsewhere. `false` when either is missing.
fn same_file(a: &std::path::Path, b: &std::path::Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if let (Ok(x), Ok(y)) = (std::fs::metadata(a), std::fs::metadata(b)) {
            return x.dev() == y.dev() && x.ino() == y.ino();
        }
    }
    matches!((std::fs::canonicalize(a), std::fs::canonicalize(b)), (Ok(x), Ok(y)) if x == y)
}

/// `bilevel golden`: write the built-in golden files, or the golden file of a user's instance.
fn golden(out: &std::path::Path, instance: Option<&std::path::Path>) -> CliResult {
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
            // Never write over the user's input: the output is `<out>/<stem>.json`.
            let target = out.join(format!("{name}.json"));
            if same_file(&target, path) {
                return Err(Failure::with_hint(
                    BilevelError::invalid(
                        "--out",
                        out.display(),
                        &format!(
                            "the golden file {} would overwrite the input instance",
                            target.display()
                        ),
                    ),
                    "choose another --out directory (the golden file is named after the instance file)",
                ));
            }
            let (du, dl) = (inst.d_u, inst.d_l);
            let provenance = format!("user instance {} (d_u={du}, d_l={dl})", path.display());
            vec![golden::generate::generate(name, &provenance, &inst, 20)?]
        }
    };
    for path in golden::write_all(&files, out)? {
        emitln(&format!("wrote {}", path.display()))?;
    }
    if instance.is_none() {
        for path in golden::write_values(&golden::family::generate_families()?, out)? {
            println!("wrote {}", path.display());
        }
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
    emit(&report.render(worst))?;
    if !report.ok() {
        std::process::exit(1);
    }
    Ok(())
}
