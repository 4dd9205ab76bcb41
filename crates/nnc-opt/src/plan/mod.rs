//! The step plan: which kernels a step runs, in what order, and where every value
//! lives. Decided once, here: the backends execute it (the JIT and the object writer
//! add only their kernels' scratch buffers) and the optimizer's report prints it.
//!
//! ```text
//! needed values ─► kernels (fused siblings together) ─► storage: leaves, aliases, buffers
//!              ─► updates in place or copied ─► dying operands reused ─► snapshots, stages,
//!                 update copies ─► buffer lifetimes          (backend: + scratch) ─► layout(N)
//! ```
//!
//! ## Kernels and steps
//!
//! The schedule is the graph's definition order. Every value an output or update
//! needs is computed by one kernel, except leaves (inputs, parameters, state,
//! constants) and aliases. The results of one fused kernel (siblings, see
//! `nnc_ir::FusedOp::kernel`) are computed together, at the place of the first one
//! needed (the *leader*); a column-sum result (a bias gradient) is its own kernel right
//! after, a reduction over rows in one fixed order, since the fused kernel splits its
//! rows across threads. Kernels that run at one place share a *step*; buffer
//! lifetimes are counted in steps. After the last computed step come the copies the
//! updates need: output snapshots, staging copies, then the update copies, one step
//! each; the host reads the outputs in the step after ([`StepPlan::end`]).
//!
//! ## Storage
//!
//! - Inputs, parameters, state and (needed) constants are leaves: buffers of their
//!   own, outside the arena.
//! - Aliases (reshape, identity, a cast, broadcast or transpose that changes nothing)
//!   are their operand's bytes.
//! - Every other value gets an arena buffer, except that a declared update `p ← p_new`
//!   writes `p_new` straight into `p` when every other read of `p` happens in an
//!   earlier kernel, or in `p_new`'s own kernel at the element it writes (a fused
//!   update does): *in place*. Otherwise the new value is copied into `p` after
//!   everything else (and an output that is `p` is snapshotted first).
//! - An elementwise value may take over the buffer of a same-shape operand whose last
//!   read is its own kernel (`p - lr·g` reuses the buffer of `lr·g`): *reuse*.
//!
//! The arena's layout for a batch size ([`StepPlan::layout`]) places buffers whose
//! lifetimes overlap at disjoint bytes.

mod layout;
mod storage;

pub use layout::{ArenaLayout, ARENA_ALIGN};

use nnc_ir::{FusedOp, Graph, Op, Size, ValueId};
use std::fmt::Write;

/// An arena buffer of a [`StepPlan`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BufferId(pub usize);

/// Where a value's bytes are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Storage {
    /// Nothing: a value no output or update needs (or one the plan refused).
    Unused,
    /// A leaf's own buffer: the caller's input, a parameter, state, or a constant.
    Leaf,
    /// The bytes of another value (the root of a chain of aliases).
    Alias { of: ValueId },
    /// An arena buffer (shared with the operand it reuses, if any).
    Buffer(BufferId),
    /// Written into the buffer of the parameter or state it updates.
    InPlace { leaf: ValueId },
}

/// Where something is read from: a value's storage, or an arena buffer of the plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    Value(ValueId),
    Buffer(BufferId),
}

/// What a kernel does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Work {
    /// Computes `leader`'s kernel: one value, or the needed results of a fused kernel
    /// other than its column sums (`results`, in definition order; empty when only a
    /// column sum is needed).
    Compute { leader: ValueId, results: Vec<ValueId> },
    /// `value`, a column-sum result of `leader`'s fused kernel: the sum over rows of
    /// its gradient.
    ColumnSum { leader: ValueId, value: ValueId },
    /// Copies output `value` into `into` before an update copy overwrites it.
    Snapshot { value: ValueId, into: BufferId },
    /// Copies `from`, the new value of `leaf`, into `into`, before another update copy
    /// overwrites it.
    Stage { leaf: ValueId, from: ValueId, into: BufferId },
    /// Copies the new value of `leaf` into it.
    CopyUpdate { leaf: ValueId, from: Place },
}

/// One kernel of the step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Kernel {
    /// Its place in the schedule (kernels of one fused group share it).
    pub step: usize,
    pub work: Work,
    /// Scratch buffers the backend gave it ([`StepPlan::add_scratch`]).
    pub scratch: Vec<BufferId>,
}

