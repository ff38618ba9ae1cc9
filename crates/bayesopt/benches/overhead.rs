//! Overhead of one BO iteration (model update + acquisition maximisation, objective
//! excluded) at n = 100 and n = 1000 observations of Levy-5D.
//!
//! - `lazy`: append the new observation to the Cholesky factor (O(n²)) and maximise
//!   log-EI (2000 Latin-hypercube candidates + 10 L-BFGS starts) — an iteration of lag ∞,
//!   and k−1 of every k iterations of lag k;
//! - `lazy_kept_pool`: as `lazy`, with the quasi-random candidates kept from the previous
//!   iteration ([`PoolPosterior`]: one new row of `L⁻¹K(X, X*)`, `O(n·m)`, instead of solving
//!   for all 2000 afresh, `O(n²·m)`), which is what a study does between refits;
//! - `refit`: refit hyperparameters (5 starts) and refactorise, then maximise — an
//!   iteration of lag 1 (classic BO);
//! - `refit_screened`: as `refit` with the starts screened (`FitOptions::screen_iter` 10,
//!   `screen_keep` 3: all five run 10 L-BFGS iterations, the best three go on).
//!
//! `cargo bench -p gradlab-bayesopt --bench overhead`

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use gradlab_bayesopt::acquisition::{
    Acquisition, Candidates, MaximizeOptions, Sampler, maximize, maximize_over, sample_unit,
};
use gradlab_bayesopt::gp::{FitOptions, Gp, PoolPosterior};
use gradlab_bayesopt::kernel::Hyper;
use gradlab_bayesopt::testfns::TestFunction;
use std::hint::black_box;
use std::time::Duration;

fn data(n: usize) -> (Vec<f64>, Vec<f64>) {
    let f = TestFunction::Levy5;
    let space = f.space();
    let mut rng = gradlab_core::rng::rng(n as u64);
    let x = sample_unit(Sampler::Lhs, n + 1, 5, &mut rng);
    let y = x
        .chunks(5)
        .map(|u| f.eval(&space.decode(u).unwrap().iter().map(|v| v.as_f64().unwrap()).collect::<Vec<_>>()))
        .collect();
    (x, y)
}

fn fitted(n: usize) -> (Gp, Vec<f64>, f64) {
    let (x, y) = data(n);
    let mut gp = Gp::new(Default::default(), 5, Hyper::default_for(5), Default::default());
    gp.set_data(x[..n * 5].to_vec(), y[..n].to_vec()).unwrap();
    gp.fit(&FitOptions::default(), 0).unwrap();
    (gp, x[n * 5..].to_vec(), y[n])
}

fn iteration(gp: &mut Gp, seed: u64) {
    gp.prepare();
    let best = gp.y().iter().map(|&v| gp.standardise(v)).fold(f64::INFINITY, f64::min);
    let ident = |u: &[f64]| u.to_vec();
    let p = maximize(&Acquisition::default(), gp, best, &MaximizeOptions::default(), 1, &[], &ident, seed);
    black_box(p);
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("bo_iteration_5d");
    g.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(5));
    for n in [100usize, 1000] {
        let (mut gp, xn, yn) = fitted(n);
        g.bench_with_input(BenchmarkId::new("lazy", n), &n, |b, &n| {
            b.iter(|| {
                gp.append(&xn, yn).unwrap();
                iteration(&mut gp, 1);
                gp.truncate(n);
            })
        });
        let opts = MaximizeOptions::default();
        let mut pool =
            PoolPosterior::new(5, sample_unit(opts.sampler, opts.candidates, 5, &mut gradlab_core::rng::rng(9)))
                .unwrap();
        pool.sync(&gp).unwrap();
        g.bench_with_input(BenchmarkId::new("lazy_kept_pool", n), &n, |b, &n| {
            b.iter(|| {
                gp.append(&xn, yn).unwrap();
                gp.prepare();
                let best = gp.y().iter().map(|&v| gp.standardise(v)).fold(f64::INFINITY, f64::min);
                let ident = |u: &[f64]| u.to_vec();
                let mut r = gradlab_core::rng::rng(1);
                let cand = Candidates::draw(&gp, &opts, Some(&mut pool), &mut r).unwrap();
                black_box(maximize_over(&Acquisition::default(), &gp, best, &opts, 1, &[], &ident, &cand, &mut r));
                gp.truncate(n);
            })
        });
        g.bench_with_input(BenchmarkId::new("append_only", n), &n, |b, &n| {
            b.iter(|| {
                gp.append(&xn, yn).unwrap();
                gp.truncate(n);
            })
        });
        let (x, y) = (gp.x().to_vec(), gp.y().to_vec());
        g.bench_with_input(BenchmarkId::new("refit", n), &n, |b, _| {
            b.iter(|| {
                let mut fresh = Gp::new(Default::default(), 5, Hyper::default_for(5), Default::default());
                fresh.set_data(x.clone(), y.clone()).unwrap();
                fresh.fit(&FitOptions::default(), 0).unwrap();
                iteration(&mut fresh, 1);
            })
        });
        // the refit with its starts screened (`fit.screen_iter` 10, `fit.screen_keep` 3)
        let screened = FitOptions { screen_iter: 10, screen_keep: 3, ..Default::default() };
        g.bench_with_input(BenchmarkId::new("refit_screened", n), &n, |b, _| {
            b.iter(|| {
                let mut fresh = Gp::new(Default::default(), 5, Hyper::default_for(5), Default::default());
                fresh.set_data(x.clone(), y.clone()).unwrap();
                fresh.fit(&screened, 0).unwrap();
                iteration(&mut fresh, 1);
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
