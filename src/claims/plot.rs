//! One SVG plot per claim (feature `plots`, which brings in plotters).
//!
//! What a reader needs to check a verdict at a glance: the title states the claim, its kind, the verdict and $R$
//! (for a power test: whether the planted bug was caught); the axes are logarithmic and name the quantity; the
//! points the fit used are filled, the others hollow, inside a shaded fitted window; the band around the means is
//! ±2 standard errors, the wedge around the fitted line is the bootstrap interval of the exponent; the theory line
//! goes through the same centroid. The legend sits in its own panel, off the data.

use super::report::kind_label;
use super::run::ClaimResult;
use crate::error::{BilevelError, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::Path;

/// Which kind of plot: a rate $\mathbb{E}m_K\sim K^r$, a sample complexity $S\sim\varepsilon^{-p}$ or a
/// deterministic geometric rate $e_k\sim q^k$.
#[derive(Clone, Copy, PartialEq)]
enum Shape {
    Rate,
    Complexity,
    Geometric,
}

/// A legend entry: how its glyph is drawn, and its text.
enum Glyph {
    Filled(RGBColor),
    Hollow(RGBColor),
    Line(RGBColor, u32),
    Dashed(RGBColor),
    Area(RGBColor, f64),
    Bar(RGBColor),
}

const MEAN: RGBColor = RGBColor(31, 90, 180);
const EXCLUDED: RGBColor = RGBColor(140, 140, 140);
const FIT: RGBColor = RGBColor(200, 30, 30);
const WINDOW: RGBColor = RGBColor(255, 200, 60);

/// Tick labels without "-0.0": integers as integers, the rest in short scientific form.
fn tick(v: f64) -> String {
    if v == 0.0 {
        return "0".into();
    }
    let a = v.abs();
    if (1.0..1e5).contains(&a) && (v - v.round()).abs() < 1e-9 * a {
        format!("{}", v.round() as i64)
    } else if (0.01..1.0).contains(&a) {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').to_string()
    } else {
        format!("{v:.0e}")
    }
}

/// Tick positions on a log axis over `[lo, hi]`: 1, 2, 5 times powers of ten, or every integer multiple when
/// the range is shorter than that gives ticks for.
fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let pick = |mults: &[f64]| -> Vec<f64> {
        let (e0, e1) = (lo.log10().floor() as i32, hi.log10().ceil() as i32);
        (e0..=e1)
            .flat_map(|e| mults.iter().map(move |m| m * 10f64.powi(e)))
            .filter(|v| *v >= lo && *v <= hi)
            .collect()
    };
    let coarse = pick(&[1.0, 2.0, 5.0]);
    if coarse.len() >= 4 {
        coarse
    } else {
        pick(&[1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0])
    }
}

fn span(v: impl Iterator<Item = f64>) -> (f64, f64) {
    v.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| (a.min(x), b.max(x)))
}

/// The title's lines: the id; the kind, verdict and replicates (for a power test: whether the planted bug was
/// caught); for a power test, the bug.
fn title(r: &ClaimResult) -> Vec<String> {
    let verdict = if r.ok() { "pass" } else { "FAIL" };
    let reps = if r.replicates == 1 {
        "deterministic, one run".to_string()
    } else {
        format!("R = {} replicates", r.replicates)
    };
    let mut lines = vec![r.id.clone()];
    match &r.power_for {
        Some(of) => {
            lines.push(format!(
                "power test of {of}: {} (its rule says {}), {reps}",
                if r.ok() {
                    "planted bug, caught"
                } else {
                    "planted bug NOT caught: FAIL"
                },
                r.rule_verdict
            ));
            if let Some(bug) = &r.bug {
                lines.push(format!("planted bug: {bug}"));
            }
        }
        None if r.ok() => lines.push(format!("{} claim: {verdict}, {reps}", kind_label(r))),
        None => lines.push(format!(
            "{} claim: {verdict} (rule: {}), {reps}",
            kind_label(r),
            r.rule_verdict
        )),
    }
    // The exact curve is half of a tight verdict (a power test shows its parent's): say what it predicts.
    if let (Some(grid), Some(far)) = (r.exact_slope_grid, r.exact_slope_far) {
        lines.push(format!(
            "exact expected curve{}: exponent {grid:.3} on this grid, {far:.3} at K = 1e5..1e6",
            if r.power_for.is_some() {
                " of the correct algorithm"
            } else {
                ""
            }
        ));
    }
    lines
}

