//! GFLOP/s of the JIT'd matrix product at the seed model's shapes (a 784-256-10 MLP at
//! batch 100): the forward products and the backward ones.
//!
//! `cargo bench -p nnc-cranelift --bench matmul -j2`
//!
//! Criterion's throughput is set to the product's FLOPs (2·M·K·N), so the reported
//! "elem/s" are FLOP/s. Each measurement is one `Compiled::run`: feed checks, packing
//! of B where needed, the product, and copying the output out.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ndarray::{ArrayD, IxDyn};
use nnc_cranelift::{compile, CompileOptions};
use nnc_ir::{DType, Graph, Op, Shape, Tensor, TensorType};
use std::collections::HashMap;
use std::time::Duration;

/// `(name, m, k, n, trans_a, trans_b)` of `op(A)[m,k] · op(B)[k,n]`.
const CASES: [(&str, usize, usize, usize, bool, bool); 6] = [
    ("fwd1 x[100,784]·W[784,256]", 100, 784, 256, false, false),
    ("fwd1 x[100,784]·W[256,784]ᵀ", 100, 784, 256, false, true),
    ("dW1 x[100,784]ᵀ·g[100,256]", 784, 100, 256, true, false),
    ("dX g[100,256]·W[784,256]ᵀ", 100, 256, 784, false, true),
    ("dX g[100,256]·W[256,784]", 100, 256, 784, false, false),
    ("fwd2 h[100,256]·W[256,10]", 100, 256, 10, false, false),
];

fn tensor(shape: &[usize]) -> Tensor {
    let n = shape.iter().product::<usize>();
    let data = (0..n).map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5).collect();
    Tensor::F32(ArrayD::from_shape_vec(IxDyn(shape), data).expect("shape matches"))
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("matmul");
    group.sample_size(30).measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_millis(500));
    for (name, m, k, n, ta, tb) in CASES {
        let sa = if ta { vec![k, m] } else { vec![m, k] };
        let sb = if tb { vec![n, k] } else { vec![k, n] };
        let mut g = Graph::new("matmul");
        let a = g.input("a", TensorType::new(DType::F32, Shape::fixed(&sa))).expect("input");
        let b = g.input("b", TensorType::new(DType::F32, Shape::fixed(&sb))).expect("input");
        let out = g.op(Op::MatMul { trans_a: ta, trans_b: tb }, &[a, b]).expect("matmul");
        g.set_outputs(vec![out]);
        let mut compiled = compile(&g, &CompileOptions::default()).expect("compiles");
        let feeds: HashMap<String, Tensor> = [("a".to_string(), tensor(&sa)), ("b".to_string(), tensor(&sb))].into();
        group.throughput(Throughput::Elements(2 * (m * k * n) as u64));
        group.bench_function(BenchmarkId::from_parameter(name), |bench| {
            bench.iter(|| compiled.run(&feeds).expect("runs"))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
