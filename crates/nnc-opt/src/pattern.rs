//! Small queries the passes share: who uses a value, constants, and op shapes.

use nnc_ir::{BinaryOp, DType, Graph, Op, Tensor, TensorType, UnaryOp, ValueId};

/// Who uses each value, and which values the caller can observe.
pub(crate) struct Uses {
    pub users: Vec<Vec<ValueId>>,
    /// Outputs and the new values of declared updates.
    pub observed: Vec<bool>,
}

impl Uses {
    pub fn of(g: &Graph) -> Uses {
        let mut observed = vec![false; g.len()];
        for &o in g.outputs() {
            observed[o.index()] = true;
        }
        for &(_, v) in g.updates() {
            observed[v.index()] = true;
        }
        Uses { users: g.users(), observed }
    }

    /// `id` is used by `user` alone and nobody else can see it: fusing it into
    /// `user` removes it entirely.
    pub fn only_user(&self, id: ValueId, user: ValueId) -> bool {
        !self.observed[id.index()] && self.users[id.index()] == [user]
    }

    /// Every user of `id` is in `within`, and nobody else can see it.
    pub fn used_only_by(&self, id: ValueId, within: &[ValueId]) -> bool {
        !self.observed[id.index()] && self.users[id.index()].iter().all(|u| within.contains(u))
    }

    pub fn single_user(&self, id: ValueId) -> Option<ValueId> {
        match self.users[id.index()][..] {
            [u] if !self.observed[id.index()] => Some(u),
            _ => None,
        }
    }
}

/// The value of an f32 scalar (rank 0) constant.
pub(crate) fn scalar_const(g: &Graph, id: ValueId) -> Option<f32> {
    match &g.value(id).op {
        Op::Const(Tensor::F32(a)) if a.ndim() == 0 => a.iter().next().copied(),
        _ => None,
    }
}

/// A constant whose every element equals `x` (any numeric type).
pub(crate) fn const_all(g: &Graph, id: ValueId, x: f32) -> bool {
    match &g.value(id).op {
        Op::Const(t) => match t {
            Tensor::F32(a) => a.iter().all(|&v| v == x),
            Tensor::I64(a) => a.iter().all(|&v| v as f32 == x),
            Tensor::I32(a) => a.iter().all(|&v| v as f32 == x),
            Tensor::Bool(_) => false,
        },
        _ => false,
    }
}

/// The operands of `id` if it is `Binary(op)`.
pub(crate) fn binary(g: &Graph, id: ValueId, op: BinaryOp) -> Option<(ValueId, ValueId)> {
    let v = g.value(id);
    (v.op == Op::Binary(op)).then(|| (v.args[0], v.args[1]))
}

/// Both operand orders of a commutative `Binary(op)`.
pub(crate) fn commuted(g: &Graph, id: ValueId, op: BinaryOp) -> [Option<(ValueId, ValueId)>; 2] {
    let ab = binary(g, id, op);
    [ab, ab.map(|(a, b)| (b, a))]
}

pub(crate) fn unary(g: &Graph, id: ValueId) -> Option<(UnaryOp, ValueId)> {
    match g.value(id).op {
        Op::Unary(u) => Some((u, g.value(id).args[0])),
        _ => None,
    }
}

/// An f32 matrix (rank 2).
pub(crate) fn is_matrix(ty: &TensorType) -> bool {
    ty.dtype == DType::F32 && ty.rank() == 2
}

/// A 2-D matrix product `(trans_a, trans_b, a, b)`.
pub(crate) fn matmul_2d(g: &Graph, id: ValueId) -> Option<(bool, bool, ValueId, ValueId)> {
    let v = g.value(id);
    match v.op {
        Op::MatMul { trans_a, trans_b }
            if is_matrix(g.ty(v.args[0])) && is_matrix(g.ty(v.args[1])) && is_matrix(&v.ty) =>
        {
            Some((trans_a, trans_b, v.args[0], v.args[1]))
        }
        _ => None,
    }
}

/// An f32 scalar (rank 0) value: a per-step hyper-parameter such as `lr`.
pub(crate) fn is_scalar(g: &Graph, id: ValueId) -> bool {
    let t = g.ty(id);
    t.dtype == DType::F32 && t.rank() == 0
}
