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
    assert_eq!(fams.len(), bilevel::families::names().len());
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

// ---------------------------------------------------------------------------------------------------------------
// Issue 12 §3–§4 and issue 13 (CLI): any problem from the command line, progress, shards, and a CLI that refuses
// what it cannot do, never overwrites an input, exits quietly on a closed pipe and always prints a hint.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn tmp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("bilevel-cli-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Run with a deadline: a command that should be refused up front must not start a long job.
fn bilevel_within(args: &[&str], limit: Duration) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_bilevel"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary runs");
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > limit {
            child.kill().unwrap();
            panic!("{args:?} still running after {limit:?}: not refused up front");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// The error line and the hint line of a failed command, after checking the failure is clean.
fn error_and_hint(args: &[&str]) -> (String, String) {
    let out = bilevel_within(args, Duration::from_secs(60));
    assert!(!out.status.success(), "{args:?} should fail");
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
    let hint = err
        .lines()
        .find_map(|l| l.strip_prefix("hint: "))
        .unwrap_or_else(|| panic!("{args:?}: no hint in {err:?}"))
        .to_string();
    (err, hint)
}

#[test]
fn a_closed_pipe_ends_the_process_quietly() {
    for args in [
        &["list"][..],
        &[
            "run",
            "--algo",
            "ttsa",
            "--problem",
            "quadratic",
            "--iters",
            "2000",
            "--csv",
        ][..],
    ] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_bilevel"))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Close the reading end before the tool writes anything (as `| head` does once it has its lines).
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked") && err.is_empty(), "{args:?}: {err}");
        assert!(out.status.success(), "{args:?}: {:?}", out.status);
    }
}

#[test]
fn unbounded_or_empty_work_is_refused_up_front() {
    let quick = Duration::from_secs(20);
    for (args, needle) in [
        (
            &[
                "run",
                "--algo",
                "ttsa",
                "--problem",
                "quadratic",
                "--iters",
                "1000000000000",
            ][..],
            "1..=100000000",
        ),
        (
            &["sweep", "--seeds", "99999999999999", "--only", "rate"][..],
            "1..=10000",
        ),
        (&["sweep", "--seeds", "0"][..], "1..=10000"),
        (&["sweep", "--only", "rate"][..], "deterministic rates"),
        (&["sweep", "--only", "no-such-claim"][..], "unknown claim prefix"),
        (&["report", "--only", "no-such-claim"][..], "unknown claim prefix"),
    ] {
        let out = bilevel_within(args, quick);
        assert!(!out.status.success(), "{args:?} exited 0");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle) && err.contains("hint: "), "{args:?}: {err}");
        assert!(
            out.stdout.is_empty(),
            "{args:?} printed a result: {:?}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    // The documented limits are the ones --help lists.
    let help = String::from_utf8(bilevel(&["help", "run"]).stdout).unwrap();
    assert!(help.contains("1..=100000000"), "{help}");
    let help = String::from_utf8(bilevel(&["help", "sweep"]).stdout).unwrap();
    assert!(help.contains("1..=10000"), "{help}");
}

