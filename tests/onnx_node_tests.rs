//! Conformance against the ONNX project's own backend node tests.
//!
//! Each test directory holds `model.onnx` and `test_data_set_*/{input,output}_*.pb`.
//! Every test is imported and run through the reference interpreter, and the outputs
//! are compared with the ONNX tolerances (rtol 1e-3, atol 1e-7). A test either passes,
//! is skipped because it uses an op nnc does not support (listed), or fails. Failures
//! must be listed in `tests/onnx_node_expected_failures.txt` with the reason (that file
//! is the "Failing" list in docs/onnx.md); an unlisted failure or a listed test that now
//! passes fails this test.
//!
//! The tests come from `onnx==1.22.0` (installed by `.ci/install-test-deps.sh`, found
//! through `$NNC_ONNX_NODE_TESTS` or `~/.cache/nnc/onnx-node-tests`).

use nnc_ir::Tensor;
use nnc_onnx::proto::{ModelProto, TensorProto};
use nnc_onnx::OnnxError;
use prost::Message;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

fn node_test_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("NNC_ONNX_NODE_TESTS") {
        return Some(PathBuf::from(dir));
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache")))?;
    let dir = cache.join("nnc/onnx-node-tests");
    dir.is_dir().then_some(dir)
}

enum Outcome {
    Pass,
    /// Uses ops nnc does not implement (listed).
    Unsupported(String),
    /// Uses only supported ops, but in a way nnc refuses by design with a clear error;
    /// the category is a row of docs/onnx.md's "refused by design" table.
    Refused(&'static str),
    Fail(String),
}

/// Ops whose tests also run compiled, against the interpreter.
const JIT_CHECKED: [&str; 6] = ["Concat", "Split", "Slice", "Pad", "Resize", "Upsample"];

const RUN_TIME: &str = "shape, axes or indices known only at run time";

/// The documented limitations, recognized by their import error.
fn refusal_category(message: &str) -> Option<&'static str> {
    const CATEGORIES: [(&str, &str); 11] = [
        ("element type", "element type other than f32/i64/i32/bool"),
        ("is float64; nnc computes in float32", "element type other than f32/i64/i32/bool"),
        ("cannot cast to", "element type other than f32/i64/i32/bool"),
        ("only known at run time", RUN_TIME),
        ("training_mode", "training-mode Dropout"),
        ("only tensors are supported", "sequence or optional input"),
        ("older than the supported range", "opset older than 7"),
        ("Indices output of MaxPool", "MaxPool's Indices output"),
        ("zero-size tensors", "zero-size tensors"),
        ("the batch axis", "splitting, slicing or joining along the batch axis"),
        ("with a step other than 1", "slices of run-time data with a step other than 1"),
    ];
    CATEGORIES.iter().find(|(needle, _)| message.contains(needle)).map(|(_, category)| *category)
}

/// The ops of the model that nnc does not import, if any.
fn unsupported_ops(model: &ModelProto) -> Vec<String> {
    let opset = model.opset_import.iter().find(|o| o.domain.is_empty() || o.domain == "ai.onnx").map(|o| o.version);
    let mut ops: BTreeSet<String> = BTreeSet::new();
    for node in model.graph.iter().flat_map(|g| g.node.iter()) {
        if !opset.is_some_and(|v| nnc_onnx::is_supported_op(&node.domain, &node.op_type, v)) {
            let domain = if node.domain.is_empty() { String::new() } else { format!("{}.", node.domain) };
            ops.insert(format!("{domain}{}", node.op_type));
        }
    }
    ops.into_iter().collect()
}

