//! A lazy ChaCha8 keystream, bit-identical to `rand_chacha::ChaCha8Rng::seed_from_u64(word)` after
//! `set_stream(stream)`, for the noise oracles' many short streams.
//!
//! Why: every noisy oracle call keys a fresh stream by (sample, kind). `ChaCha8Rng` computes four 64-byte blocks at
//! its first draw, although a 10-dimensional call needs one or two; at $d \le 100$ that set-up cost more than the
//! oracle itself (docs/performance.md). [`Keystream`] computes one block at a time, when it is needed, and consumes
//! words exactly as `rand_core`'s `BlockRng` does (consecutive 32-bit keystream words; a `u64` is the next two words,
//! low word first, across block boundaries), so every draw — `next_u32`, `next_u64`, `fill_bytes` and any
//! distribution built on them — equals `ChaCha8Rng`'s bit for bit. Changing the noise bits would invalidate the
//! golden tapes and every claim's sweep. Test: `noise_model::keystream_equals_chacha8rng_bit_for_bit`.
//!
//! A long stream (a gradient noise of $10^5$ normals) is better served by `rand_chacha`'s four-block SIMD refill:
//! after [`LAZY_BLOCKS`] blocks the rest of the stream is handed to a `ChaCha8Rng` positioned at the next word
//! (`set_word_pos`), so the keystream stays one and the same.
//!
//! Layout (rand_chacha 0.10): state words 0–3 the "expand 32-byte k" constants, 4–11 the key (the 32 bytes of
//! `rand_core`'s `seed_from_u64` expansion, PCG32 outputs little-endian), 12–13 the 64-bit block counter (low word
//! first), 14–15 the 64-bit stream id (low word first); 8 rounds; output = rounds(state) + state.

use rand::SeedableRng;
use rand::rand_core::{Rng, TryRng};
use rand_chacha::ChaCha8Rng;
use std::convert::Infallible;

/// Blocks computed one at a time before the stream is handed to `ChaCha8Rng` (a 10-dimensional normal draw fits).
pub const LAZY_BLOCKS: u64 = 2;

const CONSTANTS: [u32; 4] = [0x6170_7865, 0x3320_646e, 0x7962_2d32, 0x6b20_6574];

/// `rand_core`'s `seed_from_u64` key expansion: eight PCG32 outputs.
fn key_from_u64(mut state: u64) -> [u32; 8] {
    const MUL: u64 = 0x5851_F42D_4C95_7F2D;
    const INC: u64 = 0xA176_54E4_6FBE_17F3;
    let mut key = [0u32; 8];
    for k in &mut key {
        state = state.wrapping_mul(MUL).wrapping_add(INC);
        let xorshifted = (((state >> 18) ^ state) >> 27) as u32;
        *k = xorshifted.rotate_right((state >> 59) as u32);
    }
    key
}

/// One row of the 4 × 4 state; the four quarter-rounds of a round act lane-wise on rows (SIMD-friendly).
type Row = [u32; 4];

#[inline(always)]
fn add(a: Row, b: Row) -> Row {
    [
        a[0].wrapping_add(b[0]),
        a[1].wrapping_add(b[1]),
        a[2].wrapping_add(b[2]),
        a[3].wrapping_add(b[3]),
    ]
}

#[inline(always)]
fn xor_rotate(a: Row, b: Row, r: u32) -> Row {
    [
        (a[0] ^ b[0]).rotate_left(r),
        (a[1] ^ b[1]).rotate_left(r),
        (a[2] ^ b[2]).rotate_left(r),
        (a[3] ^ b[3]).rotate_left(r),
    ]
}

/// Four quarter-rounds at once, one per lane (column or, after [`diagonalize`], diagonal).
#[inline(always)]
fn quarters(x: &mut [Row; 4]) {
    let [mut a, mut b, mut c, mut d] = *x;
    a = add(a, b);
    d = xor_rotate(d, a, 16);
    c = add(c, d);
    b = xor_rotate(b, c, 12);
    a = add(a, b);
    d = xor_rotate(d, a, 8);
    c = add(c, d);
    b = xor_rotate(b, c, 7);
    *x = [a, b, c, d];
}

/// `r` rotated left by `n` lanes.
#[inline(always)]
fn lanes_left(r: Row, n: usize) -> Row {
    [r[n % 4], r[(n + 1) % 4], r[(n + 2) % 4], r[(n + 3) % 4]]
}

