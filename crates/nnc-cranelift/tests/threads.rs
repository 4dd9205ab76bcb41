//! Splitting kernels across threads changes nothing: every thread count gives the
//! same bits, for the fused seed step at batch sizes that leave partial tiles and for
//! every optimizer.

mod common;
use common::*;
use nnc_autodiff::{training_graph, Optimizer, TrainOptions, LABELS, LR, STEP};
use nnc_cranelift::{compile, CompileOptions, Compiled};
use nnc_ir::{DType, Graph, Tensor};

fn seed_model(seed: u64) -> Graph {
    let mut r = rng(seed);
    let scaled = |t: Tensor, s: f32| Tensor::F32(t.as_f32().unwrap().mapv(|v| v * s));
    let mut g = Graph::new("seed");
    let x = g.input("x", batched(DType::F32, &[784])).unwrap();
    let w1 = g.param("w1", scaled(random_f32(&mut r, &[784, 256]), 1.0 / 28.0)).unwrap();
    let b1 = g.param("b1", scaled(random_f32(&mut r, &[256]), 0.03)).unwrap();
    let w2 = g.param("w2", scaled(random_f32(&mut r, &[256, 10]), 1.0 / 16.0)).unwrap();
    let b2 = g.param("b2", scaled(random_f32(&mut r, &[10]), 0.06)).unwrap();
    let h = g.matmul(x, w1, false, false).unwrap();
    let h = g.add(h, b1).unwrap();
    let h = g.relu(h).unwrap();
    let y = g.matmul(h, w2, false, false).unwrap();
    let y = g.add(y, b2).unwrap();
    g.set_outputs(vec![y]);
    g
}

fn bits(t: &Tensor) -> Vec<u32> {
    t.as_f32().unwrap().iter().map(|v| v.to_bits()).collect()
}

/// Losses and final parameters of `steps` steps, as bits.
fn run(g: &Graph, threads: usize, adam: bool) -> (Vec<u32>, Vec<Vec<u32>>) {
    let mut c: Compiled = compile(g, &CompileOptions { threads, ..Default::default() }).unwrap();
    assert_eq!(c.threads(), threads);
    let mut r = rng(5);
    let mut losses = Vec::new();
    for (step, batch) in [100, 7, 257, 1, 64].into_iter().enumerate() {
        let mut f = feeds(&[
            ("x", random_f32(&mut r, &[batch, 784])),
            (LABELS, random_i64(&mut r, &[batch], 0, 10)),
            (LR, Tensor::scalar_f32(0.01)),
        ]);
        if adam {
            f.insert(STEP.into(), Tensor::scalar_i64(step as i64 + 1));
        }
        losses.extend(bits(&c.run(&f).unwrap()[0]));
    }
    (losses, c.param_names().iter().map(|n| bits(&c.param(n).unwrap())).collect())
}

#[test]
fn every_thread_count_gives_the_same_bits() {
    let optimizers = [Optimizer::Sgd, Optimizer::Momentum { momentum: 0.9, nesterov: true }, Optimizer::adam()];
    for optimizer in optimizers {
        let opts = TrainOptions { optimizer, ..TrainOptions::default() };
        let train = training_graph(&seed_model(1), &opts).unwrap().graph;
        let fused = nnc_opt::optimize(&train, &nnc_opt::OptOptions::from_flags(false, None, None)).unwrap().graph;
        let adam = matches!(optimizer, Optimizer::Adam { .. });
        let one = run(&fused, 1, adam);
        for threads in [2, 3] {
            assert!(one == run(&fused, threads, adam), "{optimizer:?}: {threads} threads differ from 1");
        }
        // Same seed, same bits, run after run.
        assert!(one == run(&fused, 1, adam), "{optimizer:?}: two single-threaded runs differ");
    }
}
