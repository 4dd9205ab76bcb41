//! `--max-memory` and hostile sizes through the CLI: every refusal is one line on
//! stderr, exit 1, no panic, and comes before anything of the declared size is
//! allocated (so each case is fast).

use nnc_ir::Tensor;
use nnc_onnx::proto::tensor_proto::DataType;
use nnc_onnx::proto::{GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto};
use prost::Message;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn nnc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nnc")).args(args).output().expect("nnc runs")
}

fn repo(path: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path).to_string_lossy().to_string()
}

/// Runs nnc expecting a one-line error with exit code 1, quickly; returns the line.
fn expect_error(args: &[&str]) -> String {
    let started = Instant::now();
    let o = nnc(args);
    let elapsed = started.elapsed();
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert_eq!(o.status.code(), Some(1), "nnc {args:?}: exit code {:?}, stderr:\n{err}", o.status.code());
    assert!(!err.contains("panicked"), "nnc {args:?} panicked:\n{err}");
    // `train` reports compiling the step before it loads data; the error is one line.
    let lines: Vec<&str> = err.lines().filter(|l| !l.starts_with("compiled the training step")).collect();
    assert_eq!(lines.len(), 1, "nnc {args:?}: expected a one-line error, got:\n{err}");
    assert!(lines[0].starts_with("error: "), "{err}");
    assert!(elapsed < Duration::from_secs(5), "nnc {args:?} took {elapsed:?}");
    lines[0].to_string()
}