/// Rotate rows 1, 2, 3 left by `n`, 2n, 3n lanes: with n = 1 lane j holds the diagonal (j, j+5, j+10, j+15 mod 16);
/// n = 3 undoes it.
#[inline(always)]
fn diagonalize(x: &mut [Row; 4], n: usize) {
    for (r, row) in x.iter_mut().enumerate().skip(1) {
        *row = lanes_left(*row, r * n);
    }
}

/// The eight ChaCha rounds (four double rounds) on the state rows, portable version (x86-64 uses
/// [`rounds_sse2`]; the unit test `sse2_rounds_equal_the_portable_rounds` keeps the two equal).
#[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
fn rounds(x: [Row; 4]) -> [Row; 4] {
    rounds_portable(x)
}

#[cfg_attr(all(target_arch = "x86_64", target_feature = "sse2"), allow(dead_code))]
fn rounds_portable(mut x: [Row; 4]) -> [Row; 4] {
    for _ in 0..4 {
        quarters(&mut x);
        diagonalize(&mut x, 1);
        quarters(&mut x);
        diagonalize(&mut x, 3);
    }
    x
}

/// The eight ChaCha rounds with one SSE2 register per row (x86-64's baseline): the same arithmetic as the portable
/// version, four lanes at a time.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
fn rounds(x: [Row; 4]) -> [Row; 4] {
    // SAFETY: the only requirement of a `#[target_feature(enable = "sse2")]` function is that the CPU has SSE2,
    // which this build's configuration (the cfg above) already assumes of every x86-64 CPU it runs on.
    unsafe { rounds_sse2(x) }
}

#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[target_feature(enable = "sse2")]
fn rounds_sse2(x: [Row; 4]) -> [Row; 4] {
    use std::arch::x86_64::*;
    #[target_feature(enable = "sse2")]
    fn load(r: Row) -> __m128i {
        _mm_set_epi32(r[3] as i32, r[2] as i32, r[1] as i32, r[0] as i32)
    }
    #[target_feature(enable = "sse2")]
    fn store(v: __m128i) -> Row {
        [
            _mm_cvtsi128_si32(v) as u32,
            _mm_cvtsi128_si32(_mm_shuffle_epi32::<0b01_01_01_01>(v)) as u32,
            _mm_cvtsi128_si32(_mm_shuffle_epi32::<0b10_10_10_10>(v)) as u32,
            _mm_cvtsi128_si32(_mm_shuffle_epi32::<0b11_11_11_11>(v)) as u32,
        ]
    }
    #[target_feature(enable = "sse2")]
    fn rotl<const L: i32, const R: i32>(v: __m128i) -> __m128i {
        _mm_or_si128(_mm_slli_epi32::<L>(v), _mm_srli_epi32::<R>(v))
    }
    #[target_feature(enable = "sse2")]
    fn quarters(a: &mut __m128i, b: &mut __m128i, c: &mut __m128i, d: &mut __m128i) {
        *a = _mm_add_epi32(*a, *b);
        *d = rotl::<16, 16>(_mm_xor_si128(*d, *a));
        *c = _mm_add_epi32(*c, *d);
        *b = rotl::<12, 20>(_mm_xor_si128(*b, *c));
        *a = _mm_add_epi32(*a, *b);
        *d = rotl::<8, 24>(_mm_xor_si128(*d, *a));
        *c = _mm_add_epi32(*c, *d);
        *b = rotl::<7, 25>(_mm_xor_si128(*b, *c));
    }
    let (mut a, mut b, mut c, mut d) = (load(x[0]), load(x[1]), load(x[2]), load(x[3]));
    for _ in 0..4 {
        quarters(&mut a, &mut b, &mut c, &mut d);
        // Rows 1, 2, 3 lanes left by 1, 2, 3 (`diagonalize`), then back.
        b = _mm_shuffle_epi32::<0b00_11_10_01>(b);
        c = _mm_shuffle_epi32::<0b01_00_11_10>(c);
        d = _mm_shuffle_epi32::<0b10_01_00_11>(d);
        quarters(&mut a, &mut b, &mut c, &mut d);
        b = _mm_shuffle_epi32::<0b10_01_00_11>(b);
        c = _mm_shuffle_epi32::<0b01_00_11_10>(c);
        d = _mm_shuffle_epi32::<0b00_11_10_01>(d);
    }
    [store(a), store(b), store(c), store(d)]
}

