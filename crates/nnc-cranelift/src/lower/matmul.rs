//! A matrix product's kernel description: its operands as strides and leading axes,
//! and its [`MatMulPlan`], chosen here and nowhere else: the tile, which operands are
//! packed or copied (and by whom), the epilogue and where it runs, the one-row edge
//! tiles, and how the step may split the work besides by rows (column panels, K
//! parts, dot products). The loop nest (`kernels/matmul/`) carries the plan out; the
//! kernel family's micro-kernels are asked what they run before anything is chosen.

use super::{Lowering, TWO_BATCH};
use crate::kernels::matmul::{dots, SHALLOW_K};
use crate::microkernel::{ARead, GemmShape, KernelFamily, MicroOp, TileRows, TileSpec};
use crate::program::*;
use crate::shape::{dims, strides, Nest};
use nnc_ir::{Shape, Size, ValueId};

/// K parts of a product split along K: at most this many, each at least
/// `MIN_DEPTH_PART` deep.
const DEPTH_PARTS: u64 = 8;
const MIN_DEPTH_PART: u64 = 64;
/// The most rows a product split along K may have: on one thread the split costs a
/// little (the partial sums, a tile pass per part), on two it saves more, less as M
/// grows (see docs/matmul.md).
const DEPTH_MAX_ROWS: u64 = 6;
/// B at least this large: a product of few rows then spends its time streaming B.
const DEPTH_MIN_B_BYTES: u64 = 128 << 10;
/// The most rows of A the dot products take: per row they cost about what the tiles
/// do, but save the pack, until enough rows amortize it (see docs/matmul.md). The
/// limit is the same for every family: the dot products round differently.
const DOTS_MAX_ROWS: u64 = 16;
/// B at least this large for dot products: smaller ones pack in a sliver of the
/// product's time.
const DOTS_MIN_B_BYTES: u64 = 128 << 10;
/// One-row edge tiles span at most this many panels.
const MAX_ROW_TILE_PANELS: usize = 8;

/// A product's operands: sizes and strides (in elements) of `op(A)` and `op(B)`.
struct Operands {
    m: Size,
    k: Size,
    n: Size,
    a_row: Size,
    a_k: Size,
    b_k: Size,
    b_col: Size,
    lead: Vec<Lead>,
}

