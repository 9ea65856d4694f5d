//! The closed second-moment recursion of a method on the quadratic family with additive noise.
//!
//! The state $x = (\theta, h, \phi, \theta_{\rm prev})$ is augmented with a constant 1, $\bar x = (x, 1)$, and
//! [`ExactRun`] carries $S = \mathbb{E}[\bar x\bar x^\top]$ (its last column is the mean). Every stage of an
//! iteration replaces one block of rows $R$ by $\bar x_R \leftarrow T_R\bar x + r$, where $T_R$ is the stage's
//! mean map and $r$ is zero-mean noise uncorrelated with $\bar x$ (fresh samples), with covariance $\Sigma_r$ that
//! may depend on $S$ (the multiplicative noise of the cross and Hessian products). So
//! $S_{RR} \leftarrow T_R S T_R^\top + \Sigma_r$, $S_{Rj} \leftarrow (T_R S)\_j$ for $j\notin R$: $O(|R|\\,n^2)$ per
//! stage, no allocation. The derivation of each $T_R$ and $\Sigma_r$, and where it stops holding, is in
//! `theory/exact-moments.md`.

use super::hessian_noise::{FreshScratch, SharedSample, fresh_partial_sums};
use crate::algorithms::common::NeumannGrowth;
use crate::algorithms::double_loop::InnerSteps;
use crate::error::{BilevelError, Result};
use crate::families::quadratic::Quadratic;
use crate::linalg::{Matrix, Vector, check_vector};
use crate::problem::{Bilevel, Domain, NoiseLevels};
use crate::solver::{Metric, Schedule};

/// STABLE's lower-step correction $-c\\,H^{-1}M^\top(\theta^{k+1}-\theta^k)$.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Correction {
    /// Alg 5: $c = 1$.
    Full,
    /// The lecture's Alg 6 as printed: $c = -\beta_k$.
    LiteralAlg6,
    /// No correction (the planted bug `no_correction`): $c = 0$.
    None,
}

/// A method whose moments close on the quadratic family, with its schedules (as the crate's solver runs it).
#[derive(Debug, Clone, PartialEq)]
pub enum ExactMethod {
    /// [`crate::algorithms::ttsa::Ttsa`]: TTSA (Algs 4/8/9) and eq (20) momentum, Ghadimi–Wang Neumann estimator.
    Ttsa {
        /// $\alpha_k$.
        alpha: Schedule,
        /// $\beta_k$.
        beta: Schedule,
        /// $N_k$ and $\eta$.
        neumann: NeumannGrowth,
        /// Eq (20)'s weight on the old direction.
        momentum: Option<f64>,
        /// Eq (20)'s weights swapped (planted bug).
        swap_momentum_weights: bool,
        /// Upper step at the stale $\phi^k$ (planted bug).
        stale_phi: bool,
    },
    /// [`crate::algorithms::stable::Stable`], Alg 5, when the tracked matrices are exact (no Hessian or cross
    /// noise; see the note for why they break the closure otherwise).
    Stable {
        /// $\alpha_k$.
        alpha: Schedule,
        /// $\beta_k$.
        beta: Schedule,
        /// Which lower-step correction.
        correction: Correction,
    },
    /// [`crate::algorithms::double_loop::DoubleLoop::bsa`]: $t_k$ inner SGD steps, Ghadimi–Wang hypergradient.
    Bsa {
        /// $\alpha_k$.
        alpha: Schedule,
        /// $\beta_k$.
        beta: Schedule,
        /// $t_k$.
        inner: InnerSteps,
        /// $N_k$ and $\eta$.
        neumann: NeumannGrowth,
    },
    /// [`crate::algorithms::alternating::Alternating`]: `inner_steps` lower steps, then
    /// $\theta\leftarrow\theta-\alpha_k\nabla_\theta f_u$ (no implicit gradient; the power tests' bug).
    Alternating {
        /// $\alpha_k$.
        alpha: Schedule,
        /// $\beta_k$.
        beta: Schedule,
        /// Lower steps per iteration.
        inner_steps: usize,
    },
    /// [`crate::algorithms::sustain::Sustain`], eqs (21)–(22): recursive momentum on both levels, one sample at
    /// two points (the Ghadimi–Wang depth and Hessian samples replayed).
    Sustain {
        /// $\alpha_k$.
        alpha: Schedule,
        /// $\beta_k = c_\beta\alpha_k$.
        c_beta: f64,
        /// $1-\eta^k = \min(1, c_\eta\alpha_k^2)$.
        c_eta: f64,
        /// $N_k$ and $\eta$.
        neumann: NeumannGrowth,
    },
    /// [`crate::algorithms::itd_bio::ItdBio`]: $T$ unrolled steps of size $\beta$ at one lower sample, reverse-mode
    /// ITD through the last `backprop` $=T'$ of them ($T' = T$: untruncated), the reverse pass's Hessian and cross
    /// products at that same sample (with Hessian noise: $d_l\le$ [`super::hessian_noise::MAX_ENUMERATED_DL`]).
    ItdBio {
        /// $\alpha_k$.
        alpha: Schedule,
        /// Inner step $\beta$.
        beta: f64,
        /// $T$.
        steps: usize,
        /// $T'$.
        backprop: usize,
        /// The reverse pass's Hessian products each at a fresh lower sample (planted bug).
        fresh_hessian_samples: bool,
    },
    /// [`crate::algorithms::double_loop::DoubleLoop::stocbio`]: $T$ inner SGD steps with minibatch $B$, the mean of
    /// $B$ stocBiO hypergradients (a fresh Hessian sample per Neumann factor).
    Stocbio {
        /// $\alpha_k$.
        alpha: Schedule,
        /// $\beta_k$.
        beta: Schedule,
        /// $T$.
        inner: usize,
        /// $N_k$ and $\eta$.
        neumann: NeumannGrowth,
        /// $B$.
        batch: usize,
        /// Inner steps with one sample (planted bug).
        no_inner_minibatch: bool,
        /// One Hessian sample for every Neumann factor (planted bug; with Hessian noise:
        /// $d_l\le$ [`super::hessian_noise::MAX_ENUMERATED_DL`]).
        one_hessian_sample: bool,
    },
}

/// Positions of the blocks in the augmented state.
#[derive(Debug, Clone, Copy)]
struct Layout {
    du: usize,
    dl: usize,
    th: usize,
    dir: Option<usize>,
    ph: usize,
    pv: usize,
    /// SUSTAIN's $\phi^{k-1}$, $\tilde h_u$, $\tilde h_l$ (consecutive after $\theta_{\rm prev}$).
    sus: Option<usize>,
    one: usize,
    n: usize,
}

impl Layout {
    fn new(du: usize, dl: usize, momentum: bool, sustain: bool) -> Self {
        let dir = momentum.then_some(du);
        let ph = if momentum { 2 * du } else { du };
        let pv = ph + dl;
        let sus = sustain.then_some(pv + du);
        let one = pv + du + if sustain { 2 * dl + du } else { 0 };
        Layout {
            du,
            dl,
            th: 0,
            dir,
            ph,
            pv,
            sus,
            one,
            n: one + 1,
        }
    }
    /// Rows rewritten by the upper step: $\theta$ (and $h$ right after it).
    fn ul_rows(&self) -> usize {
        if self.dir.is_some() { 2 * self.du } else { self.du }
    }
}

/// Scratch of one block update of `len` rows.
#[derive(Debug, Clone)]
struct Block {
    t: Matrix,
    tt: Matrix,
    x: Matrix,
    z: Matrix,
    noise: Matrix,
}

