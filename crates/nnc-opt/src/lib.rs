//! nnc's graph optimizer: a training step (or any graph) in, a graph of fewer,
//! fused kernels and a memory plan out.
//!
//! ```text
//! Graph ──► simplify, const_fold, cse, dce ──► fold_transpose ──► fuse_softmax_ce, fuse_update,
//!           fuse_dense, fuse_conv, fuse_relu_grad, fuse_bias_grad ──► cse, dce ──► plan
//! ```
//!
//! - Each pass is one file in `passes/` and one function, `run(&Graph) -> Result<Graph>`;
//!   the pipeline is spelled out in [`pipeline`]; the verifier runs after every pass
//!   in debug builds and tests.
//! - Passes never change what a graph computes: the interpreter gives the same outputs
//!   and updates before and after each one (see the tests). Fused ops
//!   (`nnc_ir::FusedOp`) are defined by their primitive expansion, so this holds for
//!   the fusions too.
//! - [`plan`] decides the kernels a step runs and where every value lives (the one
//!   plan every backend executes); [`report`] counts its kernels and bytes moved.
//!
//! For the CLI: [`optimize`] with [`OptOptions::from_flags`] (`-O0`, `--passes`,
//! `--dump-after`); print [`Optimized::graph`] for `--emit ir-opt`, each of
//! [`Optimized::dumps`] for `--dump-after`, and [`Report::render`] for the summary.

mod error;
pub mod passes;
mod pattern;
pub mod pipeline;
pub mod plan;
pub mod report;
mod rewrite;

pub use error::OptError;
pub use pipeline::{optimize, pass_names, Dump, Level, OptOptions, Optimized};
pub use plan::{plan, StepPlan, Storage};
pub use report::{step_cost, Report, StepCost};
