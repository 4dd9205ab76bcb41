//! The seed workload: a 784-256-10 MLP, forward at several batch sizes, and a
//! hand-built SGD training step run for 50 steps against the interpreter.

mod common;
use common::*;
use nnc_cranelift::{compile, CompileOptions};
use nnc_ir::{DType, Dim, Graph, Op, ReduceOp, Shape, Tensor, TensorType, UnaryOp, ValueId};
use std::collections::HashMap;

const IN: usize = 784;
const HID: usize = 256;
const OUT: usize = 10;

struct Mlp {
    g: Graph,
    x: ValueId,
    labels: ValueId,
    w1: ValueId,
    b1: ValueId,
    w2: ValueId,
    b2: ValueId,
    h1: ValueId,
    a1: ValueId,
    logits: ValueId,
    logp: ValueId,
    onehot: ValueId,
    loss: ValueId,
}

/// logits = relu(x·W1ᵀ + b1)·W2ᵀ + b2 with PyTorch-style weights `[out, in]`, and
/// the mean cross-entropy against integer labels.
fn mlp(seed: u64) -> Mlp {
    let mut r = rng(seed);
    let scale = |t: Tensor, s: f32| match t {
        Tensor::F32(a) => Tensor::F32(a.mapv(|v| v * s)),
        t => t,
    };
    let mut g = Graph::new("mlp");
    let x = g.input("x", batched(DType::F32, &[IN])).unwrap();
    let labels = g.input("labels", TensorType::new(DType::I64, Shape(vec![Dim::Batch]))).unwrap();
    let w1 = g.param("w1", scale(random_f32(&mut r, &[HID, IN]), 0.05)).unwrap();
    let b1 = g.param("b1", scale(random_f32(&mut r, &[HID]), 0.1)).unwrap();
    let w2 = g.param("w2", scale(random_f32(&mut r, &[OUT, HID]), 0.1)).unwrap();
    let b2 = g.param("b2", scale(random_f32(&mut r, &[OUT]), 0.1)).unwrap();
    let h = g.matmul(x, w1, false, true).unwrap();
    let h1 = g.add(h, b1).unwrap();
    let a1 = g.relu(h1).unwrap();
    let l = g.matmul(a1, w2, false, true).unwrap();
    let logits = g.add(l, b2).unwrap();
    let logp = g.log_softmax(logits, 1).unwrap();
    let onehot = g.op(Op::OneHot { depth: OUT }, &[labels]).unwrap();
    let picked = g.mul(onehot, logp).unwrap();
    let per_row = g.reduce(ReduceOp::Sum, picked, &[1], false).unwrap();
    let mean = g.reduce(ReduceOp::Mean, per_row, &[0], false).unwrap();
    let loss = g.unary(UnaryOp::Neg, mean).unwrap();
    Mlp { g, x, labels, w1, b1, w2, b2, h1, a1, logits, logp, onehot, loss }
}

/// The MLP plus its hand-written backward pass and an SGD update of every parameter.
fn training_step(seed: u64) -> Graph {
    let Mlp { mut g, x, w1, b1, w2, b2, h1, a1, logp, onehot, loss, .. } = mlp(seed);
    let lr = g.input("lr", TensorType::new(DType::F32, Shape::scalar())).unwrap();
    // N at run time: the sum of N ones.
    let one = g.scalar(1.0).unwrap();
    let ones = g.broadcast(one, Shape(vec![Dim::Batch])).unwrap();
    let n = g.reduce(ReduceOp::Sum, ones, &[0], false).unwrap();
    // d loss / d logits = (softmax - onehot) / N
    let p = g.unary(UnaryOp::Exp, logp).unwrap();
    let diff = g.sub(p, onehot).unwrap();
    let dlogits = g.div(diff, n).unwrap();
    let dw2 = g.matmul(dlogits, a1, true, false).unwrap();
    let db2 = g.reduce(ReduceOp::Sum, dlogits, &[0], false).unwrap();
    let da1 = g.matmul(dlogits, w2, false, false).unwrap();
    let zero = g.scalar(0.0).unwrap();
    let mask = g.binary(nnc_ir::BinaryOp::Greater, h1, zero).unwrap();
    let dh1 = g.where_(mask, da1, zero).unwrap();
    let dw1 = g.matmul(dh1, x, true, false).unwrap();
    let db1 = g.reduce(ReduceOp::Sum, dh1, &[0], false).unwrap();
    let mut updates = Vec::new();
    for (p, d) in [(w1, dw1), (b1, db1), (w2, dw2), (b2, db2)] {
        let step = g.mul(lr, d).unwrap();
        let new = g.sub(p, step).unwrap();
        updates.push((p, new));
    }
    g.set_updates(updates);
    g.set_outputs(vec![loss]);
    nnc_ir::verify(&g).unwrap();
    g
}

fn batch_feeds(r: &mut Rng8, batch: usize) -> HashMap<String, Tensor> {
    feeds(&[("x", random_f32(r, &[batch, IN])), ("labels", random_i64(r, &[batch], 0, OUT as i64))])
}

