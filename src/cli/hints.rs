//! One hint per error: what to change to make the command work. Hints name only options that `--help` lists.

use bilevel::BilevelError;

/// The hint printed under `error`, chosen by its kind (subcommands override it where they know more).
pub fn hint(e: &BilevelError) -> String {
    match e {
        BilevelError::Unknown { kind, .. } if kind == "claim prefix" => {
            "`bilevel list` prints every claim id; --only takes comma-separated id prefixes".into()
        }
        BilevelError::Unknown { kind, .. } if kind == "problem" || kind == "algorithm" => {
            "`bilevel list` prints every family and algorithm name".into()
        }
        BilevelError::Unknown { .. } => "use one of the accepted names listed above".into(),
        BilevelError::InvalidParameter { name, .. } if name.starts_with("--") => {
            format!("`bilevel help <command>` lists the accepted range of {name}")
        }
        BilevelError::InvalidParameter { .. } => "the message gives the accepted range; family parameters are set \
             with --param NAME=VALUE, step sizes with --alpha/--beta (see `bilevel help run`)"
            .into(),
        BilevelError::StepCondition(_) | BilevelError::Diverged { .. } => step_hint(),
        BilevelError::NotPositiveDefinite { what, .. } if what.contains("Hessian") => {
            "a sampled lower-level Hessian is indefinite when the Hessian noise (scale --noise) is comparable to \
             mu_l (see `bilevel list`): lower --noise (e.g. --noise 0), or use an algorithm that does not invert a \
             sampled Hessian (ttsa, bsa, stocbio: Neumann series)"
                .into()
        }
        BilevelError::NotPositiveDefinite { .. } => {
            "the matrix must be symmetric positive definite: check its eigenvalues (docs/golden-format.md)".into()
        }
        BilevelError::DimensionMismatch { .. } => {
            "check the sizes in your input against d_u and d_l (`bilevel list` prints them per family)".into()
        }
        BilevelError::NonFinite { .. } => {
            "check the input for NaN or infinity; if it arose during a run, set smaller steps with --alpha/--beta \
             (see `bilevel help run`)"
                .into()
        }
        BilevelError::Unsupported(_) => "`bilevel list` shows what each family and algorithm provides".into(),
        BilevelError::Malformed(_) => "fix the input where the message points; formats: docs/golden-format.md \
             (JSON instances and golden files), docs/cli.md (TOML run specs)"
            .into(),
        BilevelError::Io { action, .. } if action == "read" => {
            "check that the file exists and that you may read it".into()
        }
        BilevelError::Io { .. } => "check that the directory exists or can be created, and that you may write \
             to it (or choose another one)"
            .into(),
    }
}

/// The hint for a step-size condition or a divergence: the options that set the steps.
pub fn step_hint() -> String {
    "set smaller step sizes with --alpha and --beta (e.g. --alpha 0.05/l_f --beta 0.5/l_l; ttsa, alternating, bsa, \
     stocbio, stable, sustain), or lower --noise; see `bilevel help run`"
        .into()
}
