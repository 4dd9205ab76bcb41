//! NPY reader (`nnc::npy::read_npy`, which takes a path: the input is written to a
//! per-process temporary file first).
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::PathBuf;
use std::sync::OnceLock;

fuzz_target!(|data: &[u8]| {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    let path = PATH.get_or_init(|| std::env::temp_dir().join(format!("nnc-fuzz-{}.npy", std::process::id())));
    std::fs::write(path, data).unwrap();
    let _ = nnc::npy::read_npy(path);
});
