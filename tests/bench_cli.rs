//! `nnc bench`: the report's figures and flags, through the CLI. Timings are only
//! checked to be present and positive, never compared: performance is measured in the
//! benches (`benches/`), not asserted in tests.

use std::process::{Command, Output};

fn nnc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nnc")).args(args).output().expect("nnc runs")
}

/// Runs `nnc bench ARGS --json` on the seed model and parses its one JSON object.
fn bench_json(args: &[&str]) -> serde_json::Value {
    let mut all = vec!["bench", "--steps", "3"];
    all.extend(args);
    all.push("--json");
    let o = nnc(&all);
    assert!(o.status.success(), "nnc {all:?}: {}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8(o.stdout).expect("utf-8");
    assert_eq!(text.lines().count(), 1, "one JSON object on one line: {text}");
    serde_json::from_str(text.trim()).expect("valid JSON")
}

/// Runs nnc expecting failure; returns its single stderr line.
fn expect_error(args: &[&str]) -> String {
    let o = nnc(args);
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert_eq!(o.status.code(), Some(1), "nnc {args:?}: exit code {:?}, stderr:\n{err}", o.status.code());
    assert!(!err.contains("panicked"), "nnc {args:?} panicked:\n{err}");
    assert_eq!(err.lines().count(), 1, "nnc {args:?}: expected a one-line error, got:\n{err}");
    err
}

#[test]
fn json_has_every_figure() {
    let v = bench_json(&["--batch", "5", "--threads", "1", "--kernels", "cranelift"]);
    for key in [
        "step_ms_median",
        "step_ms_min",
        "samples_per_s",
        "gflops",
        "compile_ms",
        "baseline_gflops",
        "ratio_to_baseline",
    ] {
        assert!(v[key].as_f64().is_some_and(|x| x > 0.0 && x.is_finite()), "{key} in {v}");
    }
    assert_eq!(v["kernels"], "cranelift-f32x4", "{v}");
    assert_eq!(v["batch"], 5);
    assert_eq!(v["threads"], 1);
    assert_eq!(v["optimizer"], "sgd");
    assert_eq!(v["mode"], "train");
    assert_eq!(v["steps_timed"], 3);
    assert!(v["kernel_count"].as_u64().is_some_and(|k| k > 0), "{v}");
    // The seed step's products: x·W1, h·W2 forward; dH, dW2, dW1 backward.
    let matmul = 2 * 5 * (784 * 256 + 256 * 10) + 2 * 5 * 256 * 10 * 2 + 2 * 5 * 784 * 256;
    assert_eq!(v["matmul_flops_per_step"].as_u64(), Some(matmul), "{v}");
    assert!(v["flops_per_step"].as_u64().unwrap() > matmul, "{v}");
    // The derived figures agree with the measured ones.
    let samples = v["samples_per_s"].as_f64().unwrap();
    let ms = v["step_ms_median"].as_f64().unwrap();
    assert!((samples * ms / 1e3 - 5.0).abs() < 1e-6, "{v}");
    let ratio = v["gflops"].as_f64().unwrap() / v["baseline_gflops"].as_f64().unwrap();
    assert!((ratio - v["ratio_to_baseline"].as_f64().unwrap()).abs() < 1e-9 * ratio, "{v}");
}

#[test]
fn threads_are_passed_through_and_reported() {
    assert_eq!(bench_json(&["--batch", "4", "--threads", "2"])["threads"], 2);
    // 0 (the default) is one thread per core, reported as the number used.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    assert_eq!(bench_json(&["--batch", "4"])["threads"].as_u64(), Some(cores.min(256)));
    assert_eq!(bench_json(&["--batch", "4", "--threads", "0"])["threads"].as_u64(), Some(cores.min(256)));
}

#[test]
fn optimizer_is_selectable() {
    let v = bench_json(&["--batch", "3", "--threads", "1", "--optimizer", "adam"]);
    assert_eq!(v["optimizer"], "adam");
    assert!(v["step_ms_median"].as_f64().is_some_and(|x| x > 0.0), "{v}");
}

#[test]
fn text_report_names_threads_and_baseline() {
    let o = nnc(&["bench", "--batch", "2", "--steps", "2", "--threads", "2"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("at batch 2") && text.contains("2 threads"), "{text}");
    assert!(text.contains("baseline: ndarray .dot()"), "{text}");
}

#[test]
fn bad_arguments_are_one_line_errors() {
    let err = expect_error(&["bench", "--batch", "0"]);
    assert!(err.starts_with("error: ") && err.contains("--batch") && err.contains("at least 1"), "{err}");
    let err = expect_error(&["bench", "--steps", "0"]);
    assert!(err.contains("at least 1"), "{err}");
    let err = expect_error(&["bench", "--threads", "100000"]);
    assert!(err.contains("--threads 100000") && err.contains("at most 256"), "{err}");
}

#[test]
fn bad_thread_counts_are_clap_errors() {
    // Not a number: clap's usage error (exit code 2), not a panic.
    let o = nnc(&["bench", "--threads", "-1"]);
    assert_eq!(o.status.code(), Some(2), "{}", String::from_utf8_lossy(&o.stderr));
    let o = nnc(&["bench", "--threads", "two"]);
    assert_eq!(o.status.code(), Some(2), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn infer_times_the_inference_pass() {
    let v = bench_json(&["--infer", "--batch", "5", "--threads", "1"]);
    assert_eq!(v["mode"], "infer", "{v}");
    assert!(v.get("optimizer").is_none(), "{v}");
    for key in ["step_ms_median", "step_ms_min", "samples_per_s", "gflops", "compile_ms", "baseline_gflops"] {
        assert!(v[key].as_f64().is_some_and(|x| x > 0.0 && x.is_finite()), "{key} in {v}");
    }
    // The seed model's two dense layers: x·W1 and h·W2, and nothing else.
    let matmul = 2 * 5 * (784 * 256 + 256 * 10);
    assert_eq!(v["matmul_flops_per_step"].as_u64(), Some(matmul), "{v}");
    assert_eq!(v["kernel_count"], 2, "{v}");
    assert_eq!(bench_json(&["--batch", "5"])["mode"], "train");
    let o = nnc(&["bench", "--infer", "--batch", "2", "--steps", "2"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("inference of "), "{}", String::from_utf8_lossy(&o.stdout));
}
