//! Every way an import can fail gives a one-line error naming the problem and where;
//! none of them panics.

mod common;

use common::*;
use nnc_onnx::proto::tensor_proto::DataType;
use nnc_onnx::proto::type_proto::{self, Value as TypeValue};
use nnc_onnx::proto::{GraphProto, ModelProto, TypeProto, ValueInfoProto};
use nnc_onnx::{import_bytes, import_file};

fn import_err(m: &ModelProto) -> String {
    match import_bytes(&bytes(m), None) {
        Ok(g) => panic!("expected an error, imported:\n{}", nnc_ir::print(&g)),
        Err(e) => {
            let msg = e.to_string();
            assert!(!msg.contains('\n'), "error is not one line: {msg}");
            msg
        }
    }
}

/// x[N,4] → op → y, for checks on a single node.
fn one_node(op: &str, inputs: &[&str], attrs: Vec<nnc_onnx::proto::AttributeProto>) -> GraphProto {
    GraphProto {
        name: "one".into(),
        input: vec![f32_input("x", &[D::P("N"), D::V(4)])],
        output: vec![f32_input("y", &[D::P("N"), D::V(4)])],
        node: vec![node(op, "n", inputs, &["y"], attrs)],
        ..Default::default()
    }
}

fn relu_model() -> ModelProto {
    model(17, one_node("Relu", &["x"], vec![]))
}

#[test]
fn empty_bytes() {
    let err = import_bytes(&[], None).unwrap_err().to_string();
    assert_eq!(err, "the input is empty: not an ONNX model");
}

#[test]
fn truncated_model() {
    let b = bytes(&model(
        17,
        GraphProto { node: vec![node("Relu", "relu_node_name", &["x"], &["y"], vec![])], ..relu_graph() },
    ));
    for cut in [1, b.len() / 2, b.len() - 1] {
        let err = import_bytes(&b[..cut], None).unwrap_err().to_string();
        assert!(err.contains("not a valid ONNX model") || err.contains("invalid ONNX model"), "cut {cut}: {err}");
    }
}

fn relu_graph() -> GraphProto {
    one_node("Relu", &["x"], vec![])
}

#[test]
fn random_bytes_never_panic() {
    let mut seed = 7u64;
    for len in [1usize, 2, 3, 7, 16, 64, 300, 4096] {
        for _ in 0..50 {
            let data: Vec<u8> = (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    seed as u8
                })
                .collect();
            let _ = import_bytes(&data, None);
        }
    }
    // Valid framing around garbage: a model whose graph field holds random bytes.
    let mut framed = vec![0x3a, 0x10];
    framed.extend([0xffu8; 16]);
    assert!(import_bytes(&framed, None).is_err());
}

#[test]
fn every_single_byte_truncation_of_a_real_model_errs_or_imports() {
    let b = bytes(&relu_model());
    for cut in 0..b.len() {
        let _ = import_bytes(&b[..cut], None);
    }
}

#[test]
fn missing_file() {
    let err = import_file(std::path::Path::new("/nonexistent/dir/model.onnx")).unwrap_err().to_string();
    assert!(err.starts_with("cannot read \"/nonexistent/dir/model.onnx\":"), "{err}");
}

#[test]
fn empty_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.onnx");
    std::fs::write(&path, b"").unwrap();
    let err = import_file(&path).unwrap_err().to_string();
    assert!(err.ends_with("empty.onnx\" is empty: not an ONNX model"), "{err}");
}

#[test]
fn no_graph() {
    let m = ModelProto { graph: None, ..relu_model() };
    assert_eq!(import_err(&m), "invalid ONNX model: the model has no graph");
}

#[test]
fn unsupported_ops_are_all_listed() {
    let graph = GraphProto {
        name: "cnn".into(),
        input: vec![f32_input("x", &[D::P("N"), D::V(1), D::V(8), D::V(8)])],
        output: vec![f32_input("y", &[D::P("N"), D::V(10)])],
        node: vec![
            node("DeformConv", "conv1", &["x", "w"], &["c"], vec![]),
            node("Relu", "relu1", &["c"], &["r"], vec![]),
            node("LpPool", "pool", &["r"], &["p"], vec![]),
            node("Flatten", "", &["p"], &["f"], vec![]),
            node("LRN", "", &["f"], &["y"], vec![]),
        ],
        ..Default::default()
    };
    assert_eq!(
        import_err(&model(17, graph)),
        "unsupported ONNX ops: node \"conv1\" DeformConv (opset 17), node \"pool\" LpPool (opset 17), \
         node #4 LRN (opset 17)"
    );
}