impl Block {
    fn new(len: usize, n: usize) -> Self {
        Block {
            t: Matrix::zeros(len, n),
            tt: Matrix::zeros(n, len),
            x: Matrix::zeros(len, n),
            z: Matrix::zeros(len, len),
            noise: Matrix::zeros(len, len),
        }
    }

    /// $S_{RR} \leftarrow T S T^\top + \text{noise}$, $S_{Rj} = S_{jR} \leftarrow (TS)\_j$ ($j\notin R$), with $R$ the
    /// `t.nrows()` rows from `r0`.
    fn apply(&mut self, s: &mut Matrix, r0: usize) {
        let len = self.t.nrows();
        let n = s.nrows();
        mul(&mut self.x, &self.t, s);
        self.t.transpose_to(&mut self.tt);
        mul(&mut self.z, &self.x, &self.tt);
        self.z += &self.noise;
        for j in 0..n {
            if j >= r0 && j < r0 + len {
                continue;
            }
            for a in 0..len {
                let v = self.x[(a, j)];
                s[(r0 + a, j)] = v;
                s[(j, r0 + a)] = v;
            }
        }
        for a in 0..len {
            for b in 0..len {
                s[(r0 + a, r0 + b)] = 0.5 * (self.z[(a, b)] + self.z[(b, a)]);
            }
        }
    }
}

/// Scratch of the multiplicative-noise covariance of the Ghadimi–Wang hypergradient.
#[derive(Debug, Clone)]
struct GwCache {
    /// $N$ the cache was built for (0: none yet).
    terms: usize,
    /// $W = M\bar Q$, $\bar Q = \eta\sum_{p<N}(I-\eta H)^p$.
    w: Matrix,
    /// $W^\top$.
    wt: Matrix,
    /// $\bar Q$.
    qbar: Matrix,
    /// $F_{ij} = N\eta^2\sum_{p<N}(r_ir_j)^p$ in $H$'s eigenbasis (Hessian noise off).
    f: Matrix,
}

/// $t$ lower steps of size $\beta$ at fixed $\theta$ composed into one block map: rows $\phi$ of $T_t$ and the
/// accumulated noise $P_t$ ($T_{t+1} = AT_t + C$, $P_{t+1} = AP_tA^\top + \beta^2\sigma_l^2 I$, $A = I-\beta H$).
#[derive(Debug, Clone)]
struct InnerCache {
    beta: f64,
    var: f64,
    steps: usize,
    t: Matrix,
    p: Matrix,
    one: Matrix,
    a: Matrix,
    at: Matrix,
    scratch_t: Matrix,
    scratch_p: Matrix,
}

/// The exact first and second moments of one method's state along its iterations (module docs).
#[derive(Debug, Clone)]
pub struct ExactRun {
    method: ExactMethod,
    noise: NoiseLevels,
    lay: Layout,
    k: usize,
    /// $S = \mathbb{E}[\bar x\bar x^\top]$.
    s: Matrix,
    // The instance.
    h: Matrix,
    m: Matrix,
    n_mat: Matrix,
    p_mat: Matrix,
    p_u: Vector,
    b_l: Vector,
    /// Eigenvectors $V$ of $H$ and eigenvalues $\lambda$.
    v: Matrix,
    vt: Matrix,
    lam: Vector,
    /// $H^{-1}M^\top$ and $MH^{-1}$.
    hinv_mt: Matrix,
    m_hinv: Matrix,
    // Stage scratch.
    ul: Block,
    ll: Block,
    /// $B$: $\nabla_\phi f_u = B\bar x$ ($d_l\times n$), its transpose, $BS$.
    b: Matrix,
    bt: Matrix,
    bs: Matrix,
    /// $G_h$: the mean hypergradient map ($d_u\times n$).
    gh: Matrix,
    u: Matrix,
    y: Matrix,
    acc: Matrix,
    sq_a: Matrix,
    sq_b: Matrix,
    du_l: Matrix,
    du_u: Matrix,
    sigma_r: Matrix,
    /// SUSTAIN's $(BD)S$ ($d_l\times n$).
    sus_scratch: Matrix,
    /// $M^\top$.
    mt: Matrix,
    gw: GwCache,
    inner: InnerCache,
    /// Gram matrices $L^\top L$ of the metrics, in [`Metric::ALL`] order (`None`: not a second moment).
    grams: Vec<Option<Matrix>>,
    /// ITD-BiO's unroll maps.
    itd: Option<ItdCache>,
    /// $W$ of the current upper step ($d_u\times d_l$).
    w_cur: Matrix,
    /// A deterministic $K$ ([`YLaw::Deterministic`]).
    k_det: Matrix,
    /// Moments of $K$ at one shared Hessian sample ([`YLaw::Shared`]).
    shared: Option<SharedSample>,
    /// Scratch of [`YLaw::FreshPartialSums`].
    fresh: FreshScratch,
}

/// How $Y = \mathbb{E}[KUK^\top]$ of an implicit upper step is computed.
#[derive(Debug, Clone, Copy)]
enum YLaw {
    /// Ghadimi–Wang: $K = N\eta\prod_{i\le p}(I-\eta\hat H_i)$, random depth.
    GhadimiWang { terms: usize, eta: f64 },
    /// $K$ = `k_det`, deterministic (no Hessian noise).
    Deterministic,
    /// $K = s\sum_{q<N}\prod_{j\le q}(R - sE_j)$, a fresh sample per factor.
    FreshPartialSums { terms: usize, step: f64 },
    /// $K = s\sum_{q<N}(R-sE)^q$, one sample ([`SharedSample`]).
    Shared,
}

/// ITD-BiO's maps on the quadratic: $A^T$ and $\beta S_T$ ($S_t = \sum_{s<t}A^s$, $A = I-\beta H$) of the unroll,
/// and $W = \beta M S_{T'}$ of the reverse pass ($\nabla F_T = \nabla_\theta f_u - W\nabla_\phi f_u$).
#[derive(Debug, Clone)]
struct ItdCache {
    a_pow: Matrix,
    bs_t: Matrix,
    w: Matrix,
    /// $\sigma_l^2(\beta S_T)^2$: the lower sample's noise through the unroll.
    ll_noise: Matrix,
    /// $\sigma_\theta^2I + \sigma_\phi^2WW^\top$: the upper sample's noise in the hypergradient (no Hessian or cross
    /// noise).
    sigma_u: Matrix,
    /// $\beta S_{T'}$: the reverse pass's $K$ without Hessian noise.
    k_det: Matrix,
}

