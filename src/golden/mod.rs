//! Golden outputs for other implementations (JAX, PyTorch, Julia, numpy…) and a conformance checker.
//!
//! A golden file (JSON, schema in `docs/golden-format.md`, version [`schema::SCHEMA_VERSION`]) holds a quadratic
//! bilevel instance written out in full with its hash, exact $\phi^\star$, $F$, $\nabla F$ and
//! $J = d\phi^\star/d\theta$ at listed points (eqs (13)–(17)), CG iterates (Alg 7), Neumann partial sums (24) and
//! the expectations of the stochastic Neumann estimators, ITD forward and reverse for $T = 1,\dots,n$ (30)–(32),
//! deterministic trajectories of every algorithm with every parameter they used (schema 2: reproducible from the
//! file and the documented pseudo-code alone, test `tests/golden_replay.rs`), and a stochastic TTSA trajectory with
//! its noise tape. Family files ([`family`]) cover the hyperparameter family (4) and the weakly convex family
//! (prox (37), Moreau measure (38)) by their data and formulas. Rates of another implementation's own stochastic
//! runs are judged by [`crate::claims::judge`] (`bilevel judge`).
//!
//! - [`generate`]: the built-in instances and the generator (`bilevel golden --out DIR`, or
//!   `--instance FILE` for a user's own instance).
//! - [`check`]: field-by-field comparison with stated tolerances (`bilevel check GOLDEN THEIRS`); THEIRS gives only
//!   the outputs it wants compared.
//! - [`family`]: the family files beyond quadratics.
//! - [`tape`]: the recording wrapper behind the noise tape.
//! - [`schema`]: the serde types.
//!
//! The committed files live in `tests/golden/`; the test `tests/golden.rs` regenerates them and compares.
//!
//! # Example
//! Generate the golden file of a small quadratic, then check two "other implementations" against it: one that
//! reproduces it passes, one with a wrong $\nabla F$ entry fails and the report names the field.
//! ```
//! use bilevel::families::quadratic::QuadraticSpec;
//! use bilevel::golden::{check::{Tolerances, check}, generate::{extract, generate}};
//! # fn main() -> bilevel::Result<()> {
//! let q = QuadraticSpec { d_u: 2, d_l: 3, seed: 4, ..Default::default() }.build()?;
//! let file = generate("doc_2x3", "rustdoc example", &extract(&q)?, 5)?;
//! let golden = serde_json::to_value(&file).expect("serialisable");
//! assert!(check(&golden, &golden, &Tolerances::conformance())?.ok());
//!
//! let mut wrong = file.clone();
//! wrong.points[0].grad_f[1] += 1e-6; // far above the 1e-10 tolerance of exact quantities
//! let theirs = serde_json::to_value(&wrong).expect("serialisable");
//! let report = check(&golden, &theirs, &Tolerances::conformance())?;
//! assert_eq!(report.failures(), 1);
//! assert!(report.fields[0].worst.starts_with("points[0].grad_F"));
//! # Ok(())
//! # }
//! ```

pub mod check;
pub mod family;
pub mod generate;
pub mod schema;
pub mod tape;

use crate::error::{BilevelError, Result};
use serde_json::Value;
use std::path::Path;

/// Serialise a golden file in the schema's field order: two-space indentation, arrays of numbers on one line (so a
/// matrix is one row per line) and short objects on one line. Numbers are written in the shortest form that reads
/// back to the same f64.
pub fn to_json(file: &schema::GoldenFile) -> String {
    layout(&serde_json::to_string_pretty(file).expect("golden files are serialisable"))
}

/// [`to_json`] for any JSON value (the family files of [`family`]; object keys in alphabetical order).
pub fn to_json_value(file: &Value) -> String {
    layout(&serde_json::to_string_pretty(file).expect("JSON values are serialisable"))
}

fn layout(pretty: &str) -> String {
    let mut s = collapse(pretty);
    s.push('\n');
    s
}

