//! The micro-kernel seam of the matrix product.
//!
//! A product's plan (`program::MatMulPlan`, chosen in `lower/matmul.rs`) and the loop
//! nest that carries it out (`kernels/matmul/`: packing B into panels, blocking K,
//! walking row tiles, the M and N edges) are the same for every kernel family. The
//! innermost pieces, register tiles `C[rows, cols] (+)= A[rows, kb]·Bpanel[kb, cols]`
//! with what they fuse (copying an operand as they read it, the epilogue), and two
//! helpers (dot products, the pack of a transposed B), come from the [`MicroKernels`]
//! of the [`KernelFamily`], which answer one question about each: whether they run it
//! ([`MicroKernels::supports`]). The plan asks before it chooses; the loop nest
//! asks before it emits, and runs what the family does not with the portable Cranelift
//! code of `cranelift.rs` (a tile through a stack buffer at a run-time edge, a scalar
//! pack, Cranelift dot products), which computes the same bits.
//!
//! `cranelift.rs` is the portable family, which runs nothing of its own; `x86/`
//! assembles AVX2 or AVX-512 tiles and helpers into the same module (LIBXSMM-style).

pub(crate) mod cranelift;
#[cfg(target_arch = "x86_64")]
pub(crate) mod x86;

use crate::clif::Fx;
use crate::program::{EpilogueOp, TileShape};
use crate::target::VectorWidth;
use cranelift_codegen::ir::Value;

/// The sizes of one matrix product (`None`: the batch size, known only at run time).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct GemmShape {
    pub m: Option<u64>,
    pub k: Option<u64>,
    pub n: Option<u64>,
}

/// What the loop nest asks a kernel family to run.
#[derive(Clone, Copy, Debug)]
pub(crate) enum MicroOp<'a> {
    Tile(TileSpec<'a>),
    /// The dot products of `kernels/matmul/dots.rs`: `rows` (1 or 2) rows of A with
    /// `cols` (1 to 4) stored rows of B, `k` terms each, with the bits of its Cranelift
    /// version.
    Dots {
        k: usize,
        cols: usize,
        rows: usize,
    },
    /// The pack of one whole `nr`-column panel of a transposed B.
    PackTransposed {
        nr: usize,
    },
}

/// One register tile.
#[derive(Clone, Copy, Debug)]
pub(crate) struct TileSpec<'a> {
    pub shape: TileShape,
    pub rows: TileRows,
    /// Columns of C written: `1..=nr` (for a one-row tile, whole vectors across panels).
    pub cols: usize,
    pub a: ARead,
    /// It also writes the A values it reads, packed (`TileArgs::copy_a`).
    pub copy_a: bool,
    /// It also writes the B rows it reads in place to a contiguous panel
    /// (`TileArgs::copy_b`).
    pub copy_b: bool,
    /// The epilogue it applies on the last K block (empty: none).
    pub epilogue: &'a [EpilogueOp],
}

/// The rows of C a tile computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TileRows {
    /// `mr`.
    All,
    /// Fewer, a run-time count in `1..mr` (the M edge).
    Edge,
    /// One row across several panels of a row-major B read in place: the last one or
    /// two rows of the M edge, where a tile per panel would be a short dependent FMA
    /// chain per accumulator.
    One,
}

/// How a tile reads A.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ARead {
    /// Packed: a tile's rows are adjacent floats at each k.
    Packed,
    /// In place, rows a static stride apart; `k_contiguous`: k steps one float (else a
    /// row of the stored matrix: a transposed A).
    InPlace { k_contiguous: bool },
    /// One address per row (edge rows clamped to the last, or a run-time row stride).
    PerRow,
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
    /// The epilogue's operands and whether this is the last K block, when the tile
    /// applies the epilogue.
    pub finish: Option<TileFinish>,
    /// Where a whole tile reading A in place also writes the A values it reads, packed
    /// (`mr` floats per k), for the tiles of the next panels.
    pub copy_a: Option<Value>,
    /// Where a whole tile as wide as its panel, reading B in place, also writes the B
    /// rows it reads (`nr` floats per k, contiguous), for the next row tiles of the
    /// panel.
    pub copy_b: Option<Value>,
    /// With `TileRows::Edge`: the rows, a run-time value in `1..mr`.
    pub rows: Option<Value>,
}

