//! IR → ONNX export with standard ops only.
//!
//! Inputs become graph inputs (the batch dimension as `dim_param: "N"`), parameters
//! become initializers with `raw_data`, constants become Constant nodes (so they keep
//! their place among the other values), and every other value becomes one or a few
//! nodes ([`nodes`]). The exporter writes exactly what the importer reads back into
//! the same graph: importing an export prints identically.

mod nodes;
mod proto_build;
mod write;

use crate::import::MAX_OPSET;
use crate::meta::{self, Role};
use crate::proto::{GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto, ValueInfoProto};
use crate::OnnxError;
use nnc_ir::{Graph, Op};
use prost::Message;
use proto_build as pb;
use std::collections::HashSet;
use std::path::Path;

/// Oldest opset the exporter writes (Gemm's bias became optional in 11).
pub const MIN_EXPORT_OPSET: i64 = 11;

#[derive(Clone, Debug, PartialEq)]
pub struct ExportOptions {
    /// Default-domain opset to target, 11 to 25. Ops whose form changed between
    /// opsets (reduction axes, Softmax, Gelu) are written the way that opset wants.
    pub opset: i64,
    pub producer_name: String,
    pub producer_version: String,
    pub doc_string: String,
}

impl Default for ExportOptions {
    fn default() -> Self {
        ExportOptions {
            opset: 17,
            producer_name: "nnc".to_string(),
            producer_version: env!("CARGO_PKG_VERSION").to_string(),
            doc_string: String::new(),
        }
    }
}

/// The ONNX IR version that goes with an opset (the one the ONNX release introducing
/// that opset used), so older runtimes accept the file.
fn ir_version(opset: i64) -> i64 {
    match opset {
        ..=11 => 6,
        12..=14 => 7,
        15..=18 => 8,
        19..=20 => 9,
        21..=22 => 10,
        23 => 11,
        24 => 12,
        _ => 13,
    }
}

/// An IR tensor as a `TensorProto` with `raw_data`.
pub fn tensor_to_proto(name: &str, t: &nnc_ir::Tensor) -> crate::proto::TensorProto {
    pb::tensor(name, t)
}

/// Builds the ONNX model for `graph`.
pub fn export_model(graph: &Graph, opts: &ExportOptions) -> Result<ModelProto, OnnxError> {
    if !(MIN_EXPORT_OPSET..=MAX_OPSET).contains(&opts.opset) {
        return Err(OnnxError::Options(format!(
            "opset {} is outside the exportable range {MIN_EXPORT_OPSET} to {MAX_OPSET}",
            opts.opset
        )));
    }
    // The node builders rely on the IR's invariants (arities, ranks, types).
    nnc_ir::verify(graph).map_err(|e| OnnxError::Export { value: graph.name.clone(), message: e.to_string() })?;
    // ONNX has no fused ops: an optimized graph is written as the primitives its
    // fused ops stand for, which is standard ONNX any runtime executes.
    let expanded;
    let graph = if nnc_ir::fused::has_fused(graph) {
        expanded = nnc_ir::expand_fused(graph)
            .map_err(|e| OnnxError::Export { value: graph.name.clone(), message: e.to_string() })?;
        &expanded
    } else {
        graph
    };
    if let Some(v) = graph.values().iter().find(|v| v.name.is_empty()) {
        return Err(OnnxError::Export {
            value: String::new(),
            message: format!("a {} value has an empty name, which ONNX reserves for absent inputs", v.op.mnemonic()),
        });
    }
    let mut ex = Exporter::new(graph, opts.opset);
    for id in graph.ids() {
        ex.value(id)?;
    }
    let mut output: Vec<ValueInfoProto> =
        graph.outputs().iter().map(|&o| pb::value_info(graph.name_of(o), graph.ty(o))).collect();
    let mut metadata_props: Vec<_> =
        ex.kinds.iter().map(|(name, role)| meta::entry(format!("{}{name}", meta::KIND), role.name())).collect();
    if !leaves_in_canonical_order(graph) {
        metadata_props.extend(
            ex.positions.iter().map(|(name, at)| meta::entry(format!("{}{name}", meta::POSITION), at.to_string())),
        );
    }
    // Updated values become extra outputs so other runtimes can read them back.
    let own = output.len();
    for &(leaf, new) in graph.updates() {
        let new_name = graph.name_of(new);
        metadata_props.push(meta::entry(format!("{}{}", meta::UPDATE, graph.name_of(leaf)), new_name));
        if !output.iter().any(|o| o.name == new_name) {
            output.push(pb::value_info(new_name, graph.ty(new)));
        }
    }
    if output.len() > own {
        metadata_props.push(meta::entry(meta::OUTPUTS, own.to_string()));
    }
    Ok(ModelProto {
        ir_version: ir_version(opts.opset),
        opset_import: vec![OperatorSetIdProto { domain: String::new(), version: opts.opset }],
        producer_name: opts.producer_name.clone(),
        producer_version: opts.producer_version.clone(),
        doc_string: opts.doc_string.clone(),
        graph: Some(GraphProto {
            name: graph.name.clone(),
            node: ex.nodes,
            initializer: ex.initializers,
            input: ex.inputs,
            output,
            ..GraphProto::default()
        }),
        metadata_props,
        ..ModelProto::default()
    })
}

