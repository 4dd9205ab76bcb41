//! The lowered program: a list of kernels over buffer slots, in execution order.
//!
//! `lower/` builds it from a graph, the kernel files turn each kernel into Cranelift
//! functions, and `codegen/` strings them together into the step function. Every
//! kernel description is static except for the batch size, which stays a run-time
//! argument (`Size`).

mod print;

use crate::shape::Nest;
use nnc_ir::Size;
use nnc_ir::{BinaryOp, DType, ReduceOp, Tensor, TensorType, UnaryOp, UpdateRule, ValueId};

/// An array argument of a kernel: its slot in the buffer table and element type.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Arr {
    pub slot: usize,
    pub dtype: DType,
}

/// What an elementwise kernel computes per element.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum EwFunc {
    Unary(UnaryOp),
    Binary(BinaryOp),
    /// `where(cond, a, b)`.
    Where,
    /// Conversion from the argument's dtype to the output's.
    Cast,
    /// Copies elements (transpose, broadcast, update copies, output snapshots).
    Copy,
}

/// `out[i] = f(args[0][i'], ...)` over a loop nest; `nest.strides[0]` is the output's
/// (row-major), `nest.strides[1 + j]` argument `j`'s (0 on broadcast axes).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Elementwise {
    pub func: EwFunc,
    pub out: Arr,
    pub args: Vec<Arr>,
    pub nest: Nest,
}

/// A reduction: `nest` runs over the input, `strides[0]` is the output's (0 along
/// reduced axes), `strides[1]` the input's.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Reduce {
    pub op: ReduceOp,
    pub input: Arr,
    pub out: Arr,
    pub nest: Nest,
    pub out_numel: Size,
    /// Elements per output element (the divisor of a mean).
    pub count: Size,
}

/// Softmax or log-softmax along an axis of length `len`, viewed as `[outer, len, inner]`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Softmax {
    pub log: bool,
    pub x: Arr,
    pub out: Arr,
    pub outer: Size,
    pub len: Size,
    pub inner: Size,
}

/// Integer class indices `[rows]` to f32 rows `[rows, depth]`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct OneHot {
    pub idx: Arr,
    pub out: Arr,
    pub rows: Size,
    pub depth: u64,
}

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

    /// Whether the tile is one the portable tiles can emit.
    pub fn is_valid(&self) -> bool {
        (1..=8).contains(&self.mr) && (1..=4).contains(&self.nv) && self.kc >= 1 && (1..=8).contains(&self.unroll)
    }
}

/// One leading (batch-of-matrices) axis of a matrix product, with each operand's stride
/// along it in elements (0 where the operand is broadcast).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Lead {
    pub dim: Size,
    pub a: Size,
    pub b: Size,
    pub c: Size,
}

/// `C[M,N] = A[M,K]·B[K,N]` for every leading index, where `A(r,k)` is at
/// `a[r·a_row + k·a_k]` and `B(k,j)` at `b[k·b_k + j·b_col]`: the transpose flags
/// become strides. `C` is row-major with leading dimension `n`. How it runs is its
/// [`MatMulPlan`].
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct MatMul {
    pub a: usize,
    pub b: usize,
    pub c: usize,
    pub m: Size,
    pub k: Size,
    pub n: Size,
    pub a_row: Size,
    pub a_k: Size,
    pub b_k: Size,
    pub b_col: Size,
    pub lead: Vec<Lead>,
    pub plan: MatMulPlan,
}

