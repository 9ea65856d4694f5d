//! Synthetic families whose $\phi^\star(\theta)$, $F(\theta)$ and $\nabla F(\theta)$ are known exactly.
//!
//! Each family lives in its own module, is built from a seed and checked parameters (a `...Spec` whose `build`
//! returns typed errors), and reports its [`Constants`](crate::problem::Constants): exact where computable,
//! otherwise valid bounds on $\Theta$, `None` (or $+\infty$ for a Lipschitz constant) where unbounded.
//! [`REGISTRY`] lists them with their default parameters; the CLI's `--problem NAME` and `bilevel list` read it.
//!
//! # Module map
//! | module | lecture | $d_u$, $d_l$ (default) | what is exact | notes |
//! |---|---|---|---|---|
//! | [`quadratic`] | (1)–(3), (13)–(17) | 3, 5 | everything, $\theta^\star$ | strongly convex $F$ |
//! | [`hyperparameter`] | (4) | 4, 4 | $\phi^\star$ (solve) | LL Hessian depends on $\theta$ (ITD tests); finite sum |
//! | [`representation`] | (6) | 8, 2 | $\phi^\star$ (solve) | bilinear $f_u$: global Lipschitz assumptions fail; finite sum |
//! | [`pruning`] | (8) | 5, 5 | $\phi^\star$ (solve) | mask $\theta\odot\phi$; bilinear as (6); finite sum |
//! | [`data_cleaning`] | HPO slide (subset selection) | 10, 3 | $\phi^\star$ (solve) | per-sample weights; finite sum |
//! | [`meta_learning`] | iMAML / personalised FL | 3, 12 | $\phi^\star$, $F$, $\nabla F$, $\theta^\star$ | proximal LL, strongly convex $F$ |
//! | [`weakly_convex`] | (37)–(38) | 2, 3 | $F$, $\nabla F$, $\rho_F$, prox | nonconvex $F$, Moreau envelope |
//! | [`ttsa_tight`] | references §6, (40)–(44) | 1, 1 | $F = \theta^2/2$, $\theta^\star = 0$ | TTSA's $k^{-2/3}$ attained |
//! | [`nonlinear_coupling`] | (13), (18), issue 10 §1 | 2, 3 | everything, $\theta^\star$ (also on a face) | surrogate quadratic in $\phi$, cross derivative depends on $\phi$ |
//! | [`finite_sum`] | (1)–(3), benchmark_bilevel | 3, 6 | everything from the full-batch matrices | rank-one samples; `d_u=10, d_l=100, n_lower=32768` for the benchmark |
//! | [`low_rank`] | (1)–(3), (13)–(17) | 3, 20 | everything, $\theta^\star$ | $H = D + VV^\top$, matrix-free, $d_l = 10^5$ |
//!
//! Shared pieces: [`data`] (seeded data sets, finite-sum minibatches, the smoothness lemma behind the bounds of the
//! data families), [`random`] (seeded matrices).

pub mod data;
pub mod data_cleaning;
pub mod finite_sum;
pub mod hyperparameter;
pub mod low_rank;
pub mod meta_learning;
pub mod nonlinear_coupling;
pub mod pruning;
pub mod quadratic;
pub mod random;
pub mod representation;
pub mod ttsa_tight;
pub mod weakly_convex;

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
pub const REGISTRY: &[FamilyEntry] = &[
    FamilyEntry {
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
    },
    FamilyEntry {
        name: "hyperparameter",
        summary: "eq (4): per-coordinate ridge tuned on validation, LL Hessian depends on theta, finite sum",
        build: |seed| {
            Ok(Arc::new(
                hyperparameter::HyperparameterSpec {
                    seed,
                    ..Default::default()
                }
                .build()?,
            ))
        },
    },
    FamilyEntry {
        name: "representation",
        summary: "eq (6): linear feature map (d_u=8) under a ridge head (d_l=2), finite sum",
        build: |seed| {
            Ok(Arc::new(
                representation::RepresentationSpec {
                    seed,
                    ..Default::default()
                }
                .build()?,
            ))
        },
    },
    FamilyEntry {
        name: "pruning",
        summary: "eq (8): soft mask theta on ridge weights phi, theta in [0,1]^5, finite sum",
        build: |seed| {
            Ok(Arc::new(
                pruning::PruningSpec {
                    seed,
                    ..Default::default()
                }
                .build()?,
            ))
        },
    },
    FamilyEntry {
        name: "data_cleaning",
        summary: "per-sample weights (d_u=m=10) on a partly corrupted training set, clean validation, finite sum",
        build: |seed| {
            Ok(Arc::new(
                data_cleaning::DataCleaningSpec {
                    seed,
                    ..Default::default()
                }
                .build()?,
            ))
        },
    },
    FamilyEntry {
        name: "meta_learning",
        summary: "proximal LL (iMAML / personalised FL), T=4 quadratic tasks, closed-form F and theta*",
        build: |seed| {
            Ok(Arc::new(
                meta_learning::MetaLearningSpec {
                    seed,
                    ..Default::default()
                }
                .build()?,
            ))
        },
    },
    FamilyEntry {
        name: "weakly_convex",
        summary: "eqs (37)-(38): nonconvex F with exact weak-convexity modulus, prox and Moreau gap",
        build: |seed| {
            Ok(Arc::new(
                weakly_convex::WeaklyConvexSpec {
                    seed,
                    ..Default::default()
                }
                .build()?,
            ))
        },
    },
    FamilyEntry {
        name: "ttsa_tight",
        summary: "references 6: F = theta^2/2 exactly, TTSA's k^(-2/3) UL bound attained (deterministic; seed unused)",
        build: |_seed| Ok(Arc::new(ttsa_tight::TtsaTightSpec::default().build()?)),
    },
    FamilyEntry {
        name: "nonlinear_coupling",
        summary: "issue 10: surrogate nonlinear in phi, cross derivative depends on phi, exact F and theta* (box face optional)",
        build: |seed| {
            Ok(Arc::new(
                nonlinear_coupling::NonlinearCouplingSpec {
                    seed,
                    ..Default::default()
                }
                .build()?,
            ))
        },
    },
    FamilyEntry {
        name: "finite_sum",
        summary: "benchmark_bilevel's quadratic: averages of rank-one Hessians, n_lower=64 here (32768 in the benchmark)",
        build: |seed| {
            Ok(Arc::new(
                finite_sum::FiniteSumSpec {
                    seed,
                    ..Default::default()
                }
                .build()?,
            ))
        },
    },
    FamilyEntry {
        name: "low_rank",
        summary: "matrix-free quadratic, LL Hessian diagonal + rank 2, O(d) oracles (d_l = 20 here; any d_l via d_l = ...)",
        build: |seed| {
            Ok(Arc::new(
                low_rank::LowRankSpec {
                    seed,
                    ..Default::default()
                }
                .build()?,
            ))
        },
    },
];

