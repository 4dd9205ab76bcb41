//! Convolutional networks from PyTorch's two exporters (`tests/fixtures/cnn/`, made by
//! its `make_fixtures.py`): the interpreter matches ONNX Runtime's outputs, and the
//! LeNet-5 training step reproduces PyTorch's ten SGD steps.

mod common;

use common::{f32s, relative_error};
use nnc::npy::read_npy;
use nnc_autodiff::{training_graph, TrainOptions};
use nnc_cranelift::Kernels;
use nnc_ir::{Graph, Op, Tensor};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cnn")
}

#[test]
fn real_exporter_cnns_match_onnx_runtime() {
    let mut seen = 0;
    for model in ["lenet5", "small_bn_cnn", "resnet_tiny", "mobilenetv2_tiny"] {
        for exporter in ["ts", "dynamo"] {
            let file = |suffix: &str| fixtures().join(format!("{model}.{exporter}.{suffix}"));
            let g = nnc_onnx::import_file(&file("onnx")).unwrap();
            let x = read_npy(&file("input.npy")).unwrap();
            let want = read_npy(&file("output.npy")).unwrap();
            let got = nnc_interp::run(&g, &HashMap::from([("input".to_string(), x)])).unwrap();
            assert_eq!(got[0].shape(), want.shape(), "{model}.{exporter}");
            let err = relative_error(&f32s(&got[0]), &f32s(&want));
            assert!(err <= 1e-4, "{model}.{exporter}: relative error {err:e} against ONNX Runtime");
            seen += 1;
        }
    }
    assert_eq!(seen, 8);
}

fn initial(g: &Graph, name: &str) -> Vec<f32> {
    match &g.value(g.find(name).unwrap()).op {
        Op::Param { init: Some(t) } => f32s(t),
        other => panic!("{name} is {other:?}"),
    }
}

/// Ten SGD steps (lr 0.01, batch 8) through the interpreter, against PyTorch's losses
/// and final parameters, recorded once by `make_fixtures.py`. Besides the parameters
/// themselves, their change is compared: it is a few hundredths of them, so a step
/// that did nothing would still pass a loose check of the parameters alone.
#[test]
fn lenet5_training_step_reproduces_pytorch() {
    let dir = fixtures();
    let model = nnc_onnx::import_file(&dir.join("lenet5.ts.onnx")).unwrap();
    let tg = training_graph(&model, &TrainOptions::default()).unwrap();
    let g = &tg.graph;
    let inputs = read_npy(&dir.join("lenet5_sgd.inputs.npy")).unwrap();
    let labels = read_npy(&dir.join("lenet5_sgd.labels.npy")).unwrap();
    let losses = f32s(&read_npy(&dir.join("lenet5_sgd.losses.npy")).unwrap());
    let (inputs, labels) = (inputs.as_f32().unwrap().clone(), labels.as_i64().unwrap().clone());

    let loss_at = g.outputs().iter().position(|&o| o == tg.loss).unwrap();
    let mut feeds: HashMap<String, Tensor> = HashMap::new();
    feeds.insert("lr".into(), Tensor::scalar_f32(0.01));
    let mut got_losses = Vec::new();
    for k in 0..losses.len() {
        feeds.insert("input".into(), Tensor::F32(inputs.index_axis(ndarray::Axis(0), k).to_owned()));
        feeds.insert("labels".into(), Tensor::I64(labels.index_axis(ndarray::Axis(0), k).to_owned()));
        let step = nnc_interp::run_step(g, &feeds).unwrap();
        got_losses.push(f32s(&step.outputs[loss_at])[0]);
        for (&(leaf, _), value) in g.updates().iter().zip(step.updates) {
            feeds.insert(g.name_of(leaf).to_string(), value);
        }
    }
    let loss_err = relative_error(&got_losses, &losses);
    assert!(loss_err <= 1e-4, "losses {got_losses:?} vs PyTorch {losses:?}");

    let names = ["conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias", "fc1.weight", "fc1.bias"];
    let names = names.iter().chain(&["fc2.weight", "fc2.bias", "fc3.weight", "fc3.bias"]);
    for name in names {
        let want = f32s(&read_npy(&dir.join(format!("lenet5_sgd.final.{name}.npy"))).unwrap());
        let got = f32s(&feeds[*name]);
        let err = relative_error(&got, &want);
        assert!(err <= 1e-4, "{name}: relative error {err:e}");
        let start = initial(&model, name);
        let delta = |v: &[f32]| -> Vec<f32> { v.iter().zip(&start).map(|(a, b)| a - b).collect() };
        let delta_err = relative_error(&delta(&got), &delta(&want));
        assert!(delta_err <= 1e-3, "{name}: the change differs from PyTorch's by {delta_err:e} of it");
    }
}

