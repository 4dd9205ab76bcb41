//! Writing a model: checked first (the directory must exist), then through the one
//! atomic write (`nnc_ir::fs::write_atomically`), so a crash or a full disk never
//! leaves a truncated model behind.

use crate::OnnxError;
use std::io::Write;
use std::path::Path;

pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), OnnxError> {
    let err = |message: String| OnnxError::Write { path: path.display().to_string(), message };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        return Err(err(format!("directory \"{}\" does not exist", dir.display())));
    }
    nnc_ir::fs::write_atomically(path, |f| f.write_all(bytes)).map_err(|e| err(e.to_string()))
}
