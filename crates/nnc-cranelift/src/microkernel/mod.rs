//! The micro-kernel seam of the matrix product.
//!
//! `kernels/matmul/` owns the loop nest around the micro-kernel: packing B into panels,
//! blocking K, walking row tiles and handling M/N edges. The innermost piece, one
//! register tile `C[mr, nr] (+)= A[mr, kb] · Bpanel[kb, nr]`, comes from a
//! [`MicroKernelProvider`]. `cranelift.rs` emits portable Cranelift f32x4 code
//! inline; `x86/` emits calls to machine code assembled for the exact tile (AVX2 or
//! AVX-512, LIBXSMM-style) in the same module, and can also take the edge tiles and the
//! epilogue (`has_edge_tiles`, `fuses_epilogues`). The loop nest asks; it does not
//! know which provider it talks to.

pub(crate) mod cranelift;
#[cfg(target_arch = "x86_64")]
pub(crate) mod x86;

use crate::clif::Fx;
use cranelift_codegen::ir::Value;

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
/// accumulating) on the last K block, in `kernels/epilogue.rs`'s or `kernels/update.rs`'s order of
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
    fn vector_width(&self) -> crate::target::VectorWidth;
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
    /// Emits the dot products of `kernels/matmul/dots.rs` of `rows` (1 or 2) rows of A with `cols` (1
    /// to 4) stored rows of B, `k` terms each, `[a, a_row, b, b_col, c, ldc]`: A's first
    /// row and the bytes between its rows, the first column's stored row of B and the
    /// bytes between them, and where the results go and the bytes between C's rows,
    /// with the bits of `kernels/matmul/dots.rs`'s Cranelift version; or returns false (and emits
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
