//! Golden files: the committed files equal a fresh generation, their values match independent formulas, the noise
//! tape replays, `bilevel check` catches what it should and fails cleanly, docs/equations.md is complete.

use bilevel::golden::check::{Tolerances, check};
use bilevel::golden::generate::{extract, generate_builtins};
use bilevel::golden::schema::{GoldenFile, Instance};
use bilevel::golden::{read_json, to_json};
use bilevel::problem::Domain;
use bilevel::{BilevelError, Matrix, Vector};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const NAMES: [&str; 6] = [
    "quadratic_3x5",
    "quadratic_6x2_box",
    "meta_learning_3x12",
    "quadratic_2x3_ttsa",
    "quadratic_3x4_ball",
    "quadratic_3x4_ball_inactive",
];

fn golden_path(name: &str) -> PathBuf {
    Path::new(ROOT).join("tests/golden").join(format!("{name}.json"))
}

fn load(name: &str) -> GoldenFile {
    serde_json::from_value(read_json(&golden_path(name)).unwrap()).unwrap()
}

fn tmp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("bilevel-golden-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn mat(rows: &[Vec<f64>]) -> Matrix {
    Matrix::from_fn(rows.len(), rows[0].len(), |i, j| rows[i][j])
}

fn vecf(v: &[f64]) -> Vector {
    Vector::from_column_slice(v)
}

/// max |a − b| / max(max |b|, 1): the checker's error measure, recomputed here.
fn err(a: &Vector, b: &Vector) -> f64 {
    (a - b).amax() / b.amax().max(1.0)
}

/// The instance as plain matrices, with every quantity computed by LU solves and the formulas of
/// docs/golden-format.md, independently of `Quadratic` (which uses Cholesky and precomputed A_F, g_F).
struct Plain {
    h: Matrix,
    m: Matrix,
    b_l: Vector,
    p: Matrix,
    n: Matrix,
    q: Matrix,
    p_u: Vector,
    q_u: Vector,
    c_u: f64,
}

impl Plain {
    fn new(i: &Instance) -> Self {
        Plain {
            h: mat(&i.h),
            m: mat(&i.m),
            b_l: vecf(&i.b_l),
            p: mat(&i.p),
            n: mat(&i.n),
            q: mat(&i.q),
            p_u: vecf(&i.p_u),
            q_u: vecf(&i.q_u),
            c_u: i.c_u,
        }
    }
    fn solve(&self, v: &Vector) -> Vector {
        self.h.clone().lu().solve(v).unwrap()
    }
    fn f_u(&self, t: &Vector, f: &Vector) -> f64 {
        0.5 * t.dot(&(&self.p * t))
            + t.dot(&(&self.n * f))
            + 0.5 * f.dot(&(&self.q * f))
            + self.p_u.dot(t)
            + self.q_u.dot(f)
            + self.c_u
    }
    fn gt_fu(&self, t: &Vector, f: &Vector) -> Vector {
        &self.p * t + &self.n * f + &self.p_u
    }
    fn gp_fu(&self, t: &Vector, f: &Vector) -> Vector {
        self.n.transpose() * t + &self.q * f + &self.q_u
    }
    fn gp_fl(&self, t: &Vector, f: &Vector) -> Vector {
        &self.h * f + self.m.transpose() * t + &self.b_l
    }
    fn phi_star(&self, t: &Vector) -> Vector {
        -self.solve(&(self.m.transpose() * t + &self.b_l))
    }
    fn jac(&self) -> Matrix {
        -self.h.clone().lu().solve(&self.m.transpose()).unwrap()
    }
    fn big_f(&self, t: &Vector) -> f64 {
        self.f_u(t, &self.phi_star(t))
    }
    fn grad_f(&self, t: &Vector) -> Vector {
        let f = self.phi_star(t);
        self.gt_fu(t, &f) + self.jac().transpose() * self.gp_fu(t, &f)
    }
}

