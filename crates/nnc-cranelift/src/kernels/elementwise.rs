//! Elementwise kernels: unary and binary ops, `where`, casts and copies (which also
//! implement materialized transposes and broadcasts), over a strided loop nest.
//!
//! Broadcasting is by strides: a broadcast axis has stride 0, so no operand is ever
//! expanded in memory. The innermost loop is f32x4 when the output is contiguous f32
//! and every operand is contiguous or constant along it (a constant operand is loaded
//! once and splatted); the rest, and every non-f32 case, runs one element at a time.
//! The range `[begin, end)` is over the outermost dimension of the nest.

use crate::clif::Fx;
use crate::host_math::MathFn;
use crate::program::{Elementwise, EwFunc};
use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::{types, Endianness, InstBuilder, MemFlagsData, Type, Value};
use nnc_ir::Size;
use nnc_ir::{BinaryOp, DType, UnaryOp};

/// Work items: the outermost dimension of the nest.
pub(crate) fn items(e: &Elementwise) -> Size {
    e.nest.dims[0]
}

/// The Cranelift type of one element in memory.
pub(crate) fn clif_type(d: DType) -> Type {
    match d {
        DType::F32 => types::F32,
        DType::I64 => types::I64,
        DType::I32 => types::I32,
        DType::Bool => types::I8,
    }
}

/// Whether the function is defined for these operand and result types; `lower/`
/// reports anything else as unsupported (the IR's type rules already exclude it).
pub(crate) fn supported(func: EwFunc, args: &[DType], out: DType) -> bool {
    use DType::*;
    match func {
        EwFunc::Copy => args.len() == 1 && args[0] == out,
        EwFunc::Cast => args.len() == 1,
        EwFunc::Where => args.len() == 3 && args[0] == Bool && args[1] == out && args[2] == out,
        EwFunc::Unary(u) => {
            args.len() == 1
                && args[0] == out
                && match out {
                    F32 => true,
                    I64 | I32 => matches!(u, UnaryOp::Neg | UnaryOp::Relu | UnaryOp::Identity),
                    Bool => u == UnaryOp::Identity,
                }
        }
        EwFunc::Binary(b) => {
            args.len() == 2
                && args[0] == args[1]
                && match (args[0], b) {
                    (Bool, _) => false,
                    (F32, BinaryOp::Greater) | (I64 | I32, BinaryOp::Greater) => out == Bool,
                    (I64 | I32, BinaryOp::Pow) => false,
                    (a, _) => out == a,
                }
        }
    }
}

/// Whether the innermost loop can run on f32x4 vectors.
fn vectorizable(e: &Elementwise) -> bool {
    let inner = e.nest.dims.len() - 1;
    let contiguous_out = e.nest.strides[0][inner].is_fixed(1);
    let args_ok = e.nest.strides[1..].iter().all(|s| s[inner].is_fixed(1) || s[inner].is_fixed(0));
    let func_ok = match e.func {
        // Copies move 4-byte elements of any type as f32 lanes.
        EwFunc::Copy => e.out.dtype.size_bytes() == 4,
        EwFunc::Unary(u) => {
            e.out.dtype == DType::F32
                && matches!(
                    u,
                    UnaryOp::Neg
                        | UnaryOp::Sqrt
                        | UnaryOp::Relu
                        | UnaryOp::LeakyRelu { .. }
                        | UnaryOp::Identity
                        | UnaryOp::Exp
                )
        }
        EwFunc::Binary(b) => {
            e.out.dtype == DType::F32
                && matches!(
                    b,
                    BinaryOp::Add | BinaryOp::Sub | BinaryOp::Mul | BinaryOp::Div | BinaryOp::Max | BinaryOp::Min
                )
        }
        // A select of f32 on contiguous bools (one byte each): lane masks widened
        // from four bytes; as a scalar select it would be a mispredicted jump.
        EwFunc::Where => e.out.dtype == DType::F32 && e.nest.strides[1][inner].is_fixed(1),
        EwFunc::Cast => false,
    };
    contiguous_out && args_ok && func_ok
}

/// Emits the kernel. `status` is `(status slot, code)` for kernels that can fail
/// (integer division by zero).
pub(crate) fn emit(fx: &mut Fx, e: &Elementwise, status: Option<(usize, u32)>) {
    let arrays: Vec<(usize, DType)> =
        std::iter::once((e.out.slot, e.out.dtype)).chain(e.args.iter().map(|a| (a.slot, a.dtype))).collect();
    let bases: Vec<Value> = arrays.iter().map(|&(slot, _)| fx.slot(slot)).collect();
    // Byte strides per array and dimension.
    let strides: Vec<Vec<Size>> = arrays
        .iter()
        .zip(&e.nest.strides)
        .map(|(&(_, d), s)| s.iter().map(|x| x.scale(d.size_bytes() as u64).unwrap_or(Size::ZERO)).collect())
        .collect();
    let ctx = Ctx { e, strides: &strides, vector: vectorizable(e), status };
    ctx.level(fx, 0, bases);
}

