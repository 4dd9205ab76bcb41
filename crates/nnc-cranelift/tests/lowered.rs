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

/// A small residual CNN, as `nnc-opt`'s equivalence tests build it: which kernel each
/// convolution and pooling gets (implicit product or direct, along rows), its fused
/// epilogue, and the padded scratch, for the training step and inference.
const SMALL_CNN: &str = "graph cnn {
  %input: f32[N,1,12,12] = input
  %w1: f32[8,1,3,3] = param
  %b1: f32[8] = param
  %c1: f32[N,8,12,12] = conv[kernel=[3,3], pads=[1,1,1,1]] %input, %w1
  %p1: f32[8,1,1] = reshape[shape=[8,1,1]] %b1
  %a1: f32[N,8,12,12] = add %c1, %p1
  %h1: f32[N,8,12,12] = relu %a1
  %m1: f32[N,8,6,6] = max_pool[kernel=[3,3], strides=[2,2], pads=[1,1,1,1]] %h1
  %w2: f32[8,8,3,3] = param
  %b2: f32[8] = param
  %c2: f32[N,8,6,6] = conv[kernel=[3,3], pads=[1,1,1,1]] %m1, %w2
  %p2: f32[8,1,1] = reshape[shape=[8,1,1]] %b2
  %a2: f32[N,8,6,6] = add %c2, %p2
  %s2: f32[N,8,6,6] = add %a2, %m1
  %h2: f32[N,8,6,6] = relu %s2
  %w3: f32[8,1,3,3] = param
  %c3: f32[N,8,6,6] = conv[kernel=[3,3], pads=[1,1,1,1], groups=8] %h2, %w3
  %lo: f32[] = const [0.0]
  %hi: f32[] = const [6.0]
  %l3: f32[N,8,6,6] = max %c3, %lo
  %h3: f32[N,8,6,6] = min %l3, %hi
  %a3: f32[N,8,3,3] = avg_pool[kernel=[2,2], strides=[2,2]] %h3
  %f: f32[N,72] = reshape[shape=[N,72]] %a3
  %wf: f32[72,10] = param
  %bf: f32[10] = param
  %mf: f32[N,10] = matmul %f, %wf
  %logits: f32[N,10] = add %mf, %bf
  return %logits
}
";

#[test]
fn a_cnns_lowered_programs() {
    let model = nnc_ir::parse(SMALL_CNN).unwrap();
    let step = nnc_autodiff::training_graph(&model, &nnc_autodiff::TrainOptions::default()).unwrap().graph;
    for (what, graph) in [("step", step), ("inference", model)] {
        let optimized = nnc_opt::optimize(&graph, &nnc_opt::OptOptions::default()).unwrap();
        for (family, kernels) in families() {
            let backend = CompileOptions { kernels, checked: false, ..Default::default() };
            let lowered = lower(&optimized.graph, optimized.plan.clone(), &backend).unwrap();
            insta::assert_snapshot!(format!("small_cnn_{what}_{family}_batch_4"), lowered.text(4));
        }
    }
}
