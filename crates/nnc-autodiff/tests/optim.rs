//! Optimizer updates on a fixed tiny problem, against values computed by hand.
//!
//! The problem: `y = x·w` with `x = [[1, 2]]`, `w = [[0.5], [-0.25]]`, MSE against
//! the label 1. Then `y = 0`, `loss = 1` and `g = ∂loss/∂w = 2·(y - 1)·xᵀ = [-2, -4]`.

mod common;

use common::*;
use nnc_autodiff::{training_graph, Loss, Optimizer, TrainOptions};
use nnc_ir::{Dim, Graph, Tensor, TensorType};
use std::collections::HashMap;

fn problem() -> Graph {
    let mut g = Graph::new("tiny");
    let x = g.input("input", TensorType::f32(&[Dim::Batch, Dim::Fixed(2)])).unwrap();
    let w = g.param("w", Tensor::from_f32(&[2, 1], vec![0.5, -0.25]).unwrap()).unwrap();
    let y = g.matmul(x, w, false, false).unwrap();
    g.set_outputs(vec![y]);
    g
}

fn base_feeds() -> HashMap<String, Tensor> {
    feeds(vec![
        ("input", Tensor::from_f32(&[1, 2], vec![1.0, 2.0]).unwrap()),
        ("labels", Tensor::from_f32(&[1, 1], vec![1.0]).unwrap()),
        ("lr", scalar(0.1)),
    ])
}

/// Runs one step and returns the loss and the updated leaves by name.
fn step(optimizer: Optimizer, weight_decay: f32, extra: Vec<(&str, Tensor)>) -> (f32, HashMap<String, Vec<f32>>) {
    let opts = TrainOptions { loss: Loss::Mse, optimizer, weight_decay, ..TrainOptions::default() };
    let tg = training_graph(&problem(), &opts).unwrap();
    let mut f = base_feeds();
    f.extend(extra.into_iter().map(|(n, t)| (n.to_string(), t)));
    let out = nnc_interp::run_step(&tg.graph, &f).unwrap();
    let updated = tg
        .graph
        .updates()
        .iter()
        .zip(&out.updates)
        .map(|(&(leaf, _), t)| (tg.graph.name_of(leaf).to_string(), f32s(t)));
    (f32s(&out.outputs[0])[0], updated.collect())
}

fn assert_near(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (g, w) in got.iter().zip(want) {
        assert!((g - w).abs() <= 2e-6, "{what}: got {got:?}, want {want:?}");
    }
}

#[test]
fn sgd_step() {
    let (loss, up) = step(Optimizer::Sgd, 0.0, vec![]);
    assert_eq!(loss, 1.0);
    // w - 0.1·[-2, -4]
    assert_near(&up["w"], &[0.7, 0.15], "w");
    assert_eq!(up.len(), 1, "SGD has no state");
}

#[test]
fn sgd_step_with_l2_weight_decay() {
    // g + 0.1·w = [-1.95, -4.025]; w - 0.1·that
    let (_, up) = step(Optimizer::Sgd, 0.1, vec![]);
    assert_near(&up["w"], &[0.695, 0.1525], "w");
}

#[test]
fn momentum_step_from_nonzero_state() {
    let m = ("w.m", Tensor::from_f32(&[2, 1], vec![1.0, -1.0]).unwrap());
    // m = 0.9·[1, -1] + [-2, -4] = [-1.1, -4.9]; w - 0.1·m
    let (_, up) = step(Optimizer::Momentum { momentum: 0.9, nesterov: false }, 0.0, vec![m.clone()]);
    assert_near(&up["w.m"], &[-1.1, -4.9], "m");
    assert_near(&up["w"], &[0.61, 0.24], "w");
    // Nesterov: w - 0.1·(g + 0.9·m) = w - 0.1·[-2.99, -8.41]
    let (_, up) = step(Optimizer::Momentum { momentum: 0.9, nesterov: true }, 0.0, vec![m]);
    assert_near(&up["w.m"], &[-1.1, -4.9], "m");
    assert_near(&up["w"], &[0.799, 0.591], "w");
}

#[test]
fn momentum_first_step_is_sgd() {
    let (_, up) = step(Optimizer::momentum(), 0.0, vec![]);
    assert_near(&up["w.m"], &[-2.0, -4.0], "m");
    assert_near(&up["w"], &[0.7, 0.15], "w");
}

