//! Golden files beyond quadratics: the committed family files equal a fresh generation, every value is re-derived
//! from the file's data with the formulas of docs/golden-format.md ("Families beyond quadratics"), and
//! `bilevel check` compares them.

use bilevel::golden::check::{Tolerances, check};
use bilevel::golden::family::generate_families;
use bilevel::golden::{read_json, to_json_value};
use bilevel::{Matrix, Vector};
use serde_json::Value;
use std::path::Path;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const FAMILIES: [&str; 2] = ["hyperparameter_4", "weakly_convex_2x3"];

fn load(name: &str) -> Value {
    read_json(&Path::new(ROOT).join("tests/golden").join(format!("{name}.json"))).unwrap()
}

fn m(v: &Value) -> Matrix {
    let rows: Vec<Vec<f64>> = serde_json::from_value(v.clone()).unwrap();
    Matrix::from_fn(rows.len(), rows[0].len(), |i, j| rows[i][j])
}

fn v(x: &Value) -> Vector {
    let xs: Vec<f64> = serde_json::from_value(x.clone()).unwrap();
    Vector::from_vec(xs)
}

fn f(x: &Value) -> f64 {
    x.as_f64().unwrap()
}

/// The checker's measure: max |a − b| / max(max |b|, 1).
fn err_m(a: &Matrix, b: &Matrix) -> f64 {
    (a - b).amax() / b.amax().max(1.0)
}

fn err_v(a: &Vector, b: &Vector) -> f64 {
    (a - b).amax() / b.amax().max(1.0)
}

fn err_s(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs().max(1.0)
}

/// FNV-1a 64 as documented (offset basis and prime written out, not the crate's function).
fn fnv(values: &[f64]) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for x in values {
        for b in x.to_le_bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x100000001b3);
        }
    }
    format!("{h:016x}")
}

fn flat(x: &Matrix) -> Vec<f64> {
    (0..x.nrows())
        .flat_map(|i| (0..x.ncols()).map(move |j| (i, j)))
        .map(|(i, j)| x[(i, j)])
        .collect()
}

#[test]
fn committed_family_files_match_a_fresh_generation() {
    let fresh = generate_families().unwrap();
    let names: Vec<&str> = fresh.iter().map(|x| x["name"].as_str().unwrap()).collect();
    assert_eq!(names, FAMILIES);
    for x in &fresh {
        let on_disk = load(x["name"].as_str().unwrap());
        let now: Value = serde_json::from_str(&to_json_value(x)).unwrap();
        // 1e-12: the same code on another machine may differ in the last bits (libm's sin/cos), not more.
        let r = check(&on_disk, &now, &Tolerances::uniform(1e-12)).unwrap();
        assert!(
            r.ok(),
            "{} differs from a fresh generation:\n{}",
            x["name"],
            r.render(10)
        );
        assert!(r.skipped.is_empty() || r.skipped == ["prox"], "{:?}", r.skipped);
    }
}

