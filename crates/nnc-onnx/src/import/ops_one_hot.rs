//! OneHot. The IR's one-hot appends the class axis last with off/on values 0 and 1;
//! other values are applied with a scale and a shift, another axis with a transpose.

use super::known::Known;
use super::{norm_axis, Ctx, Importer};
use crate::OnnxError;
use nnc_ir::{BinaryOp, Op, Tensor};

impl Importer {
    pub(super) fn one_hot(&mut self, ctx: &Ctx) -> Result<(), OnnxError> {
        let (indices, depth, values, out) = (ctx.req_input(0)?, ctx.req_input(1)?, ctx.req_input(2)?, ctx.out()?);
        let rank = self.ty(ctx, indices)?.rank();
        let axis = ctx.attr(ctx.attrs().int("axis", -1).and_then(|a| norm_axis(a, rank + 1)))?;
        // Depth may be of any numeric type; a float depth is truncated.
        let depth = match self.need_known(ctx, depth, "the depth input")? {
            Known::T(Tensor::F32(d)) if d.len() == 1 => d.iter().map(|&v| v as i64).next(),
            k => k.ints().filter(|d| d.len() == 1).map(|d| d[0]),
        };
        let depth = depth.and_then(|d| usize::try_from(d).ok()).filter(|&d| d >= 1);
        let depth = depth.ok_or_else(|| ctx.err("depth must be one positive number"))?;
        let (off, on) = match self.need_known(ctx, values, "the values input")? {
            Known::T(Tensor::F32(v)) if v.len() == 2 => {
                let v: Vec<f32> = v.iter().copied().collect();
                (v[0], v[1])
            }
            _ => return Err(ctx.err("values must be two float constants [off, on]")),
        };
        let ii = self.ir(ctx, indices)?;
        let (scale, shift, moved) = (on - off != 1.0, off != 0.0, axis != rank);
        let hot_name = if scale || shift || moved { self.fresh(&format!("{out}_one_hot")) } else { out.to_string() };
        let mut y = self.emit(ctx, &hot_name, Op::OneHot { depth }, &[ii])?;
        if scale {
            let k = self.emit_const(ctx, out, "scale", Tensor::scalar_f32(on - off))?;
            let name = if shift || moved { self.fresh(&format!("{out}_scaled")) } else { out.to_string() };
            y = self.emit(ctx, &name, Op::Binary(BinaryOp::Mul), &[y, k])?;
        }
        if shift {
            let k = self.emit_const(ctx, out, "off", Tensor::scalar_f32(off))?;
            let name = if moved { self.fresh(&format!("{out}_shifted")) } else { out.to_string() };
            y = self.emit(ctx, &name, Op::Binary(BinaryOp::Add), &[y, k])?;
        }
        if moved {
            // Move the class axis from last to `axis`.
            let perm: Vec<usize> = (0..axis).chain([rank]).chain(axis..rank).collect();
            y = self.emit(ctx, out, Op::Transpose { perm }, &[y])?;
        }
        self.define_ir(out, y);
        Ok(())
    }
}
