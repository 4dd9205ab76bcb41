//! The memory plan: every intermediate value of a step gets an offset in one arena,
//! so a compiled step allocates nothing.
//!
//! ## Sizes that depend on the batch
//!
//! A value's size is `per_example·N` if its shape has the batch dimension and a
//! constant otherwise (never both: a shape has at most one `N`). So the arena has two
//! regions and every offset is linear in `N`:
//!
//! ```text
//! [ fixed region: fixed_bytes ][ batch region: per_example_bytes · N ]
//! offset of a fixed buffer:    o                (bytes)
//! offset of a batched buffer:  fixed_bytes + o·N (o in bytes per example)
//! ```
//!
//! The batch region is planned in units of bytes per example, so one plan serves
//! every batch size with no bound: the caller sizes the arena with
//! [`MemoryPlan::arena_bytes`] and computes offsets with [`MemoryPlan::offset`].
//! Fixed buffers start on 64-byte boundaries; a batched buffer's bytes per example
//! are rounded up to 16 (one f32x4), so every buffer starts 16-byte aligned for any N.
//!
//! ## Liveness and reuse
//!
//! The schedule is the graph's definition order, one kernel at a time (siblings of a
//! fused kernel together, at the first one's place; see `report::kernels`). A buffer
//! lives from its kernel to the last kernel that reads it (outputs: to the end).
//! Buffers whose lifetimes do not overlap share bytes (greedy by size, lowest
//! offset that fits). Beyond that:
//! - aliases (reshape, identity) have no buffer: they are their operand's bytes;
//! - an elementwise kernel whose operand dies there writes its result over that
//!   operand (same size, read and written at the same index): *in-place reuse*;
//! - a declared update `p ← p_new` writes `p_new` straight into `p`'s own buffer
//!   when that is legal: every other read of `p` happens in an earlier kernel, and
//!   `p_new`'s kernel reads `p` only elementwise (a fused update does). Otherwise
//!   `p_new` gets an arena buffer and the caller copies it into `p` after the step
//!   ([`MemoryPlan::copied_updates`]).
//!
//! Leaves (inputs, parameters, state, constants) live outside the arena.

use crate::report::{bytes_of, is_alias, kernels};
use crate::OptError;
use nnc_ir::{Graph, Op, Size, ValueId};

/// Alignment of fixed buffers, in bytes.
pub const FIXED_ALIGN: u64 = 64;
/// Rounding of a batched buffer's bytes per example.
pub const PER_EXAMPLE_ALIGN: u64 = 16;

/// Where a value's bytes are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Storage {
    /// Nothing: a value no output or update needs.
    Unused,
    /// A leaf: the caller's input, parameter or state buffer, or a compiled-in constant.
    Leaf,
    /// The bytes of another value (the root of a chain of reshapes and identities).
    Alias { of: ValueId },
    /// An arena buffer of `size` bytes at `offset` (both linear in the batch).
    Arena { offset: Size, size: Size },
    /// Written into the buffer of the parameter or state it updates.
    InPlace { leaf: ValueId },
}

#[derive(Clone, Debug, PartialEq)]
pub struct MemoryPlan {
    /// The storage of every value, indexed by [`ValueId`].
    pub storage: Vec<Storage>,
    /// The fixed region's size in bytes, at the start of the arena.
    pub fixed_bytes: u64,
    /// The batch region's size in bytes per example.
    pub per_example_bytes: u64,
    /// What one buffer per computed value would take (the sum of their sizes).
    pub naive: Size,
    /// `(value, operand)`: the value overwrites its dead operand's buffer.
    pub reused: Vec<(ValueId, ValueId)>,
    /// Declared updates `(leaf, new value)` that cannot be written in place: the
    /// caller copies the new value into the leaf after the step.
    pub copied_updates: Vec<(ValueId, ValueId)>,
    /// The kernel (schedule position) of every computed value.
    pub position: Vec<Option<usize>>,
}

impl MemoryPlan {
    /// The arena as a size linear in the batch.
    pub fn arena(&self) -> Size {
        Size { fixed: self.fixed_bytes, per_batch: self.per_example_bytes }
    }

    pub fn arena_bytes(&self, batch: usize) -> u64 {
        self.arena().at(batch).unwrap_or(u64::MAX)
    }

    pub fn naive_bytes(&self, batch: usize) -> u64 {
        self.naive.at(batch).unwrap_or(u64::MAX)
    }

