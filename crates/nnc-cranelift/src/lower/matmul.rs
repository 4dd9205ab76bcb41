//! A matrix product's kernel description: strides, leading axes, tile, packing and
//! how the step splits it.

use super::{Lowering, TWO_BATCH};
use crate::microkernel::{GemmShape, MicroKernelProvider};
use crate::program::*;
use crate::shape::{dims, strides, Nest};
use nnc_ir::{Shape, Size, ValueId};

impl Lowering<'_> {
    /// `C = op(a)·op(b)` into table slot `c`, which holds a tensor of shape `out`.
    pub(super) fn lower_matmul(
        &mut self,
        (a, b): (ValueId, ValueId),
        (c, out): (usize, &Shape),
        (trans_a, trans_b): (bool, bool),
        provider: &dyn MicroKernelProvider,
    ) -> Result<MatMul, String> {
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

        let tile = provider.tile_shape(&GemmShape { m: m.as_fixed(), k: k.as_fixed(), n: n.as_fixed() });
        let nr = tile.nr() as u64;
        // A row-major B is read in place. A panel read in place strides through B's
        // rows, which at a power-of-two row length (1 KiB for 256 floats) map to a few
        // L1 sets and evict each other, so every row tile would read it from L2:
        // where the provider's tiles copy B (`copies_b`), each panel's first row tile
        // packs it for the others (measured as fast as a pack pass, or faster: the
        // `[out, in]` seed step's weight gradient, whose B is X, at batch 1024 on one
        // thread 9.37 → 9.20–9.25 ms; below batch 192 the pass did not pay at all);
        // else a static M of at least four row tiles packs it in a pass of its own.
        // A transposed B has every panel packed.
        let pack_b = match (b_col.is_fixed(1), n.as_fixed(), m.as_fixed()) {
            (false, _, _) => PackB::All,
            (true, Some(_), Some(mf)) if mf >= 4 * tile.mr as u64 && !provider.copies_b() => PackB::All,
            (true, _, _) => PackB::Edge,
        };
        // Packed B: K rows of every panel (N rounded up to whole panels), or of one.
        let packed_bytes = match (pack_b, n.as_fixed(), k.has_batch()) {
            (PackB::Edge, _, _) => k.scale(nr * 4),
            (_, Some(nf), _) => k.scale(nf.div_ceil(nr) * nr * 4),
            (_, None, false) => Some(Size { fixed: k.fixed * nr * 4, per_batch: k.fixed * n.per_batch * 4 }),
            (_, None, true) => None,
        }
        .ok_or(TWO_BATCH)?;
        let packed = self.scratch_slot(packed_bytes);
        // Split a static K into equal blocks no deeper than `kc` (784 → 3 × 262, not
        // 256+256+256+16); a run-time K uses `kc`.
        let kc = match k.as_fixed() {
            Some(kk) if kk > 0 => kk.div_ceil(kk.div_ceil(tile.kc as u64)),
            _ => tile.kc as u64,
        };
        // Packed A: rows `[i, i + mr)` of one K block at `i·kc` floats; room for M
        // rows plus one partial tile. A transposed A is packed so that a tile's rows are
        // contiguous at each k, unless the product has a single panel and the tiles
        // broadcast from strided rows at no cost (assembled ones): each tile is then
        // read once, and packing would only add a pass over A.
        let single_panel = provider.reads_strided_a() && n.as_fixed().is_some_and(|n| n <= nr);
        let packed_a = if a_k.is_fixed(1) || (single_panel && a_row.as_fixed().is_some()) {
            None
        } else {
            let mr = tile.mr as u64;
            let bytes = match m.as_fixed() {
                Some(mf) => Some(Size::fixed((mf + mr) * kc * 4)),
                None => Some(Size { fixed: mr * kc * 4, per_batch: m.per_batch * kc * 4 }),
            }
            .ok_or(TWO_BATCH)?;
            Some(self.scratch_slot(bytes))
        };
        // Few rows of a large transposed B: dot products (see `kernels/matmul/dots.rs`); else few
        // rows of a large B: K in parts with partial sums (see `matmul::by_depth`).
        let dots = crate::kernels::matmul::dots::applies(m, k, n, a_k, b_k, b_col, lead.is_empty());
        let depth = match crate::kernels::matmul::depth_parts(m, k, n, a_row, lead.is_empty()).filter(|_| !dots) {
            Some((parts, max_rows)) => {
                let bytes = Size::fixed(parts * max_rows * n.fixed * 4);
                Some(DepthSplit { slot: self.scratch_slot(bytes), parts, max_rows })
            }
            None => None,
        };
        Ok(MatMul {
            a: a.index(),
            b: b.index(),
            c,
            packed,
            m,
            k,
            n,
            a_row,
            a_k,
            b_k,
            b_col,
            lead,
            tile,
            pack_b,
            packed_a,
            kc,
            epilogue: None,
            depth,
        })
    }
}
