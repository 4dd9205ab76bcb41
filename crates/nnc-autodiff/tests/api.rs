//! The API's contract: typed errors that name every offending node, the loss
//! attachment's checks and notes, what gets a gradient and what does not, and the
//! part tags the CLI summary counts.

mod common;

use common::*;
use nnc_autodiff::{gradients, training_graph, with_loss, AutodiffError, Loss, Optimizer, Part, TrainOptions};
use nnc_ir::{BinaryOp, DType, Dim, Graph, Op, ReduceOp, Shape, Tensor, TensorType, UnaryOp};

fn input(g: &mut Graph, dims: &[usize]) -> nnc_ir::ValueId {
    let mut d = vec![Dim::Batch];
    d.extend(dims.iter().map(|&n| Dim::Fixed(n)));
    g.input("input", TensorType::f32(&d)).unwrap()
}

fn small(shape: &[usize]) -> Tensor {
    Tensor::from_f32(shape, vec![0.1; shape.iter().product()]).unwrap()
}

/// Every op without a rule on a path from a parameter to the loss is listed, in
/// definition order, with its op — not just the first one found.
#[test]
fn ops_without_a_rule_are_all_listed() {
    let mut g = Graph::new("bad");
    let x = input(&mut g, &[4]);
    let p = g.param("p", small(&[4])).unwrap();
    let h = g.named("h", Op::Binary(BinaryOp::Add), &[x, p]).unwrap();
    let hi = g.named("to_int", Op::Cast { to: DType::I64 }, &[h]).unwrap();
    let hf = g.named("to_float", Op::Cast { to: DType::F32 }, &[hi]).unwrap();
    let zero = g.scalar(0.0).unwrap();
    let gt = g.named("positive", Op::Binary(BinaryOp::Greater), &[h, zero]).unwrap();
    let gf = g.named("mask", Op::Cast { to: DType::F32 }, &[gt]).unwrap();
    let oh = g.named("classes", Op::OneHot { depth: 3 }, &[hi]).unwrap();
    let ohs = g.reduce(ReduceOp::Sum, oh, &[2], false).unwrap();
    let a = g.add(hf, gf).unwrap();
    let a = g.add(a, ohs).unwrap();
    let out = g.named("scores", Op::Binary(BinaryOp::Add), &[a, h]).unwrap();
    g.set_outputs(vec![out]);

    let err = training_graph(&g, &TrainOptions::default()).unwrap_err();
    let expected: Vec<(String, &str)> =
        [("to_int", "cast"), ("to_float", "cast"), ("positive", "greater"), ("mask", "cast"), ("classes", "one_hot")]
            .iter()
            .map(|&(n, o)| (n.to_string(), o))
            .collect();
    assert_eq!(err, AutodiffError::NoGradient { nodes: expected.clone() });
    let msg = err.to_string();
    for (name, op) in &expected {
        assert!(msg.contains(&format!("%{name} ({op})")), "{msg}");
    }

    // `gradients` reports the same.
    let lg = with_loss(&g, &TrainOptions::default()).unwrap();
    let err = gradients(&lg.graph, lg.loss, &[lg.graph.find("p").unwrap()]).unwrap_err();
    assert_eq!(err, AutodiffError::NoGradient { nodes: expected });
}

/// Ops without a rule off the gradient paths are fine: a comparison used as a
/// `where` condition, and integer work on the labels.
#[test]
fn non_differentiable_ops_off_the_gradient_path_are_fine() {
    let mut g = Graph::new("ok");
    let x = input(&mut g, &[4]);
    let p = g.param("p", small(&[4])).unwrap();
    let h = g.add(x, p).unwrap();
    let zero = g.scalar(0.0).unwrap();
    let positive = g.binary(BinaryOp::Greater, h, zero).unwrap();
    let relu = g.where_(positive, h, zero).unwrap();
    let xi = g.cast(x, DType::I64).unwrap();
    let xf = g.cast(xi, DType::F32).unwrap();
    let out = g.add(relu, xf).unwrap();
    g.set_outputs(vec![out]);
    let tg = training_graph(&g, &TrainOptions::default()).unwrap();
    assert_eq!(tg.gradients.len(), 1);
}

