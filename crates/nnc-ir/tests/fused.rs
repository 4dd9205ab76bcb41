//! Fused ops in the text form: every variant and attribute round-trips, bad operands
//! are type errors naming the value, and `expand_fused` gives back primitives.

use nnc_ir::{cost, expand_fused, fused::has_fused, parse, parse_unverified, print, verify, IrError};

const EVERY_FUSED_OP: &str = r#"graph fused {
  %x: f32[N,4] = input
  %labels: i64[N] = input
  %lr: f32[] = input
  %ss: f32[] = input
  %ib: f32[] = input
  %decay: f32[] = input
  %w: f32[4,3] = param
  %wt: f32[3,4] = param
  %b: f32[3] = param
  %b1: f32[1,3] = param
  %m: f32[4,3] = state
  %v: f32[4,3] = state
  %bm: f32[3] = state
  %bv: f32[3] = state
  %h: f32[N,3] = fused.dense[bias, act=relu] %x, %w, %b
  %h2: f32[N,3] = fused.dense[trans_b, alpha=0.5, bias, act=leaky_relu, slope=0.01] %x, %wt, %b1
  %h3: f32[N,3] = fused.dense[act=gelu, approximate=tanh] %x, %w
  %h4: f32[N,3] = fused.dense[act=gelu] %x, %w
  %h5: f32[N,3] = fused.dense[act=sigmoid] %x, %w
  %h6: f32[N,3] = fused.dense[bias, act=tanh] %x, %w, %b
  %loss: f32[] = fused.softmax_ce %h, %labels
  %dh: f32[N,3] = fused.softmax_ce[out=grad] %h, %labels
  %db: f32[3] = fused.softmax_ce[out=grad_col_sum] %h, %labels
  %dx: f32[N,4] = fused.dense_relu_grad[trans_b] %dh, %w, %x
  %dxs: f32[4] = fused.dense_relu_grad[trans_b, out=col_sum] %dh, %w, %x
  %w1: f32[4,3] = fused.dense_sgd[trans_a] %x, %dh, %w, %lr
  %w2: f32[4,3] = fused.dense_sgd[trans_a, weight_decay=0.001] %x, %dh, %w, %lr
  %w3: f32[4,3] = fused.dense_momentum[trans_a, momentum=0.9, nesterov, out=m] %x, %dh, %w, %m, %lr
  %w4: f32[4,3] = fused.dense_adam[trans_a, beta1=0.9, beta2=0.999, eps=1e-8, decay, out=v] %x, %dh, %w, %m, %v, %ss, %ib, %decay
  %b2: f32[3] = fused.sgd %b, %db, %lr
  %b3: f32[3] = fused.momentum[momentum=0.9, weight_decay=0.0001] %b, %bm, %db, %lr
  %b4: f32[3] = fused.adam[beta1=0.9, beta2=0.999, eps=1e-8] %b, %bm, %bv, %db, %ss, %ib
  return %loss, %h2, %h3, %h4, %h5, %h6, %dx, %dxs, %w1, %w2, %w3, %w4, %b2, %b3, %b4
}
"#;

#[test]
fn every_fused_op_round_trips() {
    let g = parse(EVERY_FUSED_OP).unwrap();
    assert_eq!(print(&g), EVERY_FUSED_OP);
    // FLOPs: each kernel once; siblings of the cross-entropy kernel add only their part.
    let dense = 2 * 4 * 3 + 3 + 3; // per example: product, bias, relu
    assert_eq!(cost::value_flops(&g, g.find("h").unwrap(), 1), dense);
    assert!(cost::value_flops(&g, g.find("loss").unwrap(), 2) > 0);
    assert_eq!(cost::value_flops(&g, g.find("dh").unwrap(), 2), 0, "counted on the first sibling");
}

#[test]
fn expansion_is_primitive_and_keeps_names() {
    let g = parse(EVERY_FUSED_OP).unwrap();
    let e = expand_fused(&g).unwrap();
    verify(&e).unwrap();
    assert!(has_fused(&g) && !has_fused(&e));
    for &o in g.outputs() {
        let name = g.name_of(o);
        let id = e.find(name).unwrap_or_else(|| panic!("%{name} lost"));
        assert_eq!(e.ty(id), g.ty(o));
    }
    let outs = |g: &nnc_ir::Graph| g.outputs().iter().map(|&o| g.name_of(o).to_string()).collect::<Vec<_>>();
    assert_eq!(outs(&g), outs(&e));
}

fn type_error(text: &str) -> String {
    let g = parse_unverified(text).unwrap();
    match verify(&g) {
        Err(e @ IrError::Type { .. }) => e.to_string(),
        other => panic!("expected a type error, got {other:?}"),
    }
}

