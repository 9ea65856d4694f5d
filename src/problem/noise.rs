//! Additive noise: a stochastic oracle around any family.
//!
//! At a drawn sample $\xi$, each oracle returns the exact value plus a zero-mean Gaussian perturbation that depends
//! only on $\xi$ and on the oracle kind, never on the point. So repeated calls at one sample see one realisation
//! (as a minibatch does), differences at one sample are noise-free (what SUSTAIN's recursive momentum exploits), and
//! independent samples have independent noise. Noise of each kind comes from its own ChaCha8 stream keyed by the
//! sample word, so the order in which kinds are requested does not change any value.
//!
//! The Hessian and cross-derivative noises are matrices, so that products at one sample are products with one
//! random matrix (what the Ghadimi–Wang Neumann estimator of references §2 assumes):
//! - Hessian: $E = (\sigma_H/\sqrt{d_l})\\,S$ with $S$ symmetric, entries on and above the diagonal iid $N(0,1)$;
//! - cross: $G = (\sigma_C/\sqrt{d_l})\\,W$ with $W\in\mathbb{R}^{d_u\times d_l}$ iid $N(0,1)$;
//! - gradients: $\sigma\\,z$ with $z$ standard normal; values: $\sigma_v\\,z$ with scalar $z$.

use super::{Bilevel, Constants, Dims, Domain, Level, Sample};
use crate::error::{BilevelError, Result};
use crate::linalg::{Matrix, Vector};
use rand::{Rng, RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use serde::Serialize;
use std::sync::Arc;

/// Standard deviations of the additive noise, per oracle kind.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, serde::Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct NoiseLevels {
    /// Noise on $f_u$ and $f_l$ values.
    pub value: f64,
    /// Noise on $\nabla_\theta f_u$.
    pub grad_theta_fu: f64,
    /// Noise on $\nabla_\phi f_u$.
    pub grad_phi_fu: f64,
    /// Noise on $\nabla_\phi f_l$ and $\nabla_\theta f_l$.
    pub grad_phi_fl: f64,
    /// Scale $\sigma_H$ of the Hessian noise matrix.
    pub hess_fl: f64,
    /// Scale $\sigma_C$ of the cross-derivative noise matrix.
    pub cross_fl: f64,
}

impl NoiseLevels {
    /// The same standard deviation on every gradient and second-order oracle; values noise-free.
    pub fn uniform(sigma: f64) -> Self {
        NoiseLevels {
            value: 0.0,
            grad_theta_fu: sigma,
            grad_phi_fu: sigma,
            grad_phi_fl: sigma,
            hess_fl: sigma,
            cross_fl: sigma,
        }
    }

    /// Error unless every level is finite and non-negative.
    pub fn check(&self) -> Result<()> {
        for (name, v) in [
            ("noise.value", self.value),
            ("noise.grad_theta_fu", self.grad_theta_fu),
            ("noise.grad_phi_fu", self.grad_phi_fu),
            ("noise.grad_phi_fl", self.grad_phi_fl),
            ("noise.hess_fl", self.hess_fl),
            ("noise.cross_fl", self.cross_fl),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(BilevelError::invalid(name, v, "a noise level must be finite and >= 0"));
            }
        }
        Ok(())
    }
}

/// Stream identifiers: one independent ChaCha8 stream per oracle kind within a sample.
#[derive(Clone, Copy)]
enum Stream {
    FuValue = 1,
    FlValue,
    GradThetaFu,
    GradPhiFu,
    GradPhiFl,
    Hess,
    GradThetaFl,
    Cross,
}

/// The noise generator of one (sample, kind) pair.
fn stream(word: u64, kind: Stream) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(word);
    rng.set_stream(kind as u64);
    rng
}

fn normal(rng: &mut ChaCha8Rng) -> f64 {
    rng.sample(StandardNormal)
}

/// `out += sigma * z`, z standard normal from the (sample, kind) stream.
fn add_vector_noise(word: u64, kind: Stream, sigma: f64, out: &mut Vector) {
    if sigma == 0.0 {
        return;
    }
    let mut rng = stream(word, kind);
    for o in out.iter_mut() {
        *o += sigma * normal(&mut rng);
    }
}

