//! The seed workload's training step (784-256-10, ReLU, cross-entropy, SGD) after
//! optimization: the graph, the report at batch 100 and the step plan.

mod common;

use common::*;
use nnc_autodiff::{Loss, Optimizer};
use nnc_opt::{optimize, Level, OptError, OptOptions};

fn describe(o: &nnc_opt::Optimized) -> String {
    format!("{}\n{}\n{}", nnc_ir::print(&o.graph), o.report.render(100), o.plan.describe(&o.graph, 100))
}

#[test]
fn seed_sgd_step() {
    let o = optimize(&sgd_step(&seed_mlp()), &OptOptions::default()).unwrap();
    assert!((o.plan.layout(100).unwrap().total as u64) < o.plan.naive_bytes(&o.graph).at(100).unwrap());
    assert!(o.report.after.kernels < o.report.before.kernels);
    assert!(o.report.after.bytes_moved.at(100).unwrap() < o.report.before.bytes_moved.at(100).unwrap());
    assert!(o.plan.copied_updates.is_empty(), "every update is written in place");
    insta::assert_snapshot!(describe(&o));
}

#[test]
fn seed_adam_step() {
    let o = optimize(&step(&seed_mlp(), Loss::CrossEntropy, Optimizer::adam(), 0.0), &OptOptions::default()).unwrap();
    assert!((o.plan.layout(100).unwrap().total as u64) < o.plan.naive_bytes(&o.graph).at(100).unwrap());
    assert!(o.plan.copied_updates.is_empty());
    insta::assert_snapshot!(describe(&o));
}

#[test]
fn o0_runs_nothing() {
    let g = sgd_step(&seed_mlp());
    let o = optimize(&g, &OptOptions { level: Level::O0, ..Default::default() }).unwrap();
    assert_eq!(o.graph, g);
    assert!(o.report.passes.is_empty());
    assert_eq!(o.report.before, o.report.after);
}

#[test]
fn chosen_passes_and_dumps() {
    let g = sgd_step(&mlp(&[6, 5, 3], nnc_ir::UnaryOp::Relu, 2));
    let opts = OptOptions::from_flags(false, Some("fuse_dense, dce,fuse_softmax_ce,dce"), Some("dce"));
    let o = optimize(&g, &opts).unwrap();
    let names: Vec<_> = o.report.passes.iter().map(|p| p.name).collect();
    assert_eq!(names, ["fuse_dense", "dce", "fuse_softmax_ce", "dce"]);
    assert_eq!(o.dumps.len(), 2);
    assert_eq!((o.dumps[0].pass, o.dumps[0].run, o.dumps[1].run), ("dce", 1, 2));
    assert!(o.dumps[0].text.contains("fused.dense") && !o.dumps[0].text.contains("fused.softmax_ce"));
    assert_eq!(o.dumps[1].text, nnc_ir::print(&o.graph));
}

#[test]
fn bad_pass_names_are_errors() {
    let g = sgd_step(&mlp(&[6, 5, 3], nnc_ir::UnaryOp::Relu, 2));
    let e = optimize(&g, &OptOptions::from_flags(false, Some("dce,fuse_everything"), None)).unwrap_err();
    assert!(matches!(&e, OptError::UnknownPass { name, .. } if name == "fuse_everything"));
    assert!(e.to_string().contains("the passes are simplify, const_fold"), "{e}");
    let e = optimize(&g, &OptOptions::from_flags(false, Some("dce"), Some("cse"))).unwrap_err();
    assert_eq!(e.to_string(), "--dump-after cse: the pass does not run in this pipeline (dce)");
    let e = optimize(&g, &OptOptions::from_flags(true, None, Some("nope"))).unwrap_err();
    assert!(matches!(e, OptError::UnknownPass { .. }));
}

/// A constant learning rate is a scalar constant times the weight-gradient product,
/// which is also what a Gemm alpha looks like: the update still gets the product.
#[test]
fn constant_learning_rate_still_fuses_the_update() {
    let g = nnc_ir::parse(
        r#"
graph c {
  %x: f32[N,4] = input
  %dy: f32[N,3] = input
  %w: f32[4,3] = param
  %lr: f32[] = const [0.1]
  %g: f32[4,3] = matmul[trans_a] %x, %dy
  %step: f32[4,3] = mul %g, %lr
  %w_new: f32[4,3] = sub %w, %step
  update %w <- %w_new
  return %w_new
}
"#,
    )
    .unwrap();
    let o = optimize(&g, &OptOptions::default()).unwrap();
    let text = nnc_ir::print(&o.graph);
    assert!(text.contains("fused.dense_sgd[trans_a] %x, %dy, %w, %lr"), "{text}");
    assert!(!text.contains("fused.dense["), "{text}");
}
