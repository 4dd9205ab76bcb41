//! Export then import gives back the same graph, at every opset the exporter writes.

mod common;

use common::graphs;
use nnc_ir::Graph;
use nnc_onnx::{export_model, import_bytes, to_bytes, write_file, ExportOptions, OnnxError};

fn opts(opset: i64) -> ExportOptions {
    ExportOptions { opset, ..ExportOptions::default() }
}

fn roundtrip(g: &Graph, opset: i64) -> Graph {
    nnc_ir::verify(g).unwrap_or_else(|e| panic!("test graph is invalid: {e}"));
    let bytes = to_bytes(g, &opts(opset)).unwrap_or_else(|e| panic!("export at opset {opset}: {e}"));
    let back = import_bytes(&bytes, None).unwrap_or_else(|e| panic!("import at opset {opset}: {e}"));
    assert_eq!(nnc_ir::print_with_data(&back), nnc_ir::print_with_data(g), "round trip at opset {opset}");
    back
}

const OPSETS: [i64; 7] = [11, 12, 13, 17, 18, 20, 25];

#[test]
fn mlp_roundtrips() {
    for opset in OPSETS {
        roundtrip(&graphs::mlp(), opset);
    }
}

#[test]
fn interleaved_leaves_keep_their_place() {
    for opset in OPSETS {
        roundtrip(&graphs::interleaved(), opset);
    }
}

#[test]
fn every_op_roundtrips() {
    for opset in OPSETS {
        roundtrip(&graphs::all_ops(true), opset);
        if opset >= 13 {
            roundtrip(&graphs::all_ops(false), opset);
        }
    }
}

#[test]
fn convolutions_and_pooling_roundtrip() {
    for opset in OPSETS.into_iter().filter(|&o| o >= 11) {
        roundtrip(&graphs::cnn(), opset);
    }
}

/// Below opset 13 an inner-axis softmax and a reduction over no axes come back as
/// the equivalent ops ONNX had then.
#[test]
fn forms_below_opset_13() {
    let bytes = to_bytes(&graphs::all_ops(false), &opts(12)).unwrap();
    let back = import_bytes(&bytes, None).unwrap();
    let text = nnc_ir::print(&back);
    let lines: Vec<&str> =
        text.lines().filter(|l| l.contains("%sm") || l.contains("\"sm::") || l.contains("%rnone")).collect();
    insta::assert_snapshot!(lines.join("\n"));
}

/// An explicit transpose feeding a batched matmul stays a transpose: only the
/// exporter's own (marked) transposes fold into the matmul flags.
#[test]
fn explicit_transpose_before_batched_matmul_is_kept() {
    let g = graphs::all_ops(true);
    let back = roundtrip(&g, 17);
    assert!(back.find("tr").is_some());
}

#[test]
fn training_step_with_state_and_updates_roundtrips() {
    for opset in OPSETS {
        let back = roundtrip(&graphs::step(), opset);
        assert_eq!(back.updates().len(), 3);
    }
}

/// The exported seed model, as text for review: Gemm for the transposed weight, the
/// canonical leaf order needs no position metadata.
#[test]
fn exported_mlp_structure() {
    let m = export_model(&graphs::mlp(), &ExportOptions::default()).unwrap();
    let graph = m.graph.as_ref().unwrap();
    let mut lines = vec![format!(
        "ir_version {} opset {:?}",
        m.ir_version,
        m.opset_import.iter().map(|o| o.version).collect::<Vec<_>>()
    )];
    lines.extend(graph.input.iter().map(|i| format!("input {}", i.name)));
    lines.extend(
        graph
            .initializer
            .iter()
            .map(|t| format!("initializer {} {:?} ({} raw bytes)", t.name, t.dims, t.raw_data.len())),
    );
    for n in &graph.node {
        let attrs: Vec<String> = n.attribute.iter().map(|a| format!("{}={}", a.name, a.i)).collect();
        lines.push(format!("{} {:?} -> {:?} {}", n.op_type, n.input, n.output, attrs.join(" ")));
    }
    lines.extend(graph.output.iter().map(|o| format!("output {}", o.name)));
    lines.extend(m.metadata_props.iter().map(|p| format!("metadata {}={}", p.key, p.value)));
    insta::assert_snapshot!(lines.join("\n"));
}

#[test]
fn write_file_is_atomic_and_reports_bad_paths() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mlp.onnx");
    write_file(&graphs::mlp(), &path, &ExportOptions::default()).unwrap();
    let back = nnc_onnx::import_file(&path).unwrap();
    assert_eq!(nnc_ir::print(&back), nnc_ir::print(&graphs::mlp()));
    // Only the model is left in the directory: no temporary files.
    let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, vec![std::ffi::OsString::from("mlp.onnx")]);

    let missing = dir.path().join("no/such/dir/model.onnx");
    let err = write_file(&graphs::mlp(), &missing, &ExportOptions::default()).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "cannot write \"{}\": directory \"{}\" does not exist",
            missing.display(),
            missing.parent().unwrap().display()
        )
    );
    assert!(!missing.exists());

    // A failed export (bad options) writes nothing and leaves an old file alone.
    let err = write_file(&graphs::mlp(), &path, &opts(10)).unwrap_err();
    assert_eq!(err, OnnxError::Options("opset 10 is outside the exportable range 11 to 27".into()));
    assert!(nnc_onnx::import_file(&path).is_ok());
}

#[cfg(unix)]
#[test]
fn unwritable_directory_is_an_error() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o500)).unwrap();
    let path = dir.path().join("m.onnx");
    let result = write_file(&graphs::mlp(), &path, &ExportOptions::default());
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    // Root may write anyway; otherwise the error names the path.
    if let Err(e) = result {
        assert!(e.to_string().starts_with(&format!("cannot write \"{}\":", path.display())), "{e}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
