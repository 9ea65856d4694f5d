//! Generation of golden files: the built-in instances, extraction of a quadratic instance from a family, and
//! every value of the schema computed with the crate's own code on the instance **as written out**.

use super::schema::{
    CgCase, ConstantsOut, GoldenFile, Instance, ItdCase, ItdStep, NeumannCase, PointValues, SCHEMA, SCHEMA_VERSION,
    StochasticTrajectory, TapeEntry, Trajectory, rows, vec,
};
use super::tape::{Recording, neumann_depths};
use crate::algorithms::{self, common::NeumannGrowth, ttsa::Ttsa};
use crate::error::{BilevelError, Result};
use crate::families::{self, quadratic::QuadraticSpec};
use crate::hypergrad::{cg, exact, itd, neumann};
use crate::linalg::{Matrix, Vector, spd_solve_vec, symmetrize};
use crate::problem::{Bilevel, Domain, NoiseLevels, Noisy, Oracle, Sample};
use crate::solver::{self, Iterate, Observer, Schedule};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use serde_json::{Value, json};
use std::sync::Arc;

/// Outer iterations of the deterministic trajectories.
pub const TRAJECTORY_ITERS: usize = 5;
/// Number of Neumann partial sums and of ITD horizons $T = 1..n$.
pub const SERIES_LEN: usize = 8;
/// Standard deviation of the additive noise of the stochastic trajectories.
pub const STOCHASTIC_SIGMA: f64 = 0.1;
/// Algorithms whose inverse is the Ghadimi–Wang estimator (their depths are recorded).
const GHADIMI_WANG: [&str; 4] = ["bsa", "ttsa", "momentum", "sustain"];

/// One built-in golden instance: name, provenance, the instance, and the stochastic-trajectory length.
pub struct Builtin {
    /// File name without `.json`.
    pub name: &'static str,
    /// Where it comes from.
    pub provenance: String,
    /// The instance.
    pub instance: Instance,
    /// Iterations of the stochastic TTSA trajectory.
    pub stochastic_iters: usize,
}

/// The built-in instances: the registry's quadratic ($d_u=3$, $d_l=5$), a quadratic with $d_u=6 > d_l=2$ on a
/// box, and the meta-learning family ($d_u=3$, $d_l=12$) extracted as a quadratic.
pub fn builtins() -> Result<Vec<Builtin>> {
    let q = QuadraticSpec::default().build()?;
    let spec_box = QuadraticSpec {
        d_u: 6,
        d_l: 2,
        kappa: 4.0,
        seed: 1,
        domain: Domain::new_box(vec![-0.5; 6], vec![0.5; 6])?,
        ..Default::default()
    };
    let qb = spec_box.build()?;
    let meta = families::build("meta_learning", 0)?;
    // The instance of the TTSA strongly convex claims (theory/claims.toml, `ttsa-sc-quadratic`), for `bilevel judge`.
    let spec_ttsa = QuadraticSpec {
        d_u: 2,
        d_l: 3,
        kappa: 2.0,
        mu_f: 1.0,
        seed: 1,
        ..Default::default()
    };
    let qt = spec_ttsa.build()?;
    // A ball on which the constraint is active (theta* on the sphere) and theta^0 = P(1) is projected.
    let q_ball = QuadraticSpec {
        d_u: 3,
        d_l: 4,
        kappa: 5.0,
        seed: 2,
        ..Default::default()
    }
    .build()?;
    let ball = Domain::new_ball(vec![0.0; 3], 0.5)?;
    let wide_ball = Domain::new_ball(vec![0.0; 3], 3.0)?;
    Ok(vec![
        Builtin {
            name: "quadratic_3x5",
            provenance: "families::quadratic::QuadraticSpec::default() (registry `quadratic`, seed 0)".into(),
            instance: Instance::from_quadratic(&q, 0.0, 0.0, Domain::Unbounded),
            stochastic_iters: 20,
        },
        Builtin {
            name: "quadratic_6x2_box",
            provenance:
                "families::quadratic::QuadraticSpec { d_u: 6, d_l: 2, kappa: 4, seed: 1, domain: box [-0.5, 0.5]^6 }"
                    .into(),
            instance: Instance::from_quadratic(&qb, 0.0, 0.0, spec_box.domain.clone()),
            stochastic_iters: 10,
        },
        Builtin {
            name: "meta_learning_3x12",
            provenance: "registry `meta_learning`, seed 0, extracted as a quadratic by golden::generate::extract \
                         (theta-only terms of f_l dropped: they change neither phi* nor F)"
                .into(),
            instance: extract(meta.as_ref())?,
            stochastic_iters: 10,
        },
        Builtin {
            name: "quadratic_2x3_ttsa",
            provenance: "families::quadratic::QuadraticSpec { d_u: 2, d_l: 3, kappa: 2, mu_f: 1, seed: 1 }: the \
                         family of the claims ttsa-sc/* (run ttsa-sc-quadratic)"
                .into(),
            instance: Instance::from_quadratic(&qt, 0.0, 0.0, Domain::Unbounded),
            stochastic_iters: 10,
        },
        Builtin {
            name: "quadratic_3x4_ball",
            provenance: "families::quadratic::QuadraticSpec { d_u: 3, d_l: 4, kappa: 5, seed: 2 } on the ball \
                         |theta| <= 0.5 (active at theta*)"
                .into(),
            instance: Instance::from_quadratic(&q_ball, 0.0, 0.0, ball),
            stochastic_iters: 10,
        },
        Builtin {
            name: "quadratic_3x4_ball_inactive",
            provenance: "the instance of quadratic_3x4_ball on the ball |theta| <= 3 (inactive at theta*; \
                         theta^0 = 1 is inside)"
                .into(),
            instance: Instance::from_quadratic(&q_ball, 0.0, 0.0, wide_ball),
            stochastic_iters: 10,
        },
    ])
}

