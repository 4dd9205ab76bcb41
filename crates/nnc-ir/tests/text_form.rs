//! The text form: print → parse → print is the identity, data round-trips exactly,
//! and malformed text gets an error naming line and column.

use nnc_ir::{
    parse, parse_unverified, print, print_with_data, verify, BinaryOp, DType, Dim, Graph, IrError, Op, ReduceOp, Shape,
    Tensor, TensorType, UnaryOp,
};

/// A graph that uses every op and attribute form of the IR.
fn every_op() -> Graph {
    let mut g = Graph::new("every_op");
    let x = g.input("x", TensorType::f32(&[Dim::Batch, Dim::Fixed(4)])).unwrap();
    let labels = g.input("labels", TensorType::new(DType::I64, Shape(vec![Dim::Batch]))).unwrap();
    let w = g.param("w", Tensor::from_f32(&[3, 4], (0..12).map(|i| i as f32 * 0.25 - 1.0).collect()).unwrap()).unwrap();
    let b = g.param("layer 1/bias \"odd\"", Tensor::from_f32(&[3], vec![0.1, -0.2, 1e-7]).unwrap()).unwrap();
    let mut h = g.matmul(x, w, false, true).unwrap();
    h = g.add(h, b).unwrap();
    for u in [
        UnaryOp::Neg,
        UnaryOp::Exp,
        UnaryOp::Sigmoid,
        UnaryOp::Log,
        UnaryOp::Sqrt,
        UnaryOp::Erf,
        UnaryOp::Relu,
        UnaryOp::LeakyRelu { alpha: 0.01 },
        UnaryOp::Tanh,
        UnaryOp::Gelu { approximate: false },
        UnaryOp::Gelu { approximate: true },
        UnaryOp::Identity,
    ] {
        h = g.unary(u, h).unwrap();
    }
    let two = g.scalar(2.0).unwrap();
    for op in [BinaryOp::Sub, BinaryOp::Mul, BinaryOp::Div, BinaryOp::Pow, BinaryOp::Max, BinaryOp::Min] {
        h = g.binary(op, h, two).unwrap();
    }
    let mask = g.binary(BinaryOp::Greater, h, two).unwrap();
    let zero = g.scalar(0.0).unwrap();
    h = g.where_(mask, h, zero).unwrap();
    let s = g.softmax(h, 1).unwrap();
    let ls = g.log_softmax(s, 1).unwrap();
    let r = g.reduce(ReduceOp::Sum, ls, &[1], true).unwrap();
    let r = g.reduce(ReduceOp::Max, r, &[1], false).unwrap();
    let r = g.reduce(ReduceOp::Mean, r, &[0], false).unwrap();
    let t = g.transpose(h, &[1, 0]).unwrap();
    let t = g.reshape(t, Shape(vec![Dim::Fixed(3), Dim::Batch, Dim::Fixed(1)])).unwrap();
    let t = g.broadcast(t, Shape(vec![Dim::Fixed(2), Dim::Fixed(3), Dim::Batch, Dim::Fixed(5)])).unwrap();
    let c = g.cast(labels, DType::F32).unwrap();
    let ints = g.constant(Tensor::from_i64(&[2], vec![-3, 7]).unwrap()).unwrap();
    let flags = g.constant(Tensor::Bool(ndarray::arr1(&[true, false]).into_dyn())).unwrap();
    let onehot = g.op(Op::OneHot { depth: 3 }, &[labels]).unwrap();
    let m = g.push("w.m", Op::State { init: Some(Tensor::from_f32(&[3, 4], vec![0.0; 12]).unwrap()) }, &[]).unwrap();
    let m_new = g.add(m, w).unwrap();
    g.set_updates(vec![(m, m_new)]);
    g.set_outputs(vec![r, t, c, ints, flags, onehot]);
    g
}

#[test]
fn print_parse_print_is_identity() {
    let g = every_op();
    verify(&g).unwrap();
    let text = print(&g);
    let reparsed = parse(&text).unwrap();
    assert_eq!(print(&reparsed), text);
    // Without data, parameters come back without initial values but with their types.
    assert!(matches!(reparsed.value(reparsed.find("w").unwrap()).op, Op::Param { init: None }));
}

#[test]
fn data_round_trips_exactly() {
    let mut g = every_op();
    let tricky = vec![f32::MIN_POSITIVE, -0.0, 1.0 / 3.0, f32::MAX, 1e-45, f32::INFINITY, f32::NEG_INFINITY, 7.0];
    let p = g.param("tricky", Tensor::from_f32(&[8], tricky).unwrap()).unwrap();
    let mut outs = g.outputs().to_vec();
    outs.push(p);
    g.set_outputs(outs);
    let text = print_with_data(&g);
    let reparsed = parse(&text).unwrap();
    assert_eq!(reparsed, g, "the whole graph, data included, survives print/parse");
    assert_eq!(print_with_data(&reparsed), text);
}