    /// The byte offset of `id`'s arena buffer at a batch size, if it has one.
    pub fn offset(&self, id: ValueId, batch: usize) -> Option<u64> {
        match self.storage.get(id.index())? {
            Storage::Arena { offset, .. } => offset.at(batch),
            _ => None,
        }
    }

    /// A readable listing: one line per computed value.
    pub fn describe(&self, g: &Graph) -> String {
        let mut out = format!("arena: {} bytes\n", self.arena());
        for id in g.ids() {
            let what = match &self.storage[id.index()] {
                Storage::Unused | Storage::Leaf => continue,
                Storage::Alias { of } => format!("alias of %{}", g.name_of(*of)),
                Storage::Arena { offset, size } => {
                    let reuse = self.reused.iter().find(|r| r.0 == id).map(|r| format!(" (over %{})", g.name_of(r.1)));
                    format!("[{offset}, +{size}){}", reuse.unwrap_or_default())
                }
                Storage::InPlace { leaf } => format!("in place of %{}", g.name_of(*leaf)),
            };
            out += &format!("  %{}: {what}\n", g.name_of(id));
        }
        for &(l, v) in &self.copied_updates {
            out += &format!("  copy %{} -> %{} after the step\n", g.name_of(v), g.name_of(l));
        }
        out
    }
}

/// Whether kernel member `id` reads its operand `slot` only at the index it writes.
pub(crate) fn reads_elementwise(g: &Graph, id: ValueId, slot: usize) -> bool {
    let v = g.value(id);
    match &v.op {
        Op::Unary(_) | Op::Binary(_) | Op::Where | Op::Cast { .. } => g.ty(v.args[slot]).shape == v.ty.shape,
        Op::Fused(f) => f.reads_elementwise(slot) && g.ty(v.args[slot]).shape == v.ty.shape,
        _ => false,
    }
}

/// A buffer shared by values whose lifetimes chain through in-place reuse.
struct Class {
    size: Size,
    start: usize,
    end: usize,
    offset: u64,
}

