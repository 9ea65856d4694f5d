//! Geometric horizon grids.
//!
//! # Why
//! Step 1 of the method: a power law $c K^{r}$ is a straight line in $(\log K, \log \text{metric})$, so horizons
//! equally spaced in $\log K$ give every decade the same weight in the least-squares fit. A linear grid would put
//! almost all points at large $K$ and leave the slope poorly determined.

use crate::error::{BilevelError, Result};

/// `points` distinct increasing integers from `k_min` to `k_max` (both included), as close to geometric as rounding
/// allows.
///
/// Target $g_i = k_{\min}\\,(k_{\max}/k_{\min})^{i/(n-1)}$, $i = 0,\dots,n-1$, rounded to the nearest integer.
/// Rounding can create ties at the small end, so a forward pass sets $k_i \leftarrow \max(k_i, k_{i-1}+1)$ and a
/// backward pass, from $k_{n-1} = k_{\max}$, sets $k_i \leftarrow \min(k_i, k_{i+1}-1)$. When $n \le k_{\max} -
/// k_{\min} + 1$ the result is strictly increasing with both endpoints exact (each pass keeps $k_i \ge k_{\min}+i$).
///
/// # Errors
/// [`BilevelError::InvalidParameter`] when `k_min == 0`, `k_max <= k_min`, `points < 2`, or
/// `points > k_max - k_min + 1` (not enough distinct integers).
///
/// # Example
/// ```
/// use bilevel::stats::geometric_grid;
/// assert_eq!(geometric_grid(10, 1000, 3).unwrap(), vec![10, 100, 1000]);
/// assert_eq!(geometric_grid(1, 4, 4).unwrap(), vec![1, 2, 3, 4]);
/// ```
pub fn geometric_grid(k_min: usize, k_max: usize, points: usize) -> Result<Vec<usize>> {
    if k_min == 0 {
        return Err(BilevelError::invalid(
            "k_min",
            k_min,
            "horizons must be >= 1 (log K is fitted)",
        ));
    }
    if k_max <= k_min {
        return Err(BilevelError::invalid("k_max", k_max, "must exceed k_min"));
    }
    // The grid is computed in f64; beyond 2^53 its integers are not exact (and +1 could overflow at usize::MAX).
    if k_max > 1 << 53 {
        return Err(BilevelError::invalid("k_max", k_max, "must be <= 2^53"));
    }
    if points < 2 {
        return Err(BilevelError::invalid(
            "points",
            points,
            "a grid needs at least its two endpoints",
        ));
    }
    if points - 1 > k_max - k_min {
        return Err(BilevelError::invalid(
            "points",
            points,
            "more points than distinct integers in [k_min, k_max]",
        ));
    }
    let log_ratio = (k_max as f64 / k_min as f64).ln();
    let last = points - 1;
    let mut grid: Vec<usize> = (0..points)
        .map(|i| (k_min as f64 * (log_ratio * i as f64 / last as f64).exp()).round() as usize)
        .collect();
    grid[0] = k_min;
    for i in 1..points {
        grid[i] = grid[i].max(grid[i - 1] + 1);
    }
    grid[last] = k_max;
    for i in (0..last).rev() {
        grid[i] = grid[i].min(grid[i + 1] - 1);
    }
    Ok(grid)
}