/// One SVG per claim in `dir` (named after the id, `/` replaced by `__`); see the module docs for what it shows.
/// Rates are drawn on log–log axes ($\mathbb{E}m_K$ against $K$), sample complexities as samples against
/// $1/\varepsilon$ (log–log, horizontal bars $\varepsilon\pm2$ s.e.), deterministic rates as $e_k$ on a log axis
/// against $k$ (semi-log: a geometric rate is a line there).
///
/// # Errors
/// [`BilevelError::Io`] when the directory or the file cannot be written or plotting fails.
pub fn plot(r: &ClaimResult, dir: &Path) -> Result<()> {
    if r.horizons.is_empty() {
        // A power test whose planted bug diverged: no curve to draw (the table says "diverged").
        return Ok(());
    }
    std::fs::create_dir_all(dir).map_err(|e| BilevelError::io("create", dir, &e))?;
    let file = dir.join(format!("{}.svg", r.id.replace('/', "__")));
    let root = SVGBackend::new(&file, (960, 560)).into_drawing_area();
    let failed = |e: &dyn std::fmt::Display| BilevelError::Io {
        action: "write".into(),
        path: file.display().to_string(),
        message: format!("plotting {}: {e}", r.id),
    };
    draw(r, &root).map_err(|e| failed(&e))?;
    root.present().map_err(|e| failed(&e))
}

type Drawn = std::result::Result<(), Box<dyn std::error::Error>>;

