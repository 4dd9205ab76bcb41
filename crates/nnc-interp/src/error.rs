//! The interpreter's error type. Every message names the value it is about.

use nnc_ir::TensorType;
use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq)]
pub enum InterpError {
    /// Feeds whose names are not an input, parameter or state of the graph (sorted).
    #[error("{}", unknown_feeds(names, inputs))]
    UnknownFeeds { names: Vec<String>, inputs: Vec<String> },
    /// Inputs, and parameters or state without an initial value, that were not fed.
    #[error("{}", missing_feeds(missing))]
    MissingFeeds { missing: Vec<MissingFeed> },
    /// Two fed tensors imply different batch sizes.
    #[error("inputs disagree on the batch size: \"{first}\" has N={first_batch}, \"{second}\" has N={second_batch}")]
    BatchMismatch { first: String, first_batch: usize, second: String, second_batch: usize },
    /// A fed tensor does not have its declared type. `batch` is the resolved batch
    /// size, if it was known when the mismatch was found.
    #[error("{kind} \"{name}\": expected {expected}{}, got {got}", batch_note(expected, *batch))]
    FeedMismatch { kind: &'static str, name: String, expected: TensorType, batch: Option<usize>, got: String },
    /// An op could not be computed (bad operands, integer division by zero, ...).
    #[error("%{value} ({op}): {message}")]
    Op { value: String, op: &'static str, message: String },
    /// A value (computed, constant or initial) does not have the graph's declared type:
    /// the graph is inconsistent, or the interpreter disagrees with type inference.
    #[error("%{value} ({op}): the value is {got}, but its declared type is {expected}{}", batch_note(expected, Some(*batch)))]
    TypeMismatch { value: String, op: &'static str, expected: TensorType, batch: usize, got: String },
    /// The graph's structure is broken (an output or operand that does not exist).
    #[error("graph \"{graph}\": {message}")]
    Malformed { graph: String, message: String },
}

/// A feed the graph needs but did not get.
#[derive(Debug, Clone, PartialEq)]
pub struct MissingFeed {
    /// `"input"`, `"param"` or `"state"`.
    pub kind: &'static str,
    pub name: String,
    pub ty: TensorType,
}

fn unknown_feeds(names: &[String], inputs: &[String]) -> String {
    let plural = if names.len() == 1 { "" } else { "s" };
    let inputs = if inputs.is_empty() {
        "the graph has no inputs".to_string()
    } else {
        format!("the graph's inputs are {}", quoted(inputs))
    };
    format!("unknown feed{plural} {} ({inputs}; parameters and state can also be fed by name)", quoted(names))
}

fn missing_feeds(missing: &[MissingFeed]) -> String {
    let plural = if missing.len() == 1 { "" } else { "s" };
    let list: Vec<String> = missing
        .iter()
        .map(|m| {
            let why = if m.kind == "input" { "" } else { " (it has no initial value)" };
            format!("{} \"{}\": {}{why}", m.kind, m.name, m.ty)
        })
        .collect();
    format!("missing feed{plural} for {}", list.join("; "))
}

fn quoted(names: &[String]) -> String {
    names.iter().map(|n| format!("\"{n}\"")).collect::<Vec<_>>().join(", ")
}

/// ` (N=100)` when the type mentions the batch and its size is known.
fn batch_note(ty: &TensorType, batch: Option<usize>) -> String {
    match batch {
        Some(n) if ty.shape.has_batch() => format!(" (N={n})"),
        _ => String::new(),
    }
}
