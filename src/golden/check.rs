//! `bilevel check GOLDEN THEIRS`: compare another implementation's output with a golden file, field by field.
//!
//! THEIRS uses the golden schema: the header (`schema`, `schema_version`) is required, every top-level section it
//! contains is compared in full (a field missing inside a section is an error), sections it omits are reported as
//! skipped. If it carries `instance_hash` or `instance`, they must be those of the golden file.
//!
//! # Error measure
//! A *field* is a number or a (nested) array of numbers, e.g. `points[1].grad_F`. Its error is
//! $$\mathrm{err} = \frac{\max_i |t_i - g_i|}{\max(\max_i |g_i|,\ 1)},$$
//! the worst entry relative to the field's largest golden entry, and absolute for fields whose entries are all
//! below 1 (so tiny entries are not judged relative to themselves, and $\nabla F(\theta^\star)\approx0$ is judged
//! absolutely: its rounding error is set by the size of the terms that cancel, about 1 here).
//! Integer fields ($T$, depths, counts) and strings must match exactly.

use super::schema::{GoldenFile, SCHEMA, SCHEMA_VERSION};
use crate::error::{BilevelError, Result};
use serde_json::Value;
use std::fmt::Write;

/// The compared top-level sections, in report order.
pub const SECTIONS: [&str; 8] = [
    "instance",
    "theta_star",
    "points",
    "cg",
    "neumann",
    "itd",
    "trajectories",
    "stochastic",
];

/// Scale floor of the error measure (module docs).
pub const SCALE_FLOOR: f64 = 1.0;

/// Relative tolerance per section.
#[derive(Debug, Clone, PartialEq)]
pub struct Tolerances {
    /// `(section, rtol)`; sections not listed use `default`.
    pub sections: Vec<(&'static str, f64)>,
    /// Tolerance of unlisted sections.
    pub default: f64,
}

impl Tolerances {
    /// For another implementation in float64 (reasons in `docs/golden-format.md`):
    /// - `instance` $10^{-15}$: a copy of the input; float64 written with 17 significant digits reads back exactly.
    /// - `theta_star`, `points`, `neumann`, `itd` $10^{-10}$: exact quantities; any backward-stable float64
    ///   method (LU or Cholesky, any summation order) lands within about $\kappa\cdot10^{-16}$ with
    ///   $\kappa\le40$ here, so $10^{-10}$ leaves a wide margin while catching any real bug (a transpose, a
    ///   dropped term or a missing $\eta$ changes values at $10^{-2}$ or more).
    /// - `cg` $10^{-9}$: CG iterates amplify rounding of the inner products by up to $\kappa$ per step.
    /// - `trajectories`, `stochastic` $10^{-8}$: rounding differences propagate through $K$ outer steps and the
    ///   inner loops (gains bounded by the step maps' Lipschitz constants, $\le 1 + \alpha L_F$ per step).
    pub fn conformance() -> Self {
        Tolerances {
            sections: vec![
                ("instance", 1e-15),
                ("theta_star", 1e-10),
                ("points", 1e-10),
                ("cg", 1e-9),
                ("neumann", 1e-10),
                ("itd", 1e-10),
                ("trajectories", 1e-8),
                ("stochastic", 1e-8),
            ],
            default: 1e-10,
        }
    }

    /// The same tolerance everywhere (e.g. $10^{-12}$ when comparing with a fresh generation by this crate).
    pub fn uniform(rtol: f64) -> Self {
        Tolerances {
            sections: Vec::new(),
            default: rtol,
        }
    }

    /// The tolerance of `section`.
    pub fn of(&self, section: &str) -> f64 {
        self.sections
            .iter()
            .find(|(s, _)| *s == section)
            .map_or(self.default, |(_, t)| *t)
    }
}

/// The comparison of one field.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    /// Path of the field, e.g. `points[1].grad_F`.
    pub field: String,
    /// Path of its worst entry, e.g. `points[1].grad_F[2]`.
    pub worst: String,
    /// The error measure of the module docs ($+\infty$ for a mismatched integer or string).
    pub err: f64,
    /// The tolerance it is judged against.
    pub tol: f64,
    /// Golden value at the worst entry (as text).
    pub golden: String,
    /// Their value at the worst entry (as text).
    pub theirs: String,
}

impl FieldError {
    /// Whether the field is within tolerance.
    pub fn ok(&self) -> bool {
        self.err <= self.tol
    }
}

/// The result of a comparison.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// Sections compared.
    pub compared: Vec<String>,
    /// Sections THEIRS does not contain.
    pub skipped: Vec<String>,
    /// Every field compared, worst (largest `err / tol`) first.
    pub fields: Vec<FieldError>,
}

