//! Shared by the tests: MLP builders (laid out like the root package's `src/mlp.rs`),
//! training steps, random feeds, and the interpreter comparison.
#![allow(dead_code)]

use nnc_autodiff::{training_graph, Loss, Optimizer, TrainOptions};
use nnc_ir::{BinaryOp, Dim, Graph, Op, Tensor, TensorType, UnaryOp, ValueId};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};
use std::collections::HashMap;

pub fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

/// `input: f32[N, layers[0]]` → dense layers (`fcK.weight: [in, out]`, MatMul + Add)
/// with `act` between them → `logits`. He-initialized weights, small random biases
/// (so a zero bias does not hide a missing bias term).
pub fn mlp(layers: &[usize], act: UnaryOp, seed: u64) -> Graph {
    let mut rng = rng(seed);
    let mut g = Graph::new("mlp");
    let mut h: ValueId = g.input("input", TensorType::f32(&[Dim::Batch, Dim::Fixed(layers[0])])).unwrap();
    let last = layers.len() - 2;
    for (i, pair) in layers.windows(2).enumerate() {
        let (fan_in, fan_out) = (pair[0], pair[1]);
        let layer = format!("fc{}", i + 1);
        let normal = Normal::new(0.0f32, (2.0 / fan_in as f32).sqrt()).unwrap();
        let w: Vec<f32> = (0..fan_in * fan_out).map(|_| normal.sample(&mut rng)).collect();
        let w = g.param(&format!("{layer}.weight"), Tensor::from_f32(&[fan_in, fan_out], w).unwrap()).unwrap();
        let b: Vec<f32> = (0..fan_out).map(|_| rng.random_range(-0.1..0.1)).collect();
        let b = g.param(&format!("{layer}.bias"), Tensor::from_f32(&[fan_out], b).unwrap()).unwrap();
        let mm = g.named(&format!("{layer}.matmul"), Op::MatMul { trans_a: false, trans_b: false }, &[h, w]).unwrap();
        let name = if i == last { "logits".to_string() } else { format!("{layer}.add") };
        h = g.named(&name, Op::Binary(BinaryOp::Add), &[mm, b]).unwrap();
        if i != last {
            h = g.named(&format!("{layer}.act"), Op::Unary(act), &[h]).unwrap();
        }
    }
    g.set_outputs(vec![h]);
    g
}

/// The seed workload's model: 784-256-10, ReLU.
pub fn seed_mlp() -> Graph {
    mlp(&[784, 256, 10], UnaryOp::Relu, 0)
}

pub fn step(model: &Graph, loss: Loss, optimizer: Optimizer, weight_decay: f32) -> Graph {
    let opts = TrainOptions { loss, optimizer, weight_decay, ..TrainOptions::default() };
    training_graph(model, &opts).unwrap().graph
}

pub fn sgd_step(model: &Graph) -> Graph {
    step(model, Loss::CrossEntropy, Optimizer::Sgd, 0.0)
}

pub const ACTIVATIONS: [UnaryOp; 6] = [
    UnaryOp::Relu,
    UnaryOp::LeakyRelu { alpha: 0.01 },
    UnaryOp::Sigmoid,
    UnaryOp::Tanh,
    UnaryOp::Gelu { approximate: false },
    UnaryOp::Gelu { approximate: true },
];

pub fn optimizers() -> Vec<(&'static str, Optimizer, f32)> {
    vec![
        ("sgd", Optimizer::Sgd, 0.0),
        ("sgd_l2", Optimizer::Sgd, 1e-3),
        ("momentum", Optimizer::momentum(), 0.0),
        ("nesterov_l2", Optimizer::Momentum { momentum: 0.9, nesterov: true }, 1e-3),
        ("adam", Optimizer::adam(), 0.0),
        ("adamw", Optimizer::adam(), 0.01),
    ]
}

