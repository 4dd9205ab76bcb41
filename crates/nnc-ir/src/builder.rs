//! Convenience constructors on [`Graph`] for building graphs in Rust.
//!
//! Every method type-checks its operands and returns an [`IrError`] naming the value
//! when they do not fit; nothing here panics on bad shapes.

use crate::error::IrError;
use crate::graph::{Graph, ValueId};
use crate::op::{BinaryOp, Op, ReduceOp, UnaryOp};
use crate::tensor::Tensor;
use crate::types::{DType, Shape, TensorType};

impl Graph {
    /// Appends an op under a fresh name derived from its mnemonic.
    pub fn op(&mut self, op: Op, args: &[ValueId]) -> Result<ValueId, IrError> {
        let name = self.fresh_name(op.mnemonic());
        self.push(name, op, args)
    }

    /// Appends an op under a name derived from `name` (made unique if needed).
    pub fn named(&mut self, name: &str, op: Op, args: &[ValueId]) -> Result<ValueId, IrError> {
        let name = self.fresh_name(name);
        self.push(name, op, args)
    }

    pub fn input(&mut self, name: &str, ty: TensorType) -> Result<ValueId, IrError> {
        self.push_typed(name.to_string(), ty, Op::Input, Vec::new())
    }

    pub fn param(&mut self, name: &str, init: Tensor) -> Result<ValueId, IrError> {
        self.push(name, Op::Param { init: Some(init) }, &[])
    }

    pub fn constant(&mut self, value: Tensor) -> Result<ValueId, IrError> {
        self.op(Op::Const(value), &[])
    }

    pub fn scalar(&mut self, v: f32) -> Result<ValueId, IrError> {
        self.constant(Tensor::scalar_f32(v))
    }

    pub fn unary(&mut self, u: UnaryOp, x: ValueId) -> Result<ValueId, IrError> {
        self.op(Op::Unary(u), &[x])
    }

    pub fn binary(&mut self, b: BinaryOp, x: ValueId, y: ValueId) -> Result<ValueId, IrError> {
        self.op(Op::Binary(b), &[x, y])
    }

    pub fn add(&mut self, x: ValueId, y: ValueId) -> Result<ValueId, IrError> {
        self.binary(BinaryOp::Add, x, y)
    }

    pub fn sub(&mut self, x: ValueId, y: ValueId) -> Result<ValueId, IrError> {
        self.binary(BinaryOp::Sub, x, y)
    }

    pub fn mul(&mut self, x: ValueId, y: ValueId) -> Result<ValueId, IrError> {
        self.binary(BinaryOp::Mul, x, y)
    }

    pub fn div(&mut self, x: ValueId, y: ValueId) -> Result<ValueId, IrError> {
        self.binary(BinaryOp::Div, x, y)
    }

    pub fn relu(&mut self, x: ValueId) -> Result<ValueId, IrError> {
        self.unary(UnaryOp::Relu, x)
    }

    pub fn matmul(&mut self, a: ValueId, b: ValueId, trans_a: bool, trans_b: bool) -> Result<ValueId, IrError> {
        self.op(Op::MatMul { trans_a, trans_b }, &[a, b])
    }

    pub fn softmax(&mut self, x: ValueId, axis: usize) -> Result<ValueId, IrError> {
        self.op(Op::Softmax { axis }, &[x])
    }

    pub fn log_softmax(&mut self, x: ValueId, axis: usize) -> Result<ValueId, IrError> {
        self.op(Op::LogSoftmax { axis }, &[x])
    }

    pub fn reduce(&mut self, op: ReduceOp, x: ValueId, axes: &[usize], keep_dims: bool) -> Result<ValueId, IrError> {
        self.op(Op::Reduce { op, axes: axes.to_vec(), keep_dims }, &[x])
    }

    pub fn reshape(&mut self, x: ValueId, shape: Shape) -> Result<ValueId, IrError> {
        self.op(Op::Reshape { shape }, &[x])
    }

    pub fn transpose(&mut self, x: ValueId, perm: &[usize]) -> Result<ValueId, IrError> {
        self.op(Op::Transpose { perm: perm.to_vec() }, &[x])
    }

    pub fn broadcast(&mut self, x: ValueId, shape: Shape) -> Result<ValueId, IrError> {
        self.op(Op::Broadcast { shape }, &[x])
    }

    pub fn cast(&mut self, x: ValueId, to: DType) -> Result<ValueId, IrError> {
        self.op(Op::Cast { to }, &[x])
    }

    pub fn where_(&mut self, cond: ValueId, x: ValueId, y: ValueId) -> Result<ValueId, IrError> {
        self.op(Op::Where, &[cond, x, y])
    }
}