struct Ctx<'a> {
    e: &'a Elementwise,
    strides: &'a [Vec<Size>],
    vector: bool,
    status: Option<(usize, u32)>,
}

impl Ctx<'_> {
    /// Loops over dimension `d` with `addrs` the current address of every array.
    fn level(&self, fx: &mut Fx, d: usize, addrs: Vec<Value>) {
        let last = self.e.nest.dims.len() - 1;
        let (lo, hi) = if d == 0 {
            (fx.begin, fx.end)
        } else {
            let z = fx.iconst(0);
            (z, fx.sz(self.e.nest.dims[d]))
        };
        if d == last {
            self.innermost(fx, lo, hi, &addrs);
            return;
        }
        fx.for_range(lo, hi, 1, |fx, i| {
            let next: Vec<Value> = addrs
                .iter()
                .zip(self.strides)
                .map(|(&a, s)| {
                    let off = fx.mul_sz(i, s[d]);
                    fx.add(a, off)
                })
                .collect();
            self.level(fx, d + 1, next);
        });
    }

    fn innermost(&self, fx: &mut Fx, lo: Value, hi: Value, addrs: &[Value]) {
        let d = self.e.nest.dims.len() - 1;
        let mut start = lo;
        if self.vector {
            // Operands constant along the row are loaded once and splatted.
            let splats: Vec<Option<Value>> = self
                .e
                .args
                .iter()
                .enumerate()
                .map(|(j, _)| {
                    self.strides[j + 1][d].is_fixed(0).then(|| {
                        let x = fx.load(types::F32, addrs[j + 1], 0);
                        fx.b.ins().splat(types::F32X4, x)
                    })
                })
                .collect();
            start = fx.for_whole_steps(lo, hi, 4, |fx, i| {
                let at = |fx: &mut Fx, a: usize, size: i64| {
                    let off = fx.mul_imm(i, size);
                    fx.add(addrs[a], off)
                };
                let vals: Vec<Value> = splats
                    .iter()
                    .enumerate()
                    .map(|(j, s)| match s {
                        Some(v) => *v,
                        None if self.e.args[j].dtype == DType::Bool => {
                            let addr = at(fx, j + 1, 1);
                            bool_lanes(fx, addr)
                        }
                        None => {
                            let addr = at(fx, j + 1, 4);
                            fx.load(types::F32X4, addr, 0)
                        }
                    })
                    .collect();
                let y = vector_op(fx, self.e.func, &vals);
                let out = at(fx, 0, 4);
                fx.store(y, out, 0);
            });
        }
        fx.for_range(start, hi, 1, |fx, i| {
            let vals: Vec<Value> = self
                .e
                .args
                .iter()
                .enumerate()
                .map(|(j, a)| {
                    let off = fx.mul_sz(i, self.strides[j + 1][d]);
                    let addr = fx.add(addrs[j + 1], off);
                    fx.load(clif_type(a.dtype), addr, 0)
                })
                .collect();
            let y = self.scalar_op(fx, &vals);
            let off = fx.mul_sz(i, self.strides[0][d]);
            let addr = fx.add(addrs[0], off);
            fx.store(y, addr, 0);
        });
    }

    fn scalar_op(&self, fx: &mut Fx, v: &[Value]) -> Value {
        let e = self.e;
        let out = e.out.dtype;
        match e.func {
            EwFunc::Copy => v[0],
            EwFunc::Cast => cast(fx, v[0], e.args[0].dtype, out),
            EwFunc::Where => fx.b.ins().select(v[0], v[1], v[2]),
            EwFunc::Unary(u) if out == DType::F32 => unary_f32(fx, u, v[0]),
            EwFunc::Unary(u) => match u {
                UnaryOp::Neg => fx.b.ins().ineg(v[0]),
                UnaryOp::Relu => {
                    let neg = fx.b.ins().icmp_imm_s(IntCC::SignedLessThan, v[0], 0);
                    let zero = fx.b.ins().iconst(clif_type(out), 0);
                    fx.b.ins().select(neg, zero, v[0])
                }
                _ => v[0],
            },
            EwFunc::Binary(b) if e.args[0].dtype == DType::F32 => binary_f32(fx, b, v[0], v[1]),
            EwFunc::Binary(b) => self.binary_int(fx, b, v[0], v[1]),
        }
    }

    fn binary_int(&self, fx: &mut Fx, b: BinaryOp, x: Value, y: Value) -> Value {
        match b {
            BinaryOp::Add => fx.b.ins().iadd(x, y),
            BinaryOp::Sub => fx.b.ins().isub(x, y),
            BinaryOp::Mul => fx.b.ins().imul(x, y),
            BinaryOp::Max => fx.b.ins().smax(x, y),
            BinaryOp::Min => fx.b.ins().smin(x, y),
            BinaryOp::Greater => fx.b.ins().icmp(IntCC::SignedGreaterThan, x, y),
            BinaryOp::Div => {
                // Cranelift's sdiv traps on a zero divisor and on MIN / -1; the IR
                // wraps MIN / -1 and makes division by zero an error.
                let zero = fx.b.ins().icmp_imm_s(IntCC::Equal, y, 0);
                if let Some((slot, code)) = self.status {
                    fx.if_then(zero, |fx| fx.set_status(slot, code));
                }
                let minus_one = fx.b.ins().icmp_imm_s(IntCC::Equal, y, -1);
                let ty = fx.b.func.dfg.value_type(x);
                let one = fx.b.ins().iconst(ty, 1);
                let bad = fx.b.ins().bor(zero, minus_one);
                let safe = fx.b.ins().select(bad, one, y);
                let q = fx.b.ins().sdiv(x, safe);
                let negated = fx.b.ins().ineg(x);
                fx.b.ins().select(minus_one, negated, q)
            }
            // Integer pow does not type-check in the IR.
            BinaryOp::Pow => x,
        }
    }
}