/// Random feeds for every input, and random values for every optimizer state (so a
/// wrong moment term shows), at batch size `batch`.
pub fn random_feeds(g: &Graph, batch: usize, seed: u64) -> HashMap<String, Tensor> {
    let mut rng = rng(seed);
    let mut feeds = HashMap::new();
    for id in g.ids() {
        let v = g.value(id);
        let shape = v.ty.shape.resolve(batch);
        let n: usize = shape.iter().product();
        let t = match (&v.op, v.name.as_str()) {
            (Op::Input, "labels") if v.ty.dtype == nnc_ir::DType::I64 => {
                let classes = g.values().iter().find_map(|v| match v.op {
                    Op::OneHot { depth } => Some(depth),
                    _ => None,
                });
                let classes = classes.unwrap_or(2) as i64;
                Tensor::from_i64(&shape, (0..n).map(|_| rng.random_range(0..classes)).collect()).unwrap()
            }
            (Op::Input, "lr") => Tensor::scalar_f32(0.05),
            (Op::Input, "step") => Tensor::scalar_i64(rng.random_range(1..20)),
            (Op::Input, _) | (Op::State { .. }, _) | (Op::Param { init: None }, _) => {
                let data: Vec<f32> = match &v.op {
                    // Second moments are non-negative.
                    Op::State { .. } if v.name.ends_with(".v") => (0..n).map(|_| rng.random_range(0.0..0.01)).collect(),
                    _ => (0..n).map(|_| rng.random_range(-1.0..1.0)).collect(),
                };
                Tensor::from_f32(&shape, data).unwrap()
            }
            _ => continue,
        };
        feeds.insert(v.name.clone(), t);
    }
    feeds
}

/// Parses IR text, runs the pass `name` (then `dce` when `then_dce`, since fusions
/// leave the chains they replace for `dce`), checks the result verifies, round-trips
/// through the text form and computes what the input computed on random feeds, and
/// returns it as text.
pub fn run_pass(name: &str, text: &str, then_dce: bool) -> String {
    let g = nnc_ir::parse(text).unwrap_or_else(|e| panic!("input: {e}"));
    let pass = nnc_opt::passes::find(name).unwrap();
    let mut out = (pass.run)(&g).unwrap();
    if then_dce {
        out = nnc_opt::passes::dce::run(&out).unwrap();
    }
    nnc_ir::verify(&out).unwrap();
    let printed = nnc_ir::print(&out);
    assert_eq!(nnc_ir::print(&nnc_ir::parse(&printed).unwrap()), printed, "round trip");
    for batch in [1, 3] {
        let feeds = random_feeds(&g, batch, 7);
        match nnc_interp::run_step(&g, &feeds) {
            Ok(_) => {
                assert_same(&g, &out, &feeds, name);
            }
            // A graph that fails at run time (on purpose) must still fail.
            Err(_) => assert!(nnc_interp::run_step(&out, &feeds).is_err(), "{name}: the error went away"),
        }
    }
    printed
}

/// Runs both graphs on the same feeds and checks every output and update agrees to
/// `|a - b| <= 1e-5·max(|a|, |b|) + 1e-7`. Returns the largest relative difference.
pub fn assert_same(before: &Graph, after: &Graph, feeds: &HashMap<String, Tensor>, what: &str) -> f64 {
    let a = nnc_interp::run_step(before, feeds).unwrap_or_else(|e| panic!("{what}: before: {e}"));
    let b = nnc_interp::run_step(after, feeds).unwrap_or_else(|e| panic!("{what}: after: {e}"));
    assert_eq!(a.outputs.len(), b.outputs.len(), "{what}: output count");
    assert_eq!(a.updates.len(), b.updates.len(), "{what}: update count");
    // Updates are matched by leaf name: a pass may not reorder them, but say so if one does.
    let leaves = |g: &Graph| g.updates().iter().map(|&(l, _)| g.name_of(l).to_string()).collect::<Vec<_>>();
    assert_eq!(leaves(before), leaves(after), "{what}: updated leaves");
    let mut worst: f64 = 0.0;
    let pairs = a.outputs.iter().zip(&b.outputs).chain(a.updates.iter().zip(&b.updates));
    for (k, (x, y)) in pairs.enumerate() {
        assert_eq!(x.dtype(), y.dtype(), "{what}: result {k} dtype");
        assert_eq!(x.shape(), y.shape(), "{what}: result {k} shape");
        let (Some(x), Some(y)) = (x.to_f32_vec(), y.to_f32_vec()) else {
            assert_eq!(x, y, "{what}: result {k}");
            continue;
        };
        for (i, (&p, &q)) in x.iter().zip(&y).enumerate() {
            let (p, q) = (p as f64, q as f64);
            let diff = (p - q).abs();
            let scale = p.abs().max(q.abs());
            assert!(diff <= 1e-5 * scale + 1e-7, "{what}: result {k}[{i}]: {p} before, {q} after");
            if scale > 0.0 {
                worst = worst.max(diff / scale);
            }
        }
    }
    worst
}