/// FNV-1a 64 of the documented byte string, written here from the format description.
fn documented_hash(i: &Instance) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    let mut eat = |bytes: [u8; 8]| {
        for b in bytes {
            h = (h ^ u64::from(b)).wrapping_mul(0x100000001b3);
        }
    };
    eat((i.d_u as u64).to_le_bytes());
    eat((i.d_l as u64).to_le_bytes());
    let mut all: Vec<f64> = Vec::new();
    for m in [&i.h, &i.m] {
        all.extend(m.iter().flatten());
    }
    all.extend(&i.b_l);
    all.push(i.c_l);
    for m in [&i.p, &i.n, &i.q] {
        all.extend(m.iter().flatten());
    }
    all.extend(&i.p_u);
    all.extend(&i.q_u);
    all.push(i.c_u);
    for x in all {
        eat(x.to_le_bytes());
    }
    format!("{h:016x}")
}

#[test]
fn committed_golden_files_match_a_fresh_generation() {
    let fresh = generate_builtins().unwrap();
    let names: Vec<_> = fresh.iter().map(|f| f.name.clone()).collect();
    assert_eq!(names, NAMES, "the built-in set changed: update NAMES and regenerate");
    let mut committed: Vec<String> = std::fs::read_dir(Path::new(ROOT).join("tests/golden"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".json"))
        .collect();
    committed.sort();
    // The family files (tests/golden_families.rs) live in the same directory.
    let mut expected: Vec<String> = NAMES
        .iter()
        .chain(&["hyperparameter_4", "weakly_convex_2x3"])
        .map(|n| format!("{n}.json"))
        .collect();
    expected.sort();
    assert_eq!(
        committed, expected,
        "tests/golden/ must hold exactly the generated files"
    );
    for f in &fresh {
        let on_disk = read_json(&golden_path(&f.name)).unwrap();
        let now: Value = serde_json::from_str(&to_json(f)).unwrap();
        // 1e-12 relative: the same code on another machine may differ in the last bits (libm's powf/ln in the
        // schedules, FMA contraction); anything larger is a change of behaviour: regenerate with
        // `bilevel golden --out tests/golden` and review the diff.
        let report = check(&on_disk, &now, &Tolerances::uniform(1e-12)).unwrap();
        assert!(
            report.ok(),
            "{} differs from a fresh generation:\n{}",
            f.name,
            report.render(10)
        );
        assert_eq!(report.skipped.len(), 0);
    }
    let total: u64 = NAMES
        .iter()
        .map(|n| std::fs::metadata(golden_path(n)).unwrap().len())
        .sum();
    assert!(total < 400_000, "golden files should stay small, total {total} bytes");
}

