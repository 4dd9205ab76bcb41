//! NPY files in and out (via `ndarray-npy`), as host tensors.
//!
//! The header is read first ([`npy_header`]): the declared shape must fit the file
//! and the memory budget before `ndarray-npy` allocates the declared size.

use anyhow::{bail, Context, Result};
use ndarray::ArrayD;
use ndarray_npy::{ReadNpyError, ReadNpyExt, WriteNpyExt};
use nnc_ir::{MemoryBudget, Tensor};
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

/// What an NPY file declares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NpyHeader {
    /// `descr`, e.g. `<f4`.
    pub descr: String,
    pub shape: Vec<usize>,
    /// Bytes of the data as declared (elements × element size).
    pub data_bytes: u64,
    /// Bytes reading it takes in memory.
    pub memory_bytes: u64,
}

/// Reads and checks the header of an NPY file without reading its data: the shape's
/// element count must not overflow and the file must hold the declared data. A
/// float64 file is refused here, before its size is judged: nnc computes in float32
/// and does not round data silently.
pub fn npy_header(path: &Path) -> Result<NpyHeader> {
    let bad = |m: String| anyhow::anyhow!("{}: not a valid NPY file: {m}", path.display());
    let mut file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let file_len = file.metadata().with_context(|| format!("cannot read {}", path.display()))?.len();
    let mut pre = [0u8; 10];
    file.read_exact(&mut pre).map_err(|_| bad("shorter than an NPY header".into()))?;
    if &pre[..6] != b"\x93NUMPY" {
        return Err(bad("it does not start with \\x93NUMPY".into()));
    }
    let (len, start) = match pre[6] {
        1 => (u64::from(u16::from_le_bytes([pre[8], pre[9]])), 10u64),
        2 | 3 => {
            let mut more = [0u8; 2];
            file.read_exact(&mut more).map_err(|_| bad("shorter than an NPY header".into()))?;
            (u64::from(u32::from_le_bytes([pre[8], pre[9], more[0], more[1]])), 12u64)
        }
        v => return Err(bad(format!("format version {v} is not supported"))),
    };
    if start + len > file_len {
        return Err(bad(format!("the header declares {len} bytes, past the end of the file")));
    }
    let mut text = vec![0u8; len as usize];
    file.read_exact(&mut text).map_err(|_| bad("truncated header".into()))?;
    let text = String::from_utf8_lossy(&text);
    let descr = quoted_after(&text, "descr").ok_or_else(|| bad("the header has no 'descr'".into()))?;
    let shape = shape_after(&text).ok_or_else(|| bad("the header has no valid 'shape'".into()))?;
    if descr.get(1..) == Some("f8") {
        bail!("{} holds float64; nnc reads float32 — convert with numpy's .astype(numpy.float32)", path.display());
    }
    let width: u64 = descr
        .get(2..)
        .and_then(|w| w.parse().ok())
        .ok_or_else(|| bad(format!("element type '{descr}' is not supported")))?;
    let count = shape.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d as u64));
    let data_bytes = count
        .and_then(|c| c.checked_mul(width))
        .filter(|&b| b <= isize::MAX as u64)
        .ok_or_else(|| bad(format!("shape {shape:?} of '{descr}' declares more bytes than fit in memory")))?;
    let have = file_len - start - len;
    if have < data_bytes {
        bail!(
            "{}: data is shorter than declared: shape {shape:?} of '{descr}' needs {data_bytes} bytes, the file \
             has {have} after the header",
            path.display()
        );
    }
    Ok(NpyHeader { descr, shape, data_bytes, memory_bytes: data_bytes })
}

/// The string in quotes after the key `key` of a Python dict literal.
fn quoted_after(text: &str, key: &str) -> Option<String> {
    let rest = &text[text.find(&format!("'{key}'"))? + key.len() + 2..];
    let rest = rest.trim_start().strip_prefix(':')?.trim_start();
    let quote = rest.chars().next().filter(|&c| c == '\'' || c == '"')?;
    let rest = &rest[1..];
    Some(rest[..rest.find(quote)?].to_string())
}

/// The tuple after `'shape':`: `()`, `(5,)`, `(3, 4)`.
fn shape_after(text: &str) -> Option<Vec<usize>> {
    let rest = &text[text.find("'shape'")? + "'shape'".len()..];
    let rest = rest.trim_start().strip_prefix(':')?.trim_start().strip_prefix('(')?;
    let inner = &rest[..rest.find(')')?];
    inner.split(',').map(str::trim).filter(|d| !d.is_empty()).map(|d| d.trim_end_matches('L').parse().ok()).collect()
}

/// Reads an NPY file of f32, i64, i32 or bool elements, within the default memory
/// budget. Float64 is refused ([`npy_header`]).
pub fn read_npy(path: &Path) -> Result<Tensor> {
    read_npy_with(path, MemoryBudget::default())
}

/// [`read_npy`], refusing a file whose declared data needs more than `budget` (or is
/// longer than the file) before allocating it.
pub fn read_npy_with(path: &Path, budget: MemoryBudget) -> Result<Tensor> {
    let header = npy_header(path)?;
    budget
        .check(format_args!("{} ({} {:?})", path.display(), header.descr, header.shape), header.memory_bytes)
        .map_err(anyhow::Error::msg)?;
    fn open(path: &Path) -> Result<BufReader<File>> {
        Ok(BufReader::new(File::open(path).with_context(|| format!("cannot open {}", path.display()))?))
    }
    // ndarray-npy reads one element type at a time; a type mismatch is cheap to detect
    // from the header, so try the supported types in turn.
    macro_rules! attempt {
        ($t:ty, $wrap:expr) => {
            match ArrayD::<$t>::read_npy(open(path)?) {
                Ok(a) => return Ok($wrap(a)),
                Err(ReadNpyError::WrongDescriptor(_)) => {}
                Err(e) => bail!("{}: not a valid NPY file: {e}", path.display()),
            }
        };
    }
    attempt!(f32, Tensor::F32);
    attempt!(i64, Tensor::I64);
    attempt!(i32, Tensor::I32);
    attempt!(bool, Tensor::Bool);
    bail!("{}: unsupported NPY element type (supported: float32, int64, int32, bool)", path.display())
}

/// Writes a tensor as NPY, atomically: the file appears complete or not at all.
pub fn write_npy(path: &Path, tensor: &Tensor) -> Result<()> {
    crate::write_atomically(path, |file| {
        let result = match tensor {
            Tensor::F32(a) => a.write_npy(file),
            Tensor::I64(a) => a.write_npy(file),
            Tensor::I32(a) => a.write_npy(file),
            Tensor::Bool(a) => a.write_npy(file),
        };
        result.map_err(|e| std::io::Error::other(e.to_string()))
    })
}
