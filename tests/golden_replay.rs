//! Every deterministic trajectory of every golden file, reproduced from the pseudo-code of
//! docs/golden-format.md ("Deterministic trajectories") and the file alone: the instance, `constants`, and each
//! trajectory's `params` and `neumann_depths`. Nothing here calls the crate's algorithms, hypergradient estimators,
//! families or projections; only its matrix types and the schema's serde types are used.

use bilevel::golden::read_json;
use bilevel::golden::schema::{GoldenFile, Instance, Trajectory};
use bilevel::problem::Domain;
use bilevel::{Matrix, Vector};
use serde_json::Value;
use std::path::Path;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The exact oracles of the instance, written from the formulas of the doc's "Instance" section.
struct Inst {
    h: Matrix,
    m: Matrix,
    b_l: Vector,
    c_l: f64,
    p: Matrix,
    n: Matrix,
    q: Matrix,
    p_u: Vector,
    q_u: Vector,
    domain: Domain,
}

fn mat(rows: &[Vec<f64>]) -> Matrix {
    Matrix::from_fn(rows.len(), rows[0].len(), |i, j| rows[i][j])
}

fn vecf(v: &[f64]) -> Vector {
    Vector::from_column_slice(v)
}

impl Inst {
    fn new(i: &Instance) -> Self {
        Inst {
            h: mat(&i.h),
            m: mat(&i.m),
            b_l: vecf(&i.b_l),
            c_l: i.c_l,
            p: mat(&i.p),
            n: mat(&i.n),
            q: mat(&i.q),
            p_u: vecf(&i.p_u),
            q_u: vecf(&i.q_u),
            domain: i.domain.clone(),
        }
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
    fn gt_fl(&self, _t: &Vector, f: &Vector) -> Vector {
        &self.m * f
    }
    fn f_l(&self, t: &Vector, f: &Vector) -> f64 {
        0.5 * f.dot(&(&self.h * f)) + t.dot(&(&self.m * f)) + self.b_l.dot(f) + self.c_l
    }
    /// $H^{-1}v$ by LU (the crate uses Cholesky).
    fn solve(&self, v: &Vector) -> Vector {
        self.h.clone().lu().solve(v).unwrap()
    }
    /// $\mathcal P_\Theta$ as the doc states it: clipping to the box, radial scaling onto the ball.
    fn project(&self, t: &mut Vector) {
        match &self.domain {
            Domain::Unbounded => {}
            Domain::Box(b) => {
                let (lo, hi) = (b.lo(), b.hi());
                for i in 0..t.len() {
                    t[i] = t[i].max(lo[i]).min(hi[i]);
                }
            }
            Domain::Ball(b) => {
                let (c, radius) = (vecf(b.center()), b.radius());
                let dist = (&*t - &c).norm();
                if dist > radius {
                    *t = &c + (&*t - &c) * (radius / dist);
                }
            }
        }
    }
    /// $\hat g = \nabla_\theta f_u - Mz$ with $z$ an estimate of $H^{-1}\nabla_\phi f_u$ (doc, "Hypergradient").
    fn hypergrad(&self, t: &Vector, f: &Vector, z: impl FnOnce(&Vector) -> Vector) -> Vector {
        let g = self.gp_fu(t, f);
        self.gt_fu(t, f) - &self.m * z(&g)
    }
    /// Ghadimi–Wang with depth $p$: $N\eta(I-\eta H)^p v$.
    fn gw(&self, v: &Vector, eta: f64, n: usize, depth: usize) -> Vector {
        let mut z = v.clone();
        for _ in 0..depth {
            z = &z - eta * (&self.h * &z);
        }
        z * (n as f64 * eta)
    }
    /// stocBiO / truncated Neumann: $\eta\sum_{j<N}(I-\eta H)^j v$.
    fn neumann(&self, v: &Vector, eta: f64, n: usize) -> Vector {
        let (mut term, mut sum) = (v.clone(), v.clone());
        for _ in 1..n {
            term = &term - eta * (&self.h * &term);
            sum += &term;
        }
        sum * eta
    }
    /// CG on $Hx = v$ from $x_0$: stop when $r^\top r\le$ tol or after `max_iter` iterations.
    fn cg(&self, v: &Vector, x0: &Vector, tol: f64, max_iter: usize) -> Vector {
        let mut x = x0.clone();
        let mut r = v - &self.h * &x;
        let mut d = r.clone();
        let mut rr = r.dot(&r);
        let mut it = 0;
        while rr > tol && it < max_iter {
            let hd = &self.h * &d;
            let a = rr / d.dot(&hd);
            x += a * &d;
            r -= a * &hd;
            let rr_next = r.dot(&r);
            d = &r + (rr_next / rr) * &d;
            rr = rr_next;
            it += 1;
        }
        x
    }
    /// $T$ steps $\varphi\leftarrow\varphi-\beta\nabla_\phi f_l(\theta,\varphi)$ from $\varphi^0$.
    fn unroll(&self, t: &Vector, phi0: &Vector, beta: f64, steps: usize) -> Vector {
        let mut f = phi0.clone();
        for _ in 0..steps {
            f = &f - beta * self.gp_fl(t, &f);
        }
        f
    }
}

/// Reads `params` of a trajectory.
struct Params<'a>(&'a serde_json::Map<String, Value>);

