//! Graph inputs and initializers: which become IR inputs, which trainable parameters,
//! which plain constants, and in what order they are defined.
//!
//! Float initializers that some node uses as data are parameters; everything else
//! (integer tensors, shapes, axes) is an import-time constant that only reaches the IR
//! if run-time data needs it. A graph input that also has an initializer (as older
//! exporters write) is a parameter.
//!
//! nnc's own exporter records parameters without initial values, optimizer state and
//! where each leaf stood among the other values ([`crate::meta`]), so that importing
//! an export reproduces the graph exactly; other models get the canonical order:
//! graph inputs, then the remaining initializers.

use super::support::{is_state_input, is_value_input};
use super::tensor::{read_tensor, refuse_float64, MAX_ELEMENTS};
use crate::meta::{NncMeta, Role};
use crate::proto::tensor_proto::DataType;
use crate::proto::tensor_shape_proto::dimension::Value as DimValue;
use crate::proto::type_proto::Value as TypeValue;
use crate::proto::{GraphProto, ValueInfoProto};
use crate::OnnxError;
use nnc_ir::{DType, Dim, Shape, Tensor, TensorType};
use std::collections::{HashMap, HashSet};
use std::path::Path;

pub(crate) enum LeafKind {
    Input(TensorType),
    Param(Tensor),
    /// A parameter the caller feeds (no initial value).
    FedParam(TensorType),
    State(Tensor),
    FedState(TensorType),
}

pub(crate) struct Leaf {
    pub(crate) name: String,
    pub(crate) kind: LeafKind,
    /// Created just before the node at this position of the schedule.
    pub(crate) at: usize,
}

pub(crate) struct Plan {
    /// IR leaves, in creation order (`at` non-decreasing).
    pub(crate) created: Vec<Leaf>,
    /// Initializers that stay import-time constants.
    pub(crate) known: Vec<(String, Tensor)>,
}

impl Plan {
    pub(crate) fn all_names(&self) -> impl Iterator<Item = &str> {
        self.created.iter().map(|l| l.name.as_str()).chain(self.known.iter().map(|(n, _)| n.as_str()))
    }
}

pub(crate) fn plan(meta: &NncMeta, graph: &GraphProto, base_dir: Option<&Path>) -> Result<Plan, OnnxError> {
    let positions = &meta.positions;

    // Values some node reads as run-time data (or the graph returns).
    let mut data_used: HashSet<&str> = graph.output.iter().map(|o| o.name.as_str()).collect();
    let mut state_used: HashSet<&str> = HashSet::new();
    for node in &graph.node {
        for (pos, input) in node.input.iter().enumerate() {
            if is_state_input(node, pos) {
                state_used.insert(input);
            } else if !is_value_input(node, pos) {
                data_used.insert(input);
            }
        }
    }

    let mut inits: HashMap<&str, Tensor> = HashMap::new();
    let mut init_order = Vec::new();
    for (i, t) in graph.initializer.iter().enumerate() {
        if t.name.is_empty() {
            return Err(OnnxError::Model(format!("initializer #{i} has no name")));
        }
        refuse_float64(t.data_type, || format!("initializer \"{}\"", t.name))?;
        let value = read_tensor(t, &t.name, base_dir)?;
        if inits.insert(&t.name, value).is_some() {
            return Err(OnnxError::Model(format!("initializer \"{}\" is defined twice", t.name)));
        }
        init_order.push(t.name.as_str());
    }
    if !graph.sparse_initializer.is_empty() {
        return Err(OnnxError::Model("sparse initializers are not supported".into()));
    }

    let mut canonical: Vec<Leaf> = Vec::new();
    let mut known = Vec::new();
    let mut seen: HashSet<&str> = HashSet::new();
    let mut classify = |name: &str, value: Tensor, canonical: &mut Vec<Leaf>| {
        let kind = match meta.kinds.get(name) {
            Some(Role::State) => Some(LeafKind::State(value)),
            Some(Role::Param) => Some(LeafKind::Param(value)),
            _ if positions.contains_key(name) || (value.dtype() == DType::F32 && data_used.contains(name)) => {
                Some(LeafKind::Param(value))
            }
            _ if value.dtype() == DType::F32 && state_used.contains(name) => Some(LeafKind::State(value)),
            _ => {
                known.push((name.to_string(), value));
                None
            }
        };
        if let Some(kind) = kind {
            canonical.push(Leaf { name: name.to_string(), kind, at: 0 });
        }
    };
    for vi in &graph.input {
        if !seen.insert(vi.name.as_str()) {
            return Err(OnnxError::Input { name: vi.name.clone(), message: "is listed twice".into() });
        }
        if let Some(value) = inits.remove(vi.name.as_str()) {
            classify(&vi.name, value, &mut canonical);
            continue;
        }
        let ty = input_type(vi)?;
        let kind = match meta.kinds.get(&vi.name) {
            Some(Role::Param) => LeafKind::FedParam(ty),
            Some(Role::State) => LeafKind::FedState(ty),
            None => LeafKind::Input(ty),
        };
        canonical.push(Leaf { name: vi.name.clone(), kind, at: 0 });
    }
    for name in init_order {
        if let Some(value) = inits.remove(name) {
            classify(name, value, &mut canonical);
        }
    }

    // Leaves with a recorded position go after the others, in recorded order.
    let (mut placed, mut created): (Vec<Leaf>, Vec<Leaf>) =
        canonical.into_iter().partition(|l| positions.contains_key(l.name.as_str()));
    placed.sort_by_key(|l| positions[l.name.as_str()]);
    for leaf in &mut placed {
        leaf.at = positions[leaf.name.as_str()].0;
    }
    created.extend(placed);
    Ok(Plan { created, known })
}

