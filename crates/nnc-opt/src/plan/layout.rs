//! Where each arena buffer lives for one batch size.
//!
//! Sizes depend on the batch, so offsets are not baked into the code: the generated
//! code loads each base address from its buffer table, and the runtime lays the arena
//! out again when the batch size changes (the object writer, once for its largest
//! batch). The placement is TFLite's "greedy by size": largest first, each at the
//! lowest offset where it overlaps no placed buffer whose lifetime overlaps its own.
//! Two buffers share bytes only if their lifetimes are disjoint.

use super::StepPlan;

/// Buffer offsets are multiples of this, so vector accesses never straddle more cache
/// lines than they must.
pub const ARENA_ALIGN: usize = 64;

/// Where each arena buffer lives for one batch size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArenaLayout {
    pub batch: usize,
    /// Byte offset of each buffer, by `BufferId`.
    pub offsets: Vec<usize>,
    pub total: usize,
}

impl StepPlan {
    /// Places the buffers for `batch`. Errors if a size overflows.
    pub fn layout(&self, batch: usize) -> Result<ArenaLayout, String> {
        let mut items: Vec<(usize, usize, usize, usize)> = Vec::new(); // (size, first, last, buffer)
        for (i, b) in self.buffers.iter().enumerate() {
            let size = b.size.at(batch).and_then(|s| usize::try_from(s).ok()).ok_or("a buffer size overflows")?;
            let size = size.checked_next_multiple_of(ARENA_ALIGN).ok_or("a buffer size overflows")?;
            items.push((size, b.first, b.last, i));
        }
        // Largest first; ties by first use, so the result is deterministic.
        items.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)).then(a.3.cmp(&b.3)));
        let mut offsets = vec![0; self.buffers.len()];
        let mut placed: Vec<(usize, usize, usize, usize)> = Vec::new(); // (offset, size, first, last)
        let mut total = 0usize;
        for &(size, first, last, i) in &items {
            // Intervals of live-overlapping placed buffers, by offset.
            let mut busy: Vec<(usize, usize)> =
                placed.iter().filter(|p| p.2 <= last && first <= p.3).map(|p| (p.0, p.0 + p.1)).collect();
            busy.sort_unstable();
            let mut offset = 0usize;
            for (start, end) in busy {
                if offset.checked_add(size).ok_or("the arena size overflows")? <= start {
                    break;
                }
                offset = offset.max(end);
            }
            offsets[i] = offset;
            total = total.max(offset.checked_add(size).ok_or("the arena size overflows")?);
            placed.push((offset, size, first, last));
        }
        Ok(ArenaLayout { batch, offsets, total })
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Buffer, BufferUse, StepPlan};
    use nnc_ir::Size;

    fn plan(buffers: Vec<(Size, usize, usize)>) -> StepPlan {
        StepPlan {
            kernels: Vec::new(),
            storage: Vec::new(),
            buffers: buffers
                .into_iter()
                .map(|(size, first, last)| Buffer { size, first, last, used_by: BufferUse::Scratch(0) })
                .collect(),
            outputs: Vec::new(),
            copied_updates: Vec::new(),
            reused: Vec::new(),
            refused: Vec::new(),
            end: 4,
        }
    }

    #[test]
    fn disjoint_lifetimes_share_bytes_and_overlapping_ones_do_not() {
        let p = plan(vec![(Size::fixed(640), 0, 1), (Size::fixed(640), 2, 3), (Size::fixed(128), 1, 2)]);
        let l = p.layout(1).unwrap();
        assert_eq!(l.offsets[0], l.offsets[1]);
        assert_eq!(l.total, 640 + 128);
        let overlaps = |a: usize, b: usize| {
            let (sa, sb) = (l.offsets[a], l.offsets[b]);
            sa < sb + 640 && sb < sa + 128
        };
        assert!(!overlaps(2, 0) && !overlaps(2, 1));
    }

    #[test]
    fn batch_dependent_sizes_scale() {
        let p = plan(vec![(Size::per_batch(1024), 0, 0)]);
        assert_eq!(p.layout(3).unwrap().total, 3072);
        assert!(p.layout(usize::MAX).is_err());
    }
}
