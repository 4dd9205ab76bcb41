//! The pipeline's stages agree with each other: the kernels the optimizer's report
//! counts (its step plan) are the kernels the backend runs, for every kernel family
//! this CPU has, for the seed step and the deep MLP, in training and inference.

use nnc_pipeline::{CompileOptions, OptOptions, TrainOptions};
use std::path::Path;

fn model(name: &str) -> nnc_ir::Graph {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("models").join(name);
    nnc_pipeline::import(&path, &Default::default()).unwrap()
}

fn families() -> Vec<nnc_cranelift::Kernels> {
    use nnc_cranelift::Kernels;
    [Kernels::Cranelift, Kernels::Avx2, Kernels::Avx512]
        .into_iter()
        .filter(|&kernels| nnc_cranelift::kernel_family(&CompileOptions { kernels, ..Default::default() }).is_ok())
        .collect()
}

#[test]
fn the_reports_kernel_count_is_the_number_of_kernels_the_backend_runs() {
    for name in ["mlp.onnx", "mlp-deep.onnx"] {
        let model = model(name);
        let step = nnc_pipeline::differentiate(&model, &TrainOptions::default()).unwrap().graph;
        for (what, graph) in [("training step", &step), ("inference", &model)] {
            let optimized = nnc_pipeline::optimize(graph, &OptOptions::default()).unwrap();
            for kernels in families() {
                let backend = CompileOptions { kernels, threads: 1, ..Default::default() };
                let lowered = nnc_pipeline::lower(&optimized, &backend).unwrap();
                assert_eq!(lowered.kernel_count(), optimized.report.after.kernels, "{name} {what} {kernels:?}");
                let compiled = nnc_pipeline::codegen(lowered).unwrap();
                assert_eq!(compiled.kernel_count(), optimized.report.after.kernels, "{name} {what} {kernels:?}");
            }
        }
    }
    // The seed step's ten: two dense layers, the cross-entropy and its column sums,
    // the ReLU gradient and its column sums, and four updates.
    let step = nnc_pipeline::differentiate(&model("mlp.onnx"), &TrainOptions::default()).unwrap().graph;
    assert_eq!(nnc_pipeline::optimize(&step, &OptOptions::default()).unwrap().report.after.kernels, 10);
}
