//! Checked mode: every generated load and store is bounds-checked. The fused seed step
//! runs clean in it and gives the same bits as unchecked code, and an access past a
//! buffer is caught and reported with the kernel's name instead of touching memory.

mod common;
use common::*;
use nnc_autodiff::{Optimizer, LABELS, LR, STEP};
use nnc_cranelift::{compile, BackendError, CompileOptions, Compiled, Kernels};
use nnc_ir::Tensor;

fn run(c: &mut Compiled, adam: bool) -> Vec<Vec<u32>> {
    let mut r = rng(4);
    let mut out = Vec::new();
    for (step, batch) in [100, 7, 1].into_iter().enumerate() {
        let mut f = feeds(&[
            ("x", random_f32(&mut r, &[batch, 784])),
            (LABELS, random_i64(&mut r, &[batch], 0, 10)),
            (LR, Tensor::scalar_f32(0.01)),
        ]);
        if adam {
            f.insert(STEP.into(), Tensor::scalar_i64(step as i64 + 1));
        }
        out.push(bits(&c.run(&f).unwrap()[0]));
    }
    out.extend(c.param_names().iter().map(|n| bits(&c.param(n).unwrap())));
    out
}

#[test]
fn checked_code_runs_clean_and_gives_the_same_bits() {
    for optimizer in [Optimizer::Sgd, Optimizer::adam()] {
        let g = fused_seed_step(optimizer, 2);
        let adam = matches!(optimizer, Optimizer::Adam { .. });
        let plain = run(&mut compile(&g, &CompileOptions { checked: false, ..Default::default() }).unwrap(), adam);
        for threads in [1, 2] {
            let opts = CompileOptions { checked: true, threads, kernels: Kernels::Cranelift, ..Default::default() };
            assert!(plain == run(&mut compile(&g, &opts).unwrap(), adam), "{optimizer:?}, {threads} threads");
        }
    }
}

#[test]
fn an_access_past_a_buffer_is_caught_and_names_the_kernel() {
    let g = fused_seed_step(Optimizer::Sgd, 2);
    let opts = CompileOptions { checked: true, threads: 1, kernels: Kernels::Cranelift, ..Default::default() };
    let mut c = compile(&g, &opts).unwrap();
    let before = c.param("w1").unwrap();
    // Pretend the input holds only 16 bytes: the first product reads past them.
    c.shrink_buffer_for_testing("x", 16);
    let mut r = rng(1);
    let f = feeds(&[
        ("x", random_f32(&mut r, &[8, 784])),
        (LABELS, random_i64(&mut r, &[8], 0, 10)),
        (LR, Tensor::scalar_f32(0.01)),
    ]);
    match c.run(&f) {
        Err(e @ BackendError::OutOfBounds { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains("out-of-bounds") && msg.contains("kernel k"), "{msg}");
        }
        other => panic!("expected an out-of-bounds error, got {other:?}"),
    }
    // The step stopped at the first kernel: no parameter was updated.
    assert_eq!(bits(&c.param("w1").unwrap()), bits(&before));
}
