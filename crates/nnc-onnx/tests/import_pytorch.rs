//! Importing models laid out the way `torch.onnx.export` writes them.

mod common;

use common::*;
use nnc_onnx::proto::GraphProto;
use nnc_onnx::{import_bytes, Graph};

fn import(opset: i64, graph: GraphProto) -> Graph {
    let bytes = bytes(&model(opset, graph));
    match import_bytes(&bytes, None) {
        Ok(g) => g,
        Err(e) => panic!("import failed: {e}"),
    }
}

/// The seed model as recent PyTorch exports it: Flatten, then Linear layers as Gemm
/// with transB=1 and weights stored [out, in], dynamic batch "batch_size".
fn mlp_gemm_graph() -> GraphProto {
    GraphProto {
        name: "main_graph".into(),
        input: vec![f32_input("input", &[D::P("batch_size"), D::V(1), D::V(28), D::V(28)])],
        output: vec![f32_input("output", &[D::P("batch_size"), D::V(10)])],
        initializer: vec![
            raw_f32("fc1.weight", &[256, 784], &noise(256 * 784, 1, 0.05)),
            raw_f32("fc1.bias", &[256], &noise(256, 2, 0.05)),
            raw_f32("fc2.weight", &[10, 256], &noise(10 * 256, 3, 0.05)),
            raw_f32("fc2.bias", &[10], &noise(10, 4, 0.05)),
        ],
        node: vec![
            node("Flatten", "/flatten/Flatten", &["input"], &["/flatten/Flatten_output_0"], vec![attr_int("axis", 1)]),
            node(
                "Gemm",
                "/fc1/Gemm",
                &["/flatten/Flatten_output_0", "fc1.weight", "fc1.bias"],
                &["/fc1/Gemm_output_0"],
                vec![attr_float("alpha", 1.0), attr_float("beta", 1.0), attr_int("transB", 1)],
            ),
            node("Relu", "/relu/Relu", &["/fc1/Gemm_output_0"], &["/relu/Relu_output_0"], vec![]),
            node(
                "Gemm",
                "/fc2/Gemm",
                &["/relu/Relu_output_0", "fc2.weight", "fc2.bias"],
                &["/fc2/Gemm_output_0"],
                vec![attr_float("alpha", 1.0), attr_float("beta", 1.0), attr_int("transB", 1)],
            ),
            node("Identity", "/out/Identity", &["/fc2/Gemm_output_0"], &["output"], vec![]),
        ],
        ..Default::default()
    }
}

#[test]
fn mlp_with_gemm_trans_b() {
    insta::assert_snapshot!(nnc_ir::print(&import(17, mlp_gemm_graph())));
}

/// Older PyTorch (opset 9 to 12): `x.view(x.size(0), -1)` becomes
/// Shape → Gather → Unsqueeze → Concat → Reshape, and Linear becomes MatMul with a
/// pre-transposed weight plus Add.
fn mlp_matmul_graph(opset: i64) -> GraphProto {
    let unsqueeze = if opset >= 13 {
        node("Unsqueeze", "Unsqueeze_3", &["3", "axes0"], &["4"], vec![])
    } else {
        node("Unsqueeze", "Unsqueeze_3", &["3"], &["4"], vec![attr_ints("axes", &[0])])
    };
    let mut nodes = vec![
        node("Shape", "Shape_0", &["input.1"], &["1"], vec![]),
        node("Constant", "Constant_1", &[], &["2"], vec![attr_tensor("value", i64_tensor("", &[], &[0]))]),
        node("Gather", "Gather_2", &["1", "2"], &["3"], vec![attr_int("axis", 0)]),
        unsqueeze,
        const_i64("Constant_4", "5", &[-1]),
        node("Concat", "Concat_5", &["4", "5"], &["6"], vec![attr_int("axis", 0)]),
        node("Reshape", "Reshape_6", &["input.1", "6"], &["7"], vec![]),
        node("MatMul", "MatMul_7", &["7", "onnx::MatMul_20"], &["9"], vec![]),
        node("Add", "Add_8", &["fc1.bias", "9"], &["10"], vec![]),
        node("Relu", "Relu_9", &["10"], &["11"], vec![]),
        node("MatMul", "MatMul_10", &["11", "onnx::MatMul_21"], &["13"], vec![]),
        node("Add", "Add_11", &["fc2.bias", "13"], &["output"], vec![]),
    ];
    if opset >= 13 {
        nodes.insert(0, const_i64("Constant_axes", "axes0", &[0]));
    }
    GraphProto {
        name: "torch-jit-export".into(),
        input: vec![f32_input("input.1", &[D::P("batch_size"), D::V(1), D::V(28), D::V(28)])],
        output: vec![f32_input("output", &[D::P("batch_size"), D::V(10)])],
        initializer: vec![
            raw_f32("fc1.bias", &[256], &noise(256, 2, 0.05)),
            raw_f32("fc2.bias", &[10], &noise(10, 4, 0.05)),
            raw_f32("onnx::MatMul_20", &[784, 256], &noise(256 * 784, 1, 0.05)),
            raw_f32("onnx::MatMul_21", &[256, 10], &noise(10 * 256, 3, 0.05)),
        ],
        node: nodes,
        ..Default::default()
    }
}

#[test]
fn mlp_with_matmul_and_shape_chain_opset11() {
    insta::assert_snapshot!(nnc_ir::print(&import(11, mlp_matmul_graph(11))));
}