/// A family with additive noise at drawn samples (see the module docs).
#[derive(Clone)]
pub struct Noisy {
    inner: Arc<dyn Bilevel>,
    levels: NoiseLevels,
}

impl Noisy {
    /// Wrap `inner`; checks the noise levels.
    pub fn new(inner: Arc<dyn Bilevel>, levels: NoiseLevels) -> Result<Self> {
        levels.check()?;
        Ok(Noisy { inner, levels })
    }

    /// The noise levels.
    pub fn levels(&self) -> NoiseLevels {
        self.levels
    }

    /// The wrapped family.
    pub fn inner(&self) -> &Arc<dyn Bilevel> {
        &self.inner
    }

    /// The word that keys this wrapper's noise: decorrelated from the word the inner family uses
    /// (e.g. as a data index) by a SplitMix64 finaliser.
    fn noise_word(s: Sample) -> Option<u64> {
        match s {
            Sample::Exact => None,
            Sample::Draw(w) => {
                let mut z = w ^ 0x9E37_79B9_7F4A_7C15;
                z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
                Some(z ^ (z >> 31))
            }
        }
    }

    /// Calls `f(i, j, e_ij)` for the Hessian noise matrix $E$ at sample `s`, entries on and above the diagonal in
    /// row-major order (the order another language must use to replay the stream); nothing when noise is off.
    fn for_each_hess_noise(&self, s: Sample, mut f: impl FnMut(usize, usize, f64)) {
        let Some(w) = Self::noise_word(s) else { return };
        let d = self.inner.dims().d_l;
        let scale = self.levels.hess_fl / (d as f64).sqrt();
        if scale == 0.0 {
            return;
        }
        let mut rng = stream(w, Stream::Hess);
        for i in 0..d {
            for j in i..d {
                f(i, j, scale * normal(&mut rng));
            }
        }
    }

    /// Calls `f(i, j, g_ij)` for the cross noise matrix $G$ ($d_u\times d_l$) at sample `s`, row-major.
    fn for_each_cross_noise(&self, s: Sample, mut f: impl FnMut(usize, usize, f64)) {
        let Some(w) = Self::noise_word(s) else { return };
        let Dims { d_u, d_l } = self.inner.dims();
        let scale = self.levels.cross_fl / (d_l as f64).sqrt();
        if scale == 0.0 {
            return;
        }
        let mut rng = stream(w, Stream::Cross);
        for i in 0..d_u {
            for j in 0..d_l {
                f(i, j, scale * normal(&mut rng));
            }
        }
    }

    /// The Hessian noise matrix $E$ at sample `s` (dense; the products never form it).
    pub fn hess_noise(&self, s: Sample) -> Matrix {
        let d = self.inner.dims().d_l;
        let mut e = Matrix::zeros(d, d);
        self.for_each_hess_noise(s, |i, j, x| {
            e[(i, j)] = x;
            e[(j, i)] = x;
        });
        e
    }

    /// The cross-derivative noise matrix $G$ ($d_u\times d_l$) at sample `s`.
    pub fn cross_noise(&self, s: Sample) -> Matrix {
        let Dims { d_u, d_l } = self.inner.dims();
        let mut g = Matrix::zeros(d_u, d_l);
        self.for_each_cross_noise(s, |i, j, x| g[(i, j)] = x);
        g
    }
}

