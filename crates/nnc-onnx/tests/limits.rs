//! Hostile models: sizes are checked from declarations before anything is allocated
//! (the memory budget, overflowing dims, data shorter than declared), graphs are
//! bounded (nodes, nesting), and external data cannot leave the model's directory.
//! Every case is an error in bounded time, never a panic or a huge allocation.

mod common;

use common::*;
use nnc_ir::MemoryBudget;
use nnc_onnx::proto::tensor_proto::{DataLocation, DataType};
use nnc_onnx::proto::{AttributeProto, GraphProto, NodeProto, StringStringEntryProto, TensorProto};
use nnc_onnx::{import_bytes, import_bytes_with, import_file, import_file_with, ImportOptions};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// y = x + b, with `b` given by the test (any declared shape).
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

/// A float tensor that declares `dims` but carries no data at all.
fn declared_only(name: &str, dims: &[i64]) -> TensorProto {
    TensorProto { name: name.into(), dims: dims.to_vec(), data_type: DataType::Float as i32, ..Default::default() }
}

fn limit(text: &str) -> ImportOptions {
    ImportOptions { max_memory: MemoryBudget::parse(text).unwrap(), ..Default::default() }
}

/// Runs `f`, asserting it is quick (no allocation or reading of a declared size).
fn quick<T>(f: impl FnOnce() -> T) -> T {
    let started = Instant::now();
    let out = f();
    assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
    out
}

fn err_bytes(b: &[u8], opts: &ImportOptions) -> String {
    quick(|| import_bytes_with(b, None, opts)).unwrap_err().to_string()
}

#[test]
fn declared_huge_initializer_is_refused_before_allocation() {
    // 2^30 floats: 4 GiB declared, no data.
    let b = bytes(&model(17, add_bias(declared_only("fc1.weight", &[1 << 15, 1 << 15]))));
    assert_eq!(err_bytes(&b, &limit("1G")), "initializer fc1.weight needs 4.0 GiB (limit 1.0 GiB, --max-memory)");
    // Raw data that is present but the budget is smaller: refused by the declaration.
    let b = bytes(&model(17, add_bias(raw_f32("b", &[4, 1024], &vec![0.5; 4096]))));
    assert_eq!(err_bytes(&b, &limit("8K")), "initializer b needs 16.0 KiB (limit 8.0 KiB, --max-memory)");
    // At the limit the budget passes (the graph itself is then refused: [N,4] + [4,1024]).
    let err = import_bytes_with(&b, None, &limit("16K")).unwrap_err().to_string();
    assert!(!err.contains("--max-memory"), "{err}");
}

#[test]
fn the_total_of_all_tensors_is_checked() {
    let graph = GraphProto {
        name: "two".into(),
        input: vec![f32_input("x", &[D::P("N"), D::V(256)])],
        output: vec![f32_input("z", &[D::P("N"), D::V(256)])],
        initializer: vec![raw_f32("a", &[256], &[1.0; 256]), raw_f32("b", &[2, 256], &[1.0; 512])],
        node: vec![node("Add", "add1", &["x", "a"], &["y"], vec![]), node("Add", "add2", &["y", "b"], &["z"], vec![])],
        ..Default::default()
    };
    let b = bytes(&model(17, graph));
    // 1 KiB + 2 KiB: each fits in 2.5 KiB, together they do not.
    assert_eq!(
        err_bytes(&b, &ImportOptions { max_memory: MemoryBudget::from_bytes(2560), ..Default::default() }),
        "the model's tensor data (initializers and constants) needs 3.0 KiB (limit 2.5 KiB, --max-memory); the \
         largest is initializer b (2.0 KiB)"
    );
}

#[test]
fn declared_huge_constant_is_refused() {
    let graph = GraphProto {
        name: "c".into(),
        input: vec![f32_input("x", &[D::P("N"), D::V(4)])],
        output: vec![f32_input("y", &[D::P("N"), D::V(4)])],
        node: vec![
            node("Constant", "c", &[], &["big"], vec![attr_tensor("value", declared_only("", &[1 << 14, 1 << 14]))]),
            node("Add", "add", &["x", "big"], &["y"], vec![]),
        ],
        ..Default::default()
    };
    let b = bytes(&model(17, graph));
    assert_eq!(err_bytes(&b, &limit("512M")), "constant big needs 1.0 GiB (limit 512.0 MiB, --max-memory)");
}

