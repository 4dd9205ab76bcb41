//! The verifier: every value is well-typed, defined once before use, and the graph's
//! outputs exist. Runs after import, after parsing, and after every pass in tests and
//! debug builds.

use crate::error::IrError;
use crate::graph::Graph;
use crate::infer::infer_type;
use crate::op::Op;
use crate::types::TensorType;
use std::collections::HashSet;

/// Largest element count nnc accepts for any one tensor (per batch element for
/// batched tensors). Larger shapes are almost certainly corrupt input.
pub const MAX_ELEMENTS: usize = 1 << 31;

pub fn verify(graph: &Graph) -> Result<(), IrError> {
    let mut names = HashSet::new();
    for (index, v) in graph.values().iter().enumerate() {
        let err = |message: String| IrError::Type { value: v.name.clone(), op: v.op.mnemonic().to_string(), message };
        if !names.insert(v.name.as_str()) {
            return Err(IrError::structure(&v.name, "defined twice"));
        }
        if let Some(a) = v.args.iter().find(|a| a.index() >= index) {
            return Err(IrError::structure(&v.name, format!("operand {a} is not defined before use")));
        }
        check_size(&v.ty).map_err(err)?;
        let arg_types: Vec<&TensorType> = v.args.iter().map(|&a| graph.ty(a)).collect();
        let expected = match &v.op {
            Op::Input | Op::Param { init: None } | Op::State { init: None } => {
                if !v.args.is_empty() {
                    return Err(err("takes no operands".into()));
                }
                continue;
            }
            op => infer_type(op, &arg_types).map_err(err)?,
        };
        if expected != v.ty {
            return Err(err(format!("declared type {} but the op produces {expected}", v.ty)));
        }
    }
    if graph.outputs().is_empty() {
        return Err(IrError::structure(&graph.name, "graph has no outputs"));
    }
    let mut updated = HashSet::new();
    for &(leaf, new) in graph.updates() {
        if leaf.index() >= graph.len() || new.index() >= graph.len() {
            return Err(IrError::structure(
                &graph.name,
                format!("update {leaf} <- {new} refers to an undefined value"),
            ));
        }
        let (l, n) = (graph.value(leaf), graph.value(new));
        if !matches!(l.op, Op::Param { .. } | Op::State { .. }) {
            return Err(IrError::structure(&l.name, "only a param or state can be updated in place"));
        }
        if !updated.insert(leaf) {
            return Err(IrError::structure(&l.name, "updated twice"));
        }
        if l.ty != n.ty {
            return Err(IrError::structure(
                &l.name,
                format!("updated with %{} of type {}, not {}", n.name, n.ty, l.ty),
            ));
        }
    }
    if let Some(o) = graph.outputs().iter().find(|o| o.index() >= graph.len()) {
        return Err(IrError::structure(&graph.name, format!("output {o} is not defined")));
    }
    Ok(())
}

fn check_size(ty: &TensorType) -> Result<(), String> {
    match ty.shape.fixed_product() {
        Some(n) if n <= MAX_ELEMENTS => Ok(()),
        _ => Err(format!("{ty} has more than {MAX_ELEMENTS} elements")),
    }
}
