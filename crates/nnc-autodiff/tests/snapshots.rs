//! The training-step IR of a small MLP, as text. Read these snapshots as the
//! reference for what `training_graph` emits; each was checked by hand.

mod common;

use common::*;
use nnc_autodiff::{training_graph, Loss, Optimizer, TrainOptions};
use nnc_ir::{Graph, UnaryOp};

/// 4-3-2 with ReLU, laid out like nnc's own MLP builder: `fcK.weight: [in, out]`,
/// MatMul + Add, output `logits`.
fn mlp_4_3_2(softmax: bool) -> Graph {
    mlp(&mut rng(0), &[4, 3, 2], &[UnaryOp::Relu], Dense::MatMul, softmax)
}

fn step(model: &Graph, opts: TrainOptions) -> String {
    let tg = training_graph(model, &opts).unwrap();
    let text = nnc_ir::print(&tg.graph);
    // The text form round-trips, so the snapshot is also valid input to `nnc_ir::parse`.
    assert_eq!(nnc_ir::print(&nnc_ir::parse(&text).unwrap()), text);
    let notes: String = tg.notes.iter().map(|n| format!("; note: {n}\n")).collect();
    format!("{notes}{text}")
}

#[test]
fn mlp_sgd() {
    insta::assert_snapshot!(step(&mlp_4_3_2(false), TrainOptions::default()));
}

#[test]
fn mlp_adam() {
    let opts = TrainOptions { optimizer: Optimizer::adam(), ..TrainOptions::default() };
    insta::assert_snapshot!(step(&mlp_4_3_2(false), opts));
}

/// A model ending in softmax (as skl2onnx writes classifiers): the loss goes on the
/// logits, the softmax is dropped; Nesterov momentum with L2 weight decay; the
/// logits are a second output.
#[test]
fn mlp_softmax_nesterov_weight_decay() {
    let opts = TrainOptions {
        optimizer: Optimizer::Momentum { momentum: 0.9, nesterov: true },
        weight_decay: 1e-4,
        output_logits: true,
        ..TrainOptions::default()
    };
    insta::assert_snapshot!(step(&mlp_4_3_2(true), opts));
}

/// MSE regression with AdamW-style decoupled weight decay.
#[test]
fn mlp_mse_adamw() {
    let opts =
        TrainOptions { loss: Loss::Mse, optimizer: Optimizer::adam(), weight_decay: 0.01, ..TrainOptions::default() };
    insta::assert_snapshot!(step(&mlp_4_3_2(false), opts));
}
