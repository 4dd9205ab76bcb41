//! External tensor data: bytes stored in a file beside the model.
//!
//! The location must be a plain relative path inside the model's directory (no `..`,
//! no absolute path, no symlink leading out), so a model cannot make nnc read
//! arbitrary files.

use crate::proto::TensorProto;
use crate::OnnxError;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Component, Path};

/// Reads exactly `need` bytes of `t`'s external data.
pub(crate) fn read_external(
    t: &TensorProto,
    name: &str,
    base_dir: Option<&Path>,
    need: usize,
) -> Result<Vec<u8>, OnnxError> {
    let err = |message: String| OnnxError::Tensor { name: name.to_string(), message };
    let mut location = None;
    let mut offset: u64 = 0;
    let mut length: Option<u64> = None;
    for entry in &t.external_data {
        let number = || {
            entry
                .value
                .trim()
                .parse::<u64>()
                .map_err(|_| err(format!("external data {} \"{}\" is not a byte count", entry.key, entry.value)))
        };
        match entry.key.as_str() {
            "location" => location = Some(entry.value.as_str()),
            "offset" => offset = number()?,
            "length" => length = Some(number()?),
            _ => {}
        }
    }
    let location = location.ok_or_else(|| err("external data has no location".into()))?;
    let rel = Path::new(location);
    let plain = !location.is_empty() && rel.components().all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    if !plain {
        return Err(err(format!(
            "external data location \"{location}\" must be a relative path inside the model directory"
        )));
    }
    let base = base_dir.ok_or_else(|| {
        err(format!("uses external data \"{location}\" but the model was loaded from bytes without a directory"))
    })?;
    let path = base.join(rel);
    let io = |e: std::io::Error| err(format!("cannot read external data \"{}\": {e}", path.display()));
    // Symlinks could still point outside: compare canonical paths.
    let canon_base = base.canonicalize().map_err(io)?;
    let canon = path.canonicalize().map_err(io)?;
    if !canon.starts_with(&canon_base) {
        return Err(err(format!("external data \"{location}\" resolves outside the model directory")));
    }
    // A directory, FIFO or device is not a data file (opening a FIFO would block).
    if !std::fs::metadata(&canon).map_err(io)?.is_file() {
        return Err(err(format!("external data \"{location}\" is not a regular file")));
    }
    if let Some(len) = length {
        if len != need as u64 {
            return Err(err(format!("external data length {len} does not match the {need} bytes the shape needs")));
        }
    }
    let mut file = File::open(&canon).map_err(io)?;
    let size = file.metadata().map_err(io)?.len();
    let end = offset.checked_add(need as u64);
    if end.is_none_or(|end| end > size) {
        return Err(err(format!(
            "data is shorter than declared: external file \"{location}\" has {size} bytes, need {need} at offset {offset}"
        )));
    }
    file.seek(SeekFrom::Start(offset)).map_err(io)?;
    let mut bytes = vec![0u8; need];
    file.read_exact(&mut bytes).map_err(io)?;
    Ok(bytes)
}
