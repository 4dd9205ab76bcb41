//! Differentiation: an inference model becomes one training-step graph.
//!
//! ```text
//! model ──► loss::attach ──► grad::backward (rules::vjp per op) ──► optim::apply ──► prune ──► verify
//!           labels, loss      <value>.grad                          <param>_new, state
//! ```
//!
//! The training step's interface:
//! - inputs: the model's inputs, `labels` (`i64[N]` class indices for cross-entropy,
//!   the output's type for MSE), `lr: f32[]`, and for Adam `step: i64[]` (1-based);
//! - leaves updated in place: every trained parameter (`p ← <p>_new`) and its
//!   optimizer state (`<p>.m`, `<p>.v`, zero-initialized);
//! - outputs: `loss: f32[]`, then the logits if [`TrainOptions::output_logits`].
//!
//! Like JAX's `value_and_grad` followed by an optimizer, but ahead of time: the result
//! is ordinary IR that every later stage (optimizer passes, the JIT, ONNX export)
//! handles like any other graph. See `loss.rs` and `optim.rs` for the exact formulas.

mod emit;
mod error;
mod grad;
mod loss;
mod optim;
mod prune;
mod rules;

pub use error::AutodiffError;
pub use loss::{LABELS, LOSS};
pub use optim::{LR, STEP};

use emit::Emitter;
use nnc_ir::{cost, DType, Graph, ValueId};
use std::fmt;

/// The loss attached to the model's output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Loss {
    /// Softmax cross-entropy over class scores `[N, C]` with `labels: i64[N]`.
    CrossEntropy,
    /// Mean squared error, averaged over every element of the output.
    Mse,
}

impl Loss {
    pub fn name(self) -> &'static str {
        match self {
            Loss::CrossEntropy => "cross-entropy",
            Loss::Mse => "mse",
        }
    }
}

/// The optimizer whose update the training step performs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Optimizer {
    Sgd,
    Momentum { momentum: f32, nesterov: bool },
    Adam { beta1: f32, beta2: f32, eps: f32 },
}

impl Optimizer {
    /// Adam with the usual defaults (β1 0.9, β2 0.999, ε 1e-8).
    pub fn adam() -> Optimizer {
        Optimizer::Adam { beta1: 0.9, beta2: 0.999, eps: 1e-8 }
    }

    /// Heavy-ball momentum 0.9.
    pub fn momentum() -> Optimizer {
        Optimizer::Momentum { momentum: 0.9, nesterov: false }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct TrainOptions {
    pub loss: Loss,
    pub optimizer: Optimizer,
    /// L2 penalty for SGD/momentum, decoupled (AdamW) decay for Adam; 0 for none.
    pub weight_decay: f32,
    /// Also output the logits (cross-entropy) or the model's output (MSE) after `loss`.
    pub output_logits: bool,
    /// The model value to attach the loss to. `None`: the model's only f32 output, or
    /// the first of several (with a note).
    pub output: Option<String>,
}

impl Default for TrainOptions {
    fn default() -> Self {
        TrainOptions {
            loss: Loss::CrossEntropy,
            optimizer: Optimizer::Sgd,
            weight_decay: 0.0,
            output_logits: false,
            output: None,
        }
    }
}

impl TrainOptions {
    fn validate(&self) -> Result<(), AutodiffError> {
        let bad = |what: String| Err(AutodiffError::Options(what));
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return bad(format!("weight decay must be a finite number >= 0, got {}", self.weight_decay));
        }
        match self.optimizer {
            Optimizer::Sgd => Ok(()),
            Optimizer::Momentum { momentum, .. } if !(momentum.is_finite() && momentum >= 0.0) => {
                bad(format!("momentum must be a finite number >= 0, got {momentum}"))
            }
            Optimizer::Momentum { .. } => Ok(()),
            Optimizer::Adam { beta1, beta2, eps } => {
                for (name, b) in [("beta1", beta1), ("beta2", beta2)] {
                    if !(0.0..1.0).contains(&b) {
                        return bad(format!("Adam's {name} must be in [0, 1), got {b}"));
                    }
                }
                if !(eps.is_finite() && eps > 0.0) {
                    return bad(format!("Adam's epsilon must be a finite number > 0, got {eps}"));
                }
                Ok(())
            }
        }
    }
}

/// Which stage of the training step a value belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Part {
    /// The model's own values (the forward pass).
    Forward,
    /// The `labels` input and the loss computed from the model's output.
    Loss,
    /// Gradients.
    Backward,
    /// The optimizer: `lr`, `step`, state, new parameter values.
    Update,
}

