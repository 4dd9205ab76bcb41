//! IR graphs built with the nnc-ir builder, for export tests.

use super::noise;
use nnc_ir::{BinaryOp, DType, Dim, Graph, Op, ReduceOp, Shape, Tensor, TensorType, UnaryOp, ValueId};

fn f32_tensor(shape: &[usize], seed: u64, scale: f32) -> Tensor {
    let n = shape.iter().product();
    Tensor::from_f32(shape, noise(n, seed, scale)).expect("shape matches data")
}

fn push(g: &mut Graph, name: &str, op: Op, args: &[ValueId]) -> ValueId {
    g.push(name, op, args).unwrap_or_else(|e| panic!("building %{name}: {e}"))
}

fn batch(dims: &[usize]) -> Shape {
    let mut s = vec![Dim::Batch];
    s.extend(dims.iter().map(|&d| Dim::Fixed(d)));
    Shape(s)
}

/// The seed model: 784-256-10, ReLU, log-softmax; the second layer's weight is stored
/// [out, in] and used with `trans_b`.
pub fn mlp() -> Graph {
    let mut g = Graph::new("mlp");
    let x = g.input("x", TensorType::new(DType::F32, batch(&[784]))).unwrap();
    let w1 = g.param("w1", f32_tensor(&[784, 256], 1, 0.05)).unwrap();
    let b1 = g.param("b1", f32_tensor(&[256], 2, 0.05)).unwrap();
    let w2 = g.param("w2", f32_tensor(&[10, 256], 3, 0.05)).unwrap();
    let b2 = g.param("b2", f32_tensor(&[10], 4, 0.05)).unwrap();
    let h = push(&mut g, "h", Op::MatMul { trans_a: false, trans_b: false }, &[x, w1]);
    let h = push(&mut g, "h_bias", Op::Binary(BinaryOp::Add), &[h, b1]);
    let h = push(&mut g, "h_relu", Op::Unary(UnaryOp::Relu), &[h]);
    let o = push(&mut g, "logits", Op::MatMul { trans_a: false, trans_b: true }, &[h, w2]);
    let o = push(&mut g, "logits_bias", Op::Binary(BinaryOp::Add), &[o, b2]);
    let y = push(&mut g, "log_probs", Op::LogSoftmax { axis: 1 }, &[o]);
    g.set_outputs(vec![y]);
    g
}

/// Leaves declared where they are first needed, a constant before the input.
pub fn interleaved() -> Graph {
    let mut g = Graph::new("interleaved");
    let c = push(&mut g, "scale", Op::Const(Tensor::scalar_f32(0.5)), &[]);
    let x = g.input("x", TensorType::new(DType::F32, batch(&[3]))).unwrap();
    let w1 = g.param("w1", f32_tensor(&[3, 4], 5, 0.5)).unwrap();
    let h = push(&mut g, "h", Op::MatMul { trans_a: false, trans_b: false }, &[x, w1]);
    let h = push(&mut g, "h_scaled", Op::Binary(BinaryOp::Mul), &[h, c]);
    let w2 = g.param("w2", f32_tensor(&[4, 2], 6, 0.5)).unwrap();
    let t = g.input("t", TensorType::new(DType::F32, batch(&[2]))).unwrap();
    let y = push(&mut g, "y", Op::MatMul { trans_a: false, trans_b: false }, &[h, w2]);
    let d = push(&mut g, "diff", Op::Binary(BinaryOp::Sub), &[y, t]);
    g.set_outputs(vec![d]);
    g
}

