//! Where tensor data can live: `raw_data`, typed fields, external files.

mod common;

use common::*;
use nnc_ir::{Op, Tensor};
use nnc_onnx::proto::tensor_proto::{DataLocation, DataType};
use nnc_onnx::proto::{GraphProto, StringStringEntryProto, TensorProto};
use nnc_onnx::{import_bytes, import_file, Graph};
use std::path::Path;

/// y = x + b, with `b` given by the test.
fn add_bias(b: TensorProto) -> GraphProto {
    GraphProto {
        name: "bias".into(),
        input: vec![f32_input("x", &[D::P("N"), D::V(4)])],
        output: vec![f32_input("y", &[D::P("N"), D::V(4)])],
        initializer: vec![b],
        node: vec![node("Add", "add", &["x", "b"], &["y"], vec![])],
        ..Default::default()
    }
}

fn param_value(g: &Graph, name: &str) -> Tensor {
    match &g.value(g.find(name).expect("value exists")).op {
        Op::Param { init: Some(t) } => t.clone(),
        other => panic!("{name} is {other:?}"),
    }
}

fn import_bias(b: TensorProto) -> Graph {
    import_bytes(&bytes(&model(17, add_bias(b))), None).unwrap_or_else(|e| panic!("{e}"))
}

const VALUES: [f32; 4] = [1.5, -2.0, 0.25, 8.0];

#[test]
fn raw_and_typed_float_data_agree() {
    let raw = param_value(&import_bias(raw_f32("b", &[4], &VALUES)), "b");
    let typed = param_value(&import_bias(typed_f32("b", &[4], &VALUES)), "b");
    assert_eq!(raw, typed);
    assert_eq!(raw.to_f32_vec().unwrap(), VALUES.to_vec());
}

/// Float64 is refused rather than rounded to f32, from either field (the messages
/// are checked in import_errors.rs).
#[test]
fn doubles_are_refused_not_rounded() {
    let typed = TensorProto {
        name: "b".into(),
        dims: vec![4],
        data_type: DataType::Double as i32,
        double_data: VALUES.iter().map(|&v| v as f64).collect(),
        ..Default::default()
    };
    let raw = TensorProto {
        name: "b".into(),
        dims: vec![4],
        data_type: DataType::Double as i32,
        raw_data: VALUES.iter().flat_map(|&v| (v as f64).to_le_bytes()).collect(),
        ..Default::default()
    };
    for t in [typed, raw] {
        let e = import_bytes(&bytes(&model(17, add_bias(t))), None).unwrap_err();
        assert!(matches!(&e, nnc_onnx::OnnxError::Float64 { what } if what == "initializer \"b\""), "{e}");
    }
}

#[test]
fn half_precision_becomes_f32() {
    // 1.5, -2.0, 0.25, 8.0 as IEEE half bit patterns.
    let bits: [u16; 4] = [0x3e00, 0xc000, 0x3400, 0x4800];
    let raw = TensorProto {
        name: "b".into(),
        dims: vec![4],
        data_type: DataType::Float16 as i32,
        raw_data: bits.iter().flat_map(|b| b.to_le_bytes()).collect(),
        ..Default::default()
    };
    assert_eq!(param_value(&import_bias(raw), "b").to_f32_vec().unwrap(), VALUES.to_vec());
    let typed = TensorProto {
        name: "b".into(),
        dims: vec![4],
        data_type: DataType::Float16 as i32,
        int32_data: bits.iter().map(|&b| b as i32).collect(),
        ..Default::default()
    };
    assert_eq!(param_value(&import_bias(typed), "b").to_f32_vec().unwrap(), VALUES.to_vec());
}

#[test]
fn integer_shape_data_in_raw_and_typed_fields() {
    // Reshape [N,4] → [N,2,2] with the shape in raw little-endian int64.
    for shape in [
        TensorProto {
            name: "s".into(),
            dims: vec![3],
            data_type: DataType::Int64 as i32,
            raw_data: [0i64, 2, 2].iter().flat_map(|v| v.to_le_bytes()).collect(),
            ..Default::default()
        },
        i64_tensor("s", &[3], &[-1, 2, 2]),
        TensorProto {
            name: "s".into(),
            dims: vec![3],
            data_type: DataType::Int32 as i32,
            int32_data: vec![0, 2, 2],
            ..Default::default()
        },
    ] {
        let graph = GraphProto {
            name: "r".into(),
            input: vec![f32_input("x", &[D::P("N"), D::V(4)])],
            output: vec![f32_input("y", &[D::P("N"), D::V(2), D::V(2)])],
            initializer: vec![shape],
            node: vec![node("Reshape", "r", &["x", "s"], &["y"], vec![])],
            ..Default::default()
        };
        let g = import_bytes(&bytes(&model(17, graph)), None).unwrap_or_else(|e| panic!("{e}"));
        let y = g.outputs()[0];
        assert_eq!(
            g.value(y).op,
            Op::Reshape {
                shape: nnc_ir::Shape(vec![nnc_ir::Dim::Batch, nnc_ir::Dim::Fixed(2), nnc_ir::Dim::Fixed(2)])
            }
        );
        assert_eq!(g.len(), 2, "the shape constant leaves nothing behind:\n{}", nnc_ir::print(&g));
    }
}

