//! The lowered program: a list of kernels over buffer slots, in execution order.
//!
//! `lower/` builds it from a graph, the kernel files turn each kernel into Cranelift
//! functions, and `codegen/` strings them together into the step function. Every
//! kernel description is static except for the batch size, which stays a run-time
//! argument (`Size`).

use crate::microkernel::TileShape;
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
/// become strides. `C` is row-major with leading dimension `n`. `packed` is scratch
/// for B in panels of `tile.nr` columns, as many as `pack_b` says.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct MatMul {
    pub a: usize,
    pub b: usize,
    pub c: usize,
    pub packed: usize,
    pub m: Size,
    pub k: Size,
    pub n: Size,
    pub a_row: Size,
    pub a_k: Size,
    pub b_k: Size,
    pub b_col: Size,
    pub lead: Vec<Lead>,
    pub tile: TileShape,
    pub pack_b: PackB,
    /// Scratch for A packed per K block as `[row tile][k][mr]`, when A's rows are not
    /// contiguous in K (`trans_a`): its K stride would be a whole row of the stored
    /// matrix, often a power of two that maps every k to the same few cache sets.
    pub packed_a: Option<usize>,
    /// K block depth (a static K is split into equal blocks no deeper than `tile.kc`).
    pub kc: u64,
    /// What happens to the rows of C once their last K block is done.
    pub epilogue: Option<Box<Epilogue>>,
    /// K split into fixed parts with partial sums at few rows (`matmul::by_depth`).
    pub depth: Option<DepthSplit>,
}

/// Where a product split along K (`matmul::by_depth`) keeps its partial results: part
/// `d` of rows `[0, M)` at float `d · max_rows · n` of `slot`. `M ≤ max_rows` takes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct DepthSplit {
    pub slot: usize,
    pub parts: u64,
    pub max_rows: u64,
}

/// Which panels of B the pack phase copies (the rest are read in place).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PackB {
    /// Only the partial last panel: a row-major B's full panels are read in place.
    Edge,
    /// Every panel.
    All,
}

/// Work a matrix product does on the rows of C it computed, after their last K block
/// and while they are still in cache (the fused ops of `nnc-opt`). Only for 2-D
/// products: C is `[m, n]`, row-major.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Epilogue {
    /// `C = act(alpha·C + bias)`, `bias` a slot of `n` floats.
    Dense { alpha: f32, bias: Option<usize>, act: Option<UnaryOp> },
    /// `C = h > 0 ? C : 0` (the ReLU gradient mask), `h` of C's shape.
    ReluMask { h: usize },
    /// C is the gradient of a parameter of C's shape: apply the optimizer update.
    Update(Update),
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

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Body {
    Elementwise(Elementwise),
    MatMul(MatMul),
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
            Body::MatMul(m) => match m.epilogue.as_deref() {
                None => "matmul",
                Some(Epilogue::Dense { .. }) => "dense",
                Some(Epilogue::ReluMask { .. }) => "dense_relu_grad",
                Some(Epilogue::Update(_)) => "dense_update",
            },
            Body::Update(_) => "update",
            Body::CrossEntropy(_) => "softmax_ce",
            Body::Reduce(_) => "reduce",
            Body::Softmax(_) => "softmax",
            Body::OneHot(_) => "one_hot",
        }
    }

    /// Every table slot the kernel reads or writes (for lifetimes).
    pub fn slots(&self) -> Vec<usize> {
        match self {
            Body::Elementwise(e) => std::iter::once(e.out.slot).chain(e.args.iter().map(|a| a.slot)).collect(),
            Body::MatMul(m) => {
                let mut s: Vec<usize> = [m.a, m.b, m.c, m.packed].into_iter().chain(m.packed_a).collect();
                s.extend(m.depth.map(|d| d.slot));
                match m.epilogue.as_deref() {
                    Some(Epilogue::Dense { bias, .. }) => s.extend(*bias),
                    Some(Epilogue::ReluMask { h }) => s.push(*h),
                    Some(Epilogue::Update(u)) => s.extend(u.slots()),
                    None => {}
                }
                s
            }
            Body::Update(u) => u.slots(),
            Body::CrossEntropy(c) => [c.logits, c.labels.slot, c.grad, c.row_ll].into_iter().chain(c.loss).collect(),
            Body::Reduce(r) => vec![r.input.slot, r.out.slot],
            Body::Softmax(s) => vec![s.x.slot, s.out.slot],
            Body::OneHot(h) => vec![h.idx.slot, h.out.slot],
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
            Body::MatMul(_) | Body::Softmax(_) | Body::Update(_) => false,
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
    /// Table slots: one per graph value, then scratch buffers, then the status word,
    /// then the thread pool (null: run single-threaded).
    pub n_slots: usize,
    pub status_slot: usize,
    pub pool_slot: usize,
    /// One-hot kernels reading a graph input directly: `(index in inputs, depth,
    /// one-hot value)`. The host checks those labels before running, so bad labels fail
    /// before any parameter changes.
    pub label_checks: Vec<(usize, u64, ValueId)>,
}
