//! Training steps produced by `nnc-autodiff` (every optimizer, several activations)
//! compile and agree with the interpreter step after step, both as differentiated and
//! after `nnc-opt` (fused dense, gradient-mask, cross-entropy and update kernels).

mod common;
use common::*;
use nnc_autodiff::{training_graph, Loss, Optimizer, TrainOptions, LABELS, LR, STEP};
use nnc_cranelift::Compiled;
use nnc_ir::{DType, Graph, Tensor, UnaryOp, ValueId};
use std::collections::HashMap;

/// A 12-16-16-5 MLP with the given hidden activations (PyTorch-style weights).
fn model(acts: [UnaryOp; 2], seed: u64) -> Graph {
    let mut r = rng(seed);
    let scaled = |t: Tensor, s: f32| Tensor::F32(t.as_f32().unwrap().mapv(|v| v * s));
    let mut g = Graph::new("mlp");
    let mut h = g.input("x", batched(DType::F32, &[12])).unwrap();
    let mut width = 12;
    for (i, out) in [16usize, 16, 5].into_iter().enumerate() {
        let w =
            g.param(&format!("w{i}"), scaled(random_f32(&mut r, &[out, width]), 1.0 / (width as f32).sqrt())).unwrap();
        let b = g.param(&format!("b{i}"), scaled(random_f32(&mut r, &[out]), 0.1)).unwrap();
        let y = g.matmul(h, w, false, true).unwrap();
        h = g.add(y, b).unwrap();
        if i < 2 {
            h = g.unary(acts[i], h).unwrap();
        }
        width = out;
    }
    g.set_outputs(vec![h]);
    g
}

/// The graph after nnc-opt's default pipeline; it must have fused ops, or the fused
/// kernels would go untested.
fn optimized(g: &Graph) -> Graph {
    let opt = nnc_opt::optimize(g, &nnc_opt::OptOptions::from_flags(false, None, None)).unwrap().graph;
    assert!(nnc_ir::fused::has_fused(&opt), "{}: nothing was fused", g.name);
    opt
}

/// Runs `steps` steps of `g` on the interpreter and of `compiled` (from `g` or from
/// its optimized form) on the JIT, and compares outputs and parameters.
fn check_training(g: &Graph, steps: usize, adam: bool, mse: bool) {
    check_compiled_training(g, jit(g), steps, adam, mse);
    check_compiled_training(g, jit(&optimized(g)), steps, adam, mse);
}

fn check_compiled_training(g: &Graph, mut c: Compiled, steps: usize, adam: bool, mse: bool) {
    let leaves: Vec<ValueId> = g.params().into_iter().chain(g.states()).collect();
    let mut state: HashMap<String, Tensor> =
        leaves.iter().map(|&l| (g.name_of(l).to_string(), c.param(g.name_of(l)).unwrap())).collect();
    let mut r = rng(11);
    for step in 0..steps {
        let batch = if step % 3 == 2 { 5 } else { 16 };
        let labels = if mse { random_f32(&mut r, &[batch, 5]) } else { random_i64(&mut r, &[batch], 0, 5) };
        let mut f = feeds(&[("x", random_f32(&mut r, &[batch, 12])), (LABELS, labels), (LR, Tensor::scalar_f32(0.05))]);
        if adam {
            f.insert(STEP.into(), Tensor::scalar_i64(step as i64 + 1));
        }
        let mut fi = f.clone();
        fi.extend(state.clone());
        let want = nnc_interp::run_step(g, &fi).unwrap();
        let got = c.run(&f).unwrap_or_else(|e| panic!("{}: {e}", g.name));
        for (i, (a, b)) in got.iter().zip(&want.outputs).enumerate() {
            assert_close(a, b, 1e-5, &format!("{} step {step} output {i}", g.name));
        }
        for (&(leaf, _), new) in g.updates().iter().zip(want.updates) {
            state.insert(g.name_of(leaf).to_string(), new);
        }
    }
    for (name, want) in &state {
        assert_close(&c.param(name).unwrap(), want, 1e-5, &format!("{} {name}", g.name));
    }
}

