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
//!
//! # Size limit
//! Every `...Spec::build` counts, before allocating anything proportional to its sizes, the `f64` entries the
//! instance will need: the arrays it stores, the dense matrix its exact oracles form (the lower-level Hessian that
//! `phi_star` factors in the data families), and for the families built from a Haar construction or a thin QR
//! ([`weakly_convex`], [`meta_learning`], [`nonlinear_coupling`]) that construction's transient copies. When the
//! count exceeds [`MAX_ENTRIES`] ($2^{28}$ entries, 2 GiB) it returns [`BilevelError::InvalidParameter`] naming the
//! size parameters at fault, the largest value of each that fits, the GiB needed, the limit and a way out
//! ([`check_storage`]). The counts use saturating arithmetic ([`entries`]), so no size overflows, and every index
//! product of a built instance is bounded by its count. The other constructions hold transient copies on top, at
//! most about as much again; the algorithms' own vectors are not counted.
//!
//! | family | counted entries (saturating; the full formula is on each `...Spec::entries`) | largest size at the other defaults |
//! |---|---|---|
//! | [`quadratic`] | $2d_l^2 + 3d_ud_l + \dots$ ($H$, $Q$; $M$, $N$, $J$) | $d_l \le 11582$; above, use [`low_rank`] |
//! | [`hyperparameter`] | $(m+n)(p+1) + 3p^2 + 3p$ (data; $A$, the Hessian `phi_star` factors and its copy) | $p \le 9447$, $n \le 5.3\cdot10^7$ |
//! | [`representation`] | $(m+n)(p+1) + p^2 + 4kp + 2k^2 + 3p$ (data, $A$; feature maps, box; Hessian of `phi_star`) | $k \le 11581$ |
//! | [`pruning`] | $(m+n)(p+1) + 3p^2 + 3p$ (as hyperparameter) | $p \le 9447$ |
//! | [`data_cleaning`] | $(m+n)(p+1) + 3p^2 + 3m + p$ (data, box of the $m$ weights; Hessian of `phi_star`) | $m \le 3.8\cdot10^7$ |
//! | [`meta_learning`] | $T(4d^2 + 4d + 40) + 6d^2 + 3d$ (per task $Q_t$, $R_t$, $M_t$, a block of the stacked Jacobian, headers) | $d \le 3492$, $T \le 3.0\cdot10^6$ |
//! | [`weakly_convex`] | $5d_l^2 + 2d_ud_l + d_u^2 + 2d_u$ ($S$ and its Haar construction's copies; $A$, $A^\top S$) | $d_l \le 7326$ |
//! | [`ttsa_tight`] | none (one dimension, no size parameter) | — |
//! | [`nonlinear_coupling`] | $3d_ud_l + 2d_l + d_u^2 + 8d_u$ ($A$, its orthonormal factor, the Gaussian) | $d_l \le 3.3\cdot10^7$ |
//! | [`finite_sum`] | $n_l(3d_l + d_u) + 3n_u(d_l + d_u) + 2d_l^2 + 3d_ud_l + \dots$ (per-sample columns; $\bar H$, $\bar G$) | $n_l \le 1.2\cdot10^7$, $d_l \le 11510$ |
//! | [`low_rank`] | $(3d_u + 2r + 4)d_l + \dots$ ($M$, $N$, $J$; $V$, $D^{-1}V$; vectors) | $d_l \le 1.5\cdot10^7$ |
//!
//! The limit is about memory, not time. The dense families whose construction is cubic factor or eigendecompose
//! $d\times d$ matrices with nalgebra's unblocked kernels — measured on the 2-core machine: [`weakly_convex`] at
//! $d_l = 1000$ in 0.7 s, [`hyperparameter`] at $p = 1000$ in 2.5 s, [`meta_learning`] at $d = 1000$ (four tasks,
//! eight Haar constructions) in 11 s — and grow at least as $d^3$, so sizes near the limit pass the check and take
//! minutes to hours to build. The [`quadratic`] above $d_l = 256$ builds in $O(d_l^2(d_u + 32))$ (1.6 s and 383 MB
//! peak at $d_l = 4000$, where the count is 256 MB).
//!

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

/// Most `f64` entries one family instance may hold: $2^{28}$ entries, 2 GiB (module docs, "Size limit").
///
/// A bound on the whole instance, not on each array: the quadratic holds two dense $d_l\times d_l$ matrices and
/// low_rank three $d_u\times d_l$ ones, so a per-array bound would let an instance need several times the limit.
/// 2 GiB leaves room for the construction's transient copies and for the algorithms on a machine of 8 GiB; a dense
/// $d_l\times d_l$ family then allows $d_l$ up to about 11 500 (the quadratic: $2d_l^2 + 3d_ud_l \le 2^{28}$).
pub const MAX_ENTRIES: u64 = crate::problem::MAX_DENSE_ENTRIES;

