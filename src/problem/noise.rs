//! Additive noise: a stochastic oracle around any family.
//!
//! At a drawn sample $\xi$, each oracle returns the exact value plus a zero-mean random perturbation that depends
//! only on $\xi$ and on the oracle kind, never on the point. So repeated calls at one sample see one realisation
//! (as a minibatch does), differences at one sample are noise-free (what SUSTAIN's recursive momentum exploits), and
//! independent samples have independent noise. Noise of each kind comes from its own ChaCha8 stream keyed by the
//! sample word, so the order in which kinds are requested does not change any value.
//!
//! The Hessian and cross-derivative noises are low-rank random matrices, so that products at one sample are products
//! with one random matrix (what the Ghadimi–Wang Neumann estimator of references §2 assumes, and what SUSTAIN, VRBO
//! and the golden tapes rely on), at the cost of the oracle: $O(d)$ normals and flops per product, never $O(d^2)$.
//! - Hessian: $E = c_H\\,(a b^\top + b a^\top)$ with $c_H = \sigma_H/\sqrt{2 d_l}$ and $a, b \in \\{-1, 1\\}^{d_l}$
//!   independent uniform random signs (Rademacher);
//! - cross: $G = c_C\\,a' b'^\top \in \mathbb{R}^{d_u\times d_l}$ with $c_C = \sigma_C/\sqrt{d_l}$, $a'\in\\{-1,1\\}^{d_u}$,
//!   $b'\in\\{-1,1\\}^{d_l}$ random signs.
//!
//! Both have mean zero, and second moments that the exact moment recursions use: for every matrix $M$ of matching size,
//! $\mathbb{E}[E M E] = (\sigma_H^2/d_l)(M^\top + \operatorname{tr}(M)\\,I)$, so
//! $\mathbb{E}\\|Ev\\|^2 = \sigma_H^2(1 + 1/d_l)\\|v\\|^2$; $\mathbb{E}[G M G^\top] = (\sigma_C^2/d_l)\operatorname{tr}(M)\\,I_{d_u}$ and
//! $\mathbb{E}[G^\top N G] = (\sigma_C^2/d_l)\operatorname{tr}(N)\\,I_{d_l}$. These are the second moments of the
//! dense Gaussian matrices used before version 0.2 (up to a diagonal term), at $O(d)$ instead of $O(d^2)$ cost (only
//! second moments of $a, b$ enter, so signs give the same covariance as normals). Signs also make the noise bounded:
//! $\\|E\\| \le 2c_H d_l = \sigma_H\sqrt{2 d_l}$ and $\\|G\\| = c_C\sqrt{d_u d_l} = \sigma_C\sqrt{d_u}$ surely, so every
//! Hessian sample lies in $[\mu_l - \sigma_H\sqrt{2d_l},\ L_l + \sigma_H\sqrt{2d_l}]$: a per-sample bound of the kind
//! Ghadimi–Wang assume, and positive definite whenever $\sigma_H\sqrt{2 d_l} < \mu_l$. The noises of different kinds
//! and different samples are independent. Tests: `noise_model::low_rank_noise_*`.
//! - gradients: $\sigma\\,z$ with $z$ standard normal; values: $\sigma_v\\,z$ with scalar $z$.

use super::keystream::Keystream;
use super::{Bilevel, Constants, Dims, Domain, Level, Sample};
use crate::error::{BilevelError, Result};
use crate::linalg::{Matrix, Vector};
use rand::{Rng, RngExt};
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

/// The noise generator of one (sample, kind) pair: the keystream of `ChaCha8Rng::seed_from_u64(word)` on stream
/// `kind`, computed lazily one block at a time ([`Keystream`], bit-identical).
fn stream(word: u64, kind: Stream) -> Keystream {
    Keystream::new(word, kind as u64)
}

fn normal(rng: &mut Keystream) -> f64 {
    rng.sample(StandardNormal)
}

/// ±1 from the lowest bit of `bits` (1 → +1). Built from the bit, without a branch: random signs mispredict.
#[inline(always)]
fn sign(bits: u64) -> f64 {
    f64::from_bits(1.0f64.to_bits() | ((!bits & 1) << 63))
}