/// The memory plan of a graph (which must verify: the plan relies on its operand
/// counts and types).
pub fn plan(g: &Graph) -> Result<MemoryPlan, OptError> {
    nnc_ir::verify(g).map_err(OptError::Input)?;
    let n = g.len();
    let (groups, group_of) = kernels(g);
    let live = crate::passes::dce::live(g);
    let end = groups.len(); // past the last kernel: outputs live until here

    // Roots: each alias stands for the value whose bytes it shares.
    let mut root: Vec<ValueId> = g.ids().collect();
    let mut storage = vec![Storage::Unused; n];
    for id in g.ids() {
        let v = g.value(id);
        if v.op.is_leaf() {
            storage[id.index()] = Storage::Leaf;
        } else if is_alias(g, id) {
            root[id.index()] = root[v.args[0].index()];
        }
    }

    // The last kernel reading each root.
    let mut last: Vec<Option<usize>> = vec![None; n];
    let touch = |last: &mut Vec<Option<usize>>, r: ValueId, at: usize| {
        let l = &mut last[r.index()];
        *l = Some(l.map_or(at, |x: usize| x.max(at)));
    };
    for (k, members) in groups.iter().enumerate() {
        for &m in members {
            for &a in &g.value(m).args {
                touch(&mut last, root[a.index()], k);
            }
        }
    }
    for &o in g.outputs() {
        touch(&mut last, root[o.index()], end);
    }
    let output_roots: Vec<ValueId> = g.outputs().iter().map(|o| root[o.index()]).collect();

    // Declared updates written in place where legal.
    let mut copied_updates = Vec::new();
    for &(leaf, new) in g.updates() {
        if in_place_ok(g, &groups, &group_of, &root, &output_roots, &storage, leaf, new) {
            storage[new.index()] = Storage::InPlace { leaf };
        } else {
            copied_updates.push((leaf, new));
            touch(&mut last, root[new.index()], end);
        }
    }

    // Buffers, in schedule order, reusing a dying elementwise operand where legal.
    let mut classes: Vec<Class> = Vec::new();
    let mut class_of: Vec<Option<usize>> = vec![None; n];
    let mut reused = Vec::new();
    let mut naive = Size::ZERO;
    for (k, members) in groups.iter().enumerate() {
        let mut claimed: Vec<usize> = Vec::new();
        for &m in members {
            let size = bytes_of(g.ty(m));
            naive = naive + size;
            if matches!(storage[m.index()], Storage::InPlace { .. }) {
                continue;
            }
            let my_end = last[m.index()].unwrap_or(k);
            let donor = g.value(m).args.iter().enumerate().find_map(|(slot, &a)| {
                let c = class_of[a.index()]?;
                let ok = root[a.index()] == a
                    && reads_elementwise(g, m, slot)
                    && classes[c].end == k
                    && classes[c].size == size
                    && !claimed.contains(&c)
                    && members.iter().all(|&s| only_elementwise_reads(g, s, a, &root));
                ok.then_some((a, c))
            });
            let c = match donor {
                Some((a, c)) => {
                    reused.push((m, a));
                    classes[c].end = classes[c].end.max(my_end);
                    c
                }
                None => {
                    classes.push(Class { size, start: k, end: my_end, offset: 0 });
                    classes.len() - 1
                }
            };
            claimed.push(c);
            class_of[m.index()] = Some(c);
        }
    }

    // Placement, per region, biggest first.
    let region = |c: &Class| if c.size.per_batch > 0 { 1 } else { 0 };
    let units = |c: &Class| {
        if c.size.per_batch > 0 {
            c.size.per_batch.next_multiple_of(PER_EXAMPLE_ALIGN)
        } else {
            c.size.fixed.next_multiple_of(FIXED_ALIGN)
        }
    };
    let mut order: Vec<usize> = (0..classes.len()).collect();
    order.sort_by_key(|&c| (std::cmp::Reverse(units(&classes[c])), classes[c].start, c));
    let mut extent = [0u64; 2];
    let mut placed: Vec<usize> = Vec::new();
    for c in order {
        let (size, r) = (units(&classes[c]), region(&classes[c]));
        let mut busy: Vec<(u64, u64)> = placed
            .iter()
            .map(|&p| &classes[p])
            .filter(|p| region(p) == r && p.start <= classes[c].end && classes[c].start <= p.end)
            .map(|p| (p.offset, p.offset + units(p)))
            .collect();
        busy.sort();
        let mut offset = 0;
        for (lo, hi) in busy {
            if offset + size <= lo {
                break;
            }
            offset = offset.max(hi);
        }
        classes[c].offset = offset;
        extent[r] = extent[r].max(offset + size);
        placed.push(c);
    }
    let fixed_bytes = extent[0];
    for id in g.ids() {
        if let Some(c) = class_of[id.index()] {
            let c = &classes[c];
            let offset = if c.size.per_batch > 0 {
                Size { fixed: fixed_bytes, per_batch: c.offset }
            } else {
                Size::fixed(c.offset)
            };
            storage[id.index()] = Storage::Arena { offset, size: bytes_of(g.ty(id)) };
        } else if root[id.index()] != id && live[id.index()] {
            storage[id.index()] = Storage::Alias { of: root[id.index()] };
        }
    }
    Ok(MemoryPlan {
        storage,
        fixed_bytes,
        per_example_bytes: extent[1],
        naive,
        reused,
        copied_updates,
        position: group_of,
    })
}

/// Every read of `a` by kernel member `m` is a direct, elementwise one.
fn only_elementwise_reads(g: &Graph, m: ValueId, a: ValueId, root: &[ValueId]) -> bool {
    g.value(m).args.iter().enumerate().all(
        |(slot, &x)| {
            if x == a {
                reads_elementwise(g, m, slot)
            } else {
                root[x.index()] != a
            }
        },
    )
}

/// `new` can be written into `leaf`'s buffer: it is a computed value of its own
/// (not a leaf, not an alias, not already the storage of another update), `leaf`
/// is not an output, every other kernel reading `leaf` runs before `new`'s kernel,
/// and `new`'s kernel reads `leaf` only elementwise.
#[allow(clippy::too_many_arguments)]
fn in_place_ok(
    g: &Graph,
    groups: &[Vec<ValueId>],
    group_of: &[Option<usize>],
    root: &[ValueId],
    output_roots: &[ValueId],
    storage: &[Storage],
    leaf: ValueId,
    new: ValueId,
) -> bool {
    let Some(k) = group_of[new.index()] else { return false };
    if !matches!(storage[new.index()], Storage::Unused) || output_roots.contains(&leaf) || g.ty(leaf) != g.ty(new) {
        return false;
    }
    groups.iter().enumerate().all(|(j, members)| {
        members.iter().all(|&m| {
            let reads = g.value(m).args.iter().any(|&a| root[a.index()] == leaf);
            !reads || j < k || (j == k && only_elementwise_reads(g, m, leaf, root))
        })
    })
}
