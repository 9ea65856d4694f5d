//! Step-size schedules: constant, $c/(k+k_0)^a$, and horizon-dependent constants $cK^{-a}$.

use crate::error::{BilevelError, Result};
use serde::Serialize;

/// A step size as a function of the iteration counter $k = 0, 1, \dots$
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Schedule {
    /// $\gamma_k = c$.
    Constant {
        /// The constant.
        c: f64,
    },
    /// $\gamma_k = c/(k+k_0)^a$ (TTSA strongly convex: $\alpha_k = c_\alpha/(k+k_\alpha)$,
    /// $\beta_k = c_\beta/(k+k_\beta)^{2/3}$).
    Decay {
        /// Numerator $c$.
        c: f64,
        /// Offset $k_0 > 0$.
        k0: f64,
        /// Power $a \ge 0$.
        power: f64,
    },
}

/// The formula with its numbers, e.g. `0.5` or `2/(k+1)^0.667` (error messages use this, never the Debug form).
impl std::fmt::Display for Schedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Schedule::Constant { c } => write!(f, "{}", short(c)),
            Schedule::Decay { c, k0, power } => write!(f, "{}/(k+{})^{}", short(c), short(k0), short(power)),
        }
    }
}

/// Four significant digits: enough to recognise a step size, without `0.49999999999999983`.
fn short(x: f64) -> String {
    if x == 0.0 || !x.is_finite() {
        return format!("{x}");
    }
    if !(1e-3..1e5).contains(&x.abs()) {
        return format!("{x:.3e}");
    }
    let decimals = (3 - x.abs().log10().floor() as i32).max(0) as usize;
    let t = format!("{x:.decimals$}");
    if t.contains('.') {
        t.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        t
    }
}

impl Schedule {
    /// $c$ for every $k$.
    pub fn constant(c: f64) -> Self {
        Schedule::Constant { c }
    }

    /// $c/(k+k_0)^a$.
    pub fn decay(c: f64, k0: f64, power: f64) -> Self {
        Schedule::Decay { c, k0, power }
    }

    /// The horizon-dependent constant $cK^{-a}$ (TTSA weakly convex: $\alpha\asymp K^{-3/5}$, $\beta\asymp K^{-2/5}$;
    /// STABLE nonconvex: $K^{-1/2}$).
    pub fn horizon(c: f64, horizon: usize, power: f64) -> Self {
        Schedule::Constant {
            c: c * (horizon.max(1) as f64).powf(-power),
        }
    }

    /// The step at iteration `k`.
    #[inline]
    pub fn at(&self, k: usize) -> f64 {
        match *self {
            Schedule::Constant { c } => c,
            Schedule::Decay { c, k0, power } => c / (k as f64 + k0).powf(power),
        }
    }

    /// The decay power $a$ (0 for a constant).
    pub fn power(&self) -> f64 {
        match *self {
            Schedule::Constant { .. } => 0.0,
            Schedule::Decay { power, .. } => power,
        }
    }

    /// Error unless the schedule is finite and positive at every $k$ and non-increasing.
    pub fn check(&self, name: &str) -> Result<()> {
        match *self {
            Schedule::Constant { c } if c.is_finite() && c > 0.0 => Ok(()),
            Schedule::Constant { c } => Err(BilevelError::invalid(name, c, "a step size must be finite and > 0")),
            Schedule::Decay { c, k0, power } => {
                if !(c.is_finite() && c > 0.0) {
                    return Err(BilevelError::invalid(&format!("{name}.c"), c, "must be finite and > 0"));
                }
                if !(k0.is_finite() && k0 > 0.0) {
                    return Err(BilevelError::invalid(
                        &format!("{name}.k0"),
                        k0,
                        "must be finite and > 0",
                    ));
                }
                if !(power.is_finite() && power >= 0.0) {
                    return Err(BilevelError::invalid(
                        &format!("{name}.power"),
                        power,
                        "must be finite and >= 0",
                    ));
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Schedule;

    #[test]
    fn display_rounds_to_four_significant_digits_and_shows_the_formula() {
        assert_eq!(Schedule::constant(0.49999999999999983).to_string(), "0.5");
        assert_eq!(Schedule::constant(0.012345678).to_string(), "0.01235");
        assert_eq!(Schedule::constant(2e-7).to_string(), "2.000e-7");
        assert_eq!(Schedule::decay(2.0, 1.0, 2.0 / 3.0).to_string(), "2/(k+1)^0.6667");
    }
}
