//! What the benches share: the seed model and its training step, built the way the CLI
//! builds them (`nnc::mlp`, `nnc_autodiff::training_graph`, `nnc_train::JitBackend`);
//! random batches; the matrix products of a step; this machine's peak figures; sample
//! recording and the summary tables.
//!
//! Each bench is its own crate, so not every item is used by every bench.
#![allow(dead_code)]

use criterion::Bencher;
use nnc::mlp::{build_mlp, Layout, MlpSpec};
use nnc_autodiff::{training_graph, Optimizer, TrainGraph, TrainOptions};
use nnc_cranelift::{Kernels, VectorWidth};
use nnc_ir::{Graph, Op, Tensor, TensorType};
use nnc_train::{CompileOptions, JitBackend, Labels, StepBackend};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::hint::black_box;
use std::time::{Duration, Instant};

/// The FMA peak of `threads` cores at the vector width of a kernel family, in
/// GFLOP/s: the best of one core's measurements in this process
/// (`nnc_cranelift::fma_peak_gflops`; see `sample_peak`), times the threads. `None`
/// where it cannot be measured.
pub fn peak(kernels: Kernels, threads: usize) -> Option<f64> {
    let width = width_of(kernels);
    let best = peaks().lock().expect("not poisoned").iter().find(|(w, _)| *w == width).map(|&(_, p)| p);
    let core = match best {
        Some(p) => p,
        None => sample_peak(kernels),
    };
    core.map(|p| p * threads as f64)
}

/// Measures one core's FMA peak at the family's vector width now and keeps the best
/// so far. On a shared host the peak moves with the neighbours' load, so the benches
/// sample it between their runs: the best sample is the fairest yardstick, and the
/// percentages it gives are, if anything, low.
pub fn sample_peak(kernels: Kernels) -> Option<f64> {
    let width = width_of(kernels);
    let now = nnc_cranelift::fma_peak_gflops(width).expect("the peak loop assembles");
    let mut peaks = peaks().lock().expect("not poisoned");
    let best = match peaks.iter_mut().find(|(w, _)| *w == width) {
        Some((_, p)) => {
            *p = match (*p, now) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            };
            *p
        }
        None => {
            peaks.push((width, now));
            now
        }
    };
    best
}

/// The best peak sampled so far per vector width (`None`: cannot be measured here).
type Peaks = std::sync::Mutex<Vec<(VectorWidth, Option<f64>)>>;

fn peaks() -> &'static Peaks {
    static PEAKS: std::sync::OnceLock<Peaks> = std::sync::OnceLock::new();
    PEAKS.get_or_init(Default::default)
}

/// "87%" of the peak, or "—".
pub fn percent_of_peak(gflops: f64, kernels: Kernels, threads: usize) -> String {
    peak(kernels, threads).map_or("—".into(), |p| format!("{:.0}%", 100.0 * gflops / p))
}

/// The kernel families this CPU runs: the assembled ones (widest first), then
/// Cranelift's portable f32x4 kernels.
pub fn families() -> Vec<Kernels> {
    let mut families = Vec::new();
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
        if std::is_x86_feature_detected!("avx512f") {
            families.push(Kernels::Avx512);
        }
        families.push(Kernels::Avx2);
    }
    families.push(Kernels::Cranelift);
    families
}

pub fn family_name(kernels: Kernels) -> &'static str {
    match kernels {
        Kernels::Auto => "auto",
        Kernels::Cranelift => "cranelift",
        Kernels::Avx2 => "avx2",
        Kernels::Avx512 => "avx512",
    }
}

fn width_of(kernels: Kernels) -> VectorWidth {
    match kernels {
        Kernels::Cranelift => VectorWidth::V128,
        Kernels::Avx2 => VectorWidth::V256,
        Kernels::Avx512 => VectorWidth::V512,
        Kernels::Auto => match families()[0] {
            Kernels::Avx512 => VectorWidth::V512,
            Kernels::Avx2 => VectorWidth::V256,
            _ => VectorWidth::V128,
        },
    }
}

