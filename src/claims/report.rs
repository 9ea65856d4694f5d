//! The report table (human-readable); the plots are in `plot.rs` (feature `plots`).

use super::run::ClaimResult;
use super::spec::Kind;
use std::fmt::Write as _;

pub(super) fn kind_label(r: &ClaimResult) -> &'static str {
    if r.power_for.is_some() {
        return "power";
    }
    match r.kind {
        Kind::Bound => "bound",
        Kind::Tight => "tight",
        Kind::Refuted => "refuted",
    }
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
        let interval = format!("[{:.d$}, {:.d$}]", r.interval[0], r.interval[1], d = digits);
        let hz = format!(
            "{}..{}",
            r.horizons.first().unwrap_or(&0),
            r.horizons.last().unwrap_or(&0)
        );
        let _ = write!(
            s,
            "{:<52} {:<8} {:>7.d$} {:>7.d$} {:>18} {:>7} {:>6} {:>13}",
            r.id,
            kind_label(r),
            r.theory_exponent,
            r.fitted_exponent,
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
