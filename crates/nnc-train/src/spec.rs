//! What every backend needs to know about a training-step graph: its one model input,
//! the labels it expects, whether it takes a step counter, its parameters and state
//! (whose initial values the step graph holds), and the forward pass for inference.
//! Computed once, here, so the interpreter and JIT backends cannot disagree about it.

use crate::dataset::{example_dims, Labels};
use crate::error::TrainError;
use nnc_autodiff::{Part, TrainGraph, LABELS, STEP};
use nnc_ir::{DType, Dim, Graph, Op, Tensor, TensorType, ValueId};

pub(crate) struct StepSpec {
    pub step_graph: Graph,
    /// The forward part of the step, ending at the prediction (see
    /// [`crate::StepBackend::infer`]).
    pub infer_graph: Graph,
    pub input: String,
    pub input_type: TensorType,
    pub labels: Labels,
    /// The step graph has a `step` input (Adam).
    pub takes_step: bool,
    /// Parameters and state, in definition order.
    pub params: Vec<String>,
    pub state: Vec<String>,
    pub notes: Vec<String>,
}

impl StepSpec {
    /// Every parameter and state must have an initial value; the step must have
    /// exactly one model input. Inference runs the step's forward pass, or
    /// `inference` when given: the model as imported for inference, where an op computes
    /// otherwise in training (batch normalization's running statistics instead of the
    /// batch's). It must read the step's input and only the step's parameters and
    /// state, by name and type; its declared updates are dropped (inference changes
    /// nothing) and its output is the step's prediction, by name.
    pub fn with_inference(tg: &TrainGraph, inference: Option<&Graph>) -> Result<StepSpec, TrainError> {
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
        let (mut params, mut state) = (Vec::new(), Vec::new());
        for id in g.ids() {
            let v = g.value(id);
            let (init, list) = match &v.op {
                Op::Param { init } => (init, &mut params),
                Op::State { init } => (init, &mut state),
                _ => continue,
            };
            if init.is_none() {
                return Err(TrainError::Model(format!(
                    "%{} has no initial value (an imported model must carry its weights)",
                    v.name
                )));
            }
            list.push(v.name.clone());
        }
        let infer_graph = match inference {
            Some(model) => inference_graph(model, tg)?,
            None => forward_graph(tg)?,
        };
        Ok(StepSpec {
            step_graph: g.clone(),
            infer_graph,
            input: g.name_of(input).to_string(),
            input_type,
            labels,
            takes_step: g
                .find(STEP)
                .is_some_and(|id| matches!(g.value(id).op, Op::Input) && tg.part_of(id) == Part::Update),
            params,
            state,
            notes: tg.notes.clone(),
        })
    }

    /// The initial value of every parameter and state, in definition order (empty
    /// after [`StepSpec::drop_initial_values`]).
    pub fn initial_values(&self) -> Vec<(String, Tensor)> {
        let g = &self.step_graph;
        g.ids()
            .filter_map(|id| match &g.value(id).op {
                Op::Param { init: Some(t) } | Op::State { init: Some(t) } => {
                    Some((g.name_of(id).to_string(), t.clone()))
                }
                _ => None,
            })
            .collect()
    }

    /// Drops the graphs' copies of the initial values, for a backend that holds the
    /// values in its own buffers: otherwise every parameter (and, with Adam, both
    /// moments) stays on the host twice more for the whole run.
    pub fn drop_initial_values(&mut self) {
        for g in [&mut self.step_graph, &mut self.infer_graph] {
            for id in g.ids().collect::<Vec<_>>() {
                g.take_init(id);
            }
        }
    }

    /// The `step` feed (1-based), if the step takes one.
    pub fn step_feed(&self, step: u64) -> Result<Option<Tensor>, TrainError> {
        if !self.takes_step {
            return Ok(None);
        }
        let step = i64::try_from(step).map_err(|_| TrainError::Config(format!("step {step} is too large")))?;
        Ok(Some(Tensor::scalar_i64(step)))
    }

    /// The type of parameter or state `name`, or an error if there is none.
    pub fn leaf_type(&self, name: &str) -> Result<&TensorType, TrainError> {
        let g = &self.step_graph;
        g.find(name)
            .filter(|&id| matches!(g.value(id).op, Op::Param { .. } | Op::State { .. }))
            .map(|id| g.ty(id))
            .ok_or_else(|| TrainError::Model(format!("the training step has no parameter or state \"{name}\"")))
    }
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

/// `model` checked against the step and made to return the prediction (see
/// [`StepSpec::with_inference`]).
fn inference_graph(model: &Graph, tg: &TrainGraph) -> Result<Graph, TrainError> {
    let g = &tg.graph;
    let bad = |m: String| TrainError::Model(format!("the inference model does not fit the training step: {m}"));
    for id in model.ids() {
        let v = model.value(id);
        if !matches!(v.op, Op::Input | Op::Param { .. } | Op::State { .. }) {
            continue;
        }
        let same = g.find(&v.name).filter(|&s| g.ty(s) == &v.ty && tg.part_of(s) == Part::Forward);
        let same_kind = same.is_some_and(|s| std::mem::discriminant(&g.value(s).op) == std::mem::discriminant(&v.op));
        if !same_kind {
            return Err(bad(format!("%{} ({}) is not a leaf of the step's model", v.name, v.ty)));
        }
    }
    let prediction = g.name_of(tg.prediction);
    let out = model.find(prediction).ok_or_else(|| bad(format!("it has no value %{prediction}")))?;
    if model.ty(out) != g.ty(tg.prediction) {
        return Err(bad(format!("%{prediction} is {}, the step's {}", model.ty(out), g.ty(tg.prediction))));
    }
    let mut infer = model.clone();
    infer.name = format!("{}_infer", model.name);
    infer.set_outputs(vec![out]);
    infer.set_updates(Vec::new());
    // What only the dropped updates needed goes; inputs and parameters stay.
    let live = infer.live(|_, v| matches!(v.op, Op::Input | Op::Param { .. }));
    let (infer, _) = infer.retain(&live).map_err(|e| bad(e.to_string()))?;
    nnc_ir::verify(&infer).map_err(|e| bad(e.to_string()))?;
    Ok(infer)
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
