use bilevel::Vector;
use bilevel::algorithms::{common::NeumannGrowth, ttsa::Ttsa};
use bilevel::families::quadratic::QuadraticSpec;
use bilevel::problem::{Bilevel, NoiseLevels, Noisy, Oracle};
use bilevel::solver::{self, Metric, Recorder, Schedule};
use rayon::prelude::*;
use std::sync::Arc;

fn main() {
    let args: Vec<f64> = std::env::args().skip(1).map(|a| a.parse().unwrap()).collect();
    let (kappa, sigma, c_beta_mult, reps) = (args[0], args[1], args[2], args[3] as usize);
    let q = Arc::new(
        QuadraticSpec {
            d_u: 2,
            d_l: 3,
            kappa,
            mu_f: 1.0,
            seed: 1,
            ..Default::default()
        }
        .build()
        .unwrap(),
    );
    let mode = std::env::var("MODE").unwrap_or_default();
    let mut lv = NoiseLevels::uniform(sigma);
    if mode == "ll" {
        lv = NoiseLevels {
            grad_phi_fl: sigma,
            ..Default::default()
        };
    }
    if mode == "nohess" {
        lv.hess_fl = 0.0;
        lv.cross_fl = 0.0;
    }
    let kmax: usize = std::env::var("KMAX").map(|x| x.parse().unwrap()).unwrap_or(10000);
    let p = Noisy::new(q.clone(), lv).unwrap();
    let k = p.constants();
    println!("{:?}", k);
    let cps: Vec<usize> = (0..=12)
        .map(|i| (100.0 * ((kmax as f64) / 100.0).powf(i as f64 / 12.0)).round() as usize)
        .collect();
    let t0 = std::time::Instant::now();
    let c_alpha = 2.0 / k.mu_f.unwrap();
    let traces: Vec<_> = (0..reps)
        .into_par_iter()
        .map(|r| {
            let mut s = Ttsa::new(
                Schedule::decay(c_alpha, c_alpha * 2.0 * k.l_f, 1.0),
                {
                    let kb: f64 = std::env::var("KB").map(|x| x.parse().unwrap()).unwrap_or(1.0);
                    Schedule::decay(c_beta_mult / k.l_l * kb.powf(2.0 / 3.0), kb, 2.0 / 3.0)
                },
                NeumannGrowth::for_constants(k.mu_l, k.l_l),
            );
            let mut o = Oracle::new(&p, r as u64);
            let mut rec = Recorder::new(&[Metric::PhiGapSq, Metric::ThetaErrSq, Metric::ThetaErr], &cps, false);
            solver::run(
                &mut s,
                &mut o,
                &Vector::from_element(2, 1.0),
                &Vector::zeros(3),
                kmax,
                &mut rec,
            )
            .unwrap();
            rec.finish()
        })
        .collect();
    println!("elapsed {:?}", t0.elapsed());
    for m in 0..3 {
        let means: Vec<f64> = (0..cps.len())
            .map(|i| traces.iter().map(|t| t.values[i][m]).sum::<f64>() / reps as f64)
            .collect();
        let slopes: Vec<String> = (1..cps.len())
            .map(|i| {
                format!(
                    "{:.3}",
                    (means[i] / means[i - 1]).ln() / (cps[i] as f64 / cps[i - 1] as f64).ln()
                )
            })
            .collect();
        println!(
            "metric {m}: means {:?}\n local slopes {:?}",
            means.iter().map(|x| format!("{x:.3e}")).collect::<Vec<_>>(),
            slopes
        );
    }
}
