//! Binding the graph's leaves to tensors: which feeds are allowed and required, the
//! batch size they imply, and checking every fed tensor against its declared type
//! before anything is computed.

use crate::error::{InterpError, MissingFeed};
use nnc_ir::{Dim, Graph, Op, Tensor, TensorType, ValueId};
use std::collections::HashMap;

/// `"input"`, `"param"` or `"state"` for a value that can be fed, `None` otherwise.
/// Parameters and state are fed to override their initial value.
fn feedable_kind(op: &Op) -> Option<&'static str> {
    match op {
        Op::Input => Some("input"),
        Op::Param { .. } => Some("param"),
        Op::State { .. } => Some("state"),
        _ => None,
    }
}

/// `dtype[dims]` of a concrete tensor, as in error messages.
pub(crate) fn describe(t: &Tensor) -> String {
    format!("{}{}", t.dtype(), t.ir_shape())
}

/// Whether `t` has type `ty` once the batch dimension is `batch`.
pub(crate) fn has_type(t: &Tensor, ty: &TensorType, batch: usize) -> bool {
    t.dtype() == ty.dtype && t.shape() == ty.shape.resolve(batch).as_slice()
}

/// The batch size implied by the feeds: the size at every `N` position of every fed
/// input, parameter or state whose declared shape has one. All must agree; with no
/// such feed the batch is 1. A batch-carrying feed of the wrong rank is reported
/// here, since its batch cannot be read.
pub fn batch_size(graph: &Graph, feeds: &HashMap<String, Tensor>) -> Result<usize, InterpError> {
    let mut found: Option<(&str, usize)> = None;
    for v in graph.values() {
        let (Some(kind), Some(t)) = (feedable_kind(&v.op), feeds.get(&v.name)) else {
            continue;
        };
        if !v.ty.shape.has_batch() {
            continue;
        }
        if t.shape().len() != v.ty.rank() {
            return Err(mismatch(kind, &v.name, &v.ty, None, t));
        }
        for (dim, &size) in v.ty.shape.dims().iter().zip(t.shape()) {
            if *dim != Dim::Batch {
                continue;
            }
            match found {
                None => found = Some((&v.name, size)),
                Some((first, n)) if n != size => {
                    return Err(InterpError::BatchMismatch {
                        first: first.to_string(),
                        first_batch: n,
                        second: v.name.clone(),
                        second_batch: size,
                    })
                }
                Some(_) => {}
            }
        }
    }
    Ok(found.map_or(1, |(_, n)| n))
}

fn mismatch(kind: &'static str, name: &str, ty: &TensorType, batch: Option<usize>, got: &Tensor) -> InterpError {
    InterpError::FeedMismatch { kind, name: name.to_string(), expected: ty.clone(), batch, got: describe(got) }
}

/// The tensor of every leaf (indexed by value id; `None` for computed values) and the
/// batch size. Checks, in order: unknown feed names, missing feeds, the batch size,
/// the type of every feed, then constants and initial values against their declared
/// types.
pub(crate) fn bind<'a>(
    graph: &'a Graph,
    feeds: &'a HashMap<String, Tensor>,
) -> Result<(usize, Vec<Option<&'a Tensor>>), InterpError> {
    let feedable = |name: &str| graph.find(name).is_some_and(|id| feedable_kind(&graph.value(id).op).is_some());
    let mut unknown: Vec<String> = feeds.keys().filter(|n| !feedable(n)).cloned().collect();
    if !unknown.is_empty() {
        unknown.sort();
        let inputs = graph.inputs().iter().map(|&id| graph.name_of(id).to_string()).collect();
        return Err(InterpError::UnknownFeeds { names: unknown, inputs });
    }

    let missing: Vec<MissingFeed> = graph
        .values()
        .iter()
        .filter(|v| !feeds.contains_key(&v.name))
        .filter_map(|v| {
            let kind = match v.op {
                Op::Input => "input",
                Op::Param { init: None } => "param",
                Op::State { init: None } => "state",
                _ => return None,
            };
            Some(MissingFeed { kind, name: v.name.clone(), ty: v.ty.clone() })
        })
        .collect();
    if !missing.is_empty() {
        return Err(InterpError::MissingFeeds { missing });
    }

    let batch = batch_size(graph, feeds)?;
    let mut leaves = vec![None; graph.len()];
    // A bad feed is the caller's mistake and is reported first; a bad constant or
    // initial value means the graph itself is inconsistent.
    let mut bad_leaf = None;
    for (i, v) in graph.values().iter().enumerate() {
        let (t, fed_as) = match (&v.op, feeds.get(&v.name)) {
            (op @ (Op::Input | Op::Param { .. } | Op::State { .. }), Some(t)) => (t, feedable_kind(op)),
            (Op::Param { init: Some(t) } | Op::State { init: Some(t) }, None) | (Op::Const(t), _) => (t, None),
            _ => continue,
        };
        if !has_type(t, &v.ty, batch) {
            match fed_as {
                Some(kind) => return Err(mismatch(kind, &v.name, &v.ty, Some(batch), t)),
                None => {
                    bad_leaf.get_or_insert_with(|| type_mismatch(graph, ValueId(i as u32), batch, &describe(t)));
                }
            }
        }
        leaves[i] = Some(t);
    }
    if let Some(e) = bad_leaf {
        return Err(e);
    }
    Ok((batch, leaves))
}

/// The error for a value that does not have its declared type.
/// `got` is the actual type, as `dtype[dims]`.
pub(crate) fn type_mismatch(graph: &Graph, id: ValueId, batch: usize, got: &str) -> InterpError {
    let v = graph.value(id);
    InterpError::TypeMismatch {
        value: v.name.clone(),
        op: v.op.mnemonic(),
        expected: v.ty.clone(),
        batch,
        got: got.to_string(),
    }
}