/// $\sum_t \prod_{f\in t} f$ over `terms`, saturating at `u64::MAX`: the entry count of a family's arrays, each
/// term the dimensions of one array (or a multiplicity times its dimensions). Never overflows.
pub fn entries(terms: &[&[usize]]) -> u64 {
    terms
        .iter()
        .map(|t| t.iter().fold(1u64, |acc, &f| acc.saturating_mul(f as u64)))
        .fold(0u64, u64::saturating_add)
}

/// `Ok` when `count(values)` entries fit in [`MAX_ENTRIES`], else the typed error the families return for too
/// large sizes.
///
/// `params` are the family's size parameters with their values, `count` the entry count as a function of those
/// values (monotone in each, computed with [`entries`]), `stores` what the count is made of, and `way_out` what to
/// do instead. The error names the parameter that alone can bring the count under the limit by the smallest factor
/// (with the largest value that fits at the others' values; ties are all named), or all of them when none can
/// alone, the size needed in GiB, the limit and the way out. Allocates nothing proportional to the sizes.
pub fn check_storage(
    family: &str,
    params: &[(&str, usize)],
    count: impl Fn(&[usize]) -> u64,
    stores: &str,
    way_out: &str,
) -> Result<()> {
    let values: Vec<usize> = params.iter().map(|&(_, v)| v).collect();
    let needed = count(&values);
    if needed <= MAX_ENTRIES {
        return Ok(());
    }
    // For each parameter, the largest value below its own that fits with the others fixed, if any (binary search:
    // count is monotone, fits at lo, not at hi).
    let largest_fitting = |i: usize| -> Option<usize> {
        let at = |v: usize| {
            let mut vs = values.clone();
            vs[i] = v;
            count(&vs) <= MAX_ENTRIES
        };
        if values[i] <= 1 || !at(1) {
            return None;
        }
        let (mut lo, mut hi) = (1usize, values[i]);
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if at(mid) { lo = mid } else { hi = mid }
        }
        Some(lo)
    };
    // The parameters at fault: those that alone can bring the count under the limit by the smallest factor
    // (value / largest fitting value), so that the message names the size that was raised, not a small one that
    // could only shrink to 1; all parameters when none can alone.
    let reductions: Vec<(usize, usize, f64)> = (0..params.len())
        .filter_map(|i| largest_fitting(i).map(|max| (i, max, params[i].1 as f64 / max as f64)))
        .collect();
    let least = reductions.iter().map(|r| r.2).fold(f64::INFINITY, f64::min);
    let at_fault: Vec<&(usize, usize, f64)> = reductions.iter().filter(|r| r.2 <= least * (1.0 + 1e-12)).collect();
    let culprits: Vec<usize> = if at_fault.is_empty() {
        (0..params.len()).collect()
    } else {
        at_fault.iter().map(|r| r.0).collect()
    };
    let bounds: Vec<String> = at_fault
        .iter()
        .map(|&&(i, max, _)| format!("{} <= {max}", params[i].0))
        .collect();
    let (name, value) = if let [i] = culprits[..] {
        (params[i].0.to_string(), params[i].1.to_string())
    } else {
        let names: Vec<&str> = culprits.iter().map(|&i| params[i].0).collect();
        let vals: Vec<String> = culprits.iter().map(|&i| params[i].1.to_string()).collect();
        (format!("({})", names.join(", ")), format!("({})", vals.join(", ")))
    };
    let gib = |n: u64| {
        let g = n as f64 * 8.0 / (1u64 << 30) as f64;
        if g < 1e4 {
            format!("{g:.1} GiB")
        } else {
            format!("{g:.2e} GiB")
        }
    };
    let others: Vec<String> = params
        .iter()
        .enumerate()
        .filter(|(i, _)| !culprits.contains(i))
        .map(|(_, (n, v))| format!("{n} = {v}"))
        .collect();
    let at_others = if others.is_empty() {
        String::new()
    } else {
        format!(" (at {})", others.join(", "))
    };
    let fits = if bounds.is_empty() {
        String::new()
    } else {
        format!("; {} would fit{at_others}", bounds.join(" or "))
    };
    let held = if needed == u64::MAX {
        "more than 1.8e19".to_string()
    } else {
        format!("{:.2e}", needed as f64)
    };
    let reason = format!(
        "{family} would hold {held} f64 entries, {} ({stores}), above the limit of {} per instance (2^28 entries, \
         bilevel::families::MAX_ENTRIES){fits}; {way_out}",
        gib(needed),
        gib(MAX_ENTRIES),
    );
    Err(BilevelError::invalid(&name, value, &reason))
}

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
