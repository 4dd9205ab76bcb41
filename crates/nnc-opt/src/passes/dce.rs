//! Dead-code elimination: drops every value that neither an output nor a declared
//! update needs, including gradients nobody uses. Inputs, parameters and state stay
//! even when unused: they are the step's interface, fed and updated by the caller.

use crate::OptError;
use nnc_ir::{Graph, Op, ValueId};

pub const NAME: &str = "dce";

pub fn run(graph: &Graph) -> Result<Graph, OptError> {
    let live = live(graph);
    let internal = |message: String| OptError::Internal { pass: NAME, message };
    let mut out = Graph::new(graph.name.clone());
    let mut map = vec![None; graph.len()];
    for id in graph.ids() {
        if !live[id.index()] {
            continue;
        }
        let v = graph.value(id);
        let args =
            v.args.iter().map(|a| map[a.index()].ok_or_else(|| internal(format!("%{} lost an operand", v.name))));
        let args = args.collect::<Result<Vec<ValueId>, _>>()?;
        map[id.index()] = Some(
            out.push_typed(v.name.clone(), v.ty.clone(), v.op.clone(), args).map_err(|e| internal(e.to_string()))?,
        );
    }
    let remap = |id: ValueId| map[id.index()].ok_or_else(|| internal(format!("%{} was dropped", graph.name_of(id))));
    out.set_outputs(graph.outputs().iter().map(|&o| remap(o)).collect::<Result<_, _>>()?);
    out.set_updates(graph.updates().iter().map(|&(l, v)| Ok((remap(l)?, remap(v)?))).collect::<Result<_, OptError>>()?);
    Ok(out)
}

/// Values the outputs and updates need, plus the interface leaves.
pub(crate) fn live(graph: &Graph) -> Vec<bool> {
    let mut live = vec![false; graph.len()];
    for &o in graph.outputs() {
        live[o.index()] = true;
    }
    for &(l, v) in graph.updates() {
        live[l.index()] = true;
        live[v.index()] = true;
    }
    for id in graph.ids() {
        if matches!(graph.value(id).op, Op::Input | Op::Param { .. } | Op::State { .. }) {
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
    live
}
