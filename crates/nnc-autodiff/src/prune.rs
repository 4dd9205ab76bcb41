//! Dropping what a training step does not compute.
//!
//! The model is copied whole before the loss is attached, so values the step never
//! uses remain: a final softmax the loss bypasses, outputs other than the trained
//! one. They would be dead code in every backend and would inflate the forward part
//! of the summary, so they go. Inputs and parameters always stay: they are the step's
//! interface, and a parameter the loss does not reach is still part of the model.

use nnc_ir::{Graph, IrError, Op, ValueId};

/// The graph without values that neither the outputs nor the updates need (inputs
/// and parameters excepted), and each old id's new id (`None` if dropped).
pub(crate) fn prune(graph: &Graph) -> Result<(Graph, Vec<Option<ValueId>>), IrError> {
    graph.retain(&graph.live(|_, v| matches!(v.op, Op::Input | Op::Param { .. })))
}
