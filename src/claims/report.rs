//! The report: a table (human), JSON (machines), one SVG plot per claim.

use super::run::ClaimResult;
use super::spec::{BugSpec, Kind};
use crate::error::{BilevelError, Result};
use plotters::prelude::*;
use std::fmt::Write as _;
use std::path::Path;

fn kind_label(r: &ClaimResult) -> String {
    if r.power_for.is_some() {
        return "power".into();
    }
    let k = match r.kind {
        Kind::Bound => "bound",
        Kind::Tight => "tight",
        Kind::RefutedAbove => "refuted>",
        Kind::RefutedBelow => "refuted<",
    };
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
        let _ = writeln!(
            s,
            "{:<12} {:<64} {:<44} {}",
            algo,
            r.bug.as_deref().unwrap_or("").chars().take(64).collect::<String>(),
            r.power_for.as_deref().unwrap_or(""),
            if r.ok() {
                r.rule_verdict.clone()
            } else {
                format!("MISSED ({})", r.rule_verdict)
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

/// One SVG per claim in `dir`: the log–log means with a ±2 standard-error band, the fitted line over the fitted
/// horizons (through their centroid), and the theory slope through the same centroid. Deterministic rates are
/// plotted as $\log_{10} e_k$ against $k$, the axes they are fitted in.
pub fn plot(r: &ClaimResult, dir: &Path) -> Result<()> {
    let io = |e: std::io::Error| BilevelError::Malformed(format!("writing plots to {}: {e}", dir.display()));
    std::fs::create_dir_all(dir).map_err(io)?;
    let file = dir.join(format!("{}.svg", r.id.replace('/', "__")));
    let draw = || -> std::result::Result<(), Box<dyn std::error::Error>> {
        let xs: Vec<f64> = match &r.samples {
            // Complexity claims: x = 1/ε (the mean metric), y = samples.
            Some(_) => r.means.iter().map(|m| (1.0 / m).log10()).collect(),
            // Deterministic rates are geometric in k: plot k itself.
            None if r.replicates == 1 => r.horizons.iter().map(|k| *k as f64).collect(),
            None => r.horizons.iter().map(|k| (*k as f64).log10()).collect(),
        };
        // Slopes in the plot's units: a geometric rate's ln e per step becomes log10 e per step.
        let scale = if r.replicates == 1 && r.samples.is_none() {
            std::f64::consts::LN_10.recip()
        } else {
            1.0
        };
        let ys: Vec<f64> = match &r.samples {
            Some(s) => s.iter().map(|v| v.log10()).collect(),
            None => r.means.iter().map(|m| m.log10()).collect(),
        };
        let band: Vec<(f64, f64)> = match &r.samples {
            Some(_) => ys.iter().map(|y| (*y, *y)).collect(),
            None => r
                .means
                .iter()
                .zip(&r.std_errors)
                .map(|(m, se)| ((m - 2.0 * se).max(m * 1e-3).log10(), (m + 2.0 * se).log10()))
                .collect(),
        };
        let (x0, x1) = (
            xs.iter().cloned().fold(f64::INFINITY, f64::min),
            xs.iter().cloned().fold(f64::NEG_INFINITY, f64::max),
        );
        let lo = band.iter().map(|b| b.0).fold(f64::INFINITY, f64::min);
        let hi = band.iter().map(|b| b.1).fold(f64::NEG_INFINITY, f64::max);
        let pad = 0.1 * (hi - lo).max(0.1);
        let root = SVGBackend::new(&file, (720, 480)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(&r.id, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(56)
            .build_cartesian_2d(x0 - 0.05..x1 + 0.05, lo - pad..hi + pad)?;
        let (xl, yl) = match (&r.samples, r.replicates) {
            (Some(_), _) => ("log10(1/eps)", "log10(samples)"),
            (None, 1) => ("k", "log10(error)"),
            _ => ("log10(K)", "log10(mean metric)"),
        };
        chart.configure_mesh().x_desc(xl).y_desc(yl).draw()?;
        chart.draw_series(
            xs.iter()
                .zip(&band)
                .map(|(x, b)| PathElement::new(vec![(*x, b.0), (*x, b.1)], BLUE.mix(0.4).stroke_width(3))),
        )?;
        chart
            .draw_series(xs.iter().zip(&ys).map(|(x, y)| Circle::new((*x, *y), 3, BLUE.filled())))?
            .label("mean over replicates (±2 s.e.)")
            .legend(|(x, y)| Circle::new((x, y), 3, BLUE.filled()));
        // Both lines pass through the centroid of the fitted tail and span it.
        let (tx, ty) = (&xs[r.fit_from..], &ys[r.fit_from..]);
        let (mx, my) = (
            tx.iter().sum::<f64>() / tx.len() as f64,
            ty.iter().sum::<f64>() / ty.len() as f64,
        );
        let f0 = tx.iter().cloned().fold(f64::INFINITY, f64::min);
        let f1 = tx.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let line = |slope: f64| {
            let s = slope * scale;
            vec![(f0, my + s * (f0 - mx)), (f1, my + s * (f1 - mx))]
        };
        chart
            .draw_series(LineSeries::new(line(r.fitted_exponent), RED.stroke_width(2)))?
            .label(format!(
                "fitted {:.3} [{:.3}, {:.3}]",
                r.fitted_exponent, r.interval[0], r.interval[1]
            ))
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], RED));
        chart
            .draw_series(LineSeries::new(line(r.theory_exponent), BLACK.stroke_width(1)))?
            .label(format!("theory {:.3}", r.theory_exponent))
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], BLACK));
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;
        root.present()?;
        Ok(())
    };
    draw().map_err(|e| BilevelError::Malformed(format!("plotting {}: {e}", r.id)))
}