impl Params<'_> {
    fn f(&self, key: &str) -> f64 {
        self.0[key].as_f64().unwrap_or_else(|| panic!("params.{key}"))
    }
    fn u(&self, key: &str) -> usize {
        self.0[key].as_u64().unwrap_or_else(|| panic!("params.{key}")) as usize
    }
    fn at(&self, key: &str, k: usize) -> f64 {
        self.0[key][k].as_f64().unwrap_or_else(|| panic!("params.{key}[{k}]"))
    }
    fn u_at(&self, key: &str, k: usize) -> usize {
        self.0[key][k].as_u64().unwrap_or_else(|| panic!("params.{key}[{k}]")) as usize
    }
}

/// The trajectory $(\theta^k,\phi^k)_{k=0..K}$ by the doc's pseudo-code for `tr.algorithm`.
fn replay(g: &GoldenFile, tr: &Trajectory) -> (Vec<Vector>, Vec<Vector>) {
    let ins = Inst::new(&g.instance);
    let p = Params(&tr.params);
    let kk = tr.horizon;
    let mut theta = Vector::from_element(g.instance.d_u, 1.0);
    ins.project(&mut theta);
    let mut phi = Vector::zeros(g.instance.d_l);
    let (mut ths, mut phs) = (vec![theta.clone()], vec![phi.clone()]);
    let mut depths = tr.neumann_depths.iter().copied();
    let mut depth = || depths.next().expect("a Neumann depth per estimate");
    let algo = tr.algorithm.as_str();
    // State carried across iterations by some methods.
    let mut dir = Vector::zeros(g.instance.d_u); // momentum average; SUSTAIN's h_u; VRBO's u
    let mut lower = Vector::zeros(g.instance.d_l); // SUSTAIN's h_l; VRBO's v
    let mut cg_x = Vector::zeros(g.instance.d_l); // AID-BiO's warm start
    let mut z = phi.clone(); // value-function's z
    let mut rho = 0.0;
    let mut prev = (theta.clone(), phi.clone()); // SUSTAIN's previous point; VRBO's last evaluation point
    if algo == "penalty" || algo == "primal-dual" {
        rho = p.f("rho");
    }
    for k in 0..kk {
        let alpha = p.at("alpha", k);
        match algo {
            "alternating" | "alternating-multi" | "ba" | "bsa" | "aid-bio" | "stocbio" | "ttsa" | "momentum" => {
                let beta = p.at("beta", k);
                let inner = if algo == "bsa" {
                    p.u_at("inner_steps", k)
                } else if algo == "ttsa" || algo == "momentum" {
                    1
                } else {
                    p.u("inner_steps")
                };
                phi = ins.unroll(&theta, &phi, beta, inner);
                let h = match algo {
                    "alternating" | "alternating-multi" => ins.gt_fu(&theta, &phi),
                    "ba" => ins.hypergrad(&theta, &phi, |v| ins.solve(v)),
                    "aid-bio" => ins.hypergrad(&theta, &phi, |v| {
                        cg_x = ins.cg(v, &cg_x, p.f("cg_tol"), p.u("cg_max_iter"));
                        cg_x.clone()
                    }),
                    "stocbio" => {
                        let (eta, n) = (p.f("neumann_eta"), p.u_at("neumann_terms", k));
                        ins.hypergrad(&theta, &phi, |v| ins.neumann(v, eta, n))
                    }
                    _ => {
                        let (eta, n) = (p.f("neumann_eta"), p.u_at("neumann_terms", k));
                        let d = depth();
                        ins.hypergrad(&theta, &phi, |v| ins.gw(v, eta, n, d))
                    }
                };
                dir = match p.0.get("momentum").and_then(Value::as_f64) {
                    Some(w) if k > 0 => w * &dir + (1.0 - w) * &h,
                    _ => h,
                };
                theta = &theta - alpha * &dir;
                ins.project(&mut theta);
            }
            "stable" | "stable-alg6-literal" => {
                let beta = p.at("beta", k);
                let h = ins.hypergrad(&theta, &phi, |v| ins.solve(v));
                let old = theta.clone();
                theta = &theta - alpha * h;
                ins.project(&mut theta);
                let corr = ins.solve(&(ins.m.transpose() * (&theta - &old)));
                let step = &phi - beta * ins.gp_fl(&old, &phi);
                phi = if algo == "stable" {
                    step - corr
                } else {
                    step + beta * corr
                };
            }
            "sustain" => {
                let (eta, n) = (p.f("neumann_eta"), p.u_at("neumann_terms", k));
                let keep = 1.0 - (p.f("c_eta") * alpha * alpha).min(1.0);
                let gl = ins.gp_fl(&theta, &phi);
                let d = depth();
                let gu = ins.hypergrad(&theta, &phi, |v| ins.gw(v, eta, n, d));
                if k > 0 && keep > 0.0 {
                    let d_old = depth();
                    assert_eq!(d_old, d, "SUSTAIN evaluates one sample at both points");
                    let old_l = ins.gp_fl(&prev.0, &prev.1);
                    let old_u = ins.hypergrad(&prev.0, &prev.1, |v| ins.gw(v, eta, n, d));
                    lower = gl + keep * (&lower - old_l);
                    dir = gu + keep * (&dir - old_u);
                } else {
                    lower = gl;
                    dir = gu;
                }
                prev = (theta.clone(), phi.clone());
                phi = &phi - p.f("c_beta") * alpha * &lower;
                theta = &theta - alpha * &dir;
                ins.project(&mut theta);
            }
            "penalty" | "primal-dual" => {
                let (a1, gamma) = (p.f("a1"), p.f("gamma_z"));
                for _ in 0..p.u("inner_steps") {
                    z = &z - gamma * (ins.gp_fl(&theta, &z) + a1 * &z);
                }
                let v_a = ins.f_l(&theta, &z) + 0.5 * a1 * z.norm_squared() + p.f("a2");
                let gap = ins.f_l(&theta, &phi) - v_a;
                let w = match p.0.get("dual_step") {
                    None if gap <= 0.0 => 0.0,
                    _ => rho,
                };
                let mut gu = ins.gt_fu(&theta, &phi);
                let mut gp = ins.gp_fu(&theta, &phi);
                if w > 0.0 {
                    gu += w * (ins.gt_fl(&theta, &phi) - ins.gt_fl(&theta, &z));
                    gp += w * ins.gp_fl(&theta, &phi);
                }
                theta = &theta - alpha * gu;
                ins.project(&mut theta);
                phi = &phi - alpha * gp;
                if let Some(step) = p.0.get("dual_step").and_then(Value::as_f64) {
                    rho = (rho + step * gap).max(0.0);
                }
            }
            "itd-bio" => {
                let (beta, t) = (p.f("beta"), p.u("T"));
                let phi_t = ins.unroll(&theta, &phi, beta, t);
                // Z_T = dφ^T/dθ by the forward recursion (32).
                let mut jz = Matrix::zeros(g.instance.d_l, g.instance.d_u);
                for _ in 0..t {
                    jz = &jz - beta * (&ins.h * &jz) - beta * ins.m.transpose();
                }
                let h = ins.gt_fu(&theta, &phi_t) + jz.transpose() * ins.gp_fu(&theta, &phi_t);
                phi = phi_t;
                theta = &theta - alpha * h;
                ins.project(&mut theta);
            }
            "pzobo" => {
                let (beta, t, delta, q) = (p.f("beta"), p.u("T"), p.f("delta"), p.u("Q"));
                let phi_t = ins.unroll(&theta, &phi, beta, t);
                let gp = ins.gp_fu(&theta, &phi_t);
                let mut h = ins.gt_fu(&theta, &phi_t);
                for j in 0..q {
                    let u: Vec<f64> = serde_json::from_value(p.0["directions"][k][j].clone()).unwrap();
                    let u = vecf(&u);
                    let shifted = &theta + delta * &u;
                    let diff = ins.unroll(&shifted, &phi, beta, t) - &phi_t;
                    h += (diff.dot(&gp) / (q as f64 * delta)) * u;
                }
                phi = phi_t;
                theta = &theta - alpha * h;
                ins.project(&mut theta);
            }
            "vrbo" => {
                let (eta, n, beta) = (p.f("neumann_eta"), p.u("neumann_terms"), p.f("beta"));
                let est = |t: &Vector, f: &Vector| ins.hypergrad(t, f, |v| ins.neumann(v, eta, n));
                if p.0["refresh"][k].as_bool().unwrap() {
                    dir = est(&theta, &phi);
                    lower = ins.gp_fl(&theta, &phi);
                    prev = (theta.clone(), phi.clone());
                }
                theta = &theta - alpha * &dir;
                ins.project(&mut theta);
                for _ in 0..p.u("m") {
                    phi = &phi - beta * &lower;
                    dir += est(&theta, &phi) - est(&prev.0, &prev.1);
                    lower += ins.gp_fl(&theta, &phi) - ins.gp_fl(&prev.0, &prev.1);
                    prev = (theta.clone(), phi.clone());
                }
            }
            other => panic!("no pseudo-code for {other}"),
        }
        ths.push(theta.clone());
        phs.push(phi.clone());
    }
    assert!(depths.next().is_none(), "{algo}: unused Neumann depths");
    (ths, phs)
}

