//! The one error type of the crate. Every message is one line that names the problem
//! and where it is (file, node, tensor, graph input or IR value).

use nnc_ir::IrError;
use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq)]
pub enum OnnxError {
    /// The model file (or an external data file) could not be read.
    #[error("cannot read \"{path}\": {message}")]
    Io { path: String, message: String },
    /// Zero bytes: almost always a failed download or an interrupted write.
    #[error("{what} is empty: not an ONNX model")]
    Empty { what: String },
    /// The bytes are not a protobuf `ModelProto`.
    #[error("{what} is not a valid ONNX model: {message}")]
    Decode { what: String, message: String },
    /// The model's IR version is missing, invalid or newer than nnc knows.
    #[error("{what}: {problem}")]
    IrVersion { what: String, problem: String },
    /// A structural problem of the model as a whole (no graph, cycles, undefined values).
    #[error("invalid ONNX model: {0}")]
    Model(String),
    /// The model imports an operator set nnc does not implement.
    #[error("unsupported ONNX opset: {0}")]
    Opset(String),
    /// Every node nnc cannot import, listed together.
    #[error("unsupported ONNX ops: {}", .0.join(", "))]
    Unsupported(Vec<String>),
    /// A node that is supported in general but not in this use.
    #[error("node {node} {op} (opset {opset}): {message}")]
    Node { node: String, op: String, opset: i64, message: String },
    /// A float64 initializer, Constant, graph input or tensor. nnc computes in float32
    /// and refuses to round a model's values silently; `what` names the tensor.
    #[error(
        "{what} is float64; nnc computes in float32 — convert the model's float64 tensors (and inputs) to float32"
    )]
    Float64 { what: String },
    /// An initializer or constant tensor is malformed.
    #[error("tensor \"{name}\": {message}")]
    Tensor { name: String, message: String },
    #[error("graph input \"{name}\": {message}")]
    Input { name: String, message: String },
    #[error("graph output \"{name}\": {message}")]
    Output { name: String, message: String },
    /// The model declares more than a resource limit allows (memory, nodes); the
    /// message names the tensor, what it needs and the limit.
    #[error("{0}")]
    Limit(String),
    /// The imported graph failed IR verification (an importer bug or an exotic model).
    #[error("imported graph is invalid: {0}")]
    Ir(IrError),
    #[error("invalid export options: {0}")]
    Options(String),
    /// An IR value has no ONNX equivalent.
    #[error("cannot export %{value}: {message}")]
    Export { value: String, message: String },
    #[error("cannot write \"{path}\": {message}")]
    Write { path: String, message: String },
}