/// Read a family that is quadratic in $(\theta,\phi)$ off its exact oracles at $0$ and at unit vectors, then check
/// that the result reproduces $\phi^\star$, $F$ and $\nabla F$ at two points (relative $10^{-9}$; the extraction
/// differences are exact for a quadratic up to rounding). $\theta$-only terms of $f_l$ are not represented.
pub fn extract(p: &dyn Bilevel) -> Result<Instance> {
    let d = p.dims();
    let (du, dl) = (d.d_u, d.d_l);
    let e = Sample::Exact;
    let (t0, f0) = (Vector::zeros(du), Vector::zeros(dl));
    let mut p_u = Vector::zeros(du);
    let mut q_u = Vector::zeros(dl);
    let mut b_l = Vector::zeros(dl);
    p.grad_theta_fu(e, &t0, &f0, &mut p_u);
    p.grad_phi_fu(e, &t0, &f0, &mut q_u);
    p.grad_phi_fl(e, &t0, &f0, &mut b_l);
    let mut pm = Matrix::zeros(du, du);
    let mut nm = Matrix::zeros(du, dl);
    let mut qm = Matrix::zeros(dl, dl);
    let mut g = Vector::zeros(du);
    let mut gl = Vector::zeros(dl);
    for i in 0..du {
        let mut t = t0.clone();
        t[i] = 1.0;
        p.grad_theta_fu(e, &t, &f0, &mut g);
        pm.set_column(i, &(&g - &p_u));
    }
    for j in 0..dl {
        let mut f = f0.clone();
        f[j] = 1.0;
        p.grad_theta_fu(e, &t0, &f, &mut g);
        nm.set_column(j, &(&g - &p_u));
        p.grad_phi_fu(e, &t0, &f, &mut gl);
        qm.set_column(j, &(&gl - &q_u));
    }
    let inst = Instance {
        d_u: du,
        d_l: dl,
        h: rows(&symmetrize(&p.hess_fl(e, &t0, &f0))),
        m: rows(&p.cross_matrix_fl(e, &t0, &f0)),
        b_l: vec(&b_l),
        c_l: p.f_l(e, &t0, &f0),
        p: rows(&symmetrize(&pm)),
        n: rows(&nm),
        q: rows(&symmetrize(&qm)),
        p_u: vec(&p_u),
        q_u: vec(&q_u),
        c_u: p.f_u(e, &t0, &f0),
        domain: p.domain().clone(),
    };
    let q = inst.build()?;
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    for _ in 0..2 {
        let mut theta = gaussian(&mut rng, du);
        p.domain().project(&mut theta);
        let rel = |a: &Vector, b: &Vector| (a - b).amax() / b.amax().max(1.0);
        let errs = [
            rel(&q.phi_star(&theta), &p.phi_star(&theta)),
            (q.value_f(&theta) + inst.c_u - p.value_f(&theta)).abs() / p.value_f(&theta).abs().max(1.0),
            rel(&q.grad_f(&theta)?, &p.grad_f(&theta)?),
        ];
        // 1e-9: extraction by differences at unit vectors is exact for a quadratic up to rounding (~1e-15 · scale).
        if errs.iter().any(|x| x.is_nan() || *x > 1e-9) {
            return Err(BilevelError::Unsupported(format!(
                "family {} is not quadratic in (theta, phi): extracted instance misses phi*, F, grad F by {errs:?}",
                p.name()
            )));
        }
    }
    Ok(inst)
}

