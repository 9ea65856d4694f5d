//! Additive noise: a stochastic oracle around any family.
//!
//! At a drawn sample $\xi$, each oracle returns the exact value plus a zero-mean random perturbation that depends
//! only on $\xi$ and on the oracle kind, never on the point. So repeated calls at one sample see one realisation
//! (as a minibatch does), differences at one sample are noise-free (what SUSTAIN's recursive momentum exploits), and
//! independent samples have independent noise. Noise of each kind comes from its own Philox4x64-10 stream keyed by
//! (sample word, kind) ([`PhiloxStream`]), so the order in which kinds are requested does not change any value.
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
//!
//! Where the randomness comes from, at a sample with word $w$ ([`Sample::Draw`]`(w)`): oracle kind $k$ (1–8, in the
//! order `FuValue, FlValue, GradThetaFu, GradPhiFu, GradPhiFl, Hess, GradThetaFl, Cross`) reads the Philox4x64-10
//! stream of key $(w, k)$ (`problem::philox`), 64-bit words $u_0, u_1, \dots$. A sign is $+1$ for a set bit.
//! - Hessian ($k = 6$): $a_i$ is bit $i \bmod 64$ of $u_{2\lfloor i/64\rfloor}$, $b_i$ the same bit of
//!   $u_{2\lfloor i/64\rfloor+1}$ (one Philox block, four words, covers $d_l \le 128$);
//! - cross ($k = 8$): $a'\_i$ is bit $i \bmod 64$ of $u_{\lfloor i/64\rfloor}$, $b'\_j$ bit $j \bmod 64$ of
//!   $u_{n_u + \lfloor j/64\rfloor}$ with $n_u = \lceil d_u/64\rceil$;
//! - normals: `rand_distr`'s `StandardNormal` (a ziggurat) on the words in order.
//!
//! Another language need not reproduce this: the golden files carry the realised noise (docs/golden-format.md).

use super::philox::{PhiloxStream, PhiloxWords, block};
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

/// Stream identifiers, the second word of the Philox key: one independent stream per oracle kind within a sample.
/// (The data families' minibatches use 16 and 17, `families::data`.)
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

/// The noise generator of one (sample, kind) pair: Philox4x64-10 with key (sample word, kind).
fn stream(word: u64, kind: Stream) -> PhiloxStream {
    PhiloxStream::new(word, kind as u64)
}

fn normal(rng: &mut PhiloxStream) -> f64 {
    rng.sample(StandardNormal)
}

