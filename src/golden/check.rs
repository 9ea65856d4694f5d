//! `bilevel check GOLDEN THEIRS`: compare another implementation's output with a golden file, field by field.
//!
//! THEIRS uses the golden schema: the header (`schema`, `schema_version`) is required; every field it provides is
//! compared with the golden file's field at the same path, and nothing else: THEIRS needs only the outputs it wants
//! compared (inputs are taken from the golden file). Keys the golden file does not have are warnings, informative
//! fields ([`INFORMATIVE`]) are ignored, sections it omits are reported as skipped, entries of `trajectories` and
//! `stochastic` may be matched by `algorithm`, and a `null` entry of an array of objects skips it. If it carries
//! `instance_hash` or `instance`, they must be those of the golden file; a missing `instance_hash` is a warning.
//!
//! # Error measure
//! A *field* is a number or a (nested) array of numbers, e.g. `points[1].grad_F`. Its error is
//! $$\mathrm{err} = \frac{\max_i |t_i - g_i|}{\max(\max_i |g_i|,\ 1)},$$
//! the worst entry relative to the field's largest golden entry, and absolute for fields whose entries are all
//! below 1 (so tiny entries are not judged relative to themselves, and $\nabla F(\theta^\star)\approx0$ is judged
//! absolutely: its rounding error is set by the size of the terms that cancel, about 1 here).
//! Integer fields ($T$, depths, counts) and strings must match exactly.

use super::family::{FAMILY_SCHEMA, FAMILY_SCHEMA_VERSION};
use super::schema::{GoldenFile, SCHEMA, SCHEMA_VERSION};
use crate::error::{BilevelError, Result};
use serde_json::Value;
use std::fmt::Write;

