//! Op dispatch: one value from its operands, for each op and element type.
//!
//! Leaves (inputs, parameters, state, constants) are bound by the caller, and the
//! operands have already been type-checked (`typing`). The checks here are a second
//! line of defence so that a mistake can only ever be an error message, not a panic.

use crate::kernels::{self, Reduction};
use crate::scalar::{unary_real, Element, Num, Real};
use crate::window;
use ndarray::ArrayD;
use nnc_ir::{BinaryOp, DType, Op, ReduceOp, Shape, Tensor, UnaryOp};

/// Applies `$body` (generic over the element type) to any tensor, keeping its dtype.
macro_rules! map_any {
    ($t:expr, |$a:ident| $body:expr) => {
        match $t {
            Tensor::F32($a) => Tensor::F32($body),
            Tensor::I64($a) => Tensor::I64($body),
            Tensor::I32($a) => Tensor::I32($body),
            Tensor::Bool($a) => Tensor::Bool($body),
        }
    };
}

/// Like `map_any`, for numeric tensors only (bool is an error).
macro_rules! map_num {
    ($t:expr, |$a:ident| $body:expr) => {
        match $t {
            Tensor::F32($a) => Tensor::F32($body),
            Tensor::I64($a) => Tensor::I64($body),
            Tensor::I32($a) => Tensor::I32($body),
            Tensor::Bool(_) => return Err("needs numbers, got bool".into()),
        }
    };
}

/// Computes a non-leaf op whose batch is resolved (see `typing::resolve_batch`).
pub(crate) fn eval(op: &Op, args: &[&Tensor]) -> Result<Tensor, String> {
    if args.len() != op.arity() {
        return Err(format!("takes {} operands, got {}", op.arity(), args.len()));
    }
    match op {
        Op::Input | Op::Param { .. } | Op::State { .. } | Op::Const(_) => Err("a leaf is bound, not evaluated".into()),
        Op::Unary(u) => unary(*u, args[0]),
        Op::Binary(b) => binary(*b, args[0], args[1]),
        Op::Where => {
            let Tensor::Bool(c) = args[0] else {
                return Err(format!("condition must be bool, got {}", args[0].dtype()));
            };
            Ok(match (args[1], args[2]) {
                (Tensor::F32(x), Tensor::F32(y)) => Tensor::F32(kernels::select(c, x, y)?),
                (Tensor::I64(x), Tensor::I64(y)) => Tensor::I64(kernels::select(c, x, y)?),
                (Tensor::I32(x), Tensor::I32(y)) => Tensor::I32(kernels::select(c, x, y)?),
                (Tensor::Bool(x), Tensor::Bool(y)) => Tensor::Bool(kernels::select(c, x, y)?),
                (x, y) => return Err(format!("branch types differ: {} vs {}", x.dtype(), y.dtype())),
            })
        }
        Op::MatMul { trans_a, trans_b } => {
            let (a, b) = (f32_arg(args[0])?, f32_arg(args[1])?);
            Ok(Tensor::F32(kernels::matmul(a, b, *trans_a, *trans_b)?))
        }
        Op::Softmax { axis } => Ok(Tensor::F32(kernels::softmax(f32_arg(args[0])?, *axis, false)?)),
        Op::LogSoftmax { axis } => Ok(Tensor::F32(kernels::softmax(f32_arg(args[0])?, *axis, true)?)),
        Op::Reduce { op, axes, keep_dims } => {
            let how = match op {
                ReduceOp::Sum => Reduction::Sum,
                ReduceOp::Mean => Reduction::Mean,
                ReduceOp::Max => Reduction::Max,
            };
            Ok(map_num!(args[0], |a| kernels::reduce(a, how, axes, *keep_dims)?))
        }
        Op::Reshape { shape } => {
            let dims = fixed(shape)?;
            Ok(map_any!(args[0], |a| kernels::reshape(a, &dims)?))
        }
        Op::Transpose { perm } => Ok(map_any!(args[0], |a| kernels::transpose(a, perm)?)),
        Op::Broadcast { shape } => {
            let dims = fixed(shape)?;
            Ok(map_any!(args[0], |a| kernels::broadcast_to(a, &dims)?))
        }
        Op::OneHot { depth } => Ok(Tensor::F32(match args[0] {
            Tensor::I64(a) => kernels::one_hot(a, *depth)?,
            Tensor::I32(a) => kernels::one_hot(a, *depth)?,
            t => return Err(format!("needs integer class indices, got {}", t.dtype())),
        })),
        Op::Cast { to } => Ok(match args[0] {
            Tensor::F32(a) => cast(a, *to),
            Tensor::I64(a) => cast(a, *to),
            Tensor::I32(a) => cast(a, *to),
            Tensor::Bool(a) => cast(a, *to),
        }),
        Op::Concat { axis, .. } => concat(args, *axis),
        Op::Slice { axis, start, end } => {
            Ok(map_any!(args[0], |a| a.slice_axis(ndarray::Axis(*axis), ndarray::Slice::from(*start..*end)).to_owned()))
        }
        Op::Conv(conv) => Ok(Tensor::F32(window::conv(f32_arg(args[0])?, f32_arg(args[1])?, conv)?)),
        Op::ConvBackwardData { conv, input } => {
            Ok(Tensor::F32(window::conv_backward_data(f32_arg(args[0])?, f32_arg(args[1])?, conv, input)?))
        }
        Op::ConvBackwardFilter { conv } => {
            Ok(Tensor::F32(window::conv_backward_filter(f32_arg(args[0])?, f32_arg(args[1])?, conv)?))
        }
        Op::Pool(pool) => Ok(Tensor::F32(window::pool(f32_arg(args[0])?, pool)?)),
        Op::PoolBackward { pool, input } => {
            let dy = f32_arg(args[args.len() - 1])?;
            let x = if args.len() == 2 { Some(f32_arg(args[0])?) } else { None };
            Ok(Tensor::F32(window::pool_backward(x, dy, pool, input)?))
        }
        Op::Fused(f) => crate::fused::eval_fused(f, args),
    }
}