impl Report {
    /// Fields over tolerance.
    pub fn failures(&self) -> usize {
        self.fields.iter().filter(|f| !f.ok()).count()
    }

    /// Whether every field is within tolerance.
    pub fn ok(&self) -> bool {
        self.failures() == 0
    }

    /// Human-readable summary with the `worst` largest errors.
    pub fn render(&self, worst: usize) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "compared {} fields in sections: {}",
            self.fields.len(),
            self.compared.join(", ")
        );
        if !self.skipped.is_empty() {
            let _ = writeln!(s, "skipped (not in THEIRS): {}", self.skipped.join(", "));
        }
        let _ = writeln!(
            s,
            "worst errors (max |theirs - golden| / max(max |golden| of the field, {SCALE_FLOOR})):"
        );
        let _ = writeln!(
            s,
            "  {:<10} {:<8} {:<40} {:>24} {:>24}",
            "error", "tol", "entry", "golden", "theirs"
        );
        for f in self.fields.iter().take(worst) {
            let mark = if f.ok() { " " } else { "!" };
            let _ = writeln!(
                s,
                "{mark} {:<10.3e} {:<8.0e} {:<40} {:>24} {:>24}",
                f.err, f.tol, f.worst, f.golden, f.theirs
            );
        }
        if self.ok() {
            let _ = writeln!(s, "OK: every field within tolerance");
        } else {
            let _ = writeln!(
                s,
                "MISMATCH: {} of {} fields over tolerance",
                self.failures(),
                self.fields.len()
            );
        }
        s
    }
}

fn header(v: &Value, which: &str) -> Result<()> {
    let obj = v
        .as_object()
        .ok_or_else(|| BilevelError::Malformed(format!("{which}: the top level must be a JSON object")))?;
    match obj.get("schema").and_then(Value::as_str) {
        Some(SCHEMA) => {}
        Some(other) => {
            return Err(BilevelError::Malformed(format!(
                "{which}: schema is '{other}', expected '{SCHEMA}'"
            )));
        }
        None => {
            return Err(BilevelError::Malformed(format!(
                "{which}: missing field 'schema' (= \"{SCHEMA}\")"
            )));
        }
    }
    match obj.get("schema_version").and_then(Value::as_u64) {
        Some(v) if v == u64::from(SCHEMA_VERSION) => Ok(()),
        Some(v) => Err(BilevelError::Malformed(format!(
            "{which}: schema_version {v}, this checker reads version {SCHEMA_VERSION}"
        ))),
        None => Err(BilevelError::Malformed(format!(
            "{which}: missing or non-integer field 'schema_version' (= {SCHEMA_VERSION})"
        ))),
    }
}

/// Compare THEIRS with GOLDEN (see the module docs). Errors (never panics) on: malformed golden file, wrong schema or
/// version, a different instance, wrong dimensions, a missing field inside a provided section, no section at all.
pub fn check(golden: &Value, theirs: &Value, tol: &Tolerances) -> Result<Report> {
    header(golden, "GOLDEN")?;
    header(theirs, "THEIRS")?;
    let g: GoldenFile = serde_json::from_value(golden.clone())
        .map_err(|e| BilevelError::Malformed(format!("GOLDEN is not a valid golden file: {e}")))?;
    let t = theirs.as_object().expect("checked by header");
    if let Some(h) = t.get("instance_hash")
        && h.as_str() != Some(g.instance_hash.as_str())
    {
        return Err(BilevelError::Malformed(format!(
            "THEIRS was computed on instance {h}, the golden file's instance is \"{}\"",
            g.instance_hash
        )));
    }
    if let Some(inst) = t.get("instance") {
        for (key, expected) in [("d_u", g.instance.d_u), ("d_l", g.instance.d_l)] {
            let got = inst.get(key).and_then(Value::as_u64);
            if got != Some(expected as u64) {
                return Err(BilevelError::DimensionMismatch {
                    what: format!("THEIRS instance.{key}"),
                    expected,
                    got: got.map_or(0, |x| x as usize),
                });
            }
        }
    }
    let mut report = Report {
        compared: Vec::new(),
        skipped: Vec::new(),
        fields: Vec::new(),
    };
    for section in SECTIONS {
        let Some(tv) = t.get(section) else {
            report.skipped.push(section.into());
            continue;
        };
        let gv = &golden[section];
        compare(gv, tv, section, tol.of(section), &mut report.fields)?;
        report.compared.push(section.into());
    }
    if report.compared.is_empty() {
        return Err(BilevelError::Malformed(format!(
            "THEIRS contains none of the sections {}",
            SECTIONS.join(", ")
        )));
    }
    report
        .fields
        .sort_by(|a, b| (b.err / b.tol).total_cmp(&(a.err / a.tol)).then(a.worst.cmp(&b.worst)));
    Ok(report)
}