/// With `bind`, every graph input but the first is bound to its value in the test's
/// data set and becomes an initializer (a constant at import), as tract's harness
/// binds a test's shapes, axes and pads (`None` if the test has several data sets).
fn run_one(dir: &Path, bind: bool) -> Result<Option<Outcome>, String> {
    let bytes = std::fs::read(dir.join("model.onnx")).map_err(|e| e.to_string())?;
    let mut model = ModelProto::decode(&bytes[..]).map_err(|e| format!("model.onnx: {e}"))?;
    // The run-time inputs, with the number of the `input_N.pb` each is read from.
    let mut fed: Vec<(usize, String)> = {
        let graph = model.graph.as_ref().ok_or("no graph")?;
        let initializers: BTreeSet<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
        graph.input.iter().map(|i| i.name.clone()).filter(|n| !initializers.contains(n.as_str())).enumerate().collect()
    };
    if bind {
        let sets = std::fs::read_dir(dir)
            .map_err(|e| e.to_string())?
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with("test_data_set_"))
            .count();
        if sets != 1 {
            return Ok(None);
        }
        let graph = model.graph.as_mut().ok_or("no graph")?;
        let before = fed.len();
        let mut kept = Vec::new();
        for (k, (i, name)) in fed.into_iter().enumerate() {
            let path = dir.join("test_data_set_0").join(format!("input_{i}.pb"));
            match std::fs::read(&path) {
                Ok(data) if k > 0 => {
                    let mut tensor = TensorProto::decode(&data[..]).map_err(|e| format!("{}: {e}", path.display()))?;
                    tensor.name = name;
                    graph.initializer.push(tensor);
                }
                _ => kept.push((i, name)),
            }
        }
        if kept.len() == before {
            return Ok(None);
        }
        fed = kept;
    }
    let bytes = model.encode_to_vec();
    Ok(Some(run_model(dir, &model, &bytes, &fed)?))
}

fn run_model(dir: &Path, model: &ModelProto, bytes: &[u8], fed: &[(usize, String)]) -> Result<Outcome, String> {
    let unsupported = unsupported_ops(model);
    if !unsupported.is_empty() {
        return Ok(Outcome::Unsupported(unsupported.join(", ")));
    }
    let graph = match nnc_onnx::import_bytes(bytes, Some(dir)) {
        Ok(g) => g,
        Err(e) => {
            let message = e.to_string();
            return Ok(match refusal_category(&message) {
                Some(category) => Outcome::Refused(category),
                None => Outcome::Fail(format!("import: {message}")),
            });
        }
    };
    let mut sets: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| e.to_string())?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("test_data_set_")))
        .collect();
    sets.sort();
    for set in sets {
        let mut feeds = HashMap::new();
        for (i, name) in fed {
            let path = set.join(format!("input_{i}.pb"));
            if !path.exists() {
                continue; // an optional input left out
            }
            let (tensor, _) = read_pb(&path)?;
            let tensor = match tensor {
                Ok(t) => t,
                Err(e) => return Ok(Outcome::Fail(format!("input {name}: {e}"))),
            };
            feeds.insert(name.to_string(), tensor);
        }
        let outputs = match nnc_interp::run(&graph, &feeds) {
            Ok(o) => o,
            Err(e) => return Ok(Outcome::Fail(format!("run: {e}"))),
        };
        // The ops built from other primitives at import also go through the JIT,
        // checked against the same expected outputs.
        let mut runs = vec![("", outputs)];
        if model.graph.iter().flat_map(|g| g.node.iter()).any(|n| JIT_CHECKED.contains(&n.op_type.as_str())) {
            let jitted = nnc_pipeline::compile(&graph, &Default::default(), &Default::default())
                .and_then(|mut c| c.run(&feeds).map_err(Into::into));
            match jitted {
                Ok(got) => runs.push(("JIT ", got)),
                Err(e) => return Ok(Outcome::Fail(format!("JIT: {e}"))),
            }
        }
        for (by, outputs) in &runs {
            for (i, got) in outputs.iter().enumerate() {
                let path = set.join(format!("output_{i}.pb"));
                let (expected, data_type) = read_pb(&path)?;
                let expected = match expected {
                    Ok(t) => t,
                    Err(e) => return Ok(Outcome::Fail(format!("output {i}: {e}"))),
                };
                if let Some(problem) = compare(got, &expected, data_type) {
                    return Ok(Outcome::Fail(format!("{by}output {i}: {problem}")));
                }
            }
        }
    }
    Ok(Outcome::Pass)
}