pub(crate) fn unary_f32(fx: &mut Fx, u: UnaryOp, x: Value) -> Value {
    match u {
        UnaryOp::Neg => fx.b.ins().fneg(x),
        UnaryOp::Sqrt => fx.b.ins().sqrt(x),
        UnaryOp::Identity => x,
        UnaryOp::Relu => {
            // x < 0 ? 0 : x keeps NaN and -0, as the interpreter does.
            let zero = fx.b.ins().f32const(0.0);
            let neg = fx.b.ins().fcmp(FloatCC::LessThan, x, zero);
            fx.b.ins().select(neg, zero, x)
        }
        UnaryOp::LeakyRelu { alpha } => {
            let zero = fx.b.ins().f32const(0.0);
            let a = fx.b.ins().f32const(alpha);
            let neg = fx.b.ins().fcmp(FloatCC::LessThan, x, zero);
            let scaled = fx.b.ins().fmul(a, x);
            fx.b.ins().select(neg, scaled, x)
        }
        UnaryOp::Exp => crate::kernels::exp::emit_expf(fx, x),
        UnaryOp::Log => fx.call_math(MathFn::Log, &[x]),
        UnaryOp::Erf => fx.call_math(MathFn::Erf, &[x]),
        UnaryOp::Sigmoid => fx.call_math(MathFn::Sigmoid, &[x]),
        UnaryOp::Tanh => fx.call_math(MathFn::Tanh, &[x]),
        UnaryOp::Gelu { approximate: false } => fx.call_math(MathFn::GeluErf, &[x]),
        UnaryOp::Gelu { approximate: true } => fx.call_math(MathFn::GeluTanh, &[x]),
    }
}

fn binary_f32(fx: &mut Fx, b: BinaryOp, x: Value, y: Value) -> Value {
    match b {
        BinaryOp::Add => fx.b.ins().fadd(x, y),
        BinaryOp::Sub => fx.b.ins().fsub(x, y),
        BinaryOp::Mul => fx.b.ins().fmul(x, y),
        BinaryOp::Div => fx.b.ins().fdiv(x, y),
        // Cranelift's fmax/fmin return NaN if either operand is NaN, like the IR.
        BinaryOp::Max => fx.b.ins().fmax(x, y),
        BinaryOp::Min => fx.b.ins().fmin(x, y),
        BinaryOp::Greater => fx.b.ins().fcmp(FloatCC::GreaterThan, x, y),
        BinaryOp::Pow => fx.call_math(MathFn::Pow, &[x, y]),
    }
}

/// The f32x4 version of a vectorizable unary function (see `vectorizable`).
pub(crate) fn vector_unary(fx: &mut Fx, u: UnaryOp, x: Value) -> Value {
    vector_op(fx, EwFunc::Unary(u), &[x])
}

