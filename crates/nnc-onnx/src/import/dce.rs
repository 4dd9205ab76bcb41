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
    let live = graph.live(|id, _| !removable.contains(&id));
    if live.iter().all(|&l| l) {
        return Ok(graph);
    }
    Ok(graph.retain(&live)?.0)
}