impl Lowering<'_> {
    /// `C = op(a)·op(b)` into table slot `c`, which holds a tensor of shape `out`, then
    /// `epilogue`.
    pub(super) fn lower_matmul(
        &mut self,
        (a, b): (ValueId, ValueId),
        (c, out): (usize, &Shape),
        (trans_a, trans_b): (bool, bool),
        epilogue: Vec<EpilogueOp>,
        family: &dyn KernelFamily,
    ) -> Result<MatMul, String> {
        let o = self.operands((a, b), out, (trans_a, trans_b))?;
        let plan = self.plan(&o, (a.index(), b.index()), epilogue, family)?;
        let Operands { m, k, n, a_row, a_k, b_k, b_col, lead } = o;
        Ok(MatMul { a: a.index(), b: b.index(), c, m, k, n, a_row, a_k, b_k, b_col, lead, plan })
    }

    /// The transposes as strides, and the leading axes each operand steps along.
    fn operands(
        &self,
        (a, b): (ValueId, ValueId),
        out: &Shape,
        (trans_a, trans_b): (bool, bool),
    ) -> Result<Operands, String> {
        let g = self.g;
        let (da, db) = (dims(&g.ty(a).shape), dims(&g.ty(b).shape));
        let (sa, sb) = (strides(&da).ok_or(TWO_BATCH)?, strides(&db).ok_or(TWO_BATCH)?);
        let (ra, rb) = (da.len(), db.len());
        let (m, a_row, a_k) =
            if trans_a { (da[ra - 1], sa[ra - 1], sa[ra - 2]) } else { (da[ra - 2], sa[ra - 2], sa[ra - 1]) };
        let (k, n, b_k, b_col) = if trans_b {
            (db[rb - 1], db[rb - 2], sb[rb - 1], sb[rb - 2])
        } else {
            (db[rb - 2], db[rb - 1], sb[rb - 2], sb[rb - 1])
        };

        // Leading axes: each operand's stride along the output's leading axes.
        let od = dims(out);
        let so = strides(&od).ok_or(TWO_BATCH)?;
        let lr = od.len() - 2;
        let lead_strides = |d: &[Size], s: &[Size], shape: &Shape| -> Vec<Size> {
            let own = d.len() - 2;
            (0..lr)
                .map(|i| match (i + own).checked_sub(lr) {
                    Some(p) if shape.dims()[p] != nnc_ir::Dim::Fixed(1) => s[p],
                    _ => Size::ZERO,
                })
                .collect()
        };
        let la = lead_strides(&da, &sa, &g.ty(a).shape);
        let lb = lead_strides(&db, &sb, &g.ty(b).shape);
        let lc = so[..lr].to_vec();
        let nest = Nest::collapse(&od[..lr], &[la, lb, lc]);
        let mut lead: Vec<Lead> = (0..nest.dims.len())
            .filter(|&i| !nest.dims[i].is_fixed(1))
            .map(|i| Lead { dim: nest.dims[i], a: nest.strides[0][i], b: nest.strides[1][i], c: nest.strides[2][i] })
            .collect();
        let mut m = m;
        // A stack of matrices times one matrix, laid out row after row: one taller product.
        if let [l] = lead.as_slice() {
            let rows_follow = m.checked_mul(a_row) == Some(l.a) && m.checked_mul(n) == Some(l.c);
            if l.b.is_fixed(0) && rows_follow {
                if let Some(tall) = l.dim.checked_mul(m) {
                    m = tall;
                    lead.clear();
                }
            }
        }
        Ok(Operands { m, k, n, a_row, a_k, b_k, b_col, lead })
    }

    /// The plan of a product of operands `o` (table slots `a`, `b`).
    fn plan(
        &mut self,
        o: &Operands,
        operands: (usize, usize),
        epilogue: Vec<EpilogueOp>,
        family: &dyn KernelFamily,
    ) -> Result<MatMulPlan, String> {
        let tile = family.tile_shape(&GemmShape { m: o.m.as_fixed(), k: o.k.as_fixed(), n: o.n.as_fixed() });
        let nr = tile.nr() as u64;
        let a_read = if o.a_k.is_fixed(1) { ARead::InPlace { k_contiguous: true } } else { ARead::Packed };
        // A whole tile reading A as the product mostly does.
        let whole = TileSpec {
            shape: tile,
            rows: TileRows::All,
            cols: tile.nr(),
            a: a_read,
            copy_a: false,
            copy_b: false,
            epilogue: &[],
        };
        // A row-major B is read in place. A panel read in place strides through B's
        // rows, which at a power-of-two row length map to a few L1 sets and evict each
        // other, so every row tile would read it from L2: where the family's tiles copy
        // B as they read it, each panel's first row tile copies it for the others; else
        // a static M of at least four row tiles packs it in a pass of its own. A
        // transposed B has every panel packed.
        let copies_b = family.runs(&MicroOp::Tile(TileSpec { copy_b: true, ..whole }));
        let pack_b = match (o.b_col.is_fixed(1), o.n.as_fixed(), o.m.as_fixed()) {
            (false, _, _) => PackB::All,
            (true, Some(_), Some(mf)) if mf >= 4 * tile.mr as u64 && !copies_b => PackB::All,
            (true, _, _) => PackB::Edge,
        };
        // The copy is made only by deep K blocks (see `across_panels` in the loop nest).
        let copy_b = match copies_b && o.b_col.is_fixed(1) && pack_b == PackB::Edge {
            true if o.k.as_fixed().is_none_or(|k| k as i64 >= SHALLOW_K) => CopyB::ByFirstRowTile,
            _ => CopyB::No,
        };
        // Packed B: K rows of every panel (N rounded up to whole panels), or of one.
        let (k, n) = (o.k, o.n);
        let packed_bytes = match (pack_b, n.as_fixed(), k.has_batch()) {
            (PackB::Edge, _, _) => k.scale(nr * 4),
            (_, Some(nf), _) => k.scale(nf.div_ceil(nr) * nr * 4),
            (_, None, false) => Some(Size { fixed: k.fixed * nr * 4, per_batch: k.fixed * n.per_batch * 4 }),
            (_, None, true) => None,
        }
        .ok_or(TWO_BATCH)?;
        let packed = self.scratch_slot(packed_bytes);
        // Split a static K into equal blocks no deeper than `kc` (784 → 4 × 196 for a
        // `kc` of 256, not 256+256+256+16); a run-time K uses `kc`.
        let kc = match k.as_fixed() {
            Some(kk) if kk > 0 => kk.div_ceil(kk.div_ceil(tile.kc as u64)),
            _ => tile.kc as u64,
        };
        let packed_a = self.packed_a(o, tile, kc, family)?;
        let epilogue_at = epilogue_at(o, packed_a.is_some(), operands, &epilogue, |ops| {
            family.runs(&MicroOp::Tile(TileSpec { epilogue: ops, ..whole }))
        });
        // Few rows of a large transposed B: dot products; else few rows of a large B:
        // K in parts with partial sums.
        let dots = dots_variant(o);
        let depth = match depth_parts(o).filter(|_| dots.is_none()) {
            Some(variant) => {
                let parts = variant.items.fixed;
                let bytes = Size::fixed(parts * DEPTH_MAX_ROWS * n.fixed * 4);
                Some(DepthSplit { slot: self.scratch_slot(bytes), parts, variant })
            }
            None => None,
        };
        let fused = if epilogue_at == EpilogueAt::Tiles { &epilogue[..] } else { &[] };
        let row_tile_cols = row_tile_cols(o, tile, packed_a.is_some(), |cols| {
            let one = TileSpec {
                shape: tile,
                rows: TileRows::One,
                cols,
                a: a_read,
                copy_a: false,
                copy_b: false,
                epilogue: fused,
            };
            family.runs(&MicroOp::Tile(one))
        });
        let columns = columns_variant(o, tile, &epilogue, epilogue_at);
        Ok(MatMulPlan {
            tile,
            kc,
            pack_b,
            packed,
            copy_b,
            packed_a,
            row_tile_cols,
            epilogue,
            epilogue_at,
            columns,
            depth,
            dots,
        })
    }

    /// A transposed A, packed per K block: rows `[i, i + mr)` of one K block at `i·kc`
    /// floats, room for M rows plus one partial tile. Not when the product has a single
    /// panel and the family's tiles read A in place as fast: each tile is then read
    /// once, and packing would only add a pass over A. The first panel's whole tiles
    /// pack it as they read it where the family's tiles can (a full panel and A rows a
    /// static stride apart).
    fn packed_a(
        &mut self,
        o: &Operands,
        tile: TileShape,
        kc: u64,
        family: &dyn KernelFamily,
    ) -> Result<Option<PackedA>, String> {
        let nr = tile.nr() as u64;
        let in_place = ARead::InPlace { k_contiguous: false };
        let tile_reading = |copy_a| {
            MicroOp::Tile(TileSpec {
                shape: tile,
                rows: TileRows::All,
                cols: tile.nr(),
                a: in_place,
                copy_a,
                copy_b: false,
                epilogue: &[],
            })
        };
        let single_panel = o.n.as_fixed().is_some_and(|n| n <= nr) && family.runs(&tile_reading(false));
        if o.a_k.is_fixed(1) || (single_panel && o.a_row.as_fixed().is_some()) {
            return Ok(None);
        }
        let mr = tile.mr as u64;
        let bytes = match o.m.as_fixed() {
            Some(mf) => Size::fixed((mf + mr) * kc * 4),
            None => Size { fixed: mr * kc * 4, per_batch: o.m.per_batch * kc * 4 },
        };
        let copied =
            family.runs(&tile_reading(true)) && o.a_row.as_fixed().is_some() && o.n.as_fixed().is_some_and(|n| n >= nr);
        let by = if copied { PackA::FirstPanelTiles } else { PackA::Pass };
        Ok(Some(PackedA { slot: self.scratch_slot(bytes), by }))
    }
}