/// The serialized model.
pub fn to_bytes(graph: &Graph, opts: &ExportOptions) -> Result<Vec<u8>, OnnxError> {
    let model = export_model(graph, opts)?;
    // Protobuf readers refuse messages of 2 GiB and more.
    if model.encoded_len() > i32::MAX as usize {
        return Err(OnnxError::Export {
            value: graph.name.clone(),
            message: "the model is larger than 2 GiB, which protobuf cannot hold".into(),
        });
    }
    Ok(model.encode_to_vec())
}

/// Writes the model to `path` atomically: a complete file or none at all.
pub fn write_file(graph: &Graph, path: &Path, opts: &ExportOptions) -> Result<(), OnnxError> {
    let bytes = to_bytes(graph, opts)?;
    write::write_atomic(path, &bytes)
}

/// Whether the importer's default order (inputs and fed leaves, then initialized
/// parameters and state, then everything else) reproduces the graph's order;
/// otherwise positions are recorded.
fn leaves_in_canonical_order(graph: &Graph) -> bool {
    let (mut seen_other, mut seen_initialized) = (false, false);
    for v in graph.values() {
        match v.op {
            Op::Input | Op::Param { init: None } | Op::State { init: None } => {
                if seen_other || seen_initialized {
                    return false;
                }
            }
            Op::Param { init: Some(_) } | Op::State { init: Some(_) } => {
                if seen_other {
                    return false;
                }
                seen_initialized = true;
            }
            _ => seen_other = true,
        }
    }
    true
}

/// Export state: the growing node and initializer lists.
pub(crate) struct Exporter<'g> {
    g: &'g Graph,
    opset: i64,
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    inputs: Vec<ValueInfoProto>,
    /// Names in use (IR values and helper values), so helpers never collide.
    names: HashSet<String>,
    /// Each input and parameter with the number of nodes written before it.
    positions: Vec<(String, usize)>,
    /// The 1-D `[N]` vector built once for batch-sized Expand shapes.
    batch_vector: Option<String>,
    /// Leaves ONNX cannot tell apart from inputs or parameters.
    kinds: Vec<(String, Role)>,
    /// Values no other value reads.
    unused: Vec<bool>,
}

impl<'g> Exporter<'g> {
    fn new(g: &'g Graph, opset: i64) -> Exporter<'g> {
        Exporter {
            g,
            opset,
            nodes: Vec::new(),
            initializers: Vec::new(),
            inputs: Vec::new(),
            names: g.values().iter().map(|v| v.name.clone()).collect(),
            positions: Vec::new(),
            batch_vector: None,
            kinds: Vec::new(),
            unused: g.users().iter().map(Vec::is_empty).collect(),
        }
    }

    fn value(&mut self, id: nnc_ir::ValueId) -> Result<(), OnnxError> {
        let v = self.g.value(id);
        // The importer takes a float initializer that some node reads as a parameter;
        // anything else needs saying.
        let role = match &v.op {
            Op::Param { init: None } => Some(Role::Param),
            Op::Param { init: Some(t) } if t.dtype() != nnc_ir::DType::F32 || self.unused[id.index()] => {
                Some(Role::Param)
            }
            Op::State { .. } => Some(Role::State),
            _ => None,
        };
        if let Some(role) = role {
            self.kinds.push((v.name.clone(), role));
        }
        match &v.op {
            Op::Input | Op::Param { init: None } | Op::State { init: None } => {
                self.positions.push((v.name.clone(), self.nodes.len()));
                self.inputs.push(pb::value_info(&v.name, &v.ty));
            }
            Op::Param { init: Some(t) } | Op::State { init: Some(t) } => {
                self.positions.push((v.name.clone(), self.nodes.len()));
                self.initializers.push(pb::tensor(&v.name, t));
            }
            _ => self.op_nodes(id)?,
        }
        Ok(())
    }

    /// An unused name derived from `base`.
    pub(crate) fn fresh(&mut self, base: &str) -> String {
        let mut name = base.to_string();
        let mut i = 1;
        while self.names.contains(&name) {
            name = format!("{base}.{i}");
            i += 1;
        }
        self.names.insert(name.clone());
        name
    }

    pub(crate) fn node(
        &mut self,
        op_type: &str,
        inputs: &[&str],
        output: &str,
        attribute: Vec<crate::proto::AttributeProto>,
    ) {
        self.nodes.push(NodeProto {
            name: output.to_string(),
            op_type: op_type.to_string(),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![output.to_string()],
            attribute,
            ..NodeProto::default()
        });
    }

    /// A 1-D int64 initializer (shapes, axes), named after `base`.
    pub(crate) fn ints_initializer(&mut self, base: &str, values: &[i64]) -> String {
        let t = nnc_ir::Tensor::I64(ndarray::Array1::from(values.to_vec()).into_dyn());
        self.initializer(base, &t)
    }

    /// An initializer named after `base`.
    pub(crate) fn initializer(&mut self, base: &str, t: &nnc_ir::Tensor) -> String {
        let name = self.fresh(base);
        self.initializers.push(pb::tensor(&name, t));
        name
    }
}
