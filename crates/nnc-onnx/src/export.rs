//! IR → ONNX export with standard ops only.
//!
//! Inputs become graph inputs (the batch dimension as `dim_param: "N"`), parameters
//! become initializers with `raw_data`, constants become Constant nodes (so they keep
//! their place among the other values), and every other value becomes one or a few
//! nodes ([`nodes`]). The exporter writes exactly what the importer reads back into
//! the same graph: importing an export prints identically.
//!
//! With [`ExportOptions::training_interface`], a graph with in-place updates (a
//! training step) is written as a pure function of its trained state, so any ONNX
//! runtime can take the step ([`training_interface`]): every updated parameter and
//! state leaf becomes a graph input under its own name, and every updated value a graph
//! output named `<leaf>_new`.

mod nodes;
mod proto_build;
mod window;
mod write;

use crate::import::MAX_OPSET;
use crate::meta::{self, Role};
use crate::proto::{GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto, ValueInfoProto};
use crate::OnnxError;
use nnc_ir::{Graph, Op, UnaryOp, ValueId};
use prost::Message;
use proto_build as pb;
use std::collections::{HashMap, HashSet};
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
    /// Write the graph's in-place updates as a function from the old values to the
    /// new ones (for a training step another runtime executes): every parameter and
    /// state leaf the graph updates becomes a graph input of that name, without an
    /// initial value, and its new value a graph output named `<leaf>_new`. Graph
    /// inputs are ordered: plain inputs, then those parameters, then that state (each
    /// in definition order); outputs: the graph's own, then the new values in the
    /// order of those inputs. Parameters the graph does not update keep their
    /// initializers. The graph must have updates.
    ///
    /// The initial values are not written: ONNX lets an initializer of an input's name
    /// act as the input's default, but runtimes such as tract turn such an input into
    /// a constant that cannot be fed.
    pub training_interface: bool,
}

