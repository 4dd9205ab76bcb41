//! Convolutions as implicit matrix products on the register tiles (`ConvGemm`).
//!
//! ```text
//! flip (data gradient):     w'[c, m, k] = w[m, c, K−1−k]
//! pad (when it pads):       each input plane copied into a zeroed, padded plane
//! forward, item (n, g, q):  for each K block of (input channel, tap)
//!                               gather panel q's windows → B block on the stack
//!                               row tiles of the group's output channels (A: w)
//!                           over the grid: copy the panel's outputs out of the stack
//!                           [a fused convolution: through its epilogue]
//! filter,  item (g, q):     for each image, for each K block of output positions
//!                               gather windows → B block (columns: panel q's taps)
//!                               [over the grid: stage dy's K block, zeros off the outputs]
//!                               row tiles of the group's output channels (A: dy)
//! ```
//!
//! The windows are read from padded planes, so the gather has no bounds tests: the
//! element at output position `p` and tap `k` is at `offset(k) + offset(p)`, one
//! offset per K row and one per column, each computed once per block (over the grid,
//! `offset(p)` is `p`, and a K row of a forward panel is one contiguous run). Each
//! element of the result is one chain of FMAs over K within a K block, as in the
//! matrix products (`kernels/matmul/`), by the family's tiles or the portable ones
//! with the same bits; an item writes only its own outputs, so the bits depend on
//! neither the threads nor the family.

use super::copy::{copy_floats, copy_strided, fill_floats};
use super::epilogue::{emit_output_run, OutputOperands};
use crate::clif::{Fx, PTR};
use crate::microkernel::{
    cranelift, ARead, ARows, KernelFamily, MicroArgs, MicroOp, Step, TileArgs, TileRows, TileSpec,
};
use crate::program::{ConvGemm, ConvGemmOp, OutputEpilogue, WindowKernel, WindowOp};
use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::{types, InstBuilder, Value};
use nnc_ir::{PoolKind, Size};

const F: i64 = 4;

fn prod(v: &[u64; 3]) -> u64 {
    v.iter().product()
}

fn planes(batch: Size, per: u64) -> Size {
    Size { fixed: batch.fixed * per, per_batch: batch.per_batch * per }
}

/// Work items of the pad phase: the input planes.
pub(crate) fn pad_items(w: &WindowKernel) -> Size {
    planes(w.batch, w.channels_in())
}

/// Work items of the product: column panels of every image and group (forward), of
/// every group (filter).
pub(crate) fn items(c: &ConvGemm) -> Size {
    let w = &c.geometry;
    match c.op {
        ConvGemmOp::Forward => planes(w.batch, w.groups * c.row_blocks() * c.positions().div_ceil(c.tile.nr() as u64)),
        ConvGemmOp::Filter => Size::fixed(w.groups * (w.cg * prod(&w.kernel)).div_ceil(c.tile.nr() as u64)),
    }
}

/// Floating-point operations of one item (for the thread split).
pub(crate) fn item_work(c: &ConvGemm) -> Size {
    let w = &c.geometry;
    let (taps, positions) = (prod(&w.kernel), c.positions());
    match c.op {
        ConvGemmOp::Forward => Size::fixed(2 * c.row_block * w.cg * taps * (c.tile.nr() as u64).min(positions)),
        ConvGemmOp::Filter => planes(w.batch, 2 * w.mg * c.tile.nr() as u64 * positions),
    }
}

