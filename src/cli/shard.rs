//! Sharding `report` and `sweep` across machines, and `merge`.
//!
//! The work is a list of units in a fixed order: for `report`, each deterministic rate, then each simulation (the
//! claims sharing a `run`) under the master seed; for `sweep`, each simulation under each seed `0..N` (seed-major).
//! Shard `I/N` takes the units whose index is `I-1` modulo `N`. A unit's result depends only on its simulation
//! and seed (replicate streams derive from both, `stats::run_replicates`), so running it anywhere gives the same
//! bits, and `merge` reassembles exactly what one machine prints.

use super::output::{Progress, emit, emitln};
use super::{CliResult, Failure};
use bilevel::BilevelError;
use bilevel::claims::{self, ClaimResult, ClaimSpec, RateSpec};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::path::{Path, PathBuf};

/// Shard `index` of `count` (1-based, as `--shard 3/8` and a Slurm array `--array=1-8` count).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    /// Which shard, 1..=count.
    pub index: usize,
    /// How many shards.
    pub count: usize,
}

/// Parse `I/N` with 1 <= I <= N (clap value parser).
pub fn parse_shard(text: &str) -> Result<Shard, String> {
    let bad = || format!("'{text}' is not I/N with 1 <= I <= N (e.g. --shard 3/8)");
    let (i, n) = text.split_once('/').ok_or_else(bad)?;
    let (index, count) = (
        i.trim().parse::<usize>().map_err(|_| bad())?,
        n.trim().parse::<usize>().map_err(|_| bad())?,
    );
    if index == 0 || index > count {
        return Err(bad());
    }
    Ok(Shard { index, count })
}

/// One unit of work.
#[derive(Debug, Clone)]
pub enum Unit {
    /// Deterministic rate number `i` (seed-independent).
    Rate(usize),
    /// The simulation shared by the claims at `members` (indices into the selected claims), under `seed`.
    Group {
        /// Master seed.
        seed: u64,
        /// Indices of the claims reading this simulation, in registry order.
        members: Vec<usize>,
    },
}

/// The simulations of `specs`: indices of the claims sharing each `run`, in order of first appearance.
fn groups(specs: &[ClaimSpec]) -> Vec<Vec<usize>> {
    let mut out: Vec<(String, Vec<usize>)> = Vec::new();
    for (i, s) in specs.iter().enumerate() {
        match out.iter_mut().find(|(r, _)| r == s.run_name()) {
            Some((_, v)) => v.push(i),
            None => out.push((s.run_name().to_string(), vec![i])),
        }
    }
    out.into_iter().map(|(_, v)| v).collect()
}

/// The units of `report` under `seed`.
pub fn report_units(specs: &[ClaimSpec], rates: &[RateSpec], seed: u64) -> Vec<Unit> {
    (0..rates.len())
        .map(Unit::Rate)
        .chain(groups(specs).into_iter().map(|members| Unit::Group { seed, members }))
        .collect()
}

/// The units of `sweep` over seeds `0..seeds`, seed-major.
pub fn sweep_units(specs: &[ClaimSpec], seeds: u64) -> Vec<Unit> {
    let g = groups(specs);
    (0..seeds)
        .flat_map(|seed| {
            g.iter().map(move |members| Unit::Group {
                seed,
                members: members.clone(),
            })
        })
        .collect()
}

/// The result of one unit: its index in the plan and the claims it judged.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UnitResult {
    /// Index of the unit in the plan.
    pub unit: usize,
    /// Master seed (`None` for a deterministic rate).
    pub seed: Option<u64>,
    /// Index of each result in the selection (rates first, then claims).
    pub slots: Vec<usize>,
    /// The judged claims.
    pub results: Vec<ClaimResult>,
}