#[test]
fn two_adam_steps() {
    let adam = Optimizer::Adam { beta1: 0.9, beta2: 0.999, eps: 1e-8 };
    // Step 1 (t = 1): m = 0.1·g = [-0.2, -0.4], v = 0.001·g² = [0.004, 0.016];
    // m̂ = g, v̂ = g², so each weight moves by lr·g/|g| = -0.1.
    let (loss, up) = step(adam, 0.0, vec![("step", Tensor::scalar_i64(1))]);
    assert_eq!(loss, 1.0);
    assert_near(&up["w.m"], &[-0.2, -0.4], "m1");
    assert_near(&up["w.v"], &[0.004, 0.016], "v1");
    assert_near(&up["w"], &[0.6, -0.15], "w1");

    // Step 2 (t = 2) from there: y = 0.6 - 0.3 = 0.3, loss = 0.49, g = [-1.4, -2.8];
    // m = 0.9·m1 + 0.1·g = [-0.32, -0.64], v = 0.999·v1 + 0.001·g² = [0.005956, 0.023824];
    // m̂ = m/0.19, v̂ = v/0.001999, w -= 0.1·m̂/√v̂ = [-0.0975720, -0.0975720].
    let t = |v: &[f32]| Tensor::from_f32(&[2, 1], v.to_vec()).unwrap();
    let feeds2 =
        vec![("w", t(&up["w"])), ("w.m", t(&up["w.m"])), ("w.v", t(&up["w.v"])), ("step", Tensor::scalar_i64(2))];
    let (loss, up) = step(adam, 0.0, feeds2);
    assert!((loss - 0.49).abs() < 1e-6, "loss {loss}");
    assert_near(&up["w.m"], &[-0.32, -0.64], "m2");
    assert_near(&up["w.v"], &[0.005956, 0.023824], "v2");
    assert_near(&up["w"], &[0.697572, -0.052428], "w2");
}

#[test]
fn adamw_decays_the_weights_before_the_adam_step() {
    // w·(1 - lr·λ) - 0.1·sign(g) with λ = 0.5: [0.5·0.95 + 0.1, -0.25·0.95 + 0.1]
    let (_, up) = step(Optimizer::adam(), 0.5, vec![("step", Tensor::scalar_i64(1))]);
    assert_near(&up["w"], &[0.575, -0.1375], "w");
    // The moments see the plain gradient, not the decay.
    assert_near(&up["w.m"], &[-0.2, -0.4], "m");
}

/// A few hundred interpreted steps on a separable toy problem: every optimizer
/// drives the loss down, as a check that the pieces fit together over many steps
/// (updates fed back as the next step's leaves, Adam's step counter counting).
#[test]
fn training_reduces_the_loss() {
    use nnc_ir::UnaryOp;
    let mut r = rng(9);
    let model = mlp(&mut r, &[4, 8, 3], &[UnaryOp::Tanh], Dense::TransB, true);
    let n = 30;
    let x = sample(&mut r, &[n, 4], Dist::Uniform(-1.0, 1.0));
    // The class is the index of the largest of the first three features.
    let xv = f32s(&x);
    let labels: Vec<i64> =
        (0..n).map(|s| (0..3).max_by(|&a, &b| xv[s * 4 + a].total_cmp(&xv[s * 4 + b])).unwrap() as i64).collect();
    for (optimizer, lr) in [(Optimizer::Sgd, 0.5), (Optimizer::momentum(), 0.1), (Optimizer::adam(), 0.02)] {
        let tg = training_graph(&model, &TrainOptions { optimizer, ..TrainOptions::default() }).unwrap();
        let mut f = feeds(vec![
            ("input", x.clone()),
            ("labels", Tensor::from_i64(&[n], labels.clone()).unwrap()),
            ("lr", scalar(lr)),
        ]);
        let mut losses = Vec::new();
        for t in 1..=300 {
            if matches!(optimizer, Optimizer::Adam { .. }) {
                f.insert("step".into(), Tensor::scalar_i64(t));
            }
            let out = nnc_interp::run_step(&tg.graph, &f).unwrap();
            losses.push(f32s(&out.outputs[0])[0]);
            for (&(leaf, _), v) in tg.graph.updates().iter().zip(out.updates) {
                f.insert(tg.graph.name_of(leaf).to_string(), v);
            }
        }
        let (first, last) = (losses[0], losses[losses.len() - 1]);
        assert!(last < 0.5 * first, "{optimizer:?}: loss {first} -> {last}");
    }
}