#[test]
fn op_from_a_newer_opset() {
    let err = import_err(&model(17, one_node("Gelu", &["x"], vec![])));
    assert_eq!(err, "unsupported ONNX ops: node \"n\" Gelu (opset 17)");
}

#[test]
fn non_default_domain() {
    let mut g = relu_graph();
    g.node[0].domain = "com.microsoft".into();
    g.node[0].op_type = "FusedGemm".into();
    assert_eq!(import_err(&model(17, g)), "unsupported ONNX ops: node \"n\" FusedGemm (domain com.microsoft opset 0)");
}

#[test]
fn opset_too_new_or_too_old() {
    assert_eq!(
        import_err(&model(28, relu_graph())),
        "unsupported ONNX opset: ai.onnx opset 28 is newer than the supported range 7 to 27"
    );
    assert_eq!(
        import_err(&model(6, relu_graph())),
        "unsupported ONNX opset: ai.onnx opset 6 is older than the supported range 7 to 27"
    );
    let mut m = relu_model();
    m.opset_import.clear();
    assert_eq!(import_err(&m), "unsupported ONNX opset: the model imports no default-domain (ai.onnx) opset");
}

#[test]
fn ir_version_newer_than_nnc_knows() {
    let m = ModelProto { ir_version: 99, ..relu_model() };
    assert_eq!(import_err(&m), "the input: IR version 99 is newer than nnc understands (at most 13)");
    let m = ModelProto { ir_version: nnc_onnx::MAX_IR_VERSION + 1, ..relu_model() };
    assert_eq!(import_err(&m), "the input: IR version 14 is newer than nnc understands (at most 13)");
    // The file's name is the "where" of the message.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.onnx");
    std::fs::write(&path, bytes(&ModelProto { ir_version: 99, ..relu_model() })).unwrap();
    let err = import_file(&path).unwrap_err().to_string();
    assert_eq!(err, format!("\"{}\": IR version 99 is newer than nnc understands (at most 13)", path.display()));
}

#[test]
fn ir_version_missing_zero_or_negative() {
    // Protobuf reads a missing ir_version as 0; onnx.checker refuses both.
    let m = ModelProto { ir_version: 0, ..relu_model() };
    assert_eq!(
        import_err(&m),
        "the input: the model declares no IR version (ir_version is missing or 0), which every ONNX model must; \
         nnc reads IR versions 1 to 13"
    );
    let m = ModelProto { ir_version: -3, ..relu_model() };
    assert_eq!(import_err(&m), "the input: IR version -3 is not valid (nnc reads IR versions 1 to 13)");
}

#[test]
fn every_ir_version_nnc_knows_imports() {
    for v in 1..=nnc_onnx::MAX_IR_VERSION {
        let m = ModelProto { ir_version: v, ..relu_model() };
        import_bytes(&bytes(&m), None).unwrap_or_else(|e| panic!("IR version {v}: {e}"));
    }
}

#[test]
fn gemm_with_mismatched_k() {
    let graph = GraphProto {
        name: "g".into(),
        input: vec![f32_input("x", &[D::P("batch"), D::V(784)])],
        output: vec![f32_input("y", &[D::P("batch"), D::V(256)])],
        initializer: vec![raw_f32("w", &[256, 780], &vec![0.0; 256 * 780]), raw_f32("b", &[256], &[0.0; 256])],
        node: vec![node("Gemm", "fc1", &["x", "w", "b"], &["y"], vec![attr_int("transB", 1)])],
        ..Default::default()
    };
    assert_eq!(
        import_err(&model(17, graph)),
        "node \"fc1\" Gemm (opset 17): A [N,784] and B [256,780] with transB=1 disagree on the inner dimension K: 784 vs 780"
    );
}