#[test]
fn golden_values_match_independent_formulas() {
    for name in NAMES {
        let g = load(name);
        let i = &g.instance;
        let pl = Plain::new(i);
        assert_eq!(g.instance_hash, documented_hash(i), "{name}: hash");
        // 1e-12 below: LU vs Cholesky and different summation orders on instances with kappa(H) <= 40 agree to
        // ~kappa * 1e-16 relative to each field's size.
        for (k, pt) in g.points.iter().enumerate() {
            let t = vecf(&pt.theta);
            let f = vecf(&pt.phi);
            let ps = vecf(&pt.phi_star);
            assert!(err(&ps, &pl.phi_star(&t)) < 1e-12, "{name} point {k}: phi*");
            // (14): grad_phi f_l(theta, phi*) = 0.
            assert!(pl.gp_fl(&t, &ps).amax() < 1e-12 * pl.h.amax().max(1.0) * ps.amax().max(1.0));
            let jac = mat(&pt.jacobian);
            assert!((&jac - pl.jac()).amax() < 1e-12 * jac.amax(), "{name} point {k}: J");
            // (15) in the crate's convention: M^T + H J = 0.
            assert!((pl.m.transpose() + &pl.h * &jac).amax() < 1e-12 * pl.h.amax() * jac.amax().max(1.0));
            assert!(
                (pt.f - pl.big_f(&t)).abs() < 1e-12 * pt.f.abs().max(1.0),
                "{name} point {k}: F"
            );
            let gf = vecf(&pt.grad_f);
            assert!(err(&gf, &pl.grad_f(&t)) < 1e-12, "{name} point {k}: grad F");
            // Central differences of F: exact for a quadratic up to rounding, eps * |F| / h ~ 1e-11 at h = 1e-5.
            let fd = Vector::from_fn(t.len(), |j, _| {
                let (mut a, mut b) = (t.clone(), t.clone());
                a[j] += 1e-5;
                b[j] -= 1e-5;
                (pl.big_f(&a) - pl.big_f(&b)) / 2e-5
            });
            assert!(
                err(&fd, &gf) < 1e-8,
                "{name} point {k}: grad F vs differences {}",
                err(&fd, &gf)
            );
            assert!((pt.f_u - pl.f_u(&t, &f)).abs() < 1e-12 * pt.f_u.abs().max(1.0));
            let sur = pl.gt_fu(&t, &f) - &pl.m * pl.solve(&pl.gp_fu(&t, &f));
            assert!(
                err(&vecf(&pt.surrogate), &sur) < 1e-12,
                "{name} point {k}: surrogate (18)"
            );
        }
        // theta*: a fixed point of the projected gradient map on Theta.
        let ts = vecf(&g.theta_star);
        let mut moved = &ts - pl.grad_f(&ts);
        i.domain.project(&mut moved);
        assert!(
            (&moved - &ts).amax() < 1e-10,
            "{name}: theta* is not stationary on Theta"
        );

        let cg = &g.cg[0];
        let v = vecf(&cg.v);
        let sol = vecf(&cg.solution);
        assert!(err(&sol, &pl.solve(&v)) < 1e-12, "{name}: H^-1 v");
        assert_eq!(cg.iterates.len(), i.d_l + 1, "{name}: x_0..x_d");
        // CG terminates in d steps in exact arithmetic; in float64 the d-th iterate is within ~kappa * 1e-15.
        assert!(err(&vecf(cg.iterates.last().unwrap()), &sol) < 1e-10, "{name}: CG x_d");

        let nm = &g.neumann[0];
        let a = Matrix::identity(i.d_l, i.d_l) - nm.eta * &pl.h;
        let mut term = vecf(&nm.v);
        let mut sum = Vector::zeros(i.d_l);
        for s in &nm.partial_sums {
            sum += &term;
            assert!(err(&vecf(s), &(nm.eta * &sum)) < 1e-12, "{name}: Neumann partial sum");
            term = &a * term;
        }
        let last = vecf(nm.partial_sums.last().unwrap());
        assert!(err(&vecf(&nm.ghadimi_wang_expectation), &last) < 1e-12);
        assert!(err(&vecf(&nm.stocbio_expectation), &last) < 1e-12);

        let it = &g.itd[0];
        let t = vecf(&it.theta);
        let a = Matrix::identity(i.d_l, i.d_l) - it.beta * &pl.h;
        let b = -it.beta * pl.m.transpose();
        let mut z = Matrix::zeros(i.d_l, i.d_u);
        let mut phi = vecf(&it.phi0);
        for (k, st) in it.steps.iter().enumerate() {
            assert_eq!(st.t, k + 1);
            // (32): Z_t = A Z_{t-1} + B; phi^t = phi^{t-1} - beta grad_phi f_l.
            z = &a * z + &b;
            phi = &phi - it.beta * pl.gp_fl(&t, &phi);
            assert!((&mat(&st.z) - &z).amax() < 1e-12 * z.amax(), "{name}: Z_{}", st.t);
            assert!(err(&vecf(&st.phi_t), &phi) < 1e-12);
            let hg = pl.gt_fu(&t, &phi) + z.transpose() * pl.gp_fu(&t, &phi);
            assert!(err(&vecf(&st.forward), &hg) < 1e-12, "{name}: ITD forward T={}", st.t);
            assert!(err(&vecf(&st.reverse), &hg) < 1e-12, "{name}: ITD reverse T={}", st.t);
        }

        for tr in &g.trajectories {
            assert_eq!(
                tr.theta.len(),
                tr.horizon + 1,
                "{name} {}: theta^0..theta^K",
                tr.algorithm
            );
            assert_eq!(
                tr.theta[0], g.points[0].theta,
                "{name} {}: starts at P(1)",
                tr.algorithm
            );
        }
    }
}

