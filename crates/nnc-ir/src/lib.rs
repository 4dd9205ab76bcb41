//! nnc's graph IR.
//!
//! A [`Graph`] is a list of single-result SSA values over a closed set of primitive
//! [`Op`]s (plus the optimizer's [`FusedOp`] kernels, each defined by its primitive
//! expansion), with f32/i64/i32/bool tensor types whose dimensions are static except for
//! one symbolic batch dimension `N`. The IR has a deterministic text form
//! ([`print`]/[`parse`]) that round-trips exactly, a [`verify`] pass, and cost
//! estimates used by summaries. It depends on neither protobuf nor Cranelift.

mod builder;
pub mod cost;
mod dot;
mod error;
pub mod fs;
pub mod fused;
mod graph;
pub mod infer;
pub mod limits;
pub mod math;
mod op;
mod parse;
mod print;
mod retain;
mod size;
mod tensor;
mod types;
mod verify;
pub mod window;

pub use dot::to_dot;
pub use error::IrError;
pub use fused::{expand_fused, CeOut, ConvEpilogue, FusedOp, GradOut, UpdateOut, UpdateRule};
pub use graph::{Graph, Value, ValueId};
pub use limits::MemoryBudget;
pub use op::{BinaryOp, Op, ReduceOp, UnaryOp};
pub use parse::{parse, parse_unverified};
pub use print::{print, print_with_data};
pub use size::Size;
pub use tensor::{Tensor, TensorView};
pub use types::{DType, Dim, Shape, TensorType};
pub use verify::{verify, MAX_ELEMENTS};
pub use window::{Conv, Pool, PoolKind, Window};
