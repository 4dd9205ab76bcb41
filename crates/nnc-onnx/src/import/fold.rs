//! Elementwise constant folding on [`Known`] values.
//!
//! Every function returns `Ok(None)` when it cannot fold (unsupported element type, a
//! result too large to build), so the caller falls back to a run-time IR op, and
//! `Err` only for genuine errors (division by zero, arithmetic on the batch size that
//! nnc's shapes cannot express).

use super::known::{zip_with, Known, SymInt};
use ndarray::ArrayD;
use nnc_ir::{DType, Tensor};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Arith {
    Add,
    Sub,
    Mul,
    Div,
    Pow,
    Max,
    Min,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Compare {
    Greater,
    Less,
    Equal,
}

fn float_arith(op: Arith, x: f32, y: f32) -> f32 {
    match op {
        Arith::Add => x + y,
        Arith::Sub => x - y,
        Arith::Mul => x * y,
        Arith::Div => x / y,
        Arith::Pow => x.powf(y),
        Arith::Max => x.max(y),
        Arith::Min => x.min(y),
    }
}

fn int_arith(op: Arith, x: i64, y: i64) -> Result<i64, String> {
    let overflow = || format!("integer overflow folding {x} {op:?} {y}");
    match op {
        Arith::Add => x.checked_add(y).ok_or_else(overflow),
        Arith::Sub => x.checked_sub(y).ok_or_else(overflow),
        Arith::Mul => x.checked_mul(y).ok_or_else(overflow),
        Arith::Div if y == 0 => Err(format!("integer division of {x} by zero")),
        Arith::Div => x.checked_div(y).ok_or_else(overflow),
        Arith::Pow => u32::try_from(y).ok().and_then(|e| x.checked_pow(e)).ok_or_else(overflow),
        Arith::Max => Ok(x.max(y)),
        Arith::Min => Ok(x.min(y)),
    }
}

/// Arithmetic where one side may be the batch size. Only identities are expressible
/// (`N*1`, `N/1`, `N+0`, `N-0`, `N/N`); anything else would need a dimension like `2N`.
fn sym_arith(op: Arith, x: SymInt, y: SymInt) -> Result<SymInt, String> {
    use SymInt::{Batch, Int};
    match (op, x, y) {
        (_, Int(a), Int(b)) => int_arith(op, a, b).map(Int),
        (Arith::Mul, Batch, Int(1)) | (Arith::Mul, Int(1), Batch) => Ok(Batch),
        (Arith::Mul, _, Int(0)) | (Arith::Mul, Int(0), _) => Ok(Int(0)),
        (Arith::Div, Batch, Int(1)) | (Arith::Add | Arith::Sub, Batch, Int(0)) | (Arith::Add, Int(0), Batch) => {
            Ok(Batch)
        }
        (Arith::Div, Batch, Batch) => Ok(Int(1)),
        (Arith::Sub, Batch, Batch) => Ok(Int(0)),
        (Arith::Max | Arith::Min, Batch, Batch) => Ok(Batch),
        _ => Err(format!("shape arithmetic {x} {op:?} {y} depends on the batch size N in a way nnc cannot express")),
    }
}

pub(crate) fn arith(op: Arith, a: &Known, b: &Known) -> Result<Option<Known>, String> {
    match (a, b) {
        (Known::T(Tensor::F32(x)), Known::T(Tensor::F32(y))) => {
            Ok(zip_with(x, y, |&x, &y| Ok(float_arith(op, x, y)))?.map(|r| Known::T(Tensor::F32(r))))
        }
        (Known::T(Tensor::I32(x)), Known::T(Tensor::I32(y))) => {
            let r = zip_with(x, y, |&x, &y| {
                let v = int_arith(op, x as i64, y as i64)?;
                i32::try_from(v).map_err(|_| format!("i32 overflow folding {x} {op:?} {y}"))
            })?;
            Ok(r.map(|r| Known::T(Tensor::I32(r))))
        }
        _ if a.dtype() == DType::I64 && b.dtype() == DType::I64 => {
            let (Some(x), Some(y)) = (a.to_sym(), b.to_sym()) else { return Ok(None) };
            Ok(zip_with(&x, &y, |&x, &y| sym_arith(op, x, y))?.map(Known::sym))
        }
        _ => Ok(None),
    }
}

pub(crate) fn compare(op: Compare, a: &Known, b: &Known) -> Result<Option<Known>, String> {
    fn cmp<T: PartialOrd>(op: Compare, x: T, y: T) -> bool {
        match op {
            Compare::Greater => x > y,
            Compare::Less => x < y,
            Compare::Equal => x == y,
        }
    }
    let r = match (a, b) {
        (Known::T(Tensor::F32(x)), Known::T(Tensor::F32(y))) => zip_with(x, y, |&x, &y| Ok(cmp(op, x, y)))?,
        (Known::T(Tensor::Bool(x)), Known::T(Tensor::Bool(y))) if op == Compare::Equal => {
            zip_with(x, y, |&x, &y| Ok(x == y))?
        }
        _ if a.dtype() == b.dtype() && a.dtype() != DType::F32 => {
            let (Some(x), Some(y)) = (a.to_sym(), b.to_sym()) else { return Ok(None) };
            zip_with(&x, &y, |&x, &y| match (x, y) {
                (SymInt::Int(x), SymInt::Int(y)) => Ok(cmp(op, x, y)),
                (SymInt::Batch, SymInt::Batch) if op == Compare::Equal => Ok(true),
                _ => Err(format!("comparing {x} with {y} depends on the batch size")),
            })?
        }
        _ => return Ok(None),
    };
    Ok(r.map(|r| Known::T(Tensor::Bool(r))))
}

/// Elementwise functions of one value that are worth folding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Func {
    Neg,
    Exp,
    Log,
    Sqrt,
    Relu,
    Sigmoid,
    Tanh,
}