#[test]
fn small_mlp_text_snapshot() {
    let text = "graph mlp {
  %x: f32[N,784] = input
  %w1: f32[256,784] = param
  %b1: f32[256] = param
  %h: f32[N,256] = matmul[trans_b] %x, %w1
  %hb: f32[N,256] = add %h, %b1   ; bias
  %a: f32[N,256] = relu %hb
  return %a
}
";
    let g = parse(text).unwrap();
    insta::assert_snapshot!(print(&g));
}

fn parse_err(text: &str) -> String {
    match parse(text) {
        Ok(_) => panic!("expected an error for:\n{text}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn parse_errors_name_line_and_column() {
    let head = "graph g {\n  %x: f32[N,4] = input\n";
    assert_eq!(
        parse_err(&format!("{head}  %y: f32[N,4] = frobnicate %x\n  return %y\n}}\n")),
        "line 3, column 18: unknown op 'frobnicate'"
    );
    assert_eq!(
        parse_err(&format!("{head}  %y: f32[N,4] = relu %z\n  return %y\n}}\n")),
        "line 3, column 24: %z is not defined before use"
    );
    assert_eq!(
        parse_err(&format!("{head}  %x: f32[N,4] = relu %x\n  return %x\n}}\n")),
        "line 3, column 4: %x: defined twice"
    );
    assert_eq!(
        parse_err(&format!("{head}  %y: f32[N,4] = relu[alpha=1] %x\n  return %y\n}}\n")),
        "line 3, column 18: relu has no attribute 'alpha'"
    );
    assert_eq!(
        parse_err(&format!("{head}  %y: f33[N,4] = relu %x\n  return %y\n}}\n")),
        "line 3, column 7: unknown type 'f33'"
    );
    assert_eq!(
        parse_err(&format!("{head}  %c: f32[2] = const [1.0]\n  return %c\n}}\n")),
        "line 3, column 16: f32[2] needs 2 values, got 1"
    );
    assert_eq!(parse_err(&format!("{head}  return %x\n")), "line 3, column 1: missing 'graph NAME {' ... '}'");
    assert_eq!(parse_err(""), "line 1, column 1: missing 'graph NAME {' ... '}'");
}

#[test]
fn verifier_checks_declared_types() {
    let text = "graph g {
  %a: f32[N,4] = input
  %b: f32[5,3] = input
  %c: f32[N,3] = matmul %a, %b
  return %c
}
";
    let err = parse(text).unwrap_err();
    assert_eq!(err.to_string(), "%c (matmul): inner dimensions differ: [N,4] x [5,3] contracts 4 with 5");
    let wrong_decl = "graph g {
  %a: f32[N,4] = input
  %r: f32[N,5] = relu %a
  return %r
}
";
    assert!(parse_unverified(wrong_decl).is_ok());
    assert_eq!(
        verify(&parse_unverified(wrong_decl).unwrap()).unwrap_err().to_string(),
        "%r (relu): declared type f32[N,5] but the op produces f32[N,4]"
    );
    let no_outputs = "graph g {\n  %a: f32[2] = input\n}\n";
    assert_eq!(parse_err(no_outputs), "%g: graph has no outputs");
    let huge = "graph g {\n  %a: f32[N,1099511627776] = input\n  return %a\n}\n";
    assert!(parse_err(huge).contains("more than 2147483648 elements"));
}

#[test]
fn builder_reports_shape_errors_with_the_value_name() {
    let mut g = Graph::new("g");
    let x = g.input("x", TensorType::f32(&[Dim::Batch, Dim::Fixed(4)])).unwrap();
    let b = g.param("b", Tensor::from_f32(&[3], vec![0.0; 3]).unwrap()).unwrap();
    let err = g.add(x, b).unwrap_err();
    assert_eq!(
        err,
        IrError::Type {
            value: "add".into(),
            op: "add".into(),
            message: "shapes [N,4] and [3] do not broadcast (axis 1: 4 vs 3)".into()
        }
    );
    let err = g.reshape(x, Shape::fixed(&[4])).unwrap_err();
    assert!(err.to_string().contains("the batch dimension must be kept once"), "{err}");
}

