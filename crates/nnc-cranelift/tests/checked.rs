//! Checked mode: every generated load and store is bounds-checked. The fused seed step
//! runs clean in it and gives the same bits as unchecked code, and an access past a
//! buffer is caught and reported with the kernel's name instead of touching memory.

mod common;
use common::*;
use nnc_autodiff::{training_graph, Optimizer, TrainOptions, LABELS, LR, STEP};
use nnc_cranelift::{compile, BackendError, CompileOptions, Compiled};
use nnc_ir::{DType, Graph, Tensor};

fn seed_step(optimizer: Optimizer) -> Graph {
    let mut r = rng(2);
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
    let train = training_graph(&g, &TrainOptions { optimizer, ..TrainOptions::default() }).unwrap().graph;
    nnc_opt::optimize(&train, &nnc_opt::OptOptions::from_flags(false, None, None)).unwrap().graph
}

fn bits(t: &Tensor) -> Vec<u32> {
    t.as_f32().unwrap().iter().map(|v| v.to_bits()).collect()
}

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
        let g = seed_step(optimizer);
        let adam = matches!(optimizer, Optimizer::Adam { .. });
        let plain = run(&mut compile(&g, &CompileOptions { checked: false, ..Default::default() }).unwrap(), adam);
        for threads in [1, 2] {
            let opts = CompileOptions { checked: true, threads, ..Default::default() };
            assert!(plain == run(&mut compile(&g, &opts).unwrap(), adam), "{optimizer:?}, {threads} threads");
        }
    }
}

#[test]
fn an_access_past_a_buffer_is_caught_and_names_the_kernel() {
    let g = seed_step(Optimizer::Sgd);
    let mut c = compile(&g, &CompileOptions { checked: true, threads: 1, ..Default::default() }).unwrap();
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
