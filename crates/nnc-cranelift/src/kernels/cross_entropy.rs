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
//!
//! Rows go four at a time, one per vector lane, each lane taking the one-row steps;
//! the last rows of a range one at a time, their classes four lanes at a time. `exp`
//! is `kernels/exp.rs`'s inline one, so either way gives the interpreter's bits.

use crate::clif::Fx;
use crate::host_math::MathFn;
use crate::kernels::elementwise::{clif_type, little};
use crate::kernels::exp::emit_expf;
use crate::kernels::softmax::{like, map_row};
use crate::program::CrossEntropy;
use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::{types, InstBuilder, Value};
use nnc_ir::DType;
use nnc_ir::Size;

pub(crate) fn row_items(ce: &CrossEntropy) -> Size {
    ce.rows
}

pub(crate) fn emit_rows(fx: &mut Fx, ce: &CrossEntropy, status: (usize, u32)) {
    let logits = fx.slot(ce.logits);
    let labels = fx.slot(ce.labels.slot);
    let grad = fx.slot(ce.grad);
    let row_ll = fx.slot(ce.row_ll);
    // -1/M, with M counted in f32 as the expansion's `reduce_sum(broadcast(1))` does
    // (exact below 2^24 rows).
    let rows = fx.sz(ce.rows);
    let m = fx.b.ins().fcvt_from_uint(types::F32, rows);
    let minus_one = fx.b.ins().f32const(-1.0);
    let scale = fx.b.ins().fdiv(minus_one, m);
    let zero = fx.b.ins().f32const(0.0);
    let k = Rows { ce, status, logits, labels, grad, row_ll, classes: ce.classes as i64, scale, zero };
    let (begin, end) = (fx.begin, fx.end);
    // Four rows at a time, a row per lane: each lane does the one-row steps, in the
    // same order, so the same bits; the rows' dependency chains (maximum, sum, log,
    // outputs) then overlap instead of following one another.
    let rest = fx.for_whole_steps(begin, end, 4, |fx, r0| k.four_rows(fx, r0));
    fx.for_range(rest, end, 1, |fx, r| k.one_row(fx, r));
}

/// What the rows function knows.
struct Rows<'a> {
    ce: &'a CrossEntropy,
    status: (usize, u32),
    logits: Value,
    labels: Value,
    grad: Value,
    row_ll: Value,
    classes: i64,
    /// `-1/M`.
    scale: Value,
    zero: Value,
}