/// Objects whose one-line form is at most this long are written on one line.
const INLINE_OBJECT: usize = 200;

/// Join the lines of blocks (from `[`/`{` to the matching close) whose content is one line per entry: every
/// array of scalars, and objects short enough.
fn collapse(pretty: &str) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut open: Vec<usize> = Vec::new();
    for line in pretty.lines() {
        let t = line.trim();
        if t.starts_with(']') || t.starts_with('}') {
            let start = open.pop().expect("balanced JSON");
            let inner: Vec<&str> = out[start + 1..].iter().map(|l| l.trim()).collect();
            let is_array = t.starts_with(']');
            let scalars = inner.iter().all(|l| !l.ends_with('[') && !l.ends_with('{'));
            let simple_array = is_array && inner.iter().all(|l| !l.starts_with('[') && !l.starts_with('{'));
            let joined = format!("{}{}{}", out[start], inner.join(" "), t);
            if scalars && (simple_array || (!is_array && joined.len() <= INLINE_OBJECT)) {
                out.truncate(start);
                out.push(joined);
            } else {
                out.push(line.to_string());
            }
        } else {
            if t.ends_with('[') || t.ends_with('{') {
                open.push(out.len());
            }
            out.push(line.to_string());
        }
    }
    out.join("\n")
}

/// Read a JSON file into a value; I/O errors are [`BilevelError::Io`], syntax errors [`BilevelError::Malformed`],
/// both with the path.
pub fn read_json(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path).map_err(|e| BilevelError::io("read", path, &e))?;
    serde_json::from_str(&text)
        .map_err(|e| BilevelError::Malformed(format!("{} is not valid JSON: {e}", path.display())))
}

/// Read a user's instance (the [`schema::Instance`] format; unknown fields are an error) and check it builds.
pub fn read_instance(path: &Path) -> Result<schema::Instance> {
    let v = read_json(path)?;
    let inst: schema::Instance = serde_json::from_value(v)
        .map_err(|e| BilevelError::Malformed(format!("{} is not an instance: {e}", path.display())))?;
    inst.build()?;
    Ok(inst)
}

/// Write `files` into `dir` as `NAME.json` in the schema's field order (creating `dir`); returns the paths written.
pub fn write_all(files: &[schema::GoldenFile], dir: &Path) -> Result<Vec<std::path::PathBuf>> {
    let named: Vec<(&str, String)> = files.iter().map(|f| (f.name.as_str(), to_json(f))).collect();
    write_texts(&named, dir)
}

/// Write JSON objects with a `name` field into `dir` as `NAME.json` (creating `dir`); returns the paths written.
pub fn write_values(files: &[Value], dir: &Path) -> Result<Vec<std::path::PathBuf>> {
    let named: Vec<(&str, String)> = files
        .iter()
        .map(|f| (f["name"].as_str().unwrap_or("golden"), to_json_value(f)))
        .collect();
    write_texts(&named, dir)
}

fn write_texts(files: &[(&str, String)], dir: &Path) -> Result<Vec<std::path::PathBuf>> {
    // A name is a file stem inside `dir`: a separator, `..` or an absolute path would write elsewhere.
    for (name, _) in files {
        let plain = !name.is_empty()
            && *name != "."
            && *name != ".."
            && !name.contains(['/', '\\'])
            && !Path::new(name).is_absolute();
        if !plain {
            return Err(BilevelError::invalid(
                "name",
                name,
                "a golden file's name must be a plain file stem (no path separator, not '.' or '..')",
            ));
        }
    }
    std::fs::create_dir_all(dir).map_err(|e| BilevelError::io("create", dir, &e))?;
    let mut out = Vec::new();
    for (name, text) in files {
        let path = dir.join(format!("{name}.json"));
        std::fs::write(&path, text).map_err(|e| BilevelError::io("write", &path, &e))?;
        out.push(path);
    }
    Ok(out)
}
