//! The micro-kernel seam of the matrix product.
//!
//! `matmul.rs` owns the loop nest around the micro-kernel: packing B into panels,
//! blocking K, walking row tiles and handling M/N edges. The innermost piece, one
//! register tile `C[mr, nr] (+)= A[mr, kb] · Bpanel[kb, nr]`, comes from a
//! [`MicroKernelProvider`]. `CraneliftTiles` here emits portable Cranelift f32x4 code
//! inline; `avx2.rs` emits calls to machine code assembled for the exact tile (AVX2 or
//! AVX-512, LIBXSMM-style) in the same module, and can also take the edge tiles and the
//! epilogue (`has_edge_tiles`, `fuses_epilogues`). The loop nest asks; it does not
//! know which provider it talks to.

use crate::clif::{Fx, PTR};
use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::{types, Endianness, InstBuilder, MemFlagsData, Value};
use cranelift_frontend::Variable;

/// Register tile and K block of a micro-kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TileShape {
    /// Rows of C per tile.
    pub mr: usize,
    /// f32x4 vectors per tile row (the tile has `4·nv` columns, the B panel width).
    pub nv: usize,
    /// Depth of one K block (the packed panel block should stay in L1).
    pub kc: usize,
    /// How many K steps the inner loop does per iteration.
    pub unroll: usize,
    /// Fused multiply-add (when the target has FMA) rather than multiply then add.
    pub fused: bool,
}

impl TileShape {
    pub fn nr(&self) -> usize {
        4 * self.nv
    }

    /// Whether the tile is one this crate's Cranelift provider can emit.
    pub fn is_valid(&self) -> bool {
        (1..=8).contains(&self.mr) && (1..=4).contains(&self.nv) && self.kc >= 1 && (1..=8).contains(&self.unroll)
    }
}

/// The sizes of one matrix product (`None`: the batch size, known only at run time).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct GemmShape {
    pub m: Option<u64>,
    pub k: Option<u64>,
    pub n: Option<u64>,
}

/// Where the `mr` rows of A start (at `k0`).
#[derive(Clone, Debug)]
pub(crate) enum ARows {
    /// Row `r` at `base + r·stride` bytes, for a static stride.
    Uniform { base: Value, stride: i64 },
    /// One address per row (edge tiles, whose rows are clamped, or run-time strides).
    Each(Vec<Value>),
}

/// Bytes between `A(r, k)` and `A(r, k+1)`.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Step {
    Static(i64),
    Dynamic(Value),
}

/// Addresses and sizes of one tile, as run-time values.
pub(crate) struct TileArgs {
    pub a: ARows,
    pub a_step: Step,
    /// Address of `B(k0, col0)`: `kb` rows of `nr` contiguous f32 (a packed panel, or
    /// B itself when it is row-major).
    pub b_panel: Value,
    /// Bytes between consecutive rows of the panel.
    pub b_step: Step,
    /// Number of K steps (may be 0: the tile is then all zeros).
    pub kb: Value,
    /// Address of `C(row0, col0)` and bytes between rows of C.
    pub c: Value,
    pub ldc: Value,
    /// Non-zero: add to C instead of overwriting it.
    pub accumulate: Value,
    /// Columns of C to write (`1..=nr`); the rest of the tile is padding.
    pub cols: usize,
    /// The epilogue the tile applies itself on the last K block (only for providers
    /// whose `fuses_epilogues` is true).
    pub finish: Option<TileFinish>,
    /// Where a whole tile (A rows a static stride apart) also writes the A values it
    /// reads, packed (`mr` floats per k), for the tiles of the next panels (only for
    /// providers whose `copies_a` is true).
    pub copy_a: Option<Value>,
    /// Where a whole tile as wide as its panel, reading B in place, also writes the B
    /// rows it reads (`nr` floats per k, contiguous), for the next row tiles of the
    /// panel (only for providers whose `copies_b` is true).
    pub copy_b: Option<Value>,
}

