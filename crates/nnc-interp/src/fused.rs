//! Fused ops, evaluated as their definition: the primitive expansion
//! (`FusedOp::expand`) run op by op with the ordinary kernels. So a fused graph gives
//! exactly the numbers of the primitive graph it was made from.

use crate::eval::eval;
use nnc_ir::{FusedOp, Graph, Op, Tensor, TensorType};
use std::borrow::Cow;

pub(crate) fn eval_fused(f: &FusedOp, args: &[&Tensor]) -> Result<Tensor, String> {
    let mut g = Graph::new("fused");
    let mut ids = Vec::with_capacity(args.len());
    for (i, t) in args.iter().enumerate() {
        let ty = TensorType::new(t.dtype(), t.ir_shape());
        ids.push(g.input(&format!("arg{i}"), ty).map_err(|e| e.to_string())?);
    }
    let out = f.expand(&mut g, &ids, "fused").map_err(|e| e.to_string())?;
    let mut values: Vec<Option<Cow<'_, Tensor>>> = Vec::with_capacity(g.len());
    for v in g.values() {
        let t = match &v.op {
            // The inputs were pushed first, in operand order.
            Op::Input => Cow::Borrowed(args[values.len()]),
            Op::Const(t) => Cow::Borrowed(t),
            op => {
                let operands = v
                    .args
                    .iter()
                    .map(|a| values[a.index()].as_deref().ok_or_else(|| format!("%{} is not computed", v.name)))
                    .collect::<Result<Vec<&Tensor>, String>>()?;
                Cow::Owned(eval(op, &operands)?)
            }
        };
        values.push(Some(t));
    }
    values.swap_remove(out.index()).map(Cow::into_owned).ok_or_else(|| "the expansion computed nothing".to_string())
}
