//! [`StepBackend`] on the reference interpreter: slow, but exact, and available for
//! every op. It is the baseline the JIT backend is compared with.
//!
//! The interpreter takes all leaves as feeds by name, so the backend keeps the
//! current parameters and optimizer state in one map of feeds, adds the batch,
//! labels and hyper-parameters for a step, and moves each updated value back in.
//! Nothing is copied per step except the batch itself.

use crate::backend::{check_type, StepBackend, StepResult};
use crate::dataset::Labels;
use crate::error::TrainError;
use crate::spec::StepSpec;
use nnc_autodiff::{TrainGraph, TrainOptions, LABELS, LR, STEP};
use nnc_ir::{Graph, Tensor, TensorType};
use std::collections::HashMap;

pub struct InterpBackend {
    spec: StepSpec,
    /// Current value of every parameter and state leaf, by name; the feeds of a run.
    leaves: HashMap<String, Tensor>,
    /// Leaves the inference graph lacks: set aside while it runs, because the
    /// interpreter refuses feeds a graph does not have.
    not_inferred: Vec<String>,
    /// The leaf each entry of `step_graph.updates()` writes.
    update_targets: Vec<String>,
}

impl InterpBackend {
    /// Differentiates `model` with `opts` and prepares to train it.
    pub fn new(model: &Graph, opts: &TrainOptions) -> Result<InterpBackend, TrainError> {
        InterpBackend::from_train_graph(&nnc_autodiff::training_graph(model, opts)?)
    }

    /// Prepares to run an existing training step. Every parameter and state must
    /// have an initial value; the step must have exactly one model input.
    pub fn from_train_graph(tg: &TrainGraph) -> Result<InterpBackend, TrainError> {
        InterpBackend::with_inference(tg, None)
    }

    /// [`InterpBackend::from_train_graph`], inferring with `inference` (the model as
    /// imported for inference) instead of the step's forward pass when given: see
    /// `StepSpec::with_inference`.
    pub fn with_inference(tg: &TrainGraph, inference: Option<&Graph>) -> Result<InterpBackend, TrainError> {
        let spec = StepSpec::with_inference(tg, inference)?;
        let leaves: HashMap<String, Tensor> = spec.initial_values().into_iter().collect();
        let g = &spec.step_graph;
        let update_targets = g.updates().iter().map(|&(leaf, _)| g.name_of(leaf).to_string()).collect();
        let not_inferred = leaves.keys().filter(|name| spec.infer_graph.find(name).is_none()).cloned().collect();
        Ok(InterpBackend { spec, leaves, not_inferred, update_targets })
    }

    /// Decisions the differentiation made that are worth telling the user.
    pub fn notes(&self) -> &[String] {
        &self.spec.notes
    }

    pub fn step_graph(&self) -> &Graph {
        &self.spec.step_graph
    }
}

impl StepBackend for InterpBackend {
    fn name(&self) -> &str {
        "interp"
    }

    fn input_type(&self) -> &TensorType {
        &self.spec.input_type
    }

    fn labels(&self) -> &Labels {
        &self.spec.labels
    }

    fn step(&mut self, x: &Tensor, y: &Tensor, lr: f32, step: u64) -> Result<StepResult, TrainError> {
        let mut feeds = vec![(self.spec.input.as_str(), x.clone()), (LABELS, y.clone()), (LR, Tensor::scalar_f32(lr))];
        if let Some(step) = self.spec.step_feed(step)? {
            feeds.push((STEP, step));
        }
        let graph = &self.spec.step_graph;
        let step = run_with(&mut self.leaves, feeds, |feeds| nnc_interp::run_step(graph, feeds))?;
        for (name, value) in self.update_targets.iter().zip(step.updates) {
            if let Some(slot) = self.leaves.get_mut(name) {
                *slot = value;
            }
        }
        StepResult::from_outputs(step.outputs)
    }

    fn infer(&mut self, x: &Tensor) -> Result<Tensor, TrainError> {
        let parked: Vec<(String, Tensor)> =
            self.not_inferred.iter().filter_map(|n| self.leaves.remove_entry(n)).collect();
        let feeds = vec![(self.spec.input.as_str(), x.clone())];
        let graph = &self.spec.infer_graph;
        let result = run_with(&mut self.leaves, feeds, |feeds| nnc_interp::run(graph, feeds));
        self.leaves.extend(parked);
        result?.pop().ok_or_else(|| TrainError::Model("the inference graph has no output".into()))
    }

    fn params(&self) -> Vec<(String, Tensor)> {
        self.spec.params.iter().filter_map(|n| Some((n.clone(), self.leaves.get(n)?.clone()))).collect()
    }

    fn state(&self) -> Vec<(String, Tensor)> {
        self.spec.state.iter().filter_map(|n| Some((n.clone(), self.leaves.get(n)?.clone()))).collect()
    }

    fn set_value(&mut self, name: &str, value: Tensor) -> Result<(), TrainError> {
        check_type(name, self.spec.leaf_type(name)?, &value)?;
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
