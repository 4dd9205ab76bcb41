//! BatchNormalization imported for inference and for training: with
//! `ImportOptions::training`, an inference-form node whose running statistics are
//! initializers normalizes by the batch's statistics and declares the running
//! statistics' in-place update with its momentum (ONNX's training-mode rule); without
//! it, the file's semantics. Checked against the formulas computed here on the
//! interpreter's results.

mod common;

use common::*;
use nnc_ir::{Op, Tensor};
use nnc_onnx::proto::GraphProto;
use nnc_onnx::{import_bytes_with, ImportOptions};
use std::collections::HashMap;

const C: usize = 3;
const HW: usize = 4;
const MOMENTUM: f32 = 0.8;
const EPS: f32 = 1e-3;

fn bn_graph() -> GraphProto {
    let stats = [
        raw_f32("scale", &[C as i64], &[1.5, 0.5, -1.0]),
        raw_f32("b", &[C as i64], &[0.1, -0.2, 0.3]),
        raw_f32("mean", &[C as i64], &[0.5, -1.0, 2.0]),
        raw_f32("var", &[C as i64], &[2.0, 0.25, 1.0]),
    ];
    let attrs = vec![attr_float("momentum", MOMENTUM), attr_float("epsilon", EPS)];
    GraphProto {
        name: "bn".into(),
        input: vec![f32_input("x", &[D::P("N"), D::V(C as i64), D::V(2), D::V(2)])],
        output: vec![f32_input("y", &[D::P("N"), D::V(C as i64), D::V(2), D::V(2)])],
        node: vec![node("BatchNormalization", "bn", &["x", "scale", "b", "mean", "var"], &["y"], attrs)],
        initializer: stats.to_vec(),
        ..Default::default()
    }
}

fn leaf(g: &nnc_ir::Graph, name: &str) -> Vec<f32> {
    match &g.value(g.find(name).unwrap()).op {
        Op::Param { init: Some(t) } | Op::State { init: Some(t) } => t.to_f32_vec().unwrap(),
        other => panic!("{name} is {other:?}"),
    }
}

#[test]
fn batch_norm_for_training_uses_batch_statistics_and_updates_the_running_ones() {
    let n = 5;
    let x = noise(n * C * HW, 3, 2.0);
    let feeds = HashMap::from([("x".to_string(), Tensor::from_f32(&[n, C, 2, 2], x.clone()).unwrap())]);
    // Per channel: the batch's mean and population variance.
    let at = |i: usize, c: usize, p: usize| x[(i * C + c) * HW + p] as f64;
    let count = (n * HW) as f64;
    let mean: Vec<f64> = (0..C)
        .map(|c| (0..n).flat_map(|i| (0..HW).map(move |p| (i, p))).map(|(i, p)| at(i, c, p)).sum::<f64>() / count)
        .collect();
    let var: Vec<f64> = (0..C)
        .map(|c| {
            (0..n).flat_map(|i| (0..HW).map(move |p| (i, p))).map(|(i, p)| (at(i, c, p) - mean[c]).powi(2)).sum::<f64>()
                / count
        })
        .collect();
    for opset in [9, 15] {
        let bytes = bytes(&model(opset, bn_graph()));
        let infer = import_bytes_with(&bytes, None, &ImportOptions::default()).unwrap();
        assert!(infer.updates().is_empty(), "opset {opset}: inference declares no updates");
        let train = import_bytes_with(&bytes, None, &ImportOptions { training: true, ..Default::default() }).unwrap();
        let names: Vec<&str> = train.updates().iter().map(|&(l, _)| train.name_of(l)).collect();
        assert_eq!(names, ["mean", "var"], "opset {opset}");

        let (scale, b, rm, rv) = (leaf(&infer, "scale"), leaf(&infer, "b"), leaf(&infer, "mean"), leaf(&infer, "var"));
        let step = nnc_interp::run_step(&train, &feeds).unwrap();
        let y = step.outputs[0].to_f32_vec().unwrap();
        let y_inf = nnc_interp::run(&infer, &feeds).unwrap()[0].to_f32_vec().unwrap();
        for i in 0..n {
            for c in 0..C {
                for p in 0..HW {
                    let k = (i * C + c) * HW + p;
                    let want = (at(i, c, p) - mean[c]) / (var[c] + EPS as f64).sqrt() * scale[c] as f64 + b[c] as f64;
                    assert!((y[k] as f64 - want).abs() < 1e-5, "opset {opset}: training y[{k}] {} vs {want}", y[k]);
                    let want = (at(i, c, p) - rm[c] as f64) / (rv[c] as f64 + EPS as f64).sqrt() * scale[c] as f64
                        + b[c] as f64;
                    assert!((y_inf[k] as f64 - want).abs() < 1e-5, "opset {opset}: inference y[{k}]");
                }
            }
        }
        let (new_mean, new_var) = (step.updates[0].to_f32_vec().unwrap(), step.updates[1].to_f32_vec().unwrap());
        for c in 0..C {
            let m = rm[c] as f64 * MOMENTUM as f64 + mean[c] * (1.0 - MOMENTUM as f64);
            let v = rv[c] as f64 * MOMENTUM as f64 + var[c] * (1.0 - MOMENTUM as f64);
            assert!((new_mean[c] as f64 - m).abs() < 1e-5, "opset {opset}: running mean {c}");
            assert!((new_var[c] as f64 - v).abs() < 1e-5, "opset {opset}: running variance {c}");
        }
    }
}

/// Statistics fed at run time (graph inputs, not initializers) are not state: the
/// node keeps the file's inference semantics even when imported for training.
#[test]
fn fed_statistics_stay_inference() {
    let mut g = bn_graph();
    let (mean, var) = (g.initializer.remove(2), g.initializer.remove(2));
    assert_eq!((mean.name.as_str(), var.name.as_str()), ("mean", "var"));
    g.input.push(f32_input("mean", &[D::V(C as i64)]));
    g.input.push(f32_input("var", &[D::V(C as i64)]));
    let train = import_bytes_with(&bytes(&model(15, g)), None, &ImportOptions { training: true, ..Default::default() });
    assert!(train.unwrap().updates().is_empty());
}