#[test]
fn gemm_bias_that_does_not_broadcast() {
    let graph = GraphProto {
        name: "g".into(),
        input: vec![f32_input("x", &[D::P("batch"), D::V(4)])],
        output: vec![f32_input("y", &[D::P("batch"), D::V(2)])],
        initializer: vec![raw_f32("w", &[4, 2], &[0.0; 8]), raw_f32("b", &[3], &[0.0; 3])],
        node: vec![node("Gemm", "fc", &["x", "w", "b"], &["y"], vec![])],
        ..Default::default()
    };
    assert_eq!(
        import_err(&model(17, graph)),
        "node \"fc\" Gemm (opset 17): C of shape [3] does not broadcast to [N,2]"
    );
}

#[test]
fn matmul_shape_mismatch_names_the_node() {
    let graph =
        GraphProto { initializer: vec![raw_f32("w", &[5, 4], &[0.0; 20])], ..one_node("MatMul", &["x", "w"], vec![]) };
    let err = import_err(&model(17, graph));
    assert!(err.starts_with("node \"n\" MatMul (opset 17): inner dimensions differ"), "{err}");
    assert!(err.contains("[N,4]") && err.contains("[5,4]"), "{err}");
}

#[test]
fn value_never_defined() {
    let err = import_err(&model(17, one_node("Add", &["x", "ghost"], vec![])));
    assert_eq!(err, "invalid ONNX model: value \"ghost\" used by node \"n\" Add is never defined");
}

#[test]
fn missing_initializer() {
    let mut g = one_node("MatMul", &["x", "fc.weight"], vec![]);
    g.initializer.clear();
    let err = import_err(&model(17, g));
    assert_eq!(err, "invalid ONNX model: value \"fc.weight\" used by node \"n\" MatMul is never defined");
}

#[test]
fn output_never_defined() {
    let mut g = relu_graph();
    g.output.push(f32_input("z", &[D::P("N")]));
    assert_eq!(import_err(&model(17, g)), "invalid ONNX model: graph output \"z\" is never defined");
}

#[test]
fn cycle() {
    let graph = GraphProto {
        name: "loop".into(),
        input: vec![f32_input("x", &[D::P("N"), D::V(4)])],
        output: vec![f32_input("y", &[D::P("N"), D::V(4)])],
        node: vec![
            node("Relu", "first", &["x"], &["a"], vec![]),
            node("Add", "second", &["a", "c"], &["b"], vec![]),
            node("Neg", "third", &["b"], &["c"], vec![]),
            node("Identity", "last", &["b"], &["y"], vec![]),
        ],
        ..Default::default()
    };
    let err = import_err(&model(17, graph));
    assert!(
        err == "invalid ONNX model: the nodes form a cycle through node \"second\" Add"
            || err == "invalid ONNX model: the nodes form a cycle through node \"third\" Neg",
        "{err}"
    );
}

#[test]
fn value_defined_twice() {
    let mut g = relu_graph();
    g.node.push(node("Neg", "again", &["x"], &["y"], vec![]));
    assert_eq!(
        import_err(&model(17, g)),
        "invalid ONNX model: value \"y\" is defined twice (again by node \"again\" Neg)"
    );
}

#[test]
fn absurd_initializer_dimensions() {
    let mut g = one_node("Add", &["x", "big"], vec![]);
    g.initializer.push(raw_f32("big", &[1 << 20, 1 << 20], &[]));
    assert_eq!(import_err(&model(17, g)), "tensor \"big\": shape [1048576, 1048576] has more than 2147483648 elements");
    let mut g = one_node("Add", &["x", "huge"], vec![]);
    g.initializer.push(raw_f32("huge", &[i64::MAX, 4], &[]));
    assert_eq!(
        import_err(&model(17, g)),
        format!("tensor \"huge\": shape [{}, 4] has more than 2147483648 elements", i64::MAX)
    );
    let mut g = one_node("Add", &["x", "neg"], vec![]);
    g.initializer.push(raw_f32("neg", &[-1, 4], &[]));
    assert_eq!(import_err(&model(17, g)), "tensor \"neg\": negative dimension -1 in shape [-1, 4]");
}

