//! One row block of a product: rows `[fx.begin, fx.end)` of C, K block by K block,
//! panel by panel, row tile by row tile, as the product's plan says.
//!
//! ```text
//! for each K block (a do-while loop: K = 0 still writes C = 0):
//!     shallow (K < SHALLOW_K): row tiles across the panels   (C streamed, not strided)
//!     deep: panels, each down its row tiles                 (B's K block stays in L1)
//!         the first panel's tiles pack a transposed A         (PackA::FirstPanelTiles)
//!         each panel's first row tile copies a B read in place (CopyB::ByFirstRowTile)
//!     the last one or two rows: one-row tiles across panels  (row_tile_cols)
//!     the partial panel (always packed)
//! then the epilogue's sweep, unless the tiles applied it
//! ```
//!
//! Edge tiles are the family's where it runs them, else a tile of clamped rows into a
//! stack buffer whose valid part is copied to C (so are tiles of a run-time N edge).

use super::pack::pack_a;
use super::{lead_offsets, panels, pick, step_of, Region, SHALLOW_K};
use crate::clif::{Fx, PTR};
use crate::microkernel::cranelift;
use crate::microkernel::{
    ARead, ARows, KernelFamily, MicroArgs, MicroOp, Step, TileArgs, TileEpilogue, TileFinish, TileRows, TileSpec,
};
use crate::program::{CopyB, EpilogueAt, EpilogueOp, MatMul, PackA, PackB};
use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::{types, InstBuilder, Value};
use nnc_ir::UpdateRule;

/// Computes the row block of `region`.
pub(super) fn emit(fx: &mut Fx, mm: &MatMul, family: &dyn KernelFamily, region: Region) {
    let block = Block::new(fx, mm, family, region);
    block.k_blocks(fx);
}

/// An epilogue the tiles apply, with its buffers as distances from C (a tile's address
/// in them is its address in C plus that; the bias's, its column's).
#[derive(Clone, Copy)]
enum Fused {
    Sgd { p: Value, p_out: Value, lr: Value },
    Dense { bias: Option<Value> },
    Mask { h: Value },
}

/// What the whole row block knows: the plan's choices for this region and the values
/// computed once before the K loop.
struct Block<'m> {
    mm: &'m MatMul,
    family: &'m dyn KernelFamily,
    region: Region,
    mr: i64,
    nr: i64,
    /// The packed A the region reads (the rows region only).
    packed_a_slot: Option<usize>,
    /// Whether the first panel's tiles pack A.
    copying_a: bool,
    /// The epilogue the tiles apply here (none in the K parts).
    fused_ops: &'m [EpilogueOp],
    a_base: Value,
    b_base: Value,
    c_base: Value,
    packed: Value,
    k: Value,
    n: Value,
    a_row: Value,
    a_step_v: Value,
    a_step: Step,
    a_row_static: Option<i64>,
    b_row: Value,
    ldc: Value,
    full: Value,
    rem: Value,
    /// The full panels computed, `[p_lo, p_hi)`, and whether the partial one is
    /// (`None`: it is, when there is one).
    p_lo: Value,
    p_hi: Value,
    with_partial: Option<Value>,
    panel_bytes: Value,
    begin: Value,
    end: Value,
    /// Panels read in place step by B's row stride; packed ones by `nr` floats.
    packed_step: Step,
    full_step: Step,
    static_rem: Option<usize>,
    /// The one-row tiles' column groups `(first column, columns)` of a row.
    row_groups: Vec<(usize, usize)>,
    /// Where the M edge starts, and whether the one-row tiles take it (one or two rows).
    few_edge_rows: Option<(Value, Value)>,
    stack: Value,
    /// The stack panel a first row tile copies B to.
    b_copy: Option<Value>,
    fused: Option<Fused>,
}

/// What one K block knows besides the row block.
struct KBlock {
    k_start: Value,
    kb: Value,
    accumulate: Value,
    /// With a fused epilogue: whether this is the last K block (i64).
    last: Option<Value>,
    a_k0: Value,
    packed_k0: Value,
    in_place_a_step: Step,
    packed_a: Option<Value>,
    b_k0: Value,
    panel_stride: Value,
}

