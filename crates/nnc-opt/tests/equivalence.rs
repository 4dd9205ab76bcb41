//! Semantics never change under optimization: on random inputs, parameters and
//! optimizer state, the interpreter gives the same outputs and updates (to 1e-5
//! relative) before and after every pass of the pipeline, after each pass run alone,
//! and after the whole pipeline; for the seed MLP, deeper MLPs, every activation,
//! SGD, momentum, Nesterov, Adam and AdamW, cross-entropy and MSE. The fusions must
//! also have fired: the tests check what the optimized graphs contain.

mod common;

use common::*;
use nnc_autodiff::{Loss, Optimizer};
use nnc_ir::{cost, Graph, UnaryOp};
use nnc_opt::{optimize, passes, OptOptions};

/// Checks `g` against every prefix of the -O1 pipeline, each pass alone, and the
/// optimized graph, on a few batches and seeds. Returns the optimized graph.
fn check(g: &Graph, what: &str) -> Graph {
    let feeds: Vec<_> = [(1, 11), (5, 12), (3, 13)].iter().map(|&(n, s)| random_feeds(g, n, s)).collect();
    let mut cur = g.clone();
    for (i, name) in nnc_opt::pipeline::O1.iter().enumerate() {
        let pass = passes::find(name).unwrap();
        cur = (pass.run)(&cur).unwrap();
        nnc_ir::verify(&cur).unwrap();
        let alone = (pass.run)(g).unwrap();
        nnc_ir::verify(&alone).unwrap();
        for f in &feeds {
            assert_same(g, &cur, f, &format!("{what}, after pass {i} ({name})"));
            assert_same(g, &alone, f, &format!("{what}, {name} alone"));
        }
    }
    let opt = optimize(g, &OptOptions::default()).unwrap().graph;
    assert_eq!(nnc_ir::print(&opt), nnc_ir::print(&cur), "{what}: optimize runs the -O1 pipeline");
    opt
}

fn count(g: &Graph, mnemonic: &str) -> usize {
    cost::op_counts(g).get(mnemonic).copied().unwrap_or(0)
}

/// The non-leaf mnemonics of a graph, sorted, with counts.
fn ops(g: &Graph) -> String {
    let counts = cost::op_counts(g);
    let items: Vec<String> = counts
        .iter()
        .filter(|(m, _)| !matches!(**m, "input" | "param" | "state" | "const"))
        .map(|(m, n)| format!("{m} {n}"))
        .collect();
    items.join(", ")
}

#[test]
fn seed_mlp_sgd() {
    let opt = check(&sgd_step(&seed_mlp()), "seed 784-256-10 SGD");
    assert_eq!(
        ops(&opt),
        "fused.dense 2, fused.dense_relu_grad 2, fused.dense_sgd 2, fused.sgd 2, fused.softmax_ce 3",
        "{}",
        nnc_ir::print(&opt)
    );
}

#[test]
fn every_activation_deeper_mlp() {
    for act in ACTIVATIONS {
        let g = sgd_step(&mlp(&[12, 16, 8, 5], act, 3));
        let name = nnc_ir::print(&g).lines().find(|l| l.contains("fc1.act")).unwrap_or_default().to_string();
        let opt = check(&g, &format!("12-16-8-5 {act:?}"));
        // Three layers, the last without activation; every weight update is in its
        // gradient product, every bias update elementwise.
        assert_eq!(count(&opt, "fused.dense"), 3, "{act:?}: {name}\n{}", nnc_ir::print(&opt));
        assert_eq!(count(&opt, "fused.dense_sgd"), 3, "{act:?}");
        assert_eq!(count(&opt, "fused.sgd"), 3, "{act:?}");
        assert_eq!(count(&opt, "fused.softmax_ce"), 3, "{act:?}: loss, gradient and bias gradient");
        // Activations whose gradient reads the pre-activation keep it: the activation
        // stays a separate op. ReLU's mask goes into the backward products.
        let separate = count(&opt, nnc_ir::Op::Unary(act).mnemonic());
        match act {
            UnaryOp::Relu => {
                assert_eq!(separate, 0);
                assert_eq!(count(&opt, "fused.dense_relu_grad"), 4, "2 masks and their bias sums");
            }
            UnaryOp::LeakyRelu { .. } | UnaryOp::Gelu { .. } => assert_eq!(separate, 2, "{act:?}"),
            _ => assert_eq!(separate, 0, "{act:?}: y-based gradients let the activation fuse"),
        }
    }
}