/// Copies input planes `[fx.begin, fx.end)` of `w`'s input at `input` into planes
/// padded by `w`'s pads at `padded`, each split into phase planes of `phases` (1 on
/// axis 0; see `ConvGemm::padded`). The padding is zero, or -inf for max pooling,
/// so that it changes no sum and no maximum.
pub(crate) fn emit_pad_planes(fx: &mut Fx, w: &WindowKernel, (input, padded): (usize, usize), phases: [u64; 3]) {
    let fill = match w.op {
        WindowOp::Pool(PoolKind::Max) => f32::NEG_INFINITY,
        _ => 0.0,
    };
    let inp = w.input;
    let q: [u64; 3] = std::array::from_fn(|a| (w.input[a] + w.pads_begin[a] + w.pads_end[a]).div_ceil(phases[a]));
    let (s1, s2) = (phases[1] as i64, phases[2] as i64);
    let phase_plane = prod(&q) as i64;
    let region = phase_plane * s1 * s2;
    let (src_base, dst_base) = (fx.slot(input), fx.slot(padded));
    let (begin, end) = (fx.begin, fx.end);
    fx.for_range(begin, end, 1, |fx, plane| {
        let src = fx.mul_imm(plane, prod(&inp) as i64 * F);
        let src = fx.add(src_base, src);
        let dst = fx.mul_imm(plane, region * F);
        let dst = fx.add(dst_base, dst);
        fill_floats(fx, dst, region, fill);
        let z = fx.iconst(0);
        let rows = fx.iconst((inp[0] * inp[1]) as i64);
        fx.for_range(z, rows, 1, |fx, r| {
            let i0 = fx.b.ins().udiv_imm_u(r, inp[1] as i64);
            let i1 = fx.b.ins().urem_imm_u(r, inp[1] as i64);
            let src_row = fx.mul_imm(r, (inp[2] as i64) * F);
            let src_row = fx.add(src, src_row);
            // Padded row r1 lies in row phase r1 mod s1, at row r1 / s1.
            let r0 = fx.b.ins().iadd_imm_s(i0, w.pads_begin[0] as i64);
            let r1 = fx.b.ins().iadd_imm_s(i1, w.pads_begin[1] as i64);
            let (p1, q1) = match s1 {
                1 => (fx.iconst(0), r1),
                _ => (fx.b.ins().urem_imm_u(r1, s1), fx.b.ins().udiv_imm_u(r1, s1)),
            };
            let row = fx.mul_imm(r0, q[1] as i64);
            let row = fx.add(row, q1);
            let row = fx.mul_imm(row, q[2] as i64);
            let phase_row = fx.mul_imm(p1, s2);
            // The input columns of each column phase: every s2-th from the first.
            let pb2 = w.pads_begin[2] as i64;
            for c2 in 0..s2 {
                let first = (c2 - pb2).rem_euclid(s2);
                if first >= inp[2] as i64 {
                    continue;
                }
                let count = (inp[2] as i64 - first + s2 - 1) / s2;
                let col = (first + pb2) / s2;
                let phase = fx.b.ins().iadd_imm_s(phase_row, c2);
                let at = fx.mul_imm(phase, phase_plane);
                let at = fx.add(at, row);
                let at = fx.b.ins().iadd_imm_s(at, col);
                let at = fx.mul_imm(at, F);
                let to = fx.add(dst, at);
                let from = fx.b.ins().iadd_imm_s(src_row, first * F);
                let len = fx.iconst(count);
                match s2 {
                    1 => copy_floats(fx, from, to, len),
                    _ => copy_strided(fx, (from, s2 * F), (to, F), len),
                }
            }
        });
    });
}

/// The data gradient's flipped weights: `w'[g·mg + c, m, k] = w[g·cg + m, c, K−1−k]`
/// in the transposed convolution's terms (its `cg` are the forward's output channels).
pub(crate) fn emit_flip(fx: &mut Fx, c: &ConvGemm) {
    let Some((src_slot, dst_slot)) = c.flip else { return };
    let w = &c.geometry;
    let taps = prod(&w.kernel) as i64;
    let (src, dst) = (fx.slot(src_slot), fx.slot(dst_slot));
    let z = fx.iconst(0);
    let rows = fx.iconst((w.groups * w.mg * w.cg) as i64);
    // Row (o, m) of w': o = g·mg + c an output channel, m an input channel of the group.
    fx.for_range(z, rows, 1, |fx, row| {
        let o = fx.b.ins().udiv_imm_u(row, w.cg as i64);
        let m = fx.b.ins().urem_imm_u(row, w.cg as i64);
        let g = fx.b.ins().udiv_imm_u(o, w.mg as i64);
        let cc = fx.b.ins().urem_imm_u(o, w.mg as i64);
        let src_row = fx.mul_imm(g, w.cg as i64);
        let src_row = fx.add(src_row, m);
        let src_row = fx.mul_imm(src_row, w.mg as i64);
        let src_row = fx.add(src_row, cc);
        let src_row = fx.mul_imm(src_row, taps * F);
        let src_row = fx.add(src, src_row);
        let dst_row = fx.mul_imm(row, taps * F);
        let dst_row = fx.add(dst, dst_row);
        for k in 0..taps {
            let x = fx.load(types::F32, src_row, ((taps - 1 - k) * F) as i32);
            fx.store(x, dst_row, (k * F) as i32);
        }
    });
}

/// The address of the first of group `g`'s planes of image `n`, in an array of
/// `channels` planes per image, `per_group` per group, `plane` floats each.
pub(crate) fn group_planes(
    fx: &mut Fx,
    base: Value,
    (n, g): (Value, Value),
    (channels, per_group): (i64, i64),
    plane: i64,
) -> Value {
    let first = fx.mul_imm(n, channels);
    let in_group = fx.mul_imm(g, per_group);
    let first = fx.add(first, in_group);
    let at = fx.mul_imm(first, plane * F);
    fx.add(base, at)
}

