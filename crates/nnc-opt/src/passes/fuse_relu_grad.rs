//! The ReLU mask of the backward pass, `where(h > 0, g, 0)`, moves into the epilogue
//! of the matrix product that computes `g`: `fused.dense_relu_grad a, b, h`.
//!
//! Why the producer's epilogue and not the consumers' prologue: the masked gradient
//! has two consumers (the weight-gradient product and the bias-gradient sum), so a
//! prologue would apply the mask, and read `h`, twice; in the epilogue it is applied
//! once, on the tile still in registers, and the unmasked `g` is never written. The
//! bias-gradient sum can then join the same epilogue (`fuse_bias_grad`).
//!
//! Fires only when `g` is a 2-D matmul used by nothing else, the condition compares
//! a value of `g`'s type against the scalar constant 0, and the other branch is 0.

use crate::pattern::{binary, const_all, matmul_2d, scalar_const, Uses};
use crate::rewrite::Rewriter;
use crate::OptError;
use nnc_ir::{BinaryOp, FusedOp, GradOut, Graph, Op};

pub const NAME: &str = "fuse_relu_grad";

pub fn run(graph: &Graph) -> Result<Graph, OptError> {
    let uses = Uses::of(graph);
    let mut rw = Rewriter::new(graph, NAME);
    for id in graph.ids() {
        let v = graph.value(id);
        if v.op != Op::Where {
            continue;
        }
        let (cond, g, other) = (v.args[0], v.args[1], v.args[2]);
        let Some((h, zero)) = binary(graph, cond, BinaryOp::Greater) else { continue };
        let Some((trans_a, trans_b, a, b)) = matmul_2d(graph, g) else { continue };
        let zero_else = const_all(graph, other, 0.0) && graph.ty(other).rank() == 0;
        if scalar_const(graph, zero) != Some(0.0) || !zero_else || !uses.only_user(g, id) || graph.ty(h) != graph.ty(g)
        {
            continue;
        }
        let op = FusedOp::DenseReluGrad { trans_a, trans_b, out: GradOut::Grad };
        rw.try_replace(id, Op::Fused(op), vec![a, b, h]);
    }
    rw.finish()
}