/// Every IR op at least once. Inputs: `x: f32[N,6]`, `labels: i64[N]`.
/// `exact_below_13` leaves out the two forms that exports below opset 13 cannot
/// express exactly (a softmax over an inner axis, a reduction over no axes).
pub fn all_ops(exact_below_13: bool) -> Graph {
    let mut g = Graph::new("all_ops");
    let x = g.input("x", TensorType::new(DType::F32, batch(&[6]))).unwrap();
    let labels = g.input("labels", TensorType::new(DType::I64, batch(&[]))).unwrap();
    let w = g.param("w", f32_tensor(&[4, 2], 7, 0.5)).unwrap();
    let row = g.param("row", f32_tensor(&[1, 6], 8, 0.5)).unwrap();

    // Unary functions.
    let neg = push(&mut g, "neg", Op::Unary(UnaryOp::Neg), &[x]);
    let exp = push(&mut g, "exp", Op::Unary(UnaryOp::Exp), &[neg]);
    let log = push(&mut g, "log", Op::Unary(UnaryOp::Log), &[exp]);
    let sqrt = push(&mut g, "sqrt", Op::Unary(UnaryOp::Sqrt), &[exp]);
    let erf = push(&mut g, "erf", Op::Unary(UnaryOp::Erf), &[x]);
    let relu = push(&mut g, "relu", Op::Unary(UnaryOp::Relu), &[x]);
    let leaky = push(&mut g, "leaky", Op::Unary(UnaryOp::LeakyRelu { alpha: 0.2 }), &[x]);
    let sig = push(&mut g, "sigmoid", Op::Unary(UnaryOp::Sigmoid), &[x]);
    let tanh = push(&mut g, "tanh", Op::Unary(UnaryOp::Tanh), &[x]);
    let gelu = push(&mut g, "gelu", Op::Unary(UnaryOp::Gelu { approximate: false }), &[x]);
    let gelu_t = push(&mut g, "gelu_tanh", Op::Unary(UnaryOp::Gelu { approximate: true }), &[x]);
    let id = push(&mut g, "same", Op::Unary(UnaryOp::Identity), &[x]);

    // Binary functions, comparison, select, cast.
    let two = push(&mut g, "two", Op::Const(Tensor::scalar_f32(2.0)), &[]);
    let add = push(&mut g, "add", Op::Binary(BinaryOp::Add), &[log, sqrt]);
    let sub = push(&mut g, "sub", Op::Binary(BinaryOp::Sub), &[add, erf]);
    let mul = push(&mut g, "mul", Op::Binary(BinaryOp::Mul), &[sub, relu]);
    let div = push(&mut g, "div", Op::Binary(BinaryOp::Div), &[mul, two]);
    let pow = push(&mut g, "pow", Op::Binary(BinaryOp::Pow), &[sig, two]);
    let max = push(&mut g, "max", Op::Binary(BinaryOp::Max), &[div, leaky]);
    let min = push(&mut g, "min", Op::Binary(BinaryOp::Min), &[tanh, gelu]);
    let gt = push(&mut g, "gt", Op::Binary(BinaryOp::Greater), &[max, min]);
    let sel = push(&mut g, "select", Op::Where, &[gt, pow, gelu_t]);
    let mask = push(&mut g, "mask", Op::Cast { to: DType::F32 }, &[gt]);
    let mixed = push(&mut g, "mixed", Op::Binary(BinaryOp::Add), &[sel, mask]);
    let mixed = push(&mut g, "mixed_id", Op::Binary(BinaryOp::Add), &[mixed, id]);

    // Broadcasts: a parameter row to the batch, a constant to a static shape.
    let rows = push(&mut g, "rows", Op::Broadcast { shape: batch(&[6]) }, &[row]);
    let mixed = push(&mut g, "mixed_rows", Op::Binary(BinaryOp::Add), &[mixed, rows]);
    let three = push(&mut g, "three", Op::Const(Tensor::from_f32(&[3], vec![1.0, 2.0, 3.0]).unwrap()), &[]);
    let grid = push(&mut g, "grid", Op::Broadcast { shape: Shape::fixed(&[2, 3]) }, &[three]);

    // Shapes: reshape with the batch, transpose, batched matmuls with flags.
    let cube = push(&mut g, "cube", Op::Reshape { shape: batch(&[2, 3]) }, &[mixed]);
    let cube = push(&mut g, "cube_grid", Op::Binary(BinaryOp::Add), &[cube, grid]);
    let tr = push(&mut g, "tr", Op::Transpose { perm: vec![0, 2, 1] }, &[cube]);
    let gram = push(&mut g, "gram", Op::MatMul { trans_a: true, trans_b: false }, &[cube, cube]);
    let proj = push(&mut g, "proj", Op::MatMul { trans_a: false, trans_b: true }, &[tr, w]);
    let cov = push(&mut g, "cov", Op::MatMul { trans_a: true, trans_b: false }, &[x, x]);

    // Softmax along an inner and the last axis.
    let sm_axis = if exact_below_13 { 2 } else { 1 };
    let sm = push(&mut g, "sm", Op::Softmax { axis: sm_axis }, &[cube]);
    let lsm = push(&mut g, "lsm", Op::LogSoftmax { axis: 2 }, &[proj]);

    // Reductions.
    let rs = push(&mut g, "rsum", Op::Reduce { op: ReduceOp::Sum, axes: vec![1], keep_dims: true }, &[sm]);
    let rm = push(&mut g, "rmean", Op::Reduce { op: ReduceOp::Mean, axes: vec![0, 1], keep_dims: false }, &[lsm]);
    let rx = push(&mut g, "rmax", Op::Reduce { op: ReduceOp::Max, axes: vec![2], keep_dims: false }, &[gram]);
    let none_axes = if exact_below_13 { vec![1] } else { vec![] };
    let rn = push(&mut g, "rnone", Op::Reduce { op: ReduceOp::Sum, axes: none_axes, keep_dims: true }, &[rx]);

    let hot = push(&mut g, "hot", Op::OneHot { depth: 6 }, &[labels]);
    let scored = push(&mut g, "scored", Op::Binary(BinaryOp::Mul), &[hot, x]);
    g.set_outputs(vec![rs, rm, rn, cov, scored, mixed]);
    g
}

