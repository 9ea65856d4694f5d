//! Philox4x64-10, the counter-based generator of the noise oracles and the data families' minibatches.
//!
//! Why a counter-based generator: every noisy oracle call keys a fresh stream by (sample, kind), and a 10-dimensional
//! call needs one or two 64-bit words of it. A keyed stream of ChaCha8 costs a 64-byte block plus a key expansion
//! before its first word, more than a $10\times10$ product; one Philox block (ten rounds of two $64\times64\to128$-bit
//! multiplications) costs less, needs no set-up, and the words at any position are computed directly
//! (docs/performance.md, session 4, has the measurements).
//!
//! Definition (Salmon, Moraes, Dror & Shaw, "Parallel random numbers: as easy as 1, 2, 3", SC 2011; the Random123
//! library; `numpy.random.Philox`): the block at counter $c = (c_0, c_1, c_2, c_3)$ under key $k = (k_0, k_1)$ is ten
//! rounds of
//! $$(x_0, x_1, x_2, x_3) \mapsto (\mathrm{hi}(M_1x_2)\oplus x_1\oplus k_0,\ \mathrm{lo}(M_1x_2),
//! \ \mathrm{hi}(M_0x_0)\oplus x_3\oplus k_1,\ \mathrm{lo}(M_0x_0))$$
//! on $x = c$, with the key bumped by the Weyl constants $(W_0, W_1)$ before each round after the first
//! (wrapping 64-bit arithmetic, hi/lo the halves of the 128-bit product). [`PhiloxStream`] with key $(k_0, k_1)$ yields
//! the four words of the block at counter $(0,0,0,0)$, then $(1,0,0,0)$, and so on, word 0 first. That is numpy's
//! `Philox(key=k0 + 2**64 * k1, counter=2**256 - 1).random_raw()` (numpy increments the counter before each block).
//! Tests: Random123's known-answer inputs and a stream, against numpy's words (`philox::tests`; values computed by
//! numpy, outside this crate).

use rand::rand_core::TryRng;
use std::convert::Infallible;

/// Philox4x64 multipliers $M_0$, $M_1$.
const M: [u64; 2] = [0xD2E7_470E_E14C_6C93, 0xCA5A_8263_9512_1157];
/// Philox4x64 key increments (Weyl constants) $W_0$, $W_1$.
const W: [u64; 2] = [0x9E37_79B9_7F4A_7C15, 0xBB67_AE85_84CA_A73B];

#[inline(always)]
fn mulhilo(a: u64, b: u64) -> (u64, u64) {
    let p = u128::from(a) * u128::from(b);
    ((p >> 64) as u64, p as u64)
}

/// The Philox4x64-10 block at `counter` under `key`.
#[inline(always)]
pub fn block(counter: [u64; 4], key: [u64; 2]) -> [u64; 4] {
    let mut x = counter;
    let mut k = key;
    for round in 0..10 {
        if round > 0 {
            k = [k[0].wrapping_add(W[0]), k[1].wrapping_add(W[1])];
        }
        let (hi0, lo0) = mulhilo(M[0], x[0]);
        let (hi1, lo1) = mulhilo(M[1], x[2]);
        x = [hi1 ^ x[1] ^ k[0], lo1, hi0 ^ x[3] ^ k[1], lo0];
    }
    x
}

/// The blocks at counters $(t, 0, 0, 0), \dots, (t+3, 0, 0, 0)$ under `key`, words in stream order: four independent
/// blocks computed together, so that their multiplications overlap (one block alone waits on each round's product).
#[inline]
pub fn blocks4(t: u64, key: [u64; 2]) -> [u64; 16] {
    let mut x: [[u64; 4]; 4] = std::array::from_fn(|j| [t.wrapping_add(j as u64), 0, 0, 0]);
    let mut k = key;
    for round in 0..10 {
        if round > 0 {
            k = [k[0].wrapping_add(W[0]), k[1].wrapping_add(W[1])];
        }
        for xj in &mut x {
            let (hi0, lo0) = mulhilo(M[0], xj[0]);
            let (hi1, lo1) = mulhilo(M[1], xj[2]);
            *xj = [hi1 ^ xj[1] ^ k[0], lo1, hi0 ^ xj[3] ^ k[1], lo0];
        }
    }
    let mut out = [0; 16];
    for (o, xj) in out.chunks_exact_mut(4).zip(&x) {
        o.copy_from_slice(xj);
    }
    out
}

