//! Whole graphs: the gradients of real model shapes with a loss attached, checked
//! against central differences, and the seed-style 2-layer ReLU MLP checked against
//! closed-form gradients written out with plain loops.
//!
//! Tolerance of the finite-difference checks: the losses here are O(1) and each
//! parameter moves the loss by O(0.1) per unit, so with h = 1e-3 the f32 rounding of
//! the loss (~1e-7·|L| per evaluation, several evaluations' worth of summation)
//! contributes ~1e-4 to a difference quotient and the truncation error ~h² is
//! negligible. `|autodiff - numeric| <= 5e-4 + 2e-2·|value|` leaves margin for that
//! and still fails any wrong rule or missing accumulation, which is off by O(value).
//! ReLU and leaky ReLU have a kink at 0: the data are drawn so that no pre-activation
//! lies within 10·h of it, so the perturbations never cross a kink.

mod common;

use common::*;
use nnc_autodiff::{training_graph, with_loss, Loss, TrainOptions};
use nnc_ir::{Graph, Op, Tensor, UnaryOp, ValueId};
use rand_chacha::ChaCha8Rng;
use std::collections::HashMap;

const H: f32 = 1e-3;
const TOL: Tol = Tol { atol: 5e-4, rtol: 2e-2 };
const BATCH: usize = 6;

/// The smallest |input| of any relu or leaky relu in the graph on these feeds.
fn kink_margin(graph: &Graph, feeds: &HashMap<String, Tensor>) -> f32 {
    let all = nnc_interp::run_all(graph, feeds).unwrap();
    graph
        .values()
        .iter()
        .filter(|v| matches!(v.op, Op::Unary(UnaryOp::Relu | UnaryOp::LeakyRelu { .. })))
        .flat_map(|v| f32s(&all[v.args[0].index()]))
        .fold(f32::INFINITY, |m, x| m.min(x.abs()))
}

/// Draws inputs (and labels) until no kink lies within 10·h of a pre-activation.
fn well_conditioned_feeds(
    rng: &mut ChaCha8Rng,
    graph: &Graph,
    loss: Loss,
    features: usize,
    classes: usize,
) -> HashMap<String, Tensor> {
    for _ in 0..100 {
        let input = sample(rng, &[BATCH, features], Dist::Uniform(-1.0, 1.0));
        let labels = match loss {
            Loss::CrossEntropy => common::labels(rng, BATCH, classes),
            Loss::Mse => sample(rng, &[BATCH, classes], Dist::Uniform(-1.0, 1.0)),
        };
        let f = feeds(vec![("input", input), ("labels", labels)]);
        if kink_margin(graph, &f) > 10.0 * H {
            return f;
        }
    }
    panic!("no well-conditioned batch found in 100 draws");
}

/// Attaches `loss` and checks d loss / d every parameter by central differences.
fn check_model(seed: u64, model: &Graph, loss: Loss) {
    let lg = with_loss(model, &TrainOptions { loss, ..TrainOptions::default() }).unwrap();
    let features = model.ty(model.find("input").unwrap()).shape.resolve(1)[1];
    let classes = lg.graph.ty(lg.prediction).shape.resolve(1)[1];
    let f = well_conditioned_feeds(&mut rng(1000 + seed), &lg.graph, loss, features, classes);
    let params: Vec<ValueId> = lg.graph.params();
    fd_check(&lg.graph, lg.loss, &params, &f, H, TOL);
}

#[test]
fn mlp_20_16_5_relu_cross_entropy() {
    for seed in 0..2 {
        let model = mlp(&mut rng(seed), &[20, 16, 5], &[UnaryOp::Relu], Dense::MatMul, false);
        check_model(seed, &model, Loss::CrossEntropy);
    }
}

#[test]
fn deeper_mlp_with_smooth_and_leaky_activations() {
    let acts = [
        UnaryOp::Tanh,
        UnaryOp::Sigmoid,
        UnaryOp::Gelu { approximate: false },
        UnaryOp::LeakyRelu { alpha: 0.1 },
        UnaryOp::Gelu { approximate: true },
    ];
    for seed in 0..2 {
        let model = mlp(&mut rng(seed), &[8, 10, 9, 8, 7, 6, 4], &acts, Dense::MatMul, false);
        check_model(seed, &model, Loss::CrossEntropy);
    }
}

#[test]
fn pytorch_style_transposed_weights() {
    for seed in 0..2 {
        let model = mlp(&mut rng(seed), &[12, 10, 3], &[UnaryOp::Relu], Dense::TransB, false);
        check_model(seed, &model, Loss::CrossEntropy);
    }
}

#[test]
fn gemm_style_with_alpha_and_beta() {
    for seed in 0..2 {
        let model = mlp(&mut rng(seed), &[12, 10, 3], &[UnaryOp::Tanh], Dense::Gemm { alpha: 0.5, beta: 2.0 }, false);
        check_model(seed, &model, Loss::CrossEntropy);
    }
}

#[test]
fn softmax_ended_model_trains_its_logits() {
    let model = mlp(&mut rng(3), &[10, 8, 4], &[UnaryOp::Sigmoid], Dense::TransB, true);
    check_model(3, &model, Loss::CrossEntropy);
}

#[test]
fn mse_regression() {
    for seed in 0..2 {
        let model = mlp(&mut rng(seed), &[6, 8, 3], &[UnaryOp::Tanh, UnaryOp::Relu], Dense::MatMul, false);
        check_model(seed, &model, Loss::Mse);
    }
}

