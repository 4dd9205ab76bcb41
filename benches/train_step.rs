//! One training step of the seed model (784-256-10 MLP, ReLU, softmax cross-entropy)
//! as `nnc train` runs it (`nnc_train::JitBackend`): SGD at batch 1, 32, 100, 256 and
//! 1024 on 1 and 2 threads with each assembled kernel family this CPU runs (AVX-512,
//! AVX2), the portable Cranelift kernels at batch 100, one Adam step at batch 100, and
//! SGD with the weights stored `[out, in]` as PyTorch exports them (`nnc new-mlp
//! --layout gemm`) at batch 1, 100 and 1024 with the default kernels.
//!
//! `cargo bench -j2 --bench train_step`
//!
//! Criterion's throughput is in examples, so its "elem/s" are samples/s. At the end a
//! table gives ms/step, GFLOP/s (FLOPs of the unoptimized step, `nnc_ir::cost::flops`),
//! the share of the FMA peak of the threads used at the family's vector width, and the
//! 2-thread/1-thread speed ratio (all measured in this process).

mod common;

use common::Samples;
use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput};
use nnc::mlp::Layout;
use nnc_autodiff::Optimizer;
use nnc_cranelift::Kernels;

const BATCHES: [usize; 5] = [1, 32, 100, 256, 1024];
const THREADS: [usize; 2] = [1, 2];
const SAMPLES: usize = 10;

struct Row {
    kernels: Kernels,
    optimizer: &'static str,
    batch: usize,
    threads: usize,
    flops: u64,
    seconds: Option<f64>,
}

fn bench(c: &mut Criterion) -> Vec<Row> {
    let mut rows = Vec::new();
    let mut group = c.benchmark_group("train_step");
    common::configure(&mut group, SAMPLES);
    /// Kernels, label, optimizer, weight layout, batches, thread counts.
    type Run = (Kernels, &'static str, Optimizer, Layout, &'static [usize], &'static [usize]);
    let mut runs: Vec<Run> = Vec::new();
    for kernels in common::families() {
        let batches: &[usize] = if kernels == Kernels::Cranelift { &[100] } else { &BATCHES };
        runs.push((kernels, "sgd", Optimizer::Sgd, Layout::Matmul, batches, &THREADS));
    }
    runs.push((Kernels::Auto, "adam", Optimizer::adam(), Layout::Matmul, &[100], &[1]));
    runs.push((Kernels::Auto, "sgd, gemm layout", Optimizer::Sgd, Layout::Gemm, &[1, 100, 1024], &THREADS));
    for (kernels, label, optimizer, layout, batches, threads) in runs {
        let tg = common::seed_step_in_layout(optimizer, layout);
        let family = common::family_name(kernels);
        for &t in threads {
            let mut backend = common::jit(&tg, t, kernels);
            for &batch in batches {
                let (x, y) = common::random_batch(&backend, batch, 0);
                let mut samples = Samples::default();
                let mut n = 0;
                group.throughput(Throughput::Elements(batch as u64));
                // Long steps: the same iterations per sample, so 10 samples fit the time.
                group.sampling_mode(if batch >= 256 { SamplingMode::Flat } else { SamplingMode::Auto });
                group.bench_function(BenchmarkId::new(format!("{label}/{family}/threads{t}"), batch), |b| {
                    samples.iter(b, || {
                        n += 1;
                        common::step(&mut backend, &x, &y, n)
                    })
                });
                let flops = nnc_ir::cost::flops(&tg.graph, batch);
                rows.push(Row {
                    kernels,
                    optimizer: label,
                    batch,
                    threads: t,
                    flops,
                    seconds: samples.median(SAMPLES),
                });
            }
        }
        if rows.last().is_some_and(|r: &Row| r.seconds.is_some()) {
            common::sample_peak(kernels);
        }
    }
    group.finish();
    rows
}

fn summary(rows: &[Row]) {
    let one_thread = |r: &Row| {
        let same = |o: &&Row| o.kernels == r.kernels && o.optimizer == r.optimizer && o.batch == r.batch;
        rows.iter().filter(same).find(|o| o.threads == 1)?.seconds
    };
    let table: Vec<Vec<String>> = rows
        .iter()
        .filter_map(|r| {
            let s = r.seconds?;
            let gflops = r.flops as f64 / s / 1e9;
            let ratio = match one_thread(r) {
                Some(s1) if r.threads != 1 => format!("{:.2}×", s1 / s),
                _ => "—".to_string(),
            };
            Some(vec![
                common::family_name(r.kernels).to_string(),
                r.optimizer.to_string(),
                r.batch.to_string(),
                r.threads.to_string(),
                format!("{:.3}", s * 1e3),
                format!("{:.0}", r.batch as f64 / s),
                format!("{:.1}", gflops),
                common::percent_of_peak(gflops, r.kernels, r.threads),
                ratio,
            ])
        })
        .collect();
    common::print_table(
        "Seed training step (median of criterion's samples; peak: the measured FMA peak of the threads used at \
         the kernels' vector width)",
        &[
            "kernels",
            "optimizer",
            "batch",
            "threads",
            "ms/step",
            "samples/s",
            "GFLOP/s",
            "% of peak",
            "speed-up vs 1 thread",
        ],
        &table,
    );
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    let rows = bench(&mut c);
    c.final_summary();
    if common::summary_wanted() {
        summary(&rows);
    }
}
