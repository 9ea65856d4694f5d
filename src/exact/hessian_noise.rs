//! Second moments of the implicit-gradient operators under the rank-2 Hessian noise of
//! [`crate::problem::Noisy`], for the two ways the crate's estimators use Hessian samples
//! (theory/exact-moments.md §2, "Hessian noise"):
//!
//! - **fresh sample per factor** ([`fresh_partial_sums`]): $K = s\sum_{q<N}\prod_{j\le q}(R - sE_j)$ with independent
//!   $E_j$ (stocBiO's estimator). $\mathbb{E}K = s\sum_q R^q$, and $\mathbb{E}[KUK^\top]$ follows from the joint second
//!   moments of the running product $t_q$ and the partial sum $\sigma_q$, which close under
//!   $\mathbb{E}[E W E] = \tfrac{\sigma_H^2}{d_l}(W^\top + \operatorname{tr}W\\,I)$;
//! - **one sample for every factor** ([`SharedSample`]): $K = s\sum_{q<N}(R - sE)^q$ with one $E$ (ITD-BiO's reverse
//!   pass at the unroll's sample). $E$ multiplies up to $2(N-1)$ times inside $K\otimes K$, so Rademacher moments
//!   of every order up to $2(N-1)$ enter, and $\mathbb{E}K \ne s\sum_qR^q$ once $N\ge3$ ($\mathbb{E}E^2 =
//!   \sigma_H^2(1+1/d_l)I$). The law of $E = c_H(ab^\top + ba^\top)$ is finite: $\mathbb{E}K$ and $\mathbb{E}[K\otimes K]$
//!   are computed exactly by enumerating the $2^{2d_l-1}$ sign pairs modulo $(a,b)\sim(-a,-b)$, which is feasible
//!   for $d_l\le$ [`MAX_ENUMERATED_DL`].
//!
//! Here $R = I - sH$, $s$ the step ($\eta$ of the Neumann series, $\beta$ of ITD).

use crate::error::{BilevelError, Result};
use crate::linalg::{Matrix, Vector};

/// Largest $d_l$ for which [`SharedSample`] enumerates the sample's law: $2^{2d_l-1}$ sign pairs, each costing
/// $(N-1)d_l^3 + d_l^4$ flops ($d_l = 8$: 32768 pairs, 0.26 s measured at $N = 3$); beyond it the recursion is refused (typed
/// `Unsupported`), not approximated.
pub const MAX_ENUMERATED_DL: usize = 8;

/// $\mathbb{E}K$ and $\mathbb{E}[K\otimes K]$ for $K = s\sum_{q<N}(I - s(H+E))^q$ with one Hessian sample $E$ shared by
/// every factor, by exact enumeration of the sample's sign vectors (module docs). Buffers are allocated once;
/// [`Self::build`] allocates nothing.
#[derive(Debug, Clone)]
pub struct SharedSample {
    dl: usize,
    /// $(s, N)$ the moments were built for.
    built: Option<(f64, usize)>,
    /// $\mathbb{E}K$.
    pub kbar: Matrix,
    /// $\mathbb{E}[K_{ik}K_{jl}]$ at `((i*d + j)*d + k)*d + l`.
    kron: Vec<f64>,
    r: Matrix,
    d: Matrix,
    k: Matrix,
    tmp: Matrix,
    a: Vector,
    b: Vector,
}

impl SharedSample {
    /// Buffers for $d_l$ = `dl`.
    ///
    /// # Errors
    /// [`BilevelError::Unsupported`] for $d_l >$ [`MAX_ENUMERATED_DL`] (the enumeration's cost).
    pub fn new(dl: usize) -> Result<Self> {
        if dl > MAX_ENUMERATED_DL {
            return Err(BilevelError::Unsupported(format!(
                "exact moments with one Hessian sample in every factor enumerate its 2^(2 d_l - 1) sign pairs: \
                 d_l = {dl} is above the cap {MAX_ENUMERATED_DL} (theory/exact-moments.md)"
            )));
        }
        Ok(SharedSample {
            dl,
            built: None,
            kbar: Matrix::zeros(dl, dl),
            kron: vec![0.0; dl.pow(4)],
            r: Matrix::zeros(dl, dl),
            d: Matrix::zeros(dl, dl),
            k: Matrix::zeros(dl, dl),
            tmp: Matrix::zeros(dl, dl),
            a: Vector::zeros(dl),
            b: Vector::zeros(dl),
        })
    }

    /// Whether the moments are those of step `s` and `terms` $= N$.
    pub fn is_built_for(&self, s: f64, terms: usize) -> bool {
        self.built == Some((s, terms))
    }

