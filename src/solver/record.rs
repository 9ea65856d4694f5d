//! Metrics recorded at chosen iterations, computed from the problem's closed forms (uncounted).

use super::{Iterate, Observer};
use crate::error::{BilevelError, Result};
use crate::linalg::Vector;
use crate::problem::{Counts, Oracle};
use serde::Serialize;

/// A quantity recorded along a run. Every definition is exact: squared or not, which $\phi^\star$ index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// $\\|\nabla F(\theta^k)\\|^2$ (squared, eq (34)).
    GradNormSq,
    /// $\\|\theta^k - \theta^\star\\|^2$ (squared; TTSA's theorem).
    ThetaErrSq,
    /// $\\|\theta^k - \theta^\star\\|$ (unsquared; the lecture's $\Delta_\theta$ as printed).
    ThetaErr,
    /// $\\|\phi^k - \phi^\star(\theta^{k-1})\\|^2$ (squared lower-level gap; the lecture's $\Delta_\phi$ index).
    PhiGapSq,
    /// $\\|\phi^k - \phi^\star(\theta^k)\\|^2$ (gap to the current lower-level solution).
    PhiStarGapSq,
    /// $\\|\theta^k - \theta^{k-1}\\|^2$ (the squared step of the lecture's (51)).
    StepSq,
    /// $F(\theta^k) - F(\theta^\star)$.
    FGap,
    /// $F(\theta^k)$.
    FValue,
    /// Moreau-envelope stationarity $\rho^2\\|\hat\theta(\theta^k) - \theta^k\\|^2$ of (38), with $\rho = 2\rho_F$
    /// (or 1 when $F$ is convex); equal to $\\|\nabla M_{1/\rho}(\theta^k)\\|^2$.
    MoreauGradSq,
    /// $\\|\phi^k - \phi^\star(\theta^{k-1})\\|$ (unsquared; the lecture's $\Delta_\phi$ of (50) as printed).
    PhiGap,
    /// $\rho\\|\hat\theta(\theta^k) - \theta^k\\|$ (unsquared; $\rho$ times the lecture's $\tilde\Delta_\theta$ of (52) as
    /// printed).
    MoreauGrad,
    /// $\rho^2\\|\hat\theta_{\mathbb{R}^{d_u}}(\theta^k) - \theta^k\\|^2$: the Moreau measure with the proximal map (37)
    /// taken over all of $\mathbb{R}^{d_u}$ instead of $\Theta$. Not a stationarity measure under an active
    /// constraint (it tends to a positive value at a point satisfying (36)); kept as the planted bug "prox computed
    /// without the constraint" of the claim `cons/ttsa-wc/moreau`.
    MoreauGradSqUnconstrained,
}

impl Metric {
    /// Every metric, in a fixed order.
    pub const ALL: [Metric; 12] = [
        Metric::GradNormSq,
        Metric::ThetaErrSq,
        Metric::ThetaErr,
        Metric::PhiGapSq,
        Metric::PhiStarGapSq,
        Metric::StepSq,
        Metric::FGap,
        Metric::FValue,
        Metric::MoreauGradSq,
        Metric::PhiGap,
        Metric::MoreauGrad,
        Metric::MoreauGradSqUnconstrained,
    ];

