//! ReduceSum, ReduceMean and ReduceMax.
//!
//! The axes moved from an attribute to an input at opset 13 for ReduceSum and at 18
//! for the others; `noop_with_empty_axes` came with the input form.

use super::{norm_axis, Ctx, Importer};
use crate::OnnxError;
use nnc_ir::{Op, ReduceOp};

impl Importer {
    pub(super) fn reduce(&mut self, ctx: &Ctx, op: ReduceOp) -> Result<(), OnnxError> {
        let (x, out) = (ctx.req_input(0)?, ctx.out()?);
        let rank = self.ty(ctx, x)?.rank();
        let attrs = ctx.attrs();
        let keep_dims = ctx.attr(attrs.int("keepdims", 1))? != 0;
        let axes_as_input = ctx.opset >= if op == ReduceOp::Sum { 13 } else { 18 };
        let (axes, noop) = if axes_as_input {
            let noop = ctx.attr(attrs.int("noop_with_empty_axes", 0))? != 0;
            let axes = match ctx.input(1) {
                Some(name) => Some(
                    self.need_known(ctx, name, "the axes input")?
                        .ints()
                        .ok_or_else(|| ctx.err("the axes input must hold integers"))?,
                ),
                None => None,
            };
            (axes, noop)
        } else {
            (ctx.attr(attrs.ints("axes"))?, false)
        };
        let axes: Vec<usize> = match axes.filter(|a| !a.is_empty()) {
            // Reducing over no axes is the identity; the IR says so with `axes=[]`.
            None if noop => Vec::new(),
            None => (0..rank).collect(),
            Some(list) => {
                let mut at = list.iter().map(|&a| norm_axis(a, rank)).collect::<Result<Vec<_>, _>>();
                if let Ok(at) = &mut at {
                    at.sort_unstable();
                }
                let at = at.map_err(|m| ctx.err(m))?;
                if at.windows(2).any(|w| w[0] == w[1]) {
                    return Err(ctx.err(format!("axes {list:?} repeat an axis")));
                }
                at
            }
        };
        let ix = self.ir(ctx, x)?;
        let id = self.emit(ctx, out, Op::Reduce { op, axes, keep_dims }, &[ix])?;
        self.define_ir(out, id);
        Ok(())
    }
}
