//! Dead-code elimination: drops every value that neither an output nor a declared
//! update needs, including gradients nobody uses. Inputs, parameters and state stay
//! even when unused: they are the step's interface, fed and updated by the caller.

use crate::OptError;
use nnc_ir::{Graph, Op};

pub const NAME: &str = "dce";

pub fn run(graph: &Graph) -> Result<Graph, OptError> {
    let (out, _) = graph.retain(&live(graph)).map_err(|e| OptError::Internal { pass: NAME, message: e.to_string() })?;
    Ok(out)
}

/// Values the outputs and updates need, plus the interface leaves.
pub(crate) fn live(graph: &Graph) -> Vec<bool> {
    graph.live(|_, v| matches!(v.op, Op::Input | Op::Param { .. } | Op::State { .. }))
}
