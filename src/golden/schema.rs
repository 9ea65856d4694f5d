//! The golden-file schema (version [`SCHEMA_VERSION`]), documented field by field in `docs/golden-format.md`.
//!
//! Matrices are arrays of rows; vectors are arrays. Every field is in float64. A golden file is the instance
//! written out in full plus the values computed on it; [`Instance`] alone is the input format of
//! `bilevel golden --instance FILE`.

use crate::error::{BilevelError, Result};
use crate::families::quadratic::Quadratic;
use crate::linalg::{Matrix, Vector};
use crate::problem::{Domain, NoiseLevels};
use serde::{Deserialize, Serialize};

/// The value of the `schema` field.
pub const SCHEMA: &str = "bilevel-golden";
/// The schema version this crate writes. A change of meaning of any field bumps it; the reader also accepts
/// version 1 (version 2 added `constants` and each trajectory's `params`; no field changed meaning).
pub const SCHEMA_VERSION: u32 = 2;

/// The constants every default parameter is derived from (`algorithms::build`), as the crate computes them for the
/// instance: $\mu_l = \lambda_{\min}(H)$, $L_l = \lambda_{\max}(H)$, $\mu_F = \lambda_{\min}(A_F)$,
/// $L_F = \lambda_{\max}(A_F)$ with $A_F$ the Hessian of $F$.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConstantsOut {
    /// $\mu_l$.
    pub mu_l: f64,
    /// $L_l$.
    pub l_l: f64,
    /// $\mu_F$ (`null` if $F$ is not strongly convex).
    pub mu_f: Option<f64>,
    /// $L_F$.
    pub l_f: f64,
}

/// A quadratic bilevel instance written out in full:
/// $$f_l(\theta,\phi) = \tfrac12\phi^\top H\phi + \theta^\top M\phi + b_l^\top\phi + c_l,\qquad
/// f_u(\theta,\phi) = \tfrac12\theta^\top P\theta + \theta^\top N\phi + \tfrac12\phi^\top Q\phi + p_u^\top\theta +
/// q_u^\top\phi + c_u,$$
/// $H\succ0$ ($d_l\times d_l$), $M, N\in\mathbb{R}^{d_u\times d_l}$, $P$ ($d_u\times d_u$) and $Q\succeq0$
/// ($d_l\times d_l$) symmetric, $\theta\in\Theta$ = `domain`. $F$ must be strongly convex
/// ($A_F = P + NJ + J^\top N^\top + J^\top QJ\succ0$); the instance is used as given, never shifted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Instance {
    /// $d_u$.
    pub d_u: usize,
    /// $d_l$.
    pub d_l: usize,
    /// $H = \nabla^2_{\phi\phi} f_l$.
    #[serde(rename = "H")]
    pub h: Vec<Vec<f64>>,
    /// $M = \nabla^2_{\theta\phi} f_l$ ($d_u\times d_l$).
    #[serde(rename = "M")]
    pub m: Vec<Vec<f64>>,
    /// $b_l$.
    pub b_l: Vec<f64>,
    /// $c_l$ (constant of $f_l$; changes no derivative).
    #[serde(default)]
    pub c_l: f64,
    /// $P$.
    #[serde(rename = "P")]
    pub p: Vec<Vec<f64>>,
    /// $N$ ($d_u\times d_l$).
    #[serde(rename = "N")]
    pub n: Vec<Vec<f64>>,
    /// $Q$.
    #[serde(rename = "Q")]
    pub q: Vec<Vec<f64>>,
    /// $p_u$.
    pub p_u: Vec<f64>,
    /// $q_u$.
    pub q_u: Vec<f64>,
    /// $c_u$ (constant of $f_u$, so $F$ values match the source family).
    #[serde(default)]
    pub c_u: f64,
    /// $\Theta$ (default unbounded).
    #[serde(default = "unbounded")]
    pub domain: Domain,
}

fn unbounded() -> Domain {
    Domain::Unbounded
}

/// Rows of a matrix.
pub fn rows(m: &Matrix) -> Vec<Vec<f64>> {
    (0..m.nrows()).map(|i| m.row(i).iter().copied().collect()).collect()
}

