//! Element-level arithmetic: the scalar traits the kernels are generic over, and the
//! scalar functions behind the unary ops and casts.
//!
//! The kernels are written against [`Num`] and [`Real`] instead of `f32` so that an
//! f64 reference (for checking f32 rounding) is an instantiation, not a rewrite.

use nnc_ir::UnaryOp;
use std::fmt::Debug;

/// Numbers the elementwise, reduction and shape kernels work on (f32, f64, i64, i32).
///
/// Integer arithmetic wraps (two's complement, as the generated code will do) instead
/// of panicking on overflow; float min/max propagate NaN so that a NaN is never
/// silently hidden by the oracle.
pub(crate) trait Num: Copy + PartialOrd + Debug + Send + Sync + 'static {
    const ZERO: Self;
    /// The identity of `max`: -inf for floats, the minimum for integers.
    const LOWEST: Self;
    fn add(self, o: Self) -> Self;
    fn sub(self, o: Self) -> Self;
    fn mul(self, o: Self) -> Self;
    /// `None` for an integer division by zero.
    fn div(self, o: Self) -> Option<Self>;
    fn neg(self) -> Self;
    fn from_usize(n: usize) -> Self;
    fn is_nan(self) -> bool;

    fn max(self, o: Self) -> Self {
        // A NaN operand wins on either side.
        if self > o || self.is_nan() {
            self
        } else {
            o
        }
    }

    fn min(self, o: Self) -> Self {
        if self < o || self.is_nan() {
            self
        } else {
            o
        }
    }

    /// ReLU that keeps NaN (like PyTorch), rather than `max(x, 0)` which would drop it.
    fn relu(self) -> Self {
        if self < Self::ZERO {
            Self::ZERO
        } else {
            self
        }
    }
}

macro_rules! impl_num_float {
    ($t:ty) => {
        impl Num for $t {
            const ZERO: Self = 0.0;
            const LOWEST: Self = <$t>::NEG_INFINITY;
            fn add(self, o: Self) -> Self {
                self + o
            }
            fn sub(self, o: Self) -> Self {
                self - o
            }
            fn mul(self, o: Self) -> Self {
                self * o
            }
            fn div(self, o: Self) -> Option<Self> {
                Some(self / o)
            }
            fn neg(self) -> Self {
                -self
            }
            fn from_usize(n: usize) -> Self {
                n as $t
            }
            fn is_nan(self) -> bool {
                <$t>::is_nan(self)
            }
        }
    };
}

macro_rules! impl_num_int {
    ($t:ty) => {
        impl Num for $t {
            const ZERO: Self = 0;
            const LOWEST: Self = <$t>::MIN;
            fn add(self, o: Self) -> Self {
                self.wrapping_add(o)
            }
            fn sub(self, o: Self) -> Self {
                self.wrapping_sub(o)
            }
            fn mul(self, o: Self) -> Self {
                self.wrapping_mul(o)
            }
            /// Truncates toward zero (ONNX `Div`); MIN / -1 wraps to MIN.
            fn div(self, o: Self) -> Option<Self> {
                (o != 0).then(|| self.wrapping_div(o))
            }
            fn neg(self) -> Self {
                self.wrapping_neg()
            }
            fn from_usize(n: usize) -> Self {
                n as $t
            }
            fn is_nan(self) -> bool {
                false
            }
        }
    };
}

impl_num_float!(f32);
impl_num_float!(f64);
impl_num_int!(i64);
impl_num_int!(i32);

/// Floating-point numbers: everything the f32-only ops need.
pub(crate) trait Real: Num + ndarray::LinalgScalar {
    fn from_f64(v: f64) -> Self;
    fn exp(self) -> Self;
    fn ln(self) -> Self;
    fn sqrt(self) -> Self;
    fn tanh(self) -> Self;
    fn erf(self) -> Self;
    fn powf(self, e: Self) -> Self;
}

impl Real for f32 {
    fn from_f64(v: f64) -> Self {
        v as f32
    }
    /// nnc's own `exp`, which the generated code computes too (see `nnc_ir::math`).
    fn exp(self) -> Self {
        nnc_ir::math::expf(self)
    }
    fn ln(self) -> Self {
        f32::ln(self)
    }
    fn sqrt(self) -> Self {
        f32::sqrt(self)
    }
    fn tanh(self) -> Self {
        f32::tanh(self)
    }
    fn erf(self) -> Self {
        libm::erff(self)
    }
    fn powf(self, e: Self) -> Self {
        f32::powf(self, e)
    }
}

impl Real for f64 {
    fn from_f64(v: f64) -> Self {
        v
    }
    fn exp(self) -> Self {
        f64::exp(self)
    }
    fn ln(self) -> Self {
        f64::ln(self)
    }
    fn sqrt(self) -> Self {
        f64::sqrt(self)
    }
    fn tanh(self) -> Self {
        f64::tanh(self)
    }
    fn erf(self) -> Self {
        libm::erf(self)
    }
    fn powf(self, e: Self) -> Self {
        f64::powf(self, e)
    }
}