/// Random access to the words of one key's stream (word $q$ is word $q \bmod 4$ of the block at counter
/// $(\lfloor q/4\rfloor, 0, 0, 0)$), keeping the last words computed: reading positions in increasing order computes
/// each block once (the first block alone, then the next two, then four at a time: `blocks4`).
#[derive(Clone)]
pub struct PhiloxWords {
    key: [u64; 2],
    /// Words `lo..lo + len` of the stream are in `buf`.
    lo: usize,
    len: usize,
    buf: [u64; 16],
}

impl PhiloxWords {
    /// The words of key `(k0, k1)`.
    #[inline]
    pub fn new(k0: u64, k1: u64) -> Self {
        PhiloxWords {
            key: [k0, k1],
            lo: 0,
            len: 0,
            buf: [0; 16],
        }
    }

    /// Word `q` of the stream.
    #[inline]
    pub fn get(&mut self, q: usize) -> u64 {
        if q.wrapping_sub(self.lo) >= self.len {
            self.fetch(q);
        }
        self.buf[q - self.lo]
    }

    fn fetch(&mut self, q: usize) {
        if q < 4 {
            self.buf[..4].copy_from_slice(&block([0, 0, 0, 0], self.key));
            (self.lo, self.len) = (0, 4);
        } else if q < 12 {
            // Two blocks next: a short stream (ten normals of a d = 10 gradient noise) needs three blocks, not five.
            self.buf[..4].copy_from_slice(&block([1, 0, 0, 0], self.key));
            self.buf[4..8].copy_from_slice(&block([2, 0, 0, 0], self.key));
            (self.lo, self.len) = (4, 8);
        } else {
            let t = q / 4;
            self.buf = blocks4(t as u64, self.key);
            (self.lo, self.len) = (4 * t, 16);
        }
    }
}

/// The stream of 64-bit words of one key: blocks at counters $(0,0,0,0), (1,0,0,0), \dots$, four words each,
/// read in order from a [`PhiloxWords`] (the first block alone, the next two, then four at a time).
///
/// As a `rand` generator: `next_u64` is the next word; `next_u32` is the low half of the next word (the high half is
/// dropped); `fill_bytes` takes whole words, little-endian, and drops the unused bytes of the last.
#[derive(Clone)]
pub struct PhiloxStream {
    words: PhiloxWords,
    /// Position of the next word.
    pos: usize,
}

impl PhiloxStream {
    /// The stream of key `(k0, k1)` from its first word.
    #[inline]
    pub fn new(k0: u64, k1: u64) -> Self {
        PhiloxStream {
            words: PhiloxWords::new(k0, k1),
            pos: 0,
        }
    }

    /// The next word.
    #[inline]
    pub fn word(&mut self) -> u64 {
        let w = self.words.get(self.pos);
        self.pos += 1;
        w
    }
}

impl TryRng for PhiloxStream {
    type Error = Infallible;

