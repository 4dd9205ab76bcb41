//! Property tests of the parsers of untrusted input (run in CI with the rest of the
//! suite; the fuzz targets under `fuzz/` explore the same entry points for longer):
//!
//! - random valid graphs built through the IR builder print → parse → print to the
//!   same text (with and without parameter data);
//! - random byte mutations (flip, set, truncate, insert, delete) of a valid ONNX model,
//!   NPY file and IDX file (raw and gzip) never panic: the reader returns `Ok` or a
//!   non-empty error.
//!
//! Case counts are kept small so the file runs in a few seconds in the debug profile.

use nnc::ir::{parse, print, print_with_data, BinaryOp, DType, Dim, Graph, Op, ReduceOp, Shape, Tensor, TensorType};
use nnc::ir::{UnaryOp, ValueId};
use proptest::prelude::*;
use proptest::test_runner::Config;
use std::path::Path;
use std::sync::OnceLock;

// ---------------------------------------------------------------------------------
// Random valid graphs.

/// One step of a random graph program; operand indices are taken modulo the number
/// of values built so far, and a step whose operands do not fit is skipped.
#[derive(Clone, Debug)]
enum Step {
    Unary(u8, usize),
    Binary(u8, usize, usize),
    Scalar(f32),
    /// A parameter of the operand's shape (an elementwise partner), named oddly.
    ParamLike(usize, u8),
    /// A product with a new `[k, m]` (or `[m, k]`) parameter.
    MatMul(usize, usize, bool),
    Reduce(u8, usize, bool),
    Softmax(usize, bool),
    Transpose(usize),
    Cast(usize, u8),
    OneHot(usize),
    IntConst(Vec<i64>),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (0u8..12, any::<usize>()).prop_map(|(u, a)| Step::Unary(u, a)),
        (0u8..8, any::<usize>(), any::<usize>()).prop_map(|(b, x, y)| Step::Binary(b, x, y)),
        any::<f32>().prop_map(Step::Scalar),
        (any::<usize>(), any::<u8>()).prop_map(|(a, n)| Step::ParamLike(a, n)),
        (any::<usize>(), 1usize..5, any::<bool>()).prop_map(|(a, m, t)| Step::MatMul(a, m, t)),
        (0u8..3, any::<usize>(), any::<bool>()).prop_map(|(r, a, k)| Step::Reduce(r, a, k)),
        (any::<usize>(), any::<bool>()).prop_map(|(a, log)| Step::Softmax(a, log)),
        any::<usize>().prop_map(Step::Transpose),
        (any::<usize>(), 0u8..4).prop_map(|(a, d)| Step::Cast(a, d)),
        any::<usize>().prop_map(Step::OneHot),
        prop::collection::vec(any::<i64>(), 0..4).prop_map(Step::IntConst),
    ]
}

const NAMES: [&str; 6] = ["w", "layer 1/bias \"odd\"", "a.b_c-d", "ünïcödé", "x y", "%percent"];

fn unary(u: u8) -> UnaryOp {
    match u {
        0 => UnaryOp::Neg,
        1 => UnaryOp::Exp,
        2 => UnaryOp::Log,
        3 => UnaryOp::Sqrt,
        4 => UnaryOp::Erf,
        5 => UnaryOp::Relu,
        6 => UnaryOp::LeakyRelu { alpha: 0.01 },
        7 => UnaryOp::Sigmoid,
        8 => UnaryOp::Tanh,
        9 => UnaryOp::Gelu { approximate: false },
        10 => UnaryOp::Gelu { approximate: true },
        _ => UnaryOp::Identity,
    }
}

fn binary(b: u8) -> BinaryOp {
    [
        BinaryOp::Add,
        BinaryOp::Sub,
        BinaryOp::Mul,
        BinaryOp::Div,
        BinaryOp::Pow,
        BinaryOp::Max,
        BinaryOp::Min,
        BinaryOp::Greater,
    ][usize::from(b) % 8]
}