impl<'m> Block<'m> {
    fn new(fx: &mut Fx, mm: &'m MatMul, family: &'m dyn KernelFamily, region: Region) -> Block<'m> {
        let plan = &mm.plan;
        let (mr, nr) = (plan.tile.mr as i64, plan.tile.nr() as i64);
        let (a_off, b_off, c_off) = lead_offsets(fx, mm);
        let a_base = fx.slot(mm.a);
        let a_base = fx.add(a_base, a_off);
        let b_base = fx.slot(mm.b);
        let b_base = fx.add(b_base, b_off);
        let c_base = match region.depth {
            Some((_, _, partial)) => partial,
            None => {
                let c_base = fx.slot(mm.c);
                fx.add(c_base, c_off)
            }
        };
        let packed = fx.slot(plan.packed);
        let k = fx.sz(mm.k);
        let n = fx.sz(mm.n);
        let a_row = fx.sz(super::bytes_of(mm.a_row));
        let a_step_v = fx.sz(super::bytes_of(mm.a_k));
        let packed_a_slot = plan.packed_a.filter(|_| region.is_rows()).map(|p| p.slot);
        let a_step = if packed_a_slot.is_some() { Step::Static(mr * 4) } else { step_of(fx, mm.a_k) };
        let b_row = fx.sz(super::bytes_of(mm.b_k));
        let ldc = fx.mul_imm(n, 4);
        let (full, rem) = panels(fx, mm, n);
        let (p_lo, p_hi, with_partial) = match region.columns {
            None => (fx.iconst(0), full, None),
            Some((lo, hi)) => {
                let from = fx.b.ins().icmp(IntCC::SignedLessThanOrEqual, lo, full);
                let to = fx.lt(full, hi);
                (lo, fx.min(hi, full), Some(fx.b.ins().band(from, to)))
            }
        };
        let panel_bytes = fx.mul_imm(k, nr * 4);
        let (begin, end) = (fx.begin, fx.end);
        let packed_step = Step::Static(nr * 4);
        let full_step = match plan.pack_b {
            PackB::Edge => step_of(fx, mm.b_k),
            PackB::All => packed_step,
        };
        let row_groups: Vec<(usize, usize)> = match (plan.row_tile_cols, mm.n.as_fixed()) {
            (Some(widest), Some(nf)) => {
                let width = (nf / nr as u64) as usize * nr as usize;
                (0..width).step_by(widest).map(|c0| (c0, widest.min(width - c0))).collect()
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
        let copying_a = packed_a_slot.is_some() && plan.packed_a.is_some_and(|p| p.by == PackA::FirstPanelTiles);
        let stack = fx.stack_buffer((mr * nr * 4) as u32);
        // A K block of one panel, contiguous, on a cache line boundary.
        let b_copy = (plan.copy_b == CopyB::ByFirstRowTile).then(|| {
            let bytes = plan.kc as i64 * nr * 4;
            let raw = fx.stack_buffer((bytes + 64) as u32);
            let raw = fx.b.ins().iadd_imm_s(raw, 63);
            fx.b.ins().band_imm_s(raw, -64)
        });
        let in_tiles = plan.epilogue_at == EpilogueAt::Tiles && region.depth.is_none();
        let fused_ops: &[EpilogueOp] = if in_tiles { &plan.epilogue } else { &[] };
        let fused = in_tiles.then(|| fused_operands(fx, fused_ops, c_base)).flatten();
        if in_tiles && fused.is_none() {
            fx.fail(format!("internal: the tiles were planned to apply an epilogue they do not have: {fused_ops:?}"));
        }
        Block {
            mm,
            family,
            region,
            mr,
            nr,
            packed_a_slot,
            copying_a,
            fused_ops,
            a_base,
            b_base,
            c_base,
            packed,
            k,
            n,
            a_row,
            a_step_v,
            a_step,
            a_row_static: mm.a_row.as_fixed().map(|s| s as i64 * 4),
            b_row,
            ldc,
            full,
            rem,
            p_lo,
            p_hi,
            with_partial,
            panel_bytes,
            begin,
            end,
            packed_step,
            full_step,
            static_rem: mm.n.as_fixed().map(|n| (n % nr as u64) as usize),
            row_groups,
            few_edge_rows,
            stack,
            b_copy,
            fused,
        }
    }

    /// The K blocks, then the epilogue's sweep where the tiles did not apply it.
    fn k_blocks(&self, fx: &mut Fx) {
        let (k_lo, k_hi) = match self.region.depth {
            Some((lo, hi, _)) => (lo, hi),
            None => (fx.iconst(0), self.k),
        };
        let kv = fx.var(PTR, k_lo);
        let body = fx.b.create_block();
        let done = fx.b.create_block();
        fx.b.ins().jump(body, &[]);
        fx.b.switch_to_block(body);
        let kc = self.mm.plan.kc as i64;
        let k_start = fx.get(kv);
        let kb = self.k_block(fx, k_start, k_lo, k_hi);
        match self.mm.k.as_fixed() {
            Some(k) if (k as i64) < SHALLOW_K => self.across_panels(fx, &kb),
            Some(_) => self.down_panels(fx, &kb),
            None => {
                let shallow = fx.b.ins().icmp_imm_s(IntCC::SignedLessThan, kb.kb, SHALLOW_K);
                fx.if_else(shallow, |fx| self.across_panels(fx, &kb), |fx| self.down_panels(fx, &kb));
            }
        }
        if let Some((edge_start, few)) = self.few_edge_rows {
            fx.if_then(few, |fx| self.edge_row_tiles(fx, &kb, edge_start));
        }
        if self.static_rem != Some(0) {
            let has_rem = fx.b.ins().icmp_imm_s(IntCC::NotEqual, self.rem, 0);
            let has_rem = self.with_partial.map_or(has_rem, |mine| fx.b.ins().band(has_rem, mine));
            fx.if_then(has_rem, |fx| self.partial_panel(fx, &kb));
        }
        let next = fx.b.ins().iadd_imm_s(k_start, kc);
        fx.set(kv, next);
        let more = fx.lt(next, k_hi);
        fx.b.ins().brif(more, body, &[], done, &[]);
        fx.b.switch_to_block(done);
        if self.mm.plan.epilogue_at == EpilogueAt::Sweep && self.region.depth.is_none() {
            crate::kernels::epilogue::emit(fx, self.mm, self.c_base, self.n);
        }
    }

    /// The values of the K block starting at `k_start`.
    fn k_block(&self, fx: &mut Fx, k_start: Value, k_lo: Value, k_hi: Value) -> KBlock {
        let (mm, nr) = (self.mm, self.nr);
        let kc = mm.plan.kc as i64;
        let left = fx.b.ins().isub(k_hi, k_start);
        let kc_v = fx.iconst(kc);
        let kb = fx.min(kc_v, left);
        let accumulate = match self.region.depth {
            Some(_) => fx.b.ins().icmp(IntCC::NotEqual, k_start, k_lo),
            None => fx.b.ins().icmp_imm_s(IntCC::NotEqual, k_start, 0),
        };
        let last = self.fused.map(|_| {
            let next = fx.b.ins().iadd_imm_s(k_start, kc);
            let last = fx.b.ins().icmp(IntCC::SignedGreaterThanOrEqual, next, self.k);
            fx.b.ins().uextend(types::I64, last)
        });
        let a_k0 = fx.mul(k_start, self.a_step_v);
        let a_k0 = fx.add(self.a_base, a_k0);
        let packed_k0 = fx.mul_imm(k_start, nr * 4);
        let packed_k0 = fx.add(self.packed, packed_k0);
        let in_place_a_step = step_of(fx, mm.a_k);
        let packed_a = self.packed_a_slot.map(|slot| fx.slot(slot));
        let b_k0 = pick(mm, fx, |_| packed_k0, |fx| self.in_place_k0(fx, k_start));
        let panel_stride = pick(mm, fx, |_| self.panel_bytes, |fx| fx.iconst(nr * 4));
        KBlock { k_start, kb, accumulate, last, a_k0, packed_k0, in_place_a_step, packed_a, b_k0, panel_stride }
    }

    /// B's row `k_start` in place.
    fn in_place_k0(&self, fx: &mut Fx, k_start: Value) -> Value {
        let off = fx.mul(k_start, self.b_row);
        fx.add(self.b_base, off)
    }

    /// The epilogue's operands for the tile at `c` in the panel at `c_panel`.
    fn finish_at(&self, fx: &mut Fx, kb: &KBlock, c: Value, c_panel: Value) -> Option<TileFinish> {
        let (fused, last) = (self.fused?, kb.last?);
        let epilogue = match fused {
            Fused::Sgd { p, p_out, lr } => TileEpilogue::Sgd { p: fx.add(c, p), p_out: fx.add(c, p_out), lr },
            Fused::Dense { bias } => TileEpilogue::Dense { bias: bias.map(|b| fx.add(c_panel, b)) },
            Fused::Mask { h } => TileEpilogue::ReluMask { h: fx.add(c, h) },
        };
        Some(TileFinish { epilogue, last })
    }

    /// Packs A's rows from `from` to the row block's end for this K block.
    fn pack_rows(&self, fx: &mut Fx, kb: &KBlock, from: Value) {
        if let Some(slot) = self.packed_a_slot {
            fx.begin = from;
            pack_a(fx, self.mm, slot, kb.a_k0, self.a_row, self.a_step_v, kb.kb);
            fx.begin = self.begin;
        }
    }

    /// A rows of a tile starting at row `i` (clamped to the last row at the M edge).
    fn rows(&self, fx: &mut Fx, kb: &KBlock, i: Value, clamp_to: Option<Value>) -> ARows {
        if let Some(base) = kb.packed_a {
            // Packed tiles are contiguous, with the edge rows already clamped.
            let off = fx.mul_imm(i, self.mm.plan.kc as i64 * 4);
            return ARows::Uniform { base: fx.add(base, off), stride: 4 };
        }
        if let (Some(stride), None) = (self.a_row_static, clamp_to) {
            let off = fx.mul(i, self.a_row);
            return ARows::Uniform { base: fx.add(kb.a_k0, off), stride };
        }
        ARows::Each(
            (0..self.mr)
                .map(|r| {
                    let mut row = fx.b.ins().iadd_imm_s(i, r);
                    if let Some(last) = clamp_to {
                        row = fx.min(row, last);
                    }
                    let off = fx.mul(row, self.a_row);
                    fx.add(kb.a_k0, off)
                })
                .collect(),
        )
    }

    /// Emits a tile: the family's micro-kernel where it runs it, else the portable
    /// tile (which copies nothing and applies no epilogue).
    fn tile(&self, fx: &mut Fx, rows: TileRows, args: &TileArgs) {
        let a = match &args.a {
            ARows::Each(_) => ARead::PerRow,
            ARows::Uniform { .. } if self.packed_a_slot.is_some() && args.copy_a.is_none() => ARead::Packed,
            ARows::Uniform { .. } => ARead::InPlace { k_contiguous: self.mm.a_k.is_fixed(1) },
        };
        let epilogue = if args.finish.is_some() { self.fused_ops } else { &[] };
        let spec = TileSpec {
            shape: self.mm.plan.tile,
            rows,
            cols: args.cols,
            a,
            copy_a: args.copy_a.is_some(),
            copy_b: args.copy_b.is_some(),
            epilogue,
        };
        let op = MicroOp::Tile(spec);
        if let Some(kernels) = self.family.kernel_for(&op) {
            return kernels.emit(fx, &op, &MicroArgs::Tile(args));
        }
        if rows != TileRows::All || spec.copy_a || spec.copy_b || !epilogue.is_empty() {
            return fx
                .fail(format!("the plan asked for a tile the {} kernels do not run: {spec:?}", self.family.family()));
        }
        cranelift::emit_tile(fx, spec.shape, args)
    }

    /// A tile computed into the stack buffer, then `min(mr, end - i) × cols` of it
    /// written to C.
    fn stack_tile(&self, fx: &mut Fx, kb: &KBlock, i: Value, b: (Value, Step), c_panel: Value, cols: Value) {
        let (mr, nr, end) = (self.mr, self.nr, self.end);
        let rows_left = fx.b.ins().isub(end, i);
        let mr_v = fx.iconst(mr);
        let n_rows = fx.min(rows_left, mr_v);
        let last_row = fx.b.ins().iadd_imm_s(end, -1);
        let a = self.rows(fx, kb, i, Some(last_row));
        let buf = self.stack;
        let buf_ld = fx.iconst(nr * 4);
        let no = fx.b.ins().iconst(types::I8, 0);
        let args = TileArgs {
            a,
            a_step: self.a_step,
            b_panel: b.0,
            b_step: b.1,
            kb: kb.kb,
            c: buf,
            ldc: buf_ld,
            accumulate: no,
            cols: nr as usize,
            finish: None,
            copy_a: None,
            copy_b: None,
            rows: None,
        };
        self.tile(fx, TileRows::All, &args);
        let c_off = fx.mul(i, self.ldc);
        let c_tile = fx.add(c_panel, c_off);
        let (ldc, accumulate) = (self.ldc, kb.accumulate);
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
    }

    /// The arguments of the tile at rows `[i, i + mr)` of a panel, written straight to C.
    fn tile_args(&self, fx: &mut Fx, kb: &KBlock, i: Value, b: (Value, Step), c_panel: Value, cols: usize) -> TileArgs {
        let a = self.rows(fx, kb, i, None);
        let c_off = fx.mul(i, self.ldc);
        let c = fx.add(c_panel, c_off);
        let finish = self.finish_at(fx, kb, c, c_panel);
        TileArgs {
            a,
            a_step: self.a_step,
            b_panel: b.0,
            b_step: b.1,
            kb: kb.kb,
            c,
            ldc: self.ldc,
            accumulate: kb.accumulate,
            cols,
            finish,
            copy_a: None,
            copy_b: None,
            rows: None,
        }
    }

    /// The arguments of one whole tile of `cols` columns, straight into C; with `copy`,
    /// reading A in place and packing it.
    #[allow(clippy::too_many_arguments)]
    fn whole_args(
        &self,
        fx: &mut Fx,
        kb: &KBlock,
        i: Value,
        b: (Value, Step),
        c_panel: Value,
        cols: usize,
        copy: CopyA,
    ) -> TileArgs {
        let mut args = self.tile_args(fx, kb, i, b, c_panel, cols);
        if copy == CopyA::Yes {
            let stride = self.a_row_static.expect("copying A needs static A rows");
            let in_place = fx.mul_imm(i, stride);
            let packed = fx.mul_imm(i, self.mm.plan.kc as i64 * 4);
            let packed = fx.add(kb.packed_a.expect("copying A needs packed A"), packed);
            args.a = ARows::Uniform { base: fx.add(kb.a_k0, in_place), stride };
            args.a_step = kb.in_place_a_step;
            args.copy_a = Some(packed);
        }
        args
    }

    /// Row tiles of one panel from row `from`: whole tiles (packing A with `copy`), then
    /// the row edge (`edge`: the one-row tiles may take it instead).
    #[allow(clippy::too_many_arguments)]
    fn panel(
        &self,
        fx: &mut Fx,
        kb: &KBlock,
        from: Value,
        b: (Value, Step),
        c_panel: Value,
        cols: usize,
        edge: Edge,
        copy: CopyA,
    ) {
        let (mr, end) = (self.mr, self.end);
        let i = fx.for_whole_steps(from, end, mr, |fx, i| {
            let args = self.whole_args(fx, kb, i, b, c_panel, cols, copy);
            self.tile(fx, TileRows::All, &args);
        });
        let mut at_edge = fx.lt(i, end);
        if let (Edge::LeaveFewToRowTiles, Some((_, few))) = (edge, self.few_edge_rows) {
            let many = fx.b.ins().bnot(few);
            at_edge = fx.b.ins().band(at_edge, many);
        }
        fx.if_then(at_edge, |fx| {
            let a = if kb.packed_a.is_some() || self.a_row_static.is_some() { ARead::Packed } else { ARead::PerRow };
            let edge_tile = TileSpec {
                shape: self.mm.plan.tile,
                rows: TileRows::Edge,
                cols,
                a,
                copy_a: false,
                copy_b: false,
                epilogue: self.fused_ops,
            };
            if self.family.runs(&MicroOp::Tile(edge_tile)) {
                let rows_left = fx.b.ins().isub(end, i);
                let mut args = self.tile_args(fx, kb, i, b, c_panel, cols);
                args.rows = Some(rows_left);
                self.tile(fx, TileRows::Edge, &args);
            } else {
                let cols_v = fx.iconst(cols as i64);
                self.stack_tile(fx, kb, i, b, c_panel, cols_v);
            }
        });
    }

    /// The full panels' B and C at panel `p`.
    fn full_panel(&self, fx: &mut Fx, kb: &KBlock, p: Value) -> (Value, Value) {
        let pb = fx.mul(p, kb.panel_stride);
        let pc = fx.mul_imm(p, self.nr * 4);
        (fx.add(kb.b_k0, pb), fx.add(self.c_base, pc))
    }

    /// A shallow K block: each tile is a few FMAs and a pass over its rows of C (and of
    /// the parameter a fused update writes), so C is walked row tile by row tile across
    /// the panels, which streams it, rather than down each panel, which strides it a
    /// row at a time.
    fn across_panels(&self, fx: &mut Fx, kb: &KBlock) {
        self.pack_rows(fx, kb, self.begin);
        let edge = fx.for_whole_steps(self.begin, self.end, self.mr, |fx, i| {
            fx.for_range(self.p_lo, self.p_hi, 1, |fx, p| {
                let (b_panel, c_panel) = self.full_panel(fx, kb, p);
                let args = self.whole_args(fx, kb, i, (b_panel, self.full_step), c_panel, self.nr as usize, CopyA::No);
                self.tile(fx, TileRows::All, &args);
            });
        });
        fx.for_range(self.p_lo, self.p_hi, 1, |fx, p| {
            let (b_panel, c_panel) = self.full_panel(fx, kb, p);
            let b = (b_panel, self.full_step);
            self.panel(fx, kb, edge, b, c_panel, self.nr as usize, Edge::LeaveFewToRowTiles, CopyA::No);
        });
    }

    /// A deep K block: down each panel, whose K block stays in L1; the first panel's
    /// whole tiles pack A where they copy it.
    fn down_panels(&self, fx: &mut Fx, kb: &KBlock) {
        let mut p_from = self.p_lo;
        if self.copying_a {
            // The edge tile, packed; the first panel packs the whole tiles.
            let span = fx.b.ins().isub(self.end, self.begin);
            let edge_rows = fx.b.ins().urem_imm_u(span, self.mr);
            let edge_start = fx.b.ins().isub(self.end, edge_rows);
            self.pack_rows(fx, kb, edge_start);
            self.full_panel_tiles(fx, kb, self.p_lo, CopyA::Yes);
            p_from = fx.b.ins().iadd_imm_s(self.p_lo, 1);
        } else {
            self.pack_rows(fx, kb, self.begin);
        }
        fx.for_range(p_from, self.p_hi, 1, |fx, p| self.full_panel_tiles(fx, kb, p, CopyA::No));
    }

    /// Full panel `p`, its whole tiles packing A with `copy`. A row-major B in place is
    /// copied by the first row tile and read from the copy by the others (when there
    /// are others).
    fn full_panel_tiles(&self, fx: &mut Fx, kb: &KBlock, p: Value, copy: CopyA) {
        let (b_panel, c_panel) = self.full_panel(fx, kb, p);
        let (nr, in_place) = (self.nr as usize, (b_panel, self.full_step));
        let Some(b_copy) = self.b_copy else {
            return self.panel(fx, kb, self.begin, in_place, c_panel, nr, Edge::LeaveFewToRowTiles, copy);
        };
        let second = fx.b.ins().iadd_imm_s(self.begin, self.mr);
        let others = fx.lt(second, self.end);
        let copy_then_read = |fx: &mut Fx| {
            let mut args = self.whole_args(fx, kb, self.begin, in_place, c_panel, nr, copy);
            args.copy_b = Some(b_copy);
            self.tile(fx, TileRows::All, &args);
            let copied = (b_copy, self.packed_step);
            self.panel(fx, kb, second, copied, c_panel, nr, Edge::LeaveFewToRowTiles, copy);
        };
        let read_in_place =
            |fx: &mut Fx| self.panel(fx, kb, self.begin, in_place, c_panel, nr, Edge::LeaveFewToRowTiles, copy);
        fx.if_else(others, copy_then_read, read_in_place);
    }

    /// The last one or two rows, from `edge_start`, as one-row tiles across the full
    /// panels of a row-major B read in place.
    fn edge_row_tiles(&self, fx: &mut Fx, kb: &KBlock, edge_start: Value) {
        let (nr, kc) = (self.nr, self.mm.plan.kc as i64);
        let (b_k0, b_step) = (self.in_place_k0(fx, kb.k_start), step_of(fx, self.mm.b_k));
        // The packed edge tile, whose rows are 4 bytes apart.
        let edge_tile = kb.packed_a.map(|base| {
            let tile = fx.mul_imm(edge_start, kc * 4);
            fx.add(base, tile)
        });
        fx.for_range(edge_start, self.end, 1, |fx, r| {
            let a = match edge_tile {
                Some(tile) => {
                    let within = fx.b.ins().isub(r, edge_start);
                    let within = fx.mul_imm(within, 4);
                    ARows::Uniform { base: fx.add(tile, within), stride: 4 }
                }
                None => {
                    let off = fx.mul(r, self.a_row);
                    let stride = self.a_row_static.expect("row tiles need static A rows or packed ones");
                    ARows::Uniform { base: fx.add(kb.a_k0, off), stride }
                }
            };
            let c_off = fx.mul(r, self.ldc);
            let c_row = fx.add(self.c_base, c_off);
            // The one-row tile of `cols` columns from byte `col` of a row.
            let row_tile = |fx: &mut Fx, col: Value, cols: usize| {
                let c = fx.add(c_row, col);
                let c_panel = fx.add(self.c_base, col);
                let b_panel = fx.add(b_k0, col);
                let finish = self.finish_at(fx, kb, c, c_panel);
                let args = TileArgs {
                    a: a.clone(),
                    a_step: self.a_step,
                    b_panel,
                    b_step,
                    kb: kb.kb,
                    c,
                    ldc: self.ldc,
                    accumulate: kb.accumulate,
                    cols,
                    finish,
                    copy_a: None,
                    copy_b: None,
                    rows: None,
                };
                self.tile(fx, TileRows::One, &args);
            };
            if self.region.columns.is_none() {
                for &(col0, cols) in &self.row_groups {
                    let col = fx.iconst(col0 as i64 * 4);
                    row_tile(fx, col, cols);
                }
                return;
            }
            // The chunk's panels in groups as wide as the static ones, then one
            // narrower group of the panels left, if any.
            let widest = self.row_groups[0].1;
            let from = fx.mul_imm(self.p_lo, nr * 4);
            let to = fx.mul_imm(self.p_hi, nr * 4);
            let left = fx.for_whole_steps(from, to, widest as i64 * 4, |fx, col| row_tile(fx, col, widest));
            let rest = fx.b.ins().isub(to, left);
            for cols in (nr as usize..widest).step_by(nr as usize) {
                let these = fx.b.ins().icmp_imm_s(IntCC::Equal, rest, cols as i64 * 4);
                fx.if_then(these, |fx| row_tile(fx, left, cols));
            }
        });
    }

    /// The partial panel, always packed (none for a static N of whole panels: no code,
    /// and no tile defined only to be optimized away).
    fn partial_panel(&self, fx: &mut Fx, kb: &KBlock) {
        let last_panel = |fx: &mut Fx| {
            let pb = fx.mul(self.full, self.panel_bytes);
            fx.add(kb.packed_k0, pb)
        };
        let b_panel = pick(self.mm, fx, last_panel, |_| kb.packed_k0);
        let pc = fx.mul_imm(self.full, self.nr * 4);
        let c_panel = fx.add(self.c_base, pc);
        let b = (b_panel, self.packed_step);
        match self.static_rem {
            Some(cols) if cols > 0 => self.panel(fx, kb, self.begin, b, c_panel, cols, Edge::Tiles, CopyA::No),
            _ => fx.for_range(self.begin, self.end, self.mr, |fx, i| self.stack_tile(fx, kb, i, b, c_panel, self.rem)),
        }
    }
}

/// Whether whole tiles also pack the A they read.
#[derive(Clone, Copy, PartialEq, Eq)]
enum CopyA {
    No,
    Yes,
}

/// Who takes a panel's last rows.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Edge {
    /// Edge tiles (or the stack buffer).
    Tiles,
    /// The one-row tiles when one or two rows are left (if the plan has them), else
    /// edge tiles.
    LeaveFewToRowTiles,
}

/// The tiles' epilogue operands as distances from C (computed once per row block):
/// for the epilogues the assembled tiles apply (`microkernel/x86`'s `variants`), `None`
/// for any other.
fn fused_operands(fx: &mut Fx, ops: &[EpilogueOp], c_base: Value) -> Option<Fused> {
    let delta = |fx: &mut Fx, slot: usize| {
        let base = fx.slot(slot);
        fx.b.ins().isub(base, c_base)
    };
    Some(match ops {
        [EpilogueOp::Update(u)] if u.rule == UpdateRule::Sgd { weight_decay: 0.0 } => {
            let p = delta(fx, u.p);
            let p_out = delta(fx, u.p_out.expect("a fused update writes the parameter"));
            Fused::Sgd { p, p_out, lr: fx.slot(u.scalars[0]) }
        }
        [EpilogueOp::Bias(b)] | [EpilogueOp::Bias(b), EpilogueOp::Activation(_)] => {
            Fused::Dense { bias: Some(delta(fx, *b)) }
        }
        [EpilogueOp::Activation(_)] => Fused::Dense { bias: None },
        [EpilogueOp::ReluMask(h)] => Fused::Mask { h: delta(fx, *h) },
        _ => return None,
    })
}
