//! `bilevel run`: any problem (a registered family with parameters, or a quadratic instance file) with any
//! algorithm parameters, given as flags or as a TOML file in the schema of `theory/claims.toml` (docs/cli.md).

use super::algo_flags::{TUNABLE, algo_spec, spec_name, toml_value};
use super::hints;
use super::output::{Progress, ProgressObserver, emit, emitln};
use super::{CliResult, Failure, MAX_ITERS};
use bilevel::claims::{self, AlgoSpec, ProblemSpec};
use bilevel::families::{self, REGISTRY};
use bilevel::problem::{Bilevel, NoiseLevels, Noisy, Oracle};
use bilevel::solver::{self, Metric, Recorder, Solver};
use bilevel::{BilevelError, Vector, algorithms, golden};
use serde::Deserialize;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Arguments of `bilevel run`.
#[derive(clap::Args)]
#[command(after_help = RUN_AFTER_HELP)]
pub struct RunArgs {
    /// Algorithm name (see `bilevel list`).
    #[arg(long)]
    pub algo: Option<String>,
    /// Problem (family) name (see `bilevel list`).
    #[arg(long, conflicts_with = "instance")]
    pub problem: Option<String>,
    /// A family parameter NAME=VALUE (repeatable; VALUE in TOML syntax), e.g. --param d_l=100 --param kappa=50
    /// --param seed=3 --param 'domain={kind="ball", center=[0,0,0], radius=1}'. An unknown NAME lists the
    /// accepted ones.
    #[arg(long = "param", value_name = "NAME=VALUE")]
    pub params: Vec<String>,
    /// A quadratic instance in JSON (the format of `bilevel golden --instance`, docs/golden-format.md) instead of
    /// a family.
    #[arg(long, value_name = "FILE")]
    pub instance: Option<PathBuf>,
    /// A TOML run spec: `iters`, `seed`, a `[problem]` and an `[algorithm]` table in the schema of
    /// theory/claims.toml (docs/cli.md). Flags override it.
    #[arg(long, value_name = "FILE")]
    pub spec: Option<PathBuf>,
    /// Run the problem and algorithm of a registered claim (see `bilevel list`), for K = its largest horizon.
    #[arg(long, value_name = "ID", conflicts_with = "spec")]
    pub claim: Option<String>,
    /// Outer iterations K, in 1..=100000000 [default: 1000].
    #[arg(long, allow_negative_numbers = true)]
    pub iters: Option<usize>,
    /// Seed of the run's oracle noise (the family instance has its own: --param seed=N) [default: 0].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Standard deviation (>= 0) of the additive noise on every gradient, Hessian and cross oracle; 0 turns it off
    /// [default: 0.1, or the spec's noise].
    #[arg(long, allow_negative_numbers = true)]
    pub noise: Option<f64>,
    /// Upper-level step schedule alpha_k: C (constant), C/CONST (constant over a family constant: mu_l, l_l,
    /// mu_f, l_f, kappa), decay:C[/CONST]:K0:POWER (C/(k+K0)^POWER), horizon:C[/CONST]:POWER (C*K^-POWER), or
    /// a TOML table as in claims.toml.
    #[arg(long, value_name = "SCHEDULE")]
    pub alpha: Option<String>,
    /// Lower-level step schedule beta_k, same syntax as --alpha.
    #[arg(long, value_name = "SCHEDULE")]
    pub beta: Option<String>,
    /// Inner lower-level steps per outer step (alternating, stocbio), >= 1.
    #[arg(long, value_name = "N")]
    pub inner_steps: Option<usize>,
    /// A fixed Neumann length instead of the default log growth (ttsa, bsa, stocbio, sustain), >= 1.
    #[arg(long, value_name = "N")]
    pub neumann: Option<usize>,
    /// Minibatch size (stocbio), >= 1.
    #[arg(long, value_name = "B")]
    pub batch: Option<usize>,
    /// Tracking weight tau of STABLE, in (0, 1].
    #[arg(long)]
    pub tau: Option<f64>,
    /// Print JSON.
    #[arg(long, conflicts_with = "csv")]
    pub json: bool,
    /// Print CSV.
    #[arg(long)]
    pub csv: bool,
    /// Show progress on stderr even when it is not a terminal (on a terminal it is always shown).
    #[arg(long)]
    pub progress: bool,
}