fn read_pb(path: &Path) -> Result<(Result<Tensor, OnnxError>, i32), String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let proto = TensorProto::decode(&bytes[..]).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok((nnc_onnx::tensor_from_proto(&proto, None), proto.data_type))
}

/// ONNX's `np.testing.assert_allclose(rtol=1e-3, atol=1e-7)`, NaN equal to NaN.
fn compare(got: &Tensor, expected: &Tensor, data_type: i32) -> Option<String> {
    use nnc_onnx::proto::tensor_proto::DataType;
    let native = matches!(
        DataType::try_from(data_type),
        Ok(DataType::Float | DataType::Int64 | DataType::Int32 | DataType::Bool)
    );
    if !native {
        return Some(format!("expected element type {data_type:?} is not one nnc computes in"));
    }
    if got.dtype() != expected.dtype() {
        return Some(format!("element type {} instead of {}", got.dtype(), expected.dtype()));
    }
    if got.shape() != expected.shape() {
        return Some(format!("shape {:?} instead of {:?}", got.shape(), expected.shape()));
    }
    let as_f64 = |t: &Tensor| -> Vec<f64> {
        match t {
            Tensor::F32(a) => a.iter().map(|&v| v as f64).collect(),
            Tensor::I64(a) => a.iter().map(|&v| v as f64).collect(),
            Tensor::I32(a) => a.iter().map(|&v| v as f64).collect(),
            Tensor::Bool(a) => a.iter().map(|&v| v as u8 as f64).collect(),
        }
    };
    let (g, e) = (as_f64(got), as_f64(expected));
    for (i, (&g, &e)) in g.iter().zip(&e).enumerate() {
        let ok = (g.is_nan() && e.is_nan()) || g == e || (g - e).abs() <= 1e-7 + 1e-3 * e.abs();
        if !ok {
            return Some(format!("element {i}: {g} instead of {e}"));
        }
    }
    None
}

/// The op types a test model uses, to attribute results to ops.
fn op_types(dir: &Path) -> Vec<String> {
    let Ok(bytes) = std::fs::read(dir.join("model.onnx")) else { return vec!["?".into()] };
    let Ok(model) = ModelProto::decode(&bytes[..]) else { return vec!["?".into()] };
    let ops: BTreeSet<String> = model.graph.iter().flat_map(|g| g.node.iter()).map(|n| n.op_type.clone()).collect();
    ops.into_iter().collect()
}

fn expected_failures() -> BTreeMap<String, String> {
    let text = include_str!("onnx_node_expected_failures.txt");
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once(char::is_whitespace).map(|(n, r)| (n.to_string(), r.trim().to_string())))
        .collect()
}

#[derive(Default)]
struct Row {
    run: usize,
    passed: usize,
    failed: usize,
    refused: usize,
    unsupported: usize,
}

