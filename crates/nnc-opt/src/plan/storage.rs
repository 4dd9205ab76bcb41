//! Building a [`StepPlan`]: the kernels, then the storage decisions in the order the
//! module documentation gives, then buffer lifetimes.
//!
//! Storages are leaves or arena buffers; every value that has bytes maps to one.
//! Decisions that merge two storages (an update in place, a reused operand) point
//! every value of the one at the other.

use super::{
    is_alias, is_column_sum, Buffer, BufferId, BufferUse, Kernel, Place, StepPlan, Storage, Work, BATCHED_LEAF,
    TWO_BATCH,
};
use nnc_ir::{Graph, Op, Size, Value, ValueId};

#[derive(Clone, Copy)]
enum Kind {
    /// A leaf's own buffer.
    Leaf(ValueId),
    /// An arena buffer made for `creator`'s result.
    Arena { creator: ValueId, size: Size },
    /// An arena buffer merged into another storage: no longer used.
    Merged,
}

/// A read of a storage's current contents, in `step`, by the kernel of `reader`
/// (`None`: the host, after the step), which may write its result over the element it
/// reads (`in_place`).
#[derive(Clone, Copy)]
struct Read {
    step: usize,
    reader: Option<ValueId>,
    operand: ValueId,
    in_place: bool,
}

pub(super) struct Planner<'g> {
    g: &'g Graph,
    needed: Vec<bool>,
    leader: Vec<ValueId>,
    /// The step of each leader's kernel.
    step_of: Vec<usize>,
    /// Compute steps; the copies come after.
    steps: usize,
    storages: Vec<Kind>,
    /// The storage of each value, if it has bytes.
    slot: Vec<Option<usize>>,
    /// The values of each storage (the inverse of `slot`), so a merge touches only them.
    members: Vec<Vec<ValueId>>,
    refused: Vec<(ValueId, &'static str)>,
    /// `(leaf storage, leaf, new value)` of the updates done by copying.
    copies: Vec<(usize, ValueId, ValueId)>,
    reused: Vec<(ValueId, ValueId)>,
}

/// Ops whose kernel reads every operand at the output's own index (same-shape
/// operands only), so the output may overwrite such an operand's buffer.
fn reads_in_place(v: &Value) -> bool {
    matches!(v.op, Op::Unary(_) | Op::Binary(_) | Op::Where | Op::Cast { .. })
}

/// Whether operand `pos` of `v` is read only at the position of the element being
/// written (same-shape operands of elementwise ops; see `FusedOp::reads_elementwise`).
fn reads_in_place_at(g: &Graph, v: &Value, pos: usize) -> bool {
    match &v.op {
        Op::Fused(f) => f.reads_elementwise(pos),
        _ => reads_in_place(v) && g.ty(v.args[pos]).shape == v.ty.shape,
    }
}

