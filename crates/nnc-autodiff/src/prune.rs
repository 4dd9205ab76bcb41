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
    let mut live = vec![false; graph.len()];
    for &o in graph.outputs() {
        live[o.index()] = true;
    }
    for &(leaf, new) in graph.updates() {
        live[leaf.index()] = true;
        live[new.index()] = true;
    }
    for id in graph.ids() {
        if matches!(graph.value(id).op, Op::Input | Op::Param { .. }) {
            live[id.index()] = true;
        }
    }
    for id in graph.ids().collect::<Vec<_>>().into_iter().rev() {
        if live[id.index()] {
            for &a in &graph.value(id).args {
                live[a.index()] = true;
            }
        }
    }

    let mut out = Graph::new(graph.name.clone());
    let mut map = vec![None; graph.len()];
    for id in graph.ids() {
        if !live[id.index()] {
            continue;
        }
        let v = graph.value(id);
        let args = v.args.iter().map(|a| map[a.index()].ok_or_else(|| dropped(graph, *a))).collect::<Result<_, _>>()?;
        map[id.index()] = Some(out.push_typed(v.name.clone(), v.ty.clone(), v.op.clone(), args)?);
    }
    let remap = |id: ValueId| map[id.index()].ok_or_else(|| dropped(graph, id));
    let outputs = graph.outputs().iter().map(|&o| remap(o)).collect::<Result<_, _>>()?;
    let updates = graph.updates().iter().map(|&(l, n)| Ok((remap(l)?, remap(n)?))).collect::<Result<_, IrError>>()?;
    out.set_outputs(outputs);
    out.set_updates(updates);
    Ok((out, map))
}

fn dropped(graph: &Graph, id: ValueId) -> IrError {
    IrError::structure(graph.name_of(id), "a live value's operand was dropped")
}