/// The seed model: 784-256-10, ReLU, He initialization, seed 0 (`nnc new-mlp`'s default).
pub fn seed_model() -> Graph {
    build_mlp(&MlpSpec::seed_model()).expect("the seed MLP builds")
}

pub fn train_options(optimizer: Optimizer) -> TrainOptions {
    TrainOptions { optimizer, ..TrainOptions::default() }
}

/// The seed model's training step (softmax cross-entropy, `optimizer`), unoptimized:
/// FLOPs are counted on this graph.
pub fn seed_step(optimizer: Optimizer) -> TrainGraph {
    seed_step_in_layout(optimizer, Layout::Matmul)
}

/// [`seed_step`] with the weights stored as `layout` says (`nnc new-mlp --layout`).
pub fn seed_step_in_layout(optimizer: Optimizer, layout: Layout) -> TrainGraph {
    let model = build_mlp(&MlpSpec { layout, ..MlpSpec::seed_model() }).expect("the seed MLP builds");
    training_graph(&model, &train_options(optimizer)).expect("the seed model differentiates")
}

pub fn compile_options(threads: usize, kernels: Kernels) -> CompileOptions {
    CompileOptions { threads, kernels, ..CompileOptions::default() }
}

/// The training step as `nnc train` compiles it, on `threads` threads.
pub fn jit(tg: &TrainGraph, threads: usize, kernels: Kernels) -> JitBackend {
    JitBackend::from_train_graph(tg, &compile_options(threads, kernels)).expect("the training step compiles")
}

/// A random batch of inputs and labels of the backend's shapes.
pub fn random_batch(backend: &JitBackend, batch: usize, seed: u64) -> (Tensor, Tensor) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut dims = vec![batch];
    dims.extend(nnc_train::example_dims(backend.input_type()).expect("an f32 [N, ...] input"));
    let numel = dims.iter().product();
    let x = Tensor::from_f32(&dims, (0..numel).map(|_| rng.random::<f32>()).collect()).expect("shape");
    let y = match backend.labels() {
        Labels::Classes(c) => {
            Tensor::from_i64(&[batch], (0..batch).map(|_| rng.random_range(0..*c as i64)).collect()).expect("shape")
        }
        Labels::Targets(shape) => {
            let mut dims = vec![batch];
            dims.extend(shape);
            let n = dims.iter().product();
            Tensor::from_f32(&dims, (0..n).map(|_| rng.random::<f32>()).collect()).expect("shape")
        }
    };
    (x, y)
}

/// `op(A)[m,k] · op(B)[k,n]`, `count` times (the leading, broadcast dimensions).
#[derive(Clone, Debug, PartialEq)]
pub struct Product {
    /// The graph value it computes.
    pub name: String,
    pub count: usize,
    pub m: usize,
    pub k: usize,
    pub n: usize,
    pub trans_a: bool,
    pub trans_b: bool,
    /// The operands' types in the step, the batch dimension still symbolic: a product
    /// compiled from them makes the run-time choices the step makes.
    pub types: [TensorType; 2],
}

impl Product {
    pub fn flops(&self) -> u64 {
        2 * (self.count * self.m * self.k * self.n) as u64
    }

    /// Stored shapes of A and B (before the transposes).
    pub fn shapes(&self) -> (Vec<usize>, Vec<usize>) {
        let a = if self.trans_a { vec![self.k, self.m] } else { vec![self.m, self.k] };
        let b = if self.trans_b { vec![self.n, self.k] } else { vec![self.k, self.n] };
        (a, b)
    }

    /// E.g. `A[100,784]·B[784,256]` or `A[100,784]ᵀ·B[100,256]`.
    pub fn describe(&self) -> String {
        let (a, b) = self.shapes();
        let t = |x: bool| if x { "ᵀ" } else { "" };
        format!("A[{},{}]{}·B[{},{}]{}", a[0], a[1], t(self.trans_a), b[0], b[1], t(self.trans_b))
    }
}