/// The operands joined along `axis` (of one dtype, as the verifier checked).
fn concat(args: &[&Tensor], axis: usize) -> Result<Tensor, String> {
    fn join<T: Clone>(parts: Vec<&ArrayD<T>>, axis: usize) -> Result<ArrayD<T>, String> {
        let views: Vec<_> = parts.iter().map(|a| a.view()).collect();
        ndarray::concatenate(ndarray::Axis(axis), &views).map_err(|e| format!("cannot concatenate: {e}"))
    }
    macro_rules! parts {
        ($v:ident) => {
            args.iter()
                .map(|t| match t {
                    Tensor::$v(a) => Ok(a),
                    t => Err(format!("operand types differ: {} vs {}", args[0].dtype(), t.dtype())),
                })
                .collect::<Result<Vec<_>, String>>()?
        };
    }
    Ok(match args.first().ok_or("needs at least one operand")? {
        Tensor::F32(_) => Tensor::F32(join(parts!(F32), axis)?),
        Tensor::I64(_) => Tensor::I64(join(parts!(I64), axis)?),
        Tensor::I32(_) => Tensor::I32(join(parts!(I32), axis)?),
        Tensor::Bool(_) => Tensor::Bool(join(parts!(Bool), axis)?),
    })
}

/// The sizes of a shape attribute whose batch `typing::resolve_batch` resolved.
fn fixed(shape: &Shape) -> Result<Vec<usize>, String> {
    shape.as_fixed().ok_or_else(|| format!("{shape} still has the batch dimension"))
}

fn f32_arg(t: &Tensor) -> Result<&ArrayD<f32>, String> {
    t.as_f32().ok_or_else(|| format!("needs f32, got {}", t.dtype()))
}

fn unary(u: UnaryOp, x: &Tensor) -> Result<Tensor, String> {
    // Integers support neg and relu; every dtype supports identity (as in infer.rs).
    Ok(match (u, x) {
        (_, Tensor::F32(a)) => Tensor::F32(a.mapv(|v| unary_real(u, v))),
        (UnaryOp::Identity, t) => t.clone(),
        (UnaryOp::Neg, Tensor::I64(a)) => Tensor::I64(a.mapv(Num::neg)),
        (UnaryOp::Neg, Tensor::I32(a)) => Tensor::I32(a.mapv(Num::neg)),
        (UnaryOp::Relu, Tensor::I64(a)) => Tensor::I64(a.mapv(Num::relu)),
        (UnaryOp::Relu, Tensor::I32(a)) => Tensor::I32(a.mapv(Num::relu)),
        (_, t) => return Err(format!("needs f32, got {}", t.dtype())),
    })
}

fn binary(op: BinaryOp, x: &Tensor, y: &Tensor) -> Result<Tensor, String> {
    if op == BinaryOp::Pow && x.dtype() != DType::F32 {
        return Err(format!("needs f32, got {}", x.dtype()));
    }
    match (x, y) {
        (Tensor::F32(a), Tensor::F32(b)) => match op {
            BinaryOp::Pow => Ok(Tensor::F32(kernels::zip2(a, b, Real::powf)?)),
            _ => binary_num(op, a, b, Tensor::F32),
        },
        (Tensor::I64(a), Tensor::I64(b)) => binary_num(op, a, b, Tensor::I64),
        (Tensor::I32(a), Tensor::I32(b)) => binary_num(op, a, b, Tensor::I32),
        (Tensor::Bool(_), Tensor::Bool(_)) => Err("needs numbers, got bool".into()),
        (x, y) => Err(format!("operand types differ: {} vs {}", x.dtype(), y.dtype())),
    }
}

/// The binary ops every numeric dtype has; `wrap` rebuilds the tensor variant.
fn binary_num<T: Num>(
    op: BinaryOp,
    a: &ArrayD<T>,
    b: &ArrayD<T>,
    wrap: fn(ArrayD<T>) -> Tensor,
) -> Result<Tensor, String> {
    let f: fn(T, T) -> T = match op {
        BinaryOp::Add => T::add,
        BinaryOp::Sub => T::sub,
        BinaryOp::Mul => T::mul,
        BinaryOp::Max => T::max,
        BinaryOp::Min => T::min,
        BinaryOp::Div => return Ok(wrap(kernels::divide(a, b)?)),
        BinaryOp::Greater => return Ok(Tensor::Bool(kernels::zip2(a, b, |x, y| x > y)?)),
        // `binary` handles f32 pow and rejects integer pow before getting here.
        BinaryOp::Pow => return Err("needs f32".into()),
    };
    Ok(wrap(kernels::zip2(a, b, f)?))
}

fn cast<E: Element>(a: &ArrayD<E>, to: DType) -> Tensor {
    match to {
        DType::F32 => Tensor::F32(a.mapv(E::to_f32)),
        DType::I64 => Tensor::I64(a.mapv(E::to_i64)),
        DType::I32 => Tensor::I32(a.mapv(E::to_i32)),
        DType::Bool => Tensor::Bool(a.mapv(E::to_bool)),
    }
}
