//! `nnc bench`: how fast the jitted training step of a model runs on this machine.
//!
//! Random inputs and labels of the model's shapes; a few warm-up steps, then the
//! median of many timed steps (the median resists the noise of a shared machine).

use anyhow::{Context, Result};
use nnc_ir::{cost, Graph, Tensor};
use nnc_train::{JitBackend, Labels, StepBackend};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::time::Instant;

pub struct BenchRequest {
    pub model: Graph,
    pub options: nnc_autodiff::TrainOptions,
    pub batch: usize,
    pub steps: usize,
    pub json: bool,
}

/// The figures `nnc bench` reports.
#[derive(serde::Serialize)]
struct BenchReport {
    model: String,
    batch: usize,
    steps_timed: usize,
    step_ms_median: f64,
    step_ms_min: f64,
    samples_per_s: f64,
    /// FLOPs of one step at this batch size, from the IR.
    flops_per_step: u64,
    gflops: f64,
    compile_ms: f64,
    /// Which kernel family ran the matrix products.
    kernels: &'static str,
    kernel_count: usize,
    threads: usize,
}

pub fn run_bench(req: BenchRequest) -> Result<()> {
    let BenchRequest { model, options, batch, steps, json } = req;
    anyhow::ensure!(batch > 0 && steps > 0, "--batch and --steps must be at least 1");
    let tg = nnc_autodiff::training_graph(&model, &options).context("cannot form the training step")?;
    let flops = cost::flops(&tg.graph, batch);
    let started = Instant::now();
    let mut backend =
        JitBackend::from_train_graph(&tg, &Default::default()).context("cannot compile the training step")?;
    let compile_ms = started.elapsed().as_secs_f64() * 1e3;

    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let mut dims = vec![batch];
    dims.extend(nnc_train::example_dims(backend.input_type())?);
    let numel: usize = dims.iter().product();
    let x = Tensor::from_f32(&dims, (0..numel).map(|_| rng.random::<f32>()).collect())?;
    let y = match backend.labels() {
        Labels::Classes(c) => Tensor::from_i64(&[batch], (0..batch).map(|_| rng.random_range(0..*c as i64)).collect())?,
        Labels::Targets(shape) => {
            let mut dims = vec![batch];
            dims.extend(shape);
            let n: usize = dims.iter().product();
            Tensor::from_f32(&dims, (0..n).map(|_| rng.random::<f32>()).collect())?
        }
    };
    // A tiny learning rate keeps the parameters (and so the work) the same across steps.
    let lr = 1e-6;
    for step in 1..=5 {
        backend.step(&x, &y, lr, step)?;
    }
    let mut times = Vec::with_capacity(steps);
    for step in 0..steps {
        let t = Instant::now();
        backend.step(&x, &y, lr, 6 + step as u64)?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    let report = BenchReport {
        model: model.name.clone(),
        batch,
        steps_timed: steps,
        step_ms_median: median,
        step_ms_min: times[0],
        samples_per_s: batch as f64 / (median / 1e3),
        flops_per_step: flops,
        gflops: flops as f64 / (median / 1e3) / 1e9,
        compile_ms,
        kernels: "cranelift-f32x4",
        kernel_count: backend.kernel_count(),
        threads: 1,
    };
    let text = if json {
        serde_json::to_string(&report).context("cannot encode the report")? + "\n"
    } else {
        format!(
            "training step of {} at batch {}: median {:.3} ms (min {:.3} ms) over {} steps\n\
             {:.0} samples/s, {:.1} GFLOP/s ({:.1} MFLOP per step), {} kernels ({}), {} thread\n\
             compiled in {:.1} ms\n",
            report.model,
            batch,
            report.step_ms_median,
            report.step_ms_min,
            steps,
            report.samples_per_s,
            report.gflops,
            flops as f64 / 1e6,
            report.kernel_count,
            report.kernels,
            report.threads,
            report.compile_ms
        )
    };
    crate::write_stdout(&text)
}
