//! Softmax and log-softmax along any axis, viewed as `[outer, len, inner]`.
//!
//! Per lane: the maximum, the sum of `exp(x - max)`, then the outputs, in the same
//! order of operations as the interpreter (so results agree to the last bit; `exp` is
//! `exp.rs`'s inline one, `log` a host function). Subtracting the maximum keeps `exp` from
//! overflowing on large logits. The range `[begin, end)` is over `outer`. Where the
//! axis is the innermost (`inner` = 1, the usual case) the exps are computed four
//! lanes at a time ([`sum_exp`], [`map_row`]), and only the sum goes element by
//! element, in order.

use crate::clif::Fx;
use crate::host_math::MathFn;
use crate::kernels::exp::emit_expf;
use crate::program::Softmax;
use cranelift_codegen::ir::{types, InstBuilder, Type, Value};
use nnc_ir::Size;

/// `s` as a value of type `ty`: itself for f32, splatted for f32x4.
pub(crate) fn like(fx: &mut Fx, ty: Type, s: Value) -> Value {
    if ty == types::F32 {
        s
    } else {
        fx.b.ins().splat(ty, s)
    }
}

/// `Σ exp(x[l] - m)` over `l < len` of the contiguous f32 row at `xs`, added in order
/// of `l` from zero (as the interpreter adds): the exps four lanes at a time, then
/// their lanes one by one into the sum.
pub(crate) fn sum_exp(fx: &mut Fx, xs: Value, len: Value, m: Value) -> Value {
    let zero = fx.b.ins().f32const(0.0);
    let sum = fx.var(types::F32, zero);
    let mv = fx.b.ins().splat(types::F32X4, m);
    let start = fx.iconst(0);
    let rest = fx.for_whole_steps(start, len, 4, |fx, l| {
        let off = fx.mul_imm(l, 4);
        let at = fx.add(xs, off);
        let v = fx.load(types::F32X4, at, 0);
        let d = fx.b.ins().fsub(v, mv);
        let e = emit_expf(fx, d);
        let mut acc = fx.get(sum);
        for lane in 0..4 {
            let x = fx.b.ins().extractlane(e, lane);
            acc = fx.b.ins().fadd(acc, x);
        }
        fx.set(sum, acc);
    });
    fx.for_range(rest, len, 1, |fx, l| {
        let off = fx.mul_imm(l, 4);
        let at = fx.add(xs, off);
        let v = fx.load(types::F32, at, 0);
        let d = fx.b.ins().fsub(v, m);
        let e = emit_expf(fx, d);
        let acc = fx.get(sum);
        let acc = fx.b.ins().fadd(acc, e);
        fx.set(sum, acc);
    });
    fx.get(sum)
}

/// `os[l] = f(xs[l])` over `l < len` of contiguous f32 rows, four lanes at a time and
/// then one by one; `f` gets an f32x4 or an f32 (see [`like`]). Each element is read
/// before it is written, so `os` may be `xs`.
pub(crate) fn map_row(fx: &mut Fx, xs: Value, os: Value, len: Value, f: impl Fn(&mut Fx, Value) -> Value) {
    let start = fx.iconst(0);
    let rest = fx.for_whole_steps(start, len, 4, |fx, l| {
        let off = fx.mul_imm(l, 4);
        let (src, dst) = (fx.add(xs, off), fx.add(os, off));
        let v = fx.load(types::F32X4, src, 0);
        let y = f(fx, v);
        fx.store(y, dst, 0);
    });
    fx.for_range(rest, len, 1, |fx, l| {
        let off = fx.mul_imm(l, 4);
        let (src, dst) = (fx.add(xs, off), fx.add(os, off));
        let v = fx.load(types::F32, src, 0);
        let y = f(fx, v);
        fx.store(y, dst, 0);
    });
}

pub(crate) fn items(s: &Softmax) -> Size {
    s.outer
}

