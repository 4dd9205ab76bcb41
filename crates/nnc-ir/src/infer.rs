//! Type inference: the result type of each op from its operand types. The builder
//! uses it to type new values and the verifier to check declared types.

use crate::op::{BinaryOp, Op, UnaryOp};
use crate::types::{DType, Dim, Shape, TensorType};

/// Numpy-style broadcast of two shapes (aligned at the right).
pub fn broadcast_shapes(a: &Shape, b: &Shape) -> Result<Shape, String> {
    let rank = a.rank().max(b.rank());
    let mut dims = Vec::with_capacity(rank);
    for i in 0..rank {
        let da = pick(a, rank, i);
        let db = pick(b, rank, i);
        dims.push(match (da, db) {
            (x, y) if x == y => x,
            (Dim::Fixed(1), y) => y,
            (x, Dim::Fixed(1)) => x,
            _ => return Err(format!("shapes {a} and {b} do not broadcast (axis {i}: {da} vs {db})")),
        });
    }
    Ok(Shape(dims))
}

fn pick(s: &Shape, rank: usize, i: usize) -> Dim {
    let offset = rank - s.rank();
    if i < offset {
        Dim::Fixed(1)
    } else {
        s.0[i - offset]
    }
}

/// The result type of `op` applied to operands of the given types.
pub fn infer_type(op: &Op, args: &[&TensorType]) -> Result<TensorType, String> {
    if args.len() != op.arity() {
        return Err(format!("takes {} operands, got {}", op.arity(), args.len()));
    }
    match op {
        Op::Input => Err("an input's type is declared, not inferred".into()),
        Op::Param { init } | Op::State { init } => match init {
            Some(t) => Ok(TensorType::new(t.dtype(), t.ir_shape())),
            None => Err("a parameter or state without an initial value has a declared type".into()),
        },
        Op::Const(t) => Ok(TensorType::new(t.dtype(), t.ir_shape())),
        Op::Unary(u) => {
            let x = args[0];
            let numeric_ok =
                matches!(u, UnaryOp::Identity) || (matches!(u, UnaryOp::Neg | UnaryOp::Relu) && x.dtype != DType::Bool);
            if x.dtype != DType::F32 && !numeric_ok {
                return Err(format!("needs f32, got {}", x.dtype));
            }
            Ok(x.clone())
        }
        Op::Binary(b) => {
            let (x, y) = (args[0], args[1]);
            if x.dtype != y.dtype {
                return Err(format!("operand types differ: {} vs {}", x.dtype, y.dtype));
            }
            if x.dtype == DType::Bool {
                return Err("needs numbers, got bool".into());
            }
            if matches!(b, BinaryOp::Pow) && x.dtype != DType::F32 {
                return Err(format!("needs f32, got {}", x.dtype));
            }
            let shape = broadcast_shapes(&x.shape, &y.shape)?;
            let dtype = if b.is_comparison() { DType::Bool } else { x.dtype };
            Ok(TensorType::new(dtype, shape))
        }
        Op::Where => {
            let (c, x, y) = (args[0], args[1], args[2]);
            if c.dtype != DType::Bool {
                return Err(format!("condition must be bool, got {}", c.dtype));
            }
            if x.dtype != y.dtype {
                return Err(format!("branch types differ: {} vs {}", x.dtype, y.dtype));
            }
            let shape = broadcast_shapes(&broadcast_shapes(&c.shape, &x.shape)?, &y.shape)?;
            Ok(TensorType::new(x.dtype, shape))
        }
        Op::MatMul { trans_a, trans_b } => infer_matmul(args[0], args[1], *trans_a, *trans_b),
        Op::Softmax { axis } | Op::LogSoftmax { axis } => {
            let x = args[0];
            if x.dtype != DType::F32 {
                return Err(format!("needs f32, got {}", x.dtype));
            }
            if *axis >= x.rank() {
                return Err(format!("axis {axis} out of range for rank {}", x.rank()));
            }
            Ok(x.clone())
        }
        Op::Reduce { axes, keep_dims, .. } => {
            let x = args[0];
            if x.dtype == DType::Bool {
                return Err("needs numbers, got bool".into());
            }
            if axes.windows(2).any(|w| w[0] >= w[1]) {
                return Err(format!("axes {axes:?} must be sorted and distinct"));
            }
            if let Some(a) = axes.iter().find(|&&a| a >= x.rank()) {
                return Err(format!("axis {a} out of range for rank {}", x.rank()));
            }
            let dims = x
                .shape
                .0
                .iter()
                .enumerate()
                .filter_map(|(i, &d)| match (axes.contains(&i), keep_dims) {
                    (false, _) => Some(d),
                    (true, true) => Some(Dim::Fixed(1)),
                    (true, false) => None,
                })
                .collect();
            Ok(TensorType::new(x.dtype, Shape(dims)))
        }
        Op::Reshape { shape } => {
            let x = args[0];
            if x.shape.batch_count() != shape.batch_count() || shape.batch_count() > 1 {
                return Err(format!("cannot reshape {} to {shape}: the batch dimension must be kept once", x.shape));
            }
            if x.shape.fixed_product() != shape.fixed_product() {
                return Err(format!("cannot reshape {} to {shape}: element counts differ", x.shape));
            }
            Ok(TensorType::new(x.dtype, shape.clone()))
        }
        Op::Transpose { perm } => {
            let x = args[0];
            let mut seen = vec![false; x.rank()];
            if perm.len() != x.rank() || perm.iter().any(|&p| p >= x.rank() || std::mem::replace(&mut seen[p], true)) {
                return Err(format!("{perm:?} is not a permutation of {} axes", x.rank()));
            }
            Ok(TensorType::new(x.dtype, Shape(perm.iter().map(|&p| x.shape.0[p]).collect())))
        }
        Op::Broadcast { shape } => {
            let x = args[0];
            let out = broadcast_shapes(&x.shape, shape)?;
            if &out != shape {
                return Err(format!("cannot broadcast {} to {shape}", x.shape));
            }
            Ok(TensorType::new(x.dtype, shape.clone()))
        }
        Op::Cast { to } => Ok(TensorType::new(*to, args[0].shape.clone())),
        Op::OneHot { depth } => {
            let x = args[0];
            if !matches!(x.dtype, DType::I64 | DType::I32) {
                return Err(format!("needs integer class indices, got {}", x.dtype));
            }
            if *depth == 0 {
                return Err("depth must be at least 1".into());
            }
            let mut dims = x.shape.0.clone();
            dims.push(Dim::Fixed(*depth));
            Ok(TensorType::new(DType::F32, Shape(dims)))
        }
        Op::Fused(f) => crate::fused::infer(f, args),
    }
}