fn gaussian(rng: &mut ChaCha8Rng, n: usize) -> Vector {
    Vector::from_fn(n, |_, _| StandardNormal.sample(rng))
}

/// The start of every trajectory: $\theta^0 = \mathcal{P}\_\Theta(\mathbf 1)$, $\phi^0 = 0$ (as `bilevel run`).
pub fn start(p: &dyn Bilevel) -> (Vector, Vector) {
    let d = p.dims();
    let mut theta0 = Vector::from_element(d.d_u, 1.0);
    p.domain().project(&mut theta0);
    (theta0, Vector::zeros(d.d_l))
}

/// Records $(\theta^k,\phi^k)$ and where each iteration's calls start in the tape.
struct Marks<'a> {
    rec: &'a Recording,
    theta: Vec<Vec<f64>>,
    phi: Vec<Vec<f64>>,
    starts: Vec<usize>,
}

impl Observer for Marks<'_> {
    fn observe(&mut self, _o: &Oracle, s: &Iterate) -> Result<()> {
        self.theta.push(vec(&s.theta));
        self.phi.push(vec(&s.phi));
        self.starts.push(self.rec.len());
        Ok(())
    }
}

/// Generate the golden file of `inst`. Every value is computed on the instance as written (rebuilt by
/// [`Instance::build`]), so the file is self-consistent whatever its source.
pub fn generate(name: &str, provenance: &str, inst: &Instance, stochastic_iters: usize) -> Result<GoldenFile> {
    let q = inst.build()?;
    let p: Arc<dyn Bilevel> = Arc::new(q.clone());
    let (du, dl) = (inst.d_u, inst.d_l);
    let k = q.constants();
    let mut rng = ChaCha8Rng::seed_from_u64(crate::stats::seeds::fnv1a64(inst.hash().as_bytes()));
    let theta_star = q.theta_star().expect("the quadratic knows theta*");
    let (theta0, phi0) = start(p.as_ref());

    let mut random_theta = gaussian(&mut rng, du);
    p.domain().project(&mut random_theta);
    let mut points = Vec::new();
    for theta in [&theta0, &random_theta, &theta_star] {
        let phi = gaussian(&mut rng, dl);
        points.push(PointValues {
            theta: vec(theta),
            phi: vec(&phi),
            f_u: q.f_u(Sample::Exact, theta, &phi) + inst.c_u,
            f_l: q.f_l(Sample::Exact, theta, &phi) + inst.c_l,
            surrogate: vec(&exact::surrogate(p.as_ref(), Sample::Exact, theta, &phi)?),
            phi_star: vec(&q.phi_star(theta)),
            f: q.value_f(theta) + inst.c_u,
            grad_f: vec(&q.grad_f(theta)?),
            jacobian: rows(&q.j),
        });
    }

    let v = gaussian(&mut rng, dl);
    let mut o = Oracle::new(p.as_ref(), 0);
    let opts = cg::CgOptions {
        tol: 0.0,
        max_iter: dl,
        keep_iterates: true,
    };
    let x0 = Vector::zeros(dl);
    let res = cg::solve(&mut o, Sample::Exact, &theta0, &phi0, &v, &x0, &opts)?;
    let solution = spd_solve_vec("H", &q.h, &v)?;
    let cg_cases = vec![CgCase {
        v: vec(&v),
        x0: vec(&x0),
        iterates: res.iterates.iter().map(vec).collect(),
        solution: vec(&solution),
    }];

    let eta = 1.0 / k.l_l;
    let mut partial_sums = Vec::new();
    let (mut out, mut a, mut b) = (Vector::zeros(dl), Vector::zeros(dl), Vector::zeros(dl));
    for terms in 1..=SERIES_LEN {
        let np = neumann::NeumannParams { eta, terms };
        neumann::truncated_into(&mut o, Sample::Exact, &theta0, &phi0, &v, &np, &mut out, &mut a, &mut b)?;
        partial_sums.push(vec(&out));
    }
    // E[estimator] = H^{-1}(I − (I − ηH)^N) v, by a dense solve (independent of the series code).
    let contraction = Matrix::identity(dl, dl) - eta * &q.h;
    let mut rem = v.clone();
    for _ in 0..SERIES_LEN {
        rem = &contraction * rem;
    }
    let expectation = vec(&spd_solve_vec("H", &q.h, &(&v - rem))?);
    let neumann_cases = vec![NeumannCase {
        v: vec(&v),
        eta,
        partial_sums,
        ghadimi_wang_expectation: expectation.clone(),
        stocbio_expectation: expectation,
    }];

    let beta = 1.0 / k.l_l;
    let mut steps = Vec::new();
    for t in 1..=SERIES_LEN {
        let ip = itd::ItdParams { beta, steps: t };
        let fw = itd::forward(&mut o, &random_theta, &phi0, &ip, itd::ItdSamples::EXACT)?;
        let rv = itd::reverse(&mut o, &random_theta, &phi0, &ip, itd::ItdSamples::EXACT, None)?;
        steps.push(ItdStep {
            t,
            phi_t: vec(&fw.phi_t),
            z: rows(&fw.z),
            forward: vec(&fw.hypergradient),
            reverse: vec(&rv.hypergradient),
        });
    }
    let itd_cases = vec![ItdCase {
        theta: vec(&random_theta),
        phi0: vec(&phi0),
        beta,
        steps,
    }];

    let mut trajectories = Vec::new();
    for algo in algorithms::names() {
        trajectories.push(trajectory(&p, algo, &theta0, &phi0).map_err(|e| context(algo, e))?);
    }
    let stochastic = vec![ttsa_with_tape(&p, &theta0, &phi0, stochastic_iters)?];

    Ok(GoldenFile {
        schema: SCHEMA.into(),
        schema_version: SCHEMA_VERSION,
        crate_version: env!("CARGO_PKG_VERSION").into(),
        name: name.into(),
        provenance: provenance.into(),
        instance: inst.clone(),
        instance_hash: inst.hash(),
        constants: Some(ConstantsOut {
            mu_l: k.mu_l,
            l_l: k.l_l,
            mu_f: k.mu_f,
            l_f: k.l_f,
        }),
        theta_star: vec(&theta_star),
        points,
        cg: cg_cases,
        neumann: neumann_cases,
        itd: itd_cases,
        trajectories,
        stochastic,
    })
}

