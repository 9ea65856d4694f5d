//! The command-line contract of issues 2 and 4: `list --json` and `run --json` fields, and clear errors with a
//! non-zero exit for unknown names, bad numbers and impossible combinations.

use std::process::{Command, Output};

fn bilevel(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bilevel"))
        .args(args)
        .output()
        .expect("the binary runs")
}

fn json(out: &Output) -> serde_json::Value {
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("valid JSON")
}

#[test]
fn list_json_names_families_with_sizes_and_constants_algorithms_and_claims() {
    let v = json(&bilevel(&["list", "--json"]));
    let fams = v["families"].as_array().unwrap();
    assert_eq!(fams.len(), bilevel::families::REGISTRY.len());
    for f in fams {
        assert!(f["name"].is_string() && f["d_u"].as_u64().unwrap() >= 1 && f["d_l"].as_u64().unwrap() >= 1);
        assert!(f["constants"]["mu_l"].as_f64().unwrap() > 0.0);
    }
    let names: Vec<&str> = v["algorithms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    for needed in [
        "ttsa",
        "stable",
        "bsa",
        "aid-bio",
        "sustain",
        "itd-bio",
        "pzobo",
        "vrbo",
        "penalty",
        "primal-dual",
    ] {
        assert!(names.contains(&needed), "{needed}");
    }
    assert!(v["claims"].as_array().unwrap().len() > 20);
}

#[test]
fn run_json_reports_final_metrics_and_counts_and_noise_zero_is_deterministic() {
    let args = [
        "run",
        "--algo",
        "aid-bio",
        "--problem",
        "quadratic",
        "--iters",
        "300",
        "--seed",
        "1",
        "--json",
    ];
    let v = json(&bilevel(&[&args[..], &["--noise", "0"]].concat()));
    let fin = &v["final"];
    // AID-BiO with noise off converges linearly: after 300 iterations only rounding is left.
    assert!(fin["theta_err_sq"].as_f64().unwrap() < 1e-20);
    assert!(fin["grad_norm_sq"].as_f64().unwrap() < 1e-20);
    assert_eq!(fin["counts"]["upper_samples"].as_u64(), Some(300));
    // Noise off: the seed does not matter.
    let w = json(&bilevel(&[
        "run",
        "--algo",
        "aid-bio",
        "--problem",
        "quadratic",
        "--iters",
        "300",
        "--seed",
        "2",
        "--json",
        "--noise",
        "0",
    ]));
    assert_eq!(v["final"]["theta"], w["final"]["theta"]);
    // CSV has a header and one row per checkpoint.
    let out = bilevel(&[
        "run",
        "--algo",
        "ttsa",
        "--problem",
        "ttsa_tight",
        "--iters",
        "50",
        "--csv",
    ]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.lines().next().unwrap().starts_with("k,grad_norm_sq,theta_err_sq"));
    assert!(text.lines().count() > 5);
}

fn fails_with(args: &[&str], needle: &str) {
    let out = bilevel(args);
    assert!(!out.status.success(), "{args:?} should fail");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(needle), "{args:?}: stderr {err:?} lacks {needle:?}");
    assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
}

#[test]
fn bad_input_gives_a_clear_error_and_nonzero_exit() {
    fails_with(
        &["run", "--algo", "nope", "--problem", "quadratic"],
        "accepted: alternating",
    );
    fails_with(&["run", "--algo", "ttsa", "--problem", "nope"], "accepted: quadratic");
    fails_with(
        &["run", "--algo", "ttsa", "--problem", "quadratic", "--noise", "-1"],
        "--noise",
    );
    fails_with(
        &["run", "--algo", "ttsa", "--problem", "quadratic", "--noise", "NaN"],
        "--noise",
    );
    fails_with(
        &["run", "--algo", "ttsa", "--problem", "quadratic", "--iters", "0"],
        "--iters",
    );
    fails_with(
        &["run", "--algo", "ttsa", "--problem", "quadratic", "--iters", "ten"],
        "invalid value",
    );
    fails_with(
        &["run", "--algo", "ttsa", "--problem", "quadratic", "--json", "--csv"],
        "cannot be used with",
    );
    fails_with(&["report", "--only", "no-such-claim"], "accepted");
}
