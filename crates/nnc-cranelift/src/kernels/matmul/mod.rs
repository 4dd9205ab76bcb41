//! Matrix products: `C = op(A)·op(B)` for every transpose combination, with leading
//! (batch-of-matrices) axes, carrying out the product's [`MatMulPlan`]
//! (`lower/matmul.rs` chose it).
//!
//! Two functions per product, called once per leading index `part`:
//! - `pack` (`pack.rs`): copies B into panels of `nr` columns (`K × nr` contiguous f32
//!   each, zero past N): every panel or only the partial last one (`MatMulPlan::pack_b`).
//! - `compute`: for rows `[begin, end)` of C, in row blocks (`emit_row_blocks`), blocks
//!   K by `kc`, then walks B panels and row tiles of `mr` rows (`block.rs`), each tile
//!   run by the family's micro-kernels where they run it, else by the portable
//!   Cranelift tiles.
//!
//! and the variants the step may take instead at few rows: the column panels
//! (`emit_compute_columns`), the K parts (`depth.rs`) and the dot products
//! (`dots.rs`).
//!
//! `compute` only reads shared data and writes its own rows of C, so rows can be split
//! across threads.

mod block;
mod depth;
pub(crate) mod dots;
mod pack;

pub(crate) use depth::{emit_compute_depth, emit_depth_sum};
pub(crate) use pack::{emit_pack, pack_items};

use crate::clif::Fx;
use crate::microkernel::{KernelFamily, Step};
use crate::program::{MatMul, PackB};
use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::{InstBuilder, Value};
use nnc_ir::Size;

/// K blocks shallower than this walk C row tile by row tile across the panels (see
/// `block.rs`'s `across_panels`), and take no copy of B.
pub(crate) const SHALLOW_K: i64 = 16;

/// Bytes of A (one K block of a block of rows) a row block keeps in L2 while every
/// panel of B goes past it: a quarter of a 512 KiB L2, leaving room for B's K block.
/// Not for packed A as deep as a whole K block (see `emit_row_blocks`).
const A_BLOCK_BYTES: i64 = 128 << 10;

/// Number of `part` values: the product of the leading dimensions.
pub(crate) fn parts(mm: &MatMul) -> Option<Size> {
    mm.lead.iter().try_fold(Size::ONE, |acc, l| acc.checked_mul(l.dim))
}

/// Byte offsets of A, B and C for leading index `fx.part`.
fn lead_offsets(fx: &mut Fx, mm: &MatMul) -> (Value, Value, Value) {
    let zero = fx.iconst(0);
    let (mut a, mut b, mut c) = (zero, zero, zero);
    let mut rest = fx.part;
    for l in mm.lead.iter().rev() {
        let d = fx.sz(l.dim);
        let idx = fx.b.ins().urem(rest, d);
        rest = fx.b.ins().udiv(rest, d);
        for (off, stride) in [(&mut a, l.a), (&mut b, l.b), (&mut c, l.c)] {
            let delta = fx.mul_sz(idx, bytes_of(stride));
            *off = fx.add(*off, delta);
        }
    }
    (a, b, c)
}

/// An element stride in bytes.
fn bytes_of(s: Size) -> Size {
    Size { fixed: s.fixed * 4, per_batch: s.per_batch * 4 }
}

/// A byte stride as a static immediate when it is static.
fn step_of(fx: &mut Fx, s: Size) -> Step {
    match s.as_fixed() {
        Some(k) => Step::Static(k as i64 * 4),
        None => Step::Dynamic(fx.sz(bytes_of(s))),
    }
}

/// Full panels and the width of the partial one: `(N / nr, N % nr)`.
fn panels(fx: &mut Fx, mm: &MatMul, n: Value) -> (Value, Value) {
    let nr = mm.plan.tile.nr() as i64;
    let full = fx.b.ins().udiv_imm_u(n, nr);
    let covered = fx.mul_imm(full, nr);
    (full, fx.b.ins().isub(n, covered))
}

/// `if_packed` when every panel of B is packed, else `in_place` (only the value used
/// is emitted).
fn pick(
    mm: &MatMul,
    fx: &mut Fx,
    if_packed: impl FnOnce(&mut Fx) -> Value,
    in_place: impl FnOnce(&mut Fx) -> Value,
) -> Value {
    match mm.plan.pack_b {
        PackB::All => if_packed(fx),
        PackB::Edge => in_place(fx),
    }
}

