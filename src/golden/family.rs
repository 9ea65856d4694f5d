//! Golden files beyond quadratics (schema [`FAMILY_SCHEMA`]): the hyperparameter family (4), whose Hessian depends
//! on $\theta$ and cross derivative on $\phi$, and the weakly convex family with its proximal map (37) and Moreau
//! measure (38). The file holds the family's **data** and exact values at listed points; the formulas that turn
//! the data into values are stated in `docs/golden-format.md` ("Families beyond quadratics"), so another language
//! evaluates them without the crate. Values are computed here with the families' own oracles
//! ([`crate::families::hyperparameter`], [`crate::families::weakly_convex`]); the test
//! `golden_families::family_values_match_the_documented_formulas` re-derives them from the data and the doc.

use super::schema::{rows, vec};
use crate::error::Result;
use crate::families::hyperparameter::{Hyperparameter, HyperparameterSpec};
use crate::families::weakly_convex::{WeaklyConvex, WeaklyConvexSpec};
use crate::linalg::Vector;
use crate::problem::{Bilevel, Sample};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use serde_json::{Value, json};

/// The value of `schema` in a family golden file.
pub const FAMILY_SCHEMA: &str = "bilevel-golden-family";
/// Its version.
pub const FAMILY_SCHEMA_VERSION: u32 = 1;

