//! The backend's error type. Every message names the value or feed it is about.

use thiserror::Error;

/// A value the backend cannot lower, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsupported {
    pub value: String,
    pub op: &'static str,
    pub reason: String,
}

#[derive(Debug, Error, Clone, PartialEq)]
pub enum BackendError {
    /// The graph does not verify.
    #[error("invalid graph: {0}")]
    InvalidGraph(String),
    /// Values the backend cannot lower, all of them at once, in definition order.
    #[error("{}", unsupported_list(.0))]
    Unsupported(Vec<Unsupported>),
    /// A [`crate::CompileOptions`] value that cannot be used.
    #[error("invalid options: {0}")]
    InvalidOptions(String),
    /// Cranelift rejected the generated code (a backend bug) or the host is unsupported.
    #[error("code generation failed: {0}")]
    Codegen(String),
    /// Feeds whose names are not an input, parameter or state of the graph (sorted).
    #[error("unknown feed{} {}", plural(names.len()), quoted(names))]
    UnknownFeeds { names: Vec<String> },
    /// Inputs that were not fed, as `input "x": f32[N,784]`.
    #[error("missing feed{} for {}", plural(missing.len()), missing.join("; "))]
    MissingFeeds { missing: Vec<String> },
    /// Two feeds imply different batch sizes.
    #[error("feeds disagree on the batch size: \"{first}\" has N={first_batch}, \"{second}\" has N={second_batch}")]
    BatchMismatch { first: String, first_batch: usize, second: String, second_batch: usize },
    /// A fed tensor (or a parameter given to `set_param`) does not have its declared type.
    #[error("{kind} \"{name}\": expected {expected}, got {got}")]
    FeedMismatch { kind: &'static str, name: String, expected: String, got: String },
    /// `param`/`set_param` with a name that is not a parameter or state of the graph.
    #[error("\"{name}\" is not a parameter or state of the graph")]
    UnknownParam { name: String },
    /// Parameters or state without an initial value that were never set or fed.
    #[error("no value for {}: set it with set_param or feed it", quoted(names))]
    ParamUnset { names: Vec<String> },
    /// The batch size makes some buffer larger than the address space.
    #[error("batch size {batch} is too large: {message}")]
    TooLarge { batch: usize, message: String },
    /// The generated code found bad data while running (a class index out of range, an
    /// integer division by zero). Parameters updated earlier in the same step may
    /// already hold their new values.
    #[error("%{value} ({op}): {message}")]
    Runtime { value: String, op: &'static str, message: String },
    /// Checked mode caught a load or store outside the buffers of a kernel: a bug in
    /// the backend, reported instead of corrupting memory.
    #[error("out-of-bounds memory access in kernel {kernel} (computing %{value}), caught in checked mode")]
    OutOfBounds { kernel: String, value: String },
}

/// A Cranelift or assembler error, as the backend reports it.
pub(crate) fn codegen_err(e: impl std::fmt::Display) -> BackendError {
    BackendError::Codegen(e.to_string())
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

fn quoted(names: &[String]) -> String {
    names.iter().map(|n| format!("\"{n}\"")).collect::<Vec<_>>().join(", ")
}

fn unsupported_list(items: &[Unsupported]) -> String {
    let list: Vec<String> = items.iter().map(|u| format!("%{} ({}): {}", u.value, u.op, u.reason)).collect();
    format!("the Cranelift backend cannot lower {} value{}: {}", items.len(), plural(items.len()), list.join("; "))
}
