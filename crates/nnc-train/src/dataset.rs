//! In-memory data sets: validated inputs and label tensors, and fitting them to the
//! shapes a model declares.
//!
//! A [`Dataset`] is checked once when it is made (counts agree, data is finite, a
//! known element type), so the training loop only has to check that it fits the
//! model, not scan it again. Inputs are f32, or bytes that stand for f32 values
//! ([`Examples::Bytes`], as IDX images are stored): those are converted only as each
//! batch is gathered, so an image set takes a quarter of the memory of its f32 values.

use crate::error::TrainError;
use ndarray::{ArrayD, Axis, IxDyn, Slice};
use nnc_ir::{DType, Dim, Tensor, TensorType};

/// The labels a model trains on, as read from its training step's `labels` input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Labels {
    /// Class indices in `0..classes`, one i64 per example (cross-entropy).
    Classes(usize),
    /// f32 targets of this shape per example (mean squared error).
    Targets(Vec<usize>),
}

/// The input values of a data set, `[n, ...]` and row-major, as held in memory.
#[derive(Clone, Debug, PartialEq)]
pub enum Examples {
    /// f32 values, e.g. read from an NPY file.
    F32(ArrayD<f32>),
    /// Bytes, each standing for the f32 `byte / divisor` ([`byte_value`]): IDX images,
    /// with `divisor` 255 to scale pixels to [0, 1]. Batches hold the f32 values.
    Bytes { bytes: ArrayD<u8>, divisor: f32 },
}

/// The f32 value a byte of [`Examples::Bytes`] stands for. Division, not
/// multiplication by `1 / divisor`, so that 255 / 255 is exactly 1.
#[inline]
pub fn byte_value(byte: u8, divisor: f32) -> f32 {
    f32::from(byte) / divisor
}

impl Examples {
    /// `[n, ...]`.
    pub fn shape(&self) -> &[usize] {
        match self {
            Examples::F32(a) => a.shape(),
            Examples::Bytes { bytes, .. } => bytes.shape(),
        }
    }

    /// Bytes the values take in memory.
    pub fn memory_bytes(&self) -> usize {
        match self {
            Examples::F32(a) => a.len() * std::mem::size_of::<f32>(),
            Examples::Bytes { bytes, .. } => bytes.len(),
        }
    }

    /// The values as an f32 tensor: a copy, converted from bytes if they are bytes.
    /// Training never needs this (batches are converted as they are gathered).
    pub fn to_tensor(&self) -> Tensor {
        match self {
            Examples::F32(a) => Tensor::F32(a.clone()),
            Examples::Bytes { bytes, divisor } => Tensor::F32(bytes.mapv(|b| byte_value(b, *divisor))),
        }
    }

    fn first(&self, n: usize) -> Examples {
        let rows = Slice::from(0..n);
        match self {
            Examples::F32(a) => Examples::F32(a.slice_axis(Axis(0), rows).to_owned()),
            Examples::Bytes { bytes, divisor } => {
                Examples::Bytes { bytes: bytes.slice_axis(Axis(0), rows).to_owned(), divisor: *divisor }
            }
        }
    }

    /// `[n, per_example...]`; the caller checked that the element counts agree.
    fn reshape(self, n: usize, per_example: &[usize]) -> Examples {
        let shape: Vec<usize> = std::iter::once(n).chain(per_example.iter().copied()).collect();
        // Standard layout (guaranteed by `Dataset::from_examples`) and equal sizes cannot fail.
        match self {
            Examples::F32(a) => Examples::F32(a.into_shape_with_order(IxDyn(&shape)).expect("sizes checked")),
            Examples::Bytes { bytes, divisor } => {
                Examples::Bytes { bytes: bytes.into_shape_with_order(IxDyn(&shape)).expect("sizes checked"), divisor }
            }
        }
    }

    fn describe(&self) -> String {
        match self {
            Examples::F32(a) => format!("f32{}", dims(a.shape())),
            Examples::Bytes { bytes, .. } => format!("bytes{}", dims(bytes.shape())),
        }
    }
}

