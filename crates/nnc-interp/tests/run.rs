//! Graph-level behaviour: the batch dimension, run vs run_all, output order, dead
//! values, and layouts of fed tensors.

mod common;
use common::*;
use ndarray::{ArrayD, IxDyn};
use nnc_interp::{batch_size, run, run_all};
use nnc_ir::{BinaryOp, DType, Dim, Graph, Op, Shape, Tensor, TensorType};

#[test]
fn batch_is_resolved_in_reshape_and_broadcast() {
    let mut g = Graph::new("g");
    let x = g.input("x", TensorType::f32(&[Dim::Batch, Dim::Fixed(2), Dim::Fixed(3)])).unwrap();
    let flat = g.reshape(x, Shape(vec![Dim::Batch, Dim::Fixed(6)])).unwrap();
    let col = g.reduce(nnc_ir::ReduceOp::Sum, flat, &[1], true).unwrap();
    let wide = g.broadcast(col, Shape(vec![Dim::Batch, Dim::Fixed(2)])).unwrap();
    g.set_outputs(vec![flat, wide]);
    let data: Vec<f32> = (0..12).map(|v| v as f32).collect();
    let fed = feeds(&[("x", f32s(&[2, 2, 3], &data))]);
    assert_eq!(batch_size(&g, &fed).unwrap(), 2);
    let out = run(&g, &fed).unwrap();
    assert_close(&out[0], &[2, 6], &data, 0.0);
    assert_close(&out[1], &[2, 2], &[15.0, 15.0, 51.0, 51.0], 0.0);
}

#[test]
fn graph_without_a_batch_dimension_uses_one() {
    let mut g = Graph::new("g");
    let c = g.constant(f32s(&[1, 2], &[1.0, 2.0])).unwrap();
    // A broadcast to N with no fed batch: N = 1.
    let b = g.broadcast(c, Shape(vec![Dim::Batch, Dim::Fixed(2)])).unwrap();
    g.set_outputs(vec![b]);
    assert_eq!(batch_size(&g, &feeds(&[])).unwrap(), 1);
    assert_close(&run(&g, &feeds(&[])).unwrap()[0], &[1, 2], &[1.0, 2.0], 0.0);
}

#[test]
fn run_all_returns_every_value_and_agrees_with_run() {
    let mut g = Graph::new("g");
    let x = g.input("x", TensorType::f32(&[Dim::Batch, Dim::Fixed(2)])).unwrap();
    let two = g.scalar(2.0).unwrap();
    let y = g.mul(x, two).unwrap();
    let z = g.add(y, x).unwrap();
    let unused = g.unary(nnc_ir::UnaryOp::Exp, x).unwrap();
    // Outputs in a different order than definition, one repeated.
    g.set_outputs(vec![z, y, z]);
    let fed = feeds(&[("x", f32s(&[1, 2], &[1.0, -1.0]))]);
    let all = run_all(&g, &fed).unwrap();
    assert_eq!(all.len(), g.len());
    assert_close(&all[y.index()], &[1, 2], &[2.0, -2.0], 0.0);
    assert_close(&all[z.index()], &[1, 2], &[3.0, -3.0], 0.0);
    assert_close(&all[unused.index()], &[1, 2], &[1.0f32.exp(), (-1.0f32).exp()], 1e-6);
    let outs = run(&g, &fed).unwrap();
    assert_eq!(outs, vec![all[z.index()].clone(), all[y.index()].clone(), all[z.index()].clone()]);
}

#[test]
fn run_skips_values_the_outputs_do_not_need() {
    // A dead integer division by zero fails run_all (which computes everything) but
    // not run, so dead-code elimination never changes what run reports.
    let mut g = Graph::new("g");
    let a = g.constant(Tensor::I64(ArrayD::from_elem(IxDyn(&[]), 1))).unwrap();
    let zero = g.constant(Tensor::I64(ArrayD::from_elem(IxDyn(&[]), 0))).unwrap();
    let _dead = g.binary(BinaryOp::Div, a, zero).unwrap();
    let live = g.cast(a, DType::F32).unwrap();
    g.set_outputs(vec![live]);
    assert_close(&run(&g, &feeds(&[])).unwrap()[0], &[], &[1.0], 0.0);
    assert_eq!(run_all(&g, &feeds(&[])).unwrap_err().to_string(), "%div (div): integer division by zero");
}