fn context(algo: &str, e: BilevelError) -> BilevelError {
    BilevelError::Unsupported(format!("golden trajectory of {algo}: {e}"))
}

/// Every parameter `algorithms::build(algo, p, K)` uses, written out (per-iteration arrays for $k = 0..K-1$). The
/// formulas restate `algorithms::build`; the test `trajectories_reproduce_from_the_documented_pseudo_code` replays
/// every trajectory from these values alone, so a divergence fails it.
fn params(p: &dyn Bilevel, algo: &str, iters: usize, calls: &[super::tape::Call], starts: &[usize]) -> Map {
    let k = p.constants();
    let (l_l, mu_l, l_f) = (k.l_l, k.mu_l, k.l_f.max(1e-12));
    let kappa = l_l / mu_l;
    let each = |f: &dyn Fn(usize) -> f64| -> Value { (0..iters).map(f).collect::<Vec<f64>>().into() };
    let sched = |s: Schedule| each(&|i| s.at(i));
    let growth = NeumannGrowth::for_constants(mu_l, l_l);
    let terms: Value = (0..iters).map(|i| growth.at(i).terms).collect::<Vec<usize>>().into();
    let unroll = ((kappa * 100f64.ln()).ceil() as usize).clamp(1, 500);
    let l_sample = k.l_l_sample.unwrap_or(l_l).max(l_l);
    let (ttsa_alpha, ttsa_beta) = match k.mu_f {
        Some(mu_f) => (
            Schedule::decay(2.0 / mu_f, 2.0 / mu_f * 2.0 * l_f, 1.0),
            Schedule::decay(1.0 / l_l, 1.0, 2.0 / 3.0),
        ),
        None => algorithms::horizon_timescales(l_f, l_l, iters),
    };
    let alpha = sched(Schedule::constant(0.5 / l_f));
    let beta = sched(Schedule::constant(1.0 / l_l));
    let v = match algo {
        "alternating" | "alternating-multi" => json!({
            "alpha": alpha, "beta": beta, "inner_steps": if algo == "alternating" { 1 } else { 10 },
        }),
        "ba" => json!({"alpha": alpha, "beta": beta, "inner_steps": 10}),
        "bsa" => json!({
            "alpha": sched(Schedule::horizon(0.5 / l_f, iters, 0.5)), "beta": beta,
            "inner_steps": (0..iters).map(|i| ((i + 1) as f64).sqrt().ceil().max(1.0) as usize).collect::<Vec<_>>(),
            "neumann_eta": growth.eta, "neumann_terms": terms,
        }),
        "aid-bio" => json!({
            "alpha": alpha, "beta": beta, "inner_steps": 10,
            "cg_max_iter": p.dims().d_l.max(1), "cg_tol": crate::hypergrad::cg::CgOptions::default().tol,
        }),
        "stocbio" => json!({
            "alpha": alpha, "beta": beta, "inner_steps": 10, "batch": 4,
            "neumann_eta": growth.eta, "neumann_terms": terms,
        }),
        "ttsa" | "momentum" => {
            let mut m = json!({
                "alpha": sched(ttsa_alpha), "beta": sched(ttsa_beta),
                "neumann_eta": growth.eta, "neumann_terms": terms,
            });
            if algo == "momentum" {
                m["momentum"] = 0.5.into();
            }
            m
        }
        "stable" | "stable-alg6-literal" => json!({
            "alpha": sched(Schedule::constant(0.2 / l_f)), "beta": sched(Schedule::constant(0.5 / l_l)),
            "tau": 0.5, "mu": mu_l,
        }),
        "sustain" => {
            let a0 = 0.5 / l_f;
            json!({
                "alpha": sched(Schedule::decay(a0, 1.0, 1.0 / 3.0)), "c_beta": 1.0 / (l_l * a0),
                "c_eta": 1.0 / (a0 * a0), "neumann_eta": growth.eta, "neumann_terms": terms,
            })
        }
        "penalty" | "primal-dual" => {
            let (a1, a2, rho) = (1e-3, 1e-3, 10.0);
            let mut m = json!({
                "alpha": sched(Schedule::constant(0.5 / (l_f + rho * l_l))), "gamma_z": 1.0 / (l_l + a1),
                "inner_steps": 5, "a1": a1, "a2": a2, "rho": rho,
            });
            if algo == "primal-dual" {
                m["dual_step"] = 1.0.into();
            }
            m
        }
        "itd-bio" => json!({"alpha": alpha, "beta": 1.0 / l_sample, "T": unroll}),
        "pzobo" => {
            let a = match k.mu_f {
                Some(mu_f) => Schedule::decay(2.0 / mu_f, 4.0 * l_f / mu_f, 1.0),
                None => Schedule::horizon(0.5 / l_f, iters, 0.5),
            };
            let (delta, q) = (1e-3, p.dims().d_u);
            json!({
                "alpha": sched(a), "beta": 1.0 / l_sample, "T": unroll, "delta": delta, "Q": q,
                "directions": pzobo_directions(calls, starts, unroll, q, delta),
            })
        }
        "vrbo" => {
            let q = (iters.max(1) as f64).sqrt().ceil() as usize;
            json!({
                "alpha": sched(Schedule::constant(0.2 / l_f)), "beta": 0.5 / l_l, "q": q, "S": q * q, "b": q,
                "m": 1, "neumann_eta": 1.0 / l_l,
                "neumann_terms": ((kappa * 1e4f64.ln()).ceil() as usize).clamp(1, 1000),
                "refresh": (0..iters).map(|i| i % q == 0).collect::<Vec<bool>>(),
            })
        }
        _ => json!({}),
    };
    match v {
        Value::Object(m) => m,
        _ => unreachable!("params are objects"),
    }
}