/// Words of Hessian signs (32 pairs each) kept on the stack between a product's two passes: $d_l \le 2048$.
const KEPT_WORDS: usize = 64;

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
    /// $c_H = \sigma_H/\sqrt{2 d_l}$, computed once (a division and a square root per product cost as much as a
    /// 10-dimensional product's noise).
    hess_scale: f64,
    /// $c_C = \sigma_C/\sqrt{d_l}$.
    cross_scale: f64,
}

impl Noisy {
    /// Wrap `inner`; checks the noise levels.
    pub fn new(inner: Arc<dyn Bilevel>, levels: NoiseLevels) -> Result<Self> {
        levels.check()?;
        let d_l = inner.dims().d_l as f64;
        Ok(Noisy {
            hess_scale: levels.hess_fl / (2.0 * d_l).sqrt(),
            cross_scale: levels.cross_fl / d_l.sqrt(),
            inner,
            levels,
        })
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

    /// The Hessian noise factors at sample `s`: calls `f(i, a_i, b_i)` for $i = 0..d_l$ with the signs $a_i, b_i$
    /// taken in that interleaved order from the bits of the (sample, Hessian) stream, and returns $c_H$; `None` when noise is off.
    fn hess_factors(&self, s: Sample, mut f: impl FnMut(usize, f64, f64)) -> Option<f64> {
        let w = Self::noise_word(s)?;
        let d = self.inner.dims().d_l;
        let scale = self.hess_scale;
        if scale == 0.0 {
            return None;
        }
        let mut rng = stream(w, Stream::Hess);
        // 64 signs per draw: bit 2i of the word is a_i's sign, bit 2i+1 is b_i's.
        let mut bits = 0u64;
        for i in 0..d {
            if i % 32 == 0 {
                bits = rng.next_u64();
            }
            let a = sign(bits >> (2 * (i % 32)));
            let b = sign(bits >> (2 * (i % 32) + 1));
            f(i, a, b);
        }
        Some(scale)
    }

    /// The cross noise factors at sample `s`: calls `fa(i, a'_i)` for $i = 0..d_u$, then `fb(j, b'_j)` for
    /// $j = 0..d_l$, in that order from the (sample, cross) stream, stopping after the first `limit` signs, and
    /// returns $c_C$; `None` when noise is off.
    fn cross_factors(
        &self,
        s: Sample,
        limit: usize,
        mut fa: impl FnMut(usize, f64),
        mut fb: impl FnMut(usize, f64),
    ) -> Option<f64> {
        let w = Self::noise_word(s)?;
        let Dims { d_u, d_l } = self.inner.dims();
        let scale = self.cross_scale;
        if scale == 0.0 {
            return None;
        }
        let mut rng = stream(w, Stream::Cross);
        // Signs in order: a'_0..a'_{d_u-1}, then b'_0..b'_{d_l-1}; bit t of the (t/64)-th word is the t-th sign.
        let mut bits = 0u64;
        for t in 0..(d_u + d_l).min(limit) {
            if t % 64 == 0 {
                bits = rng.next_u64();
            }
            let x = sign(bits >> (t % 64));
            if t < d_u { fa(t, x) } else { fb(t - d_u, x) }
        }
        Some(scale)
    }

    /// The Hessian noise matrix $E$ at sample `s` (dense, for checks; the products never form it).
    pub fn hess_noise(&self, s: Sample) -> Matrix {
        let d = self.inner.dims().d_l;
        let (mut a, mut b) = (Vector::zeros(d), Vector::zeros(d));
        match self.hess_factors(s, |i, ai, bi| {
            a[i] = ai;
            b[i] = bi;
        }) {
            Some(c) => (&a * b.transpose() + &b * a.transpose()) * c,
            None => Matrix::zeros(d, d),
        }
    }

    /// The cross-derivative noise matrix $G$ ($d_u\times d_l$) at sample `s` (dense, for checks).
    pub fn cross_noise(&self, s: Sample) -> Matrix {
        let Dims { d_u, d_l } = self.inner.dims();
        let (mut a, mut b) = (Vector::zeros(d_u), Vector::zeros(d_l));
        match self.cross_factors(s, usize::MAX, |i, x| a[i] = x, |j, x| b[j] = x) {
            Some(c) => &a * b.transpose() * c,
            None => Matrix::zeros(d_u, d_l),
        }
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
        // out += c (a (b·v) + b (a·v)): one pass for the dot products, a second to add. The signs (the bits of
        // `hess_factors`, 32 pairs per word) are kept for the second pass when they fit on the stack, regenerated
        // otherwise (then a stream set-up is small beside the O(d) passes).
        let Some(w) = Self::noise_word(s) else {
            return;
        };
        let d = self.inner.dims().d_l;
        let c = self.hess_scale;
        if c == 0.0 {
            return;
        }
        let mut kept = [0u64; KEPT_WORDS];
        let keep = d.div_ceil(32) <= KEPT_WORDS;
        let mut rng = stream(w, Stream::Hess);
        let (mut av, mut bv) = (0.0, 0.0);
        for (q, chunk) in v.as_slice().chunks(32).enumerate() {
            let bits = rng.next_u64();
            if keep {
                kept[q] = bits;
            }
            for (j, x) in chunk.iter().enumerate() {
                av += sign(bits >> (2 * j)) * x;
                bv += sign(bits >> (2 * j + 1)) * x;
            }
        }
        let mut rng = (!keep).then(|| stream(w, Stream::Hess));
        for (q, chunk) in out.as_mut_slice().chunks_mut(32).enumerate() {
            let bits = match rng.as_mut() {
                Some(r) => r.next_u64(),
                None => kept[q],
            };
            for (j, o) in chunk.iter_mut().enumerate() {
                *o += c * (sign(bits >> (2 * j)) * bv + sign(bits >> (2 * j + 1)) * av);
            }
        }
    }
    fn cross_fl(&self, s: Sample, theta: &Vector, phi: &Vector, w: &Vector, out: &mut Vector) {
        self.inner.cross_fl(s, theta, phi, w, out);
        // out += c a' (b'·w); the second pass stops after the d_u signs of a'.
        let d_u = self.inner.dims().d_u;
        let mut bw = 0.0;
        let Some(c) = self.cross_factors(s, usize::MAX, |_, _| {}, |j, b| bw += b * w[j]) else {
            return;
        };
        self.cross_factors(s, d_u, |i, a| out[i] += c * a * bw, |_, _| {});
    }
    fn cross_t_fl(&self, s: Sample, theta: &Vector, phi: &Vector, u: &Vector, out: &mut Vector) {
        self.inner.cross_t_fl(s, theta, phi, u, out);
        // out += c b' (a'·u); the first pass stops after the d_u signs of a'.
        let d_u = self.inner.dims().d_u;
        let mut au = 0.0;
        let Some(c) = self.cross_factors(s, d_u, |i, a| au += a * u[i], |_, _| {}) else {
            return;
        };
        self.cross_factors(s, usize::MAX, |_, _| {}, |j, b| out[j] += c * b * au);
    }
    fn hess_fl(&self, s: Sample, theta: &Vector, phi: &Vector) -> Matrix {
        // One noise matrix per sample: the same E that `hvp_fl` applies, generated once, added in place entry by
        // entry as h + (a bᵀ + b aᵀ)·c.
        let mut h = self.inner.hess_fl(s, theta, phi);
        let d = h.nrows();
        let (mut a, mut b) = (Vector::zeros(d), Vector::zeros(d));
        if let Some(c) = self.hess_factors(s, |i, ai, bi| {
            a[i] = ai;
            b[i] = bi;
        }) {
            for j in 0..d {
                for i in 0..d {
                    h[(i, j)] += (a[i] * b[j] + b[i] * a[j]) * c;
                }
            }
        }
        h
    }
    fn cross_matrix_fl(&self, s: Sample, theta: &Vector, phi: &Vector) -> Matrix {
        // The same G that `cross_fl` applies, added in place as g + (a' b'ᵀ)·c: the operations of
        // `inner + cross_noise(s)` in the same order, without its four temporaries (STABLE calls this every step).
        let mut g = self.inner.cross_matrix_fl(s, theta, phi);
        let Dims { d_u, d_l } = self.inner.dims();
        let (mut a, mut b) = ([0.0; 64], [0.0; 64]);
        if d_u <= 64 && d_l <= 64 {
            if let Some(c) = self.cross_factors(s, usize::MAX, |i, x| a[i] = x, |j, x| b[j] = x) {
                for j in 0..d_l {
                    for i in 0..d_u {
                        g[(i, j)] += a[i] * b[j] * c;
                    }
                }
            }
            return g;
        }
        g + self.cross_noise(s)
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
