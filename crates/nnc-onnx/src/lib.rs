//! ONNX import and export for nnc.
//!
//! [`import_file`] / [`import_bytes`] turn an ONNX model into an nnc [`Graph`]: ONNX ops
//! are lowered to the IR's primitives, shape arithmetic that exporters emit (Shape,
//! Gather, Concat, ...) is folded away even with a symbolic batch dimension, and every
//! problem is an [`OnnxError`], never a panic. [`export_model`] / [`write_file`] go the
//! other way using only standard ONNX ops; importing an export gives back the same IR.
//!
//! The protobuf messages are hand-written prost types in [`proto`], so no protoc is
//! needed.

mod error;
mod export;
mod import;
mod meta;
pub mod proto;

pub use error::OnnxError;
pub use export::{export_model, tensor_to_proto, to_bytes, write_file, ExportOptions, MIN_EXPORT_OPSET};
pub use import::{
    import_bytes, import_bytes_with, import_file, import_file_with, is_supported_op, tensor_from_proto, ImportOptions,
    MAX_IR_VERSION, MAX_NODES, MAX_OPSET, MIN_OPSET,
};

/// Re-exported so callers can name the result type without depending on nnc-ir directly.
pub use nnc_ir::Graph;