#[test]
fn cross_entropy_needs_class_scores() {
    let cases: &[(TensorType, &str)] = &[
        (TensorType::f32(&[Dim::Batch, Dim::Fixed(3), Dim::Fixed(4)]), "shape [N, C]"),
        (TensorType::f32(&[Dim::Batch]), "rank 1"),
        (TensorType::f32(&[Dim::Batch, Dim::Fixed(1)]), "single class"),
        (TensorType::f32(&[Dim::Fixed(3), Dim::Batch]), "must be static"),
    ];
    for (ty, why) in cases {
        let mut g = Graph::new("m");
        let x = g.input("input", ty.clone()).unwrap();
        let p = g.param("p", Tensor::scalar_f32(1.0)).unwrap();
        let y = g.named("y", Op::Binary(BinaryOp::Mul), &[x, p]).unwrap();
        g.set_outputs(vec![y]);
        let err = training_graph(&g, &TrainOptions::default()).unwrap_err();
        assert!(matches!(&err, AutodiffError::Loss { output, .. } if output == "y"), "{err}");
        let msg = err.to_string();
        assert!(msg.contains(why), "{ty}: {msg}");
        assert!(msg.contains("cannot attach the cross-entropy loss to %y"), "{msg}");
        // MSE takes any f32 output.
        let opts = TrainOptions { loss: Loss::Mse, ..TrainOptions::default() };
        training_graph(&g, &opts).unwrap();
    }
}

#[test]
fn cross_entropy_refuses_a_softmax_over_the_batch() {
    let mut g = Graph::new("m");
    let x = input(&mut g, &[3]);
    let p = g.param("p", small(&[3])).unwrap();
    let y = g.add(x, p).unwrap();
    let s = g.named("probs", Op::Softmax { axis: 0 }, &[y]).unwrap();
    g.set_outputs(vec![s]);
    let msg = training_graph(&g, &TrainOptions::default()).unwrap_err().to_string();
    assert!(msg.contains("softmax over axis 0, not over the classes"), "{msg}");
}

#[test]
fn loss_goes_under_a_final_softmax_or_log_softmax() {
    for (softmax, mnemonic) in [(Op::Softmax { axis: 1 }, "softmax"), (Op::LogSoftmax { axis: 1 }, "log_softmax")] {
        let mut g = Graph::new("m");
        let x = input(&mut g, &[3]);
        let p = g.param("p", small(&[3])).unwrap();
        let logits = g.named("scores", Op::Binary(BinaryOp::Add), &[x, p]).unwrap();
        let probs = g.named("probs", softmax, &[logits]).unwrap();
        let out = g.named("out", Op::Unary(UnaryOp::Identity), &[probs]).unwrap();
        g.set_outputs(vec![out]);
        let opts = TrainOptions { output_logits: true, ..TrainOptions::default() };
        let tg = training_graph(&g, &opts).unwrap();
        assert_eq!(tg.notes, [format!("loss attached to the logits %scores before the final {mnemonic} %probs")]);
        assert_eq!(tg.graph.name_of(tg.prediction), "scores");
        let outputs: Vec<&str> = tg.graph.outputs().iter().map(|&o| tg.graph.name_of(o)).collect();
        assert_eq!(outputs, ["loss", "scores"]);
        // The bypassed softmax and identity are dropped from the step.
        assert!(tg.graph.find("probs").is_none() && tg.graph.find("out").is_none());
    }
}

#[test]
fn several_outputs_unused_params_and_reserved_names_are_noted() {
    let mut g = Graph::new("m");
    let x = input(&mut g, &[3]);
    let p = g.param("p", small(&[3])).unwrap();
    let q = g.param("q", small(&[3])).unwrap();
    let k = g.param("k", Tensor::from_i64(&[3], vec![1, 2, 3]).unwrap()).unwrap();
    let logits = g.named("loss", Op::Binary(BinaryOp::Add), &[x, p]).unwrap();
    let other = g.named("other", Op::Binary(BinaryOp::Mul), &[x, q]).unwrap();
    let ints = g.named("ints", Op::Unary(UnaryOp::Neg), &[k]).unwrap();
    g.set_outputs(vec![ints, logits, other]);
    let tg = training_graph(&g, &TrainOptions::default()).unwrap();
    assert_eq!(
        tg.notes,
        [
            "the model's value %loss is renamed %loss.model: the training step uses the name `loss`",
            "parameter %k is i64[3] and is not trained",
            "the model has 2 f32 outputs (%loss.model, %other); the loss is attached to the first, %loss.model",
            "not updated (the loss does not depend on them): %q",
        ]
    );
    let updated: Vec<&str> = tg.graph.updates().iter().map(|&(l, _)| tg.graph.name_of(l)).collect();
    assert_eq!(updated, ["p"]);
    // Parameters stay in the step even when not trained: they are part of the model.
    assert!(tg.graph.find("q").is_some() && tg.graph.find("k").is_some());
    assert_eq!(tg.graph.name_of(tg.loss), "loss");
}