#[test]
fn onnx_backend_node_tests() {
    let Some(root) = node_test_dir() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "the ONNX node tests are missing: run .ci/install-test-deps.sh (or set NNC_ONNX_NODE_TESTS)"
        );
        eprintln!("skipping: ONNX node tests not installed (run .ci/install-test-deps.sh)");
        return;
    };
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .expect("node test directory is readable")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("model.onnx").is_file())
        .collect();
    dirs.sort();
    assert!(
        dirs.len() > 1000,
        "expected the ~1,765 node tests of onnx 1.22.0 in {}, found {}",
        root.display(),
        dirs.len()
    );

    let allowed = expected_failures();
    let mut rows: BTreeMap<String, Row> = BTreeMap::new();
    let mut unexpected = Vec::new();
    let mut now_passing = Vec::new();
    let mut failures = Vec::new();
    let (mut passed, mut failed, mut unsupported) = (0, 0, 0);
    let mut refusals: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    let mut missing_ops: BTreeMap<String, usize> = BTreeMap::new();
    let (mut bound_passed, mut bound_refused) = (Vec::new(), Vec::new());
    for dir in &dirs {
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        let run = |bind: bool| {
            std::panic::catch_unwind(|| run_one(dir, bind))
                .unwrap_or_else(|_| Ok(Some(Outcome::Fail("PANIC".into()))))
                .unwrap_or_else(|e| Some(Outcome::Fail(format!("harness: {e}"))))
        };
        let outcome = run(false).expect("an unbound run always has an outcome");
        // A test refused for reading shapes or axes at run time, run again with them
        // bound from its data (the "bound" count).
        if matches!(outcome, Outcome::Refused(RUN_TIME)) {
            match run(true) {
                Some(Outcome::Pass) => {
                    bound_passed.push(name.clone());
                    if allowed.contains_key(&format!("bound:{name}")) {
                        now_passing.push(format!("bound:{name}"));
                    }
                }
                Some(Outcome::Fail(reason)) => {
                    failures.push(format!("bound:{name}  {reason}"));
                    if !allowed.contains_key(&format!("bound:{name}")) {
                        unexpected.push(format!("bound:{name}: {reason}"));
                    }
                }
                Some(Outcome::Refused(category)) => bound_refused.push(format!("{name} ({category})")),
                Some(Outcome::Unsupported(_)) | None => {}
            }
        }
        for op in op_types(dir) {
            let row = rows.entry(op).or_default();
            match &outcome {
                Outcome::Pass => {
                    row.run += 1;
                    row.passed += 1;
                }
                Outcome::Fail(_) => {
                    row.run += 1;
                    row.failed += 1;
                }
                Outcome::Refused(_) => row.refused += 1,
                Outcome::Unsupported(_) => row.unsupported += 1,
            }
        }
        match outcome {
            Outcome::Pass => {
                passed += 1;
                if allowed.contains_key(&name) {
                    now_passing.push(name);
                }
            }
            Outcome::Unsupported(ops) => {
                unsupported += 1;
                for op in ops.split(", ") {
                    *missing_ops.entry(op.to_string()).or_insert(0) += 1;
                }
            }
            Outcome::Refused(category) => refusals.entry(category).or_default().push(name),
            Outcome::Fail(reason) => {
                failed += 1;
                failures.push(format!("{name}  {reason}"));
                if !allowed.contains_key(&name) {
                    unexpected.push(format!("{name}: {reason}"));
                }
            }
        }
    }
    // Rows for every op nnc supports (ops that appear only in unsupported tests are
    // summarized in the last line).
    println!("| op | run | passed | failed | refused |\n|---|---:|---:|---:|---:|");
    for (op, r) in &rows {
        if r.run + r.refused > 0 {
            println!("| {op} | {} | {} | {} | {} |", r.run, r.passed, r.failed, r.refused);
        }
    }
    println!("\nrefused by design (clear import error), by reason:");
    for (category, tests) in &refusals {
        println!("  {category}: {} tests: {}", tests.len(), tests.join(" "));
    }
    let missing: Vec<String> = missing_ops.iter().map(|(op, n)| format!("{op} ({n})")).collect();
    println!("\nunsupported ops (tests using them): {}", missing.join(", "));
    println!("\nfailures (all listed in tests/onnx_node_expected_failures.txt):");
    for f in &failures {
        println!("  {f}");
    }
    let refused: usize = refusals.values().map(Vec::len).sum();
    println!("\nbound (refused for run-time shapes, passing with them bound): {}", bound_passed.join(" "));
    println!("bound, still refused: {}", bound_refused.join(" "));
    println!(
        "\nnode tests: {} total, {passed} passed, {failed} failed, {refused} refused by design, {unsupported} use unsupported ops; \
         with run-time shapes bound from the test data, {} more pass",
        dirs.len(),
        bound_passed.len()
    );
    assert!(
        unexpected.is_empty(),
        "{} node tests fail that are not listed in tests/onnx_node_expected_failures.txt:\n{}",
        unexpected.len(),
        unexpected.join("\n")
    );
    assert!(
        now_passing.is_empty(),
        "these node tests pass now; remove them from tests/onnx_node_expected_failures.txt:\n{}",
        now_passing.join("\n")
    );
}