#[test]
fn every_optimizer() {
    for (name, opt, wd) in optimizers() {
        let g = step(&mlp(&[12, 16, 8, 5], UnaryOp::Relu, 4), Loss::CrossEntropy, opt, wd);
        let o = check(&g, name);
        let family = match opt {
            Optimizer::Sgd => "sgd",
            Optimizer::Momentum { .. } => "momentum",
            Optimizer::Adam { .. } => "adam",
        };
        let results = match opt {
            Optimizer::Sgd => 1,
            Optimizer::Momentum { .. } => 2,
            Optimizer::Adam { .. } => 3,
        };
        assert_eq!(count(&o, &format!("fused.dense_{family}")), 3 * results, "{name}\n{}", nnc_ir::print(&o));
        assert_eq!(count(&o, &format!("fused.{family}")), 3 * results, "{name}");
        // Nothing of the update is left as primitives.
        for m in ["sub", "sqrt", "div", "mul", "add"] {
            let allowed = if matches!(opt, Optimizer::Adam { .. }) { 3 } else { 0 }; // Adam's per-step scalars
            assert!(count(&o, m) <= allowed, "{name}: {} {m} left\n{}", count(&o, m), nnc_ir::print(&o));
        }
    }
}

#[test]
fn mse_and_softmax_outputs() {
    for (name, opt, wd) in optimizers() {
        let g = step(&mlp(&[6, 7, 3], UnaryOp::Tanh, 5), Loss::Mse, opt, wd);
        check(&g, &format!("MSE {name}"));
    }
    // A model ending in softmax, with the logits as a second output.
    let mut model = mlp(&[6, 7, 3], UnaryOp::Sigmoid, 6);
    let logits = model.outputs()[0];
    let probs = model.softmax(logits, 1).unwrap();
    model.set_outputs(vec![probs]);
    let opts = nnc_autodiff::TrainOptions { output_logits: true, ..Default::default() };
    let g = nnc_autodiff::training_graph(&model, &opts).unwrap().graph;
    let o = check(&g, "softmax model, logits output");
    assert_eq!(count(&o, "fused.softmax_ce"), 3);
}

#[test]
fn inference_graphs() {
    for act in ACTIVATIONS {
        check(&mlp(&[9, 8, 4], act, 7), &format!("inference {act:?}"));
    }
}

/// A small residual CNN: conv + bias + ReLU, pooling, a residual block, ReLU6, dense.
const SMALL_CNN: &str = "graph cnn {
  %input: f32[N,1,8,8] = input
  %w1: f32[4,1,3,3] = param
  %b1: f32[4] = param
  %c1: f32[N,4,8,8] = conv[kernel=[3,3], pads=[1,1,1,1]] %input, %w1
  %p1: f32[4,1,1] = reshape[shape=[4,1,1]] %b1
  %a1: f32[N,4,8,8] = add %c1, %p1
  %h1: f32[N,4,8,8] = relu %a1
  %m1: f32[N,4,4,4] = max_pool[kernel=[2,2], strides=[2,2]] %h1
  %w2: f32[4,4,3,3] = param
  %b2: f32[4] = param
  %c2: f32[N,4,4,4] = conv[kernel=[3,3], pads=[1,1,1,1]] %m1, %w2
  %p2: f32[4,1,1] = reshape[shape=[4,1,1]] %b2
  %a2: f32[N,4,4,4] = add %c2, %p2
  %s2: f32[N,4,4,4] = add %a2, %m1
  %h2: f32[N,4,4,4] = relu %s2
  %w3: f32[4,1,3,3] = param
  %c3: f32[N,4,4,4] = conv[kernel=[3,3], pads=[1,1,1,1], groups=4] %h2, %w3
  %lo: f32[] = const [0.0]
  %hi: f32[] = const [6.0]
  %l3: f32[N,4,4,4] = max %c3, %lo
  %h3: f32[N,4,4,4] = min %l3, %hi
  %f: f32[N,64] = reshape[shape=[N,64]] %h3
  %wf: f32[64,3] = param
  %bf: f32[3] = param
  %mf: f32[N,3] = matmul %f, %wf
  %logits: f32[N,3] = add %mf, %bf
  return %logits
}
";

#[test]
fn cnn_training_step_fuses_every_convolution() {
    let model = nnc_ir::parse(SMALL_CNN).unwrap();
    for (name, opt, wd) in optimizers() {
        let g = step(&model, Loss::CrossEntropy, opt, wd);
        let o = check(&g, &format!("small CNN, {name}"));
        // The forward convolutions take their bias, residual and ReLU (whose masks in
        // the backward pass read the activations, which stay values). The clip's
        // gradient compares the values before each bound, so in training the
        // depthwise convolution keeps its `max` and `min`.
        assert_eq!(count(&o, "fused.conv"), 2, "{name}\n{}", nnc_ir::print(&o));
        assert_eq!((count(&o, "conv"), count(&o, "max"), count(&o, "min")), (1, 1, 1), "{name}");
        assert_eq!(count(&o, "relu"), 0, "{name}");
    }
    let inference = check(&model, "small CNN inference");
    assert_eq!(ops(&inference), "fused.conv 3, fused.dense 1, max_pool 1, reshape 3");
}
