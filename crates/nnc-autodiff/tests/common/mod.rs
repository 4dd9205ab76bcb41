//! Helpers shared by the integration tests: random tensors, model builders, and the
//! finite-difference gradient check.
#![allow(dead_code)]

use nnc_autodiff::gradients;
use nnc_ir::{BinaryOp, Dim, Graph, Op, ReduceOp, Tensor, TensorType, UnaryOp, ValueId};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::HashMap;

pub fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

/// How test values are drawn. The gradient checks need inputs away from kinks and
/// singularities by more than the finite-difference step.
#[derive(Clone, Copy, Debug)]
pub enum Dist {
    Uniform(f32, f32),
    /// `±U(lo, hi)` with a random sign: keeps relu/leaky_relu inputs off 0 and
    /// divisors away from 0.
    AwayFromZero(f32, f32),
    /// A shuffled grid `start + 0.3·k + U(-0.05, 0.05)`: all values distinct and at
    /// least 0.2 apart, so max/min/reduce_max pick the same element under perturbation.
    Distinct(f32),
    /// `0.5·k + offset + U(-0.05, 0.05)` for a random integer `k` in -3..=3: two
    /// grids with offsets 0 and 0.25 never come within 0.15 of each other.
    Grid(f32),
}

pub fn sample(rng: &mut ChaCha8Rng, shape: &[usize], dist: Dist) -> Tensor {
    let n: usize = shape.iter().product();
    let data: Vec<f32> = match dist {
        Dist::Uniform(lo, hi) => (0..n).map(|_| rng.random_range(lo..hi)).collect(),
        Dist::AwayFromZero(lo, hi) => (0..n)
            .map(|_| {
                let m = rng.random_range(lo..hi);
                if rng.random_bool(0.5) {
                    m
                } else {
                    -m
                }
            })
            .collect(),
        Dist::Grid(offset) => {
            (0..n).map(|_| 0.5 * rng.random_range(-3..=3) as f32 + offset + rng.random_range(-0.05..0.05)).collect()
        }
        Dist::Distinct(start) => {
            let mut v: Vec<f32> = (0..n).map(|k| start + 0.3 * k as f32 + rng.random_range(-0.05..0.05)).collect();
            v.shuffle(rng);
            v
        }
    };
    Tensor::from_f32(shape, data).unwrap()
}

pub fn labels(rng: &mut ChaCha8Rng, n: usize, classes: usize) -> Tensor {
    Tensor::from_i64(&[n], (0..n).map(|_| rng.random_range(0..classes as i64)).collect()).unwrap()
}

pub fn scalar(v: f32) -> Tensor {
    Tensor::scalar_f32(v)
}

pub fn f32s(t: &Tensor) -> Vec<f32> {
    t.to_f32_vec().expect("an f32 tensor")
}

pub fn feeds(pairs: Vec<(&str, Tensor)>) -> HashMap<String, Tensor> {
    pairs.into_iter().map(|(n, t)| (n.to_string(), t)).collect()
}

/// `loss = Σ y ⊙ r` with `r` an input of `y`'s type (fed by the caller as "r"):
/// a scalar whose gradient with respect to `y` is the random `r`, so every element
/// of every Jacobian is exercised.
pub fn weighted_sum(g: &mut Graph, y: ValueId) -> ValueId {
    let ty = g.ty(y).clone();
    let r = g.input("r", ty.clone()).unwrap();
    let p = g.mul(y, r).unwrap();
    g.reduce(ReduceOp::Sum, p, &(0..ty.rank()).collect::<Vec<_>>(), false).unwrap()
}

/// Agreement needed between the analytic gradient `a` and the central difference `n`:
/// `|a - n| <= atol + rtol·max(|a|, |n|)`.
#[derive(Clone, Copy, Debug)]
pub struct Tol {
    pub atol: f64,
    pub rtol: f64,
}

