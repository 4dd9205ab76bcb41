//! `nnc bench`: how fast the jitted training step of a model runs on this machine, or
//! with `--infer` its inference pass.
//!
//! Random inputs and labels of the model's shapes; a few warm-up steps, then the
//! median of many timed steps (the median resists the noise of a shared machine).
//!
//! Beside the step, a baseline runs in the same process, interleaved with the timed
//! steps so both see the same machine: the step's own matrix products at the same
//! batch, computed by `ndarray`'s `.dot()` (the matrixmultiply crate, one thread).
//! Its GFLOP/s and the step's ratio to it compare across machines and noisy runs
//! better than an absolute figure. The peak it reports is measured too, in the same
//! process (`nnc_cranelift::fma_peak_gflops`): one core's FMA rate at the vector width
//! of the kernels that ran, times the threads.

use anyhow::{Context, Result};
use ndarray::Array2;
use nnc_ir::{cost, Graph, Op, Tensor};
use nnc_train::{CompileOptions, JitBackend, Labels, StepBackend};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::time::Instant;

/// More threads than this is a typo, not a request.
const MAX_THREADS: usize = 256;
/// Baseline rounds are spread over the timed steps, at most this many.
const MAX_BASELINE_ROUNDS: usize = 50;

pub struct BenchRequest {
    pub model: Graph,
    pub options: nnc_autodiff::TrainOptions,
    pub batch: usize,
    pub steps: usize,
    /// 0: one per available core.
    pub threads: usize,
    pub kernels: nnc_cranelift::Kernels,
    /// Time the inference pass instead of the training step.
    pub infer: bool,
    pub json: bool,
}

/// The figures `nnc bench` reports.
#[derive(serde::Serialize)]
struct BenchReport {
    model: String,
    /// `train` (the training step) or `infer` (the inference pass).
    mode: &'static str,
    /// The training step's optimizer (absent for inference).
    #[serde(skip_serializing_if = "Option::is_none")]
    optimizer: Option<&'static str>,
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
    /// Width of that family's FMA vectors, in bits.
    vector_bits: u32,
    /// Measured FMA peak at that width on `threads` cores (absent where it cannot be
    /// measured).
    #[serde(skip_serializing_if = "Option::is_none")]
    peak_gflops: Option<f64>,
    /// `gflops` as a percentage of `peak_gflops`.
    #[serde(skip_serializing_if = "Option::is_none")]
    percent_of_peak: Option<f64>,
    kernel_count: usize,
    /// Worker threads the step was compiled for (`--threads 0` resolved).
    threads: usize,
    /// FLOPs of the step's matrix products (the part the baseline computes).
    #[serde(skip_serializing_if = "Option::is_none")]
    matmul_flops_per_step: Option<u64>,
    /// GFLOP/s of `ndarray`'s `.dot()` (one thread) on the step's matrix products at
    /// this batch, measured in this process; absent for a model without any.
    #[serde(skip_serializing_if = "Option::is_none")]
    baseline_gflops: Option<f64>,
    /// `gflops / baseline_gflops`: the whole step against the baseline's products.
    #[serde(skip_serializing_if = "Option::is_none")]
    ratio_to_baseline: Option<f64>,
}

/// The threads a request resolves to.
fn resolve_threads(threads: usize) -> Result<usize> {
    anyhow::ensure!(threads <= MAX_THREADS, "--threads {threads}: at most {MAX_THREADS} threads");
    Ok(match threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()).min(MAX_THREADS),
        n => n,
    })
}

fn optimizer_name(o: &nnc_autodiff::Optimizer) -> &'static str {
    match o {
        nnc_autodiff::Optimizer::Sgd => "sgd",
        nnc_autodiff::Optimizer::Momentum { .. } => "momentum",
        nnc_autodiff::Optimizer::Adam { .. } => "adam",
    }
}

/// `op(A)·op(B)`, `count` times (the product's leading dimensions), on ndarray.
struct Product {
    a: Array2<f32>,
    b: Array2<f32>,
    trans_a: bool,
    trans_b: bool,
    count: usize,
}

/// The matrix products of a graph at one batch size, with random operands.
struct Baseline {
    products: Vec<Product>,
    flops: u64,
}

