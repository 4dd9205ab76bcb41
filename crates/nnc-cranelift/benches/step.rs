//! One whole SGD training step of the seed model (784-256-10 MLP, ReLU, softmax
//! cross-entropy, batch 100) as built by `nnc-autodiff` and compiled by this crate.
//!
//! `cargo bench -p nnc-cranelift --bench step -j2`
//!
//! Throughput is the step's FLOPs (`nnc_ir::cost::flops`), so "elem/s" are FLOP/s.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ndarray::{ArrayD, IxDyn};
use nnc_autodiff::{training_graph, TrainOptions, LABELS, LR};
use nnc_cranelift::{compile, CompileOptions};
use nnc_ir::{DType, Dim, Graph, Shape, Tensor, TensorType};
use std::collections::HashMap;
use std::time::Duration;

fn tensor(shape: &[usize], scale: f32) -> Tensor {
    let n = shape.iter().product::<usize>();
    let data = (0..n).map(|i| (((i * 7919) % 1000) as f32 / 1000.0 - 0.5) * scale).collect();
    Tensor::F32(ArrayD::from_shape_vec(IxDyn(shape), data).expect("shape matches"))
}

fn seed_model() -> Graph {
    let mut g = Graph::new("seed");
    let x = g.input("x", TensorType::new(DType::F32, Shape(vec![Dim::Batch, Dim::Fixed(784)]))).expect("input");
    let w1 = g.param("fc1.weight", tensor(&[256, 784], 0.07)).expect("param");
    let b1 = g.param("fc1.bias", tensor(&[256], 0.07)).expect("param");
    let w2 = g.param("fc2.weight", tensor(&[10, 256], 0.12)).expect("param");
    let b2 = g.param("fc2.bias", tensor(&[10], 0.12)).expect("param");
    let h = g.matmul(x, w1, false, true).expect("matmul");
    let h = g.add(h, b1).expect("add");
    let h = g.relu(h).expect("relu");
    let y = g.matmul(h, w2, false, true).expect("matmul");
    let y = g.add(y, b2).expect("add");
    g.set_outputs(vec![y]);
    g
}

fn bench(c: &mut Criterion) {
    let train = training_graph(&seed_model(), &TrainOptions::default()).expect("differentiates");
    let batch = 100;
    let flops = nnc_ir::cost::flops(&train.graph, batch);
    let mut compiled = compile(&train.graph, &CompileOptions::default()).expect("compiles");
    let labels = Tensor::from_i64(&[batch], (0..batch as i64).map(|i| i % 10).collect()).expect("labels");
    let feeds: HashMap<String, Tensor> = [
        ("x".to_string(), tensor(&[batch, 784], 1.0)),
        (LABELS.to_string(), labels),
        (LR.to_string(), Tensor::scalar_f32(0.01)),
    ]
    .into();
    let mut group = c.benchmark_group("train_step");
    group.sample_size(30).measurement_time(Duration::from_secs(4)).warm_up_time(Duration::from_millis(500));
    group.throughput(Throughput::Elements(flops));
    group.bench_function("seed_mlp_sgd_batch100", |b| b.iter(|| compiled.run(&feeds).expect("runs")));
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