/// A vector as a `Vec`.
pub fn vec(v: &Vector) -> Vec<f64> {
    v.iter().copied().collect()
}

/// A matrix from rows, checked to be `r × c` and finite.
pub fn matrix(what: &str, m: &[Vec<f64>], r: usize, c: usize) -> Result<Matrix> {
    if m.len() != r {
        return Err(BilevelError::DimensionMismatch {
            what: format!("number of rows of {what}"),
            expected: r,
            got: m.len(),
        });
    }
    for (i, row) in m.iter().enumerate() {
        if row.len() != c {
            return Err(BilevelError::DimensionMismatch {
                what: format!("length of row {i} of {what}"),
                expected: c,
                got: row.len(),
            });
        }
        crate::linalg::check_finite(what, row)?;
    }
    Ok(Matrix::from_fn(r, c, |i, j| m[i][j]))
}

/// A vector, checked to have length `n` and be finite.
pub fn vector(what: &str, v: &[f64], n: usize) -> Result<Vector> {
    if v.len() != n {
        return Err(BilevelError::DimensionMismatch {
            what: what.into(),
            expected: n,
            got: v.len(),
        });
    }
    crate::linalg::check_finite(what, v)?;
    Ok(Vector::from_column_slice(v))
}

impl Instance {
    /// Write out a [`Quadratic`] (constants $c_u$, $c_l$ given separately: `Quadratic` has none).
    pub fn from_quadratic(q: &Quadratic, c_u: f64, c_l: f64, domain: Domain) -> Self {
        Instance {
            d_u: q.m.nrows(),
            d_l: q.m.ncols(),
            h: rows(&q.h),
            m: rows(&q.m),
            b_l: vec(&q.b_l),
            c_l,
            p: rows(&q.p),
            n: rows(&q.n),
            q: rows(&q.q),
            p_u: vec(&q.p_u),
            q_u: vec(&q.q_u),
            c_u,
            domain,
        }
    }

    /// Check every size and build the family, as given (no shift of $P$). Errors: sizes, non-finite entries,
    /// $H\not\succ0$, $Q\not\succeq0$, $A_F\not\succ0$.
    pub fn build(&self) -> Result<Quadratic> {
        let (du, dl) = (self.d_u, self.d_l);
        if du == 0 || dl == 0 {
            return Err(BilevelError::invalid("d_u, d_l", format!("{du}, {dl}"), "must be >= 1"));
        }
        for (what, v) in [("c_l", self.c_l), ("c_u", self.c_u)] {
            if !v.is_finite() {
                return Err(BilevelError::NonFinite { what: what.into() });
            }
        }
        let q = Quadratic::from_parts(
            matrix("H", &self.h, dl, dl)?,
            matrix("M", &self.m, du, dl)?,
            vector("b_l", &self.b_l, dl)?,
            matrix("P", &self.p, du, du)?,
            matrix("N", &self.n, du, dl)?,
            matrix("Q", &self.q, dl, dl)?,
            vector("p_u", &self.p_u, du)?,
            vector("q_u", &self.q_u, dl)?,
            f64::NEG_INFINITY,
            self.domain.clone(),
        )?;
        let (lo, _) = crate::linalg::sym_eig_range(&q.a_f);
        if lo.is_nan() || lo <= 0.0 {
            return Err(BilevelError::NotPositiveDefinite {
                what: "A_F (the Hessian of F): F must be strongly convex".into(),
                min_eig: lo,
            });
        }
        Ok(q)
    }

    /// The instance hash: FNV-1a 64 ([`crate::stats::seeds::fnv1a64`]) of the little-endian bytes of $d_u$, $d_l$
    /// (as u64) followed by every entry, as f64, of H, M, b_l, c_l, P, N, Q, p_u, q_u, c_u in this order
    /// (matrices row by row), written as 16 lowercase hex digits. The domain is not hashed.
    pub fn hash(&self) -> String {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&(self.d_u as u64).to_le_bytes());
        bytes.extend_from_slice(&(self.d_l as u64).to_le_bytes());
        let mut put = |xs: &[f64]| {
            for x in xs {
                bytes.extend_from_slice(&x.to_le_bytes());
            }
        };
        for r in &self.h {
            put(r);
        }
        for r in &self.m {
            put(r);
        }
        put(&self.b_l);
        put(&[self.c_l]);
        for r in &self.p {
            put(r);
        }
        for r in &self.n {
            put(r);
        }
        for r in &self.q {
            put(r);
        }
        put(&self.p_u);
        put(&self.q_u);
        put(&[self.c_u]);
        format!("{:016x}", crate::stats::seeds::fnv1a64(&bytes))
    }
}

