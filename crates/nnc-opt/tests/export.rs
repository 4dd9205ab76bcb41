//! `nnc export` after optimization still writes standard ONNX: fused ops are written
//! as the primitives they stand for, and the file imports back into a graph that
//! computes the same step.

mod common;

use common::*;
use nnc_autodiff::Loss;
use nnc_ir::UnaryOp;
use nnc_onnx::{export_model, import_bytes, to_bytes, ExportOptions};
use nnc_opt::{optimize, OptOptions};

#[test]
fn optimized_steps_export_as_standard_onnx() {
    for (name, opt, wd) in optimizers() {
        let g = step(&mlp(&[6, 5, 3], UnaryOp::Relu, 8), Loss::CrossEntropy, opt, wd);
        let o = optimize(&g, &OptOptions::default()).unwrap().graph;
        assert!(nnc_ir::fused::has_fused(&o));
        let model = export_model(&o, &ExportOptions::default()).unwrap();
        let graph = model.graph.as_ref().unwrap();
        assert!(graph.node.iter().all(|n| n.domain.is_empty() && !n.op_type.contains("fused")), "{name}");
        let back = import_bytes(&to_bytes(&o, &ExportOptions::default()).unwrap(), None).unwrap();
        for batch in [1, 4] {
            let feeds = random_feeds(&g, batch, 3);
            assert_same(&g, &back, &feeds, name);
        }
    }
}
