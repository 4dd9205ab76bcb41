//! `exp`, generated inline: `nnc_ir::math::expf` (range reduction and a polynomial,
//! within one unit in the last place) step for step, scalar or f32x4, so the JIT, the
//! object file and the interpreter agree on it bit for bit.

use crate::clif::Fx;
use cranelift_codegen::ir::condcodes::FloatCC;
use cranelift_codegen::ir::{types, Endianness, InstBuilder, MemFlagsData, Type, Value};
use nnc_ir::math::{EXPF_LN2_HI, EXPF_LN2_LO, EXPF_LOG2E, EXPF_MAX, EXPF_MIN, EXPF_POLY, EXPF_ROUND, EXPF_ROUND_BITS};

/// `nnc_ir::math::expf` of `x` (f32 or f32x4, lane by lane), the same operations in
/// the same order, so the same bits. Branch-free: comparisons and selects for the
/// clamp, integer arithmetic on bit patterns for `2ⁿ`.
pub(crate) fn emit_expf(fx: &mut Fx, x: Value) -> Value {
    let ty = fx.b.func.dfg.value_type(x);
    let int_ty: Type = ty.as_int();
    let vector = ty != types::F32;
    let k = |fx: &mut Fx, c: f32| {
        let c = fx.b.ins().f32const(c);
        if vector {
            fx.b.ins().splat(ty, c)
        } else {
            c
        }
    };
    let ki = |fx: &mut Fx, c: i32| {
        let c = fx.b.ins().iconst(types::I32, c as i64);
        if vector {
            fx.b.ins().splat(int_ty, c)
        } else {
            c
        }
    };
    let bits = MemFlagsData::new().with_endianness(Endianness::Little);
    let select = |fx: &mut Fx, cond: Value, a: Value, b: Value| {
        if vector {
            let mask = fx.b.ins().bitcast(ty, bits, cond);
            fx.b.ins().bitselect(mask, a, b)
        } else {
            fx.b.ins().select(cond, a, b)
        }
    };
    // Clamp; comparisons with NaN are false, so NaN stays NaN.
    let (lo, hi) = (k(fx, EXPF_MIN), k(fx, EXPF_MAX));
    let below = fx.b.ins().fcmp(FloatCC::LessThan, x, lo);
    let x = select(fx, below, lo, x);
    let above = fx.b.ins().fcmp(FloatCC::GreaterThan, x, hi);
    let x = select(fx, above, hi, x);
    // n = round(x·log₂e), as a float and from the sum's bits as an integer.
    let (log2e, round) = (k(fx, EXPF_LOG2E), k(fx, EXPF_ROUND));
    let t = fx.b.ins().fmul(x, log2e);
    let shifted = fx.b.ins().fadd(t, round);
    let n = fx.b.ins().fsub(shifted, round);
    // r = x - n·ln2 in two steps.
    let (ln2_hi, ln2_lo) = (k(fx, EXPF_LN2_HI), k(fx, EXPF_LN2_LO));
    let nh = fx.b.ins().fmul(n, ln2_hi);
    let r = fx.b.ins().fsub(x, nh);
    let nl = fx.b.ins().fmul(n, ln2_lo);
    let r = fx.b.ins().fsub(r, nl);
    // y = P(r)·r² + r + 1
    let mut p = k(fx, EXPF_POLY[0]);
    for &c in &EXPF_POLY[1..] {
        let c = k(fx, c);
        let pr = fx.b.ins().fmul(p, r);
        p = fx.b.ins().fadd(pr, c);
    }
    let r2 = fx.b.ins().fmul(r, r);
    let y = fx.b.ins().fmul(p, r2);
    let y = fx.b.ins().fadd(y, r);
    let one = k(fx, 1.0);
    let mut y = fx.b.ins().fadd(y, one);
    // y·2^(n>>1)·2^(n - n>>1), each power built from its exponent bits.
    let n_bits = fx.b.ins().bitcast(int_ty, bits, shifted);
    let offset = ki(fx, EXPF_ROUND_BITS);
    let n = fx.b.ins().isub(n_bits, offset);
    let half = fx.b.ins().sshr_imm_u(n, 1);
    let rest = fx.b.ins().isub(n, half);
    let bias = ki(fx, 127);
    for e in [half, rest] {
        let biased = fx.b.ins().iadd(e, bias);
        let exponent = fx.b.ins().ishl_imm_u(biased, 23);
        let pow2 = fx.b.ins().bitcast(ty, bits, exponent);
        y = fx.b.ins().fmul(y, pow2);
    }
    y
}
