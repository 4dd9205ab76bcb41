//! [`Size`]: a size linear in the batch, the one type every stage uses for element
//! counts, strides and bytes that may depend on the run-time batch size.
//!
//! A shape has at most one batch dimension, so every element count is `k` or `k·N`,
//! and every sum of such sizes (an arena, a buffer with a static header) is
//! `fixed + per_batch·N`. Products that would need `N²` are refused (`None`), as the
//! backend refuses shapes with the batch twice.

use crate::types::{Dim, Shape, TensorType};
use std::fmt;

/// `fixed + per_batch·N` for the run-time batch size `N`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Size {
    pub fixed: u64,
    pub per_batch: u64,
}

impl Size {
    pub const ZERO: Size = Size { fixed: 0, per_batch: 0 };
    pub const ONE: Size = Size { fixed: 1, per_batch: 0 };
    /// `N`.
    pub const BATCH: Size = Size { fixed: 0, per_batch: 1 };

    /// `k`, independent of the batch.
    pub const fn fixed(k: u64) -> Size {
        Size { fixed: k, per_batch: 0 }
    }

    /// `k·N`.
    pub const fn per_batch(k: u64) -> Size {
        Size { fixed: 0, per_batch: k }
    }

    /// The size of one dimension.
    pub fn of(d: Dim) -> Size {
        match d {
            Dim::Fixed(n) => Size::fixed(n as u64),
            Dim::Batch => Size::BATCH,
        }
    }

    /// The element count of a shape; `None` with the batch twice or on overflow.
    pub fn numel(shape: &Shape) -> Option<Size> {
        shape.dims().iter().try_fold(Size::ONE, |acc, &d| acc.checked_mul(Size::of(d)))
    }

    /// The bytes of a tensor of type `ty`; `None` with the batch twice or on overflow.
    pub fn bytes_of(ty: &TensorType) -> Option<Size> {
        Size::numel(&ty.shape)?.scale(ty.dtype.size_bytes() as u64)
    }

    /// The product; `None` if it has an `N²` term or on overflow.
    pub fn checked_mul(self, o: Size) -> Option<Size> {
        if self.per_batch.checked_mul(o.per_batch)? != 0 {
            return None;
        }
        let per_batch = self.fixed.checked_mul(o.per_batch)?.checked_add(self.per_batch.checked_mul(o.fixed)?)?;
        Some(Size { fixed: self.fixed.checked_mul(o.fixed)?, per_batch })
    }

    pub fn scale(self, c: u64) -> Option<Size> {
        Some(Size { fixed: self.fixed.checked_mul(c)?, per_batch: self.per_batch.checked_mul(c)? })
    }

    pub fn checked_add(self, o: Size) -> Option<Size> {
        Some(Size { fixed: self.fixed.checked_add(o.fixed)?, per_batch: self.per_batch.checked_add(o.per_batch)? })
    }

    /// The size, if it does not depend on the batch.
    pub fn as_fixed(self) -> Option<u64> {
        (self.per_batch == 0).then_some(self.fixed)
    }

    pub fn is_fixed(self, v: u64) -> bool {
        self.as_fixed() == Some(v)
    }

    pub fn has_batch(self) -> bool {
        self.per_batch != 0
    }

    /// The size at a concrete batch size; `None` on overflow.
    pub fn at(self, batch: usize) -> Option<u64> {
        self.per_batch.checked_mul(batch as u64)?.checked_add(self.fixed)
    }
}

/// Sums saturate: they are totals for reports, and a size near `u64::MAX` is refused
/// long before (see `limits.rs`).
impl std::ops::Add for Size {
    type Output = Size;
    fn add(self, o: Size) -> Size {
        Size { fixed: self.fixed.saturating_add(o.fixed), per_batch: self.per_batch.saturating_add(o.per_batch) }
    }
}

impl std::iter::Sum for Size {
    fn sum<I: Iterator<Item = Size>>(iter: I) -> Size {
        iter.fold(Size::ZERO, |a, b| a + b)
    }
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.fixed, self.per_batch) {
            (c, 0) => write!(f, "{c}"),
            (0, k) => write!(f, "{k}·N"),
            (c, k) => write!(f, "{c} + {k}·N"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn products_with_the_batch_twice_are_refused() {
        let n = Size::BATCH;
        assert_eq!(n.checked_mul(n), None);
        assert_eq!(n.checked_mul(Size::ZERO), Some(Size::ZERO));
        assert_eq!(n.checked_mul(Size::fixed(3)), Some(Size::per_batch(3)));
        assert_eq!(Size { fixed: 2, per_batch: 1 }.checked_mul(Size::fixed(4)), Some(Size { fixed: 8, per_batch: 4 }));
        assert_eq!(Size::fixed(u64::MAX).checked_mul(Size::fixed(2)), None);
    }

    #[test]
    fn element_counts_and_bytes_follow_the_shape() {
        let shape = Shape(vec![Dim::Batch, Dim::Fixed(4)]);
        assert_eq!(Size::numel(&shape), Some(Size::per_batch(4)));
        assert_eq!(Size::numel(&Shape(vec![Dim::Batch, Dim::Batch])), None);
        let ty = TensorType::new(crate::DType::I64, shape);
        assert_eq!(Size::bytes_of(&ty), Some(Size::per_batch(32)));
        assert_eq!(Size::per_batch(32).at(3), Some(96));
        assert_eq!(format!("{}", Size { fixed: 64, per_batch: 32 }), "64 + 32·N");
    }
}