pub(crate) fn func(f: Func, a: &Known) -> Result<Option<Known>, String> {
    Ok(match a {
        Known::T(Tensor::F32(x)) => Some(Known::T(Tensor::F32(x.mapv(|v| match f {
            Func::Neg => -v,
            // nnc's exp, as the compiled model computes it.
            Func::Exp => nnc_ir::math::expf(v),
            Func::Log => v.ln(),
            Func::Sqrt => v.sqrt(),
            Func::Relu => v.max(0.0),
            Func::Sigmoid => 1.0 / (1.0 + nnc_ir::math::expf(-v)),
            Func::Tanh => v.tanh(),
        })))),
        Known::T(Tensor::I64(x)) => match f {
            Func::Neg => Some(Known::T(Tensor::I64(x.mapv(i64::wrapping_neg)))),
            Func::Relu => Some(Known::T(Tensor::I64(x.mapv(|v| v.max(0))))),
            _ => None,
        },
        Known::T(Tensor::I32(x)) => match f {
            Func::Neg => Some(Known::T(Tensor::I32(x.mapv(i32::wrapping_neg)))),
            Func::Relu => Some(Known::T(Tensor::I32(x.mapv(|v| v.max(0))))),
            _ => None,
        },
        Known::Sym(_) if f == Func::Relu => Some(a.clone()),
        _ => None,
    })
}

pub(crate) fn cast(a: &Known, to: DType) -> Result<Option<Known>, String> {
    if a.dtype() == to {
        return Ok(Some(a.clone()));
    }
    let Known::T(t) = a else {
        return Err(format!("a shape depending on the batch size cannot be cast to {to}"));
    };
    fn conv<A: Clone, B>(x: &ArrayD<A>, f: impl Fn(A) -> B) -> ArrayD<B> {
        x.mapv(f)
    }
    let out = match (t, to) {
        (Tensor::F32(x), DType::I64) => Tensor::I64(conv(x, |v| v as i64)),
        (Tensor::F32(x), DType::I32) => Tensor::I32(conv(x, |v| v as i32)),
        (Tensor::F32(x), DType::Bool) => Tensor::Bool(conv(x, |v| v != 0.0)),
        (Tensor::I64(x), DType::F32) => Tensor::F32(conv(x, |v| v as f32)),
        (Tensor::I64(x), DType::I32) => Tensor::I32(conv(x, |v| v as i32)),
        (Tensor::I64(x), DType::Bool) => Tensor::Bool(conv(x, |v| v != 0)),
        (Tensor::I32(x), DType::F32) => Tensor::F32(conv(x, |v| v as f32)),
        (Tensor::I32(x), DType::I64) => Tensor::I64(conv(x, |v| v as i64)),
        (Tensor::I32(x), DType::Bool) => Tensor::Bool(conv(x, |v| v != 0)),
        (Tensor::Bool(x), DType::F32) => Tensor::F32(conv(x, |v| v as u8 as f32)),
        (Tensor::Bool(x), DType::I64) => Tensor::I64(conv(x, |v| v as i64)),
        (Tensor::Bool(x), DType::I32) => Tensor::I32(conv(x, |v| v as i32)),
        _ => return Ok(None),
    };
    Ok(Some(Known::T(out)))
}

/// `where(cond, a, b)` on constants of the same element type.
pub(crate) fn select(cond: &Known, a: &Known, b: &Known) -> Result<Option<Known>, String> {
    let Known::T(Tensor::Bool(c)) = cond else { return Ok(None) };
    fn pick<T: Clone>(c: &ArrayD<bool>, a: &ArrayD<T>, b: &ArrayD<T>) -> Result<Option<ArrayD<T>>, String> {
        // Broadcast in two steps: (cond, a) then with b.
        let Some(ca) = zip_with(c, a, |&c, x| Ok((c, x.clone())))? else { return Ok(None) };
        zip_with(&ca, b, |(c, x), y| Ok(if *c { x.clone() } else { y.clone() }))
    }
    Ok(match (a, b) {
        (Known::T(Tensor::F32(x)), Known::T(Tensor::F32(y))) => pick(c, x, y)?.map(|r| Known::T(Tensor::F32(r))),
        (Known::T(Tensor::I32(x)), Known::T(Tensor::I32(y))) => pick(c, x, y)?.map(|r| Known::T(Tensor::I32(r))),
        (Known::T(Tensor::Bool(x)), Known::T(Tensor::Bool(y))) => pick(c, x, y)?.map(|r| Known::T(Tensor::Bool(r))),
        _ if a.dtype() == DType::I64 && b.dtype() == DType::I64 => {
            let (Some(x), Some(y)) = (a.to_sym(), b.to_sym()) else { return Ok(None) };
            pick(c, &x, &y)?.map(Known::sym)
        }
        _ => None,
    })
}