#[test]
fn shape_chain_with_unsqueeze_axes_input_opset13() {
    let a = nnc_ir::print(&import(11, mlp_matmul_graph(11)));
    let b = nnc_ir::print(&import(13, mlp_matmul_graph(13)));
    assert_eq!(a, b);
}

/// `nn.GELU()` below opset 20: `x * 0.5 * (1 + erf(x / sqrt(2)))` written out; it
/// imports as one gelu.
#[test]
fn erf_gelu_pattern_is_fused() {
    let graph = GraphProto {
        name: "gelu".into(),
        input: vec![f32_input("x", &[D::P("batch"), D::V(16)])],
        output: vec![f32_input("y", &[D::P("batch"), D::V(4)])],
        initializer: vec![raw_f32("w", &[16, 4], &noise(64, 5, 0.3))],
        node: vec![
            node("MatMul", "/lin/MatMul", &["x", "w"], &["h"], vec![]),
            const_f32("/act/Constant", "/act/Constant_output_0", std::f32::consts::SQRT_2),
            node("Div", "/act/Div", &["h", "/act/Constant_output_0"], &["/act/Div_output_0"], vec![]),
            node("Erf", "/act/Erf", &["/act/Div_output_0"], &["/act/Erf_output_0"], vec![]),
            const_f32("/act/Constant_1", "/act/Constant_1_output_0", 1.0),
            node("Add", "/act/Add", &["/act/Erf_output_0", "/act/Constant_1_output_0"], &["/act/Add_output_0"], vec![]),
            node("Mul", "/act/Mul", &["h", "/act/Add_output_0"], &["/act/Mul_output_0"], vec![]),
            const_f32("/act/Constant_2", "/act/Constant_2_output_0", 0.5),
            node("Mul", "/act/Mul_1", &["/act/Mul_output_0", "/act/Constant_2_output_0"], &["y"], vec![]),
        ],
        ..Default::default()
    };
    insta::assert_snapshot!(nnc_ir::print(&import(17, graph)));
}

/// The same formula with the erf output used elsewhere too: the pieces stay.
#[test]
fn erf_gelu_pattern_with_shared_piece_keeps_it() {
    let graph = GraphProto {
        name: "gelu_shared".into(),
        input: vec![f32_input("x", &[D::P("batch"), D::V(4)])],
        output: vec![f32_input("y", &[D::P("batch"), D::V(4)]), f32_input("e", &[D::P("batch"), D::V(4)])],
        node: vec![
            const_f32("c0", "sqrt2", std::f32::consts::SQRT_2),
            node("Div", "div", &["x", "sqrt2"], &["d"], vec![]),
            node("Erf", "erf", &["d"], &["e"], vec![]),
            const_f32("c1", "one", 1.0),
            node("Add", "add", &["one", "e"], &["p"], vec![]),
            const_f32("c2", "half", 0.5),
            node("Mul", "mul0", &["x", "half"], &["xh"], vec![]),
            node("Mul", "mul1", &["xh", "p"], &["y"], vec![]),
        ],
        ..Default::default()
    };
    insta::assert_snapshot!(nnc_ir::print(&import(17, graph)));
}

/// opset 20 has Gelu itself; Dropout (opset 12+, inference) is the identity.
#[test]
fn gelu_op_and_dropout() {
    let graph = GraphProto {
        name: "g".into(),
        input: vec![f32_input("x", &[D::P("N"), D::V(8)])],
        output: vec![f32_input("y", &[D::P("N"), D::V(8)])],
        initializer: vec![raw_f32("ratio", &[], &[0.1])],
        node: vec![
            node("Gelu", "gelu", &["x"], &["g"], vec![attr_string("approximate", "tanh")]),
            node("Dropout", "drop", &["g", "ratio"], &["y", "mask"], vec![]),
        ],
        ..Default::default()
    };
    insta::assert_snapshot!(nnc_ir::print(&import(20, graph)));
}

/// LogSoftmax before opset 13 on a 3-D input: normalized over the flattened trailing
/// axes, so a reshape around a last-axis log-softmax.
#[test]
fn log_softmax_opset11_coerces_to_2d() {
    let graph = GraphProto {
        name: "ls".into(),
        input: vec![f32_input("x", &[D::P("N"), D::V(3), D::V(4)])],
        output: vec![f32_input("y", &[D::P("N"), D::V(3), D::V(4)]), f32_input("z", &[D::P("N"), D::V(3), D::V(4)])],
        node: vec![
            node("LogSoftmax", "ls", &["x"], &["y"], vec![]),
            node("Softmax", "sm", &["x"], &["z"], vec![attr_int("axis", 0)]),
        ],
        ..Default::default()
    };
    insta::assert_snapshot!(nnc_ir::print(&import(11, graph)));
}

/// Nodes out of topological order are scheduled, not refused.
#[test]
fn nodes_out_of_order_are_sorted() {
    let mut g = mlp_gemm_graph();
    g.node.reverse();
    assert_eq!(nnc_ir::print(&import(17, g)), nnc_ir::print(&import(17, mlp_gemm_graph())));
}

/// Old exporters list initializers among the graph inputs too; those are parameters.
#[test]
fn initializer_listed_as_input_is_a_param() {
    let mut g = mlp_gemm_graph();
    g.input.push(f32_input("fc1.weight", &[D::V(256), D::V(784)]));
    let imported = import(17, g);
    let w = imported.find("fc1.weight").expect("weight imported");
    assert!(matches!(imported.value(w).op, nnc_ir::Op::Param { init: Some(_) }));
}