/// Checks the gradients of `loss` with respect to the leaves `wrt` (params or inputs)
/// against central differences `(L(x+h) - L(x-h)) / 2h`, one element at a time.
/// Both use the interpreter (f32). Returns the largest error seen, relative to the
/// tolerance (<= 1 passes).
pub fn fd_check(
    graph: &Graph,
    loss: ValueId,
    wrt: &[ValueId],
    feeds: &HashMap<String, Tensor>,
    h: f32,
    tol: Tol,
) -> f64 {
    let (mut gg, grads) = gradients(graph, loss, wrt).expect("gradients");
    nnc_ir::verify(&gg).expect("the gradient graph verifies");
    gg.set_outputs(grads.clone());
    let analytic = nnc_interp::run(&gg, feeds).expect("the gradient graph runs");

    let mut forward = graph.clone();
    forward.set_outputs(vec![loss]);
    let eval = |f: &HashMap<String, Tensor>| -> f64 {
        let out = nnc_interp::run(&forward, f).expect("the forward graph runs");
        f32s(&out[0])[0] as f64
    };

    let mut worst: f64 = 0.0;
    for (k, &w) in wrt.iter().enumerate() {
        let name = graph.name_of(w).to_string();
        let base = match (&graph.value(w).op, feeds.get(&name)) {
            (_, Some(t)) => t.clone(),
            (Op::Param { init: Some(t) }, None) => t.clone(),
            _ => panic!("%{name} is neither fed nor a param with a value"),
        };
        let shape = base.shape().to_vec();
        let x = f32s(&base);
        let a = f32s(&analytic[k]);
        assert_eq!(a.len(), x.len(), "gradient of %{name} has the wrong size");
        let mut f = feeds.clone();
        for i in 0..x.len() {
            let (xp, xm) = (x[i] + h, x[i] - h);
            let mut data = x.clone();
            data[i] = xp;
            f.insert(name.clone(), Tensor::from_f32(&shape, data.clone()).unwrap());
            let lp = eval(&f);
            data[i] = xm;
            f.insert(name.clone(), Tensor::from_f32(&shape, data).unwrap());
            let lm = eval(&f);
            let numeric = (lp - lm) / (xp as f64 - xm as f64);
            let got = a[i] as f64;
            let allowed = tol.atol + tol.rtol * got.abs().max(numeric.abs());
            let err = (got - numeric).abs() / allowed;
            assert!(err <= 1.0, "d loss / d %{name}[{i}]: autodiff {got}, central difference {numeric} (x = {})", x[i]);
            worst = worst.max(err);
        }
    }
    if std::env::var_os("FD_REPORT").is_some() {
        eprintln!("fd_check {}: worst error {worst:.3} of the tolerance", graph.name);
    }
    worst
}

/// How an MLP's dense layers are written, as the producers nnc imports write them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Dense {
    /// `x · W + b` with `W: [in, out]` (nnc's builder, Keras).
    MatMul,
    /// `x · Wᵀ + b` with `W: [out, in]` (PyTorch's `nn.Linear` exported as MatMul).
    TransB,
    /// ONNX `Gemm(alpha, beta, transB=1)` lowered: `alpha·(x · Wᵀ) + beta·b`.
    Gemm { alpha: f32, beta: f32 },
}

/// An MLP with widths `layers`, activation `act[i]` after hidden layer `i`, input
/// `input: f32[N, layers[0]]`, output `logits` (or `probs` after a softmax).
pub fn mlp(rng: &mut ChaCha8Rng, layers: &[usize], acts: &[UnaryOp], dense: Dense, softmax: bool) -> Graph {
    let mut g = Graph::new("mlp");
    let mut h = g.input("input", TensorType::f32(&[Dim::Batch, Dim::Fixed(layers[0])])).unwrap();
    for (i, pair) in layers.windows(2).enumerate() {
        let (fan_in, fan_out) = (pair[0], pair[1]);
        let layer = format!("fc{}", i + 1);
        let bound = (3.0 / fan_in as f32).sqrt();
        let w_shape = if dense == Dense::MatMul { [fan_in, fan_out] } else { [fan_out, fan_in] };
        let w = g.param(&format!("{layer}.weight"), sample(rng, &w_shape, Dist::Uniform(-bound, bound))).unwrap();
        let b = g.param(&format!("{layer}.bias"), sample(rng, &[fan_out], Dist::Uniform(-0.1, 0.1))).unwrap();
        let last = i == layers.len() - 2;
        let out_name = if last { "logits".to_string() } else { format!("{layer}.add") };
        h = match dense {
            Dense::MatMul => {
                let mm = g.named(&format!("{layer}.matmul"), Op::MatMul { trans_a: false, trans_b: false }, &[h, w]);
                g.named(&out_name, Op::Binary(BinaryOp::Add), &[mm.unwrap(), b]).unwrap()
            }
            Dense::TransB => {
                let mm = g.named(&format!("{layer}.matmul"), Op::MatMul { trans_a: false, trans_b: true }, &[h, w]);
                g.named(&out_name, Op::Binary(BinaryOp::Add), &[mm.unwrap(), b]).unwrap()
            }
            Dense::Gemm { alpha, beta } => {
                let mm = g.named(&format!("{layer}.gemm"), Op::MatMul { trans_a: false, trans_b: true }, &[h, w]);
                let a = g.scalar(alpha).unwrap();
                let scaled = g.mul(mm.unwrap(), a).unwrap();
                let bt = g.scalar(beta).unwrap();
                let bias = g.mul(b, bt).unwrap();
                g.named(&out_name, Op::Binary(BinaryOp::Add), &[scaled, bias]).unwrap()
            }
        };
        if !last {
            h = g.named(&format!("{layer}.act"), Op::Unary(acts[i % acts.len()]), &[h]).unwrap();
        }
    }
    if softmax {
        h = g.named("probs", Op::Softmax { axis: 1 }, &[h]).unwrap();
    }
    g.set_outputs(vec![h]);
    g
}