/// The run-time operands of a tile's epilogue (`TileSpec::epilogue`, in
/// `kernels/epilogue.rs`'s or `kernels/update.rs`'s order of operations), so the rows
/// are not written and swept again.
#[derive(Clone, Copy)]
pub(crate) enum TileEpilogue {
    /// `p_out = p - C·lr` instead of storing C (the gradient is scratch): this tile's
    /// addresses in the parameter and the new parameter, and the f32 lr's address.
    Sgd { p: Value, p_out: Value, lr: Value },
    /// `C = relu?(C + bias)`: the address of the bias of the tile's first column.
    Dense { bias: Option<Value> },
    /// `C = h > 0 ? C : 0`: this tile's address in `h` (C's shape).
    ReluMask { h: Value },
}

#[derive(Clone, Copy)]
pub(crate) struct TileFinish {
    pub epilogue: TileEpilogue,
    /// Non-zero (i64) on the last K block; before it the tile stores C as usual.
    pub last: Value,
}

/// The run-time operands of a [`MicroOp`].
pub(crate) enum MicroArgs<'a> {
    Tile(&'a TileArgs),
    /// `[a, a_row, b, b_col, c, ldc]`: A's first row and the bytes between its rows,
    /// the first column's stored row of B and the bytes between them, and where the
    /// results go and the bytes between C's rows.
    Dots([Value; 6]),
    /// `[src, row, dst, k]`: the panel's first stored row (contiguous along K), the
    /// bytes between stored rows, the panel, and K.
    PackTransposed([Value; 4]),
}

/// A kernel family: the portable one (`cranelift.rs`) or one with micro-kernels of its
/// own.
pub(crate) trait KernelFamily {
    /// The family's name, as `nnc bench` reports it.
    fn family(&self) -> &'static str;
    /// The width of the vectors its FMAs use.
    fn vector_width(&self) -> VectorWidth;
    /// The tile shape for a product of these sizes.
    fn tile_shape(&self, shape: &GemmShape) -> TileShape;
    /// Its micro-kernels, if it has any (the portable family runs everything with the
    /// loop nest's own Cranelift code).
    fn micro_kernels(&self) -> Option<&dyn MicroKernels>;
}

impl dyn KernelFamily + '_ {
    /// The family's micro-kernels if they run `op`.
    pub fn kernel_for(&self, op: &MicroOp) -> Option<&dyn MicroKernels> {
        self.micro_kernels().filter(|m| m.supports(op))
    }

    /// Whether the family runs `op` with a micro-kernel of its own.
    pub fn runs(&self, op: &MicroOp) -> bool {
        self.kernel_for(op).is_some()
    }
}

/// Micro-kernels a family brings.
pub(crate) trait MicroKernels {
    /// Forgets what an earlier module defined: a new module gets its own functions.
    fn prepare(&self, module: &mut dyn cranelift_module::Module) -> Result<(), crate::error::BackendError>;
    /// After every function is generated: the functions `emit` defined (for profilers
    /// and disassembly), or the first error met defining them.
    #[allow(clippy::type_complexity)]
    fn finish(&self) -> Result<Vec<(cranelift_module::FuncId, String, usize)>, crate::error::BackendError>;
    /// Whether it runs `op` (as fast as the loop nest's other ways, or faster).
    fn supports(&self, op: &MicroOp) -> bool;
    /// Emits `op`, which it supports, at the current position of `fx`.
    fn emit(&self, fx: &mut Fx, op: &MicroOp, args: &MicroArgs);
}
