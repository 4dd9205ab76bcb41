//! Packing: B into panels of `nr` columns (the pack phase), and A per K block into
//! row tiles (inside the compute phase, by a pass or by the first panel's tiles).

use super::{bytes_of, lead_offsets, panels, pick};
use crate::clif::Fx;
use crate::microkernel::{KernelFamily, MicroArgs, MicroOp};
use crate::program::{MatMul, PackB};
use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::{types, InstBuilder, Value};
use nnc_ir::Size;

/// Work items of the pack phase: B's panels when every panel of a static N is
/// packed (threads pack disjoint panels), else one item that packs everything.
pub(crate) fn pack_items(mm: &MatMul) -> Size {
    match mm.n.as_fixed() {
        Some(n) if mm.plan.pack_b != PackB::Edge => Size::fixed(n.div_ceil(mm.plan.tile.nr() as u64).max(1)),
        _ => Size::ONE,
    }
}

/// Packs B for one leading index into `nr`-column panels (every panel, or only the
/// partial one, see the module comment): the panels `[begin, end)` of the call when
/// `pack_items` counts panels, else all of them.
pub(crate) fn emit_pack(fx: &mut Fx, mm: &MatMul, family: &dyn KernelFamily) {
    let nr = mm.plan.tile.nr() as i64;
    let (_, b_off, _) = lead_offsets(fx, mm);
    let b_base = fx.slot(mm.b);
    let b_base = fx.add(b_base, b_off);
    let packed = fx.slot(mm.plan.packed);
    let k = fx.sz(mm.k);
    let n = fx.sz(mm.n);
    let bk = fx.sz(bytes_of(mm.b_k));
    let bc = fx.sz(bytes_of(mm.b_col));
    let (full, rem) = panels(fx, mm, n);
    let panel_bytes = fx.mul_imm(k, nr * 4);
    let (lo, hi) = if pack_items(mm).is_fixed(1) {
        let all = fx.b.ins().iadd_imm_s(full, 1);
        (fx.iconst(0), all)
    } else {
        (fx.begin, fx.end)
    };

    let pack_every = |fx: &mut Fx| {
        let contiguous_cols = mm.b_col.is_fixed(1) && nr % 4 == 0;
        let hi_full = fx.min(hi, full);
        fx.for_range(lo, hi_full, 1, |fx, p| {
            let col0 = fx.mul_imm(p, nr);
            let src_p = fx.mul(col0, bc);
            let src_p = fx.add(b_base, src_p);
            let dst_p = fx.mul(p, panel_bytes);
            let dst_p = fx.add(packed, dst_p);
            // A transposed B's stored rows are contiguous along K: the family's
            // transposing pack, where it has one.
            let op = MicroOp::PackTransposed { nr: nr as usize };
            if let Some(kernels) = family.kernel_for(&op).filter(|_| mm.b_k.is_fixed(1)) {
                return kernels.emit(fx, &op, &MicroArgs::PackTransposed([src_p, bc, dst_p, k]));
            }
            let zero = fx.iconst(0);
            fx.for_range(zero, k, 1, |fx, kk| {
                let src = fx.mul(kk, bk);
                let src = fx.add(src_p, src);
                let dst = fx.mul_imm(kk, nr * 4);
                let dst = fx.add(dst_p, dst);
                if contiguous_cols {
                    // A row-major B's panel row is `nr` adjacent floats: vector copies.
                    for c in (0..nr as i32).step_by(4) {
                        let x = fx.load(types::F32X4, src, c * 4);
                        fx.store(x, dst, c * 4);
                    }
                    return;
                }
                let mut addr = src;
                for c in 0..nr as i32 {
                    let x = fx.load(types::F32, addr, 0);
                    fx.store(x, dst, c * 4);
                    if c + 1 < nr as i32 {
                        addr = fx.add(addr, bc);
                    }
                }
            });
        });
    };
    if mm.plan.pack_b == PackB::All {
        pack_every(fx);
    }

    // The partial panel (index `full`): columns past N are zero.
    let has_rem = fx.b.ins().icmp_imm_s(IntCC::NotEqual, rem, 0);
    let from = fx.b.ins().icmp(IntCC::SignedLessThanOrEqual, lo, full);
    let to = fx.lt(full, hi);
    let mine = fx.b.ins().band(from, to);
    let has_rem = fx.b.ins().band(has_rem, mine);
    fx.if_then(has_rem, |fx| {
        let col0 = fx.mul_imm(full, nr);
        let src_p = fx.mul(col0, bc);
        let src_p = fx.add(b_base, src_p);
        let last_panel = |fx: &mut Fx| {
            let off = fx.mul(full, panel_bytes);
            fx.add(packed, off)
        };
        let dst_p = pick(mm, fx, last_panel, |_| packed);
        let last = fx.b.ins().iadd_imm_s(rem, -1);
        let fzero = fx.b.ins().f32const(0.0);
        let zero = fx.iconst(0);
        fx.for_range(zero, k, 1, |fx, kk| {
            let src = fx.mul(kk, bk);
            let src = fx.add(src_p, src);
            let dst = fx.mul_imm(kk, nr * 4);
            let dst = fx.add(dst_p, dst);
            for c in 0..nr {
                // Clamp the column so the load stays inside B, then zero it.
                let cc = fx.iconst(c);
                let clamped = fx.min(cc, last);
                let off = fx.mul(clamped, bc);
                let addr = fx.add(src, off);
                let x = fx.load(types::F32, addr, 0);
                let valid = fx.lt(cc, rem);
                let x = fx.b.ins().select(valid, x, fzero);
                fx.store(x, dst, (c * 4) as i32);
            }
        });
    });
}