/// How a matrix product runs: chosen once, when it is lowered (`lower/matmul.rs`), and
/// carried out by the loop nest (`kernels/matmul/`) and the micro-kernels. Every
/// choice changes which memory is read when, never an element's operations, except
/// the K split (`depth`) and the dot products (`dots`), which the step takes from M
/// alone.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct MatMulPlan {
    /// The register tile.
    pub tile: TileShape,
    /// K block depth (a static K is split into equal blocks no deeper than `tile.kc`).
    pub kc: u64,
    /// Which panels of B the pack pass copies into `packed` (scratch for B in panels of
    /// `tile.nr` columns); the rest are read in place.
    pub pack_b: PackB,
    pub packed: usize,
    /// Whether a row-major B read in place is copied by the first row tile of each
    /// panel to a contiguous panel on the stack, which its other row tiles read.
    pub copy_b: CopyB,
    /// A packed per K block as `[row tile][k][mr]`, when A's rows are not contiguous in
    /// K (`trans_a`): its K stride would be a whole row of the stored matrix, often a
    /// power of two that maps every k to the same few cache sets.
    pub packed_a: Option<PackedA>,
    /// One or two rows left at the M edge of a row-major B's full panels run as
    /// one-row tiles of up to this many columns (several panels each), not as a short
    /// tile per panel.
    pub row_tile_cols: Option<usize>,
    /// What happens to each element of C after its last K block, in order.
    pub epilogue: Vec<EpilogueOp>,
    /// Where the epilogue runs.
    pub epilogue_at: EpilogueAt,
    /// Split by B's column panels instead of C's rows, when there are threads and few
    /// rows (`lower/matmul.rs`'s `columns_variant`).
    pub columns: Option<Variant>,
    /// Split along K into partial results at few rows (`lower/matmul.rs`'s
    /// `depth_parts`).
    pub depth: Option<DepthSplit>,
    /// Dot products of stored rows at few rows, instead of packing and tiling
    /// (`kernels/matmul/dots.rs`).
    pub dots: Option<Variant>,
}

/// A way to split a product's work otherwise than by C's rows, which the step takes
/// at run time when M is at most `max_rows` (and, with `deeper_than`, K is above M).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Variant {
    /// Its work items: B's column panels, ranges of K, or groups of columns.
    pub items: Size,
    /// M, and the most rows for which the step takes the variant.
    pub rows: Size,
    pub max_rows: i64,
    /// Taken only if this (K) is also more than M.
    pub deeper_than: Option<Size>,
    /// Work per item (floating-point operations).
    pub work: Size,
}

impl Variant {
    /// Whether the step takes the variant at batch size `batch` (on a thread pool, for
    /// one that splits across threads): the condition `codegen/step.rs`'s `few_rows`
    /// emits.
    pub fn taken_at(&self, batch: usize) -> bool {
        let rows = self.rows.at(batch);
        let few = rows.is_some_and(|m| m <= self.max_rows as u64);
        few && self.deeper_than.is_none_or(|k| k.at(batch) > rows)
    }
}

/// Where a product split along K keeps its partial results: part `d` of rows `[0, M)`
/// at float `d · max_rows · n` of `slot`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct DepthSplit {
    pub slot: usize,
    pub parts: u64,
    pub variant: Variant,
}

/// Which panels of B the pack phase copies (the rest are read in place).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PackB {
    /// Only the partial last panel: a row-major B's full panels are read in place.
    Edge,
    /// Every panel.
    All,
}

/// Whether a row-major B read in place is copied as the tiles read it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CopyB {
    No,
    /// The first row tile of each panel stores the B rows it loads to a panel on the
    /// stack, which the panel's other row tiles read.
    ByFirstRowTile,
}

/// A packed A: its scratch slot, and who packs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PackedA {
    pub slot: usize,
    pub by: PackA,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PackA {
    /// A pass over each K block of a row block's rows before its tiles.
    Pass,
    /// The first panel's whole tiles, which read A in place and write the packed copy
    /// the other panels read; only the edge tile is packed by a pass.
    FirstPanelTiles,
}

/// One operation of a matrix product's epilogue, on each element of C after its last
/// K block, while the rows are still in cache (the fused ops of `nnc-opt`). Only for
/// 2-D products: C is `[m, n]`, row-major.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum EpilogueOp {
    /// `C·alpha`.
    Scale(f32),
    /// `C + bias`, `bias` the slot of a row of `n` floats.
    Bias(usize),
    /// An activation (one `nnc_ir::fused::is_dense_activation` allows).
    Activation(UnaryOp),
    /// `h > 0 ? C : 0` (the ReLU gradient mask), `h` the slot of a tensor of C's shape.
    ReluMask(usize),
    /// C is the gradient of a parameter of C's shape: the optimizer update, which
    /// writes the parameter and its state (and never C again). Always alone.
    Update(Update),
}

