//! Every error case, asserting the message a user sees.

mod common;
use common::*;
use nnc_interp::{batch_size, run, run_all, InterpError};
use nnc_ir::{BinaryOp, DType, Dim, Graph, Op, Shape, Tensor, TensorType, ValueId};

/// x: f32[N,784], y: i64[N]; output x + 1.
fn two_inputs() -> Graph {
    let mut g = Graph::new("g");
    let x = g.input("x", TensorType::f32(&[Dim::Batch, Dim::Fixed(784)])).unwrap();
    g.input("y", TensorType::new(DType::I64, Shape(vec![Dim::Batch]))).unwrap();
    let one = g.scalar(1.0).unwrap();
    let out = g.add(x, one).unwrap();
    g.set_outputs(vec![out]);
    g
}

fn zeros(shape: &[usize]) -> Tensor {
    f32s(shape, &vec![0.0; shape.iter().product()])
}

fn labels(n: usize) -> Tensor {
    i64s(&[n], &vec![0; n])
}

fn err(g: &Graph, pairs: &[(&str, Tensor)]) -> String {
    run(g, &feeds(pairs)).unwrap_err().to_string()
}

#[test]
fn well_formed_feeds_run() {
    let g = two_inputs();
    let fed = feeds(&[("x", zeros(&[100, 784])), ("y", labels(100))]);
    assert_eq!(batch_size(&g, &fed).unwrap(), 100);
    let out = run(&g, &fed).unwrap();
    assert_eq!(out[0].shape(), &[100, 784]);
    assert!(out[0].to_f32_vec().unwrap().iter().all(|&v| v == 1.0));
}