    /// Enumerate the law of $E = c_H(ab^\top + ba^\top)$, $c_H = \sigma_H/\sqrt{2d_l}$, $a, b\in\\{\pm1\\}^{d_l}$ uniform
    /// and independent; $(a, b)$ and $(-a, -b)$ give the same $E$, so $a_0 = +1$ is fixed.
    pub fn build(&mut self, h: &Matrix, s: f64, terms: usize, sigma_h: f64) {
        let dl = self.dl;
        let c = sigma_h / (2.0 * dl as f64).sqrt();
        // R = I - s H.
        for j in 0..dl {
            for i in 0..dl {
                self.r[(i, j)] = if i == j { 1.0 } else { 0.0 } - s * h[(i, j)];
            }
        }
        self.kbar.fill(0.0);
        self.kron.fill(0.0);
        let pairs = 1usize << (2 * dl - 1);
        for code in 0..pairs {
            // Bits 0..dl-1: b; bits dl..2dl-2: a_1..a_{dl-1} (a_0 = +1).
            for i in 0..dl {
                self.b[i] = if (code >> i) & 1 == 1 { -1.0 } else { 1.0 };
                self.a[i] = if i > 0 && (code >> (dl + i - 1)) & 1 == 1 {
                    -1.0
                } else {
                    1.0
                };
            }
            // D = R - s E.
            for j in 0..dl {
                for i in 0..dl {
                    self.d[(i, j)] = self.r[(i, j)] - s * c * (self.a[i] * self.b[j] + self.b[i] * self.a[j]);
                }
            }
            // Horner: K = I + D (I + D (...)), N - 1 products, then K *= s.
            self.k.fill(0.0);
            self.k.fill_diagonal(1.0);
            for _ in 1..terms {
                self.tmp.gemm(1.0, &self.d, &self.k, 0.0);
                for i in 0..dl {
                    self.tmp[(i, i)] += 1.0;
                }
                std::mem::swap(&mut self.k, &mut self.tmp);
            }
            self.k *= s;
            self.kbar += &self.k;
            for i in 0..dl {
                for j in 0..dl {
                    for k in 0..dl {
                        let kik = self.k[(i, k)];
                        let base = ((i * dl + j) * dl + k) * dl;
                        for l in 0..dl {
                            self.kron[base + l] += kik * self.k[(j, l)];
                        }
                    }
                }
            }
        }
        let w = 1.0 / pairs as f64;
        self.kbar *= w;
        for x in &mut self.kron {
            *x *= w;
        }
        self.built = Some((s, terms));
    }

    /// `y` ← $\mathbb{E}[KUK^\top]$ ($K$ is symmetric: a polynomial in the symmetric $R - sE$), $O(d_l^4)$.
    pub fn second_moment(&self, u: &Matrix, y: &mut Matrix) {
        let dl = self.dl;
        for i in 0..dl {
            for j in 0..dl {
                let base = (i * dl + j) * dl * dl;
                let mut v = 0.0;
                for k in 0..dl {
                    for l in 0..dl {
                        v += self.kron[base + k * dl + l] * u[(k, l)];
                    }
                }
                y[(i, j)] = v;
            }
        }
    }
}

/// Scratch of [`fresh_partial_sums`]: four $d_l\times d_l$ matrices.
#[derive(Debug, Clone)]
pub struct FreshScratch {
    tt: Matrix,
    st: Matrix,
    ss: Matrix,
    tmp: Matrix,
}

impl FreshScratch {
    /// Buffers for $d_l$ = `dl`.
    pub fn new(dl: usize) -> Self {
        FreshScratch {
            tt: Matrix::zeros(dl, dl),
            st: Matrix::zeros(dl, dl),
            ss: Matrix::zeros(dl, dl),
            tmp: Matrix::zeros(dl, dl),
        }
    }
}

/// `y` ← $\mathbb{E}[KUK^\top]$ for $K = s\sum_{q<N}\prod_{j\le q}(R - sE_j)$, independent $E_j$ (module docs), in $H$'s
/// eigenbasis ($H = V\operatorname{diag}(\lambda)V^\top$, $R = V\operatorname{diag}(r)V^\top$, $r_i = 1 - s\lambda_i$;
/// transpose and trace are basis-free, so the noise term keeps its form): with $t_q = (R-sE_q)t_{q-1}$,
/// $\sigma_q = \sigma_{q-1} + t_q$, $t_0 = \sigma_0 = v$ and $T = \mathbb{E}tt^\top$, $C = \mathbb{E}\sigma t^\top$,
/// $\Sigma = \mathbb{E}\sigma\sigma^\top$ (all $U$ at $q = 0$):
/// $$T' = RTR + s^2\tfrac{\sigma_H^2}{d_l}(T^\top + \operatorname{tr}T\\,I),\quad C' = CR + T',\quad
/// \Sigma' = \Sigma + CR + RC^\top + T',$$
/// and $\mathbb{E}[KUK^\top] = s^2\Sigma_{N-1}$. $O(Nd_l^2 + d_l^3)$, no allocation.
#[allow(clippy::too_many_arguments)]
pub fn fresh_partial_sums(
    v: &Matrix,
    vt: &Matrix,
    lam: &Vector,
    s: f64,
    terms: usize,
    sigma_h: f64,
    u: &Matrix,
    y: &mut Matrix,
    w: &mut FreshScratch,
) {
    let dl = lam.len();
    let c = s * s * sigma_h * sigma_h / dl as f64;
    // Into the eigenbasis: T = C = Sigma = V^T U V.
    w.tmp.gemm(1.0, vt, u, 0.0);
    w.tt.gemm(1.0, &w.tmp, v, 0.0);
    w.st.copy_from(&w.tt);
    w.ss.copy_from(&w.tt);
    let r = |i: usize| 1.0 - s * lam[i];
    for _ in 1..terms {
        let tr = w.tt.trace();
        // T' into tmp.
        for j in 0..dl {
            for i in 0..dl {
                let mut x = r(i) * r(j) * w.tt[(i, j)] + c * w.tt[(j, i)];
                if i == j {
                    x += c * tr;
                }
                w.tmp[(i, j)] = x;
            }
        }
        // Sigma' = Sigma + C R + R C^T + T' (old C), then C' = C R + T'.
        for j in 0..dl {
            for i in 0..dl {
                w.ss[(i, j)] += w.st[(i, j)] * r(j) + r(i) * w.st[(j, i)] + w.tmp[(i, j)];
            }
        }
        for j in 0..dl {
            for i in 0..dl {
                w.st[(i, j)] = w.st[(i, j)] * r(j) + w.tmp[(i, j)];
            }
        }
        std::mem::swap(&mut w.tt, &mut w.tmp);
    }
    // Back: Y = s^2 V Sigma V^T.
    w.tmp.gemm(s * s, v, &w.ss, 0.0);
    y.gemm(1.0, &w.tmp, vt, 0.0);
}