/// Where the epilogue runs: in the tiles when every tile is the family's (a static N,
/// A rows a static stride apart or packed, no leading axes) and they apply these
/// operations (`fuses`), and, for an optimizer update, when the update's parameter
/// is not an operand of the product (the tiles write it while later tiles read A and
/// B). Else in a sweep over the rows after the product.
fn epilogue_at(
    o: &Operands,
    packed_a: bool,
    (a, b): (usize, usize),
    epilogue: &[EpilogueOp],
    fuses: impl Fn(&[EpilogueOp]) -> bool,
) -> EpilogueAt {
    let tiles = o.lead.is_empty() && o.n.as_fixed().is_some() && (packed_a || o.a_row.as_fixed().is_some());
    let independent = epilogue.iter().all(|op| match op {
        EpilogueOp::Update(u) => {
            let free = |s: usize| s != a && s != b;
            free(u.p) && u.p_out.is_some_and(free)
        }
        _ => true,
    });
    match !epilogue.is_empty() && tiles && independent && fuses(epilogue) {
        true => EpilogueAt::Tiles,
        false => EpilogueAt::Sweep,
    }
}

/// The widest one-row tile (with every narrower one) the family runs for the last one
/// or two rows of a row-major B's full panels (a static N of two full panels or more, A rows a static
/// stride apart or packed), in whole panels.
fn row_tile_cols(o: &Operands, tile: TileShape, packed_a: bool, runs: impl Fn(usize) -> bool) -> Option<usize> {
    let nr = tile.nr();
    let n = o.n.as_fixed()? as usize;
    let width = n / nr * nr;
    let eligible = o.b_col.is_fixed(1) && (o.a_row.as_fixed().is_some() || packed_a) && width >= 2 * nr;
    if !eligible {
        return None;
    }
    // Every narrower group of whole panels is needed too (the last group of a row).
    (1..=MAX_ROW_TILE_PANELS).map(|p| p * nr).take_while(|&cols| runs(cols)).last()
}

