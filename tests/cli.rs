//! End-to-end tests of the `nnc` command line: the happy paths on the committed models,
//! and bad input of every kind giving a one-line error, a non-zero exit and no panic.

use nnc_onnx::proto::{tensor_shape_proto::dimension::Value as DimValue, type_proto, ModelProto};
use prost::Message;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn nnc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nnc")).args(args).output().expect("nnc runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

fn repo(path: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path).to_string_lossy().to_string()
}

/// Runs nnc expecting failure; returns its single stderr line.
fn expect_error(args: &[&str]) -> String {
    let o = nnc(args);
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(!o.status.success(), "nnc {args:?} should fail; stdout:\n{}", stdout(&o));
    assert_eq!(o.status.code(), Some(1), "nnc {args:?}: exit code {:?}, stderr:\n{err}", o.status.code());
    assert!(!err.contains("panicked"), "nnc {args:?} panicked:\n{err}");
    assert_eq!(err.lines().count(), 1, "nnc {args:?}: expected a one-line error, got:\n{err}");
    assert!(err.starts_with("error: "), "{err}");
    err
}

#[test]
fn compile_summarizes_the_seed_model() {
    // The Cranelift kernels, named: `auto` depends on the CPU.
    let o = nnc(&["compile", &repo("models/mlp.onnx"), "--kernels", "cranelift"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    insta::assert_snapshot!(stdout(&o));
}

/// The summary of a CNN's training step names the kernel of every convolution and
/// pooling, with a fused convolution's epilogue (a snapshot, with the portable kernels).
#[test]
fn compile_names_the_kernel_of_each_convolution() {
    let model = repo("tests/fixtures/cnn/lenet5.ts.onnx");
    let o = nnc(&["compile", &model, "--train", "--kernels", "cranelift"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = stdout(&o);
    let at = text.find("convolution and pooling kernels:").expect("the kernels are listed");
    insta::assert_snapshot!(&text[at..]);
}

#[test]
fn emit_ir_of_committed_models() {
    for (name, model) in [("seed", "models/mlp.onnx"), ("deep", "models/mlp-deep.onnx")] {
        let o = nnc(&["compile", &repo(model), "--emit", "ir"]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        insta::assert_snapshot!(format!("emit_ir_{name}"), stdout(&o));
    }
}

#[test]
fn new_mlp_is_deterministic_and_matches_the_committed_seed_model() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("m.onnx");
    let o = nnc(&[
        "new-mlp",
        "--layers",
        "784,256,10",
        "--activation",
        "relu",
        "--init",
        "he",
        "--seed",
        "0",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let committed = std::fs::read(repo("models/mlp.onnx")).unwrap();
    assert_eq!(std::fs::read(&out).unwrap(), committed, "models/mlp.onnx is what `nnc new-mlp` makes");
}

/// `--layout gemm` stores each weight `[out, in]`, the transpose of the default
/// layout's same draw, multiplied by a `Gemm` with `transB = 1`; both models compute
/// the same function (the interpreter's outputs agree to rounding).
#[test]
fn new_mlp_in_the_gemm_layout_stores_transposed_weights() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    for (layout, name) in [("matmul", "matmul.onnx"), ("gemm", "gemm.onnx")] {
        let o = nnc(&["new-mlp", "--layers", "8,16,3", "--seed", "4", "--layout", layout, "-o", &path(name)]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let read = |name: &str| ModelProto::decode(&std::fs::read(path(name)).unwrap()[..]).unwrap();
    let (matmul, gemm) = (read("matmul.onnx"), read("gemm.onnx"));
    let ops = |m: &ModelProto| m.graph.as_ref().unwrap().node.iter().map(|n| n.op_type.clone()).collect::<Vec<_>>();
    assert_eq!(ops(&matmul), ["MatMul", "Add", "Relu", "MatMul", "Add"]);
    assert_eq!(ops(&gemm), ["Gemm", "Add", "Relu", "Gemm", "Add"]);
    for node in gemm.graph.as_ref().unwrap().node.iter().filter(|n| n.op_type == "Gemm") {
        let trans_b = node.attribute.iter().find(|a| a.name == "transB").map(|a| a.i);
        assert_eq!(trans_b, Some(1), "{node:?}");
    }
    let (gm, gg) = (
        nnc_onnx::import_file(Path::new(&path("matmul.onnx"))).unwrap(),
        nnc_onnx::import_file(Path::new(&path("gemm.onnx"))).unwrap(),
    );
    for (layer, [fan_in, fan_out]) in [("fc1", [8, 16]), ("fc2", [16, 3])] {
        let name = format!("{layer}.weight");
        let w = |g: &nnc_ir::Graph| match &g.value(g.find(&name).unwrap()).op {
            nnc_ir::Op::Param { init: Some(t) } => t.as_f32().unwrap().clone(),
            op => panic!("{name} is {op:?}"),
        };
        let (wm, wg) = (w(&gm), w(&gg));
        assert_eq!(wm.shape(), [fan_in, fan_out]);
        assert_eq!(wg.shape(), [fan_out, fan_in]);
        assert_eq!(wg, wm.t(), "{name}");
    }
    let x: Vec<f32> = (0..5 * 8).map(|i| ((i * 37) % 19) as f32 / 19.0 - 0.5).collect();
    let feeds = [("input".to_string(), nnc_ir::Tensor::from_f32(&[5, 8], x).unwrap())].into_iter().collect();
    let (ym, yg) = (nnc_interp::run(&gm, &feeds).unwrap(), nnc_interp::run(&gg, &feeds).unwrap());
    let (ym, yg) = (ym[0].as_f32().unwrap(), yg[0].as_f32().unwrap());
    let worst = ym.iter().zip(yg.iter()).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
    assert!(worst <= 1e-5, "the layouts' outputs differ by {worst}");
}

#[test]
fn run_writes_the_interpreter_outputs_as_npy() {
    let dir = tempfile::tempdir().unwrap();
    let x: Vec<f32> = (0..3 * 784).map(|i| ((i * 37) % 255) as f32 / 255.0).collect();
    let input = nnc_ir::Tensor::from_f32(&[3, 784], x).unwrap();
    let x_path = dir.path().join("x.npy");
    let y_path = dir.path().join("y.npy");
    nnc::npy::write_npy(&x_path, &input).unwrap();
    let graph = nnc_onnx::import_file(Path::new(&repo("models/mlp.onnx"))).unwrap();
    let feeds = [("input".to_string(), input)].into_iter().collect();
    let expected = nnc_interp::run(&graph, &feeds).unwrap().remove(0);
    let expected = expected.as_f32().unwrap();
    for backend in ["interp", "jit"] {
        let (x, y) = (x_path.to_str().unwrap(), y_path.to_str().unwrap());
        let o = nnc(&["run", &repo("models/mlp.onnx"), "--backend", backend, "--input", x, "--output", y]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let got = nnc::npy::read_npy(&y_path).unwrap();
        assert_eq!(got.shape(), &[3, 10]);
        let got = got.as_f32().unwrap();
        // The interpreter is the oracle; the JIT sums in another order (≤ 1e-5 of the scale).
        let scale = expected.iter().fold(1.0f32, |m, v| m.max(v.abs()));
        let worst = got.iter().zip(expected.iter()).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
        let bound = if backend == "interp" { 0.0 } else { 1e-5 * scale };
        assert!(worst <= bound, "{backend}: differs from the interpreter by {worst}");
    }
}

/// The seed model decoded, to be corrupted by the tests below.
fn seed_proto() -> ModelProto {
    ModelProto::decode(&std::fs::read(repo("models/mlp.onnx")).unwrap()[..]).unwrap()
}

fn write_model(dir: &Path, name: &str, model: &ModelProto) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, model.encode_to_vec()).unwrap();
    path
}

fn set_input_dim(model: &mut ModelProto, axis: usize, value: i64) {
    let input = &mut model.graph.as_mut().unwrap().input[0];
    let Some(type_proto::Value::TensorType(t)) = input.r#type.as_mut().unwrap().value.as_mut() else {
        panic!("tensor input")
    };
    t.shape.as_mut().unwrap().dim[axis].value = Some(DimValue::DimValue(value));
}

#[test]
fn bad_models_get_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let good = std::fs::read(repo("models/mlp.onnx")).unwrap();

    let missing = d.join("nope.onnx");
    let err = expect_error(&["compile", missing.to_str().unwrap()]);
    assert!(err.contains("nope.onnx") && err.contains("No such file"), "{err}");

    let empty = d.join("empty.onnx");
    std::fs::write(&empty, b"").unwrap();
    assert!(expect_error(&["compile", empty.to_str().unwrap()]).contains("empty"));

    let truncated = d.join("truncated.onnx");
    std::fs::write(&truncated, &good[..good.len() / 2]).unwrap();
    assert!(expect_error(&["compile", truncated.to_str().unwrap()]).contains("not a valid ONNX model"));

    let random = d.join("random.onnx");
    let bytes: Vec<u8> = (0..4096u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    std::fs::write(&random, bytes).unwrap();
    let err = expect_error(&["compile", random.to_str().unwrap()]);
    assert!(err.contains("random.onnx"), "{err}");

    // Every unsupported op is listed at once, with node name and opset.
    let mut m = seed_proto();
    let nodes = &mut m.graph.as_mut().unwrap().node;
    nodes[0].op_type = "LRN".into();
    nodes[0].name = "norm1".into();
    nodes[2].op_type = "LpPool".into();
    nodes[2].name = "pool".into();
    let err = expect_error(&["compile", write_model(d, "unsupported.onnx", &m).to_str().unwrap()]);
    assert!(err.contains("unsupported ONNX ops"), "{err}");
    assert!(err.contains("\"norm1\" LRN (opset") && err.contains("\"pool\" LpPool (opset"), "{err}");

    // The input no longer matches the first weight matrix.
    let mut m = seed_proto();
    set_input_dim(&mut m, 1, 785);
    let err = expect_error(&["compile", write_model(d, "mismatch.onnx", &m).to_str().unwrap()]);
    assert!(err.contains("785") && err.contains("784"), "{err}");

    // Gemm with transB=1 over the seed's [784, 256] weight contracts 784 with 256.
    let mut m = seed_proto();
    let g = m.graph.as_mut().unwrap();
    let (bias_out, add_index) = {
        let add = g.node.iter().position(|n| n.op_type == "Add").unwrap();
        (g.node[add].output[0].clone(), add)
    };
    let bias = g.node[add_index].input[1].clone();
    let gemm = &mut g.node[0];
    gemm.op_type = "Gemm".into();
    gemm.name = "fc1_gemm".into();
    gemm.input.push(bias);
    gemm.output[0] = bias_out;
    gemm.attribute.push(nnc_onnx::proto::AttributeProto {
        name: "transB".into(),
        r#type: nnc_onnx::proto::attribute_proto::AttributeType::Int as i32,
        i: 1,
        ..Default::default()
    });
    g.node.remove(add_index);
    let err = expect_error(&["compile", write_model(d, "gemm.onnx", &m).to_str().unwrap()]);
    assert!(err.contains("fc1_gemm") && err.contains("Gemm") && err.contains("784") && err.contains("256"), "{err}");

    // A cycle: the first node consumes the last node's output.
    let mut m = seed_proto();
    let g = m.graph.as_mut().unwrap();
    let last_out = g.node.last().unwrap().output[0].clone();
    g.node[0].input[0] = last_out;
    let err = expect_error(&["compile", write_model(d, "cycle.onnx", &m).to_str().unwrap()]);
    assert!(err.contains("cycle"), "{err}");

    // A weight the graph uses is gone.
    let mut m = seed_proto();
    let g = m.graph.as_mut().unwrap();
    let removed = g.initializer.remove(0).name;
    let err = expect_error(&["compile", write_model(d, "missing-init.onnx", &m).to_str().unwrap()]);
    assert!(err.contains(&removed), "{err}");

    // An absurd dimension is refused before anything is allocated.
    let mut m = seed_proto();
    set_input_dim(&mut m, 1, 1 << 40);
    let err = expect_error(&["compile", write_model(d, "huge.onnx", &m).to_str().unwrap()]);
    assert!(err.contains("1099511627776"), "{err}");
}

#[test]
fn bad_run_inputs_get_one_line_errors_and_no_output_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let x = d.join("x.npy");
    nnc::npy::write_npy(&x, &nnc_ir::Tensor::from_f32(&[2, 783], vec![0.5; 2 * 783]).unwrap()).unwrap();
    let y = d.join("y.npy");
    let err = expect_error(&[
        "run",
        &repo("models/mlp.onnx"),
        "--input",
        x.to_str().unwrap(),
        "--output",
        y.to_str().unwrap(),
    ]);
    assert!(err.contains("input") && err.contains("783"), "{err}");
    assert!(!y.exists(), "no output file after a failed run");

    let not_npy = d.join("bad.npy");
    std::fs::write(&not_npy, b"definitely not numpy").unwrap();
    let err = expect_error(&["run", &repo("models/mlp.onnx"), "--input", not_npy.to_str().unwrap()]);
    assert!(err.contains("bad.npy"), "{err}");

    let err = expect_error(&["new-mlp", "-o", d.join("no/such/dir/m.onnx").to_str().unwrap()]);
    assert!(err.contains("no/such/dir"), "{err}");
    let err = expect_error(&["new-mlp", "--layers", "784", "-o", d.join("m.onnx").to_str().unwrap()]);
    assert!(err.contains("at least two"), "{err}");
    assert!(!d.join("m.onnx").exists());
}

#[test]
fn training_step_ir_of_the_seed_model() {
    for optimizer in ["sgd", "adam"] {
        let o = nnc(&["compile", &repo("models/mlp.onnx"), "--train", "--optimizer", optimizer, "--emit", "train-ir"]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        insta::assert_snapshot!(format!("train_ir_seed_{optimizer}"), stdout(&o));
    }
    let o = nnc(&["compile", &repo("models/mlp.onnx"), "--train", "--kernels", "cranelift"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    insta::assert_snapshot!("train_summary_seed_sgd", stdout(&o));
}

/// A small separable problem as NPY: class = which of the first 3 features is largest.
fn write_toy_data(dir: &Path, n: usize, features: usize) -> (PathBuf, PathBuf) {
    let x: Vec<f32> = (0..n * features).map(|i| ((i * 7919) % 101) as f32 / 101.0).collect();
    let labels: Vec<i64> = (0..n)
        .map(|r| {
            let row = &x[r * features..r * features + 3];
            (0..3).max_by(|&a, &b| row[a].total_cmp(&row[b])).unwrap() as i64
        })
        .collect();
    let xp = dir.join("x.npy");
    let yp = dir.join("y.npy");
    nnc::npy::write_npy(&xp, &nnc_ir::Tensor::from_f32(&[n, features], x).unwrap()).unwrap();
    nnc::npy::write_npy(&yp, &nnc_ir::Tensor::from_i64(&[n], labels).unwrap()).unwrap();
    (xp, yp)
}

#[test]
fn train_on_npy_with_the_interpreter_writes_a_better_model() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let model = d.join("m.onnx");
    let o = nnc(&["new-mlp", "--layers", "8,16,3", "--seed", "1", "-o", model.to_str().unwrap()]);
    assert!(o.status.success());
    let (xp, yp) = write_toy_data(d, 120, 8);
    let out = d.join("trained.onnx");
    let args = [
        "train",
        model.to_str().unwrap(),
        "--backend",
        "interp",
        "--inputs",
        xp.to_str().unwrap(),
        "--labels",
        yp.to_str().unwrap(),
        "--batch",
        "20",
        "--steps",
        "300",
        "--lr",
        "0.5",
        "--optimizer",
        "sgd",
        "--no-shuffle",
        "-q",
        "--out",
        out.to_str().unwrap(),
    ];
    let o = nnc(&args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // The trained model classifies the training data far better than chance (1/3).
    let before = accuracy(&model, &xp, &yp);
    let after = accuracy(&out, &xp, &yp);
    assert!(after > 0.8 && after > before + 0.2, "accuracy before {before}, after {after}");
    // Same seed, same data, same flags: bit-identical result.
    let out2 = d.join("trained2.onnx");
    let mut args2 = args;
    *args2.last_mut().unwrap() = out2.to_str().unwrap();
    assert!(nnc(&args2).status.success());
    assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&out2).unwrap());
}

fn accuracy(model: &Path, x: &Path, y: &Path) -> f64 {
    let g = nnc_onnx::import_file(model).unwrap();
    let feeds = [("input".to_string(), nnc::npy::read_npy(x).unwrap())].into_iter().collect();
    let logits = nnc_interp::run(&g, &feeds).unwrap().remove(0);
    let logits = logits.as_f32().unwrap();
    let labels = nnc::npy::read_npy(y).unwrap();
    let labels = labels.as_i64().unwrap();
    let rows = logits.shape()[0];
    let correct = (0..rows)
        .filter(|&r| {
            let row: Vec<f32> = (0..logits.shape()[1]).map(|c| logits[[r, c]]).collect();
            let best = (0..row.len()).max_by(|&a, &b| row[a].total_cmp(&row[b])).unwrap();
            best as i64 == labels[[r]]
        })
        .count();
    correct as f64 / rows as f64
}

#[test]
fn bad_training_input_gets_one_line_errors_and_no_output_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = d.join("out.onnx");
    let out_s = out.to_str().unwrap().to_string();
    let (xp, _) = write_toy_data(d, 10, 784);
    let bad_labels = d.join("bad_labels.npy");
    nnc::npy::write_npy(&bad_labels, &nnc_ir::Tensor::from_i64(&[10], vec![0, 1, 2, 3, 4, 5, 6, 7, 8, 12]).unwrap())
        .unwrap();
    let base = ["train", "--backend", "interp", "--steps", "2", "-q", "--out", &out_s];
    let with = |extra: &[&str]| -> Vec<String> { base.iter().chain(extra).map(|s| s.to_string()).collect() };
    let run = |args: Vec<String>| expect_error(&args.iter().map(String::as_str).collect::<Vec<_>>());

    let err = run(with(&["--inputs", xp.to_str().unwrap(), "--labels", bad_labels.to_str().unwrap()]));
    assert!(err.contains("12") && err.contains("label"), "{err}");

    let (small_x, small_y) = write_toy_data(
        &{
            let sub = d.join("small");
            std::fs::create_dir(&sub).unwrap();
            sub
        },
        10,
        5,
    );
    let err = run(with(&["--inputs", small_x.to_str().unwrap(), "--labels", small_y.to_str().unwrap()]));
    assert!(err.contains("784") && err.contains('5'), "{err}");

    let empty_dir = d.join("no-data");
    std::fs::create_dir(&empty_dir).unwrap();
    let err = run(with(&["--data", empty_dir.to_str().unwrap()]));
    assert!(err.contains("train-images-idx3-ubyte"), "{err}");

    let err = run(with(&["--inputs", xp.to_str().unwrap(), "--labels", xp.to_str().unwrap()]));
    assert!(err.contains("label"), "{err}");

    let err = expect_error(&["train", "--steps", "1", "--out", d.join("missing/out.onnx").to_str().unwrap()]);
    assert!(err.contains("does not exist"), "{err}");
    assert!(!out.exists(), "no --out file after a failed run");
}

#[test]
fn emit_clif_shows_vector_fma_kernels_and_survives_a_closed_pipe() {
    // The portable kernels: with assembled ones, the products' CLIF only calls tiles.
    let o = nnc(&["compile", &repo("models/mlp.onnx"), "--train", "--emit", "clif", "--kernels", "cranelift"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let clif = stdout(&o);
    assert!(clif.contains("function "), "{}", &clif[..clif.len().min(400)]);
    assert!(clif.contains(" = fma ") && clif.contains("f32x4"), "the matmul kernels use f32x4 FMA");
    // `nnc compile --emit clif | head -1` must not panic on the closed pipe.
    let mut child = Command::new(env!("CARGO_BIN_EXE_nnc"))
        .args(["compile", &repo("models/mlp.onnx"), "--emit", "clif"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn optimizer_flags() {
    let seed = repo("models/mlp.onnx");
    let o = nnc(&["compile", &seed, "--train", "--emit", "ir-opt"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    insta::assert_snapshot!("ir_opt_seed_sgd", stdout(&o));
    // -O0 leaves the training step as differentiation made it.
    let o0 = nnc(&["compile", &seed, "--train", "--emit", "ir-opt", "-O0"]);
    let unoptimized = nnc(&["compile", &seed, "--emit", "train-ir"]);
    assert!(o0.status.success());
    assert_eq!(stdout(&o0), stdout(&unoptimized));
    // --passes runs exactly those; --dump-after prints the graph after that pass.
    let o =
        nnc(&["compile", &seed, "--train", "--emit", "ir-opt", "--passes", "fuse_dense", "--dump-after", "fuse_dense"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = stdout(&o);
    assert!(text.starts_with("; after fuse_dense (run 1)\n"), "{text}");
    assert!(text.contains("fused.dense") && !text.contains("fused.softmax_ce"), "{text}");
    let err = expect_error(&["compile", &seed, "--emit", "ir-opt", "--passes", "fuse_dense,bogus"]);
    assert!(err.contains("unknown pass 'bogus'"), "{err}");
    let o = nnc(&["compile", &seed, "--train", "--emit", "opt-report"]);
    assert!(o.status.success());
    assert!(stdout(&o).contains("kernels per step: 37 -> 10"), "{}", stdout(&o));
}

#[test]
fn bench_reports_json_figures() {
    let o = nnc(&["bench", &repo("models/mlp.onnx"), "--batch", "7", "--steps", "3", "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    for key in ["step_ms_median", "samples_per_s", "gflops", "compile_ms"] {
        assert!(v[key].as_f64().is_some_and(|x| x > 0.0), "{key} in {v}");
    }
    let bits = [("cranelift-f32x4", 128), ("avx2-asm", 256), ("avx512-asm", 512)];
    let (_, width) = bits.iter().find(|(k, _)| v["kernels"] == *k).unwrap_or_else(|| panic!("kernels in {v}"));
    assert_eq!(v["vector_bits"], *width, "{v}");
    // The peak is measured on x86-64 (and positive); the step cannot beat it.
    if cfg!(target_arch = "x86_64") {
        let peak = v["peak_gflops"].as_f64().unwrap();
        let percent = v["percent_of_peak"].as_f64().unwrap();
        assert!(peak > 0.0 && percent > 0.0, "{v}");
        assert!((percent - 100.0 * v["gflops"].as_f64().unwrap() / peak).abs() < 1e-6, "{v}");
    }
    assert_eq!(v["batch"], 7);
    // 2·7·(784·256 + 256·10) forward plus the backward products, from the IR.
    assert!(v["flops_per_step"].as_u64().unwrap() > 2 * 2 * 7 * (784 * 256 + 256 * 10), "{v}");
    let err = expect_error(&["bench", "--batch", "0"]);
    assert!(err.contains("at least 1"), "{err}");
}

/// Every stage of the pipeline is an `--emit` name, beside the older names of the same
/// output; `--emit lowered` prints the backend's program, kernel for kernel as the
/// optimizer's report counts them.
#[test]
fn emit_names_the_stages_of_the_pipeline() {
    let seed = repo("models/mlp.onnx");
    let same = |a: &[&str], b: &[&str]| {
        let (x, y) = (nnc(a), nnc(b));
        assert!(x.status.success() && y.status.success(), "{a:?} / {b:?}");
        assert_eq!(stdout(&x), stdout(&y), "{a:?} / {b:?}");
    };
    same(&["compile", &seed, "--emit", "import"], &["compile", &seed, "--emit", "ir"]);
    same(&["compile", &seed, "--emit", "differentiate"], &["compile", &seed, "--emit", "train-ir"]);
    same(&["compile", &seed, "--train", "--emit", "optimize"], &["compile", &seed, "--train", "--emit", "ir-opt"]);
    same(&["compile", &seed, "--train", "--emit", "lower"], &["compile", &seed, "--train", "--emit", "lowered"]);
    same(
        &["compile", &seed, "--emit", "codegen", "--kernels", "cranelift"],
        &["compile", &seed, "--emit", "clif", "--kernels", "cranelift"],
    );
    let lowered = stdout(&nnc(&["compile", &seed, "--train", "--emit", "lowered", "--batch", "1"]));
    assert!(lowered.starts_with("program: 10 kernels, "), "{lowered}");
    assert!(lowered.contains("k3_dense (step 0): %fc1.act = %input·%fc1.weight: [N, 784]·[784, 256]"), "{lowered}");
    assert!(lowered.contains("at N=1: M = 1, along K"), "{lowered}");
    let report = stdout(&nnc(&["compile", &seed, "--train", "--emit", "opt-report"]));
    assert!(report.contains("kernels per step: 37 -> 10"), "{report}");
}
