//! ONNX → IR import.
//!
//! The steps, in order: decode the protobuf; check the opsets; list every unsupported
//! node at once; plan the graph inputs and initializers ([`leaves`]); schedule the
//! nodes ([`order`]); lower each node to IR primitives (the `ops_*` files), folding
//! whatever is known at import time ([`known`], [`fold`]); remove values that only the
//! folding needed ([`dce`]); verify.
//!
//! Every ONNX value gets a [`Slot`]: its IR value, its import-time value, or both.
//! Integer initializers and folded results reach the IR only when run-time data needs
//! them; Constant nodes are placed where they stand (so exported graphs re-import
//! unchanged) and removed again if only import-time folding read them. Either way,
//! shape computations leave nothing behind.

mod attrs;
mod budget;
mod dce;
mod external;
mod fold;
mod gelu;
mod known;
mod leaves;
mod ops_elementwise;
mod ops_linalg;
mod ops_one_hot;
mod ops_reduce;
mod ops_resize;
mod ops_shape;
mod ops_window;
mod order;
mod support;
mod tensor;

use crate::proto::{GraphProto, ModelProto, NodeProto};
use crate::OnnxError;
use attrs::Attrs;
use known::Known;
use nnc_ir::{Graph, IrError, Op, TensorType, ValueId};
use prost::Message;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

/// Oldest default-domain opset the importer accepts.
pub const MIN_OPSET: i64 = 7;
/// Newest default-domain opset the importer accepts: the newest ONNX 1.22 defines.
/// None of the supported ops changed between opsets 25 and 27 (checked against the
/// onnx 1.22 schemas); when a newer opset appears, check the ops' `since_version`s
/// before raising this.
pub const MAX_OPSET: i64 = 27;
/// Newest ONNX IR version (`ModelProto.ir_version`) the importer accepts: ONNX 1.22's
/// `onnx.IR_VERSION` (`IR_VERSION = 13` in its `onnx.proto`). A newer IR version may
/// change what the file's fields mean, so such a model is refused, as `onnx.checker`
/// and ONNX Runtime refuse it.
pub const MAX_IR_VERSION: i64 = 13;

/// Whether nnc imports `op_type` of `domain` at `opset` (before looking at the node's
/// attributes, types and shapes, which may still be refused with a reason).
pub fn is_supported_op(domain: &str, op_type: &str, opset: i64) -> bool {
    support::is_default_domain(domain)
        && (MIN_OPSET..=MAX_OPSET).contains(&opset)
        && support::is_supported(op_type, opset)
}

pub use budget::MAX_NODES;

/// Resource limits of an import, and what the graph is for. Sizes are checked from
/// the model's declarations before anything of that size is allocated or read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImportOptions {
    /// Import the model to be trained: a `BatchNormalization` in inference form whose
    /// running mean and variance are initializers normalizes by the batch's
    /// statistics instead, and updates the running statistics in place with its
    /// `momentum` (`running·momentum + batch·(1 − momentum)`, the batch variance the
    /// population's, as ONNX's training mode defines it), as PyTorch's `train()`
    /// does. Off, the model computes what the file says (inference).
    pub training: bool,
    /// The most bytes the model file, any one initializer or Constant tensor, and all
    /// of them together may need (default: half of physical memory, see
    /// [`nnc_ir::MemoryBudget`]).
    pub max_memory: nnc_ir::MemoryBudget,
    /// The most nodes, and separately the most initializers, a graph may have.
    pub max_nodes: usize,
}

impl Default for ImportOptions {
    fn default() -> ImportOptions {
        ImportOptions { training: false, max_memory: nnc_ir::MemoryBudget::default(), max_nodes: MAX_NODES }
    }
}

/// Imports an ONNX model file. External tensor data is read relative to its directory.
pub fn import_file(path: &Path) -> Result<Graph, OnnxError> {
    import_file_with(path, &ImportOptions::default())
}

/// [`import_file`] with explicit resource limits.
pub fn import_file_with(path: &Path, opts: &ImportOptions) -> Result<Graph, OnnxError> {
    let io = |e: std::io::Error| OnnxError::Io { path: path.display().to_string(), message: e.to_string() };
    let size = std::fs::metadata(path).map_err(io)?.len();
    opts.max_memory.check(format_args!("model file \"{}\"", path.display()), size).map_err(OnnxError::Limit)?;
    let bytes = std::fs::read(path).map_err(io)?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    import_impl(&bytes, Some(dir), &format!("\"{}\"", path.display()), opts)
}