/// The IR type of a graph input. Axis 0 may be symbolic (the batch); nothing else may.
fn input_type(vi: &ValueInfoProto) -> Result<TensorType, OnnxError> {
    let err = |message: String| OnnxError::Input { name: vi.name.clone(), message };
    let tensor = match vi.r#type.as_ref().and_then(|t| t.value.as_ref()) {
        Some(TypeValue::TensorType(t)) => t,
        Some(TypeValue::SequenceType(_)) => return Err(err("is a sequence; only tensors are supported".into())),
        Some(TypeValue::MapType(_)) => return Err(err("is a map; only tensors are supported".into())),
        Some(TypeValue::OptionalType(_)) => return Err(err("is optional; only tensors are supported".into())),
        Some(TypeValue::SparseTensorType(_)) => {
            return Err(err("is a sparse tensor; only dense tensors are supported".into()))
        }
        Some(TypeValue::OpaqueType(_)) => return Err(err("has an opaque type; only tensors are supported".into())),
        None => return Err(err("has no type".into())),
    };
    refuse_float64(tensor.elem_type, || format!("graph input \"{}\"", vi.name))?;
    let dtype = match DataType::try_from(tensor.elem_type) {
        Ok(DataType::Float) => DType::F32,
        Ok(DataType::Int64) => DType::I64,
        Ok(DataType::Int32) => DType::I32,
        Ok(DataType::Bool) => DType::Bool,
        _ => {
            return Err(err(format!(
                "element type {} is not supported (inputs must be float, int64, int32 or bool)",
                super::tensor::type_name(tensor.elem_type)
            )))
        }
    };
    let shape = tensor.shape.as_ref().ok_or_else(|| err("has no shape".into()))?;
    let mut dims = Vec::with_capacity(shape.dim.len());
    for (axis, d) in shape.dim.iter().enumerate() {
        let dim = match (&d.value, axis) {
            (Some(DimValue::DimValue(n)), _) if *n < 0 => {
                return Err(err(format!("axis {axis} has negative size {n}")));
            }
            // Some exporters write 0 for an unknown batch size.
            (Some(DimValue::DimParam(_)) | Some(DimValue::DimValue(0)) | None, 0) => Dim::Batch,
            (Some(DimValue::DimValue(n)), _) => Dim::Fixed(*n as usize),
            (Some(DimValue::DimParam(p)), _) => {
                return Err(err(format!(
                    "axis {axis} has symbolic size \"{p}\"; only axis 0 (the batch) may be symbolic"
                )));
            }
            (_, _) => return Err(err(format!("axis {axis} has unknown size; only axis 0 (the batch) may be unknown"))),
        };
        dims.push(dim);
    }
    let shape = Shape(dims);
    if shape.fixed_product().is_none_or(|n| n > MAX_ELEMENTS) {
        return Err(err(format!("shape {shape} has more than {MAX_ELEMENTS} elements per batch item")));
    }
    Ok(TensorType::new(dtype, shape))
}
