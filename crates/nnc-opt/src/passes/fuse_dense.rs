//! Forward layers: `matmul → [mul by a scalar constant] → [add a bias row vector] →
//! [activation]` becomes one `fused.dense[alpha=.., bias, act=..]`, so the product's
//! result goes through the epilogue in registers and is written once.
//!
//! Each step is absorbed only if the value before it has no other use (and is not an
//! output): when the backward pass reads the pre-activation (leaky ReLU and GELU
//! gradients use it), only `matmul + bias` is fused and the activation stays. The
//! alpha step is Gemm's `alpha` as the ONNX importer writes it (a multiplication
//! right after the product); a multiplication after the bias is not a Gemm alpha and
//! is left alone. The bias must be an f32 row vector `[n]` or `[1, n]`, added to
//! every row; a bias of any other shape (a column `[m, 1]`, a full matrix) stays a
//! separate add. A bare matmul with no epilogue is left as it is.

use crate::pattern::{commuted, is_matrix, matmul_2d, scalar_const, unary, Uses};
use crate::rewrite::Rewriter;
use crate::OptError;
use nnc_ir::fused::is_dense_activation;
use nnc_ir::{BinaryOp, Dim, FusedOp, Graph, Op, TensorType, ValueId};

pub const NAME: &str = "fuse_dense";

pub fn run(graph: &Graph) -> Result<Graph, OptError> {
    let uses = Uses::of(graph);
    let mut rw = Rewriter::new(graph, NAME);
    for id in graph.ids() {
        let Some((trans_a, trans_b, a, b)) = matmul_2d(graph, id) else { continue };
        let n = graph.ty(id).shape.0[1];
        let mut end = id;
        let mut alpha = 1.0;
        let mut bias = None;
        let mut act = None;
        if let Some(u) = uses.single_user(end) {
            if let Some(k) = commuted(graph, u, BinaryOp::Mul).into_iter().flatten().find_map(|(x, k)| {
                if x == end {
                    scalar_const(graph, k)
                } else {
                    None
                }
            }) {
                alpha = k;
                end = u;
            }
        }
        if let Some(u) = uses.single_user(end) {
            let row = commuted(graph, u, BinaryOp::Add)
                .into_iter()
                .flatten()
                .find(|&(x, c)| x == end && is_row_vector(graph.ty(c), n) && is_matrix(graph.ty(u)));
            if let Some((_, c)) = row {
                bias = Some(c);
                end = u;
            }
        }
        if let Some(u) = uses.single_user(end) {
            if let Some((f, x)) = unary(graph, u) {
                if x == end && is_dense_activation(f) {
                    act = Some(f);
                    end = u;
                }
            }
        }
        if end == id {
            continue;
        }
        let mut args: Vec<ValueId> = vec![a, b];
        args.extend(bias);
        let op = FusedOp::Dense { trans_a, trans_b, alpha, bias: bias.is_some(), act };
        rw.try_replace(end, Op::Fused(op), args);
    }
    rw.finish()
}

/// An f32 `[n]` or `[1, n]`, which broadcasts over the rows of an `[m, n]` matrix.
fn is_row_vector(ty: &TensorType, n: Dim) -> bool {
    ty.dtype == nnc_ir::DType::F32 && (ty.shape.0 == [n] || ty.shape.0 == [Dim::Fixed(1), n])
}