/// Imports an ONNX model from memory. `base_dir` is where external tensor data lives;
/// without it, models with external data are refused.
pub fn import_bytes(bytes: &[u8], base_dir: Option<&Path>) -> Result<Graph, OnnxError> {
    import_bytes_with(bytes, base_dir, &ImportOptions::default())
}

/// [`import_bytes`] with explicit resource limits.
pub fn import_bytes_with(bytes: &[u8], base_dir: Option<&Path>, opts: &ImportOptions) -> Result<Graph, OnnxError> {
    import_impl(bytes, base_dir, "the input", opts)
}

/// Decodes one `TensorProto` (inline data, typed fields, or external data relative
/// to `base_dir`) into an IR tensor, widening element types the way the importer
/// does (float16 → f32, int8/int16 → i32, ...) and refusing float64 as it does.
/// Reads the ONNX test-data `.pb` files.
pub fn tensor_from_proto(t: &crate::proto::TensorProto, base_dir: Option<&Path>) -> Result<nnc_ir::Tensor, OnnxError> {
    let name = if t.name.is_empty() { "<unnamed>" } else { t.name.as_str() };
    tensor::read_tensor(t, name, base_dir)
}

fn import_impl(bytes: &[u8], base_dir: Option<&Path>, what: &str, opts: &ImportOptions) -> Result<Graph, OnnxError> {
    if bytes.is_empty() {
        return Err(OnnxError::Empty { what: what.to_string() });
    }
    let model =
        ModelProto::decode(bytes).map_err(|e| OnnxError::Decode { what: what.to_string(), message: e.to_string() })?;
    check_ir_version(model.ir_version, what)?;
    let graph = model.graph.as_ref().ok_or_else(|| OnnxError::Model("the model has no graph".into()))?;
    let opset = default_opset(&model)?;
    budget::check(graph, opts)?;
    check_supported(&model, graph, opset)?;
    Importer::run(&model, graph, (opset, opts.training), base_dir)
}

/// Refuses an IR version nnc does not know. A missing one (which protobuf reads as 0)
/// is refused too: ONNX requires it; onnx.checker refuses 0 and ONNX Runtime a missing
/// one ("Missing model IR version"), so nnc does not accept what they refuse.
fn check_ir_version(version: i64, what: &str) -> Result<(), OnnxError> {
    let problem = match version {
        ..=-1 => format!("IR version {version} is not valid (nnc reads IR versions 1 to {MAX_IR_VERSION})"),
        0 => format!(
            "the model declares no IR version (ir_version is missing or 0), which every ONNX model must; \
             nnc reads IR versions 1 to {MAX_IR_VERSION}"
        ),
        1..=MAX_IR_VERSION => return Ok(()),
        _ => format!("IR version {version} is newer than nnc understands (at most {MAX_IR_VERSION})"),
    };
    Err(OnnxError::IrVersion { what: what.to_string(), problem })
}

/// The version of the default ONNX operator set the model imports.
fn default_opset(model: &ModelProto) -> Result<i64, OnnxError> {
    let version = model
        .opset_import
        .iter()
        .filter(|o| support::is_default_domain(&o.domain))
        .map(|o| o.version)
        .max()
        .ok_or_else(|| OnnxError::Opset("the model imports no default-domain (ai.onnx) opset".into()))?;
    if !(MIN_OPSET..=MAX_OPSET).contains(&version) {
        let age = if version > MAX_OPSET { "newer than" } else { "older than" };
        return Err(OnnxError::Opset(format!(
            "ai.onnx opset {version} is {age} the supported range {MIN_OPSET} to {MAX_OPSET}"
        )));
    }
    Ok(version)
}

