//! The importer's lowering keeps ONNX semantics: hand-built ONNX models run in tract
//! give the same numbers as nnc's interpreter on the imported graph.

mod common;
mod oracle;

use common::*;
use nnc_ir::{DType, Op, Tensor};
use nnc_onnx::proto::tensor_proto::DataType;
use nnc_onnx::proto::{GraphProto, TensorProto};
use nnc_onnx::{import_bytes, Graph};
use oracle::{assert_close, flat, run_tract};
use std::collections::HashMap;

const BATCH: usize = 3;

fn feeds(g: &Graph) -> Vec<(String, Tensor)> {
    g.values()
        .iter()
        .enumerate()
        .filter(|(_, v)| matches!(v.op, Op::Input))
        .map(|(k, v)| {
            let shape = v.ty.shape.resolve(BATCH);
            let n: usize = shape.iter().product();
            let t = match v.ty.dtype {
                DType::F32 => Tensor::from_f32(&shape, noise(n, 40 + k as u64, 2.0)).unwrap(),
                DType::I64 => Tensor::from_i64(&shape, (0..n as i64).map(|i| (i * 3 + 2) % 5).collect()).unwrap(),
                other => panic!("no test feed for {other}"),
            };
            (v.name.clone(), t)
        })
        .collect()
}

/// Imports `graph` at `opset` and compares interpreter and tract on the same inputs.
fn check(opset: i64, graph: GraphProto) -> Graph {
    let name = graph.name.clone();
    let bytes = bytes(&model(opset, graph));
    let g = import_bytes(&bytes, None).unwrap_or_else(|e| panic!("{name}: {e}"));
    let feeds = feeds(&g);
    let map: HashMap<String, Tensor> = feeds.iter().cloned().collect();
    let ours: Vec<_> =
        nnc_interp::run(&g, &map).unwrap_or_else(|e| panic!("{name}: interpreter: {e}")).iter().map(flat).collect();
    let inputs: Vec<Tensor> = feeds.into_iter().map(|(_, t)| t).collect();
    let theirs = run_tract(&bytes, &inputs).unwrap_or_else(|e| panic!("{name}: tract: {e:?}"));
    assert_close(&theirs, &ours, &name);
    g
}

fn graph(
    name: &str,
    inputs: Vec<nnc_onnx::proto::ValueInfoProto>,
    outputs: &[&str],
    init: Vec<TensorProto>,
    nodes: Vec<nnc_onnx::proto::NodeProto>,
) -> GraphProto {
    GraphProto {
        name: name.into(),
        input: inputs,
        // Output types are not read by the importer; tract infers them.
        output: outputs
            .iter()
            .map(|o| nnc_onnx::proto::ValueInfoProto { name: o.to_string(), ..Default::default() })
            .collect(),
        initializer: init,
        node: nodes,
        ..Default::default()
    }
}

fn x(dims: &[D]) -> Vec<nnc_onnx::proto::ValueInfoProto> {
    vec![f32_input("x", dims)]
}

#[test]
fn gemm_alpha_beta_and_transposes() {
    check(
        17,
        graph(
            "gemm",
            x(&[D::P("N"), D::V(3)]),
            &["y", "z", "u"],
            vec![
                raw_f32("w", &[4, 3], &noise(12, 1, 1.0)),
                raw_f32("c", &[4], &noise(4, 2, 1.0)),
                raw_f32("c2", &[1, 1], &[0.5]),
            ],
            vec![
                node(
                    "Gemm",
                    "g1",
                    &["x", "w", "c"],
                    &["y"],
                    vec![attr_float("alpha", 0.5), attr_float("beta", 2.0), attr_int("transB", 1)],
                ),
                node("Gemm", "g2", &["x", "x"], &["z"], vec![attr_int("transA", 1)]),
                node("Gemm", "g3", &["x", "w", "c2"], &["u"], vec![attr_int("transB", 1), attr_float("beta", 0.0)]),
            ],
        ),
    );
}

#[test]
fn matmul_with_vectors_and_batches() {
    check(
        17,
        graph(
            "matmul",
            vec![f32_input("x", &[D::P("N"), D::V(3)]), f32_input("x3", &[D::P("N"), D::V(2), D::V(3)])],
            &["a", "b", "c"],
            vec![raw_f32("v", &[3], &noise(3, 3, 1.0)), raw_f32("m", &[3, 2], &noise(6, 4, 1.0))],
            vec![
                node("MatMul", "xv", &["x", "v"], &["a"], vec![]),
                node("MatMul", "vm", &["v", "m"], &["b"], vec![]),
                node("MatMul", "batched", &["x3", "m"], &["c"], vec![]),
            ],
        ),
    );
}

