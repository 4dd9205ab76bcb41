//! `nnc export` and `nnc compile --emit dot` end to end, with tract-onnx (an independent
//! ONNX runtime) as the oracle:
//!
//! - exported models (the seed model, a trained model) import back into the same IR,
//!   and tract computes what nnc's interpreter computes on the original;
//! - the exported training step (`--training`) has the interface docs/usage.md documents, and tract
//!   running it for consecutive steps, fed its own outputs, follows nnc's JIT;
//! - bad output paths give one-line errors and leave existing files alone.

use nnc_ir::{Graph, Tensor};
use nnc_onnx::proto::ModelProto;
use prost::Message;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use tract_onnx::prelude::{Framework, InferenceFact, InferenceModelExt, IntoTValue, Tensor as TractTensor};
use tract_onnx::tract_core::model::IntoRunnable;

fn nnc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nnc")).args(args).output().expect("nnc runs")
}

fn ok(args: &[&str]) -> String {
    let o = nnc(args);
    assert!(o.status.success(), "nnc {args:?} failed:\n{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).to_string()
}

fn repo(path: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path).to_string_lossy().to_string()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Runs nnc expecting failure; returns its single stderr line.
fn expect_error(args: &[&str]) -> String {
    let o = nnc(args);
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert_eq!(o.status.code(), Some(1), "nnc {args:?}: exit code {:?}, stderr:\n{err}", o.status.code());
    assert!(!err.contains("panicked"), "nnc {args:?} panicked:\n{err}");
    assert_eq!(err.lines().count(), 1, "nnc {args:?}: expected a one-line error, got:\n{err}");
    assert!(err.starts_with("error: "), "{err}");
    err
}

fn import(path: &Path) -> Graph {
    nnc_onnx::import_file(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn proto(path: &Path) -> ModelProto {
    ModelProto::decode(&std::fs::read(path).unwrap()[..]).unwrap()
}

/// Deterministic values in [-1, 1).
fn noise(n: usize, seed: u64) -> Vec<f32> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}

fn to_tract(t: &Tensor) -> TractTensor {
    let r = match t {
        Tensor::F32(a) => TractTensor::from_shape(a.shape(), &a.iter().copied().collect::<Vec<_>>()),
        Tensor::I64(a) => TractTensor::from_shape(a.shape(), &a.iter().copied().collect::<Vec<_>>()),
        Tensor::I32(a) => TractTensor::from_shape(a.shape(), &a.iter().copied().collect::<Vec<_>>()),
        Tensor::Bool(a) => TractTensor::from_shape(a.shape(), &a.iter().copied().collect::<Vec<_>>()),
    };
    r.expect("shape matches data")
}

/// Runs an ONNX file in tract: every graph input fed by name, every graph output
/// returned by name (as f32).
fn run_tract(path: &Path, feeds: &HashMap<String, Tensor>) -> HashMap<String, Tensor> {
    let m = proto(path);
    let g = m.graph.as_ref().unwrap();
    let inputs: Vec<TractTensor> = g
        .input
        .iter()
        .map(|vi| to_tract(feeds.get(&vi.name).unwrap_or_else(|| panic!("no feed for input {}", vi.name))))
        .collect();
    let mut model = tract_onnx::onnx().model_for_path(path).unwrap();
    for (i, t) in inputs.iter().enumerate() {
        model = model.with_input_fact(i, InferenceFact::dt_shape_from_tensor(t)).unwrap();
    }
    let runnable = model.into_optimized().unwrap().into_runnable().unwrap();
    let outputs = runnable.run(inputs.into_iter().map(|t| t.into_tvalue()).collect()).unwrap();
    assert_eq!(outputs.len(), g.output.len());
    g.output
        .iter()
        .zip(outputs.iter())
        .map(|(vi, o)| {
            let f = o.cast_to::<f32>().unwrap();
            let data: Vec<f32> = f.to_plain_array_view::<f32>().unwrap().iter().copied().collect();
            (vi.name.clone(), Tensor::from_f32(o.shape(), data).unwrap())
        })
        .collect()
}

/// `|a - b| <= tol·max(|b|, max|B|)` for every element `b` of `B`: relative to the
/// element, or to the tensor's largest element where the element is smaller. Elements
/// near zero are sums that cancel (a bias gradient summed over a batch), whose own
/// relative error only says in which order the runtime added.
fn assert_close(theirs: &Tensor, ours: &Tensor, tol: f32, what: &str) {
    assert_eq!(theirs.shape(), ours.shape(), "shape of {what}");
    let (a, b) = (theirs.to_f32_vec().unwrap(), ours.to_f32_vec().unwrap());
    let scale = b.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let mut worst = 0.0f32;
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        let err = (x - y).abs() / y.abs().max(scale).max(f32::MIN_POSITIVE);
        worst = worst.max(err);
        assert!(err <= tol, "{what}[{i}]: tract {x} vs nnc {y} (relative error {err:e})");
    }
    eprintln!("{what}: worst relative error {worst:e}");
}

fn seed_input(batch: usize, seed: u64) -> Tensor {
    let x: Vec<f32> = noise(batch * 784, seed).iter().map(|v| (v + 1.0) / 2.0).collect();
    Tensor::from_f32(&[batch, 784], x).unwrap()
}

/// The exported model, run by tract, against the interpreter on `original`.
fn check_tract_matches_interpreter(exported: &Path, original: &Graph, input: Tensor) {
    let feeds: HashMap<String, Tensor> = [("input".to_string(), input)].into_iter().collect();
    let ours = nnc_interp::run(original, &feeds).unwrap();
    let theirs = run_tract(exported, &feeds);
    for (&o, t) in original.outputs().iter().zip(&ours) {
        let name = original.name_of(o);
        assert_close(&theirs[name], t, 1e-5, &format!("{} {name}", exported.display()));
    }
}

#[test]
fn exported_seed_model_round_trips_and_runs_in_tract() {
    let dir = tempfile::tempdir().unwrap();
    let seed = repo("models/mlp.onnx");
    let original = import(Path::new(&seed));

    // Unoptimized, the export is the model itself, parameters bit for bit.
    let o0 = dir.path().join("o0.onnx");
    ok(&["export", &seed, "-o", s(&o0), "-O0"]);
    assert_eq!(nnc_ir::print_with_data(&import(&o0)), nnc_ir::print_with_data(&original));

    // Optimized: the fused layers are written as primitives; importing gives that graph,
    // and exporting it again changes nothing.
    let o1 = dir.path().join("o1.onnx");
    ok(&["export", &seed, "-o", s(&o1), "--opset", "13"]);
    assert_eq!(proto(&o1).opset_import[0].version, 13);
    let ir = ok(&["compile", s(&o1), "--emit", "ir"]);
    insta::assert_snapshot!("export_ir_seed", ir);
    let again = dir.path().join("again.onnx");
    ok(&["export", s(&o1), "-o", s(&again), "-O0"]);
    assert_eq!(ok(&["compile", s(&again), "--emit", "ir"]), ir);
    assert_eq!(nnc_ir::print_with_data(&import(&again)), nnc_ir::print_with_data(&import(&o1)));

    for path in [&o0, &o1] {
        check_tract_matches_interpreter(path, &original, seed_input(5, 1));
    }
}

/// A small separable problem as NPY: class = which of the first 3 features is largest.
fn write_toy_data(dir: &Path, n: usize, features: usize) -> (PathBuf, PathBuf) {
    let x: Vec<f32> = noise(n * features, 7);
    let labels: Vec<i64> = (0..n)
        .map(|r| {
            let row = &x[r * features..r * features + 3];
            (0..3).max_by(|&a, &b| row[a].total_cmp(&row[b])).unwrap() as i64
        })
        .collect();
    let (xp, yp) = (dir.join("x.npy"), dir.join("y.npy"));
    nnc::npy::write_npy(&xp, &Tensor::from_f32(&[n, features], x).unwrap()).unwrap();
    nnc::npy::write_npy(&yp, &Tensor::from_i64(&[n], labels).unwrap()).unwrap();
    (xp, yp)
}

#[test]
fn exported_trained_model_round_trips_and_runs_in_tract() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let model = d.join("m.onnx");
    ok(&["new-mlp", "--layers", "8,16,3", "--seed", "3", "-o", s(&model)]);
    let (xp, yp) = write_toy_data(d, 60, 8);
    let trained = d.join("trained.onnx");
    #[rustfmt::skip]
    ok(&["train", s(&model), "--inputs", s(&xp), "--labels", s(&yp), "--batch", "20", "--steps", "30",
         "--lr", "0.3", "--optimizer", "adam", "-q", "--out", s(&trained)]);
    let trained_graph = import(&trained);
    assert_ne!(
        nnc_ir::print_with_data(&trained_graph),
        nnc_ir::print_with_data(&import(&model)),
        "training changed it"
    );

    let o0 = d.join("o0.onnx");
    ok(&["export", s(&trained), "-o", s(&o0), "-O0"]);
    assert_eq!(nnc_ir::print_with_data(&import(&o0)), nnc_ir::print_with_data(&trained_graph));
    let o1 = d.join("o1.onnx");
    ok(&["export", s(&trained), "-o", s(&o1)]);
    let again = d.join("again.onnx");
    ok(&["export", s(&o1), "-o", s(&again), "-O0"]);
    assert_eq!(nnc_ir::print_with_data(&import(&again)), nnc_ir::print_with_data(&import(&o1)));
    let x = nnc::npy::read_npy(&xp).unwrap();
    for path in [&trained, &o0, &o1] {
        check_tract_matches_interpreter(path, &trained_graph, x.clone());
    }
}

