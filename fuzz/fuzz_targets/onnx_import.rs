//! ONNX importer: protobuf → IR, including external-data handling.
//!
//! The model is imported with a base directory that holds a small data file
//! (`weights.bin`) and a subdirectory, so external-data locations, offsets and lengths
//! are exercised; a location that escapes the directory must be refused.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

fn base_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("nnc-fuzz-onnx-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        let bytes: Vec<u8> = (0..4096u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(dir.join("weights.bin"), &bytes).unwrap();
        std::fs::write(dir.join("sub").join("w.bin"), &bytes[..64]).unwrap();
        dir
    })
}

fuzz_target!(|data: &[u8]| {
    let _ = nnc_onnx::import_bytes(data, Some(base_dir()));
});