impl Part {
    pub const ALL: [Part; 4] = [Part::Forward, Part::Loss, Part::Backward, Part::Update];
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Part::Forward => "forward",
            Part::Loss => "loss",
            Part::Backward => "backward",
            Part::Update => "update",
        })
    }
}

/// Op count and cost of one part of a training step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartSummary {
    pub part: Part,
    /// Values that compute something (leaves excluded).
    pub ops: usize,
    /// Floating-point operations at the given batch size, counted as `nnc_ir::cost` does.
    pub flops: u64,
}

/// A training step: forward pass, loss, backward pass and optimizer update in one graph.
#[derive(Clone, Debug)]
pub struct TrainGraph {
    pub graph: Graph,
    /// Decisions worth telling the user (e.g. the loss was attached before a softmax).
    pub notes: Vec<String>,
    /// The `loss` output.
    pub loss: ValueId,
    /// The value the loss is computed from: the logits (cross-entropy) or the
    /// model's output (MSE).
    pub prediction: ValueId,
    /// Each trained parameter and its gradient, in definition order.
    pub gradients: Vec<(ValueId, ValueId)>,
    parts: Vec<Part>,
}

impl TrainGraph {
    /// The part of the step that `id` belongs to.
    pub fn part_of(&self, id: ValueId) -> Part {
        self.parts.get(id.index()).copied().unwrap_or(Part::Update)
    }

    /// The part of every value, indexed by [`ValueId`].
    pub fn parts(&self) -> &[Part] {
        &self.parts
    }

    /// How many values the forward pass (the copied model) has.
    pub fn forward_values(&self) -> usize {
        self.parts.iter().filter(|&&p| p == Part::Forward).count()
    }

    /// Op counts and FLOPs per part at a batch size, in [`Part::ALL`] order.
    pub fn summary(&self, batch: usize) -> Vec<PartSummary> {
        let mut out: Vec<PartSummary> = Part::ALL.iter().map(|&part| PartSummary { part, ops: 0, flops: 0 }).collect();
        for id in self.graph.ids() {
            if self.graph.value(id).op.is_leaf() {
                continue;
            }
            let s = &mut out[self.part_of(id) as usize];
            s.ops += 1;
            s.flops += cost::value_flops(&self.graph, id, batch);
        }
        out
    }
}

/// The model with a loss attached (for evaluating the loss, and for tests).
#[derive(Clone, Debug)]
pub struct LossGraph {
    /// The model plus `labels` and the loss; its only output is `loss`.
    pub graph: Graph,
    pub loss: ValueId,
    /// The logits (cross-entropy) or the model's output (MSE).
    pub prediction: ValueId,
    pub notes: Vec<String>,
}

/// Attaches `opts.loss` to the model's output (chosen as for [`training_graph`]).
pub fn with_loss(model: &Graph, opts: &TrainOptions) -> Result<LossGraph, AutodiffError> {
    nnc_ir::verify(model).map_err(AutodiffError::Model)?;
    let mut notes = Vec::new();
    let mut graph = model.clone();
    reserve_names(&mut graph, &[LABELS, LOSS], &mut notes)?;
    let mut em = Emitter::new(graph);
    let attached = loss::attach(&mut em, opts.loss, opts.output.as_deref(), &mut notes)?;
    let mut graph = em.graph;
    graph.set_outputs(vec![attached.loss]);
    nnc_ir::verify(&graph)?;
    Ok(LossGraph { graph, loss: attached.loss, prediction: attached.prediction, notes })
}

