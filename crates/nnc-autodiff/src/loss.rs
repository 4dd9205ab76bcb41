//! Attaching a loss to the model's output.
//!
//! - Cross-entropy: `labels: i64[N]` class indices and class scores `[N, C]`.
//!   `loss = -mean_N(sum_C(one_hot(labels) ⊙ log_softmax(logits)))`. `log_softmax` is
//!   max-subtracted by definition of the op, so this is stable for any logits. If the
//!   model ends in `softmax`/`log_softmax` over the classes (skl2onnx classifiers end in
//!   softmax), the loss is attached to the logits before it, as training frameworks
//!   do; taking the log of a softmax that already underflowed would give -inf.
//! - Mean squared error: `labels` has the output's type, and
//!   `loss = mean over every element (N × features) of (output - labels)²`,
//!   PyTorch's `MSELoss()` default (Keras' `mse` averages the same way).

use crate::emit::Emitter;
use crate::error::AutodiffError;
use crate::Loss;
use nnc_ir::{DType, Dim, Graph, Op, ReduceOp, Shape, TensorType, UnaryOp, ValueId};

/// The name of the labels input and of the loss value.
pub const LABELS: &str = "labels";
pub const LOSS: &str = "loss";

/// What [`attach`] added: the scalar loss and the value it is computed from (the
/// logits for cross-entropy, the model's output for MSE).
pub(crate) struct Attached {
    pub loss: ValueId,
    pub prediction: ValueId,
}

/// Picks the model output to train, adds the `labels` input and the loss.
pub(crate) fn attach(
    em: &mut Emitter,
    loss: Loss,
    output: Option<&str>,
    notes: &mut Vec<String>,
) -> Result<Attached, AutodiffError> {
    let out = pick_output(&em.graph, loss, output, notes)?;
    match loss {
        Loss::CrossEntropy => cross_entropy(em, out, notes),
        Loss::Mse => mse(em, out),
    }
}

fn pick_output(
    graph: &Graph,
    loss: Loss,
    wanted: Option<&str>,
    notes: &mut Vec<String>,
) -> Result<ValueId, AutodiffError> {
    let err =
        |output: &str, reason: String| AutodiffError::Loss { loss: loss.name(), output: output.to_string(), reason };
    if let Some(name) = wanted {
        return graph.find(name).ok_or_else(|| err(name, "the model has no value of that name".into()));
    }
    let candidates: Vec<ValueId> =
        graph.outputs().iter().copied().filter(|&o| graph.ty(o).dtype == DType::F32).collect();
    match candidates.as_slice() {
        [] => Err(err(&graph.name, "the model has no f32 output".into())),
        [only] => Ok(*only),
        [first, ..] => {
            let names: Vec<String> = candidates.iter().map(|&o| format!("%{}", graph.name_of(o))).collect();
            notes.push(format!(
                "the model has {} f32 outputs ({}); the loss is attached to the first, %{}",
                candidates.len(),
                names.join(", "),
                graph.name_of(*first)
            ));
            Ok(*first)
        }
    }
}

fn cross_entropy(em: &mut Emitter, out: ValueId, notes: &mut Vec<String>) -> Result<Attached, AutodiffError> {
    let graph = &em.graph;
    let name = graph.name_of(out).to_string();
    let err = |reason: String| AutodiffError::Loss { loss: Loss::CrossEntropy.name(), output: name.clone(), reason };
    let ty = graph.ty(out).clone();
    if ty.dtype != DType::F32 {
        return Err(err(format!("cross-entropy needs f32 class scores, but the output is {ty}")));
    }
    let (rows, classes) = match ty.shape.dims() {
        &[rows, classes] => (rows, classes),
        _ => {
            return Err(err(format!(
                "cross-entropy needs class scores of shape [N, C] (one row of C scores per example), \
                 but the output has shape {} (rank {}); use --loss mse for other outputs",
                ty.shape,
                ty.rank()
            )))
        }
    };
    let classes = match classes {
        Dim::Fixed(c) if c >= 2 => c,
        Dim::Fixed(_) => {
            return Err(err(format!(
                "the output {ty} has a single class: its softmax is constantly 1 and the loss constantly 0; \
                 use --loss mse for a single output"
            )))
        }
        Dim::Batch => return Err(err(format!("the class axis of {ty} must be static, not the batch N"))),
    };
    let logits = strip_softmax(graph, out, notes).map_err(err)?;

    let labels = em.graph.input(LABELS, TensorType::new(DType::I64, Shape(vec![rows])))?;
    let log_probs = em.named("loss.log_probs", Op::LogSoftmax { axis: 1 }, &[logits])?;
    let one_hot = em.named("loss.one_hot", Op::OneHot { depth: classes }, &[labels])?;
    let picked = em.named("loss.picked", Op::Binary(nnc_ir::BinaryOp::Mul), &[one_hot, log_probs])?;
    let sum = Op::Reduce { op: ReduceOp::Sum, axes: vec![1], keep_dims: false };
    let log_likelihood = em.named("loss.log_likelihood", sum, &[picked])?;
    let mean = Op::Reduce { op: ReduceOp::Mean, axes: vec![0], keep_dims: false };
    let mean = em.named("loss.mean", mean, &[log_likelihood])?;
    let loss = em.named(LOSS, Op::Unary(UnaryOp::Neg), &[mean])?;
    Ok(Attached { loss, prediction: logits })
}

/// The logits under a final `softmax`/`log_softmax` over the classes (looking through
/// `identity` and f32 casts), or `out` itself when there is none.
fn strip_softmax(graph: &Graph, out: ValueId, notes: &mut Vec<String>) -> Result<ValueId, String> {
    let mut cur = out;
    loop {
        let v = graph.value(cur);
        match v.op {
            Op::Unary(UnaryOp::Identity) | Op::Cast { to: DType::F32 } if graph.ty(v.args[0]).dtype == DType::F32 => {
                cur = v.args[0];
            }
            Op::Softmax { axis } | Op::LogSoftmax { axis } => {
                if axis != 1 {
                    return Err(format!(
                        "the output is a {} over axis {axis}, not over the classes (axis 1)",
                        v.op.mnemonic()
                    ));
                }
                let logits = v.args[0];
                notes.push(format!(
                    "loss attached to the logits %{} before the final {} %{}",
                    graph.name_of(logits),
                    v.op.mnemonic(),
                    v.name
                ));
                return Ok(logits);
            }
            _ => return Ok(out),
        }
    }
}

fn mse(em: &mut Emitter, out: ValueId) -> Result<Attached, AutodiffError> {
    let ty = em.ty(out).clone();
    if ty.dtype != DType::F32 {
        return Err(AutodiffError::Loss {
            loss: Loss::Mse.name(),
            output: em.graph.name_of(out).to_string(),
            reason: format!("mean squared error needs an f32 output, but it is {ty}"),
        });
    }
    let labels = em.graph.input(LABELS, ty.clone())?;
    let diff = em.named("loss.diff", Op::Binary(nnc_ir::BinaryOp::Sub), &[out, labels])?;
    let sq = em.named("loss.square", Op::Binary(nnc_ir::BinaryOp::Mul), &[diff, diff])?;
    let mean = Op::Reduce { op: ReduceOp::Mean, axes: (0..ty.rank()).collect(), keep_dims: false };
    let loss = em.named(LOSS, mean, &[sq])?;
    Ok(Attached { loss, prediction: out })
}
