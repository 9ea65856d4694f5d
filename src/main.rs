//! The `bilevel` command-line tool: list what the crate holds, run the theory report.

use bilevel::families::REGISTRY;
use bilevel::problem::Bilevel;
use bilevel::{BilevelError, Vector};
use clap::{Parser, Subcommand};
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
    /// List the families (and, as they land, algorithms and claims).
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Run every check the crate has and print a table (the rate claims join as they land).
    Report {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::List { json } => list(json),
        Command::Report { json } => report(json),
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
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({ "families": families })).expect("serialisable")
        );
    } else {
        println!("{:<22} {:>4} {:>4}  summary", "family", "d_u", "d_l");
        for (e, p) in &fams {
            println!("{:<22} {:>4} {:>4}  {}", e.name, p.dims().d_u, p.dims().d_l, e.summary);
        }
    }
    Ok(())
}

/// Relative error between the closed-form ∇F and central differences of the closed-form F at θ* or 0.
fn hypergradient_check(p: &dyn Bilevel) -> Result<f64, BilevelError> {
    let d_u = p.dims().d_u;
    let theta = p.theta_star().unwrap_or_else(|| Vector::from_element(d_u, 0.3));
    let theta = &theta + Vector::from_fn(d_u, |i, _| 0.1 * (i as f64 + 1.0));
    let g = p.grad_f(&theta)?;
    let h = 1e-5;
    let fd = Vector::from_fn(d_u, |i, _| {
        let mut tp = theta.clone();
        let mut tm = theta.clone();
        tp[i] += h;
        tm[i] -= h;
        (p.value_f(&tp) - p.value_f(&tm)) / (2.0 * h)
    });
    Ok((&g - &fd).norm() / g.norm().max(1.0))
}

fn report(as_json: bool) -> Result<(), BilevelError> {
    let mut rows = Vec::new();
    for entry in REGISTRY {
        let p = (entry.build)(0)?;
        let err = hypergradient_check(p.as_ref())?;
        rows.push((entry.name, err, err < 1e-6));
    }
    if as_json {
        let checks: Vec<_> = rows
            .iter()
            .map(|(n, e, ok)| json!({"id": format!("exact-hypergradient/{n}"), "relative_error": e, "verdict": if *ok {"pass"} else {"fail"}}))
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({ "checks": checks })).expect("serialisable")
        );
    } else {
        println!("{:<40} {:>12}  verdict", "check", "rel. error");
        for (n, e, ok) in &rows {
            println!(
                "{:<40} {:>12.3e}  {}",
                format!("exact-hypergradient/{n}"),
                e,
                if *ok { "pass" } else { "FAIL" }
            );
        }
    }
    if rows.iter().all(|r| r.2) {
        Ok(())
    } else {
        Err(BilevelError::Unsupported("some checks failed".into()))
    }
}
