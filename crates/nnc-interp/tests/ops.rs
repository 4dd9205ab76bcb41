//! Each op against hand-computed values.

// Reference values are written at f64 precision, as computed, not rounded to f32.
#![allow(clippy::excessive_precision)]

mod common;
use common::*;
use nnc_ir::{BinaryOp, DType, Op, ReduceOp, Shape, Tensor, UnaryOp};

fn un(u: UnaryOp, x: &[f32]) -> Tensor {
    eval1(Op::Unary(u), [f32s(&[x.len()], x)]).unwrap()
}

fn bin(b: BinaryOp, x: Tensor, y: Tensor) -> Tensor {
    eval1(Op::Binary(b), [x, y]).unwrap()
}

#[test]
fn simple_unary_ops() {
    assert_close(&un(UnaryOp::Neg, &[1.5, -2.0]), &[2], &[-1.5, 2.0], 0.0);
    assert_close(&un(UnaryOp::Exp, &[0.0, 1.0]), &[2], &[1.0, std::f32::consts::E], 1e-6);
    assert_close(
        &un(UnaryOp::Log, &[1.0, 2.0, 0.0, -1.0]),
        &[4],
        &[0.0, std::f32::consts::LN_2, f32::NEG_INFINITY, f32::NAN],
        1e-6,
    );
    assert_close(&un(UnaryOp::Sqrt, &[4.0, 2.0]), &[2], &[2.0, std::f32::consts::SQRT_2], 1e-6);
    assert_close(&un(UnaryOp::Tanh, &[0.0, 1.0, -20.0]), &[3], &[0.0, 0.761_594_16, -1.0], 1e-6);
    assert_close(&un(UnaryOp::Relu, &[-1.0, 0.0, 2.5, f32::NAN]), &[4], &[0.0, 0.0, 2.5, f32::NAN], 0.0);
    assert_close(&un(UnaryOp::LeakyRelu { alpha: 0.1 }, &[-2.0, 0.0, 3.0]), &[3], &[-0.2, 0.0, 3.0], 1e-7);
    assert_close(&un(UnaryOp::Identity, &[-2.0, 7.0]), &[2], &[-2.0, 7.0], 0.0);
}

#[test]
fn erf_is_accurate() {
    // Reference values from f64 erf.
    let got = un(UnaryOp::Erf, &[0.0, 0.5, 1.0, -2.0, 3.0]);
    let want = [0.0, 0.520_499_88, 0.842_700_8, -0.995_322_27, 0.999_977_9];
    for (g, w) in got.to_f32_vec().unwrap().iter().zip(want) {
        assert!((g - w).abs() < 1e-6, "{g} vs {w}");
    }
}

#[test]
fn sigmoid_is_stable_in_the_tails() {
    let got = un(UnaryOp::Sigmoid, &[0.0, 2.0, -2.0, 100.0, -100.0, 1000.0, -1000.0]);
    assert_close(&got, &[7], &[0.5, 0.880_797_1, 0.119_202_92, 1.0, 0.0, 1.0, 0.0], 1e-6);
    let v = got.to_f32_vec().unwrap();
    assert!(v.iter().all(|x| x.is_finite() && (0.0..=1.0).contains(x)));
    // exp(-100) ≈ 3.72e-44 is a subnormal f32, not flushed to NaN or garbage.
    assert!(v[4] > 0.0 && v[4] < 1e-43, "{}", v[4]);
    assert_eq!(v[6], 0.0);
}

#[test]
fn gelu_exact_and_tanh_forms() {
    let x = [-1.0, 1.0, 2.0, -3.0];
    let exact = un(UnaryOp::Gelu { approximate: false }, &x);
    assert_close(&exact, &[4], &[-0.158_655_25, 0.841_344_76, 1.954_499_7, -0.004_049_694], 1e-6);
    let approx = un(UnaryOp::Gelu { approximate: true }, &x);
    assert_close(&approx, &[4], &[-0.158_808, 0.841_192, 1.954_597_7, -0.003_637_392], 1e-6);
}

#[test]
fn integer_unary_ops() {
    let x = i64s(&[3], &[-2, 0, 5]);
    assert_eq!(eval1(Op::Unary(UnaryOp::Neg), [x.clone()]).unwrap(), i64s(&[3], &[2, 0, -5]));
    assert_eq!(eval1(Op::Unary(UnaryOp::Relu), [x]).unwrap(), i64s(&[3], &[0, 0, 5]));
    let b = bools(&[2], &[true, false]);
    assert_eq!(eval1(Op::Unary(UnaryOp::Identity), [b.clone()]).unwrap(), b);
}

