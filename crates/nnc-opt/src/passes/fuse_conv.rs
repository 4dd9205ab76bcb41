//! Convolutions with their epilogue: `conv → [add a per-channel bias] → [add a
//! residual] → [activation] → [max with a constant] → [min with a constant]` becomes
//! one `fused.conv`, so each output goes through the epilogue as the convolution
//! writes it instead of in a pass of its own per step. This is the shape the ONNX
//! importer gives `Conv` with a bias, ResNet's `conv → add(shortcut) → relu` and
//! MobileNet's ReLU6 (`Clip(0, 6)`, imported as `max` then `min`).
//!
//! As in `fuse_dense`, each step is absorbed only if the value before it has no other
//! use (and is not an output), so a pre-activation the backward pass reads stays. The
//! bias must be an f32 `[M, 1, ..]` or `[1, M, 1, ..]` (one value per output channel,
//! as the importer reshapes it); the residual must have the convolution's type (no
//! broadcast); the clip bounds must be scalar constants.

use crate::pattern::{commuted, scalar_const, unary, Uses};
use crate::rewrite::Rewriter;
use crate::OptError;
use nnc_ir::fused::{is_channel_bias, is_dense_activation};
use nnc_ir::{BinaryOp, ConvEpilogue, FusedOp, Graph, Op, TensorType, ValueId};

pub const NAME: &str = "fuse_conv";

pub fn run(graph: &Graph) -> Result<Graph, OptError> {
    let uses = Uses::of(graph);
    let mut rw = Rewriter::new(graph, NAME);
    // Steps already absorbed by an earlier convolution: a residual add joins two
    // chains (ResNet's downsampling shortcut is a convolution too) and goes to the first.
    let mut claimed = vec![false; graph.len()];
    for id in graph.ids() {
        let Op::Conv(conv) = &graph.value(id).op else { continue };
        let ty = graph.ty(id);
        let mut end = id;
        let mut e = ConvEpilogue::default();
        let mut args: Vec<ValueId> = graph.value(id).args.clone();
        let mut steps = Vec::new();
        let next = |end: ValueId| uses.single_user(end).filter(|u| !claimed[u.index()]);
        // The other operand of an f32 `add(end, ·)`, the only user of `end`, that keeps
        // the convolution's type, if `fits` accepts it.
        let added = |end: ValueId, fits: &dyn Fn(&TensorType) -> bool| -> Option<(ValueId, ValueId)> {
            let u = next(end)?;
            let (_, c) = commuted(graph, u, BinaryOp::Add)
                .into_iter()
                .flatten()
                .find(|&(x, c)| x == end && c != end && fits(graph.ty(c)) && graph.ty(u) == ty)?;
            Some((u, c))
        };
        if let Some((u, b)) = added(end, &|t| is_channel_bias(t, ty)) {
            e.bias = true;
            args.push(b);
            end = u;
            steps.push(u);
        }
        if let Some((u, r)) = added(end, &|t| t == ty) {
            e.residual = true;
            args.push(r);
            end = u;
            steps.push(u);
        }
        if let Some(u) = next(end) {
            if let Some((f, x)) = unary(graph, u) {
                if x == end && is_dense_activation(f) {
                    e.act = Some(f);
                    end = u;
                    steps.push(u);
                }
            }
        }
        for (op, bound) in [(BinaryOp::Max, &mut e.min), (BinaryOp::Min, &mut e.max)] {
            let Some(u) = next(end) else { break };
            let k = commuted(graph, u, op).into_iter().flatten().find_map(|(x, k)| {
                if x == end && graph.ty(u) == ty {
                    scalar_const(graph, k).filter(|k| !k.is_nan())
                } else {
                    None
                }
            });
            if let Some(k) = k {
                *bound = Some(k);
                end = u;
                steps.push(u);
            }
        }
        if end == id {
            continue;
        }
        let fused = Op::Fused(FusedOp::Conv { conv: conv.clone(), epilogue: e });
        if rw.try_replace(end, fused, args) {
            for s in steps {
                claimed[s.index()] = true;
            }
        }
    }
    rw.finish()
}
