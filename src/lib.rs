//! nnc: a compile-ahead neural-network compiler.
//!
//! This crate is the facade and the `nnc` command-line tool. The pipeline lives in the
//! workspace crates, re-exported here: [`ir`] (the graph IR), [`onnx`] (import and
//! export), [`interp`] (the reference interpreter).

pub mod mlp;
pub mod npy;
pub mod summary;

pub use nnc_interp as interp;
pub use nnc_ir as ir;
pub use nnc_onnx as onnx;

use anyhow::{Context, Result};
use std::io::Write;
use std::path::Path;

/// Writes a file through a temporary file in the same directory and an atomic rename,
/// so a failure or a crash never leaves a partial file behind, and an existing file is
/// only replaced by a complete one.
pub fn write_atomically(path: &Path, write: impl FnOnce(&mut std::fs::File) -> std::io::Result<()>) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("cannot write {}: cannot create a file in {}", path.display(), dir.display()))?;
    write(tmp.as_file_mut())
        .and_then(|()| tmp.as_file_mut().flush())
        .with_context(|| format!("cannot write {}", path.display()))?;
    // Temporary files are private (0600); the result gets the usual mode of a new
    // file (0644 under the common umask), not a private one.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    tmp.as_file().sync_all().with_context(|| format!("cannot write {}", path.display()))?;
    tmp.persist(path).map_err(|e| e.error).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}