#[test]
fn data_shorter_than_declared() {
    // Within the default budget: the declaration passes, the missing data is found
    // before anything of the declared size is allocated.
    let b = bytes(&model(17, add_bias(declared_only("w", &[1 << 13, 1 << 13]))));
    assert_eq!(
        quick(|| import_bytes(&b, None)).unwrap_err().to_string(),
        "tensor \"w\": data is shorter than declared: 0 values for 67108864 elements"
    );
    let b = bytes(&model(17, add_bias(raw_f32("w", &[1 << 13, 1 << 13], &[1.0; 3]))));
    assert_eq!(
        quick(|| import_bytes(&b, None)).unwrap_err().to_string(),
        "tensor \"w\": data is shorter than declared: 12 bytes where 67108864 elements need 268435456"
    );
}

#[test]
fn overflowing_and_negative_dims() {
    let opts = ImportOptions::default();
    for (dims, want) in [
        (
            vec![1i64 << 40, 1 << 40],
            "tensor \"w\": shape [1099511627776, 1099511627776] has more than 2147483648 elements",
        ),
        (vec![i64::MAX, 2], "tensor \"w\": shape [9223372036854775807, 2] has more than 2147483648 elements"),
        (vec![4, -1], "tensor \"w\": negative dimension -1 in shape [4, -1]"),
    ] {
        let b = bytes(&model(17, add_bias(declared_only("w", &dims))));
        assert_eq!(err_bytes(&b, &opts), want);
    }
}

#[test]
fn graphs_with_too_many_nodes_are_refused() {
    let n = 11;
    let mut nodes = Vec::new();
    for i in 0..n {
        let input = if i == 0 { "x".to_string() } else { format!("h{i}") };
        let output = if i == n - 1 { "y".to_string() } else { format!("h{}", i + 1) };
        nodes.push(node("Relu", &format!("r{i}"), &[input.as_str()], &[output.as_str()], vec![]));
    }
    let graph = GraphProto {
        name: "deep".into(),
        input: vec![f32_input("x", &[D::P("N"), D::V(4)])],
        output: vec![f32_input("y", &[D::P("N"), D::V(4)])],
        node: nodes,
        ..Default::default()
    };
    let b = bytes(&model(17, graph));
    let opts = ImportOptions { max_nodes: 10, ..Default::default() };
    assert_eq!(err_bytes(&b, &opts), "the graph has 11 nodes, more than the 10 nnc imports (ImportOptions::max_nodes)");
    assert!(import_bytes_with(&b, None, &ImportOptions { max_nodes: 11, ..Default::default() }).is_ok());
    assert_eq!(ImportOptions::default().max_nodes, nnc_onnx::MAX_NODES);
}

#[test]
fn deeply_nested_subgraphs_are_refused() {
    // If-nodes nested 500 deep in their then-branches: the protobuf decoder's
    // recursion limit refuses it (no stack overflow); a shallow one is unsupported.
    fn nest(depth: usize) -> GraphProto {
        let mut g = GraphProto { name: "leaf".into(), ..Default::default() };
        for _ in 0..depth {
            let attr = AttributeProto { name: "then_branch".into(), g: Some(g), ..Default::default() };
            let node = NodeProto {
                op_type: "If".into(),
                input: vec!["c".into()],
                output: vec!["y".into()],
                attribute: vec![attr],
                ..Default::default()
            };
            g = GraphProto { name: "g".into(), node: vec![node], ..Default::default() };
        }
        g
    }
    let b = bytes(&model(17, nest(500)));
    let err = err_bytes(&b, &ImportOptions::default());
    assert!(err.starts_with("the input is not a valid ONNX model: "), "{err}");
    let b = bytes(&model(17, nest(2)));
    let err = err_bytes(&b, &ImportOptions::default());
    assert!(err.starts_with("unsupported ONNX ops: node #0 If"), "{err}");
}

