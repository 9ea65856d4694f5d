//! The checked door to a problem's closed forms: [`Checked`] wraps the unchecked [`Bilevel`] methods for user data.
//!
//! [`Bilevel`]'s methods are the implementor's interface: fast, unchecked, and they may panic inside nalgebra on a
//! wrong-length argument. User code calls the `try_` methods of [`Checked`] (implemented for every [`Bilevel`],
//! including `dyn Bilevel`) or goes through an [`Oracle`](super::Oracle): both return
//! [`BilevelError::DimensionMismatch`] instead of panicking. The `try_` methods also return
//! [`BilevelError::NonFinite`] for a NaN or infinite input (and for a non-finite closed form). The `Oracle` checks
//! sizes only: a finiteness pass on every call would cost as much as a 10-dimensional oracle, and
//! [`crate::solver::run`] already rejects every non-finite iterate. Tested in `tests/robustness.rs` (proptest over
//! random shapes and values).

use super::{Bilevel, Sample};
use crate::error::{BilevelError, Result};
use crate::linalg::{Matrix, Vector, check_vector};

fn finite(what: &str, x: f64) -> Result<f64> {
    if x.is_finite() {
        Ok(x)
    } else {
        Err(BilevelError::NonFinite { what: what.into() })
    }
}

fn finite_vector(what: &str, v: Vector) -> Result<Vector> {
    if v.iter().all(|x| x.is_finite()) {
        Ok(v)
    } else {
        Err(BilevelError::NonFinite { what: what.into() })
    }
}

/// Checked closed forms of a [`Bilevel`] problem: sizes and finiteness of the inputs are verified first.
pub trait Checked: Bilevel {
    /// $\phi^\star(\theta)$; error unless `theta` is finite of length $d_u$ and $\phi^\star(\theta)$ is finite.
    fn try_phi_star(&self, theta: &Vector) -> Result<Vector> {
        check_vector("theta", theta, self.dims().d_u)?;
        finite_vector("phi*(theta)", self.phi_star(theta))
    }
    /// $J = d\phi^\star/d\theta$ ($d_l\times d_u$); error unless `theta` is finite of length $d_u$.
    fn try_jacobian_phi_star(&self, theta: &Vector) -> Result<Matrix> {
        check_vector("theta", theta, self.dims().d_u)?;
        self.jacobian_phi_star(theta)
    }
    /// $F(\theta)$; error unless `theta` is finite of length $d_u$ and $F(\theta)$ is finite.
    fn try_value_f(&self, theta: &Vector) -> Result<f64> {
        check_vector("theta", theta, self.dims().d_u)?;
        finite("F(theta)", self.value_f(theta))
    }
    /// $\nabla F(\theta)$, eq (13); error unless `theta` is finite of length $d_u$ and $\nabla F(\theta)$ is finite.
    fn try_grad_f(&self, theta: &Vector) -> Result<Vector> {
        check_vector("theta", theta, self.dims().d_u)?;
        finite_vector("grad F(theta)", self.grad_f(theta)?)
    }
    /// $f_u(\theta,\phi)$ at `s`; error unless both points are finite and correctly sized.
    fn try_f_u(&self, s: Sample, theta: &Vector, phi: &Vector) -> Result<f64> {
        check_vector("theta", theta, self.dims().d_u)?;
        check_vector("phi", phi, self.dims().d_l)?;
        Ok(self.f_u(s, theta, phi))
    }
    /// $f_l(\theta,\phi)$ at `s`; error unless both points are finite and correctly sized.
    fn try_f_l(&self, s: Sample, theta: &Vector, phi: &Vector) -> Result<f64> {
        check_vector("theta", theta, self.dims().d_u)?;
        check_vector("phi", phi, self.dims().d_l)?;
        Ok(self.f_l(s, theta, phi))
    }
    /// Dense $\nabla^2_{\phi\phi} f_l$ at `s`; error unless both points are finite and correctly sized, and the
    /// $d_l\times d_l$ matrix fits [`super::MAX_DENSE_ENTRIES`] (as [`super::Oracle::hess_fl`]).
    fn try_hess_fl(&self, s: Sample, theta: &Vector, phi: &Vector) -> Result<Matrix> {
        check_vector("theta", theta, self.dims().d_u)?;
        check_vector("phi", phi, self.dims().d_l)?;
        let d_l = self.dims().d_l;
        super::check_dense("a dense lower-level Hessian", d_l, d_l)?;
        Ok(self.hess_fl(s, theta, phi))
    }
}

impl<T: Bilevel + ?Sized> Checked for T {}
