//! The pieces of the `bilevel` command line that are not argument parsing: output and progress, hints, the run
//! specification, sharding and merging, and the documented limits.

pub mod algo_flags;
pub mod hints;
pub mod judge;
pub mod output;
pub mod run;
pub mod shard;

use bilevel::BilevelError;

/// Largest `run --iters` accepted: about a minute per 10^7 iterations on the small families, so 10^8 bounds a run
/// by hours, not years. Longer runs: split them, or call the library.
pub const MAX_ITERS: usize = 100_000_000;

/// Largest `sweep --seeds` accepted: a 20-seed sweep takes ~25 min on 2 cores, so 10^4 seeds is ~9 core-days,
/// affordable only when sharded (`--shard I/N`, docs/cli.md).
pub const MAX_SEEDS: u64 = 10_000;

/// An error of the command line: the library error, the hint printed under it, and the exit code.
pub struct Failure {
    /// What went wrong.
    pub error: BilevelError,
    /// How to fix it, where the subcommand knows better than [`hints::hint`] (which is used otherwise).
    pub hint: Option<String>,
    /// Process exit code: 2 for bad input or a failed run, 1 when claims were judged and some failed.
    pub code: u8,
}

impl From<BilevelError> for Failure {
    fn from(error: BilevelError) -> Self {
        Failure {
            error,
            hint: None,
            code: 2,
        }
    }
}

impl Failure {
    /// `error` with a hint specific to where it arose.
    pub fn with_hint(error: BilevelError, hint: impl Into<String>) -> Self {
        Failure {
            error,
            hint: Some(hint.into()),
            code: 2,
        }
    }
}

/// Result of a subcommand.
pub type CliResult<T = ()> = std::result::Result<T, Failure>;

/// Error unless `dir` can be created and written (checked before any claim runs, so no hour of work is lost).
pub fn check_writable_dir(dir: &std::path::Path) -> CliResult {
    std::fs::create_dir_all(dir).map_err(|e| {
        Failure::with_hint(
            BilevelError::io("create", dir, &e),
            "choose a directory you may write to with --out",
        )
    })?;
    let probe = dir.join(format!(".bilevel-write-check-{}", std::process::id()));
    std::fs::write(&probe, b"").map_err(|e| {
        Failure::with_hint(
            BilevelError::io("write", dir, &e),
            "choose a directory you may write to with --out",
        )
    })?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

/// The claims whose id starts with one of the comma-separated prefixes of `only` (all when `None`).
pub fn keep(only: Option<&str>, id: &str) -> bool {
    match only {
        None => true,
        Some(list) => list
            .split(',')
            .map(str::trim)
            .any(|p| !p.is_empty() && id.starts_with(p)),
    }
}
