//! nnc's `exp` for f32: one definition that the reference interpreter calls and the
//! Cranelift backend generates inline, operation for operation, so the two agree bit
//! for bit (the JIT is checked against the interpreter; so is the object file).
//!
//! Why not libm's `expf`, as before: it is a call per element, which the generated
//! code makes with every live float register spilled around it, one element at a time.
//! Inline, the same steps run on four lanes at once (softmax and the cross-entropy
//! take four rows or four classes at a time, the elementwise op four elements).
//!
//! The method is Cody–Waite range reduction and the Cephes `expf` polynomial:
//! `x = n·ln2 + r` with `|r| ≤ ln2/2`, `exp(x) = 2ⁿ·(1 + r + r²·P(r))`, `P` of degree 5.
//! Against f64's `exp` rounded to f32, over every f32 in `[-104, 89]` (checked once
//! exhaustively; the tests sample every 61st): at most [`MAX_ULP`] unit in the last
//! place, and 99.2% of results correctly rounded (libm's are correctly rounded in
//! nearly all cases). Only IEEE multiplies, adds and subtractions (no fused
//! multiply-add, which not every target has), comparisons, and integer arithmetic on
//! bit patterns, so every backend computes the same bits.
//!
//! Special values: `exp(NaN)` is NaN, `exp(+∞)` is +∞ and `exp(-∞)` is +0; results
//! overflow to +∞ above about 88.72 and fall through the subnormals to +0 below about
//! -103.97, as libm's do.

/// Inputs are clamped to this range first: beyond it the result is +∞ or +0 anyway,
/// and inside it `n` stays in `[-150, 129]`, whose halves are normal powers of two.
pub const EXPF_MIN: f32 = -104.0;
pub const EXPF_MAX: f32 = 89.0;
/// log₂(e), rounded to f32.
pub const EXPF_LOG2E: f32 = std::f32::consts::LOG2_E;
/// 1.5·2²³: adding it to a float below 2²² in magnitude rounds that to a whole number
/// `n` (to nearest, ties to even) held in the sum's low bits, whose bit pattern is
/// then `EXPF_ROUND_BITS + n`; subtracting it again gives `n` as a float. No rounding
/// or conversion instruction needed.
pub const EXPF_ROUND: f32 = 12_582_912.0;
pub const EXPF_ROUND_BITS: i32 = 0x4B40_0000;
/// ln 2 in two parts: `LN2_HI` has few significant bits, so `n·LN2_HI` is exact.
pub const EXPF_LN2_HI: f32 = 0.693_359_4;
pub const EXPF_LN2_LO: f32 = -2.121_944_4e-4;
/// `exp(r) ≈ 1 + r + r²·P(r)`, `P` of degree 5 (highest power first).
pub const EXPF_POLY: [f32; 6] = [1.987_569_1e-4, 1.398_199_9e-3, 8.333_452e-3, 4.166_579_6e-2, 1.666_666_5e-1, 0.5];

/// The largest error of [`expf`] against the exact result, in units in the last place
/// (checked by this module's tests).
pub const MAX_ULP: u32 = 1;

/// `e^x` (see the module documentation). The generated code repeats these steps
/// exactly (`nnc_cranelift`'s `math::emit_expf`).
#[inline]
pub fn expf(x: f32) -> f32 {
    // NaN stays NaN through the clamp and every step after it.
    // (`clamp` compares below, then above, as the generated code does.)
    let x = x.clamp(EXPF_MIN, EXPF_MAX);
    let shifted = x * EXPF_LOG2E + EXPF_ROUND;
    let n = shifted - EXPF_ROUND;
    let r = x - n * EXPF_LN2_HI;
    let r = r - n * EXPF_LN2_LO;
    let mut p = EXPF_POLY[0];
    for c in &EXPF_POLY[1..] {
        p = p * r + c;
    }
    let y = p * (r * r) + r + 1.0;
    // 2ⁿ as two normal powers of two, so that 2¹²⁸ and the subnormal range work; the
    // first product is exact, the second rounds once. (With NaN these are garbage,
    // and the product NaN.)
    let n = (shifted.to_bits() as i32).wrapping_sub(EXPF_ROUND_BITS);
    let half = n >> 1;
    y * pow2(half) * pow2(n.wrapping_sub(half))
}

/// 2^e for a normal exponent `e` (-126 ≤ e ≤ 127).
fn pow2(e: i32) -> f32 {
    f32::from_bits((e.wrapping_add(127) as u32) << 23)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Distance in units in the last place between `got` and the exact `want`, for
    /// finite non-negative values (subnormals included).
    fn ulps(got: f32, want: f64) -> u32 {
        let w = want as f32;
        if got == w {
            return 0;
        }
        // Within one ulp of the exact value's nearest f32, counted between neighbours.
        let (a, b) = (got.to_bits() as i64, w.to_bits() as i64);
        (a - b).unsigned_abs() as u32
    }

    #[test]
    fn expf_is_within_max_ulp_of_the_exact_result_over_its_range() {
        let mut worst = (0, 0.0f32);
        let (lo, hi) = (EXPF_MIN.to_bits(), EXPF_MAX.to_bits());
        // Negative floats: from -0 down to -104 (bit patterns increase).
        let negatives = (0x8000_0000u32..=lo).step_by(61);
        let positives = (0u32..=hi).step_by(61);
        for bits in negatives.chain(positives) {
            let x = f32::from_bits(bits);
            let u = ulps(expf(x), (x as f64).exp());
            if u > worst.0 {
                worst = (u, x);
            }
        }
        assert!(worst.0 <= MAX_ULP, "{} ulp at x = {:e}", worst.0, worst.1);
    }

    #[test]
    fn expf_special_values_and_range_ends() {
        assert!(expf(f32::NAN).is_nan());
        assert_eq!(expf(f32::INFINITY), f32::INFINITY);
        assert_eq!(expf(f32::NEG_INFINITY).to_bits(), 0);
        assert_eq!(expf(0.0), 1.0);
        assert_eq!(expf(-0.0), 1.0);
        assert_eq!(expf(1.0), std::f32::consts::E);
        // The largest finite result, and the first input past it.
        let top = expf(88.72283);
        assert!(top.is_finite() && ulps(top, (88.72283f32 as f64).exp()) <= 1, "{top:e}");
        assert_eq!(expf(88.7229), f32::INFINITY);
        assert_eq!(expf(1000.0), f32::INFINITY);
        // Subnormal results, then +0.
        let tiny = expf(-100.0);
        assert!(tiny > 0.0 && !tiny.is_normal(), "{tiny:e}");
        assert!(ulps(tiny, (-100.0f64).exp()) <= 1, "{tiny:e}");
        assert_eq!(expf(-104.0).to_bits(), 0);
        assert_eq!(expf(-1000.0).to_bits(), 0);
    }
}