/// The element offset (in floats, within an image's padded planes of the group) of
/// flat tap index `k` of input channel `k / taps`: in the phase plane of its offset
/// within the window, `(t·d) mod s`, at `(t·d) / s` (a phase plane per stride).
fn tap_offset(fx: &mut Fx, c: &ConvGemm, k: Value) -> Value {
    let w = &c.geometry;
    let (pd, s) = (c.read_dims(), c.phases);
    let taps = prod(&w.kernel) as i64;
    let ch = fx.b.ins().udiv_imm_u(k, taps);
    let t = fx.b.ins().urem_imm_u(k, taps);
    let t0 = fx.b.ins().udiv_imm_u(t, (w.kernel[1] * w.kernel[2]) as i64);
    let t12 = fx.b.ins().urem_imm_u(t, (w.kernel[1] * w.kernel[2]) as i64);
    let t1 = fx.b.ins().udiv_imm_u(t12, w.kernel[2] as i64);
    let t2 = fx.b.ins().urem_imm_u(t12, w.kernel[2] as i64);
    let off = fx.mul_imm(ch, c.channel_plane() as i64);
    let a0 = fx.mul_imm(t0, (w.dilations[0] * pd[1] * pd[2]) as i64);
    let off = fx.add(off, a0);
    let r1 = fx.mul_imm(t1, w.dilations[1] as i64);
    let r2 = fx.mul_imm(t2, w.dilations[2] as i64);
    // (phase, position in it) of a window offset along an axis of stride `s`.
    let split = |fx: &mut Fx, r: Value, s: u64| -> (Value, Value) {
        match s {
            1 => (fx.iconst(0), r),
            _ => (fx.b.ins().urem_imm_u(r, s as i64), fx.b.ins().udiv_imm_u(r, s as i64)),
        }
    };
    let (p1, q1) = split(fx, r1, s[1]);
    let (p2, q2) = split(fx, r2, s[2]);
    let phase = fx.mul_imm(p1, s[2] as i64);
    let phase = fx.add(phase, p2);
    let phase = fx.mul_imm(phase, prod(&pd) as i64);
    let off = fx.add(off, phase);
    let a1 = fx.mul_imm(q1, pd[2] as i64);
    let off = fx.add(off, a1);
    fx.add(off, q2)
}

/// The element offset of output position `p`'s window in a padded plane.
fn position_offset(fx: &mut Fx, c: &ConvGemm, p: Value) -> Value {
    let w = &c.geometry;
    let pd = c.read_dims();
    let o0 = fx.b.ins().udiv_imm_u(p, (w.output[1] * w.output[2]) as i64);
    let o12 = fx.b.ins().urem_imm_u(p, (w.output[1] * w.output[2]) as i64);
    let o1 = fx.b.ins().udiv_imm_u(o12, w.output[2] as i64);
    let o2 = fx.b.ins().urem_imm_u(o12, w.output[2] as i64);
    let a0 = fx.mul_imm(o0, (w.strides[0] * pd[1] * pd[2]) as i64);
    let a1 = fx.mul_imm(o1, (w.strides[1] * pd[2]) as i64);
    let a2 = fx.mul_imm(o2, w.strides[2] as i64);
    let off = fx.add(a0, a1);
    fx.add(off, a2)
}

/// `table[j] = offset(first + j)` (i64) for `j < cols`.
fn offset_table(fx: &mut Fx, table: Value, first: Value, cols: usize, offset: &dyn Fn(&mut Fx, Value) -> Value) {
    let z = fx.iconst(0);
    let n = fx.iconst(cols as i64);
    fx.for_range(z, n, 1, |fx, j| {
        let i = fx.add(first, j);
        let off = offset(fx, i);
        let off = fx.mul_imm(off, F);
        let at = fx.mul_imm(j, 8);
        let at = fx.add(table, at);
        fx.store(off, at, 0);
    });
}

/// The B block's rows `[0, kb)`, `cols` columns each: row `r` is at `row_base(r)`
/// (bytes), column `j` `table[j]` bytes further.
fn gather(
    fx: &mut Fx,
    block: Value,
    nr: i64,
    kb: Value,
    cols: usize,
    table: Value,
    row_base: &dyn Fn(&mut Fx, Value) -> Value,
) {
    let z = fx.iconst(0);
    fx.for_range(z, kb, 1, |fx, r| {
        let src = row_base(fx, r);
        let dst = fx.mul_imm(r, nr * F);
        let dst = fx.add(block, dst);
        let (sv, tp, dp) = (fx.var(PTR, src), fx.var(PTR, table), fx.var(PTR, dst));
        let z = fx.iconst(0);
        let n = fx.iconst(cols as i64);
        fx.for_range(z, n, 1, |fx, _| {
            let (src, t, d) = (fx.get(sv), fx.get(tp), fx.get(dp));
            let off = fx.load(types::I64, t, 0);
            let at = fx.add(src, off);
            let x = fx.load(types::F32, at, 0);
            fx.store(x, d, 0);
            let (t, d) = (fx.b.ins().iadd_imm_s(t, 8), fx.b.ins().iadd_imm_s(d, F));
            fx.set(tp, t);
            fx.set(dp, d);
            // Keep the row's base in a block parameter too.
            fx.set(sv, src);
        });
    });
}

/// The row tiles of rows `[0, rows)` of one column panel: A's rows `a_row` bytes apart
/// from `a` (its K block's first column), B the gathered block, C's rows `ldc` apart
/// from `c_panel`.
struct Tiles<'a> {
    c: &'a ConvGemm,
    family: &'a dyn KernelFamily,
    rows: i64,
    a_row: i64,
    ldc: i64,
    block: Value,
    /// `mr × nr` floats for an edge tile the family does not run.
    stack: Value,
}