#[test]
fn absurd_input_dimensions() {
    let mut g = relu_graph();
    g.input[0] = f32_input("x", &[D::P("N"), D::V(1 << 40), D::V(1 << 40)]);
    assert_eq!(
        import_err(&model(17, g)),
        "graph input \"x\": shape [N,1099511627776,1099511627776] has more than 2147483648 elements per batch item"
    );
}

#[test]
fn absurd_shape_from_constant_of_shape() {
    let graph = GraphProto {
        name: "g".into(),
        input: vec![f32_input("x", &[D::P("N"), D::V(4)])],
        output: vec![f32_input("y", &[D::P("N"), D::V(4)])],
        node: vec![
            const_i64("c", "shape", &[1 << 30, 1 << 30]),
            node("ConstantOfShape", "fill", &["shape"], &["z"], vec![]),
            node("Identity", "id", &["x"], &["y"], vec![]),
        ],
        ..Default::default()
    };
    assert_eq!(
        import_err(&model(17, graph)),
        "node \"fill\" ConstantOfShape (opset 17): shape [1073741824,1073741824] has more than 2147483648 elements"
    );
}

#[test]
fn data_shorter_than_declared() {
    let mut g = one_node("Add", &["x", "b"], vec![]);
    g.initializer.push(raw_f32("b", &[4], &[1.0, 2.0, 3.0]));
    assert_eq!(
        import_err(&model(17, g)),
        "tensor \"b\": data is shorter than declared: 12 bytes where 4 elements need 16"
    );
    let mut g = one_node("Add", &["x", "b"], vec![]);
    g.initializer.push(typed_f32("b", &[4], &[1.0, 2.0, 3.0]));
    assert_eq!(import_err(&model(17, g)), "tensor \"b\": data is shorter than declared: 3 values for 4 elements");
    let mut g = one_node("Add", &["x", "b"], vec![]);
    g.initializer.push(typed_f32("b", &[4], &[1.0, 2.0, 3.0, 4.0, 5.0]));
    assert_eq!(import_err(&model(17, g)), "tensor \"b\": data is longer than declared: 5 values for 4 elements");
}

#[test]
fn unsupported_tensor_type() {
    let mut g = one_node("Add", &["x", "s"], vec![]);
    g.initializer.push(nnc_onnx::proto::TensorProto {
        name: "s".into(),
        dims: vec![1],
        data_type: DataType::String as i32,
        string_data: vec![b"a".to_vec()],
        ..Default::default()
    });
    assert_eq!(import_err(&model(17, g)), "tensor \"s\": element type STRING is not supported");
}

/// A float64 tensor: `[1.5, -2.0, 0.25, 8.0]` in `double_data` (as onnx.helper writes
/// it) or, with `raw`, in `raw_data` (as numpy-based exporters do).
fn f64_tensor(name: &str, dims: &[i64], raw: bool) -> nnc_onnx::proto::TensorProto {
    let values = [1.5f64, -2.0, 0.25, 8.0];
    let n = dims.iter().product::<i64>() as usize;
    let values = || values.iter().copied().cycle().take(n);
    nnc_onnx::proto::TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: DataType::Double as i32,
        double_data: if raw { Vec::new() } else { values().collect() },
        raw_data: if raw { values().flat_map(f64::to_le_bytes).collect() } else { Vec::new() },
        ..Default::default()
    }
}

const F64_ADVICE: &str =
    "is float64; nnc computes in float32 — convert the model's float64 tensors (and inputs) to float32";