#[test]
fn softmax_axes_before_and_after_opset_13() {
    let nodes = || {
        vec![
            node("Softmax", "default", &["x"], &["a"], vec![]),
            node("Softmax", "batch_axis", &["x"], &["b"], vec![attr_int("axis", 0)]),
            node("LogSoftmax", "last", &["x"], &["c"], vec![attr_int("axis", 2)]),
            node("LogSoftmax", "middle", &["x"], &["d"], vec![attr_int("axis", -2)]),
        ]
    };
    for opset in [11, 13] {
        check(opset, graph("softmax", x(&[D::P("N"), D::V(3), D::V(4)]), &["a", "b", "c", "d"], vec![], nodes()));
    }
}

#[test]
fn reductions_with_attribute_and_input_axes() {
    check(
        13,
        graph(
            "reduce13",
            x(&[D::P("N"), D::V(3), D::V(4)]),
            &["a", "b", "c"],
            vec![i64_tensor("axes", &[1], &[-1])],
            vec![
                node("ReduceSum", "sum", &["x", "axes"], &["a"], vec![attr_int("keepdims", 0)]),
                node("ReduceMean", "mean", &["x"], &["b"], vec![attr_ints("axes", &[1])]),
                node("ReduceMax", "max", &["x"], &["c"], vec![]),
            ],
        ),
    );
    check(
        18,
        graph(
            "reduce18",
            x(&[D::P("N"), D::V(3), D::V(4)]),
            &["a", "b", "c"],
            vec![i64_tensor("axes", &[2], &[0, 2])],
            vec![
                node("ReduceMean", "mean", &["x", "axes"], &["a"], vec![]),
                node("ReduceMax", "noop", &["x"], &["b"], vec![attr_int("noop_with_empty_axes", 1)]),
                node("ReduceSum", "all", &["x"], &["c"], vec![attr_int("keepdims", 0)]),
            ],
        ),
    );
}

#[test]
fn shape_ops_and_folded_shape_arithmetic() {
    let g = check(
        13,
        graph(
            "shapes",
            x(&[D::P("N"), D::V(2), D::V(3)]),
            &["flat", "tr", "sq", "re", "ex", "filled"],
            vec![
                i64_tensor("ax0", &[1], &[0]),
                i64_tensor("ax1", &[1], &[1]),
                i64_tensor("start", &[1], &[1]),
                i64_tensor("end", &[1], &[i64::MAX]),
                i64_tensor("minus1", &[1], &[-1]),
                raw_f32("row", &[1, 6], &noise(6, 5, 1.0)),
            ],
            vec![
                node("Flatten", "flatten", &["x"], &["flat"], vec![]),
                node("Transpose", "transpose", &["x"], &["tr"], vec![]),
                node("Unsqueeze", "unsq", &["flat", "ax1"], &["u"], vec![]),
                node("Squeeze", "sq", &["u", "ax1"], &["sq"], vec![]),
                // x.reshape(-1, prod(x.shape[1:])) computed from the shape
                node("Shape", "shape", &["x"], &["s"], vec![]),
                node("Slice", "tail", &["s", "start", "end", "ax0"], &["tail"], vec![]),
                node("Constant", "one", &[], &["one"], vec![attr_tensor("value", i64_tensor("", &[], &[1]))]),
                node("Gather", "d1", &["tail", "ax0"], &["d1"], vec![]),
                node("Gather", "d2", &["tail", "one"], &["d2"], vec![]),
                node("Mul", "prod", &["d1", "d2"], &["p"], vec![]),
                node("Concat", "cat", &["minus1", "p"], &["spec"], vec![attr_int("axis", 0)]),
                node("Reshape", "reshape", &["x", "spec"], &["re"], vec![]),
                // row.expand(batch, 6) with the batch taken from x
                node("Gather", "batch", &["s", "ax0"], &["n"], vec![]),
                node("Gather", "six_from", &["p", "ax0"], &["six"], vec![]),
                node("Concat", "cat2", &["n", "p"], &["espec"], vec![attr_int("axis", 0)]),
                node("Expand", "expand", &["row", "espec"], &["ex"], vec![]),
                node(
                    "ConstantOfShape",
                    "fill",
                    &["espec"],
                    &["ones"],
                    vec![attr_tensor("value", raw_f32("", &[1], &[1.5]))],
                ),
                node("Add", "plus", &["ones", "ex"], &["filled"], vec![]),
            ],
        ),
    );
    insta::assert_snapshot!(nnc_ir::print(&g));
}