#[test]
fn a_chosen_output_gets_the_loss() {
    let mut g = Graph::new("m");
    let x = input(&mut g, &[3]);
    let p = g.param("p", small(&[3])).unwrap();
    let a = g.named("a", Op::Binary(BinaryOp::Add), &[x, p]).unwrap();
    let b = g.named("b", Op::Binary(BinaryOp::Mul), &[x, p]).unwrap();
    g.set_outputs(vec![a, b]);
    let opts = TrainOptions { output: Some("b".into()), ..TrainOptions::default() };
    let tg = training_graph(&g, &opts).unwrap();
    assert_eq!(tg.graph.name_of(tg.prediction), "b");
    assert!(tg.notes.is_empty(), "{:?}", tg.notes);
    let opts = TrainOptions { output: Some("nope".into()), ..TrainOptions::default() };
    let msg = training_graph(&g, &opts).unwrap_err().to_string();
    assert!(msg.contains("no value of that name"), "{msg}");
}

#[test]
fn nothing_to_train_and_bad_options_are_errors() {
    let mut g = Graph::new("m");
    let x = input(&mut g, &[3]);
    let y = g.unary(UnaryOp::Tanh, x).unwrap();
    g.set_outputs(vec![y]);
    let err = training_graph(&g, &TrainOptions::default()).unwrap_err();
    assert!(matches!(err, AutodiffError::NothingToTrain(_)), "{err}");

    let model = mlp(&mut rng(0), &[3, 2], &[], Dense::MatMul, false);
    for (optimizer, weight_decay, what) in [
        (Optimizer::Adam { beta1: 1.0, beta2: 0.999, eps: 1e-8 }, 0.0, "beta1"),
        (Optimizer::Adam { beta1: 0.9, beta2: 0.999, eps: 0.0 }, 0.0, "epsilon"),
        (Optimizer::Momentum { momentum: f32::NAN, nesterov: false }, 0.0, "momentum"),
        (Optimizer::Sgd, -1.0, "weight decay"),
    ] {
        let err =
            training_graph(&model, &TrainOptions { optimizer, weight_decay, ..TrainOptions::default() }).unwrap_err();
        assert!(matches!(&err, AutodiffError::Options(m) if m.contains(what)), "{err}");
    }
}

/// The seed workload's shape, 784-256-10: the backward pass computes the weight
/// gradients and the hidden layer's gradient but nothing for the input, so its
/// matrix-product FLOPs are those of three products, not four.
#[test]
fn parts_and_flops_of_the_seed_model() {
    let model = mlp(&mut rng(0), &[784, 256, 10], &[UnaryOp::Relu], Dense::MatMul, false);
    let tg = training_graph(&model, &TrainOptions::default()).unwrap();
    let g = &tg.graph;
    assert_eq!(tg.part_of(g.find("logits").unwrap()), Part::Forward);
    assert_eq!(tg.part_of(g.find("labels").unwrap()), Part::Loss);
    assert_eq!(tg.part_of(g.find("loss").unwrap()), Part::Loss);
    assert_eq!(tg.part_of(g.find("fc1.weight.grad").unwrap()), Part::Backward);
    assert_eq!(tg.part_of(g.find("lr").unwrap()), Part::Update);
    assert_eq!(tg.part_of(g.find("fc1.weight_new").unwrap()), Part::Update);
    assert_eq!(tg.forward_values(), model.len());
    assert!(g.values().iter().all(|v| v.ty.shape != Shape(vec![Dim::Batch, Dim::Fixed(784)]) || v.op == Op::Input));

    let batch = 100;
    let s = tg.summary(batch);
    let (n, i, h, c) = (batch as u64, 784u64, 256u64, 10u64);
    let matmul = 2 * n * i * h + 2 * n * h * c;
    let forward = matmul + n * h /* bias */ + n * h /* relu */ + n * c /* bias */;
    assert_eq!(s[0].part, Part::Forward);
    assert_eq!(s[0].flops, forward);
    // dW1, dW2 and dh; the rest (bias sums, relu mask, softmax) is O(N·(H + C)).
    assert!(s[2].flops >= matmul + 2 * n * h * c && s[2].flops < matmul + 2 * n * h * c + 20 * n * (h + c), "{s:?}");
    // The update touches each parameter a couple of times.
    let params = i * h + h + h * c + c;
    assert_eq!(s[3].flops, 2 * params);
    assert_eq!(s.iter().map(|p| p.flops).sum::<u64>(), nnc_ir::cost::flops(g, batch));
}

