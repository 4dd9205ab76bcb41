//! Host buffers the generated code reads and writes, and conversion between them and
//! [`Tensor`]s.

use ndarray::{ArrayD, IxDyn};
use nnc_ir::{DType, Tensor};

/// A zero-initialized, 64-byte aligned byte buffer (parameters, constants, the arena).
#[repr(C, align(64))]
#[derive(Clone, Copy)]
struct Line([u8; 64]);

#[derive(Default)]
pub(crate) struct AlignedBuf {
    lines: Vec<Line>,
    len: usize,
}

impl AlignedBuf {
    /// `len` zero bytes; an error instead of an abort if the memory is not available.
    pub fn zeroed(len: usize) -> Result<AlignedBuf, String> {
        let mut buf = AlignedBuf::default();
        buf.ensure(len)?;
        Ok(buf)
    }

    /// Grows to at least `len` bytes (never shrinks, so the arena stays at its
    /// high-water mark and later runs allocate nothing).
    pub fn ensure(&mut self, len: usize) -> Result<(), String> {
        let lines = len.div_ceil(64);
        if lines > self.lines.len() {
            self.lines
                .try_reserve_exact(lines - self.lines.len())
                .map_err(|_| format!("cannot allocate {len} bytes"))?;
            self.lines.resize(lines, Line([0; 64]));
        }
        self.len = self.len.max(len);
        Ok(())
    }

    pub fn as_mut_ptr(&mut self) -> *mut u8 {
        self.lines.as_mut_ptr().cast()
    }

    pub fn bytes(&self) -> &[u8] {
        // SAFETY: `lines` holds `lines.len() * 64 >= len` initialized bytes (u8 arrays
        // with no padding, `Line` is `repr(C)`), borrowed immutably for the result's life.
        unsafe { std::slice::from_raw_parts(self.lines.as_ptr().cast::<u8>(), self.len) }
    }

    pub fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `bytes`, with the buffer borrowed mutably for the result's life.
        unsafe { std::slice::from_raw_parts_mut(self.lines.as_mut_ptr().cast::<u8>(), self.len) }
    }
}

/// Writes the elements of `t` (any memory layout) to `dst` in row-major order, in the
/// generated code's representation (native-endian numbers, bools as 0/1 bytes).
/// `dst` must be exactly `t.size_bytes()` long.
pub(crate) fn write_tensor(t: &Tensor, dst: &mut [u8]) {
    fn put<T: Copy, const W: usize>(a: &ArrayD<T>, dst: &mut [u8], enc: impl Fn(T) -> [u8; W]) {
        for (chunk, &x) in dst.chunks_exact_mut(W).zip(a.iter()) {
            chunk.copy_from_slice(&enc(x));
        }
    }
    match t {
        Tensor::F32(a) => put(a, dst, f32::to_ne_bytes),
        Tensor::I64(a) => put(a, dst, i64::to_ne_bytes),
        Tensor::I32(a) => put(a, dst, i32::to_ne_bytes),
        Tensor::Bool(a) => put(a, dst, |b| [b as u8]),
    }
}

/// A row-major tensor of `dtype` and `shape` from the generated code's representation;
/// `None` if `src` does not hold exactly that many elements.
pub(crate) fn read_tensor(dtype: DType, shape: &[usize], src: &[u8]) -> Option<Tensor> {
    fn get<T, const W: usize>(src: &[u8], dec: impl Fn([u8; W]) -> T) -> Vec<T> {
        src.chunks_exact(W).map(|c| dec(c.try_into().unwrap_or([0; W]))).collect()
    }
    let shape = IxDyn(shape);
    Some(match dtype {
        DType::F32 => Tensor::F32(ArrayD::from_shape_vec(shape, get(src, f32::from_ne_bytes)).ok()?),
        DType::I64 => Tensor::I64(ArrayD::from_shape_vec(shape, get(src, i64::from_ne_bytes)).ok()?),
        DType::I32 => Tensor::I32(ArrayD::from_shape_vec(shape, get(src, i32::from_ne_bytes)).ok()?),
        // Any non-zero byte is true; the generated code only ever writes 0 or 1.
        DType::Bool => Tensor::Bool(ArrayD::from_shape_vec(shape, get(src, |[b]: [u8; 1]| b != 0)).ok()?),
    })
}

/// The address of a tensor's elements if they are contiguous and row-major.
pub(crate) fn contiguous_ptr(t: &Tensor) -> Option<*const u8> {
    match t {
        Tensor::F32(a) => a.as_slice().map(|s| s.as_ptr().cast()),
        Tensor::I64(a) => a.as_slice().map(|s| s.as_ptr().cast()),
        Tensor::I32(a) => a.as_slice().map(|s| s.as_ptr().cast()),
        // `bool` is one byte holding 0 or 1, which is what the generated code reads.
        Tensor::Bool(a) => a.as_slice().map(|s| s.as_ptr().cast()),
    }
}
