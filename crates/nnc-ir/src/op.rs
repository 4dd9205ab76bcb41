//! The closed set of primitive operations.
//!
//! Every backend, the interpreter and the gradient table `match` on [`Op`]
//! exhaustively, so adding an op makes the compiler point at every place that must
//! learn about it. Keep the set small: frontends lower richer ops (Gemm, Flatten,
//! Squeeze, Dropout, ...) into these.

use crate::fused::FusedOp;
use crate::tensor::Tensor;
use crate::types::{DType, Shape};
use crate::window::{Conv, Pool, PoolKind};

/// Elementwise functions of one tensor.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum UnaryOp {
    Neg,
    Exp,
    Log,
    Sqrt,
    Erf,
    Relu,
    LeakyRelu {
        alpha: f32,
    },
    Sigmoid,
    Tanh,
    /// GELU; `approximate` selects the tanh approximation instead of the erf form.
    Gelu {
        approximate: bool,
    },
    Identity,
}

/// Elementwise functions of two tensors, with numpy-style broadcasting.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BinaryOp {
    Add,
    Sub,
    Mul,
    Div,
    Pow,
    Max,
    Min,
    /// `a > b`, producing `bool`.
    Greater,
}

impl BinaryOp {
    pub fn is_comparison(self) -> bool {
        matches!(self, BinaryOp::Greater)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReduceOp {
    Sum,
    Mean,
    Max,
}

/// One primitive operation. The operands are the value's `args`; how many depends
/// on the op (see [`Op::arity`]).
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// A graph input fed by the caller (a batch, labels, a hyper-parameter).
    Input,
    /// A trainable parameter. `init` is its initial value, if known; a parameter
    /// without one must be fed like an input.
    Param {
        init: Option<Tensor>,
    },
    /// Persistent state that is not trained: optimizer moments. Fed and updated like a
    /// parameter, but never differentiated.
    State {
        init: Option<Tensor>,
    },
    /// A constant tensor.
    Const(Tensor),
    Unary(UnaryOp),
    Binary(BinaryOp),
    /// `where(cond, a, b)`, broadcasting all three.
    Where,
    /// Matrix product over the last two axes, leading axes broadcast (numpy `matmul`).
    /// The flags transpose the last two axes of an operand before multiplying.
    MatMul {
        trans_a: bool,
        trans_b: bool,
    },
    Softmax {
        axis: usize,
    },
    LogSoftmax {
        axis: usize,
    },
    /// Reduction over `axes` (sorted, distinct).
    Reduce {
        op: ReduceOp,
        axes: Vec<usize>,
        keep_dims: bool,
    },
    /// Same elements, new shape (at most one batch dimension, in a consistent place).
    Reshape {
        shape: Shape,
    },
    Transpose {
        perm: Vec<usize>,
    },
    /// Numpy-style broadcast to `shape`.
    Broadcast {
        shape: Shape,
    },
    Cast {
        to: DType,
    },
    /// Integer class indices `[..]` to f32 one-hot rows `[.., depth]`.
    OneHot {
        depth: usize,
    },
    /// The operands joined along `axis`, in order; `sizes` are their lengths along it
    /// (static: never the batch axis). Its gradient is a slice per operand.
    Concat {
        axis: usize,
        sizes: Vec<usize>,
    },
    /// Elements `[start, end)` along `axis` (static: never the batch axis). Its
    /// gradient is the concatenation of zeros, the gradient and zeros.
    Slice {
        axis: usize,
        start: usize,
        end: usize,
    },
    /// Convolution (cross-correlation, as in ONNX) of `x: [N, C, spatial..]` with
    /// `w: [M, C/groups, kernel..]`, giving `[N, M, out..]`:
    /// `y[n, m, o] = Σ_{c, k} w[m, c, k] · x[n, g·C/groups + c, o·stride − pad + k·dilation]`
    /// for `m` in group `g`, padding reading zero. No bias (an `add` follows).
    Conv(Conv),
    /// The gradient of [`Op::Conv`] with respect to `x`, from `dy: [N, M, out..]` and
    /// `w`: `[N, C, input..]`. Also ONNX's `ConvTranspose`. `input` is needed because
    /// several input sizes give the same output size when the stride exceeds 1.
    ConvBackwardData {
        conv: Conv,
        input: Vec<usize>,
    },
    /// The gradient of [`Op::Conv`] with respect to `w`, from `x` and `dy`: a sum over
    /// the batch and the output positions, `[M, C/groups, kernel..]`.
    ConvBackwardFilter {
        conv: Conv,
    },
    /// Max or average pooling of `x: [N, C, spatial..]` per channel.
    Pool(Pool),
    /// The gradient of [`Op::Pool`] with respect to `x`. Max pooling takes `(x, dy)`
    /// and routes each window's gradient to its first maximal tap; average pooling
    /// takes `dy` alone and spreads it over the window's counted taps. `input` is the
    /// spatial size of `x`.
    PoolBackward {
        pool: Pool,
        input: Vec<usize>,
    },
    /// A kernel standing for a sequence of the primitives above, made by the optimizer
    /// after differentiation (see [`FusedOp`]).
    Fused(FusedOp),
}

impl Op {
    /// Number of operands (0 for the leaves: inputs, parameters, state, constants).
    pub fn arity(&self) -> usize {
        match self {
            Op::Input | Op::Param { .. } | Op::State { .. } | Op::Const(_) => 0,
            Op::Unary(_)
            | Op::Softmax { .. }
            | Op::LogSoftmax { .. }
            | Op::Reduce { .. }
            | Op::Reshape { .. }
            | Op::Transpose { .. }
            | Op::Broadcast { .. }
            | Op::Cast { .. }
            | Op::OneHot { .. }
            | Op::Slice { .. } => 1,
            Op::Concat { sizes, .. } => sizes.len(),
            Op::Pool(_) => 1,
            Op::PoolBackward { pool, .. } => match pool.kind {
                PoolKind::Max => 2,
                PoolKind::Avg { .. } => 1,
            },
            Op::Binary(_)
            | Op::MatMul { .. }
            | Op::Conv(_)
            | Op::ConvBackwardData { .. }
            | Op::ConvBackwardFilter { .. } => 2,
            Op::Where => 3,
            Op::Fused(f) => f.arity(),
        }
    }

