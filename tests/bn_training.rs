//! Training a CNN with batch normalization (`tests/fixtures/cnn/bn/`, made by its
//! `make_bn_training.py`): imported for training, each BatchNormalization normalizes
//! by the batch's statistics and updates its running statistics with ONNX's rule;
//! evaluation and the trained model use the running statistics. Five SGD steps
//! against PyTorch's (losses, parameters, running statistics, and the trained model's
//! eval-mode output, within 1e-4 relative), through the interpreter and the JIT, with
//! the same bits for one and two threads.

mod common;

use common::{f32s, relative_error};
use nnc::npy::read_npy;
use nnc_autodiff::{training_graph, TrainOptions};
use nnc_ir::Tensor;
use nnc_onnx::{import_file_with, ImportOptions};
use nnc_train::{CompileOptions, InterpBackend, JitBackend, StepBackend};
use std::path::{Path, PathBuf};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cnn/bn")
}

fn npy(name: &str) -> Tensor {
    read_npy(&dir().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn import(training: bool) -> nnc_ir::Graph {
    import_file_with(&dir().join("bn_cnn.onnx"), &ImportOptions { training, ..Default::default() }).unwrap()
}

const STATISTICS: [&str; 4] = ["bn1.running_mean", "bn1.running_var", "bn2.running_mean", "bn2.running_var"];

/// Five steps on `backend`; returns the losses, then checks against PyTorch.
fn train_and_check(backend: &mut dyn StepBackend, what: &str) -> Vec<u32> {
    let (xs, ys) = (npy("bn_sgd.inputs.npy"), npy("bn_sgd.labels.npy"));
    let (xs, ys) = (xs.as_f32().unwrap(), ys.as_i64().unwrap());
    let want = f32s(&npy("bn_sgd.losses.npy"));
    let mut losses = Vec::new();
    for k in 0..want.len() {
        let x = Tensor::F32(xs.index_axis(ndarray::Axis(0), k).to_owned());
        let y = Tensor::I64(ys.index_axis(ndarray::Axis(0), k).to_owned());
        losses.push(backend.step(&x, &y, 0.05, k as u64 + 1).unwrap().loss);
    }
    let err = relative_error(&losses, &want);
    assert!(err <= 1e-4, "{what}: losses {losses:?} vs PyTorch {want:?}");
    let leaves: Vec<(String, Tensor)> = backend.params().into_iter().chain(backend.state()).collect();
    let value = |name: &str| leaves.iter().find(|(n, _)| n == name).map(|(_, t)| f32s(t));
    let mut names: Vec<String> = backend.params().into_iter().map(|(n, _)| n).collect();
    names.extend(STATISTICS.map(String::from));
    for name in &names {
        let got = value(name).unwrap_or_else(|| panic!("{what}: no {name}"));
        let want = f32s(&npy(&format!("bn_sgd.final.{name}.npy")));
        let err = relative_error(&got, &want);
        assert!(err <= 1e-4, "{what}: {name}: relative error {err:e}");
    }
    assert_eq!(names.len(), 14, "{what}: every initializer");
    // Evaluation runs the inference form, with the trained running statistics.
    let got = f32s(&backend.infer(&npy("bn_cnn.eval_input.npy")).unwrap());
    let err = relative_error(&got, &f32s(&npy("bn_sgd.eval_output.npy")));
    assert!(err <= 1e-4, "{what}: the trained model's eval output: relative error {err:e}");
    losses
        .iter()
        .chain(leaves.iter().flat_map(|(_, t)| f32s(t)).collect::<Vec<_>>().iter())
        .map(|v| v.to_bits())
        .collect()
}

#[test]
fn the_inference_import_matches_onnx_runtime() {
    let g = import(false);
    assert!(g.updates().is_empty());
    let x = npy("bn_cnn.eval_input.npy");
    let got = nnc_interp::run(&g, &std::collections::HashMap::from([("input".to_string(), x)])).unwrap();
    let err = relative_error(&f32s(&got[0]), &f32s(&npy("bn_cnn.eval_output.npy")));
    assert!(err <= 1e-4, "relative error {err:e} against ONNX Runtime");
}

#[test]
fn batch_norm_trains_like_pytorch_and_keeps_its_running_statistics() {
    let (train, infer) = (import(true), import(false));
    let updated: Vec<&str> = train.updates().iter().map(|&(l, _)| train.name_of(l)).collect();
    assert_eq!(updated, STATISTICS);
    let tg = training_graph(&train, &TrainOptions::default()).unwrap();
    let mut interp = InterpBackend::with_inference(&tg, Some(&infer)).unwrap();
    train_and_check(&mut interp, "interpreter");
    let mut bits = Vec::new();
    for threads in [1, 2] {
        let compile = CompileOptions { threads, ..Default::default() };
        let mut jit = JitBackend::with_inference(&tg, Some(&infer), &compile).unwrap();
        bits.push(train_and_check(&mut jit, &format!("jit, {threads} threads")));
    }
    assert!(bits[0] == bits[1], "the JIT's results differ between one and two threads");
}