    /// The snake-case name used in JSON/CSV.
    pub fn key(&self) -> &'static str {
        match self {
            Metric::GradNormSq => "grad_norm_sq",
            Metric::ThetaErrSq => "theta_err_sq",
            Metric::ThetaErr => "theta_err",
            Metric::PhiGapSq => "phi_gap_sq",
            Metric::PhiStarGapSq => "phi_star_gap_sq",
            Metric::StepSq => "step_sq",
            Metric::FGap => "f_gap",
            Metric::FValue => "f_value",
            Metric::MoreauGradSq => "moreau_grad_sq",
            Metric::PhiGap => "phi_gap",
            Metric::MoreauGrad => "moreau_grad",
            Metric::MoreauGradSqUnconstrained => "moreau_grad_sq_unconstrained",
        }
    }

    /// Whether the metric can be computed for `o`'s problem (needs $\theta^\star$ or not).
    pub fn available(&self, o: &Oracle) -> bool {
        match self {
            Metric::ThetaErrSq | Metric::ThetaErr | Metric::FGap => o.problem().theta_star().is_some(),
            _ => true,
        }
    }

    /// Evaluate at `state`; error unless its points are finite and sized for `o`'s problem.
    pub fn eval(&self, o: &Oracle, state: &Iterate) -> Result<f64> {
        let p = o.problem();
        let d = p.dims();
        crate::linalg::check_vector("theta", &state.theta, d.d_u)?;
        crate::linalg::check_vector("theta_prev", &state.theta_prev, d.d_u)?;
        crate::linalg::check_vector("phi", &state.phi, d.d_l)?;
        let need_star = || {
            p.theta_star().ok_or_else(|| {
                BilevelError::Unsupported(format!(
                    "metric {} needs theta*, which {} does not know",
                    self.key(),
                    p.name()
                ))
            })
        };
        Ok(match self {
            Metric::GradNormSq => p.grad_f(&state.theta)?.norm_squared(),
            Metric::ThetaErrSq => (&state.theta - need_star()?).norm_squared(),
            Metric::ThetaErr => (&state.theta - need_star()?).norm(),
            Metric::PhiGapSq => (&state.phi - p.phi_star(&state.theta_prev)).norm_squared(),
            Metric::PhiStarGapSq => (&state.phi - p.phi_star(&state.theta)).norm_squared(),
            Metric::StepSq => (&state.theta - &state.theta_prev).norm_squared(),
            Metric::FGap => p.value_f(&state.theta) - p.value_f(&need_star()?),
            Metric::FValue => p.value_f(&state.theta),
            Metric::MoreauGradSq => {
                let rho = moreau_rho(p.constants().weak_convexity);
                let hat = prox(o, &state.theta, rho)?;
                rho * rho * (&hat - &state.theta).norm_squared()
            }
            Metric::PhiGap => (&state.phi - p.phi_star(&state.theta_prev)).norm(),
            Metric::MoreauGrad => {
                let rho = moreau_rho(p.constants().weak_convexity);
                rho * (&prox(o, &state.theta, rho)? - &state.theta).norm()
            }
            Metric::MoreauGradSqUnconstrained => {
                let rho = moreau_rho(p.constants().weak_convexity);
                let hat = prox_over(o, &state.theta, rho, false)?;
                rho * rho * (&hat - &state.theta).norm_squared()
            }
        })
    }
}

/// The $\rho$ of the Moreau measure: $2\rho_F$ ($\rho > \rho_F$ makes the prox problem $\rho_F$-strongly convex), or
/// 1 for a convex $F$.
pub fn moreau_rho(weak_convexity: f64) -> f64 {
    if weak_convexity > 0.0 {
        2.0 * weak_convexity
    } else {
        1.0
    }
}

/// $\hat\theta(\vartheta) = \arg\min_{\theta\in\Theta} F(\theta) + (\rho/2)\\|\theta-\vartheta\\|^2$, eq (37), by
/// projected gradient with step $1/(L_F+\rho)$ on this $(\rho-\rho_F)$-strongly convex problem, until the iterate
/// moves less than $10^{-13}$ (linear convergence).
pub fn prox(o: &Oracle, vartheta: &Vector, rho: f64) -> Result<Vector> {
    prox_over(o, vartheta, rho, true)
}

/// [`prox`] over $\Theta$ (`constrained`) or over all of $\mathbb{R}^{d_u}$ (the planted bug of
/// [`Metric::MoreauGradSqUnconstrained`]).
fn prox_over(o: &Oracle, vartheta: &Vector, rho: f64, constrained: bool) -> Result<Vector> {
    let p = o.problem();
    let k = p.constants();
    if rho <= k.weak_convexity {
        return Err(BilevelError::invalid(
            "rho",
            rho,
            "the Moreau envelope needs rho > the weak-convexity modulus of F",
        ));
    }
    let step = 1.0 / (k.l_f + rho);
    let mut x = vartheta.clone();
    if constrained {
        p.domain().project(&mut x);
    }
    for _ in 0..100_000 {
        let g = p.grad_f(&x)? + rho * (&x - vartheta);
        let mut next = &x - step * g;
        if constrained {
            p.domain().project(&mut next);
        }
        let moved = (&next - &x).amax();
        x = next;
        if moved < 1e-13 {
            return Ok(x);
        }
    }
    Err(BilevelError::Diverged {
        iter: 100_000,
        what: "prox iteration did not converge".into(),
    })
}