#[test]
fn missing_input() {
    let g = two_inputs();
    assert_eq!(err(&g, &[("x", zeros(&[2, 784]))]), r#"missing feed for input "y": i64[N]"#);
    assert_eq!(err(&g, &[]), r#"missing feeds for input "x": f32[N,784]; input "y": i64[N]"#);
}

#[test]
fn missing_param_without_initial_value() {
    let mut g = Graph::new("g");
    let w = g.push_typed("w".into(), TensorType::f32(&[Dim::Fixed(2)]), Op::Param { init: None }, vec![]).unwrap();
    g.set_outputs(vec![w]);
    assert_eq!(err(&g, &[]), r#"missing feed for param "w": f32[2] (it has no initial value)"#);
    let out = run(&g, &feeds(&[("w", f32s(&[2], &[1.0, 2.0]))])).unwrap();
    assert_close(&out[0], &[2], &[1.0, 2.0], 0.0);
}

#[test]
fn wrong_dtype() {
    let g = two_inputs();
    let got = err(&g, &[("x", i64s(&[100, 784], &[0; 78400])), ("y", labels(100))]);
    assert_eq!(got, r#"input "x": expected f32[N,784] (N=100), got i64[100,784]"#);
}

#[test]
fn wrong_shape() {
    let g = two_inputs();
    let got = err(&g, &[("x", zeros(&[100, 785])), ("y", labels(100))]);
    assert_eq!(got, r#"input "x": expected f32[N,784] (N=100), got f32[100,785]"#);
    // A wrong rank: the batch cannot be read from it.
    let got = err(&g, &[("x", zeros(&[784])), ("y", labels(100))]);
    assert_eq!(got, r#"input "x": expected f32[N,784], got f32[784]"#);
}

#[test]
fn fed_param_of_the_wrong_shape() {
    let mut g = Graph::new("g");
    let w = g.param("w", f32s(&[2, 3], &[0.0; 6])).unwrap();
    g.set_outputs(vec![w]);
    assert_eq!(err(&g, &[("w", zeros(&[3, 2]))]), r#"param "w": expected f32[2,3], got f32[3,2]"#);
}

#[test]
fn batch_disagreement() {
    let g = two_inputs();
    let got = err(&g, &[("x", zeros(&[100, 784])), ("y", labels(50))]);
    assert_eq!(got, r#"inputs disagree on the batch size: "x" has N=100, "y" has N=50"#);
    let e = batch_size(&g, &feeds(&[("x", zeros(&[100, 784])), ("y", labels(50))])).unwrap_err();
    assert!(matches!(e, InterpError::BatchMismatch { first_batch: 100, second_batch: 50, .. }), "{e:?}");
}

#[test]
fn unknown_feed() {
    let g = two_inputs();
    let got = err(&g, &[("x", zeros(&[1, 784])), ("y", labels(1)), ("z", labels(1))]);
    assert_eq!(
        got,
        r#"unknown feed "z" (the graph's inputs are "x", "y"; parameters and state can also be fed by name)"#
    );
    // A computed value cannot be fed either; several unknown names are listed sorted.
    let got = err(&g, &[("x", zeros(&[1, 784])), ("y", labels(1)), ("add", zeros(&[1, 784])), ("b", labels(1))]);
    assert_eq!(
        got,
        r#"unknown feeds "add", "b" (the graph's inputs are "x", "y"; parameters and state can also be fed by name)"#
    );
}

#[test]
fn integer_division_by_zero() {
    let mut g = Graph::new("g");
    let a = g.input("a", TensorType::new(DType::I64, Shape::fixed(&[3]))).unwrap();
    let b = g.input("b", TensorType::new(DType::I64, Shape::fixed(&[3]))).unwrap();
    let q = g.named("q", Op::Binary(BinaryOp::Div), &[a, b]).unwrap();
    g.set_outputs(vec![q]);
    let got = err(&g, &[("a", i64s(&[3], &[1, 2, 3])), ("b", i64s(&[3], &[1, 0, 1]))]);
    assert_eq!(got, "%q (div): integer division by zero");
    let ok = run(&g, &feeds(&[("a", i64s(&[3], &[1, 2, 3])), ("b", i64s(&[3], &[1, 1, 1]))])).unwrap();
    assert_eq!(ok[0], i64s(&[3], &[1, 2, 3]));
}

#[test]
fn integer_mean_of_an_empty_axis() {
    let mut g = Graph::new("g");
    let a = g.input("a", TensorType::new(DType::I32, Shape::fixed(&[2, 0]))).unwrap();
    let m = g.named("m", Op::Reduce { op: nnc_ir::ReduceOp::Mean, axes: vec![1], keep_dims: false }, &[a]).unwrap();
    g.set_outputs(vec![m]);
    let got = err(&g, &[("a", i32s(&[2, 0], &[]))]);
    assert_eq!(got, "%m (reduce_mean): integer mean over an empty axis");
}

/// Graphs built with `push_typed` skip type inference, as an unverified parsed graph
/// might; the interpreter must report, not panic.
#[test]
fn inconsistent_graphs_are_errors_not_panics() {
    let mut g = Graph::new("bad");
    let x = g.input("x", TensorType::f32(&[Dim::Batch, Dim::Fixed(3)])).unwrap();
    let i = g.input("i", TensorType::new(DType::I64, Shape::fixed(&[3]))).unwrap();
    let sum = g
        .push_typed("sum".into(), TensorType::f32(&[Dim::Batch, Dim::Fixed(3)]), Op::Binary(BinaryOp::Add), vec![x, i])
        .unwrap();
    g.set_outputs(vec![sum]);
    let fed = feeds(&[("x", zeros(&[2, 3])), ("i", i64s(&[3], &[1, 2, 3]))]);
    assert_eq!(run(&g, &fed).unwrap_err().to_string(), "%sum (add): operand types differ: f32 vs i64");

    // A declared type that disagrees with what the op computes.
    let mut g = Graph::new("bad");
    let x = g.input("x", TensorType::f32(&[Dim::Batch, Dim::Fixed(3)])).unwrap();
    let r = g
        .push_typed(
            "r".into(),
            TensorType::f32(&[Dim::Batch, Dim::Fixed(4)]),
            Op::Unary(nnc_ir::UnaryOp::Relu),
            vec![x],
        )
        .unwrap();
    g.set_outputs(vec![r]);
    let got = run(&g, &feeds(&[("x", zeros(&[2, 3]))])).unwrap_err().to_string();
    assert_eq!(got, "%r (relu): the value is f32[2,3], but its declared type is f32[N,4] (N=2)");

    // Shapes that do not broadcast, a bad axis, a bad permutation, a bad reshape, ...
    // Operands: a: f32[2,3], b: f32[4]; the declared type is never reached.
    let (a, b) = (0usize, 1usize);
    let cases: Vec<(Op, Vec<usize>, &str)> = vec![
        (Op::Binary(BinaryOp::Mul), vec![a, b], "%bad (mul): shapes [2,3] and [4] do not broadcast (axis 1: 3 vs 4)"),
        (Op::Softmax { axis: 2 }, vec![a], "%bad (softmax): axis 2 out of range for rank 2"),
        (Op::Transpose { perm: vec![0, 0] }, vec![a], "%bad (transpose): [0, 0] is not a permutation of 2 axes"),
        (
            Op::Reshape { shape: Shape::fixed(&[5]) },
            vec![a],
            "%bad (reshape): cannot reshape [2,3] to [5]: element counts differ",
        ),
        (
            Op::Reduce { op: nnc_ir::ReduceOp::Sum, axes: vec![1, 0], keep_dims: false },
            vec![a],
            "%bad (reduce_sum): axes [1, 0] must be sorted and distinct",
        ),
        (
            Op::Broadcast { shape: Shape::fixed(&[3, 3]) },
            vec![a],
            "%bad (broadcast): shapes [2,3] and [3,3] do not broadcast (axis 0: 2 vs 3)",
        ),
        (
            Op::MatMul { trans_a: false, trans_b: false },
            vec![a, b],
            "%bad (matmul): needs operands of rank >= 2, got [2,3] and [4]",
        ),
        (
            Op::MatMul { trans_a: false, trans_b: false },
            vec![a, a],
            "%bad (matmul): inner dimensions differ: [2,3] x [2,3] contracts 3 with 2",
        ),
        (Op::Unary(nnc_ir::UnaryOp::Exp), vec![2], "%bad (exp): needs f32, got i64"),
        (Op::Binary(BinaryOp::Pow), vec![2, 2], "%bad (pow): needs f32, got i64"),
        (Op::Where, vec![a, a, a], "%bad (where): condition must be bool, got f32"),
        (Op::Cast { to: DType::F32 }, vec![a, b], "%bad (cast): takes 1 operands, got 2"),
    ];
    for (op, args, want) in cases {
        let mut g = Graph::new("bad");
        let ins = [
            g.input("a", TensorType::f32(&[Dim::Fixed(2), Dim::Fixed(3)])).unwrap(),
            g.input("b", TensorType::f32(&[Dim::Fixed(4)])).unwrap(),
            g.input("i", TensorType::new(DType::I64, Shape::fixed(&[1]))).unwrap(),
        ];
        let args = args.iter().map(|&k| ins[k]).collect();
        let v = g.push_typed("bad".into(), TensorType::f32(&[]), op, args).unwrap();
        g.set_outputs(vec![v]);
        let fed = feeds(&[("a", zeros(&[2, 3])), ("b", zeros(&[4])), ("i", i64s(&[1], &[1]))]);
        assert_eq!(run(&g, &fed).unwrap_err().to_string(), want);
    }
}

#[test]
fn an_output_that_does_not_exist() {
    let mut g = two_inputs();
    g.set_outputs(vec![ValueId(99)]);
    let got = err(&g, &[("x", zeros(&[1, 784])), ("y", labels(1))]);
    assert_eq!(got, r#"graph "g": output v99 does not exist"#);
}

#[test]
fn a_constant_that_disagrees_with_its_declared_type() {
    let mut g = Graph::new("g");
    let c = g
        .push_typed("c".into(), TensorType::f32(&[Dim::Fixed(3)]), Op::Const(Tensor::scalar_f32(1.0)), vec![])
        .unwrap();
    g.set_outputs(vec![c]);
    let got = run_all(&g, &feeds(&[])).unwrap_err().to_string();
    assert_eq!(got, "%c (const): the value is f32[], but its declared type is f32[3]");
}

#[test]
fn results_too_large_to_allocate_are_errors() {
    // Unverified graphs can ask for anything; the interpreter applies the verifier's
    // size limit before allocating instead of aborting on a failed allocation.
    let mut g = Graph::new("g");
    let one = g.constant(f32s(&[1, 1], &[1.0])).unwrap();
    let big = Shape::fixed(&[1 << 40, 1]);
    let a = g
        .push_typed("a".into(), TensorType::new(DType::F32, big.clone()), Op::Broadcast { shape: big }, vec![one])
        .unwrap();
    let m = g
        .push_typed("m".into(), TensorType::f32(&[]), Op::MatMul { trans_a: false, trans_b: true }, vec![a, a])
        .unwrap();
    g.set_outputs(vec![m]);
    let e = run(&g, &feeds(&[])).unwrap_err().to_string();
    assert_eq!(e, "%a (broadcast): the result f32[1099511627776,1] has more than 2147483648 elements");
}
