//! Algebraic identities that remove work: `x*1`, `x+0`, `x-0`, `x/1`, `identity`,
//! `neg(neg x)`, transposes that cancel or compose, reshape chains, and reshapes,
//! broadcasts and casts to what the value already is.
//!
//! A rule fires only when the result has exactly the type of the value it forwards
//! to: `x + zeros[4]` with `x: f32[]` broadcasts, so it stays. `x + 0` forwards `x`
//! even though IEEE `-0 + 0` is `+0`; the two compare equal and no op nnc has
//! tells them apart except division by zero.

use crate::rewrite::Rewriter;
use crate::OptError;
use nnc_ir::{BinaryOp, Graph, Op, UnaryOp, ValueId};

pub const NAME: &str = "simplify";

pub fn run(graph: &Graph) -> Result<Graph, OptError> {
    let mut rw = Rewriter::new(graph, NAME);
    for id in graph.ids() {
        let (op, args) = rw.current(id);
        let (op, args) = (op.clone(), args);
        let ty = &graph.value(id).ty;
        let same = |x: ValueId| graph.ty(x) == ty;
        // Operand `k` is a constant whose every element is `c`.
        let is = |k: usize, c: f32| crate::pattern::const_all(graph, args[k], c);
        let forward_to = match &op {
            Op::Unary(UnaryOp::Identity) => Some(args[0]),
            Op::Unary(UnaryOp::Neg) => match rw.current(args[0]) {
                (Op::Unary(UnaryOp::Neg), inner) => Some(inner[0]),
                _ => None,
            },
            Op::Binary(BinaryOp::Mul) if is(1, 1.0) && same(args[0]) => Some(args[0]),
            Op::Binary(BinaryOp::Mul) if is(0, 1.0) && same(args[1]) => Some(args[1]),
            Op::Binary(BinaryOp::Add) if is(1, 0.0) && same(args[0]) => Some(args[0]),
            Op::Binary(BinaryOp::Add) if is(0, 0.0) && same(args[1]) => Some(args[1]),
            Op::Binary(BinaryOp::Sub) if is(1, 0.0) && same(args[0]) => Some(args[0]),
            Op::Binary(BinaryOp::Div) if is(1, 1.0) && same(args[0]) => Some(args[0]),
            Op::Cast { to } if *to == graph.ty(args[0]).dtype => Some(args[0]),
            Op::Broadcast { .. } if same(args[0]) => Some(args[0]),
            Op::Transpose { perm } => {
                if is_identity(perm) {
                    Some(args[0])
                } else if let (Op::Transpose { perm: inner }, x) = rw.current(args[0]) {
                    // transpose(transpose(x, p), q)[i] reads x along p[q[i]].
                    let composed: Vec<usize> = perm.iter().map(|&q| inner[q]).collect();
                    let x = x.clone();
                    if is_identity(&composed) {
                        Some(x[0])
                    } else {
                        rw.replace(id, Op::Transpose { perm: composed }, x);
                        None
                    }
                } else {
                    None
                }
            }
            Op::Reshape { shape } => {
                if same(args[0]) {
                    Some(args[0])
                } else if let (Op::Reshape { .. }, x) = rw.current(args[0]) {
                    let x = x.clone();
                    if graph.ty(x[0]) == ty {
                        Some(x[0])
                    } else {
                        rw.replace(id, Op::Reshape { shape: shape.clone() }, x);
                        None
                    }
                } else {
                    None
                }
            }
            _ => None,
        };
        if let Some(to) = forward_to {
            rw.forward(id, to);
        }
    }
    rw.finish()
}

fn is_identity(perm: &[usize]) -> bool {
    perm.iter().enumerate().all(|(i, &p)| i == p)
}
