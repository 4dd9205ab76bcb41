//! Appending new values to the graph being built.
//!
//! The loss, the gradient rules and the optimizers all build IR through an
//! [`Emitter`]: it names each new value after what it belongs to (`<prefix>.<op>`, so a
//! printed training step reads like the math), shares one constant per scalar, and
//! provides the shape helpers every rule needs — sum a broadcast away, reshape or
//! broadcast only when the shape really changes, and the run-time batch size.

use nnc_ir::{BinaryOp, Dim, Graph, IrError, Op, ReduceOp, Shape, Tensor, TensorType, UnaryOp, ValueId};
use std::collections::HashMap;

pub(crate) struct Emitter {
    pub graph: Graph,
    prefix: String,
    /// One `const` per distinct f32 scalar (keyed by its bits).
    scalars: HashMap<u32, ValueId>,
    batch_size: Option<ValueId>,
}

impl Emitter {
    pub fn new(graph: Graph) -> Emitter {
        Emitter { graph, prefix: String::new(), scalars: HashMap::new(), batch_size: None }
    }

    /// Values appended by [`Emitter::op`] are named `<prefix>.<mnemonic>`.
    pub fn set_prefix(&mut self, prefix: impl Into<String>) {
        self.prefix = prefix.into();
    }

    pub fn ty(&self, id: ValueId) -> &TensorType {
        self.graph.ty(id)
    }

    pub fn shape(&self, id: ValueId) -> Shape {
        self.graph.ty(id).shape.clone()
    }

    /// Appends `op` under a name derived from the current prefix.
    pub fn op(&mut self, op: Op, args: &[ValueId]) -> Result<ValueId, IrError> {
        let name = if self.prefix.is_empty() {
            op.mnemonic().to_string()
        } else {
            format!("{}.{}", self.prefix, op.mnemonic())
        };
        self.graph.named(&name, op, args)
    }

    /// Appends `op` named `<prefix>.<what>`, for values worth a meaningful name.
    pub fn labeled(&mut self, what: &str, op: Op, args: &[ValueId]) -> Result<ValueId, IrError> {
        let name = format!("{}.{what}", self.prefix);
        self.graph.named(&name, op, args)
    }

    /// Appends `op` under `name` (made unique if the graph already uses it).
    pub fn named(&mut self, name: &str, op: Op, args: &[ValueId]) -> Result<ValueId, IrError> {
        self.graph.named(name, op, args)
    }

    /// The f32 scalar constant `v`, created on first use and shared afterwards.
    pub fn scalar(&mut self, v: f32) -> Result<ValueId, IrError> {
        if let Some(&id) = self.scalars.get(&v.to_bits()) {
            return Ok(id);
        }
        let id = self.graph.named(&format!("c{v}"), Op::Const(Tensor::scalar_f32(v)), &[])?;
        self.scalars.insert(v.to_bits(), id);
        Ok(id)
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

    /// `x * c` for a scalar constant `c`.
    pub fn scale(&mut self, x: ValueId, c: f32) -> Result<ValueId, IrError> {
        let c = self.scalar(c)?;
        self.mul(x, c)
    }

    pub fn matmul(&mut self, a: ValueId, b: ValueId, trans_a: bool, trans_b: bool) -> Result<ValueId, IrError> {
        self.op(Op::MatMul { trans_a, trans_b }, &[a, b])
    }

    pub fn reduce_sum(&mut self, x: ValueId, axes: Vec<usize>, keep_dims: bool) -> Result<ValueId, IrError> {
        self.op(Op::Reduce { op: ReduceOp::Sum, axes, keep_dims }, &[x])
    }

    /// `x` reshaped to `shape`; `x` itself when it already has that shape.
    pub fn reshape_to(&mut self, x: ValueId, shape: &Shape) -> Result<ValueId, IrError> {
        if &self.ty(x).shape == shape {
            return Ok(x);
        }
        self.op(Op::Reshape { shape: shape.clone() }, &[x])
    }

    /// `x` broadcast to `shape`; `x` itself when it already has that shape.
    pub fn broadcast_to(&mut self, x: ValueId, shape: &Shape) -> Result<ValueId, IrError> {
        if &self.ty(x).shape == shape {
            return Ok(x);
        }
        self.op(Op::Broadcast { shape: shape.clone() }, &[x])
    }

    /// The adjoint of broadcasting `shape` up to `x`'s shape: sums `x` over the axes
    /// that broadcasting added or stretched from 1, then restores the size-1 axes.
    /// This is how every rule of a broadcasting op undoes the broadcast.
    pub fn sum_to(&mut self, x: ValueId, shape: &Shape) -> Result<ValueId, IrError> {
        let from = self.shape(x);
        if &from == shape {
            return Ok(x);
        }
        let Some(lead) = from.rank().checked_sub(shape.rank()) else {
            return Err(IrError::structure(
                self.graph.name_of(x),
                format!("cannot sum {from} down to the larger shape {shape}"),
            ));
        };
        let axes: Vec<usize> = (0..from.rank())
            .filter(|&i| i < lead || (shape.0[i - lead] == Dim::Fixed(1) && from.0[i] != Dim::Fixed(1)))
            .collect();
        let summed = if axes.is_empty() { x } else { self.reduce_sum(x, axes, false)? };
        self.reshape_to(summed, shape)
    }

    /// The batch size N as an f32 scalar, computed at run time (the IR has no op that
    /// reads a dimension, so it is the sum of N ones). Created once, on first use.
    pub fn batch_size(&mut self) -> Result<ValueId, IrError> {
        if let Some(id) = self.batch_size {
            return Ok(id);
        }
        let one = self.scalar(1.0)?;
        let ones = self.graph.named("batch_size.ones", Op::Broadcast { shape: Shape(vec![Dim::Batch]) }, &[one])?;
        let n = self.graph.named(
            "batch_size",
            Op::Reduce { op: ReduceOp::Sum, axes: vec![0], keep_dims: false },
            &[ones],
        )?;
        self.batch_size = Some(n);
        Ok(n)
    }

    /// Zeros of `shape` named `name`: a constant when the shape is static, otherwise
    /// a broadcast zero.
    pub fn zeros(&mut self, name: &str, shape: &Shape) -> Result<ValueId, IrError> {
        match shape.as_fixed() {
            Some(dims) => {
                let n = dims.iter().product();
                let t = Tensor::from_f32(&dims, vec![0.0; n])
                    .map_err(|e| IrError::structure(name, format!("zeros of shape {shape}: {e}")))?;
                self.named(name, Op::Const(t), &[])
            }
            None => {
                let zero = self.scalar(0.0)?;
                self.named(name, Op::Broadcast { shape: shape.clone() }, &[zero])
            }
        }
    }
}