/// Run the units of `plan` that belong to `shard` (all when `None`), with progress on stderr.
pub fn execute(
    plan: &[Unit],
    specs: &[ClaimSpec],
    rates: &[RateSpec],
    shard: Option<Shard>,
    progress: &mut Progress,
) -> CliResult<Vec<UnitResult>> {
    let mine: Vec<usize> = (0..plan.len())
        .filter(|u| shard.is_none_or(|s| u % s.count == s.index - 1))
        .collect();
    let claims: usize = mine
        .iter()
        .map(|u| match &plan[*u] {
            Unit::Rate(_) => 1,
            Unit::Group { members, .. } => members.len(),
        })
        .sum();
    progress.set_total(claims as u64);
    // Units run concurrently (each unit's replicates are parallel too): a unit's results depend only on its seed
    // and its members, never on scheduling, so the output is the same bits for any thread count; collected in plan
    // order, the first error by unit index wins (as in a sequential loop).
    let progress = std::sync::Mutex::new(progress);
    let run_unit = |u: usize| -> CliResult<UnitResult> {
        let r = match &plan[u] {
            Unit::Rate(i) => UnitResult {
                unit: u,
                seed: None,
                slots: vec![*i],
                results: vec![claims::run_rate(&rates[*i])?],
            },
            Unit::Group { seed, members } => {
                let group: Vec<&ClaimSpec> = members.iter().map(|i| &specs[*i]).collect();
                let results = claims::run_group_judged(&group, *seed).map_err(|e| match e {
                    BilevelError::Diverged { iter, what } => BilevelError::Diverged {
                        iter,
                        what: format!("{what} (seed {seed})"),
                    },
                    other => other,
                })?;
                UnitResult {
                    unit: u,
                    seed: Some(*seed),
                    slots: members.iter().map(|i| rates.len() + i).collect(),
                    results,
                }
            }
        };
        let label = r.results.first().map(|c| c.id.clone()).unwrap_or_default();
        let mut bar = progress.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for _ in &r.results {
            bar.inc(&label);
        }
        Ok(r)
    };
    let done: Vec<CliResult<UnitResult>> = mine.into_par_iter().map(run_unit).collect();
    let out = done.into_iter().collect::<CliResult<Vec<UnitResult>>>()?;
    progress
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .finish();
    Ok(out)
}

/// A shard's partial result (the JSON that `report --shard` and `sweep --shard` print).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Partial {
    /// Always `bilevel-shard-1`: the format of this file.
    pub format: String,
    /// `report` or `sweep`.
    pub command: String,
    /// This shard.
    pub shard: Shard,
    /// `report`: the master seed.
    pub seed: Option<u64>,
    /// `sweep`: the number of seeds.
    pub seeds: Option<u64>,
    /// The `--only` filter.
    pub only: Option<String>,
    /// The selected ids, rates first, in report order (the merge checks that every shard agrees).
    pub ids: Vec<String>,
    /// Number of units in the whole plan.
    pub units: usize,
    /// The units this shard ran.
    pub done: Vec<UnitResult>,
}

/// The format tag of [`Partial`].
pub const FORMAT: &str = "bilevel-shard-1";

