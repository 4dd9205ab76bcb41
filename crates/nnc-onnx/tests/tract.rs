//! Exported models run in tract (an independent ONNX runtime) and give the same
//! numbers as nnc's interpreter on the original graph.

mod common;
mod oracle;

use common::{graphs, noise};
use nnc_ir::{Graph, Op, Tensor};
use nnc_onnx::{to_bytes, ExportOptions};
use oracle::{assert_close, flat, run_tract};
use std::collections::HashMap;

const BATCH: usize = 3;

/// Deterministic feeds for every value the caller must provide.
fn feeds(g: &Graph) -> HashMap<String, Tensor> {
    let mut out = HashMap::new();
    for (k, v) in g.values().iter().enumerate() {
        if !matches!(v.op, Op::Input | Op::Param { init: None } | Op::State { init: None }) {
            continue;
        }
        let shape = v.ty.shape.resolve(BATCH);
        let n: usize = shape.iter().product();
        let t = match v.ty.dtype {
            nnc_ir::DType::F32 => Tensor::from_f32(&shape, noise(n, 100 + k as u64, 1.5)).unwrap(),
            nnc_ir::DType::I64 => Tensor::from_i64(&shape, (0..n as i64).map(|i| (i * 5 + 1) % 6).collect()).unwrap(),
            other => panic!("no test feed for {other}"),
        };
        out.insert(v.name.clone(), t);
    }
    out
}

/// Exports `g` at `opset`, runs it in tract and in the interpreter, compares.
fn check(g: &Graph, opset: i64) {
    let bytes = to_bytes(g, &ExportOptions { opset, ..ExportOptions::default() }).unwrap();
    let feeds = feeds(g);
    let onnx_inputs: Vec<Tensor> = g
        .values()
        .iter()
        .filter(|v| matches!(v.op, Op::Input | Op::Param { init: None } | Op::State { init: None }))
        .map(|v| feeds[&v.name].clone())
        .collect();
    let ours = nnc_interp::run_step(g, &feeds).unwrap_or_else(|e| panic!("interpreter: {e}"));
    let expected: Vec<_> = ours.outputs.iter().chain(ours.updates.iter()).map(flat).collect();
    let theirs = run_tract(&bytes, &onnx_inputs).unwrap_or_else(|e| panic!("tract at opset {opset}: {e:?}"));
    assert_close(&theirs, &expected, &format!("{} at opset {opset}", g.name));
}

#[test]
fn mlp_matches_interpreter() {
    for opset in [11, 13, 17, 20] {
        check(&graphs::mlp(), opset);
    }
}

#[test]
fn every_op_matches_interpreter() {
    for opset in [11, 12, 13, 17, 18, 20, 25] {
        check(&graphs::all_ops(false), opset);
    }
}

#[test]
fn training_step_matches_interpreter() {
    for opset in [13, 17] {
        check(&graphs::step(), opset);
    }
}

#[test]
fn interleaved_graph_matches_interpreter() {
    check(&graphs::interleaved(), 17);
}

#[test]
fn convolutions_and_pooling_match_interpreter() {
    for opset in [11, 13, 17, 20] {
        check(&graphs::cnn(), opset);
    }
}
