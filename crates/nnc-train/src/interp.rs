//! [`StepBackend`] on the reference interpreter: slow, but exact, and available for
//! every op. It is the baseline the JIT backend is compared with.
//!
//! The interpreter takes all leaves as feeds by name, so the backend keeps the
//! current parameters and optimizer state in one map of feeds, adds the batch,
//! labels and hyper-parameters for a step, and moves each updated value back in.
//! Nothing is copied per step except the batch itself.

use crate::backend::{check_type, StepBackend, StepResult};
use crate::dataset::{example_dims, Labels};
use crate::error::TrainError;
use nnc_autodiff::{Part, TrainGraph, TrainOptions, LABELS, LR, STEP};
use nnc_ir::{DType, Dim, Graph, Op, Tensor, TensorType, ValueId};
use std::collections::HashMap;

pub struct InterpBackend {
    step_graph: Graph,
    /// The forward part of the step, ending at the prediction (see [`StepBackend::infer`]).
    infer_graph: Graph,
    input: String,
    input_type: TensorType,
    labels: Labels,
    /// The step graph has a `step` input (Adam).
    takes_step: bool,
    /// Current value of every parameter and state leaf, by name; the feeds of a run.
    leaves: HashMap<String, Tensor>,
    param_names: Vec<String>,
    state_names: Vec<String>,
    /// Leaves the inference graph lacks: set aside while it runs, because the
    /// interpreter refuses feeds a graph does not have.
    not_inferred: Vec<String>,
    /// The leaf each entry of `step_graph.updates()` writes.
    update_targets: Vec<String>,
    notes: Vec<String>,
}

impl InterpBackend {
    /// Differentiates `model` with `opts` and prepares to train it.
    pub fn new(model: &Graph, opts: &TrainOptions) -> Result<InterpBackend, TrainError> {
        InterpBackend::from_train_graph(&nnc_autodiff::training_graph(model, opts)?)
    }

    /// Prepares to run an existing training step. Every parameter and state must
    /// have an initial value; the step must have exactly one model input.
    pub fn from_train_graph(tg: &TrainGraph) -> Result<InterpBackend, TrainError> {
        let g = &tg.graph;
        // The parts tell the model's inputs from `labels` (loss) and `lr`/`step`
        // (update), even if the model has an input of one of those names.
        let model_inputs: Vec<ValueId> = g.inputs().into_iter().filter(|&id| tg.part_of(id) == Part::Forward).collect();
        let input = match model_inputs.as_slice() {
            [one] => *one,
            other => {
                let names: Vec<String> = other.iter().map(|&id| format!("%{}", g.name_of(id))).collect();
                return Err(TrainError::Model(format!(
                    "nnc-train feeds exactly one model input, and the training step has {} ({})",
                    names.len(),
                    names.join(", ")
                )));
            }
        };
        let input_type = g.ty(input).clone();
        example_dims(&input_type)?;
        let labels_id =
            g.find(LABELS).ok_or_else(|| TrainError::Model("the training step has no `labels` input".into()))?;
        let labels = label_spec(g.ty(labels_id), g.ty(tg.prediction))?;
        if g.outputs().first() != Some(&tg.loss) {
            return Err(TrainError::Model("the training step's first output is not its loss".into()));
        }

        let mut leaves = HashMap::new();
        let (mut param_names, mut state_names) = (Vec::new(), Vec::new());
        for id in g.ids() {
            let v = g.value(id);
            let (init, names) = match &v.op {
                Op::Param { init } => (init, &mut param_names),
                Op::State { init } => (init, &mut state_names),
                _ => continue,
            };
            let init = init.as_ref().ok_or_else(|| {
                TrainError::Model(format!(
                    "%{} has no initial value (an imported model must carry its weights)",
                    v.name
                ))
            })?;
            leaves.insert(v.name.clone(), init.clone());
            names.push(v.name.clone());
        }
        let update_targets = g.updates().iter().map(|&(leaf, _)| g.name_of(leaf).to_string()).collect();

        let infer_graph = forward_graph(tg)?;
        let not_inferred =
            leaves.keys().filter(|name| infer_graph.find(name).is_none()).cloned().collect::<Vec<String>>();
        Ok(InterpBackend {
            step_graph: g.clone(),
            infer_graph,
            input: g.name_of(input).to_string(),
            input_type,
            labels,
            takes_step: g
                .find(STEP)
                .is_some_and(|id| matches!(g.value(id).op, Op::Input) && tg.part_of(id) == Part::Update),
            leaves,
            param_names,
            state_names,
            not_inferred,
            update_targets,
            notes: tg.notes.clone(),
        })
    }

    /// Decisions the differentiation made that are worth telling the user.
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    pub fn step_graph(&self) -> &Graph {
        &self.step_graph
    }
}

impl StepBackend for InterpBackend {
    fn name(&self) -> &str {
        "interp"
    }

    fn input_type(&self) -> &TensorType {
        &self.input_type
    }

    fn labels(&self) -> &Labels {
        &self.labels
    }