impl Tiles<'_> {
    fn spec(&self, rows: TileRows, cols: usize) -> TileSpec<'static> {
        TileSpec {
            shape: self.c.tile,
            rows,
            cols,
            a: ARead::InPlace { k_contiguous: true },
            copy_a: false,
            copy_b: false,
            epilogue: &[],
        }
    }

    /// `b` the B operand's first row and the bytes between its rows.
    #[allow(clippy::too_many_arguments)]
    fn args(
        &self,
        fx: &mut Fx,
        a: Value,
        (b, b_step): (Value, i64),
        kb: Value,
        c: Value,
        accumulate: Value,
        cols: usize,
    ) -> TileArgs {
        let ldc = fx.iconst(self.ldc);
        TileArgs {
            a: ARows::Uniform { base: a, stride: self.a_row },
            a_step: Step::Static(F),
            b_panel: b,
            b_step: Step::Static(b_step),
            kb,
            c,
            ldc,
            accumulate,
            cols,
            finish: None,
            copy_a: None,
            copy_b: None,
            rows: None,
        }
    }

    fn tile(&self, fx: &mut Fx, rows: TileRows, args: &TileArgs) {
        let op = MicroOp::Tile(self.spec(rows, args.cols));
        match self.family.kernel_for(&op) {
            Some(kernels) => kernels.emit(fx, &op, &MicroArgs::Tile(args)),
            None => cranelift::emit_tile(fx, self.c.tile, args),
        }
    }

    /// The row tiles over the gathered block.
    fn run(&self, fx: &mut Fx, a: Value, kb: Value, c_panel: Value, accumulate: Value, cols: usize) {
        let nr = self.c.tile.nr() as i64;
        self.run_on(fx, a, (self.block, nr * F), kb, c_panel, accumulate, cols)
    }

    /// The row tiles over B rows `b.1` bytes apart from `b.0`.
    #[allow(clippy::too_many_arguments)]
    fn run_on(
        &self,
        fx: &mut Fx,
        a: Value,
        b: (Value, i64),
        kb: Value,
        c_panel: Value,
        accumulate: Value,
        cols: usize,
    ) {
        let mr = self.c.tile.mr as i64;
        let whole = self.rows / mr * mr;
        for i in (0..whole).step_by(mr as usize) {
            let ai = fx.b.ins().iadd_imm_s(a, i * self.a_row);
            let ci = fx.b.ins().iadd_imm_s(c_panel, i * self.ldc);
            let args = self.args(fx, ai, b, kb, ci, accumulate, cols);
            self.tile(fx, TileRows::All, &args);
        }
        let left = self.rows - whole;
        if left == 0 {
            return;
        }
        let ai = fx.b.ins().iadd_imm_s(a, whole * self.a_row);
        let ci = fx.b.ins().iadd_imm_s(c_panel, whole * self.ldc);
        if self.family.runs(&MicroOp::Tile(self.spec(TileRows::Edge, cols))) {
            let mut args = self.args(fx, ai, b, kb, ci, accumulate, cols);
            args.rows = Some(fx.iconst(left));
            return self.tile(fx, TileRows::Edge, &args);
        }
        // A whole tile of rows clamped to the last, into the stack, then its valid rows.
        let nr = self.c.tile.nr() as i64;
        let rows: Vec<Value> = (0..mr).map(|r| fx.b.ins().iadd_imm_s(ai, r.min(left - 1) * self.a_row)).collect();
        let no = fx.b.ins().iconst(types::I8, 0);
        let mut args = self.args(fx, ai, b, kb, self.stack, no, nr as usize);
        args.a = ARows::Each(rows);
        args.ldc = fx.iconst(nr * F);
        cranelift::emit_tile(fx, self.c.tile, &args);
        for r in 0..left {
            for j in 0..cols as i64 {
                let x = fx.load(types::F32, self.stack, ((r * nr + j) * F) as i32);
                let at = (r * self.ldc + j * F) as i32;
                let old = fx.load(types::F32, ci, at);
                let sum = fx.b.ins().fadd(old, x);
                let y = fx.b.ins().select(accumulate, sum, x);
                fx.store(y, ci, at);
            }
        }
    }
}

/// The gathered K block on the stack, zeroed once so the columns past a partial
/// panel's stay zero.
fn block_buffer(fx: &mut Fx, c: &ConvGemm) -> Value {
    let bytes = c.kc as i64 * c.tile.nr() as i64 * F;
    let raw = fx.stack_buffer((bytes + 64) as u32);
    let raw = fx.b.ins().iadd_imm_s(raw, 63);
    let block = fx.b.ins().band_imm_s(raw, -64);
    let zero = fx.b.ins().f32const(0.0);
    let z = fx.iconst(0);
    let end = fx.iconst(bytes);
    fx.for_range(z, end, F, |fx, i| {
        let at = fx.add(block, i);
        fx.store(zero, at, 0);
    });
    block
}

pub(crate) fn emit(fx: &mut Fx, c: &ConvGemm, family: &dyn KernelFamily) {
    match c.op {
        ConvGemmOp::Forward => emit_forward(fx, c, family),
        ConvGemmOp::Filter => emit_filter(fx, c, family),
    }
}