/// A training-step shape: a fed parameter, optimizer state, in-place updates.
pub fn step() -> Graph {
    let mut g = Graph::new("step");
    let x = g.input("x", TensorType::new(DType::F32, batch(&[3]))).unwrap();
    let w = g.param("w", f32_tensor(&[3, 2], 9, 0.5)).unwrap();
    let fed = g
        .push_typed("scale".into(), TensorType::new(DType::F32, Shape::fixed(&[2])), Op::Param { init: None }, vec![])
        .unwrap();
    let m = push(&mut g, "w_m", Op::State { init: Some(Tensor::from_f32(&[3, 2], vec![0.0; 6]).unwrap()) }, &[]);
    let lr = g
        .push_typed("lr".into(), TensorType::new(DType::F32, Shape::scalar()), Op::State { init: None }, vec![])
        .unwrap();
    let y = push(&mut g, "y", Op::MatMul { trans_a: false, trans_b: false }, &[x, w]);
    let y = push(&mut g, "y_scaled", Op::Binary(BinaryOp::Mul), &[y, fed]);
    let loss = push(&mut g, "loss", Op::Reduce { op: ReduceOp::Mean, axes: vec![0, 1], keep_dims: false }, &[y]);
    let grad = push(&mut g, "grad", Op::MatMul { trans_a: true, trans_b: false }, &[x, y]);
    let m2 = push(&mut g, "w_m_next", Op::Binary(BinaryOp::Add), &[m, grad]);
    let step = push(&mut g, "w_step", Op::Binary(BinaryOp::Mul), &[m2, lr]);
    let w2 = push(&mut g, "w_next", Op::Binary(BinaryOp::Sub), &[w, step]);
    let count = g.param("seen", Tensor::from_i64(&[], vec![0]).unwrap()).unwrap();
    let one = push(&mut g, "one", Op::Const(Tensor::scalar_i64(1)), &[]);
    let count2 = push(&mut g, "seen_next", Op::Binary(BinaryOp::Add), &[count, one]);
    g.param("spare", f32_tensor(&[2], 10, 1.0)).unwrap();
    g.set_outputs(vec![loss]);
    g.set_updates(vec![(w, w2), (m, m2), (count, count2)]);
    g
}

/// Every convolution and pooling form the exporter writes as a standard ONNX op:
/// a grouped, dilated, padded convolution with a bias, its transpose (with an
/// output size only output_padding reaches), max pooling in ceil mode, average
/// pooling counting the padding, a global average, a 1-D convolution, and a
/// concatenation on the channels and a slice.
pub fn cnn() -> Graph {
    nnc_ir::parse(
        "graph cnn {
  %x: f32[N,4,9,8] = input
  %w: f32[6,2,3,3] = param
  %b: f32[6,1,1] = param
  %c: f32[N,6,5,3] = conv[kernel=[3,3], strides=[2,2], dilations=[1,2], pads=[1,1,1,0], groups=2] %x, %w
  %cb: f32[N,6,5,3] = add %c, %b
  %r: f32[N,6,5,3] = relu %cb
  %t: f32[N,4,10,8] = conv_backward_data[kernel=[3,3], strides=[2,2], pads=[1,0,0,0], groups=2, input=[10,8]] %r, %w
  %m: f32[N,4,5,4] = max_pool[kernel=[2,2], strides=[2,2], ceil_mode] %t
  %a: f32[N,4,5,4] = avg_pool[kernel=[3,3], pads=[1,1,1,1], count_include_pad] %m
  %g: f32[N,4,1,1] = reduce_mean[axes=[2,3], keep_dims] %a
  %f: f32[N,4,20] = reshape[shape=[N,4,20]] %a
  %k: f32[3,4,5] = param
  %z: f32[N,3,16] = conv[kernel=[5], pads=[0,0]] %f, %k
  %j: f32[N,8,5,4] = concat[axis=1, sizes=[4,4]] %m, %a
  %s: f32[N,8,3,4] = slice[axis=2, start=1, end=4] %j
  return %g, %z, %s
}
",
    )
    .unwrap()
}