    #[inline]
    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        Ok(self.word() as u32)
    }

    #[inline]
    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        Ok(self.word())
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        for chunk in dst.chunks_mut(8) {
            let w = self.word().to_le_bytes();
            chunk.copy_from_slice(&w[..chunk.len()]);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Random123's known-answer vectors for philox4x64-10 (zero counter and key; all ones; the digits of pi), as
    /// `numpy.random.Philox` 2.4 computes them (`Philox(key=k, counter=c - 1).random_raw(4)`).
    #[test]
    fn known_answers_of_random123_and_numpy() {
        let cases: [([u64; 4], [u64; 2], [u64; 4]); 3] = [
            (
                [0; 4],
                [0; 2],
                [
                    0x1655_4d9e_ca36_314c,
                    0xdb20_fe9d_672d_0fdc,
                    0xd7e7_72ce_e186_176b,
                    0x7e68_b68a_ec7b_a23b,
                ],
            ),
            (
                [u64::MAX; 4],
                [u64::MAX; 2],
                [
                    0x87b0_92c3_013f_e90b,
                    0x438c_3c67_be8d_0224,
                    0x9cc7_d7c6_9cd7_77b6,
                    0xa09c_aebf_594f_0ba0,
                ],
            ),
            (
                [
                    0x243f_6a88_85a3_08d3,
                    0x1319_8a2e_0370_7344,
                    0xa409_3822_299f_31d0,
                    0x082e_fa98_ec4e_6c89,
                ],
                [0x4528_21e6_38d0_1377, 0xbe54_66cf_34e9_0c6c],
                [
                    0xa528_f454_03e6_1d95,
                    0x38c7_2dbd_566e_9788,
                    0xa5a1_610e_72fd_18b5,
                    0x57bd_43b5_e52b_7fe6,
                ],
            ),
        ];
        for (ctr, key, want) in cases {
            assert_eq!(block(ctr, key), want, "counter {ctr:x?} key {key:x?}");
        }
    }

    /// Four blocks together are the four blocks one at a time, including across the counter's wrap.
    #[test]
    fn blocks4_equals_four_blocks() {
        for (t, key) in [(0, [1, 2]), (5, [u64::MAX, 7]), (u64::MAX - 1, [3, u64::MAX])] {
            let four = blocks4(t, key);
            for j in 0..4u64 {
                let one = block([t.wrapping_add(j), 0, 0, 0], key);
                assert_eq!(four[4 * j as usize..4 * j as usize + 4], one, "t {t} block {j}");
            }
        }
    }

    /// The stream of key (k0, k1) is numpy's `Philox(key=k0 + 2**64 * k1, counter=2**256 - 1).random_raw()`, across a
    /// block boundary.
    #[test]
    fn stream_equals_numpy_random_raw() {
        let mut s = PhiloxStream::new(0x0123_4567_89ab_cdef, 6);
        // numpy.random.Philox(key=0x0123456789abcdef + (6 << 64), counter=2**256 - 1).random_raw(24): the first
        // block, a refill of four blocks, and the start of the next refill.
        let want: [u64; 24] = [
            0x81be_0c46_c92a_ffda,
            0x8bab_3767_4fdb_be13,
            0xe9b3_822a_4b27_aa05,
            0xae85_af33_90c1_d4ad,
            0xb8d2_e061_9816_9c68,
            0xcecf_3576_cdef_c566,
            0xee49_7bcf_bcbd_ab8e,
            0x252f_5b66_2643_393b,
            0xe061_9b89_d58c_1394,
            0x0fb6_6271_dd23_f4b7,
            0x6dbf_c3dc_4ff0_e6fd,
            0x3449_8788_471c_477a,
            0x412f_6fe4_bac6_3179,
            0xcec0_d170_77fd_61be,
            0x3f44_fa98_3629_6a2f,
            0xb397_27dc_8884_5c8a,
            0x65b5_c1e2_2d10_2d40,
            0xfa21_94ab_98f1_b175,
            0x1186_0ab9_99ab_b84a,
            0xb388_a95c_4dc9_7018,
            0x99a2_0499_ae04_df4f,
            0x6caf_25f1_d077_f52d,
            0xb0e7_37e7_d822_aa5d,
            0xa7b6_d642_cdbd_0f7c,
        ];
        let mut words = PhiloxWords::new(0x0123_4567_89ab_cdef, 6);
        for (i, w) in want.into_iter().enumerate() {
            assert_eq!(s.word(), w, "word {i}");
        }
        for i in [5, 0, 3, 23, 4, 1, 2, 17] {
            assert_eq!(words.get(i), want[i], "random access to word {i}");
        }
    }
}