    pub fn is_leaf(&self) -> bool {
        matches!(self, Op::Input | Op::Param { .. } | Op::State { .. } | Op::Const(_))
    }

    /// The op's mnemonic in the text form, also used in summaries and errors.
    pub fn mnemonic(&self) -> &'static str {
        match self {
            Op::Input => "input",
            Op::Param { .. } => "param",
            Op::State { .. } => "state",
            Op::Const(_) => "const",
            Op::Unary(u) => match u {
                UnaryOp::Neg => "neg",
                UnaryOp::Exp => "exp",
                UnaryOp::Log => "log",
                UnaryOp::Sqrt => "sqrt",
                UnaryOp::Erf => "erf",
                UnaryOp::Relu => "relu",
                UnaryOp::LeakyRelu { .. } => "leaky_relu",
                UnaryOp::Sigmoid => "sigmoid",
                UnaryOp::Tanh => "tanh",
                UnaryOp::Gelu { .. } => "gelu",
                UnaryOp::Identity => "identity",
            },
            Op::Binary(b) => match b {
                BinaryOp::Add => "add",
                BinaryOp::Sub => "sub",
                BinaryOp::Mul => "mul",
                BinaryOp::Div => "div",
                BinaryOp::Pow => "pow",
                BinaryOp::Max => "max",
                BinaryOp::Min => "min",
                BinaryOp::Greater => "greater",
            },
            Op::Where => "where",
            Op::MatMul { .. } => "matmul",
            Op::Softmax { .. } => "softmax",
            Op::LogSoftmax { .. } => "log_softmax",
            Op::Reduce { op, .. } => match op {
                ReduceOp::Sum => "reduce_sum",
                ReduceOp::Mean => "reduce_mean",
                ReduceOp::Max => "reduce_max",
            },
            Op::Reshape { .. } => "reshape",
            Op::Transpose { .. } => "transpose",
            Op::Broadcast { .. } => "broadcast",
            Op::Cast { .. } => "cast",
            Op::OneHot { .. } => "one_hot",
            Op::Concat { .. } => "concat",
            Op::Slice { .. } => "slice",
            Op::Conv(_) => "conv",
            Op::ConvBackwardData { .. } => "conv_backward_data",
            Op::ConvBackwardFilter { .. } => "conv_backward_filter",
            Op::Pool(p) => match p.kind {
                PoolKind::Max => "max_pool",
                PoolKind::Avg { .. } => "avg_pool",
            },
            Op::PoolBackward { pool, .. } => match pool.kind {
                PoolKind::Max => "max_pool_backward",
                PoolKind::Avg { .. } => "avg_pool_backward",
            },
            Op::Fused(f) => f.mnemonic(),
        }
    }
}