fn external(location: &str, offset: Option<u64>, length: Option<u64>) -> TensorProto {
    let mut entries = vec![StringStringEntryProto { key: "location".into(), value: location.into() }];
    if let Some(o) = offset {
        entries.push(StringStringEntryProto { key: "offset".into(), value: o.to_string() });
    }
    if let Some(l) = length {
        entries.push(StringStringEntryProto { key: "length".into(), value: l.to_string() });
    }
    TensorProto {
        name: "b".into(),
        dims: vec![4],
        data_type: DataType::Float as i32,
        data_location: DataLocation::External as i32,
        external_data: entries,
        ..Default::default()
    }
}

/// Writes the model and a data file (16 junk bytes, then the values) into `dir`.
fn write_external_model(dir: &Path, t: TensorProto) -> std::path::PathBuf {
    let mut data = vec![0xAAu8; 16];
    data.extend(VALUES.iter().flat_map(|v| v.to_le_bytes()));
    std::fs::write(dir.join("weights.bin"), &data).unwrap();
    let path = dir.join("model.onnx");
    std::fs::write(&path, bytes(&model(17, add_bias(t)))).unwrap();
    path
}

#[test]
fn external_data_beside_the_model() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_external_model(dir.path(), external("weights.bin", Some(16), Some(16)));
    let g = import_file(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(param_value(&g, "b").to_f32_vec().unwrap(), VALUES.to_vec());

    // Same through import_bytes with an explicit directory.
    let bytes = std::fs::read(&path).unwrap();
    let g = import_bytes(&bytes, Some(dir.path())).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(param_value(&g, "b").to_f32_vec().unwrap(), VALUES.to_vec());
}

#[test]
fn external_data_errors() {
    let dir = tempfile::tempdir().unwrap();
    let cases: Vec<(TensorProto, String)> = vec![
        (
            external("../weights.bin", None, None),
            "tensor \"b\": external data location \"../weights.bin\" must be a relative path inside the model directory".into(),
        ),
        (
            external("/etc/passwd", None, None),
            "tensor \"b\": external data location \"/etc/passwd\" must be a relative path inside the model directory".into(),
        ),
        (external("weights.bin", Some(16), Some(12)), "tensor \"b\": external data length 12 does not match the 16 bytes the shape needs".into()),
        (
            external("weights.bin", Some(24), None),
            "tensor \"b\": data is shorter than declared: external file \"weights.bin\" has 32 bytes, need 16 at offset 24".into(),
        ),
        (TensorProto { external_data: vec![], ..external("x", None, None) }, "tensor \"b\": external data has no location".into()),
    ];
    for (t, want) in cases {
        let path = write_external_model(dir.path(), t);
        assert_eq!(import_file(&path).unwrap_err().to_string(), want);
    }
    let path = write_external_model(dir.path(), external("missing.bin", None, None));
    let err = import_file(&path).unwrap_err().to_string();
    assert!(err.starts_with("tensor \"b\": cannot read external data \""), "{err}");

    // From bytes without a directory, external data cannot be found.
    let b = bytes(&model(17, add_bias(external("weights.bin", None, None))));
    assert_eq!(
        import_bytes(&b, None).unwrap_err().to_string(),
        "tensor \"b\": uses external data \"weights.bin\" but the model was loaded from bytes without a directory"
    );
}

#[cfg(unix)]
#[test]
fn external_data_symlink_out_of_the_directory_is_refused() {
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret.bin"), [0u8; 16]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(outside.path().join("secret.bin"), dir.path().join("link.bin")).unwrap();
    let path = write_external_model(dir.path(), external("link.bin", None, None));
    assert_eq!(
        import_file(&path).unwrap_err().to_string(),
        "tensor \"b\": external data \"link.bin\" resolves outside the model directory"
    );
}

/// Constant nodes in every attribute form.
#[test]
fn constant_attribute_forms() {
    let graph = GraphProto {
        name: "consts".into(),
        input: vec![f32_input("x", &[D::P("N"), D::V(2)])],
        output: vec![f32_input("y", &[D::P("N"), D::V(2)])],
        node: vec![
            node("Constant", "a", &[], &["a"], vec![attr_float("value_float", 2.0)]),
            node("Constant", "b", &[], &["b"], vec![attr_floats("value_floats", &[1.0, -1.0])]),
            node("Constant", "s", &[], &["s"], vec![attr_ints("value_ints", &[-1, 2])]),
            node("Constant", "k", &[], &["k"], vec![attr_int("value_int", 0)]),
            node("Mul", "m", &["x", "a"], &["m"], vec![]),
            node("Add", "p", &["m", "b"], &["p"], vec![]),
            node("Reshape", "r", &["p", "s"], &["y"], vec![]),
        ],
        ..Default::default()
    };
    let g = import_bytes(&bytes(&model(17, graph)), None).unwrap_or_else(|e| panic!("{e}"));
    insta::assert_snapshot!(nnc_ir::print(&g));
}