/// `body(len, column, output)` for each run of outputs among grid positions
/// `[from, to)` (at most one per grid row): its length, and the byte offsets of its
/// first position from grid position `from` and in the output plane.
fn for_output_runs(fx: &mut Fx, c: &ConvGemm, from: Value, to: Value, body: &dyn Fn(&mut Fx, Value, Value, Value)) {
    for_runs(fx, c, (from, to), (0, c.geometry.output[2] as i64), body)
}

/// `body(len, column, output)` for each run of grid positions `[from, to)` whose
/// column in their grid row is in `[lo, hi)`: the outputs (`[0, O₂)`), or the rest.
fn for_runs(
    fx: &mut Fx,
    c: &ConvGemm,
    (from, to): (Value, Value),
    (lo, hi): (i64, i64),
    body: &dyn Fn(&mut Fx, Value, Value, Value),
) {
    let (row, o2) = (c.grid.expect("a grid product") as i64, c.geometry.output[2] as i64);
    let first = fx.b.ins().udiv_imm_u(from, row);
    let last = fx.b.ins().iadd_imm_s(to, -1);
    let last = fx.b.ins().udiv_imm_u(last, row);
    let end = fx.b.ins().iadd_imm_s(last, 1);
    fx.for_range(first, end, 1, |fx, r| {
        let start = fx.mul_imm(r, row);
        let run_start = fx.b.ins().iadd_imm_s(start, lo);
        let run_start = fx.b.ins().smax(run_start, from);
        let run_end = fx.b.ins().iadd_imm_s(start, hi);
        let run_end = fx.min(run_end, to);
        let some = fx.lt(run_start, run_end);
        fx.if_then(some, |fx| {
            let len = fx.b.ins().isub(run_end, run_start);
            let column = fx.b.ins().isub(run_start, from);
            let column = fx.mul_imm(column, F);
            // Grid position (r, j) is output (r, j): r·(row − O₂) positions fewer.
            let skipped = fx.mul_imm(r, row - o2);
            let output = fx.b.ins().isub(run_start, skipped);
            let output = fx.mul_imm(output, F);
            body(fx, len, column, output);
        });
    });
}

/// `len` floats of each of `rows` rows, from rows `src.1` bytes apart to rows `dst.1`
/// bytes apart.
fn copy_rows(fx: &mut Fx, rows: u64, src: (Value, i64), dst: (Value, i64), len: Value) {
    for_rows(fx, rows, src, dst, &|fx, _, s, d| copy_floats(fx, s, d, len));
}

/// `body(m, src row, dst row)` for each of `rows` rows, `src.1` and `dst.1` bytes apart.
fn for_rows(fx: &mut Fx, rows: u64, src: (Value, i64), dst: (Value, i64), body: &dyn Fn(&mut Fx, Value, Value, Value)) {
    let z = fx.iconst(0);
    let end = fx.iconst(rows as i64);
    fx.for_range(z, end, 1, |fx, m| {
        let s = fx.mul_imm(m, src.1);
        let s = fx.add(src.0, s);
        let d = fx.mul_imm(m, dst.1);
        let d = fx.add(dst.0, d);
        body(fx, m, s, d);
    });
}

/// A fused convolution's epilogue ([`emit_output_run`]) over `rows` output channels
/// from `channel`: row `m`'s `len` outputs from `src.0 + m·src.1` to `dst.0 + m·dst.1`.
fn epilogue_rows(
    fx: &mut Fx,
    (e, operands): (&OutputEpilogue, &OutputOperands),
    (channel, rows): (Value, u64),
    (src, dst): ((Value, i64), (Value, i64)),
    len: Value,
) {
    for_rows(fx, rows, src, dst, &|fx, m, s, d| {
        let ch = fx.add(channel, m);
        let bias = operands.channel(fx, ch);
        emit_output_run(fx, e, (s, d), len, bias, operands.residual);
    });
}