/// Lists every node the importer cannot handle, so a user sees all of them at once.
fn check_supported(model: &ModelProto, graph: &GraphProto, opset: i64) -> Result<(), OnnxError> {
    let mut bad = Vec::new();
    for (i, node) in graph.node.iter().enumerate() {
        let who = order::describe(&node.name, i);
        if support::is_default_domain(&node.domain) {
            if !support::is_supported(&node.op_type, opset) {
                bad.push(format!("node {who} {} (opset {opset})", node.op_type));
            }
        } else {
            let version = model.opset_import.iter().find(|o| o.domain == node.domain).map_or(0, |o| o.version);
            bad.push(format!("node {who} {} (domain {} opset {version})", node.op_type, node.domain));
        }
    }
    if bad.is_empty() {
        Ok(())
    } else {
        Err(OnnxError::Unsupported(bad))
    }
}

/// What the importer knows about one ONNX value.
#[derive(Clone, Debug, Default)]
pub(crate) struct Slot {
    /// The IR value holding it at run time, once materialized.
    pub(crate) ir: Option<ValueId>,
    /// Its value, when known at import time.
    pub(crate) known: Option<Known>,
}

/// The node being lowered, for attribute access and error messages.
pub(crate) struct Ctx<'n> {
    pub(crate) node: &'n NodeProto,
    index: usize,
    pub(crate) opset: i64,
}

impl<'n> Ctx<'n> {
    pub(crate) fn err(&self, message: impl Into<String>) -> OnnxError {
        OnnxError::Node {
            node: order::describe(&self.node.name, self.index),
            op: self.node.op_type.clone(),
            opset: self.opset,
            message: message.into(),
        }
    }

    /// `the value of node "c1" Constant`: the node's `value` attribute, for messages.
    pub(crate) fn describe_value(&self) -> String {
        format!("the value of node {} {}", order::describe(&self.node.name, self.index), self.node.op_type)
    }

    pub(crate) fn attrs(&self) -> Attrs<'n> {
        Attrs::new(self.node)
    }

    /// Input `i`, or `None` when absent or empty (ONNX's "optional input not given").
    pub(crate) fn input(&self, i: usize) -> Option<&'n str> {
        self.node.input.get(i).map(String::as_str).filter(|s| !s.is_empty())
    }

    pub(crate) fn req_input(&self, i: usize) -> Result<&'n str, OnnxError> {
        self.input(i).ok_or_else(|| self.err(format!("input {i} is missing")))
    }

    /// The inputs that are present, in order.
    pub(crate) fn inputs(&self) -> Vec<&'n str> {
        self.node.input.iter().map(String::as_str).filter(|s| !s.is_empty()).collect()
    }

    pub(crate) fn out(&self) -> Result<&'n str, OnnxError> {
        self.node
            .output
            .first()
            .map(String::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| self.err("the node has no output"))
    }

    /// Maps an attribute-access error to a node error.
    pub(crate) fn attr<T>(&self, r: Result<T, String>) -> Result<T, OnnxError> {
        r.map_err(|m| self.err(m))
    }
}

pub(crate) struct Importer {
    pub(crate) g: Graph,
    slots: HashMap<String, Slot>,
    /// Every ONNX value name plus every name the importer has made up, so fresh names
    /// never collide with a value defined later.
    reserved: HashSet<String>,
    /// IR values the importer made only for folding or fusion; removed if unused.
    pub(crate) removable: HashSet<ValueId>,
    /// How many node inputs and graph outputs read each ONNX value.
    uses: HashMap<String, usize>,
    /// The model's directory, for external data of Constant nodes.
    pub(crate) base_dir: Option<PathBuf>,
    /// Transposes nnc's exporter wrote for a matmul's transpose flag.
    pub(crate) fusable_transposes: HashSet<ValueId>,
    /// Imported for training (see [`ImportOptions::training`]).
    pub(crate) training: bool,
    /// In-place updates ops declare (batch normalization's running statistics in
    /// training): the state leaf and its new value.
    pub(crate) updates: Vec<(ValueId, ValueId)>,
}

