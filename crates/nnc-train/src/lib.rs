//! nnc's training driver: data sets, the training loop and metrics.
//!
//! ```text
//! IDX files ──► idx ──► mnist::load_mnist_dir ─┐
//! NPY tensors ──────► Dataset::new ────────────┴─► fit_to_model ──► train ──► TrainReport
//!                                                                     │  ▲
//!                                      batches (seeded shuffle) ──────┘  │ per-step loss,
//!                                      StepBackend (interp, JIT) ◄───────┘ epoch metrics
//! ```
//!
//! The loop is backend-agnostic: a [`StepBackend`] takes one training step (forward,
//! loss, backward, optimizer update) and runs inference; [`InterpBackend`] does so
//! with the reference interpreter, and the Cranelift JIT implements the same trait.
//! Data is validated when it is loaded and when it meets the model, so a bad file or
//! a label out of range is a clear error before the first step, never a panic.
//!
//! [`train_with`] adds checkpoints ([`checkpoint`]): written atomically into a
//! directory, and resumed so that the run continues bit for bit as if it had not
//! stopped; and [`NanPolicy`] says what a NaN or an infinity does (stop, or skip the
//! step).

mod backend;
mod batches;
pub mod checkpoint;
mod dataset;
mod error;
pub mod idx;
mod interp;
mod jit;
pub mod metrics;
mod mnist;
mod spec;
mod train;

pub use backend::{store_params, StepBackend, StepResult};
pub use batches::{shuffle_rng, Batch, Batches};
pub use checkpoint::{Checkpoint, CheckpointDir, Progress, RunIdentity, CHECKPOINT_FILE};
pub use dataset::{byte_value, example_dims, fit_to_input, fit_to_model, Dataset, Examples, Labels};
pub use error::TrainError;
pub use interp::InterpBackend;
pub use jit::JitBackend;
pub use metrics::Metrics;
pub use mnist::{default_data_dir, load_mnist_dir, load_mnist_dir_with, load_split, DATA_ENV, DEBIAN_FASHION_MNIST};
pub use nnc_cranelift::CompileOptions;
pub use train::{
    evaluate, train, train_with, Checkpointing, EpochReport, Length, NanPolicy, Observer, Plan, RunOutcome, Skipped,
    StepInfo, TrainConfig, TrainReport, MAX_CONSECUTIVE_SKIPS,
};
