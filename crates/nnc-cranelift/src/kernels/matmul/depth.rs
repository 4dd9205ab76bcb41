//! A product of few rows split along K (`MatMulPlan::depth`): the partial products of
//! fixed K parts, then their sum in part order, then the epilogue.

use super::{emit_row_blocks, Region};
use crate::clif::Fx;
use crate::microkernel::KernelFamily;
use crate::program::MatMul;
use cranelift_codegen::ir::{types, InstBuilder, Value};

/// Computes the partial products of the K parts `[fx.begin, fx.end)` for all rows of
/// C, each into its partial C (see `MatMulPlan::depth`); no epilogue.
pub(crate) fn emit_compute_depth(fx: &mut Fx, mm: &MatMul, family: &dyn KernelFamily) {
    let split = mm.plan.depth.expect("called for a product split along K");
    let n = mm.n.as_fixed().expect("split along K only with a static N") as i64;
    let (lo, hi) = (fx.begin, fx.end);
    let zero = fx.iconst(0);
    let m = fx.sz(mm.m);
    let partials = fx.slot(split.slot);
    fx.for_range(lo, hi, 1, |fx, d| {
        let (k_lo, k_hi) = depth_range(fx, mm, split.parts, d);
        let off = fx.mul_imm(d, split.variant.max_rows * n * 4);
        let c = fx.add(partials, off);
        (fx.begin, fx.end) = (zero, m);
        emit_row_blocks(fx, mm, family, Region { columns: None, depth: Some((k_lo, k_hi, c)) });
    });
    (fx.begin, fx.end) = (lo, hi);
}

/// Rows `[fx.begin, fx.end)` of C: the sum of the K parts' partial rows, in part
/// order, then the epilogue.
pub(crate) fn emit_depth_sum(fx: &mut Fx, mm: &MatMul) {
    let split = mm.plan.depth.expect("called for a product split along K");
    let n = mm.n.as_fixed().expect("split along K only with a static N") as i64;
    let c_base = fx.slot(mm.c);
    let partials = fx.slot(split.slot);
    // Each part's partial C.
    let parts: Vec<Value> =
        (0..split.parts as i64).map(|d| fx.b.ins().iadd_imm_s(partials, d * split.variant.max_rows * n * 4)).collect();
    let (begin, end) = (fx.begin, fx.end);
    let n_v = fx.iconst(n);
    fx.for_range(begin, end, 1, |fx, r| {
        let row = fx.mul_imm(r, n * 4);
        let sum_at = |fx: &mut Fx, ty, j: Value| {
            let off = fx.mul_imm(j, 4);
            let off = fx.add(row, off);
            let mut acc = None;
            for &p in &parts {
                let at = fx.add(p, off);
                let x = fx.load(ty, at, 0);
                acc = Some(acc.map_or(x, |a| fx.b.ins().fadd(a, x)));
            }
            let at = fx.add(c_base, off);
            fx.store(acc.expect("two parts or more"), at, 0);
        };
        // Four columns at a time, then the rest one by one.
        let zero = fx.iconst(0);
        let rest = fx.for_whole_steps(zero, n_v, 4, |fx, j| sum_at(fx, types::F32X4, j));
        fx.for_range(rest, n_v, 1, |fx, j| sum_at(fx, types::F32, j));
    });
    crate::kernels::epilogue::emit(fx, mm, c_base, n_v);
}

/// The K range `[lo, hi)` of part `d`.
fn depth_range(fx: &mut Fx, mm: &MatMul, parts: u64, d: Value) -> (Value, Value) {
    let k = mm.k.as_fixed().expect("split along K only with a static K") as i64;
    let at = |fx: &mut Fx, d: Value| {
        let dk = fx.mul_imm(d, k);
        fx.b.ins().udiv_imm_u(dk, parts as i64)
    };
    let next = fx.b.ins().iadd_imm_s(d, 1);
    (at(fx, d), at(fx, next))
}
