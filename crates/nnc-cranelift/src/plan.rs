//! The memory plan: which storage backs each buffer slot, and where each intermediate
//! lives in the arena.
//!
//! Design. Every value gets a slot in the buffer table the step function receives.
//! Inputs point at the caller's tensors, parameters and state at buffers the
//! `Compiled` owns, constants at owned copies. Aliasing ops (reshape, identity, a cast
//! to the same type) share their operand's storage, so they cost nothing. Every other
//! value, and kernel scratch (packed matrix panels, staging copies), is an *arena*
//! storage with a lifetime `[first, last]` in kernel time.
//!
//! Sizes depend on the batch, so offsets are not baked into the code: the generated
//! code loads each base address from the table. `layout` places the arena storages for
//! a concrete batch size (greedy by size, first fit among storages whose lifetimes
//! overlap, the "greedy by size" planner of TFLite): two storages share bytes only if
//! their lifetimes are disjoint. `Compiled` computes the layout when the batch size
//! changes and keeps the arena at its high-water mark, so a run with a batch size it
//! has seen allocates nothing.

use nnc_ir::Size;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StorageKind {
    /// The caller's tensor for input number `i` (in `Program::inputs` order).
    Input(usize),
    /// Owned parameter or state buffer number `i` (in `Program::leaves` order).
    Leaf(usize),
    /// Owned constant number `i` (in `Program::consts` order).
    Const(usize),
    /// Part of the arena, live from kernel time `first` to `last` inclusive.
    Arena { first: usize, last: usize },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Storage {
    pub kind: StorageKind,
    pub bytes: Size,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct MemoryPlan {
    pub storages: Vec<Storage>,
    /// The storage behind each table slot (`None`: a value the step never touches).
    pub slot_storage: Vec<Option<usize>>,
}

/// Arena offsets are multiples of this, so vector accesses never straddle more cache
/// lines than they must.
pub(crate) const ARENA_ALIGN: usize = 64;

/// Where each arena storage lives for one batch size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ArenaLayout {
    pub batch: usize,
    /// Byte offset per storage (0 for storages that are not in the arena).
    pub offsets: Vec<usize>,
    pub total: usize,
}

impl MemoryPlan {
    /// Places the arena storages for `batch`. Errors if a size overflows.
    pub fn layout(&self, batch: usize) -> Result<ArenaLayout, String> {
        let mut items: Vec<(usize, usize, usize, usize)> = Vec::new(); // (size, first, last, storage)
        for (i, s) in self.storages.iter().enumerate() {
            if let StorageKind::Arena { first, last } = s.kind {
                let size = s.bytes.at(batch).and_then(|b| usize::try_from(b).ok()).ok_or("a buffer size overflows")?;
                let size = size.checked_next_multiple_of(ARENA_ALIGN).ok_or("a buffer size overflows")?;
                items.push((size, first, last, i));
            }
        }
        // Largest first; ties by first use, so the result is deterministic.
        items.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)).then(a.3.cmp(&b.3)));
        let mut offsets = vec![0; self.storages.len()];
        let mut placed: Vec<(usize, usize, usize, usize)> = Vec::new(); // (offset, size, first, last)
        let mut total = 0usize;
        for &(size, first, last, i) in &items {
            // Intervals of live-overlapping placed storages, by offset.
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
    use super::*;

    fn arena(bytes: u64, first: usize, last: usize) -> Storage {
        Storage { kind: StorageKind::Arena { first, last }, bytes: Size::fixed(bytes) }
    }

    #[test]
    fn disjoint_lifetimes_share_bytes_and_overlapping_ones_do_not() {
        let plan = MemoryPlan {
            storages: vec![arena(640, 0, 1), arena(640, 2, 3), arena(128, 1, 2)],
            slot_storage: vec![Some(0), Some(1), Some(2)],
        };
        let l = plan.layout(1).unwrap();
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
        let plan = MemoryPlan {
            storages: vec![Storage { kind: StorageKind::Arena { first: 0, last: 0 }, bytes: Size::per_batch(1024) }],
            slot_storage: vec![Some(0)],
        };
        assert_eq!(plan.layout(3).unwrap().total, 3072);
        assert!(plan.layout(usize::MAX).is_err());
    }
}