impl Importer {
    fn run(
        model: &ModelProto,
        graph: &GraphProto,
        (opset, training): (i64, bool),
        base_dir: Option<&Path>,
    ) -> Result<Graph, OnnxError> {
        let name = if graph.name.is_empty() { "main" } else { graph.name.as_str() };
        let mut reserved: HashSet<String> = graph.input.iter().map(|v| v.name.clone()).collect();
        reserved.extend(graph.initializer.iter().map(|t| t.name.clone()));
        reserved.extend(graph.node.iter().flat_map(|n| n.output.iter().cloned()));
        let mut uses: HashMap<String, usize> = HashMap::new();
        for name in graph.node.iter().flat_map(|n| n.input.iter()).chain(graph.output.iter().map(|o| &o.name)) {
            *uses.entry(name.clone()).or_default() += 1;
        }
        let mut imp = Importer {
            g: Graph::new(name),
            slots: HashMap::new(),
            reserved,
            removable: HashSet::new(),
            uses,
            base_dir: base_dir.map(Path::to_path_buf),
            fusable_transposes: HashSet::new(),
            training,
            updates: Vec::new(),
        };

        let meta = crate::meta::read(model);
        let plan = leaves::plan(&meta, graph, base_dir)?;
        let leaf_names: HashSet<&str> = plan.all_names().collect();
        let schedule = order::schedule(graph, &leaf_names)?;
        for (name, value) in plan.known {
            imp.slots.insert(name, Slot { ir: None, known: Some(Known::T(value)) });
        }
        let mut pending = plan.created.into_iter().peekable();
        for (pos, &index) in schedule.iter().enumerate() {
            while let Some(leaf) = pending.next_if(|l| l.at <= pos) {
                imp.create_leaf(leaf)?;
            }
            let ctx = Ctx { node: &graph.node[index], index, opset };
            imp.lower(&ctx)?;
        }
        for leaf in pending {
            imp.create_leaf(leaf)?;
        }

        // Outputs past `nnc.outputs` exist only to expose updated values to other runtimes.
        let own = meta.outputs.filter(|&k| k <= graph.output.len()).unwrap_or(graph.output.len());
        let mut outputs = Vec::with_capacity(own);
        for out in &graph.output[..own] {
            outputs.push(imp.output_value(&out.name)?);
        }
        imp.g.set_outputs(outputs);
        let mut updates = Vec::with_capacity(meta.updates.len());
        for (leaf, new) in &meta.updates {
            let bad = |m: &str| OnnxError::Model(format!("update of \"{leaf}\" by \"{new}\": {m}"));
            let l = imp.g.find(leaf).ok_or_else(|| bad("no such parameter or state"))?;
            updates.push((l, imp.output_value(new)?));
        }
        for &(leaf, _) in &imp.updates {
            if updates.iter().any(|&(l, _)| l == leaf) {
                let name = imp.g.name_of(leaf).to_string();
                return Err(OnnxError::Model(format!("\"{name}\" is updated twice (by nnc's metadata and an op)")));
            }
        }
        updates.extend(std::mem::take(&mut imp.updates));
        imp.g.set_updates(updates);
        let g = dce::remove_dead(imp.g, &imp.removable).map_err(OnnxError::Ir)?;
        nnc_ir::verify(&g).map_err(OnnxError::Ir)?;
        Ok(g)
    }

    fn create_leaf(&mut self, leaf: leaves::Leaf) -> Result<(), OnnxError> {
        let input_err = |e: IrError| OnnxError::Input { name: leaf.name.clone(), message: ir_message(e) };
        let id = match leaf.kind {
            leaves::LeafKind::Input(ty) => self.g.input(&leaf.name, ty).map_err(input_err)?,
            leaves::LeafKind::Param(init) => self.g.param(&leaf.name, init).map_err(input_err)?,
            leaves::LeafKind::FedParam(ty) => {
                self.g.push_typed(leaf.name.clone(), ty, Op::Param { init: None }, Vec::new()).map_err(input_err)?
            }
            leaves::LeafKind::State(init) => {
                self.g.push(leaf.name.as_str(), Op::State { init: Some(init) }, &[]).map_err(input_err)?
            }
            leaves::LeafKind::FedState(ty) => {
                self.g.push_typed(leaf.name.clone(), ty, Op::State { init: None }, Vec::new()).map_err(input_err)?
            }
        };
        self.slots.insert(leaf.name, Slot { ir: Some(id), known: None });
        Ok(())
    }

    fn output_value(&mut self, name: &str) -> Result<ValueId, OnnxError> {
        let err = |message: String| OnnxError::Output { name: name.to_string(), message };
        let slot = self.slots.get(name).cloned().ok_or_else(|| err("is never defined".into()))?;
        if let Some(id) = slot.ir {
            return Ok(id);
        }
        match slot.known {
            Some(Known::T(t)) => {
                let id = self.g.push(name, Op::Const(t), &[]).map_err(|e| err(ir_message(e)))?;
                self.slots.insert(name.to_string(), Slot { ir: Some(id), known: None });
                Ok(id)
            }
            Some(Known::Sym(_)) => Err(err("is a shape that depends on the batch size, not a tensor".into())),
            None => Err(err("is never defined".into())),
        }
    }