/// The checker's error measure for one iterate: max |a − b| / max(max |b|, 1).
fn err(a: &Vector, b: &[f64]) -> f64 {
    let b = vecf(b);
    (a - &b).amax() / b.amax().max(1.0)
}

/// Each trajectory of each committed golden file agrees with the pseudo-code within the conformance tolerance of
/// `trajectories` ($10^{-8}$, docs/golden-format.md: rounding differences through $K$ steps and the inner loops).
/// The replay differs from the crate's order of operations (LU instead of Cholesky, forward-mode ITD instead of
/// reverse, a VRBO refresh of one sample instead of the mean of $S$ equal ones), so agreement is not bit-for-bit.
#[test]
fn trajectories_reproduce_from_the_documented_pseudo_code() {
    let mut worst: f64 = 0.0;
    let mut count = 0;
    for entry in std::fs::read_dir(Path::new(ROOT).join("tests/golden")).unwrap() {
        let path = entry.unwrap().path();
        let v = read_json(&path).unwrap();
        if v["schema"] != "bilevel-golden" {
            continue; // family files have no trajectories
        }
        let g: GoldenFile = serde_json::from_value(v).unwrap();
        for tr in &g.trajectories {
            let (ths, phs) = replay(&g, tr);
            for k in 0..=tr.horizon {
                let e = err(&ths[k], &tr.theta[k]).max(err(&phs[k], &tr.phi[k]));
                assert!(
                    e <= 1e-8,
                    "{} {}: iterate {k} differs by {e:e} from the pseudo-code",
                    g.name,
                    tr.algorithm
                );
                worst = worst.max(e);
            }
            count += 1;
        }
    }
    assert!(count >= 6 * 16, "every algorithm on every file: {count}");
    eprintln!("{count} trajectories reproduced, worst error {worst:e}");
}