impl ExactRun {
    /// Start the recursion at the deterministic point $(\theta^0,\phi^0)$ on `q` with additive noise `noise`.
    ///
    /// # Errors
    /// [`BilevelError::Unsupported`] where the moments do not close (a bounded $\Theta$, whose projection is
    /// nonlinear; STABLE with Hessian or cross noise, whose tracked matrices are correlated with the state);
    /// parameter errors as the crate's solver would raise them.
    pub fn new(q: &Quadratic, noise: NoiseLevels, method: ExactMethod, theta0: &Vector, phi0: &Vector) -> Result<Self> {
        noise.check()?;
        if *q.domain() != Domain::Unbounded {
            return Err(BilevelError::Unsupported(
                "exact moments need an unbounded Theta: a projection is not affine".into(),
            ));
        }
        let dims = q.dims();
        let (du, dl) = (dims.d_u, dims.d_l);
        check_vector("theta0", theta0, du)?;
        check_vector("phi0", phi0, dl)?;
        let l_l = q.constants().l_l;
        let momentum = match &method {
            ExactMethod::Ttsa {
                alpha,
                beta,
                neumann,
                momentum,
                ..
            } => {
                alpha.check("alpha")?;
                crate::algorithms::common::check_lower_step(beta, l_l)?;
                neumann.check(l_l)?;
                if let Some(eta) = momentum
                    && !(0.0..1.0).contains(eta)
                {
                    return Err(BilevelError::invalid("momentum", eta, "must be in [0, 1)"));
                }
                momentum.is_some()
            }
            ExactMethod::Stable { alpha, beta, .. } => {
                alpha.check("alpha")?;
                crate::algorithms::common::check_lower_step(beta, l_l)?;
                if noise.hess_fl != 0.0 || noise.cross_fl != 0.0 {
                    return Err(BilevelError::Unsupported(
                        "exact moments of STABLE need hess_fl = cross_fl = 0: its tracked matrices are an AR(1) \
                         process correlated with the state (theory/exact-moments.md)"
                            .into(),
                    ));
                }
                false
            }
            ExactMethod::Bsa {
                alpha,
                beta,
                inner,
                neumann,
            } => {
                alpha.check("alpha")?;
                crate::algorithms::common::check_lower_step(beta, l_l)?;
                neumann.check(l_l)?;
                if inner.at(0) == 0 {
                    return Err(BilevelError::invalid("inner_steps", 0, "must be >= 1"));
                }
                false
            }
            ExactMethod::Sustain {
                alpha, c_beta, neumann, ..
            } => {
                alpha.check("alpha")?;
                crate::algorithms::common::check_lower_step(&Schedule::constant(c_beta * alpha.at(0)), l_l)?;
                neumann.check(l_l)?;
                false
            }
            ExactMethod::Alternating {
                alpha,
                beta,
                inner_steps,
            } => {
                alpha.check("alpha")?;
                crate::algorithms::common::check_lower_step(beta, l_l)?;
                if *inner_steps == 0 {
                    return Err(BilevelError::invalid("inner_steps", 0, "must be >= 1"));
                }
                false
            }
            ExactMethod::ItdBio {
                alpha,
                beta,
                steps,
                backprop,
                ..
            } => {
                alpha.check("alpha")?;
                crate::hypergrad::itd::ItdParams {
                    beta: *beta,
                    steps: *steps,
                }
                .check(l_l)?;
                if !(1..=*steps).contains(backprop) {
                    return Err(BilevelError::invalid("truncate", backprop, "must satisfy 1 <= T' <= T"));
                }
                false
            }
            ExactMethod::Stocbio {
                alpha,
                beta,
                inner,
                neumann,
                batch,
                ..
            } => {
                alpha.check("alpha")?;
                crate::algorithms::common::check_lower_step(beta, l_l)?;
                neumann.check(l_l)?;
                if *inner == 0 || *batch == 0 {
                    return Err(BilevelError::invalid("inner/batch", 0, "must be >= 1"));
                }
                false
            }
        };
        let sustain = matches!(method, ExactMethod::Sustain { .. });
        let lay = Layout::new(du, dl, momentum, sustain);
        let n = lay.n;
        let mut x0 = Vector::zeros(n);
        x0.rows_mut(lay.th, du).copy_from(theta0);
        x0.rows_mut(lay.ph, dl).copy_from(phi0);
        x0.rows_mut(lay.pv, du).copy_from(theta0);
        x0[lay.one] = 1.0;
        let s = &x0 * x0.transpose();
        let eig = q.h.clone().symmetric_eigen();
        let hinv_mt = -q.j.clone();
        let m_hinv = hinv_mt.transpose();
        let mut b = Matrix::zeros(dl, n);
        b.view_mut((0, lay.th), (dl, du)).copy_from(&q.n.transpose());
        b.view_mut((0, lay.ph), (dl, dl)).copy_from(&q.q);
        b.view_mut((0, lay.one), (dl, 1)).copy_from(&q.q_u);
        let grams = Metric::ALL.iter().map(|m| gram(q, &lay, *m)).collect();
        // ITD-BiO's unroll maps, fixed for the run (beta and T are constants).
        // One Hessian sample shared by every factor (ITD-BiO's reverse pass; stocBiO's planted bug): its moments by
        // enumeration, built here for ITD (fixed beta, T') and per N for stocBiO.
        let mut shared = match &method {
            ExactMethod::ItdBio {
                fresh_hessian_samples: false,
                ..
            }
            | ExactMethod::Stocbio {
                one_hessian_sample: true,
                ..
            } if noise.hess_fl != 0.0 => Some(SharedSample::new(dl)?),
            _ => None,
        };
        let itd = match &method {
            ExactMethod::ItdBio {
                beta, steps, backprop, ..
            } => {
                let (v, lam) = (&eig.eigenvectors, &eig.eigenvalues);
                let spectral = |f: &dyn Fn(f64) -> f64| {
                    let d = Matrix::from_diagonal(&lam.map(f));
                    v * d * v.transpose()
                };
                // r = 1 - beta lambda; A^T and beta S_t = beta sum_{s<t} A^s.
                let geo = |r: f64, t: usize| {
                    if r == 1.0 {
                        t as f64
                    } else {
                        (1.0 - r.powi(t as i32)) / (1.0 - r)
                    }
                };
                let a_pow = spectral(&|l| (1.0 - beta * l).powi(*steps as i32));
                let bs_t = spectral(&|l| beta * geo(1.0 - beta * l, *steps));
                let bs_back = spectral(&|l| beta * geo(1.0 - beta * l, *backprop));
                // E K: beta S_T' unless one Hessian sample multiplies every factor (then E[(A - beta E)^s] != A^s).
                let w = match shared.as_mut() {
                    Some(sh) => {
                        sh.build(&q.h, *beta, *backprop, noise.hess_fl);
                        &q.m * &sh.kbar
                    }
                    None => &q.m * &bs_back,
                };
                let mut sigma_u = &w * w.transpose() * noise.grad_phi_fu.powi(2);
                for a in 0..du {
                    sigma_u[(a, a)] += noise.grad_theta_fu.powi(2);
                }
                Some(ItdCache {
                    ll_noise: &bs_t * &bs_t * noise.grad_phi_fl.powi(2),
                    w,
                    sigma_u,
                    bs_t,
                    a_pow,
                    k_det: bs_back,
                })
            }
            _ => None,
        };
        Ok(ExactRun {
            method,
            noise,
            lay,
            k: 0,
            s,
            h: q.h.clone(),
            m: q.m.clone(),
            n_mat: q.n.clone(),
            p_mat: q.p.clone(),
            p_u: q.p_u.clone(),
            b_l: q.b_l.clone(),
            vt: eig.eigenvectors.transpose(),
            v: eig.eigenvectors,
            lam: eig.eigenvalues,
            hinv_mt,
            m_hinv,
            ul: Block::new(lay.ul_rows(), n),
            ll: Block::new(dl, n),
            bt: b.transpose(),
            bs: Matrix::zeros(dl, n),
            b,
            gh: Matrix::zeros(du, n),
            u: Matrix::zeros(dl, dl),
            y: Matrix::zeros(dl, dl),
            acc: Matrix::zeros(dl, dl),
            sq_a: Matrix::zeros(dl, dl),
            sq_b: Matrix::zeros(dl, dl),
            du_l: Matrix::zeros(du, dl),
            du_u: Matrix::zeros(du, du),
            sigma_r: Matrix::zeros(du, du),
            sus_scratch: Matrix::zeros(dl, n),
            mt: q.m.transpose(),
            gw: GwCache {
                terms: 0,
                w: Matrix::zeros(du, dl),
                wt: Matrix::zeros(dl, du),
                qbar: Matrix::zeros(dl, dl),
                f: Matrix::zeros(dl, dl),
            },
            inner: InnerCache {
                beta: f64::NAN,
                var: f64::NAN,
                steps: 0,
                t: Matrix::zeros(dl, n),
                p: Matrix::zeros(dl, dl),
                one: Matrix::zeros(dl, n),
                a: Matrix::zeros(dl, dl),
                at: Matrix::zeros(dl, dl),
                scratch_t: Matrix::zeros(dl, n),
                scratch_p: Matrix::zeros(dl, dl),
            },
            grams,
            itd,
            w_cur: Matrix::zeros(du, dl),
            k_det: Matrix::zeros(dl, dl),
            shared,
            fresh: FreshScratch::new(dl),
        })
    }

