//! Atomic file output: write a temporary file beside the target, then rename it over
//! the target, so a crash or a full disk never leaves a truncated model behind.

use crate::OnnxError;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), OnnxError> {
    let err = |message: String| OnnxError::Write { path: path.display().to_string(), message };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        return Err(err(format!("directory \"{}\" does not exist", dir.display())));
    }
    let file_name = path.file_name().ok_or_else(|| err("the path does not name a file".into()))?;
    let tmp = dir.join(format!(
        ".{}.{}.{}.tmp",
        file_name.to_string_lossy(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| -> std::io::Result<()> {
        let mut file = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(err(e.to_string()));
    }
    Ok(())
}
