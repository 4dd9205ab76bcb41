//! Matrix products: `C = op(A)·op(B)` for every transpose combination, with leading
//! (batch-of-matrices) axes.
//!
//! Two functions per product, called once per leading index `part`:
//! - `pack`: copies B into panels of `nr` columns (`K × nr` contiguous f32 each, zero
//!   past N). Which panels is `MatMul::pack_b`'s choice: a transposed B has every
//!   panel packed (this is where `trans_b` is absorbed); a row-major B is read in place
//!   by the micro-kernel, but for its last, partial panel, unless a static M has enough
//!   row tiles to reuse each panel and the provider's tiles cannot copy B.
//! - `compute`: for rows `[begin, end)` of C, blocks K by `kc`, then walks B panels
//!   and row tiles of `mr` rows, asking the [`MicroKernelProvider`] for each tile. A
//!   row-major B read in place is copied to a stack panel by the first row tile of
//!   each panel where the provider's tiles can copy B, and read from there by the
//!   rest. A is read in place (the transpose of A is only a different stride) or
//!   packed per K block (by the first panel's tiles as they read it, where the
//!   provider's tiles can copy A). Tiles at the M edge are the provider's edge tiles
//!   where it has them, else go through a stack buffer whose valid part is copied out
//!   (so do tiles at the N edge when N is the run-time batch); at a static N edge the micro-kernel stores
//!   only the valid columns. One or two edge rows of a row-major B can instead be
//!   one-row tiles across several panels (`row_tile_cols`).
//!
//! `compute` only reads shared data and writes its own rows of C, so rows can be split
//! across threads.

pub(crate) mod dots;

use crate::clif::{Fx, PTR};
use crate::microkernel::{ARows, MicroKernelProvider, Step, TileArgs, TileEpilogue, TileFinish};
use crate::program::{Epilogue, MatMul, PackB};
use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::{types, InstBuilder, Value};
use nnc_ir::Size;
use nnc_ir::{UnaryOp, UpdateRule};

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
    let nr = mm.tile.nr() as i64;
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
    match mm.pack_b {
        PackB::All => if_packed(fx),
        PackB::Edge => in_place(fx),
    }
}

/// Work items of the pack phase: B's panels when every panel of a static N is
/// packed (threads pack disjoint panels), else one item that packs everything.
pub(crate) fn pack_items(mm: &MatMul) -> Size {
    match mm.n.as_fixed() {
        Some(n) if mm.pack_b != PackB::Edge => Size::fixed(n.div_ceil(mm.tile.nr() as u64).max(1)),
        _ => Size::ONE,
    }
}

