//! Time to turn the seed model into a runnable training step: differentiate
//! (`nnc_pipeline::differentiate`), optimize the step (`nnc_pipeline::optimize`: nnc-opt's
//! `-O1`, as the JIT trainer runs it), then the JIT trainer's whole construction from the
//! step (`JitBackend::from_train_graph`: optimize and compile the step and the inference
//! pass), and all of it as `nnc train` pays before its first step (`JitBackend::new`).
//!
//! `cargo bench -j2 --bench compile`
//!
//! The stages are timed through the functions the CLI calls, so the figures follow
//! whatever the pipeline does. Last, the step plan alone of a long chain of
//! elementwise ops, which shows whether planning stays linear in the graph's size.

mod common;

use common::Samples;
use criterion::{Criterion, SamplingMode};
use nnc_autodiff::Optimizer;
use nnc_train::JitBackend;

const SAMPLES: usize = 10;

fn main() {
    let mut c = Criterion::default().configure_from_args();
    let model = common::seed_model();
    let opts = common::train_options(Optimizer::Sgd);
    let tg = common::seed_step(Optimizer::Sgd);
    let compile = common::compile_options(1, nnc_cranelift::Kernels::Auto);
    let mut rows = Vec::new();
    let mut group = c.benchmark_group("compile_seed_step");
    common::configure(&mut group, SAMPLES);
    group.sampling_mode(SamplingMode::Flat);
    let mut record = |name: &str, what: &str, samples: &Samples| {
        if let Some(s) = samples.median(SAMPLES) {
            rows.push(vec![name.to_string(), what.to_string(), format!("{:.1}", s * 1e3)]);
        }
    };

    let mut s = Samples::default();
    group.bench_function("differentiate", |b| {
        s.iter(b, || nnc_pipeline::differentiate(&model, &opts).expect("differentiates"))
    });
    record("differentiate", "`nnc_pipeline::differentiate`", &s);

    let mut s = Samples::default();
    let o1 = nnc_opt::OptOptions::default();
    group.bench_function("optimize", |b| s.iter(b, || nnc_pipeline::optimize(&tg.graph, &o1).expect("optimizes")));
    record("optimize", "`nnc_pipeline::optimize` of the step (nnc-opt -O1)", &s);

    let mut s = Samples::default();
    group.bench_function("jit_backend_from_train_graph", |b| {
        s.iter(b, || JitBackend::from_train_graph(&tg, &compile).expect("compiles"))
    });
    record("optimize + compile", "`JitBackend::from_train_graph` (step and inference pass)", &s);

    let mut s = Samples::default();
    group.bench_function("jit_backend_new", |b| {
        s.iter(b, || JitBackend::new(&model, &opts, &compile).expect("compiles"))
    });
    record("total", "`JitBackend::new`: all of the above, as `nnc train` runs it", &s);

    // 20,000 ops, each reusing its operand's buffer: a quadratic planner takes seconds.
    let chain = long_chain(20_000);
    let mut s = Samples::default();
    group.bench_function("plan_chain_20000", |b| s.iter(b, || nnc_opt::plan(&chain)));
    record("plan", "`nnc_opt::plan` of a chain of 20,000 elementwise ops", &s);

    group.finish();
    c.final_summary();
    if common::summary_wanted() {
        common::print_table("Compiling the seed training step (SGD)", &["stage", "what", "ms"], &rows);
    }
}

/// `x: f32[N, 64]` through `len` alternating `neg` and `relu`.
fn long_chain(len: usize) -> nnc_ir::Graph {
    let mut text = String::from("graph chain {\n  %v0: f32[N,64] = input\n");
    for i in 1..=len {
        let op = if i % 2 == 0 { "relu" } else { "neg" };
        text += &format!("  %v{i}: f32[N,64] = {op} %v{}\n", i - 1);
    }
    text += &format!("  return %v{len}\n}}\n");
    nnc_ir::parse(&text).expect("the chain parses")
}