/// Packs rows `[fx.begin, fx.end)` of A for the K block at `a_k0` (`kb` deep) into
/// `[row tile][k][mr]`: the tile starting at row `i` at `i·kc` floats, rows past the
/// end repeating the last row. Each call packs only its own rows, so row ranges on
/// different threads write disjoint parts.
pub(super) fn pack_a(fx: &mut Fx, mm: &MatMul, slot: usize, a_k0: Value, a_row: Value, a_step: Value, kb: Value) {
    let (mr, kc) = (mm.plan.tile.mr as i64, mm.plan.kc as i64);
    let packed = fx.slot(slot);
    let (begin, end) = (fx.begin, fx.end);
    let last = fx.b.ins().iadd_imm_s(end, -1);
    // A transposed A has a tile's rows adjacent at each k: a whole tile copies them as
    // two overlapping 4-float vectors instead of `mr` scalars.
    let adjacent_rows = mm.a_row.is_fixed(1) && (5..=8).contains(&mr);
    fx.for_range(begin, end, mr, |fx, i| {
        let tile = fx.mul_imm(i, kc * 4);
        let tile = fx.add(packed, tile);
        let scalar = |fx: &mut Fx| {
            let srcs: Vec<Value> = (0..mr)
                .map(|r| {
                    let row = fx.b.ins().iadd_imm_s(i, r);
                    let row = fx.min(row, last);
                    let off = fx.mul(row, a_row);
                    fx.add(a_k0, off)
                })
                .collect();
            let zero = fx.iconst(0);
            fx.for_range(zero, kb, 1, |fx, k| {
                let src_k = fx.mul(k, a_step);
                let dst = fx.mul_imm(k, mr * 4);
                let dst = fx.add(tile, dst);
                for (r, &src) in srcs.iter().enumerate() {
                    let addr = fx.add(src, src_k);
                    let x = fx.load(types::F32, addr, 0);
                    fx.store(x, dst, (r * 4) as i32);
                }
            });
        };
        if !adjacent_rows {
            return scalar(fx);
        }
        let past = fx.b.ins().iadd_imm_s(i, mr);
        let whole = fx.b.ins().icmp(IntCC::SignedLessThanOrEqual, past, end);
        let vector = |fx: &mut Fx| {
            let src = fx.mul(i, a_row);
            let src = fx.add(a_k0, src);
            let hi = ((mr - 4) * 4) as i32;
            let zero = fx.iconst(0);
            fx.for_range(zero, kb, 1, |fx, k| {
                let src_k = fx.mul(k, a_step);
                let src_k = fx.add(src, src_k);
                let dst = fx.mul_imm(k, mr * 4);
                let dst = fx.add(tile, dst);
                let (x0, x1) = (fx.load(types::F32X4, src_k, 0), fx.load(types::F32X4, src_k, hi));
                fx.store(x0, dst, 0);
                fx.store(x1, dst, hi);
            });
        };
        fx.if_else(whole, vector, scalar);
    });
}