    /// Lowers one node (dispatch by op type; the support check already ran).
    fn lower(&mut self, ctx: &Ctx) -> Result<(), OnnxError> {
        use fold::{Arith, Compare, Func};
        use nnc_ir::{BinaryOp, UnaryOp};
        use ops_elementwise::Bin;
        match ctx.node.op_type.as_str() {
            "Add" => self.binary(ctx, Bin::Arith(Arith::Add, BinaryOp::Add)),
            "Sub" => self.binary(ctx, Bin::Arith(Arith::Sub, BinaryOp::Sub)),
            "Mul" => self.binary(ctx, Bin::Arith(Arith::Mul, BinaryOp::Mul)),
            "Div" => self.binary(ctx, Bin::Arith(Arith::Div, BinaryOp::Div)),
            "Pow" => self.binary(ctx, Bin::Arith(Arith::Pow, BinaryOp::Pow)),
            "Max" => self.variadic(ctx, Bin::Arith(Arith::Max, BinaryOp::Max)),
            "Min" => self.variadic(ctx, Bin::Arith(Arith::Min, BinaryOp::Min)),
            "Greater" => self.binary(ctx, Bin::Compare(Compare::Greater)),
            "Less" => self.binary(ctx, Bin::Compare(Compare::Less)),
            "Equal" => self.binary(ctx, Bin::Compare(Compare::Equal)),
            "Neg" => self.unary(ctx, UnaryOp::Neg, Some(Func::Neg)),
            "Exp" => self.unary(ctx, UnaryOp::Exp, Some(Func::Exp)),
            "Log" => self.unary(ctx, UnaryOp::Log, Some(Func::Log)),
            "Sqrt" => self.unary(ctx, UnaryOp::Sqrt, Some(Func::Sqrt)),
            "Relu" => self.unary(ctx, UnaryOp::Relu, Some(Func::Relu)),
            "Sigmoid" => self.unary(ctx, UnaryOp::Sigmoid, Some(Func::Sigmoid)),
            "Tanh" => self.unary(ctx, UnaryOp::Tanh, Some(Func::Tanh)),
            "Erf" => self.unary(ctx, UnaryOp::Erf, None),
            "LeakyRelu" => {
                let alpha = ctx.attr(ctx.attrs().float("alpha", 0.01))?;
                self.unary(ctx, UnaryOp::LeakyRelu { alpha }, None)
            }
            "Gelu" => self.gelu_node(ctx),
            "Identity" => self.identity(ctx),
            "Dropout" => self.dropout(ctx),
            "Where" => self.where_(ctx),
            "Cast" => self.cast(ctx),
            "Constant" => self.constant(ctx),
            "Gemm" => self.gemm(ctx),
            "MatMul" => self.matmul(ctx),
            "Softmax" => self.softmax(ctx, false),
            "LogSoftmax" => self.softmax(ctx, true),
            "ReduceSum" => self.reduce(ctx, nnc_ir::ReduceOp::Sum),
            "ReduceMean" => self.reduce(ctx, nnc_ir::ReduceOp::Mean),
            "ReduceMax" => self.reduce(ctx, nnc_ir::ReduceOp::Max),
            "Flatten" => self.flatten(ctx),
            "Reshape" => self.reshape(ctx),
            "Transpose" => self.transpose(ctx),
            "Unsqueeze" => self.unsqueeze(ctx),
            "Squeeze" => self.squeeze(ctx),
            "Shape" => self.shape(ctx),
            "Gather" => self.gather(ctx),
            "Slice" => self.slice(ctx),
            "Concat" => self.concat(ctx),
            "Split" => self.split(ctx),
            "Pad" => self.pad(ctx),
            "Resize" => self.resize(ctx),
            "Upsample" => self.upsample(ctx),
            "ConstantOfShape" => self.constant_of_shape(ctx),
            "Expand" => self.expand(ctx),
            "OneHot" => self.one_hot(ctx),
            "Clip" => self.clip(ctx),
            "Conv" => self.conv(ctx),
            "ConvTranspose" => self.conv_transpose(ctx),
            "MaxPool" => self.pool(ctx, true),
            "AveragePool" => self.pool(ctx, false),
            "GlobalAveragePool" => self.global_pool(ctx, nnc_ir::ReduceOp::Mean),
            "GlobalMaxPool" => self.global_pool(ctx, nnc_ir::ReduceOp::Max),
            "BatchNormalization" => self.batch_norm(ctx),
            other => Err(ctx.err(format!("{other} is not supported"))),
        }
    }