#[test]
fn seed_model_over_a_small_budget() {
    let model = repo("models/mlp.onnx");
    // The model file itself does not fit.
    let err = expect_error(&["compile", &model, "--max-memory", "512K"]);
    let want = format!("model file \"{model}\" needs 795.6 KiB (limit 512.0 KiB, --max-memory)");
    assert!(err.ends_with(&want), "{err}");
    // The file fits in 1M, the training step at batch 100 does not; the flag also
    // works before the command.
    for args in [
        vec!["train", &model, "--max-memory", "1M", "--steps", "1", "--quiet"],
        vec!["--max-memory", "1M", "train", "--steps", "1", "--quiet"],
    ] {
        let err = expect_error(&args);
        assert!(err.starts_with("error: the training step needs "), "{err}");
        assert!(err.contains(" at batch 100 (arena "), "{err}");
        assert!(err.contains(" + parameters 1.6 MiB), over the limit 1.0 MiB (--max-memory"), "{err}");
    }
    // A smaller batch needs less; the budget is not the problem for compile.
    let o = nnc(&["compile", &model, "--max-memory", "1M"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn max_memory_parsing_errors() {
    let model = repo("models/mlp.onnx");
    for (size, want) in [
        (
            "8X",
            "error: --max-memory: invalid size \"8X\": expected bytes or a number with K, M, G or T (e.g. 512M, 8G)",
        ),
        ("", "error: --max-memory: invalid size \"\": expected bytes or a number with K, M, G or T (e.g. 512M, 8G)"),
        (
            "-1",
            "error: --max-memory: invalid size \"-1\": expected bytes or a number with K, M, G or T (e.g. 512M, 8G)",
        ),
        ("0", "error: --max-memory: invalid size \"0\": the limit must be at least 1 byte"),
        ("99999999999T", "error: --max-memory: invalid size \"99999999999T\": too large"),
    ] {
        let flag = format!("--max-memory={size}");
        assert_eq!(expect_error(&["compile", &model, &flag]), want, "{size:?}");
    }
    for ok in ["1G", "8g", "2GiB", "1073741824", "1.5G"] {
        let o = nnc(&["compile", &model, "--max-memory", ok]);
        assert!(o.status.success(), "{ok}: {}", String::from_utf8_lossy(&o.stderr));
    }
}

#[test]
fn declared_huge_initializer_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("huge.onnx");
    // A 32768×32768 float weight (4 GiB) that carries no data.
    let w = TensorProto {
        name: "fc1.weight".into(),
        dims: vec![1 << 15, 1 << 15],
        data_type: DataType::Float as i32,
        ..Default::default()
    };
    let graph = GraphProto {
        name: "g".into(),
        initializer: vec![w],
        node: vec![NodeProto {
            op_type: "Identity".into(),
            input: vec!["fc1.weight".into()],
            output: vec!["y".into()],
            ..Default::default()
        }],
        ..Default::default()
    };
    let model = ModelProto {
        ir_version: 8,
        opset_import: vec![OperatorSetIdProto { domain: String::new(), version: 17 }],
        graph: Some(graph),
        ..Default::default()
    };
    std::fs::write(&path, model.encode_to_vec()).unwrap();
    let p = path.to_str().unwrap();
    assert_eq!(
        expect_error(&["compile", p, "--max-memory", "1G"]),
        format!("error: cannot import {p}: initializer fc1.weight needs 4.0 GiB (limit 1.0 GiB, --max-memory)")
    );
}

/// An MNIST-format directory whose training images declare `images` 28×28 images but
/// hold none (the other files are small and valid).
fn hostile_mnist(dir: &Path, images: u32) {
    use nnc_train::idx::write_idx;
    let mut header = vec![0u8, 0, 8, 3];
    for d in [images, 28, 28] {
        header.extend(d.to_be_bytes());
    }
    std::fs::write(dir.join("train-images-idx3-ubyte"), &header).unwrap();
    let mut labels = vec![0u8, 0, 8, 1];
    labels.extend(images.to_be_bytes());
    std::fs::write(dir.join("train-labels-idx1-ubyte"), &labels).unwrap();
    write_idx(&dir.join("t10k-images-idx3-ubyte"), &[2, 28, 28], &[0; 2 * 784]).unwrap();
    write_idx(&dir.join("t10k-labels-idx1-ubyte"), &[2], &[0, 1]).unwrap();
}

#[test]
fn huge_declared_idx_header_is_refused_before_allocating() {
    let dir = tempfile::tempdir().unwrap();
    hostile_mnist(dir.path(), 1_000_000);
    let d = dir.path().to_str().unwrap();
    // Over the budget: refused from the headers alone. Images are held as their bytes
    // (784 MB here) and labels as i64 (8 MB).
    let err = expect_error(&["train", "--data", d, "--max-memory", "512M", "--steps", "1", "--quiet"]);
    assert_eq!(
        err,
        format!(
            "error: {d}: the data set (1000000 training and 2 test images of 28×28, a byte per pixel) needs 755.3 \
             MiB (limit 512.0 MiB, --max-memory)"
        )
    );
    let err = expect_error(&["eval", &repo("models/mlp.onnx"), "--data", d, "--max-memory", "512M"]);
    assert!(err.ends_with("needs 755.3 MiB (limit 512.0 MiB, --max-memory)"), "{err}");
    // Within the budget at a byte per pixel, though not at the four of f32.
    let err = expect_error(&["train", "--data", d, "--max-memory", "1G", "--steps", "1", "--quiet"]);
    assert!(err.contains("truncated: dims 1000000×28×28 declare 784000000 bytes of data"), "{err}");
    // Within the budget: the file is found to be shorter than declared, still before
    // anything of the declared size is allocated.
    let err = expect_error(&["train", "--data", d, "--max-memory", "8G", "--steps", "1", "--quiet"]);
    assert!(err.contains("truncated: dims 1000000×28×28 declare 784000000 bytes of data, but the file has 0"), "{err}");
}

fn write_npy(path: &Path, t: &Tensor) {
    nnc::npy::write_npy(path, t).unwrap();
}

/// An NPY file whose header declares `shape` of float32 but holds no data.
fn hostile_npy(path: &Path, shape: &str) {
    let mut dict = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}");
    while (10 + dict.len() + 1) % 64 != 0 {
        dict.push(' ');
    }
    dict.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend((dict.len() as u16).to_le_bytes());
    bytes.extend(dict.as_bytes());
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn npy_data_sets_are_checked_before_reading() {
    let dir = tempfile::tempdir().unwrap();
    let x = dir.path().join("x.npy");
    let y = dir.path().join("y.npy");
    let (xs, ys) = (x.to_str().unwrap(), y.to_str().unwrap());
    write_npy(&x, &Tensor::from_f32(&[100, 784], vec![0.5; 78400]).unwrap());
    write_npy(&y, &Tensor::from_i64(&[100], vec![1; 100]).unwrap());
    // 306.2 KiB of inputs + 800 B of labels, over 200K (the interpreter has no JIT
    // arena to check, so the data set is what is refused).
    let err = expect_error(&[
        "train",
        "--backend",
        "interp",
        "--inputs",
        xs,
        "--labels",
        ys,
        "--max-memory",
        "200K",
        "--steps",
        "1",
        "--quiet",
    ]);
    assert_eq!(err, format!("error: the data set ({xs} and {ys}) needs 307.0 KiB (limit 200.0 KiB, --max-memory)"));

    // A header declaring far more than the file holds: refused before ndarray-npy
    // would allocate the declared size.
    hostile_npy(&x, "(1000000000, 784)");
    let err = expect_error(&["train", "--inputs", xs, "--labels", ys, "--steps", "1", "--quiet"]);
    assert_eq!(
        err,
        format!(
            "error: {xs}: data is shorter than declared: shape [1000000000, 784] of '<f4' needs 3136000000000 bytes, \
             the file has 0 after the header"
        )
    );
    // Element counts that overflow.
    hostile_npy(&x, "(4294967296, 4294967296, 4294967296)");
    let err = expect_error(&["run", &repo("models/mlp.onnx"), "--input", xs]);
    assert!(err.ends_with("declares more bytes than fit in memory"), "{err}");
}
