//! The training driver's error type. Messages name the file, example, step or value
//! they are about, so the CLI can print them as they are.

use nnc_autodiff::AutodiffError;
use nnc_interp::InterpError;
use std::path::PathBuf;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum TrainError {
    /// A file could not be opened or read (permissions, I/O failure).
    #[error("cannot read {}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    /// A file is not a valid IDX file: wrong magic, unsupported element type,
    /// truncated, trailing data, corrupt gzip, dimensions that overflow.
    #[error("{}: {message}", path.display())]
    Idx { path: PathBuf, message: String },
    /// A directory lacks some of the four MNIST-format files.
    #[error("{}: {message}", dir.display())]
    MissingFiles { dir: PathBuf, message: String },
    /// The numbers of examples and labels differ.
    #[error("the data set has {examples} examples but {labels} labels")]
    LabelCount { examples: usize, labels: usize },
    /// A class label outside `0..classes` (the first one found).
    #[error("label {value} of example {index} is outside the model's {classes} classes (0..{classes})")]
    LabelRange { index: usize, value: i64, classes: usize },
    /// A NaN or infinite value in the inputs or f32 labels (the first one found).
    #[error("{what} of example {index} contain {value} at element {element}; data must be finite")]
    NonFinite { what: &'static str, index: usize, element: usize, value: f32 },
    /// The data does not have the shape or element type the model needs.
    #[error("{0}")]
    Shape(String),
    /// A problem with the training, test or evaluation set as a whole.
    #[error("the {set} set: {source}")]
    DataSet { set: &'static str, source: Box<TrainError> },
    /// The training graph cannot be driven by this crate (several inputs, no batch
    /// dimension, a parameter without an initial value, ...).
    #[error("cannot train this model: {0}")]
    Model(String),
    /// An out-of-range training setting (batch 0, a NaN learning rate, ...).
    #[error("invalid training configuration: {0}")]
    Config(String),
    /// The loss, a parameter or the optimizer state became NaN or infinite (or, under
    /// [`crate::NanPolicy::Skip`], too many steps in a row did).
    #[error(
        "training diverged at step {step} (epoch {epoch}): {what}; try a smaller learning rate than {}{}",
        number(*lr),
        intact(checkpoint)
    )]
    Diverged {
        step: u64,
        epoch: usize,
        /// The step's loss (computed before its update; it may be finite when a
        /// parameter is not).
        loss: f32,
        lr: f32,
        /// The first non-finite tensor: `loss`, or a parameter's or state's name.
        tensor: String,
        /// What was found, e.g. `the loss is NaN` or `parameter "w" holds inf at element 3`.
        what: String,
        /// The last checkpoint of the run (its step and file), left as it was.
        checkpoint: Option<(u64, PathBuf)>,
    },
    /// A checkpoint cannot be read: not a checkpoint, another format version,
    /// truncated, corrupt; or a checkpoint directory cannot be used.
    #[error("{}: {message}", path.display())]
    Checkpoint { path: PathBuf, message: String },
    /// A checkpoint does not belong to this run (another model, optimizer, learning
    /// rate, data set, ...) or is past its end.
    #[error("cannot resume from {}: {message}", path.display())]
    Resume { path: PathBuf, message: String },
    /// A file could not be written (checkpoints).
    #[error("cannot write {}: {source}", path.display())]
    Write { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Interp(#[from] InterpError),
    #[error(transparent)]
    Autodiff(#[from] AutodiffError),
    /// A backend other than the interpreter failed (the JIT uses this).
    #[error("{0}")]
    Backend(String),
}

/// `0.01`, `1e30`: plain decimals unless very large or small.
fn number(x: f32) -> String {
    if x != 0.0 && !(1e-4..1e6).contains(&x.abs()) {
        format!("{x:e}")
    } else {
        x.to_string()
    }
}

/// `; the last checkpoint (step 40) is intact in DIR/checkpoint.nnc`, or nothing.
fn intact(checkpoint: &Option<(u64, PathBuf)>) -> String {
    match checkpoint {
        Some((step, path)) => format!("; the last checkpoint (step {step}) is intact in {}", path.display()),
        None => String::new(),
    }
}

impl TrainError {
    pub(crate) fn idx(path: impl Into<PathBuf>, message: impl Into<String>) -> TrainError {
        TrainError::Idx { path: path.into(), message: message.into() }
    }
}