#[test]
fn elementwise_functions_and_selection() {
    check(
        17,
        graph(
            "elementwise",
            vec![f32_input("x", &[D::P("N"), D::V(4)]), f32_input("y", &[D::P("N"), D::V(4)])],
            &["max3", "min2", "sel", "lt", "fns", "casted", "pw"],
            vec![raw_f32("zero", &[], &[0.0]), raw_f32("two", &[], &[2.0])],
            vec![
                node("Max", "max3", &["x", "y", "zero"], &["max3"], vec![]),
                node("Min", "min2", &["x", "y"], &["min2"], vec![]),
                node("Greater", "gt", &["x", "y"], &["gt"], vec![]),
                node("Neg", "neg", &["x"], &["negx"], vec![]),
                node("Where", "sel", &["gt", "x", "negx"], &["sel"], vec![]),
                node("Less", "lt", &["x", "y"], &["lt"], vec![]),
                node("LeakyRelu", "leaky", &["x"], &["l"], vec![]),
                node("Sigmoid", "sig", &["l"], &["s"], vec![]),
                node("Tanh", "tanh", &["s"], &["t"], vec![]),
                node("Exp", "exp", &["t"], &["e"], vec![]),
                node("Log", "log", &["e"], &["lg"], vec![]),
                node("Sqrt", "sqrt", &["e"], &["sq"], vec![]),
                node("Erf", "erf", &["sq"], &["er"], vec![]),
                node("Sub", "sub", &["er", "lg"], &["d"], vec![]),
                node("Div", "div", &["d", "two"], &["fns"], vec![]),
                node("Cast", "to_int", &["x"], &["xi"], vec![attr_int("to", DataType::Int64 as i64)]),
                node("Cast", "to_float", &["xi"], &["casted"], vec![attr_int("to", DataType::Float as i64)]),
                node("Relu", "relu", &["x"], &["r"], vec![]),
                node("Pow", "pow", &["r", "two"], &["pw"], vec![]),
            ],
        ),
    );
}

#[test]
fn one_hot_dropout_identity() {
    let training = TensorProto {
        name: "training".into(),
        dims: vec![],
        data_type: DataType::Bool as i32,
        int32_data: vec![0],
        ..Default::default()
    };
    check(
        13,
        graph(
            "misc",
            vec![value_info("labels", DataType::Int64, &[D::P("N")]), f32_input("x", &[D::P("N"), D::V(5)])],
            &["hot", "kept", "same", "hot0", "mask"],
            vec![
                i64_tensor("depth", &[1], &[5]),
                raw_f32("fdepth", &[], &[4.0]),
                raw_f32("values", &[2], &[-1.0, 3.0]),
                raw_f32("ratio", &[], &[0.3]),
                training,
            ],
            vec![
                node("OneHot", "hot", &["labels", "depth", "values"], &["hot"], vec![]),
                node("OneHot", "hot0", &["labels", "fdepth", "values"], &["hot0"], vec![attr_int("axis", 0)]),
                node("Dropout", "drop", &["x", "ratio", "training"], &["kept", "mask"], vec![]),
                node("Identity", "id", &["x"], &["same"], vec![]),
            ],
        ),
    );
}

/// GELU as PyTorch writes it below opset 20, erf and tanh forms, fused on import.
#[test]
fn gelu_formulas_match() {
    let g = check(
        17,
        graph(
            "gelu",
            x(&[D::P("N"), D::V(4)]),
            &["erf_gelu", "tanh_gelu"],
            vec![],
            vec![
                const_f32("c_sqrt2", "sqrt2", std::f32::consts::SQRT_2),
                const_f32("c_one", "one", 1.0),
                const_f32("c_half", "half", 0.5),
                node("Div", "div", &["x", "sqrt2"], &["d"], vec![]),
                node("Erf", "erf", &["d"], &["e"], vec![]),
                node("Add", "add", &["e", "one"], &["p"], vec![]),
                node("Mul", "xh", &["half", "x"], &["xh"], vec![]),
                node("Mul", "erf_gelu", &["xh", "p"], &["erf_gelu"], vec![]),
                // 0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 * x * x * x)))
                const_f32("c_k", "k", 0.797_884_6),
                const_f32("c_c", "c", 0.044_715),
                node("Mul", "sq", &["x", "x"], &["x2"], vec![]),
                node("Mul", "cube", &["x", "x2"], &["x3"], vec![]),
                node("Mul", "cx3", &["c", "x3"], &["cx3"], vec![]),
                node("Add", "inner", &["x", "cx3"], &["inner"], vec![]),
                node("Mul", "scaled", &["k", "inner"], &["arg"], vec![]),
                node("Tanh", "tanh", &["arg"], &["t"], vec![]),
                node("Add", "onep", &["one", "t"], &["tp"], vec![]),
                node("Mul", "xtp", &["x", "tp"], &["xtp"], vec![]),
                node("Mul", "tanh_gelu", &["xtp", "half"], &["tanh_gelu"], vec![]),
            ],
        ),
    );
    insta::assert_snapshot!(nnc_ir::print(&g));
}