/// What a call of the row blocks computes besides its rows: only some column panels,
/// or only a range of K into a partial C. Both read A in place (a packed A is one
/// scratch buffer that threads splitting them would share).
#[derive(Clone, Copy, Default)]
struct Region {
    /// The panels `[lo, hi)` (`emit_compute_columns`).
    columns: Option<(Value, Value)>,
    /// K `[lo, hi)` into the partial C at the given address, with no epilogue
    /// (`emit_compute_depth`).
    depth: Option<(Value, Value, Value)>,
}

impl Region {
    /// Whether it is all of C: rows, all columns, all of K.
    fn is_rows(self) -> bool {
        self.columns.is_none() && self.depth.is_none()
    }
}

/// Computes the column panels `[fx.begin, fx.end)` of C for all its rows (see
/// `MatMulPlan::columns`), in the same row blocks as `emit_compute`. Every element gets
/// the same operations as by rows, so results do not depend on the split.
pub(crate) fn emit_compute_columns(fx: &mut Fx, mm: &MatMul, family: &dyn KernelFamily) {
    let (lo, hi) = (fx.begin, fx.end);
    let zero = fx.iconst(0);
    let m = fx.sz(mm.m);
    (fx.begin, fx.end) = (zero, m);
    emit_row_blocks(fx, mm, family, Region { columns: Some((lo, hi)), depth: None });
    (fx.begin, fx.end) = (lo, hi);
}

/// Computes rows `[fx.begin, fx.end)` of C for one leading index.
pub(crate) fn emit_compute(fx: &mut Fx, mm: &MatMul, family: &dyn KernelFamily) {
    emit_row_blocks(fx, mm, family, Region::default());
}

/// Rows `[fx.begin, fx.end)` of `region` in row blocks of about equal size (whole row
/// tiles but the last) whose K blocks of A stay in L2. Without them each panel of B
/// would stream all the rows' A again (1 MiB of the seed's X per K block at batch
/// 1024) from L3. The blocks change only the order of tiles, not any element's
/// operations.
///
/// Packed A at least a whole K block deep (`K ≥ tile.kc`) is one block: its tiles are
/// contiguous, and reading them again from L3 streams (the hardware prefetcher keeps
/// up), while every further block would read B's K block again, in place, a line per
/// k. Shallower K keeps the blocks (see docs/matmul.md).
fn emit_row_blocks(fx: &mut Fx, mm: &MatMul, family: &dyn KernelFamily, region: Region) {
    let (begin, end) = (fx.begin, fx.end);
    let mr = mm.plan.tile.mr as i64;
    let max_rows = (A_BLOCK_BYTES / (mm.plan.kc as i64 * 4) / mr).max(1) * mr;
    // blocks = ⌈span / max_rows⌉; rows per block: ⌈span / blocks⌉ rounded up to mr.
    let span = fx.b.ins().isub(end, begin);
    let blocks = fx.b.ins().iadd_imm_s(span, max_rows - 1);
    let blocks = fx.b.ins().udiv_imm_u(blocks, max_rows);
    let one = fx.iconst(1);
    let mut blocks = fx.b.ins().umax(blocks, one);
    if mm.plan.packed_a.is_some() && region.is_rows() {
        let k = fx.sz(mm.k);
        let deep = fx.b.ins().icmp_imm_s(IntCC::SignedGreaterThanOrEqual, k, mm.plan.tile.kc as i64);
        blocks = fx.b.ins().select(deep, one, blocks);
    }
    let rows = fx.b.ins().iadd(span, blocks);
    let rows = fx.b.ins().iadd_imm_s(rows, -1);
    let rows = fx.b.ins().udiv(rows, blocks);
    let rows = fx.b.ins().iadd_imm_s(rows, mr - 1);
    let rows = fx.b.ins().udiv_imm_u(rows, mr);
    let rows = fx.mul_imm(rows, mr);
    fx.for_range_by(begin, end, rows, |fx, lo| {
        let hi = fx.b.ins().iadd(lo, rows);
        let hi = fx.min(hi, end);
        (fx.begin, fx.end) = (lo, hi);
        block::emit(fx, mm, family, region);
    });
    (fx.begin, fx.end) = (begin, end);
}