/// ±1 from the lowest bit of `bits` (1 → +1). Built from the bit, without a branch: random signs mispredict.
#[inline(always)]
fn sign(bits: u64) -> f64 {
    f64::from_bits(1.0f64.to_bits() | ((!bits & 1) << 63))
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

/// `SIGNS[n][l]` is $+1$ when bit $l$ of $n$ is set, else $-1$: four signs per table lookup.
const SIGNS: [[f64; 4]; 16] = {
    let mut t = [[-1.0; 4]; 16];
    let mut n = 0;
    while n < 16 {
        let mut l = 0;
        while l < 4 {
            if (n >> l) & 1 == 1 {
                t[n][l] = 1.0;
            }
            l += 1;
        }
        n += 1;
    }
    t
};

/// `acc[l] += Σ s_i x_i` over the entries $i \equiv l \pmod 4$ of `x` (at most 64), $s_i = \pm1$ from bit $i$ of
/// `bits`. Four partial sums: one sequential sum runs at one addition latency per entry.
#[inline(always)]
fn signed_dot(bits: u64, x: &[f64], acc: &mut [f64; 4]) {
    let mut quads = x.chunks_exact(4);
    let mut b = bits;
    for q in &mut quads {
        let s = &SIGNS[(b & 15) as usize];
        for l in 0..4 {
            acc[l] += s[l] * q[l];
        }
        b >>= 4;
    }
    let s = &SIGNS[(b & 15) as usize];
    for (l, x) in quads.remainder().iter().enumerate() {
        acc[l] += s[l] * x;
    }
}

/// [`signed_dot`] with two sign words over one `x`, into `acc_a` and `acc_b`: the same operations per accumulator (so
/// the same bits), in one pass whose eight independent sums do not wait on each other's additions.
#[inline(always)]
fn signed_dot2(a_bits: u64, b_bits: u64, x: &[f64], acc_a: &mut [f64; 4], acc_b: &mut [f64; 4]) {
    let mut quads = x.chunks_exact(4);
    let (mut a, mut b) = (a_bits, b_bits);
    for q in &mut quads {
        let (sa, sb) = (&SIGNS[(a & 15) as usize], &SIGNS[(b & 15) as usize]);
        for l in 0..4 {
            acc_a[l] += sa[l] * q[l];
            acc_b[l] += sb[l] * q[l];
        }
        a >>= 4;
        b >>= 4;
    }
    let (sa, sb) = (&SIGNS[(a & 15) as usize], &SIGNS[(b & 15) as usize]);
    for (l, x) in quads.remainder().iter().enumerate() {
        acc_a[l] += sa[l] * x;
        acc_b[l] += sb[l] * x;
    }
}

/// The four partial sums of [`signed_dot`], added as $(s_0+s_1)+(s_2+s_3)$.
#[inline(always)]
fn sum4(acc: [f64; 4]) -> f64 {
    (acc[0] + acc[1]) + (acc[2] + acc[3])
}

/// `out[i] += s_i y`, $s_i = \pm1$ from bit $i$ of `bits` (at most 64 entries).
#[inline(always)]
fn add_signed(bits: u64, y: f64, out: &mut [f64]) {
    for (i, o) in out.iter_mut().enumerate() {
        *o += sign(bits >> i) * y;
    }
}

/// `out[i] += a_i x + b_i y`, $a_i$, $b_i = \pm1$ from bit $i$ of `a_bits`, `b_bits` (at most 64 entries).
#[inline(always)]
fn add_signed2(a_bits: u64, b_bits: u64, x: f64, y: f64, out: &mut [f64]) {
    let mut quads = out.chunks_exact_mut(4);
    let (mut a, mut b) = (a_bits, b_bits);
    for q in &mut quads {
        let (sa, sb) = (&SIGNS[(a & 15) as usize], &SIGNS[(b & 15) as usize]);
        for l in 0..4 {
            q[l] += sa[l] * x + sb[l] * y;
        }
        a >>= 4;
        b >>= 4;
    }
    let (sa, sb) = (&SIGNS[(a & 15) as usize], &SIGNS[(b & 15) as usize]);
    for (l, o) in quads.into_remainder().iter_mut().enumerate() {
        *o += sa[l] * x + sb[l] * y;
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

    /// The word that keys this wrapper's noise (with the oracle kind): the sample's word itself. Philox is a
    /// pseudorandom function of its key, so the noise is independent of whatever else the inner family derives from
    /// the word (a data index, the minibatch stream of key (word, 16 or 17)).
    fn noise_word(s: Sample) -> Option<u64> {
        match s {
            Sample::Exact => None,
            Sample::Draw(w) => Some(w),
        }
    }

    /// The Hessian noise factors at sample `s`: calls `f(i, a_i, b_i)` for $i = 0..d_l$ with the signs of the
    /// module docs' layout, and returns $c_H$; `None` when noise is off.
    fn hess_factors(&self, s: Sample, mut f: impl FnMut(usize, f64, f64)) -> Option<f64> {
        let w = Self::noise_word(s)?;
        let d = self.inner.dims().d_l;
        let scale = self.hess_scale;
        if scale == 0.0 {
            return None;
        }
        let mut words = PhiloxWords::new(w, Stream::Hess as u64);
        for i in 0..d {
            let (g, r) = (i / 64, i % 64);
            f(i, sign(words.get(2 * g) >> r), sign(words.get(2 * g + 1) >> r));
        }
        Some(scale)
    }

    /// The cross noise factors at sample `s`: calls `fa(i, a'_i)` for $i = 0..d_u$ and `fb(j, b'_j)` for
    /// $j = 0..d_l$ with the signs of the module docs' layout, and returns $c_C$; `None` when noise is off.
    fn cross_factors(&self, s: Sample, mut fa: impl FnMut(usize, f64), mut fb: impl FnMut(usize, f64)) -> Option<f64> {
        let w = Self::noise_word(s)?;
        let Dims { d_u, d_l } = self.inner.dims();
        let scale = self.cross_scale;
        if scale == 0.0 {
            return None;
        }
        let mut words = PhiloxWords::new(w, Stream::Cross as u64);
        let n_u = d_u.div_ceil(64);
        for i in 0..d_u {
            fa(i, sign(words.get(i / 64) >> (i % 64)));
        }
        for j in 0..d_l {
            fb(j, sign(words.get(n_u + j / 64) >> (j % 64)));
        }
        Some(scale)
    }

    /// `out += c_C s_out (s_in · x)` for the cross noise's sign vectors starting at words `from` (the one dotted with
    /// `x`) and `to` (the one added) of the (sample, cross) stream: $G w$ with `(from, to) = (n_u, 0)`, $G^\top u$
    /// with `(0, n_u)`; nothing when noise is off.
    fn add_cross_noise(&self, s: Sample, from: usize, to: usize, x: &Vector, out: &mut Vector) {
        let (Some(word), c) = (Self::noise_word(s), self.cross_scale) else {
            return;
        };
        if c == 0.0 {
            return;
        }
        let mut acc = [0.0; 4];
        if x.len() <= 64 && out.len() <= 64 && from.max(to) < 4 {
            // One sign word each, in the first block: no word buffer (the same operations as below).
            let first = block([0; 4], [word, Stream::Cross as u64]);
            signed_dot(first[from], x.as_slice(), &mut acc);
            add_signed(first[to], c * sum4(acc), out.as_mut_slice());
            return;
        }
        let mut words = PhiloxWords::new(word, Stream::Cross as u64);
        for (g, part) in x.as_slice().chunks(64).enumerate() {
            signed_dot(words.get(from + g), part, &mut acc);
        }
        let y = c * sum4(acc);
        for (g, part) in out.as_mut_slice().chunks_mut(64).enumerate() {
            add_signed(words.get(to + g), y, part);
        }
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
        match self.cross_factors(s, |i, x| a[i] = x, |j, x| b[j] = x) {
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
        // out = inner + c (a (b·v) + b (a·v)): one pass for the dot products, a second to add, 64 entries per pair
        // of sign words (a Philox block holds the words of 128 entries). The first block is computed before the
        // inner product, which does not depend on it, so that the two overlap.
        let (Some(w), c) = (Self::noise_word(s), self.hess_scale) else {
            return self.inner.hvp_fl(s, theta, phi, v, out);
        };
        if c == 0.0 {
            return self.inner.hvp_fl(s, theta, phi, v, out);
        }
        if v.len() <= 64 {
            // One sign word each for a and b: the first block alone, without a word buffer (what TTSA and stocBiO
            // spend at d_l = 10 besides the product itself). The same operations as the general path below.
            let [a_bits, b_bits, _, _] = block([0; 4], [w, Stream::Hess as u64]);
            self.inner.hvp_fl(s, theta, phi, v, out);
            let (mut a, mut b) = ([0.0; 4], [0.0; 4]);
            signed_dot2(a_bits, b_bits, v.as_slice(), &mut a, &mut b);
            add_signed2(a_bits, b_bits, c * sum4(b), c * sum4(a), out.as_mut_slice());
            return;
        }
        let mut words = PhiloxWords::new(w, Stream::Hess as u64);
        words.get(0);
        self.inner.hvp_fl(s, theta, phi, v, out);
        let (mut a, mut b) = ([0.0; 4], [0.0; 4]);
        for (g, part) in v.as_slice().chunks(64).enumerate() {
            signed_dot2(words.get(2 * g), words.get(2 * g + 1), part, &mut a, &mut b);
        }
        let (x, y) = (c * sum4(b), c * sum4(a));
        for (g, part) in out.as_mut_slice().chunks_mut(64).enumerate() {
            add_signed2(words.get(2 * g), words.get(2 * g + 1), x, y, part);
        }
    }
    fn cross_fl(&self, s: Sample, theta: &Vector, phi: &Vector, w: &Vector, out: &mut Vector) {
        self.inner.cross_fl(s, theta, phi, w, out);
        // out += c a' (b'·w): b' starts at word n_u, a' at word 0.
        let n_u = self.inner.dims().d_u.div_ceil(64);
        self.add_cross_noise(s, n_u, 0, w, out);
    }
    fn cross_t_fl(&self, s: Sample, theta: &Vector, phi: &Vector, u: &Vector, out: &mut Vector) {
        self.inner.cross_t_fl(s, theta, phi, u, out);
        // out += c b' (a'·u).
        let n_u = self.inner.dims().d_u.div_ceil(64);
        self.add_cross_noise(s, 0, n_u, u, out);
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
            if let Some(c) = self.cross_factors(s, |i, x| a[i] = x, |j, x| b[j] = x) {
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
