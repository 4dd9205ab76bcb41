//! Helpers shared by the integration tests: random tensors, one-op graphs, and
//! comparison of the JIT against the reference interpreter.
#![allow(dead_code)]

use ndarray::{ArrayD, IxDyn};
use nnc_cranelift::{compile, CompileOptions, Compiled};
use nnc_ir::{Dim, Graph, Op, Tensor, TensorType};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::HashMap;

pub type Rng8 = ChaCha8Rng;

pub fn rng(seed: u64) -> Rng8 {
    ChaCha8Rng::seed_from_u64(seed)
}

pub fn random_f32(rng: &mut Rng8, shape: &[usize]) -> Tensor {
    let n = shape.iter().product();
    let data = (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    Tensor::F32(ArrayD::from_shape_vec(IxDyn(shape), data).unwrap())
}

pub fn random_positive(rng: &mut Rng8, shape: &[usize]) -> Tensor {
    let n = shape.iter().product();
    let data = (0..n).map(|_| rng.random_range(0.1f32..2.0)).collect();
    Tensor::F32(ArrayD::from_shape_vec(IxDyn(shape), data).unwrap())
}

pub fn random_i64(rng: &mut Rng8, shape: &[usize], lo: i64, hi: i64) -> Tensor {
    let n = shape.iter().product();
    let data = (0..n).map(|_| rng.random_range(lo..hi)).collect();
    Tensor::I64(ArrayD::from_shape_vec(IxDyn(shape), data).unwrap())
}

pub fn random_i32(rng: &mut Rng8, shape: &[usize], lo: i32, hi: i32) -> Tensor {
    let n = shape.iter().product();
    let data = (0..n).map(|_| rng.random_range(lo..hi)).collect();
    Tensor::I32(ArrayD::from_shape_vec(IxDyn(shape), data).unwrap())
}

pub fn random_bool(rng: &mut Rng8, shape: &[usize]) -> Tensor {
    let n = shape.iter().product();
    let data = (0..n).map(|_| rng.random_bool(0.5)).collect();
    Tensor::Bool(ArrayD::from_shape_vec(IxDyn(shape), data).unwrap())
}

pub fn feeds(pairs: &[(&str, Tensor)]) -> HashMap<String, Tensor> {
    pairs.iter().map(|(n, t)| (n.to_string(), t.clone())).collect()
}

/// Asserts two tensors have the same dtype and shape and agree elementwise:
/// f32 within `tol` relative to max(|want|, 1), NaN with NaN; others exactly.
pub fn assert_close(got: &Tensor, want: &Tensor, tol: f32, what: &str) {
    assert_eq!(got.dtype(), want.dtype(), "{what}: dtype");
    assert_eq!(got.shape(), want.shape(), "{what}: shape");
    match (got, want) {
        (Tensor::F32(g), Tensor::F32(w)) => {
            for (i, (&g, &w)) in g.iter().zip(w.iter()).enumerate() {
                let ok = if w.is_nan() {
                    g.is_nan()
                } else if w.is_infinite() {
                    g == w
                } else {
                    (g - w).abs() <= tol * w.abs().max(1.0)
                };
                assert!(ok, "{what}: element {i}: got {g}, want {w} (tol {tol})");
            }
        }
        _ => assert_eq!(got, want, "{what}"),
    }
}

/// A graph of one op over inputs `a0, a1, ...` of the given types (`N` allowed).
pub fn one_op(op: Op, types: &[TensorType]) -> Graph {
    let mut g = Graph::new("one_op");
    let ids: Vec<_> = types.iter().enumerate().map(|(i, t)| g.input(&format!("a{i}"), t.clone()).unwrap()).collect();
    let out = g.op(op, &ids).expect("the op type-checks");
    g.set_outputs(vec![out]);
    g
}

pub fn fixed(dtype: nnc_ir::DType, dims: &[usize]) -> TensorType {
    TensorType::new(dtype, nnc_ir::Shape::fixed(dims))
}

pub fn batched(dtype: nnc_ir::DType, rest: &[usize]) -> TensorType {
    let mut d = vec![Dim::Batch];
    d.extend(rest.iter().map(|&x| Dim::Fixed(x)));
    TensorType::new(dtype, nnc_ir::Shape(d))
}

pub fn jit(g: &Graph) -> Compiled {
    compile(g, &CompileOptions::default()).unwrap_or_else(|e| panic!("compile failed: {e}"))
}

/// Runs the graph on the JIT and the interpreter and compares every output.
pub fn check(g: &Graph, feeds: &HashMap<String, Tensor>, tol: f32) {
    let mut c = jit(g);
    check_compiled(&mut c, g, feeds, tol);
}

pub fn check_compiled(c: &mut Compiled, g: &Graph, feeds: &HashMap<String, Tensor>, tol: f32) {
    let want = nnc_interp::run(g, feeds).unwrap_or_else(|e| panic!("interpreter failed: {e}"));
    let got = c.run(feeds).unwrap_or_else(|e| panic!("JIT failed: {e}"));
    assert_eq!(got.len(), want.len());
    for (i, (g_, w)) in got.iter().zip(&want).enumerate() {
        assert_close(g_, w, tol, &format!("{} output {i}", g.name));
    }
}

/// Like `assert_close`, but relative to the output's scale (its root mean square)
/// wherever that exceeds the element: a dot product of K terms that cancels to a small
/// number carries the rounding error of its large terms, in any implementation.
pub fn assert_close_scaled(got: &Tensor, want: &Tensor, tol: f32, what: &str) {
    assert_eq!(got.shape(), want.shape(), "{what}: shape");
    let (g, w) = (got.as_f32().expect("f32"), want.as_f32().expect("f32"));
    let rms = (w.iter().map(|&x| (x as f64).powi(2)).sum::<f64>() / w.len().max(1) as f64).sqrt() as f32;
    for (i, (&g, &w)) in g.iter().zip(w.iter()).enumerate() {
        let scale = w.abs().max(rms).max(1.0);
        assert!((g - w).abs() <= tol * scale, "{what}: element {i}: got {g}, want {w} (tol {tol} × {scale})");
    }
}

/// The seed 784-256-10 ReLU MLP (weights stored `[in, out]`, named `w1 b1 w2 b2`,
/// input `x`) with random weights from `seed`.
pub fn seed_mlp(seed: u64) -> Graph {
    mlp(seed, [784, 256, 10])
}

/// An `in-hidden-out` ReLU MLP with random weights scaled like the seed model's.
pub fn mlp(seed: u64, sizes: [usize; 3]) -> Graph {
    mlp_in_layout(seed, sizes, false)
}

/// [`mlp`], with weights stored `[out, in]` and multiplied transposed when `out_in`
/// (PyTorch's `nn.Linear` layout, `Gemm` with `transB = 1` in ONNX).
pub fn mlp_in_layout(seed: u64, [inputs, hidden, outputs]: [usize; 3], out_in: bool) -> Graph {
    let mut r = rng(seed);
    let scaled = |t: Tensor, s: f32| Tensor::F32(t.as_f32().unwrap().mapv(|v| v * s));
    let mut g = Graph::new("seed");
    let x = g.input("x", batched(nnc_ir::DType::F32, &[inputs])).unwrap();
    let shape = |i: usize, o: usize| if out_in { [o, i] } else { [i, o] };
    let w1 = g.param("w1", scaled(random_f32(&mut r, &shape(inputs, hidden)), 1.0 / (inputs as f32).sqrt())).unwrap();
    let b1 = g.param("b1", scaled(random_f32(&mut r, &[hidden]), 0.03)).unwrap();
    let w2 = g.param("w2", scaled(random_f32(&mut r, &shape(hidden, outputs)), 1.0 / (hidden as f32).sqrt())).unwrap();
    let b2 = g.param("b2", scaled(random_f32(&mut r, &[outputs]), 0.06)).unwrap();
    let h = g.matmul(x, w1, false, out_in).unwrap();
    let h = g.add(h, b1).unwrap();
    let h = g.relu(h).unwrap();
    let y = g.matmul(h, w2, false, out_in).unwrap();
    let y = g.add(y, b2).unwrap();
    g.set_outputs(vec![y]);
    g
}

/// The training step of [`seed_mlp`] with `optimizer`, after nnc-opt's default pipeline
/// (the fused kernels `nnc train` runs).
pub fn fused_seed_step(optimizer: nnc_autodiff::Optimizer, seed: u64) -> Graph {
    fused_step(optimizer, seed, [784, 256, 10])
}

/// The fused training step of [`mlp`] with these sizes.
pub fn fused_step(optimizer: nnc_autodiff::Optimizer, seed: u64, sizes: [usize; 3]) -> Graph {
    fused_step_in_layout(optimizer, seed, sizes, false)
}

/// The fused training step of [`mlp_in_layout`].
pub fn fused_step_in_layout(optimizer: nnc_autodiff::Optimizer, seed: u64, sizes: [usize; 3], out_in: bool) -> Graph {
    let opts = nnc_autodiff::TrainOptions { optimizer, ..Default::default() };
    let train = nnc_autodiff::training_graph(&mlp_in_layout(seed, sizes, out_in), &opts).unwrap().graph;
    nnc_opt::optimize(&train, &nnc_opt::OptOptions::from_flags(false, None, None)).unwrap().graph
}

/// The bit patterns of an f32 tensor, for bitwise comparisons.
pub fn bits(t: &Tensor) -> Vec<u32> {
    t.as_f32().unwrap().iter().map(|v| v.to_bits()).collect()
}