impl Default for ExportOptions {
    fn default() -> Self {
        ExportOptions {
            opset: 17,
            producer_name: "nnc".to_string(),
            producer_version: env!("CARGO_PKG_VERSION").to_string(),
            doc_string: String::new(),
            training_interface: false,
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
    let interfaced;
    let graph = if opts.training_interface {
        interfaced = training_interface(graph)?;
        &interfaced
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
    // The training interface orders the graph inputs by kind, so only recorded
    // positions say where the leaves stood.
    if opts.training_interface || !leaves_in_canonical_order(graph) {
        metadata_props.extend(
            ex.positions.iter().map(|(name, at)| meta::entry(format!("{}{name}", meta::POSITION), at.to_string())),
        );
    }
    // Updated values become extra outputs so other runtimes can read them back.
    let own = output.len();
    let mut updates = graph.updates().to_vec();
    for &(leaf, new) in &updates {
        metadata_props.push(meta::entry(format!("{}{}", meta::UPDATE, graph.name_of(leaf)), graph.name_of(new)));
    }
    if opts.training_interface {
        // Inputs: plain inputs, then parameters, then state; the new values follow
        // the order of their leaves among the inputs.
        let rank = |name: &str| match graph.find(name).map(|id| &graph.value(id).op) {
            Some(Op::Param { .. }) => 1,
            Some(Op::State { .. }) => 2,
            _ => 0,
        };
        ex.inputs.sort_by_key(|vi| rank(&vi.name));
        let at: HashMap<&str, usize> = ex.inputs.iter().enumerate().map(|(i, vi)| (vi.name.as_str(), i)).collect();
        updates.sort_by_key(|&(leaf, _)| at.get(graph.name_of(leaf)).copied().unwrap_or(usize::MAX));
    }
    for &(_, new) in &updates {
        let new_name = graph.name_of(new);
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

/// The graph as a pure function of the leaves it updates (see
/// [`ExportOptions::training_interface`]): every updated parameter and state loses its
/// initial value, so it is fed like an input, and every updated value is named
/// `<leaf>_new` — renamed when it is an ordinary intermediate, otherwise (a leaf, a
/// graph output, or the new value of several leaves) copied by an identity under that
/// name. An intermediate that already has the name is renamed out of the way.
fn training_interface(graph: &Graph) -> Result<Graph, OnnxError> {
    let err = |value: &str, message: String| OnnxError::Export { value: value.to_string(), message };
    if graph.updates().is_empty() {
        return Err(OnnxError::Options(format!(
            "the training interface needs a graph that updates parameters (a training step); {} updates none",
            graph.name
        )));
    }
    let updated: HashSet<ValueId> = graph.updates().iter().map(|&(leaf, _)| leaf).collect();
    let mut out = Graph::new(graph.name.clone());
    for id in graph.ids() {
        let v = graph.value(id);
        let op = match &v.op {
            Op::Param { .. } if updated.contains(&id) => Op::Param { init: None },
            Op::State { .. } if updated.contains(&id) => Op::State { init: None },
            op => op.clone(),
        };
        out.push_typed(v.name.clone(), v.ty.clone(), op, v.args.clone()).map_err(|e| err(&v.name, e.to_string()))?;
    }
    out.set_outputs(graph.outputs().to_vec());
    let mut updates = Vec::with_capacity(graph.updates().len());
    // Values already named for an update; they keep their names.
    let mut claimed: HashSet<ValueId> = HashSet::new();
    for &(leaf, new) in graph.updates() {
        let target = format!("{}_new", out.name_of(leaf));
        if out.name_of(new) == target {
            claimed.insert(new);
            updates.push((leaf, new));
            continue;
        }
        if let Some(holder) = out.find(&target) {
            let v = out.value(holder);
            if v.op.is_leaf() || out.outputs().contains(&holder) || claimed.contains(&holder) {
                return Err(err(
                    &target,
                    format!(
                        "the {} %{target} has the name the new value of %{} must have in the training interface",
                        v.op.mnemonic(),
                        out.name_of(leaf)
                    ),
                ));
            }
            let fresh = out.fresh_name(&format!("{target}.orig"));
            out.rename(holder, fresh).map_err(|e| err(&target, e.to_string()))?;
        }
        let copy = out.value(new).op.is_leaf() || out.outputs().contains(&new) || claimed.contains(&new);
        let named = if copy {
            out.push(target.clone(), Op::Unary(UnaryOp::Identity), &[new]).map_err(|e| err(&target, e.to_string()))?
        } else {
            out.rename(new, target.clone()).map_err(|e| err(&target, e.to_string()))?;
            new
        };
        claimed.insert(named);
        updates.push((leaf, named));
    }
    out.set_updates(updates);
    nnc_ir::verify(&out).map_err(|e| err(&graph.name, e.to_string()))?;
    Ok(out)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn interface(text: &str) -> Result<Graph, OnnxError> {
        training_interface(&nnc_ir::parse(text).unwrap())
    }

    #[test]
    fn updated_leaves_are_fed_and_new_values_named_after_them() {
        let g = interface(
            "graph t {
  %x: f32[N,2] = input
  %w: f32[2] = param [1.0, 2.0]
  %frozen: f32[2] = param [3.0, 4.0]
  %m: f32[2] = state [0.0, 0.0]
  %w_new: f32[N,2] = mul %x, %frozen
  %y: f32[2] = reduce_sum[axes=[0]] %w_new
  %next: f32[2] = sub %w, %y
  %m2: f32[2] = add %m, %y
  update %w <- %next
  update %m <- %y
  return %y
}
",
        )
        .unwrap();
        assert_eq!(
            nnc_ir::print(&g),
            "graph t {
  %x: f32[N,2] = input
  %w: f32[2] = param
  %frozen: f32[2] = param
  %m: f32[2] = state
  %w_new.orig: f32[N,2] = mul %x, %frozen
  %y: f32[2] = reduce_sum[axes=[0]] %w_new.orig
  %w_new: f32[2] = sub %w, %y
  %m2: f32[2] = add %m, %y
  %m_new: f32[2] = identity %y
  update %w <- %w_new
  update %m <- %m_new
  return %y
}
"
        );
        // The parameter that is not updated keeps its value.
        assert!(matches!(&g.value(g.find("frozen").unwrap()).op, Op::Param { init: Some(_) }));
    }

    #[test]
    fn graphs_without_updates_and_name_clashes_are_refused() {
        let err = interface("graph t {\n  %x: f32[2] = input\n  return %x\n}\n").unwrap_err();
        assert!(err.to_string().contains("updates none"), "{err}");
        let err = interface(
            "graph t {
  %w_new: f32[2] = input
  %w: f32[2] = param
  %next: f32[2] = add %w, %w_new
  update %w <- %next
  return %next
}
",
        )
        .unwrap_err();
        assert!(err.to_string().contains("the input %w_new has the name the new value of %w must have"), "{err}");
    }

    #[test]
    fn training_interface_orders_inputs_and_outputs_by_kind() {
        let g = nnc_ir::parse(
            "graph t {
  %x: f32[N,2] = input
  %w: f32[2] = param [1.0, 2.0]
  %m: f32[2] = state [0.0, 0.0]
  %lr: f32[] = input
  %y: f32[2] = reduce_sum[axes=[0]] %x
  %m_new: f32[2] = add %m, %y
  %d: f32[2] = mul %m_new, %lr
  %w_new: f32[2] = sub %w, %d
  update %m <- %m_new
  update %w <- %w_new
  return %y
}
",
        )
        .unwrap();
        let m = export_model(&g, &ExportOptions { training_interface: true, ..ExportOptions::default() }).unwrap();
        let graph = m.graph.unwrap();
        let names = |v: &[ValueInfoProto]| v.iter().map(|vi| vi.name.clone()).collect::<Vec<_>>();
        assert_eq!(names(&graph.input), ["x", "lr", "w", "m"]);
        assert_eq!(names(&graph.output), ["y", "w_new", "m_new"]);
        assert!(graph.initializer.iter().all(|t| t.name != "w" && t.name != "m"));
        // nnc reads the file back as the same graph, with fed leaves.
        let bytes = to_bytes(&g, &ExportOptions { training_interface: true, ..ExportOptions::default() }).unwrap();
        let back = crate::import_bytes(&bytes, None).unwrap();
        assert_eq!(nnc_ir::print(&back), nnc_ir::print(&training_interface(&g).unwrap()));
    }
}
