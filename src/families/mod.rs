//! Synthetic families whose $\phi^\star(\theta)$, $F(\theta)$ and $\nabla F(\theta)$ are known exactly.
//!
//! Each family lives in its own module, is built from a seed and checked parameters, and reports its
//! [`Constants`](crate::problem::Constants). [`REGISTRY`] lists them with their default parameters; the CLI's
//! `--problem NAME` and `bilevel list` read it.

pub mod quadratic;
pub mod random;

use crate::error::{BilevelError, Result};
use crate::problem::Bilevel;
use std::sync::Arc;

/// One registered family: a name, a one-line summary citing the lecture, and a builder with default parameters.
pub struct FamilyEntry {
    /// Registry name (`--problem NAME`).
    pub name: &'static str,
    /// One line: what it is and which lecture equation it instantiates.
    pub summary: &'static str,
    /// Build the default instance from a seed.
    pub build: fn(seed: u64) -> Result<Arc<dyn Bilevel>>,
}

/// Every family of the crate, in the order `bilevel list` prints them.
pub const REGISTRY: &[FamilyEntry] = &[FamilyEntry {
    name: "quadratic",
    summary: "strongly convex quadratic, d_u=3 != d_l=5, non-symmetric cross matrix, kappa(H)=10",
    build: |seed| {
        Ok(Arc::new(
            quadratic::QuadraticSpec {
                seed,
                ..Default::default()
            }
            .build()?,
        ))
    },
}];

/// Build the registered family `name` from `seed`.
pub fn build(name: &str, seed: u64) -> Result<Arc<dyn Bilevel>> {
    let entry = REGISTRY
        .iter()
        .find(|e| e.name == name)
        .ok_or_else(|| BilevelError::Unknown {
            kind: "problem".into(),
            name: name.into(),
            accepted: names().join(", "),
        })?;
    (entry.build)(seed)
}

/// Build family `name` from explicit parameters (the fields of its `Spec`, all optional with the registry's
/// defaults), as the claims registry `theory/claims.toml` gives them. Unknown fields are an error.
pub fn build_with(name: &str, params: &toml::Table) -> Result<Arc<dyn Bilevel>> {
    fn spec<T: serde::de::DeserializeOwned>(name: &str, params: &toml::Table) -> Result<T> {
        toml::Value::Table(params.clone())
            .try_into()
            .map_err(|e| BilevelError::Malformed(format!("parameters of family '{name}': {e}")))
    }
    Ok(match name {
        "quadratic" => Arc::new(spec::<quadratic::QuadraticSpec>(name, params)?.build()?),
        _ => {
            build(name, 0)?;
            return Err(BilevelError::Unsupported(format!(
                "family '{name}' takes no parameters"
            )));
        }
    })
}

/// Registered family names.
pub fn names() -> Vec<&'static str> {
    REGISTRY.iter().map(|e| e.name).collect()
}
