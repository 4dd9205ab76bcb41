//! Array-level kernels on ndarray: broadcasting elementwise maps, matrix products,
//! softmax, reductions and layout changes.
//!
//! Operand types and the result size were checked before a kernel is called
//! (`typing`); still, every kernel checks what it relies on (ranks, axes,
//! broadcastability) and returns an error message instead of letting ndarray panic.
//! Results may be in any memory layout; the caller normalizes them to row-major.

use crate::scalar::{Element, Num, Real};
use ndarray::linalg::general_mat_mul;
use ndarray::{ArrayD, ArrayViewD, Axis, Dimension, Ix2, IxDyn, Zip};

/// A concrete shape as the IR prints shapes: `[2,3]`.
pub(crate) fn dims(shape: &[usize]) -> String {
    nnc_ir::Shape::fixed(shape).to_string()
}

/// Numpy broadcast of two concrete shapes (aligned at the right).
pub(crate) fn broadcast_dims(a: &[usize], b: &[usize]) -> Result<Vec<usize>, String> {
    let rank = a.len().max(b.len());
    let at = |s: &[usize], i: usize| {
        if i < rank - s.len() {
            1
        } else {
            s[i - (rank - s.len())]
        }
    };
    (0..rank)
        .map(|i| match (at(a, i), at(b, i)) {
            (x, y) if x == y => Ok(x),
            (1, y) => Ok(y),
            (x, 1) => Ok(x),
            (x, y) => Err(format!("shapes {} and {} do not broadcast (axis {i}: {x} vs {y})", dims(a), dims(b))),
        })
        .collect()
}

/// A read-only view of `a` broadcast to `shape`.
fn view_as<'a, T>(a: &'a ArrayD<T>, shape: &[usize]) -> Result<ArrayViewD<'a, T>, String> {
    a.broadcast(IxDyn(shape)).ok_or_else(|| format!("cannot broadcast {} to {}", dims(a.shape()), dims(shape)))
}

/// `f` applied elementwise to `a` and `b` broadcast against each other.
pub(crate) fn zip2<A, B, C>(a: &ArrayD<A>, b: &ArrayD<B>, f: impl FnMut(A, B) -> C) -> Result<ArrayD<C>, String>
where
    A: Copy,
    B: Copy,
{
    let mut f = f;
    let shape = broadcast_dims(a.shape(), b.shape())?;
    let (av, bv) = (view_as(a, &shape)?, view_as(b, &shape)?);
    Ok(Zip::from(&av).and(&bv).map_collect(|&x, &y| f(x, y)))
}

/// Division; integer division by zero is an error rather than a panic.
pub(crate) fn divide<T: Num>(a: &ArrayD<T>, b: &ArrayD<T>) -> Result<ArrayD<T>, String> {
    let mut by_zero = false;
    let out = zip2(a, b, |x, y| {
        x.div(y).unwrap_or_else(|| {
            by_zero = true;
            T::ZERO
        })
    })?;
    if by_zero {
        return Err("integer division by zero".into());
    }
    Ok(out)
}

/// `where(cond, x, y)` with all three broadcast together.
pub(crate) fn select<T: Clone>(cond: &ArrayD<bool>, x: &ArrayD<T>, y: &ArrayD<T>) -> Result<ArrayD<T>, String> {
    let shape = broadcast_dims(&broadcast_dims(cond.shape(), x.shape())?, y.shape())?;
    let (cv, xv, yv) = (view_as(cond, &shape)?, view_as(x, &shape)?, view_as(y, &shape)?);
    Ok(Zip::from(&cv).and(&xv).and(&yv).map_collect(|&c, x, y| if c { x.clone() } else { y.clone() }))
}

/// Numpy `matmul` over the last two axes, with optional transposition of each
/// operand's last two axes and broadcasting of the leading axes. Each 2-D product is
/// one `general_mat_mul` (matrixmultiply, accumulating in `T`).
pub(crate) fn matmul<T: Real>(a: &ArrayD<T>, b: &ArrayD<T>, trans_a: bool, trans_b: bool) -> Result<ArrayD<T>, String> {
    let (ra, rb) = (a.ndim(), b.ndim());
    if ra < 2 || rb < 2 {
        return Err(format!("needs operands of rank >= 2, got {} and {}", dims(a.shape()), dims(b.shape())));
    }
    let (sa, sb) = (a.shape(), b.shape());
    let (m, ka) = if trans_a { (sa[ra - 1], sa[ra - 2]) } else { (sa[ra - 2], sa[ra - 1]) };
    let (kb, n) = if trans_b { (sb[rb - 1], sb[rb - 2]) } else { (sb[rb - 2], sb[rb - 1]) };
    if ka != kb {
        return Err(format!("inner dimensions differ: {} x {} contracts {ka} with {kb}", dims(sa), dims(sb)));
    }
    let lead = broadcast_dims(&sa[..ra - 2], &sb[..rb - 2])?;
    let with_lead = |last: &[usize]| -> Vec<usize> { lead.iter().chain(last).copied().collect() };
    let av = view_as(a, &with_lead(&sa[ra - 2..]))?;
    let bv = view_as(b, &with_lead(&sb[rb - 2..]))?;
    let mut out = ArrayD::<T>::zeros(IxDyn(&with_lead(&[m, n])));

    // Walk the leading index space; peel the leading axes off each view to get the
    // 2-D matrices for that index.
    for idx in ndarray::indices(IxDyn(&lead)) {
        let idx = idx.slice();
        let a2 = matrix(av.view(), idx)?;
        let b2 = matrix(bv.view(), idx)?;
        let a2 = if trans_a { a2.reversed_axes() } else { a2 };
        let b2 = if trans_b { b2.reversed_axes() } else { b2 };
        let mut o = out.view_mut();
        for &i in idx {
            o = o.index_axis_move(Axis(0), i);
        }
        let mut o2 = o.into_dimensionality::<Ix2>().map_err(|e| e.to_string())?;
        general_mat_mul(T::from_f64(1.0), &a2, &b2, T::ZERO, &mut o2);
    }
    Ok(out)
}