/// Every value at every point, re-derived from the data alone. Tolerance $10^{-10}$: the checker's tolerance of
/// exact values (LU here, Cholesky in the crate; $\kappa\le 10^2$).
#[test]
fn family_values_match_the_documented_formulas() {
    let mut worst: f64 = 0.0;
    // Hyperparameter (4): ridge with per-coordinate weights theta.
    let g = load("hyperparameter_4");
    let d = &g["data"];
    let (x, y, xv, yv) = (m(&d["X_train"]), v(&d["y_train"]), m(&d["X_val"]), v(&d["y_val"]));
    let mut all = flat(&x);
    all.extend(y.iter());
    all.extend(flat(&xv));
    all.extend(yv.iter());
    assert_eq!(g["instance_hash"].as_str().unwrap(), fnv(&all));
    let (mm, nn) = (x.nrows() as f64, xv.nrows() as f64);
    let a = x.transpose() * &x / mm;
    let b = x.transpose() * &y / mm;
    let av = xv.transpose() * &xv / nn;
    let bv = xv.transpose() * &yv / nn;
    let f_u = |p: &Vector| (&xv * p - &yv).norm_squared() / (2.0 * nn);
    let hess = |t: &Vector| &a + Matrix::from_diagonal(&t.map(|s| 2.0 * s * s));
    let cross = |t: &Vector, p: &Vector| Matrix::from_diagonal(&t.component_mul(p).map(|s| 4.0 * s));
    for pt in g["points"].as_array().unwrap() {
        let (t, p) = (v(&pt["theta"]), v(&pt["phi"]));
        let h = hess(&t);
        let fl = (&x * &p - &y).norm_squared() / (2.0 * mm) + t.component_mul(&p).norm_squared();
        let gpu = &av * &p - &bv;
        let gpl = &a * &p - &b + t.component_mul(&t).component_mul(&p) * 2.0;
        let gtl = t.component_mul(&p).component_mul(&p) * 2.0;
        let star = h.clone().lu().solve(&b).unwrap();
        // J = dphi*/dtheta = -H^{-1} (d_theta grad_phi f_l) = -H^{-1} cross^T, d_l x d_u.
        let jac = -h.clone().lu().solve(&cross(&t, &star).transpose()).unwrap();
        let grad_f = jac.transpose() * (&av * &star - &bv);
        let sur = -(cross(&t, &p) * h.clone().lu().solve(&gpu).unwrap());
        let errs = [
            err_s(f_u(&p), f(&pt["f_u"])),
            err_s(fl, f(&pt["f_l"])),
            err_v(&Vector::zeros(t.len()), &v(&pt["grad_theta_fu"])),
            err_v(&gpu, &v(&pt["grad_phi_fu"])),
            err_v(&gpl, &v(&pt["grad_phi_fl"])),
            err_v(&gtl, &v(&pt["grad_theta_fl"])),
            err_m(&h, &m(&pt["hess_fl"])),
            err_m(&cross(&t, &p), &m(&pt["cross_fl"])),
            err_v(&star, &v(&pt["phi_star"])),
            err_m(&jac, &m(&pt["jacobian"])),
            err_s(f_u(&star), f(&pt["F"])),
            err_v(&grad_f, &v(&pt["grad_F"])),
            err_v(&sur, &v(&pt["surrogate"])),
        ];
        for (i, e) in errs.iter().enumerate() {
            assert!(*e < 1e-10, "hyperparameter value #{i} off by {e:e}");
            worst = worst.max(*e);
        }
    }
    // Weakly convex: f_l = 1/2 (phi - A theta)^T S (phi - A theta), f_u = c sum cos phi + p/2 |theta|^2.
    let g = load("weakly_convex_2x3");
    let d = &g["data"];
    let (am, s, c, p) = (m(&d["A"]), m(&d["S"]), f(&d["c"]), f(&d["p"]));
    let mut all = flat(&am);
    all.extend(flat(&s));
    all.extend([c, p]);
    assert_eq!(g["instance_hash"].as_str().unwrap(), fnv(&all));
    let big_f = |t: &Vector| c * (&am * t).map(f64::cos).sum() + 0.5 * p * t.norm_squared();
    let grad_big_f = |t: &Vector| -c * am.transpose() * (&am * t).map(f64::sin) + p * t;
    for pt in g["points"].as_array().unwrap() {
        let (t, ph) = (v(&pt["theta"]), v(&pt["phi"]));
        let r = &ph - &am * &t;
        let cross = -(am.transpose() * &s); // d_u x d_l
        let gpu = -c * ph.map(f64::sin);
        let sur = p * &t - &cross * s.clone().lu().solve(&gpu).unwrap();
        let errs = [
            err_s(c * ph.map(f64::cos).sum() + 0.5 * p * t.norm_squared(), f(&pt["f_u"])),
            err_s(0.5 * r.dot(&(&s * &r)), f(&pt["f_l"])),
            err_v(&(p * &t), &v(&pt["grad_theta_fu"])),
            err_v(&gpu, &v(&pt["grad_phi_fu"])),
            err_v(&(&s * &r), &v(&pt["grad_phi_fl"])),
            err_v(&(-(am.transpose() * (&s * &r))), &v(&pt["grad_theta_fl"])),
            err_m(&s, &m(&pt["hess_fl"])),
            err_m(&cross, &m(&pt["cross_fl"])),
            err_v(&(&am * &t), &v(&pt["phi_star"])),
            err_m(&am, &m(&pt["jacobian"])),
            err_s(big_f(&t), f(&pt["F"])),
            err_v(&grad_big_f(&t), &v(&pt["grad_F"])),
            err_v(&sur, &v(&pt["surrogate"])),
        ];
        for (i, e) in errs.iter().enumerate() {
            assert!(*e < 1e-10, "weakly convex value #{i} off by {e:e}");
            worst = worst.max(*e);
        }
    }
    // The prox (37): theta_hat minimises F + rho/2 |. - vartheta|^2 over the box; checked by its optimality
    // condition (a fixed point of the projected gradient map), not by re-running a solver. rho exceeds the
    // weak-convexity modulus c lambda_max(A^T A) - p, so the minimiser is unique.
    let px = &g["prox"];
    let rho = f(&px["rho"]);
    let lam = (am.transpose() * &am).symmetric_eigenvalues().max();
    let rho_f = (c * lam - p).max(0.0);
    assert!(err_s(rho_f, f(&px["weak_convexity"])) < 1e-12 && rho > rho_f);
    let (lo, hi) = (v(&g["domain"]["lo"]), v(&g["domain"]["hi"]));
    let mut active = 0;
    for case in px["cases"].as_array().unwrap() {
        let (vt, th) = (v(&case["vartheta"]), v(&case["theta_hat"]));
        let step = 1.0 / (p + c * lam + rho);
        let grad = grad_big_f(&th) + rho * (&th - &vt);
        let moved = (&th - step * grad).zip_zip_map(&lo, &hi, |x, l, h| x.clamp(l, h)) - &th;
        assert!(moved.amax() < 1e-11, "prox is not stationary: {}", moved.amax());
        assert!(err_s((&th - &vt).norm_squared(), f(&case["moreau_gap"])) < 1e-10);
        let env = big_f(&th) + 0.5 * rho * (&th - &vt).norm_squared();
        assert!(err_s(env, f(&case["moreau_envelope"])) < 1e-10);
        active += usize::from(th.iter().zip(hi.iter()).any(|(x, h)| x == h));
    }
    assert!(active >= 1, "one prox point on the boundary of the box");
    eprintln!("family values: worst error {worst:e}");
}