/// The input and output names of an ONNX file, in order.
fn interface(path: &Path) -> (Vec<String>, Vec<String>) {
    let m = proto(path);
    let g = m.graph.unwrap();
    let names = |v: &[nnc_onnx::proto::ValueInfoProto]| v.iter().map(|vi| vi.name.clone()).collect();
    (names(&g.input), names(&g.output))
}

const PARAMS: [&str; 4] = ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"];

fn strings(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[test]
fn training_step_has_the_documented_interface() {
    let dir = tempfile::tempdir().unwrap();
    let seed = repo("models/mlp.onnx");
    // The parameters, then their state, parameter by parameter: `<p>.m` then `<p>.v`.
    let with = |suffixes: &[String]| -> Vec<String> {
        let (param, state) = suffixes.split_first().unwrap();
        let params = PARAMS.iter().map(|p| format!("{p}{param}"));
        params.chain(PARAMS.iter().flat_map(|p| state.iter().map(move |sfx| format!("{p}{sfx}")))).collect()
    };
    for (optimizer, state) in [("sgd", &[][..]), ("momentum", &[".m"][..]), ("adam", &[".m", ".v"][..])] {
        let path = dir.path().join(format!("{optimizer}.onnx"));
        ok(&["export", &seed, "--training", "--optimizer", optimizer, "-o", s(&path)]);
        let (inputs, outputs) = interface(&path);
        // The optimizer changes how the step computes, not its interface.
        let unoptimized = dir.path().join(format!("{optimizer}-O0.onnx"));
        ok(&["export", &seed, "--training", "--optimizer", optimizer, "-O0", "-o", s(&unoptimized)]);
        assert_eq!(interface(&unoptimized), (inputs.clone(), outputs.clone()), "{optimizer} -O0");
        let mut expected_in: Vec<String> = ["input", "labels", "lr"].map(String::from).to_vec();
        if optimizer == "adam" {
            expected_in.push("step".into());
        }
        let leaves: Vec<String> = [""].iter().chain(state).map(|l| l.to_string()).collect();
        let new: Vec<String> = leaves.iter().map(|l| format!("{l}_new")).collect();
        // e.g. adam: `fc1.weight, ..., fc2.bias, fc1.weight.m, fc1.weight.v, fc1.bias.m, ...`
        expected_in.extend(with(&leaves));
        let mut expected_out = vec!["loss".to_string()];
        expected_out.extend(with(&new));
        assert_eq!(strings(&inputs), strings(&expected_in), "{optimizer}");
        assert_eq!(strings(&outputs), strings(&expected_out), "{optimizer}");
        // Parameters and state are inputs only: an initializer of the same name would
        // make tract treat them as constants.
        let m = proto(&path);
        let g = m.graph.as_ref().unwrap();
        assert!(g.initializer.iter().all(|t| !inputs.contains(&t.name)), "{optimizer}");
        // Only standard ops of the default domain.
        assert!(m.opset_import.iter().all(|o| o.domain.is_empty()));
        assert!(g.node.iter().all(|n| n.domain.is_empty() && !n.op_type.contains('.')));
        // nnc reads it back as the same step, its leaves fed.
        let back = import(&path);
        assert_eq!(back.updates().len(), expected_out.len() - 1, "{optimizer}");
        assert_eq!(strings(&back.outputs().iter().map(|&o| back.name_of(o).to_string()).collect::<Vec<_>>()), ["loss"]);
    }
}

fn labels(batch: usize, seed: usize) -> Tensor {
    Tensor::from_i64(&[batch], (0..batch).map(|i| ((i * 7 + seed * 3) % 10) as i64).collect()).unwrap()
}

/// tract runs `step.onnx` for three consecutive steps, each fed the previous step's new
/// parameters and state; nnc's JIT runs the same steps on its own buffers. The loss and
/// every new parameter and state agree within 1e-5 (relative) at every step.
fn check_steps_against_jit(optimizer: &str) {
    let dir = tempfile::tempdir().unwrap();
    let seed = repo("models/mlp.onnx");
    let step_path = dir.path().join("step.onnx");
    ok(&["export", &seed, "--training", "--optimizer", optimizer, "-o", s(&step_path)]);
    let (inputs, _) = interface(&step_path);

    let model = import(Path::new(&seed));
    let opts = nnc_autodiff::TrainOptions {
        optimizer: match optimizer {
            "sgd" => nnc_autodiff::Optimizer::Sgd,
            "adam" => nnc_autodiff::Optimizer::adam(),
            other => panic!("{other}"),
        },
        ..Default::default()
    };
    let tg = nnc_autodiff::training_graph(&model, &opts).unwrap();
    let mut jit = nnc_cranelift::compile(&tg.graph, &Default::default()).unwrap();

    // The parameters' initial values are the model's; state starts at zero.
    let mut leaves: HashMap<String, Tensor> = HashMap::new();
    for name in &inputs {
        if let Some(id) = tg.graph.find(name) {
            if let nnc_ir::Op::Param { init: Some(t) } | nnc_ir::Op::State { init: Some(t) } = &tg.graph.value(id).op {
                leaves.insert(name.clone(), t.clone());
            }
        }
    }
    let lr = if optimizer == "adam" { 0.001 } else { 0.05 };
    let batch = 8;
    for step in 1..=3u64 {
        let mut feeds: HashMap<String, Tensor> = HashMap::new();
        feeds.insert("input".into(), seed_input(batch, 10 + step));
        feeds.insert("labels".into(), labels(batch, step as usize));
        feeds.insert("lr".into(), Tensor::scalar_f32(lr));
        if optimizer == "adam" {
            feeds.insert("step".into(), Tensor::scalar_i64(step as i64));
        }
        let jit_loss = jit.run(&feeds).unwrap().remove(0);
        feeds.extend(leaves.iter().map(|(k, v)| (k.clone(), v.clone())));
        let out = run_tract(&step_path, &feeds);
        let what = |name: &str| format!("{optimizer} step {step} {name}");
        assert_close(&out["loss"], &jit_loss, 1e-5, &what("loss"));
        for (name, value) in leaves.iter_mut() {
            let new = &out[&format!("{name}_new")];
            assert_close(new, &jit.param(name).unwrap(), 1e-5, &what(name));
            *value = new.clone();
        }
    }
}

#[test]
fn tract_runs_the_sgd_step_like_the_jit() {
    check_steps_against_jit("sgd");
}

#[test]
fn tract_runs_the_adam_step_like_the_jit() {
    check_steps_against_jit("adam");
}

#[test]
fn emit_dot_of_the_seed_training_step() {
    let seed = repo("models/mlp.onnx");
    let dot = ok(&["compile", &seed, "--train", "--emit", "dot"]);
    insta::assert_snapshot!("dot_seed_train_sgd", dot);
    // -O0: the step as differentiation made it, nothing fused; inference graphs too.
    let o0 = ok(&["compile", &seed, "--train", "--emit", "dot", "-O0"]);
    assert!(o0.starts_with("digraph \"mlp_train\" {") && !o0.contains("fused."), "{o0}");
    let infer = ok(&["compile", &seed, "--emit", "dot"]);
    assert!(infer.contains("fused.dense[bias, act=relu]") && !infer.contains("update"), "{infer}");
}

#[test]
fn bad_output_paths_get_one_line_errors_and_leave_files_alone() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let seed = repo("models/mlp.onnx");

    let err = expect_error(&["export", &seed, "-o", s(&d.join("no/such/dir/out.onnx"))]);
    assert!(err.contains("no/such/dir") && err.contains("does not exist"), "{err}");

    // A path under a regular file cannot be written (by root either).
    let file = d.join("existing.onnx");
    std::fs::write(&file, b"keep me").unwrap();
    let err = expect_error(&["export", &seed, "--training", "-o", s(&file.join("out.onnx"))]);
    assert!(err.contains("existing.onnx") && err.contains("not a directory"), "{err}");
    let err = expect_error(&["export", &seed, "-o", s(d)]);
    assert!(err.contains("is a directory"), "{err}");

    // A failure after the work is done (here the opset) leaves the old file as it was.
    let err = expect_error(&["export", &seed, "-o", s(&file), "--opset", "5"]);
    assert!(err.contains("opset 5"), "{err}");
    let err = expect_error(&["export", &repo("models/no-such-model.onnx"), "-o", s(&file)]);
    assert!(err.contains("no-such-model.onnx"), "{err}");
    assert_eq!(std::fs::read(&file).unwrap(), b"keep me");
    let names: Vec<_> = std::fs::read_dir(d).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, ["existing.onnx"], "no temporary files are left behind");

    // Training flags without --training are a usage error.
    let o = nnc(&["export", &seed, "-o", s(&d.join("x.onnx")), "--optimizer", "adam"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--training"));
}