/// TTSA replayed from the documented semantics with exact oracles of the written-out instance plus the tape.
fn replay_ttsa(g: &GoldenFile, zero_noise: bool) -> (Vec<Vector>, Vec<Vector>) {
    let pl = Plain::new(&g.instance);
    let s = &g.stochastic[0];
    let mut tape = s.tape.iter();
    let mut next = |kind: &str, exact: Vector| -> Vector {
        let e = tape.next().expect("tape too short");
        assert_eq!(e.kind, kind, "call kind");
        if zero_noise { exact } else { exact + vecf(&e.noise) }
    };
    let mut theta = vecf(&s.theta[0]);
    let mut phi = vecf(&s.phi[0]);
    let (mut ts, mut ps) = (vec![theta.clone()], vec![phi.clone()]);
    for k in 0..s.alpha.len() {
        let g_l = next("grad_phi_fl", pl.gp_fl(&theta, &phi));
        phi = &phi - s.beta[k] * g_l;
        let g_t = next("grad_theta_fu", pl.gt_fu(&theta, &phi));
        let mut z = next("grad_phi_fu", pl.gp_fu(&theta, &phi));
        for _ in 0..s.neumann_depths[k] {
            let hz = next("hvp_fl", &pl.h * &z);
            z = &z - s.neumann_eta * hz;
        }
        z *= s.neumann_terms[k] as f64 * s.neumann_eta;
        let c = next("cross_fl", &pl.m * &z);
        theta = &theta - s.alpha[k] * (g_t - c);
        g.instance.domain.project(&mut theta);
        ts.push(theta.clone());
        ps.push(phi.clone());
    }
    assert!(tape.next().is_none(), "tape longer than the replay");
    (ts, ps)
}

#[test]
fn ttsa_noise_tape_replays_through_exact_oracles() {
    for name in NAMES {
        let g = load(name);
        let s = &g.stochastic[0];
        for (k, (&p, &n)) in s.neumann_depths.iter().zip(&s.neumann_terms).enumerate() {
            assert!(p < n, "{name}: depth p_{k} = {p} must be < N_{k} = {n}");
        }
        let (ts, ps) = replay_ttsa(&g, false);
        // 1e-12: the replay adds exact + (noisy − exact), equal to the noisy output up to one rounding per call.
        for k in 0..ts.len() {
            assert!(err(&ts[k], &vecf(&s.theta[k])) < 1e-12, "{name}: theta^{k}");
            assert!(err(&ps[k], &vecf(&s.phi[k])) < 1e-12, "{name}: phi^{k}");
        }
        // Power: without the tape the replay is far off (noise 0.1 moves iterates by ~1e-2).
        let (ts0, _) = replay_ttsa(&g, true);
        let k = ts0.len() - 1;
        assert!(err(&ts0[k], &vecf(&s.theta[k])) > 1e-4, "{name}: the tape must matter");
    }
}

#[test]
fn meta_learning_instance_reproduces_the_family_and_non_quadratics_are_refused() {
    let g = load("meta_learning_3x12");
    let q = g.instance.build().unwrap();
    let fam = bilevel::families::build("meta_learning", 0).unwrap();
    let pl = Plain::new(&g.instance);
    for pt in &g.points {
        let t = vecf(&pt.theta);
        // 1e-10: two exact computations (the family's closed form and LU on the extracted matrices).
        assert!(err(&pl.phi_star(&t), &fam.phi_star(&t)) < 1e-10);
        assert!((pl.big_f(&t) - fam.value_f(&t)).abs() < 1e-10 * fam.value_f(&t).abs().max(1.0));
        assert!(err(&pl.grad_f(&t), &fam.grad_f(&t).unwrap()) < 1e-10);
        assert!(
            err(
                &bilevel::problem::Bilevel::grad_f(&q, &t).unwrap(),
                &fam.grad_f(&t).unwrap()
            ) < 1e-10
        );
    }
    let hyper = bilevel::families::build("hyperparameter", 0).unwrap();
    let refused = extract(hyper.as_ref());
    assert!(
        refused.is_err(),
        "hyperparameter is not quadratic in (theta, phi): {refused:?}"
    );
}

fn committed_value(name: &str) -> Value {
    read_json(&golden_path(name)).unwrap()
}