/// Where a product's epilogue runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EpilogueAt {
    /// In the tiles, on the last K block: the rows are not written and swept again.
    Tiles,
    /// A sweep over the rows of C after their last K block (`kernels/epilogue.rs`).
    Sweep,
}

/// An optimizer update, elementwise over `len` f32 elements, in nnc-autodiff's order
/// of operations (see `FusedOp::expand`).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Update {
    pub rule: UpdateRule,
    pub p: usize,
    /// Optimizer state read: momentum's velocity, Adam's `m` and `v`.
    pub states: Vec<usize>,
    pub g: usize,
    /// f32 scalars: `lr`, or Adam's step size, bias correction and decay factor.
    pub scalars: Vec<usize>,
    /// Where the new parameter and states go (`None`: no value needs that result).
    pub p_out: Option<usize>,
    pub m_out: Option<usize>,
    pub v_out: Option<usize>,
    pub len: Size,
}

/// Softmax cross-entropy of logits `[rows, classes]` against integer labels: the
/// gradient `(softmax - onehot)/rows` into `grad`, each row's log-likelihood into
/// `row_ll`, then (one item) `loss = -mean(row_ll)`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct CrossEntropy {
    pub logits: usize,
    pub labels: Arr,
    pub grad: usize,
    pub row_ll: usize,
    pub loss: Option<usize>,
    pub rows: Size,
    pub classes: u64,
}

/// Which convolution or pooling a [`WindowKernel`] computes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum WindowOp {
    /// `(x, w) → y`, one item per output plane `(n, m)`.
    Conv,
    /// `(dy, w) → dx`, one item per input plane `(n, c)`.
    ConvData,
    /// `(x, dy) → dw`, one item per weight plane `(m, c)`; the batch is summed inside.
    ConvFilter,
    /// `x → y`, one item per plane `(n, c)`.
    Pool(nnc_ir::PoolKind),
    /// `(x, dy) → dx` (max) or `dy → dx` (average), one item per plane `(n, c)`.
    PoolBackward(nnc_ir::PoolKind),
}

/// A convolution or pooling over `[N, C, spatial..]` planes, written as the
/// interpreter's sums in the interpreter's order. The spatial axes are padded to
/// three with leading axes of size 1, so one loop nest serves 1-, 2- and 3-D.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct WindowKernel {
    pub op: WindowOp,
    /// The operands' slots, in the op's order.
    pub args: Vec<usize>,
    pub out: usize,
    /// The leading (batch) dimension.
    pub batch: Size,
    pub input: [u64; 3],
    pub output: [u64; 3],
    pub kernel: [u64; 3],
    pub strides: [u64; 3],
    pub dilations: [u64; 3],
    pub pads_begin: [u64; 3],
    pub pads_end: [u64; 3],
    pub groups: u64,
    /// Input channels per group (pooling: 1 group per channel).
    pub cg: u64,
    /// Output channels per group.
    pub mg: u64,
    /// A convolution or pooling computed along output rows, four positions per
    /// vector, each output still the interpreter's sum (or maximum) in its order;
    /// reading the input padded into this scratch (zeros, or -inf for max pooling)
    /// when the window pads.
    pub by_rows: bool,
    pub padded: Option<usize>,
    /// A fused convolution's epilogue, applied as each output is written.
    pub epilogue: Option<OutputEpilogue>,
}

/// What a fused convolution (`nnc_ir::FusedOp::Conv`) does to each output element:
/// `+ bias[channel]`, `+ residual`, the activation, `max(·, min)`, `min(·, max)`, in
/// this order (the expansion's), each where present.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct OutputEpilogue {
    /// The slot of one f32 per output channel.
    pub bias: Option<usize>,
    /// The slot of a tensor of the output's type.
    pub residual: Option<usize>,
    pub act: Option<UnaryOp>,
    pub min: Option<f32>,
    pub max: Option<f32>,
}

impl WindowKernel {
    pub fn channels_in(&self) -> u64 {
        self.cg * self.groups
    }

    pub fn channels_out(&self) -> u64 {
        self.mg * self.groups
    }

