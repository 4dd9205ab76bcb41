//! Common-subexpression elimination: a value computed by the same op with the same
//! attributes on the same operands as an earlier value is forwarded to it. Operands
//! that are equal constants (same type, same bits) count as the same operand. Equal
//! tensor constants become one; scalar constants stay apart, since every backend
//! makes them immediates and their names say what they are (`%loss.grad` and `%c1`
//! are both 1.0). Inputs, parameters and state are never merged: each is its own
//! storage.

use crate::rewrite::Rewriter;
use crate::OptError;
use nnc_ir::{Graph, Op, Tensor, ValueId};
use std::collections::HashMap;

pub const NAME: &str = "cse";

#[derive(PartialEq, Eq, Hash)]
enum Key {
    /// The op's attributes (its `Debug` form, which spells every attribute and
    /// distinguishes f32 values such as `0.0` and `-0.0`) and its operands.
    Op(String, Vec<ValueId>),
    /// Type and raw bits of a constant.
    Const(String, Vec<u64>),
}

pub fn run(graph: &Graph) -> Result<Graph, OptError> {
    let mut rw = Rewriter::new(graph, NAME);
    let mut seen: HashMap<Key, ValueId> = HashMap::new();
    // The first constant with each value, standing for all of them in keys.
    let mut canonical: Vec<ValueId> = graph.ids().collect();
    for id in graph.ids() {
        let (op, args) = rw.current(id);
        let key = match op {
            Op::Input | Op::Param { .. } | Op::State { .. } => continue,
            Op::Const(t) => Key::Const(graph.ty(id).to_string(), bits(t)),
            op => Key::Op(format!("{op:?}"), args.iter().map(|a| canonical[a.index()]).collect()),
        };
        match (seen.get(&key), op) {
            (Some(&first), Op::Const(t)) => {
                canonical[id.index()] = first;
                if t.len() > 1 {
                    rw.forward(id, first);
                }
            }
            (Some(&first), _) => rw.forward(id, first),
            (None, _) => {
                seen.insert(key, id);
            }
        }
    }
    rw.finish()
}

fn bits(t: &Tensor) -> Vec<u64> {
    match t {
        Tensor::F32(a) => a.iter().map(|v| v.to_bits() as u64).collect(),
        Tensor::I64(a) => a.iter().map(|&v| v as u64).collect(),
        Tensor::I32(a) => a.iter().map(|&v| v as u32 as u64).collect(),
        Tensor::Bool(a) => a.iter().map(|&v| v as u64).collect(),
    }
}