#[test]
fn check_accepts_itself_and_reports_the_worst_field_with_its_path() {
    let g = committed_value("quadratic_3x5");
    let tol = Tolerances::conformance();
    assert!(check(&g, &g, &tol).unwrap().ok());
    // A relative error of 1e-6 in one hypergradient entry must be flagged, at that entry.
    let mut t = g.clone();
    let x = t["points"][1]["grad_F"][2].as_f64().unwrap();
    let scale = g["points"][1]["grad_F"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap().abs())
        .fold(0.0, f64::max);
    t["points"][1]["grad_F"][2] = (x + 1e-6 * scale).into();
    let r = check(&g, &t, &tol).unwrap();
    assert_eq!(r.failures(), 1);
    assert_eq!(r.fields[0].worst, "points[1].grad_F[2]");
    assert!((r.fields[0].err - 1e-6).abs() < 1e-9);
    // Rounding-level differences in a trajectory pass.
    let mut t = g.clone();
    let y = t["trajectories"][3]["theta"][4][1].as_f64().unwrap();
    t["trajectories"][3]["theta"][4][1] = (y * (1.0 + 1e-13)).into();
    assert!(check(&g, &t, &tol).unwrap().ok());
    // A wrong Neumann depth (an integer) is a mismatch however small.
    let mut t = g.clone();
    let d = t["stochastic"][0]["neumann_depths"][0].as_u64().unwrap();
    t["stochastic"][0]["neumann_depths"][0] = (d + 1).into();
    let r = check(&g, &t, &tol).unwrap();
    assert_eq!(r.failures(), 1);
    assert_eq!(r.fields[0].worst, "stochastic[0].neumann_depths[0]");
    // A subset of sections: the rest is skipped, not failed.
    let sub = serde_json::json!({
        "schema": "bilevel-golden", "schema_version": 1, "instance_hash": g["instance_hash"],
        "points": g["points"],
    });
    let r = check(&g, &sub, &tol).unwrap();
    assert!(r.ok());
    assert_eq!(r.compared, vec!["points"]);
    assert_eq!(r.skipped.len(), 8);
}

#[test]
fn check_gives_clear_errors_on_bad_input() {
    let g = committed_value("quadratic_3x5");
    let tol = Tolerances::conformance();
    let msg = |t: &Value| check(&g, t, &tol).unwrap_err().to_string();
    let mut t = g.clone();
    t["schema_version"] = 3.into();
    assert!(msg(&t).contains("schema_version 3"), "{}", msg(&t));
    let mut t = g.clone();
    t["schema"] = "other".into();
    assert!(msg(&t).contains("schema is 'other'"));
    let mut t = g.clone();
    t["points"][0]["grad_F"].as_array_mut().unwrap().pop();
    assert!(matches!(
        check(&g, &t, &tol),
        Err(BilevelError::DimensionMismatch { .. })
    ));
    let mut t = g.clone();
    t["points"][0]["F"] = "1.0".into();
    assert!(msg(&t).contains("expected a number"));
    let mut t = g.clone();
    t["instance"]["d_l"] = 4.into();
    assert!(matches!(
        check(&g, &t, &tol),
        Err(BilevelError::DimensionMismatch { .. })
    ));
    let mut t = g.clone();
    t["instance_hash"] = "0000000000000000".into();
    assert!(msg(&t).contains("computed on instance"));
    let t = serde_json::json!({"schema": "bilevel-golden", "schema_version": 1});
    assert!(msg(&t).contains("no field to compare"));
    assert!(msg(&serde_json::json!([1, 2])).contains("must be a JSON object"));
    // A malformed golden file is an error too, not a panic.
    let mut bad = g.clone();
    bad.as_object_mut().unwrap().remove("points");
    assert!(check(&bad, &g, &tol).is_err());
}