    /// The padded-input positions the windows span on axis `a`: up to the end of the
    /// last output's window.
    pub fn reach(&self, a: usize) -> u64 {
        (self.output[a].max(1) - 1) * self.strides[a] + (self.kernel[a] - 1) * self.dilations[a] + 1
    }
}

/// Blocks of rows copied (concatenation and slicing): for each of `rows` rows, each
/// part's `len` elements from its row of `src` to `out`'s row at `out_at`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct BlockCopy {
    pub out: Arr,
    /// Elements between rows of `out`.
    pub out_row: u64,
    pub rows: Size,
    pub parts: Vec<CopyPart>,
}

/// One operand of a [`BlockCopy`], in elements.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct CopyPart {
    pub src: Arr,
    pub src_row: u64,
    pub src_at: u64,
    pub out_at: u64,
    pub len: u64,
}

/// Which product a [`ConvGemm`] computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ConvGemmOp {
    /// `y[n, g] = W[g]·windows(x[n, g])`: rows the group's output channels, columns the
    /// output positions, depth its input channels times the taps; one item per image
    /// and group.
    Forward,
    /// `dW[g] = Σ_n dy[n, g]·windows(x[n, g])ᵀ`: rows the group's output channels,
    /// columns its input channels times the taps, depth the output positions of every
    /// image in turn; one item per group and column panel.
    Filter,
}

/// A convolution as an implicit matrix product on the register tiles
/// (`kernels/conv.rs`): the input windows are gathered, a K block of one column panel
/// at a time, into a buffer on the stack that the tiles read, so no im2col matrix is
/// ever stored. The data gradient of a stride-1 convolution is the forward product of
/// the transposed convolution (`geometry`): over `dy`, by the kernel flipped and its
/// channel axes swapped (`flip`).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct ConvGemm {
    pub op: ConvGemmOp,
    /// The geometry of the product: `input` and `output` are the planes it reads and
    /// writes (for the data gradient, those of the transposed convolution).
    pub geometry: WindowKernel,
    /// The planes read: `x`, or `dy` for the data gradient.
    pub input: usize,
    /// The matrix read in place as A: the weights `[M, Cg, taps]` (forward), `dy`
    /// (filter).
    pub a: usize,
    pub out: usize,
    /// The data gradient's weights: `(W, scratch)`, the flipped copy made first.
    pub flip: Option<(usize, usize)>,
    /// Scratch for the zero-padded input planes, when the convolution pads or is
    /// strided: each channel's plane split into `phases[1]·phases[2]` phase planes
    /// (row `r`, column `c` of the padded plane in phase `(r mod s₁, c mod s₂)` at
    /// `(r / s₁, c / s₂)`), so a strided window's taps step one element in a phase
    /// plane as the output position does.
    pub padded: Option<usize>,
    /// The strides folded into the padded layout (1 where not).
    pub phases: [u64; 3],
    /// The length of a phase-plane row when the product runs over the grid of output
    /// positions at every column of it (a convolution of at most two spatial axes):
    /// the window of grid position `q` is then `q` floats past grid position 0's, so
    /// a K row of a column panel is a contiguous run of the padded input. The grid
    /// has `(O₁ − 1)·row + O₂` positions; those past a row's `O₂` are not outputs.
    pub grid: Option<u64>,
    pub tile: TileShape,
    /// K block depth.
    pub kc: u64,
    /// Output channels per work item of a forward product (the group's, `mg`, unless
    /// an image has too few column panels to share among threads; a multiple of the
    /// tile's rows otherwise). Each element is the same FMA chain either way.
    pub row_block: u64,
}

impl ConvGemm {
    /// The positions the product runs over: the output's, or the grid's.
    pub fn positions(&self) -> u64 {
        let w = &self.geometry;
        match self.grid {
            Some(row) => (w.output[1] - 1) * row + w.output[2],
            None => w.output.iter().product(),
        }
    }

    /// The sizes of one (phase) plane as the product reads it.
    pub fn read_dims(&self) -> [u64; 3] {
        let w = &self.geometry;
        match self.padded {
            Some(_) => std::array::from_fn(|a| (w.input[a] + w.pads_begin[a] + w.pads_end[a]).div_ceil(self.phases[a])),
            None => w.input,
        }
    }