/// Packs B for one leading index into `nr`-column panels (every panel, or only the
/// partial one, see the module comment): the panels `[begin, end)` of the call when
/// `pack_items` counts panels, else all of them.
pub(crate) fn emit_pack(fx: &mut Fx, mm: &MatMul, provider: &dyn MicroKernelProvider) {
    let nr = mm.tile.nr() as i64;
    let (_, b_off, _) = lead_offsets(fx, mm);
    let b_base = fx.slot(mm.b);
    let b_base = fx.add(b_base, b_off);
    let packed = fx.slot(mm.packed);
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
            // A transposed B's stored rows are contiguous along K: the provider's
            // transposing pack, where it has one.
            if mm.b_k.is_fixed(1) && provider.emit_pack_transposed(fx, nr as usize, [src_p, bc, dst_p, k]) {
                return;
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
    if mm.pack_b == PackB::All {
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

/// K blocks shallower than this walk C row tile by row tile across the panels (see
/// `emit_row_block`). Measured on the seed step (AVX2, Zen 3): 6% faster at batch 1,
/// 2–5% at batch 2 and 7, 1–3% slower at batch 16 to 64.
const SHALLOW_K: i64 = 16;

/// Bytes of A (one K block of a block of rows) a row block keeps in L2 while every
/// panel of B goes past it: a quarter of a 512 KiB L2, leaving room for B's K block.
/// Not for packed A as deep as a whole K block (see `emit_compute`).
const A_BLOCK_BYTES: i64 = 128 << 10;

/// A variant of a product's compute phase whose work items are not C's rows, which
/// the step takes at run time when M is at most `max_rows` (see [`by_columns`] and
/// [`by_depth`]).
#[derive(Clone, Copy)]
pub(crate) struct Variant {
    /// Its work items: B's column panels, or ranges of K.
    pub items: Size,
    /// M, and the most rows for which the step takes the variant.
    pub rows: Size,
    pub max_rows: i64,
    /// Taken only if this (K) is also more than M (see [`by_columns`]).
    pub deeper_than: Option<Size>,
    /// Work per item (floating-point operations).
    pub work: Size,
}

/// The variant of `mm` whose work items are B's column panels (`nr` columns of C each;
/// `emit_compute_columns`), if it has one. Split by rows, every thread reads all of B
/// and its rows of A; split by columns, all of A and its columns of B. The step takes
/// the columns when A is the smaller operand (`M ≤ N`) and there are threads to split
/// for: in the seed model's forward pass at batch 100, each of two threads then reads
/// its half of the 784 KiB weight matrix once instead of all of it for each of its
/// chunks of rows.
///
/// A product whose epilogue updates a parameter in place (a weight gradient) takes
/// the columns only when K is also above M, that is when B is larger than C: else
/// each thread updating whole rows of the parameter keeps them in its L2 for the next
/// step's forward product, which reads them by the same rows (dot products, or K
/// parts of a row-major weight). Measured on the PyTorch-layout seed step (its first
/// weight gradient is `[256, K]·[K, 784]`, AVX2, two threads): by rows, batch 1
/// −43%, 32 −16%, 256 −3.5%; batch 1024 +2.5%.
///
/// It has one with no leading
/// dimensions, a static N of two panels or more, an M that can be at most N (a static
/// M above it would make the variant dead code), A rows a static stride apart (the
/// variant reads A in place: packed A is one scratch buffer the threads would share),
/// and no epilogue or one the tiles apply (the sweep of `epilogue.rs` runs by rows).
pub(crate) fn by_columns(mm: &MatMul, provider: &dyn MicroKernelProvider) -> Option<Variant> {
    let nr = mm.tile.nr() as u64;
    let n = mm.n.as_fixed()?;
    let panels = n.div_ceil(nr);
    let eligible = mm.lead.is_empty()
        && panels >= 2
        && mm.m.as_fixed().is_none_or(|m| m <= n)
        && mm.a_row.as_fixed().is_some()
        && (mm.epilogue.is_none() || fusable_epilogue(mm, provider, true).is_some());
    let work = mm.m.checked_mul(mm.k)?.scale(2 * nr)?;
    let update = matches!(mm.epilogue.as_deref(), Some(Epilogue::Update(_)));
    let deeper_than = update.then_some(mm.k);
    eligible.then_some(Variant { items: Size::fixed(panels), rows: mm.m, max_rows: n as i64, deeper_than, work })
}

/// K parts of a product split along K: at most this many, each at least
/// `MIN_DEPTH_PART` deep.
const DEPTH_PARTS: u64 = 8;
const MIN_DEPTH_PART: u64 = 64;
/// The most rows a product split along K may have. On one thread the split costs a
/// little (the partial sums, a tile pass per part); on two it saves more, less as M
/// grows. Measured on the seed step (AVX2, Zen 3), two threads / one: batch 1 −22% /
/// −1%, 4 −15% / +1%, 6 −6% / +2%, 8 −2% / +2%.
const DEPTH_MAX_ROWS: u64 = 6;
/// B at least this large: a product of few rows then spends its time streaming B.
const DEPTH_MIN_B_BYTES: u64 = 128 << 10;

/// A product of few rows and a large B (the forward pass of a dense layer at batch 1
/// to 6) split along K: `parts` fixed ranges of K, each a work item that writes its
/// own partial C (`emit_compute_depth`), then a pass that sums the partials in part
/// order and applies the epilogue (`emit_depth_sum`).
///
/// Split by columns, each thread reads a column slice of B, half of every row of the
/// seed's W1: those slices map to half the sets of the L2 and do not stay in it, and the
/// SGD update, split by rows, reads W1 again from L3. Split along K, each thread reads
/// whole rows of B, the same ones its share of the update writes (the pool gives a
/// thread the same part of every job), so the seed's 784 KiB W1 stays in the two L2s
/// from the forward product through the update to the next step's forward product.
///
/// The parts do not depend on the thread count, so neither do the results; they do
/// differ in rounding from the unsplit product, and the step picks the split from M
/// alone (`M ≤ max_rows`). This is the parts function's [`Variant`], if `mm` has one:
/// lowering decided it (`depth_parts`), as the partials need a scratch buffer.
pub(crate) fn by_depth(mm: &MatMul) -> Option<Variant> {
    let d = mm.depth?;
    let (k, n) = (mm.k.as_fixed()?, mm.n.as_fixed()?);
    let work = Size::fixed(2 * d.max_rows * k.div_ceil(d.parts) * n);
    Some(Variant { items: Size::fixed(d.parts), rows: mm.m, max_rows: d.max_rows as i64, deeper_than: None, work })
}

/// `(parts, max rows)` when a product of these sizes is split along K (see
/// [`by_depth`]): a static K of two parts or more, a static N with B of at least
/// `DEPTH_MIN_B_BYTES`, an M that can be at most `DEPTH_MAX_ROWS`, A rows a static stride
/// apart (read in place: packed A is one scratch buffer the threads would share), and
/// no leading dimensions.
pub(crate) fn depth_parts(m: Size, k: Size, n: Size, a_row: Size, no_lead: bool) -> Option<(u64, u64)> {
    let (k, n) = (k.as_fixed()?, n.as_fixed()?);
    let parts = (k / MIN_DEPTH_PART).min(DEPTH_PARTS);
    let eligible = no_lead
        && parts >= 2
        && k * n * 4 >= DEPTH_MIN_B_BYTES
        && a_row.as_fixed().is_some()
        && m.as_fixed().is_none_or(|m| m <= DEPTH_MAX_ROWS);
    eligible.then_some((parts, DEPTH_MAX_ROWS))
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

/// Computes the partial products of the K parts `[fx.begin, fx.end)` for all rows of
/// C, each into its partial C (see [`by_depth`]); no epilogue.
pub(crate) fn emit_compute_depth(fx: &mut Fx, mm: &MatMul, provider: &dyn MicroKernelProvider) {
    let split = mm.depth.expect("called for a product split along K");
    let n = mm.n.as_fixed().expect("split along K only with a static N") as i64;
    let (lo, hi) = (fx.begin, fx.end);
    let zero = fx.iconst(0);
    let m = fx.sz(mm.m);
    let partials = fx.slot(split.slot);
    fx.for_range(lo, hi, 1, |fx, d| {
        let (k_lo, k_hi) = depth_range(fx, mm, split.parts, d);
        let off = fx.mul_imm(d, split.max_rows as i64 * n * 4);
        let c = fx.add(partials, off);
        (fx.begin, fx.end) = (zero, m);
        emit_row_blocks(fx, mm, provider, Region { columns: None, depth: Some((k_lo, k_hi, c)) });
    });
    (fx.begin, fx.end) = (lo, hi);
}

/// Rows `[fx.begin, fx.end)` of C: the sum of the K parts' partial rows, in part
/// order, then the epilogue.
pub(crate) fn emit_depth_sum(fx: &mut Fx, mm: &MatMul) {
    let split = mm.depth.expect("called for a product split along K");
    let n = mm.n.as_fixed().expect("split along K only with a static N") as i64;
    let c_base = fx.slot(mm.c);
    let partials = fx.slot(split.slot);
    // Each part's partial C.
    let parts: Vec<Value> =
        (0..split.parts as i64).map(|d| fx.b.ins().iadd_imm_s(partials, d * split.max_rows as i64 * n * 4)).collect();
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
    if let Some(ep) = mm.epilogue.as_deref() {
        crate::kernels::epilogue::emit(fx, mm, ep, c_base, n_v);
    }
}

/// What a call of the row blocks computes besides its rows: only some column panels,
/// or only a range of K into a partial C.
#[derive(Clone, Copy, Default)]
struct Region {
    /// The panels `[lo, hi)`, A read in place (`emit_compute_columns`).
    columns: Option<(Value, Value)>,
    /// K `[lo, hi)` into the partial C at the given address, with no epilogue
    /// (`emit_compute_depth`); A read in place.
    depth: Option<(Value, Value, Value)>,
}

/// Computes the column panels `[fx.begin, fx.end)` of C for all its rows (see
/// [`by_columns`]), in the same row blocks as `emit_compute`. Every element gets the
/// same operations as by rows, so results do not depend on the split.
pub(crate) fn emit_compute_columns(fx: &mut Fx, mm: &MatMul, provider: &dyn MicroKernelProvider) {
    let (lo, hi) = (fx.begin, fx.end);
    let zero = fx.iconst(0);
    let m = fx.sz(mm.m);
    (fx.begin, fx.end) = (zero, m);
    emit_row_blocks(fx, mm, provider, Region { columns: Some((lo, hi)), depth: None });
    (fx.begin, fx.end) = (lo, hi);
}

/// Computes rows `[fx.begin, fx.end)` of C for one leading index, in row blocks of
/// about equal size (whole row tiles but the last) whose K blocks of A stay in L2.
/// Without them each panel of B would stream all the rows' A again (1 MiB of the
/// seed's X per K block at batch 1024) from L3. The blocks change only the order of
/// tiles, not any element's operations.
///
/// Packed A at least a whole K block deep (`K ≥ tile.kc`) is one block: its tiles are
/// contiguous, and reading them again from L3 streams (the hardware prefetcher keeps
/// up), while every further block reads B's K block again, in place, a line per k.
/// Measured on the weight gradients (AVX2, Zen 3, one thread, fastest of 300):
/// `[784, 1024]ᵀ·[1024, 256]` 4.39 → 4.32 ms and 4.40 → 4.34, `[1024, 256]ᵀ·[1024, 784]`
/// 4.26 → 4.17 (B, X, read once instead of three times), `[256, 784]ᵀ·[256, 256]`
/// 1.087 → 1.072. Shallower K keeps the blocks: the seed step at batch 100 was 1.5%
/// slower in one block (10th percentile 0.918 against 0.904 ms), at 256 1% faster
/// (2.27 against 2.28–2.30), at 1024 0.8% faster (9.45 against 9.53).
pub(crate) fn emit_compute(fx: &mut Fx, mm: &MatMul, provider: &dyn MicroKernelProvider) {
    emit_row_blocks(fx, mm, provider, Region::default());
}

/// `emit_compute`'s row blocks, of `region`.
fn emit_row_blocks(fx: &mut Fx, mm: &MatMul, provider: &dyn MicroKernelProvider, region: Region) {
    let (begin, end) = (fx.begin, fx.end);
    let mr = mm.tile.mr as i64;
    let max_rows = (A_BLOCK_BYTES / (mm.kc as i64 * 4) / mr).max(1) * mr;
    // blocks = ⌈span / max_rows⌉; rows per block: ⌈span / blocks⌉ rounded up to mr.
    let span = fx.b.ins().isub(end, begin);
    let blocks = fx.b.ins().iadd_imm_s(span, max_rows - 1);
    let blocks = fx.b.ins().udiv_imm_u(blocks, max_rows);
    let one = fx.iconst(1);
    let mut blocks = fx.b.ins().umax(blocks, one);
    // Packed A (where the region reads A through its packed copy) at least a whole K
    // block deep: one block (see `emit_compute`).
    if mm.packed_a.is_some() && region.columns.is_none() && region.depth.is_none() {
        let k = fx.sz(mm.k);
        let deep = fx.b.ins().icmp_imm_s(IntCC::SignedGreaterThanOrEqual, k, mm.tile.kc as i64);
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
        emit_row_block(fx, mm, provider, region);
    });
    (fx.begin, fx.end) = (begin, end);
}

/// Rows `[fx.begin, fx.end)` of C: K blocks, then panels, then row tiles, of `region`.
fn emit_row_block(fx: &mut Fx, mm: &MatMul, provider: &dyn MicroKernelProvider, region: Region) {
    let Region { columns, depth } = region;
    let tile = mm.tile;
    let (mr, nr) = (tile.mr as i64, tile.nr() as i64);
    let (a_off, b_off, c_off) = lead_offsets(fx, mm);
    let a_base = fx.slot(mm.a);
    let a_base = fx.add(a_base, a_off);
    let b_base = fx.slot(mm.b);
    let b_base = fx.add(b_base, b_off);
    let c_base = match depth {
        Some((_, _, partial)) => partial,
        None => {
            let c_base = fx.slot(mm.c);
            fx.add(c_base, c_off)
        }
    };
    let packed = fx.slot(mm.packed);
    let k = fx.sz(mm.k);
    let n = fx.sz(mm.n);
    let a_row = fx.sz(bytes_of(mm.a_row));
    let a_step_v = fx.sz(bytes_of(mm.a_k));
    let packed_a_slot = mm.packed_a.filter(|_| columns.is_none() && depth.is_none());
    let a_step = if packed_a_slot.is_some() { Step::Static(mr * 4) } else { step_of(fx, mm.a_k) };
    let a_row_static = mm.a_row.as_fixed().map(|s| s as i64 * 4);
    let b_row = fx.sz(bytes_of(mm.b_k));
    let ldc = fx.mul_imm(n, 4);
    let (full, rem) = panels(fx, mm, n);
    // The full panels computed, `[p_lo, p_hi)`, and whether the partial one is
    // (`None`: it is, when there is one).
    let (p_lo, p_hi, with_partial) = match columns {
        None => (fx.iconst(0), full, None),
        Some((lo, hi)) => {
            let from = fx.b.ins().icmp(IntCC::SignedLessThanOrEqual, lo, full);
            let to = fx.lt(full, hi);
            (lo, fx.min(hi, full), Some(fx.b.ins().band(from, to)))
        }
    };
    let panel_bytes = fx.mul_imm(k, nr * 4);
    let (begin, end) = (fx.begin, fx.end);
    // Panels read in place step by B's row stride; packed ones by `nr` floats.
    let packed_step = Step::Static(nr * 4);
    let full_step = match mm.pack_b {
        PackB::Edge => step_of(fx, mm.b_k),
        PackB::All => packed_step,
    };
    let static_rem = mm.n.as_fixed().map(|n| (n % nr as u64) as usize);

    let kc = mm.kc as i64;

    // One or two rows left at the M edge of a row-major B's full panels are computed
    // by one-row tiles across several panels (static column groups), not by a tile per
    // panel. `few_edge_rows`: where the edge starts, and whether the row tiles take it.
    let row_groups: Vec<(usize, usize)> = match mm.n.as_fixed() {
        Some(nf) if mm.b_col.is_fixed(1) && (a_row_static.is_some() || packed_a_slot.is_some()) => {
            let (width, step) = ((nf / nr as u64) as usize * nr as usize, provider.row_tile_cols());
            if step >= nr as usize && width >= 2 * nr as usize {
                (0..width).step_by(step).map(|c0| (c0, step.min(width - c0))).collect()
            } else {
                Vec::new()
            }
        }
        _ => Vec::new(),
    };
    let few_edge_rows = (!row_groups.is_empty()).then(|| {
        let span = fx.b.ins().isub(end, begin);
        let edge_rows = fx.b.ins().urem_imm_u(span, mr);
        let edge_start = fx.b.ins().isub(end, edge_rows);
        let some = fx.b.ins().icmp_imm_s(IntCC::NotEqual, edge_rows, 0);
        let at_most_two = fx.b.ins().icmp_imm_s(IntCC::SignedLessThanOrEqual, edge_rows, 2);
        (edge_start, fx.b.ins().band(some, at_most_two))
    });

    // Packed A whose tiles can copy it: the whole tiles of the first panel read it in
    // place and write the packed copy the next panels read, so it is not read in a
    // pass of its own (at batch 1024, the seed's X is 3.2 MB). Only the edge tile is
    // packed first. Needs A rows a static stride apart, a full panel, and a deep K
    // block (see `across_panels`).
    let copying_a = packed_a_slot.is_some()
        && provider.copies_a()
        && a_row_static.is_some()
        && mm.n.as_fixed().is_some_and(|n| n >= nr as u64);
    let stack = fx.stack_buffer((mr * nr * 4) as u32);
    // A row-major B read in place whose tiles can copy it: a K block of one panel,
    // contiguous, on a cache line boundary. At a power-of-two row length the panel's
    // rows in place map to a few L1 sets (see `lower`'s `pack_b`), so each row tile
    // would read them from L2. Only deep K blocks (see `across_panels`).
    let b_copy = (provider.copies_b()
        && mm.b_col.is_fixed(1)
        && mm.pack_b == PackB::Edge
        && mm.k.as_fixed().is_none_or(|k| k as i64 >= SHALLOW_K))
    .then(|| {
        let bytes = mm.kc as i64 * nr * 4;
        let raw = fx.stack_buffer((bytes + 64) as u32);
        let raw = fx.b.ins().iadd_imm_s(raw, 63);
        fx.b.ins().band_imm_s(raw, -64)
    });
    // The epilogue the tiles apply, with its buffers as distances from C (the tile's
    // address in them is its address in C plus that; the bias's, its column's).
    let fused = fusable_epilogue(mm, provider, a_row_static.is_some()).filter(|_| depth.is_none()).map(|ep| {
        let delta = |fx: &mut Fx, slot: usize| {
            let base = fx.slot(slot);
            fx.b.ins().isub(base, c_base)
        };
        match ep {
            Epilogue::Update(u) => {
                let (p, p_out) = (delta(fx, u.p), delta(fx, u.p_out.expect("checked by fusable_epilogue")));
                Fused::Sgd { p, p_out, lr: fx.slot(u.scalars[0]) }
            }
            Epilogue::Dense { bias, act, .. } => {
                Fused::Dense { bias: bias.map(|b| delta(fx, b)), relu: *act == Some(UnaryOp::Relu) }
            }
            Epilogue::ReluMask { h } => Fused::Mask { h: delta(fx, *h) },
        }
    });

    // K blocks as a do-while loop: with K = 0 one empty block still writes C = 0.
    // The K range computed: all of K, or the part's.
    let (k_lo, k_hi) = match depth {
        Some((lo, hi, _)) => (lo, hi),
        None => (fx.iconst(0), k),
    };
    let kv = fx.var(PTR, k_lo);
    let body = fx.b.create_block();
    let done = fx.b.create_block();
    fx.b.ins().jump(body, &[]);
    fx.b.switch_to_block(body);
    let k_start = fx.get(kv);
    let left = fx.b.ins().isub(k_hi, k_start);
    let kc_v = fx.iconst(kc);
    let kb = fx.min(kc_v, left);
    let accumulate = match depth {
        Some(_) => fx.b.ins().icmp(IntCC::NotEqual, k_start, k_lo),
        None => fx.b.ins().icmp_imm_s(IntCC::NotEqual, k_start, 0),
    };
    // With a fused epilogue: whether this is the last K block, and the epilogue's
    // arguments for the tile at `c` in the panel at `c_panel`.
    let last = fused.map(|_| {
        let next = fx.b.ins().iadd_imm_s(k_start, kc);
        let last = fx.b.ins().icmp(IntCC::SignedGreaterThanOrEqual, next, k);
        fx.b.ins().uextend(types::I64, last)
    });
    let finish_at = |fx: &mut Fx, c: Value, c_panel: Value| {
        let (fused, last) = (fused?, last?);
        let epilogue = match fused {
            Fused::Sgd { p, p_out, lr } => TileEpilogue::Sgd { p: fx.add(c, p), p_out: fx.add(c, p_out), lr },
            Fused::Dense { bias, relu } => TileEpilogue::Dense { bias: bias.map(|b| fx.add(c_panel, b)), relu },
            Fused::Mask { h } => TileEpilogue::ReluMask { h: fx.add(c, h) },
        };
        Some(TileFinish { epilogue, last })
    };
    let a_k0 = fx.mul(k_start, a_step_v);
    let a_k0 = fx.add(a_base, a_k0);
    let packed_k0 = fx.mul_imm(k_start, nr * 4);
    let packed_k0 = fx.add(packed, packed_k0);
    // Packs A's rows from `from` to the row block's end for this K block.
    let pack_rows = |fx: &mut Fx, from: Value| {
        if let Some(slot) = packed_a_slot {
            fx.begin = from;
            pack_a(fx, mm, slot, a_k0, a_row, a_step_v, kb);
            fx.begin = begin;
        }
    };
    let in_place_a_step = step_of(fx, mm.a_k);
    let packed_a = packed_a_slot.map(|slot| fx.slot(slot));
    let in_place_k0 = |fx: &mut Fx| {
        let off = fx.mul(k_start, b_row);
        fx.add(b_base, off)
    };
    let b_k0 = pick(mm, fx, |_| packed_k0, in_place_k0);
    let panel_stride = pick(mm, fx, |_| panel_bytes, |fx| fx.iconst(nr * 4));

    // A rows of a tile starting at row `i` (clamped to the last row at the M edge).
    let rows = |fx: &mut Fx, i: Value, clamp_to: Option<Value>| -> ARows {
        if let Some(base) = packed_a {
            // Packed tiles are contiguous, with the edge rows already clamped.
            let off = fx.mul_imm(i, kc * 4);
            return ARows::Uniform { base: fx.add(base, off), stride: 4 };
        }
        if let (Some(stride), None) = (a_row_static, clamp_to) {
            let off = fx.mul(i, a_row);
            return ARows::Uniform { base: fx.add(a_k0, off), stride };
        }
        ARows::Each(
            (0..mr)
                .map(|r| {
                    let mut row = fx.b.ins().iadd_imm_s(i, r);
                    if let Some(last) = clamp_to {
                        row = fx.min(row, last);
                    }
                    let off = fx.mul(row, a_row);
                    fx.add(a_k0, off)
                })
                .collect(),
        )
    };

    // A tile computed into the stack buffer, then `min(mr, end - i) × cols` of it
    // written to C.
    let stack_tile = |fx: &mut Fx, i: Value, b_panel: Value, b_step: Step, c_panel: Value, cols: Value| {
        let rows_left = fx.b.ins().isub(end, i);
        let mr_v = fx.iconst(mr);
        let n_rows = fx.min(rows_left, mr_v);
        let last_row = fx.b.ins().iadd_imm_s(end, -1);
        let a = rows(fx, i, Some(last_row));
        let buf = stack;
        let buf_ld = fx.iconst(nr * 4);
        let no = fx.b.ins().iconst(types::I8, 0);
        let whole = nr as usize;
        let args = TileArgs {
            a,
            a_step,
            b_panel,
            b_step,
            kb,
            c: buf,
            ldc: buf_ld,
            accumulate: no,
            cols: whole,
            finish: None,
            copy_a: None,
            copy_b: None,
        };
        provider.emit_tile(fx, tile, &args);
        let c_off = fx.mul(i, ldc);
        let c_tile = fx.add(c_panel, c_off);
        let zero = fx.iconst(0);
        fx.for_range(zero, n_rows, 1, |fx, r| {
            let src_row = fx.mul_imm(r, nr * 4);
            let src_row = fx.add(buf, src_row);
            let dst_row = fx.mul(r, ldc);
            let dst_row = fx.add(c_tile, dst_row);
            let zero = fx.iconst(0);
            fx.for_range(zero, cols, 1, |fx, c| {
                let off = fx.mul_imm(c, 4);
                let src = fx.add(src_row, off);
                let dst = fx.add(dst_row, off);
                let x = fx.load(types::F32, src, 0);
                let old = fx.load(types::F32, dst, 0);
                let sum = fx.b.ins().fadd(old, x);
                let y = fx.b.ins().select(accumulate, sum, x);
                fx.store(y, dst, 0);
            });
        });
    };

    // The arguments of the tile at rows `[i, i + mr)` of a panel, written straight to C.
    let tile_args = |fx: &mut Fx, i: Value, b_panel: Value, b_step: Step, c_panel: Value, cols: usize| {
        let a = rows(fx, i, None);
        let c_off = fx.mul(i, ldc);
        let c = fx.add(c_panel, c_off);
        let finish = finish_at(fx, c, c_panel);
        TileArgs { a, a_step, b_panel, b_step, kb, c, ldc, accumulate, cols, finish, copy_a: None, copy_b: None }
    };
    // The arguments of one whole tile, straight into C; with `copy_a`, reading A in place
    // and packing it.
    let whole_args =
        |fx: &mut Fx, i: Value, b_panel: Value, b_step: Step, c_panel: Value, cols: usize, copy_a: bool| {
            let mut args = tile_args(fx, i, b_panel, b_step, c_panel, cols);
            if copy_a {
                let stride = a_row_static.expect("copying A needs static A rows");
                let in_place = fx.mul_imm(i, stride);
                let packed = fx.mul_imm(i, kc * 4);
                let packed = fx.add(packed_a.expect("copying A needs packed A"), packed);
                args.a = ARows::Uniform { base: fx.add(a_k0, in_place), stride };
                args.a_step = in_place_a_step;
                args.copy_a = Some(packed);
            }
            args
        };
    let whole_tile =
        |fx: &mut Fx, i: Value, b_panel: Value, b_step: Step, c_panel: Value, cols: usize, copy_a: bool| {
            let args = whole_args(fx, i, b_panel, b_step, c_panel, cols, copy_a);
            provider.emit_tile(fx, tile, &args);
        };

    // Row tiles of one panel from row `from`: whole tiles (packing A with `copy_a`), then
    // the row edge. `row_tiles`: the few edge rows are left to the row tiles.
    let panel = |fx: &mut Fx,
                 from: Value,
                 b_panel: Value,
                 b_step: Step,
                 c_panel: Value,
                 cols: usize,
                 row_tiles: bool,
                 copy_a: bool| {
        let i = fx.for_whole_steps(from, end, mr, |fx, i| whole_tile(fx, i, b_panel, b_step, c_panel, cols, copy_a));
        let mut edge = fx.lt(i, end);
        if let (true, Some((_, few))) = (row_tiles, few_edge_rows) {
            let many = fx.b.ins().bnot(few);
            edge = fx.b.ins().band(edge, many);
        }
        fx.if_then(edge, |fx| {
            let direct = provider.has_edge_tiles() && {
                let rows_left = fx.b.ins().isub(end, i);
                let args = tile_args(fx, i, b_panel, b_step, c_panel, cols);
                provider.emit_edge_tile(fx, tile, &args, rows_left)
            };
            if !direct {
                let cols_v = fx.iconst(cols as i64);
                stack_tile(fx, i, b_panel, b_step, c_panel, cols_v);
            }
        });
    };

    // The full panels' B and C at panel `p`.
    let full_panel = |fx: &mut Fx, p: Value| {
        let pb = fx.mul(p, panel_stride);
        let pc = fx.mul_imm(p, nr * 4);
        (fx.add(b_k0, pb), fx.add(c_base, pc))
    };
    // A shallow K block: each tile is a few FMAs and a pass over its rows of C (and of
    // the parameter a fused update writes), so C is walked row tile by row tile across
    // the panels, which streams it, rather than down each panel, which strides it a
    // row at a time. A deep one walks down each panel, whose K block stays in L1.
    let across_panels = |fx: &mut Fx| {
        pack_rows(fx, begin);
        let edge = fx.for_whole_steps(begin, end, mr, |fx, i| {
            fx.for_range(p_lo, p_hi, 1, |fx, p| {
                let (b_panel, c_panel) = full_panel(fx, p);
                whole_tile(fx, i, b_panel, full_step, c_panel, nr as usize, false);
            });
        });
        fx.for_range(p_lo, p_hi, 1, |fx, p| {
            let (b_panel, c_panel) = full_panel(fx, p);
            panel(fx, edge, b_panel, full_step, c_panel, nr as usize, true, false);
        });
    };
    // Full panel `p`, its whole tiles packing A with `copy_a`. A row-major B in place
    // is copied by the first row tile and read from the copy by the others (when
    // there are others).
    let full_panel_tiles = |fx: &mut Fx, p: Value, copy_a: bool| {
        let (b_panel, c_panel) = full_panel(fx, p);
        let Some(copy) = b_copy else {
            return panel(fx, begin, b_panel, full_step, c_panel, nr as usize, true, copy_a);
        };
        let second = fx.b.ins().iadd_imm_s(begin, mr);
        let others = fx.lt(second, end);
        let copy_then_read = |fx: &mut Fx| {
            let mut args = whole_args(fx, begin, b_panel, full_step, c_panel, nr as usize, copy_a);
            args.copy_b = Some(copy);
            provider.emit_tile(fx, tile, &args);
            panel(fx, second, copy, packed_step, c_panel, nr as usize, true, copy_a);
        };
        let in_place = |fx: &mut Fx| panel(fx, begin, b_panel, full_step, c_panel, nr as usize, true, copy_a);
        fx.if_else(others, copy_then_read, in_place);
    };
    let down_panels = |fx: &mut Fx| {
        let mut p_from = p_lo;
        if copying_a {
            // The edge tile, packed; the first panel packs the whole tiles.
            let span = fx.b.ins().isub(end, begin);
            let edge_rows = fx.b.ins().urem_imm_u(span, mr);
            let edge_start = fx.b.ins().isub(end, edge_rows);
            pack_rows(fx, edge_start);
            full_panel_tiles(fx, p_lo, true);
            p_from = fx.b.ins().iadd_imm_s(p_lo, 1);
        } else {
            pack_rows(fx, begin);
        }
        fx.for_range(p_from, p_hi, 1, |fx, p| full_panel_tiles(fx, p, false));
    };
    match mm.k.as_fixed() {
        Some(k) if (k as i64) < SHALLOW_K => across_panels(fx),
        Some(_) => down_panels(fx),
        None => {
            let shallow = fx.b.ins().icmp_imm_s(IntCC::SignedLessThan, kb, SHALLOW_K);
            fx.if_else(shallow, across_panels, down_panels);
        }
    }

    if let Some((edge_start, few)) = few_edge_rows {
        fx.if_then(few, |fx| {
            let (b_k0, b_step) = (in_place_k0(fx), step_of(fx, mm.b_k));
            // The packed edge tile, whose rows are 4 bytes apart.
            let edge_tile = packed_a.map(|base| {
                let tile = fx.mul_imm(edge_start, kc * 4);
                fx.add(base, tile)
            });
            fx.for_range(edge_start, end, 1, |fx, r| {
                let a = match edge_tile {
                    Some(tile) => {
                        let within = fx.b.ins().isub(r, edge_start);
                        let within = fx.mul_imm(within, 4);
                        ARows::Uniform { base: fx.add(tile, within), stride: 4 }
                    }
                    None => {
                        let off = fx.mul(r, a_row);
                        let stride = a_row_static.expect("row tiles need static A rows or packed ones");
                        ARows::Uniform { base: fx.add(a_k0, off), stride }
                    }
                };
                let c_off = fx.mul(r, ldc);
                let c_row = fx.add(c_base, c_off);
                // The one-row tile of `cols` columns from byte `col` of a row.
                let row_tile = |fx: &mut Fx, col: Value, cols: usize| {
                    let c = fx.add(c_row, col);
                    let c_panel = fx.add(c_base, col);
                    let b_panel = fx.add(b_k0, col);
                    let finish = finish_at(fx, c, c_panel);
                    let args = TileArgs {
                        a: a.clone(),
                        a_step,
                        b_panel,
                        b_step,
                        kb,
                        c,
                        ldc,
                        accumulate,
                        cols,
                        finish,
                        copy_a: None,
                        copy_b: None,
                    };
                    provider.emit_row_tile(fx, &args);
                };
                if columns.is_none() {
                    for &(col0, cols) in &row_groups {
                        let col = fx.iconst(col0 as i64 * 4);
                        row_tile(fx, col, cols);
                    }
                    return;
                }
                // The chunk's panels in groups as wide as the static ones, then one
                // narrower group of the panels left, if any.
                let widest = row_groups[0].1;
                let from = fx.mul_imm(p_lo, nr * 4);
                let to = fx.mul_imm(p_hi, nr * 4);
                let left = fx.for_whole_steps(from, to, widest as i64 * 4, |fx, col| row_tile(fx, col, widest));
                let rest = fx.b.ins().isub(to, left);
                for cols in (nr as usize..widest).step_by(nr as usize) {
                    let these = fx.b.ins().icmp_imm_s(IntCC::Equal, rest, cols as i64 * 4);
                    fx.if_then(these, |fx| row_tile(fx, left, cols));
                }
            });
        });
    }

    // The partial panel, always packed (none for a static N of whole panels: no code,
    // and no tile defined only to be optimized away).
    let partial_panel = |fx: &mut Fx| {
        let last_panel = |fx: &mut Fx| {
            let pb = fx.mul(full, panel_bytes);
            fx.add(packed_k0, pb)
        };
        let b_panel = pick(mm, fx, last_panel, |_| packed_k0);
        let pc = fx.mul_imm(full, nr * 4);
        let c_panel = fx.add(c_base, pc);
        match static_rem {
            Some(cols) if cols > 0 => panel(fx, begin, b_panel, packed_step, c_panel, cols, false, false),
            _ => fx.for_range(begin, end, mr, |fx, i| stack_tile(fx, i, b_panel, packed_step, c_panel, rem)),
        }
    };
    if static_rem != Some(0) {
        let has_rem = fx.b.ins().icmp_imm_s(IntCC::NotEqual, rem, 0);
        let has_rem = with_partial.map_or(has_rem, |mine| fx.b.ins().band(has_rem, mine));
        fx.if_then(has_rem, partial_panel);
    }

    let next = fx.b.ins().iadd_imm_s(k_start, kc);
    fx.set(kv, next);
    let more = fx.lt(next, k_hi);
    fx.b.ins().brif(more, body, &[], done, &[]);
    fx.b.switch_to_block(done);
    if let Some(ep) = mm.epilogue.as_ref().filter(|_| fused.is_none() && depth.is_none()) {
        crate::kernels::epilogue::emit(fx, mm, ep, c_base, n);
    }
}

/// An epilogue the tiles apply, with its buffers' distances from C.
#[derive(Clone, Copy)]
enum Fused {
    Sgd { p: Value, p_out: Value, lr: Value },
    Dense { bias: Option<Value>, relu: bool },
    Mask { h: Value },
}

/// The epilogue of `mm` when its tiles can apply it: every tile assembled (static
/// columns, A rows a static stride apart or packed) by a provider that fuses
/// epilogues, and an epilogue of the kinds they know: bias with ReLU or no
/// activation (alpha 1), the ReLU mask, or plain SGD (no weight decay) of a
/// parameter the product does not read. The rest run as `epilogue.rs`'s sweep.
fn fusable_epilogue<'m>(
    mm: &'m MatMul,
    provider: &dyn MicroKernelProvider,
    a_rows_static: bool,
) -> Option<&'m Epilogue> {
    let ep = mm.epilogue.as_deref()?;
    let tiles = mm.lead.is_empty() && mm.n.as_fixed().is_some() && (mm.packed_a.is_some() || a_rows_static);
    let known = match ep {
        Epilogue::Update(u) => {
            let plain = matches!(u.rule, UpdateRule::Sgd { weight_decay } if weight_decay == 0.0);
            let operands = [mm.a, mm.b];
            let independent = |s: usize| !operands.contains(&s);
            plain && independent(u.p) && u.p_out.is_some_and(independent)
        }
        Epilogue::Dense { alpha, act, .. } => *alpha == 1.0 && act.is_none_or(|a| a == UnaryOp::Relu),
        Epilogue::ReluMask { .. } => true,
    };
    (provider.fuses_epilogues() && tiles && known).then_some(ep)
}

/// Packs rows `[fx.begin, fx.end)` of A for the K block at `a_k0` (`kb` deep) into
/// `[row tile][k][mr]`: the tile starting at row `i` at `i·kc` floats, rows past the
/// end repeating the last row. Each call packs only its own rows, so row ranges on
/// different threads write disjoint parts.
fn pack_a(fx: &mut Fx, mm: &MatMul, slot: usize, a_k0: Value, a_row: Value, a_step: Value, kb: Value) {
    let (mr, kc) = (mm.tile.mr as i64, mm.kc as i64);
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