/// The replay is not vacuous: a wrong convention (SUSTAIN's first step as a recursion from zero, momentum's first
/// direction averaged with zero, STABLE without its correction) moves the trajectory far beyond the tolerance.
#[test]
fn replay_detects_a_wrong_convention() {
    let g: GoldenFile =
        serde_json::from_value(read_json(&Path::new(ROOT).join("tests/golden/quadratic_3x5.json")).unwrap()).unwrap();
    for (algo, key) in [
        ("momentum", "momentum"),
        ("stable", "stable"),
        ("ttsa", "neumann_terms"),
    ] {
        let mut tr = g.trajectories.iter().find(|t| t.algorithm == algo).unwrap().clone();
        match key {
            // Momentum weight 0.9 instead of the file's 0.5.
            "momentum" => {
                tr.params.insert("momentum".into(), 0.9.into());
            }
            // STABLE read as its literal Alg 6.
            "stable" => tr.algorithm = "stable-alg6-literal".into(),
            // One Neumann term fewer at every k.
            _ => {
                let n: Vec<usize> = serde_json::from_value(tr.params["neumann_terms"].clone()).unwrap();
                tr.params.insert(
                    "neumann_terms".into(),
                    n.iter().map(|x| x - 1).collect::<Vec<_>>().into(),
                );
            }
        }
        let (ths, _) = replay(&g, &tr);
        let e = (1..=tr.horizon).map(|k| err(&ths[k], &tr.theta[k])).fold(0.0, f64::max);
        assert!(e > 1e-4, "{algo} with a wrong {key}: error only {e:e}");
    }
}