/// The compared top-level sections, in report order.
pub const SECTIONS: [&str; 9] = [
    "instance",
    "constants",
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
    /// - `constants` $10^{-10}$: extreme eigenvalues of symmetric matrices, perturbed by at most
    ///   $\varepsilon\\|A\\|$ by any backward-stable eigensolver.
    /// - `theta_star`, `points`, `neumann`, `itd` $10^{-10}$: exact quantities; any backward-stable float64
    ///   method (LU or Cholesky, any summation order) lands within about $\kappa\cdot10^{-16}$ with
    ///   $\kappa\le40$ here, so $10^{-10}$ leaves a wide margin while catching any real bug (a transpose, a
    ///   dropped term or a missing $\eta$ changes values at $10^{-2}$ or more).
    /// - `cg` $10^{-9}$: CG iterates amplify rounding of the inner products by up to $\kappa$ per step.
    /// - `trajectories`, `stochastic` $10^{-8}$: rounding differences propagate through $K$ outer steps and the
    ///   inner loops (gains bounded by the step maps' Lipschitz constants, $\le 1 + \alpha L_F$ per step).
    /// - family files: `data` $10^{-15}$ (a copy), `points` $10^{-10}$ (exact values, as above), `prox` $10^{-9}$:
    ///   the file's proximal point is within $10^{-12}$ of the minimiser (the stopping rule of
    ///   [`crate::families::weakly_convex::WeaklyConvex::prox`]); $10^{-9}$ accepts any solver converged to
    ///   $10^{-10}$ while a wrong sign or a missing projection moves it by $10^{-2}$ or more.
    pub fn conformance() -> Self {
        Tolerances {
            sections: vec![
                ("instance", 1e-15),
                ("constants", 1e-10),
                ("theta_star", 1e-10),
                ("points", 1e-10),
                ("cg", 1e-9),
                ("neumann", 1e-10),
                ("itd", 1e-10),
                ("trajectories", 1e-8),
                ("stochastic", 1e-8),
                ("data", 1e-15),
                ("prox", 1e-9),
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
    /// Unknown keys, a missing `instance_hash`: reported, not failed.
    pub warnings: Vec<String>,
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
        for w in &self.warnings {
            let _ = writeln!(s, "warning: {w}");
        }
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

/// Sections of a family file ([`super::family`]), in report order.
pub const FAMILY_SECTIONS: [&str; 3] = ["data", "points", "prox"];

/// The schema (quadratic or family) and version of a file.
fn header(v: &Value, which: &str) -> Result<(&'static str, u32)> {
    let obj = v
        .as_object()
        .ok_or_else(|| BilevelError::Malformed(format!("{which}: the top level must be a JSON object")))?;
    match obj.get("schema").and_then(Value::as_str) {
        Some(FAMILY_SCHEMA) => {
            return match obj.get("schema_version").and_then(Value::as_u64) {
                Some(v) if v == u64::from(FAMILY_SCHEMA_VERSION) => Ok((FAMILY_SCHEMA, v as u32)),
                other => Err(BilevelError::Malformed(format!(
                    "{which}: schema_version {other:?} of '{FAMILY_SCHEMA}', this checker reads version \
                     {FAMILY_SCHEMA_VERSION}"
                ))),
            };
        }
        Some(SCHEMA) => {}
        Some(other) => {
            return Err(BilevelError::Malformed(format!(
                "{which}: schema is '{other}', expected '{SCHEMA}' or '{FAMILY_SCHEMA}'"
            )));
        }
        None => {
            return Err(BilevelError::Malformed(format!(
                "{which}: missing field 'schema' (= \"{SCHEMA}\")"
            )));
        }
    }
    match obj.get("schema_version").and_then(Value::as_u64) {
        Some(v) if (1..=u64::from(SCHEMA_VERSION)).contains(&v) => Ok((SCHEMA, v as u32)),
        Some(v) => Err(BilevelError::Malformed(format!(
            "{which}: schema_version {v}, this checker reads versions 1 to {SCHEMA_VERSION}"
        ))),
        None => Err(BilevelError::Malformed(format!(
            "{which}: missing or non-integer field 'schema_version' (= {SCHEMA_VERSION})"
        ))),
    }
}

/// Top-level keys of THEIRS that are not sections: read (`schema`, `schema_version`, `instance_hash`) or ignored.
const HEADER_KEYS: [&str; 8] = [
    "family",
    "domain",
    "schema",
    "schema_version",
    "instance_hash",
    "name",
    "crate_version",
    "provenance",
];

/// Informative fields: never compared, wherever they occur (the tape's sample word is the crate's own RNG state).
pub const INFORMATIVE: [&str; 1] = ["sample"];

/// Compare THEIRS with GOLDEN (see the module docs). THEIRS needs only the outputs it wants compared: a field it
/// omits is not compared, a key the golden file does not have is a warning, informative fields ([`INFORMATIVE`]) are
/// ignored, and a missing `instance_hash` is a warning (the instance cannot be verified). Errors (never panics) on:
/// malformed golden file, wrong schema or version, a different instance, wrong dimensions or array lengths, a
/// non-number where a number belongs, and a THEIRS with no field to compare.
pub fn check(golden: &Value, theirs: &Value, tol: &Tolerances) -> Result<Report> {
    let (schema, _) = header(golden, "GOLDEN")?;
    let (their_schema, _) = header(theirs, "THEIRS")?;
    if schema != their_schema {
        return Err(BilevelError::Malformed(format!(
            "THEIRS has schema '{their_schema}', the golden file '{schema}'"
        )));
    }
    let (hash, sections, dims) = if schema == FAMILY_SCHEMA {
        let hash = golden
            .get("instance_hash")
            .and_then(Value::as_str)
            .ok_or_else(|| BilevelError::Malformed("GOLDEN family file has no instance_hash".into()))?;
        for key in ["data", "points"] {
            if golden.get(key).is_none() {
                return Err(BilevelError::Malformed(format!("GOLDEN family file has no '{key}'")));
            }
        }
        (hash.to_string(), &FAMILY_SECTIONS[..], None)
    } else {
        let g: GoldenFile = serde_json::from_value(golden.clone())
            .map_err(|e| BilevelError::Malformed(format!("GOLDEN is not a valid golden file: {e}")))?;
        (g.instance_hash, &SECTIONS[..], Some((g.instance.d_u, g.instance.d_l)))
    };
    let t = theirs.as_object().expect("checked by header");
    let mut warnings = Vec::new();
    match t.get("instance_hash") {
        Some(h) if h.as_str() != Some(hash.as_str()) => {
            return Err(BilevelError::Malformed(format!(
                "THEIRS was computed on instance {h}, the golden file's instance is \"{hash}\""
            )));
        }
        Some(_) => {}
        None => warnings.push(format!(
            "THEIRS has no instance_hash: the instance it was computed on is not verified (add \"instance_hash\": \
             \"{hash}\")"
        )),
    }
    if let (Some(inst), Some((d_u, d_l))) = (t.get("instance"), dims) {
        for (key, expected) in [("d_u", d_u), ("d_l", d_l)] {
            let Some(v) = inst.get(key) else { continue };
            let got = v.as_u64();
            if got != Some(expected as u64) {
                return Err(BilevelError::DimensionMismatch {
                    what: format!("THEIRS instance.{key}"),
                    expected,
                    got: got.map_or(0, |x| x as usize),
                });
            }
        }
    }
    for key in t.keys() {
        if !sections.contains(&key.as_str()) && !HEADER_KEYS.contains(&key.as_str()) {
            warnings.push(format!("unknown key '{key}' in THEIRS (ignored)"));
        }
    }
    let mut report = Report {
        compared: Vec::new(),
        skipped: Vec::new(),
        fields: Vec::new(),
        warnings,
    };
    for &section in sections {
        let Some(tv) = t.get(section) else {
            report.skipped.push(section.into());
            continue;
        };
        let gv = &golden[section];
        let mut cx = Cx {
            tol: tol.of(section),
            out: &mut report.fields,
            warnings: &mut report.warnings,
        };
        cx.compare(gv, tv, section)?;
        report.compared.push(section.into());
    }
    if report.fields.is_empty() {
        return Err(BilevelError::Malformed(format!(
            "THEIRS contains no field to compare (sections: {}; field names as in the golden file)",
            sections.join(", ")
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

/// The comparison state of one section.
struct Cx<'a> {
    tol: f64,
    out: &'a mut Vec<FieldError>,
    warnings: &'a mut Vec<String>,
}

impl Cx<'_> {
    fn compare(&mut self, g: &Value, t: &Value, path: &str) -> Result<()> {
        if is_numeric(g) {
            let mut pairs = Vec::new();
            flatten(g, t, path, &mut pairs)?;
            self.out.push(field_error(path, &pairs, self.tol));
            return Ok(());
        }
        match g {
            Value::Object(gm) => {
                let tm = t.as_object().ok_or_else(|| {
                    BilevelError::Malformed(format!("THEIRS {path}: expected an object, found {}", kind(t)))
                })?;
                // Only what THEIRS provides is compared; inputs it omits are taken from the golden file.
                for (k, tv) in tm {
                    if INFORMATIVE.contains(&k.as_str()) {
                        continue;
                    }
                    match gm.get(k) {
                        Some(gv) => self.compare(gv, tv, &format!("{path}.{k}"))?,
                        None => self
                            .warnings
                            .push(format!("unknown key {path}.{k} in THEIRS (ignored)")),
                    }
                }
                Ok(())
            }
            Value::Array(ga) => {
                let ta = t.as_array().ok_or_else(|| {
                    BilevelError::Malformed(format!("THEIRS {path}: expected an array, found {}", kind(t)))
                })?;
                // Trajectories may be given for some algorithms only, matched by name.
                let by_name = ta.iter().all(|x| x.get("algorithm").and_then(Value::as_str).is_some())
                    && ga.iter().all(|x| x.get("algorithm").and_then(Value::as_str).is_some());
                if by_name && !ta.is_empty() {
                    for tv in ta {
                        let name = tv["algorithm"].as_str().expect("checked above");
                        let (i, gv) = ga
                            .iter()
                            .enumerate()
                            .find(|(_, x)| x["algorithm"].as_str() == Some(name))
                            .ok_or_else(|| {
                                BilevelError::Malformed(format!(
                                    "THEIRS {path}: the golden file has no entry for algorithm '{name}'"
                                ))
                            })?;
                        self.compare(gv, tv, &format!("{path}[{i}]"))?;
                    }
                    return Ok(());
                }
                if ta.len() != ga.len() {
                    return Err(BilevelError::DimensionMismatch {
                        what: format!("THEIRS {path} (number of entries; use null for an entry you skip)"),
                        expected: ga.len(),
                        got: ta.len(),
                    });
                }
                for (i, (gv, tv)) in ga.iter().zip(ta).enumerate() {
                    // `null` skips an entry of an array of objects (e.g. a point THEIRS did not compute).
                    if tv.is_null() && gv.is_object() {
                        continue;
                    }
                    self.compare(gv, tv, &format!("{path}[{i}]"))?;
                }
                Ok(())
            }
            _ => {
                let err = if g == t { 0.0 } else { f64::INFINITY };
                self.out.push(FieldError {
                    field: path.into(),
                    worst: path.into(),
                    err,
                    tol: self.tol,
                    golden: g.to_string(),
                    theirs: t.to_string(),
                });
                Ok(())
            }
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