/// `input: [N, I]`, `fc1.weight: [I, H]`, `fc1.bias: [H]`, ReLU, `fc2.weight: [H, C]`,
/// `fc2.bias: [C]`, softmax cross-entropy averaged over the batch — the seed model's
/// shape. The gradients, written out by hand in f64:
///   p = softmax(z2),  dz2 = (p - onehot(labels)) / N
///   dW2 = hᵀ·dz2,  db2 = Σ_n dz2,  dh = dz2·W2ᵀ
///   dz1 = dh ⊙ [z1 > 0],  dW1 = xᵀ·dz1,  db1 = Σ_n dz1
#[test]
fn seed_style_mlp_matches_closed_form_gradients() {
    let (n, i_dim, h_dim, c_dim) = (7, 20, 16, 5);
    let mut r = rng(42);
    let model = mlp(&mut r, &[i_dim, h_dim, c_dim], &[UnaryOp::Relu], Dense::MatMul, false);
    let x = sample(&mut r, &[n, i_dim], Dist::Uniform(-1.0, 1.0));
    let labels = common::labels(&mut r, n, c_dim);
    let tg = training_graph(&model, &TrainOptions::default()).unwrap();

    // Autodiff: run the training step's gradient values.
    let mut g = tg.graph.clone();
    g.set_outputs(tg.gradients.iter().map(|&(_, grad)| grad).collect());
    let fed = feeds(vec![("input", x.clone()), ("labels", labels.clone()), ("lr", scalar(0.1))]);
    let got = nnc_interp::run(&g, &fed).unwrap();
    let names: Vec<&str> = tg.gradients.iter().map(|&(p, _)| tg.graph.name_of(p)).collect();
    assert_eq!(names, ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]);

    // Closed form, plain loops in f64.
    let param = |name: &str| -> Vec<f64> {
        match &model.value(model.find(name).unwrap()).op {
            Op::Param { init: Some(t) } => f32s(t).iter().map(|&v| v as f64).collect(),
            _ => unreachable!(),
        }
    };
    let (w1, b1, w2, b2) = (param("fc1.weight"), param("fc1.bias"), param("fc2.weight"), param("fc2.bias"));
    let x: Vec<f64> = f32s(&x).iter().map(|&v| v as f64).collect();
    let y: Vec<usize> = labels.to_i64_vec().unwrap().iter().map(|&l| l as usize).collect();
    let mut z1 = vec![0.0; n * h_dim];
    let mut h = vec![0.0; n * h_dim];
    for s in 0..n {
        for j in 0..h_dim {
            let mut acc = b1[j];
            for k in 0..i_dim {
                acc += x[s * i_dim + k] * w1[k * h_dim + j];
            }
            z1[s * h_dim + j] = acc;
            h[s * h_dim + j] = acc.max(0.0);
        }
    }
    let mut dz2 = vec![0.0; n * c_dim];
    let mut loss = 0.0;
    for s in 0..n {
        let z2: Vec<f64> =
            (0..c_dim).map(|c| b2[c] + (0..h_dim).map(|j| h[s * h_dim + j] * w2[j * c_dim + c]).sum::<f64>()).collect();
        let max = z2.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let sum: f64 = z2.iter().map(|z| (z - max).exp()).sum();
        loss -= (z2[y[s]] - max - sum.ln()) / n as f64;
        for c in 0..c_dim {
            let p = (z2[c] - max).exp() / sum;
            dz2[s * c_dim + c] = (p - if c == y[s] { 1.0 } else { 0.0 }) / n as f64;
        }
    }
    let mut dw2 = vec![0.0; h_dim * c_dim];
    let mut db2 = vec![0.0; c_dim];
    let mut dz1 = vec![0.0; n * h_dim];
    for s in 0..n {
        for c in 0..c_dim {
            db2[c] += dz2[s * c_dim + c];
            for j in 0..h_dim {
                dw2[j * c_dim + c] += h[s * h_dim + j] * dz2[s * c_dim + c];
            }
        }
        for j in 0..h_dim {
            let dh: f64 = (0..c_dim).map(|c| dz2[s * c_dim + c] * w2[j * c_dim + c]).sum();
            dz1[s * h_dim + j] = if z1[s * h_dim + j] > 0.0 { dh } else { 0.0 };
        }
    }
    let mut dw1 = vec![0.0; i_dim * h_dim];
    let mut db1 = vec![0.0; h_dim];
    for s in 0..n {
        for j in 0..h_dim {
            db1[j] += dz1[s * h_dim + j];
            for k in 0..i_dim {
                dw1[k * h_dim + j] += x[s * i_dim + k] * dz1[s * h_dim + j];
            }
        }
    }

    // f32 against f64: agreement to a few f32 ulps of the gradients' scale.
    for (name, (got, want)) in names.iter().zip(got.iter().zip([dw1, db1, dw2, db2])) {
        let got = f32s(got);
        assert_eq!(got.len(), want.len(), "{name}");
        for (i, (&a, &b)) in got.iter().zip(&want).enumerate() {
            assert!((a as f64 - b).abs() <= 1e-6 + 1e-4 * b.abs(), "{name}[{i}]: autodiff {a}, closed form {b}");
        }
    }

    // And the SGD step applies exactly those gradients: p_new = p - lr·g.
    let step = nnc_interp::run_step(&tg.graph, &fed).unwrap();
    assert!((f32s(&step.outputs[0])[0] as f64 - loss).abs() < 1e-5, "loss");
    for (k, &(p, _)) in tg.gradients.iter().enumerate() {
        let before = param(tg.graph.name_of(p));
        let grad = f32s(&got[k]);
        let after = f32s(&step.updates[k]);
        for i in 0..before.len() {
            let want = before[i] as f32 - 0.1 * grad[i];
            assert!((after[i] - want).abs() <= 1e-6, "{}[{i}]", tg.graph.name_of(p));
        }
    }
}