/// The same fixtures through the whole pipeline (optimizer and JIT).
#[test]
fn jitted_cnns_match_onnx_runtime() {
    for model in ["lenet5", "small_bn_cnn", "resnet_tiny", "mobilenetv2_tiny"] {
        for exporter in ["ts", "dynamo"] {
            let file = |suffix: &str| fixtures().join(format!("{model}.{exporter}.{suffix}"));
            let g = nnc_onnx::import_file(&file("onnx")).unwrap();
            let mut c = nnc_pipeline::compile(&g, &Default::default(), &Default::default()).unwrap();
            let x = read_npy(&file("input.npy")).unwrap();
            let want = read_npy(&file("output.npy")).unwrap();
            let got = c.run(&HashMap::from([("input".to_string(), x)])).unwrap();
            let err = relative_error(&f32s(&got[0]), &f32s(&want));
            assert!(err <= 1e-4, "{model}.{exporter}: relative error {err:e} against ONNX Runtime");
        }
    }
}

/// The compiled LeNet-5 training step: PyTorch's ten SGD steps, and the same bits
/// with one, two and three threads and with the portable kernels.
#[test]
fn jitted_lenet5_training_step_reproduces_pytorch_for_any_thread_count_and_family() {
    let dir = fixtures();
    let model = nnc_onnx::import_file(&dir.join("lenet5.ts.onnx")).unwrap();
    let tg = training_graph(&model, &TrainOptions::default()).unwrap();
    let inputs = read_npy(&dir.join("lenet5_sgd.inputs.npy")).unwrap();
    let labels = read_npy(&dir.join("lenet5_sgd.labels.npy")).unwrap();
    let losses = f32s(&read_npy(&dir.join("lenet5_sgd.losses.npy")).unwrap());
    let (inputs, labels) = (inputs.as_f32().unwrap().clone(), labels.as_i64().unwrap().clone());
    let loss_at = tg.graph.outputs().iter().position(|&o| o == tg.loss).unwrap();
    let run = |threads: usize, kernels: Kernels| -> (Vec<f32>, Vec<Vec<f32>>) {
        let backend = nnc_cranelift::CompileOptions { threads, kernels, ..Default::default() };
        let mut c = nnc_pipeline::compile(&tg.graph, &Default::default(), &backend).unwrap();
        let mut got = Vec::new();
        for k in 0..losses.len() {
            let feeds = HashMap::from([
                ("input".to_string(), Tensor::F32(inputs.index_axis(ndarray::Axis(0), k).to_owned())),
                ("labels".to_string(), Tensor::I64(labels.index_axis(ndarray::Axis(0), k).to_owned())),
                ("lr".to_string(), Tensor::scalar_f32(0.01)),
            ]);
            got.push(f32s(&c.run(&feeds).unwrap()[loss_at])[0]);
        }
        (got, c.param_names().iter().map(|n| f32s(&c.param(n).unwrap())).collect())
    };
    let one = run(1, Kernels::Auto);
    let loss_err = relative_error(&one.0, &losses);
    assert!(loss_err <= 1e-4, "losses {:?} vs PyTorch {losses:?}", one.0);
    let c = nnc_pipeline::compile(&tg.graph, &Default::default(), &Default::default()).unwrap();
    for (name, got) in c.param_names().iter().zip(&one.1) {
        let want = f32s(&read_npy(&dir.join(format!("lenet5_sgd.final.{name}.npy"))).unwrap());
        let err = relative_error(got, &want);
        assert!(err <= 1e-4, "{name}: relative error {err:e}");
    }
    let to_bits = |r: &(Vec<f32>, Vec<Vec<f32>>)| -> Vec<u32> {
        r.0.iter().chain(r.1.iter().flatten()).map(|v| v.to_bits()).collect()
    };
    for threads in [2, 3] {
        assert!(to_bits(&one) == to_bits(&run(threads, Kernels::Auto)), "{threads} threads differ from one");
    }
    let portable = run(2, Kernels::Cranelift);
    assert!(to_bits(&one) == to_bits(&portable), "the portable kernels differ from the assembled ones");
}