/// Who a buffer is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BufferUse {
    /// A value (and any value that reuses it).
    Value(ValueId),
    /// The snapshot of an output.
    Snapshot(ValueId),
    /// The staged new value of a leaf.
    Stage(ValueId),
    /// Scratch of kernel number `0`.
    Scratch(usize),
}

/// An arena buffer: its size, and the steps it is live in, inclusive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Buffer {
    pub size: Size,
    pub first: usize,
    pub last: usize,
    pub used_by: BufferUse,
}

/// The plan of one step (see the module documentation).
#[derive(Clone, Debug, PartialEq)]
pub struct StepPlan {
    /// The kernels, in execution order.
    pub kernels: Vec<Kernel>,
    /// Where every value lives, by [`ValueId`].
    pub storage: Vec<Storage>,
    pub buffers: Vec<Buffer>,
    /// Where the host reads each output after the step: its value, or its snapshot.
    pub outputs: Vec<Place>,
    /// Declared updates `(leaf, new value)` written by a copy after everything else.
    pub copied_updates: Vec<(ValueId, ValueId)>,
    /// `(value, operand)`: the value overwrites its dying operand's buffer.
    pub reused: Vec<(ValueId, ValueId)>,
    /// Values the plan cannot place, and why (the backend refuses them).
    pub refused: Vec<(ValueId, &'static str)>,
    /// The step at which the host reads the outputs, after every kernel.
    pub end: usize,
}

/// Why a size cannot be planned.
pub const TWO_BATCH: &str = "sizes with more than one batch dimension (N²) are not supported";
/// Why a parameter or state with the batch in its shape cannot be planned.
pub const BATCHED_LEAF: &str = "a parameter or state needs a static shape (its buffer is owned by the compiled step)";

/// Whether a value shares its operand's bytes instead of being computed.
pub fn is_alias(g: &Graph, id: ValueId) -> bool {
    let v = g.value(id);
    match &v.op {
        Op::Reshape { .. } | Op::Unary(nnc_ir::UnaryOp::Identity) => true,
        Op::Cast { to } => *to == g.ty(v.args[0]).dtype,
        Op::Broadcast { shape } => *shape == g.ty(v.args[0]).shape,
        Op::Transpose { perm } => perm.iter().enumerate().all(|(i, &p)| i == p),
        _ => false,
    }
}

/// Whether a fused result is computed by a column-sum kernel after its group.
fn is_column_sum(f: &FusedOp) -> bool {
    matches!(
        f,
        FusedOp::DenseReluGrad { out: nnc_ir::GradOut::ColSum, .. }
            | FusedOp::SoftmaxCrossEntropy { out: nnc_ir::CeOut::GradColSum }
    )
}

/// The plan of a graph, which must verify. Values that cannot be placed are listed
/// in [`StepPlan::refused`] (and everything that depends on them has no kernel).
pub fn plan(g: &Graph) -> StepPlan {
    let needed = needed(g);
    let leader = leaders(g, &needed);
    storage::Planner::new(g, needed, leader).run()
}

/// Values the outputs and updates depend on; everything else is dead code.
fn needed(g: &Graph) -> Vec<bool> {
    let mut needed = vec![false; g.len()];
    for &o in g.outputs() {
        needed[o.index()] = true;
    }
    for &(_, new) in g.updates() {
        needed[new.index()] = true;
    }
    for id in (0..g.len()).rev() {
        if needed[id] {
            for a in &g.values()[id].args {
                needed[a.index()] = true;
            }
        }
    }
    needed
}

/// The value whose kernel computes each value: itself, or for a result of a fused
/// kernel, the first needed sibling.
fn leaders(g: &Graph, needed: &[bool]) -> Vec<ValueId> {
    let mut groups: Vec<(FusedOp, &[ValueId], ValueId)> = Vec::new();
    g.ids()
        .map(|id| {
            let v = g.value(id);
            let Op::Fused(f) = &v.op else { return id };
            if !needed[id.index()] {
                return id;
            }
            let key = f.kernel();
            match groups.iter().find(|(k, args, _)| *k == key && *args == v.args.as_slice()) {
                Some(&(_, _, leader)) => leader,
                None => {
                    groups.push((key, &v.args, id));
                    id
                }
            }
        })
        .collect()
}

impl StepPlan {
    /// A new arena buffer of `size` bytes for kernel number `kernel` alone (live in its
    /// step, which the kernels of its fused group share).
    pub fn add_scratch(&mut self, kernel: usize, size: Size) -> BufferId {
        let step = self.kernels[kernel].step;
        let id = BufferId(self.buffers.len());
        self.buffers.push(Buffer { size, first: step, last: step, used_by: BufferUse::Scratch(kernel) });
        self.kernels[kernel].scratch.push(id);
        id
    }

