//! Helpers shared by the integration tests.
#![allow(dead_code)]

use ndarray::{ArrayD, IxDyn};
use nnc_interp::InterpError;
use nnc_ir::{Graph, Op, Tensor, TensorType};
use std::collections::HashMap;

pub fn f32s(shape: &[usize], data: &[f32]) -> Tensor {
    Tensor::F32(ArrayD::from_shape_vec(IxDyn(shape), data.to_vec()).unwrap())
}

pub fn i64s(shape: &[usize], data: &[i64]) -> Tensor {
    Tensor::I64(ArrayD::from_shape_vec(IxDyn(shape), data.to_vec()).unwrap())
}

pub fn i32s(shape: &[usize], data: &[i32]) -> Tensor {
    Tensor::I32(ArrayD::from_shape_vec(IxDyn(shape), data.to_vec()).unwrap())
}

pub fn bools(shape: &[usize], data: &[bool]) -> Tensor {
    Tensor::Bool(ArrayD::from_shape_vec(IxDyn(shape), data.to_vec()).unwrap())
}

pub fn feeds(pairs: &[(&str, Tensor)]) -> HashMap<String, Tensor> {
    pairs.iter().map(|(n, t)| (n.to_string(), t.clone())).collect()
}

/// Builds a one-op graph whose operands are inputs `a0, a1, ...` of the operands'
/// exact types (so the builder's type inference is exercised too), and runs it.
pub fn eval1<const K: usize>(op: Op, args: [Tensor; K]) -> Result<Tensor, InterpError> {
    let mut g = Graph::new("one_op");
    let mut ids = Vec::new();
    let mut fed = HashMap::new();
    for (i, t) in args.iter().enumerate() {
        let name = format!("a{i}");
        ids.push(g.input(&name, TensorType::new(t.dtype(), t.ir_shape())).unwrap());
        fed.insert(name, t.clone());
    }
    let out = g.op(op, &ids).expect("the op type-checks");
    g.set_outputs(vec![out]);
    let mut outs = nnc_interp::run(&g, &fed)?;
    Ok(outs.remove(0))
}

/// Asserts an f32 tensor has `shape` and is elementwise within `tol` of `want`
/// (relative for large values). NaN must match NaN.
pub fn assert_close(got: &Tensor, shape: &[usize], want: &[f32], tol: f32) {
    assert_eq!(got.shape(), shape, "shape");
    let got = got.to_f32_vec().expect("an f32 tensor");
    assert_eq!(got.len(), want.len());
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let ok = if w.is_nan() {
            g.is_nan()
        } else if w.is_infinite() {
            g == w
        } else {
            (g - w).abs() <= tol * w.abs().max(1.0)
        };
        assert!(ok, "element {i}: got {g}, want {w} (tol {tol})\n got: {got:?}\nwant: {want:?}");
    }
}