/// The variant whose work items are B's column panels (`nr` columns of C each), if
/// the product has one. Split by rows, every thread reads all of B and its rows of A;
/// split by columns, all of A and its columns of B. The step takes the columns when A
/// is the smaller operand (`M ≤ N`) and there are threads to split for: in the seed
/// model's forward pass at batch 100, each of two threads then reads its half of the
/// 784 KiB weight matrix once instead of all of it for each of its chunks of rows.
///
/// A product whose epilogue updates a parameter in place (a weight gradient) takes
/// the columns only when K is also above M, that is when B is larger than C: else
/// each thread updating whole rows of the parameter keeps them in its L2 for the next
/// step's forward product, which reads them by the same rows.
///
/// It has one with no leading dimensions, a static N of two panels or more, an M that
/// can be at most N (a static M above it would make the variant dead code), A rows a
/// static stride apart (the variant reads A in place: packed A is one scratch buffer
/// the threads would share), and no epilogue or one the tiles apply (the sweep runs
/// by rows).
fn columns_variant(o: &Operands, tile: TileShape, epilogue: &[EpilogueOp], at: EpilogueAt) -> Option<Variant> {
    let nr = tile.nr() as u64;
    let n = o.n.as_fixed()?;
    let panels = n.div_ceil(nr);
    let eligible = o.lead.is_empty()
        && panels >= 2
        && o.m.as_fixed().is_none_or(|m| m <= n)
        && o.a_row.as_fixed().is_some()
        && (epilogue.is_empty() || at == EpilogueAt::Tiles);
    let work = o.m.checked_mul(o.k)?.scale(2 * nr)?;
    let update = matches!(epilogue, [EpilogueOp::Update(_)]);
    let deeper_than = update.then_some(o.k);
    eligible.then_some(Variant { items: Size::fixed(panels), rows: o.m, max_rows: n as i64, deeper_than, work })
}

/// A product of few rows and a large B (the forward pass of a dense layer at batch 1
/// to 6) split along K: fixed ranges of K, each a work item that writes its own
/// partial C, then a pass that sums the partials in part order and applies the
/// epilogue.
///
/// Split by columns, each thread reads a column slice of B, half of every row of the
/// seed's W1: those slices map to half the sets of the L2 and do not stay in it, and
/// the SGD update, split by rows, reads W1 again from L3. Split along K, each thread
/// reads whole rows of B, the same ones its share of the update writes (the pool gives
/// a thread the same part of every job), so the seed's 784 KiB W1 stays in the two
/// L2s from the forward product through the update to the next step's forward
/// product.
///
/// The parts do not depend on the thread count, so neither do the results; they do
/// differ in rounding from the unsplit product, and the step picks the split from M
/// alone (`M ≤ DEPTH_MAX_ROWS`). It needs a static K of two parts or more, a static N
/// with B of at least `DEPTH_MIN_B_BYTES`, an M that can be that small, A rows a
/// static stride apart (read in place) and no leading dimensions.
fn depth_parts(o: &Operands) -> Option<Variant> {
    let (k, n) = (o.k.as_fixed()?, o.n.as_fixed()?);
    let parts = (k / MIN_DEPTH_PART).min(DEPTH_PARTS);
    let eligible = o.lead.is_empty()
        && parts >= 2
        && k * n * 4 >= DEPTH_MIN_B_BYTES
        && o.a_row.as_fixed().is_some()
        && o.m.as_fixed().is_none_or(|m| m <= DEPTH_MAX_ROWS);
    eligible.then(|| {
        let work = Size::fixed(2 * DEPTH_MAX_ROWS * k.div_ceil(parts) * n);
        Variant { items: Size::fixed(parts), rows: o.m, max_rows: DEPTH_MAX_ROWS as i64, deeper_than: None, work }
    })
}

/// Dot products of contiguous rows at up to `DOTS_MAX_ROWS` rows (see
/// `kernels/matmul/dots.rs`): A and B contiguous along K, B's stored rows a static
/// stride apart, a static K of one vector step or more, a static N, B of at least
/// `DOTS_MIN_B_BYTES`, no leading dimensions, and an M that can be that small.
fn dots_variant(o: &Operands) -> Option<Variant> {
    let (k, n) = (o.k.as_fixed()?, o.n.as_fixed()?);
    let eligible = o.lead.is_empty()
        && o.a_k.is_fixed(1)
        && o.b_k.is_fixed(1)
        && o.b_col.as_fixed().is_some()
        && k >= dots::K_STEP as u64
        && k * n * 4 >= DOTS_MIN_B_BYTES
        && o.m.as_fixed().is_none_or(|m| m <= DOTS_MAX_ROWS);
    let work = Size::fixed(2 * DOTS_MAX_ROWS * k * dots::COLS);
    let (items, max_rows) = (Size::fixed(n.div_ceil(dots::COLS)), DOTS_MAX_ROWS as i64);
    eligible.then_some(Variant { items, rows: o.m, max_rows, deeper_than: None, work })
}