/// Logistic function, stable for large |x|: never evaluates `exp` of a large positive
/// number, so it returns exactly 0 or 1 in the tails instead of NaN.
pub(crate) fn sigmoid<T: Real>(x: T) -> T {
    let one = T::from_f64(1.0);
    if x >= T::ZERO {
        one / (one + x.neg().exp())
    } else {
        let e = x.exp();
        e / (one + e)
    }
}

/// GELU: exact `0.5 x (1 + erf(x / √2))`, or the tanh approximation
/// `0.5 x (1 + tanh(√(2/π) (x + 0.044715 x³)))`.
pub(crate) fn gelu<T: Real>(x: T, approximate: bool) -> T {
    let half = T::from_f64(0.5);
    let one = T::from_f64(1.0);
    let inner = if approximate {
        let c = T::from_f64((2.0 / std::f64::consts::PI).sqrt());
        (c * (x + T::from_f64(0.044715) * x * x * x)).tanh()
    } else {
        (x * T::from_f64(std::f64::consts::FRAC_1_SQRT_2)).erf()
    };
    half * x * (one + inner)
}

/// One unary op on a float. Integer/bool operands are handled in `eval`.
pub(crate) fn unary_real<T: Real>(op: UnaryOp, x: T) -> T {
    match op {
        UnaryOp::Neg => x.neg(),
        UnaryOp::Exp => x.exp(),
        UnaryOp::Log => x.ln(),
        UnaryOp::Sqrt => x.sqrt(),
        UnaryOp::Erf => x.erf(),
        UnaryOp::Relu => x.relu(),
        UnaryOp::LeakyRelu { alpha } => {
            if x < T::ZERO {
                T::from_f64(alpha as f64) * x
            } else {
                x
            }
        }
        UnaryOp::Sigmoid => sigmoid(x),
        UnaryOp::Tanh => x.tanh(),
        UnaryOp::Gelu { approximate } => gelu(x, approximate),
        UnaryOp::Identity => x,
    }
}

/// Conversions behind `cast`, one method per target dtype.
///
/// Float to integer truncates toward zero (ONNX `Cast`); out-of-range values saturate
/// and NaN becomes 0 (Rust `as`; ONNX leaves these undefined). Integer narrowing wraps.
/// Anything to bool is `x != 0` (so NaN is true); bool to numbers is 0/1.
pub(crate) trait Element: Copy {
    fn to_f32(self) -> f32;
    fn to_i64(self) -> i64;
    fn to_i32(self) -> i32;
    fn to_bool(self) -> bool;
}

macro_rules! impl_element_num {
    ($t:ty, $zero:expr) => {
        impl Element for $t {
            fn to_f32(self) -> f32 {
                self as f32
            }
            fn to_i64(self) -> i64 {
                self as i64
            }
            fn to_i32(self) -> i32 {
                self as i32
            }
            fn to_bool(self) -> bool {
                self != $zero
            }
        }
    };
}

impl_element_num!(f32, 0.0);
impl_element_num!(i64, 0);
impl_element_num!(i32, 0);

impl Element for bool {
    fn to_f32(self) -> f32 {
        self as u8 as f32
    }
    fn to_i64(self) -> i64 {
        self as i64
    }
    fn to_i32(self) -> i32 {
        self as i32
    }
    fn to_bool(self) -> bool {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erf_f32_matches_f64_reference() {
        // erff must be accurate to well under 1e-6 absolute across the useful range.
        let mut x = -6.0f32;
        while x <= 6.0 {
            let err = (Real::erf(x) as f64 - libm::erf(x as f64)).abs();
            assert!(err < 1e-6, "erf({x}) off by {err}");
            x += 0.01;
        }
    }

    #[test]
    fn f64_instantiation_agrees_with_f32() {
        for &x in &[-3.0f64, -0.5, 0.0, 0.7, 2.5] {
            for op in [UnaryOp::Sigmoid, UnaryOp::Gelu { approximate: false }, UnaryOp::Gelu { approximate: true }] {
                let a = unary_real(op, x);
                let b = unary_real(op, x as f32) as f64;
                assert!((a - b).abs() < 1e-6, "{op:?}({x}): {a} vs {b}");
            }
        }
    }

    #[test]
    fn integer_arithmetic_wraps_and_truncates() {
        assert_eq!(Num::div(-7i64, 2), Some(-3));
        assert_eq!(Num::div(7i32, -2), Some(-3));
        assert_eq!(Num::div(1i32, 0), None);
        assert_eq!(Num::div(i64::MIN, -1), Some(i64::MIN));
        assert_eq!(Num::add(i32::MAX, 1), i32::MIN);
        assert_eq!(Num::neg(i64::MIN), i64::MIN);
    }

    #[test]
    fn float_max_min_propagate_nan() {
        assert!(Num::max(f32::NAN, 1.0).is_nan());
        assert!(Num::max(1.0, f32::NAN).is_nan());
        assert!(Num::min(f32::NAN, 1.0).is_nan());
        assert!(Num::min(1.0, f32::NAN).is_nan());
        assert!(f32::NAN.relu().is_nan());
        assert_eq!(Num::max(2.0f32, 1.0), 2.0);
    }
}