impl Rows<'_> {
    /// A label's class index, and whether it is one (else the status word is set).
    fn label_of(&self, fx: &mut Fx, r: Value) -> (Value, Value) {
        let dtype = self.ce.labels.dtype;
        let at = fx.mul_imm(r, dtype.size_bytes() as i64);
        let at = fx.add(self.labels, at);
        let label = fx.load(clif_type(dtype), at, 0);
        let label = if dtype == DType::I32 { fx.b.ins().sextend(types::I64, label) } else { label };
        let bad = fx.b.ins().icmp_imm_s(IntCC::UnsignedGreaterThanOrEqual, label, self.classes);
        fx.if_then(bad, |fx| fx.set_status(self.status.0, self.status.1));
        (label, bad)
    }

    /// The address of row `r` of a `[rows, classes]` buffer at `base`.
    fn row(&self, fx: &mut Fx, base: Value, r: Value) -> Value {
        let off = fx.mul_imm(r, self.classes * 4);
        fx.add(base, off)
    }

    /// Rows `[r0, r0 + 4)`, a row per lane.
    fn four_rows(&self, fx: &mut Fx, r0: Value) {
        let rows: Vec<Value> = (0..4).map(|i| fx.b.ins().iadd_imm_s(r0, i)).collect();
        let xs: Vec<Value> = rows.iter().map(|&r| self.row(fx, self.logits, r)).collect();
        let grs: Vec<Value> = rows.iter().map(|&r| self.row(fx, self.grad, r)).collect();
        // Each lane's label as i32, -1 for one out of range (it matches no class).
        let mut lab = None;
        for (i, &r) in rows.iter().enumerate() {
            let (label, bad) = self.label_of(fx, r);
            let l32 = fx.b.ins().ireduce(types::I32, label);
            let none = fx.b.ins().iconst(types::I32, -1);
            let l32 = fx.b.ins().select(bad, none, l32);
            lab = Some(match lab {
                None => fx.b.ins().splat(types::I32X4, l32),
                Some(v) => fx.b.ins().insertlane(v, l32, i as u8),
            });
        }
        let lab = lab.expect("four lanes");
        let n = fx.iconst(self.classes);
        let z = fx.iconst(0);
        let (max, log_total, zeros) = self.four_log_sums(fx, &xs, (z, n));
        let scale_v = fx.b.ins().splat(types::F32X4, self.scale);
        let ll = fx.var(types::F32X4, zeros);
        fx.for_range(z, n, 1, |fx, c| {
            let v = gather(fx, &xs, c);
            let d = fx.b.ins().fsub(v, max);
            let log_prob = fx.b.ins().fsub(d, log_total);
            let c32 = fx.b.ins().ireduce(types::I32, c);
            let c32 = fx.b.ins().splat(types::I32X4, c32);
            let is_label = fx.b.ins().icmp(IntCC::Equal, c32, lab);
            let is_label = fx.b.ins().bitcast(types::F32X4, little(), is_label);
            let picked = fx.get(ll);
            let picked = fx.b.ins().bitselect(is_label, log_prob, picked);
            fx.set(ll, picked);
            let prob = emit_expf(fx, log_prob);
            let d_log_prob = fx.b.ins().bitselect(is_label, scale_v, zeros);
            let scaled = fx.b.ins().fmul(prob, scale_v);
            let g = fx.b.ins().fsub(d_log_prob, scaled);
            let off = fx.mul_imm(c, 4);
            for (i, &gr) in grs.iter().enumerate() {
                let lane = fx.b.ins().extractlane(g, i as u8);
                let at = fx.add(gr, off);
                fx.store(lane, at, 0);
            }
        });
        let ll = fx.get(ll);
        let dst = fx.mul_imm(r0, 4);
        let dst = fx.add(self.row_ll, dst);
        fx.store(ll, dst, 0);
    }

    /// The four rows' maximum and the log of their sum of `exp(x - max)`, over the
    /// classes `[z, n)`, and a vector of zeros.
    fn four_log_sums(&self, fx: &mut Fx, xs: &[Value], (z, n): (Value, Value)) -> (Value, Value, Value) {
        let neg_inf = fx.b.ins().f32const(f32::NEG_INFINITY);
        let neg_inf = fx.b.ins().splat(types::F32X4, neg_inf);
        let max = fx.var(types::F32X4, neg_inf);
        fx.for_range(z, n, 1, |fx, c| {
            let v = gather(fx, xs, c);
            let m = fx.get(max);
            let m = fx.b.ins().fmax(m, v);
            fx.set(max, m);
        });
        let max = fx.get(max);
        let zeros = fx.b.ins().splat(types::F32X4, self.zero);
        let sum = fx.var(types::F32X4, zeros);
        fx.for_range(z, n, 1, |fx, c| {
            let v = gather(fx, xs, c);
            let d = fx.b.ins().fsub(v, max);
            let e = emit_expf(fx, d);
            let acc = fx.get(sum);
            let acc = fx.b.ins().fadd(acc, e);
            fx.set(sum, acc);
        });
        let total = fx.get(sum);
        let mut log_total = None;
        for i in 0..4u8 {
            let t = fx.b.ins().extractlane(total, i);
            let lt = fx.call_math(MathFn::Log, &[t]);
            log_total = Some(match log_total {
                None => fx.b.ins().splat(types::F32X4, lt),
                Some(v) => fx.b.ins().insertlane(v, lt, i),
            });
        }
        (max, log_total.expect("four lanes"), zeros)
    }

    /// Row `r` alone, its classes four lanes at a time.
    fn one_row(&self, fx: &mut Fx, r: Value) {
        let (classes, scale, zero) = (self.classes, self.scale, self.zero);
        let row_off = fx.mul_imm(r, classes * 4);
        let x = fx.add(self.logits, row_off);
        let gr = fx.add(self.grad, row_off);
        let (label, _) = self.label_of(fx, r);
        let n = fx.iconst(classes);
        let max = crate::kernels::softmax::row_max(fx, x, n);
        let total = crate::kernels::softmax::sum_exp(fx, x, n, max);
        let log_total = fx.call_math(MathFn::Log, &[total]);

        // Every class's gradient as a non-label's, `0 - exp(log_prob)·scale`, four
        // lanes at a time; then the label's, `scale - exp(log_prob)·scale`, over it.
        map_row(fx, x, gr, n, |fx, v| {
            let ty = fx.b.func.dfg.value_type(v);
            let (m, lt, sc, z) = (like(fx, ty, max), like(fx, ty, log_total), like(fx, ty, scale), like(fx, ty, zero));
            let d = fx.b.ins().fsub(v, m);
            let log_prob = fx.b.ins().fsub(d, lt);
            let prob = emit_expf(fx, log_prob);
            let scaled = fx.b.ins().fmul(prob, sc);
            fx.b.ins().fsub(z, scaled)
        });
        let ll = fx.var(types::F32, zero);
        let good = fx.b.ins().icmp_imm_s(IntCC::UnsignedLessThan, label, classes);
        fx.if_then(good, |fx| {
            let off = fx.mul_imm(label, 4);
            let addr = fx.add(x, off);
            let v = fx.load(types::F32, addr, 0);
            let d = fx.b.ins().fsub(v, max);
            let log_prob = fx.b.ins().fsub(d, log_total);
            fx.set(ll, log_prob);
            let prob = emit_expf(fx, log_prob);
            let scaled = fx.b.ins().fmul(prob, scale);
            let g = fx.b.ins().fsub(scale, scaled);
            let dst = fx.add(gr, off);
            fx.store(g, dst, 0);
        });
        let ll = fx.get(ll);
        let dst = fx.mul_imm(r, 4);
        let dst = fx.add(self.row_ll, dst);
        fx.store(ll, dst, 0);
    }
}

/// Class `c` of the four rows at `xs`, a row per lane.
fn gather(fx: &mut Fx, xs: &[Value], c: Value) -> Value {
    let off = fx.mul_imm(c, 4);
    let mut v = None;
    for (i, &x) in xs.iter().enumerate() {
        let at = fx.add(x, off);
        let e = fx.load(types::F32, at, 0);
        v = Some(match v {
            None => fx.b.ins().splat(types::F32X4, e),
            Some(v) => fx.b.ins().insertlane(v, e, i as u8),
        });
    }
    v.expect("four lanes")
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