/// nnc computes in float32 and rounds nothing silently: a float64 weight feeding an
/// f32 Gemm is refused, naming the initializer, whether its data is raw or typed.
#[test]
fn float64_initializer_is_refused() {
    for raw in [false, true] {
        let graph = GraphProto {
            name: "fc".into(),
            input: vec![f32_input("x", &[D::P("N"), D::V(4)])],
            output: vec![f32_input("y", &[D::P("N"), D::V(2)])],
            initializer: vec![f64_tensor("fc1.weight", &[2, 4], raw), raw_f32("fc1.bias", &[2], &[0.0; 2])],
            node: vec![node("Gemm", "fc1", &["x", "fc1.weight", "fc1.bias"], &["y"], vec![attr_int("transB", 1)])],
            ..Default::default()
        };
        assert_eq!(import_err(&model(17, graph)), format!("initializer \"fc1.weight\" {F64_ADVICE}"), "raw {raw}");
    }
    // Also one that only shape arithmetic would read.
    let mut g = one_node("Add", &["x", "b"], vec![]);
    g.initializer.push(raw_f32("b", &[4], &[0.0; 4]));
    g.initializer.push(f64_tensor("unused", &[4], true));
    assert_eq!(import_err(&model(17, g)), format!("initializer \"unused\" {F64_ADVICE}"));
}

#[test]
fn float64_constant_is_refused() {
    for raw in [false, true] {
        let mut g = one_node("Add", &["x", "c"], vec![]);
        g.node.insert(0, node("Constant", "c1", &[], &["c"], vec![attr_tensor("value", f64_tensor("", &[4], raw))]));
        assert_eq!(import_err(&model(17, g)), format!("the value of node \"c1\" Constant {F64_ADVICE}"));
    }
    // ConstantOfShape's fill value, on an unnamed node.
    let mut g = one_node("Add", &["x", "z"], vec![]);
    g.node.insert(0, const_i64("s", "shape", &[4]));
    g.node.insert(
        1,
        node("ConstantOfShape", "", &["shape"], &["z"], vec![attr_tensor("value", f64_tensor("", &[1], false))]),
    );
    assert_eq!(import_err(&model(17, g)), format!("the value of node #1 ConstantOfShape {F64_ADVICE}"));
}

#[test]
fn float64_graph_input_is_refused() {
    let mut g = relu_graph();
    g.input[0] = value_info("pixels", DataType::Double, &[D::P("N"), D::V(4)]);
    assert_eq!(import_err(&model(17, g)), format!("graph input \"pixels\" {F64_ADVICE}"));
    // ONNX test data (`tensor_from_proto`) follows the same rule.
    let e = nnc_onnx::tensor_from_proto(&f64_tensor("x", &[4], true), None).unwrap_err();
    assert_eq!(e.to_string(), format!("tensor \"x\" {F64_ADVICE}"));
}

#[test]
fn symbolic_dimension_other_than_batch() {
    let mut g = relu_graph();
    g.input[0] = f32_input("x", &[D::P("batch"), D::P("seq"), D::V(4)]);
    assert_eq!(
        import_err(&model(17, g)),
        "graph input \"x\": axis 1 has symbolic size \"seq\"; only axis 0 (the batch) may be symbolic"
    );
    let mut g = relu_graph();
    g.input[0] = f32_input("x", &[D::V(2), D::Unknown]);
    assert_eq!(
        import_err(&model(17, g)),
        "graph input \"x\": axis 1 has unknown size; only axis 0 (the batch) may be unknown"
    );
}

#[test]
fn non_tensor_inputs() {
    let mut g = relu_graph();
    g.input[0] = ValueInfoProto {
        name: "x".into(),
        r#type: Some(TypeProto {
            value: Some(TypeValue::SequenceType(type_proto::Sequence { elem_type: None })),
            ..Default::default()
        }),
        ..Default::default()
    };
    assert_eq!(import_err(&model(17, g)), "graph input \"x\": is a sequence; only tensors are supported");
    let mut g = relu_graph();
    g.input[0] = value_info("x", DataType::Double, &[D::P("N"), D::V(4)]);
    assert_eq!(
        import_err(&model(17, g)),
        "graph input \"x\" is float64; nnc computes in float32 — convert the model's float64 tensors (and inputs) \
         to float32"
    );
    let mut g = relu_graph();
    g.input[0].r#type = None;
    assert_eq!(import_err(&model(17, g)), "graph input \"x\": has no type");
}