/// An epilogue applied by the tile to the finished C (acc, plus the old C when
/// accumulating) on the last K block, in `epilogue.rs`'s or `update.rs`'s order of
/// operations, so the rows are not written and swept again.
#[derive(Clone, Copy)]
pub(crate) enum TileEpilogue {
    /// `p_out = p - C·lr` instead of storing C (the gradient is scratch): this tile's
    /// addresses in the parameter and the new parameter, and the f32 lr's address.
    Sgd { p: Value, p_out: Value, lr: Value },
    /// `C = relu?(C + bias)`: the address of the bias of the tile's first column.
    Dense { bias: Option<Value>, relu: bool },
    /// `C = h > 0 ? C : 0`: this tile's address in `h` (C's shape).
    ReluMask { h: Value },
}

#[derive(Clone, Copy)]
pub(crate) struct TileFinish {
    pub epilogue: TileEpilogue,
    /// Non-zero (i64) on the last K block; before it the tile stores C as usual.
    pub last: Value,
}

pub(crate) trait MicroKernelProvider {
    /// The kernel family's name, as `nnc bench` reports it.
    fn family(&self) -> &'static str;
    /// The width of the vectors its FMAs use.
    fn vector_width(&self) -> crate::peak::VectorWidth;
    /// Defines what the tiles call (assembled kernels) in the module, before any
    /// function that uses them is generated.
    fn prepare(&self, _module: &mut dyn cranelift_module::Module) -> Result<(), crate::error::BackendError> {
        Ok(())
    }
    /// After every function is generated: the functions `prepare` or `emit_tile`
    /// defined (for profilers and disassembly), or the first error met defining them.
    #[allow(clippy::type_complexity)]
    fn finish(&self) -> Result<Vec<(cranelift_module::FuncId, String, usize)>, crate::error::BackendError> {
        Ok(Vec::new())
    }
    /// The tile shape for a product of these sizes.
    fn tile_shape(&self, shape: &GemmShape) -> TileShape;
    /// Emits one full `mr × nr` tile at the current position of `fx`.
    fn emit_tile(&self, fx: &mut Fx, tile: TileShape, args: &TileArgs);
    /// Whether reading a transposed A in place (rows a few floats apart, k a row of A
    /// apart) costs the tiles nothing over packed rows.
    fn reads_strided_a(&self) -> bool {
        false
    }
    /// Whether its whole tiles can copy the A values they read into the packed layout
    /// (`TileArgs::copy_a`), so that A is packed by the first panel's tiles instead of
    /// by a pass of its own.
    fn copies_a(&self) -> bool {
        false
    }
    /// Whether its whole tiles can copy the B panel rows they read in place to a
    /// contiguous buffer (`TileArgs::copy_b`), so that the other row tiles of the panel
    /// read it from L1 instead of striding through B's rows.
    fn copies_b(&self) -> bool {
        false
    }
    /// Columns of the widest one-row tile `emit_row_tile` emits (0: none).
    fn row_tile_cols(&self) -> usize {
        0
    }
    /// Emits one row of C across `args.cols` columns of a row-major B read in place
    /// (whole vectors, at most `row_tile_cols`): the loop nest's answer to the last
    /// one or two rows, where a tile per panel would be one short dependent FMA chain
    /// per accumulator and latency-bound. Only called when `row_tile_cols` is not 0.
    fn emit_row_tile(&self, _fx: &mut Fx, _args: &TileArgs) {}
    /// Whether the tiles can apply epilogues (`TileArgs::finish`) themselves.
    fn fuses_epilogues(&self) -> bool {
        false
    }
    /// Whether `emit_edge_tile` may succeed (else the loop nest does not ask).
    fn has_edge_tiles(&self) -> bool {
        false
    }
    /// Emits a tile of `rows` (a run-time value in `1..mr`) rows straight into C, or
    /// returns false (and emits nothing) if the provider cannot; the loop nest then
    /// computes a whole tile of clamped rows into a buffer and copies the valid part.
    fn emit_edge_tile(&self, _fx: &mut Fx, _tile: TileShape, _args: &TileArgs, _rows: Value) -> bool {
        false
    }
    /// Emits the dot products of `dots.rs` of `rows` (1 or 2) rows of A with `cols` (1
    /// to 4) stored rows of B, `k` terms each, `[a, a_row, b, b_col, c, ldc]`: A's first
    /// row and the bytes between its rows, the first column's stored row of B and the
    /// bytes between them, and where the results go and the bytes between C's rows,
    /// with the bits of `dots.rs`'s Cranelift version; or returns false (and emits
    /// nothing), which then runs.
    fn emit_dots(&self, _fx: &mut Fx, _k: usize, _cols: usize, _rows: usize, _args: [Value; 6]) -> bool {
        false
    }
    /// Emits the pack of one whole `nr`-column panel of a transposed B, `[src, row,
    /// dst, k]`: the panel's first stored row (contiguous along K), the bytes between
    /// stored rows, the panel, and K; or returns false (and emits nothing).
    fn emit_pack_transposed(&self, _fx: &mut Fx, _nr: usize, _args: [Value; 4]) -> bool {
        false
    }
}

