//! Node scheduling. ONNX requires nodes in topological order, but some producers get
//! it wrong; the importer sorts them (stably) and reports values that are never
//! defined and genuine cycles.

use crate::proto::GraphProto;
use crate::OnnxError;
use std::collections::{BTreeSet, HashMap, HashSet};

/// How a node is named in messages: its name, or its position when it has none.
pub(crate) fn describe(name: &str, index: usize) -> String {
    if name.is_empty() {
        format!("#{index}")
    } else {
        format!("{name:?}")
    }
}

/// Node indices in a valid execution order. `leaves` are the names defined before any
/// node runs (graph inputs and initializers).
pub(crate) fn schedule(graph: &GraphProto, leaves: &HashSet<&str>) -> Result<Vec<usize>, OnnxError> {
    let nodes = &graph.node;
    let mut producer: HashMap<&str, usize> = HashMap::new();
    for (i, node) in nodes.iter().enumerate() {
        for out in node.output.iter().filter(|o| !o.is_empty()) {
            if leaves.contains(out.as_str()) || producer.insert(out, i).is_some() {
                return Err(OnnxError::Model(format!(
                    "value \"{out}\" is defined twice (again by node {} {})",
                    describe(&node.name, i),
                    node.op_type
                )));
            }
        }
    }
    // deps[i]: nodes whose outputs node i reads.
    let mut deps: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); nodes.len()];
    for (i, node) in nodes.iter().enumerate() {
        for input in node.input.iter().filter(|n| !n.is_empty()) {
            if leaves.contains(input.as_str()) {
                continue;
            }
            match producer.get(input.as_str()) {
                Some(&p) => {
                    deps[i].insert(p);
                }
                None => {
                    return Err(OnnxError::Model(format!(
                        "value \"{input}\" used by node {} {} is never defined",
                        describe(&node.name, i),
                        node.op_type
                    )))
                }
            }
        }
    }
    for out in &graph.output {
        if !leaves.contains(out.name.as_str()) && !producer.contains_key(out.name.as_str()) {
            return Err(OnnxError::Model(format!("graph output \"{}\" is never defined", out.name)));
        }
    }
    // Kahn's algorithm, always taking the lowest ready index so a sorted model keeps
    // its order exactly.
    let mut users: Vec<Vec<usize>> = vec![Vec::new(); nodes.len()];
    let mut missing: Vec<usize> = deps.iter().map(|d| d.len()).collect();
    for (i, d) in deps.iter().enumerate() {
        for &p in d {
            users[p].push(i);
        }
    }
    let mut ready: BTreeSet<usize> = (0..nodes.len()).filter(|&i| missing[i] == 0).collect();
    let mut order = Vec::with_capacity(nodes.len());
    while let Some(i) = ready.pop_first() {
        order.push(i);
        for &u in &users[i] {
            missing[u] -= 1;
            if missing[u] == 0 {
                ready.insert(u);
            }
        }
    }
    if order.len() < nodes.len() {
        let on_cycle = find_cycle_node(&deps, &missing);
        let node = &nodes[on_cycle];
        return Err(OnnxError::Model(format!(
            "the nodes form a cycle through node {} {}",
            describe(&node.name, on_cycle),
            node.op_type
        )));
    }
    Ok(order)
}

/// A node on a cycle among the unscheduled nodes (those with `missing > 0`): walking
/// unscheduled dependencies must eventually revisit a node.
fn find_cycle_node(deps: &[BTreeSet<usize>], missing: &[usize]) -> usize {
    let Some(mut at) = (0..deps.len()).find(|&i| missing[i] > 0) else { return 0 };
    let mut seen = HashSet::new();
    while seen.insert(at) {
        match deps[at].iter().find(|&&d| missing[d] > 0) {
            Some(&d) => at = d,
            None => break,
        }
    }
    at
}
