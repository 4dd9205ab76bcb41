//! One training step of the seed model (784-256-10 MLP, ReLU, softmax cross-entropy)
//! as `nnc train` runs it (`nnc_train::JitBackend`): SGD at batch 1, 32, 100, 256 and
//! 1024 on 1 and 2 threads, and one Adam step at batch 100.
//!
//! `cargo bench -j2 --bench train_step`
//!
//! Criterion's throughput is in examples, so its "elem/s" are samples/s. At the end a
//! table gives ms/step, GFLOP/s (FLOPs of the unoptimized step, `nnc_ir::cost::flops`),
//! the share of the 128-bit FMA peak of the threads used, and the 2-thread/1-thread
//! speed ratio (both measured in this process).

mod common;

use common::{Samples, PEAK_128_GFLOPS_PER_CORE};
use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput};
use nnc_autodiff::Optimizer;

const BATCHES: [usize; 5] = [1, 32, 100, 256, 1024];
const THREADS: [usize; 2] = [1, 2];
const SAMPLES: usize = 10;

struct Row {
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
    let runs: Vec<(&'static str, Optimizer, &[usize], &[usize])> =
        vec![("sgd", Optimizer::Sgd, &BATCHES, &THREADS), ("adam", Optimizer::adam(), &[100], &[1])];
    for (label, optimizer, batches, threads) in runs {
        let tg = common::seed_step(optimizer);
        for &t in threads {
            let mut backend = common::jit(&tg, t);
            for &batch in batches {
                let (x, y) = common::random_batch(&backend, batch, 0);
                let mut samples = Samples::default();
                let mut n = 0;
                group.throughput(Throughput::Elements(batch as u64));
                // Long steps: the same iterations per sample, so 10 samples fit the time.
                group.sampling_mode(if batch >= 256 { SamplingMode::Flat } else { SamplingMode::Auto });
                group.bench_function(BenchmarkId::new(format!("{label}/threads{t}"), batch), |b| {
                    samples.iter(b, || {
                        n += 1;
                        common::step(&mut backend, &x, &y, n)
                    })
                });
                let flops = nnc_ir::cost::flops(&tg.graph, batch);
                rows.push(Row { optimizer: label, batch, threads: t, flops, seconds: samples.median(SAMPLES) });
            }
        }
    }
    group.finish();
    rows
}

fn summary(rows: &[Row]) {
    let one_thread =
        |r: &Row| rows.iter().find(|o| o.optimizer == r.optimizer && o.batch == r.batch && o.threads == 1)?.seconds;
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
                r.optimizer.to_string(),
                r.batch.to_string(),
                r.threads.to_string(),
                format!("{:.3}", s * 1e3),
                format!("{:.0}", r.batch as f64 / s),
                format!("{:.1}", gflops),
                format!("{:.0}%", 100.0 * gflops / common::peak_128(r.threads)),
                ratio,
            ])
        })
        .collect();
    common::print_table(
        &format!(
            "Seed training step (median of criterion's samples; peak = threads × {PEAK_128_GFLOPS_PER_CORE} GFLOP/s, \
             128-bit FMA)"
        ),
        &["optimizer", "batch", "threads", "ms/step", "samples/s", "GFLOP/s", "% of peak", "speed-up vs 1 thread"],
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