pub(crate) fn infer_matmul(a: &TensorType, b: &TensorType, trans_a: bool, trans_b: bool) -> Result<TensorType, String> {
    if a.dtype != DType::F32 || b.dtype != DType::F32 {
        return Err(format!("needs f32 operands, got {} and {}", a.dtype, b.dtype));
    }
    if a.rank() < 2 || b.rank() < 2 {
        return Err(format!("needs operands of rank >= 2, got {} and {}", a.shape, b.shape));
    }
    let (ra, rb) = (a.rank(), b.rank());
    let (m, ka) = if trans_a { (a.shape.0[ra - 1], a.shape.0[ra - 2]) } else { (a.shape.0[ra - 2], a.shape.0[ra - 1]) };
    let (kb, n) = if trans_b { (b.shape.0[rb - 1], b.shape.0[rb - 2]) } else { (b.shape.0[rb - 2], b.shape.0[rb - 1]) };
    if ka != kb {
        return Err(format!(
            "inner dimensions differ: {}{} x {}{} contracts {ka} with {kb}",
            a.shape,
            if trans_a { "ᵀ" } else { "" },
            b.shape,
            if trans_b { "ᵀ" } else { "" }
        ));
    }
    let lead = broadcast_shapes(&Shape(a.shape.0[..ra - 2].to_vec()), &Shape(b.shape.0[..rb - 2].to_vec()))?;
    let mut dims = lead.0;
    dims.push(m);
    dims.push(n);
    Ok(TensorType::new(DType::F32, Shape(dims)))
}
