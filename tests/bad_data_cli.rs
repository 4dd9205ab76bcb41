//! Malformed data and models through the `nnc` binary, for the categories whose other
//! cases are library tests: a corrupt IDX data set and a truncated or mis-typed NPY file
//! given to `nnc train`, and an ONNX model whose external data escapes its directory
//! given to `nnc compile`. Each is one `error:` line (after any progress notes), exit
//! code 1, no panic, and no `--out` file.

use nnc_onnx::proto::{ModelProto, StringStringEntryProto};
use prost::Message;
use std::path::Path;
use std::process::{Command, Output};

fn nnc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nnc")).args(args).output().expect("nnc runs")
}

/// Runs nnc expecting a clean failure; returns the error line.
fn expect_error(args: &[&str]) -> String {
    let o = nnc(args);
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert_eq!(o.status.code(), Some(1), "nnc {args:?}: exit code {:?}, stderr:\n{err}", o.status.code());
    assert!(!err.contains("panicked"), "nnc {args:?} panicked:\n{err}");
    // Progress notes ("compiled the training step ...") may come first; the error is
    // one line, the last.
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error")).collect();
    assert_eq!(errors.len(), 1, "nnc {args:?}: expected one error line, got:\n{err}");
    assert!(err.lines().last().is_some_and(|l| l.starts_with("error: ")), "{err}");
    errors[0].to_string()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A tiny MNIST-format directory (raw IDX files) of `n` training and test images.
fn idx_dir(dir: &Path, n: u32) {
    std::fs::create_dir_all(dir).unwrap();
    let images = |n: u32| {
        let mut b = vec![0, 0, 8, 3];
        for d in [n, 28, 28] {
            b.extend(d.to_be_bytes());
        }
        b.extend((0..n * 784).map(|i| (i % 251) as u8));
        b
    };
    let labels = |n: u32| {
        let mut b = vec![0, 0, 8, 1];
        b.extend(n.to_be_bytes());
        b.extend((0..n).map(|i| (i % 10) as u8));
        b
    };
    for split in ["train", "t10k"] {
        std::fs::write(dir.join(format!("{split}-images-idx3-ubyte")), images(n)).unwrap();
        std::fs::write(dir.join(format!("{split}-labels-idx1-ubyte")), labels(n)).unwrap();
    }
}

#[test]
fn corrupt_idx_data_sets_are_refused_by_nnc_train() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("trained.onnx");
    // A valid set trains; then three kinds of damage to the training images.
    let good = tmp.path().join("good");
    idx_dir(&good, 20);
    let o = nnc(&["train", "-q", "--data", s(&good), "--steps", "2", "--batch", "10"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let images = "train-images-idx3-ubyte";
    type Damage = fn(Vec<u8>) -> Vec<u8>;
    let damages: [(&str, Damage); 3] = [
        ("truncated", |b| b[..b.len() / 2].to_vec()),
        ("bad magic", |mut b| {
            b[2] = 0x42;
            b
        }),
        ("trailing bytes", |mut b| {
            b.extend([1, 2, 3]);
            b
        }),
    ];
    for (what, damage) in damages {
        let dir = tmp.path().join(what.replace(' ', "_"));
        idx_dir(&dir, 20);
        let bytes = std::fs::read(dir.join(images)).unwrap();
        std::fs::write(dir.join(images), damage(bytes)).unwrap();
        let err = expect_error(&["train", "-q", "--data", s(&dir), "--steps", "2", "--out", s(&out)]);
        assert!(err.contains(images), "{what}: the error names the file: {err}");
        assert!(!out.exists(), "{what}: no --out file");
    }
}

#[test]
fn truncated_or_mistyped_npy_files_are_refused_by_nnc_train() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("trained.onnx");
    let x = ndarray::Array2::<f32>::from_elem((16, 784), 0.5);
    let y = ndarray::Array1::<i64>::from_iter((0..16).map(|i| i % 10));
    let (xp, yp) = (tmp.path().join("x.npy"), tmp.path().join("y.npy"));
    ndarray_npy::write_npy(&xp, &x).unwrap();
    ndarray_npy::write_npy(&yp, &y).unwrap();
    let o = nnc(&["train", "-q", "--inputs", s(&xp), "--labels", s(&yp), "--steps", "2", "--batch", "8"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    // Truncated inputs.
    let bytes = std::fs::read(&xp).unwrap();
    let cut = tmp.path().join("cut.npy");
    std::fs::write(&cut, &bytes[..bytes.len() - 1000]).unwrap();
    let err = expect_error(&["train", "-q", "--inputs", s(&cut), "--labels", s(&yp), "--out", s(&out)]);
    assert!(err.contains("cut.npy"), "{err}");
    // A header cut in the middle.
    std::fs::write(&cut, &bytes[..30]).unwrap();
    let err = expect_error(&["train", "-q", "--inputs", s(&cut), "--labels", s(&yp), "--out", s(&out)]);
    assert!(err.contains("cut.npy"), "{err}");
    // Integer inputs where float32 images are expected.
    let xi = ndarray::Array2::<i64>::zeros((16, 784));
    let ip = tmp.path().join("int.npy");
    ndarray_npy::write_npy(&ip, &xi).unwrap();
    expect_error(&["train", "-q", "--inputs", s(&ip), "--labels", s(&yp), "--out", s(&out)]);
    assert!(!out.exists());
}

/// nnc computes in float32 and rounds no data silently: a float64 NPY file is refused
/// by name, with the fix, by `nnc train` (inputs or labels), `nnc run` and the library,
/// and no output file is written.
#[test]
fn float64_npy_files_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("trained.onnx");
    let (xp, yp, x64) = (tmp.path().join("x.npy"), tmp.path().join("y.npy"), tmp.path().join("inputs.npy"));
    ndarray_npy::write_npy(&xp, &ndarray::Array2::<f32>::from_elem((16, 784), 0.5)).unwrap();
    ndarray_npy::write_npy(&yp, &ndarray::Array1::<i64>::from_iter((0..16).map(|i| i % 10))).unwrap();
    ndarray_npy::write_npy(&x64, &ndarray::Array2::<f64>::from_elem((16, 784), 0.5)).unwrap();
    let advice = "holds float64; nnc reads float32 — convert with numpy's .astype(numpy.float32)";

    let err = expect_error(&["train", "-q", "--inputs", s(&x64), "--labels", s(&yp), "--out", s(&out)]);
    assert_eq!(err, format!("error: {} {advice}", x64.display()));
    let y64 = tmp.path().join("labels.npy");
    ndarray_npy::write_npy(&y64, &ndarray::Array1::<f64>::from_elem(16, 1.0)).unwrap();
    let err = expect_error(&["train", "-q", "--inputs", s(&xp), "--labels", s(&y64), "--out", s(&out)]);
    assert_eq!(err, format!("error: {} {advice}", y64.display()));
    assert!(!out.exists());

    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/mlp.onnx");
    let y = tmp.path().join("y_out.npy");
    let err = expect_error(&["run", s(&model), "--input", s(&x64), "--output", s(&y)]);
    assert_eq!(err, format!("error: {} {advice}", x64.display()));
    assert!(!y.exists());

    let e = nnc::npy::read_npy(&x64).unwrap_err().to_string();
    assert_eq!(e, format!("{} {advice}", x64.display()));
    // A tiny budget does not hide the reason: the type is judged before the size.
    let e = nnc::npy::read_npy_with(&x64, nnc_ir::MemoryBudget::from_bytes(16)).unwrap_err().to_string();
    assert_eq!(e, format!("{} {advice}", x64.display()));
}

#[test]
fn external_data_escaping_the_model_directory_is_refused_by_nnc_compile() {
    let tmp = tempfile::tempdir().unwrap();
    let seed = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/mlp.onnx");
    let model = ModelProto::decode(std::fs::read(seed).unwrap().as_slice()).unwrap();
    std::fs::write(tmp.path().join("secret.bin"), vec![0u8; 4096]).unwrap();
    let inner = tmp.path().join("model");
    std::fs::create_dir(&inner).unwrap();
    for location in ["../secret.bin", s(&tmp.path().join("secret.bin"))] {
        let mut m = model.clone();
        let init = &mut m.graph.as_mut().unwrap().initializer[0];
        init.raw_data.clear();
        init.float_data.clear();
        init.data_location = 1; // EXTERNAL
        init.external_data = vec![StringStringEntryProto { key: "location".into(), value: location.into() }];
        let path = inner.join("m.onnx");
        std::fs::write(&path, m.encode_to_vec()).unwrap();
        let err = expect_error(&["compile", s(&path)]);
        assert!(err.contains("secret.bin") || err.contains("outside"), "{location}: {err}");
    }
}