/// Read and check the shard files, and return their units in plan order with the shared header.
pub fn merge_files(files: &[PathBuf]) -> CliResult<(Partial, Vec<UnitResult>)> {
    let mut parts = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(f).map_err(|e| BilevelError::io("read", f, &e))?;
        let p: Partial = serde_json::from_str(&text).map_err(|e| {
            Failure::with_hint(
                BilevelError::Malformed(format!("{} is not a shard result: {e}", f.display())),
                "give the files that `bilevel report --shard I/N` or `bilevel sweep --shard I/N` wrote",
            )
        })?;
        if p.format != FORMAT {
            return Err(BilevelError::Malformed(format!(
                "{}: format '{}', expected '{FORMAT}'",
                f.display(),
                p.format
            ))
            .into());
        }
        parts.push((f.clone(), p));
    }
    let (first_path, first) = parts.first().cloned().ok_or_else(|| {
        Failure::with_hint(
            BilevelError::Unsupported("no shard files given".into()),
            "bilevel merge part-*.json",
        )
    })?;
    let mut seen = vec![None::<&Path>; first.shard.count];
    for (path, p) in &parts {
        let same = p.command == first.command
            && p.seed == first.seed
            && p.seeds == first.seeds
            && p.only == first.only
            && p.ids == first.ids
            && p.units == first.units
            && p.shard.count == first.shard.count;
        if !same {
            return Err(Failure::with_hint(
                BilevelError::Malformed(format!(
                    "{} and {} come from different jobs (command, seed, seeds, --only, claims or shard count differ)",
                    first_path.display(),
                    path.display()
                )),
                "merge only the shards of one job, all run by the same bilevel version",
            ));
        }
        if let Some(other) = seen[p.shard.index - 1] {
            return Err(Failure::with_hint(
                BilevelError::Malformed(format!(
                    "shard {}/{} given twice: {} and {}",
                    p.shard.index,
                    p.shard.count,
                    other.display(),
                    path.display()
                )),
                "give each shard's file once",
            ));
        }
        seen[p.shard.index - 1] = Some(path);
    }
    let missing: Vec<String> = seen
        .iter()
        .enumerate()
        .filter(|(_, s)| s.is_none())
        .map(|(i, _)| format!("{}/{}", i + 1, first.shard.count))
        .collect();
    if !missing.is_empty() {
        return Err(Failure::with_hint(
            BilevelError::Unsupported(format!("missing shards: {}", missing.join(", "))),
            "run the missing shards (same command with --shard I/N) and merge all files",
        ));
    }
    let mut units: Vec<Option<UnitResult>> = vec![None; first.units];
    for (path, p) in parts {
        for u in p.done {
            let ok = u.unit < first.units
                && u.unit % first.shard.count == p.shard.index - 1
                && u.slots.len() == u.results.len()
                && u.slots.iter().all(|s| *s < first.ids.len())
                && u.results.iter().zip(&u.slots).all(|(r, s)| r.id == first.ids[*s]);
            if !ok || units[u.unit].is_some() {
                return Err(BilevelError::Malformed(format!(
                    "{}: unit {} does not belong to shard {}/{}",
                    path.display(),
                    u.unit,
                    p.shard.index,
                    p.shard.count
                ))
                .into());
            }
            let i = u.unit;
            units[i] = Some(u);
        }
    }
    let units: Option<Vec<UnitResult>> = units.into_iter().collect();
    let units = units.ok_or_else(|| {
        Failure::with_hint(
            BilevelError::Malformed("the shard files do not cover every unit of the job".into()),
            "a shard file was truncated or edited: rerun that shard",
        )
    })?;
    Ok((first, units))
}

/// The report's results in report order (rates, then claims) from all of its units.
pub fn report_results(n: usize, units: &[UnitResult]) -> Vec<ClaimResult> {
    let mut slots: Vec<Option<ClaimResult>> = vec![None; n];
    for u in units {
        for (s, r) in u.slots.iter().zip(&u.results) {
            slots[*s] = Some(r.clone());
        }
    }
    slots.into_iter().flatten().collect()
}

