//! A 2-layer MLP with softmax cross-entropy, built with the builder, against the
//! same computation written as plain loops.

mod common;
use common::*;
use nnc_ir::{Dim, Graph, ReduceOp, Tensor, TensorType, UnaryOp};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng as SmallRng;

const IN: usize = 6;
const HID: usize = 5;
const OUT: usize = 3;

fn random(rng: &mut SmallRng, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

/// logits = relu(x·W1 + b1)·W2ᵀ + b2 (W2 stored [OUT, HID], PyTorch style);
/// outputs: logits, softmax, mean cross-entropy against one-hot labels.
fn mlp(w1: &[f32], b1: &[f32], w2: &[f32], b2: &[f32]) -> Graph {
    let mut g = Graph::new("mlp");
    let x = g.input("x", TensorType::f32(&[Dim::Batch, Dim::Fixed(IN)])).unwrap();
    let y = g.input("y", TensorType::f32(&[Dim::Batch, Dim::Fixed(OUT)])).unwrap();
    let w1 = g.param("w1", f32s(&[IN, HID], w1)).unwrap();
    let b1 = g.param("b1", f32s(&[HID], b1)).unwrap();
    let w2 = g.param("w2", f32s(&[OUT, HID], w2)).unwrap();
    let b2 = g.param("b2", f32s(&[OUT], b2)).unwrap();
    let h = g.matmul(x, w1, false, false).unwrap();
    let h = g.add(h, b1).unwrap();
    let h = g.relu(h).unwrap();
    let logits = g.matmul(h, w2, false, true).unwrap();
    let logits = g.add(logits, b2).unwrap();
    let probs = g.softmax(logits, 1).unwrap();
    let logp = g.log_softmax(logits, 1).unwrap();
    let picked = g.mul(y, logp).unwrap();
    let per_row = g.reduce(ReduceOp::Sum, picked, &[1], false).unwrap();
    let per_row = g.unary(UnaryOp::Neg, per_row).unwrap();
    let loss = g.reduce(ReduceOp::Mean, per_row, &[0], false).unwrap();
    g.set_outputs(vec![logits, probs, loss]);
    g
}

#[test]
fn mlp_matches_hand_written_loops() {
    let mut rng = SmallRng::seed_from_u64(42);
    let (w1, b1, w2, b2) =
        (random(&mut rng, IN * HID), random(&mut rng, HID), random(&mut rng, OUT * HID), random(&mut rng, OUT));
    let g = mlp(&w1, &b1, &w2, &b2);

    for batch in [1, 7] {
        let x = random(&mut rng, batch * IN);
        let labels: Vec<usize> = (0..batch).map(|_| rng.random_range(0..OUT)).collect();
        let mut y = vec![0.0f32; batch * OUT];
        for (r, &l) in labels.iter().enumerate() {
            y[r * OUT + l] = 1.0;
        }

        // The same network as loops, in f64.
        let mut logits = vec![0.0f64; batch * OUT];
        let mut probs = vec![0.0f64; batch * OUT];
        let mut loss = 0.0f64;
        for r in 0..batch {
            let h: Vec<f64> = (0..HID)
                .map(|j| {
                    let s: f64 = (0..IN).map(|i| x[r * IN + i] as f64 * w1[i * HID + j] as f64).sum();
                    (s + b1[j] as f64).max(0.0)
                })
                .collect();
            for o in 0..OUT {
                let s: f64 = (0..HID).map(|j| h[j] * w2[o * HID + j] as f64).sum();
                logits[r * OUT + o] = s + b2[o] as f64;
            }
            let row = &logits[r * OUT..][..OUT];
            let z: f64 = row.iter().map(|v| v.exp()).sum();
            for o in 0..OUT {
                probs[r * OUT + o] = row[o].exp() / z;
            }
            loss -= (row[labels[r]].exp() / z).ln();
        }
        loss /= batch as f64;

        let fed = feeds(&[("x", f32s(&[batch, IN], &x)), ("y", f32s(&[batch, OUT], &y))]);
        let outs = nnc_interp::run(&g, &fed).unwrap();
        let f = |v: &[f64]| v.iter().map(|&d| d as f32).collect::<Vec<_>>();
        assert_close(&outs[0], &[batch, OUT], &f(&logits), 1e-5);
        assert_close(&outs[1], &[batch, OUT], &f(&probs), 1e-5);
        assert_close(&outs[2], &[], &[loss as f32], 1e-5);
        assert!(loss > 0.1, "a non-trivial loss: {loss}");
    }
}

#[test]
fn fed_parameter_overrides_its_initial_value() {
    let g = mlp(&[0.0; IN * HID], &[0.0; HID], &[0.0; OUT * HID], &[1.0, 2.0, 3.0]);
    let x = f32s(&[2, IN], &[0.5; 2 * IN]);
    let y = f32s(&[2, OUT], &[1.0, 0.0, 0.0, 0.0, 1.0, 0.0]);
    // All weights zero: logits are the bias.
    let outs = nnc_interp::run(&g, &feeds(&[("x", x.clone()), ("y", y.clone())])).unwrap();
    assert_close(&outs[0], &[2, OUT], &[1.0, 2.0, 3.0, 1.0, 2.0, 3.0], 0.0);
    let b2: Tensor = f32s(&[OUT], &[-1.0, 0.0, 1.0]);
    let outs = nnc_interp::run(&g, &feeds(&[("x", x), ("y", y), ("b2", b2)])).unwrap();
    assert_close(&outs[0], &[2, OUT], &[-1.0, 0.0, 1.0, -1.0, 0.0, 1.0], 0.0);
}
