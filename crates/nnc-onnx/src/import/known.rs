//! Values known at import time: constants, and integer tensors whose elements are
//! constants or the symbolic batch size (the results of `Shape` and the arithmetic
//! exporters do on them). Knowing these lets the importer fold shape computations into
//! static IR attributes even when the batch size is only known at run time.

use ndarray::{ArrayD, Axis, IxDyn};
use nnc_ir::{DType, Dim, Shape, Tensor, TensorType};

/// Folded results larger than this stay run-time ops (or are refused), so a tiny
/// model cannot make the importer allocate gigabytes.
pub(crate) const FOLD_LIMIT: usize = 1 << 24;

/// One element of a shape computation: a number or the batch size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SymInt {
    Int(i64),
    Batch,
}

impl SymInt {
    /// As an IR dimension (a non-negative size or the batch).
    pub(crate) fn to_dim(self) -> Result<Dim, String> {
        match self {
            SymInt::Batch => Ok(Dim::Batch),
            SymInt::Int(n) => usize::try_from(n).map(Dim::Fixed).map_err(|_| format!("{n} is not a dimension")),
        }
    }

    pub(crate) fn from_dim(d: Dim) -> SymInt {
        match d {
            Dim::Batch => SymInt::Batch,
            Dim::Fixed(n) => SymInt::Int(n as i64),
        }
    }
}

impl std::fmt::Display for SymInt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SymInt::Int(n) => write!(f, "{n}"),
            SymInt::Batch => f.write_str("N"),
        }
    }
}

/// A value known at import time.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Known {
    T(Tensor),
    /// An i64 tensor with at least one batch-size element.
    Sym(ArrayD<SymInt>),
}

/// Applies an expression generic over the element type to every variant.
/// `$a` binds the array; `$body` must evaluate to `Result<ArrayD<_>, String>`.
macro_rules! map_known {
    ($k:expr, $a:ident => $body:expr) => {
        match $k {
            Known::T(nnc_ir::Tensor::F32($a)) => Known::T(nnc_ir::Tensor::F32($body?)),
            Known::T(nnc_ir::Tensor::I64($a)) => Known::T(nnc_ir::Tensor::I64($body?)),
            Known::T(nnc_ir::Tensor::I32($a)) => Known::T(nnc_ir::Tensor::I32($body?)),
            Known::T(nnc_ir::Tensor::Bool($a)) => Known::T(nnc_ir::Tensor::Bool($body?)),
            Known::Sym($a) => Known::sym($body?),
        }
    };
}
pub(crate) use map_known;

impl Known {
    /// A symbolic array, normalised to a plain i64 tensor when it has no batch element.
    pub(crate) fn sym(a: ArrayD<SymInt>) -> Known {
        if a.iter().any(|v| *v == SymInt::Batch) {
            Known::Sym(a)
        } else {
            Known::T(Tensor::I64(a.mapv(|v| match v {
                SymInt::Int(n) => n,
                SymInt::Batch => 0,
            })))
        }
    }

    pub(crate) fn sym_vec(v: Vec<SymInt>) -> Known {
        let n = v.len();
        Known::sym(
            ArrayD::from_shape_vec(IxDyn(&[n]), v).unwrap_or_else(|_| ArrayD::from_elem(IxDyn(&[0]), SymInt::Int(0))),
        )
    }

    pub(crate) fn shape(&self) -> &[usize] {
        match self {
            Known::T(t) => t.shape(),
            Known::Sym(a) => a.shape(),
        }
    }

    pub(crate) fn dtype(&self) -> DType {
        match self {
            Known::T(t) => t.dtype(),
            Known::Sym(_) => DType::I64,
        }
    }

    pub(crate) fn ty(&self) -> TensorType {
        TensorType::new(self.dtype(), Shape::fixed(self.shape()))
    }

    pub(crate) fn len(&self) -> usize {
        self.shape().iter().product()
    }

    /// Integer elements (possibly the batch), for i64/i32 values.
    pub(crate) fn to_sym(&self) -> Option<ArrayD<SymInt>> {
        match self {
            Known::T(Tensor::I64(a)) => Some(a.mapv(SymInt::Int)),
            Known::T(Tensor::I32(a)) => Some(a.mapv(|v| SymInt::Int(v as i64))),
            Known::Sym(a) => Some(a.clone()),
            _ => None,
        }
    }

    /// Row-major integer elements, possibly the batch.
    pub(crate) fn sym_elems(&self) -> Option<Vec<SymInt>> {
        self.to_sym().map(|a| a.iter().copied().collect())
    }

    /// Row-major integer elements when none is the batch.
    pub(crate) fn ints(&self) -> Option<Vec<i64>> {
        match self {
            Known::T(t) => t.to_i64_vec(),
            Known::Sym(_) => None,
        }
    }

    pub(crate) fn tensor(&self) -> Option<&Tensor> {
        match self {
            Known::T(t) => Some(t),
            Known::Sym(_) => None,
        }
    }
}