#[test]
fn reshape_that_merges_the_batch() {
    let mut g = one_node("Reshape", &["x", "shape"], vec![]);
    g.initializer.push(i64_tensor("shape", &[1], &[-1]));
    assert_eq!(
        import_err(&model(17, g)),
        "node \"n\" Reshape (opset 17): cannot infer the -1 in [-1] for input [N,4]: the batch dimension N would be merged with other dimensions or the sizes do not divide"
    );
}

#[test]
fn reshape_with_runtime_shape() {
    let graph = GraphProto {
        name: "g".into(),
        input: vec![f32_input("x", &[D::P("N"), D::V(4)]), value_info("s", DataType::Int64, &[D::V(2)])],
        output: vec![f32_input("y", &[D::P("N"), D::V(4)])],
        node: vec![node("Reshape", "r", &["x", "s"], &["y"], vec![])],
        ..Default::default()
    };
    assert_eq!(
        import_err(&model(17, graph)),
        "node \"r\" Reshape (opset 17): the shape input (\"s\") must be a constant or computed from shapes, but it is only known at run time"
    );
}

#[test]
fn gather_on_runtime_data() {
    let mut g = one_node("Gather", &["x", "i"], vec![]);
    g.initializer.push(i64_tensor("i", &[1], &[0]));
    assert_eq!(
        import_err(&model(17, g)),
        "node \"n\" Gather (opset 17): the data input (\"x\") must be a constant or computed from shapes, but it is only known at run time"
    );
}

#[test]
fn dropout_in_training_mode() {
    let mut g = relu_graph();
    g.node = vec![node("Dropout", "drop", &["x", "", "training"], &["y"], vec![])];
    g.input.push(value_info("training", DataType::Bool, &[]));
    assert_eq!(
        import_err(&model(17, g)),
        "node \"drop\" Dropout (opset 17): training_mode must be a constant false; only inference-mode Dropout is supported"
    );
}

#[test]
fn shape_vector_as_output() {
    let mut g = one_node("Shape", &["x"], vec![]);
    g.output[0] = value_info("y", DataType::Int64, &[D::V(2)]);
    assert_eq!(
        import_err(&model(17, g)),
        "graph output \"y\": is a shape that depends on the batch size, not a tensor"
    );
}

#[test]
fn batch_arithmetic_that_cannot_be_expressed() {
    let graph = GraphProto {
        name: "g".into(),
        input: vec![f32_input("x", &[D::P("N"), D::V(4)])],
        output: vec![f32_input("y", &[D::P("N"), D::V(4)])],
        initializer: vec![i64_tensor("two", &[1], &[2])],
        node: vec![
            node("Shape", "s", &["x"], &["shape"], vec![]),
            node("Mul", "double", &["shape", "two"], &["doubled"], vec![]),
            node("Reshape", "r", &["x", "doubled"], &["y"], vec![]),
        ],
        ..Default::default()
    };
    assert_eq!(
        import_err(&model(17, graph)),
        "node \"double\" Mul (opset 17): shape arithmetic N Mul 2 depends on the batch size N in a way nnc cannot express"
    );
}

#[test]
fn cast_to_unsupported_type() {
    let g = one_node("Cast", &["x"], vec![attr_int("to", DataType::Double as i64)]);
    assert_eq!(
        import_err(&model(17, g)),
        "node \"n\" Cast (opset 17): cannot cast to DOUBLE; nnc supports float, int64, int32 and bool"
    );
}

#[test]
fn wrong_attribute_type() {
    let g = one_node("LeakyRelu", &["x"], vec![attr_int("alpha", 1)]);
    assert_eq!(import_err(&model(17, g)), "node \"n\" LeakyRelu (opset 17): attribute alpha must be FLOAT, got INT");
}

/// x[N,4,6,6] and a weight `w` of the given shape → node → y.
fn image_node(op: &str, w: Option<&[i64]>, attrs: Vec<nnc_onnx::proto::AttributeProto>) -> ModelProto {
    let mut inputs = vec!["x"];
    let mut initializer = Vec::new();
    if let Some(dims) = w {
        let n: i64 = dims.iter().product();
        initializer.push(raw_f32("w", dims, &noise(n as usize, 1, 0.1)));
        inputs.push("w");
    }
    model(
        17,
        GraphProto {
            name: "image".into(),
            input: vec![f32_input("x", &[D::P("N"), D::V(4), D::V(6), D::V(6)])],
            output: vec![f32_input("y", &[D::P("N")])],
            node: vec![node(op, "c1", &inputs, &["y"], attrs)],
            initializer,
            ..Default::default()
        },
    )
}