#[test]
fn outputs_can_be_leaves() {
    let mut g = Graph::new("g");
    let x = g.input("x", TensorType::new(DType::Bool, Shape::fixed(&[2]))).unwrap();
    let w = g.param("w", i64s(&[1], &[9])).unwrap();
    g.set_outputs(vec![w, x]);
    let out = run(&g, &feeds(&[("x", bools(&[2], &[true, false]))])).unwrap();
    assert_eq!(out, vec![i64s(&[1], &[9]), bools(&[2], &[true, false])]);
}

#[test]
fn non_standard_layout_feeds_are_read_logically_and_outputs_are_row_major() {
    let mut g = Graph::new("g");
    let x = g.input("x", TensorType::f32(&[Dim::Fixed(3), Dim::Fixed(2)])).unwrap();
    let w = g.constant(f32s(&[2, 1], &[1.0, 10.0])).unwrap();
    let m = g.matmul(x, w, false, false).unwrap();
    let flat = g.reshape(x, Shape::fixed(&[6])).unwrap();
    let id = g.unary(nnc_ir::UnaryOp::Identity, x).unwrap();
    g.set_outputs(vec![m, flat, x, id]);
    // A transposed view made owned: column-major memory for a logical [3,2].
    let t = f32s(&[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    let Tensor::F32(a) = t else { unreachable!() };
    let fed = Tensor::F32(a.reversed_axes());
    let out = run(&g, &feeds(&[("x", fed)])).unwrap();
    assert_close(&out[0], &[3, 1], &[41.0, 52.0, 63.0], 0.0);
    assert_close(&out[1], &[6], &[1.0, 4.0, 2.0, 5.0, 3.0, 6.0], 0.0);
    for o in &out {
        assert!(o.as_f32().unwrap().is_standard_layout());
    }
}

/// One SGD step on a state-carrying graph: w' = w - lr·g, count' = count + 1.
fn sgd_graph() -> Graph {
    let mut g = Graph::new("step");
    let x = g.input("x", TensorType::f32(&[Dim::Batch, Dim::Fixed(2)])).unwrap();
    let w = g.param("w", f32s(&[2], &[1.0, -1.0])).unwrap();
    let count = g.push("count", Op::State { init: Some(f32s(&[], &[0.0])) }, &[]).unwrap();
    let lr = g.scalar(0.5).unwrap();
    // loss = mean over the batch of x·w; its gradient in w is the column mean of x.
    let xw = g.mul(x, w).unwrap();
    let loss = g.reduce(nnc_ir::ReduceOp::Sum, xw, &[0, 1], false).unwrap();
    let grad = g.reduce(nnc_ir::ReduceOp::Mean, x, &[0], false).unwrap();
    let step = g.mul(grad, lr).unwrap();
    let w_new = g.sub(w, step).unwrap();
    let one = g.scalar(1.0).unwrap();
    let count_new = g.add(count, one).unwrap();
    g.set_outputs(vec![loss]);
    g.set_updates(vec![(w, w_new), (count, count_new)]);
    g
}

#[test]
fn run_step_computes_updates_that_run_skips() {
    let g = sgd_graph();
    let fed = feeds(&[("x", f32s(&[2, 2], &[1.0, 2.0, 3.0, 4.0]))]);
    let step = nnc_interp::run_step(&g, &fed).unwrap();
    assert_close(&step.outputs[0], &[], &[-2.0], 0.0);
    assert_close(&step.updates[0], &[2], &[0.0, -2.5], 0.0);
    assert_close(&step.updates[1], &[], &[1.0], 0.0);
    assert_eq!(run(&g, &fed).unwrap(), step.outputs);

    // Feeding the new state back overrides the initial values.
    let mut fed2 = fed.clone();
    fed2.insert("w".into(), step.updates[0].clone());
    fed2.insert("count".into(), step.updates[1].clone());
    let step2 = nnc_interp::run_step(&g, &fed2).unwrap();
    assert_close(&step2.updates[0], &[2], &[-1.0, -4.0], 0.0);
    assert_close(&step2.updates[1], &[], &[2.0], 0.0);
}

#[test]
fn state_without_initial_value_must_be_fed() {
    let mut g = Graph::new("g");
    let m = g.push_typed("m".into(), TensorType::f32(&[Dim::Fixed(2)]), Op::State { init: None }, vec![]).unwrap();
    g.set_outputs(vec![m]);
    let e = run(&g, &feeds(&[])).unwrap_err();
    assert_eq!(e.to_string(), r#"missing feed for state "m": f32[2] (it has no initial value)"#);
    let e = run(&g, &feeds(&[("m", f32s(&[3], &[0.0; 3]))])).unwrap_err();
    assert_eq!(e.to_string(), r#"state "m": expected f32[2], got f32[3]"#);
}