    /// Whether [`Self::expect`] supports `metric` (a quadratic form of the state).
    pub fn supports(metric: Metric) -> bool {
        !matches!(
            metric,
            Metric::ThetaErr
                | Metric::FValue
                | Metric::MoreauGradSq
                | Metric::PhiGap
                | Metric::MoreauGrad
                | Metric::MoreauGradSqUnconstrained
        )
    }

    /// Outer iterations done.
    pub fn k(&self) -> usize {
        self.k
    }

    /// $\mathbb{E}[\bar x\bar x^\top]$ with $\bar x = (\theta, h, \phi, \theta_{\rm prev}, 1)$.
    pub fn second_moment(&self) -> &Matrix {
        &self.s
    }

    /// $\mathbb{E}\\,\theta^k$.
    pub fn mean_theta(&self) -> Vector {
        self.s
            .view((self.lay.th, self.lay.one), (self.lay.du, 1))
            .column(0)
            .into_owned()
    }

    /// $\mathbb{E}\\,\phi^k$.
    pub fn mean_phi(&self) -> Vector {
        self.s
            .view((self.lay.ph, self.lay.one), (self.lay.dl, 1))
            .column(0)
            .into_owned()
    }

    /// The exact expectation of `metric` at the current iterate.
    ///
    /// # Errors
    /// [`BilevelError::Unsupported`] for metrics that are not quadratic in the state ($\\|\theta-\theta^\star\\|$
    /// unsquared, the Moreau measure).
    pub fn expect(&self, metric: Metric) -> Result<f64> {
        let i = Metric::ALL
            .iter()
            .position(|m| *m == metric)
            .expect("every metric is in ALL");
        match &self.grams[i] {
            Some(g) => Ok(g.dot(&self.s)),
            None => Err(BilevelError::Unsupported(format!(
                "metric {} is not a quadratic form of the state: its expectation is not a function of the moments",
                metric.key()
            ))),
        }
    }

    /// One outer iteration, in the crate's order of updates and samples.
    pub fn step(&mut self) -> Result<()> {
        let k = self.k;
        if let ExactMethod::Sustain {
            alpha,
            c_beta,
            c_eta,
            neumann,
        } = self.method
        {
            let a = alpha.at(k);
            let keep = if k == 0 { 0.0 } else { 1.0 - (c_eta * a * a).min(1.0) };
            self.sustain_step(a, c_beta * a, keep, neumann.at(k));
            return self.finish_step();
        }
        self.copy_prev();
        match self.method.clone() {
            ExactMethod::Ttsa {
                alpha,
                beta,
                neumann,
                momentum,
                swap_momentum_weights,
                stale_phi,
            } => {
                let weights = match momentum {
                    None => None,
                    Some(_) if k == 0 => Some((0.0, 1.0)),
                    Some(e) if swap_momentum_weights => Some((1.0 - e, e)),
                    Some(e) => Some((e, 1.0 - e)),
                };
                // The LL step reads theta_prev (= theta^k) so that the stale order can update theta first.
                if stale_phi {
                    self.gw_upper_step(alpha.at(k), neumann.at(k), weights);
                    self.lower_step(beta.at(k), self.lay.pv, 0.0);
                } else {
                    self.lower_step(beta.at(k), self.lay.pv, 0.0);
                    self.gw_upper_step(alpha.at(k), neumann.at(k), weights);
                }
            }
            ExactMethod::Stable {
                alpha,
                beta,
                correction,
            } => {
                let b = beta.at(k);
                self.stable_upper_step(alpha.at(k));
                let c = match correction {
                    Correction::Full => 1.0,
                    Correction::LiteralAlg6 => -b,
                    Correction::None => 0.0,
                };
                self.lower_step(b, self.lay.pv, c);
            }
            ExactMethod::Bsa {
                alpha,
                beta,
                inner,
                neumann,
            } => {
                let var = self.noise.grad_phi_fl.powi(2);
                self.lower_steps(beta.at(k), inner.at(k), var);
                self.gw_upper_step(alpha.at(k), neumann.at(k), None);
            }
            ExactMethod::Alternating {
                alpha,
                beta,
                inner_steps,
            } => {
                let var = self.noise.grad_phi_fl.powi(2);
                self.lower_steps(beta.at(k), inner_steps, var);
                // theta <- theta - alpha (grad_theta f_u + xi_theta): the mean map with W = 0.
                self.du_l.fill(0.0);
                self.fill_gh();
                self.sigma_r.fill(0.0);
                self.sigma_r.fill_diagonal(self.noise.grad_theta_fu.powi(2));
                self.upper_apply(alpha.at(k), None);
            }
            ExactMethod::Stocbio {
                alpha,
                beta,
                inner,
                neumann,
                batch,
                no_inner_minibatch,
                one_hessian_sample,
            } => {
                let per_step = if no_inner_minibatch { 1 } else { batch };
                let var = self.noise.grad_phi_fl.powi(2) / per_step as f64;
                self.lower_steps(beta.at(k), inner, var);
                self.stocbio_upper_step(alpha.at(k), neumann.at(k), batch, one_hessian_sample);
            }
            ExactMethod::ItdBio { alpha, .. } => self.itd_step(alpha.at(k)),
            ExactMethod::Sustain { .. } => unreachable!("handled above"),
        }
        self.finish_step()
    }

    fn finish_step(&mut self) -> Result<()> {
        self.k += 1;
        if !self.s.iter().all(|x| x.is_finite()) {
            return Err(BilevelError::NonFinite {
                what: format!("exact second moment at k = {}", self.k),
            });
        }
        Ok(())
    }

