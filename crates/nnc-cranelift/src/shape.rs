//! Dimensions and strides that may depend on the run-time batch size (as
//! `nnc_ir::Size`), and the collapsing of loop nests.
//!
//! Every dimension and stride of a graph is a static number or a static number times
//! the batch `N` (a shape has at most one batch dimension), so one compiled function
//! serves every batch size: the generated code computes `k·N` from its `batch`
//! argument.

use nnc_ir::{Dim, Shape, Size};

/// The sizes of a shape's dimensions.
pub(crate) fn dims(shape: &Shape) -> Vec<Size> {
    shape.dims().iter().map(|&d| Size::of(d)).collect()
}

/// Row-major strides (in elements) of dimensions `dims`.
pub(crate) fn strides(dims: &[Size]) -> Option<Vec<Size>> {
    let mut out = vec![Size::ONE; dims.len()];
    let mut acc = Size::ONE;
    for i in (0..dims.len()).rev() {
        out[i] = acc;
        acc = acc.checked_mul(dims[i])?;
    }
    Some(out)
}

/// Strides (in elements) for reading an operand of shape `operand` broadcast to the
/// output dimensions `out` (numpy rules, aligned at the right): a broadcast axis has
/// stride 0.
pub(crate) fn broadcast_strides(operand: &Shape, out_rank: usize) -> Option<Vec<Size>> {
    let own = strides(&dims(operand))?;
    let lead = out_rank.checked_sub(operand.rank())?;
    let mut out = vec![Size::ZERO; out_rank];
    for (i, (&d, &s)) in operand.dims().iter().zip(&own).enumerate() {
        out[lead + i] = if d == Dim::Fixed(1) { Size::ZERO } else { s };
    }
    Some(out)
}

/// A loop nest over `dims` (outermost first) reading or writing several arrays, each
/// with its own stride per dimension.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Nest {
    pub dims: Vec<Size>,
    /// `strides[a][d]`: the stride of array `a` along dimension `d`, in elements.
    pub strides: Vec<Vec<Size>>,
}

impl Nest {
    /// Drops size-1 dimensions and merges neighbours that every array walks
    /// contiguously (`stride[i] == stride[i+1]·dims[i+1]`), so the innermost loop is
    /// as long as possible. A nest of no dimensions becomes one dimension of size 1.
    pub fn collapse(dims: &[Size], strides: &[Vec<Size>]) -> Nest {
        let keep: Vec<usize> = (0..dims.len()).filter(|&i| !dims[i].is_fixed(1)).collect();
        let mut out_dims: Vec<Size> = Vec::new();
        let mut out_strides: Vec<Vec<Size>> = vec![Vec::new(); strides.len()];
        for &i in &keep {
            if let Some(&last) = out_dims.last() {
                // Merge the new inner dimension `i` into the current innermost one.
                let mergeable = strides.iter().zip(&out_strides).all(|(s, o)| {
                    let outer = *o.last().expect("same length as out_dims");
                    s[i].checked_mul(dims[i]) == Some(outer)
                });
                if let (true, Some(merged)) = (mergeable, last.checked_mul(dims[i])) {
                    *out_dims.last_mut().expect("non-empty") = merged;
                    for (s, o) in strides.iter().zip(&mut out_strides) {
                        *o.last_mut().expect("non-empty") = s[i];
                    }
                    continue;
                }
            }
            out_dims.push(dims[i]);
            for (s, o) in strides.iter().zip(&mut out_strides) {
                o.push(s[i]);
            }
        }
        if out_dims.is_empty() {
            out_dims.push(Size::ONE);
            for o in &mut out_strides {
                o.push(Size::ZERO);
            }
        }
        Nest { dims: out_dims, strides: out_strides }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(k: u64) -> Size {
        Size::fixed(k)
    }
    const N: Size = Size::BATCH;

    #[test]
    fn collapse_merges_contiguous_and_keeps_broadcast_axes() {
        // [N,256] + [256]: the bias is broadcast along N.
        let nest = Nest::collapse(&[N, f(256)], &[vec![f(256), f(1)], vec![f(256), f(1)], vec![f(0), f(1)]]);
        assert_eq!(nest.dims, vec![N, f(256)]);
        // Same shapes everywhere: one flat loop.
        let nest = Nest::collapse(&[N, f(3), f(4)], &[vec![f(12), f(4), f(1)], vec![f(12), f(4), f(1)]]);
        assert_eq!(nest.dims, vec![N.scale(12).unwrap()]);
        assert_eq!(nest.strides, vec![vec![f(1)], vec![f(1)]]);
        // Size-1 axes vanish; a scalar becomes one element.
        let nest = Nest::collapse(&[f(1), f(1)], &[vec![f(1), f(1)]]);
        assert_eq!(nest.dims, vec![f(1)]);
    }
}
