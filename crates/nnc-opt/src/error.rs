use nnc_ir::IrError;
use thiserror::Error;

/// Why optimization failed. Every message names the pass or the value it is about.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum OptError {
    /// `--passes` or `--dump-after` named a pass that does not exist.
    #[error("unknown pass '{name}' (the passes are {})", known.join(", "))]
    UnknownPass { name: String, known: Vec<&'static str> },
    /// `--dump-after` named a pass the pipeline does not run.
    #[error("--dump-after {name}: the pass does not run in this pipeline ({pipeline})")]
    NotInPipeline { name: &'static str, pipeline: String },
    /// The graph given to the optimizer or the memory planner does not verify.
    #[error("the graph to optimize is not valid IR: {0}")]
    Input(IrError),
    /// A pass produced a graph that does not verify: a bug in that pass.
    #[error("internal error: the graph after pass '{pass}' does not verify: {error}")]
    Verify { pass: &'static str, error: IrError },
    /// A pass could not rebuild the graph: a bug in that pass.
    #[error("internal error in pass '{pass}': {message}")]
    Internal { pass: &'static str, message: String },
}