/// Convolutions and pooling: every attribute form round-trips, and operands that do
/// not fit the window are refused with the reason.
#[test]
fn window_ops_round_trip_and_refuse_misfits() {
    let text = "graph cnn {
  %x: f32[N,4,9,8] = input
  %w: f32[6,2,3,3] = param
  %y: f32[N,6,5,3] = conv[kernel=[3,3], strides=[2,2], dilations=[1,2], pads=[1,1,1,0], groups=2] %x, %w
  %dx: f32[N,4,9,8] = conv_backward_data[kernel=[3,3], strides=[2,2], dilations=[1,2], pads=[1,1,1,0], groups=2, input=[9,8]] %y, %w
  %dw: f32[6,2,3,3] = conv_backward_filter[kernel=[3,3], strides=[2,2], dilations=[1,2], pads=[1,1,1,0], groups=2] %x, %y
  %m: f32[N,4,5,4] = max_pool[kernel=[2,2], strides=[2,2], ceil_mode] %x
  %dm: f32[N,4,9,8] = max_pool_backward[kernel=[2,2], strides=[2,2], ceil_mode, input=[9,8]] %x, %m
  %a: f32[N,4,9,8] = avg_pool[kernel=[3,3], pads=[1,1,1,1], count_include_pad] %x
  %da: f32[N,4,9,8] = avg_pool_backward[kernel=[3,3], pads=[1,1,1,1], count_include_pad, input=[9,8]] %a
  %v: f32[N,4,7] = input
  %k: f32[3,4,7] = param
  %z: f32[N,3,1] = conv[kernel=[7]] %v, %k
  return %dx, %dw, %dm, %da, %z
}
";
    let g = parse(text).unwrap();
    assert_eq!(print(&g), text);

    let misfit = |decl: &str, op: &str| {
        let text = format!(
            "graph g {{\n  %x: f32[N,4,5,5] = input\n  %w: {decl} = param\n  %y: f32[N,2,3,3] = {op} %x, %w\n  return %y\n}}\n"
        );
        parse_err(&text)
    };
    assert_eq!(
        misfit("f32[2,3,3,3]", "conv[kernel=[3,3]]"),
        "%y (conv): 4 input channels do not fit a weight of 3 channels per group in 1 groups"
    );
    assert_eq!(
        misfit("f32[3,2,3,3]", "conv[kernel=[3,3], groups=2]"),
        "%y (conv): 3 output channels do not split into 2 groups"
    );
    assert_eq!(
        misfit("f32[2,4,7,7]", "conv[kernel=[7,7]]"),
        "%y (conv): the window spans 7 on spatial axis 0, more than the padded input's 5 (5 + pads 0+0)"
    );
    assert_eq!(
        misfit("f32[2,4,3,3]", "conv[kernel=[3,3], strides=[0,1]]"),
        "line 4, column 22: strides must be at least 1 (axis 0)"
    );
    // Zero groups is an error for every convolution, never a division by zero.
    let filter = "graph g {\n  %x: f32[N,4,5,5] = input\n  %dy: f32[N,2,3,3] = input\n  \
                  %w: f32[2,4,3,3] = conv_backward_filter[kernel=[3,3], groups=0] %x, %dy\n  return %w\n}\n";
    assert_eq!(parse_err(filter), "%w (conv_backward_filter): 4 input channels do not split into 0 groups");
    let pool = "graph g {\n  %x: f32[N,4,5,5] = input\n  %y: f32[N,4,5,5] = max_pool[kernel=[2,2], pads=[2,0,0,0]] %x\n  return %y\n}\n";
    assert_eq!(
        parse_err(pool),
        "%y (max_pool): pads 2+0 on spatial axis 0 must each be smaller than the window's span 2"
    );
}

#[test]
fn concat_and_slice_round_trip_and_refuse_misfits() {
    let text = "graph blocks {
  %x: f32[N,4,3] = input
  %y: f32[N,2,3] = input
  %c: f32[N,6,3] = concat[axis=1, sizes=[4,2]] %x, %y
  %s: f32[N,6,2] = slice[axis=2, start=1, end=3] %c
  return %s
}
";
    let g = parse(text).unwrap();
    assert_eq!(print(&g), text);
    let one = |decl: &str, op: &str| {
        parse_err(&format!(
            "graph g {{\n  %x: f32[N,4,3] = input\n  %y: f32[N,2,3] = input\n  %z: {decl} = {op}\n  return %z\n}}\n"
        ))
    };
    assert_eq!(
        one("f32[N,6,3]", "concat[axis=1, sizes=[4,3]] %x, %y"),
        "%z (concat): operand 1 [N,2,3] is not 3 long on axis 1"
    );
    assert_eq!(
        one("f32[N,4,6]", "concat[axis=2, sizes=[3,3]] %x, %y"),
        "%z (concat): operand 1 [N,2,3] differs from [N,4,3] off axis 2"
    );
    assert_eq!(
        one("f32[N,4,3]", "concat[axis=0, sizes=[1,1]] %x, %x"),
        "%z (concat): cannot concatenate along the batch axis 0"
    );
    assert_eq!(
        one("f32[N,4,0]", "slice[axis=2, start=2, end=2] %x"),
        "%z (slice): [2, 2) is not a non-empty range of axis 2 of [N,4,3]"
    );
    assert_eq!(
        one("f32[N,4,3]", "slice[axis=0, start=0, end=1] %x"),
        "%z (slice): cannot slice along the batch axis 0"
    );
}