/// The record of one run: metric values and oracle counts at the checkpoints.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Trace {
    /// Iterations at which values were recorded.
    pub checkpoints: Vec<usize>,
    /// The metrics recorded, in column order.
    pub metrics: Vec<Metric>,
    /// `values[i][j]`: metric `j` at checkpoint `i`.
    pub values: Vec<Vec<f64>>,
    /// Oracle counts at each checkpoint.
    pub counts: Vec<Counts>,
    /// Running average over $k = 1..$checkpoint of each metric, if requested (`average = true`).
    pub averages: Option<Vec<Vec<f64>>>,
    /// Mean over the window $k \in (K - \lceil wK\rceil, K]$ of each metric at each checkpoint $K$, if requested
    /// ([`Recorder::with_window`]).
    pub windows: Option<Vec<Vec<f64>>>,
}

/// An [`Observer`] that records metrics at checkpoints and, optionally, their running averages over every
/// iteration (for the averaged measures of (50)–(52) and the random-iterate guarantees).
///
/// # Example
/// AID-BiO (Alg 3) on a noise-free quadratic, recorded at four checkpoints; metrics are the exact quantities of
/// [`Metric`] (their JSON/CSV names are [`Metric::key`]), computed from the family's closed forms and not counted.
/// ```
/// use bilevel::algorithms;
/// use bilevel::families::quadratic::QuadraticSpec;
/// use bilevel::problem::{Bilevel, Oracle};
/// use bilevel::solver::{self, Metric, Recorder};
/// use bilevel::Vector;
/// # fn main() -> bilevel::Result<()> {
/// let q = QuadraticSpec { d_u: 2, d_l: 3, ..Default::default() }.build()?;
/// let mut aid = algorithms::build("aid-bio", &q, 200)?;
/// let mut o = Oracle::new(&q, 0);
/// let mut rec = Recorder::new(&[Metric::GradNormSq, Metric::FGap], &[0, 10, 100, 200], true);
/// solver::run(&mut *aid, &mut o, &Vector::from_element(2, 1.0), &Vector::zeros(3), 200, &mut rec)?;
/// let trace = rec.finish();
/// assert_eq!(trace.metrics.iter().map(|m| m.key()).collect::<Vec<_>>(), ["grad_norm_sq", "f_gap"]);
/// let grad: Vec<f64> = trace.values.iter().map(|row| row[0]).collect(); // |grad F|^2 at k = 0, 10, 100, 200
/// assert!(grad[3] < 1e-6 * grad[0]);
/// assert!(trace.counts[3].upper_gradients() > trace.counts[1].upper_gradients());
/// let averages = trace.averages.expect("requested"); // running means over k = 1..checkpoint
/// assert!(averages[3][1] > trace.values[3][1]);
/// # Ok(())
/// # }
/// ```
pub struct Recorder {
    checkpoints: Vec<usize>,
    next: usize,
    average: bool,
    strides: Vec<usize>,
    counts: Vec<usize>,
    vals: Vec<f64>,
    sums: Vec<f64>,
    window: Option<f64>,
    /// Per checkpoint, per metric: the sum over that checkpoint's window (windows of close checkpoints overlap).
    window_sums: Vec<Vec<f64>>,
    trace: Trace,
}

impl Recorder {
    /// Record `metrics` at the sorted, deduplicated `checkpoints`; with `average`, every metric is also evaluated
    /// at every iteration $k\ge1$ and its running mean stored at the checkpoints.
    pub fn new(metrics: &[Metric], checkpoints: &[usize], average: bool) -> Self {
        let mut cps = checkpoints.to_vec();
        cps.sort_unstable();
        cps.dedup();
        Recorder {
            checkpoints: cps.clone(),
            next: 0,
            average,
            strides: vec![1; metrics.len()],
            counts: vec![0; metrics.len()],
            vals: vec![0.0; metrics.len()],
            sums: vec![0.0; metrics.len()],
            window: None,
            window_sums: Vec::new(),
            trace: Trace {
                checkpoints: cps,
                metrics: metrics.to_vec(),
                values: Vec::new(),
                counts: Vec::new(),
                averages: average.then(Vec::new),
                windows: None,
            },
        }
    }

    /// Also record, at each checkpoint $K$, the mean of each metric over the last $\lceil wK\rceil$ iterations.
    ///
    /// For a metric whose mean is a power law $c\\,k^{r}$ this window mean is $c'K^{r}$ with the same exponent (the
    /// window scales with $K$), while it averages many nearly independent values once the window is longer than the
    /// metric's correlation time: a variance reduction for rate fits, not a different rate. Windows of close
    /// checkpoints may overlap (each has its own sum). `fraction` must lie in $(0, 1]$: otherwise the run returns
    /// [`BilevelError::InvalidParameter`] at its first observation.
    pub fn with_window(mut self, fraction: f64) -> Self {
        self.window = Some(fraction);
        self.window_sums = vec![vec![0.0; self.trace.metrics.len()]; self.checkpoints.len()];
        self.trace.windows = Some(Vec::new());
        self
    }