#[test]
fn model_file_over_the_budget() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.onnx");
    std::fs::write(&path, bytes(&model(17, add_bias(raw_f32("b", &[4], &[1.0; 4]))))).unwrap();
    let size = std::fs::metadata(&path).unwrap().len();
    let opts = ImportOptions { max_memory: MemoryBudget::from_bytes(16), ..Default::default() };
    assert_eq!(
        import_file_with(&path, &opts).unwrap_err().to_string(),
        format!("model file \"{}\" needs {size} B (limit 16 B, --max-memory)", path.display())
    );
    assert!(import_file(&path).is_ok());
}

// ---- external data --------------------------------------------------------------

fn external(location: &str) -> TensorProto {
    TensorProto {
        name: "b".into(),
        dims: vec![4],
        data_type: DataType::Float as i32,
        data_location: DataLocation::External as i32,
        external_data: vec![StringStringEntryProto { key: "location".into(), value: location.into() }],
        ..Default::default()
    }
}

/// A model directory `model/` and, beside it, a directory `outside/` holding a
/// valid 16-byte data file, so any escape would succeed if it were not refused.
fn layout() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let root = tempfile::tempdir().unwrap();
    let model_dir = root.path().join("model");
    let outside = root.path().join("outside");
    std::fs::create_dir(&model_dir).unwrap();
    std::fs::create_dir(&outside).unwrap();
    let data: Vec<u8> = [1.0f32, 2.0, 3.0, 4.0].iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(outside.join("w.bin"), &data).unwrap();
    std::fs::write(model_dir.join("w.bin"), &data).unwrap();
    (root, model_dir, outside)
}

fn import_external(model_dir: &Path, location: &str) -> Result<nnc_onnx::Graph, String> {
    let path = model_dir.join("model.onnx");
    std::fs::write(&path, bytes(&model(17, add_bias(external(location))))).unwrap();
    import_file(&path).map_err(|e| e.to_string())
}

fn refused(location: &str) -> String {
    format!("tensor \"b\": external data location \"{location}\" must be a relative path inside the model directory")
}

#[test]
fn external_data_inside_the_directory_is_read() {
    let (_root, model_dir, _) = layout();
    std::fs::create_dir(model_dir.join("sub")).unwrap();
    std::fs::copy(model_dir.join("w.bin"), model_dir.join("sub/w.bin")).unwrap();
    for location in ["w.bin", "./w.bin", "sub/w.bin", "sub/./w.bin"] {
        import_external(&model_dir, location).unwrap_or_else(|e| panic!("{location}: {e}"));
    }
}

#[test]
fn external_data_dot_dot_and_absolute_paths_are_refused() {
    let (_root, model_dir, outside) = layout();
    let absolute = outside.join("w.bin").display().to_string();
    for location in ["../outside/w.bin", "sub/../../outside/w.bin", "sub/../w.bin", "..", absolute.as_str(), ""] {
        assert_eq!(import_external(&model_dir, location).unwrap_err(), refused(location), "{location}");
    }
}

#[cfg(unix)]
#[test]
fn external_data_symlinks_escaping_are_refused() {
    use std::os::unix::fs::symlink;
    let (_root, model_dir, outside) = layout();
    // A file symlink to a file outside.
    symlink(outside.join("w.bin"), model_dir.join("link.bin")).unwrap();
    // A directory symlink to a directory outside.
    symlink(&outside, model_dir.join("linkdir")).unwrap();
    // A relative symlink climbing out.
    symlink("../outside/w.bin", model_dir.join("rel.bin")).unwrap();
    // A symlink to the root of the file system.
    symlink("/", model_dir.join("root")).unwrap();
    for location in ["link.bin", "linkdir/w.bin", "rel.bin", "root/etc/passwd"] {
        assert_eq!(
            import_external(&model_dir, location).unwrap_err(),
            format!("tensor \"b\": external data \"{location}\" resolves outside the model directory"),
            "{location}"
        );
    }
    // A symlink that stays inside the directory is fine.
    symlink("w.bin", model_dir.join("inside.bin")).unwrap();
    import_external(&model_dir, "inside.bin").unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn external_data_must_be_a_regular_file() {
    let (_root, model_dir, _) = layout();
    std::fs::create_dir(model_dir.join("dir")).unwrap();
    for location in [".", "dir"] {
        assert_eq!(
            import_external(&model_dir, location).unwrap_err(),
            format!("tensor \"b\": external data \"{location}\" is not a regular file")
        );
    }
}
