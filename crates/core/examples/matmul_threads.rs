//! Where splitting a matrix product over 2 threads starts to pay, on this machine: times the
//! `gemm` crate's f32 product `[n, k]·[k, m]` (the call `gradlab_core::ops::matmul` makes) on
//! one thread and on 2, for a range of sizes, and prints `macs  t1  t2  t1/t2`. This is how
//! `gradlab_core::ops::PARALLEL_MIN_MACS` was chosen.
//!
//! `cargo run --release -p gradlab-core --example matmul_threads` (stop other work meanwhile).

use std::time::Instant;

fn time(reps: usize, mut f: impl FnMut()) -> f64 {
    f();
    let mut v: Vec<f64> = (0..reps)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .collect();
    v.sort_by(f64::total_cmp);
    v[reps / 2]
}

fn main() {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().expect("a 2-thread pool");
    println!("{:>8} {:>5} {:>5} {:>12} {:>10} {:>10} {:>7}", "n", "k", "m", "macs", "1 thr µs", "2 thr µs", "t1/t2");
    println!("(last two columns: 2 threads called from outside the pool, as from a program's main thread)");
    for (n, k, m) in [
        (64, 128, 128),
        (128, 128, 128),
        (256, 32, 128),
        (256, 128, 128),
        (256, 128, 28),
        (512, 128, 128),
        (1024, 128, 128),
        (4096, 32, 128),
        (4096, 128, 128),
        (4096, 128, 28),
        (128, 4096, 128),
        (16384, 128, 128),
    ] {
        let a: Vec<f32> = (0..n * k).map(|i| (i % 13) as f32 * 0.1).collect();
        let b: Vec<f32> = (0..k * m).map(|i| (i % 7) as f32 * 0.1).collect();
        let mut c = vec![0f32; n * m];
        let mut run = |par| unsafe {
            // SAFETY: row-major a [n, k], b [k, m], c [n, m], all of exactly those sizes.
            gemm::gemm(
                n,
                m,
                k,
                c.as_mut_ptr(),
                1,
                m as isize,
                false,
                a.as_ptr(),
                1,
                k as isize,
                b.as_ptr(),
                1,
                m as isize,
                0.0,
                1.0,
                false,
                false,
                false,
                par,
            )
        };
        let reps = (2e8 / (n * k * m) as f64).clamp(5.0, 2001.0) as usize;
        let t1 = pool.install(|| time(reps, || run(gemm::Parallelism::None)));
        let t2 = pool.install(|| time(reps, || run(gemm::Parallelism::Rayon(2))));
        // From a thread outside the pool (the main thread of a program): the work is injected
        // into the pool and the caller waits.
        let t2_out = pool.in_place_scope(|_| time(reps, || pool.install(|| run(gemm::Parallelism::Rayon(2)))));
        println!(
            "{n:>8} {k:>5} {m:>5} {:>12} {:>10.1} {:>10.1} {:>7.2} {:>10.1} {:>7.2}",
            n * k * m,
            1e6 * t1,
            1e6 * t2,
            t1 / t2,
            1e6 * t2_out,
            t1 / t2_out
        );
    }
}