const RUN_AFTER_HELP: &str = "\
Without --alpha/--beta/--inner-steps/--neumann/--batch/--tau, the algorithm runs with the defaults derived from the
family's constants. With any of them (or an [algorithm] table), it is built from the claims.toml schema, which needs
--alpha and --beta (sustain: --alpha; its beta_k is tied to alpha_k); the other parameters default to the values
above (bsa c_inner 1, stocbio 10 inner steps and batch 4, stable tau 0.5, sustain beta0_l_l = eta_c = 1).
Parameters can be set for: ttsa, alternating, alternating-multi, bsa, stocbio, stable, stable-alg6-literal, sustain.

Examples:
  bilevel run --algo ttsa --problem quadratic --param d_l=100 --param kappa=50 --iters 5000
  bilevel run --algo stocbio --problem quadratic --alpha 0.1/l_f --beta 1/l_l --inner-steps 5 --batch 16
  bilevel run --algo ttsa --instance my.json --alpha decay:2/mu_f:12:1 --beta decay:1/l_l:1:0.667 --csv
  bilevel run --spec run.toml --progress --json > out.json";

/// A TOML run spec (`--spec FILE`): the `problem` and `algorithm` of a claim in theory/claims.toml, with the
/// run's length and seed.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunFile {
    /// Outer iterations K.
    pub iters: Option<usize>,
    /// Run seed.
    pub seed: Option<u64>,
    /// The problem, as a claim's `problem`.
    pub problem: Option<ProblemSpec>,
    /// The algorithm, as a claim's `algorithm`.
    pub algorithm: Option<AlgoSpec>,
}

impl RunFile {
    fn read(path: &Path) -> CliResult<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| BilevelError::io("read", path, &e))?;
        toml::from_str(&text).map_err(|e| {
            Failure::with_hint(
                BilevelError::Malformed(format!("{}: {}", path.display(), e.to_string().trim())),
                "a run spec has `iters`, `seed`, a [problem] and an [algorithm] table as in theory/claims.toml \
                 (docs/cli.md)",
            )
        })
    }
}

/// Build the family `name` with `params`: through the registry's defaults when there are none.
fn build_family(name: &str, params: &toml::Table) -> CliResult<Arc<dyn Bilevel>> {
    if !REGISTRY.iter().any(|e| e.name == name) {
        return Err(BilevelError::Unknown {
            kind: "problem".into(),
            name: name.into(),
            accepted: families::names().join(", "),
        }
        .into());
    }
    if params.is_empty() {
        return Ok(families::build(name, 0)?);
    }
    families::build_with(name, params).map_err(|e| match e {
        BilevelError::Unknown { .. } => Failure::with_hint(
            BilevelError::Unsupported(format!("family {name} takes no parameters from the command line yet")),
            "drop --param to run its default instance",
        ),
        BilevelError::Malformed(m) => Failure::with_hint(
            BilevelError::Malformed(m.trim().to_string()),
            "--param NAME=VALUE takes the fields of the family's Spec (the message lists them); VALUE is TOML",
        ),
        other => other.into(),
    })
}

