//! Every input the fuzzers (`fuzz/`, see RELIABILITY.md) found a crash, hang or
//! over-allocation with, kept as a regression test: each file under
//! `tests/fuzz_regressions/<target>/` goes through the same entry point as the fuzz
//! target and must give a result — an error with a message, or a valid value — and
//! never a panic.
//!
//! A file whose name starts with `ok-` must be accepted; every other file must be
//! refused with an error.

use std::path::{Path, PathBuf};

fn inputs(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_regressions").join(target);
    let mut files: Vec<PathBuf> = match std::fs::read_dir(&dir) {
        Ok(entries) => entries.map(|e| e.unwrap().path()).filter(|p| p.is_file()).collect(),
        Err(_) => Vec::new(),
    };
    files.sort();
    files
}

fn expect_ok(path: &Path) -> bool {
    path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("ok-"))
}

/// Checks one result against the file's name: `ok-*` must succeed, anything else must
/// fail with a non-empty message.
fn check<T, E: std::fmt::Display>(path: &Path, result: Result<T, E>) {
    match result {
        Ok(_) => assert!(expect_ok(path), "{}: accepted, but a malformed input must be refused", path.display()),
        Err(e) => {
            let message = e.to_string();
            eprintln!("{}: {message}", path.display());
            assert!(!expect_ok(path), "{}: refused: {message}", path.display());
            assert!(!message.trim().is_empty(), "{}: empty error message", path.display());
        }
    }
}

#[test]
fn onnx_import() {
    // The fuzz target imports with a base directory, so external data is resolved.
    let base = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(base.path().join("sub")).unwrap();
    let bytes: Vec<u8> = (0..4096u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(base.path().join("weights.bin"), &bytes).unwrap();
    std::fs::write(base.path().join("sub").join("w.bin"), &bytes[..64]).unwrap();
    for path in inputs("onnx_import") {
        let data = std::fs::read(&path).unwrap();
        check(&path, nnc::onnx::import_bytes(&data, Some(base.path())));
        // And without a directory, as `import_bytes` callers use it.
        if !expect_ok(&path) {
            check(&path, nnc::onnx::import_bytes(&data, None));
        }
    }
}

#[test]
fn onnx_compile() {
    for path in inputs("onnx_compile") {
        let data = std::fs::read(&path).unwrap();
        let result = nnc::onnx::import_bytes(&data, None).map_err(|e| e.to_string()).and_then(|g| {
            let opts = nnc_cranelift::CompileOptions { threads: 1, ..Default::default() };
            nnc_pipeline::compile(&g, &Default::default(), &opts).map(|_| ()).map_err(|e| e.to_string())
        });
        check(&path, result);
    }
}

#[test]
fn ir_parse() {
    for path in inputs("ir_parse") {
        let data = std::fs::read(&path).unwrap();
        let text = String::from_utf8_lossy(&data);
        let result = nnc::ir::parse(&text);
        if let Ok(g) = &result {
            let printed = nnc::ir::print_with_data(g);
            let again = nnc::ir::parse(&printed).unwrap();
            assert_eq!(nnc::ir::print_with_data(&again), printed, "{}", path.display());
        }
        check(&path, result);
    }
}

#[test]
fn npy_read() {
    let dir = tempfile::tempdir().unwrap();
    for path in inputs("npy_read") {
        let copy = dir.path().join("input.npy");
        std::fs::copy(&path, &copy).unwrap();
        check(&path, nnc::npy::read_npy(&copy));
    }
}

#[test]
fn idx_read() {
    for path in inputs("idx_read") {
        check(&path, nnc_train::idx::read_idx(&path));
    }
}
