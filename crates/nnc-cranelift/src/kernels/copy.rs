//! Blocks of rows copied (`BlockCopy`): a concatenation writes each operand's block
//! into every row of the output, a slice copies one block of every row. One item per
//! row; an item writes only its own row.

use crate::clif::{Fx, PTR};
use crate::program::BlockCopy;
use cranelift_codegen::ir::{types, InstBuilder, Type, Value};
use nnc_ir::Size;

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