/// Builds a graph from the steps: every step goes through the typed builder, so the
/// graph is valid by construction (checked again with the verifier).
fn build(width: usize, steps: &[Step], data: &[f32], outputs: &[usize]) -> Graph {
    let mut g = Graph::new("random");
    let x = g.input("x", TensorType::f32(&[Dim::Batch, Dim::Fixed(width)])).unwrap();
    let labels = g.input("labels", TensorType::new(DType::I64, Shape(vec![Dim::Batch]))).unwrap();
    let mut pool: Vec<ValueId> = vec![x, labels];
    let mut next = 0usize;
    let mut values = |n: usize| -> Vec<f32> {
        (0..n)
            .map(|_| {
                next += 1;
                data[next % data.len()]
            })
            .collect()
    };
    for s in steps {
        let pick = |i: usize| pool[i % pool.len()];
        let made = match s {
            Step::Unary(u, a) => g.unary(unary(*u), pick(*a)),
            Step::Binary(b, x, y) => g.binary(binary(*b), pick(*x), pick(*y)),
            Step::Scalar(v) => g.scalar(*v),
            Step::ParamLike(a, n) => {
                let a = pick(*a);
                match g.ty(a).shape.as_fixed() {
                    Some(dims) if g.ty(a).dtype == DType::F32 && dims.iter().product::<usize>() <= 64 => {
                        let init = Tensor::from_f32(&dims, values(dims.iter().product())).unwrap();
                        let name = NAMES[usize::from(*n) % NAMES.len()];
                        let name = g.fresh_name(name);
                        g.param(&name, init).and_then(|p| g.add(a, p))
                    }
                    _ => continue,
                }
            }
            Step::MatMul(a, m, trans_b) => {
                let a = pick(*a);
                let ty = g.ty(a).clone();
                let Some(Dim::Fixed(k)) = ty.shape.dims().last().copied() else { continue };
                if ty.dtype != DType::F32 || ty.shape.rank() != 2 || k > 16 {
                    continue;
                }
                let dims = if *trans_b { [*m, k] } else { [k, *m] };
                let init = Tensor::from_f32(&dims, values(k * m)).unwrap();
                let name = g.fresh_name("weight");
                g.param(&name, init).and_then(|w| g.matmul(a, w, false, *trans_b))
            }
            Step::Reduce(r, a, keep) => {
                let a = pick(*a);
                let rank = g.ty(a).shape.rank();
                if rank == 0 {
                    continue;
                }
                let op = [ReduceOp::Sum, ReduceOp::Mean, ReduceOp::Max][usize::from(*r) % 3];
                g.reduce(op, a, &[rank - 1], *keep)
            }
            Step::Softmax(a, log) => {
                let a = pick(*a);
                let rank = g.ty(a).shape.rank();
                if rank == 0 {
                    continue;
                }
                if *log {
                    g.log_softmax(a, rank - 1)
                } else {
                    g.softmax(a, rank - 1)
                }
            }
            Step::Transpose(a) => {
                let a = pick(*a);
                let rank = g.ty(a).shape.rank();
                let perm: Vec<usize> = (0..rank).rev().collect();
                g.transpose(a, &perm)
            }
            Step::Cast(a, d) => {
                let to = [DType::F32, DType::I64, DType::I32, DType::Bool][usize::from(*d) % 4];
                g.cast(pick(*a), to)
            }
            Step::OneHot(depth) => g.op(Op::OneHot { depth: 1 + depth % 5 }, &[labels]),
            Step::IntConst(v) => g.constant(Tensor::from_i64(&[v.len()], v.clone()).unwrap()),
        };
        // A step whose operand types do not fit is an error, never a panic; skip it.
        if let Ok(id) = made {
            pool.push(id);
        }
    }
    let outs: Vec<ValueId> = outputs.iter().map(|&i| pool[i % pool.len()]).collect();
    let mut outs_unique = Vec::new();
    for o in outs {
        if !outs_unique.contains(&o) {
            outs_unique.push(o);
        }
    }
    g.set_outputs(outs_unique);
    g
}

fn graph_case() -> impl Strategy<Value = (usize, Vec<Step>, Vec<f32>, Vec<usize>)> {
    (
        1usize..6,
        prop::collection::vec(step(), 0..24),
        prop::collection::vec(any::<f32>(), 1..16),
        prop::collection::vec(any::<usize>(), 1..4),
    )
}

proptest! {
    #![proptest_config(Config { cases: 256, failure_persistence: None, ..Config::default() })]

    #[test]
    fn random_graphs_round_trip_through_text((width, steps, data, outputs) in graph_case()) {
        let g = build(width, &steps, &data, &outputs);
        nnc::ir::verify(&g).expect("the builder makes valid graphs");

        let text = print_with_data(&g);
        let parsed = parse(&text).unwrap_or_else(|e| panic!("printed graph does not parse: {e}\n{text}"));
        prop_assert_eq!(print_with_data(&parsed), text);
        prop_assert_eq!(print(&parsed), print(&g));

        // Without the data, the text still parses and prints the same.
        let bare = print(&g);
        let parsed = parse(&bare).unwrap_or_else(|e| panic!("printed graph does not parse: {e}\n{bare}"));
        prop_assert_eq!(print(&parsed), bare);
    }
}

// ---------------------------------------------------------------------------------
// Random mutations of valid files.

/// A byte-level mutation; positions are taken modulo the file length.
#[derive(Clone, Debug)]
enum Mutation {
    Flip(usize, u8),
    Set(usize, u8),
    Truncate(usize),
    Insert(usize, Vec<u8>),
    Delete(usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 0u8..8).prop_map(|(p, b)| Mutation::Flip(p, b)),
        (any::<usize>(), any::<u8>()).prop_map(|(p, v)| Mutation::Set(p, v)),
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..8)).prop_map(|(p, b)| Mutation::Insert(p, b)),
        (any::<usize>(), 1usize..16).prop_map(|(p, n)| Mutation::Delete(p, n)),
    ]
}

