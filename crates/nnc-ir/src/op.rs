//! The closed set of primitive operations.
//!
//! Every backend, the interpreter and the gradient table `match` on [`Op`]
//! exhaustively, so adding an op makes the compiler point at every place that must
//! learn about it. Keep the set small: frontends lower richer ops (Gemm, Flatten,
//! Squeeze, Dropout, ...) into these.

use crate::fused::FusedOp;
use crate::tensor::Tensor;
use crate::types::{DType, Shape};

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
            | Op::OneHot { .. } => 1,
            Op::Binary(_) | Op::MatMul { .. } => 2,
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
            Op::Fused(f) => f.mnemonic(),
        }
    }
}
