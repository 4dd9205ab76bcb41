//! Static cost estimates: op counts and floating-point operations, used by
//! `nnc compile`'s summary and by the optimizer's reports.

use crate::fused::FusedOp;
use crate::graph::{Graph, ValueId};
use crate::op::{Op, UnaryOp};
use crate::types::TensorType;
use std::collections::BTreeMap;

/// How many values each op mnemonic defines (leaves included).
pub fn op_counts(graph: &Graph) -> BTreeMap<&'static str, usize> {
    let mut counts = BTreeMap::new();
    for v in graph.values() {
        *counts.entry(v.op.mnemonic()).or_insert(0) += 1;
    }
    counts
}

/// Floating-point operations of one run at the given batch size. A multiply-add
/// counts as two; transcendental functions count as one (they are cheap next to the
/// matrix products that dominate every graph nnc targets). Data movement (reshape,
/// transpose, broadcast, cast) counts as zero.
pub fn flops(graph: &Graph, batch: usize) -> u64 {
    graph.ids().map(|id| value_flops(graph, id, batch)).sum()
}

/// Floating-point operations of one value at the given batch size (see [`flops`]).
pub fn value_flops(graph: &Graph, id: ValueId, batch: usize) -> u64 {
    let v = graph.value(id);
    let out = v.ty.shape.numel(batch).unwrap_or(0) as u64;
    match &v.op {
        Op::MatMul { trans_a, .. } => {
            let a = graph.ty(v.args[0]).shape.resolve(batch);
            let k = if *trans_a { a[a.len() - 2] } else { a[a.len() - 1] };
            2 * out * k as u64
        }
        // The three convolutions do the same multiply-adds: one per output element of
        // the forward convolution and weight of its group (padded taps included).
        Op::Conv(_) | Op::ConvBackwardData { .. } | Op::ConvBackwardFilter { .. } => {
            let (forward_out, weight) = match &v.op {
                Op::Conv(_) => (&v.ty, graph.ty(v.args[1])),
                Op::ConvBackwardData { .. } => (graph.ty(v.args[0]), graph.ty(v.args[1])),
                _ => (graph.ty(v.args[1]), &v.ty),
            };
            conv_flops(forward_out, weight, batch)
        }
        Op::Pool(pool) | Op::PoolBackward { pool, .. } => {
            let taps: usize = pool.window.kernel.iter().product();
            let pooled = match &v.op {
                Op::Pool(_) => out,
                // The backward pass visits every window of the output gradient, its last operand.
                _ => v.args.last().map_or(0, |&dy| graph.ty(dy).shape.numel(batch).unwrap_or(0) as u64),
            };
            pooled * taps as u64
        }
        Op::Unary(UnaryOp::Identity) => 0,
        Op::Unary(UnaryOp::Gelu { .. }) => 8 * out,
        Op::Unary(_) | Op::Where | Op::Binary(_) => out,
        Op::Softmax { .. } | Op::LogSoftmax { .. } => 4 * out,
        Op::Reduce { .. } => graph.ty(v.args[0]).shape.numel(batch).unwrap_or(0) as u64,
        Op::Input
        | Op::Param { .. }
        | Op::State { .. }
        | Op::OneHot { .. }
        | Op::Const(_)
        | Op::Reshape { .. }
        | Op::Transpose { .. }
        | Op::Broadcast { .. }
        | Op::Concat { .. }
        | Op::Slice { .. }
        | Op::Cast { .. } => 0,
        Op::Fused(f) if v.args.len() != f.arity() => 0,
        Op::Fused(f) => {
            // A kernel's work is counted once, on its first result in the graph.
            let sibling = |w: ValueId| match &graph.value(w).op {
                Op::Fused(g) => g.kernel() == f.kernel() && graph.value(w).args == v.args,
                _ => false,
            };
            if graph.ids().take(id.index()).any(sibling) {
                return 0;
            }
            let outs: Vec<FusedOp> = graph
                .ids()
                .filter(|&w| sibling(w))
                .filter_map(|w| match &graph.value(w).op {
                    Op::Fused(g) => Some(g.clone()),
                    _ => None,
                })
                .collect();
            let args: Vec<&TensorType> = v.args.iter().map(|&a| graph.ty(a)).collect();
            crate::fused::kernel_flops(f, &outs, &args, batch)
        }
    }
}

/// A convolution's FLOPs: a multiply and an add per element of the forward output `y`
/// and weight of its group (padded taps included).
pub(crate) fn conv_flops(y: &TensorType, weight: &TensorType, batch: usize) -> u64 {
    let per_output = weight.shape.as_fixed().map_or(0, |d| d[1..].iter().product::<usize>() as u64);
    2 * y.shape.numel(batch).unwrap_or(0) as u64 * per_output
}

/// FLOPs per example: the growth of [`flops`] per extra batch element. For an
/// inference graph this is exact; for a training step it leaves out the work that does
/// not grow with the batch (the optimizer update).
pub fn flops_per_example(graph: &Graph) -> u64 {
    flops(graph, 2).saturating_sub(flops(graph, 1))
}

/// Number of parameter elements and their bytes.
pub fn param_sizes(graph: &Graph) -> (usize, usize) {
    graph.params().iter().fold((0, 0), |(n, b), &p| {
        let ty = graph.ty(p);
        let count = ty.shape.numel(1).unwrap_or(0);
        (n + count, b + count * ty.dtype.size_bytes())
    })
}