#[test]
fn forward_matches_interpreter_at_every_batch_size() {
    let m = mlp(1);
    let mut g = m.g.clone();
    g.set_outputs(vec![m.logits, m.logp, m.loss, m.a1]);
    let mut c = jit(&g);
    let mut r = rng(2);
    // One compiled step serves every batch size, including remainders and a repeat.
    for batch in [1, 7, 100, 257, 100, 3] {
        check_compiled(&mut c, &g, &batch_feeds(&mut r, batch), 1e-5);
    }
}

#[test]
fn forward_with_stored_weights_not_transposed() {
    // x·W with W stored [in, out], the other common layout.
    let mut r = rng(4);
    let mut g = Graph::new("mlp_nn");
    let x = g.input("x", batched(DType::F32, &[IN])).unwrap();
    // Weights at the usual 1/√fan_in scale, so the softmax is not saturated.
    let scaled = |t: Tensor, s: f32| Tensor::F32(t.as_f32().unwrap().mapv(|v| v * s));
    let w1 = g.param("w1", scaled(random_f32(&mut r, &[IN, HID]), 1.0 / (IN as f32).sqrt())).unwrap();
    let w2 = g.param("w2", scaled(random_f32(&mut r, &[HID, OUT]), 1.0 / (HID as f32).sqrt())).unwrap();
    let h = g.matmul(x, w1, false, false).unwrap();
    let h = g.relu(h).unwrap();
    let o = g.matmul(h, w2, false, false).unwrap();
    let o = g.softmax(o, 1).unwrap();
    g.set_outputs(vec![o]);
    let mut c = jit(&g);
    for batch in [1, 7, 100, 257] {
        check_compiled(&mut c, &g, &feeds(&[("x", random_f32(&mut r, &[batch, IN]))]), 1e-5);
    }
}

#[test]
fn sgd_training_step_matches_interpreter_for_50_steps() {
    let g = training_step(5);
    let mut c = compile(&g, &CompileOptions::default()).unwrap();
    let names = ["w1", "b1", "w2", "b2"];
    // The interpreter's parameters, fed back each step.
    let mut params: HashMap<String, Tensor> = names.iter().map(|&n| (n.to_string(), c.param(n).unwrap())).collect();
    let mut r = rng(6);
    let mut first_loss = None;
    let mut last_loss = 0.0;
    for step in 0..50 {
        // Full batches and one remainder batch.
        let batch = if step % 10 == 9 { 37 } else { 100 };
        let mut f = batch_feeds(&mut r, batch);
        f.insert("lr".into(), Tensor::scalar_f32(0.1));
        let mut fi = f.clone();
        fi.extend(params.clone());
        let want = nnc_interp::run_step(&g, &fi).unwrap();
        let got = c.run(&f).unwrap();
        assert_close(&got[0], &want.outputs[0], 1e-5, &format!("loss at step {step}"));
        for (&(leaf, _), new) in g.updates().iter().zip(want.updates) {
            params.insert(g.name_of(leaf).to_string(), new);
        }
        let loss = got[0].to_f32_vec().unwrap()[0];
        first_loss.get_or_insert(loss);
        last_loss = loss;
    }
    for n in names {
        assert_close(&c.param(n).unwrap(), &params[n], 1e-5, n);
    }
    // Training on fixed random labels still lowers the loss.
    assert!(last_loss < first_loss.unwrap(), "loss {first_loss:?} -> {last_loss}");
}

#[test]
fn training_step_updates_in_place_and_plans_a_small_arena() {
    let g = training_step(7);
    let c = jit(&g);
    // Every intermediate at batch 100, if each had its own buffer.
    let naive: usize = g
        .values()
        .iter()
        .filter(|v| !v.op.is_leaf())
        .map(|v| v.ty.shape.numel(100).unwrap() * v.ty.dtype.size_bytes())
        .sum();
    let arena = c.arena_bytes(100).unwrap();
    assert!(arena < naive, "arena {arena} vs {naive} without reuse");
    // Batch-dependent buffers grow with the batch; static ones (packed weights) do not.
    assert!(
        c.arena_bytes(400).unwrap() > arena,
        "{arena} {} {}",
        c.arena_bytes(200).unwrap(),
        c.arena_bytes(400).unwrap()
    );
}

#[test]
fn zero_batch_runs() {
    let m = mlp(8);
    let mut g = m.g.clone();
    g.set_outputs(vec![m.logits, m.onehot]);
    let mut c = jit(&g);
    let f = feeds(&[
        ("x", Tensor::from_f32(&[0, IN], vec![]).unwrap()),
        ("labels", Tensor::from_i64(&[0], vec![]).unwrap()),
    ]);
    let out = c.run(&f).unwrap();
    assert_eq!(out[0].shape(), &[0, OUT]);
    let _ = (m.x, m.labels, m.w1, m.b1, m.w2, m.b2);
}
