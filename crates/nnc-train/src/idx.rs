//! IDX files, the format of MNIST and its relatives (Fashion-MNIST, KMNIST, EMNIST).
//!
//! Layout: two zero bytes, an element-type byte (`0x08` = u8), a dimension count,
//! each dimension as a big-endian u32, then the elements in row-major order. Files
//! may be gzip-compressed; that is detected from the content, not the name.
//!
//! Nothing here trusts the header: the declared size is checked against the file
//! length (raw) or capped while decompressing (gzip) before any large allocation, so
//! a corrupt or hostile file is a clear error naming the file, never a panic or an
//! attempt to allocate what the header claims.

use crate::error::TrainError;
use flate2::read::GzDecoder;
use std::fs::File;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::path::Path;

/// The element type nnc reads: unsigned bytes, as in every MNIST-family file.
const U8: u8 = 0x08;
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
/// Deflate cannot compress better than about 1032:1, so a gzip file of `n` bytes
/// holds at most this many bytes per compressed byte (plus a little slack).
const MAX_DEFLATE_RATIO: u64 = 1032;

/// The contents of an IDX file of unsigned bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Idx {
    pub dims: Vec<usize>,
    /// The elements, row-major; `data.len()` is the product of `dims`.
    pub data: Vec<u8>,
}

/// Reads an IDX file of u8 elements, raw or gzip-compressed.
pub fn read_idx(path: &Path) -> Result<Idx, TrainError> {
    let io = |source| TrainError::Io { path: path.to_path_buf(), source };
    let file = File::open(path).map_err(io)?;
    let file_len = file.metadata().map_err(io)?.len();
    let mut reader = BufReader::new(file);
    let gzip = reader.fill_buf().map_err(io)?.starts_with(&GZIP_MAGIC);
    if gzip {
        read_body(GzDecoder::new(reader), path, Source::Gzip { compressed: file_len })
    } else {
        read_body(reader, path, Source::Raw { len: file_len })
    }
}

/// The dimensions an IDX file declares, from its header alone (nothing of the
/// declared size is read or allocated), so a caller can check what loading it would
/// need first. The header is validated as [`read_idx`] does.
pub fn read_idx_dims(path: &Path) -> Result<Vec<usize>, TrainError> {
    let io = |source| TrainError::Io { path: path.to_path_buf(), source };
    let file = File::open(path).map_err(io)?;
    let file_len = file.metadata().map_err(io)?.len();
    let mut reader = BufReader::new(file);
    let gzip = reader.fill_buf().map_err(io)?.starts_with(&GZIP_MAGIC);
    let (dims, _) = if gzip {
        read_header(&mut GzDecoder::new(reader), path, Source::Gzip { compressed: file_len })?
    } else {
        read_header(&mut reader, path, Source::Raw { len: file_len })?
    };
    Ok(dims)
}

/// Writes an IDX file of u8 elements, gzip-compressed if the name ends in `.gz`.
/// For tests and for making small data sets; `data.len()` must match `dims`.
pub fn write_idx(path: &Path, dims: &[usize], data: &[u8]) -> Result<(), TrainError> {
    let bytes = encode_idx(dims, data).map_err(|message| TrainError::idx(path, message))?;
    let io = |source| TrainError::Io { path: path.to_path_buf(), source };
    let file = File::create(path).map_err(io)?;
    if path.extension().is_some_and(|e| e == "gz") {
        let mut gz = flate2::write::GzEncoder::new(file, flate2::Compression::default());
        gz.write_all(&bytes).map_err(io)?;
        gz.finish().map_err(io)?;
    } else {
        let mut file = file;
        file.write_all(&bytes).map_err(io)?;
    }
    Ok(())
}

/// The bytes of an IDX file of u8 elements.
pub fn encode_idx(dims: &[usize], data: &[u8]) -> Result<Vec<u8>, String> {
    let ndims =
        u8::try_from(dims.len()).map_err(|_| format!("IDX allows at most 255 dimensions, got {}", dims.len()))?;
    let count = dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
    if count != Some(data.len()) {
        return Err(format!("dims {} do not match {} bytes of data", show_dims(dims), data.len()));
    }
    let mut out = Vec::with_capacity(4 + 4 * dims.len() + data.len());
    out.extend_from_slice(&[0, 0, U8, ndims]);
    for &d in dims {
        let d = u32::try_from(d).map_err(|_| format!("dimension {d} does not fit IDX's 32 bits"))?;
        out.extend_from_slice(&d.to_be_bytes());
    }
    out.extend_from_slice(data);
    Ok(out)
}

/// Where the bytes come from, which decides how the declared size is checked.
#[derive(Clone, Copy)]
enum Source {
    /// An uncompressed file of `len` bytes: the size is checked exactly up front.
    Raw { len: u64 },
    /// A gzip file of `compressed` bytes: decompression is capped at the declared size.
    Gzip { compressed: u64 },
}

