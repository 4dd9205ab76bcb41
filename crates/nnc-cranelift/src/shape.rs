//! Sizes and strides that may depend on the run-time batch size, and the collapsing of
//! loop nests.
//!
//! Every size in a graph is a static number or a static number times the batch `N`
//! (a shape has at most one batch dimension), so one compiled function serves every
//! batch size: the generated code computes `k·N` from its `batch` argument.

use nnc_ir::{Dim, Shape};

/// `k`, or `k·N` when `batch` is set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Sz {
    pub k: u64,
    pub batch: bool,
}

impl Sz {
    pub const ZERO: Sz = Sz { k: 0, batch: false };
    pub const ONE: Sz = Sz { k: 1, batch: false };

    pub fn fixed(k: u64) -> Sz {
        Sz { k, batch: false }
    }

    pub fn of(d: Dim) -> Sz {
        match d {
            Dim::Fixed(n) => Sz::fixed(n as u64),
            Dim::Batch => Sz { k: 1, batch: true },
        }
    }

    /// The product; `None` if both factors carry the batch (an `N²` size) or on overflow.
    pub fn mul(self, o: Sz) -> Option<Sz> {
        if self.batch && o.batch {
            // 0·N·N is still 0, and a zero factor makes the product static.
            return (self.k == 0 || o.k == 0).then_some(Sz::ZERO);
        }
        Some(Sz { k: self.k.checked_mul(o.k)?, batch: (self.batch || o.batch) && self.k != 0 && o.k != 0 })
    }

    pub fn scale(self, c: u64) -> Option<Sz> {
        self.mul(Sz::fixed(c))
    }

    pub fn as_fixed(self) -> Option<u64> {
        (!self.batch).then_some(self.k)
    }

    pub fn is_fixed(self, v: u64) -> bool {
        self.as_fixed() == Some(v)
    }
}

/// The sizes of a shape's dimensions.
pub(crate) fn dims(shape: &Shape) -> Vec<Sz> {
    shape.dims().iter().map(|&d| Sz::of(d)).collect()
}

/// The number of elements of a shape; `None` for more than one batch dimension.
pub(crate) fn numel(shape: &Shape) -> Option<Sz> {
    dims(shape).into_iter().try_fold(Sz::ONE, Sz::mul)
}

/// Row-major strides (in elements) of dimensions `dims`.
pub(crate) fn strides(dims: &[Sz]) -> Option<Vec<Sz>> {
    let mut out = vec![Sz::ONE; dims.len()];
    let mut acc = Sz::ONE;
    for i in (0..dims.len()).rev() {
        out[i] = acc;
        acc = acc.mul(dims[i])?;
    }
    Some(out)
}

/// Strides (in elements) for reading an operand of shape `operand` broadcast to the
/// output dimensions `out` (numpy rules, aligned at the right): a broadcast axis has
/// stride 0.
pub(crate) fn broadcast_strides(operand: &Shape, out_rank: usize) -> Option<Vec<Sz>> {
    let own = strides(&dims(operand))?;
    let lead = out_rank.checked_sub(operand.rank())?;
    let mut out = vec![Sz::ZERO; out_rank];
    for (i, (&d, &s)) in operand.dims().iter().zip(&own).enumerate() {
        out[lead + i] = if d == Dim::Fixed(1) { Sz::ZERO } else { s };
    }
    Some(out)
}

/// A loop nest over `dims` (outermost first) reading or writing several arrays, each
/// with its own stride per dimension.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Nest {
    pub dims: Vec<Sz>,
    /// `strides[a][d]`: the stride of array `a` along dimension `d`, in elements.
    pub strides: Vec<Vec<Sz>>,
}

impl Nest {
    /// Drops size-1 dimensions and merges neighbours that every array walks
    /// contiguously (`stride[i] == stride[i+1]·dims[i+1]`), so the innermost loop is
    /// as long as possible. A nest of no dimensions becomes one dimension of size 1.
    pub fn collapse(dims: &[Sz], strides: &[Vec<Sz>]) -> Nest {
        let keep: Vec<usize> = (0..dims.len()).filter(|&i| !dims[i].is_fixed(1)).collect();
        let mut out_dims: Vec<Sz> = Vec::new();
        let mut out_strides: Vec<Vec<Sz>> = vec![Vec::new(); strides.len()];
        for &i in &keep {
            if let Some(&last) = out_dims.last() {
                // Merge the new inner dimension `i` into the current innermost one.
                let mergeable = strides.iter().zip(&out_strides).all(|(s, o)| {
                    let outer = *o.last().expect("same length as out_dims");
                    s[i].mul(dims[i]) == Some(outer)
                });
                if let (true, Some(merged)) = (mergeable, last.mul(dims[i])) {
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
            out_dims.push(Sz::ONE);
            for o in &mut out_strides {
                o.push(Sz::ZERO);
            }
        }
        Nest { dims: out_dims, strides: out_strides }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(k: u64) -> Sz {
        Sz::fixed(k)
    }
    const N: Sz = Sz { k: 1, batch: true };

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

    #[test]
    fn sizes_with_two_batch_factors_are_refused() {
        assert_eq!(N.mul(N), None);
        assert_eq!(N.mul(f(3)), Some(Sz { k: 3, batch: true }));
        assert_eq!(numel(&Shape(vec![Dim::Batch, Dim::Fixed(4)])), Some(N.scale(4).unwrap()));
    }
}
