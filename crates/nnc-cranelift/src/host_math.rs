//! The scalar math functions generated code calls on the host: plain Rust `extern "C"`
//! functions, registered as JIT symbols (the object writer defines its own from the C
//! library's libm, see `object.rs`).
//!
//! Correctness first: these are the very formulas of the reference interpreter, so the
//! JIT agrees with the interpreter bit for bit on them: std's `logf`/`tanhf`/`powf`,
//! musl's `erff` via `libm`, and the same sigmoid and GELU expressions (sigmoid's
//! exponential is nnc's own, `nnc_ir::math::expf`), whose error against libm is
//! exactly that of libm itself (well under 1e-6 relative). The price of those is a
//! call per element (they only matter for non-ReLU activations, which are
//! memory-bound next to the matrix products). `exp` itself is generated inline
//! (`kernels/exp.rs`).

use cranelift_codegen::ir::{types, AbiParam, Signature};
use cranelift_codegen::isa::CallConv;
use nnc_ir::math::expf;

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
