//! One hint per error: what to change to make the command work. Hints name only options that the command's
//! `--help` lists: the step-size and noise options only for `run`, where they exist.

use bilevel::BilevelError;

/// The hint printed under `error` raised by subcommand `command` (subcommands override it where they know more).
pub fn hint(e: &BilevelError, command: &str) -> String {
    let run = command == "run";
    match e {
        BilevelError::Unknown { kind, .. } if kind == "claim prefix" => {
            "`bilevel list` prints every claim id; --only takes comma-separated id prefixes".into()
        }
        BilevelError::Unknown { kind, .. } if kind == "problem" || kind == "algorithm" => {
            "`bilevel list` prints every family and algorithm name".into()
        }
        BilevelError::Unknown { .. } => "use one of the accepted names listed above".into(),
        BilevelError::InvalidParameter { name, .. } if name.starts_with("--") => {
            format!("give {name} a value in the range stated above (`bilevel help {command}` lists the options)")
        }
        BilevelError::InvalidParameter { .. } if run => "the message says what the value must satisfy; family \
             parameters are set with --param NAME=VALUE, step sizes with --alpha/--beta (`bilevel help run`)"
            .into(),
        BilevelError::InvalidParameter { .. } => "the message says what the value must satisfy: fix it in the \
             input it names"
            .into(),
        BilevelError::StepCondition(_) | BilevelError::Diverged { .. } if run => step_hint(),
        BilevelError::StepCondition(_) | BilevelError::Diverged { .. } => "a claim's schedules and noise are set \
             in theory/claims.toml; rerun the claim alone with --only ID, and see its note in theory/"
            .into(),
        BilevelError::NotPositiveDefinite { what, .. } if run && what.contains("Hessian") => {
            "a sampled lower-level Hessian is indefinite when the Hessian noise (norm up to --noise * sqrt(2 d_l): \
             bilevel::problem::noise) is comparable to mu_l (see `bilevel list`): lower --noise (e.g. --noise 0), \
             or use an algorithm that does not invert a sampled Hessian (ttsa, bsa, stocbio: Neumann series)"
                .into()
        }
        BilevelError::NotPositiveDefinite { .. } => "the matrix must be symmetric positive definite: check its \
             eigenvalues (instance format: docs/golden-format.md)"
            .into(),
        BilevelError::DimensionMismatch { .. } => {
            "check the sizes in your input against d_u and d_l (`bilevel list` prints them per family)".into()
        }
        BilevelError::NonFinite { .. } if run => "check the input for NaN or infinity; if it arose during the run, \
             set smaller steps with --alpha/--beta or a lower --noise (`bilevel help run`)"
            .into(),
        BilevelError::NonFinite { .. } => "check the input for NaN or infinity".into(),
        BilevelError::Unsupported(_) => "`bilevel list` shows what each family and algorithm provides".into(),
        BilevelError::Malformed(_) => "fix the input where the message points; formats: docs/golden-format.md \
             (JSON instances and golden files), docs/cli.md (TOML run specs, shard files)"
            .into(),
        BilevelError::Io { action, .. } if action == "read" => {
            "check that the file exists and that you may read it".into()
        }
        BilevelError::Io { .. } => "check that the directory exists or can be created and that you may write to \
             it, or choose another one"
            .into(),
    }
}

/// The hint of `run` for a step-size condition or a divergence: the options that set the steps.
pub fn step_hint() -> String {
    "set smaller step sizes with --alpha and --beta (e.g. --alpha 0.05/l_f --beta 0.5/l_l; ttsa, alternating, bsa, \
     stocbio, stable, sustain), or lower --noise; see `bilevel help run`"
        .into()
}