impl Baseline {
    fn new(graph: &Graph, batch: usize, rng: &mut ChaCha8Rng) -> Option<Baseline> {
        let mut products = Vec::new();
        let mut flops = 0;
        for id in graph.ids() {
            let v = graph.value(id);
            let Op::MatMul { trans_a, trans_b } = v.op else { continue };
            let a = graph.ty(v.args[0]).shape.resolve(batch);
            let b = graph.ty(v.args[1]).shape.resolve(batch);
            let out = v.ty.shape.resolve(batch);
            let matrix = |s: &[usize], rng: &mut ChaCha8Rng| {
                let (r, c) = (s[s.len() - 2], s[s.len() - 1]);
                Array2::from_shape_simple_fn((r, c), || rng.random::<f32>() - 0.5)
            };
            let (a, b) = (matrix(&a, rng), matrix(&b, rng));
            let count: usize = out[..out.len() - 2].iter().product();
            flops += cost::value_flops(graph, id, batch);
            products.push(Product { a, b, trans_a, trans_b, count });
        }
        (!products.is_empty()).then_some(Baseline { products, flops })
    }

    /// Computes every product once; returns the seconds it took.
    fn round(&self) -> f64 {
        let start = Instant::now();
        for p in &self.products {
            let a = if p.trans_a { p.a.t() } else { p.a.view() };
            let b = if p.trans_b { p.b.t() } else { p.b.view() };
            for _ in 0..p.count {
                std::hint::black_box(a.dot(&b));
            }
        }
        start.elapsed().as_secs_f64()
    }
}

