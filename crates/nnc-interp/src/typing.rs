//! The concrete type of an op's result, found before computing it.
//!
//! The interpreter runs `nnc_ir::infer` on the operands' actual shapes (with the batch
//! resolved in reshape/broadcast targets). This makes its semantics exactly the IR's
//! typing rules, reports bad operands of an unverified graph with the builder's own
//! messages, and lets the caller refuse an over-large or mistyped result before
//! allocating it.

use nnc_ir::infer::infer_type;
use nnc_ir::{Op, Shape, Tensor, TensorType, MAX_ELEMENTS};
use std::borrow::Cow;

/// `op` with `N` replaced by `batch` in its shape attributes.
pub(crate) fn resolve_batch(op: &Op, batch: usize) -> Cow<'_, Op> {
    let fixed = |s: &Shape| Shape::fixed(&s.resolve(batch));
    match op {
        Op::Reshape { shape } if shape.has_batch() => Cow::Owned(Op::Reshape { shape: fixed(shape) }),
        Op::Broadcast { shape } if shape.has_batch() => Cow::Owned(Op::Broadcast { shape: fixed(shape) }),
        _ => Cow::Borrowed(op),
    }
}

/// The type of `op` applied to `args`; `op` must have its batch resolved. Errors
/// if the operands do not fit the op, or if the result would have more than
/// `MAX_ELEMENTS` elements per batch element (the verifier's limit).
pub(crate) fn result_type(op: &Op, args: &[&Tensor], batch: usize) -> Result<TensorType, String> {
    let types: Vec<TensorType> = args.iter().map(|t| TensorType::new(t.dtype(), t.ir_shape())).collect();
    let refs: Vec<&TensorType> = types.iter().collect();
    let ty = infer_type(op, &refs)?;
    let limit = MAX_ELEMENTS.saturating_mul(batch.max(1));
    match ty.shape.numel(batch) {
        Some(n) if n <= limit => Ok(ty),
        _ => Err(format!("the result {ty} has more than {limit} elements")),
    }
}