/// The matrix products of `graph` at this batch size, distinct shapes once each.
pub fn products(graph: &Graph, batch: usize) -> Vec<Product> {
    let mut out: Vec<Product> = Vec::new();
    for id in graph.ids() {
        let v = graph.value(id);
        let Op::MatMul { trans_a, trans_b } = v.op else { continue };
        let a = graph.ty(v.args[0]).shape.resolve(batch);
        let b = graph.ty(v.args[1]).shape.resolve(batch);
        let o = v.ty.shape.resolve(batch);
        let (m, k) = if trans_a { (a[a.len() - 1], a[a.len() - 2]) } else { (a[a.len() - 2], a[a.len() - 1]) };
        let n = if trans_b { b[b.len() - 2] } else { b[b.len() - 1] };
        let count = o[..o.len() - 2].iter().product();
        let types = [graph.ty(v.args[0]).clone(), graph.ty(v.args[1]).clone()];
        let p = Product { name: v.name.clone(), count, m, k, n, trans_a, trans_b, types };
        if !out.iter().any(|q| (q.count, q.m, q.k, q.n, q.trans_a, q.trans_b) == (count, m, k, n, trans_a, trans_b)) {
            out.push(p);
        }
    }
    out
}

/// Criterion's samples of one benchmark, as seconds per iteration, recorded through
/// `iter_custom` so the summary tables show what criterion measured.
#[derive(Default)]
pub struct Samples(Vec<f64>);

impl Samples {
    /// Times `f` the way `Bencher::iter` does and keeps each sample's mean.
    pub fn iter<O>(&mut self, b: &mut Bencher<'_>, mut f: impl FnMut() -> O) {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                black_box(f());
            }
            let elapsed = start.elapsed();
            self.0.push(elapsed.as_secs_f64() / iters.max(1) as f64);
            elapsed
        });
    }

    /// The median seconds per iteration of the last `n` samples (criterion's
    /// measurement; the warm-up comes first), or None if the benchmark did not run
    /// (filtered out).
    pub fn median(&self, n: usize) -> Option<f64> {
        let last = self.last_sorted(n);
        last.get(last.len() / 2).copied()
    }

    /// The fastest of the last `n` samples (each the mean of many iterations): on a
    /// shared host, the closest to what the code does when left alone.
    pub fn best(&self, n: usize) -> Option<f64> {
        self.last_sorted(n).first().copied()
    }

    fn last_sorted(&self, n: usize) -> Vec<f64> {
        let mut last: Vec<f64> = self.0[self.0.len().saturating_sub(n)..].to_vec();
        last.sort_by(f64::total_cmp);
        last
    }
}

/// Short runs: the whole suite should take a few minutes on two cores.
pub fn configure(group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>, samples: usize) {
    group.sample_size(samples).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(3));
}

/// Whether criterion is only checking that the benches run (`cargo test --benches`,
/// `--test`, `--list`): then the summary tables would be noise.
pub fn summary_wanted() -> bool {
    let args: Vec<String> = std::env::args().collect();
    args.iter().any(|a| a == "--bench") && !args.iter().any(|a| a == "--test" || a == "--list")
}

/// Prints a markdown table (ready to paste into docs/performance.md).
pub fn print_table(title: &str, header: &[&str], rows: &[Vec<String>]) {
    if rows.is_empty() {
        return;
    }
    println!("\n{title}\n");
    println!("| {} |", header.join(" | "));
    // Numbers right, text left.
    let numeric = |i: usize| rows.iter().all(|r| r[i].starts_with(|c: char| c.is_ascii_digit() || c == '—'));
    let align: Vec<&str> = (0..header.len()).map(|i| if numeric(i) { "---:" } else { "---" }).collect();
    println!("| {} |", align.join(" | "));
    for row in rows {
        println!("| {} |", row.join(" | "));
    }
    println!();
}

/// Runs one training step; the tiny learning rate keeps the parameters (and so the
/// work) the same across steps, as `nnc bench` does.
pub fn step(backend: &mut JitBackend, x: &Tensor, y: &Tensor, step: u64) {
    backend.step(x, y, 1e-6, step).expect("the step runs");
}
