//! The lowered program as text, reviewed like Cranelift's precise-output filetests:
//! for the seed step (784-256-10, SGD) with its weights stored `[in, out]` and
//! `[out, in]`, at batch 1 and 100, with every kernel family this CPU runs, the text
//! of `nnc compile --train --emit lowered` is a snapshot. A change of tile, packing,
//! copies, epilogue placement, split or buffer layout shows in review.
//!
//! Each family's snapshots are compared only on a CPU that has the family (the
//! portable one everywhere); the text does not depend on the machine otherwise.

mod common;

use nnc_cranelift::{lower, CompileOptions, Kernels};

fn families() -> Vec<(&'static str, Kernels)> {
    [("cranelift", Kernels::Cranelift), ("avx2", Kernels::Avx2), ("avx512", Kernels::Avx512)]
        .into_iter()
        .filter(|&(_, kernels)| nnc_cranelift::kernel_family(&CompileOptions { kernels, ..Default::default() }).is_ok())
        .collect()
}

#[test]
fn the_seed_steps_lowered_programs() {
    for (layout, out_in) in [("in_out", false), ("out_in", true)] {
        let opts = nnc_autodiff::TrainOptions::default();
        let model = common::mlp_in_layout(0, [784, 256, 10], out_in);
        let step = nnc_autodiff::training_graph(&model, &opts).unwrap().graph;
        let optimized = nnc_opt::optimize(&step, &nnc_opt::OptOptions::default()).unwrap();
        for (family, kernels) in families() {
            let backend = CompileOptions { kernels, checked: false, ..Default::default() };
            let lowered = lower(&optimized.graph, optimized.plan.clone(), &backend).unwrap();
            assert_eq!(lowered.kernel_count(), optimized.report.after.kernels);
            for batch in [1, 100] {
                let name = format!("seed_{layout}_{family}_batch_{batch}");
                insta::assert_snapshot!(name, lowered.text(batch));
            }
        }
    }
}
