//! Blocks of rows copied (`BlockCopy`): a concatenation writes each operand's block
//! into every row of the output, a slice copies one block of every row. One item per
//! row; an item writes only its own row. Also the copy loops other kernels share.

use crate::clif::{Fx, PTR};
use crate::program::BlockCopy;
use cranelift_codegen::ir::{types, InstBuilder, Type, Value};
use nnc_ir::Size;

/// Bytes per f32.
const F: i64 = 4;

pub(crate) fn items(b: &BlockCopy) -> Size {
    b.rows
}

/// Elements of one row (for the thread split).
pub(crate) fn row_elements(b: &BlockCopy) -> u64 {
    b.out_row
}

/// `bytes` bytes (a static count) from `src` to `dst`: 16 at a time in a loop, then
/// the rest in 8-, 4- and 1-byte steps.
fn copy_bytes(fx: &mut Fx, src: Value, dst: Value, bytes: i64) {
    let (sp, dp) = (fx.var(PTR, src), fx.var(PTR, dst));
    let step = |fx: &mut Fx, ty: Type, size: i64| {
        let (s, d) = (fx.get(sp), fx.get(dp));
        let x = fx.load(ty, s, 0);
        fx.store(x, d, 0);
        let (s, d) = (fx.b.ins().iadd_imm_s(s, size), fx.b.ins().iadd_imm_s(d, size));
        fx.set(sp, s);
        fx.set(dp, d);
    };
    let z = fx.iconst(0);
    let whole = bytes / 16 * 16;
    let end = fx.iconst(whole);
    fx.for_range(z, end, 16, |fx, _| step(fx, types::I8X16, 16));
    let mut left = bytes - whole;
    for (ty, size) in [(types::I64, 8), (types::I32, 4), (types::I8, 1)] {
        while left >= size {
            step(fx, ty, size);
            left -= size;
        }
    }
}

pub(crate) fn emit(fx: &mut Fx, b: &BlockCopy) {
    let size = b.out.dtype.size_bytes() as i64;
    let out = fx.slot(b.out.slot);
    let srcs: Vec<Value> = b.parts.iter().map(|p| fx.slot(p.src.slot)).collect();
    let (begin, end) = (fx.begin, fx.end);
    fx.for_range(begin, end, 1, |fx, row| {
        let out_row = fx.mul_imm(row, b.out_row as i64 * size);
        let out_row = fx.add(out, out_row);
        for (p, &src) in b.parts.iter().zip(&srcs) {
            let from = fx.mul_imm(row, p.src_row as i64 * size);
            let from = fx.add(src, from);
            let from = fx.b.ins().iadd_imm_s(from, p.src_at as i64 * size);
            let to = fx.b.ins().iadd_imm_s(out_row, p.out_at as i64 * size);
            copy_bytes(fx, from, to, p.len as i64 * size);
        }
    });
}

/// Zeroes `len` floats from `dst`: four at a time, then one at a time.
pub(crate) fn zero_floats(fx: &mut Fx, dst: Value, len: i64) {
    fill_floats(fx, dst, len, 0.0)
}

/// Sets `len` floats from `dst` to `value`: four at a time, then one at a time.
pub(crate) fn fill_floats(fx: &mut Fx, dst: Value, len: i64, value: f32) {
    let lane = fx.b.ins().f32const(value);
    let lanes = fx.b.ins().splat(types::F32X4, lane);
    let dp = fx.var(PTR, dst);
    let z = fx.iconst(0);
    let end = fx.iconst(len * F);
    let step = |fx: &mut Fx, x: Value, bytes: i64| {
        let d = fx.get(dp);
        fx.store(x, d, 0);
        let d = fx.b.ins().iadd_imm_s(d, bytes);
        fx.set(dp, d);
    };
    let rest = fx.for_whole_steps(z, end, 4 * F, |fx, _| step(fx, lanes, 4 * F));
    fx.for_range(rest, end, F, |fx, _| step(fx, lane, F));
}

/// `len` floats from `src` to `dst`: four at a time, then one at a time. The
/// pointers are loop-carried: addresses derived in the loop from values computed
/// outside it would be recomputed there (Cranelift rematerializes them).
pub(crate) fn copy_floats(fx: &mut Fx, src: Value, dst: Value, len: Value) {
    let (sp, dp) = (fx.var(PTR, src), fx.var(PTR, dst));
    let z = fx.iconst(0);
    let bytes = fx.mul_imm(len, F);
    let step = |fx: &mut Fx, ty: Type, bytes: i64| {
        let (s, d) = (fx.get(sp), fx.get(dp));
        let x = fx.load(ty, s, 0);
        fx.store(x, d, 0);
        let (s, d) = (fx.b.ins().iadd_imm_s(s, bytes), fx.b.ins().iadd_imm_s(d, bytes));
        fx.set(sp, s);
        fx.set(dp, d);
    };
    let rest = fx.for_whole_steps(z, bytes, 4 * F, |fx, _| step(fx, types::F32X4, 4 * F));
    fx.for_range(rest, bytes, F, |fx, _| step(fx, types::F32, F));
}

/// `len` floats from `src`, one every `src_step` bytes, to `dst`, one every
/// `dst_step` bytes: four per iteration, then one (loop-carried pointers, as in
/// `copy_floats`).
pub(crate) fn copy_strided(fx: &mut Fx, (src, src_step): (Value, i64), (dst, dst_step): (Value, i64), len: Value) {
    let (sp, dp) = (fx.var(PTR, src), fx.var(PTR, dst));
    let step = |fx: &mut Fx, count: i64| {
        let (s, d) = (fx.get(sp), fx.get(dp));
        for i in 0..count {
            let x = fx.load(types::F32, s, (i * src_step) as i32);
            fx.store(x, d, (i * dst_step) as i32);
        }
        let (s, d) = (fx.b.ins().iadd_imm_s(s, count * src_step), fx.b.ins().iadd_imm_s(d, count * dst_step));
        fx.set(sp, s);
        fx.set(dp, d);
    };
    let z = fx.iconst(0);
    let rest = fx.for_whole_steps(z, len, 4, |fx, _| step(fx, 4));
    fx.for_range(rest, len, 1, |fx, _| step(fx, 1));
}
