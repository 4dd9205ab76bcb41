//! What the training loop needs from a backend: take a step, run inference, and
//! hand out the trained values. The interpreter ([`crate::InterpBackend`]) and the
//! Cranelift JIT implement it; the loop, metrics and data handling are shared.

use crate::dataset::Labels;
use crate::error::TrainError;
use nnc_ir::{Graph, Op, Tensor, TensorType};

/// The result of one training step.
#[derive(Clone, Debug, PartialEq)]
pub struct StepResult {
    /// The batch's mean loss, computed before the update.
    pub loss: f32,
    /// The prediction (logits, or the model's output for MSE) `[b, ...]`, if the
    /// training step outputs it; the loop then reports training accuracy.
    pub logits: Option<Tensor>,
}

impl StepResult {
    /// From a training step's outputs: the loss (an f32 scalar) first, then the
    /// prediction if the step outputs it.
    pub(crate) fn from_outputs(outputs: Vec<Tensor>) -> Result<StepResult, TrainError> {
        let mut outputs = outputs.into_iter();
        let loss = outputs
            .next()
            .and_then(|t| t.as_f32().and_then(|a| a.iter().next().copied()))
            .ok_or_else(|| TrainError::Model("the training step's loss is not an f32 scalar".into()))?;
        Ok(StepResult { loss, logits: outputs.next() })
    }
}

/// A compiled (or interpreted) training step with its parameters and optimizer state.
///
/// The backend owns the current values of every parameter and state leaf and updates
/// them in place on each step. Inputs are checked by the caller against
/// [`StepBackend::input_type`] and [`StepBackend::labels`] before the first step, but
/// a backend must still reject tensors of the wrong shape with an error, not UB.
pub trait StepBackend {
    /// A short name for reports (`"interp"`, `"jit"`).
    fn name(&self) -> &str;

    /// The model input's type, batch first (e.g. `f32[N,784]`).
    fn input_type(&self) -> &TensorType;

    /// The labels the step trains on.
    fn labels(&self) -> &Labels;

    /// One training step on batch `x` with labels `y`: forward, loss, backward and the
    /// optimizer update of every parameter. `step` is 1-based (Adam's bias correction).
    fn step(&mut self, x: &Tensor, y: &Tensor, lr: f32, step: u64) -> Result<StepResult, TrainError>;

    /// The prediction for batch `x` with the current parameters: the value the loss is
    /// attached to (logits before any final softmax, or the model's output for MSE).
    fn infer(&mut self, x: &Tensor) -> Result<Tensor, TrainError>;

    /// The current value of every trainable parameter, by the model's names.
    fn params(&self) -> Vec<(String, Tensor)>;

    /// The current optimizer state (`<param>.m`, `<param>.v`), by name.
    fn state(&self) -> Vec<(String, Tensor)>;

    /// Replaces a parameter or state value, e.g. when resuming from a checkpoint.
    /// Errors if there is no such leaf or the tensor's type differs.
    fn set_value(&mut self, name: &str, value: Tensor) -> Result<(), TrainError>;
}

/// Stores trained values as the initial values of `model`'s parameters, so the
/// model can be written out (e.g. as ONNX). Errors, changing nothing, if a name is
/// not a parameter or state of the model or a tensor's type differs from its
/// declaration.
pub fn store_params(model: &mut Graph, values: &[(String, Tensor)]) -> Result<(), TrainError> {
    let mut ids = Vec::with_capacity(values.len());
    for (name, t) in values {
        let id = model
            .find(name)
            .filter(|&id| matches!(model.value(id).op, Op::Param { .. } | Op::State { .. }))
            .ok_or_else(|| TrainError::Model(format!("the model has no parameter named \"{name}\"")))?;
        check_type(name, model.ty(id), t)?;
        ids.push(id);
    }
    for (id, (_, t)) in ids.into_iter().zip(values) {
        model.set_init(id, t.clone());
    }
    Ok(())
}

/// Errors unless `t` has exactly the (batch-free) type `ty`.
pub(crate) fn check_type(name: &str, ty: &TensorType, t: &Tensor) -> Result<(), TrainError> {
    if t.dtype() == ty.dtype && ty.shape.as_fixed().as_deref() == Some(t.shape()) {
        return Ok(());
    }
    Err(TrainError::Shape(format!("\"{name}\" is {ty}, but the value given is {}{}", t.dtype(), t.ir_shape())))
}