fn bilevel(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_bilevel")).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn cli_check_exit_codes_and_messages() {
    let dir = tmp_dir("cli");
    let golden = golden_path("quadratic_3x5");
    let gs = golden.to_str().unwrap();
    let (code, out, _) = bilevel(&["check", gs, gs]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("OK: every field within tolerance"));
    let mut t = committed_value("quadratic_3x5");
    let x = t["itd"][0]["steps"][2]["reverse"][0].as_f64().unwrap();
    t["itd"][0]["steps"][2]["reverse"][0] = (x + 0.5).into();
    let theirs = dir.join("theirs.json");
    std::fs::write(&theirs, serde_json::to_string(&t).unwrap()).unwrap();
    let (code, out, _) = bilevel(&["check", gs, theirs.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(
        out.contains("itd[0].steps[2].reverse[0]") && out.contains("MISMATCH"),
        "{out}"
    );
    for (content, expect) in [
        ("{not json", "not valid JSON"),
        (r#"{"schema":"bilevel-golden","schema_version":7}"#, "schema_version 7"),
    ] {
        std::fs::write(&theirs, content).unwrap();
        let (code, _, err) = bilevel(&["check", gs, theirs.to_str().unwrap()]);
        assert_eq!(code, 2, "{err}");
        assert!(err.contains(expect) && !err.contains("panicked"), "{err}");
    }
    let (code, _, err) = bilevel(&["check", gs, "/nonexistent/theirs.json"]);
    assert_eq!(code, 2);
    assert!(err.contains("cannot read"));
}

#[test]
fn cli_golden_for_a_user_instance() {
    let dir = tmp_dir("user");
    let inst = Path::new(ROOT).join("docs/examples/instance.json");
    let (code, out, stderr) = bilevel(&[
        "golden",
        "--instance",
        inst.to_str().unwrap(),
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}{stderr}");
    let g: GoldenFile = serde_json::from_value(read_json(&dir.join("instance.json")).unwrap()).unwrap();
    let user: Instance = serde_json::from_value(read_json(&inst).unwrap()).unwrap();
    assert_eq!(g.instance, user, "the instance is used as given");
    let pl = Plain::new(&user);
    for pt in &g.points {
        let t = vecf(&pt.theta);
        assert!(err(&vecf(&pt.grad_f), &pl.grad_f(&t)) < 1e-12);
        assert!(
            (pt.f - pl.big_f(&t)).abs() < 1e-12 * pt.f.abs().max(1.0),
            "F includes c_u"
        );
    }
    // Bad instances: a clear error and exit 2.
    let bad = dir.join("bad.json");
    let text = std::fs::read_to_string(&inst).unwrap();
    for (content, expect) in [
        (
            text.replace("[2.0, 0.5, 0.0]", "[-2.0, 0.5, 0.0]"),
            "not positive definite",
        ),
        (
            text.replace("\"b_l\": [0.1, -0.2, 0.3]", "\"b_l\": [0.1, -0.2]"),
            "dimension mismatch in b_l",
        ),
        (text.replace("\"c_u\"", "\"c_x\""), "unknown field"),
    ] {
        std::fs::write(&bad, content).unwrap();
        let (code, _, err) = bilevel(&[
            "golden",
            "--instance",
            bad.to_str().unwrap(),
            "--out",
            dir.to_str().unwrap(),
        ]);
        assert_eq!(code, 2, "{err}");
        assert!(err.contains(expect) && !err.contains("panicked"), "{err}");
    }
}

#[test]
fn snapshot_of_list() {
    let (code, out, _) = bilevel(&["list"]);
    assert_eq!(code, 0);
    insta::assert_snapshot!("list", out);
}

#[test]
fn snapshot_of_a_check_report() {
    let g = committed_value("quadratic_6x2_box");
    let mut t = g.clone();
    t["points"][0]["grad_F"][1] = (g["points"][0]["grad_F"][1].as_f64().unwrap() + 1e-3).into();
    t["cg"][0]["iterates"][1][0] = (g["cg"][0]["iterates"][1][0].as_f64().unwrap() + 1e-7).into();
    t.as_object_mut().unwrap().remove("stochastic");
    let r = check(&g, &t, &Tolerances::conformance()).unwrap();
    insta::assert_snapshot!("check_report", r.render(5));
}

/// Every `path::item` reference of docs/equations.md names a file that defines the item; every equation (1)–(52)
/// and every Algorithm 1–9 has a row.
#[test]
fn equations_md_covers_the_lecture_and_every_reference_exists() {
    let text = std::fs::read_to_string(Path::new(ROOT).join("docs/equations.md")).unwrap();
    let mut refs = 0;
    for (i, chunk) in text.split('`').enumerate() {
        if i % 2 == 0 {
            continue;
        }
        let Some((file, item)) = chunk.split_once("::") else {
            continue;
        };
        if !(file.ends_with(".rs") || file.ends_with(".toml")) {
            continue;
        }
        let src = std::fs::read_to_string(Path::new(ROOT).join(file))
            .unwrap_or_else(|e| panic!("docs/equations.md names {file}: {e}"));
        let defined = if file.ends_with(".toml") {
            src.contains(&format!("id = \"{item}\""))
        } else {
            ["fn ", "struct ", "enum ", "trait ", "const ", "mod ", "type "]
                .iter()
                .any(|k| src.contains(&format!("{k}{item}")))
        };
        assert!(defined, "docs/equations.md: {file} does not define {item}");
        refs += 1;
    }
    assert!(refs > 60, "only {refs} references found");
    let rows: Vec<&str> = text.lines().filter(|l| l.starts_with("| ")).collect();
    let first_cell = |l: &str| l.split('|').nth(1).unwrap_or("").trim().to_string();
    let cells: Vec<String> = rows.iter().map(|l| first_cell(l)).collect();
    for n in 1..=52 {
        let tag = format!("({n})");
        assert!(
            cells
                .iter()
                .any(|c| c.split([',', ' ', '–']).any(|w| w == tag) || covers_range(c, n)),
            "docs/equations.md has no row for equation {tag}"
        );
    }
    for a in 1..=9 {
        let tag = format!("Alg {a}");
        assert!(
            cells.iter().any(|c| c.contains(&tag)),
            "docs/equations.md has no row for {tag}"
        );
    }
}

/// A first cell like `(40)–(43)` covers 40..=43.
fn covers_range(cell: &str, n: usize) -> bool {
    let Some((a, b)) = cell.split_once('–') else {
        return false;
    };
    let num = |s: &str| {
        s.trim()
            .trim_start_matches('(')
            .trim_end_matches(')')
            .parse::<usize>()
            .ok()
    };
    matches!((num(a), num(b)), (Some(a), Some(b)) if a <= n && n <= b)
}

/// The issue-11 checker: THEIRS gives only the outputs it wants compared; inputs come from the golden file.
#[test]
fn check_needs_only_the_outputs_it_compares() {
    let g = committed_value("quadratic_3x5");
    let tol = Tolerances::conformance();
    let grad: Vec<Value> = g["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| serde_json::json!({ "grad_F": p["grad_F"] }))
        .collect();
    let only = serde_json::json!({
        "schema": "bilevel-golden", "schema_version": 2, "instance_hash": g["instance_hash"], "points": grad,
    });
    let r = check(&g, &only, &tol).unwrap();
    assert!(r.ok() && r.warnings.is_empty(), "{}", r.render(5));
    assert_eq!(r.fields.len(), 3);
    assert!(r.fields.iter().all(|f| f.field.ends_with(".grad_F")));
    // A wrong value there still fails, at its path.
    let mut bad = only.clone();
    bad["points"][2]["grad_F"][0] = 0.5.into();
    let r = check(&g, &bad, &tol).unwrap();
    assert_eq!(r.failures(), 1);
    assert_eq!(r.fields[0].worst, "points[2].grad_F[0]");
    // `null` skips a point; a trajectory is matched by its algorithm; unknown keys warn; a missing hash warns.
    let ttsa = g["trajectories"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["algorithm"] == "ttsa")
        .unwrap();
    let t = serde_json::json!({
        "schema": "bilevel-golden", "schema_version": 1,
        "points": [null, {"grad_F": g["points"][1]["grad_F"], "my_note": 1}, null],
        "trajectories": [{"algorithm": "ttsa", "theta": ttsa["theta"]}],
        "extra": true,
    });
    let r = check(&g, &t, &tol).unwrap();
    assert!(r.ok(), "{}", r.render(5));
    let fields: Vec<&str> = r.fields.iter().map(|f| f.field.as_str()).collect();
    assert!(fields.contains(&"points[1].grad_F") && fields.contains(&"trajectories[6].theta"));
    let w = r.warnings.join("\n");
    assert!(
        w.contains("no instance_hash") && w.contains(g["instance_hash"].as_str().unwrap()),
        "{w}"
    );
    assert!(w.contains("points[1].my_note") && w.contains("'extra'"), "{w}");
    assert!(r.render(5).starts_with("warning: "));
    // An unknown algorithm is an error, not a silent skip.
    let mut t2 = t.clone();
    t2["trajectories"][0]["algorithm"] = "nope".into();
    assert!(
        check(&g, &t2, &tol)
            .unwrap_err()
            .to_string()
            .contains("no entry for algorithm 'nope'")
    );
    // The tape's sample word is informative: never compared.
    let mut t3 = g.clone();
    t3["stochastic"][0]["tape"][0]["sample"] = "0123456789abcdef".into();
    assert!(check(&g, &t3, &tol).unwrap().ok());
    let r = check(&g, &g, &tol).unwrap();
    assert!(!r.fields.iter().any(|f| f.field.ends_with(".sample")));
}

/// Version-1 files (no `constants`, no `params`) are still read, as golden files and as THEIRS.
#[test]
fn check_reads_schema_version_1() {
    let mut v1 = committed_value("quadratic_6x2_box");
    v1["schema_version"] = 1.into();
    v1.as_object_mut().unwrap().remove("constants");
    for t in v1["trajectories"].as_array_mut().unwrap() {
        t.as_object_mut().unwrap().remove("params");
    }
    let parsed: GoldenFile = serde_json::from_value(v1.clone()).unwrap();
    assert!(parsed.constants.is_none() && parsed.trajectories[0].params.is_empty());
    assert!(check(&v1, &v1, &Tolerances::conformance()).unwrap().ok());
    let g2 = committed_value("quadratic_6x2_box");
    assert!(check(&g2, &v1, &Tolerances::conformance()).unwrap().ok());
}

#[test]
fn cli_check_with_only_grad_f() {
    let dir = tmp_dir("gradonly");
    let golden = golden_path("quadratic_3x4_ball");
    let g = committed_value("quadratic_3x4_ball");
    let grad: Vec<Value> = g["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| serde_json::json!({ "grad_F": p["grad_F"] }))
        .collect();
    let theirs = dir.join("theirs.json");
    let t = serde_json::json!({"schema": "bilevel-golden", "schema_version": 2, "points": grad});
    std::fs::write(&theirs, t.to_string()).unwrap();
    let (code, out, err) = bilevel(&["check", golden.to_str().unwrap(), theirs.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("warning: THEIRS has no instance_hash") && out.contains("compared 3 fields"),
        "{out}"
    );
}

/// The ball instances: the constraint is active at theta* in one (theta* on the sphere, grad F along the outer
/// normal) and inactive in the other (grad F(theta*) = 0 inside).
#[test]
fn ball_instances_are_active_and_inactive() {
    for (name, active) in [("quadratic_3x4_ball", true), ("quadratic_3x4_ball_inactive", false)] {
        let g = load(name);
        let Domain::Ball(ball) = &g.instance.domain else {
            panic!("{name} is not on a ball")
        };
        let (center, radius) = (ball.center().to_vec(), ball.radius());
        let t = vecf(&g.theta_star) - vecf(&center);
        let plain = Plain::new(&g.instance);
        let grad = plain.grad_f(&vecf(&g.theta_star));
        if active {
            assert!((t.norm() - radius).abs() < 1e-12, "{name}: |theta*| = {}", t.norm());
            // KKT: grad F = -lambda (theta* - c) with lambda > 0.
            let lambda = -grad.dot(&t) / t.norm_squared();
            assert!(lambda > 0.1 && (&grad + lambda * &t).amax() < 1e-9, "{name}: {grad}");
        } else {
            assert!(t.norm() < radius - 0.5, "{name}: |theta*| = {}", t.norm());
            assert!(grad.amax() < 1e-9, "{name}: {grad}");
        }
    }
}

/// The golden writers take a file's `name` as a stem inside the output directory: a name that would write
/// elsewhere (a separator, `..`, an absolute path) is refused and nothing is written (newcomer audit, session 6).
#[test]
fn golden_names_cannot_escape_the_output_directory() {
    let dir = std::env::temp_dir().join(format!("bilevel-golden-names-{}", std::process::id()));
    for name in ["../escaped", "/tmp/abs_escape", "a/b", "..", "", "a\\b"] {
        let v = serde_json::json!({ "name": name, "x": 1 });
        let r = bilevel::golden::write_values(&[v], &dir.join("sub"));
        assert!(
            matches!(r, Err(bilevel::BilevelError::InvalidParameter { .. })),
            "{name:?}: {r:?}"
        );
    }
    assert!(!dir.join("escaped.json").exists());
    let ok = bilevel::golden::write_values(&[serde_json::json!({ "name": "plain", "x": 1 })], &dir).unwrap();
    assert_eq!(ok, vec![dir.join("plain.json")]);
    std::fs::remove_dir_all(&dir).unwrap();
}