pub(crate) fn emit(fx: &mut Fx, s: &Softmax) {
    let x = fx.slot(s.x.slot);
    let out = fx.slot(s.out.slot);
    let len = fx.sz(s.len);
    let inner = fx.sz(s.inner);
    let stride = fx.mul_imm(inner, 4);
    let row_bytes = fx.mul(len, stride);
    let (begin, end) = (fx.begin, fx.end);
    if s.inner.is_fixed(1) {
        fx.for_range(begin, end, 1, |fx, o| {
            let row = fx.mul(o, row_bytes);
            let (xs, os) = (fx.add(x, row), fx.add(out, row));
            let m = row_max(fx, xs, len);
            let total = sum_exp(fx, xs, len, m);
            if s.log {
                let log_total = fx.call_math(MathFn::Log, &[total]);
                map_row(fx, xs, os, len, |fx, v| {
                    let ty = fx.b.func.dfg.value_type(v);
                    let (m, lt) = (like(fx, ty, m), like(fx, ty, log_total));
                    let d = fx.b.ins().fsub(v, m);
                    fx.b.ins().fsub(d, lt)
                });
            } else {
                map_row(fx, xs, os, len, |fx, v| {
                    let ty = fx.b.func.dfg.value_type(v);
                    let (m, t) = (like(fx, ty, m), like(fx, ty, total));
                    let d = fx.b.ins().fsub(v, m);
                    let e = emit_expf(fx, d);
                    fx.b.ins().fdiv(e, t)
                });
            }
        });
        return;
    }
    fx.for_range(begin, end, 1, |fx, o| {
        let row = fx.mul(o, row_bytes);
        let z = fx.iconst(0);
        fx.for_range(z, inner, 1, |fx, i| {
            let lane = fx.mul_imm(i, 4);
            let lane = fx.add(row, lane);
            let xs = fx.add(x, lane);
            let os = fx.add(out, lane);
            let at = |fx: &mut Fx, base: Value, l: Value| {
                let off = fx.mul(l, stride);
                fx.add(base, off)
            };

            let neg_inf = fx.b.ins().f32const(f32::NEG_INFINITY);
            let max = fx.var(types::F32, neg_inf);
            let z = fx.iconst(0);
            fx.for_range(z, len, 1, |fx, l| {
                let addr = at(fx, xs, l);
                let v = fx.load(types::F32, addr, 0);
                let m = fx.get(max);
                let m = fx.b.ins().fmax(m, v);
                fx.set(max, m);
            });
            let m = fx.get(max);

            let zero = fx.b.ins().f32const(0.0);
            let sum = fx.var(types::F32, zero);
            let z = fx.iconst(0);
            fx.for_range(z, len, 1, |fx, l| {
                let addr = at(fx, xs, l);
                let v = fx.load(types::F32, addr, 0);
                let d = fx.b.ins().fsub(v, m);
                let e = emit_expf(fx, d);
                let acc = fx.get(sum);
                let acc = fx.b.ins().fadd(acc, e);
                fx.set(sum, acc);
            });
            let total = fx.get(sum);

            let log_total = if s.log { Some(fx.call_math(MathFn::Log, &[total])) } else { None };
            let z = fx.iconst(0);
            fx.for_range(z, len, 1, |fx, l| {
                let src = at(fx, xs, l);
                let v = fx.load(types::F32, src, 0);
                let d = fx.b.ins().fsub(v, m);
                let y = match log_total {
                    Some(lt) => fx.b.ins().fsub(d, lt),
                    None => {
                        let e = emit_expf(fx, d);
                        fx.b.ins().fdiv(e, total)
                    }
                };
                let dst = at(fx, os, l);
                fx.store(y, dst, 0);
            });
        });
    });
}

/// The maximum of the contiguous f32 row at `xs` (`-∞` if empty; NaN if any is NaN):
/// four lanes at a time, then across the lanes, then the rest (the maximum is the same
/// in any order).
pub(crate) fn row_max(fx: &mut Fx, xs: Value, len: Value) -> Value {
    let neg_inf = fx.b.ins().f32const(f32::NEG_INFINITY);
    let lanes = fx.b.ins().splat(types::F32X4, neg_inf);
    let lanes = fx.var(types::F32X4, lanes);
    let z = fx.iconst(0);
    let rest = fx.for_whole_steps(z, len, 4, |fx, l| {
        let off = fx.mul_imm(l, 4);
        let addr = fx.add(xs, off);
        let v = fx.load(types::F32X4, addr, 0);
        let m = fx.get(lanes);
        let m = fx.b.ins().fmax(m, v);
        fx.set(lanes, m);
    });
    let m = fx.get(lanes);
    let l: Vec<Value> = (0..4).map(|i| fx.b.ins().extractlane(m, i)).collect();
    let (a, b) = (fx.b.ins().fmax(l[0], l[1]), fx.b.ins().fmax(l[2], l[3]));
    let m = fx.b.ins().fmax(a, b);
    let max = fx.var(types::F32, m);
    fx.for_range(rest, len, 1, |fx, l| {
        let off = fx.mul_imm(l, 4);
        let addr = fx.add(xs, off);
        let v = fx.load(types::F32, addr, 0);
        let m = fx.get(max);
        let m = fx.b.ins().fmax(m, v);
        fx.set(max, m);
    });
    fx.get(max)
}