    /// One SUSTAIN iteration: $\tilde h_l$, $\tilde h_u$ from $(x^k, x^{k-1})$ at one sample (the noise does not depend on
    /// the point, so the additive noise enters as $(1-\eta)\xi$ and the random products act on
    /// $D\bar x = \bar x^k - \eta\bar x^{k-1}$), then the copies and the two deterministic steps.
    fn sustain_step(&mut self, alpha: f64, beta: f64, keep: f64, np: crate::hypergrad::neumann::NeumannParams) {
        let Layout {
            th,
            ph,
            pv,
            du,
            dl,
            one,
            n,
            ..
        } = self.lay;
        let sus = self.lay.sus.expect("sustain layout");
        let (php, hu, hl) = (sus, sus + dl, sus + dl + du);
        let fresh = 1.0 - keep;
        // Lower: h_l <- keep h_l + H(phi - keep phi_p) + M^T(theta - keep theta_p) + fresh (b_l + xi_l).
        let t = &mut self.ll.t;
        t.fill(0.0);
        for a in 0..dl {
            t[(a, hl + a)] = keep;
            t[(a, one)] = fresh * self.b_l[a];
            for b in 0..dl {
                t[(a, ph + b)] = self.h[(a, b)];
                t[(a, php + b)] = -keep * self.h[(a, b)];
            }
            for b in 0..du {
                t[(a, th + b)] = self.m[(b, a)];
                t[(a, pv + b)] = -keep * self.m[(b, a)];
            }
        }
        self.ll.noise.fill(0.0);
        self.ll
            .noise
            .fill_diagonal(fresh * fresh * self.noise.grad_phi_fl.powi(2));
        self.ll.apply(&mut self.s, hl);
        // Upper: B D and g_theta D.
        let (nn, eta) = (np.terms, np.eta);
        if self.gw.terms != nn {
            self.build_gw_cache(nn, eta);
        }
        self.bs.fill(0.0);
        self.gh.fill(0.0);
        for a in 0..dl {
            for b in 0..du {
                self.bs[(a, th + b)] = self.n_mat[(b, a)];
                self.bs[(a, pv + b)] = -keep * self.n_mat[(b, a)];
            }
            for b in 0..dl {
                self.bs[(a, ph + b)] = self.b[(a, ph + b)];
                self.bs[(a, php + b)] = -keep * self.b[(a, ph + b)];
            }
            self.bs[(a, one)] = fresh * self.b[(a, one)];
        }
        // gh = g_theta D - W (B D).
        self.gh.gemm(-1.0, &self.gw.w, &self.bs, 0.0);
        for a in 0..du {
            for b in 0..du {
                self.gh[(a, th + b)] += self.p_mat[(a, b)];
                self.gh[(a, pv + b)] -= keep * self.p_mat[(a, b)];
            }
            for b in 0..dl {
                self.gh[(a, ph + b)] += self.n_mat[(a, b)];
                self.gh[(a, php + b)] -= keep * self.n_mat[(a, b)];
            }
            self.gh[(a, one)] += fresh * self.p_u[a];
        }
        // U0 = (BD) S (BD)^T.
        let mut bd_t = std::mem::replace(&mut self.bt, Matrix::zeros(0, 0));
        let mut bds = std::mem::replace(&mut self.sus_scratch, Matrix::zeros(0, 0));
        self.bs.transpose_to(&mut bd_t);
        mul(&mut bds, &self.bs, &self.s);
        mul(&mut self.u, &bds, &bd_t);
        self.bt = bd_t;
        self.sus_scratch = bds;
        self.du_l.gemm(1.0, &self.gw.w, &self.u, 0.0);
        self.sigma_r.gemm(-1.0, &self.du_l, &self.gw.wt, 0.0);
        for a in 0..dl {
            self.u[(a, a)] += fresh * fresh * self.noise.grad_phi_fu.powi(2);
        }
        self.neumann_second_moment(nn, eta);
        self.du_l.gemm(1.0, &self.m, &self.y, 0.0);
        self.sigma_r.gemm(1.0, &self.du_l, &self.mt, 1.0);
        let diag =
            self.noise.cross_fl.powi(2) / dl as f64 * self.y.trace() + fresh * fresh * self.noise.grad_theta_fu.powi(2);
        for a in 0..du {
            self.sigma_r[(a, a)] += diag;
        }
        let t = &mut self.ul.t;
        for a in 0..du {
            for j in 0..n {
                t[(a, j)] = self.gh[(a, j)];
            }
            t[(a, hu + a)] += keep;
        }
        self.ul.noise.copy_from(&self.sigma_r);
        self.ul.apply(&mut self.s, hu);
        // prev <- current (theta and phi), then phi -= beta h_l, theta -= alpha h_u (no new noise).
        self.copy_prev();
        for a in 0..dl {
            for j in 0..n {
                self.s[(php + a, j)] = self.s[(ph + a, j)];
            }
        }
        for a in 0..dl {
            for i in 0..n {
                self.s[(i, php + a)] = self.s[(i, ph + a)];
            }
        }
        let t = &mut self.ll.t;
        t.fill(0.0);
        for a in 0..dl {
            t[(a, ph + a)] = 1.0;
            t[(a, hl + a)] = -beta;
        }
        self.ll.noise.fill(0.0);
        self.ll.apply(&mut self.s, ph);
        let t = &mut self.ul.t;
        t.fill(0.0);
        for a in 0..du {
            t[(a, th + a)] = 1.0;
            t[(a, hu + a)] = -alpha;
        }
        self.ul.noise.fill(0.0);
        self.ul.apply(&mut self.s, th);
    }

    /// One ITD-BiO iteration (theory/exact-moments.md §2): the unroll
    /// $\phi \leftarrow A^T\phi - \beta S_T(M^\top\theta + b_l + \xi_l)$ at one lower sample (its noise enters once,
    /// through $\beta S_T$), then $\theta \leftarrow \theta - \alpha(\nabla_\theta f_u - W\nabla_\phi f_u)$ at the new
    /// $\phi$ and one upper sample, whose noise covariance is $\sigma_\theta^2I + \sigma_\phi^2WW^\top$.
    fn itd_step(&mut self, alpha: f64) {
        let Layout {
            th, ph, du, dl, one, ..
        } = self.lay;
        let c = self.itd.as_ref().expect("ITD-BiO cache");
        let t = &mut self.ll.t;
        t.fill(0.0);
        for a in 0..dl {
            let mut lin = 0.0;
            for b in 0..dl {
                t[(a, ph + b)] = c.a_pow[(a, b)];
                lin += c.bs_t[(a, b)] * self.b_l[b];
            }
            t[(a, one)] = -lin;
            for b in 0..du {
                let mut v = 0.0;
                for e in 0..dl {
                    v += c.bs_t[(a, e)] * self.m[(b, e)];
                }
                t[(a, th + b)] = -v;
            }
        }
        self.ll.noise.copy_from(&c.ll_noise);
        self.ll.apply(&mut self.s, ph);
        let c = self.itd.as_ref().expect("ITD-BiO cache");
        if self.noise.hess_fl == 0.0 && self.noise.cross_fl == 0.0 {
            self.du_l.copy_from(&c.w);
            self.sigma_r.copy_from(&c.sigma_u);
            self.fill_gh();
            self.upper_apply(alpha, None);
            return;
        }
        // Hessian or cross noise: the products of the reverse pass are random, K = beta sum_{s<T'} (A - beta E)^s.
        self.w_cur.copy_from(&c.w);
        let law = match self.method {
            ExactMethod::ItdBio {
                beta,
                backprop,
                fresh_hessian_samples: true,
                ..
            } if self.noise.hess_fl != 0.0 => YLaw::FreshPartialSums {
                terms: backprop,
                step: beta,
            },
            _ if self.shared.is_some() => YLaw::Shared,
            _ => {
                self.k_det.copy_from(&c.k_det);
                YLaw::Deterministic
            }
        };
        self.implicit_upper_step(alpha, None, law, 1);
    }

    /// $\theta_{\rm prev} \leftarrow \theta$ (rows, then columns).
    fn copy_prev(&mut self) {
        let Layout { th, pv, du, n, .. } = self.lay;
        for a in 0..du {
            for j in 0..n {
                self.s[(pv + a, j)] = self.s[(th + a, j)];
            }
        }
        for a in 0..du {
            for i in 0..n {
                self.s[(i, pv + a)] = self.s[(i, th + a)];
            }
        }
    }

