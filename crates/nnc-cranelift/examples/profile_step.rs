//! Runs the seed model's SGD training step (batch 100) in a loop for a profiler:
//! `perf record -g target/release/examples/profile_step && perf report`
//! (the JIT'd functions are named through `/tmp/perf-<pid>.map`).

use ndarray::{ArrayD, IxDyn};
use nnc_autodiff::{training_graph, TrainOptions, LABELS, LR};
use nnc_cranelift::{compile, CompileOptions};
use nnc_ir::{DType, Dim, Graph, Shape, Tensor, TensorType};
use std::collections::HashMap;
use std::time::Instant;

fn tensor(shape: &[usize], scale: f32) -> Tensor {
    let n = shape.iter().product::<usize>();
    let data = (0..n).map(|i| (((i * 7919) % 1000) as f32 / 1000.0 - 0.5) * scale).collect();
    Tensor::F32(ArrayD::from_shape_vec(IxDyn(shape), data).expect("shape matches"))
}

fn main() {
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
    let train = training_graph(&g, &TrainOptions::default()).expect("differentiates");
    let mut compiled = compile(&train.graph, &CompileOptions::default()).expect("compiles");
    let path = compiled.write_perf_map().expect("perf map");
    eprintln!("perf map: {}", path.display());
    let batch = 100;
    let labels = Tensor::from_i64(&[batch], (0..batch as i64).map(|i| i % 10).collect()).expect("labels");
    let feeds: HashMap<String, Tensor> = [
        ("x".to_string(), tensor(&[batch, 784], 1.0)),
        (LABELS.to_string(), labels),
        (LR.to_string(), Tensor::scalar_f32(0.01)),
    ]
    .into();
    let mut best = f64::MAX;
    for _ in 0..1000 {
        let t = Instant::now();
        compiled.run(&feeds).expect("runs");
        best = best.min(t.elapsed().as_secs_f64());
    }
    let flops = nnc_ir::cost::flops(&train.graph, batch) as f64;
    println!("best step {:.3} ms, {:.1} GFLOP/s", best * 1e3, flops / best / 1e9);
}