#[test]
fn check_compares_family_files() {
    let g = load("hyperparameter_4");
    let tol = Tolerances::conformance();
    assert!(check(&g, &g, &tol).unwrap().ok());
    let grads: Vec<Value> = g["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| serde_json::json!({"grad_F": p["grad_F"], "cross_fl": p["cross_fl"]}))
        .collect();
    let t = serde_json::json!({
        "schema": "bilevel-golden-family", "schema_version": 1, "instance_hash": g["instance_hash"],
        "points": grads,
    });
    let r = check(&g, &t, &tol).unwrap();
    assert!(
        r.ok() && r.fields.len() == 6 && r.warnings.is_empty(),
        "{}",
        r.render(5)
    );
    // A factor 2 instead of 4 in the cross derivative (d^2/dtheta dphi of |theta . phi|^2) is caught.
    let mut bad = t.clone();
    let c = bad["points"][1]["cross_fl"][0][0].as_f64().unwrap();
    bad["points"][1]["cross_fl"][0][0] = (c / 2.0).into();
    let r = check(&g, &bad, &tol).unwrap();
    assert_eq!(r.fields[0].worst, "points[1].cross_fl[0][0]");
    assert!(!r.ok());
    // A quadratic THEIRS against a family file is an error, and the other way round.
    let q = read_json(&Path::new(ROOT).join("tests/golden/quadratic_3x5.json")).unwrap();
    assert!(check(&g, &q, &tol).unwrap_err().to_string().contains("schema"));
    assert!(check(&q, &t, &tol).unwrap_err().to_string().contains("schema"));
}
