//! The bias gradient, a sum over rows of the layer's output gradient, joins the
//! epilogue of the fused kernel that produces that gradient (as its `col_sum`
//! result), so the gradient is not read back from memory to be summed.
//!
//! It pays only where the producer is a fused kernel with an epilogue:
//! `fused.dense_relu_grad` and the cross-entropy gradient `fused.softmax_ce[out=grad]`.
//! A sum over rows of anything else (a primitive, a plain matmul) stays a reduction,
//! as does a sum over other axes or with `keep_dims`.

use crate::rewrite::Rewriter;
use crate::OptError;
use nnc_ir::{CeOut, FusedOp, GradOut, Graph, Op, ReduceOp};

pub const NAME: &str = "fuse_bias_grad";

pub fn run(graph: &Graph) -> Result<Graph, OptError> {
    let mut rw = Rewriter::new(graph, NAME);
    for id in graph.ids() {
        let v = graph.value(id);
        let Op::Reduce { op: ReduceOp::Sum, axes, keep_dims: false } = &v.op else { continue };
        let grad = graph.value(v.args[0]);
        if axes[..] != [0] || grad.ty.rank() != 2 {
            continue;
        }
        let col_sum = match grad.op {
            Op::Fused(FusedOp::DenseReluGrad { trans_a, trans_b, out: GradOut::Grad }) => {
                FusedOp::DenseReluGrad { trans_a, trans_b, out: GradOut::ColSum }
            }
            Op::Fused(FusedOp::SoftmaxCrossEntropy { out: CeOut::Grad }) => {
                FusedOp::SoftmaxCrossEntropy { out: CeOut::GradColSum }
            }
            _ => continue,
        };
        rw.try_replace(id, Op::Fused(col_sum), grad.args.clone());
    }
    rw.finish()
}