/// Exact quantities at one point $(\theta,\phi)$.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PointValues {
    /// $\theta$.
    pub theta: Vec<f64>,
    /// $\phi$ (an arbitrary lower point, for $f_u$, $f_l$ and the surrogate).
    pub phi: Vec<f64>,
    /// $f_u(\theta,\phi)$.
    pub f_u: f64,
    /// $f_l(\theta,\phi)$.
    pub f_l: f64,
    /// $\bar\nabla f(\theta,\phi) = \nabla_\theta f_u - \nabla^2_{\theta\phi} f_l\\,[\nabla^2_{\phi\phi} f_l]^{-1}
    /// \nabla_\phi f_u$ at $(\theta,\phi)$, eq (18) with the cross derivative.
    pub surrogate: Vec<f64>,
    /// $\phi^\star(\theta)$.
    pub phi_star: Vec<f64>,
    /// $F(\theta)$.
    #[serde(rename = "F")]
    pub f: f64,
    /// $\nabla F(\theta)$, eq (13).
    #[serde(rename = "grad_F")]
    pub grad_f: Vec<f64>,
    /// $J = d\phi^\star/d\theta$ ($d_l\times d_u$, rows), eqs (15)–(17).
    pub jacobian: Vec<Vec<f64>>,
}

/// CG (Alg 7, corrected return) on $H x = v$ from $x_0$.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CgCase {
    /// Right-hand side $v$.
    pub v: Vec<f64>,
    /// Warm start $x_0$.
    pub x0: Vec<f64>,
    /// $x_0, x_1, \dots, x_{d_l}$ (no early stop: tolerance 0, at most $d_l$ iterations).
    pub iterates: Vec<Vec<f64>>,
    /// $H^{-1}v$ by a dense solve.
    pub solution: Vec<f64>,
}

/// Neumann series (24) with scale $\eta$ on $H^{-1}v$.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NeumannCase {
    /// $v$.
    pub v: Vec<f64>,
    /// $\eta$.
    pub eta: f64,
    /// $S_N = \eta\sum_{n=0}^{N-1}(I-\eta H)^n v$ for $N = 1, \dots$ (entry $i$ is $S_{i+1}$).
    pub partial_sums: Vec<Vec<f64>>,
    /// $\mathbb{E}$ of the Ghadimi–Wang estimator with $N$ = `partial_sums.len()`:
    /// $H^{-1}(I - (I-\eta H)^N)v$ (closed form, dense).
    pub ghadimi_wang_expectation: Vec<f64>,
    /// $\mathbb{E}$ of the stocBiO estimator with the same $N$ (the same closed form).
    pub stocbio_expectation: Vec<f64>,
}

/// ITD at one $T$.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ItdStep {
    /// $T$.
    #[serde(rename = "T")]
    pub t: usize,
    /// $\varphi^T$.
    pub phi_t: Vec<f64>,
    /// $Z_T = d\varphi^T/d\theta$ ($d_l\times d_u$), eq (32).
    pub z: Vec<Vec<f64>>,
    /// $\nabla F_T$ by forward mode.
    pub forward: Vec<f64>,
    /// $\nabla F_T$ by reverse mode (full back-propagation).
    pub reverse: Vec<f64>,
}

/// ITD (30)–(32) at $(\theta,\varphi^0)$ with step $\beta$, for $T = 1,\dots,n$.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ItdCase {
    /// $\theta$.
    pub theta: Vec<f64>,
    /// $\varphi^0$.
    pub phi0: Vec<f64>,
    /// $\beta$.
    pub beta: f64,
    /// One entry per $T$.
    pub steps: Vec<ItdStep>,
}