    // ---- slots -------------------------------------------------------------------

    fn slot(&self, ctx: &Ctx, name: &str) -> Result<&Slot, OnnxError> {
        self.slots.get(name).ok_or_else(|| ctx.err(format!("input \"{name}\" is not defined before use")))
    }

    pub(crate) fn define(&mut self, name: &str, slot: Slot) {
        self.slots.insert(name.to_string(), slot);
    }

    pub(crate) fn define_ir(&mut self, name: &str, id: ValueId) {
        self.define(name, Slot { ir: Some(id), known: None });
    }

    /// The import-time value of `name`, without consuming it.
    pub(crate) fn peek_known(&self, name: &str) -> Option<&Known> {
        self.slots.get(name).and_then(|s| s.known.as_ref())
    }

    /// The import-time value of `name`. Reading it this way means the IR copy (if any)
    /// may no longer be needed, so that copy becomes removable.
    pub(crate) fn take_known(&mut self, name: &str) -> Option<Known> {
        let slot = self.slots.get(name)?;
        let known = slot.known.clone()?;
        if let Some(id) = slot.ir {
            self.removable.insert(id);
        }
        Some(known)
    }

    /// Like [`Importer::take_known`] but required: `what` names the input in the error.
    pub(crate) fn need_known(&mut self, ctx: &Ctx, name: &str, what: &str) -> Result<Known, OnnxError> {
        self.slot(ctx, name)?;
        self.take_known(name).ok_or_else(|| {
            ctx.err(format!(
                "{what} (\"{name}\") must be a constant or computed from shapes, but it is only known at run time"
            ))
        })
    }

    pub(crate) fn has_ir(&self, name: &str) -> bool {
        self.slots.get(name).is_some_and(|s| s.ir.is_some())
    }

    /// The type of an ONNX value, whether it lives in the IR or is known.
    pub(crate) fn ty(&self, ctx: &Ctx, name: &str) -> Result<TensorType, OnnxError> {
        let slot = self.slot(ctx, name)?;
        match (&slot.ir, &slot.known) {
            (Some(id), _) => Ok(self.g.ty(*id).clone()),
            (None, Some(k)) => Ok(k.ty()),
            (None, None) => Err(ctx.err(format!("input \"{name}\" has no value"))),
        }
    }

    /// The IR value of `name`, materializing a known constant if needed.
    pub(crate) fn ir(&mut self, ctx: &Ctx, name: &str) -> Result<ValueId, OnnxError> {
        let slot = self.slot(ctx, name)?;
        if let Some(id) = slot.ir {
            return Ok(id);
        }
        match slot.known.clone() {
            Some(Known::T(t)) => {
                let id = self.g.push(name, Op::Const(t), &[]).map_err(|e| ctx.err(ir_message(e)))?;
                self.removable.insert(id);
                if let Some(s) = self.slots.get_mut(name) {
                    s.ir = Some(id);
                }
                Ok(id)
            }
            Some(Known::Sym(a)) => Err(ctx.err(format!(
                "\"{name}\" holds shape values that depend on the batch size ({}); they cannot be used as run-time data",
                a.iter().map(|v| v.to_string()).collect::<Vec<_>>().join(",")
            ))),
            None => Err(ctx.err(format!("input \"{name}\" has no value"))),
        }
    }

    /// Whether any node or graph output reads `name`.
    pub(crate) fn is_used(&self, name: &str) -> bool {
        self.uses.get(name).is_some_and(|&n| n > 0)
    }

    // ---- emitting IR -------------------------------------------------------------

