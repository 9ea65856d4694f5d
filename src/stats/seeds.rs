//! Seed derivation: one independent, reproducible ChaCha8 stream per (master seed, claim, purpose, index).
//!
//! # Why
//! A rate claim is an average over $R$ independent replicates. The replicates must be independent (so the
//! bootstrap over replicates is valid), reproducible (a failing claim can be rerun bit for bit), and must not
//! depend on which thread ran them (so results are identical for any thread count). Deriving the stream of
//! replicate $i$ from $(\text{master}, \text{claim}, i)$ alone gives all three: no stream is shared or advanced
//! by another replicate, and two claims never share streams.
//!
//! # The scheme (reproducible from any language)
//! 1. $h = \mathrm{FNV\text{-}1a_{64}}(\text{claim id as UTF-8 bytes})$: offset basis `0xcbf29ce484222325`, prime
//!    `0x100000001b3`; for each byte $b$: $h \leftarrow (h \oplus b)\cdot p \bmod 2^{64}$. (Not Rust's
//!    `DefaultHasher`, whose output may change between Rust versions.)
//! 2. The 32-byte ChaCha key is the little-endian encoding of four `u64` words
//!    `[master, h, purpose, SCHEME]`, where `purpose` is [`Purpose`] as a number (0 = replicate runs, 1 =
//!    bootstrap) and `SCHEME` = [`SCHEME`] (the ASCII bytes of `"bilevel1"` read little-endian), a version tag
//!    that lets a future scheme change every stream at once.
//! 3. The ChaCha stream id (the 64-bit nonce, words 14–15 of the state) is the index (replicate $i$ or bootstrap
//!    resample $b$); the 64-bit block counter (words 12–13) starts at 0.
//! 4. The generator is ChaCha with 8 rounds (4 double rounds), Bernstein's original 64-bit counter / 64-bit nonce
//!    layout, as in `rand_chacha::ChaCha8Rng`. A `u32` draw is the next output word; a `u64` draw is two
//!    consecutive words, the first one being the low half.
//!
//! ChaCha is a pseudorandom function of its key, so structured keys (small integers, zeros) are fine: no
//! pre-mixing is needed. A collision of two claim ids under FNV-1a 64 has probability about $2^{-64}$ per pair.
//!
//! Bootstrap index draws use [`uniform_index`] (Lemire's multiply-and-reject), written out here rather than
//! `rand`'s `random_range`, so that another language can replay the resamples exactly.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The version tag in key word 3: the ASCII bytes `"bilevel1"` read as a little-endian `u64`.
pub const SCHEME: u64 = u64::from_le_bytes(*b"bilevel1");

/// FNV-1a 64 offset basis.
pub const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
/// FNV-1a 64 prime.
pub const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// FNV-1a 64-bit hash of `bytes`: $h_0$ = offset basis, $h \leftarrow (h \oplus b)\cdot p \bmod 2^{64}$.
///
/// # Example
/// ```
/// use bilevel::stats::seeds::fnv1a64;
/// // Reference values of the FNV specification (draft-eastlake-fnv): "" and "a".
/// assert_eq!(fnv1a64(b""), 0xcbf29ce484222325);
/// assert_eq!(fnv1a64(b"a"), 0xaf63dc4c8601ec8c);
/// ```
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(FNV_OFFSET, |h, &b| (h ^ u64::from(b)).wrapping_mul(FNV_PRIME))
}

/// What a stream is used for; its number is key word 2, so streams of different purposes never coincide.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u64)]
pub enum Purpose {
    /// The random stream of one Monte Carlo replicate (stream id = replicate index).
    Replicate = 0,
    /// The resampling stream of one bootstrap resample (stream id = resample index).
    Bootstrap = 1,
}

/// The (master seed, claim id) pair from which every stream of a claim is derived.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SeedKey {
    /// The master seed of the whole run (the sweep varies it to show a result is not a lucky seed).
    pub master: u64,
    /// FNV-1a 64 of the claim id.
    pub claim_hash: u64,
}

impl SeedKey {
    /// Key for claim `claim_id` under `master`.
    pub fn new(master: u64, claim_id: &str) -> Self {
        Self {
            master,
            claim_hash: fnv1a64(claim_id.as_bytes()),
        }
    }

    /// The 32-byte ChaCha key: little-endian `[master, claim_hash, purpose, SCHEME]`.
    pub fn key(&self, purpose: Purpose) -> [u8; 32] {
        let mut key = [0u8; 32];
        for (chunk, word) in key
            .chunks_exact_mut(8)
            .zip([self.master, self.claim_hash, purpose as u64, SCHEME])
        {
            chunk.copy_from_slice(&word.to_le_bytes());
        }
        key
    }

    /// The stream `index` of `purpose`: ChaCha8 with [`SeedKey::key`], stream id `index`, counter 0.
    pub fn stream(&self, purpose: Purpose, index: u64) -> ChaCha8Rng {
        let mut rng = ChaCha8Rng::from_seed(self.key(purpose));
        rng.set_stream(index);
        rng
    }

    /// The random stream of replicate `r`.
    pub fn replicate(&self, r: usize) -> ChaCha8Rng {
        self.stream(Purpose::Replicate, r as u64)
    }

    /// The resampling stream of bootstrap resample `b`.
    pub fn bootstrap(&self, b: usize) -> ChaCha8Rng {
        self.stream(Purpose::Bootstrap, b as u64)
    }
}

/// The random stream of replicate `r` of claim `claim_id` under `master` (see the module docs for the scheme).
pub fn replicate_rng(master: u64, claim_id: &str, r: usize) -> ChaCha8Rng {
    SeedKey::new(master, claim_id).replicate(r)
}

/// A uniform index in $\\{0,\dots,n-1\\}$, $n \ge 1$, by Lemire's multiply-and-reject method.
///
/// Draw $x$ = next `u64`, form the 128-bit product $m = x\cdot n$; accept when the low 64 bits of $m$ are
/// $\ge (2^{64} \bmod n)$ and return the high 64 bits, else draw again. Exactly uniform; one draw almost always.
///
/// # Panics
/// When `n = 0` (there is no index to draw; a remainder by zero).
pub fn uniform_index<R: Rng + ?Sized>(rng: &mut R, n: usize) -> usize {
    debug_assert!(n >= 1, "uniform_index needs n >= 1");
    let n = n as u64;
    let threshold = n.wrapping_neg() % n;
    loop {
        let m = u128::from(rng.next_u64()) * u128::from(n);
        if (m as u64) >= threshold {
            return (m >> 64) as usize;
        }
    }
}