/// Numpy broadcast of two static shapes.
pub(crate) fn broadcast_static(a: &[usize], b: &[usize]) -> Result<Vec<usize>, String> {
    let rank = a.len().max(b.len());
    (0..rank)
        .map(|i| {
            let da = if i + a.len() >= rank { a[i + a.len() - rank] } else { 1 };
            let db = if i + b.len() >= rank { b[i + b.len() - rank] } else { 1 };
            match (da, db) {
                (x, y) if x == y => Ok(x),
                (1, y) => Ok(y),
                (x, 1) => Ok(x),
                _ => Err(format!("shapes {a:?} and {b:?} do not broadcast")),
            }
        })
        .collect()
}

fn checked_count(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
}

/// True when an array of this shape is small enough to build at import time.
pub(crate) fn foldable_size(shape: &[usize]) -> bool {
    checked_count(shape).is_some_and(|n| n <= FOLD_LIMIT)
}

/// Elementwise `f(a, b)` with numpy broadcasting; `None` when the result is too big.
pub(crate) fn zip_with<A: Clone, B: Clone, C>(
    a: &ArrayD<A>,
    b: &ArrayD<B>,
    f: impl Fn(&A, &B) -> Result<C, String>,
) -> Result<Option<ArrayD<C>>, String> {
    let shape = broadcast_static(a.shape(), b.shape())?;
    if !foldable_size(&shape) {
        return Ok(None);
    }
    let (Some(av), Some(bv)) = (a.broadcast(IxDyn(&shape)), b.broadcast(IxDyn(&shape))) else {
        return Err(format!("shapes {:?} and {:?} do not broadcast", a.shape(), b.shape()));
    };
    let out: Vec<C> = av.iter().zip(bv.iter()).map(|(x, y)| f(x, y)).collect::<Result<_, _>>()?;
    ArrayD::from_shape_vec(IxDyn(&shape), out).map(Some).map_err(|e| e.to_string())
}

/// Row-major elements as a new array of `shape` (same count).
pub(crate) fn reshape<T: Clone>(a: &ArrayD<T>, shape: &[usize]) -> Result<ArrayD<T>, String> {
    ArrayD::from_shape_vec(IxDyn(shape), a.iter().cloned().collect())
        .map_err(|_| format!("cannot reshape {:?} to {shape:?}", a.shape()))
}

pub(crate) fn transpose<T: Clone>(a: &ArrayD<T>, perm: &[usize]) -> Result<ArrayD<T>, String> {
    let view = a.view().permuted_axes(IxDyn(perm));
    let shape = view.shape().to_vec();
    ArrayD::from_shape_vec(IxDyn(&shape), view.iter().cloned().collect()).map_err(|e| e.to_string())
}

/// numpy.take along `axis` with ONNX index rules (negative indices count from the end).
pub(crate) fn gather<T: Clone>(a: &ArrayD<T>, indices: &ArrayD<i64>, axis: usize) -> Result<ArrayD<T>, String> {
    let dim = a.shape()[axis];
    let idx: Vec<usize> = indices
        .iter()
        .map(|&i| {
            let j = if i < 0 { i + dim as i64 } else { i };
            usize::try_from(j)
                .ok()
                .filter(|&j| j < dim)
                .ok_or_else(|| format!("index {i} is out of range for axis {axis} of size {dim}"))
        })
        .collect::<Result<_, _>>()?;
    let picked = a.select(Axis(axis), &idx);
    let mut shape = a.shape()[..axis].to_vec();
    shape.extend_from_slice(indices.shape());
    shape.extend_from_slice(&a.shape()[axis + 1..]);
    reshape(&picked, &shape)
}

/// Keeps, on each axis, the listed positions (in that order).
pub(crate) fn select_each<T: Clone>(a: &ArrayD<T>, picks: &[Vec<usize>]) -> ArrayD<T> {
    let mut out = a.clone();
    for (axis, pick) in picks.iter().enumerate() {
        if pick.len() != out.shape()[axis] || pick.iter().enumerate().any(|(i, &p)| i != p) {
            out = out.select(Axis(axis), pick);
        }
    }
    out
}

pub(crate) fn concat<T: Clone>(parts: &[&ArrayD<T>], axis: usize) -> Result<ArrayD<T>, String> {
    let views: Vec<_> = parts.iter().map(|p| p.view()).collect();
    ndarray::concatenate(Axis(axis), &views).map_err(|_| {
        let shapes: Vec<_> = parts.iter().map(|p| p.shape().to_vec()).collect();
        format!("shapes {shapes:?} cannot be concatenated on axis {axis}")
    })
}

/// Broadcasts to exactly `shape`.
pub(crate) fn expand<T: Clone>(a: &ArrayD<T>, shape: &[usize]) -> Result<ArrayD<T>, String> {
    a.broadcast(IxDyn(shape))
        .map(|v| v.to_owned())
        .ok_or_else(|| format!("cannot broadcast {:?} to {shape:?}", a.shape()))
}
