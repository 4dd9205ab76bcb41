//! Gemm, MatMul, Softmax and LogSoftmax.

use super::ops_shape::product_dim;
use super::{norm_axis, Ctx, Importer};
use crate::OnnxError;
use nnc_ir::{infer, BinaryOp, Dim, Graph, Op, ReduceOp, Shape, Tensor, UnaryOp, ValueId};

impl Importer {
    /// `alpha * A' B' + beta * C` → matmul (with transpose flags), then a scale and a
    /// bias add only when they do something.
    pub(super) fn gemm(&mut self, ctx: &Ctx) -> Result<(), OnnxError> {
        let attrs = ctx.attrs();
        let alpha = ctx.attr(attrs.float("alpha", 1.0))?;
        let beta = ctx.attr(attrs.float("beta", 1.0))?;
        let trans_a = ctx.attr(attrs.int("transA", 0))? != 0;
        let trans_b = ctx.attr(attrs.int("transB", 0))? != 0;
        let (a, b, out) = (ctx.req_input(0)?, ctx.req_input(1)?, ctx.out()?);
        let c = ctx.input(2).filter(|_| beta != 0.0);

        let (ta, tb) = (self.ty(ctx, a)?, self.ty(ctx, b)?);
        if ta.rank() != 2 || tb.rank() != 2 {
            return Err(ctx.err(format!("A and B must be 2-D, got A {} and B {}", ta.shape, tb.shape)));
        }
        let (m, ka) = if trans_a { (ta.shape.0[1], ta.shape.0[0]) } else { (ta.shape.0[0], ta.shape.0[1]) };
        let (kb, n) = if trans_b { (tb.shape.0[1], tb.shape.0[0]) } else { (tb.shape.0[0], tb.shape.0[1]) };
        if ka != kb {
            let flag = |t: bool, f: &str| if t { format!(" with {f}=1") } else { String::new() };
            return Err(ctx.err(format!(
                "A {}{} and B {}{} disagree on the inner dimension K: {ka} vs {kb}",
                ta.shape,
                flag(trans_a, "transA"),
                tb.shape,
                flag(trans_b, "transB")
            )));
        }

        let (ia, ib) = (self.ir(ctx, a)?, self.ir(ctx, b)?);
        let scale = alpha != 1.0;
        let last_is = |step: usize| (step == 0 && !scale && c.is_none()) || (step == 1 && c.is_none());
        let name = |imp: &mut Self, step: usize, suffix: &str| {
            if last_is(step) {
                out.to_string()
            } else {
                imp.fresh(&format!("{out}_{suffix}"))
            }
        };
        let mm_name = name(self, 0, "matmul");
        let mut y = self.emit(ctx, &mm_name, Op::MatMul { trans_a, trans_b }, &[ia, ib])?;
        if scale {
            let k = self.emit_const(ctx, out, "alpha", Tensor::scalar_f32(alpha))?;
            let scaled = name(self, 1, "scaled");
            y = self.emit(ctx, &scaled, Op::Binary(BinaryOp::Mul), &[y, k])?;
        }
        if let Some(c) = c {
            let mut ic = self.ir(ctx, c)?;
            if beta != 1.0 {
                let k = self.emit_const(ctx, out, "beta", Tensor::scalar_f32(beta))?;
                ic = self.emit_tmp(ctx, out, "bias", Op::Binary(BinaryOp::Mul), &[ic, k])?;
            }
            let mn = Shape(vec![m, n]);
            let sum = infer::broadcast_shapes(&mn, &self.g.ty(ic).shape);
            if sum.as_ref() != Ok(&mn) {
                return Err(ctx.err(format!("C of shape {} does not broadcast to {mn}", self.g.ty(ic).shape)));
            }
            y = self.emit(ctx, out, Op::Binary(BinaryOp::Add), &[y, ic])?;
        }
        self.define_ir(out, y);
        Ok(())
    }