    /// Blocks of `row_block` output channels per group.
    pub fn row_blocks(&self) -> u64 {
        self.geometry.mg.div_ceil(self.row_block)
    }

    /// Whether a forward product's full column panels read their B rows in place
    /// instead of gathering them: a convolution of one tap over the grid, where K row
    /// `k` is input channel `k`'s run, one channel plane after the row before.
    pub fn reads_in_place(&self) -> bool {
        self.op == ConvGemmOp::Forward && self.grid.is_some() && self.geometry.kernel.iter().product::<u64>() == 1
    }

    /// Floats per input channel as the product reads them (every phase plane).
    pub fn channel_plane(&self) -> u64 {
        self.phases.iter().product::<u64>() * self.read_dims().iter().product::<u64>()
    }
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Body {
    Window(Box<WindowKernel>),
    ConvGemm(Box<ConvGemm>),
    Copy(BlockCopy),
    Elementwise(Elementwise),
    MatMul(Box<MatMul>),
    Reduce(Reduce),
    Softmax(Softmax),
    OneHot(OneHot),
    Update(Update),
    CrossEntropy(CrossEntropy),
}

impl Body {
    /// The op family, used in function names.
    pub fn family(&self) -> &'static str {
        match self {
            Body::Elementwise(e) => match e.func {
                EwFunc::Copy => "copy",
                EwFunc::Cast => "cast",
                _ => "map",
            },
            Body::MatMul(m) => match m.plan.epilogue.first() {
                None => "matmul",
                Some(EpilogueOp::Scale(_) | EpilogueOp::Bias(_) | EpilogueOp::Activation(_)) => "dense",
                Some(EpilogueOp::ReluMask(_)) => "dense_relu_grad",
                Some(EpilogueOp::Update(_)) => "dense_update",
            },
            Body::Update(_) => "update",
            Body::CrossEntropy(_) => "softmax_ce",
            Body::Reduce(_) => "reduce",
            Body::Softmax(_) => "softmax",
            Body::OneHot(_) => "one_hot",
            Body::Copy(_) => "blocks",
            Body::ConvGemm(c) => match (c.op, c.flip) {
                (ConvGemmOp::Forward, None) => "conv_gemm",
                (ConvGemmOp::Forward, Some(_)) => "conv_data_gemm",
                (ConvGemmOp::Filter, _) => "conv_filter_gemm",
            },
            Body::Window(w) => match w.op {
                WindowOp::Conv => "conv",
                WindowOp::ConvData => "conv_data",
                WindowOp::ConvFilter => "conv_filter",
                WindowOp::Pool(_) => "pool",
                WindowOp::PoolBackward(_) => "pool_backward",
            },
        }
    }

    /// Every table slot the kernel reads or writes (the buffers checked mode lets it
    /// touch).
    pub fn slots(&self) -> Vec<usize> {
        match self {
            Body::Elementwise(e) => std::iter::once(e.out.slot).chain(e.args.iter().map(|a| a.slot)).collect(),
            Body::MatMul(m) => {
                let p = &m.plan;
                let mut s: Vec<usize> =
                    [m.a, m.b, m.c, p.packed].into_iter().chain(p.packed_a.map(|a| a.slot)).collect();
                s.extend(p.depth.map(|d| d.slot));
                for op in &p.epilogue {
                    match op {
                        EpilogueOp::Bias(b) | EpilogueOp::ReluMask(b) => s.push(*b),
                        EpilogueOp::Update(u) => s.extend(u.slots()),
                        EpilogueOp::Scale(_) | EpilogueOp::Activation(_) => {}
                    }
                }
                s
            }
            Body::Update(u) => u.slots(),
            Body::CrossEntropy(c) => [c.logits, c.labels.slot, c.grad, c.row_ll].into_iter().chain(c.loss).collect(),
            Body::Reduce(r) => vec![r.input.slot, r.out.slot],
            Body::Softmax(s) => vec![s.x.slot, s.out.slot],
            Body::OneHot(h) => vec![h.idx.slot, h.out.slot],
            Body::Window(w) => w.args.iter().copied().chain([w.out]).chain(w.padded).collect(),
            Body::Copy(b) => std::iter::once(b.out.slot).chain(b.parts.iter().map(|p| p.src.slot)).collect(),
            Body::ConvGemm(c) => {
                let flip = c.flip.into_iter().flat_map(|(w, s)| [w, s]);
                let epilogue = c.geometry.epilogue.iter().flat_map(|e| e.bias.into_iter().chain(e.residual));
                [c.input, c.a, c.out].into_iter().chain(flip).chain(c.padded).chain(epilogue).collect()
            }
        }
    }