    /// `steps` lower steps of size `beta` at $\theta_{\rm prev} = \theta^k$ as one composed block update (the
    /// composition is advanced incrementally while $\beta$ is fixed and $t_k$ grows, so BSA costs $O(n^2)$ per
    /// outer iteration plus $O(d_l^2 n)$ per new inner step).
    fn lower_steps(&mut self, beta: f64, steps: usize, var: f64) {
        if steps == 1 {
            self.lower_step_var(beta, self.lay.pv, 0.0, var);
            return;
        }
        let Layout { ph, dl, .. } = self.lay;
        let c = &mut self.inner;
        if c.beta != beta || c.var != var || c.steps > steps || c.steps == 0 {
            // T_1 (the one-step map) into `one`, then T = T_1, P = beta^2 sigma^2 I.
            self.fill_lower(beta, self.lay.pv, 0.0);
            let c = &mut self.inner;
            c.one.copy_from(&self.ll.t);
            c.t.copy_from(&self.ll.t);
            c.p.fill(0.0);
            c.p.fill_diagonal(beta * beta * var);
            c.var = var;
            c.a.copy_from(&c.one.view((0, ph), (dl, dl)));
            c.a.transpose_to(&mut c.at);
            c.beta = beta;
            c.steps = 1;
        }
        let c = &mut self.inner;
        while c.steps < steps {
            // T <- A T + (T_1 without its phi columns); P <- A P A^T + beta^2 sigma^2 I.
            c.scratch_t.gemm(1.0, &c.a, &c.t, 0.0);
            for i in 0..dl {
                for j in 0..c.t.ncols() {
                    if j < ph || j >= ph + dl {
                        c.scratch_t[(i, j)] += c.one[(i, j)];
                    }
                }
            }
            std::mem::swap(&mut c.t, &mut c.scratch_t);
            c.scratch_p.gemm(1.0, &c.a, &c.p, 0.0);
            c.p.gemm(1.0, &c.scratch_p, &c.at, 0.0);
            for i in 0..dl {
                c.p[(i, i)] += beta * beta * var;
            }
            c.steps += 1;
        }
        self.ll.t.copy_from(&self.inner.t);
        self.ll.noise.copy_from(&self.inner.p);
        self.ll.apply(&mut self.s, ph);
    }

    /// $\phi \leftarrow \phi - \beta(H\phi + M^\top\theta_{\rm src} + b_l + \xi_l) - c\\,H^{-1}M^\top(\theta - \theta_{\rm prev})$.
    fn lower_step(&mut self, beta: f64, src: usize, c: f64) {
        self.lower_step_var(beta, src, c, self.noise.grad_phi_fl.powi(2));
    }

    /// [`Self::lower_step`] with gradient-noise variance `var` (a minibatch mean of $B$ samples: $\sigma_l^2/B$).
    fn lower_step_var(&mut self, beta: f64, src: usize, c: f64, var: f64) {
        self.fill_lower(beta, src, c);
        self.ll.noise.fill(0.0);
        self.ll.noise.fill_diagonal(beta * beta * var);
        self.ll.apply(&mut self.s, self.lay.ph);
    }

    /// The mean map of [`Self::lower_step`] into `ll.t`.
    fn fill_lower(&mut self, beta: f64, src: usize, c: f64) {
        let Layout {
            th,
            ph,
            pv,
            du,
            dl,
            one,
            ..
        } = self.lay;
        let t = &mut self.ll.t;
        t.fill(0.0);
        for a in 0..dl {
            t[(a, ph + a)] = 1.0;
            t[(a, one)] = -beta * self.b_l[a];
            for b in 0..dl {
                t[(a, ph + b)] -= beta * self.h[(a, b)];
            }
            for b in 0..du {
                t[(a, src + b)] -= beta * self.m[(b, a)];
                if c != 0.0 {
                    t[(a, th + b)] -= c * self.hinv_mt[(a, b)];
                    t[(a, pv + b)] += c * self.hinv_mt[(a, b)];
                }
            }
        }
    }

    /// Fill `gh` with the mean hypergradient map for $W$ = `self.du_l`: $\nabla_\theta f_u - W\nabla_\phi f_u$.
    fn fill_gh(&mut self) {
        let Layout {
            th, ph, du, dl, one, ..
        } = self.lay;
        let w = &self.du_l;
        self.gh.fill(0.0);
        // W B, then P, N, p_u added in place.
        self.gh.gemm(-1.0, w, &self.b, 0.0);
        for a in 0..du {
            for b in 0..du {
                self.gh[(a, th + b)] += self.p_mat[(a, b)];
            }
            for b in 0..dl {
                self.gh[(a, ph + b)] += self.n_mat[(a, b)];
            }
            self.gh[(a, one)] += self.p_u[a];
        }
    }

    /// The upper block update with mean map `gh` and hypergradient noise covariance `sigma_r`.
    fn upper_apply(&mut self, alpha: f64, weights: Option<(f64, f64)>) {
        let Layout { th, du, n, .. } = self.lay;
        let t = &mut self.ul.t;
        t.fill(0.0);
        let noise = &mut self.ul.noise;
        match weights {
            None => {
                for a in 0..du {
                    for j in 0..n {
                        t[(a, j)] = -alpha * self.gh[(a, j)];
                    }
                    t[(a, th + a)] += 1.0;
                }
                for a in 0..du {
                    for b in 0..du {
                        noise[(a, b)] = alpha * alpha * self.sigma_r[(a, b)];
                    }
                }
            }
            Some((old, new)) => {
                let dir = self.lay.dir.expect("momentum layout");
                // Rows 0..du: theta' = theta - alpha*old*h - alpha*new*gh; rows du..2du: h' = old*h + new*gh.
                for a in 0..du {
                    for j in 0..n {
                        t[(a, j)] = -alpha * new * self.gh[(a, j)];
                        t[(du + a, j)] = new * self.gh[(a, j)];
                    }
                    t[(a, th + a)] += 1.0;
                    t[(a, dir + a)] -= alpha * old;
                    t[(du + a, dir + a)] += old;
                }
                let cs = [-alpha * new, new];
                for (ia, ca) in cs.iter().enumerate() {
                    for (ib, cb) in cs.iter().enumerate() {
                        for a in 0..du {
                            for b in 0..du {
                                noise[(ia * du + a, ib * du + b)] = ca * cb * self.sigma_r[(a, b)];
                            }
                        }
                    }
                }
            }
        }
        self.ul.apply(&mut self.s, th);
    }

    /// STABLE's upper step with the exact $H^{-1}$ and $M$: noise only from the gradients.
    fn stable_upper_step(&mut self, alpha: f64) {
        self.du_l.copy_from(&self.m_hinv);
        self.fill_gh();
        let (sp, st) = (self.noise.grad_phi_fu.powi(2), self.noise.grad_theta_fu.powi(2));
        // sigma_r = st I + sp (M H^-1)(M H^-1)^T.
        self.sigma_r.gemm(sp, &self.m_hinv, &self.hinv_mt, 0.0);
        for a in 0..self.lay.du {
            self.sigma_r[(a, a)] += st;
        }
        self.upper_apply(alpha, None);
    }

    /// The TTSA/BSA upper step with the Ghadimi–Wang estimator of $N$ terms: [`Self::implicit_upper_step`] with
    /// $W = M\bar Q$ and $Y = N\eta^2\sum_{p<N}\mathcal{L}^p(U)$.
    fn gw_upper_step(&mut self, alpha: f64, np: crate::hypergrad::neumann::NeumannParams, weights: Option<(f64, f64)>) {
        let (nn, eta) = (np.terms, np.eta);
        if self.gw.terms != nn {
            self.build_gw_cache(nn, eta);
        }
        self.w_cur.copy_from(&self.gw.w);
        self.implicit_upper_step(alpha, weights, YLaw::GhadimiWang { terms: nn, eta }, 1);
    }