/// Family sizes whose arrays would not fit in `families::MAX_ENTRIES` (the audit's list: each crashed with a failed
/// allocation and a backtrace, or ran out of memory) exit 2 at once with an `error:` line naming the parameter and
/// a hint, never a panic, an abort or a long run.
#[test]
fn oversized_families_are_refused_up_front_with_a_typed_error() {
    for (problem, param) in [
        ("quadratic", "d_l=100000"),
        ("quadratic", "d_l=30000"),
        ("quadratic", "d_l=100000000"),
        ("hyperparameter", "p=100000000"),
        ("hyperparameter", "n=100000000"),
        ("meta_learning", "d=100000000"),
        ("meta_learning", "tasks=100000000"),
        ("weakly_convex", "d_l=100000000"),
        ("finite_sum", "n_lower=1000000000"),
        ("finite_sum", "d_l=100000"),
        ("representation", "k=100000"),
        ("low_rank", "d_l=100000000"),
        ("nonlinear_coupling", "d_l=100000000"),
        ("data_cleaning", "m=100000000"),
    ] {
        let args = [
            "run",
            "--algo",
            "ttsa",
            "--problem",
            problem,
            "--param",
            param,
            "--iters",
            "2",
        ];
        let out = bilevel_within(&args, Duration::from_secs(20));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        for bad in ["panicked", "backtrace", "memory allocation"] {
            assert!(!err.contains(bad), "{args:?}: {err}");
        }
        let name = param.split('=').next().unwrap();
        let first = err.lines().find(|l| !l.starts_with("warning:")).unwrap_or_default();
        assert!(
            first.starts_with(&format!("error: invalid parameter {name} = ")),
            "{args:?}: {err}"
        );
        assert!(
            first.contains("GiB") && first.contains("MAX_ENTRIES"),
            "{args:?}: {first}"
        );
        let hint = err.lines().find_map(|l| l.strip_prefix("hint: ")).expect("a hint");
        hint_options_exist("run", hint);
        assert!(
            out.stdout.is_empty(),
            "{args:?}: {:?}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    // The quadratic's way out is the matrix-free family.
    let (err, _) = error_and_hint(&[
        "run",
        "--algo",
        "ttsa",
        "--problem",
        "quadratic",
        "--param",
        "d_l=100000",
    ]);
    assert!(
        err.contains("d_l <= 11582 would fit") && err.contains("low_rank"),
        "{err}"
    );
}

#[test]
fn golden_never_overwrites_its_input() {
    let dir = tmp_dir("golden-input");
    let input = dir.join("x.json");
    std::fs::copy(Path::new(ROOT).join("docs/examples/instance.json"), &input).unwrap();
    let before = std::fs::read(&input).unwrap();
    let refused = |out: &str| {
        let (err, hint) = error_and_hint(&["golden", "--instance", input.to_str().unwrap(), "--out", out]);
        assert!(err.contains("overwrite the input"), "{out}: {err}");
        assert!(hint.contains("--out"), "{hint}");
        assert_eq!(std::fs::read(&input).unwrap(), before, "{out}: the input was modified");
    };
    refused(dir.to_str().unwrap());
    // The same directory spelled differently is still refused.
    refused(&format!(
        "{}/../{}",
        dir.display(),
        dir.file_name().unwrap().to_str().unwrap()
    ));
    // A hard link to the input in another directory is the same file: refused too (a path comparison misses it).
    #[cfg(unix)]
    {
        let linked = dir.join("linked");
        std::fs::create_dir_all(&linked).unwrap();
        std::fs::hard_link(&input, linked.join("x.json")).unwrap();
        refused(linked.to_str().unwrap());
    }
    // Another directory works.
    let out = bilevel(&[
        "golden",
        "--instance",
        input.to_str().unwrap(),
        "--out",
        dir.join("out").to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(dir.join("out/x.json").exists());
}

/// Every `--option` a hint names must be listed by `bilevel help <command>`.
fn hint_options_exist(command: &str, hint: &str) {
    let help = String::from_utf8(bilevel(&["help", command]).stdout).unwrap();
    for word in hint.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-')) {
        if word.starts_with("--") && word.len() > 2 {
            assert!(
                help.contains(word),
                "hint names {word}, which `bilevel help {command}` does not list: {hint}"
            );
        }
    }
}

#[test]
fn every_error_names_the_problem_and_gives_a_hint_that_points_at_real_options() {
    let missing = "/nonexistent-dir/x.json";
    let cases: Vec<(Vec<&str>, &str)> = vec![
        // A diverging run (an upper step far above 2/L_F): the hint names the step-size options.
        (
            vec![
                "run",
                "--algo",
                "alternating",
                "--problem",
                "quadratic",
                "--alpha",
                "5",
                "--beta",
                "0.1",
            ],
            "diverged",
        ),
        // A step condition prints the schedules as formulas, not Debug forms.
        (
            vec![
                "run",
                "--algo",
                "ttsa",
                "--problem",
                "quadratic",
                "--alpha",
                "0.5",
                "--beta",
                "0.1",
            ],
            "alpha 0.5 must be < beta 0.1",
        ),
        // An indefinite Hessian sample.
        (
            vec!["run", "--algo", "ba", "--problem", "representation", "--iters", "100"],
            "not positive definite",
        ),
        (
            vec!["run", "--algo", "ttsa", "--problem", "quadratic", "--param", "nope=1"],
            "unknown field `nope`",
        ),
        (
            vec!["run", "--algo", "ttsa", "--problem", "quadratic", "--param", "d_l"],
            "NAME=VALUE",
        ),
        (
            vec![
                "run",
                "--algo",
                "ttsa",
                "--problem",
                "quadratic",
                "--alpha",
                "fast",
                "--beta",
                "1",
            ],
            "--alpha",
        ),
        (
            vec![
                "run",
                "--algo",
                "ttsa",
                "--problem",
                "quadratic",
                "--alpha",
                "1/zz",
                "--beta",
                "1",
            ],
            "unknown constant",
        ),
        (
            vec!["run", "--algo", "stocbio", "--problem", "quadratic", "--alpha", "0.1"],
            "missing field `beta`",
        ),
        // A horizon step whose power is negative would grow with K (it used to run silently).
        (
            vec![
                "run",
                "--algo",
                "ttsa",
                "--problem",
                "quadratic",
                "--iters",
                "5",
                "--alpha",
                "horizon:0.001/l_f:0.6",
                "--beta",
                "horizon:0.01/l_l:-0.4",
            ],
            "schedule.power = -0.4",
        ),
        (
            vec!["run", "--algo", "bsa", "--problem", "quadratic", "--beta", "0.1"],
            "missing field `alpha`",
        ),
        (
            vec!["run", "--algo", "aid-bio", "--problem", "quadratic", "--alpha", "0.1"],
            "cannot be set",
        ),
        (
            vec![
                "run",
                "--algo",
                "ttsa",
                "--problem",
                "quadratic",
                "--batch",
                "4",
                "--alpha",
                "1",
                "--beta",
                "1",
            ],
            "--batch",
        ),
        (vec!["run", "--problem", "quadratic"], "no algorithm"),
        (vec!["run", "--algo", "ttsa"], "no problem"),
        (
            vec!["run", "--algo", "ttsa", "--claim", "no-such-claim"],
            "unknown claim",
        ),
        // I/O failures are I/O failures, with the path.
        (
            vec!["run", "--algo", "ttsa", "--instance", missing],
            "I/O error: cannot read /nonexistent-dir/x.json",
        ),
        (
            vec!["run", "--spec", missing],
            "I/O error: cannot read /nonexistent-dir/x.json",
        ),
        (vec!["merge", missing], "I/O error: cannot read /nonexistent-dir/x.json"),
        (
            vec!["golden", "--instance", missing, "--out", "/tmp"],
            "I/O error: cannot read /nonexistent-dir/x.json",
        ),
        // Argument errors from the parser get a hint too.
        (vec!["run", "--iters", "ten"], "invalid value"),
        (vec!["report", "--shard", "3/2"], "--shard"),
        (
            vec!["check", "/nonexistent/a.json", "/nonexistent/b.json", "--rtol", "NaN"],
            "--rtol",
        ),
        (
            vec!["report", "--shard", "1/2", "--out", "/tmp", "--only", "rate"],
            "a shard draws no plots",
        ),
    ];
    for (args, needle) in cases {
        let (err, hint) = error_and_hint(&args);
        assert!(err.contains(needle), "{args:?}: {err:?} lacks {needle:?}");
        assert!(
            !err.contains("malformed") || !needle.starts_with("I/O"),
            "{args:?}: {err}"
        );
        for debug in ["Constant {", "Decay {", "Some(", "None"] {
            assert!(!err.contains(debug), "{args:?} prints a Debug form: {err}");
        }
        hint_options_exist(args[0], &hint);
    }
    let (_, hint) = error_and_hint(&[
        "run",
        "--algo",
        "alternating",
        "--problem",
        "quadratic",
        "--alpha",
        "5",
        "--beta",
        "0.1",
    ]);
    assert!(hint.contains("--alpha") && hint.contains("--beta"), "{hint}");
    let (_, hint) = error_and_hint(&["run", "--algo", "ba", "--problem", "representation", "--iters", "100"]);
    assert!(hint.contains("--noise"), "{hint}");
    // The suggested fix works: smaller steps make the diverging run converge.
    let out = bilevel(&[
        "run",
        "--algo",
        "alternating",
        "--problem",
        "quadratic",
        "--alpha",
        "0.05/l_f",
        "--beta",
        "0.5/l_l",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn report_checks_the_output_directory_before_running_any_claim() {
    let dir = tmp_dir("unwritable");
    let file = dir.join("a-file");
    std::fs::write(&file, "").unwrap();
    let target = file.join("plots");
    // The ttsa-sc claims take minutes: the refusal must come first.
    let out = bilevel_within(
        &["report", "--only", "ttsa-sc", "--out", target.to_str().unwrap()],
        Duration::from_secs(20),
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("I/O error") && err.contains(target.to_str().unwrap()) && err.contains("hint: "),
        "{err}"
    );
}

#[test]
fn list_shows_constants_claims_and_explains_the_verdict_words() {
    let out = bilevel(&["list"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let v = json(&bilevel(&["list", "--json"]));
    for f in v["families"].as_array().unwrap() {
        let name = f["name"].as_str().unwrap();
        let mu_l = f["constants"]["mu_l"].as_f64().unwrap();
        // The constants table has a row per family with its mu_l.
        assert!(
            text.lines()
                .any(|l| l.starts_with(name) && l.contains(&format!("{mu_l:.4}"))),
            "{name} mu_l={mu_l} not in the constants table"
        );
    }
    for c in v["claims"].as_array().unwrap() {
        assert!(text.contains(c["id"].as_str().unwrap()), "{c}");
    }
    for word in [
        "bound",
        "tight",
        "refuted",
        "power",
        "planted bug",
        "caught",
        "inconclusive",
    ] {
        assert!(text.contains(word), "list does not explain {word:?}");
    }
    let help = String::from_utf8(bilevel(&["help", "report"]).stdout).unwrap();
    assert!(help.contains("planted bug") && help.contains("refuted"), "{help}");
}

fn final_of(args: &[&str]) -> serde_json::Value {
    json(&bilevel(args))
}

#[test]
fn run_accepts_family_parameters_instance_files_and_algorithm_parameters() {
    // Family parameters reach the family.
    let v = final_of(&[
        "run",
        "--algo",
        "ttsa",
        "--problem",
        "quadratic",
        "--param",
        "d_l=7",
        "--param",
        "d_u=4",
        "--param",
        "kappa=30",
        "--iters",
        "50",
        "--json",
    ]);
    assert_eq!(v["dims"]["d_u"], 4);
    assert_eq!(v["dims"]["d_l"], 7);
    assert_eq!(v["final"]["phi"].as_array().unwrap().len(), 7);
    // A domain parameter is honoured: the iterates stay in the ball.
    let v = final_of(&[
        "run",
        "--algo",
        "ttsa",
        "--problem",
        "quadratic",
        "--param",
        r#"domain={kind="ball", center=[5,5,5], radius=0.5}"#,
        "--iters",
        "200",
        "--json",
    ]);
    let th: Vec<f64> = v["final"]["theta"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    let r2: f64 = th.iter().map(|t| (t - 5.0) * (t - 5.0)).sum();
    assert!(r2 <= 0.25 + 1e-12, "theta {th:?} outside the ball");
    // An instance file: the run is on that instance (d_u = 2, d_l = 3), and AID-BiO without noise converges to
    // its theta* (known in closed form), inside its box.
    let inst = Path::new(ROOT).join("docs/examples/instance.json");
    let v = final_of(&[
        "run",
        "--algo",
        "aid-bio",
        "--instance",
        inst.to_str().unwrap(),
        "--noise",
        "0",
        "--iters",
        "300",
        "--json",
    ]);
    assert_eq!(v["dims"]["d_u"], 2);
    assert_eq!(v["dims"]["d_l"], 3);
    assert!(v["final"]["theta_err_sq"].as_f64().unwrap() < 1e-20, "{}", v["final"]);
    // Step sizes from flags change the run, and are echoed as the claims schema.
    let base = [
        "run",
        "--algo",
        "ttsa",
        "--problem",
        "quadratic",
        "--iters",
        "300",
        "--noise",
        "0",
        "--json",
    ];
    let default = final_of(&base);
    let tuned = final_of(
        &[
            &base[..],
            &["--alpha", "decay:0.5/l_f:1:1", "--beta", "decay:1/l_l:1:0.5"],
        ]
        .concat(),
    );
    assert_ne!(default["final"]["theta"], tuned["final"]["theta"]);
    let spec = &tuned["algorithm_spec"];
    assert_eq!(spec["name"], "ttsa");
    assert_eq!(spec["alpha"]["kind"], "decay");
    assert_eq!(spec["alpha"]["per"], "l_f");
    assert_eq!(spec["beta"]["power"], 0.5);
    // --neumann fixes the Neumann length: fewer Hessian samples than the log growth at the same K.
    let fixed = final_of(
        &[
            &base[..],
            &[
                "--alpha",
                "decay:0.5/l_f:1:1",
                "--beta",
                "decay:1/l_l:1:0.5",
                "--neumann",
                "1",
            ],
        ]
        .concat(),
    );
    let hvp = |v: &serde_json::Value| v["final"]["counts"]["fl_hvp"].as_u64().unwrap();
    assert!(
        hvp(&fixed) < hvp(&tuned),
        "fixed Neumann length 1 used {} Hessian-vector products, the log growth {}",
        hvp(&fixed),
        hvp(&tuned)
    );
}

#[test]
fn a_toml_run_spec_in_the_claims_schema_gives_the_same_bits_as_the_flags() {
    let dir = tmp_dir("spec");
    let spec = dir.join("run.toml");
    std::fs::write(
        &spec,
        r#"iters = 400
seed = 5
[problem]
family = "quadratic"
params = { d_u = 2, d_l = 3, kappa = 2.0, mu_f = 1.0, seed = 1 }
noise = { grad_phi_fl = 0.2, grad_theta_fu = 0.2, grad_phi_fu = 0.2, hess_fl = 0.2, cross_fl = 0.2 }
[algorithm]
name = "stocbio"
alpha = { kind = "constant", c = 0.2, per = "l_f" }
beta = { kind = "constant", c = 1.0, per = "l_l" }
inner = 3
batch_c = 4.0
"#,
    )
    .unwrap();
    let from_file = final_of(&["run", "--spec", spec.to_str().unwrap(), "--json"]);
    let from_flags = final_of(&[
        "run",
        "--algo",
        "stocbio",
        "--problem",
        "quadratic",
        "--param",
        "d_u=2",
        "--param",
        "d_l=3",
        "--param",
        "kappa=2.0",
        "--param",
        "mu_f=1.0",
        "--param",
        "seed=1",
        "--noise",
        "0.2",
        "--alpha",
        "0.2/l_f",
        "--beta",
        "1/l_l",
        "--inner-steps",
        "3",
        "--batch",
        "4",
        "--iters",
        "400",
        "--seed",
        "5",
        "--json",
    ]);
    assert_eq!(from_file["iters"], 400);
    assert_eq!(from_file["final"]["theta"], from_flags["final"]["theta"]);
    assert_eq!(from_file["final"]["phi"], from_flags["final"]["phi"]);
    // Flags override the file; the file's noise is the noise when --noise is absent.
    let other_seed = final_of(&["run", "--spec", spec.to_str().unwrap(), "--seed", "6", "--json"]);
    assert_ne!(other_seed["final"]["theta"], from_file["final"]["theta"]);
    assert_eq!(from_file["noise"]["value"], 0.0);
    // A registered claim's run, shortened.
    let v = final_of(&["run", "--claim", "bsa/rate", "--iters", "50", "--json"]);
    assert_eq!(v["algorithm"], "bsa");
    assert_eq!(v["iters"], 50);
}

#[test]
fn progress_goes_to_stderr_only_when_asked_or_on_a_terminal() {
    let args = [
        "run",
        "--algo",
        "ttsa",
        "--problem",
        "quadratic",
        "--iters",
        "3000",
        "--json",
    ];
    let quiet = bilevel(&args);
    assert!(
        quiet.status.success() && quiet.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&quiet.stderr)
    );
    let shown = bilevel(&[&args[..], &["--progress"]].concat());
    let err = String::from_utf8(shown.stderr).unwrap();
    assert!(err.contains("progress: 3000/3000 iterations"), "{err}");
    // stdout is the same JSON with or without progress.
    assert_eq!(
        json(&quiet)["final"],
        serde_json::from_slice::<serde_json::Value>(&shown.stdout).unwrap()["final"]
    );
}

/// Drop the wall times, the only field that may differ between machines.
fn without_seconds(mut v: serde_json::Value) -> serde_json::Value {
    for c in v["claims"].as_array_mut().unwrap() {
        c.as_object_mut().unwrap().remove("seconds");
    }
    v
}

/// The report runs its units (registry runs) concurrently: the JSON (without wall times) is the same bits with one
/// thread as with several. Two cheap runs, one of them with exact slopes (BSA's recursion).
#[test]
fn report_units_in_parallel_give_the_same_bits_for_any_thread_count() {
    let args = [
        "report",
        "--json",
        "--only",
        "power/ttsa-wc/moreau/fixed,power/bsa/rate/no-implicit,rate/cg,rate/neumann,rate/itd-tight",
    ];
    let run = |threads: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_bilevel"))
            .args(args)
            .env("RAYON_NUM_THREADS", threads)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        without_seconds(serde_json::from_slice(&out.stdout).unwrap())
    };
    let one = run("1");
    assert_eq!(one["claims"].as_array().unwrap().len(), 5);
    assert_eq!(one, run("3"), "the report depends on the thread count");
}

#[test]
fn sharded_report_and_sweep_merge_into_exactly_the_unsharded_result() {
    let dir = tmp_dir("shards");
    let run_to = |args: &[&str], file: &str| -> PathBuf {
        let out = bilevel(args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let path = dir.join(file);
        std::fs::write(&path, out.stdout).unwrap();
        path
    };
    // report: 3 deterministic rates + 1 simulation (the three bsa claims) = 4 units over 3 shards.
    let only = ["--only", "bsa,rate/cg,rate/neumann,rate/itd-tight"];
    let whole = without_seconds(json(&bilevel(&[&["report", "--json"][..], &only].concat())));
    let parts: Vec<PathBuf> = (1..=3)
        .map(|i| {
            let s = format!("{i}/3");
            run_to(
                &[&["report", "--shard", &s][..], &only].concat(),
                &format!("report-{i}.json"),
            )
        })
        .collect();
    let mut merge_args = vec!["merge", "--json"];
    // Any order.
    merge_args.extend(parts.iter().rev().map(|p| p.to_str().unwrap()));
    let merged = without_seconds(json(&bilevel(&merge_args)));
    assert_eq!(whole["claims"].as_array().unwrap().len(), 6);
    assert_eq!(merged, whole, "merged report differs from the unsharded one");
    // Bit for bit: the fitted exponents and every mean.
    for (a, b) in whole["claims"]
        .as_array()
        .unwrap()
        .iter()
        .zip(merged["claims"].as_array().unwrap())
    {
        assert_eq!(
            a["fitted_exponent"].as_f64().unwrap().to_bits(),
            b["fitted_exponent"].as_f64().unwrap().to_bits()
        );
        for (x, y) in a["means"]
            .as_array()
            .unwrap()
            .iter()
            .zip(b["means"].as_array().unwrap())
        {
            assert_eq!(x.as_f64().unwrap().to_bits(), y.as_f64().unwrap().to_bits());
        }
    }
    // The table of the merge is the table of one machine (up to the seconds column).
    let table = |o: Output| -> Vec<String> {
        String::from_utf8(o.stdout)
            .unwrap()
            .lines()
            .map(|l| l.rsplit_once(' ').map_or(l, |x| x.0).to_string())
            .collect()
    };
    let merge_table: Vec<&str> = std::iter::once("merge")
        .chain(parts.iter().map(|p| p.to_str().unwrap()))
        .collect();
    assert_eq!(
        table(bilevel(&merge_table)),
        table(bilevel(&[&["report"][..], &only].concat()))
    );

    // sweep: 2 seeds x 1 simulation over 2 shards (a cheap run: bsa's honest-regime grid, to 3000 with sum_k sqrt(k)
    // inner steps, would be simulated five times here).
    let sweep = ["sweep", "--seeds", "2", "--only", "power/ttsa-wc/moreau/fixed"];
    let whole = json(&bilevel(&[&sweep[..], &["--json"]].concat()));
    let a = run_to(&[&sweep[..], &["--shard", "1/2"]].concat(), "sweep-1.json");
    // Another "machine": one thread instead of all cores; the bits do not change.
    let one_thread = Command::new(env!("CARGO_BIN_EXE_bilevel"))
        .args([&sweep[..], &["--shard", "1/2"]].concat())
        .env("RAYON_NUM_THREADS", "1")
        .output()
        .unwrap();
    assert!(one_thread.status.success());
    let (x, y): (serde_json::Value, serde_json::Value) = (
        serde_json::from_slice(&one_thread.stdout).unwrap(),
        serde_json::from_str(&std::fs::read_to_string(&a).unwrap()).unwrap(),
    );
    let strip = |mut v: serde_json::Value| {
        for u in v["done"].as_array_mut().unwrap() {
            for c in u["results"].as_array_mut().unwrap() {
                c.as_object_mut().unwrap().remove("seconds");
            }
        }
        v
    };
    assert_eq!(strip(x), strip(y), "a shard's result depends on the thread count");
    let b = run_to(&[&sweep[..], &["--shard", "2/2"]].concat(), "sweep-2.json");
    let merged = json(&bilevel(&["merge", "--json", a.to_str().unwrap(), b.to_str().unwrap()]));
    assert_eq!(merged, whole, "merged sweep differs from the unsharded one");
    assert_eq!(whole["claims"][0]["fitted"].as_array().unwrap().len(), 2);

    // Incomplete or mixed sets are refused.
    let (err, _) = error_and_hint(&["merge", a.to_str().unwrap()]);
    assert!(err.contains("missing shards: 2/2"), "{err}");
    let (err, _) = error_and_hint(&["merge", a.to_str().unwrap(), a.to_str().unwrap()]);
    assert!(err.contains("given twice"), "{err}");
    let (err, _) = error_and_hint(&["merge", a.to_str().unwrap(), parts[0].to_str().unwrap()]);
    assert!(err.contains("different jobs"), "{err}");
}

#[test]
fn the_run_spec_example_of_docs_cli_md_runs() {
    let doc = std::fs::read_to_string(Path::new(ROOT).join("docs/cli.md")).unwrap();
    let start = doc.find("```toml\n").expect("a TOML example") + "```toml\n".len();
    let body = &doc[start..start + doc[start..].find("```").unwrap()];
    let dir = tmp_dir("doc-spec");
    let spec = dir.join("run.toml");
    std::fs::write(&spec, body).unwrap();
    let v = final_of(&["run", "--spec", spec.to_str().unwrap(), "--json"]);
    assert_eq!(v["algorithm"], "ttsa");
    assert_eq!(v["iters"], 2000);
    assert_eq!(v["seed"], 3);
    assert_eq!(v["dims"]["d_l"], 3);
}

#[test]
fn every_tunable_algorithm_runs_from_its_two_step_schedules() {
    // Only the schedules are required; the other parameters take the defaults of `algorithms::build`, and a
    // fixed-step, noise-free run on the default quadratic gets close to theta* (well below the start's error).
    for algo in [
        "ttsa",
        "alternating",
        "alternating-multi",
        "bsa",
        "stocbio",
        "stable",
        "stable-alg6-literal",
    ] {
        let v = final_of(&[
            "run",
            "--algo",
            algo,
            "--problem",
            "quadratic",
            "--alpha",
            "0.05/l_f",
            "--beta",
            "0.5/l_l",
            "--iters",
            "500",
            "--noise",
            "0",
            "--json",
        ]);
        let start = v["trace"][0]["theta_err_sq"].as_f64().unwrap();
        let end = v["final"]["theta_err_sq"].as_f64().unwrap();
        assert!(end < start, "{algo}: theta error {start} -> {end}");
        assert_eq!(v["algorithm_spec"]["alpha"]["per"], "l_f", "{algo}");
    }
    let v = final_of(&[
        "run",
        "--algo",
        "sustain",
        "--problem",
        "quadratic",
        "--alpha",
        "decay:0.5/l_f:1:0.3333",
        "--iters",
        "500",
        "--noise",
        "0",
        "--json",
    ]);
    assert!(v["final"]["theta_err_sq"].as_f64().unwrap() < v["trace"][0]["theta_err_sq"].as_f64().unwrap());
}

/// A power test whose planted bug makes the run diverge is caught, through `report` (and its shards) as through the
/// library's `run_all`: the report must not stop with a divergence error (it did before `run_group_judged`).
#[test]
fn report_counts_a_diverging_planted_bug_as_caught() {
    for extra in [&[][..], &["--shard", "1/1"][..]] {
        let mut args = vec!["report", "--only", "power/sustain/upper-samples/stale-sample"];
        args.extend_from_slice(extra);
        let out = bilevel(&args);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        if extra.is_empty() {
            assert!(text.contains("stale-sample") && text.contains("pass"), "{text}");
        }
    }
}

/// The default steps pass the crate's own two-timescale check at every horizon: on a family whose $F$ is not
/// strongly convex TTSA's horizon-dependent $\alpha = K^{-3/5}/(2L_F)$ used to exceed $\beta = K^{-2/5}/L_s$ for
/// short runs (weakly_convex with 1 iteration, or with d_u = 1 up to about 1000), which failed with a step-size
/// error although no step was given. `algorithms::horizon_timescales` caps $\alpha$ at $\beta/2$.
#[test]
fn default_steps_pass_the_timescale_check_at_short_horizons() {
    for algo in ["ttsa", "momentum"] {
        for (params, iters) in [
            (vec![], "1"),
            (vec!["--param", "d_u=1"], "50"),
            (vec!["--param", "d_u=1"], "1000"),
        ] {
            let mut args = vec!["run", "--algo", algo, "--problem", "weakly_convex", "--iters", iters];
            args.extend(params.iter().copied());
            let out = bilevel(&args);
            assert!(
                out.status.success(),
                "{args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

/// An invalid instance file is reported with a hint to fix the file (not --param or the step flags), and entries
/// whose eigenvalues overflow are refused at load instead of surfacing as "mu_l = NaN … pass explicit steps".
#[test]
fn instance_errors_point_at_the_file() {
    let dir = tmp_dir("instance-errors");
    let text = std::fs::read_to_string(Path::new(ROOT).join("docs/examples/instance.json")).unwrap();
    // (entry of H, value, file, what the error names)
    for ((i, j), x, file, named) in [
        ((0, 0), 1e308, "huge.json", "overflow"),
        ((0, 1), 0.9, "nonsym.json", "symmetric"),
    ] {
        let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
        v["H"][i][j] = serde_json::json!(x);
        let path = dir.join(file);
        std::fs::write(&path, v.to_string()).unwrap();
        let args = [
            "run",
            "--algo",
            "ttsa",
            "--instance",
            path.to_str().unwrap(),
            "--iters",
            "3",
        ];
        let (err, hint) = error_and_hint(&args);
        assert!(err.contains(named), "{err}");
        assert!(hint.contains("instance file") && !hint.contains("--param"), "{hint}");
    }
}