#[test]
fn bad_operands_are_type_errors() {
    let head = "graph g {\n  %x: f32[N,4] = input\n  %w: f32[4,3] = param\n  %col: f32[N,1] = input\n  %labels: i64[N] = input\n  %lr: f32[] = input\n";
    let case = |body: &str| type_error(&format!("{head}{body}\n  return %y\n}}\n"));
    insta::assert_snapshot!([
        case("  %y: f32[N,3] = fused.dense[bias] %x, %w, %col"),
        case("  %y: f32[N,3] = fused.dense[act=relu] %x, %col"),
        case("  %y: f32[N,3] = fused.dense_relu_grad %x, %w, %x"),
        case("  %y: f32[] = fused.softmax_ce %x, %lr"),
        case("  %y: f32[4,3] = fused.sgd[out=m] %w, %w, %lr"),
        case("  %y: f32[4,3] = fused.sgd %w, %x, %lr"),
        case("  %y: f32[4,3] = fused.dense_sgd %x, %w, %w, %lr"),
        case("  %y: f32[4,3] = fused.sgd %w, %w, %w"),
    ]
    .join("\n"));
}

#[test]
fn bad_attributes_are_parse_errors() {
    let head = "graph g {\n  %x: f32[N,4] = input\n  %w: f32[4,3] = param\n";
    let case = |body: &str| match parse(&format!("{head}{body}\n  return %y\n}}\n")) {
        Err(e @ IrError::Parse { .. }) => e.to_string(),
        other => panic!("expected a parse error, got {other:?}"),
    };
    insta::assert_snapshot!([
        case("  %y: f32[N,3] = fused.dense[act=swish] %x, %w"),
        case("  %y: f32[N,3] = fused.dense[act=leaky_relu] %x, %w"),
        case("  %y: f32[N,3] = fused.dense_relu_grad[out=m] %x, %w, %x"),
        case("  %y: f32[N,3] = fused.momentum %x, %w"),
        case("  %y: f32[N,3] = fused.rmsprop %x, %w"),
        case("  %y: f32[N,3] = fused.dense[nesterov] %x, %w"),
    ]
    .join("\n"));
}

const FUSED_CONVS: &str = r#"graph fused_convs {
  %x: f32[N,4,8,8] = input
  %w: f32[6,4,3,3] = param
  %b: f32[6,1,1] = param
  %b1: f32[1,6,1,1] = param
  %r: f32[N,6,8,8] = input
  %y: f32[N,6,8,8] = fused.conv[kernel=[3,3], pads=[1,1,1,1], bias, act=relu] %x, %w, %b
  %y2: f32[N,6,8,8] = fused.conv[kernel=[3,3], pads=[1,1,1,1], bias, residual, act=relu] %x, %w, %b1, %r
  %y3: f32[N,6,4,4] = fused.conv[kernel=[3,3], strides=[2,2], pads=[1,1,1,1], bias, min=0.0, max=6.0] %x, %w, %b
  %y4: f32[N,6,8,8] = fused.conv[kernel=[3,3], pads=[1,1,1,1], residual, act=gelu, approximate=tanh] %x, %w, %r
  return %y, %y2, %y3, %y4
}
"#;

#[test]
fn fused_convolutions_round_trip_and_expand() {
    let g = parse(FUSED_CONVS).unwrap();
    assert_eq!(print(&g), FUSED_CONVS);
    // Per example: the convolution's multiply-adds, then one per epilogue step.
    let conv = 2 * 6 * 8 * 8 * 4 * 3 * 3;
    assert_eq!(cost::value_flops(&g, g.find("y").unwrap(), 1), conv + 2 * 6 * 8 * 8);
    assert_eq!(cost::value_flops(&g, g.find("y2").unwrap(), 1), conv + 3 * 6 * 8 * 8);
    assert_eq!(cost::value_flops(&g, g.find("y3").unwrap(), 2), 2 * (conv / 4 + 3 * 6 * 4 * 4));
    let e = expand_fused(&g).unwrap();
    verify(&e).unwrap();
    assert!(!has_fused(&e));
    let ops: Vec<&str> = e.values().iter().map(|v| v.op.mnemonic()).collect();
    assert_eq!(ops.iter().filter(|m| **m == "conv").count(), 4);
    assert_eq!(ops.iter().filter(|m| **m == "add").count(), 5, "three biases, two residuals");
    assert_eq!((ops.contains(&"max"), ops.contains(&"min"), ops.contains(&"gelu")), (true, true, true));
}

#[test]
fn bad_fused_convolutions_are_type_errors() {
    let head = "graph g {\n  %x: f32[N,4,8,8] = input\n  %w: f32[6,4,3,3] = param\n  %b: f32[6,1,1] = param\n  %r: f32[N,6,8,8] = input\n";
    let case = |body: &str| type_error(&format!("{head}{body}\n  return %y\n}}\n"));
    insta::assert_snapshot!([
        case("  %y: f32[N,6,8,8] = fused.conv[kernel=[3,3], pads=[1,1,1,1], bias] %x, %w, %r"),
        case("  %y: f32[N,6,8,8] = fused.conv[kernel=[3,3], pads=[1,1,1,1], residual] %x, %w, %b"),
        case("  %y: f32[N,6,8,8] = fused.conv[kernel=[3,3], bias] %x, %w, %b"),
        case("  %y: f32[N,6,8,8] = fused.conv[kernel=[3,3], pads=[1,1,1,1], groups=4, act=relu] %x, %w"),
        case("  %y: f32[N,6,8,8] = fused.conv[kernel=[3,3], pads=[1,1,1,1], min=NaN] %x, %w"),
    ]
    .join("\n"));
}