    /// numpy matmul. 1-D operands are promoted to matrices and the added axis removed
    /// again. A Transpose that nnc's exporter wrote for a batched matmul's transpose
    /// flag (marked `nnc.fuse`) becomes the flag again.
    pub(super) fn matmul(&mut self, ctx: &Ctx) -> Result<(), OnnxError> {
        let (a, b, out) = (ctx.req_input(0)?, ctx.req_input(1)?, ctx.out()?);
        let (ta, tb) = (self.ty(ctx, a)?, self.ty(ctx, b)?);
        let (ra, rb) = (ta.rank(), tb.rank());
        if ra == 0 || rb == 0 {
            return Err(ctx.err(format!("operands must have rank >= 1, got {} and {}", ta.shape, tb.shape)));
        }
        let mut ia = self.ir(ctx, a)?;
        let mut ib = self.ir(ctx, b)?;
        if ra == 1 {
            let shape = Shape(vec![Dim::Fixed(1), ta.shape.0[0]]);
            ia = self.emit_tmp(ctx, out, "a2d", Op::Reshape { shape }, &[ia])?;
        }
        if rb == 1 {
            let shape = Shape(vec![tb.shape.0[0], Dim::Fixed(1)]);
            ib = self.emit_tmp(ctx, out, "b2d", Op::Reshape { shape }, &[ib])?;
        }
        let (mut trans_a, mut trans_b) = (false, false);
        if self.fusable_transposes.contains(&ia) {
            if let Some(src) = swapped_last_two(&self.g, ia) {
                self.removable.insert(ia);
                (ia, trans_a) = (src, true);
            }
        }
        if self.fusable_transposes.contains(&ib) {
            if let Some(src) = swapped_last_two(&self.g, ib) {
                self.removable.insert(ib);
                (ib, trans_b) = (src, true);
            }
        }
        let promoted = ra == 1 || rb == 1;
        let mm_name = if promoted { self.fresh(&format!("{out}_matmul")) } else { out.to_string() };
        let mut y = self.emit(ctx, &mm_name, Op::MatMul { trans_a, trans_b }, &[ia, ib])?;
        if promoted {
            // Drop the axes the promotion added: M (second to last) and/or N (last).
            let mut dims = self.g.ty(y).shape.0.clone();
            let m_at = dims.len() - 2;
            if rb == 1 {
                dims.pop();
            }
            if ra == 1 {
                dims.remove(m_at);
            }
            y = self.emit(ctx, out, Op::Reshape { shape: Shape(dims) }, &[y])?;
        }
        self.define_ir(out, y);
        Ok(())
    }

    /// Opset 13 and later: softmax along one axis (default -1). Before 13 the input is
    /// viewed as 2-D at `axis` (default 1) and normalized over everything from `axis`
    /// on: a reshape around a last-axis softmax, or reductions when the batch
    /// dimension is among those axes.
    pub(super) fn softmax(&mut self, ctx: &Ctx, log: bool) -> Result<(), OnnxError> {
        let (x, out) = (ctx.req_input(0)?, ctx.out()?);
        let ty = self.ty(ctx, x)?;
        let rank = ty.rank();
        if rank == 0 {
            return Err(ctx.err("the input must have rank >= 1"));
        }
        let default = if ctx.opset >= 13 { -1 } else { 1 };
        let axis = ctx.attr(ctx.attrs().int("axis", default).and_then(|a| norm_axis(a, rank)))?;
        let make = |axis: usize| if log { Op::LogSoftmax { axis } } else { Op::Softmax { axis } };
        let ix = self.ir(ctx, x)?;
        let y = if ctx.opset >= 13 || axis == rank - 1 {
            self.emit(ctx, out, make(axis), &[ix])?
        } else if let Some(Dim::Fixed(inner)) = product_dim(&ty.shape.0[axis..]) {
            let mut dims = ty.shape.0[..axis].to_vec();
            dims.push(Dim::Fixed(inner));
            let flat = self.emit_tmp(ctx, out, "2d", Op::Reshape { shape: Shape(dims) }, &[ix])?;
            let s = self.emit_tmp(ctx, out, "softmax", make(axis), &[flat])?;
            self.emit(ctx, out, Op::Reshape { shape: ty.shape.clone() }, &[s])?
        } else {
            let axes: Vec<usize> = (axis..rank).collect();
            let reduce = |op| Op::Reduce { op, axes: axes.clone(), keep_dims: true };
            let m = self.emit_tmp(ctx, out, "max", reduce(ReduceOp::Max), &[ix])?;
            let d = self.emit_tmp(ctx, out, "shifted", Op::Binary(BinaryOp::Sub), &[ix, m])?;
            let e = self.emit_tmp(ctx, out, "exp", Op::Unary(UnaryOp::Exp), &[d])?;
            let z = self.emit_tmp(ctx, out, "sum", reduce(ReduceOp::Sum), &[e])?;
            if log {
                let l = self.emit_tmp(ctx, out, "log_sum", Op::Unary(UnaryOp::Log), &[z])?;
                self.emit(ctx, out, Op::Binary(BinaryOp::Sub), &[d, l])?
            } else {
                self.emit(ctx, out, Op::Binary(BinaryOp::Div), &[e, z])?
            }
        };
        self.define_ir(out, y);
        Ok(())
    }
}

/// The operand of a transpose that swaps exactly the last two axes.
fn swapped_last_two(g: &Graph, id: ValueId) -> Option<ValueId> {
    let v = g.value(id);
    let Op::Transpose { perm } = &v.op else { return None };
    let r = perm.len();
    let swap = r >= 2
        && perm[..r - 2].iter().enumerate().all(|(i, &p)| i == p)
        && perm[r - 2] == r - 1
        && perm[r - 1] == r - 2;
    swap.then(|| v.args[0])
}