fn median(times: &mut [f64]) -> f64 {
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

/// What is timed: one run of the compiled training step or inference pass.
struct Subject {
    run: Box<dyn FnMut(u64) -> Result<()>>,
    /// The graph whose FLOPs and matrix products one run does.
    graph: Graph,
    kernel_count: usize,
    threads: usize,
    family: &'static str,
    width: nnc_cranelift::VectorWidth,
}

/// The training step on random inputs and labels.
fn training_step(tg: nnc_autodiff::TrainGraph, compile: &CompileOptions, batch: usize) -> Result<Subject> {
    let mut backend = JitBackend::from_train_graph(&tg, compile).context("cannot compile the training step")?;
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
    let (kernel_count, threads, family, width) =
        (backend.kernel_count(), backend.threads(), backend.kernel_family(), backend.vector_width());
    // A tiny learning rate keeps the parameters (and so the work) the same across steps.
    let run = Box::new(move |step: u64| backend.step(&x, &y, 1e-6, step).map(|_| ()).map_err(Into::into));
    Ok(Subject { run, graph: tg.graph, kernel_count, threads, family, width })
}

/// The inference pass on random inputs (f32, the batch where the model has it).
fn inference(model: &Graph, compile: &CompileOptions, batch: usize) -> Result<Subject> {
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let mut inputs = Vec::new();
    for id in model.inputs() {
        let ty = model.ty(id);
        anyhow::ensure!(
            ty.dtype == nnc_ir::DType::F32,
            "--infer feeds random f32 inputs, and input \"{}\" is {ty}",
            model.name_of(id)
        );
        let dims = ty.shape.resolve(batch);
        let n: usize = dims.iter().product();
        inputs.push((
            model.name_of(id).to_string(),
            Tensor::from_f32(&dims, (0..n).map(|_| rng.random::<f32>()).collect())?,
        ));
    }
    let mut compiled =
        nnc_pipeline::compile(model, &Default::default(), compile).context("cannot compile the inference pass")?;
    let (kernel_count, threads, family, width) =
        (compiled.kernel_count(), compiled.threads(), compiled.kernel_family(), compiled.vector_width());
    let run = Box::new(move |_| {
        let feeds = inputs.iter().map(|(name, t)| (name.as_str(), t)).collect();
        compiled.run_views(&feeds).map(|_| ()).map_err(Into::into)
    });
    Ok(Subject { run, graph: model.clone(), kernel_count, threads, family, width })
}

pub fn run_bench(req: BenchRequest) -> Result<()> {
    let BenchRequest { model, options, batch, steps, threads, kernels, infer, json } = req;
    anyhow::ensure!(batch > 0 && steps > 0, "--batch and --steps must be at least 1");
    let threads = resolve_threads(threads)?;
    let compile = CompileOptions { threads, kernels, ..CompileOptions::default() };
    let step = match infer {
        true => None,
        false => Some(nnc_pipeline::differentiate(&model, &options).context("cannot form the training step")?),
    };
    // Compiling (optimize, lower, codegen) is timed; differentiating is not.
    let started = Instant::now();
    let mut subject = match step {
        Some(tg) => training_step(tg, &compile, batch)?,
        None => inference(&model, &compile, batch)?,
    };
    let compile_ms = started.elapsed().as_secs_f64() * 1e3;
    let flops = cost::flops(&subject.graph, batch);
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let baseline = Baseline::new(&subject.graph, batch, &mut rng);

    for step in 1..=5 {
        (subject.run)(step)?;
    }
    if let Some(b) = &baseline {
        b.round();
    }
    let every = steps.div_ceil(MAX_BASELINE_ROUNDS);
    let mut times = Vec::with_capacity(steps);
    let mut baseline_times = Vec::new();
    for step in 0..steps {
        let t = Instant::now();
        (subject.run)(6 + step as u64)?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
        if let Some(b) = baseline.as_ref().filter(|_| step % every == 0) {
            baseline_times.push(b.round());
        }
    }
    let median_ms = median(&mut times);
    let width = subject.width;
    let peak_gflops = nnc_cranelift::fma_peak_gflops(width)?.map(|p| p * subject.threads as f64);
    let gflops = flops as f64 / (median_ms / 1e3) / 1e9;
    let baseline_gflops = baseline.as_ref().map(|b| b.flops as f64 / median(&mut baseline_times) / 1e9);
    let report = BenchReport {
        model: model.name.clone(),
        mode: if infer { "infer" } else { "train" },
        optimizer: (!infer).then(|| optimizer_name(&options.optimizer)),
        batch,
        steps_timed: steps,
        step_ms_median: median_ms,
        step_ms_min: times[0],
        samples_per_s: batch as f64 / (median_ms / 1e3),
        flops_per_step: flops,
        gflops,
        compile_ms,
        kernels: subject.family,
        vector_bits: width.bits(),
        peak_gflops,
        percent_of_peak: peak_gflops.map(|p| 100.0 * gflops / p),
        kernel_count: subject.kernel_count,
        threads: subject.threads,
        matmul_flops_per_step: baseline.as_ref().map(|b| b.flops),
        baseline_gflops,
        ratio_to_baseline: baseline_gflops.map(|b| gflops / b),
    };
    let text = if json {
        serde_json::to_string(&report).context("cannot encode the report")? + "\n"
    } else {
        let what = match report.optimizer {
            Some(optimizer) => format!("training step of {} ({optimizer})", report.model),
            None => format!("inference of {}", report.model),
        };
        let mut text = format!(
            "{what} at batch {}: median {:.3} ms (min {:.3} ms) over {} steps\n\
             {:.0} samples/s, {:.1} GFLOP/s ({:.1} MFLOP per step), {} kernels ({}), {} thread{}\n\
             compiled in {:.1} ms\n",
            batch,
            report.step_ms_median,
            report.step_ms_min,
            steps,
            report.samples_per_s,
            report.gflops,
            flops as f64 / 1e6,
            report.kernel_count,
            report.kernels,
            threads,
            if threads == 1 { "" } else { "s" },
            report.compile_ms
        );
        if let (Some(p), Some(pct)) = (report.peak_gflops, report.percent_of_peak) {
            text += &format!(
                "peak: {p:.1} GFLOP/s ({}-bit FMAs, measured, {threads} core{}); the step runs at {pct:.0}% of it\n",
                report.vector_bits,
                if threads == 1 { "" } else { "s" },
            );
        }
        if let (Some(b), Some(r)) = (report.baseline_gflops, report.ratio_to_baseline) {
            text += &format!(
                "baseline: ndarray .dot() on the step's matrix products, 1 thread: {b:.1} GFLOP/s; \
                 the step runs at {r:.2}x that\n"
            );
        }
        text
    };
    crate::write_stdout(&text)
}
