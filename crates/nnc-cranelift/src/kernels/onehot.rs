//! `one_hot`: integer class indices `[rows]` to f32 rows `[rows, depth]`.
//!
//! Each row is zeroed and gets a 1 at its index. An index outside `0..depth` is an
//! error, as in the interpreter (bad labels must not silently train on a zero row):
//! the kernel records it in the status word and leaves the row zero. The range
//! `[begin, end)` is over rows.

use crate::clif::Fx;
use crate::kernels::elementwise::clif_type;
use crate::program::OneHot;
use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::{types, InstBuilder};
use nnc_ir::DType;
use nnc_ir::Size;

pub(crate) fn items(h: &OneHot) -> Size {
    h.rows
}

pub(crate) fn emit(fx: &mut Fx, h: &OneHot, status: (usize, u32)) {
    let idx = fx.slot(h.idx.slot);
    let out = fx.slot(h.out.slot);
    let depth = h.depth as i64;
    let es = h.idx.dtype.size_bytes() as i64;
    let (begin, end) = (fx.begin, fx.end);
    let zero = fx.b.ins().f32const(0.0);
    let zeros = fx.b.ins().splat(types::F32X4, zero);
    let one = fx.b.ins().f32const(1.0);
    fx.for_range(begin, end, 1, |fx, r| {
        let row = fx.mul_imm(r, depth * 4);
        let row = fx.add(out, row);
        // Short rows are zeroed with straight-line stores, long ones with a loop.
        let vectors = depth / 4;
        if vectors <= 16 {
            for v in 0..vectors {
                fx.store(zeros, row, (v * 16) as i32);
            }
        } else {
            let z = fx.iconst(0);
            let n = fx.iconst(vectors);
            fx.for_range(z, n, 1, |fx, v| {
                let off = fx.mul_imm(v, 16);
                let addr = fx.add(row, off);
                fx.store(zeros, addr, 0);
            });
        }
        for c in vectors * 4..depth {
            let off = fx.iconst(c * 4);
            let addr = fx.add(row, off);
            fx.store(zero, addr, 0);
        }
        let at = fx.mul_imm(r, es);
        let at = fx.add(idx, at);
        let i = fx.load(clif_type(h.idx.dtype), at, 0);
        let i = if h.idx.dtype == DType::I32 { fx.b.ins().sextend(types::I64, i) } else { i };
        // Unsigned compare: a negative index is huge and fails too.
        let ok = fx.b.ins().icmp_imm_s(IntCC::UnsignedLessThan, i, depth);
        fx.if_else(
            ok,
            |fx| {
                let off = fx.mul_imm(i, 4);
                let addr = fx.add(row, off);
                fx.store(one, addr, 0);
            },
            |fx| fx.set_status(status.0, status.1),
        );
    });
}