/// The error for a failed read of `what`.
fn read_error(path: &Path, source: Source, e: std::io::Error, what: &str) -> TrainError {
    let err = |message: String| TrainError::idx(path, message);
    match (e.kind(), source) {
        (ErrorKind::UnexpectedEof, Source::Raw { .. }) => err(format!("truncated: the file ends inside {what}")),
        (ErrorKind::UnexpectedEof, Source::Gzip { .. }) => err(format!("truncated: the gzip file ends inside {what}")),
        (_, Source::Gzip { .. }) => err(format!("corrupt gzip file (reading {what}): {e}")),
        (_, Source::Raw { .. }) => TrainError::Io { path: path.to_path_buf(), source: e },
    }
}

/// The magic number and the dimensions; returns the dims and their element count.
fn read_header(r: &mut impl Read, path: &Path, source: Source) -> Result<(Vec<usize>, usize), TrainError> {
    let err = |message: String| TrainError::idx(path, message);
    let read_err = |e: std::io::Error, what: &str| read_error(path, source, e, what);

    let mut magic = [0u8; 4];
    r.read_exact(&mut magic).map_err(|e| read_err(e, "the 4-byte magic number"))?;
    if magic[..2] != [0, 0] {
        return Err(err(format!(
            "not an IDX file: it starts with bytes {:02x} {:02x} {:02x} {:02x}, and an IDX file starts with 00 00",
            magic[0], magic[1], magic[2], magic[3]
        )));
    }
    if magic[2] != U8 {
        return Err(err(format!(
            "IDX element type 0x{:02x} ({}) is not supported; nnc reads u8 files (type 0x08), as in the MNIST family",
            magic[2],
            type_name(magic[2])
        )));
    }
    let ndims = usize::from(magic[3]);
    if ndims == 0 {
        return Err(err("the IDX header declares 0 dimensions".into()));
    }
    let mut dims = Vec::with_capacity(ndims);
    for i in 0..ndims {
        let mut b = [0u8; 4];
        r.read_exact(&mut b).map_err(|e| read_err(e, &format!("the header (dimension {} of {ndims})", i + 1)))?;
        dims.push(u32::from_be_bytes(b) as usize);
    }
    let count = dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d)).filter(|&n| n <= nnc_ir::MAX_ELEMENTS);
    let Some(count) = count else {
        let max = nnc_ir::MAX_ELEMENTS;
        return Err(err(format!("dims {} declare more than {max} elements; the header is corrupt", show_dims(&dims))));
    };
    Ok((dims, count))
}

fn read_body(mut r: impl Read, path: &Path, source: Source) -> Result<Idx, TrainError> {
    let err = |message: String| TrainError::idx(path, message);
    let read_err = |e: std::io::Error, what: &str| read_error(path, source, e, what);
    let (dims, count) = read_header(&mut r, path, source)?;
    let header = 4 + 4 * dims.len() as u64;
    let declared = format!("dims {} declare {count} bytes of data", show_dims(&dims));

    let data = match source {
        Source::Raw { len } => {
            let have = len.saturating_sub(header);
            if have != count as u64 {
                let what = if have < count as u64 { "truncated" } else { "trailing data" };
                return Err(err(format!("{what}: {declared}, but the file has {have} after the header")));
            }
            let mut data = vec![0u8; count];
            r.read_exact(&mut data).map_err(|e| read_err(e, "the data"))?;
            data
        }
        Source::Gzip { compressed } => {
            if count as u64 > compressed.saturating_mul(MAX_DEFLATE_RATIO).saturating_add(1024) {
                return Err(err(format!(
                    "truncated or corrupt: {declared}, more than a {compressed}-byte gzip file can hold"
                )));
            }
            // No allocation of the declared size up front: the buffer grows only as
            // real data arrives, and reading stops one byte past the declared size.
            // Data of exactly the declared size was read to the end of the stream,
            // which makes the decoder check the gzip trailer (CRC and length).
            let mut data = Vec::new();
            r.take(count as u64 + 1).read_to_end(&mut data).map_err(|e| read_err(e, "the data"))?;
            if data.len() < count {
                let have = data.len();
                return Err(err(format!(
                    "truncated: {declared}, but the decompressed file has {have} after the header"
                )));
            }
            if data.len() > count {
                return Err(err(format!("trailing data: {declared}, but the decompressed file has more")));
            }
            data
        }
    };
    Ok(Idx { dims, data })
}

fn type_name(t: u8) -> &'static str {
    match t {
        0x09 => "i8",
        0x0b => "i16",
        0x0c => "i32",
        0x0d => "f32",
        0x0e => "f64",
        _ => "not an IDX type",
    }
}

fn show_dims(dims: &[usize]) -> String {
    dims.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("×")
}
