//! One train-mode forward + backward of the line-graph interaction network (issue 14).
//!
//! `cargo bench -p gradlab-track --bench gnn`
//!
//! Frames: the Bergen DTC behind 150 mm of water, 100 and 150 primaries, default
//! [`GnnConfig`] (hidden 16, 128-wide angle encoding). Loss: sum of squared logits. Everything
//! runs in a 2-thread rayon pool (candle's GEMM uses the current rayon pool).
//!
//! Printed per frame: K (messages), N (line-graph nodes), the forward+backward flop count of the
//! architecture (every linear layer `2·m·k·n`, ×3 for forward + backward), the measured candle
//! GEMM rate here, the implied flop-limit time, and the peak memory of one forward + backward.
//! Peak memory is measured by the counting global allocator of this bench binary: the high-water
//! mark of live heap bytes during one forward + backward minus the live bytes before it.
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use gradlab_track::gnn::GnnConfig;
use gradlab_track::graph::GraphConfig;
use gradlab_track::sim::{SimConfig, Simulator};
use gradlab_track::training::{FrameData, Model};
use std::alloc::{GlobalAlloc, Layout};
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use candle_core::{Device, Tensor};

/// Counts live heap bytes and their high-water mark on top of mimalloc (the allocator `xtask`
/// uses; glibc malloc page-faults heavily on large tensors).
struct Counting<A>(A);

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl<A: GlobalAlloc> GlobalAlloc for Counting<A> {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let p = unsafe { self.0.alloc(l) };
        if !p.is_null() {
            let now = LIVE.fetch_add(l.size(), Ordering::Relaxed) + l.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        let p = unsafe { self.0.alloc_zeroed(l) };
        if !p.is_null() {
            let now = LIVE.fetch_add(l.size(), Ordering::Relaxed) + l.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { self.0.dealloc(p, l) };
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        let q = unsafe { self.0.realloc(p, l, new) };
        if !q.is_null() {
            if new >= l.size() {
                let now = LIVE.fetch_add(new - l.size(), Ordering::Relaxed) + new - l.size();
                PEAK.fetch_max(now, Ordering::Relaxed);
            } else {
                LIVE.fetch_sub(l.size() - new, Ordering::Relaxed);
            }
        }
        q
    }
}

#[global_allocator]
static GLOBAL: Counting<mimalloc::MiMalloc> = Counting(mimalloc::MiMalloc);

const THREADS: usize = 2;
const THICKNESS_MM: f64 = 150.0;

fn frame(primaries: usize, cfg: &GnnConfig) -> FrameData {
    let sim = Simulator::new(&SimConfig::bergen(THICKNESS_MM, primaries)).unwrap();
    let f = sim.simulate_frame(1, 0);
    FrameData::new(&f, &GraphConfig::default(), cfg, 2, &Device::Cpu).unwrap()
}

/// One train-mode forward + backward; returns the loss.
fn step(model: &Model, fd: &FrameData) -> f32 {
    let z = model.net.forward_t(&fd.input, true).unwrap();
    let loss = z.sqr().unwrap().sum_all().unwrap();
    let grads = loss.backward().unwrap();
    black_box(&grads);
    loss.to_scalar::<f32>().unwrap()
}

/// Forward + backward flops of the architecture (line graph): every linear layer `2·m·k·n`, ×3.
fn arch_flops(n: usize, k: usize, pairs: usize, cfg: &GnnConfig) -> f64 {
    let h = cfg.hidden as f64;
    let (n, k, p) = (n as f64, k as f64, pairs as f64);
    let d = cfg.angle_encoding_dim as f64;
    let layer = |m: f64, i: f64, o: f64| 2.0 * m * i * o;
    let r1_first = layer(n, 8.0, h) * 2.0 + layer(p, d, h);
    let r1_tail = layer(k, h, h) * 2.0;
    let object = layer(n, 8.0 + h, h) + layer(n, h, h) * 2.0;
    let head = layer(n, h, h) * 2.0 + layer(n, h, 1.0);
    3.0 * (r1_first + r1_tail + object + head)
}

fn median_secs(reps: usize, mut f: impl FnMut()) -> f64 {
    let mut t: Vec<f64> = (0..reps)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed().as_secs_f64()
        })
        .collect();
    t.sort_by(|a, b| a.partial_cmp(b).unwrap());
    t[reps / 2]
}