    fn step(&mut self, x: &Tensor, y: &Tensor, lr: f32, step: u64) -> Result<StepResult, TrainError> {
        let mut feeds = vec![(self.input.as_str(), x.clone()), (LABELS, y.clone()), (LR, Tensor::scalar_f32(lr))];
        if self.takes_step {
            let step = i64::try_from(step).map_err(|_| TrainError::Config(format!("step {step} is too large")))?;
            feeds.push((STEP, Tensor::scalar_i64(step)));
        }
        let result = run_with(&mut self.leaves, feeds, |feeds| nnc_interp::run_step(&self.step_graph, feeds));
        let step = result?;
        for (name, value) in self.update_targets.iter().zip(step.updates) {
            if let Some(slot) = self.leaves.get_mut(name) {
                *slot = value;
            }
        }
        let mut outputs = step.outputs.into_iter();
        let loss = outputs
            .next()
            .and_then(|t| t.as_f32().and_then(|a| a.iter().next().copied()))
            .ok_or_else(|| TrainError::Model("the training step's loss is not an f32 scalar".into()))?;
        Ok(StepResult { loss, logits: outputs.next() })
    }

    fn infer(&mut self, x: &Tensor) -> Result<Tensor, TrainError> {
        let parked: Vec<(String, Tensor)> =
            self.not_inferred.iter().filter_map(|n| self.leaves.remove_entry(n)).collect();
        let feeds = vec![(self.input.as_str(), x.clone())];
        let result = run_with(&mut self.leaves, feeds, |feeds| nnc_interp::run(&self.infer_graph, feeds));
        self.leaves.extend(parked);
        result?.pop().ok_or_else(|| TrainError::Model("the inference graph has no output".into()))
    }

    fn params(&self) -> Vec<(String, Tensor)> {
        self.param_names.iter().filter_map(|n| Some((n.clone(), self.leaves.get(n)?.clone()))).collect()
    }

    fn state(&self) -> Vec<(String, Tensor)> {
        self.state_names.iter().filter_map(|n| Some((n.clone(), self.leaves.get(n)?.clone()))).collect()
    }

    fn set_value(&mut self, name: &str, value: Tensor) -> Result<(), TrainError> {
        let id = self
            .step_graph
            .find(name)
            .filter(|&id| matches!(self.step_graph.value(id).op, Op::Param { .. } | Op::State { .. }))
            .ok_or_else(|| TrainError::Model(format!("the training step has no parameter or state \"{name}\"")))?;
        check_type(name, self.step_graph.ty(id), &value)?;
        self.leaves.insert(name.to_string(), value);
        Ok(())
    }
}

/// Runs `run` on the leaves plus `extra` feeds, which are removed afterwards whether
/// or not the run succeeded.
fn run_with<T>(
    leaves: &mut HashMap<String, Tensor>,
    extra: Vec<(&str, Tensor)>,
    run: impl FnOnce(&HashMap<String, Tensor>) -> T,
) -> T {
    let names: Vec<&str> = extra.iter().map(|(n, _)| *n).collect();
    leaves.extend(extra.into_iter().map(|(n, t)| (n.to_string(), t)));
    let result = run(leaves);
    for n in names {
        leaves.remove(n);
    }
    result
}

/// What the `labels` input of a training step expects: i64 `[N]` class indices over
/// the prediction's `C` classes, or f32 targets shaped like the prediction.
fn label_spec(labels: &TensorType, prediction: &TensorType) -> Result<Labels, TrainError> {
    let dims = labels.shape.dims();
    match (labels.dtype, dims) {
        (DType::I64, [Dim::Batch]) => match prediction.shape.dims() {
            [Dim::Batch, Dim::Fixed(c)] => Ok(Labels::Classes(*c)),
            _ => Err(TrainError::Model(format!("cross-entropy over a prediction of type {prediction}, not [N,C]"))),
        },
        (DType::F32, [Dim::Batch, rest @ ..]) => rest
            .iter()
            .map(|d| d.fixed())
            .collect::<Option<Vec<usize>>>()
            .map(Labels::Targets)
            .ok_or_else(|| TrainError::Model(format!("labels of type {labels} have more than one batch dimension"))),
        _ => Err(TrainError::Model(format!("labels of type {labels}: expected i64[N] or f32 with the batch N first"))),
    }
}

/// The forward part of the training step, with the prediction as its output: the
/// model as differentiated, with the same names, so parameters are shared by name.
fn forward_graph(tg: &TrainGraph) -> Result<Graph, TrainError> {
    let g = &tg.graph;
    if tg.part_of(tg.prediction) != Part::Forward {
        return Err(TrainError::Model(format!(
            "the prediction %{} is not part of the model",
            g.name_of(tg.prediction)
        )));
    }
    let mut out = Graph::new(format!("{}_infer", g.name));
    let mut map: Vec<Option<ValueId>> = vec![None; g.len()];
    let internal = |e: String| TrainError::Model(format!("cannot extract the forward pass: {e}"));
    for id in g.ids().filter(|&id| tg.part_of(id) == Part::Forward) {
        let v = g.value(id);
        let args = v
            .args
            .iter()
            .map(|a| map[a.index()].ok_or_else(|| internal(format!("%{} uses a value outside the model", v.name))))
            .collect::<Result<Vec<_>, _>>()?;
        let new =
            out.push_typed(v.name.clone(), v.ty.clone(), v.op.clone(), args).map_err(|e| internal(e.to_string()))?;
        map[id.index()] = Some(new);
    }
    out.set_outputs(vec![map[tg.prediction.index()].ok_or_else(|| internal("the prediction was not copied".into()))?]);
    nnc_ir::verify(&out).map_err(|e| internal(e.to_string()))?;
    Ok(out)
}