fn matrix<'a, T>(mut v: ArrayViewD<'a, T>, lead: &[usize]) -> Result<ndarray::ArrayView2<'a, T>, String> {
    for &i in lead {
        v = v.index_axis_move(Axis(0), i);
    }
    v.into_dimensionality::<Ix2>().map_err(|e| e.to_string())
}

fn check_axis(axis: usize, rank: usize) -> Result<(), String> {
    if axis >= rank {
        return Err(format!("axis {axis} out of range for rank {rank}"));
    }
    Ok(())
}

/// Softmax along `axis`, or its logarithm. Subtracts the lane maximum first, so large
/// logits do not overflow `exp`.
pub(crate) fn softmax<T: Real>(a: &ArrayD<T>, axis: usize, log: bool) -> Result<ArrayD<T>, String> {
    check_axis(axis, a.ndim())?;
    let mut out = a.to_owned();
    for mut lane in out.lanes_mut(Axis(axis)) {
        let max = lane.iter().fold(T::LOWEST, |m, &x| m.max(x));
        let sum = lane.iter().fold(T::ZERO, |s, &x| s + (x - max).exp());
        if log {
            let log_sum = sum.ln();
            lane.mapv_inplace(|x| x - max - log_sum);
        } else {
            lane.mapv_inplace(|x| (x - max).exp() / sum);
        }
    }
    Ok(out)
}

/// The reductions; `Mean` is a sum divided by the count afterwards.
#[derive(Clone, Copy)]
pub(crate) enum Reduction {
    Sum,
    Mean,
    Max,
}

/// Reduces `axes` (sorted, distinct) of `a`, keeping them as size-1 axes if asked.
/// An empty `axes` list reduces nothing. The max of an empty set is `LOWEST`
/// (-inf for floats, as ONNX ReduceMax); an integer mean of an empty set is an error.
pub(crate) fn reduce<T: Num>(
    a: &ArrayD<T>,
    how: Reduction,
    axes: &[usize],
    keep_dims: bool,
) -> Result<ArrayD<T>, String> {
    if axes.windows(2).any(|w| w[0] >= w[1]) {
        return Err(format!("axes {axes:?} must be sorted and distinct"));
    }
    if let Some(&ax) = axes.last() {
        check_axis(ax, a.ndim())?;
    }
    let (init, combine): (T, fn(T, T) -> T) = match how {
        Reduction::Sum | Reduction::Mean => (T::ZERO, T::add),
        Reduction::Max => (T::LOWEST, T::max),
    };
    // Highest axis first, so the lower axis numbers stay valid.
    let mut out = a.to_owned();
    for &ax in axes.iter().rev() {
        out = out.fold_axis(Axis(ax), init, |&acc, &x| combine(acc, x));
    }
    if let Reduction::Mean = how {
        let count: usize = axes.iter().map(|&ax| a.shape()[ax]).product();
        out = divide(&out, &ArrayD::from_elem(IxDyn(&[]), T::from_usize(count)))
            .map_err(|_| "integer mean over an empty axis".to_string())?;
    }
    if keep_dims {
        for &ax in axes {
            out.insert_axis_inplace(Axis(ax));
        }
    }
    Ok(out)
}

/// The same elements in row-major order, in a new shape.
pub(crate) fn reshape<T: Clone>(a: &ArrayD<T>, shape: &[usize]) -> Result<ArrayD<T>, String> {
    let numel = shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
    if numel != Some(a.len()) {
        return Err(format!("cannot reshape {} ({} elements) to {}", dims(a.shape()), a.len(), dims(shape)));
    }
    ArrayD::from_shape_vec(IxDyn(shape), a.iter().cloned().collect()).map_err(|e| e.to_string())
}

pub(crate) fn transpose<T: Clone>(a: &ArrayD<T>, perm: &[usize]) -> Result<ArrayD<T>, String> {
    let mut seen = vec![false; a.ndim()];
    let valid =
        perm.len() == a.ndim() && perm.iter().all(|&p| p < seen.len() && !std::mem::replace(&mut seen[p], true));
    if !valid {
        return Err(format!("{perm:?} is not a permutation of {} axes", a.ndim()));
    }
    Ok(a.view().permuted_axes(IxDyn(perm)).to_owned())
}

/// Numpy broadcast of `a` to exactly `shape`.
pub(crate) fn broadcast_to<T: Clone>(a: &ArrayD<T>, shape: &[usize]) -> Result<ArrayD<T>, String> {
    Ok(view_as(a, shape)?.to_owned())
}

/// Class indices `[..]` to f32 one-hot rows `[.., depth]`. An index outside
/// `0..depth` is an error (bad labels should not silently train on a zero row).
pub(crate) fn one_hot<T: Element>(a: &ArrayD<T>, depth: usize) -> Result<ArrayD<f32>, String> {
    if depth == 0 {
        return Err("depth must be at least 1".into());
    }
    let mut shape = a.shape().to_vec();
    shape.push(depth);
    let mut out = ArrayD::<f32>::zeros(IxDyn(&shape));
    let rows = out.as_slice_mut().ok_or("one_hot output is not contiguous")?.chunks_mut(depth);
    for (row, &ix) in rows.zip(a.iter()) {
        let ix = ix.to_i64();
        match usize::try_from(ix).ok().filter(|&i| i < depth) {
            Some(i) => row[i] = 1.0,
            None => return Err(format!("class index {ix} out of range 0..{depth}")),
        }
    }
    Ok(out)
}