/// Items `(n, g, q)`: `y[n, g·mg + m, p] = Σ_k w[g·mg + m, k]·window(n, g, k, p)` for
/// the output positions `p` of column panel `q`.
fn emit_forward(fx: &mut Fx, c: &ConvGemm, family: &dyn KernelFamily) {
    let w = &c.geometry;
    let (nr, kc) = (c.tile.nr() as i64, c.kc as i64);
    let depth = (w.cg * prod(&w.kernel)) as i64;
    let (outputs, positions) = (prod(&w.output) as i64, c.positions() as i64);
    let panels = (positions + nr - 1) / nr;
    let plane = c.channel_plane() as i64;
    let (c_in, c_out) = (w.channels_in() as i64, w.channels_out() as i64);
    let block = block_buffer(fx, c);
    let table = fx.stack_buffer((nr * 8) as u32);
    let stack = fx.stack_buffer((c.tile.mr as i64 * nr * F) as u32);
    // Over the grid the tiles write a panel of C on the stack, whose outputs are then
    // copied out; else C itself.
    let staged = c.grid.map(|_| fx.stack_buffer((w.mg as i64 * nr * F) as u32));
    let ldc = if staged.is_some() { nr * F } else { outputs * F };
    let (row_block, row_blocks) = (c.row_block as i64, c.row_blocks() as i64);
    // A full panel of a one-tap product reads its B rows where they are: no gather
    // (the tiles give the same bits either way).
    let in_place = c.reads_in_place();
    let input = fx.slot(c.padded.unwrap_or(c.input));
    let (a_slot, out) = (fx.slot(c.a), fx.slot(c.out));
    let epilogue = w.epilogue.as_ref().map(|e| (e, OutputOperands::new(fx, e, out)));
    let (begin, end) = (fx.begin, fx.end);
    fx.for_range(begin, end, 1, |fx, item| {
        // Item (n, g, row block, panel q).
        let q = fx.b.ins().urem_imm_u(item, panels);
        let rest = fx.b.ins().udiv_imm_u(item, panels);
        let rb = fx.b.ins().urem_imm_u(rest, row_blocks);
        let ng = fx.b.ins().udiv_imm_u(rest, row_blocks);
        let n = fx.b.ins().udiv_imm_u(ng, w.groups as i64);
        let g = fx.b.ins().urem_imm_u(ng, w.groups as i64);
        let planes_at = group_planes(fx, input, (n, g), (c_in, w.cg as i64), plane);
        let r0 = fx.mul_imm(rb, row_block);
        let first_row = fx.mul_imm(g, w.mg as i64);
        let first_row = fx.add(first_row, r0);
        let a = fx.mul_imm(first_row, depth * F);
        let a = fx.add(a_slot, a);
        let y_rows = group_planes(fx, out, (n, g), (c_out, w.mg as i64), outputs);
        let y_off = fx.mul_imm(r0, outputs * F);
        let y_rows = fx.add(y_rows, y_off);
        let p0 = fx.mul_imm(q, nr);
        // Rows [r0, r0 + rows) of the group's output channels, `cols` columns.
        let panel = |fx: &mut Fx, cols: usize, rows: u64| {
            let tiles = Tiles { c, family, rows: rows as i64, a_row: depth * F, ldc, block, stack };
            if c.grid.is_none() {
                offset_table(fx, table, p0, cols, &|fx, p| position_offset(fx, c, p));
            }
            let staged = staged.map(|panel| {
                let at = fx.mul_imm(r0, nr * F);
                fx.add(panel, at)
            });
            let c_panel = match staged {
                Some(panel) => panel,
                None => {
                    let at = fx.mul_imm(p0, F);
                    fx.add(y_rows, at)
                }
            };
            let z = fx.iconst(0);
            let k_end = fx.iconst(depth);
            fx.for_range(z, k_end, kc, |fx, k0| {
                let left = fx.b.ins().isub(k_end, k0);
                let kc_v = fx.iconst(kc);
                let kb = fx.min(left, kc_v);
                let row_base = |fx: &mut Fx, r: Value| {
                    let k = fx.add(k0, r);
                    let off = tap_offset(fx, c, k);
                    let off = fx.mul_imm(off, F);
                    fx.add(planes_at, off)
                };
                let ak = fx.mul_imm(k0, F);
                let ak = fx.add(a, ak);
                let accumulate = fx.b.ins().icmp_imm_s(IntCC::NotEqual, k0, 0);
                if in_place && cols == nr as usize {
                    // One tap: K row k is input channel k's run from the panel's first
                    // position, one channel plane after the row before.
                    let zero = fx.iconst(0);
                    let first = row_base(fx, zero);
                    let q0 = fx.mul_imm(p0, F);
                    let b = fx.add(first, q0);
                    return tiles.run_on(fx, ak, (b, plane * F), kb, c_panel, accumulate, cols);
                }
                match c.grid {
                    // K row k of the panel: `cols` floats from its tap's first.
                    Some(_) => {
                        let z = fx.iconst(0);
                        let q0 = fx.mul_imm(p0, F);
                        fx.for_range(z, kb, 1, |fx, r| {
                            let src = row_base(fx, r);
                            let src = fx.add(src, q0);
                            let dst = fx.mul_imm(r, nr * F);
                            let dst = fx.add(block, dst);
                            for i in (0..cols as i32 / 4 * 4).step_by(4) {
                                let x = fx.load(types::F32X4, src, i * F as i32);
                                fx.store(x, dst, i * F as i32);
                            }
                            for i in cols as i32 / 4 * 4..cols as i32 {
                                let x = fx.load(types::F32, src, i * F as i32);
                                fx.store(x, dst, i * F as i32);
                            }
                        });
                    }
                    None => gather(fx, block, nr, kb, cols, table, &row_base),
                }
                tiles.run(fx, ak, kb, c_panel, accumulate, cols);
            });
            let Some(panel) = staged else {
                // The epilogue over the panel's columns of C, in place.
                if let Some((e, operands)) = &epilogue {
                    let len = fx.iconst(cols as i64);
                    epilogue_rows(fx, (e, operands), (first_row, rows), ((c_panel, ldc), (c_panel, ldc)), len);
                }
                return;
            };
            // The panel's outputs, run by run of a grid row, through the epilogue.
            let to = fx.b.ins().iadd_imm_s(p0, cols as i64);
            for_output_runs(fx, c, p0, to, &|fx, len, column, output| {
                let src = (fx.add(panel, column), nr * F);
                let dst = (fx.add(y_rows, output), outputs * F);
                match &epilogue {
                    Some((e, operands)) => epilogue_rows(fx, (e, operands), (first_row, rows), (src, dst), len),
                    None => copy_rows(fx, rows, src, dst, len),
                }
            });
        };
        // The last row block may be short, as the last panel may be narrow.
        let last_rows = w.mg - (c.row_blocks() - 1) * c.row_block;
        split_panels(fx, q, positions, nr, |fx, cols| {
            if last_rows == c.row_block {
                return panel(fx, cols, c.row_block);
            }
            let full = fx.b.ins().icmp_imm_s(IntCC::SignedLessThan, rb, row_blocks - 1);
            fx.if_else(full, |fx| panel(fx, cols, c.row_block), |fx| panel(fx, cols, last_rows));
        });
    });
}