    /// Average metric `m` over the iterates $k = s, 2s, 3s, \dots$ only (a regular subsample), for metrics too costly
    /// to evaluate at every iteration (the Moreau measure needs a proximal solve): a Riemann sum of the sequence
    /// $\mathbb{E}\\,m_k$, accurate where the sequence varies slowly over $s$ iterations. Other metrics keep stride 1.
    pub fn with_average_stride(mut self, metric: Metric, stride: usize) -> Self {
        for (m, s) in self.trace.metrics.iter().zip(self.strides.iter_mut()) {
            if *m == metric {
                *s = stride.max(1);
            }
        }
        self
    }

    fn window_start(&self, k: usize) -> Option<usize> {
        self.window
            .map(|w| k.saturating_sub(((w * k as f64).ceil() as usize).clamp(1, k.max(1))))
    }

    /// The checkpoints not recorded yet: after a run, those past its last iteration (a run shorter than the last
    /// checkpoint records nothing there, without an error; check this before [`Recorder::finish`]).
    pub fn unreached(&self) -> &[usize] {
        &self.checkpoints[self.next.min(self.checkpoints.len())..]
    }

    /// The trace recorded so far: `checkpoints` lists only those reached, one per row of `values` (see
    /// [`Recorder::unreached`] for the others).
    pub fn finish(mut self) -> Trace {
        let reached = self.next.min(self.trace.checkpoints.len());
        self.trace.checkpoints.truncate(reached);
        self.trace
    }
}

impl Observer for Recorder {
    fn observe(&mut self, o: &Oracle, state: &Iterate) -> Result<()> {
        if let Some(w) = self.window.filter(|w| !(*w > 0.0 && *w <= 1.0)) {
            return Err(BilevelError::invalid("window fraction", w, "must lie in (0, 1]"));
        }
        let at_checkpoint = self.checkpoints.get(self.next) == Some(&state.k);
        // Inside the window (start, K] of the next checkpoint K? Window starts grow with K, so the later
        // checkpoints whose windows also hold k follow it (loop below).
        let in_window = match (self.checkpoints.get(self.next), self.window) {
            (Some(&cp), Some(_)) => self.window_start(cp).is_some_and(|s| state.k > s && state.k <= cp),
            _ => false,
        };
        let k = state.k;
        let averaging = self.average && k > 0;
        let in_average = averaging && self.strides.iter().any(|s| k % s == 0);
        if !(at_checkpoint || in_window || in_average) {
            return Ok(());
        }
        for m in 0..self.trace.metrics.len() {
            let avg_m = averaging && k % self.strides[m] == 0;
            if !(at_checkpoint || in_window || avg_m) {
                continue;
            }
            let v = self.trace.metrics[m].eval(o, state)?;
            // A NaN or infinite metric would enter a mean and a fit as garbage (the run itself stayed finite).
            if !v.is_finite() {
                return Err(BilevelError::NonFinite {
                    what: format!("metric {} at iteration {k}", self.trace.metrics[m].key()),
                });
            }
            self.vals[m] = v;
            if avg_m {
                self.counts[m] += 1;
                self.sums[m] += v;
            }
            if in_window {
                for j in self.next..self.checkpoints.len() {
                    if self.window_start(self.checkpoints[j]).is_none_or(|s| k <= s) {
                        break;
                    }
                    self.window_sums[j][m] += v;
                }
            }
        }
        if at_checkpoint {
            let len = (k - self.window_start(k).unwrap_or(0)).max(1) as f64;
            if let Some(win) = self.trace.windows.as_mut() {
                // k = 0 has an empty window: record the value itself.
                let row = if k == 0 {
                    self.vals.clone()
                } else {
                    self.window_sums[self.next].iter().map(|s| s / len).collect()
                };
                win.push(row);
            }
            if let Some(avg) = self.trace.averages.as_mut() {
                avg.push(
                    self.sums
                        .iter()
                        .zip(&self.counts)
                        .map(|(s, n)| s / (*n).max(1) as f64)
                        .collect(),
                );
            }
            self.trace.values.push(self.vals.clone());
            self.trace.counts.push(o.counts());
            self.next += 1;
        }
        Ok(())
    }
}