fn draw<DB: DrawingBackend>(r: &ClaimResult, root: &DrawingArea<DB, Shift>) -> Drawn
where
    DB::ErrorType: 'static,
{
    let shape = match (&r.samples, r.replicates) {
        (Some(_), _) => Shape::Complexity,
        (None, 1) => Shape::Geometric,
        _ => Shape::Rate,
    };
    let n = r.horizons.len();
    if n == 0 || r.means.len() != n || r.fit_from >= n {
        return Err(format!("{} horizons, {} means, fit from {}", n, r.means.len(), r.fit_from).into());
    }
    root.fill(&WHITE)?;
    let lines = title(r);
    let (head, body) = root.split_vertically(14 + 24 * lines.len() as u32);
    let colour = if r.ok() { BLACK } else { FIT };
    for (i, t) in lines.into_iter().enumerate() {
        let (size, c) = if i == 0 { (20, &BLACK) } else { (15, &colour) };
        head.draw(&Text::new(
            t,
            (14, 8 + 24 * i as i32),
            ("sans-serif", size).into_font().color(c),
        ))?;
    }
    let (chart_area, legend_area) = body.split_horizontally(620);

    // Data in plot coordinates (both axes positive, log scale except k of a geometric rate).
    let xs: Vec<f64> = match (shape, &r.samples) {
        (Shape::Complexity, _) => r.means.iter().map(|m| 1.0 / m).collect(),
        _ => r.horizons.iter().map(|&k| k as f64).collect(),
    };
    let ys: Vec<f64> = match &r.samples {
        Some(s) => s.clone(),
        None => r.means.clone(),
    };
    if xs.iter().chain(&ys).any(|v| !(v.is_finite() && *v > 0.0)) {
        return Err("a plotted value is not positive and finite".into());
    }
    // ±2 s.e.: vertical for rates (around the mean metric), horizontal for complexities (around 1/ε).
    let se = |i: usize| 2.0 * r.std_errors.get(i).copied().unwrap_or(0.0);
    let band: Vec<(f64, f64)> = (0..n)
        .map(|i| {
            let (m, e) = (r.means[i], se(i));
            match shape {
                Shape::Complexity => (1.0 / (m + e), if m > e { 1.0 / (m - e) } else { xs[i] * 10.0 }),
                _ => ((m - e).max(m * 0.05), m + e),
            }
        })
        .collect();
    let (mut x0, mut x1) = span(xs.iter().copied());
    let (mut y0, mut y1) = span(ys.iter().copied());
    if shape == Shape::Complexity {
        let (b0, b1) = span(band.iter().flat_map(|b| [b.0, b.1]));
        (x0, x1) = (x0.min(b0), x1.max(b1));
    } else if shape == Shape::Rate {
        let (b0, b1) = span(band.iter().flat_map(|b| [b.0, b.1]));
        (y0, y1) = (y0.min(b0), y1.max(b1));
    }
    // The fit and the theory in plot coordinates: a line through the centroid of the fitted points, in
    // (log x, log y) for rates and complexities, in (k, ln e) for geometric rates (the exponent is per step, in ln).
    // Straight in the plot's axes, so its two ends define it.
    let tail = r.fit_from..n;
    let fx = |x: f64| if shape == Shape::Geometric { x } else { x.ln() };
    let (mx, my) = (
        tail.clone().map(|i| fx(xs[i])).sum::<f64>() / tail.len() as f64,
        tail.clone().map(|i| ys[i].ln()).sum::<f64>() / tail.len() as f64,
    );
    let (wx0, wx1) = span(tail.clone().map(|i| xs[i]));
    let line = |slope: f64, a: f64, b: f64| -> Vec<(f64, f64)> {
        [a, b].iter().map(|&x| (x, (my + slope * (fx(x) - mx)).exp())).collect()
    };
    let fitted = line(r.fitted_exponent, wx0, wx1);
    let wedge = (r.interval[1] > r.interval[0]).then(|| {
        let mut poly = line(r.interval[0], wx0, wx1);
        poly.extend(line(r.interval[1], wx0, wx1).into_iter().rev());
        poly
    });
    let theory = line(r.theory_exponent, x0, x1);
    // Everything drawn is inside the axes: a power test's theory line may span more decades than its data.
    for (_, y) in fitted.iter().chain(&theory).chain(wedge.iter().flatten()) {
        (y0, y1) = (y0.min(*y), y1.max(*y));
    }
    // Pad by a fraction of a decade (log axes) or of a step (linear k).
    let (lx0, lx1) = match shape {
        Shape::Geometric => (x0 - 0.5, x1 + 0.5),
        _ => (x0 / 1.25, x1 * 1.25),
    };
    let (ly0, ly1) = (y0 / 1.6, y1 * 1.6);
    let y_ticks = log_ticks(ly0, ly1);

    let mut legend: Vec<(Glyph, String)> = Vec::new();
    macro_rules! build {
        ($xr:expr) => {{
            let mut chart = ChartBuilder::on(&chart_area)
                .margin(10)
                .x_label_area_size(46)
                .y_label_area_size(70)
                .build_cartesian_2d($xr, (ly0..ly1).log_scale().with_key_points(y_ticks.clone()))?;
            let (xd, yd) = match shape {
                Shape::Rate => ("horizon K (iterations)".to_string(), format!("mean of {}", r.quantity)),
                Shape::Complexity => (
                    format!("1/ε, ε = mean of {}", r.quantity),
                    "samples used (mean over replicates)".to_string(),
                ),
                Shape::Geometric => ("k (iteration / terms / unrolled steps)".to_string(), r.quantity.clone()),
            };
            chart
                .configure_mesh()
                .x_desc(xd)
                .y_desc(yd)
                .axis_desc_style(("sans-serif", 15))
                .x_label_formatter(&|v| tick(*v))
                .y_label_formatter(&|v| tick(*v))
                .light_line_style(WHITE.mix(0.0))
                .draw()?;
            // The fitted window, behind everything.
            let (a, b) = if shape == Shape::Geometric {
                (wx0 - 0.5, wx1 + 0.5)
            } else {
                (wx0 / 1.08, wx1 * 1.08)
            };
            chart.draw_series(std::iter::once(Rectangle::new(
                [(a, ly0), (b, ly1)],
                WINDOW.mix(0.18).filled(),
            )))?;
            legend.push((
                Glyph::Area(WINDOW, 0.35),
                format!("fitted window ({} of {} points)", tail.len(), n),
            ));
            // ±2 s.e. of the means.
            match shape {
                Shape::Rate => {
                    let mut poly: Vec<(f64, f64)> = xs.iter().zip(&band).map(|(x, b)| (*x, b.1)).collect();
                    poly.extend(xs.iter().zip(&band).rev().map(|(x, b)| (*x, b.0)));
                    chart.draw_series(std::iter::once(Polygon::new(poly, MEAN.mix(0.18).filled())))?;
                    legend.push((Glyph::Area(MEAN, 0.3), "mean ± 2 s.e. (band)".into()));
                }
                Shape::Complexity => {
                    chart.draw_series(
                        xs.iter()
                            .zip(&ys)
                            .zip(&band)
                            .map(|((_, y), b)| PathElement::new(vec![(b.0, *y), (b.1, *y)], MEAN.stroke_width(2))),
                    )?;
                    legend.push((Glyph::Bar(MEAN), "ε ± 2 s.e. (horizontal bars)".into()));
                }
                Shape::Geometric => {}
            }
            // The interval of the exponent: a wedge around the fitted line over the window.
            if let Some(poly) = wedge.clone() {
                chart.draw_series(std::iter::once(Polygon::new(poly, FIT.mix(0.15).filled())))?;
                legend.push((Glyph::Area(FIT, 0.25), "99% bootstrap interval of the exponent".into()));
            }
            let ex = if shape == Shape::Geometric {
                "ln q per step"
            } else {
                "exponent"
            };
            chart.draw_series(LineSeries::new(fitted.clone(), FIT.stroke_width(2)))?;
            legend.push((
                Glyph::Line(FIT, 2),
                if r.interval[1] > r.interval[0] {
                    format!(
                        "fit: {ex} {:.3} [{:.3}, {:.3}]",
                        r.fitted_exponent, r.interval[0], r.interval[1]
                    )
                } else {
                    format!("fit: {ex} {:.4}", r.fitted_exponent)
                },
            ));
            chart.draw_series(DashedLineSeries::new(theory.clone(), 8, 5, BLACK.stroke_width(1)))?;
            legend.push((
                Glyph::Dashed(BLACK),
                format!(
                    "theory: {ex} {:.3}, tolerance τ = {} (drawn through the fit's centroid)",
                    r.theory_exponent, r.tolerance
                ),
            ));
            // Points: filled where fitted, hollow grey where not.
            let what = match shape {
                Shape::Rate => "mean over replicates",
                Shape::Complexity => "mean samples at mean ε",
                Shape::Geometric => "error of the run",
            };
            chart.draw_series((0..r.fit_from).map(|i| Circle::new((xs[i], ys[i]), 4, EXCLUDED.stroke_width(2))))?;
            chart.draw_series(tail.clone().map(|i| Circle::new((xs[i], ys[i]), 4, MEAN.filled())))?;
            legend.push((Glyph::Filled(MEAN), format!("{what} (fitted)")));
            if r.fit_from > 0 {
                legend.push((Glyph::Hollow(EXCLUDED), format!("{what} (not fitted)")));
            }
        }};
    }
    match shape {
        Shape::Geometric => build!(lx0..lx1),
        _ => build!((lx0..lx1).log_scale().with_key_points(log_ticks(lx0, lx1))),
    }
    draw_legend(&legend_area, &legend)?;
    Ok(())
}

