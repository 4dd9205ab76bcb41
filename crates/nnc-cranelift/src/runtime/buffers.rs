//! Host buffers the generated code reads and writes, and conversion between them and
//! [`Tensor`]s.

use ndarray::{ArrayD, IxDyn};
use nnc_ir::{DType, Tensor};

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::ptr::NonNull;

/// A zero-initialized, 64-byte aligned byte buffer (parameters, constants, the arena).
///
/// One of at least `HUGE_MIN` bytes is instead 2 MiB aligned and whole 2 MiB pages
/// long, and asks the kernel for transparent huge pages (`MADV_HUGEPAGE`; Linux's
/// default THP mode honours only such requests). Its bytes are then physically
/// contiguous, so consecutive rows map to consecutive L2 sets: with 4 KiB pages at
/// random physical addresses, the half of the seed's 784 KiB W1 that a core keeps in
/// its 512 KiB L2 between the forward product and the update overflows some sets and
/// is partly evicted, by a different amount in every process (see docs/matmul.md).
/// Fewer TLB misses come with it. The cost is up to 2 MiB of address space per buffer.
pub(crate) struct AlignedBuf {
    ptr: NonNull<u8>,
    /// Bytes allocated (0: nothing is).
    cap: usize,
    len: usize,
}

/// Buffers at least this large get huge pages (half of a 512 KiB L2: where a
/// buffer's placement in the L2 starts to matter).
const HUGE_MIN: usize = 256 << 10;
const HUGE_PAGE: usize = 2 << 20;

impl Default for AlignedBuf {
    fn default() -> AlignedBuf {
        AlignedBuf { ptr: NonNull::<[u8; 64]>::dangling().cast(), cap: 0, len: 0 }
    }
}

// SAFETY: the buffer owns its allocation, like a `Vec<u8>`.
unsafe impl Send for AlignedBuf {}
// SAFETY: shared references only read it.
unsafe impl Sync for AlignedBuf {}

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
        if len > self.cap {
            let too_large = || format!("cannot allocate {len} bytes");
            let (cap, align) = if len >= HUGE_MIN {
                (len.checked_next_multiple_of(HUGE_PAGE).ok_or_else(too_large)?, HUGE_PAGE)
            } else {
                (len.checked_next_multiple_of(64).ok_or_else(too_large)?, 64)
            };
            let layout = Layout::from_size_align(cap, align).map_err(|_| too_large())?;
            // SAFETY: `layout` has a non-zero size (`len > cap >= 0`).
            let ptr = NonNull::new(unsafe { alloc_zeroed(layout) }).ok_or_else(too_large)?;
            if align == HUGE_PAGE {
                advise_huge_pages(ptr, cap);
            }
            // SAFETY: both hold at least `self.len` bytes and do not overlap.
            unsafe { std::ptr::copy_nonoverlapping(self.ptr.as_ptr(), ptr.as_ptr(), self.len) };
            self.free();
            (self.ptr, self.cap) = (ptr, cap);
        }
        self.len = self.len.max(len);
        Ok(())
    }

    fn layout(&self) -> Layout {
        let align = if self.cap >= HUGE_MIN { HUGE_PAGE } else { 64 };
        Layout::from_size_align(self.cap, align).expect("checked when allocated")
    }

    fn free(&mut self) {
        if self.cap > 0 {
            // SAFETY: allocated by `ensure` with this layout.
            unsafe { dealloc(self.ptr.as_ptr(), self.layout()) };
        }
    }

    pub fn as_mut_ptr(&mut self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    pub fn bytes(&self) -> &[u8] {
        // SAFETY: `ptr` holds `cap >= len` initialized (zeroed, then written) bytes, or
        // is a dangling, aligned pointer with `len == 0`; borrowed immutably for the
        // result's life.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    pub fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `bytes`, with the buffer borrowed mutably for the result's life.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        self.free();
    }
}

/// Asks for transparent huge pages; without them (other systems, THP off) the buffer
/// simply has normal pages.
#[cfg(target_os = "linux")]
fn advise_huge_pages(ptr: NonNull<u8>, len: usize) {
    // SAFETY: `[ptr, ptr + len)` is one allocation of ours, 2 MiB aligned; the advice
    // does not change its contents.
    unsafe { libc::madvise(ptr.as_ptr().cast(), len, libc::MADV_HUGEPAGE) };
}

#[cfg(not(target_os = "linux"))]
fn advise_huge_pages(_: NonNull<u8>, _: usize) {}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_zeroed_aligned_and_keep_their_bytes_when_they_grow() {
        let mut buf = AlignedBuf::zeroed(100).unwrap();
        assert_eq!(buf.as_mut_ptr() as usize % 64, 0);
        assert!(buf.bytes().iter().all(|&b| b == 0));
        buf.bytes_mut()[99] = 7;
        // Past `HUGE_MIN`: whole huge pages, 2 MiB aligned, the old bytes copied.
        buf.ensure(HUGE_MIN + 1).unwrap();
        assert_eq!(buf.as_mut_ptr() as usize % HUGE_PAGE, 0);
        assert_eq!(buf.bytes().len(), HUGE_MIN + 1);
        assert_eq!(buf.bytes()[99], 7);
        assert!(buf.bytes().iter().enumerate().all(|(i, &b)| b == 0 || i == 99));
        // Never shrinks.
        buf.ensure(10).unwrap();
        assert_eq!(buf.bytes().len(), HUGE_MIN + 1);
        assert!(AlignedBuf::zeroed(0).unwrap().bytes().is_empty());
        assert!(AlignedBuf::zeroed(usize::MAX - 100).is_err());
    }
}