    /// The storage a value's bytes are in, following aliases.
    pub fn resolve(&self, id: ValueId) -> Storage {
        match self.storage[id.index()] {
            Storage::Alias { of } => self.resolve(of),
            s => s,
        }
    }

    /// What one buffer per computed value would take (the sum of their sizes).
    pub fn naive_bytes(&self, g: &Graph) -> Size {
        g.ids()
            .filter(|&id| matches!(self.storage[id.index()], Storage::Buffer(_) | Storage::InPlace { .. }))
            .map(|id| Size::bytes_of(g.ty(id)).unwrap_or(Size::ZERO))
            .sum()
    }

    /// The plan as text, sizes and offsets at batch size `batch`: every kernel with
    /// what it writes, then where every computed value lives.
    pub fn describe(&self, g: &Graph, batch: usize) -> String {
        let name = |id: ValueId| format!("%{}", g.name_of(id));
        let layout = self.layout(batch).ok();
        let buffer = |b: BufferId| {
            let size = self.buffers[b.0].size.at(batch).unwrap_or(u64::MAX);
            match &layout {
                Some(l) => format!("b{} [{}, +{size})", b.0, l.offsets[b.0]),
                None => format!("b{} (+{size})", b.0),
            }
        };
        let mut out = String::new();
        let _ = writeln!(out, "kernels: {}", self.kernels.len());
        for (i, k) in self.kernels.iter().enumerate() {
            let what = match &k.work {
                Work::Compute { leader, results } => {
                    let op = g.value(*leader).op.mnemonic();
                    let outs: Vec<String> = results.iter().map(|&r| name(r)).collect();
                    format!("{op} -> {}", if outs.is_empty() { "(scratch)".into() } else { outs.join(", ") })
                }
                Work::ColumnSum { value, leader } => {
                    let of = self
                        .kernels
                        .iter()
                        .position(|k| matches!(&k.work, Work::Compute { leader: l, .. } if l == leader));
                    format!("column sums of kernel {}'s gradient -> {}", of.unwrap_or(i), name(*value))
                }
                Work::Snapshot { value, into } => format!("snapshot {} -> b{}", name(*value), into.0),
                Work::Stage { leaf, from, into } => {
                    format!("stage {} (new {}) -> b{}", name(*from), name(*leaf), into.0)
                }
                Work::CopyUpdate { leaf, from } => {
                    let from = match from {
                        Place::Value(v) => name(*v),
                        Place::Buffer(b) => format!("b{}", b.0),
                    };
                    format!("copy {from} -> {}", name(*leaf))
                }
            };
            let scratch: Vec<String> = k.scratch.iter().map(|&b| buffer(b)).collect();
            let scratch = if scratch.is_empty() { String::new() } else { format!("; scratch {}", scratch.join(", ")) };
            let _ = writeln!(out, "  {i:>3} @{:<3} {what}{scratch}", k.step);
        }
        match &layout {
            Some(l) => {
                let _ = writeln!(out, "arena (N={batch}): {} bytes in {} buffers", l.total, self.buffers.len());
            }
            None => out += "arena: too large for this batch size\n",
        }
        for id in g.ids() {
            let what = match self.storage[id.index()] {
                Storage::Unused | Storage::Leaf => continue,
                Storage::Alias { of } => format!("alias of {}", name(of)),
                Storage::Buffer(b) => {
                    let reuse = self.reused.iter().find(|r| r.0 == id).map(|r| format!(" (over {})", name(r.1)));
                    format!("{}{}", buffer(b), reuse.unwrap_or_default())
                }
                Storage::InPlace { leaf } => format!("in place of {}", name(leaf)),
            };
            let _ = writeln!(out, "  {}: {what}", name(id));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scratch_lives_in_its_kernels_step() {
        let g = nnc_ir::parse(
            "graph g {\n  %x: f32[N,4] = input\n  %y: f32[N,4] = exp %x\n  %z: f32[N,4] = neg %y\n  return %z\n}\n",
        )
        .unwrap();
        let mut p = plan(&g);
        assert_eq!(p.kernels.len(), 2);
        let s = p.add_scratch(1, Size::fixed(100));
        assert_eq!((p.buffers[s.0].first, p.buffers[s.0].last), (1, 1));
        assert_eq!(p.kernels[1].scratch, [s]);
    }
}