/// A ChaCha8 keystream computed one 64-byte block at a time (see the module docs).
#[derive(Clone)]
pub struct Keystream {
    state: [u32; 16],
    block: [u32; 16],
    /// Next unread word of `block`; 16 when it is used up (and for ever once `wide` has taken over).
    index: usize,
    /// Blocks computed so far.
    blocks: u64,
    /// The rest of the stream, after [`LAZY_BLOCKS`] blocks.
    wide: Option<ChaCha8Rng>,
}

impl Keystream {
    /// The stream `rand_chacha::ChaCha8Rng::seed_from_u64(word)` followed by `set_stream(stream)` yields.
    pub fn new(word: u64, stream: u64) -> Self {
        let key = key_from_u64(word);
        let mut state = [0u32; 16];
        state[..4].copy_from_slice(&CONSTANTS);
        state[4..12].copy_from_slice(&key);
        state[14] = stream as u32;
        state[15] = (stream >> 32) as u32;
        Keystream {
            state,
            block: [0; 16],
            index: 16,
            blocks: 0,
            wide: None,
        }
    }

    /// Compute the block at the current counter and advance the counter.
    fn refill(&mut self) {
        let s = &self.state;
        let x = rounds(std::array::from_fn(|r| std::array::from_fn(|j| s[4 * r + j])));
        for (o, (xi, si)) in self.block.iter_mut().zip(x.as_flattened().iter().zip(s.iter())) {
            *o = xi.wrapping_add(*si);
        }
        let ctr = (u64::from(self.state[13]) << 32 | u64::from(self.state[12])).wrapping_add(1);
        self.state[12] = ctr as u32;
        self.state[13] = (ctr >> 32) as u32;
        self.index = 0;
        self.blocks += 1;
    }

    /// The generator of the words after the current block: the next lazy block, or `ChaCha8Rng` from there on.
    #[cold]
    fn past_block(&mut self) -> Option<&mut ChaCha8Rng> {
        if self.wide.is_none() {
            if self.blocks < LAZY_BLOCKS {
                self.refill();
                return None;
            }
            let mut seed = [0u8; 32];
            for (bytes, k) in seed.chunks_exact_mut(4).zip(&self.state[4..12]) {
                bytes.copy_from_slice(&k.to_le_bytes());
            }
            let mut rng = ChaCha8Rng::from_seed(seed);
            rng.set_stream(u64::from(self.state[15]) << 32 | u64::from(self.state[14]));
            rng.set_word_pos(u128::from(self.blocks) * 16);
            self.wide = Some(rng);
        }
        self.wide.as_mut()
    }

    /// The next 32-bit keystream word.
    #[inline]
    pub fn word(&mut self) -> u32 {
        if self.index >= 16
            && let Some(wide) = self.past_block()
        {
            return wide.next_u32();
        }
        let w = self.block[self.index];
        self.index += 1;
        w
    }

    /// The next two words as a `u64`, low word first (`BlockRng::next_u64_from_u32`).
    #[inline]
    pub fn word64(&mut self) -> u64 {
        if self.index < 15 {
            let (lo, hi) = (self.block[self.index], self.block[self.index + 1]);
            self.index += 2;
            return u64::from(hi) << 32 | u64::from(lo);
        }
        if let Some(wide) = self.wide.as_mut() {
            return wide.next_u64();
        }
        let lo = self.word();
        let hi = self.word();
        u64::from(hi) << 32 | u64::from(lo)
    }
}

impl TryRng for Keystream {
    type Error = Infallible;

    #[inline]
    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        Ok(self.word())
    }

    #[inline]
    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        Ok(self.word64())
    }

    /// Whole words, little-endian; a partly used last word is consumed (as `BlockRng::fill_bytes`).
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        for chunk in dst.chunks_mut(4) {
            let w = self.word().to_le_bytes();
            chunk.copy_from_slice(&w[..chunk.len()]);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    #[test]
    fn sse2_rounds_equal_the_portable_rounds() {
        let mut k = Keystream::new(7, 3);
        for _ in 0..1000 {
            let x: [Row; 4] = std::array::from_fn(|_| std::array::from_fn(|_| k.word()));
            assert_eq!(rounds(x), rounds_portable(x));
        }
    }
}