    /// A name for an importer-made value, derived from `base`, unused in both the
    /// graph and the ONNX model.
    pub(crate) fn fresh(&mut self, base: &str) -> String {
        let mut name = base.to_string();
        let mut i = 1;
        while self.reserved.contains(&name) || self.g.find(&name).is_some() {
            name = format!("{base}.{i}");
            i += 1;
        }
        self.reserved.insert(name.clone());
        name
    }

    /// Appends an IR value named `name`.
    pub(crate) fn emit(&mut self, ctx: &Ctx, name: &str, op: Op, args: &[ValueId]) -> Result<ValueId, OnnxError> {
        self.g.push(name, op, args).map_err(|e| ctx.err(ir_message(e)))
    }

    /// Appends an intermediate IR value named after `out` and `suffix`.
    pub(crate) fn emit_tmp(
        &mut self,
        ctx: &Ctx,
        out: &str,
        suffix: &str,
        op: Op,
        args: &[ValueId],
    ) -> Result<ValueId, OnnxError> {
        let name = self.fresh(&format!("{out}_{suffix}"));
        self.emit(ctx, &name, op, args)
    }

    /// Appends a constant made by the importer (an attribute value, a scale factor).
    pub(crate) fn emit_const(
        &mut self,
        ctx: &Ctx,
        out: &str,
        suffix: &str,
        value: nnc_ir::Tensor,
    ) -> Result<ValueId, OnnxError> {
        let id = self.emit_tmp(ctx, out, suffix, Op::Const(value), &[])?;
        self.removable.insert(id);
        Ok(id)
    }

    /// Defines `out` from its `data` inputs: folded when all of them are known at
    /// import time, as run-time IR (built by `emit`) otherwise. When the inputs are
    /// already IR values the IR op is emitted too, so a graph that computes on
    /// constants keeps its ops; the op is removable if only folding used it.
    pub(crate) fn fold_or_emit(
        &mut self,
        ctx: &Ctx,
        out: &str,
        data: &[&str],
        fold: impl FnOnce(&[Known]) -> Result<Option<Known>, String>,
        emit: impl FnOnce(&mut Self, &[ValueId]) -> Result<ValueId, OnnxError>,
    ) -> Result<(), OnnxError> {
        for name in data {
            self.slot(ctx, name)?;
        }
        let knowns: Option<Vec<Known>> = data.iter().map(|n| self.peek_known(n).cloned()).collect();
        let folded = match knowns {
            Some(k) => fold(&k).map_err(|m| ctx.err(m))?,
            None => None,
        };
        if folded.is_some() {
            for name in data {
                self.take_known(name);
            }
            if !data.iter().all(|n| self.has_ir(n)) {
                self.define(out, Slot { ir: None, known: folded });
                return Ok(());
            }
        }
        let ids = data.iter().map(|n| self.ir(ctx, n)).collect::<Result<Vec<_>, _>>()?;
        let id = emit(self, &ids)?;
        if folded.is_some() {
            self.removable.insert(id);
        }
        self.define(out, Slot { ir: Some(id), known: folded });
        Ok(())
    }

    /// Defines `out` by folding alone (ops with no IR equivalent, such as Concat).
    pub(crate) fn fold_only(
        &mut self,
        ctx: &Ctx,
        out: &str,
        data: &[&str],
        fold: impl FnOnce(&[Known]) -> Result<Option<Known>, String>,
    ) -> Result<(), OnnxError> {
        let mut knowns = Vec::with_capacity(data.len());
        for name in data {
            knowns.push(self.need_known(ctx, name, "the input")?);
        }
        match fold(&knowns).map_err(|m| ctx.err(m))? {
            Some(k) => {
                self.define(out, Slot { ir: None, known: Some(k) });
                Ok(())
            }
            None => Err(ctx.err("the result is too large to compute at import time")),
        }
    }
}

/// The useful part of an IR error for a node message.
pub(crate) fn ir_message(e: IrError) -> String {
    match e {
        IrError::Type { message, .. } => message,
        other => other.to_string(),
    }
}

/// Normalizes a possibly negative axis against `rank`.
pub(crate) fn norm_axis(axis: i64, rank: usize) -> Result<usize, String> {
    let r = rank as i64;
    let a = if axis < 0 { axis + r } else { axis };
    if (0..r).contains(&a) {
        Ok(a as usize)
    } else {
        Err(format!("axis {axis} is out of range for rank {rank}"))
    }
}
