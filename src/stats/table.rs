//! The replicates × horizons table of metric values, with per-horizon means and standard errors.
//!
//! Row $i$ holds replicate $i$'s metric at every horizon of the grid (row-major, so a bootstrap resample adds whole
//! contiguous rows). Values are checked finite once, at construction.

use crate::error::{BilevelError, Result};
use std::ops::Range;

/// A replicates × horizons matrix of finite metric values (row $i$ = replicate $i$).
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    replicates: usize,
    horizons: usize,
    data: Vec<f64>,
}

impl Table {
    /// A table from row-major `data` of length `replicates · horizons`.
    ///
    /// # Errors
    /// [`BilevelError::InvalidParameter`] for an empty table, [`BilevelError::DimensionMismatch`] when the length is
    /// wrong, [`BilevelError::NonFinite`] for a NaN or infinite entry.
    pub fn new(replicates: usize, horizons: usize, data: Vec<f64>) -> Result<Self> {
        if replicates == 0 {
            return Err(BilevelError::invalid("replicates", replicates, "the table is empty"));
        }
        if horizons == 0 {
            return Err(BilevelError::invalid("horizons", horizons, "the table is empty"));
        }
        if data.len() != replicates * horizons {
            return Err(BilevelError::DimensionMismatch {
                what: "table data (replicates x horizons)".into(),
                expected: replicates * horizons,
                got: data.len(),
            });
        }
        if let Some(pos) = data.iter().position(|v| !v.is_finite()) {
            return Err(BilevelError::NonFinite {
                what: format!("table entry (replicate {}, horizon {})", pos / horizons, pos % horizons),
            });
        }
        Ok(Self {
            replicates,
            horizons,
            data,
        })
    }

    /// A table from one row per replicate (e.g. the output of [`super::run_replicates`]).
    ///
    /// # Errors
    /// As [`Table::new`]; [`BilevelError::DimensionMismatch`] when rows have different lengths.
    pub fn from_rows<R: AsRef<[f64]>>(rows: &[R]) -> Result<Self> {
        let horizons = rows.first().map_or(0, |r| r.as_ref().len());
        let mut data = Vec::with_capacity(rows.len() * horizons);
        for (i, row) in rows.iter().enumerate() {
            let row = row.as_ref();
            if row.len() != horizons {
                return Err(BilevelError::DimensionMismatch {
                    what: format!("row of replicate {i}"),
                    expected: horizons,
                    got: row.len(),
                });
            }
            data.extend_from_slice(row);
        }
        Self::new(rows.len(), horizons, data)
    }

    /// Number of replicates (rows).
    pub fn replicates(&self) -> usize {
        self.replicates
    }

    /// Number of horizons (columns).
    pub fn horizons(&self) -> usize {
        self.horizons
    }

    /// Row of replicate `i`.
    ///
    /// # Panics
    /// If `i >= replicates` (an indexing bug in the caller, not user input).
    pub fn row(&self, i: usize) -> &[f64] {
        &self.data[i * self.horizons..(i + 1) * self.horizons]
    }

    /// The row-major data.
    pub fn as_slice(&self) -> &[f64] {
        &self.data
    }

    /// Per-horizon means $\bar m_h = \frac1R\sum_i m_{ih}$ (summed in replicate order) into `out`.
    pub(crate) fn means_into(&self, out: &mut [f64]) {
        out.fill(0.0);
        for row in self.data.chunks_exact(self.horizons) {
            for (o, v) in out.iter_mut().zip(row) {
                *o += v;
            }
        }
        let inv = 1.0 / self.replicates as f64;
        out.iter_mut().for_each(|o| *o *= inv);
    }

    /// Means over columns `cols` of a resample given by replicate multiplicities `counts` (summing to $R$) into
    /// `out` (length `cols.len()`).
    pub(crate) fn weighted_means_into(&self, counts: &[u32], cols: Range<usize>, out: &mut [f64]) {
        out.fill(0.0);
        for (row, &c) in self.data.chunks_exact(self.horizons).zip(counts) {
            if c != 0 {
                let w = f64::from(c);
                for (o, v) in out.iter_mut().zip(&row[cols.clone()]) {
                    *o += w * v;
                }
            }
        }
        let inv = 1.0 / self.replicates as f64;
        out.iter_mut().for_each(|o| *o *= inv);
    }

    /// Per-horizon means.
    pub fn means(&self) -> Vec<f64> {
        let mut out = vec![0.0; self.horizons];
        self.means_into(&mut out);
        out
    }

    /// Per-horizon standard errors of the mean, $s_h/\sqrt{R}$ with the unbiased sample variance
    /// $s_h^2 = \frac{1}{R-1}\sum_i (m_{ih}-\bar m_h)^2$ (two-pass, for accuracy). Needs $R \ge 2$.
    ///
    /// # Errors
    /// [`BilevelError::InvalidParameter`] when $R < 2$.
    pub fn std_errors(&self) -> Result<Vec<f64>> {
        if self.replicates < 2 {
            return Err(BilevelError::invalid(
                "replicates",
                self.replicates,
                "a standard error needs at least 2 replicates",
            ));
        }
        let means = self.means();
        let mut ss = vec![0.0; self.horizons];
        for row in self.data.chunks_exact(self.horizons) {
            for ((s, v), m) in ss.iter_mut().zip(row).zip(&means) {
                *s += (v - m) * (v - m);
            }
        }
        let r = self.replicates as f64;
        Ok(ss.into_iter().map(|s| (s / (r - 1.0) / r).sqrt()).collect())
    }
}