/// Examples and their labels: `inputs` is f32 `[n, ...]` or bytes standing for f32
/// values; `labels` is i64 `[n]` (class indices) or f32 `[n, ...]` (regression
/// targets). Both are row-major and finite, and every example has at least one value.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    inputs: Examples,
    labels: Tensor,
}

impl Dataset {
    /// Checks and wraps the tensors, e.g. as read from NPY files. Integer labels may
    /// be i32 or i64 (stored as i64), shaped `[n]` or `[n, 1]`; f32 labels are targets.
    pub fn new(inputs: Tensor, labels: Tensor) -> Result<Dataset, TrainError> {
        let Tensor::F32(x) = inputs else {
            return Err(TrainError::Shape(format!("inputs must be f32 [examples, ...], got {}", describe(&inputs))));
        };
        Dataset::from_examples(Examples::F32(x), labels)
    }

    /// [`Dataset::new`] for inputs held as bytes, each standing for `byte / divisor`
    /// (IDX images: pixels, divisor 255).
    pub fn from_bytes(bytes: ArrayD<u8>, divisor: f32, labels: Tensor) -> Result<Dataset, TrainError> {
        Dataset::from_examples(Examples::Bytes { bytes, divisor }, labels)
    }

    /// [`Dataset::new`] for inputs in either representation.
    pub fn from_examples(inputs: Examples, labels: Tensor) -> Result<Dataset, TrainError> {
        if inputs.shape().is_empty() {
            return Err(TrainError::Shape("inputs must be f32 [examples, ...], got a scalar".into()));
        }
        let x = match inputs {
            Examples::F32(a) => Examples::F32(standard(a)),
            Examples::Bytes { bytes, divisor } => Examples::Bytes { bytes: standard(bytes), divisor },
        };
        let labels = match labels {
            Tensor::I64(a) => Tensor::I64(class_column(standard(a))?),
            Tensor::I32(a) => Tensor::I64(class_column(a.mapv(i64::from))?),
            Tensor::F32(a) if a.ndim() >= 1 => Tensor::F32(standard(a)),
            other => {
                return Err(TrainError::Shape(format!(
                    "labels must be integer class indices [examples] or f32 targets [examples, ...], got {}",
                    describe(&other)
                )))
            }
        };
        let (examples, n_labels) = (x.shape()[0], labels.shape()[0]);
        if examples != n_labels {
            return Err(TrainError::LabelCount { examples, labels: n_labels });
        }
        let no_values = x.shape().iter().product::<usize>() == 0;
        if examples > 0 && (no_values || labels.is_empty()) {
            return Err(TrainError::Shape(format!(
                "every example needs at least one value, got inputs {} and labels {}",
                x.describe(),
                describe(&labels)
            )));
        }
        match &x {
            Examples::F32(a) => check_finite("the inputs", slice(a), examples)?,
            Examples::Bytes { bytes, divisor } => check_finite_bytes(slice(bytes), *divisor, examples)?,
        }
        if let Tensor::F32(y) = &labels {
            check_finite("the labels", slice(y), examples)?;
        }
        Ok(Dataset { inputs: x, labels })
    }

    /// `[n, ...]`, row-major: f32, or bytes converted as batches are gathered.
    pub fn inputs(&self) -> &Examples {
        &self.inputs
    }

    /// i64 `[n]` or f32 `[n, ...]`, row-major.
    pub fn labels(&self) -> &Tensor {
        &self.labels
    }

    /// The inputs as an f32 tensor (converted, if held as bytes) and the labels.
    pub fn into_parts(self) -> (Tensor, Tensor) {
        let inputs = match self.inputs {
            Examples::F32(a) => Tensor::F32(a),
            bytes => bytes.to_tensor(),
        };
        (inputs, self.labels)
    }

