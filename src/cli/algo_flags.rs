//! The algorithm of `bilevel run` from flags: the schedule syntax and the claims-schema [`AlgoSpec`] built from
//! `--alpha`, `--beta`, `--inner-steps`, `--neumann`, `--batch`, `--tau` (laid over a spec's `[algorithm]`).

use super::run::RunArgs;
use super::{CliResult, Failure};
use bilevel::BilevelError;
use bilevel::claims::{AlgoSpec, SchedSpec};

/// The algorithms whose parameters can be set (the variants of [`AlgoSpec`]); the others run with the defaults of
/// [`algorithms::build`].
pub const TUNABLE: &str = "ttsa, alternating, alternating-multi, bsa, stocbio, stable, stable-alg6-literal, sustain";

/// Parse a TOML value written on the command line (a bare word is a string).
pub fn toml_value(text: &str) -> toml::Value {
    toml::from_str::<toml::Table>(&format!("v = {text}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(text.to_string()))
}

/// Parse a schedule flag (syntax in `--help`).
pub fn parse_schedule(flag: &str, text: &str) -> CliResult<SchedSpec> {
    let bad = |why: &str| {
        Failure::with_hint(
            BilevelError::invalid(flag, text, why),
            format!(
                "write {flag} as C, C/CONST, decay:C[/CONST]:K0:POWER or horizon:C[/CONST]:POWER, e.g. {flag} 0.5/l_l \
                 (see `bilevel help run`)"
            ),
        )
    };
    let t = text.trim();
    if t.starts_with('{') {
        return toml_value(t)
            .try_into::<SchedSpec>()
            .map_err(|e| bad(&format!("not a schedule table: {}", e.to_string().trim())));
    }
    let num = |s: &str| {
        s.trim()
            .parse::<f64>()
            .map_err(|_| bad(&format!("'{s}' is not a number")))
    };
    let coef = |s: &str| -> CliResult<(f64, Option<String>)> {
        match s.split_once('/') {
            None => Ok((num(s)?, None)),
            Some((c, per)) => Ok((num(c)?, Some(per.trim().to_string()))),
        }
    };
    let parts: Vec<&str> = t.split(':').collect();
    let (kind, c, per, k0, power) = match parts.as_slice() {
        [c] | ["constant", c] => {
            let (c, per) = coef(c)?;
            ("constant", c, per, 1.0, 0.0)
        }
        ["decay", c, k0, power] => {
            let (c, per) = coef(c)?;
            ("decay", c, per, num(k0)?, num(power)?)
        }
        ["horizon", c, power] => {
            let (c, per) = coef(c)?;
            ("horizon", c, per, 1.0, num(power)?)
        }
        _ => return Err(bad("unrecognised schedule")),
    };
    Ok(SchedSpec {
        kind: kind.into(),
        c,
        per,
        k0,
        power,
    })
}

/// The algorithm spec of the run: `base` (from a file or a claim) with the flags laid over it, or `None` when
/// neither gives parameters (then [`algorithms::build`]'s defaults apply).
pub fn algo_spec(name: &str, base: Option<&AlgoSpec>, a: &RunArgs) -> CliResult<Option<AlgoSpec>> {
    let any_flag = a.alpha.is_some()
        || a.beta.is_some()
        || a.inner_steps.is_some()
        || a.neumann.is_some()
        || a.batch.is_some()
        || a.tau.is_some();
    if !any_flag {
        if let Some(b) = base {
            let b_name = spec_name(b);
            if canonical(name).0 != b_name {
                return Err(Failure::with_hint(
                    BilevelError::invalid("--algo", name, &format!("the spec's algorithm is {b_name}")),
                    "drop --algo to run the spec's algorithm, or drop the spec's [algorithm] table",
                ));
            }
        }
        return Ok(base.cloned());
    }
    let (canon, extra) = canonical(name);
    if !TUNABLE.split(", ").any(|t| t == name) {
        return Err(Failure::with_hint(
            BilevelError::Unsupported(format!(
                "the parameters of {name} cannot be set by flags{}",
                if matches!(canonical(name).0, "itd-bio" | "vrbo") {
                    " (they can in a --spec file's [algorithm] table, docs/cli.md)"
                } else {
                    " (it runs with its defaults)"
                }
            )),
            format!("drop --alpha/--beta/--inner-steps/--neumann/--batch/--tau, or use one of: {TUNABLE}"),
        ));
    }
    let mut table = match base {
        Some(b) => {
            if spec_name(b) != canon {
                return Err(Failure::with_hint(
                    BilevelError::invalid("--algo", name, &format!("the spec's algorithm is {}", spec_name(b))),
                    "drop --algo to run the spec's algorithm",
                ));
            }
            match toml::Value::try_from(b) {
                Ok(toml::Value::Table(t)) => t,
                _ => toml::Table::new(),
            }
        }
        None => {
            let mut t = toml::Table::new();
            t.insert("name".into(), canon.into());
            // The parameters other than the step schedules default to those of `algorithms::build`.
            let defaults: &[(&str, toml::Value)] = match canon {
                "bsa" => &[("c_inner", toml::Value::Float(1.0))],
                "stocbio" => &[
                    ("inner", toml::Value::Integer(10)),
                    ("batch_c", toml::Value::Float(4.0)),
                ],
                "stable" => &[("tau", toml::Value::Float(0.5))],
                "sustain" => &[
                    ("beta0_l_l", toml::Value::Float(1.0)),
                    ("eta_c", toml::Value::Float(1.0)),
                ],
                _ => &[],
            };
            for (k, v) in defaults.iter().cloned().chain(extra) {
                t.insert(k.into(), v);
            }
            t
        }
    };
    let sched = |flag: &str, s: &str| -> CliResult<toml::Value> {
        let spec = parse_schedule(flag, s)?;
        toml::Value::try_from(&spec).map_err(|e| BilevelError::Malformed(format!("{flag}: {e}")).into())
    };
    let not_for = |flag: &str, applies: &str| {
        Failure::with_hint(
            BilevelError::invalid(flag, "given", &format!("does not apply to {name}")),
            format!("{flag} applies to: {applies} (see `bilevel help run`)"),
        )
    };
    let positive = |flag: &str, n: usize| -> CliResult<toml::Value> {
        if n == 0 {
            return Err(BilevelError::invalid(flag, 0, "must be >= 1").into());
        }
        Ok(toml::Value::Integer(n.min(i64::MAX as usize) as i64))
    };
    if let Some(s) = &a.alpha {
        table.insert("alpha".into(), sched("--alpha", s)?);
    }
    if let Some(s) = &a.beta {
        if canon == "sustain" {
            return Err(not_for(
                "--beta",
                "every tunable algorithm but sustain (its beta0_l_l goes in a --spec file)",
            ));
        }
        table.insert("beta".into(), sched("--beta", s)?);
    }
    if let Some(n) = a.inner_steps {
        let key = match canon {
            "alternating" => "inner_steps",
            "stocbio" => "inner",
            _ => return Err(not_for("--inner-steps", "alternating, alternating-multi, stocbio")),
        };
        table.insert(key.into(), positive("--inner-steps", n)?);
    }
    if let Some(n) = a.neumann {
        if !matches!(canon, "ttsa" | "bsa" | "stocbio" | "sustain") {
            return Err(not_for("--neumann", "ttsa, bsa, stocbio, sustain"));
        }
        let mut t = toml::Table::new();
        t.insert("fixed".into(), positive("--neumann", n)?);
        table.insert("neumann".into(), toml::Value::Table(t));
    }
    if let Some(b) = a.batch {
        if canon != "stocbio" {
            return Err(not_for("--batch", "stocbio"));
        }
        positive("--batch", b)?;
        table.insert("batch_c".into(), toml::Value::Float(b as f64));
        table.insert("batch_power".into(), toml::Value::Float(0.0));
    }
    if let Some(t) = a.tau {
        if canon != "stable" {
            return Err(not_for("--tau", "stable, stable-alg6-literal"));
        }
        if !(t.is_finite() && t > 0.0 && t <= 1.0) {
            return Err(BilevelError::invalid("--tau", t, "must be in (0, 1]").into());
        }
        table.insert("tau".into(), toml::Value::Float(t));
    }
    toml::Value::Table(table).try_into::<AlgoSpec>().map(Some).map_err(|e| {
        Failure::with_hint(
            BilevelError::Malformed(format!("parameters of {name}: {}", e.to_string().trim())),
            format!(
                "with any algorithm flag, {name} is built from its parameter set, whose step schedules have no \
                 default: give --alpha and --beta (sustain: --alpha only); see `bilevel help run`"
            ),
        )
    })
}

/// The registry name of an algorithm spec.
pub fn spec_name(a: &AlgoSpec) -> &'static str {
    match a {
        AlgoSpec::Ttsa { .. } => "ttsa",
        AlgoSpec::Alternating { .. } => "alternating",
        AlgoSpec::Bsa { .. } => "bsa",
        AlgoSpec::Stocbio { .. } => "stocbio",
        AlgoSpec::Stable { .. } => "stable",
        AlgoSpec::Sustain { .. } => "sustain",
        AlgoSpec::ItdBio { .. } => "itd-bio",
        AlgoSpec::Vrbo { .. } => "vrbo",
    }
}

/// The spec name of a registry alias, with the fields the alias fixes.
fn canonical(name: &str) -> (&str, Vec<(&'static str, toml::Value)>) {
    match name {
        "alternating-multi" => ("alternating", vec![("inner_steps", toml::Value::Integer(10))]),
        "stable-alg6-literal" => ("stable", vec![("literal_alg6", toml::Value::Boolean(true))]),
        other => (other, Vec::new()),
    }
}