/// PZOBO's directions $u_{k,q}$ read off the $\theta$ argument of the first inner-loop call of each perturbed
/// unroll: iteration $k$ makes $T$ calls `grad_phi_fl` at $\theta^k$, then $\nabla_\theta f_u$, $\nabla_\phi f_u$,
/// then $T$ calls at $\theta^k + \delta u_{k,q}$ for $q = 1..Q$. $u = (\vartheta - \theta^k)/\delta$ is exact to
/// about $10^{-13}$ relative (one rounding of $\theta^k + \delta u$, divided by $\delta = 10^{-3}$).
fn pzobo_directions(calls: &[super::tape::Call], starts: &[usize], t: usize, q: usize, delta: f64) -> Value {
    let mut out = Vec::new();
    for w in starts.windows(2) {
        let c = &calls[w[0]..w[1]];
        let theta = &c[0].theta;
        let dirs: Vec<Vec<f64>> = (0..q)
            .map(|j| {
                let first = &c[t + 2 + j * t].theta;
                first.iter().zip(theta).map(|(a, b)| (a - b) / delta).collect()
            })
            .collect();
        out.push(dirs);
    }
    json!(out)
}

type Map = serde_json::Map<String, Value>;

fn trajectory(p: &Arc<dyn Bilevel>, algo: &str, theta0: &Vector, phi0: &Vector) -> Result<Trajectory> {
    let rec = Recording::new(Arc::clone(p), Arc::clone(p));
    let mut solver = algorithms::build(algo, p.as_ref(), TRAJECTORY_ITERS)?;
    let mut o = Oracle::new(&rec, 0);
    let mut marks = Marks {
        rec: &rec,
        theta: Vec::new(),
        phi: Vec::new(),
        starts: Vec::new(),
    };
    solver::run(solver.as_mut(), &mut o, theta0, phi0, TRAJECTORY_ITERS, &mut marks)?;
    let calls = rec.calls();
    let depths = if GHADIMI_WANG.contains(&algo) {
        neumann_depths(&calls)
    } else {
        Vec::new()
    };
    Ok(Trajectory {
        algorithm: algo.into(),
        horizon: TRAJECTORY_ITERS,
        seed: 0,
        theta: marks.theta,
        phi: marks.phi,
        neumann_depths: depths,
        params: params(p.as_ref(), algo, TRAJECTORY_ITERS, &calls, &marks.starts),
    })
}

