//! The report table (human-readable); the plots are in `plot.rs` (feature `plots`).

use super::run::ClaimResult;
use super::spec::BugSpec;
use std::fmt::Write as _;

pub(super) fn kind_label(r: &ClaimResult) -> String {
    if r.power_for.is_some() {
        return "power".into();
    }
    let k = r.kind.label();
    // `*`: fitted where the start still dominates (ClaimSpec::regime says why it is kept).
    if r.regime.is_some() { format!("{k}*") } else { k.into() }
}

/// Every planted bug beside what caught it: the power entries of `results` (the claim whose rule caught the bug and
/// the rule's verdict) and the registry's `[[bug]]` entries (caught by a test, not by a rate).
pub fn bug_table(results: &[ClaimResult], bugs: &[BugSpec]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<12} {:<64} {:<44} verdict",
        "algorithm", "planted bug", "caught by"
    );
    for r in results.iter().filter(|r| r.power_for.is_some()) {
        let algo = r.id.trim_start_matches("power/").split('/').next().unwrap_or("");
        // Where the exact curve decided the verdict, the reason's head says how (the full text is in
        // `exact_table` and the JSON).
        let how = r
            .reason
            .as_deref()
            .and_then(|w| w.split(':').next())
            .map(|w| format!(" ({w})"))
            .unwrap_or_default();
        let _ = writeln!(
            s,
            "{:<12} {:<64} {:<44} {}",
            algo,
            r.bug.as_deref().unwrap_or("").chars().take(64).collect::<String>(),
            r.power_for.as_deref().unwrap_or(""),
            if r.ok() {
                format!("{}{how}", r.rule_verdict)
            } else {
                format!("MISSED ({}{how})", r.rule_verdict)
            }
        );
    }
    for b in bugs {
        let _ = writeln!(
            s,
            "{:<12} {:<64} {:<44} test",
            b.algorithm,
            b.bug.chars().take(64).collect::<String>(),
            b.caught_by
        );
    }
    s
}

/// The human-readable table: claim, kind, theory exponent, fitted exponent with interval, verdict, replicates,
/// horizons, seconds. `digits` rounds the numbers; `seconds = false` drops the wall-time column (the snapshot
/// test uses both so that only a change of results shows up).
pub fn table(results: &[ClaimResult], digits: usize, seconds: bool) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        "{:<52} {:<8} {:>7} {:>7} {:>18} {:>7} {:>6} {:>13}",
        "claim", "kind", "theory", "fitted", "interval", "verdict", "reps", "horizons"
    );
    let _ = writeln!(
        s,
        "{}",
        if seconds {
            format!(" {:>7}", "seconds")
        } else {
            String::new()
        }
    );
    for r in results {
        // A run that diverged (a power test's planted bug) has no fit: say so instead of printing inf and 0..0.
        let fitted = r.fitted_exponent.is_finite() && r.interval.iter().all(|x| x.is_finite());
        let (exponent, interval) = if fitted {
            (
                format!("{:.d$}", r.fitted_exponent, d = digits),
                format!("[{:.d$}, {:.d$}]", r.interval[0], r.interval[1], d = digits),
            )
        } else if r.rule_verdict.starts_with("diverged") {
            ("-".to_string(), "diverged".to_string())
        } else {
            ("-".to_string(), "no fit".to_string())
        };
        let hz = match (r.horizons.first(), r.horizons.last()) {
            (Some(a), Some(b)) => format!("{a}..{b}"),
            _ => "-".to_string(),
        };
        let _ = write!(
            s,
            "{:<52} {:<8} {:>7.d$} {:>7} {:>18} {:>7} {:>6} {:>13}",
            r.id,
            kind_label(r),
            r.theory_exponent,
            exponent,
            interval,
            if r.ok() { "pass" } else { "FAIL" },
            r.replicates,
            hz,
            d = digits
        );
        let _ = writeln!(
            s,
            "{}",
            if seconds {
                format!(" {:>7.1}", r.seconds)
            } else {
                String::new()
            }
        );
    }
    s
}

/// The exact curves the verdicts used (issue 9 §1): per claim with one (for a power test, the exact curve of the
/// claim it names), the exact slope on the claim's grid and far out, and the rule's reason where the exact curve
/// decided or explained the verdict; claims judged without an exact curve are listed only when that decided them.
pub fn exact_table(results: &[ClaimResult], digits: usize) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "{:<52} {:>10} {:>10}  reason", "claim", "exact grid", "exact far");
    let num = |x: Option<f64>| x.map_or("-".to_string(), |v| format!("{v:.digits$}"));
    for r in results
        .iter()
        .filter(|r| r.exact_slope_grid.is_some() || r.reason.is_some())
    {
        let _ = writeln!(
            s,
            "{:<52} {:>10} {:>10}  {}",
            r.id,
            num(r.exact_slope_grid),
            num(r.exact_slope_far),
            r.reason.as_deref().unwrap_or("")
        );
    }
    s
}
