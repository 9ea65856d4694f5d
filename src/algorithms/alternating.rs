//! Alternating (stochastic) gradient descent: the lecture's first two slides of §2 ("Alternating optimization").
//!
//! $$\phi \leftarrow \phi - \beta_k\nabla_\phi f_l(\theta^k,\phi)\ \ (T\text{ times}),\qquad
//! \theta^{k+1} = \mathcal{P}\_\Theta\big(\theta^k - \alpha_k\nabla_\theta f_u(\theta^k,\phi^{k+1})\big).$$
//! It ignores the implicit-gradient term of (13), so it converges to a point where
//! $\nabla_\theta f_u(\theta,\phi^\star(\theta)) = 0$, not to $\theta^\star$: the bias the test
//! `algorithms::alternating_converges_to_its_biased_fixed_point` computes analytically.
//! Per iteration: $T$ lower samples ($\nabla_\phi f_l$), one upper sample ($\nabla_\theta f_u$).

use super::common::{check_lower_step, lower_step, upper_step};
use crate::error::Result;
use crate::linalg::Vector;
use crate::problem::{Level, Oracle};
use crate::solver::{Iterate, Schedule, Solver};

/// Alternating GD with `inner_steps` lower-level steps per upper step (1: single loop; more: double loop).
#[derive(Debug, Clone)]
pub struct Alternating {
    /// Upper-level steps $\alpha_k$.
    pub alpha: Schedule,
    /// Lower-level steps $\beta_k$.
    pub beta: Schedule,
    /// Lower-level steps per outer iteration, $T\ge1$.
    pub inner_steps: usize,
    buf_l: Vector,
    buf_u: Vector,
}

impl Alternating {
    /// New solver.
    pub fn new(alpha: Schedule, beta: Schedule, inner_steps: usize) -> Self {
        Alternating {
            alpha,
            beta,
            inner_steps,
            buf_l: Vector::zeros(0),
            buf_u: Vector::zeros(0),
        }
    }
}

impl Solver for Alternating {
    fn name(&self) -> &'static str {
        if self.inner_steps == 1 {
            "alternating"
        } else {
            "alternating-multi"
        }
    }
    fn init(&mut self, o: &mut Oracle, _state: &Iterate) -> Result<()> {
        self.alpha.check("alpha")?;
        check_lower_step(&self.beta, o.problem().constants().l_l)?;
        if self.inner_steps == 0 {
            return Err(crate::BilevelError::invalid("inner_steps", 0, "must be >= 1"));
        }
        let d = o.dims();
        self.buf_l = Vector::zeros(d.d_l);
        self.buf_u = Vector::zeros(d.d_u);
        Ok(())
    }
    fn step(&mut self, o: &mut Oracle, mut st: Iterate) -> Result<Iterate> {
        let beta = self.beta.at(st.k);
        for _ in 0..self.inner_steps {
            lower_step(o, &st.theta, &mut st.phi, beta, &mut self.buf_l)?;
        }
        let su = o.draw(Level::Upper);
        o.grad_theta_fu(su, &st.theta, &st.phi, &mut self.buf_u)?;
        st.theta_prev.copy_from(&st.theta);
        upper_step(o, &mut st.theta, self.alpha.at(st.k), &self.buf_u);
        st.k += 1;
        Ok(st)
    }
}