/// `gradients` w.r.t. any f32 value; zero for values the loss does not depend on.
#[test]
fn gradients_of_inputs_intermediates_and_unrelated_values() {
    let mut g = Graph::new("m");
    let x = input(&mut g, &[3]);
    let p = g.param("p", small(&[3])).unwrap();
    let unrelated = g.param("u", small(&[2, 2])).unwrap();
    let h = g.mul(x, p).unwrap();
    let e = g.unary(UnaryOp::Exp, h).unwrap();
    let loss = g.reduce(ReduceOp::Sum, e, &[0, 1], false).unwrap();
    g.set_outputs(vec![loss]);
    let (mut gg, grads) = gradients(&g, loss, &[x, h, unrelated]).unwrap();
    assert_eq!(gg.ty(grads[0]), g.ty(x));
    assert_eq!(gg.ty(grads[2]), g.ty(unrelated));
    gg.set_outputs(grads);
    let xv = Tensor::from_f32(&[2, 3], vec![1.0, -1.0, 0.5, 0.0, 2.0, -2.0]).unwrap();
    let out = nnc_interp::run(&gg, &feeds(vec![("input", xv.clone())])).unwrap();
    let xs = f32s(&xv);
    for (k, &xk) in xs.iter().enumerate() {
        let e = (0.1 * xk).exp();
        assert!((f32s(&out[0])[k] - 0.1 * e).abs() < 1e-6);
        assert!((f32s(&out[1])[k] - e).abs() < 1e-6);
    }
    assert_eq!(f32s(&out[2]), [0.0; 4]);

    let err = gradients(&g, h, &[p]).unwrap_err();
    assert!(err.to_string().contains("must be an f32 scalar"), "{err}");
}

/// The training step is valid IR whose text form round-trips, for every optimizer.
#[test]
fn training_steps_verify_and_round_trip() {
    let model = mlp(&mut rng(0), &[5, 4, 3], &[UnaryOp::Gelu { approximate: true }], Dense::TransB, true);
    for optimizer in [
        Optimizer::Sgd,
        Optimizer::momentum(),
        Optimizer::Momentum { momentum: 0.5, nesterov: true },
        Optimizer::adam(),
    ] {
        for weight_decay in [0.0, 1e-3] {
            let tg =
                training_graph(&model, &TrainOptions { optimizer, weight_decay, ..TrainOptions::default() }).unwrap();
            nnc_ir::verify(&tg.graph).unwrap();
            let text = nnc_ir::print_with_data(&tg.graph);
            assert_eq!(nnc_ir::print_with_data(&nnc_ir::parse(&text).unwrap()), text);
            assert_eq!(tg.parts().len(), tg.graph.len());
        }
    }
}

/// A model's own in-place updates survive, and a parameter it updates itself is
/// left to it.
#[test]
fn model_updates_are_kept() {
    let mut g = Graph::new("m");
    let x = input(&mut g, &[3]);
    let p = g.param("p", small(&[3])).unwrap();
    let q = g.param("q", small(&[3])).unwrap();
    let count = g.push("count", Op::State { init: Some(Tensor::scalar_f32(0.0)) }, &[]).unwrap();
    let one = g.scalar(1.0).unwrap();
    let count_new = g.add(count, one).unwrap();
    let q_new = g.mul(q, one).unwrap();
    let y = g.add(x, p).unwrap();
    let y = g.mul(y, q).unwrap();
    g.set_outputs(vec![y]);
    g.set_updates(vec![(count, count_new), (q, q_new)]);
    let tg = training_graph(&g, &TrainOptions::default()).unwrap();
    let updated: Vec<&str> = tg.graph.updates().iter().map(|&(l, _)| tg.graph.name_of(l)).collect();
    assert_eq!(updated, ["count", "q", "p"]);
    assert_eq!(tg.notes, ["parameter %q is updated by the model itself and is not trained"]);
}
