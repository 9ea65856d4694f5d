//! The crate's one error type: every fallible public function returns [`Result`].

use thiserror::Error;

/// Everything that can go wrong when a user hands the crate a problem, a point or a parameter.
///
/// Each variant says what was wrong; the CLI prints the message and a hint on how to fix it.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum BilevelError {
    /// A vector or matrix has the wrong size.
    #[error("dimension mismatch in {what}: expected {expected}, got {got}")]
    DimensionMismatch {
        /// Which argument.
        what: String,
        /// Size the problem requires.
        expected: usize,
        /// Size that was given.
        got: usize,
    },
    /// A NaN or an infinity where a finite number is required.
    #[error("non-finite value in {what}")]
    NonFinite {
        /// Which argument or quantity.
        what: String,
    },
    /// A matrix that must be symmetric positive definite is not.
    #[error("{what} is not positive definite (smallest eigenvalue {min_eig:e})")]
    NotPositiveDefinite {
        /// Which matrix.
        what: String,
        /// Its smallest eigenvalue (or the curvature that revealed it).
        min_eig: f64,
    },
    /// A parameter outside its allowed range.
    #[error("invalid parameter {name} = {value}: {reason}")]
    InvalidParameter {
        /// Parameter name as the user spells it.
        name: String,
        /// The value given.
        value: String,
        /// What the parameter must satisfy.
        reason: String,
    },
    /// Step sizes that break the conditions of the theorem the algorithm relies on.
    #[error("step-size condition violated: {0}")]
    StepCondition(String),
    /// An iterate became non-finite or exceeded the divergence threshold.
    #[error("diverged at iteration {iter}: {what}")]
    Diverged {
        /// Iteration at which divergence was detected.
        iter: usize,
        /// What blew up.
        what: String,
    },
    /// A name (family, algorithm, claim) that the crate does not know.
    #[error("unknown {kind} '{name}'; accepted: {accepted}")]
    Unknown {
        /// What kind of name.
        kind: String,
        /// The name given.
        name: String,
        /// The accepted names, comma separated.
        accepted: String,
    },
    /// A request the chosen problem or algorithm cannot serve.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// Malformed input file or data (JSON, TOML).
    #[error("malformed input: {0}")]
    Malformed(String),
    /// A file or directory could not be read, created or written.
    #[error("I/O error: cannot {action} {path}: {message}")]
    Io {
        /// What was attempted: `read`, `write`, `create`.
        action: String,
        /// The path involved.
        path: String,
        /// The operating system's message.
        message: String,
    },
}

/// Shorthand for results of this crate.
pub type Result<T> = std::result::Result<T, BilevelError>;

impl BilevelError {
    /// A [`BilevelError::InvalidParameter`] from displayable parts.
    pub fn invalid(name: &str, value: impl std::fmt::Display, reason: &str) -> Self {
        BilevelError::InvalidParameter {
            name: name.to_string(),
            value: value.to_string(),
            reason: reason.to_string(),
        }
    }

    /// A [`BilevelError::Io`] for `action` (`read`, `write`, `create`) on `path`.
    pub fn io(action: &str, path: &std::path::Path, e: &std::io::Error) -> Self {
        BilevelError::Io {
            action: action.to_string(),
            path: path.display().to_string(),
            message: e.to_string(),
        }
    }
}
