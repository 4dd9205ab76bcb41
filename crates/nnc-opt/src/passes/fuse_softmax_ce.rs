//! Softmax cross-entropy as nnc-autodiff writes it becomes one kernel:
//!
//! ```text
//! loss = neg(reduce_mean[0](reduce_sum[1](one_hot(labels) * log_softmax[1](logits))))
//!   →  fused.softmax_ce %logits, %labels
//! d_lp = broadcast(-1 / N) * one_hot(labels)                 (N = Σ broadcast(1, [N]))
//! grad = d_lp - exp(log_softmax(logits)) * reduce_sum[1, keep](d_lp)
//!   →  fused.softmax_ce[out=grad] %logits, %labels           ((softmax - onehot)/N)
//! ```
//!
//! The two are siblings (same operands), one kernel that reads the logits and labels
//! once and writes the loss and the gradient; `log_softmax`, `one_hot` and the
//! batch-size computation die with them. `-1` may still be `neg(1)` (before
//! `const_fold`), and the scalar may reach `[N, C]` through any chain of broadcasts
//! and reshapes. Each part fires only when the chain's intermediate values have no
//! other use; a loss that is not a mean over the batch, or a gradient scaled by
//! anything but `-1/N`, is not this pattern and stays as it is.

use crate::pattern::{binary, commuted, scalar_const, unary, Uses};
use crate::rewrite::Rewriter;
use crate::OptError;
use nnc_ir::{BinaryOp, CeOut, DType, Dim, FusedOp, Graph, Op, ReduceOp, UnaryOp, ValueId};

pub const NAME: &str = "fuse_softmax_ce";

pub fn run(graph: &Graph) -> Result<Graph, OptError> {
    let uses = Uses::of(graph);
    let mut rw = Rewriter::new(graph, NAME);
    for id in graph.ids() {
        let found = loss(graph, &uses, id)
            .map(|a| (a, CeOut::Loss))
            .or_else(|| grad(graph, &uses, id).map(|a| (a, CeOut::Grad)));
        if let Some((args, out)) = found {
            rw.try_replace(id, Op::Fused(FusedOp::SoftmaxCrossEntropy { out }), args);
        }
    }
    rw.finish()
}

/// `log_softmax[axis=1](logits)` with logits `f32[M, C]`: the logits.
fn log_softmax(g: &Graph, id: ValueId) -> Option<ValueId> {
    let v = g.value(id);
    let logits = *v.args.first()?;
    let t = g.ty(logits);
    (v.op == Op::LogSoftmax { axis: 1 } && t.dtype == DType::F32 && t.rank() == 2).then_some(logits)
}

/// `one_hot[depth=C](labels)` matching the logits `[M, C]`: the labels.
fn one_hot(g: &Graph, id: ValueId, logits: ValueId) -> Option<ValueId> {
    let v = g.value(id);
    let Op::OneHot { depth } = v.op else { return None };
    let (labels, lt) = (v.args[0], &g.ty(logits).shape.0);
    (g.ty(labels).shape.0 == [lt[0]] && lt[1] == Dim::Fixed(depth)).then_some(labels)
}

fn reduce(g: &Graph, id: ValueId, op: ReduceOp, axis: usize, keep_dims: bool) -> Option<ValueId> {
    let v = g.value(id);
    (v.op == Op::Reduce { op, axes: vec![axis], keep_dims }).then(|| v.args[0])
}

/// `-mean_rows(Σ_classes one_hot ⊙ log_softmax)`: the operands `[logits, labels]`.
fn loss(g: &Graph, uses: &Uses, id: ValueId) -> Option<Vec<ValueId>> {
    let (UnaryOp::Neg, mean) = unary(g, id)? else { return None };
    let ll = reduce(g, mean, ReduceOp::Mean, 0, false)?;
    let picked = reduce(g, ll, ReduceOp::Sum, 1, false)?;
    let chain = [(mean, id), (ll, mean), (picked, ll)];
    if !chain.iter().all(|&(x, user)| uses.only_user(x, user)) {
        return None;
    }
    commuted(g, picked, BinaryOp::Mul).into_iter().flatten().find_map(|(oh, lp)| {
        let logits = log_softmax(g, lp)?;
        Some(vec![logits, one_hot(g, oh, logits)?])
    })
}

/// The gradient of that loss with respect to the logits: `[logits, labels]`.
fn grad(g: &Graph, uses: &Uses, id: ValueId) -> Option<Vec<ValueId>> {
    let (d_lp, scaled) = binary(g, id, BinaryOp::Sub)?;
    let (probs, row_sum) = commuted(g, scaled, BinaryOp::Mul).into_iter().flatten().find(|&(p, s)| {
        unary(g, p).is_some_and(|(u, _)| u == UnaryOp::Exp) && reduce(g, s, ReduceOp::Sum, 1, true) == Some(d_lp)
    })?;
    let (_, lp) = unary(g, probs)?;
    let logits = log_softmax(g, lp)?;
    let internal = uses.only_user(scaled, id)
        && uses.only_user(probs, scaled)
        && uses.only_user(row_sum, scaled)
        && uses.used_only_by(d_lp, &[row_sum, id]);
    if !internal {
        return None;
    }
    let rows = g.ty(logits).shape.0[0];
    commuted(g, d_lp, BinaryOp::Mul).into_iter().flatten().find_map(|(scale, oh)| {
        let labels = one_hot(g, oh, logits)?;
        minus_one_over_rows(g, splat_source(g, scale)?, rows).then(|| vec![logits, labels])
    })
}

/// The scalar a chain of broadcasts and reshapes spreads over a tensor.
fn splat_source(g: &Graph, mut id: ValueId) -> Option<ValueId> {
    loop {
        let v = g.value(id);
        match v.op {
            Op::Broadcast { .. } | Op::Reshape { .. } => id = v.args[0],
            _ => return (g.ty(id).rank() == 0).then_some(id),
        }
    }
}

/// `-1 / Σ broadcast[rows](1)`: minus one over the number of rows.
fn minus_one_over_rows(g: &Graph, id: ValueId, rows: Dim) -> bool {
    let Some((k, count)) = binary(g, id, BinaryOp::Div) else { return false };
    let minus_one = scalar_const(g, k) == Some(-1.0)
        || unary(g, k).is_some_and(|(u, one)| u == UnaryOp::Neg && scalar_const(g, one) == Some(1.0));
    let Some(ones) = reduce(g, count, ReduceOp::Sum, 0, false) else { return false };
    let v = g.value(ones);
    minus_one && v.op == (Op::Broadcast { shape: nnc_ir::Shape(vec![rows]) }) && scalar_const(g, v.args[0]) == Some(1.0)
}
