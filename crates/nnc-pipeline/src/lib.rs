//! nnc's pipeline, spelled out in one place. Every command of the `nnc` tool and the
//! trainer (`nnc-train`) take a model through these stages, in this order:
//!
//! ```text
//! import ─► differentiate ─► optimize ─► lower ─► codegen
//! (ONNX)    (training only)   (passes,     (kernels,   (JIT, or an
//!                              step plan)   scratch)    object file)
//! ```
//!
//! - [`import`]: an ONNX file to a verified [`Graph`] (`nnc-onnx`).
//! - [`differentiate`]: the model to its training step: loss, backward graph and
//!   optimizer update (`nnc-autodiff`).
//! - [`optimize`]: the graph optimizer's passes, then the step plan (`nnc-opt`): the
//!   kernels the step runs and where every value lives.
//! - [`lower`]: the optimized graph by its plan to a kernel description per kernel for
//!   one kernel family (`nnc-cranelift`); it prints as the lowered program.
//! - [`codegen`]: the lowered program to JIT-compiled code ([`compile_object`]: to an
//!   object file with C entry points).
//!
//! The graph is verified after every stage that makes one, in debug builds and tests
//! (the optimizer also after each of its passes), as Cranelift's `Context` runs its
//! verifier between steps. [`compile`] runs optimize, lower and codegen: what the
//! trainer and `nnc run` do with a graph.

use nnc_ir::{Graph, IrError};
use std::fmt;
use std::path::Path;

pub use nnc_autodiff::{TrainGraph, TrainOptions};
pub use nnc_cranelift::{CompileOptions, Compiled, Lowered, ObjectCode, ObjectOptions};
pub use nnc_onnx::ImportOptions;
pub use nnc_opt::{OptOptions, Optimized};

/// A stage of the pipeline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    Import,
    Differentiate,
    Optimize,
    Lower,
    Codegen,
}

impl Stage {
    /// The stages, in the order they run.
    pub const ALL: [Stage; 5] = [Stage::Import, Stage::Differentiate, Stage::Optimize, Stage::Lower, Stage::Codegen];

    pub fn name(self) -> &'static str {
        match self {
            Stage::Import => "import",
            Stage::Differentiate => "differentiate",
            Stage::Optimize => "optimize",
            Stage::Lower => "lower",
            Stage::Codegen => "codegen",
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a stage failed; the message is the stage's own.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Import(#[from] nnc_onnx::OnnxError),
    #[error(transparent)]
    Differentiate(#[from] nnc_autodiff::AutodiffError),
    #[error(transparent)]
    Optimize(#[from] nnc_opt::OptError),
    /// Lowering or code generation (the backend's error says which).
    #[error(transparent)]
    Backend(#[from] nnc_cranelift::BackendError),
    /// A stage made a graph that does not verify: a bug in that stage.
    #[error("internal error: the graph after {stage} does not verify: {error}")]
    Verify { stage: Stage, error: IrError },
}

/// Verifies `g` after `stage` in debug builds and tests.
fn verify_if(g: &Graph, stage: Stage) -> Result<(), PipelineError> {
    if cfg!(debug_assertions) {
        nnc_ir::verify(g).map_err(|error| PipelineError::Verify { stage, error })?;
    }
    Ok(())
}

/// Stage 1: an ONNX file to a verified graph.
pub fn import(path: &Path, opts: &ImportOptions) -> Result<Graph, PipelineError> {
    Ok(nnc_onnx::import_file_with(path, opts)?)
}

/// Stage 2: the model's training step (forward pass, loss, backward pass and the
/// optimizer update of every parameter) as one graph.
pub fn differentiate(model: &Graph, opts: &TrainOptions) -> Result<TrainGraph, PipelineError> {
    let step = nnc_autodiff::training_graph(model, opts)?;
    verify_if(&step.graph, Stage::Differentiate)?;
    Ok(step)
}

/// Stage 3: the optimizer's passes and the step plan of their result.
pub fn optimize(graph: &Graph, opts: &OptOptions) -> Result<Optimized, PipelineError> {
    Ok(nnc_opt::optimize(graph, opts)?)
}

/// Stage 4: the optimized graph lowered by its plan for the kernel family of `opts`.
pub fn lower(optimized: &Optimized, opts: &CompileOptions) -> Result<Lowered, PipelineError> {
    Ok(nnc_cranelift::lower(&optimized.graph, optimized.plan.clone(), opts)?)
}

/// Stage 5: the lowered program compiled to native code.
pub fn codegen(lowered: Lowered) -> Result<Compiled, PipelineError> {
    Ok(lowered.compile()?)
}

/// A graph optimized, lowered and compiled (the trainer's step and inference pass,
/// `nnc run`'s model).
pub fn compile(graph: &Graph, opt: &OptOptions, backend: &CompileOptions) -> Result<Compiled, PipelineError> {
    codegen(lower(&optimize(graph, opt)?, backend)?)
}

/// `(entry name, graph)`s optimized, lowered and compiled into one object file with a
/// C entry point per graph (see `nnc_cranelift::compile_object`).
pub fn compile_object(
    entries: &[(&str, &Graph)],
    opt: &OptOptions,
    backend: &CompileOptions,
    object: &ObjectOptions,
) -> Result<ObjectCode, PipelineError> {
    let lowered = entries
        .iter()
        .map(|&(name, g)| Ok((name, lower(&optimize(g, opt)?, backend)?)))
        .collect::<Result<Vec<_>, PipelineError>>()?;
    let entries: Vec<(&str, &Lowered)> = lowered.iter().map(|(name, l)| (*name, l)).collect();
    Ok(nnc_cranelift::compile_object(&entries, object)?)
}
