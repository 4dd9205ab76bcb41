//! Epochs of mini-batches: a seeded permutation of the examples, cut into batches of
//! `batch` examples with the last, partial batch kept (one compiled step serves
//! every batch size). Each batch is gathered into buffers reused across batches, so
//! iterating allocates only when the batch size changes. Inputs held as bytes are
//! converted to f32 as they are gathered.

use crate::dataset::{byte_value, slice, Dataset, Examples};
use crate::error::TrainError;
use ndarray::{ArrayD, IxDyn};
use nnc_ir::Tensor;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// The ChaCha stream used for shuffling. Model initializers seed ChaCha8 with the
/// same `--seed` on stream 0; a separate stream keeps data order independent of
/// the initial weights.
const SHUFFLE_STREAM: u64 = 1;

/// The random source for shuffling with a given seed.
pub fn shuffle_rng(seed: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(SHUFFLE_STREAM);
    rng
}

/// One mini-batch, borrowed from the [`Batches`] buffers until the next call.
#[derive(Debug)]
pub struct Batch<'b> {
    /// f32 `[b, ...]`, the examples.
    pub x: &'b Tensor,
    /// i64 `[b]` or f32 `[b, ...]`, their labels.
    pub y: &'b Tensor,
    /// Which examples of the data set these are.
    pub indices: &'b [usize],
}

/// Iterates a data set in mini-batches, one epoch at a time.
pub struct Batches<'a> {
    ds: &'a Dataset,
    batch: usize,
    order: Vec<usize>,
    pos: usize,
    x: Tensor,
    y: Tensor,
}

impl<'a> Batches<'a> {
    /// Batches of `batch` examples (at least 1). Call [`Batches::start_epoch`] before
    /// each epoch; the first epoch is in data set order until then.
    pub fn new(ds: &'a Dataset, batch: usize) -> Result<Batches<'a>, TrainError> {
        if batch == 0 {
            return Err(TrainError::Config("the batch size must be at least 1".into()));
        }
        let y = match ds.labels() {
            Tensor::I64(_) => Tensor::I64(ArrayD::zeros(IxDyn(&[0]))),
            _ => Tensor::F32(ArrayD::zeros(IxDyn(&[0]))),
        };
        // Batches of inputs are f32 whatever the data set holds.
        let x = Tensor::F32(ArrayD::zeros(IxDyn(&[0])));
        Ok(Batches { ds, batch, order: (0..ds.len()).collect(), pos: 0, x, y })
    }

    /// Batches per epoch: the last one may be partial.
    pub fn per_epoch(&self) -> usize {
        self.ds.len().div_ceil(self.batch)
    }

    /// Starts an epoch: examples in order, or in a fresh permutation drawn from `rng`.
    /// The permutation depends only on the state of `rng`, not on earlier epochs.
    pub fn start_epoch(&mut self, rng: Option<&mut ChaCha8Rng>) {
        for (i, slot) in self.order.iter_mut().enumerate() {
            *slot = i;
        }
        if let Some(rng) = rng {
            self.order.shuffle(rng);
        }
        self.pos = 0;
    }

    /// Passes over the next `n` batches of this epoch without gathering them (to
    /// resume inside an epoch).
    pub fn skip(&mut self, n: usize) {
        self.pos = n.saturating_mul(self.batch).saturating_add(self.pos).min(self.order.len());
    }

    /// The next batch of this epoch, or `None` when the epoch is done.
    pub fn next_batch(&mut self) -> Option<Batch<'_>> {
        if self.pos >= self.order.len() {
            return None;
        }
        let end = (self.pos + self.batch).min(self.order.len());
        let indices = &self.order[self.pos..end];
        self.pos = end;
        let Tensor::F32(x) = &mut self.x else { unreachable!("`Batches::new` makes an f32 input buffer") };
        match self.ds.inputs() {
            Examples::F32(src) => gather_rows(x, src, indices),
            Examples::Bytes { bytes, divisor } => gather_rows_converted(x, bytes, indices, *divisor),
        }
        gather(&mut self.y, self.ds.labels(), indices);
        Some(Batch { x: &self.x, y: &self.y, indices })
    }
}

/// Copies the rows `indices` of `src` into `buf`, reshaping `buf` (and reusing its
/// allocation) when the batch size changes.
fn gather(buf: &mut Tensor, src: &Tensor, indices: &[usize]) {
    match (buf, src) {
        (Tensor::F32(b), Tensor::F32(s)) => gather_rows(b, s, indices),
        (Tensor::I64(b), Tensor::I64(s)) => gather_rows(b, s, indices),
        // `Batches::new` makes the buffer with the labels' element type, and a
        // `Dataset` holds only f32 and i64 labels.
        _ => unreachable!("batch buffers have the data set's element types"),
    }
}

fn gather_rows<T: Copy + Default>(buf: &mut ArrayD<T>, src: &ArrayD<T>, indices: &[usize]) {
    let row = fit_buffer(buf, src.shape(), indices.len());
    let src = slice(src);
    let dst = buf.as_slice_mut().expect("batch buffers are made in standard layout");
    for (out, &i) in dst.chunks_exact_mut(row).zip(indices) {
        out.copy_from_slice(&src[i * row..(i + 1) * row]);
    }
}

/// [`gather_rows`] from bytes, each converted to its f32 value ([`byte_value`]).
fn gather_rows_converted(buf: &mut ArrayD<f32>, src: &ArrayD<u8>, indices: &[usize], divisor: f32) {
    let row = fit_buffer(buf, src.shape(), indices.len());
    let src = slice(src);
    let dst = buf.as_slice_mut().expect("batch buffers are made in standard layout");
    for (out, &i) in dst.chunks_exact_mut(row).zip(indices) {
        for (value, &byte) in out.iter_mut().zip(&src[i * row..(i + 1) * row]) {
            *value = byte_value(byte, divisor);
        }
    }
}

/// Shapes `buf` as `rows` rows of `src_shape`'s rows, reusing its allocation, and
/// returns the values per row.
fn fit_buffer<T: Copy + Default>(buf: &mut ArrayD<T>, src_shape: &[usize], rows: usize) -> usize {
    let mut shape = src_shape.to_vec();
    shape[0] = rows;
    if buf.shape() != shape.as_slice() {
        let old = std::mem::replace(buf, ArrayD::from_elem(IxDyn(&[0]), T::default()));
        let (mut data, _) = old.into_raw_vec_and_offset();
        data.resize(shape.iter().product(), T::default());
        *buf = ArrayD::from_shape_vec(IxDyn(&shape), data).expect("the length matches the shape");
    }
    shape[1..].iter().product()
}
