//! NPY files in and out (via `ndarray-npy`), as host tensors.

use anyhow::{bail, Context, Result};
use ndarray::ArrayD;
use ndarray_npy::{ReadNpyError, ReadNpyExt, WriteNpyExt};
use nnc_ir::Tensor;
use std::fs::File;
use std::io::BufReader;
use std::path::Path;

/// Reads an NPY file of f32, f64 (converted to f32), i64, i32 or bool elements.
pub fn read_npy(path: &Path) -> Result<Tensor> {
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
    attempt!(f64, |a: ArrayD<f64>| Tensor::F32(a.mapv(|v| v as f32)));
    bail!("{}: unsupported NPY element type (supported: float32, float64, int64, int32, bool)", path.display())
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