/// `panel(nr)` for the full panels, `panel(rem)` for the partial last one (`q` the
/// panel of `len` columns).
fn split_panels(fx: &mut Fx, q: Value, len: i64, nr: i64, panel: impl Fn(&mut Fx, usize)) {
    let full = len / nr;
    let rem = (len - full * nr) as usize;
    if rem == 0 {
        return panel(fx, nr as usize);
    }
    let is_full = fx.b.ins().icmp_imm_s(IntCC::SignedLessThan, q, full);
    fx.if_else(is_full, |fx| panel(fx, nr as usize), |fx| panel(fx, rem));
}

/// Items `(g, q)`: `dw[g·mg + m, k] = Σ_n Σ_p dy[n, g·mg + m, p]·window(n, g, k, p)`
/// for the columns `k` of panel `q`, the images and their K blocks in order. Over the
/// grid, a K block of dy is staged on the stack with zeros at the grid positions that
/// are not outputs (whose terms are then `0·x`, adding nothing for a finite `x`).
fn emit_filter(fx: &mut Fx, c: &ConvGemm, family: &dyn KernelFamily) {
    let w = &c.geometry;
    let (nr, kc) = (c.tile.nr() as i64, c.kc as i64);
    let depth = (w.cg * prod(&w.kernel)) as i64;
    let (outputs, positions) = (prod(&w.output) as i64, c.positions() as i64);
    let plane = c.channel_plane() as i64;
    let (c_in, c_out) = (w.channels_in() as i64, w.channels_out() as i64);
    let panels = (depth + nr - 1) / nr;
    let block = block_buffer(fx, c);
    let table = fx.stack_buffer((nr * 8) as u32);
    let stack = fx.stack_buffer((c.tile.mr as i64 * nr * F) as u32);
    let staged = c.grid.map(|_| fx.stack_buffer((w.mg as i64 * kc * F) as u32));
    let a_row = if staged.is_some() { kc * F } else { outputs * F };
    let tiles = Tiles { c, family, rows: w.mg as i64, a_row, ldc: depth * F, block, stack };
    let input = fx.slot(c.padded.unwrap_or(c.input));
    let (dy, out) = (fx.slot(c.a), fx.slot(c.out));
    let batch = fx.sz(w.batch);
    let (begin, end) = (fx.begin, fx.end);
    fx.for_range(begin, end, 1, |fx, item| {
        let g = fx.b.ins().udiv_imm_u(item, panels);
        let q = fx.b.ins().urem_imm_u(item, panels);
        let col0 = fx.mul_imm(q, nr);
        let dw = fx.mul_imm(g, w.mg as i64 * depth);
        let dw = fx.add(dw, col0);
        let dw = fx.mul_imm(dw, F);
        let c_panel = fx.add(out, dw);
        let panel = |fx: &mut Fx, cols: usize| {
            offset_table(fx, table, col0, cols, &|fx, k| tap_offset(fx, c, k));
            // No images: the sum is zero.
            let empty = fx.b.ins().icmp_imm_s(IntCC::Equal, batch, 0);
            fx.if_then(empty, |fx| {
                let zero = fx.b.ins().f32const(0.0);
                let z = fx.iconst(0);
                let rows = fx.iconst(w.mg as i64);
                fx.for_range(z, rows, 1, |fx, r| {
                    let row = fx.mul_imm(r, depth * F);
                    let row = fx.add(c_panel, row);
                    for j in 0..cols as i32 {
                        fx.store(zero, row, j * F as i32);
                    }
                });
            });
            let z = fx.iconst(0);
            fx.for_range(z, batch, 1, |fx, n| {
                let planes_at = group_planes(fx, input, (n, g), (c_in, w.cg as i64), plane);
                let a_rows = group_planes(fx, dy, (n, g), (c_out, w.mg as i64), outputs);
                let z = fx.iconst(0);
                let p_end = fx.iconst(positions);
                fx.for_range(z, p_end, kc, |fx, p0| {
                    let left = fx.b.ins().isub(p_end, p0);
                    let kc_v = fx.iconst(kc);
                    let kb = fx.min(left, kc_v);
                    let a = match staged {
                        Some(a_block) => {
                            stage_dy(fx, c, a_block, a_rows, p0, kb);
                            transpose_runs(fx, (planes_at, p0), table, (block, nr), kb, cols);
                            a_block
                        }
                        None => {
                            gather(fx, block, nr, kb, cols, table, &|fx, r| {
                                let p = fx.add(p0, r);
                                let off = position_offset(fx, c, p);
                                let off = fx.mul_imm(off, F);
                                fx.add(planes_at, off)
                            });
                            let ak = fx.mul_imm(p0, F);
                            fx.add(a_rows, ak)
                        }
                    };
                    let later_image = fx.b.ins().icmp_imm_s(IntCC::NotEqual, n, 0);
                    let later_block = fx.b.ins().icmp_imm_s(IntCC::NotEqual, p0, 0);
                    let accumulate = fx.b.ins().bor(later_image, later_block);
                    tiles.run(fx, a, kb, c_panel, accumulate, cols);
                });
            });
        };
        split_panels(fx, q, depth, nr, panel);
    });
}