#[test]
fn binary_broadcasting() {
    let m = f32s(&[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    // [2,3] + [3]: the row is added to every row.
    let got = bin(BinaryOp::Add, m.clone(), f32s(&[3], &[10.0, 20.0, 30.0]));
    assert_close(&got, &[2, 3], &[11.0, 22.0, 33.0, 14.0, 25.0, 36.0], 0.0);
    // [2,1] * [1,3]: an outer product.
    let got = bin(BinaryOp::Mul, f32s(&[2, 1], &[1.0, 2.0]), f32s(&[1, 3], &[1.0, 2.0, 3.0]));
    assert_close(&got, &[2, 3], &[1.0, 2.0, 3.0, 2.0, 4.0, 6.0], 0.0);
    // scalar - [2]
    let got = bin(BinaryOp::Sub, Tensor::scalar_f32(10.0), f32s(&[2], &[1.0, 2.0]));
    assert_close(&got, &[2], &[9.0, 8.0], 0.0);
    // [2,3] / [2,1]
    let got = bin(BinaryOp::Div, m.clone(), f32s(&[2, 1], &[2.0, 4.0]));
    assert_close(&got, &[2, 3], &[0.5, 1.0, 1.5, 1.0, 1.25, 1.5], 0.0);
    // [3,1,2] with [2,1]: rank-3 result [3,2,2].
    let a = f32s(&[3, 1, 2], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    let got = bin(BinaryOp::Add, a, f32s(&[2, 1], &[0.0, 100.0]));
    assert_close(&got, &[3, 2, 2], &[1.0, 2.0, 101.0, 102.0, 3.0, 4.0, 103.0, 104.0, 5.0, 6.0, 105.0, 106.0], 0.0);
}

#[test]
fn float_binary_ops() {
    let got = bin(BinaryOp::Div, f32s(&[3], &[1.0, -1.0, 0.0]), Tensor::scalar_f32(0.0));
    assert_close(&got, &[3], &[f32::INFINITY, f32::NEG_INFINITY, f32::NAN], 0.0);
    let got = bin(BinaryOp::Pow, f32s(&[3], &[2.0, 3.0, 4.0]), f32s(&[3], &[2.0, 2.0, 0.5]));
    assert_close(&got, &[3], &[4.0, 9.0, 2.0], 1e-6);
    let x = f32s(&[3], &[1.0, 5.0, f32::NAN]);
    assert_close(&bin(BinaryOp::Max, x.clone(), f32s(&[1], &[3.0])), &[3], &[3.0, 5.0, f32::NAN], 0.0);
    assert_close(&bin(BinaryOp::Min, x.clone(), f32s(&[1], &[3.0])), &[3], &[1.0, 3.0, f32::NAN], 0.0);
    let got = bin(BinaryOp::Greater, x, Tensor::scalar_f32(3.0));
    assert_eq!(got, bools(&[3], &[false, true, false]));
}

#[test]
fn integer_binary_ops() {
    let a = i64s(&[4], &[-7, 7, -7, 7]);
    let b = i64s(&[4], &[2, 2, -2, -2]);
    assert_eq!(bin(BinaryOp::Add, a.clone(), b.clone()), i64s(&[4], &[-5, 9, -9, 5]));
    assert_eq!(bin(BinaryOp::Sub, a.clone(), b.clone()), i64s(&[4], &[-9, 5, -5, 9]));
    assert_eq!(bin(BinaryOp::Mul, a.clone(), b.clone()), i64s(&[4], &[-14, 14, 14, -14]));
    // Division truncates toward zero, like ONNX (not floor like Python).
    assert_eq!(bin(BinaryOp::Div, a.clone(), b.clone()), i64s(&[4], &[-3, 3, 3, -3]));
    assert_eq!(bin(BinaryOp::Max, a.clone(), b.clone()), i64s(&[4], &[2, 7, -2, 7]));
    assert_eq!(bin(BinaryOp::Min, a.clone(), b.clone()), i64s(&[4], &[-7, 2, -7, -2]));
    assert_eq!(bin(BinaryOp::Greater, a, b), bools(&[4], &[false, true, false, true]));
    // i32, with broadcasting and wrapping overflow.
    let got = bin(BinaryOp::Add, i32s(&[2, 1], &[i32::MAX, 1]), i32s(&[2], &[1, 2]));
    assert_eq!(got, i32s(&[2, 2], &[i32::MIN, i32::MIN + 1, 2, 3]));
    assert_eq!(bin(BinaryOp::Div, i32s(&[2], &[9, -9]), i32s(&[], &[4])), i32s(&[2], &[2, -2]));
}

#[test]
fn where_broadcasts_all_three() {
    let c = bools(&[2, 1], &[true, false]);
    let got = eval1(Op::Where, [c.clone(), f32s(&[3], &[1.0, 2.0, 3.0]), Tensor::scalar_f32(0.0)]).unwrap();
    assert_close(&got, &[2, 3], &[1.0, 2.0, 3.0, 0.0, 0.0, 0.0], 0.0);
    let got = eval1(Op::Where, [c, i64s(&[1], &[5]), i64s(&[2, 2], &[1, 2, 3, 4])]).unwrap();
    assert_eq!(got, i64s(&[2, 2], &[5, 5, 3, 4]));
}

#[test]
fn softmax_rows_sum_to_one_and_large_logits_are_stable() {
    let x = f32s(&[3, 3], &[1.0, 2.0, 3.0, 1000.0, 1000.0, 1000.0, 1000.0, 0.0, -1000.0]);
    let got = eval1(Op::Softmax { axis: 1 }, [x.clone()]).unwrap();
    let third = 1.0 / 3.0;
    assert_close(&got, &[3, 3], &[0.090_030_57, 0.244_728_47, 0.665_240_96, third, third, third, 1.0, 0.0, 0.0], 1e-6);
    let v = got.to_f32_vec().unwrap();
    for row in v.chunks(3) {
        assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-6, "{row:?}");
    }
    let got = eval1(Op::LogSoftmax { axis: 1 }, [x]).unwrap();
    assert_close(
        &got,
        &[3, 3],
        &[-2.407_606, -1.407_606, -0.407_606, -1.098_612_3, -1.098_612_3, -1.098_612_3, 0.0, -1000.0, -2000.0],
        1e-6,
    );
}

#[test]
fn softmax_over_a_leading_axis() {
    let x = f32s(&[2, 2], &[0.0, 1.0, 0.0, 3.0]);
    let got = eval1(Op::Softmax { axis: 0 }, [x]).unwrap();
    let e2 = 1.0 / (1.0 + (2.0f32).exp());
    assert_close(&got, &[2, 2], &[0.5, e2, 0.5, 1.0 - e2], 1e-6);
}

fn reduce(op: ReduceOp, x: Tensor, axes: &[usize], keep_dims: bool) -> Tensor {
    eval1(Op::Reduce { op, axes: axes.to_vec(), keep_dims }, [x]).unwrap()
}

#[test]
fn reductions() {
    let m = f32s(&[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    assert_close(&reduce(ReduceOp::Sum, m.clone(), &[0], false), &[3], &[5.0, 7.0, 9.0], 0.0);
    assert_close(&reduce(ReduceOp::Sum, m.clone(), &[1], true), &[2, 1], &[6.0, 15.0], 0.0);
    assert_close(&reduce(ReduceOp::Mean, m.clone(), &[0, 1], false), &[], &[3.5], 0.0);
    assert_close(&reduce(ReduceOp::Mean, m.clone(), &[0, 1], true), &[1, 1], &[3.5], 0.0);
    assert_close(&reduce(ReduceOp::Max, m.clone(), &[1], false), &[2], &[3.0, 6.0], 0.0);
    // No axes: nothing is reduced.
    assert_close(&reduce(ReduceOp::Sum, m, &[], false), &[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 0.0);
    // Rank 3, reducing the outer axes and keeping them.
    let x = f32s(&[2, 2, 2], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]);
    assert_close(&reduce(ReduceOp::Sum, x.clone(), &[0, 2], true), &[1, 2, 1], &[14.0, 22.0], 0.0);
    assert_close(&reduce(ReduceOp::Max, x, &[0, 1], false), &[2], &[7.0, 8.0], 0.0);
    // Max propagates NaN.
    let got = reduce(ReduceOp::Max, f32s(&[3], &[1.0, f32::NAN, 2.0]), &[0], false);
    assert!(got.to_f32_vec().unwrap()[0].is_nan());
}

#[test]
fn integer_reductions() {
    let m = i64s(&[2, 3], &[1, 2, 3, 4, 5, -6]);
    assert_eq!(reduce(ReduceOp::Sum, m.clone(), &[1], false), i64s(&[2], &[6, 3]));
    assert_eq!(reduce(ReduceOp::Max, m.clone(), &[0], true), i64s(&[1, 3], &[4, 5, 3]));
    // Integer mean truncates: 7/2 = 3, -3/2 = -1.
    assert_eq!(reduce(ReduceOp::Mean, m, &[0], false), i64s(&[3], &[2, 3, -1]));
}

#[test]
fn layout_ops() {
    let m = f32s(&[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    let got = eval1(Op::Transpose { perm: vec![1, 0] }, [m.clone()]).unwrap();
    assert_close(&got, &[3, 2], &[1.0, 4.0, 2.0, 5.0, 3.0, 6.0], 0.0);
    // Reshape after a transpose reads the transposed (row-major) order.
    let got = eval1(Op::Reshape { shape: Shape::fixed(&[6]) }, [got]).unwrap();
    assert_close(&got, &[6], &[1.0, 4.0, 2.0, 5.0, 3.0, 6.0], 0.0);
    let x = f32s(&[1, 2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    let got = eval1(Op::Transpose { perm: vec![2, 0, 1] }, [x]).unwrap();
    assert_close(&got, &[3, 1, 2], &[1.0, 4.0, 2.0, 5.0, 3.0, 6.0], 0.0);
    let got = eval1(Op::Broadcast { shape: Shape::fixed(&[2, 2, 3]) }, [f32s(&[1, 3], &[1.0, 2.0, 3.0])]).unwrap();
    assert_close(&got, &[2, 2, 3], &[1.0, 2.0, 3.0, 1.0, 2.0, 3.0, 1.0, 2.0, 3.0, 1.0, 2.0, 3.0], 0.0);
    let got = eval1(Op::Broadcast { shape: Shape::fixed(&[2]) }, [bools(&[], &[true])]).unwrap();
    assert_eq!(got, bools(&[2], &[true, true]));
}

#[test]
fn casts() {
    let x = f32s(&[7], &[-1.7, -0.5, 0.0, 0.5, 2.9, f32::NAN, 1e20]);
    // f32 → int truncates toward zero; NaN → 0 and out-of-range saturates.
    assert_eq!(eval1(Op::Cast { to: DType::I64 }, [x.clone()]).unwrap(), i64s(&[7], &[-1, 0, 0, 0, 2, 0, i64::MAX]));
    assert_eq!(eval1(Op::Cast { to: DType::I32 }, [x.clone()]).unwrap(), i32s(&[7], &[-1, 0, 0, 0, 2, 0, i32::MAX]));
    assert_eq!(
        eval1(Op::Cast { to: DType::Bool }, [x.clone()]).unwrap(),
        bools(&[7], &[true, true, false, true, true, true, true])
    );
    assert_eq!(
        eval1(Op::Cast { to: DType::F32 }, [x.clone()]).unwrap().to_f32_vec().unwrap()[..5],
        [-1.7, -0.5, 0.0, 0.5, 2.9]
    );
    let i = i64s(&[3], &[-3, 0, 4_294_967_297]);
    assert_close(&eval1(Op::Cast { to: DType::F32 }, [i.clone()]).unwrap(), &[3], &[-3.0, 0.0, 4_294_967_297.0], 0.0);
    // i64 → i32 wraps (keeps the low 32 bits).
    assert_eq!(eval1(Op::Cast { to: DType::I32 }, [i.clone()]).unwrap(), i32s(&[3], &[-3, 0, 1]));
    assert_eq!(eval1(Op::Cast { to: DType::Bool }, [i]).unwrap(), bools(&[3], &[true, false, true]));
    assert_eq!(eval1(Op::Cast { to: DType::I64 }, [i32s(&[2], &[-5, 6])]).unwrap(), i64s(&[2], &[-5, 6]));
    let b = bools(&[2], &[true, false]);
    assert_close(&eval1(Op::Cast { to: DType::F32 }, [b.clone()]).unwrap(), &[2], &[1.0, 0.0], 0.0);
    assert_eq!(eval1(Op::Cast { to: DType::I64 }, [b.clone()]).unwrap(), i64s(&[2], &[1, 0]));
    assert_eq!(eval1(Op::Cast { to: DType::I32 }, [b.clone()]).unwrap(), i32s(&[2], &[1, 0]));
    assert_eq!(eval1(Op::Cast { to: DType::Bool }, [b.clone()]).unwrap(), b);
}

#[test]
fn one_hot() {
    let got = eval1(Op::OneHot { depth: 3 }, [i64s(&[2, 2], &[0, 2, 1, 0])]).unwrap();
    assert_close(&got, &[2, 2, 3], &[1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 0.0], 0.0);
    let got = eval1(Op::OneHot { depth: 2 }, [i32s(&[], &[1])]).unwrap();
    assert_close(&got, &[2], &[0.0, 1.0], 0.0);
    // Labels outside 0..depth are an error, not a silent zero row.
    for bad in [3, -1] {
        let e = eval1(Op::OneHot { depth: 3 }, [i64s(&[2], &[0, bad])]).unwrap_err();
        assert_eq!(e.to_string(), format!("%one_hot (one_hot): class index {bad} out of range 0..3"));
    }
}
