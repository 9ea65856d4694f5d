//! The report plots say what they show (issue 13): the title states the claim, kind, verdict and replicates (a power
//! test: "planted bug, caught"), the y axis names the metric, excluded points differ from fitted ones, the legend
//! lists what is drawn (no error bars promised that are not drawn), and no tick reads "-0.0". The plots were also
//! looked at as images (rsvg-convert) when they were designed; this test keeps the text promises.

use bilevel::claims::{self, ClaimResult, Registry};

fn svg(r: &ClaimResult) -> String {
    let dir = std::env::temp_dir().join(format!("bilevel-plot-test-{}", std::process::id()));
    claims::plot(r, &dir).expect("plot written");
    let file = dir.join(format!("{}.svg", r.id.replace('/', "__")));
    let text = std::fs::read_to_string(&file).expect("svg readable");
    let _ = std::fs::remove_file(&file);
    text
}

fn cg_rate() -> ClaimResult {
    let reg = Registry::builtin().expect("registry");
    let spec = reg
        .rate
        .iter()
        .find(|r| r.id == "rate/cg-bound")
        .expect("rate/cg-bound registered");
    claims::run_rate(spec).expect("rate runs")
}

fn no_negative_zero(s: &str) {
    assert!(!s.contains(">-0.0<") && !s.contains(">-0<"), "a tick reads -0");
}

#[test]
fn deterministic_rate_plot_names_its_error_and_has_no_mean() {
    let r = cg_rate();
    let s = svg(&r);
    assert!(s.contains("rate/cg-bound"));
    assert!(s.contains("bound claim: pass, deterministic, one run"));
    assert!(s.contains("CG error"), "the y axis names the error");
    assert!(!s.contains("mean"), "one run has no mean");
    assert!(s.contains("(not fitted)") && s.contains("(fitted)"));
    no_negative_zero(&s);
}

#[test]
fn monte_carlo_and_power_plots_state_verdict_band_and_bug() {
    // A Monte Carlo result shaped from the deterministic one (the plot only reads the result).
    let mut r = cg_rate();
    r.id = "power/doc/planted".into();
    r.replicates = 40;
    r.horizons = (1..=r.means.len()).map(|i| 100 * i * i).collect();
    r.std_errors = r.means.iter().map(|m| 0.1 * m).collect();
    r.interval = [r.fitted_exponent - 0.05, r.fitted_exponent + 0.05];
    r.quantity = "theta_err_sq (last iterate)".into();
    r.power_for = Some("doc/claim".into());
    r.bug = Some("implicit gradient dropped".into());
    r.verdict = "pass".into();
    r.rule_verdict = "fail".into();
    let s = svg(&r);
    assert!(s.contains("power test of doc/claim: planted bug, caught"));
    assert!(s.contains("planted bug: implicit gradient dropped"));
    assert!(s.contains("R = 40 replicates"));
    assert!(
        s.contains("mean of theta_err_sq (last iterate)"),
        "the y axis names the metric"
    );
    assert!(s.contains("mean ± 2 s.e. (band)") && s.contains("99% bootstrap interval of the exponent"));
    assert!(s.contains("fitted window"));
    no_negative_zero(&s);

    r.verdict = "fail".into();
    r.rule_verdict = "inconclusive".into();
    assert!(svg(&r).contains("planted bug NOT caught: FAIL"));

    // A sample-complexity result: the legend's error bars are drawn as horizontal bars.
    r.power_for = None;
    r.bug = None;
    r.id = "doc/complexity".into();
    r.samples = Some(r.means.iter().map(|m| 10.0 / m).collect());
    let s = svg(&r);
    assert!(s.contains("ε ± 2 s.e. (horizontal bars)"));
    assert!(s.contains("samples used"));
}