/// Rows this many at a time in `transpose_runs`: the rows of the block they write
/// (a few KiB) stay in L1 while every column is copied into them.
const TRANSPOSE_ROWS: i64 = 8;

/// The filter gradient's B block over the grid: column `j` is the run of tap `j`
/// (`table[j]` bytes into the planes) from grid position `p0`, row `r` grid position
/// `p0 + r`. Copied a few rows for all columns at a time: column by column, the
/// stores `nr` floats apart would evict each other from L1 before the next column.
fn transpose_runs(
    fx: &mut Fx,
    (planes, p0): (Value, Value),
    table: Value,
    (block, nr): (Value, i64),
    kb: Value,
    cols: usize,
) {
    let chunk = |fx: &mut Fx, r0: Value, rows: Option<Value>| {
        let q = fx.add(p0, r0);
        let q = fx.mul_imm(q, F);
        let src_rows = fx.add(planes, q);
        let dst_rows = fx.mul_imm(r0, nr * F);
        let dst_rows = fx.add(block, dst_rows);
        let (tp, dp) = (fx.var(PTR, table), fx.var(PTR, dst_rows));
        let z = fx.iconst(0);
        let n = fx.iconst(cols as i64);
        fx.for_range(z, n, 1, |fx, _| {
            let (t, d) = (fx.get(tp), fx.get(dp));
            let off = fx.load(types::I64, t, 0);
            let src = fx.add(src_rows, off);
            match rows {
                None => {
                    for r in 0..TRANSPOSE_ROWS {
                        let x = fx.load(types::F32, src, (r * F) as i32);
                        fx.store(x, d, (r * nr * F) as i32);
                    }
                }
                Some(rows) => copy_strided(fx, (src, F), (d, nr * F), rows),
            }
            let (t, d) = (fx.b.ins().iadd_imm_s(t, 8), fx.b.ins().iadd_imm_s(d, F));
            fx.set(tp, t);
            fx.set(dp, d);
        });
    };
    let z = fx.iconst(0);
    let rest = fx.for_whole_steps(z, kb, TRANSPOSE_ROWS, |fx, r0| chunk(fx, r0, None));
    let left = fx.b.ins().isub(kb, rest);
    let some = fx.b.ins().icmp_imm_s(IntCC::NotEqual, left, 0);
    fx.if_then(some, |fx| chunk(fx, rest, Some(left)));
}

/// The filter gradient's K block of dy over the grid, `[mg][kc]` at `a_block`: grid
/// positions `[p0, p0 + kb)` of every output channel of the group, zero where they are
/// not outputs.
fn stage_dy(fx: &mut Fx, c: &ConvGemm, a_block: Value, a_rows: Value, p0: Value, kb: Value) {
    let w = &c.geometry;
    let (kc, outputs) = (c.kc as i64, prod(&w.output) as i64);
    let to = fx.add(p0, kb);
    // Zeros at the grid positions past each row's outputs.
    let row = c.grid.expect("a grid product") as i64;
    for_runs(fx, c, (p0, to), (w.output[2] as i64, row), &|fx, len, column, _| {
        let zero = fx.b.ins().f32const(0.0);
        let z = fx.iconst(0);
        let m_end = fx.iconst(w.mg as i64);
        fx.for_range(z, m_end, 1, |fx, m| {
            let d = fx.mul_imm(m, kc * F);
            let d = fx.add(a_block, d);
            let d = fx.add(d, column);
            let (dp, z) = (fx.var(PTR, d), fx.iconst(0));
            fx.for_range(z, len, 1, |fx, _| {
                let d = fx.get(dp);
                fx.store(zero, d, 0);
                let d = fx.b.ins().iadd_imm_s(d, F);
                fx.set(dp, d);
            });
        });
    });
    for_output_runs(fx, c, p0, to, &|fx, len, column, output| {
        let (src, dst) = (fx.add(a_rows, output), fx.add(a_block, column));
        copy_rows(fx, w.mg, (src, outputs * F), (dst, kc * F), len);
    });
}
