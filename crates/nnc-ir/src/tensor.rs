//! Host tensors: the values of constants, parameters, inputs and outputs.

use crate::types::{DType, Shape};
use ndarray::{ArrayD, ArrayViewD, IxDyn};

/// A dense, row-major host tensor of one of the IR's element types.
#[derive(Clone, Debug, PartialEq)]
pub enum Tensor {
    F32(ArrayD<f32>),
    I64(ArrayD<i64>),
    I32(ArrayD<i32>),
    Bool(ArrayD<bool>),
}

impl Tensor {
    pub fn dtype(&self) -> DType {
        match self {
            Tensor::F32(_) => DType::F32,
            Tensor::I64(_) => DType::I64,
            Tensor::I32(_) => DType::I32,
            Tensor::Bool(_) => DType::Bool,
        }
    }

    pub fn shape(&self) -> &[usize] {
        match self {
            Tensor::F32(a) => a.shape(),
            Tensor::I64(a) => a.shape(),
            Tensor::I32(a) => a.shape(),
            Tensor::Bool(a) => a.shape(),
        }
    }

    /// The shape as an IR shape (all dimensions static).
    pub fn ir_shape(&self) -> Shape {
        Shape::fixed(self.shape())
    }

    pub fn len(&self) -> usize {
        self.shape().iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn scalar_f32(v: f32) -> Tensor {
        Tensor::F32(ArrayD::from_elem(IxDyn(&[]), v))
    }

    pub fn scalar_i64(v: i64) -> Tensor {
        Tensor::I64(ArrayD::from_elem(IxDyn(&[]), v))
    }

    /// A tensor from a shape and row-major data. Errors if the lengths disagree.
    pub fn from_f32(shape: &[usize], data: Vec<f32>) -> Result<Tensor, ndarray::ShapeError> {
        Ok(Tensor::F32(ArrayD::from_shape_vec(IxDyn(shape), data)?))
    }

    pub fn from_i64(shape: &[usize], data: Vec<i64>) -> Result<Tensor, ndarray::ShapeError> {
        Ok(Tensor::I64(ArrayD::from_shape_vec(IxDyn(shape), data)?))
    }

    pub fn as_f32(&self) -> Option<&ArrayD<f32>> {
        match self {
            Tensor::F32(a) => Some(a),
            _ => None,
        }
    }

    pub fn as_i64(&self) -> Option<&ArrayD<i64>> {
        match self {
            Tensor::I64(a) => Some(a),
            _ => None,
        }
    }

    /// The elements as i64 in row-major order, for integer tensors (shape arithmetic).
    pub fn to_i64_vec(&self) -> Option<Vec<i64>> {
        match self {
            Tensor::I64(a) => Some(a.iter().copied().collect()),
            Tensor::I32(a) => Some(a.iter().map(|&v| v as i64).collect()),
            _ => None,
        }
    }

    /// The elements as f32 in row-major order, for f32 tensors.
    pub fn to_f32_vec(&self) -> Option<Vec<f32>> {
        self.as_f32().map(|a| a.iter().copied().collect())
    }

    /// Byte size of the data.
    pub fn size_bytes(&self) -> usize {
        self.len() * self.dtype().size_bytes()
    }
}

/// A borrowed [`Tensor`]: the outputs a compiled step returns without copying them
/// out of its buffers (see `nnc_cranelift::Compiled::run_views`).
#[derive(Clone, Debug, PartialEq)]
pub enum TensorView<'a> {
    F32(ArrayViewD<'a, f32>),
    I64(ArrayViewD<'a, i64>),
    I32(ArrayViewD<'a, i32>),
    Bool(ArrayViewD<'a, bool>),
}

impl TensorView<'_> {
    pub fn dtype(&self) -> DType {
        match self {
            TensorView::F32(_) => DType::F32,
            TensorView::I64(_) => DType::I64,
            TensorView::I32(_) => DType::I32,
            TensorView::Bool(_) => DType::Bool,
        }
    }

    pub fn shape(&self) -> &[usize] {
        match self {
            TensorView::F32(a) => a.shape(),
            TensorView::I64(a) => a.shape(),
            TensorView::I32(a) => a.shape(),
            TensorView::Bool(a) => a.shape(),
        }
    }

    pub fn as_f32(&self) -> Option<&ArrayViewD<'_, f32>> {
        match self {
            TensorView::F32(a) => Some(a),
            _ => None,
        }
    }

    /// An owned copy (a `Tensor`, not another view).
    pub fn to_tensor(&self) -> Tensor {
        match self {
            TensorView::F32(a) => Tensor::F32(a.to_owned()),
            TensorView::I64(a) => Tensor::I64(a.to_owned()),
            TensorView::I32(a) => Tensor::I32(a.to_owned()),
            TensorView::Bool(a) => Tensor::Bool(a.to_owned()),
        }
    }
}

impl Tensor {
    /// A view of the whole tensor.
    pub fn view(&self) -> TensorView<'_> {
        match self {
            Tensor::F32(a) => TensorView::F32(a.view()),
            Tensor::I64(a) => TensorView::I64(a.view()),
            Tensor::I32(a) => TensorView::I32(a.view()),
            Tensor::Bool(a) => TensorView::Bool(a.view()),
        }
    }
}