/// The legend in its own panel, one entry per line, long texts wrapped at the panel's width.
fn draw_legend<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, entries: &[(Glyph, String)]) -> Drawn
where
    DB::ErrorType: 'static,
{
    let font = ("sans-serif", 14).into_font();
    let mut y = 20;
    area.draw(&Text::new(
        "legend",
        (10, y),
        ("sans-serif", 15).into_font().color(&BLACK),
    ))?;
    y += 26;
    for (glyph, text) in entries {
        let (gx, gy) = (18, y + 7);
        match glyph {
            Glyph::Filled(c) => area.draw(&Circle::new((gx, gy), 4, c.filled()))?,
            Glyph::Hollow(c) => area.draw(&Circle::new((gx, gy), 4, c.stroke_width(2)))?,
            Glyph::Line(c, w) => area.draw(&PathElement::new(
                vec![(gx - 10, gy), (gx + 10, gy)],
                c.stroke_width(*w),
            ))?,
            Glyph::Dashed(c) => {
                area.draw(&PathElement::new(vec![(gx - 10, gy), (gx - 3, gy)], c.stroke_width(1)))?;
                area.draw(&PathElement::new(vec![(gx + 3, gy), (gx + 10, gy)], c.stroke_width(1)))?;
            }
            Glyph::Area(c, a) => area.draw(&Rectangle::new(
                [(gx - 10, gy - 6), (gx + 10, gy + 6)],
                c.mix(*a).filled(),
            ))?,
            Glyph::Bar(c) => {
                area.draw(&PathElement::new(vec![(gx - 10, gy), (gx + 10, gy)], c.stroke_width(2)))?;
                area.draw(&Circle::new((gx, gy), 3, c.filled()))?;
            }
        }
        let lines = wrap(text, 40);
        for (j, chunk) in lines.iter().enumerate() {
            let at = (36, y + 18 * j as i32);
            area.draw(&Text::new(chunk.clone(), at, font.clone().color(&BLACK)))?;
        }
        y += 26 + 18 * (lines.len() as i32 - 1);
    }
    Ok(())
}

/// Greedy word wrap at `width` characters.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = vec![String::new()];
    for word in text.split(' ') {
        let cur = lines.last_mut().expect("one line at least");
        if !cur.is_empty() && cur.chars().count() + 1 + word.chars().count() > width {
            lines.push(word.to_string());
        } else {
            if !cur.is_empty() {
                cur.push(' ');
            }
            cur.push_str(word);
        }
    }
    lines
}