    /// The mean of $B$ stocBiO estimates of $N$ terms. Their partial sums share nothing but independent samples:
    /// $W = M\bar Q$; without Hessian noise $K = \bar Q$ is deterministic ($Y = \bar QU\bar Q$), with it $Y$ comes
    /// from the fresh-sample recursion ([`fresh_partial_sums`]). `one_sample` (planted bug): one Hessian sample for
    /// every factor, $W = M\\,\mathbb{E}K$ and $Y$ by enumeration ([`SharedSample`]). The $B$ estimates are
    /// conditionally independent given the state with one conditional mean, so $\Sigma_r$ is divided by $B$.
    fn stocbio_upper_step(
        &mut self,
        alpha: f64,
        np: crate::hypergrad::neumann::NeumannParams,
        batch: usize,
        one_sample: bool,
    ) {
        let (nn, eta) = (np.terms, np.eta);
        if self.gw.terms != nn {
            self.build_gw_cache(nn, eta);
        }
        let law = if self.noise.hess_fl == 0.0 {
            self.k_det.copy_from(&self.gw.qbar);
            YLaw::Deterministic
        } else if one_sample {
            let sh = self.shared.as_mut().expect("shared-sample moments allocated in new()");
            if !sh.is_built_for(eta, nn) {
                sh.build(&self.h, eta, nn, self.noise.hess_fl);
            }
            YLaw::Shared
        } else {
            YLaw::FreshPartialSums { terms: nn, step: eta }
        };
        match (law, &self.shared) {
            (YLaw::Shared, Some(sh)) => self.w_cur.gemm(1.0, &self.m, &sh.kbar, 0.0),
            _ => self.w_cur.copy_from(&self.gw.w),
        }
        self.implicit_upper_step(alpha, None, law, batch);
    }

    /// The upper step with an implicit-gradient estimate $\hat h = \nabla_\theta f_u + \xi_\theta - (M+G)Ku$,
    /// $u = B\bar x + \xi_\phi$, $K$ independent of the state with $\mathbb{E}[MK] = W$ (`w_cur`) (the derivation in the
    /// note): mean map $\nabla_\theta f_u - W\nabla_\phi f_u$; noise $\Sigma_r = \sigma_\theta^2 I + MYM^\top +
    /// \tfrac{\sigma_C^2}{d_l}\operatorname{tr}(Y)I - W(BSB^\top)W^\top$ with $Y = \mathbb{E}[KUK^\top]$,
    /// $U = BSB^\top + \sigma_\phi^2 I$ by `law`; divided by `batch` for the mean of that many independent estimates.
    fn implicit_upper_step(&mut self, alpha: f64, weights: Option<(f64, f64)>, law: YLaw, batch: usize) {
        let dl = self.lay.dl;
        self.du_l.copy_from(&self.w_cur);
        self.fill_gh();
        // U0 = B S B^T.
        mul(&mut self.bs, &self.b, &self.s);
        mul(&mut self.u, &self.bs, &self.bt);
        // sigma_r starts with -W U0 W^T.
        self.du_l.gemm(1.0, &self.w_cur, &self.u, 0.0);
        self.sigma_r.fill(0.0);
        for a in 0..self.lay.du {
            for b in 0..self.lay.du {
                let mut v = 0.0;
                for c in 0..dl {
                    v += self.du_l[(a, c)] * self.w_cur[(b, c)];
                }
                self.sigma_r[(a, b)] = -v;
            }
        }
        for a in 0..dl {
            self.u[(a, a)] += self.noise.grad_phi_fu.powi(2);
        }
        match law {
            YLaw::GhadimiWang { terms, eta } => self.neumann_second_moment(terms, eta),
            YLaw::Deterministic => {
                mul(&mut self.sq_a, &self.k_det, &self.u);
                mul(&mut self.y, &self.sq_a, &self.k_det);
            }
            YLaw::FreshPartialSums { terms, step } => fresh_partial_sums(
                &self.v,
                &self.vt,
                &self.lam,
                step,
                terms,
                self.noise.hess_fl,
                &self.u,
                &mut self.y,
                &mut self.fresh,
            ),
            YLaw::Shared => self
                .shared
                .as_ref()
                .expect("shared-sample moments built before the step")
                .second_moment(&self.u, &mut self.y),
        }
        // + M Y M^T + (sigma_C^2/d_l) tr(Y) I + sigma_theta^2 I.
        self.du_l.gemm(1.0, &self.m, &self.y, 0.0);
        self.du_u.fill(0.0);
        for a in 0..self.lay.du {
            for b in 0..self.lay.du {
                let mut v = 0.0;
                for c in 0..dl {
                    v += self.du_l[(a, c)] * self.m[(b, c)];
                }
                self.du_u[(a, b)] = v;
            }
        }
        self.sigma_r += &self.du_u;
        let diag = self.noise.cross_fl.powi(2) / dl as f64 * self.y.trace() + self.noise.grad_theta_fu.powi(2);
        for a in 0..self.lay.du {
            self.sigma_r[(a, a)] += diag;
        }
        if batch > 1 {
            self.sigma_r /= batch as f64;
        }
        self.upper_apply(alpha, weights);
    }

    /// $\bar Q$, $W = M\bar Q$ and the eigenbasis factor of $Y$ for $N$ terms.
    fn build_gw_cache(&mut self, nn: usize, eta: f64) {
        let dl = self.lay.dl;
        let r = |i: usize| 1.0 - eta * self.lam[i];
        // Q = V diag(eta * sum_{p<N} r^p) V^T.
        self.sq_a.fill(0.0);
        for i in 0..dl {
            let ri = r(i);
            let geo = if ri == 1.0 {
                nn as f64
            } else {
                (1.0 - ri.powi(nn as i32)) / (1.0 - ri)
            };
            for a in 0..dl {
                self.sq_a[(a, i)] = self.v[(a, i)] * eta * geo;
            }
        }
        self.gw.qbar.gemm(1.0, &self.sq_a, &self.vt, 0.0);
        self.gw.w.gemm(1.0, &self.m, &self.gw.qbar, 0.0);
        self.gw.w.transpose_to(&mut self.gw.wt);
        for i in 0..dl {
            for j in 0..dl {
                let x = r(i) * r(j);
                let geo = if x == 1.0 {
                    nn as f64
                } else {
                    (1.0 - x.powi(nn as i32)) / (1.0 - x)
                };
                self.gw.f[(i, j)] = nn as f64 * eta * eta * geo;
            }
        }
        self.gw.terms = nn;
    }

    /// `y` ← $\mathbb{E}[KUK^\top]$ for $K = N\eta\prod_{i\le p}(I-\eta\hat H_i)$, $p\sim U\\{0..N-1\\}$, `u` = $U$.
    fn neumann_second_moment(&mut self, nn: usize, eta: f64) {
        let dl = self.lay.dl;
        let sh = self.noise.hess_fl;
        if sh == 0.0 {
            // Eigenbasis: Y = V (F ∘ V^T U V) V^T.
            self.sq_a.gemm(1.0, &self.vt, &self.u, 0.0);
            self.sq_b.gemm(1.0, &self.sq_a, &self.v, 0.0);
            self.sq_b.component_mul_assign(&self.gw.f);
            self.sq_a.gemm(1.0, &self.v, &self.sq_b, 0.0);
            self.y.gemm(1.0, &self.sq_a, &self.vt, 0.0);
            return;
        }
        // L(W) = R W R + eta^2 (sigma_H^2/d_l)(W^T + tr(W) I), R = I - eta H, iterated N - 1 times.
        let c = eta * eta * sh * sh / dl as f64;
        self.acc.fill(0.0);
        // y holds the current term W_p.
        self.y.copy_from(&self.u);
        for p in 0..nn {
            self.acc += &self.y;
            if p + 1 == nn {
                break;
            }
            // sq_a = R W = W - eta H W; sq_b = sq_a R = sq_a - eta sq_a H.
            self.sq_a.copy_from(&self.y);
            self.sq_a.gemm(-eta, &self.h, &self.y, 1.0);
            self.sq_b.copy_from(&self.sq_a);
            self.sq_b.gemm(-eta, &self.sq_a, &self.h, 1.0);
            let tr = self.y.trace();
            for a in 0..dl {
                for b in 0..dl {
                    self.sq_b[(a, b)] += c * self.y[(b, a)];
                }
                self.sq_b[(a, a)] += c * tr;
            }
            self.y.copy_from(&self.sq_b);
        }
        self.y.copy_from(&self.acc);
        self.y *= nn as f64 * eta * eta;
    }
}

