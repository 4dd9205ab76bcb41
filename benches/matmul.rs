//! GFLOP/s of the JIT's matrix product at each shape of the seed training step (the
//! 784-256-10 MLP at batch 100: the forward products, and the backward A·Bᵀ and Aᵀ·B
//! ones), taken from the step graph itself (operand types too: the batch stays a
//! run-time size, so each product makes the choices it makes in the step), for every
//! kernel family this CPU runs (assembled AVX-512 and AVX2 tiles, portable Cranelift
//! f32x4), on 1 and 2 threads,
//! beside a baseline measured in the same process: `ndarray`'s `.dot()` (the
//! matrixmultiply crate, one thread) on the same operands in the same layouts.
//!
//! `cargo bench -j2 --bench matmul`
//!
//! Criterion's throughput is the product's FLOPs (2·M·K·N), so its "elem/s" are
//! FLOP/s. One JIT measurement is one `Compiled::run_views` of a graph holding only
//! the product: feed checks and the product (packing included), leaving the result
//! where the step wrote it, as a step leaves a product for the next kernel; one
//! baseline measurement is one `.dot()`, which allocates its result.

mod common;

use common::{Product, Samples};
use criterion::{BenchmarkId, Criterion, Throughput};
use ndarray::{s, Array1, Array2, IxDyn};
use nnc_autodiff::Optimizer;
use nnc_cranelift::compile;
use nnc_ir::{Graph, Op, Tensor};
use std::collections::HashMap;

const BATCH: usize = 100;
const THREADS: [usize; 2] = [1, 2];
const SAMPLES: usize = 15;

fn array(shape: &[usize]) -> Array2<f32> {
    let data = (0..shape[0] * shape[1]).map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5).collect();
    Array2::from_shape_vec((shape[0], shape[1]), data).expect("shape matches")
}

/// `a` as a tensor whose data starts on a 64-byte boundary, as the step's parameters
/// and arena buffers do. The JIT reads operands where the caller put them, and a
/// row-major B read in place at another alignment loads each k's 16 floats of a panel
/// from two cache lines instead of one: the forward product at batch 100 measured 77
/// GFLOP/s with B 16 bytes past a boundary (where `malloc` puts large blocks) against
/// 93 aligned, a spread that was once mistaken for noise between processes.
fn tensor(a: &Array2<f32>) -> Tensor {
    let n = a.len();
    let mut data = vec![0.0f32; n + 16];
    let skip = (data.as_ptr() as usize).wrapping_neg() % 64 / 4;
    for (d, &x) in data[skip..].iter_mut().zip(a.iter()) {
        *d = x;
    }
    let aligned = Array1::from_vec(data).slice_move(s![skip..skip + n]);
    assert_eq!(aligned.as_ptr() as usize % 64, 0, "operand data on a 64-byte boundary");
    Tensor::F32(aligned.into_shape_with_order(IxDyn(a.shape())).expect("shape matches"))
}

/// A graph of this one product, with the operand types it has in the step (so the
/// batch is a run-time size where it is one there).
fn product_graph(p: &Product) -> Graph {
    let mut g = Graph::new("matmul");
    let a = g.input("a", p.types[0].clone()).expect("input");
    let b = g.input("b", p.types[1].clone()).expect("input");
    let out = g.op(Op::MatMul { trans_a: p.trans_a, trans_b: p.trans_b }, &[a, b]).expect("matmul");
    g.set_outputs(vec![out]);
    g
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    let step = common::seed_step(Optimizer::Sgd);
    let products = common::products(&step.graph, BATCH);
    let mut rows = Vec::new();
    let families = common::families();
    let mut group = c.benchmark_group("matmul");
    common::configure(&mut group, SAMPLES);
    for p in &products {
        assert_eq!(p.count, 1, "the seed step's products are 2-D");
        let (sa, sb) = p.shapes();
        let (a, b) = (array(&sa), array(&sb));
        // The graph value's name too, so `cargo bench --bench matmul -- weight.grad` filters.
        let label = format!("{} {}", p.name, p.describe());
        group.throughput(Throughput::Elements(p.flops()));

        let mut baseline = Samples::default();
        group.bench_function(BenchmarkId::new("ndarray", &label), |bench| {
            baseline.iter(bench, || {
                let a = if p.trans_a { a.t() } else { a.view() };
                let b = if p.trans_b { b.t() } else { b.view() };
                a.dot(&b)
            })
        });

        let (a_t, b_t) = (tensor(&a), tensor(&b));
        let feeds: HashMap<&str, &Tensor> = [("a", &a_t), ("b", &b_t)].into();
        let base = baseline.median(SAMPLES);
        // Per family: median seconds on one thread and two, and the best one-thread sample.
        let mut measured = Vec::new();
        for &kernels in &families {
            let mut medians = [None; THREADS.len()];
            let mut best = None;
            for (threads, median) in THREADS.into_iter().zip(&mut medians) {
                let options = common::compile_options(threads, kernels);
                let mut compiled = compile(&product_graph(p), &options).expect("compiles");
                let mut samples = Samples::default();
                let id = BenchmarkId::new(format!("{}/threads{threads}", common::family_name(kernels)), &label);
                group.bench_function(id, |bench| {
                    samples.iter(bench, || compiled.run_views(&feeds).expect("runs").len())
                });
                *median = samples.median(SAMPLES);
                if threads == 1 {
                    best = samples.best(SAMPLES);
                }
            }
            if medians[0].is_some() {
                common::sample_peak(kernels);
            }
            measured.push((kernels, medians, best));
        }
        rows.push((p, base, measured));
    }
    group.finish();
    c.final_summary();
    if common::summary_wanted() {
        // Formatted only now, against the best peak sampled during the whole run.
        let rows: Vec<Vec<String>> = rows
            .into_iter()
            .map(|(p, base, measured)| {
                let gflops = |s: f64| p.flops() as f64 / s / 1e9;
                let mut row = vec![
                    format!("`{}` {}", p.name, p.describe()),
                    format!("{:.1}", p.flops() as f64 / 1e6),
                    base.map_or("—".into(), |s| format!("{:.1}", gflops(s))),
                ];
                // A filtered-out benchmark leaves "—", so every row fills the header.
                for (kernels, [one, two], best) in measured {
                    row.push(match (one, best) {
                        (Some(s), Some(fastest)) => {
                            let vs_base = base.map_or("—".into(), |b| format!("{:.2}×", b / s));
                            let percent = common::percent_of_peak(gflops(s), kernels, 1);
                            let best_percent = common::percent_of_peak(gflops(fastest), kernels, 1);
                            format!("{:.1} ({percent}; best {best_percent}; {vs_base})", gflops(s))
                        }
                        _ => "—".into(),
                    });
                    row.push(match (one, two) {
                        (Some(s1), Some(s2)) => format!("{:.2}×", s1 / s2),
                        _ => "—".into(),
                    });
                }
                row
            })
            .collect();
        let mut header = vec!["product".to_string(), "MFLOP".into(), "ndarray 1t".into()];
        for &k in &families {
            let name = common::family_name(k);
            header.push(format!("{name} 1t (% of peak; best sample's; × ndarray)"));
            header.push(format!("{name} 2t / 1t"));
        }
        let header: Vec<&str> = header.iter().map(String::as_str).collect();
        common::print_table(
            &format!(
                "Matrix products of the seed step at batch {BATCH} (GFLOP/s, median of criterion's samples, and the \
                 fastest sample's share of the peak; peak: the best of one core's FMA peak sampled during the run, at \
                 the family's vector width)"
            ),
            &header,
            &rows,
        );
    }
}