/// Applies the mutations. `hot` bytes at each end of the file get most of them (the
/// structure of a large file is there; the middle is tensor data).
fn mutate(original: &[u8], muts: &[Mutation], hot: usize) -> Vec<u8> {
    let mut b = original.to_vec();
    for (i, m) in muts.iter().enumerate() {
        let pos = |p: usize, len: usize| -> usize {
            if len == 0 {
                return 0;
            }
            let window = hot.min(len);
            match i % 3 {
                0 => p % window,
                1 => len - 1 - p % window,
                _ => p % len,
            }
        };
        match m {
            Mutation::Flip(p, bit) => {
                if !b.is_empty() {
                    let at = pos(*p, b.len());
                    b[at] ^= 1 << bit;
                }
            }
            Mutation::Set(p, v) => {
                if !b.is_empty() {
                    let at = pos(*p, b.len());
                    b[at] = *v;
                }
            }
            Mutation::Truncate(p) => {
                let at = pos(*p, b.len());
                b.truncate(at);
            }
            Mutation::Insert(p, bytes) => {
                let at = pos(*p, b.len() + 1).min(b.len());
                b.splice(at..at, bytes.iter().copied());
            }
            Mutation::Delete(p, n) => {
                if !b.is_empty() {
                    let at = pos(*p, b.len());
                    let end = (at + n).min(b.len());
                    b.drain(at..end);
                }
            }
        }
    }
    b
}

fn repo(path: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn mlp_onnx() -> &'static [u8] {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    BYTES.get_or_init(|| std::fs::read(repo("models/mlp.onnx")).unwrap())
}

fn small_onnx() -> &'static [u8] {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    BYTES.get_or_init(|| std::fs::read(repo("fuzz/corpus/onnx_import/mlp_8_5_3_2_tanh.onnx")).unwrap())
}

/// A valid NPY file (version 1.0, `<f4`, shape (2, 3)).
fn npy_f32() -> Vec<u8> {
    let mut header = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }".to_string();
    while !(10 + header.len() + 1).is_multiple_of(64) {
        header.push(' ');
    }
    header.push('\n');
    let mut b = b"\x93NUMPY\x01\x00".to_vec();
    b.extend_from_slice(&(header.len() as u16).to_le_bytes());
    b.extend_from_slice(header.as_bytes());
    for i in 0..6 {
        b.extend_from_slice(&(i as f32 * 0.5).to_le_bytes());
    }
    b
}

fn idx_raw() -> Vec<u8> {
    nnc_train::idx::encode_idx(&[3, 2, 2], &(0..12).collect::<Vec<u8>>()).unwrap()
}

fn idx_gz() -> Vec<u8> {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    BYTES
        .get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("x.idx.gz");
            nnc_train::idx::write_idx(&path, &[3, 2, 2], &(0..12).collect::<Vec<u8>>()).unwrap();
            std::fs::read(&path).unwrap()
        })
        .clone()
}

fn mutations() -> impl Strategy<Value = Vec<Mutation>> {
    prop::collection::vec(mutation(), 1..5)
}

proptest! {
    #![proptest_config(Config { cases: 128, failure_persistence: None, ..Config::default() })]

    #[test]
    fn mutated_mlp_onnx_never_panics(muts in mutations()) {
        let bytes = mutate(mlp_onnx(), &muts, 4096);
        if let Err(e) = nnc::onnx::import_bytes(&bytes, None) {
            prop_assert!(!e.to_string().is_empty());
        }
    }

    #[test]
    fn mutated_small_onnx_never_panics(muts in mutations()) {
        let bytes = mutate(small_onnx(), &muts, usize::MAX);
        if let Err(e) = nnc::onnx::import_bytes(&bytes, None) {
            prop_assert!(!e.to_string().is_empty());
        }
    }

    #[test]
    fn mutated_npy_never_panics(muts in mutations()) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.npy");
        std::fs::write(&path, mutate(&npy_f32(), &muts, usize::MAX)).unwrap();
        if let Err(e) = nnc::npy::read_npy(&path) {
            prop_assert!(!e.to_string().is_empty());
        }
    }

    #[test]
    fn mutated_idx_never_panics(muts in mutations(), gzip in any::<bool>()) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.idx");
        let original = if gzip { idx_gz() } else { idx_raw() };
        std::fs::write(&path, mutate(&original, &muts, usize::MAX)).unwrap();
        match nnc_train::idx::read_idx(&path) {
            Ok(idx) => prop_assert_eq!(idx.data.len(), idx.dims.iter().product::<usize>()),
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }
}

#[test]
fn unmutated_files_read() {
    nnc::onnx::import_bytes(mlp_onnx(), None).unwrap();
    nnc::onnx::import_bytes(small_onnx(), None).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let npy = dir.path().join("x.npy");
    std::fs::write(&npy, npy_f32()).unwrap();
    assert_eq!(nnc::npy::read_npy(&npy).unwrap().shape(), &[2, 3]);
    for (name, bytes) in [("raw.idx", idx_raw()), ("gz.idx", idx_gz())] {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        assert_eq!(nnc_train::idx::read_idx(&path).unwrap().dims, vec![3, 2, 2]);
    }
}
