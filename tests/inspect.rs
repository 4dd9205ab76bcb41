//! `nnc compile --emit clif` and `--emit asm`, what users read to see what the compiler
//! did, on a tiny 4-3-2 MLP (as `nnc new-mlp --layers 4,3,2` makes it):
//!
//! - `--emit clif` of inference is a reviewed snapshot. The CLIF depends on the host only
//!   through FMA (without it the matrix tiles use mul + add) and the calling convention,
//!   so the snapshot is compared on x86-64 Linux hosts with FMA; everywhere the text
//!   must be the same on every run. Of the training step, the list of generated
//!   functions (the fused kernels) is a snapshot.
//! - `--emit asm` depends on every ISA extension of the host (AVX, FMA, ...), so it is
//!   checked for structure: the functions of `--emit clif` in the same order, offsets
//!   that grow, calls by name, no load address leaking into the text (so it is the same
//!   on every run), FMA instructions when the host has FMA, and a closed pipe is no panic.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn nnc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nnc")).args(args).output().expect("nnc runs")
}

fn ok(args: &[&str]) -> String {
    let o = nnc(args);
    assert!(o.status.success(), "nnc {args:?} failed:\n{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).expect("UTF-8 output")
}

/// The 4-3-2 MLP (ReLU, He init, seed 0), written into `dir`.
fn tiny_mlp(dir: &Path) -> PathBuf {
    let path = dir.join("tiny.onnx");
    let o = nnc(&["new-mlp", "--layers", "4,3,2", "--seed", "0", "-o", path.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    path
}

/// Runs `nnc compile MODEL ARGS...` twice and checks both runs print the same text.
fn compile_twice(model: &Path, args: &[&str]) -> String {
    let mut full = vec!["compile", model.to_str().unwrap()];
    full.extend_from_slice(args);
    let first = ok(&full);
    let second = ok(&full);
    assert!(first == second, "nnc {full:?} differs between two runs");
    first
}

/// The function names of `--emit clif` output (`; name` before each function).
fn clif_functions(clif: &str) -> Vec<String> {
    clif.lines().filter_map(|l| l.strip_prefix("; ")).map(str::to_string).collect()
}

fn host_has_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    return std::is_x86_feature_detected!("fma");
    #[cfg(not(target_arch = "x86_64"))]
    return false;
}

/// Whether the AVX2 kernels run here (`--kernels avx2`).
fn host_has_avx2_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    return std::is_x86_feature_detected!("avx2") && host_has_fma();
    #[cfg(not(target_arch = "x86_64"))]
    return false;
}

#[test]
fn emit_clif_of_a_tiny_mlp() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_mlp(dir.path());
    // The portable kernels: their micro-kernel is CLIF too, and the same on every CPU.
    let clif = compile_twice(&model, &["--emit", "clif", "--kernels", "cranelift"]);
    assert_eq!(clif_functions(&clif), ["k3_dense_pack", "k3_dense", "k6_dense_pack", "k6_dense", "step"]);
    if cfg!(all(target_arch = "x86_64", target_os = "linux")) && host_has_fma() {
        insta::assert_snapshot!("clif_tiny_mlp", clif);
    } else {
        eprintln!("the clif_tiny_mlp snapshot is of x86-64 Linux hosts with FMA; not compared here");
    }
}

#[test]
fn emit_clif_of_the_training_step_has_the_fused_kernels() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_mlp(dir.path());
    let clif = compile_twice(&model, &["--emit", "clif", "--train"]);
    let functions = clif_functions(&clif);
    // One function (or a pack phase and a compute phase) per fused kernel of the
    // optimized step: dense layers, softmax cross-entropy, the ReLU-gradient product,
    // SGD in the weight gradients' epilogue and for the biases.
    for family in ["_dense", "_softmax_ce", "_dense_relu_grad", "_dense_update", "_update"] {
        let n = functions.iter().filter(|f| f.ends_with(family)).count();
        assert!(n > 0, "no k*{family} function in {functions:?}");
    }
    assert_eq!(functions.last().map(String::as_str), Some("step"));
    insta::assert_snapshot!("clif_train_tiny_mlp_functions", functions.join("\n"));
}