fn is_numeric(v: &Value) -> bool {
    match v {
        Value::Number(_) => true,
        Value::Array(a) => a.iter().all(is_numeric),
        _ => false,
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn compare(g: &Value, t: &Value, path: &str, tol: f64, out: &mut Vec<FieldError>) -> Result<()> {
    if is_numeric(g) {
        let mut pairs = Vec::new();
        flatten(g, t, path, &mut pairs)?;
        out.push(field_error(path, &pairs, tol));
        return Ok(());
    }
    match g {
        Value::Object(gm) => {
            let tm = t.as_object().ok_or_else(|| {
                BilevelError::Malformed(format!("THEIRS {path}: expected an object, found {}", kind(t)))
            })?;
            for (k, gv) in gm {
                let tv = tm
                    .get(k)
                    .ok_or_else(|| BilevelError::Malformed(format!("THEIRS: missing field {path}.{k}")))?;
                compare(gv, tv, &format!("{path}.{k}"), tol, out)?;
            }
            Ok(())
        }
        Value::Array(ga) => {
            let ta = t.as_array().ok_or_else(|| {
                BilevelError::Malformed(format!("THEIRS {path}: expected an array, found {}", kind(t)))
            })?;
            if ta.len() != ga.len() {
                return Err(BilevelError::DimensionMismatch {
                    what: format!("THEIRS {path} (number of entries)"),
                    expected: ga.len(),
                    got: ta.len(),
                });
            }
            for (i, (gv, tv)) in ga.iter().zip(ta).enumerate() {
                compare(gv, tv, &format!("{path}[{i}]"), tol, out)?;
            }
            Ok(())
        }
        _ => {
            let err = if g == t { 0.0 } else { f64::INFINITY };
            out.push(FieldError {
                field: path.into(),
                worst: path.into(),
                err,
                tol,
                golden: g.to_string(),
                theirs: t.to_string(),
            });
            Ok(())
        }
    }
}

/// One entry: golden, theirs, path, whether the golden entry is an integer.
type Pair = (f64, f64, String, bool, String);

fn flatten(g: &Value, t: &Value, path: &str, out: &mut Vec<Pair>) -> Result<()> {
    match g {
        Value::Number(gn) => {
            let tn = t.as_f64().filter(|_| t.is_number()).ok_or_else(|| {
                BilevelError::Malformed(format!("THEIRS {path}: expected a number, found {}", kind(t)))
            })?;
            out.push((
                gn.as_f64().unwrap_or(f64::NAN),
                tn,
                path.into(),
                gn.is_u64(),
                t.to_string(),
            ));
            Ok(())
        }
        Value::Array(ga) => {
            let ta = t.as_array().ok_or_else(|| {
                BilevelError::Malformed(format!("THEIRS {path}: expected an array, found {}", kind(t)))
            })?;
            if ta.len() != ga.len() {
                return Err(BilevelError::DimensionMismatch {
                    what: format!("THEIRS {path}"),
                    expected: ga.len(),
                    got: ta.len(),
                });
            }
            for (i, (gv, tv)) in ga.iter().zip(ta).enumerate() {
                flatten(gv, tv, &format!("{path}[{i}]"), out)?;
            }
            Ok(())
        }
        _ => unreachable!("flatten is called on numeric values only"),
    }
}

fn field_error(path: &str, pairs: &[Pair], tol: f64) -> FieldError {
    let scale = pairs.iter().map(|p| p.0.abs()).fold(SCALE_FLOOR, f64::max);
    let mut worst = FieldError {
        field: path.into(),
        worst: path.into(),
        err: 0.0,
        tol,
        golden: String::new(),
        theirs: String::new(),
    };
    let mut first = true;
    for (g, t, p, is_int, t_text) in pairs {
        let err = if *is_int {
            if g == t { 0.0 } else { f64::INFINITY }
        } else {
            let d = (t - g).abs() / scale;
            if d.is_nan() { f64::INFINITY } else { d }
        };
        if first || err > worst.err {
            first = false;
            worst.err = err;
            worst.worst = p.clone();
            worst.golden = format!("{g:?}");
            worst.theirs = t_text.clone();
        }
    }
    worst
}

/// Read both files and [`check`] them.
pub fn check_files(golden: &std::path::Path, theirs: &std::path::Path, tol: &Tolerances) -> Result<Report> {
    let g = super::read_json(golden)?;
    let t = super::read_json(theirs)?;
    check(&g, &t, tol)
}
