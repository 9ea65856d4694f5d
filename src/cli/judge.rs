//! `bilevel judge`: the thin CLI over [`bilevel::claims::judge`] (docs/judge.md).

use super::output::{emit, emitln};
use super::{CliResult, Failure};
use bilevel::BilevelError;
use bilevel::claims::{self, Kind, Measure, judge::Target};
use std::path::PathBuf;

/// The subcommand's arguments.
pub struct Args {
    pub input: PathBuf,
    pub claim: Option<String>,
    pub exponent: Option<f64>,
    pub kind: Option<String>,
    pub tolerance: Option<f64>,
    pub measure: String,
    pub tail: Option<usize>,
    pub seed: u64,
    pub out: Option<PathBuf>,
}

fn parse<T: serde::de::DeserializeOwned>(what: &str, value: &str, accepted: &str) -> Result<T, BilevelError> {
    serde_json::from_value(serde_json::Value::String(value.into())).map_err(|_| BilevelError::Unknown {
        kind: what.into(),
        name: value.into(),
        accepted: accepted.into(),
    })
}

fn target(a: &Args) -> Result<Target, BilevelError> {
    match (&a.claim, a.exponent) {
        (Some(id), None) => {
            let reg = claims::Registry::builtin()?;
            let c = reg
                .claim
                .iter()
                .find(|c| &c.id == id)
                .ok_or_else(|| BilevelError::Unknown {
                    kind: "claim".into(),
                    name: id.clone(),
                    accepted: reg.claim.iter().map(|c| c.id.as_str()).collect::<Vec<_>>().join(", "),
                })?;
            // The registry claim's exact curve (where one exists) judges other implementations' data too.
            let mut t = Target::from_claim(c)?;
            t.exact = bilevel::exact::judging_slopes(&[c])?.remove(0);
            Ok(t)
        }
        (None, Some(exponent)) => {
            let kind: Kind = parse(
                "kind",
                a.kind.as_deref().unwrap_or(""),
                "bound, tight, refuted_above, refuted_below",
            )?;
            let measure: Measure = parse("measure", &a.measure, "slope, complexity_upper, complexity_lower")?;
            let tolerance = a.tolerance.unwrap_or(f64::NAN);
            Target::custom(kind, exponent, tolerance, measure, a.tail)
        }
        _ => Err(BilevelError::Malformed(
            "give either --claim ID or --exponent R --kind KIND --tolerance T".into(),
        )),
    }
}

/// Judge the input; exit code 1 when the verdict is fail, 2 (with a hint) on bad input.
pub fn judge(a: &Args) -> CliResult {
    let r = target(a)
        .and_then(|t| claims::judge::judge_file(&a.input, &t, a.seed))
        .map_err(|e| match e {
            e @ (BilevelError::Malformed(_) | BilevelError::NonFinite { .. }) => Failure::with_hint(
                e,
                "the input is CSV with header replicate,k,metric[,samples] or a JSON array of such records, one per \
                 replicate and horizon, every replicate at the same horizons (docs/judge.md)",
            ),
            e => Failure::from(e),
        })?;
    if let Some(dir) = &a.out {
        claims::plot(&r, dir)?;
        emitln(&format!(
            "wrote {}",
            dir.join(format!("{}.svg", r.id.replace('/', "__"))).display()
        ))?;
    }
    emit(&claims::table(std::slice::from_ref(&r), 3, false))?;
    if !r.ok() {
        emitln(&format!("verdict: fail ({})", r.rule_verdict))?;
        return Err(Failure {
            error: BilevelError::Unsupported(format!("the data fail the rule ({})", r.rule_verdict)),
            hint: Some(
                "a fail is a verdict on the data, not a malfunction: see docs/judge.md for what each rule means".into(),
            ),
            code: 1,
        });
    }
    emitln("verdict: pass")?;
    Ok(())
}
