//! Importing models laid out the way skl2onnx writes them (with `zipmap=False`, so the
//! probabilities are a plain tensor output).

mod common;

use common::*;
use nnc_onnx::proto::tensor_proto::DataType;
use nnc_onnx::proto::{GraphProto, OperatorSetIdProto};
use nnc_onnx::{import_bytes, Graph, OnnxError};

fn import(opset: i64, graph: GraphProto) -> Result<Graph, OnnxError> {
    let mut m = model(opset, graph);
    // skl2onnx always imports the ML domain, used or not.
    m.opset_import.push(OperatorSetIdProto { domain: "ai.onnx.ml".into(), version: 1 });
    m.producer_name = "skl2onnx".into();
    import_bytes(&bytes(&m), None)
}

/// MLPClassifier(hidden_layer_sizes=(8,)) on 4 features, 3 classes. skl2onnx declares
/// the batch as an unknown dimension and stores coefficients in `float_data`.
#[test]
fn mlp_classifier_probabilities() {
    let graph = GraphProto {
        name: "mlp".into(),
        input: vec![f32_input("X", &[D::Unknown, D::V(4)])],
        output: vec![f32_input("probabilities", &[D::Unknown, D::V(3)])],
        initializer: vec![
            typed_f32("coefficient", &[4, 8], &noise(32, 11, 0.5)),
            typed_f32("intercepts", &[1, 8], &noise(8, 12, 0.5)),
            typed_f32("coefficient1", &[8, 3], &noise(24, 13, 0.5)),
            typed_f32("intercepts1", &[1, 3], &noise(3, 14, 0.5)),
        ],
        node: vec![
            node("Cast", "Cast", &["X"], &["cast_input"], vec![attr_int("to", DataType::Float as i64)]),
            node("MatMul", "MatMul", &["cast_input", "coefficient"], &["mul_result"], vec![]),
            node("Add", "Add", &["mul_result", "intercepts"], &["add_result"], vec![]),
            node("Relu", "Relu", &["add_result"], &["next_activations"], vec![]),
            node("MatMul", "MatMul1", &["next_activations", "coefficient1"], &["mul_result1"], vec![]),
            node("Add", "Add1", &["mul_result1", "intercepts1"], &["add_result1"], vec![]),
            node("Softmax", "Softmax", &["add_result1"], &["out_activations_result"], vec![attr_int("axis", 1)]),
            node("Identity", "Identity", &["out_activations_result"], &["probabilities"], vec![]),
        ],
        ..Default::default()
    };
    let g = import(9, graph).unwrap_or_else(|e| panic!("{e}"));
    insta::assert_snapshot!(nnc_ir::print(&g));
}

/// LogisticRegression written with default-domain ops only (MatMul + Add + Softmax).
#[test]
fn logistic_regression_softmax_opset13() {
    let graph = GraphProto {
        name: "logreg".into(),
        input: vec![f32_input("float_input", &[D::P("N"), D::V(4)])],
        output: vec![f32_input("probabilities", &[D::P("N"), D::V(3)])],
        initializer: vec![
            typed_f32("coef", &[4, 3], &noise(12, 21, 1.0)),
            typed_f32("intercept", &[3], &noise(3, 22, 1.0)),
        ],
        node: vec![
            node("MatMul", "linear", &["float_input", "coef"], &["scores0"], vec![]),
            node("Add", "bias", &["scores0", "intercept"], &["scores"], vec![]),
            node("Softmax", "softmax", &["scores"], &["probabilities"], vec![]),
        ],
        ..Default::default()
    };
    let g = import(13, graph).unwrap_or_else(|e| panic!("{e}"));
    insta::assert_snapshot!(nnc_ir::print(&g));
}

/// The default skl2onnx LogisticRegression uses ai.onnx.ml operators: refused, listing
/// every one of them.
#[test]
fn ml_domain_operators_are_listed() {
    let graph = GraphProto {
        name: "logreg_ml".into(),
        input: vec![f32_input("float_input", &[D::P("N"), D::V(4)])],
        output: vec![f32_input("output_probability", &[D::P("N"), D::V(3)])],
        node: vec![
            node("LinearClassifier", "LinearClassifier", &["float_input"], &["label", "probability_tensor"], vec![]),
            node("Normalizer", "Normalizer", &["probability_tensor"], &["probabilities"], vec![]),
            node("ZipMap", "ZipMap", &["probabilities"], &["output_probability"], vec![]),
        ]
        .into_iter()
        .map(|mut n| {
            n.domain = "ai.onnx.ml".into();
            n
        })
        .collect(),
        ..Default::default()
    };
    let err = import(13, graph).unwrap_err().to_string();
    assert_eq!(
        err,
        "unsupported ONNX ops: node \"LinearClassifier\" LinearClassifier (domain ai.onnx.ml opset 1), \
         node \"Normalizer\" Normalizer (domain ai.onnx.ml opset 1), \
         node \"ZipMap\" ZipMap (domain ai.onnx.ml opset 1)"
    );
}
