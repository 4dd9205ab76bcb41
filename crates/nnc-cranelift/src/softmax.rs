//! Softmax and log-softmax along any axis, viewed as `[outer, len, inner]`.
//!
//! Per lane: the maximum, the sum of `exp(x - max)`, then the outputs, in the same
//! order of operations as the interpreter (so results agree to the last bit; the `exp`
//! and `log` are the helpers of `math.rs`). Subtracting the maximum keeps `exp` from
//! overflowing on large logits. The range `[begin, end)` is over `outer`.

use crate::clif::Fx;
use crate::math::MathFn;
use crate::program::Softmax;
use crate::shape::Sz;
use cranelift_codegen::ir::{types, InstBuilder, Value};

pub(crate) fn items(s: &Softmax) -> Sz {
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
                let e = fx.call_math(MathFn::Exp, &[d]);
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
                        let e = fx.call_math(MathFn::Exp, &[d]);
                        fx.b.ins().fdiv(e, total)
                    }
                };
                let dst = at(fx, os, l);
                fx.store(y, dst, 0);
            });
        });
    });
}