/// Four bools (bytes) at `addr` as f32x4 lane masks (all ones where true).
fn bool_lanes(fx: &mut Fx, addr: Value) -> Value {
    let bytes = fx.load(types::I32, addr, 0);
    let v = fx.b.ins().scalar_to_vector(types::I32X4, bytes);
    let v = fx.b.ins().bitcast(types::I8X16, little(), v);
    let v = fx.b.ins().swiden_low(v);
    let v = fx.b.ins().swiden_low(v);
    let zero = fx.b.ins().iconst(types::I32, 0);
    let zero = fx.b.ins().splat(types::I32X4, zero);
    let mask = fx.b.ins().icmp(IntCC::NotEqual, v, zero);
    fx.b.ins().bitcast(types::F32X4, little(), mask)
}

/// The f32x4 version of the vectorizable functions.
fn vector_op(fx: &mut Fx, func: EwFunc, v: &[Value]) -> Value {
    let lanes = |fx: &mut Fx, mask: Value| fx.b.ins().bitcast(types::F32X4, little(), mask);
    match func {
        EwFunc::Copy | EwFunc::Unary(UnaryOp::Identity) => v[0],
        EwFunc::Unary(UnaryOp::Neg) => fx.b.ins().fneg(v[0]),
        EwFunc::Unary(UnaryOp::Sqrt) => fx.b.ins().sqrt(v[0]),
        EwFunc::Unary(UnaryOp::Exp) => crate::kernels::exp::emit_expf(fx, v[0]),
        EwFunc::Unary(UnaryOp::Relu) => {
            let zero = fx.b.ins().f32const(0.0);
            let zero = fx.b.ins().splat(types::F32X4, zero);
            let neg = fx.b.ins().fcmp(FloatCC::LessThan, v[0], zero);
            let neg = lanes(fx, neg);
            fx.b.ins().bitselect(neg, zero, v[0])
        }
        EwFunc::Unary(UnaryOp::LeakyRelu { alpha }) => {
            let zero = fx.b.ins().f32const(0.0);
            let zero = fx.b.ins().splat(types::F32X4, zero);
            let a = fx.b.ins().f32const(alpha);
            let a = fx.b.ins().splat(types::F32X4, a);
            let neg = fx.b.ins().fcmp(FloatCC::LessThan, v[0], zero);
            let neg = lanes(fx, neg);
            let scaled = fx.b.ins().fmul(a, v[0]);
            fx.b.ins().bitselect(neg, scaled, v[0])
        }
        EwFunc::Binary(BinaryOp::Add) => fx.b.ins().fadd(v[0], v[1]),
        EwFunc::Binary(BinaryOp::Sub) => fx.b.ins().fsub(v[0], v[1]),
        EwFunc::Binary(BinaryOp::Mul) => fx.b.ins().fmul(v[0], v[1]),
        EwFunc::Binary(BinaryOp::Div) => fx.b.ins().fdiv(v[0], v[1]),
        EwFunc::Binary(BinaryOp::Max) => fx.b.ins().fmax(v[0], v[1]),
        EwFunc::Binary(BinaryOp::Min) => fx.b.ins().fmin(v[0], v[1]),
        EwFunc::Where => fx.b.ins().bitselect(v[0], v[1], v[2]),
        // `vectorizable` admits nothing else.
        _ => v[0],
    }
}

pub(crate) fn little() -> MemFlagsData {
    MemFlagsData::new().with_endianness(Endianness::Little)
}

/// Conversion between element types with the semantics of Rust's `as` (the IR's):
/// float to integer truncates and saturates with NaN → 0, integer narrowing wraps,
/// anything to bool is `x != 0` (NaN is true), bool to numbers is 0/1.
fn cast(fx: &mut Fx, x: Value, from: DType, to: DType) -> Value {
    use DType::*;
    match (from, to) {
        (a, b) if a == b => x,
        (F32, I64 | I32) => fx.b.ins().fcvt_to_sint_sat(clif_type(to), x),
        (F32, Bool) => {
            let zero = fx.b.ins().f32const(0.0);
            fx.b.ins().fcmp(FloatCC::NotEqual, x, zero)
        }
        (I64 | I32, F32) => fx.b.ins().fcvt_from_sint(types::F32, x),
        (Bool, F32) => {
            let wide = fx.b.ins().uextend(types::I32, x);
            fx.b.ins().fcvt_from_uint(types::F32, wide)
        }
        (I64, I32) => fx.b.ins().ireduce(types::I32, x),
        (I32, I64) => fx.b.ins().sextend(types::I64, x),
        (I64 | I32, Bool) => fx.b.ins().icmp_imm_s(IntCC::NotEqual, x, 0),
        (Bool, I64 | I32) => fx.b.ins().uextend(clif_type(to), x),
        _ => x,
    }
}