#[test]
fn every_optimizer_and_activation() {
    let optimizers = [
        Optimizer::Sgd,
        Optimizer::Momentum { momentum: 0.9, nesterov: false },
        Optimizer::Momentum { momentum: 0.9, nesterov: true },
        Optimizer::adam(),
    ];
    let activations = [
        [UnaryOp::Relu, UnaryOp::Relu],
        [UnaryOp::Tanh, UnaryOp::Sigmoid],
        [UnaryOp::Gelu { approximate: false }, UnaryOp::LeakyRelu { alpha: 0.01 }],
        [UnaryOp::Gelu { approximate: true }, UnaryOp::Relu],
    ];
    for (i, acts) in activations.into_iter().enumerate() {
        for optimizer in optimizers {
            for (loss, weight_decay) in [(Loss::CrossEntropy, 0.0), (Loss::Mse, 0.01)] {
                let opts =
                    TrainOptions { loss, optimizer, weight_decay, output_logits: true, ..TrainOptions::default() };
                let train = training_graph(&model(acts, i as u64), &opts).unwrap();
                let adam = matches!(optimizer, Optimizer::Adam { .. });
                check_training(&train.graph, 6, adam, loss == Loss::Mse);
            }
        }
    }
}

#[test]
fn seed_mlp_training_step_from_autodiff() {
    let mut r = rng(3);
    let scaled = |t: Tensor, s: f32| Tensor::F32(t.as_f32().unwrap().mapv(|v| v * s));
    let mut g = Graph::new("seed");
    let x = g.input("x", batched(DType::F32, &[784])).unwrap();
    let w1 = g.param("fc1.weight", scaled(random_f32(&mut r, &[256, 784]), 1.0 / 28.0)).unwrap();
    let b1 = g.param("fc1.bias", scaled(random_f32(&mut r, &[256]), 0.03)).unwrap();
    let w2 = g.param("fc2.weight", scaled(random_f32(&mut r, &[10, 256]), 1.0 / 16.0)).unwrap();
    let b2 = g.param("fc2.bias", scaled(random_f32(&mut r, &[10]), 0.06)).unwrap();
    let h = g.matmul(x, w1, false, true).unwrap();
    let h = g.add(h, b1).unwrap();
    let h = g.relu(h).unwrap();
    let y = g.matmul(h, w2, false, true).unwrap();
    let y = g.add(y, b2).unwrap();
    g.set_outputs(vec![y]);
    let train = training_graph(&g, &TrainOptions::default()).unwrap();
    let g = train.graph;
    // 50 consecutive steps of the fused step, the batch size cycling through 1, 7,
    // 100 and 257 (remainders of every tile), against the unfused graph interpreted.
    let mut c = jit(&optimized(&g));
    let names: Vec<String> = g.params().iter().map(|&p| g.name_of(p).to_string()).collect();
    let mut state: HashMap<String, Tensor> = names.iter().map(|n| (n.clone(), c.param(n).unwrap())).collect();
    for step in 0..50 {
        let batch = [100, 1, 7, 257, 100][step % 5];
        let f = feeds(&[
            ("x", random_f32(&mut r, &[batch, 784])),
            (LABELS, random_i64(&mut r, &[batch], 0, 10)),
            (LR, Tensor::scalar_f32(0.01)),
        ]);
        let mut fi = f.clone();
        fi.extend(state.clone());
        let want = nnc_interp::run_step(&g, &fi).unwrap();
        let got = c.run(&f).unwrap();
        assert_close(&got[0], &want.outputs[0], 1e-5, &format!("loss at step {step}"));
        for (&(leaf, _), new) in g.updates().iter().zip(want.updates) {
            state.insert(g.name_of(leaf).to_string(), new);
        }
    }
    for n in &names {
        assert_close(&c.param(n).unwrap(), &state[n], 1e-5, n);
    }
}