impl Bilevel for Noisy {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn dims(&self) -> Dims {
        self.inner.dims()
    }
    fn draw(&self, level: Level, rng: &mut ChaCha8Rng) -> Sample {
        match self.inner.draw(level, rng) {
            Sample::Draw(w) => Sample::Draw(w),
            // A deterministic family still needs a word to key the noise.
            Sample::Exact => Sample::Draw(rng.next_u64()),
        }
    }
    fn f_u(&self, s: Sample, theta: &Vector, phi: &Vector) -> f64 {
        let v = self.inner.f_u(s, theta, phi);
        match Self::noise_word(s) {
            Some(w) if self.levels.value != 0.0 => v + self.levels.value * normal(&mut stream(w, Stream::FuValue)),
            _ => v,
        }
    }
    fn f_l(&self, s: Sample, theta: &Vector, phi: &Vector) -> f64 {
        let v = self.inner.f_l(s, theta, phi);
        match Self::noise_word(s) {
            Some(w) if self.levels.value != 0.0 => v + self.levels.value * normal(&mut stream(w, Stream::FlValue)),
            _ => v,
        }
    }
    fn grad_theta_fu(&self, s: Sample, theta: &Vector, phi: &Vector, out: &mut Vector) {
        self.inner.grad_theta_fu(s, theta, phi, out);
        if let Some(w) = Self::noise_word(s) {
            add_vector_noise(w, Stream::GradThetaFu, self.levels.grad_theta_fu, out);
        }
    }
    fn grad_phi_fu(&self, s: Sample, theta: &Vector, phi: &Vector, out: &mut Vector) {
        self.inner.grad_phi_fu(s, theta, phi, out);
        if let Some(w) = Self::noise_word(s) {
            add_vector_noise(w, Stream::GradPhiFu, self.levels.grad_phi_fu, out);
        }
    }
    fn grad_phi_fl(&self, s: Sample, theta: &Vector, phi: &Vector, out: &mut Vector) {
        self.inner.grad_phi_fl(s, theta, phi, out);
        if let Some(w) = Self::noise_word(s) {
            add_vector_noise(w, Stream::GradPhiFl, self.levels.grad_phi_fl, out);
        }
    }
    fn grad_theta_fl(&self, s: Sample, theta: &Vector, phi: &Vector, out: &mut Vector) {
        self.inner.grad_theta_fl(s, theta, phi, out);
        if let Some(w) = Self::noise_word(s) {
            add_vector_noise(w, Stream::GradThetaFl, self.levels.grad_phi_fl, out);
        }
    }
    fn hvp_fl(&self, s: Sample, theta: &Vector, phi: &Vector, v: &Vector, out: &mut Vector) {
        self.inner.hvp_fl(s, theta, phi, v, out);
        // out += E v without forming E.
        self.for_each_hess_noise(s, |i, j, x| {
            out[i] += x * v[j];
            if i != j {
                out[j] += x * v[i];
            }
        });
    }
    fn cross_fl(&self, s: Sample, theta: &Vector, phi: &Vector, w: &Vector, out: &mut Vector) {
        self.inner.cross_fl(s, theta, phi, w, out);
        self.for_each_cross_noise(s, |i, j, x| out[i] += x * w[j]);
    }
    fn cross_t_fl(&self, s: Sample, theta: &Vector, phi: &Vector, u: &Vector, out: &mut Vector) {
        self.inner.cross_t_fl(s, theta, phi, u, out);
        self.for_each_cross_noise(s, |i, j, x| out[j] += x * u[i]);
    }
    fn hess_fl(&self, s: Sample, theta: &Vector, phi: &Vector) -> Matrix {
        // One noise matrix per sample: the same E that `hvp_fl` applies, generated once.
        self.inner.hess_fl(s, theta, phi) + self.hess_noise(s)
    }
    fn cross_matrix_fl(&self, s: Sample, theta: &Vector, phi: &Vector) -> Matrix {
        self.inner.cross_matrix_fl(s, theta, phi) + self.cross_noise(s)
    }
    fn phi_star(&self, theta: &Vector) -> Vector {
        self.inner.phi_star(theta)
    }
    fn jacobian_phi_star(&self, theta: &Vector) -> Result<Matrix> {
        self.inner.jacobian_phi_star(theta)
    }
    fn value_f(&self, theta: &Vector) -> f64 {
        self.inner.value_f(theta)
    }
    fn grad_f(&self, theta: &Vector) -> Result<Vector> {
        self.inner.grad_f(theta)
    }
    fn theta_star(&self) -> Option<Vector> {
        self.inner.theta_star()
    }
    fn constants(&self) -> Constants {
        self.inner.constants()
    }
    fn domain(&self) -> &Domain {
        self.inner.domain()
    }
    fn describe(&self) -> String {
        format!("{} with additive noise {:?}", self.inner.describe(), self.levels)
    }
}
