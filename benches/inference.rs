//! The seed model's forward pass (784-256-10 MLP, logits out) as `nnc eval` runs it
//! (`StepBackend::infer` of `nnc_train::JitBackend`), at batch 1 and 100 on 1 and 2
//! threads.
//!
//! `cargo bench -j2 --bench inference`

mod common;

use common::Samples;
use criterion::{BenchmarkId, Criterion, Throughput};
use nnc_autodiff::Optimizer;
use nnc_cranelift::Kernels;
use nnc_train::StepBackend;

const BATCHES: [usize; 2] = [1, 100];
const THREADS: [usize; 2] = [1, 2];
const SAMPLES: usize = 20;

fn main() {
    let mut c = Criterion::default().configure_from_args();
    let model = common::seed_model();
    let tg = common::seed_step(Optimizer::Sgd);
    let mut rows = Vec::new();
    let mut group = c.benchmark_group("inference");
    common::configure(&mut group, SAMPLES);
    for threads in THREADS {
        let mut backend = common::jit(&tg, threads, Kernels::Auto);
        for batch in BATCHES {
            let (x, _) = common::random_batch(&backend, batch, 0);
            let mut samples = Samples::default();
            group.throughput(Throughput::Elements(batch as u64));
            group.bench_function(BenchmarkId::new(format!("threads{threads}"), batch), |b| {
                samples.iter(b, || backend.infer(&x).expect("inference runs"))
            });
            if let Some(s) = samples.median(SAMPLES) {
                common::sample_peak(Kernels::Auto);
                let gflops = nnc_ir::cost::flops(&model, batch) as f64 / s / 1e9;
                rows.push(vec![
                    batch.to_string(),
                    threads.to_string(),
                    format!("{:.1}", s * 1e6),
                    format!("{:.0}", batch as f64 / s),
                    format!("{gflops:.1}"),
                    common::percent_of_peak(gflops, Kernels::Auto, threads),
                ]);
            }
        }
    }
    group.finish();
    c.final_summary();
    if common::summary_wanted() {
        common::print_table(
            "Seed model inference, `auto` kernels (median of criterion's samples; peak: measured FMA peak of the \
             threads used at the kernels' vector width)",
            &["batch", "threads", "µs/batch", "samples/s", "GFLOP/s", "% of peak"],
            &rows,
        );
    }
}