/// TTSA (Alg 4) with additive noise, its schedules written out per iteration, and the noise tape.
/// Schedules: $\alpha_k = (2/\mu_F)/(k + 4L_F/\mu_F)$, $\beta_k = (1/L_l)/(k+1)^{2/3}$, Neumann
/// $\eta = 1/L_l$, $N_k = \lceil\kappa\ln(k+2)\rceil$ (the defaults of [`algorithms::build`]).
pub fn ttsa_with_tape(
    p: &Arc<dyn Bilevel>,
    theta0: &Vector,
    phi0: &Vector,
    iters: usize,
) -> Result<StochasticTrajectory> {
    let k = p.constants();
    let mu_f = k
        .mu_f
        .ok_or_else(|| BilevelError::Unsupported("TTSA golden needs a strongly convex F".into()))?;
    let c_alpha = 2.0 / mu_f;
    let alpha = Schedule::decay(c_alpha, c_alpha * 2.0 * k.l_f, 1.0);
    let beta = Schedule::decay(1.0 / k.l_l, 1.0, 2.0 / 3.0);
    let growth = NeumannGrowth::for_constants(k.mu_l, k.l_l);
    let mut solver = Ttsa::new(alpha, beta, growth);
    let levels = NoiseLevels::uniform(STOCHASTIC_SIGMA);
    let noisy: Arc<dyn Bilevel> = Arc::new(Noisy::new(Arc::clone(p), levels)?);
    let rec = Recording::new(noisy, Arc::clone(p));
    let seed = 0;
    let mut o = Oracle::new(&rec, seed);
    let mut marks = Marks {
        rec: &rec,
        theta: Vec::new(),
        phi: Vec::new(),
        starts: Vec::new(),
    };
    solver::run(&mut solver, &mut o, theta0, phi0, iters, &mut marks)?;
    let calls = rec.calls();
    let iter_of = |i: usize| marks.starts.iter().rposition(|&s| s <= i).unwrap_or(0);
    let tape = calls
        .iter()
        .enumerate()
        .map(|(i, c)| TapeEntry {
            k: iter_of(i),
            kind: c.kind.into(),
            sample: match c.sample {
                Sample::Exact => None,
                Sample::Draw(w) => Some(format!("{w:016x}")),
            },
            noise: c.noise.clone(),
        })
        .collect();
    Ok(StochasticTrajectory {
        algorithm: "ttsa".into(),
        seed,
        noise: levels,
        alpha: (0..iters).map(|i| alpha.at(i)).collect(),
        beta: (0..iters).map(|i| beta.at(i)).collect(),
        neumann_eta: growth.eta,
        neumann_terms: (0..iters).map(|i| growth.at(i).terms).collect(),
        neumann_depths: neumann_depths(&calls),
        theta: marks.theta,
        phi: marks.phi,
        tape,
    })
}

/// Every built-in golden file.
pub fn generate_builtins() -> Result<Vec<GoldenFile>> {
    builtins()?
        .iter()
        .map(|b| generate(b.name, &b.provenance, &b.instance, b.stochastic_iters))
        .collect()
}
