//! Splitting kernels across threads changes nothing: every thread count gives the
//! same bits, for the fused seed step at batch sizes that leave partial tiles and for
//! every optimizer, with weights stored either way round.

mod common;
use common::*;
use nnc_autodiff::{Optimizer, LABELS, LR, STEP};
use nnc_cranelift::{compile, CompileOptions, Compiled};
use nnc_ir::{Graph, Tensor};

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
        let fused = fused_seed_step(optimizer, 1);
        let adam = matches!(optimizer, Optimizer::Adam { .. });
        let one = run(&fused, 1, adam);
        for threads in [2, 3] {
            assert!(one == run(&fused, threads, adam), "{optimizer:?}: {threads} threads differ from 1");
        }
        // Same seed, same bits, run after run.
        assert!(one == run(&fused, 1, adam), "{optimizer:?}: two single-threaded runs differ");
    }
}

/// Weights stored `[out, in]` (PyTorch's layout): the forward product is dot products
/// at batch 1 and 7 and tiles over a transposed pack at the others, and the first
/// weight gradient (`[256, K]·[K, 784]`, K the batch) splits by columns only at
/// batch 257, where K exceeds its 256 rows.
#[test]
fn every_thread_count_gives_the_same_bits_with_transposed_weights() {
    let fused = fused_step_in_layout(Optimizer::Sgd, 1, [784, 256, 10], true);
    let one = run(&fused, 1, false);
    for threads in [2, 3] {
        assert!(one == run(&fused, threads, false), "{threads} threads differ from 1");
    }
}
