//! Resource limits, checked from what the model *declares* before any tensor is read:
//! the number of nodes and initializers, and the bytes every initializer and Constant
//! tensor would need (declared dims × the element size nnc holds it in), one by one and
//! together, against the [`ImportOptions`]' memory budget.

use super::tensor::{element_count, ir_dtype};
use crate::proto::{GraphProto, TensorProto};
use crate::{ImportOptions, OnnxError};
use nnc_ir::limits::format_bytes;

/// The default limit on the nodes (and, separately, the initializers) of a graph.
pub const MAX_NODES: usize = 1_000_000;

pub(crate) fn check(graph: &GraphProto, opts: &ImportOptions) -> Result<(), OnnxError> {
    for (what, n) in [("nodes", graph.node.len()), ("initializers", graph.initializer.len())] {
        if n > opts.max_nodes {
            return Err(OnnxError::Limit(format!(
                "the graph has {n} {what}, more than the {} nnc imports (ImportOptions::max_nodes)",
                opts.max_nodes
            )));
        }
    }
    let budget = opts.max_memory;
    let mut total: u64 = 0;
    let mut largest: Option<(&str, &str, u64)> = None;
    let constants = graph
        .node
        .iter()
        .filter(|n| n.op_type == "Constant")
        .flat_map(|n| n.attribute.iter().filter(|a| a.name == "value").filter_map(move |a| Some((n, a.t.as_ref()?))))
        .map(|(n, t)| ("constant", n.output.first().map_or(n.name.as_str(), String::as_str), t));
    let initializers = graph.initializer.iter().map(|t| ("initializer", t.name.as_str(), t));
    for (kind, name, t) in initializers.chain(constants) {
        let name = if name.is_empty() { "<unnamed>" } else { name };
        let bytes = declared_bytes(t, name)?;
        budget.check(format_args!("{kind} {name}"), bytes).map_err(OnnxError::Limit)?;
        total = total.saturating_add(bytes);
        if largest.is_none_or(|(_, _, b)| bytes > b) {
            largest = Some((kind, name, bytes));
        }
    }
    if let (Err(message), Some((kind, name, bytes))) =
        (budget.check("the model's tensor data (initializers and constants)", total), largest)
    {
        return Err(OnnxError::Limit(format!("{message}; the largest is {kind} {name} ({})", format_bytes(bytes))));
    }
    Ok(())
}

/// The bytes `t` takes once imported, from its declared dims and element type (0 for
/// an element type nnc refuses anyway: reading it reports that).
fn declared_bytes(t: &TensorProto, name: &str) -> Result<u64, OnnxError> {
    let shape = element_count(&t.dims, |message| OnnxError::Tensor { name: name.to_string(), message })?;
    let count: usize = shape.iter().product();
    let width = ir_dtype(t.data_type).map_or(0, |d| d.size_bytes());
    Ok((count as u64).saturating_mul(width as u64))
}