/// Portable f32x4 micro-kernel in Cranelift IR: per K step, `nv` vector loads of the
/// panel, broadcasts of A, and `mr·nv` fused multiply-adds into accumulators that stay
/// in registers.
///
/// Cranelift's x64 backend only emits the 213/132 FMA forms, whose destination is a
/// multiplicand, never the accumulator: each FMA result lands in a fresh register and
/// the loop back edge moves it back (register copies, cheap but not free). Each A
/// element is therefore broadcast once per use, straight from memory
/// (`vbroadcastss m32`), so the FMA may consume it without an extra copy or shuffle.
pub(crate) struct CraneliftTiles {
    /// Overrides the heuristic (benchmarks and tests use it).
    pub fixed: Option<TileShape>,
}

impl MicroKernelProvider for CraneliftTiles {
    fn family(&self) -> &'static str {
        "cranelift-f32x4"
    }

    fn vector_width(&self) -> crate::peak::VectorWidth {
        crate::peak::VectorWidth::V128
    }

    fn tile_shape(&self, shape: &GemmShape) -> TileShape {
        if let Some(t) = self.fixed {
            return t;
        }
        // Measured with `examples/tile_sweep.rs` at the seed shapes: 4 rows × 2 f32x4
        // (8 accumulators, K unrolled by 2, fused multiply-add) is fastest, about
        // 35-38 GFLOP/s; 4×3, 6×2 and 2×4 run at 25-33 (x86 has 16 vector registers,
        // and every FMA result needs a register besides its accumulator, see
        // `emit_tile`). Outputs of at most 4 columns take a one-vector panel so the
        // padding does not double the work.
        let nv = match shape.n {
            Some(n) if n <= 4 => 1,
            _ => 2,
        };
        TileShape { mr: 4, nv, kc: 256, unroll: 2, fused: true }
    }

    fn emit_tile(&self, fx: &mut Fx, tile: TileShape, args: &TileArgs) {
        let (mr, nv) = (tile.mr, tile.nv);
        let zero = fx.b.ins().f32const(0.0);
        let zero = fx.b.ins().splat(types::F32X4, zero);
        let acc: Vec<Variable> = (0..mr * nv).map(|_| fx.var(types::F32X4, zero)).collect();
        // Loop-carried pointers: the A row pointer(s) and the panel pointer. (Addresses
        // derived from loop-invariant values would be recomputed inside the loop by
        // Cranelift's rematerialization of add-with-immediate.)
        let a_ptrs: Vec<Variable> = match &args.a {
            ARows::Uniform { base, .. } => vec![fx.var(PTR, *base)],
            ARows::Each(rows) => rows.iter().map(|&r| fx.var(PTR, r)).collect(),
        };
        let bp = fx.var(PTR, args.b_panel);
        let fused = fx.fma && tile.fused;

        // One K step `u` of an unrolled group: acc[r][v] += A(r,k) · B(k, 4v..4v+4).
        // The panel loads are ordinary (ordered) loads that stay in registers; the A
        // loads are movable, so Cranelift places each right before its broadcast and
        // fuses the two into `vbroadcastss` from memory.
        let step = |fx: &mut Fx, a: &[Value], bp_v: Value, u: usize| {
            let row = match args.b_step {
                Step::Static(s) => u as i64 * s,
                Step::Dynamic(_) => 0,
            };
            let bvec: Vec<Value> = (0..nv).map(|v| fx.load(types::F32X4, bp_v, (row + v as i64 * 16) as i32)).collect();
            for r in 0..mr {
                let (base, offset) = match (&args.a, args.a_step) {
                    (ARows::Uniform { stride, .. }, Step::Static(s)) => (a[0], u as i64 * s + r as i64 * stride),
                    (ARows::Uniform { stride, .. }, Step::Dynamic(_)) => (a[0], r as i64 * stride),
                    (ARows::Each(_), Step::Static(s)) => (a[r], u as i64 * s),
                    (ARows::Each(_), Step::Dynamic(_)) => (a[r], 0),
                };
                for (v, &bv) in bvec.iter().enumerate() {
                    // One broadcast per use: a broadcast used once is fused with its
                    // load into `vbroadcastss` from memory (no shuffle uop), and the
                    // 213-form FMA may then overwrite it instead of a copy. Distinct
                    // (equally true) flags keep Cranelift from merging the loads.
                    let x = fx.load_flags(types::F32, distinct_flags(v), base, offset as i32);
                    let x = fx.b.ins().splat(types::F32X4, x);
                    let var = acc[r * nv + v];
                    let c = fx.get(var);
                    let next = if fused {
                        fx.b.ins().fma(x, bv, c)
                    } else {
                        let p = fx.b.ins().fmul(x, bv);
                        fx.b.ins().fadd(c, p)
                    };
                    fx.set(var, next);
                }
            }
        };

        // `count` K steps, then advance the pointers.
        let steps = |fx: &mut Fx, count: usize| {
            let mut a: Vec<Value> = a_ptrs.iter().map(|&v| fx.get(v)).collect();
            let mut bp_v = fx.get(bp);
            for u in 0..count {
                step(fx, &a, bp_v, u);
                if let Step::Dynamic(s) = args.a_step {
                    a = a.iter().map(|&p| fx.add(p, s)).collect();
                }
                if let Step::Dynamic(s) = args.b_step {
                    bp_v = fx.add(bp_v, s);
                }
            }
            for (var, p) in a_ptrs.iter().zip(a) {
                let next = match args.a_step {
                    Step::Static(s) => fx.b.ins().iadd_imm_s(p, s * count as i64),
                    Step::Dynamic(_) => p,
                };
                fx.set(*var, next);
            }
            let next_b = match args.b_step {
                Step::Static(s) => fx.b.ins().iadd_imm_s(bp_v, s * count as i64),
                Step::Dynamic(_) => bp_v,
            };
            fx.set(bp, next_b);
        };
        let unroll = tile.unroll.max(1);
        let k0 = fx.iconst(0);
        let rest = fx.for_whole_steps(k0, args.kb, unroll as i64, |fx, _| steps(fx, unroll));
        if unroll > 1 {
            fx.for_range(rest, args.kb, 1, |fx, _| steps(fx, 1));
        }

        // Write the tile: C = acc, or C += acc; whole vectors, then the lanes of a
        // partial last vector.
        let accumulate = fx.b.ins().icmp_imm_s(IntCC::NotEqual, args.accumulate, 0);
        let store = |fx: &mut Fx, add: bool| {
            let mut row = args.c;
            for r in 0..mr {
                for v in 0..nv {
                    let lanes = args.cols.saturating_sub(4 * v).min(4);
                    let x = fx.get(acc[r * nv + v]);
                    let at = (v * 16) as i32;
                    if lanes == 4 {
                        let x = if add {
                            let old = fx.load(types::F32X4, row, at);
                            fx.b.ins().fadd(old, x)
                        } else {
                            x
                        };
                        fx.store(x, row, at);
                    }
                    for lane in 0..if lanes < 4 { lanes } else { 0 } {
                        let at = at + 4 * lane as i32;
                        let mut y = fx.b.ins().extractlane(x, lane as u8);
                        if add {
                            let old = fx.load(types::F32, row, at);
                            y = fx.b.ins().fadd(old, y);
                        }
                        fx.store(y, row, at);
                    }
                }
                if r + 1 < mr {
                    row = fx.add(row, args.ldc);
                }
            }
        };
        fx.if_else(accumulate, |fx| store(fx, true), |fx| store(fx, false));
    }
}

/// Flags of a movable read-only f32 load, different for each `v < 4` so that loads of
/// the same address stay separate instructions. Every variant is true of an f32 load
/// from the A operand: it is naturally aligned and little-endian on every target this
/// JIT supports.
fn distinct_flags(v: usize) -> MemFlagsData {
    let f = crate::clif::mem().with_readonly().with_can_move();
    let f = if v & 1 == 1 { f.with_endianness(Endianness::Little) } else { f };
    if v & 2 == 2 {
        f.with_aligned()
    } else {
        f
    }
}