#[test]
fn convolutions_and_pooling_that_do_not_fit_their_input() {
    let cases: Vec<(ModelProto, &str)> = vec![
        (
            image_node("Conv", Some(&[8, 3, 3, 3]), vec![]),
            "node \"c1\" Conv (opset 17): the input has 4 channels, but the weight [8, 3, 3, 3] with group 1 takes 3",
        ),
        (
            image_node("Conv", Some(&[6, 2, 3, 3]), vec![attr_int("group", 4)]),
            "node \"c1\" Conv (opset 17): the input has 4 channels, but the weight [6, 2, 3, 3] with group 4 takes 8",
        ),
        (
            image_node("Conv", Some(&[6, 1, 3, 3]), vec![attr_int("group", 4)]),
            "node \"c1\" Conv (opset 17): 6 output channels do not split into 4 groups",
        ),
        (
            image_node("Conv", Some(&[8, 4, 7, 7]), vec![]),
            "node \"c1\" Conv (opset 17): the window spans 7 on spatial axis 0, more than the padded input's 6 \
             (6 + pads 0+0)",
        ),
        (
            image_node("Conv", Some(&[8, 4, 3, 3]), vec![attr_ints("kernel_shape", &[5, 5])]),
            "node \"c1\" Conv (opset 17): kernel_shape [5, 5] differs from the weight's [3, 3]",
        ),
        (
            image_node("Conv", Some(&[8, 4, 3, 3]), vec![attr_ints("strides", &[1, -2])]),
            "node \"c1\" Conv (opset 17): strides [1, -2]: -2 is out of range",
        ),
        (
            image_node("Conv", Some(&[8, 4, 3, 3]), vec![attr_string("auto_pad", "SAME")]),
            "node \"c1\" Conv (opset 17): auto_pad \"SAME\" is not NOTSET, SAME_UPPER, SAME_LOWER or VALID",
        ),
        (
            image_node("MaxPool", None, vec![attr_ints("kernel_shape", &[8, 8]), attr_ints("pads", &[1, 1, 0, 0])]),
            "node \"c1\" MaxPool (opset 17): the window spans 8 on spatial axis 0, more than the padded input's 7 \
             (6 + pads 1+0)",
        ),
        (
            image_node("AveragePool", None, vec![attr_ints("kernel_shape", &[2, 2]), attr_ints("pads", &[2, 0, 0, 0])]),
            "node \"c1\" AveragePool (opset 17): pads 2+0 on spatial axis 0 must each be smaller than the window's \
             span 2",
        ),
        (image_node("MaxPool", None, vec![]), "node \"c1\" MaxPool (opset 17): kernel_shape is required"),
        (
            image_node("MaxPool", None, vec![attr_ints("kernel_shape", &[2, 2, 2])]),
            "node \"c1\" MaxPool (opset 17): kernel_shape [2, 2, 2] needs 2 entries, one per spatial axis",
        ),
        (
            image_node(
                "ConvTranspose",
                Some(&[4, 2, 3, 3]),
                vec![attr_ints("strides", &[2, 2]), attr_ints("output_padding", &[2, 0])],
            ),
            "node \"c1\" ConvTranspose (opset 17): an output of [15, 13] is not what this transposed convolution \
             makes from [6, 6] (output_padding or output_shape must stay below the stride)",
        ),
    ];
    for (m, want) in cases {
        assert_eq!(import_err(&m), want);
    }
}