#[test]
fn wide_products_get_a_column_split_variant_the_step_can_call() {
    // With a hidden layer two AVX2 panels wide, the products whose A is the smaller
    // operand (the forward pass, the ReLU gradient, the first weight gradient) get a
    // `_cols` function splitting by column panels, which the step hands to the thread
    // pool instead of the rows one when it has threads; the one-panel output layer's
    // products do not.
    if !host_has_avx2_fma() {
        eprintln!("needs AVX2+FMA (the column split needs tiles that fuse the epilogues); not run here");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("wide.onnx");
    ok(&["new-mlp", "--layers", "8,32,2", "--seed", "0", "-o", model.to_str().unwrap()]);
    let args = ["--train", "--kernels", "avx2"];
    let clif = compile_twice(&model, &[&["--emit", "clif"][..], &args].concat());
    let functions = clif_functions(&clif);
    let columns: Vec<&str> = functions.iter().map(String::as_str).filter(|f| f.ends_with("_cols")).collect();
    assert_eq!(columns, ["k3_dense_cols", "k11_dense_relu_grad_cols", "k14_dense_update_cols"]);
    let asm = compile_twice(&model, &[&["--emit", "asm"][..], &args].concat());
    for f in columns {
        assert!(asm.contains(&format!("lea rsi, [{f}]")), "the step passes {f} to nnc_parallel_for");
    }
    // With 64 inputs the first weight gradient's static M (64) exceeds its N (32): the
    // step would never pick its column variant, so it has none.
    let deep = dir.path().join("deep.onnx");
    ok(&["new-mlp", "--layers", "64,32,2", "--seed", "0", "-o", deep.to_str().unwrap()]);
    let deep_clif = compile_twice(&deep, &[&["--emit", "clif"][..], &args].concat());
    let deep_columns: Vec<String> = clif_functions(&deep_clif).into_iter().filter(|f| f.ends_with("_cols")).collect();
    assert_eq!(deep_columns, ["k3_dense_cols", "k11_dense_relu_grad_cols"]);
    // Every tile assembled is called: none is defined for code Cranelift then removes
    // (such as the partial panel of an N of whole panels).
    for tile in asm.lines().filter_map(|l| l.strip_prefix("; nnc_avx2_tile_")) {
        let name = tile.split(' ').next().unwrap();
        assert!(asm.contains(&format!("call nnc_avx2_tile_{name}\n")), "nnc_avx2_tile_{name} is never called");
    }
}

#[test]
fn few_rows_of_a_large_weight_matrix_split_along_k() {
    // The seed's forward product (784×256 weights) gets a `_depth` function, whose
    // work items are eight ranges of K, and a `_depth_sum` that adds their partial
    // results and applies the bias and ReLU; the step hands the first to the pool and
    // calls the second itself. No other product of the seed step is split along K
    // (the output layer's 256×10 weights are small).
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("seed.onnx");
    ok(&["new-mlp", "-o", model.to_str().unwrap()]);
    for kernels in ["cranelift", "auto"] {
        let args = ["--train", "--kernels", kernels];
        let clif = compile_twice(&model, &[&["--emit", "clif"][..], &args].concat());
        let depth: Vec<String> = clif_functions(&clif).into_iter().filter(|f| f.contains("_depth")).collect();
        assert_eq!(depth, ["k3_dense_depth", "k3_dense_depth_sum"], "--kernels {kernels}");
        let asm = compile_twice(&model, &[&["--emit", "asm"][..], &args].concat());
        assert!(asm.contains("lea rsi, [k3_dense_depth]"), "the step passes k3_dense_depth to nnc_parallel_for");
        assert!(asm.contains("call k3_dense_depth_sum\n"), "the step calls k3_dense_depth_sum");
    }
}

#[test]
fn few_rows_of_a_large_transposed_weight_matrix_are_dot_products() {
    // With weights stored `[out, in]` (`--layout gemm`), the forward product gets
    // `_dots` (work items: groups of columns, each a dot product of an input row and
    // a stored weight row) and `_dots_finish` (bias and ReLU); the step hands the
    // first to the pool and calls the second. Nothing is split along K: the dot
    // products take those rows.
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("gemm.onnx");
    ok(&["new-mlp", "--layout", "gemm", "-o", model.to_str().unwrap()]);
    for kernels in ["cranelift", "auto"] {
        let args = ["--train", "--kernels", kernels];
        let clif = compile_twice(&model, &[&["--emit", "clif"][..], &args].concat());
        let functions = clif_functions(&clif);
        let dots: Vec<&String> = functions.iter().filter(|f| f.contains("_dots")).collect();
        assert_eq!(dots, ["k3_dense_dots", "k3_dense_dots_finish"], "--kernels {kernels}");
        assert!(!functions.iter().any(|f| f.contains("_depth")), "--kernels {kernels}: {functions:?}");
        let asm = compile_twice(&model, &[&["--emit", "asm"][..], &args].concat());
        assert!(asm.contains("lea rsi, [k3_dense_dots]"), "the step passes k3_dense_dots to nnc_parallel_for");
        assert!(asm.contains("call k3_dense_dots_finish\n"), "the step calls k3_dense_dots_finish");
    }
}

#[test]
fn the_assembled_tiles_pack_the_seed_steps_operands_as_they_read_them() {
    // The forward product reads W1 in place: the first row tile of each panel copies
    // it for the others (`_copy_b`). The first weight gradient reads X transposed and
    // dH in place: its first panel's tiles copy X (`_copy_a`), the first of them dH
    // too (`_copy_ab`), and the other panels' first tiles copy dH. Neither operand
    // then needs a pass of its own.
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("seed.onnx");
    ok(&["new-mlp", "-o", model.to_str().unwrap()]);
    if !host_has_avx2_fma() {
        eprintln!("skipped: no AVX2+FMA");
        return;
    }
    let asm = compile_twice(&model, &["--emit", "asm", "--train", "--kernels", "avx2"]);
    for tile in ["_bias_relu_copy_b (", "_sgd_copy_ab (", "_sgd_copy_a (", "_sgd_copy_b ("] {
        assert!(asm.contains(tile), "no tile{tile}...) in --emit asm");
    }
}

/// Checks one `--emit asm` text against the functions of `--emit clif`.
fn check_asm(asm: &str, functions: &[String]) {
    let mut names = Vec::new();
    let mut current: Option<(String, u64, Option<u64>)> = None; // name, size, last offset
    for line in asm.lines() {
        if let Some(header) = line.strip_prefix("; ") {
            // `; <name> (<size> bytes)`
            let (name, size) = header.split_once(" (").unwrap_or_else(|| panic!("bad header {line:?}"));
            let size: u64 = size.strip_suffix(" bytes)").and_then(|s| s.parse().ok()).unwrap();
            assert!(size > 0, "{line}");
            names.push(name.to_string());
            current = Some((name.to_string(), size, None));
        } else if let Some(body) = line.strip_prefix("  ") {
            let (name, size, last) = current.as_mut().unwrap_or_else(|| panic!("{line:?} before any header"));
            if body == "; constants" {
                continue;
            }
            let (offset, text) = body.split_once(": ").unwrap_or_else(|| panic!("bad line {line:?}"));
            let offset = u64::from_str_radix(offset, 16).unwrap_or_else(|_| panic!("bad offset in {line:?}"));
            assert!(offset < *size && last.is_none_or(|l| l < offset), "{name}: offset out of order: {line:?}");
            *last = Some(offset);
            assert!(!text.is_empty() && !text.starts_with("(bad)"), "{name}: {line:?}");
            // Every address is a function offset or a name: nothing of 9+ hex digits.
            let long_hex = text.split("0x").skip(1).any(|h| h.chars().take_while(char::is_ascii_hexdigit).count() > 8);
            assert!(!long_hex, "{name}: an absolute address in {line:?}");
        } else {
            assert!(line.is_empty(), "unexpected line {line:?}");
        }
    }
    // Then the assembled matrix-product tiles (none with the Cranelift kernels), each
    // called by name.
    let (generated, tiles): (Vec<String>, Vec<String>) = names.into_iter().partition(|n| !n.starts_with("nnc_avx"));
    assert_eq!(generated, functions, "--emit asm lists the functions of --emit clif");
    for tile in &tiles {
        assert!(asm.contains(&format!("call {tile}\n")), "a kernel calls {tile}");
    }
    // The step calls the kernels by name, and the thread pool's entry by name.
    for f in functions.iter().filter(|f| f.ends_with("_pack")) {
        assert!(asm.contains(&format!("call {f}\n")), "step calls {f}");
    }
    assert!(asm.contains("nnc_parallel_for"), "the step hands the row kernels to nnc_parallel_for");
    if host_has_fma() {
        assert!(asm.contains("vfmadd"), "the host has FMA: the matrix kernels use vfmadd");
    }
}

#[test]
fn emit_asm_of_a_tiny_mlp() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_mlp(dir.path());
    if !cfg!(target_arch = "x86_64") {
        let o = nnc(&["compile", model.to_str().unwrap(), "--emit", "asm"]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && err.contains("x86-64 only") && !err.contains("panicked"), "{err}");
        return;
    }
    for train in [false, true] {
        let extra: &[&str] = if train { &["--train"] } else { &[] };
        let clif = compile_twice(&model, &[&["--emit", "clif"][..], extra].concat());
        let asm = compile_twice(&model, &[&["--emit", "asm"][..], extra].concat());
        check_asm(&asm, &clif_functions(&clif));
        if train {
            // Softmax cross-entropy calls the host's logf, by name; its exp is inline.
            assert!(asm.contains("nnc_logf") && !asm.contains("expf"), "softmax_ce calls logf, not expf");
        }
    }
}

#[test]
fn emit_asm_survives_a_closed_pipe() {
    // `nnc compile --emit asm | head -1`: read one line, close the pipe.
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_mlp(dir.path());
    let mut child = Command::new(env!("CARGO_BIN_EXE_nnc"))
        .args(["compile", model.to_str().unwrap(), "--emit", "asm", "--train"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut first).unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    if cfg!(target_arch = "x86_64") {
        assert!(first.starts_with("; k") && first.ends_with(" bytes)\n"), "{first:?}");
        assert!(out.status.success(), "{err}");
    }
}