/// Candle's GEMM rate [flop/s] on `[m, k] × [k, n]` (f32).
fn gemm_rate(m: usize, k: usize, n: usize) -> f64 {
    let a = Tensor::randn(0f32, 1.0, (m, k), &Device::Cpu).unwrap();
    let b = Tensor::randn(0f32, 1.0, (n, k), &Device::Cpu).unwrap().t().unwrap();
    let _ = a.matmul(&b).unwrap();
    let s = median_secs(15, || {
        black_box(a.matmul(&b).unwrap());
    });
    2.0 * (m * k * n) as f64 / s
}

fn report(primaries: usize, model: &Model, fd: &FrameData, cfg: &GnnConfig) {
    let k = fd.input.num_messages();
    let n = fd.input.n;
    let pairs = k / 2;
    let flops = arch_flops(n, k, pairs, cfg);
    let rate_small = gemm_rate(k, cfg.hidden, cfg.hidden);
    let rate_enc = gemm_rate(pairs, cfg.angle_encoding_dim, cfg.hidden);
    // Peak memory of one forward + backward (after a warm-up step).
    step(model, fd);
    let before = LIVE.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    step(model, fd);
    let peak = PEAK.load(Ordering::Relaxed) - before;
    let t = median_secs(5, || {
        step(model, fd);
    });
    println!(
        "gnn {primaries}p/{THICKNESS_MM}mm: N = {n}, K = {k} messages, {pairs} pairs; fwd+bwd flops (architecture, ×3) = {:.3} GFLOP",
        flops / 1e9
    );
    println!(
        "  candle GEMM [K,16]x[16,16]: {:.2} GFLOP/s -> flop-limit {:.1} ms; [P,128]x[128,16]: {:.2} GFLOP/s -> flop-limit {:.1} ms",
        rate_small / 1e9,
        flops / rate_small * 1e3,
        rate_enc / 1e9,
        flops / rate_enc * 1e3
    );
    println!(
        "  peak heap per fwd+bwd (counting allocator) = {:.1} MB; median of 5 fwd+bwd = {:.1} ms",
        peak as f64 / 1e6,
        t * 1e3
    );
}

fn forward_backward(c: &mut Criterion) {
    let _ = rayon::ThreadPoolBuilder::new().num_threads(THREADS).build_global();
    let cfg = GnnConfig::default();
    let model = Model::new(&cfg, 7).unwrap();
    let mut group = c.benchmark_group("gnn_fwd_bwd");
    group.sample_size(10);
    let mut frames = Vec::new();
    for primaries in [100usize, 150] {
        let fd = frame(primaries, &cfg);
        report(primaries, &model, &fd, &cfg);
        group.bench_function(BenchmarkId::new("line_150mm", primaries), |b| b.iter(|| step(&model, &fd)));
        frames.push(fd);
    }
    // Two 100-primary frames at once, one per thread (compare with twice the single-frame time).
    let sim = Simulator::new(&SimConfig::bergen(THICKNESS_MM, 100)).unwrap();
    let other = FrameData::new(&sim.simulate_frame(1, 1), &GraphConfig::default(), &cfg, 2, &Device::Cpu).unwrap();
    let first = &frames[0];
    group.bench_function(BenchmarkId::new("line_150mm_two_frames_join", 100), |b| {
        b.iter(|| rayon::join(|| step(&model, first), || step(&model, &other)))
    });
    group.finish();
}

criterion_group!(benches, forward_backward);
criterion_main!(benches);