/// `bilevel run`.
pub fn run(a: &RunArgs) -> CliResult {
    // The spec: a file, a claim, or nothing.
    let file = match (&a.spec, &a.claim) {
        (Some(path), _) => RunFile::read(path)?,
        (None, Some(id)) => {
            let reg = claims::Registry::builtin()?;
            if reg.rate.iter().any(|r| &r.id == id) {
                // A deterministic rate (rate/…, power/rate/…) is a check of an estimator, not one solver run.
                return Err(Failure::with_hint(
                    BilevelError::Unsupported(format!(
                        "'{id}' is a deterministic rate check of an estimator, with no solver run to repeat"
                    )),
                    format!(
                        "run it with `bilevel report --only {id}`; --claim takes the Monte Carlo claims of `bilevel list`"
                    ),
                ));
            }
            let c = reg
                .claim
                .iter()
                .find(|c| &c.id == id)
                .ok_or_else(|| BilevelError::Unknown {
                    kind: "claim".into(),
                    name: id.clone(),
                    accepted: reg.claim.iter().map(|c| c.id.as_str()).collect::<Vec<_>>().join(", "),
                })?;
            RunFile {
                iters: Some(c.horizons.max),
                seed: None,
                problem: Some(c.problem.clone()),
                algorithm: Some(c.algorithm.clone()),
            }
        }
        (None, None) => RunFile::default(),
    };
    let iters = a.iters.or(file.iters).unwrap_or(1000);
    if iters == 0 || iters > MAX_ITERS {
        return Err(Failure::with_hint(
            BilevelError::invalid("--iters", iters, &format!("must be in 1..={MAX_ITERS}")),
            format!(
                "runs are bounded to {MAX_ITERS} iterations so that none runs for days; `bilevel help run` lists \
                 the range"
            ),
        ));
    }
    let seed = a.seed.or(file.seed).unwrap_or(0);
    let noise = match a.noise {
        Some(s) if !(s.is_finite() && s >= 0.0) => {
            return Err(
                BilevelError::invalid("--noise", s, "must be a finite number >= 0 (0 turns the noise off)").into(),
            );
        }
        Some(s) => NoiseLevels::uniform(s),
        None => file.problem.as_ref().map_or(NoiseLevels::uniform(0.1), |p| p.noise),
    };
    noise.check()?;

    // The problem.
    let mut params = file.problem.as_ref().map(|p| p.params.clone()).unwrap_or_default();
    for kv in &a.params {
        let (k, v) = kv.split_once('=').ok_or_else(|| {
            Failure::with_hint(
                BilevelError::invalid("--param", kv, "must be NAME=VALUE"),
                "e.g. --param d_l=100 (see `bilevel help run`)",
            )
        })?;
        // Flags override the spec's [problem] table, but one flag repeated is a typo, not an override.
        if a.params
            .iter()
            .filter_map(|o| o.split_once('='))
            .filter(|(n, _)| n.trim() == k.trim())
            .count()
            > 1
        {
            return Err(Failure::with_hint(
                BilevelError::invalid("--param", kv, &format!("{} is given more than once", k.trim())),
                "give each --param NAME once",
            ));
        }
        // TOML integers stop at i64::MAX: a larger integer would otherwise be read as a string ("expected u64").
        if v.trim().parse::<u64>().is_ok_and(|n| n > i64::MAX as u64) {
            return Err(Failure::with_hint(
                BilevelError::invalid("--param", kv, "an integer above 9223372036854775807 (TOML's largest)"),
                "give a smaller value (a family seed up to 2^63 - 1 is as good as any)",
            ));
        }
        params.insert(k.trim().to_string(), toml_value(v.trim()));
    }
    let (label, base): (String, Arc<dyn Bilevel>) = match (&a.instance, &a.problem) {
        (Some(path), _) => {
            if !params.is_empty() || file.problem.is_some() {
                return Err(Failure::with_hint(
                    BilevelError::Unsupported("an instance file fixes the whole problem".into()),
                    "drop --param and the spec's [problem] table when using --instance (--noise still applies)",
                ));
            }
            // An invalid instance is fixed in its file, not with --param or the step flags.
            let in_file = |e: BilevelError| match e {
                BilevelError::Io { .. } => Failure::from(e),
                e => Failure::with_hint(
                    e,
                    format!(
                        "fix the instance file {} (its fields and conditions: docs/golden-format.md)",
                        path.display()
                    ),
                ),
            };
            let inst = golden::read_instance(path).map_err(in_file)?;
            (path.display().to_string(), Arc::new(inst.build().map_err(in_file)?))
        }
        (None, Some(name)) => {
            if let Some(f) = file.problem.as_ref().filter(|f| &f.family != name) {
                return Err(Failure::with_hint(
                    BilevelError::invalid("--problem", name, &format!("the spec's family is {}", f.family)),
                    "drop --problem to run the spec's family, or drop the spec's [problem] table",
                ));
            }
            (name.clone(), build_family(name, &params)?)
        }
        (None, None) => match &file.problem {
            Some(p) => (p.family.clone(), build_family(&p.family, &params)?),
            None => {
                return Err(Failure::with_hint(
                    BilevelError::Unsupported("no problem given".into()),
                    "give --problem NAME (see `bilevel list`), --instance FILE, --spec FILE or --claim ID",
                ));
            }
        },
    };
    let noisy = noise != NoiseLevels::default();
    let p: Arc<dyn Bilevel> = if noisy {
        Arc::new(Noisy::new(Arc::clone(&base), noise)?)
    } else {
        base
    };

    // The algorithm.
    let name: String = match (&a.algo, &file.algorithm) {
        (Some(n), _) => n.clone(),
        (None, Some(s)) => spec_name(s).to_string(),
        (None, None) => {
            return Err(Failure::with_hint(
                BilevelError::Unsupported("no algorithm given".into()),
                "give --algo NAME (see `bilevel list`), or an [algorithm] table in --spec",
            ));
        }
    };
    if !algorithms::names().contains(&name.as_str()) {
        return Err(BilevelError::Unknown {
            kind: "algorithm".into(),
            name,
            accepted: algorithms::names().join(", "),
        }
        .into());
    }
    let spec = algo_spec(&name, file.algorithm.as_ref(), a)?;
    let tunable = TUNABLE.split(", ").any(|t| t == name);
    // A pair whose defaults are known not to converge (algorithms::LIMITATIONS): say so before running.
    let limitation = if spec.is_none() {
        algorithms::limitation(&name, &label, noisy)
    } else {
        None
    };
    if let Some(l) = limitation {
        eprintln!(
            "warning: {name} on {label} with its defaults is a known limitation: {}",
            l.explanation
        );
    }
    let steps_hint = |e: BilevelError| -> Failure {
        match e {
            e if limitation.is_some() => Failure::with_hint(e, limitation.map_or("", |l| l.explanation)),
            BilevelError::StepCondition(_) | BilevelError::Diverged { .. } if !tunable => Failure::with_hint(
                e,
                format!(
                    "{name} runs with its defaults: lower --noise, or use an algorithm whose steps --alpha/--beta \
                     set ({TUNABLE})"
                ),
            ),
            BilevelError::StepCondition(_) | BilevelError::Diverged { .. } => Failure::with_hint(e, hints::step_hint()),
            other => other.into(),
        }
    };
    let mut solver: Box<dyn Solver> = match &spec {
        Some(s) => claims::build_solver(s, &p.constants(), iters).map_err(steps_hint)?,
        None => algorithms::build(&name, p.as_ref(), iters).map_err(steps_hint)?,
    };

    // The start: θ⁰ = P_Θ(1) (or the spec's), φ⁰ = 0 (or φ*(θ⁰)).
    let d = p.dims();
    let prob = file.problem.as_ref();
    let mut theta0 = match prob.and_then(|p| p.theta0.clone()) {
        Some(t) if t.len() != d.d_u => {
            return Err(BilevelError::DimensionMismatch {
                what: "problem.theta0".into(),
                expected: d.d_u,
                got: t.len(),
            }
            .into());
        }
        Some(t) => Vector::from_vec(t),
        None => Vector::from_element(d.d_u, 1.0),
    };
    p.domain().project(&mut theta0);
    if prob.is_some_and(|p| p.theta0_stationary) {
        theta0 = claims::stationary_point(p.as_ref(), theta0)?;
    }
    let phi0 = if prob.is_some_and(|p| p.phi0_on_solution) {
        p.phi_star(&theta0)
    } else {
        Vector::zeros(d.d_l)
    };

    let mut o = Oracle::new(p.as_ref(), seed);
    let metrics: Vec<Metric> = [Metric::GradNormSq, Metric::ThetaErrSq, Metric::PhiGapSq, Metric::FValue]
        .into_iter()
        .filter(|m| m.available(&o))
        .collect();
    let mut rec = Recorder::new(&metrics, &checkpoints(iters), false);
    let mut obs = ProgressObserver {
        inner: &mut rec,
        progress: Progress::new(iters as u64, "iterations", a.progress),
    };
    let result = solver::run(solver.as_mut(), &mut o, &theta0, &phi0, iters, &mut obs);
    if result.is_ok() {
        obs.progress.set(iters as u64, "");
    }
    obs.progress.finish();
    let last = result.map_err(steps_hint)?;
    let trace = rec.finish();

    if a.json {
        let rows: Vec<_> = trace
            .checkpoints
            .iter()
            .zip(&trace.values)
            .zip(&trace.counts)
            .map(|((k, v), c)| {
                let mut row = serde_json::Map::new();
                row.insert("k".into(), json!(k));
                for (m, x) in trace.metrics.iter().zip(v) {
                    row.insert(m.key().into(), json!(x));
                }
                row.insert("counts".into(), json!(c));
                serde_json::Value::Object(row)
            })
            .collect();
        let mut fin = rows.last().cloned().unwrap_or_default();
        if let Some(obj) = fin.as_object_mut() {
            obj.insert("theta".into(), json!(last.theta.as_slice()));
            obj.insert("phi".into(), json!(last.phi.as_slice()));
        }
        let out = json!({
            "algorithm": name, "problem": label, "params": params, "algorithm_spec": spec,
            "iters": iters, "seed": seed, "noise": noise, "dims": {"d_u": d.d_u, "d_l": d.d_l},
            "trace": rows, "final": fin,
        });
        emitln(&serde_json::to_string_pretty(&out).expect("serialisable"))?;
    } else {
        let sep = if a.csv { "," } else { " " };
        let cell = |h: &str| if a.csv { h.to_string() } else { format!("{h:>16}") };
        let head: Vec<String> = std::iter::once("k".to_string())
            .chain(trace.metrics.iter().map(|m| m.key().to_string()))
            .chain(["upper_samples".into(), "lower_samples".into()])
            .collect();
        let mut text = head.iter().map(|h| cell(h)).collect::<Vec<_>>().join(sep) + "\n";
        for ((k, v), c) in trace.checkpoints.iter().zip(&trace.values).zip(&trace.counts) {
            let cells: Vec<String> = std::iter::once(k.to_string())
                .chain(v.iter().map(|x| format!("{x:.6e}")))
                .chain([c.upper_samples.to_string(), c.lower_samples.to_string()])
                .collect();
            text += &(cells.iter().map(|h| cell(h)).collect::<Vec<_>>().join(sep) + "\n");
        }
        emit(&text)?;
    }
    Ok(())
}

/// Checkpoints of `bilevel run`: 0, then a geometric grid up to `iters` (about 8 per decade), then `iters`.
fn checkpoints(iters: usize) -> Vec<usize> {
    let mut c = vec![0];
    let mut x = 1.0f64;
    while (x as usize) < iters {
        c.push(x as usize);
        x *= 1.333;
    }
    c.push(iters);
    c.dedup();
    c
}