/// A deterministic trajectory (noise off) of one algorithm with the crate's default parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Trajectory {
    /// Registry name (`bilevel list`).
    pub algorithm: String,
    /// The horizon $K$ passed to `algorithms::build` (horizon-dependent steps use it).
    pub horizon: usize,
    /// Seed of the run's stream (only Neumann depths are random with noise off).
    pub seed: u64,
    /// $\theta^0,\dots,\theta^K$.
    pub theta: Vec<Vec<f64>>,
    /// $\phi^0,\dots,\phi^K$.
    pub phi: Vec<Vec<f64>>,
    /// Ghadimi–Wang depths $p$, one per Neumann estimate in call order (empty for other methods).
    pub neumann_depths: Vec<usize>,
    /// Every parameter the run used (schema 2): per-iteration arrays (`alpha[k]`, …) and constants, by algorithm
    /// as listed in `docs/golden-format.md`. Empty in version-1 files.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub params: serde_json::Map<String, serde_json::Value>,
}

/// One oracle call of a stochastic run: what was asked and the noise that was added.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TapeEntry {
    /// Outer iteration $k$ during which the call was made ($k = 0$ is the first step).
    pub k: usize,
    /// Oracle kind: `f_u`, `f_l`, `grad_theta_fu`, `grad_phi_fu`, `grad_phi_fl`, `grad_theta_fl`, `hvp_fl`,
    /// `cross_fl`, `cross_t_fl`.
    pub kind: String,
    /// The sample word as 16 hex digits (informative; `null` for an exact call).
    pub sample: Option<String>,
    /// Output minus exact output (length 1 for values).
    pub noise: Vec<f64>,
}

/// A stochastic trajectory with its noise tape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StochasticTrajectory {
    /// Registry name.
    pub algorithm: String,
    /// Seed of the run's stream.
    pub seed: u64,
    /// Noise levels of the additive-noise wrapper.
    pub noise: NoiseLevels,
    /// $\alpha_0,\dots,\alpha_{K-1}$.
    pub alpha: Vec<f64>,
    /// $\beta_0,\dots,\beta_{K-1}$.
    pub beta: Vec<f64>,
    /// Neumann scale $\eta$.
    pub neumann_eta: f64,
    /// Neumann lengths $N_0,\dots,N_{K-1}$.
    pub neumann_terms: Vec<usize>,
    /// Ghadimi–Wang depths $p_0,\dots,p_{K-1}$ (from the run's stream, $p_k$ uniform on $\\{0,\dots,N_k-1\\}$).
    pub neumann_depths: Vec<usize>,
    /// $\theta^0,\dots,\theta^K$.
    pub theta: Vec<Vec<f64>>,
    /// $\phi^0,\dots,\phi^K$.
    pub phi: Vec<Vec<f64>>,
    /// Every oracle call in order.
    pub tape: Vec<TapeEntry>,
}

/// A golden file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GoldenFile {
    /// Always [`SCHEMA`].
    pub schema: String,
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// Version of the crate that wrote the file.
    pub crate_version: String,
    /// File name without extension.
    pub name: String,
    /// Where the instance comes from.
    pub provenance: String,
    /// The instance in full.
    pub instance: Instance,
    /// [`Instance::hash`].
    pub instance_hash: String,
    /// The instance's constants (schema 2; absent in version 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub constants: Option<ConstantsOut>,
    /// $\theta^\star = \arg\min_\Theta F$.
    pub theta_star: Vec<f64>,
    /// Exact values at listed points.
    pub points: Vec<PointValues>,
    /// CG iterates.
    pub cg: Vec<CgCase>,
    /// Neumann partial sums and stochastic expectations.
    pub neumann: Vec<NeumannCase>,
    /// ITD forward and reverse.
    pub itd: Vec<ItdCase>,
    /// Deterministic trajectories of every algorithm.
    pub trajectories: Vec<Trajectory>,
    /// Stochastic trajectories with noise tapes.
    pub stochastic: Vec<StochasticTrajectory>,
}