/// Print the report (table or JSON); error (exit 1) if a claim failed.
///
/// Every planted bug is listed beside what caught it: the power entries of `results` and, with `all_bugs` (the whole
/// registry was run, not an `--only` subset), the registry's `[[bug]]` entries caught by tests rather than rates.
pub fn print_report(results: &[ClaimResult], seed: u64, as_json: bool, all_bugs: bool) -> CliResult {
    let bugs = if all_bugs {
        claims::Registry::builtin()?.bug
    } else {
        Vec::new()
    };
    if as_json {
        let planted: Vec<_> = results
            .iter()
            .filter(|r| r.power_for.is_some())
            .map(|r| json!({"bug": r.bug, "power_test": r.id, "claim": r.power_for, "verdict": r.rule_verdict, "reason": r.reason, "caught": r.ok()}))
            .chain(bugs.iter().map(|b| json!({"bug": b.bug, "algorithm": b.algorithm, "switch": b.switch, "test": b.caught_by, "why": b.why})))
            .collect();
        emitln(
            &serde_json::to_string_pretty(&json!({ "seed": seed, "claims": results, "planted_bugs": planted }))
                .expect("serialisable"),
        )?;
    } else {
        let failed = results.iter().filter(|r| !r.ok()).count();
        emit(&format!(
            "{}\nexact curves (the rule's second test; theory/exact-moments.md)\n{}\nplanted bugs\n{}\n{} passed, {} failed\n\n{}",
            claims::table(results, 3, true),
            claims::exact_table(results, 3),
            claims::bug_table(results, &bugs),
            results.len() - failed,
            failed,
            VERDICT_LEGEND
        ))?;
    }
    claims_failed(results.iter().filter(|r| !r.ok()).count())
}

/// Print the sweep (table or JSON) from all of its units; error (exit 1) if a claim failed the sweep: a power test
/// whose bug slipped through under some seed, or a claim that failed under more seeds than its rule's own
/// false-failure rate allows ([`bilevel::stats::decision::sweep_allowance`]; theory/README.md, "Decision rules").
pub fn print_sweep(ids: &[String], seeds: u64, units: &[UnitResult], as_json: bool) -> CliResult {
    use bilevel::stats::decision::{SWEEP_LEVEL, poisson_binomial_upper_tail, sweep_allowance};
    // Per claim: the verdict and fitted exponent under each seed, in seed order, and its per-seed false-failure
    // rate (None for a power test: a bug must be caught under every seed).
    let mut per: Vec<Vec<(u64, bool, f64)>> = vec![Vec::new(); ids.len()];
    let mut rate: Vec<Option<f64>> = vec![None; ids.len()];
    for u in units {
        for (s, r) in u.slots.iter().zip(&u.results) {
            per[*s].push((u.seed.unwrap_or(0), r.ok(), r.fitted_exponent));
            rate[*s] = claims::false_failure_rate(r);
        }
    }
    for p in &mut per {
        p.sort_by_key(|x| x.0);
    }
    let passes: Vec<u64> = per.iter().map(|p| p.iter().filter(|x| x.1).count() as u64).collect();
    let allowed: Vec<u64> = rate
        .iter()
        .map(|r| r.map_or(0, |p| sweep_allowance(seeds, p, SWEEP_LEVEL)))
        .collect();
    let ok: Vec<bool> = passes.iter().zip(&allowed).map(|(n, a)| seeds - n <= *a).collect();
    let all = passes.iter().filter(|p| **p == seeds).count();
    let n_ok = ok.iter().filter(|x| **x).count();
    // The registry as a whole, per simulation and seed (claims sharing a run are judged on one set of replicates,
    // so they fail together): a unit fails when one of its claims (not power tests) fails. Its false-failure
    // probability is at most the sum of its claims' rates, units are independent, and the tail of their count is
    // increasing in each probability: the Poisson-binomial tail at those sums bounds it.
    let (mut unit_p, mut unit_fails) = (Vec::new(), 0usize);
    for u in units {
        let rates: Vec<f64> = u.results.iter().filter_map(claims::false_failure_rate).collect();
        if rates.is_empty() {
            continue;
        }
        unit_p.push(rates.iter().sum::<f64>().min(1.0));
        unit_fails += usize::from(u.results.iter().any(|r| r.power_for.is_none() && !r.ok()));
    }
    let unit_runs = unit_p.len();
    let expected = unit_p.iter().fold(0.0, |a, p| a + p);
    let tail = poisson_binomial_upper_tail(&unit_p, unit_fails);
    if as_json {
        let rows: Vec<_> = ids
            .iter()
            .zip(&per)
            .zip(passes.iter().zip(&allowed).zip(&ok))
            .map(|((id, p), ((n, a), o))| {
                json!({
                    "id": id, "passes": n,
                    "failed_seeds": p.iter().filter(|x| !x.1).map(|x| x.0).collect::<Vec<_>>(),
                    "allowed_failures": a,
                    "sweep_verdict": if *o { "pass" } else { "fail" },
                    "fitted": p.iter().map(|x| x.2).collect::<Vec<_>>(),
                })
            })
            .collect();
        emitln(
            &serde_json::to_string_pretty(&json!({
                "seeds": seeds,
                "sweep_level": SWEEP_LEVEL,
                "failed_runs": unit_fails,
                "claim_runs": unit_runs,
                "expected_failed_runs_at_most": expected,
                "failed_runs_tail_at_most": tail,
                "claims": rows,
            }))
            .expect("serialisable"),
        )?;
    } else {
        let mut s = format!("{:<52} {:>10} {:>8} {:>6}\n", "claim", "passes", "allowed", "sweep");
        for ((id, p), (a, o)) in ids.iter().zip(&passes).zip(allowed.iter().zip(&ok)) {
            let verdict = if *o { "pass" } else { "FAIL" };
            s += &format!("{id:<52} {p:>6}/{seeds} {a:>8} {verdict:>6}\n");
        }
        s += &format!(
            "\n{all} of {n} claims passed under every seed; {n_ok} of {n} passed the sweep: a claim may fail under at \
             most 'allowed' seeds,\nits rule's own false-failure rate (1% tight, 0.5% bound or refuted) at a binomial \
             test of level {SWEEP_LEVEL}; a power test must catch its bug under every seed.\n",
            n = ids.len(),
        );
        if unit_runs > 0 {
            s += &format!(
                "Claim runs (simulation x seed, power tests aside): {unit_fails} of {unit_runs} failed, at most \
                 {expected:.1} expected from the rules' rates, P(>= {unit_fails}) <= {tail:.3}.\n",
            );
        }
        s += &format!("\n{VERDICT_LEGEND}");
        emit(&s)?;
    }
    claims_failed(ok.iter().filter(|x| !**x).count())
}

