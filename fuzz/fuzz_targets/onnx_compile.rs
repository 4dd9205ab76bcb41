//! The whole inference pipeline behind a hostile model: import, optimize, lower,
//! JIT-compile. Every stage must return an error rather than panic on whatever the
//! importer accepts.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(graph) = nnc_onnx::import_bytes(data, None) else { return };
    let opts = nnc_cranelift::CompileOptions { threads: 1, ..Default::default() };
    let _ = nnc_pipeline::compile(&graph, &Default::default(), &opts);
});