    /// The number of examples.
    pub fn len(&self) -> usize {
        self.inputs.shape()[0]
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The shape of one example (the inputs' shape without the first axis).
    pub fn example_shape(&self) -> &[usize] {
        &self.inputs.shape()[1..]
    }

    /// The shape of one example's label (`[]` for class indices).
    pub fn label_shape(&self) -> &[usize] {
        &self.labels.shape()[1..]
    }

    /// The first `n` examples (all of them if there are fewer), copied.
    pub fn head(&self, n: usize) -> Dataset {
        let n = n.min(self.len());
        let labels = match &self.labels {
            Tensor::F32(a) => Tensor::F32(a.slice_axis(Axis(0), Slice::from(0..n)).to_owned()),
            Tensor::I64(a) => Tensor::I64(a.slice_axis(Axis(0), Slice::from(0..n)).to_owned()),
            // `new` admits no other label type.
            other => other.clone(),
        };
        Dataset { inputs: self.inputs.first(n), labels }
    }

    /// Checks that the labels are what the model trains on: class indices within
    /// `0..classes` (naming the first one outside), or f32 targets of the right shape.
    pub fn check_labels(&self, want: &Labels) -> Result<(), TrainError> {
        match (want, &self.labels) {
            (Labels::Classes(classes), Tensor::I64(y)) => {
                let bad =
                    slice(y).iter().enumerate().find(|&(_, &v)| usize::try_from(v).map_or(true, |v| v >= *classes));
                match bad {
                    Some((index, &value)) => Err(TrainError::LabelRange { index, value, classes: *classes }),
                    None => Ok(()),
                }
            }
            (Labels::Targets(shape), Tensor::F32(_)) if self.label_shape() == shape.as_slice() => Ok(()),
            (Labels::Targets(shape), Tensor::F32(_)) => Err(TrainError::Shape(format!(
                "the model's targets are f32 {} per example, but the labels are {} per example",
                dims(shape),
                dims(self.label_shape())
            ))),
            (Labels::Classes(classes), other) => Err(TrainError::Shape(format!(
                "the model is trained with cross-entropy over {classes} classes and needs integer class labels, \
                 but the labels are {}",
                describe(other)
            ))),
            (Labels::Targets(shape), other) => Err(TrainError::Shape(format!(
                "the model is trained on f32 targets {} per example (mean squared error), but the labels are {}",
                dims(shape),
                describe(other)
            ))),
        }
    }

    /// Checks that the data fits the model exactly: one example has the input's
    /// shape (without the batch) and the labels are right. [`fit_to_model`] reshapes
    /// data that has the right sizes but another shape.
    pub fn check_fits(&self, input: &TensorType, labels: &Labels) -> Result<(), TrainError> {
        let want = example_dims(input)?;
        if self.example_shape() != want.as_slice() {
            return Err(TrainError::Shape(format!(
                "the model's input is {input}, but the examples are {} (fit_to_model reshapes data of the right size)",
                dims(self.example_shape())
            )));
        }
        self.check_labels(labels)
    }
}

/// The shape of one example of a model input: the type must be f32 with the batch
/// `N` first and every other dimension static.
pub fn example_dims(ty: &TensorType) -> Result<Vec<usize>, TrainError> {
    let rest = match ty.shape.dims().split_first() {
        Some((Dim::Batch, rest)) if ty.dtype == DType::F32 => rest,
        _ => {
            return Err(TrainError::Model(format!(
                "the input is {ty}; nnc trains models whose input is f32 with the batch N as its first dimension"
            )))
        }
    };
    rest.iter()
        .map(|d| d.fixed())
        .collect::<Option<Vec<usize>>>()
        .ok_or_else(|| TrainError::Model(format!("the input {ty} has the batch dimension N in more than one place")))
}

/// Reshapes the inputs to the model input's per-example shape (e.g. 28×28 images
/// to `[N,784]` or `[N,1,28,28]`). Takes the data set by value so the reshape moves
/// the buffer instead of copying it. Errors if the per-example sizes differ.
pub fn fit_to_input(ds: Dataset, input: &TensorType) -> Result<Dataset, TrainError> {
    let want = example_dims(input)?;
    if ds.example_shape() == want.as_slice() {
        return Ok(ds);
    }
    let per_example: usize = want.iter().product();
    let have: usize = ds.example_shape().iter().product();
    if per_example != have {
        return Err(TrainError::Shape(format!(
            "the model's input is {input} ({per_example} values per example), but the examples are {} ({have} values)",
            dims(ds.example_shape())
        )));
    }
    let n = ds.len();
    Ok(Dataset { inputs: ds.inputs.reshape(n, &want), labels: ds.labels })
}

/// [`fit_to_input`], then f32 targets reshaped to the model's target shape when the
/// sizes agree (`[n]` targets for a `[N,1]` output), then [`Dataset::check_labels`].
pub fn fit_to_model(ds: Dataset, input: &TensorType, labels: &Labels) -> Result<Dataset, TrainError> {
    let ds = fit_to_input(ds, input)?;
    let ds = match labels {
        Labels::Targets(shape)
            if matches!(ds.labels, Tensor::F32(_))
                && ds.label_shape() != shape.as_slice()
                && ds.label_shape().iter().product::<usize>() == shape.iter().product::<usize>() =>
        {
            let n = ds.len();
            Dataset { inputs: ds.inputs, labels: reshape(ds.labels, n, shape) }
        }
        _ => ds,
    };
    ds.check_labels(labels)?;
    Ok(ds)
}

/// `t` as `[n, per_example...]`; the caller checked that the element counts agree.
fn reshape(t: Tensor, n: usize, per_example: &[usize]) -> Tensor {
    let shape: Vec<usize> = std::iter::once(n).chain(per_example.iter().copied()).collect();
    match t {
        // Standard layout (guaranteed by `Dataset::new`) and equal sizes cannot fail.
        Tensor::F32(a) => Tensor::F32(a.into_shape_with_order(IxDyn(&shape)).expect("sizes checked")),
        other => other,
    }
}

/// Integer labels as `[n]`: a `[n, 1]` column (as scikit-learn writes) is flattened.
fn class_column(a: ArrayD<i64>) -> Result<ArrayD<i64>, TrainError> {
    match a.shape() {
        [_] => Ok(a),
        &[n, 1] => Ok(a.into_shape_with_order(IxDyn(&[n])).expect("same size")),
        s => Err(TrainError::Shape(format!("integer labels must be class indices [examples], got shape {}", dims(s)))),
    }
}

/// The first NaN or infinity in `data`, `examples` rows of equal length.
fn check_finite(what: &'static str, data: &[f32], examples: usize) -> Result<(), TrainError> {
    if data.iter().all(|v| v.is_finite()) || examples == 0 {
        return Ok(());
    }
    let row = data.len() / examples;
    let (at, &value) = data.iter().enumerate().find(|(_, v)| !v.is_finite()).expect("a non-finite value exists");
    Err(TrainError::NonFinite { what, index: at / row, element: at % row, value })
}

/// [`check_finite`] for bytes: every byte's value is finite unless the divisor makes
/// some of them infinite or NaN (0, or tiny), and then the first such element is named.
fn check_finite_bytes(bytes: &[u8], divisor: f32, examples: usize) -> Result<(), TrainError> {
    if (0..=u8::MAX).all(|b| byte_value(b, divisor).is_finite()) || examples == 0 {
        return Ok(());
    }
    let row = bytes.len() / examples;
    match bytes.iter().enumerate().find(|(_, &b)| !byte_value(b, divisor).is_finite()) {
        Some((at, &b)) => Err(TrainError::NonFinite {
            what: "the inputs",
            index: at / row,
            element: at % row,
            value: byte_value(b, divisor),
        }),
        None => Ok(()),
    }
}

fn standard<T: Clone>(a: ArrayD<T>) -> ArrayD<T> {
    if a.is_standard_layout() {
        a
    } else {
        a.as_standard_layout().into_owned()
    }
}

/// The elements of a standard-layout array (every array in a `Dataset` is one).
pub(crate) fn slice<T>(a: &ArrayD<T>) -> &[T] {
    a.as_slice().expect("data set arrays are in standard layout")
}

fn describe(t: &Tensor) -> String {
    format!("{}{}", t.dtype(), t.ir_shape())
}

fn dims(d: &[usize]) -> String {
    format!("[{}]", d.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(","))
}
