//! The Monte Carlo runner: $R$ independent replicates in parallel, results in replicate order.
//!
//! # Why
//! Step 2 of the method (theory/README.md, "How a rate claim is judged"): the estimand is $\mathbb{E}[\text{metric}]$, so a
//! claim needs $R$ independent replicates. Replicate $i$ gets its own stream from [`SeedKey::replicate`] and
//! nothing else random, and results are collected by index (rayon's indexed `collect` keeps order), so the output is
//! bit-identical for any number of threads: every later reduction (means, fits, bootstrap) runs in a fixed order on
//! the same numbers.

use super::seeds::SeedKey;
use crate::error::{BilevelError, Result};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

/// Run `f(rng_i, i)` for replicates $i = 0,\dots,R-1$ in parallel and return the results in replicate order.
///
/// `rng_i` is [`SeedKey::new`]`(master_seed, claim_id).replicate(i)`. If any replicate fails, the error of the
/// failing replicate with the smallest index is returned (deterministic, whatever the scheduling). All replicates
/// run even when one fails: a claim run that errors is a bug to fix, not a path to optimise.
///
/// # Errors
/// [`BilevelError::InvalidParameter`] when `replicates == 0`; otherwise the first replicate error.
///
/// # Example
/// ```
/// use bilevel::stats::run_replicates;
/// use rand::RngExt;
/// let xs = run_replicates(7, "doc/example", 4, |mut rng, i| Ok((i, rng.random::<f64>()))).unwrap();
/// assert_eq!(xs.iter().map(|x| x.0).collect::<Vec<_>>(), vec![0, 1, 2, 3]);
/// ```
pub fn run_replicates<T, F>(master_seed: u64, claim_id: &str, replicates: usize, f: F) -> Result<Vec<T>>
where
    T: Send,
    F: Fn(ChaCha8Rng, usize) -> Result<T> + Sync,
{
    if replicates == 0 {
        return Err(BilevelError::invalid(
            "replicates",
            replicates,
            "need at least one replicate",
        ));
    }
    let key = SeedKey::new(master_seed, claim_id);
    let results: Vec<Result<T>> = (0..replicates)
        .into_par_iter()
        .map(|i| f(key.replicate(i), i))
        .collect();
    // Sequential scan: the first error by replicate index wins.
    results.into_iter().collect()
}