impl<'g> Planner<'g> {
    pub(super) fn new(g: &'g Graph, needed: Vec<bool>, leader: Vec<ValueId>) -> Planner<'g> {
        Planner {
            g,
            needed,
            leader,
            step_of: vec![usize::MAX; g.len()],
            steps: 0,
            storages: Vec::new(),
            slot: vec![None; g.len()],
            members: Vec::new(),
            refused: Vec::new(),
            copies: Vec::new(),
            reused: Vec::new(),
        }
    }

    pub(super) fn run(mut self) -> StepPlan {
        self.assign_storage();
        self.number_steps();
        self.place_updates_in_place();
        self.reuse_dying_operands();
        self.finish()
    }

    /// Whether `id` is computed by a kernel (needed, not a leaf or an alias).
    fn computed(&self, id: ValueId) -> bool {
        let v = self.g.value(id);
        self.needed[id.index()] && !v.op.is_leaf() && !is_alias(self.g, id)
    }

    /// Whether `id`'s kernel exists: it is computed, and it and its operands have bytes.
    fn has_kernel(&self, id: ValueId) -> bool {
        self.computed(id)
            && self.slot[id.index()].is_some()
            && self.g.value(id).args.iter().all(|a| self.slot[a.index()].is_some())
    }

    fn assign_storage(&mut self) {
        let g = self.g;
        for id in g.ids() {
            let v = g.value(id);
            let leaf = v.op.is_leaf();
            if !leaf && !self.needed[id.index()] {
                continue;
            }
            let Some(size) = Size::bytes_of(&v.ty) else {
                self.refused.push((id, TWO_BATCH));
                continue;
            };
            let storage = match &v.op {
                Op::Input => self.new_storage(Kind::Leaf(id)),
                Op::Param { .. } | Op::State { .. } if v.ty.shape.has_batch() => {
                    self.refused.push((id, BATCHED_LEAF));
                    continue;
                }
                Op::Param { .. } | Op::State { .. } => self.new_storage(Kind::Leaf(id)),
                Op::Const(_) if !self.needed[id.index()] => continue,
                Op::Const(_) => self.new_storage(Kind::Leaf(id)),
                _ if is_alias(g, id) => match self.slot[v.args[0].index()] {
                    Some(s) => s,
                    None => continue, // the operand was refused
                },
                _ => self.new_storage(Kind::Arena { creator: id, size }),
            };
            self.slot[id.index()] = Some(storage);
            self.members[storage].push(id);
        }
    }

    fn new_storage(&mut self, kind: Kind) -> usize {
        self.storages.push(kind);
        self.members.push(Vec::new());
        self.storages.len() - 1
    }

    /// One step per kernel group, in the order of the leaders.
    fn number_steps(&mut self) {
        for id in self.g.ids() {
            if self.has_kernel(id) && self.leader[id.index()] == id {
                self.step_of[id.index()] = self.steps;
                self.steps += 1;
            }
        }
    }

    fn step(&self, id: ValueId) -> usize {
        self.step_of[self.leader[id.index()].index()]
    }

    fn is_arena(&self, s: usize) -> bool {
        matches!(self.storages[s], Kind::Arena { .. })
    }

    fn creator(&self, s: usize) -> Option<ValueId> {
        match self.storages[s] {
            Kind::Arena { creator, .. } => Some(creator),
            _ => None,
        }
    }

    /// Points every value of storage `from` at storage `to`.
    fn merge(&mut self, from: usize, to: usize) {
        let moved = std::mem::take(&mut self.members[from]);
        for &id in &moved {
            self.slot[id.index()] = Some(to);
        }
        self.members[to].extend(moved);
        self.storages[from] = Kind::Merged;
    }

    /// Reads of each storage's current contents, by kernels and, after the step, by the
    /// host (outputs and update sources).
    fn reads(&self) -> Vec<Vec<Read>> {
        let g = self.g;
        let mut reads = vec![Vec::new(); self.storages.len()];
        for id in g.ids() {
            if !self.computed(id) {
                continue;
            }
            let v = g.value(id);
            let leader = self.leader[id.index()];
            for (pos, &a) in v.args.iter().enumerate() {
                if let Some(s) = self.slot[a.index()] {
                    let in_place =
                        reads_in_place_at(g, v, pos) && g.ty(a).dtype.size_bytes() == v.ty.dtype.size_bytes();
                    reads[s].push(Read { step: self.step(id), reader: Some(leader), operand: a, in_place });
                }
            }
        }
        let end = self.steps + 3;
        for &o in g.outputs().iter().chain(g.updates().iter().map(|(_, new)| new)) {
            if let Some(s) = self.slot[o.index()] {
                reads[s].push(Read { step: end, reader: None, operand: o, in_place: false });
            }
        }
        reads
    }

    /// Writes an update's new value straight into the leaf's buffer when nothing reads
    /// the old value afterwards; the rest become copies at the end of the step.
    fn place_updates_in_place(&mut self) {
        let g = self.g;
        let reads = self.reads();
        for &(leaf, new) in g.updates() {
            let (Some(l), Some(s)) = (self.slot[leaf.index()], self.slot[new.index()]) else { continue };
            if l == s {
                continue; // `p ← p`: nothing to do
            }
            let leader = self.leader[new.index()];
            let t = self.step(new);
            let creates = self.creator(s) == Some(new);
            let legal = creates
                && reads[l].iter().all(|r| r.step < t || (r.step == t && r.reader == Some(leader) && r.in_place));
            if legal {
                self.merge(s, l);
            } else {
                self.copies.push((l, leaf, new));
            }
        }
    }

    /// An elementwise value may take over the arena buffer of a same-shape operand
    /// whose last read is this op, which shrinks the arena and the memory the step
    /// touches.
    fn reuse_dying_operands(&mut self) {
        let g = self.g;
        // Kept up to date across merges (a merge moves the reads of one storage to the
        // other), so the pass stays linear in the graph.
        let mut reads = self.reads();
        for id in g.ids() {
            let v = g.value(id);
            if !self.computed(id) || !reads_in_place(v) {
                continue;
            }
            let Some(own) = self.slot[id.index()] else { continue };
            if self.creator(own) != Some(id) {
                continue; // already written in place into a parameter
            }
            let same_layout =
                |x: ValueId| g.ty(x).shape == v.ty.shape && g.ty(x).dtype.size_bytes() == v.ty.dtype.size_bytes();
            let t = self.step(id);
            let target = v.args.iter().filter(|&&a| same_layout(a)).find_map(|&a| {
                let s = self.slot[a.index()]?;
                let dies_here = reads[s]
                    .iter()
                    .all(|r| r.step < t || (r.step == t && r.reader == Some(id) && same_layout(r.operand)));
                (s != own && self.is_arena(s) && dies_here).then_some((s, a))
            });
            if let Some((s, a)) = target {
                self.merge(own, s);
                let moved = std::mem::take(&mut reads[own]);
                reads[s].extend(moved);
                self.reused.push((id, a));
            }
        }
    }

    /// The kernels, the copies the updates need, the public storage and the buffers'
    /// lifetimes.
    fn finish(mut self) -> StepPlan {
        let g = self.g;
        // The needed members of each kernel group, by leader, in definition order.
        let mut groups: Vec<Vec<ValueId>> = vec![Vec::new(); g.len()];
        for id in g.ids().filter(|id| self.needed[id.index()]) {
            groups[self.leader[id.index()].index()].push(id);
        }
        let mut kernels = Vec::new();
        for id in g.ids() {
            if !self.has_kernel(id) || self.leader[id.index()] != id {
                continue;
            }
            let step = self.step_of[id.index()];
            let group = std::mem::take(&mut groups[id.index()]);
            let column_sum = |s: ValueId| matches!(&g.value(s).op, Op::Fused(f) if is_column_sum(f));
            let results = group.iter().copied().filter(|&s| !column_sum(s)).collect();
            kernels.push(Kernel { step, work: Work::Compute { leader: id, results }, scratch: Vec::new() });
            for &s in group.iter().filter(|&&s| column_sum(s)) {
                kernels.push(Kernel { step, work: Work::ColumnSum { leader: id, value: s }, scratch: Vec::new() });
            }
        }

        // Arena buffers of the storages still in use, in the order they were made.
        let mut buffer_of = vec![None; self.storages.len()];
        let mut buffers = Vec::new();
        for (s, kind) in self.storages.iter().enumerate() {
            if let Kind::Arena { creator, size } = *kind {
                buffer_of[s] = Some(BufferId(buffers.len()));
                buffers.push(Buffer { size, first: usize::MAX, last: 0, used_by: BufferUse::Value(creator) });
            }
        }

        // Snapshots of outputs whose bytes an update copy overwrites, then the update
        // copies (staged when the source is itself overwritten).
        let (snapshot_step, stage_step, copy_step, end) = (self.steps, self.steps + 1, self.steps + 2, self.steps + 3);
        let copy_targets: Vec<usize> = self.copies.iter().map(|c| c.0).collect();
        let bytes = |id: ValueId| Size::bytes_of(g.ty(id)).unwrap_or(Size::ZERO);
        let mut outputs = Vec::new();
        for &o in g.outputs() {
            let place = match self.slot[o.index()] {
                Some(s) if copy_targets.contains(&s) => {
                    let into = BufferId(buffers.len());
                    buffers.push(Buffer {
                        size: bytes(o),
                        first: usize::MAX,
                        last: 0,
                        used_by: BufferUse::Snapshot(o),
                    });
                    kernels.push(Kernel {
                        step: snapshot_step,
                        work: Work::Snapshot { value: o, into },
                        scratch: Vec::new(),
                    });
                    Place::Buffer(into)
                }
                _ => Place::Value(o),
            };
            outputs.push(place);
        }
        let mut copies = Vec::new();
        for &(_, leaf, new) in &self.copies {
            let from = match self.slot[new.index()] {
                Some(s) if copy_targets.contains(&s) => {
                    let into = BufferId(buffers.len());
                    buffers.push(Buffer {
                        size: bytes(leaf),
                        first: usize::MAX,
                        last: 0,
                        used_by: BufferUse::Stage(leaf),
                    });
                    kernels.push(Kernel {
                        step: stage_step,
                        work: Work::Stage { leaf, from: new, into },
                        scratch: Vec::new(),
                    });
                    Place::Buffer(into)
                }
                _ => Place::Value(new),
            };
            copies.push(Kernel { step: copy_step, work: Work::CopyUpdate { leaf, from }, scratch: Vec::new() });
        }
        kernels.extend(copies);

        // Public storage of every value.
        let storage: Vec<Storage> = g
            .ids()
            .map(|id| {
                let Some(s) = self.slot[id.index()] else { return Storage::Unused };
                if g.value(id).op.is_leaf() {
                    return Storage::Leaf;
                }
                if is_alias(g, id) {
                    let mut root = id;
                    while is_alias(g, root) {
                        root = g.value(root).args[0];
                    }
                    return Storage::Alias { of: root };
                }
                match (self.storages[s], buffer_of[s]) {
                    (Kind::Leaf(leaf), _) => Storage::InPlace { leaf },
                    (_, Some(b)) => Storage::Buffer(b),
                    (_, None) => Storage::Unused,
                }
            })
            .collect();

        let mut plan = StepPlan {
            kernels,
            storage,
            buffers,
            outputs,
            copied_updates: self.copies.iter().map(|&(_, leaf, new)| (leaf, new)).collect(),
            reused: std::mem::take(&mut self.reused),
            refused: std::mem::take(&mut self.refused),
            end,
        };
        plan.set_lifetimes(g);
        plan
    }
}

impl StepPlan {
    /// Buffer lifetimes from the kernels that touch them; outputs live to the end.
    fn set_lifetimes(&mut self, g: &Graph) {
        let touch = |buffers: &mut Vec<Buffer>, b: BufferId, step: usize| {
            let buf = &mut buffers[b.0];
            buf.first = buf.first.min(step);
            buf.last = buf.last.max(step);
        };
        let buffer = |storage: &[Storage], id: ValueId| {
            let mut s = storage[id.index()];
            while let Storage::Alias { of } = s {
                s = storage[of.index()];
            }
            match s {
                Storage::Buffer(b) => Some(b),
                _ => None,
            }
        };
        for k in &self.kernels {
            let mut values: Vec<ValueId> = Vec::new();
            let mut own: Vec<BufferId> = Vec::new();
            match &k.work {
                Work::Compute { leader, results } => {
                    values.extend(&g.value(*leader).args);
                    values.extend(results);
                }
                Work::ColumnSum { leader, value } => {
                    // The gradient it sums is a result of the group (or scratch).
                    values.push(*value);
                    values.extend(gradient_of(g, &self.storage, *leader));
                }
                Work::Snapshot { value, into } => {
                    values.push(*value);
                    own.push(*into);
                }
                Work::Stage { from, into, .. } => {
                    values.push(*from);
                    own.push(*into);
                }
                Work::CopyUpdate { leaf, from } => {
                    values.push(*leaf);
                    match from {
                        Place::Value(v) => values.push(*v),
                        Place::Buffer(b) => own.push(*b),
                    }
                }
            }
            for v in values {
                if let Some(b) = buffer(&self.storage, v) {
                    touch(&mut self.buffers, b, k.step);
                }
            }
            for b in own {
                touch(&mut self.buffers, b, k.step);
            }
        }
        for &o in &self.outputs {
            let b = match o {
                Place::Value(v) => buffer(&self.storage, v),
                Place::Buffer(b) => Some(b),
            };
            if let Some(b) = b {
                self.buffers[b.0].last = self.end;
            }
        }
        // A buffer no kernel touches (of a value whose kernel was refused) is live
        // for the whole step, so it can never overlap another.
        for b in &mut self.buffers {
            if b.first > b.last {
                (b.first, b.last) = (0, self.end);
            }
        }
    }
}

/// The gradient result of `leader`'s fused group, if a value of the group is it and
/// has bytes (else the column sum reads the backend's scratch).
fn gradient_of(g: &Graph, storage: &[Storage], leader: ValueId) -> Option<ValueId> {
    let Op::Fused(f) = &g.value(leader).op else { return None };
    let grad = match *f {
        nnc_ir::FusedOp::DenseReluGrad { trans_a, trans_b, .. } => {
            nnc_ir::FusedOp::DenseReluGrad { trans_a, trans_b, out: nnc_ir::GradOut::Grad }
        }
        nnc_ir::FusedOp::SoftmaxCrossEntropy { .. } => {
            nnc_ir::FusedOp::SoftmaxCrossEntropy { out: nnc_ir::CeOut::Grad }
        }
        _ => return None,
    };
    let args = &g.value(leader).args;
    g.ids().find(|&s| {
        let v = g.value(s);
        matches!(&v.op, Op::Fused(sf) if *sf == grad) && v.args == *args && storage[s.index()] != Storage::Unused
    })
}