/// Turns an inference model into one training step: forward pass, `opts.loss`, the
/// gradients of every f32 parameter that reaches the loss, and `opts.optimizer`'s
/// update of those parameters. The result is verified.
pub fn training_graph(model: &Graph, opts: &TrainOptions) -> Result<TrainGraph, AutodiffError> {
    opts.validate()?;
    nnc_ir::verify(model).map_err(AutodiffError::Model)?;
    let mut notes = Vec::new();
    let mut graph = model.clone();
    graph.name = format!("{}_train", model.name);
    let reserved: &[&str] = match opts.optimizer {
        Optimizer::Adam { .. } => &[LABELS, LOSS, LR, STEP],
        _ => &[LABELS, LOSS, LR],
    };
    reserve_names(&mut graph, reserved, &mut notes)?;

    // A model may already update leaves in place (e.g. running statistics); those
    // updates are kept, and a parameter the model updates itself is not trained.
    let model_updates = graph.updates().to_vec();
    let mut params = Vec::new();
    for p in graph.params() {
        if graph.ty(p).dtype != DType::F32 {
            notes.push(format!("parameter %{} is {} and is not trained", graph.name_of(p), graph.ty(p)));
        } else if model_updates.iter().any(|&(leaf, _)| leaf == p) {
            notes.push(format!("parameter %{} is updated by the model itself and is not trained", graph.name_of(p)));
        } else {
            params.push(p);
        }
    }

    let mut em = Emitter::new(graph);
    let forward_end = em.graph.len();
    let attached = loss::attach(&mut em, opts.loss, opts.output.as_deref(), &mut notes)?;
    let loss_end = em.graph.len();
    let grads = grad::backward(&mut em, attached.loss, &params)?;
    let backward_end = em.graph.len();

    let mut trained = Vec::new();
    let mut untouched = Vec::new();
    for (&p, g) in params.iter().zip(grads) {
        match g {
            Some(g) => trained.push((p, g)),
            None => untouched.push(format!("%{}", em.graph.name_of(p))),
        }
    }
    if trained.is_empty() {
        return Err(AutodiffError::NothingToTrain(format!("no f32 parameter of {} reaches the loss", model.name)));
    }
    if !untouched.is_empty() {
        notes.push(format!("not updated (the loss does not depend on them): {}", untouched.join(", ")));
    }
    let updates = optim::apply(&mut em, opts.optimizer, opts.weight_decay, &trained)?;

    let mut graph = em.graph;
    let mut outputs = vec![attached.loss];
    if opts.output_logits {
        outputs.push(attached.prediction);
    }
    graph.set_outputs(outputs);
    graph.set_updates(model_updates.into_iter().chain(updates).collect());
    let part = |i: usize| match i {
        i if i < forward_end => Part::Forward,
        i if i < loss_end => Part::Loss,
        i if i < backward_end => Part::Backward,
        _ => Part::Update,
    };

    let (graph, map) = prune::prune(&graph)?;
    let mut parts = vec![Part::Update; graph.len()];
    for (old, new) in map.iter().enumerate() {
        if let Some(new) = new {
            parts[new.index()] = part(old);
        }
    }
    let remap = |id: ValueId| {
        map[id.index()].ok_or_else(|| nnc_ir::IrError::structure(model.name.clone(), "a needed value was pruned"))
    };
    let gradients = trained.iter().map(|&(p, g)| Ok((remap(p)?, remap(g)?))).collect::<Result<_, nnc_ir::IrError>>()?;
    let loss = remap(attached.loss)?;
    // The prediction is not an output unless asked for, but the loss always uses it.
    let prediction = remap(attached.prediction)?;
    nnc_ir::verify(&graph)?;
    Ok(TrainGraph { graph, notes, loss, prediction, gradients, parts })
}

/// Appends the gradients of the scalar f32 `loss` with respect to each `wrt` value
/// (any f32 values: parameters, inputs, intermediates) to a copy of `graph`. Returns
/// the copy and the gradient of each `wrt` value, which has that value's type (zeros
/// when the loss does not depend on it). The copy's outputs are unchanged.
pub fn gradients(graph: &Graph, loss: ValueId, wrt: &[ValueId]) -> Result<(Graph, Vec<ValueId>), AutodiffError> {
    let mut em = Emitter::new(graph.clone());
    let grads = grad::backward(&mut em, loss, wrt)?;
    let mut ids = Vec::with_capacity(wrt.len());
    for (&w, g) in wrt.iter().zip(grads) {
        ids.push(match g {
            Some(g) => g,
            None => {
                let name = format!("{}.grad", em.graph.name_of(w));
                let shape = em.shape(w);
                em.zeros(&name, &shape)?
            }
        });
    }
    nnc_ir::verify(&em.graph)?;
    Ok((em.graph, ids))
}

/// Renames model values that use a name the training step needs for its interface
/// (`labels`, `loss`, `lr`, `step`), with a note.
fn reserve_names(graph: &mut Graph, names: &[&str], notes: &mut Vec<String>) -> Result<(), AutodiffError> {
    for &name in names {
        if let Some(id) = graph.find(name) {
            let new = graph.fresh_name(&format!("{name}.model"));
            graph.rename(id, new.clone())?;
            notes
                .push(format!("the model's value %{name} is renamed %{new}: the training step uses the name `{name}`"));
        }
    }
    Ok(())
}