    /// Whether the kernel can report a run-time error through the status word.
    pub fn can_fail(&self) -> bool {
        match self {
            Body::Elementwise(e) => {
                matches!(e.func, EwFunc::Binary(BinaryOp::Div)) && matches!(e.out.dtype, DType::I64 | DType::I32)
            }
            Body::Reduce(r) => r.op == ReduceOp::Mean && r.out.dtype != DType::F32,
            Body::OneHot(_) | Body::CrossEntropy(_) => true,
            Body::MatMul(_)
            | Body::Softmax(_)
            | Body::Update(_)
            | Body::Window(_)
            | Body::ConvGemm(_)
            | Body::Copy(_) => false,
        }
    }
}

impl Update {
    pub fn slots(&self) -> Vec<usize> {
        let mut s = vec![self.p, self.g];
        s.extend(&self.states);
        s.extend(&self.scalars);
        s.extend(self.p_out.into_iter().chain(self.m_out).chain(self.v_out));
        s
    }
}

/// One kernel of the step, computing `value` (or copying, for updates and snapshots).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Kernel {
    /// Unique symbol-friendly name, e.g. `k3_matmul`.
    pub name: String,
    /// The graph value it computes, or the leaf it updates.
    pub value: ValueId,
    pub body: Body,
}

/// A parameter or state buffer the compiled step owns.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct LeafSpec {
    pub value: ValueId,
    pub name: String,
    pub kind: &'static str,
    pub ty: TensorType,
    pub init: Option<Tensor>,
}

/// A graph input the caller feeds.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct InputSpec {
    pub value: ValueId,
    pub name: String,
    pub ty: TensorType,
}

/// A graph output: the slot it is read from after the step, and its type.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct OutputSpec {
    pub slot: usize,
    pub ty: TensorType,
}

/// The storage behind a slot of the buffer table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Slot {
    /// The caller's tensor for input number `i` (in `Program::inputs` order).
    Input(usize),
    /// Owned parameter or state buffer number `i` (in `Program::leaves` order).
    Leaf(usize),
    /// Owned constant number `i` (in `Program::consts` order).
    Const(usize),
    /// A buffer of the arena (placed for each batch size by the plan's layout).
    Arena(nnc_opt::plan::BufferId),
}

/// The whole lowered step.
#[derive(Clone, Debug)]
pub(crate) struct Program {
    /// One per kernel of the plan, in its order.
    pub kernels: Vec<Kernel>,
    /// The step plan the kernels execute, with their scratch buffers.
    pub plan: nnc_opt::StepPlan,
    /// The storage behind each table slot (`None`: a value the step never touches).
    pub slots: Vec<Option<Slot>>,
    /// Every value's name and op mnemonic, for messages.
    pub names: Vec<(String, &'static str)>,
    pub inputs: Vec<InputSpec>,
    pub leaves: Vec<LeafSpec>,
    pub consts: Vec<(ValueId, Tensor)>,
    pub outputs: Vec<OutputSpec>,
    /// The status word's table slot: after one slot per graph value and the scratch
    /// buffers' slots, and followed by the thread pool's (null: run single-threaded),
    /// the table's last.
    pub status_slot: usize,
    /// One-hot kernels reading a graph input directly: `(index in inputs, depth,
    /// one-hot value)`. The host checks those labels before running, so bad labels fail
    /// before any parameter changes.
    pub label_checks: Vec<(usize, u64, ValueId)>,
}

impl Program {
    /// The thread pool's table slot.
    pub fn pool_slot(&self) -> usize {
        self.status_slot + 1
    }

    /// The number of table slots.
    pub fn n_slots(&self) -> usize {
        self.status_slot + 2
    }
}
