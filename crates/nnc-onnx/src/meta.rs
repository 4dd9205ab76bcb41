//! nnc's own model metadata (`ModelProto.metadata_props`), written by the exporter so
//! that importing an export gives back exactly the same graph. Other tools ignore it;
//! a model without it imports with the default rules.
//!
//! - `nnc.kind:<name>` = `param` | `state`: a graph input that is a parameter or
//!   optimizer state fed by the caller, or an initializer holding state.
//! - `nnc.leaf:<name>` = node index: where an input/parameter/state stood among the
//!   nodes (only written when the graph does not list them first).
//! - `nnc.update:<leaf>` = value: the graph's in-place update of a parameter or state.
//! - `nnc.outputs` = count: how many graph outputs are the graph's own; the rest exist
//!   only so other runtimes can read the updated values.
//!
//! One marker lives on nodes (`NodeProto.metadata_props`): `nnc.fuse` = `matmul` on a
//! Transpose the exporter wrote for a batched matmul's transpose flag, which the
//! importer folds back into the flag. Other Transposes are imported as they are.

use crate::proto::{ModelProto, StringStringEntryProto};
use std::collections::HashMap;

pub(crate) const KIND: &str = "nnc.kind:";
pub(crate) const POSITION: &str = "nnc.leaf:";
pub(crate) const UPDATE: &str = "nnc.update:";
pub(crate) const OUTPUTS: &str = "nnc.outputs";
pub(crate) const FUSE: &str = "nnc.fuse";
pub(crate) const FUSE_MATMUL: &str = "matmul";

/// What kind of leaf a name is, beyond what ONNX itself can say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    Param,
    State,
}

impl Role {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Role::Param => "param",
            Role::State => "state",
        }
    }
}

#[derive(Default)]
pub(crate) struct NncMeta {
    pub(crate) kinds: HashMap<String, Role>,
    /// name → (node index, order of the record).
    pub(crate) positions: HashMap<String, (usize, usize)>,
    pub(crate) updates: Vec<(String, String)>,
    pub(crate) outputs: Option<usize>,
}

/// Reads the metadata. Malformed entries are ignored (they are hints), except that a
/// malformed position discards all positions, since a partial order is worse than none.
pub(crate) fn read(model: &ModelProto) -> NncMeta {
    let mut meta = NncMeta::default();
    let mut positions_ok = true;
    for (order, p) in model.metadata_props.iter().enumerate() {
        if let Some(name) = p.key.strip_prefix(KIND) {
            let role = match p.value.as_str() {
                "param" => Role::Param,
                "state" => Role::State,
                _ => continue,
            };
            meta.kinds.insert(name.to_string(), role);
        } else if let Some(name) = p.key.strip_prefix(POSITION) {
            match p.value.parse::<usize>() {
                Ok(at) => {
                    meta.positions.insert(name.to_string(), (at, order));
                }
                Err(_) => positions_ok = false,
            }
        } else if let Some(leaf) = p.key.strip_prefix(UPDATE) {
            meta.updates.push((leaf.to_string(), p.value.clone()));
        } else if p.key == OUTPUTS {
            meta.outputs = p.value.parse().ok();
        }
    }
    if !positions_ok {
        meta.positions.clear();
    }
    meta
}

pub(crate) fn entry(key: impl Into<String>, value: impl Into<String>) -> StringStringEntryProto {
    StringStringEntryProto { key: key.into(), value: value.into() }
}