#[test]
fn batch_norm_statistics_outputs_before_opset_14() {
    let stats = ["scale", "b", "mean", "var"].map(|n| raw_f32(n, &[4], &[1.0; 4]));
    let graph = |outputs: &[&str]| GraphProto {
        name: "bn".into(),
        input: vec![f32_input("x", &[D::P("N"), D::V(4), D::V(6), D::V(6)])],
        output: vec![f32_input("y", &[D::P("N")])],
        node: vec![node("BatchNormalization", "bn", &["x", "scale", "b", "mean", "var"], outputs, vec![])],
        initializer: stats.to_vec(),
        ..Default::default()
    };
    assert_eq!(
        import_err(&model(13, graph(&["y", "rm", "rv"]))),
        "node \"bn\" BatchNormalization (opset 13): BatchNormalization's training form (batch statistics, running-statistics \
         outputs) is supported from opset 14, with training_mode=1"
    );
    assert_eq!(
        import_err(&model(15, graph(&["y", "rm"]))),
        "node \"bn\" BatchNormalization (opset 15): BatchNormalization's training form (batch statistics, running-statistics \
         outputs) is supported from opset 14, with training_mode=1"
    );
}

#[test]
fn run_time_concat_slice_and_split_that_do_not_fit() {
    let concat0 = model(17, one_node("Concat", &["x", "x"], vec![attr_int("axis", 0)]));
    assert_eq!(
        import_err(&concat0),
        "node \"n\" Concat (opset 17): input \"x\" [N,4] is concatenated along the batch axis (0)"
    );
    let slice = |starts: &[i64], ends: &[i64], axes: &[i64], steps: &[i64]| {
        let mut g = one_node("Slice", &["x", "s", "e", "a", "t"], vec![]);
        for (name, v) in [("s", starts), ("e", ends), ("a", axes), ("t", steps)] {
            g.initializer.push(i64_tensor(name, &[v.len() as i64], v));
        }
        import_err(&model(17, g))
    };
    assert_eq!(
        slice(&[0], &[4], &[1], &[2]),
        "node \"n\" Slice (opset 17): step 2 on axis 1: slices of run-time data with a step other than 1 are not \
         supported"
    );
    assert_eq!(
        slice(&[1], &[2], &[0], &[1]),
        "node \"n\" Slice (opset 17): slicing the batch axis 0 of run-time data is not supported"
    );
    assert_eq!(
        slice(&[3], &[1], &[1], &[1]),
        "node \"n\" Slice (opset 17): the slice of axis 1 is empty: zero-size tensors are not supported"
    );
    let mut split = one_node("Split", &["x"], vec![attr_int("axis", 1)]);
    split.node[0].output = vec!["y".into(), "z".into(), "w".into()];
    assert_eq!(
        import_err(&model(17, split)),
        "node \"n\" Split (opset 17): axis 1 of [N,4] does not split into 3 equal parts"
    );
}

#[test]
fn pads_and_resizes_that_do_not_fit() {
    let with_inits = |op: &str, inputs: &[&str], inits: Vec<nnc_onnx::proto::TensorProto>, attrs| {
        let mut g = one_node(op, inputs, attrs);
        g.initializer = inits;
        import_err(&model(19, g))
    };
    assert_eq!(
        with_inits(
            "Pad",
            &["x", "p"],
            vec![i64_tensor("p", &[4], &[0, 4, 0, 4])],
            vec![attr_string("mode", "reflect")]
        ),
        "node \"n\" Pad (opset 19): a reflected pad of 4 needs more than 4 rows on axis 1"
    );
    assert_eq!(
        with_inits("Pad", &["x", "p"], vec![i64_tensor("p", &[4], &[1, 0, 0, 0])], vec![]),
        "node \"n\" Pad (opset 19): padding the batch axis 0 is not supported"
    );
    assert_eq!(
        with_inits("Pad", &["x", "p"], vec![i64_tensor("p", &[2], &[0, 0])], vec![]),
        "node \"n\" Pad (opset 19): 2 pads for 2 axes (two per axis)"
    );
    let scales = raw_f32("s", &[2], &[2.0, 2.0]);
    assert_eq!(
        with_inits("Resize", &["x", "", "s"], vec![scales.clone()], vec![]),
        "node \"n\" Resize (opset 19): resizing the batch axis 0 is not supported"
    );
    assert_eq!(
        with_inits("Resize", &["x", "", "s"], vec![scales], vec![attr_int("antialias", 1)]),
        "node \"n\" Resize (opset 19): antialias is not supported"
    );
}
