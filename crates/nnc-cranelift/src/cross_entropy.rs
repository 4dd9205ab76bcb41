//! `fused.softmax_ce`: softmax cross-entropy and its gradient in one pass over the
//! logits.
//!
//! Two functions. `rows` (items: rows) computes, per row, the log-softmax as the
//! `softmax` kernel does (maximum, sum of `exp(x - max)`, its log), the row's
//! log-likelihood `log_softmax[label]` into `row_ll`, and the gradient row
//! `onehot·(-1/M) - exp(log_softmax)·(-1/M)`, which is `FusedOp::expand`'s
//! `d_log_probs - probs·row_sum` with `row_sum = -1/M` (the one non-zero term of the
//! row). `loss` (one item) sums `row_ll` in row order and negates the mean, so the loss
//! does not depend on how rows were split across threads. A label outside
//! `0..classes` sets the status word (the host checks fed labels before the step).

use crate::clif::Fx;
use crate::elementwise::clif_type;
use crate::math::MathFn;
use crate::program::CrossEntropy;
use crate::shape::Sz;
use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::{types, InstBuilder};
use nnc_ir::DType;

pub(crate) fn row_items(ce: &CrossEntropy) -> Sz {
    ce.rows
}

pub(crate) fn emit_rows(fx: &mut Fx, ce: &CrossEntropy, status: (usize, u32)) {
    let logits = fx.slot(ce.logits);
    let labels = fx.slot(ce.labels.slot);
    let grad = fx.slot(ce.grad);
    let row_ll = fx.slot(ce.row_ll);
    let classes = ce.classes as i64;
    let es = ce.labels.dtype.size_bytes() as i64;
    // -1/M, with M counted in f32 as the expansion's `reduce_sum(broadcast(1))` does
    // (exact below 2^24 rows).
    let rows = fx.sz(ce.rows);
    let m = fx.b.ins().fcvt_from_uint(types::F32, rows);
    let minus_one = fx.b.ins().f32const(-1.0);
    let scale = fx.b.ins().fdiv(minus_one, m);
    let zero = fx.b.ins().f32const(0.0);
    let (begin, end) = (fx.begin, fx.end);
    fx.for_range(begin, end, 1, |fx, r| {
        let row_off = fx.mul_imm(r, classes * 4);
        let x = fx.add(logits, row_off);
        let gr = fx.add(grad, row_off);
        let at = fx.mul_imm(r, es);
        let at = fx.add(labels, at);
        let label = fx.load(clif_type(ce.labels.dtype), at, 0);
        let label = if ce.labels.dtype == DType::I32 { fx.b.ins().sextend(types::I64, label) } else { label };
        let bad = fx.b.ins().icmp_imm_s(IntCC::UnsignedGreaterThanOrEqual, label, classes);
        fx.if_then(bad, |fx| fx.set_status(status.0, status.1));

        let neg_inf = fx.b.ins().f32const(f32::NEG_INFINITY);
        let max = fx.var(types::F32, neg_inf);
        let n = fx.iconst(classes);
        let z = fx.iconst(0);
        fx.for_range(z, n, 1, |fx, c| {
            let off = fx.mul_imm(c, 4);
            let addr = fx.add(x, off);
            let v = fx.load(types::F32, addr, 0);
            let acc = fx.get(max);
            let acc = fx.b.ins().fmax(acc, v);
            fx.set(max, acc);
        });
        let max = fx.get(max);
        let sum = fx.var(types::F32, zero);
        let z = fx.iconst(0);
        fx.for_range(z, n, 1, |fx, c| {
            let off = fx.mul_imm(c, 4);
            let addr = fx.add(x, off);
            let v = fx.load(types::F32, addr, 0);
            let d = fx.b.ins().fsub(v, max);
            let e = fx.call_math(MathFn::Exp, &[d]);
            let acc = fx.get(sum);
            let acc = fx.b.ins().fadd(acc, e);
            fx.set(sum, acc);
        });
        let total = fx.get(sum);
        let log_total = fx.call_math(MathFn::Log, &[total]);

        let ll = fx.var(types::F32, zero);
        let z = fx.iconst(0);
        fx.for_range(z, n, 1, |fx, c| {
            let off = fx.mul_imm(c, 4);
            let addr = fx.add(x, off);
            let v = fx.load(types::F32, addr, 0);
            let d = fx.b.ins().fsub(v, max);
            let log_prob = fx.b.ins().fsub(d, log_total);
            let is_label = fx.b.ins().icmp(IntCC::Equal, c, label);
            let picked = fx.get(ll);
            let picked = fx.b.ins().select(is_label, log_prob, picked);
            fx.set(ll, picked);
            let prob = fx.call_math(MathFn::Exp, &[log_prob]);
            let d_log_prob = fx.b.ins().select(is_label, scale, zero);
            let scaled = fx.b.ins().fmul(prob, scale);
            let g = fx.b.ins().fsub(d_log_prob, scaled);
            let dst = fx.add(gr, off);
            fx.store(g, dst, 0);
        });
        let ll = fx.get(ll);
        let dst = fx.mul_imm(r, 4);
        let dst = fx.add(row_ll, dst);
        fx.store(ll, dst, 0);
    });
}

/// `loss = -(Σ row_ll)/M`, summed in row order.
pub(crate) fn emit_loss(fx: &mut Fx, ce: &CrossEntropy) {
    let Some(loss) = ce.loss else { return };
    let row_ll = fx.slot(ce.row_ll);
    let out = fx.slot(loss);
    let rows = fx.sz(ce.rows);
    let zero = fx.b.ins().f32const(0.0);
    let sum = fx.var(types::F32, zero);
    let z = fx.iconst(0);
    fx.for_range(z, rows, 1, |fx, r| {
        let off = fx.mul_imm(r, 4);
        let addr = fx.add(row_ll, off);
        let v = fx.load(types::F32, addr, 0);
        let acc = fx.get(sum);
        let acc = fx.b.ins().fadd(acc, v);
        fx.set(sum, acc);
    });
    let total = fx.get(sum);
    let m = fx.b.ins().fcvt_from_uint(types::F32, rows);
    let mean = fx.b.ins().fdiv(total, m);
    let loss_value = fx.b.ins().fneg(mean);
    fx.store(loss_value, out, 0);
}
