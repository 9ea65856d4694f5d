//! The noise tape: a [`Bilevel`] wrapper that logs every oracle call with the noise actually added.
//!
//! Other languages cannot reproduce rand's normal sampler, so a stochastic golden trajectory carries the realised
//! noise: for the $i$-th oracle call, `noise` = (output of the noisy oracle) − (output of the exact oracle at the
//! same arguments). Replay: the $i$-th call of a re-implementation returns exact $+$ `tape[i].noise`
//! (`docs/golden-format.md` gives the full semantics). Dense Hessians and cross matrices are formed by the
//! trait's default methods, i.e. logged as $d_l$ products with the unit vectors.

use crate::linalg::Vector;
use crate::problem::{Bilevel, Constants, Dims, Domain, Level, Sample};
use rand_chacha::ChaCha8Rng;
use std::sync::{Arc, Mutex};

/// One logged oracle call.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    /// Oracle kind (the method name of [`Bilevel`]).
    pub kind: &'static str,
    /// The sample it was evaluated at.
    pub sample: Sample,
    /// Output minus the exact output.
    pub noise: Vec<f64>,
    /// The $\theta$ argument of the call (PZOBO's directions are read off it).
    pub theta: Vec<f64>,
}

/// Logs every oracle call of `noisy`, with the noise relative to `exact` (see the module docs).
pub struct Recording {
    noisy: Arc<dyn Bilevel>,
    exact: Arc<dyn Bilevel>,
    log: Mutex<Vec<Call>>,
}

impl Recording {
    /// Record the calls to `noisy`; `exact` is the noise-free family (evaluated at [`Sample::Exact`]).
    pub fn new(noisy: Arc<dyn Bilevel>, exact: Arc<dyn Bilevel>) -> Self {
        Recording {
            noisy,
            exact,
            log: Mutex::new(Vec::new()),
        }
    }

    /// The calls so far.
    pub fn calls(&self) -> Vec<Call> {
        self.log.lock().expect("tape lock").clone()
    }

    /// Number of calls so far.
    pub fn len(&self) -> usize {
        self.log.lock().expect("tape lock").len()
    }

    /// Whether no call was made.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn push(&self, kind: &'static str, sample: Sample, theta: &Vector, noise: Vec<f64>) {
        let theta = theta.iter().copied().collect();
        self.log.lock().expect("tape lock").push(Call {
            kind,
            sample,
            noise,
            theta,
        });
    }

    fn vector_call(
        &self,
        kind: &'static str,
        s: Sample,
        theta: &Vector,
        out: &mut Vector,
        f: impl Fn(&dyn Bilevel, Sample, &mut Vector),
    ) {
        f(self.noisy.as_ref(), s, out);
        let mut exact = out.clone();
        f(self.exact.as_ref(), Sample::Exact, &mut exact);
        self.push(kind, s, theta, (&*out - exact).iter().copied().collect());
    }
}

/// Ghadimi–Wang depths read off a call log: after each `grad_phi_fu`, the number of consecutive `hvp_fl` calls
/// (the estimator draws $p$ and makes exactly $p$ products before the cross product).
pub fn neumann_depths(calls: &[Call]) -> Vec<usize> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < calls.len() {
        if calls[i].kind == "grad_phi_fu" {
            let mut j = i + 1;
            while j < calls.len() && calls[j].kind == "hvp_fl" {
                j += 1;
            }
            out.push(j - i - 1);
            i = j;
        } else {
            i += 1;
        }
    }
    out
}

impl Bilevel for Recording {
    fn name(&self) -> &str {
        self.noisy.name()
    }
    fn dims(&self) -> Dims {
        self.noisy.dims()
    }
    fn draw(&self, level: Level, rng: &mut ChaCha8Rng) -> Sample {
        self.noisy.draw(level, rng)
    }
    fn f_u(&self, s: Sample, theta: &Vector, phi: &Vector) -> f64 {
        let v = self.noisy.f_u(s, theta, phi);
        self.push("f_u", s, theta, vec![v - self.exact.f_u(Sample::Exact, theta, phi)]);
        v
    }
    fn f_l(&self, s: Sample, theta: &Vector, phi: &Vector) -> f64 {
        let v = self.noisy.f_l(s, theta, phi);
        self.push("f_l", s, theta, vec![v - self.exact.f_l(Sample::Exact, theta, phi)]);
        v
    }
    fn grad_theta_fu(&self, s: Sample, theta: &Vector, phi: &Vector, out: &mut Vector) {
        self.vector_call("grad_theta_fu", s, theta, out, |p, s, o| {
            p.grad_theta_fu(s, theta, phi, o)
        });
    }
    fn grad_phi_fu(&self, s: Sample, theta: &Vector, phi: &Vector, out: &mut Vector) {
        self.vector_call("grad_phi_fu", s, theta, out, |p, s, o| p.grad_phi_fu(s, theta, phi, o));
    }
    fn grad_phi_fl(&self, s: Sample, theta: &Vector, phi: &Vector, out: &mut Vector) {
        self.vector_call("grad_phi_fl", s, theta, out, |p, s, o| p.grad_phi_fl(s, theta, phi, o));
    }
    fn grad_theta_fl(&self, s: Sample, theta: &Vector, phi: &Vector, out: &mut Vector) {
        self.vector_call("grad_theta_fl", s, theta, out, |p, s, o| {
            p.grad_theta_fl(s, theta, phi, o)
        });
    }
    fn hvp_fl(&self, s: Sample, theta: &Vector, phi: &Vector, v: &Vector, out: &mut Vector) {
        self.vector_call("hvp_fl", s, theta, out, |p, s, o| p.hvp_fl(s, theta, phi, v, o));
    }
    fn cross_fl(&self, s: Sample, theta: &Vector, phi: &Vector, w: &Vector, out: &mut Vector) {
        self.vector_call("cross_fl", s, theta, out, |p, s, o| p.cross_fl(s, theta, phi, w, o));
    }
    fn cross_t_fl(&self, s: Sample, theta: &Vector, phi: &Vector, u: &Vector, out: &mut Vector) {
        self.vector_call("cross_t_fl", s, theta, out, |p, s, o| p.cross_t_fl(s, theta, phi, u, o));
    }
    fn phi_star(&self, theta: &Vector) -> Vector {
        self.exact.phi_star(theta)
    }
    fn jacobian_phi_star(&self, theta: &Vector) -> crate::error::Result<crate::linalg::Matrix> {
        self.exact.jacobian_phi_star(theta)
    }
    fn value_f(&self, theta: &Vector) -> f64 {
        self.exact.value_f(theta)
    }
    fn grad_f(&self, theta: &Vector) -> crate::error::Result<Vector> {
        self.exact.grad_f(theta)
    }
    fn theta_star(&self) -> Option<Vector> {
        self.exact.theta_star()
    }
    fn constants(&self) -> Constants {
        self.exact.constants()
    }
    fn domain(&self) -> &Domain {
        self.exact.domain()
    }
    fn describe(&self) -> String {
        format!("recording of {}", self.noisy.describe())
    }
}