/// `out` ← $ab$ with plain column-major loops (no allocation; at these sizes, a few to a few dozen, faster than
/// the general product's dispatch). Every entry is $0 + \sum_k a_{ik}b_{kj}$ summed in increasing $k$ over the
/// nonzero $b_{kj}$, whatever the path: $4\times4$ tiles keep their sixteen sums in registers (a third of the memory
/// traffic of one column at a time), the edges are summed entry by entry; the bits are the same.
fn mul(out: &mut Matrix, a: &Matrix, b: &Matrix) {
    let (r, inner, c) = (a.nrows(), a.ncols(), b.ncols());
    debug_assert!(b.nrows() == inner && out.nrows() == r && out.ncols() == c);
    let (a, b) = (a.as_slice(), b.as_slice());
    let o = out.as_mut_slice();
    let entry = |i: usize, j: usize| {
        let mut s = 0.0;
        for k in 0..inner {
            let x = b[j * inner + k];
            if x != 0.0 {
                s += a[k * r + i] * x;
            }
        }
        s
    };
    let (r4, c4) = (r - r % 4, c - c % 4);
    for j0 in (0..c4).step_by(4) {
        for i0 in (0..r4).step_by(4) {
            let mut acc = [[0.0f64; 4]; 4];
            for k in 0..inner {
                let ak = &a[k * r + i0..k * r + i0 + 4];
                for (jj, accj) in acc.iter_mut().enumerate() {
                    let x = b[(j0 + jj) * inner + k];
                    if x != 0.0 {
                        for (s, ai) in accj.iter_mut().zip(ak) {
                            *s += ai * x;
                        }
                    }
                }
            }
            for (jj, accj) in acc.iter().enumerate() {
                o[(j0 + jj) * r + i0..(j0 + jj) * r + i0 + 4].copy_from_slice(accj);
            }
        }
        for j in j0..j0 + 4 {
            for i in r4..r {
                o[j * r + i] = entry(i, j);
            }
        }
    }
    for j in c4..c {
        for i in 0..r {
            o[j * r + i] = entry(i, j);
        }
    }
}

/// $L^\top L$ for a metric $\\|L\bar x\\|^2$ (or $\tfrac12(\theta-\theta^\star)^\top A_F(\theta-\theta^\star)$), `None`
/// when the metric is not a quadratic form of the state.
fn gram(q: &Quadratic, lay: &Layout, metric: Metric) -> Option<Matrix> {
    let Layout {
        th,
        ph,
        pv,
        du,
        dl,
        one,
        n,
        ..
    } = *lay;
    let star = q.theta_star()?;
    let rows = |r: usize| Matrix::zeros(r, n);
    let l = match metric {
        Metric::ThetaErrSq => {
            let mut l = rows(du);
            l.view_mut((0, th), (du, du)).fill_diagonal(1.0);
            l.view_mut((0, one), (du, 1)).copy_from(&(-&star));
            l
        }
        Metric::GradNormSq => {
            let mut l = rows(du);
            l.view_mut((0, th), (du, du)).copy_from(&q.a_f);
            l.view_mut((0, one), (du, 1)).copy_from(&q.g_f);
            l
        }
        Metric::PhiGapSq | Metric::PhiStarGapSq => {
            let src = if metric == Metric::PhiGapSq { pv } else { th };
            let mut l = rows(dl);
            l.view_mut((0, ph), (dl, dl)).fill_diagonal(1.0);
            l.view_mut((0, src), (dl, du)).copy_from(&(-&q.j));
            l.view_mut((0, one), (dl, 1)).copy_from(&(-&q.phi0));
            l
        }
        Metric::StepSq => {
            let mut l = rows(du);
            l.view_mut((0, th), (du, du)).fill_diagonal(1.0);
            l.view_mut((0, pv), (du, du)).fill_diagonal(-1.0);
            l
        }
        Metric::FGap => {
            // (1/2) e^T A_F e with e = theta - theta*: L = A_F^{1/2}/sqrt(2) [I, -theta*].
            let eig = q.a_f.clone().symmetric_eigen();
            let sqrt = &eig.eigenvectors
                * Matrix::from_diagonal(&eig.eigenvalues.map(|x| (x.max(0.0) / 2.0).sqrt()))
                * eig.eigenvectors.transpose();
            let mut l = rows(du);
            l.view_mut((0, th), (du, du)).copy_from(&sqrt);
            l.view_mut((0, one), (du, 1)).copy_from(&(-(&sqrt * &star)));
            l
        }
        Metric::ThetaErr
        | Metric::FValue
        | Metric::MoreauGradSq
        | Metric::PhiGap
        | Metric::MoreauGrad
        | Metric::MoreauGradSqUnconstrained => {
            return None;
        }
    };
    Some(l.transpose() * l)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The one-column-at-a-time loop `mul` replaced: the bits every exact curve was computed with.
    fn mul_by_columns(out: &mut Matrix, a: &Matrix, b: &Matrix) {
        let (r, inner, c) = (a.nrows(), a.ncols(), b.ncols());
        let (a, b) = (a.as_slice(), b.as_slice());
        let o = out.as_mut_slice();
        o.fill(0.0);
        for j in 0..c {
            let col = &mut o[j * r..(j + 1) * r];
            for k in 0..inner {
                let x = b[j * inner + k];
                if x != 0.0 {
                    for (oi, ai) in col.iter_mut().zip(&a[k * r..(k + 1) * r]) {
                        *oi += ai * x;
                    }
                }
            }
        }
    }

    /// Tiled and column-by-column products agree bit for bit, edges and zero entries of `b` included.
    #[test]
    fn tiled_product_has_the_bits_of_the_column_loop() {
        use rand::{RngExt, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        for (r, inner, c) in [
            (1, 1, 1),
            (4, 4, 4),
            (5, 3, 7),
            (8, 9, 8),
            (13, 17, 11),
            (16, 16, 16),
            (3, 20, 2),
        ] {
            let a = Matrix::from_fn(r, inner, |_, _| rng.random_range(-1.0..1.0));
            let b = Matrix::from_fn(inner, c, |_, _| {
                if rng.random_range(0.0..1.0) < 0.3 {
                    0.0
                } else {
                    rng.random_range(-1.0..1.0)
                }
            });
            let (mut x, mut y) = (Matrix::zeros(r, c), Matrix::from_element(r, c, f64::NAN));
            mul_by_columns(&mut x, &a, &b);
            mul(&mut y, &a, &b);
            let bits = |m: &Matrix| m.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&x), bits(&y), "{r}x{inner} times {inner}x{c}");
        }
    }
}