fn claims_failed(n: usize) -> CliResult {
    if n == 0 {
        return Ok(());
    }
    Err(Failure {
        error: BilevelError::Unsupported(format!("{n} claim(s) failed: see the table")),
        hint: Some(
            "a failed claim is information, not noise: read its note in theory/ (`bilevel list --json` names it) \
             and rerun it alone with --only ID"
                .into(),
        ),
        code: 1,
    })
}

/// What the report's words mean (printed under every report and sweep, and by `bilevel list`).
pub const VERDICT_LEGEND: &str = "\
How claims are judged (theory = the theorem's exponent r, tol = the claim's tolerance, interval = the 99%
bootstrap interval of the fitted exponent over replicates; theory/README.md):
  bound    an upper bound: pass when the interval lies below r + tol (decays at least as fast as the theorem
           says, or needs at most as many samples);
  tight    the family attains the bound: pass when the interval lies inside [r - tol, r + tol] and either
           contains r, or the exact expected curve explains the miss (its slope on the claim's grid lies in the
           interval and its slope at K = 1e5..1e6 is within tol/4 of r); else 'not tight' (FAIL);
  refuted  a statement of the lecture that is false: pass when the interval lies beyond r + tol (refuted>) or
           below r - tol (refuted<);
  exact    where the exact curve exists (quadratic family), its far slope must agree too: a bound or tight
           claim fails when it is beyond r + tol (tight: outside the band), a refutation when it is not;
  power    a power test: the rule of the claim it names, applied to a planted bug; 'pass' means the bug was
           caught (the rule failed), 'FAIL' that it slipped through.
An interval straddling a boundary is inconclusive and shows as FAIL. reps = independent replicates R;
horizons = smallest..largest K of the grid (the fit uses its tail); fitted - = no fit (a diverged run).
";
