//! Removes the IR values the importer made only for folding or fusion and that
//! nothing uses in the end (a constant that only fed a Reshape's shape, the pieces of
//! an erf formula fused into one GELU). Values that came from the model's own ops stay
//! even when unused, so importing an exported graph reproduces it exactly.

use nnc_ir::{Graph, IrError, ValueId};
use std::collections::HashSet;

pub(crate) fn remove_dead(graph: Graph, removable: &HashSet<ValueId>) -> Result<Graph, IrError> {
    if removable.is_empty() {
        return Ok(graph);
    }
    let n = graph.len();
    let mut live = vec![false; n];
    for o in graph.outputs() {
        live[o.index()] = true;
    }
    for (_, new) in graph.updates() {
        live[new.index()] = true;
    }
    // Users come after definitions, so one backward sweep settles liveness.
    for id in graph.ids().collect::<Vec<_>>().into_iter().rev() {
        if !removable.contains(&id) {
            live[id.index()] = true;
        }
        if live[id.index()] {
            for a in &graph.value(id).args {
                live[a.index()] = true;
            }
        }
    }
    if live.iter().all(|&l| l) {
        return Ok(graph);
    }
    let mut out = Graph::new(graph.name.clone());
    let mut map: Vec<Option<ValueId>> = vec![None; n];
    for id in graph.ids() {
        if !live[id.index()] {
            continue;
        }
        let v = graph.value(id);
        let args = v
            .args
            .iter()
            .map(|a| map[a.index()].ok_or_else(|| IrError::structure(&v.name, "operand removed as dead")))
            .collect::<Result<Vec<_>, _>>()?;
        map[id.index()] = Some(out.push_typed(v.name.clone(), v.ty.clone(), v.op.clone(), args)?);
    }
    let outputs = graph
        .outputs()
        .iter()
        .map(|o| map[o.index()].ok_or_else(|| IrError::structure(graph.name_of(*o), "output removed as dead")))
        .collect::<Result<Vec<_>, _>>()?;
    out.set_outputs(outputs);
    let updates = graph
        .updates()
        .iter()
        .map(|(l, v)| match (map[l.index()], map[v.index()]) {
            (Some(l), Some(v)) => Ok((l, v)),
            _ => Err(IrError::structure(graph.name_of(*l), "update removed as dead")),
        })
        .collect::<Result<Vec<_>, _>>()?;
    out.set_updates(updates);
    Ok(out)
}