/// Build the registered family `name` from `seed`.
///
/// # Example
/// Every family answers the closed forms the checks need: here the lower-level optimality condition
/// $\nabla_\phi f_l(\theta,\phi^\star(\theta)) = 0$ and the declared constants, on every registered family.
/// ```
/// use bilevel::families;
/// use bilevel::problem::Sample;
/// use bilevel::Vector;
/// # fn main() -> bilevel::Result<()> {
/// for name in families::names() {
///     let p = families::build(name, 0)?;
///     let d = p.dims();
///     let mut theta = Vector::from_element(d.d_u, 0.1);
///     p.domain().project(&mut theta);
///     let phi = p.phi_star(&theta);
///     let mut g = Vector::zeros(d.d_l);
///     p.grad_phi_fl(Sample::Exact, &theta, &phi, &mut g);
///     assert!(g.norm() < 1e-6 * (1.0 + phi.norm()), "{name}: |grad_phi f_l| = {}", g.norm());
///     let k = p.constants();
///     assert!(0.0 < k.mu_l && k.mu_l <= k.l_l, "{name}");
/// }
/// assert!(families::build("no_such_family", 0).is_err());
/// # Ok(())
/// # }
/// ```
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
/// defaults), as the claims registry `theory/claims.toml` gives them. Unknown fields are an error. Needs the
/// `claims` feature (on by default), which brings in toml.
#[cfg(feature = "claims")]
pub fn build_with(name: &str, params: &toml::Table) -> Result<Arc<dyn Bilevel>> {
    fn spec<T: serde::de::DeserializeOwned>(name: &str, params: &toml::Table) -> Result<T> {
        toml::Value::Table(params.clone())
            .try_into()
            .map_err(|e| BilevelError::Malformed(format!("parameters of family '{name}': {e}")))
    }
    Ok(match name {
        "quadratic" => Arc::new(spec::<quadratic::QuadraticSpec>(name, params)?.build()?),
        "hyperparameter" => Arc::new(spec::<hyperparameter::HyperparameterSpec>(name, params)?.build()?),
        "representation" => Arc::new(spec::<representation::RepresentationSpec>(name, params)?.build()?),
        "pruning" => Arc::new(spec::<pruning::PruningSpec>(name, params)?.build()?),
        "data_cleaning" => Arc::new(spec::<data_cleaning::DataCleaningSpec>(name, params)?.build()?),
        "meta_learning" => Arc::new(spec::<meta_learning::MetaLearningSpec>(name, params)?.build()?),
        "weakly_convex" => Arc::new(spec::<weakly_convex::WeaklyConvexSpec>(name, params)?.build()?),
        "ttsa_tight" => Arc::new(spec::<ttsa_tight::TtsaTightSpec>(name, params)?.build()?),
        "nonlinear_coupling" => Arc::new(spec::<nonlinear_coupling::NonlinearCouplingSpec>(name, params)?.build()?),
        "finite_sum" => Arc::new(spec::<finite_sum::FiniteSumSpec>(name, params)?.build()?),
        "low_rank" => Arc::new(spec::<low_rank::LowRankSpec>(name, params)?.build()?),
        _ => {
            return Err(BilevelError::Unknown {
                kind: "problem".into(),
                name: name.into(),
                accepted: names().join(", "),
            });
        }
    })
}

/// Registered family names.
pub fn names() -> Vec<&'static str> {
    REGISTRY.iter().map(|e| e.name).collect()
}
