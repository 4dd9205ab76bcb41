//! Transcendental functions the generated code computes: `exp` inline, the others
//! as calls to plain Rust `extern "C"` functions registered as JIT symbols.
//!
//! Correctness first: these are the very formulas of the reference interpreter, so the
//! JIT agrees with the interpreter bit for bit on them. `exp` is nnc's own
//! (`nnc_ir::math::expf`, within one unit in the last place), generated here step for
//! step ([`emit_expf`]), scalar or f32x4; the rest are std's `logf`/`tanhf`/`powf`,
//! musl's `erff` via `libm`, and the same sigmoid and GELU expressions, whose error
//! against libm is exactly that of libm itself (well under 1e-6 relative). The price
//! of those is a call per element (they only matter for non-ReLU activations, which
//! are memory-bound next to the matrix products).

use crate::clif::Fx;
use cranelift_codegen::ir::condcodes::FloatCC;
use cranelift_codegen::ir::{types, AbiParam, Endianness, InstBuilder, MemFlagsData, Signature, Type, Value};
use cranelift_codegen::isa::CallConv;
use nnc_ir::math::{
    expf, EXPF_LN2_HI, EXPF_LN2_LO, EXPF_LOG2E, EXPF_MAX, EXPF_MIN, EXPF_POLY, EXPF_ROUND, EXPF_ROUND_BITS,
};

/// A scalar f32 function the generated code can call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum MathFn {
    Log,
    Tanh,
    Erf,
    Sigmoid,
    GeluErf,
    GeluTanh,
    Pow,
}

impl MathFn {
    pub const ALL: [MathFn; 7] =
        [MathFn::Log, MathFn::Tanh, MathFn::Erf, MathFn::Sigmoid, MathFn::GeluErf, MathFn::GeluTanh, MathFn::Pow];

    /// The symbol name in the JIT module (and in `emit_clif` output).
    pub fn symbol(self) -> &'static str {
        match self {
            MathFn::Log => "nnc_logf",
            MathFn::Tanh => "nnc_tanhf",
            MathFn::Erf => "nnc_erff",
            MathFn::Sigmoid => "nnc_sigmoidf",
            MathFn::GeluErf => "nnc_gelu_erff",
            MathFn::GeluTanh => "nnc_gelu_tanhf",
            MathFn::Pow => "nnc_powf",
        }
    }

    pub fn arity(self) -> usize {
        match self {
            MathFn::Pow => 2,
            _ => 1,
        }
    }

    /// The host function's address, for the JIT's symbol table.
    pub fn address(self) -> *const u8 {
        match self {
            MathFn::Log => nnc_logf as *const u8,
            MathFn::Tanh => nnc_tanhf as *const u8,
            MathFn::Erf => nnc_erff as *const u8,
            MathFn::Sigmoid => nnc_sigmoidf as *const u8,
            MathFn::GeluErf => nnc_gelu_erff as *const u8,
            MathFn::GeluTanh => nnc_gelu_tanhf as *const u8,
            MathFn::Pow => nnc_powf as *const u8,
        }
    }

    pub fn signature(self, call_conv: CallConv) -> Signature {
        let mut sig = Signature::new(call_conv);
        for _ in 0..self.arity() {
            sig.params.push(AbiParam::new(types::F32));
        }
        sig.returns.push(AbiParam::new(types::F32));
        sig
    }
}

extern "C" fn nnc_logf(x: f32) -> f32 {
    x.ln()
}

extern "C" fn nnc_tanhf(x: f32) -> f32 {
    x.tanh()
}

extern "C" fn nnc_erff(x: f32) -> f32 {
    libm::erff(x)
}

extern "C" fn nnc_powf(x: f32, y: f32) -> f32 {
    x.powf(y)
}

/// Logistic function that never takes `exp` of a large positive number.
extern "C" fn nnc_sigmoidf(x: f32) -> f32 {
    if x >= 0.0 {
        1.0 / (1.0 + expf(-x))
    } else {
        let e = expf(x);
        e / (1.0 + e)
    }
}

/// Exact GELU, `0.5·x·(1 + erf(x/√2))`.
extern "C" fn nnc_gelu_erff(x: f32) -> f32 {
    let inner = libm::erff(x * std::f64::consts::FRAC_1_SQRT_2 as f32);
    0.5 * x * (1.0 + inner)
}

/// GELU's tanh approximation, `0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))`.
extern "C" fn nnc_gelu_tanhf(x: f32) -> f32 {
    let c = (2.0 / std::f64::consts::PI).sqrt() as f32;
    let inner = (c * (x + 0.044715f32 * x * x * x)).tanh();
    0.5 * x * (1.0 + inner)
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helpers_match_f64_references() {
        let mut x = -9.0f32;
        while x < 9.0 {
            let rel = |got: f32, want: f64| ((got as f64 - want) / want.abs().max(1e-30)).abs();
            assert!(rel(nnc_tanhf(x), (x as f64).tanh()) < 1e-6, "tanh({x})");
            assert!(rel(nnc_sigmoidf(x), 1.0 / (1.0 + (-(x as f64)).exp())) < 1e-6, "sigmoid({x})");
            if x > 0.0 {
                assert!(rel(nnc_logf(x), (x as f64).ln()) < 1e-6 || (x - 1.0).abs() < 1e-3, "log({x})");
            }
            x += 0.037;
        }
        assert!(nnc_sigmoidf(-100.0) >= 0.0 && nnc_sigmoidf(100.0) == 1.0);
    }
}
