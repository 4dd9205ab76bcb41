//! nnc: a compile-ahead neural-network compiler.
//!
//! This crate is the facade and the `nnc` command-line tool. The pipeline lives in the
//! workspace crates, re-exported here: [`ir`] (the graph IR), [`onnx`] (import and
//! export), [`interp`] (the reference interpreter).

pub mod cnn;
pub mod mlp;
pub mod npy;
pub mod summary;

pub use nnc_interp as interp;
pub use nnc_ir as ir;
pub use nnc_onnx as onnx;

use anyhow::{Context, Result};
use std::path::Path;

/// Writes a file atomically and durably (`nnc_ir::fs::write_atomically`: a failure
/// or a crash never leaves a partial file, and an existing file is only replaced by a
/// complete one), with the path in the error.
pub fn write_atomically(path: &Path, write: impl FnOnce(&mut std::fs::File) -> std::io::Result<()>) -> Result<()> {
    nnc_ir::fs::write_atomically(path, write).with_context(|| format!("cannot write {}", path.display()))
}