/// FNV-1a 64 of the little-endian bytes of every number in `values`, in order, as 16 hex digits (the quadratic
/// files' hash, over the family's data in the documented order).
pub fn data_hash(values: &[f64]) -> String {
    let mut bytes = Vec::with_capacity(8 * values.len());
    for v in values {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    format!("{:016x}", crate::stats::seeds::fnv1a64(&bytes))
}

/// Exact values of every oracle at $(\theta,\phi)$, plus $\phi^\star$, $J$, $F$, $\nabla F$ and the surrogate (18).
fn point(p: &dyn Bilevel, theta: &Vector, phi: &Vector) -> Result<Value> {
    let d = p.dims();
    let e = Sample::Exact;
    let mut gu = Vector::zeros(d.d_u);
    let mut gp = Vector::zeros(d.d_l);
    let mut gl = Vector::zeros(d.d_l);
    let mut gtl = Vector::zeros(d.d_u);
    p.grad_theta_fu(e, theta, phi, &mut gu);
    p.grad_phi_fu(e, theta, phi, &mut gp);
    p.grad_phi_fl(e, theta, phi, &mut gl);
    p.grad_theta_fl(e, theta, phi, &mut gtl);
    Ok(json!({
        "theta": vec(theta), "phi": vec(phi),
        "f_u": p.f_u(e, theta, phi), "f_l": p.f_l(e, theta, phi),
        "grad_theta_fu": vec(&gu), "grad_phi_fu": vec(&gp),
        "grad_phi_fl": vec(&gl), "grad_theta_fl": vec(&gtl),
        "hess_fl": rows(&p.hess_fl(e, theta, phi)),
        "cross_fl": rows(&p.cross_matrix_fl(e, theta, phi)),
        "surrogate": vec(&crate::hypergrad::exact::surrogate(p, e, theta, phi)?),
        "phi_star": vec(&p.phi_star(theta)),
        "jacobian": rows(&p.jacobian_phi_star(theta)?),
        "F": p.value_f(theta),
        "grad_F": vec(&p.grad_f(theta)?),
    }))
}

fn gaussian(rng: &mut ChaCha8Rng, n: usize) -> Vector {
    Vector::from_fn(n, |_, _| StandardNormal.sample(rng))
}

fn header(name: &str, family: &str, provenance: &str, hash: String) -> serde_json::Map<String, Value> {
    let v = json!({
        "schema": FAMILY_SCHEMA, "schema_version": FAMILY_SCHEMA_VERSION,
        "crate_version": env!("CARGO_PKG_VERSION"), "name": name, "provenance": provenance,
        "family": family, "instance_hash": hash,
    });
    match v {
        Value::Object(m) => m,
        _ => unreachable!(),
    }
}

/// The hyperparameter family's file: data $X, y, \bar X, \bar y$, the box, and values at three points (the lower
/// corner, the centre, a random point of $\Theta$) with random $\phi$.
pub fn hyperparameter(spec: &HyperparameterSpec) -> Result<Value> {
    let h: Hyperparameter = spec.build()?;
    let mut data_values = Vec::new();
    for (x, y) in [(&h.train.x, &h.train.y), (&h.val.x, &h.val.y)] {
        for r in rows(x) {
            data_values.extend(r);
        }
        data_values.extend(y.iter());
    }
    let mut m = header(
        "hyperparameter_4",
        "hyperparameter",
        &format!("families::hyperparameter::HyperparameterSpec {spec:?}"),
        data_hash(&data_values),
    );
    m.insert(
        "data".into(),
        json!({
            "X_train": rows(&h.train.x), "y_train": vec(&h.train.y),
            "X_val": rows(&h.val.x), "y_val": vec(&h.val.y),
        }),
    );
    m.insert("domain".into(), serde_json::to_value(h.domain()).expect("serialisable"));
    let p = spec.p;
    let mut rng = ChaCha8Rng::seed_from_u64(crate::stats::seeds::fnv1a64(b"golden hyperparameter"));
    let mut thetas = vec![
        Vector::from_element(p, spec.lo),
        Vector::from_element(p, 0.5 * (spec.lo + spec.hi)),
    ];
    let mut t = gaussian(&mut rng, p).map(|x| spec.lo + (spec.hi - spec.lo) * (0.5 + 0.25 * x.tanh()));
    h.domain().project(&mut t);
    thetas.push(t);
    let mut points = Vec::new();
    for theta in &thetas {
        points.push(point(&h, theta, &gaussian(&mut rng, p))?);
    }
    m.insert("points".into(), Value::Array(points));
    Ok(Value::Object(m))
}

/// The weakly convex family's file: data $A, S, c, p$, the box, values at three points, and the prox (37) and
/// Moreau measure (38) at $\rho = 2\rho_F$ for four points $\vartheta$ (one outside $\Theta$, so the box is active).
pub fn weakly_convex(spec: &WeaklyConvexSpec) -> Result<Value> {
    let w: WeaklyConvex = spec.build()?;
    let c = spec.amplitude;
    let mut data_values = Vec::new();
    for r in rows(&w.a).into_iter().chain(rows(&w.s)) {
        data_values.extend(r);
    }
    data_values.extend([c, w.p]);
    let mut m = header(
        "weakly_convex_2x3",
        "weakly_convex",
        &format!("families::weakly_convex::WeaklyConvexSpec {spec:?}"),
        data_hash(&data_values),
    );
    m.insert(
        "data".into(),
        json!({"A": rows(&w.a), "S": rows(&w.s), "c": c, "p": w.p}),
    );
    m.insert("domain".into(), serde_json::to_value(w.domain()).expect("serialisable"));
    let k = w.constants();
    let mut rng = ChaCha8Rng::seed_from_u64(crate::stats::seeds::fnv1a64(b"golden weakly convex"));
    let mut points = Vec::new();
    for _ in 0..3 {
        let mut theta = gaussian(&mut rng, spec.d_u);
        w.domain().project(&mut theta);
        points.push(point(&w, &theta, &gaussian(&mut rng, spec.d_l))?);
    }
    m.insert("points".into(), Value::Array(points));
    let rho = 2.0 * k.weak_convexity;
    let mut cases = Vec::new();
    let mut varthetas: Vec<Vector> = (0..3).map(|_| gaussian(&mut rng, spec.d_u)).collect();
    varthetas.push(Vector::from_element(spec.d_u, spec.radius + 1.0));
    for v in &varthetas {
        let t = w.prox(v, rho)?;
        cases.push(json!({
            "vartheta": vec(v), "theta_hat": vec(&t),
            "moreau_gap": w.moreau_gap(v, rho)?, "moreau_envelope": w.moreau_envelope(v, rho)?,
        }));
    }
    m.insert(
        "prox".into(),
        json!({"rho": rho, "weak_convexity": k.weak_convexity, "cases": cases}),
    );
    Ok(Value::Object(m))
}

/// Every built-in family file (default specs of both families).
pub fn generate_families() -> Result<Vec<Value>> {
    Ok(vec![
        hyperparameter(&HyperparameterSpec::default())?,
        weakly_convex(&WeaklyConvexSpec::default())?,
    ])
}
