//! [`StepBackend`] on the Cranelift JIT: the training step and the inference pass are
//! each taken through the pipeline's optimize, lower and codegen stages
//! (`nnc_pipeline::compile`: fused dense, gradient-mask, cross-entropy and update
//! kernels) once, which then holds the parameters and optimizer
//! state in its own buffers and updates them in place.
//!
//! The two compiled functions have separate parameter buffers, so after training steps
//! the inference function is brought up to date (one copy of the parameters and of
//! the state it reads) before it runs; evaluation happens once per epoch, so the copy
//! is cheap next to training.

use crate::backend::{check_type, StepBackend, StepResult};
use crate::dataset::Labels;
use crate::error::TrainError;
use crate::spec::StepSpec;
use nnc_autodiff::{TrainGraph, TrainOptions, LABELS, LR, STEP};
use nnc_cranelift::{BackendError, CompileOptions, Compiled};
use nnc_ir::{Graph, Tensor, TensorType};
use std::collections::HashMap;

pub struct JitBackend {
    spec: StepSpec,
    step: Compiled,
    infer: Compiled,
    /// Parameters changed since `infer` last received them.
    infer_stale: bool,
}

fn backend_error(e: BackendError) -> TrainError {
    TrainError::Backend(e.to_string())
}

/// `graph` optimized (the default passes), lowered and compiled.
fn compile(graph: &Graph, opts: &CompileOptions) -> Result<Compiled, TrainError> {
    nnc_pipeline::compile(graph, &nnc_pipeline::OptOptions::default(), opts).map_err(|e| match e {
        nnc_pipeline::PipelineError::Optimize(e) => TrainError::Backend(format!("optimizer: {e}")),
        e => TrainError::Backend(e.to_string()),
    })
}

impl JitBackend {
    /// Differentiates `model` with `opts` and compiles the training step.
    pub fn new(model: &Graph, opts: &TrainOptions, compile: &CompileOptions) -> Result<JitBackend, TrainError> {
        JitBackend::from_train_graph(&nnc_autodiff::training_graph(model, opts)?, compile)
    }

    pub fn from_train_graph(tg: &TrainGraph, compile: &CompileOptions) -> Result<JitBackend, TrainError> {
        JitBackend::with_inference(tg, None, compile)
    }

    /// [`JitBackend::from_train_graph`], inferring with `inference` (the model as
    /// imported for inference) instead of the step's forward pass when given: see
    /// `StepSpec::with_inference`.
    pub fn with_inference(
        tg: &TrainGraph,
        inference: Option<&Graph>,
        compile: &CompileOptions,
    ) -> Result<JitBackend, TrainError> {
        let mut spec = StepSpec::with_inference(tg, inference)?;
        let step = self::compile(&spec.step_graph, compile)?;
        let infer = self::compile(&spec.infer_graph, compile)?;
        // The compiled functions hold the values now; the graphs are kept for names and types.
        spec.drop_initial_values();
        Ok(JitBackend { spec, step, infer, infer_stale: false })
    }

    /// Decisions the differentiation made that are worth telling the user.
    pub fn notes(&self) -> &[String] {
        &self.spec.notes
    }

    /// Threads the compiled step runs on.
    pub fn threads(&self) -> usize {
        self.step.threads()
    }

    /// The matrix-product kernel family of the compiled step.
    pub fn kernel_family(&self) -> &'static str {
        self.step.kernel_family()
    }

    /// The vector width of the matrix products' FMAs.
    pub fn vector_width(&self) -> nnc_cranelift::VectorWidth {
        self.step.vector_width()
    }

    /// Kernels in the compiled training step.
    pub fn kernel_count(&self) -> usize {
        self.step.kernel_count()
    }

    /// Bytes the compiled step and inference pass need at `batch`, as (arenas,
    /// parameters): the arenas of both functions (intermediates; allocated at the
    /// first run) and their parameter and optimizer-state buffers. For checking a
    /// memory budget before the first step.
    pub fn memory_bytes(&self, batch: usize) -> Result<(u64, u64), TrainError> {
        let arena = |c: &Compiled| c.arena_bytes(batch).map(|b| b as u64).map_err(backend_error);
        let arenas = arena(&self.step)?.saturating_add(arena(&self.infer)?);
        let leaves = |g: &Graph| {
            g.values()
                .iter()
                .filter(|v| matches!(v.op, nnc_ir::Op::Param { .. } | nnc_ir::Op::State { .. }))
                .map(|v| (v.ty.shape.numel(1).unwrap_or(0) as u64).saturating_mul(v.ty.dtype.size_bytes() as u64))
                .fold(0u64, u64::saturating_add)
        };
        Ok((arenas, leaves(&self.spec.step_graph).saturating_add(leaves(&self.spec.infer_graph))))
    }

    fn leaves(&self, names: &[String]) -> Vec<(String, Tensor)> {
        names.iter().filter_map(|n| Some((n.clone(), self.step.param(n).ok()?))).collect()
    }
}

impl StepBackend for JitBackend {
    fn name(&self) -> &str {
        "jit"
    }

    fn input_type(&self) -> &TensorType {
        &self.spec.input_type
    }

    fn labels(&self) -> &Labels {
        &self.spec.labels
    }

    fn step(&mut self, x: &Tensor, y: &Tensor, lr: f32, step: u64) -> Result<StepResult, TrainError> {
        // Borrowed feeds: the batch is read where it is, never copied.
        let lr = Tensor::scalar_f32(lr);
        let step = self.spec.step_feed(step)?;
        let mut feeds: HashMap<&str, &Tensor> = HashMap::from([(self.spec.input.as_str(), x), (LABELS, y), (LR, &lr)]);
        if let Some(step) = &step {
            feeds.insert(STEP, step);
        }
        let outputs = self.step.run_borrowed(&feeds).map_err(backend_error)?;
        self.infer_stale = true;
        StepResult::from_outputs(outputs)
    }

    fn infer(&mut self, x: &Tensor) -> Result<Tensor, TrainError> {
        if self.infer_stale {
            // Parameters, and state the model reads (running statistics).
            for name in self.spec.params.iter().chain(&self.spec.state) {
                if self.spec.infer_graph.find(name).is_some() {
                    let value = self.step.param(name).map_err(backend_error)?;
                    self.infer.set_param(name, &value).map_err(backend_error)?;
                }
            }
            self.infer_stale = false;
        }
        let feeds = HashMap::from([(self.spec.input.as_str(), x)]);
        let mut outputs = self.infer.run_borrowed(&feeds).map_err(backend_error)?;
        outputs.pop().ok_or_else(|| TrainError::Model("the inference graph has no output".into()))
    }

    fn params(&self) -> Vec<(String, Tensor)> {
        self.leaves(&self.spec.params)
    }

    fn state(&self) -> Vec<(String, Tensor)> {
        self.leaves(&self.spec.state)
    }

    fn set_value(&mut self, name: &str, value: Tensor) -> Result<(), TrainError> {
        check_type(name, self.spec.leaf_type(name)?, &value)?;
        self.step.set_param(name, &value).map_err(backend_error)?;
        self.infer_stale = true;
        Ok(())
    }
}
