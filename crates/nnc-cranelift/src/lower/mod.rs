//! Graph + step plan → [`Program`]: one kernel description per kernel of the plan
//! (`nnc_opt::plan`, which decided the kernels, their order and where every value
//! lives), over the slots of the buffer table.
//!
//! ```text
//! verify ─► slots (inputs, parameters and state, constants, arena buffers)
//!        ─► a body per planned kernel (+ its scratch, added to the plan) ─► outputs
//! ```
//!
//! Slots `0..n` are the graph's values (an alias or an in-place result shares its
//! root's storage); scratch buffers, snapshots and stages get slots after them.

mod body;
mod conv;
mod matmul;

use crate::error::{BackendError, Unsupported};
use crate::program::*;
use nnc_ir::{Graph, Op, Size, ValueId};
use nnc_opt::plan::{BufferId, Place, StepPlan, Storage, Work};

pub(crate) const TWO_BATCH: &str = nnc_opt::plan::TWO_BATCH;

/// Lowers the verified `graph` by its `plan` (from `nnc_opt::plan`), adding the
/// kernels' scratch buffers to the plan.
pub(crate) fn lower(
    graph: &Graph,
    plan: StepPlan,
    family: &dyn crate::microkernel::KernelFamily,
) -> Result<Program, BackendError> {
    if plan.storage.len() != graph.len() {
        return Err(BackendError::InvalidGraph("internal: the step plan is of another graph".into()));
    }
    let mut l = Lowering::new(graph, plan);
    l.assign_slots();
    l.build_kernels(family);
    if !l.unsupported.is_empty() {
        return Err(BackendError::Unsupported(l.unsupported));
    }
    Ok(l.into_program())
}

pub(crate) struct Lowering<'g> {
    g: &'g Graph,
    plan: StepPlan,
    /// The storage behind each table slot; slots `0..n` are the graph's values.
    slots: Vec<Option<Slot>>,
    inputs: Vec<InputSpec>,
    leaves: Vec<LeafSpec>,
    consts: Vec<(ValueId, nnc_ir::Tensor)>,
    kernels: Vec<Kernel>,
    label_checks: Vec<(usize, u64, ValueId)>,
    unsupported: Vec<Unsupported>,
    /// The plan's kernel being lowered: scratch buffers are added to it.
    current: usize,
    /// `(leader, slot, type)`: where a fused kernel wrote the gradient its column-sum
    /// kernel reads.
    gradients: Vec<(ValueId, usize, nnc_ir::TensorType)>,
}

impl<'g> Lowering<'g> {
    fn new(g: &'g Graph, plan: StepPlan) -> Lowering<'g> {
        let mut unsupported = Vec::new();
        for &(id, reason) in &plan.refused {
            let v = g.value(id);
            unsupported.push(Unsupported { value: v.name.clone(), op: v.op.mnemonic(), reason: reason.into() });
        }
        Lowering {
            g,
            plan,
            slots: Vec::new(),
            inputs: Vec::new(),
            leaves: Vec::new(),
            consts: Vec::new(),
            kernels: Vec::new(),
            label_checks: Vec::new(),
            unsupported,
            current: 0,
            gradients: Vec::new(),
        }
    }

    fn refuse(&mut self, id: ValueId, reason: impl Into<String>) {
        let v = self.g.value(id);
        self.unsupported.push(Unsupported { value: v.name.clone(), op: v.op.mnemonic(), reason: reason.into() });
    }

    /// A new table slot for a new scratch buffer of the current kernel.
    fn scratch_slot(&mut self, bytes: Size) -> usize {
        let b = self.plan.add_scratch(self.current, bytes);
        self.buffer_slot(b)
    }

    /// A new table slot for arena buffer `b`.
    fn buffer_slot(&mut self, b: BufferId) -> usize {
        self.slots.push(Some(Slot::Arena(b)));
        self.slots.len() - 1
    }

    /// The input a value's bytes are (directly or through aliases), if any.
    fn input_index(&self, id: ValueId) -> Option<usize> {
        match self.slots[id.index()] {
            Some(Slot::Input(i)) => Some(i),
            _ => None,
        }
    }

    /// Every value's slot, in definition order: leaves get their own buffers (inputs,
    /// parameters and state, constants); the rest follow the plan.
    fn assign_slots(&mut self) {
        let g = self.g;
        for id in g.ids() {
            let v = g.value(id);
            let slot = match (self.plan.storage[id.index()], &v.op) {
                (Storage::Unused, _) => None,
                (Storage::Leaf, Op::Input) => {
                    self.inputs.push(InputSpec { value: id, name: v.name.clone(), ty: v.ty.clone() });
                    Some(Slot::Input(self.inputs.len() - 1))
                }
                (Storage::Leaf, Op::Param { init } | Op::State { init }) => {
                    let kind = if matches!(v.op, Op::Param { .. }) { "param" } else { "state" };
                    let spec = LeafSpec { value: id, name: v.name.clone(), kind, ty: v.ty.clone(), init: init.clone() };
                    self.leaves.push(spec);
                    Some(Slot::Leaf(self.leaves.len() - 1))
                }
                (Storage::Leaf, Op::Const(t)) => {
                    self.consts.push((id, t.clone()));
                    Some(Slot::Const(self.consts.len() - 1))
                }
                (Storage::Leaf, _) => None, // not produced by the planner
                (Storage::Alias { of }, _) => self.slots[of.index()],
                (Storage::InPlace { leaf }, _) => self.slots[leaf.index()],
                (Storage::Buffer(b), _) => Some(Slot::Arena(b)),
            };
            self.slots.push(slot);
        }
    }

    fn build_kernels(&mut self, family: &dyn crate::microkernel::KernelFamily) {
        let g = self.g;
        let copy = |out: Arr, src: Arr, elems: Size| {
            let nest = crate::shape::Nest::collapse(&[elems], &[vec![Size::ONE], vec![Size::ONE]]);
            Body::Elementwise(Elementwise { func: EwFunc::Copy, out, args: vec![src], nest })
        };
        let arr = |slot: usize, id: ValueId| Arr { slot, dtype: g.ty(id).dtype };
        let elems = |id: ValueId| Size::numel(&g.ty(id).shape).unwrap_or(Size::ZERO);
        for k in 0..self.plan.kernels.len() {
            self.current = k;
            let kernel = match self.plan.kernels[k].work.clone() {
                Work::Compute { leader, results } => {
                    let body = match &g.value(leader).op {
                        Op::Fused(f) => self.lower_fused(leader, f, &results, family),
                        _ => self.lower_value(leader, family),
                    };
                    match body {
                        Ok(body) => {
                            let name = format!("k{}_{}", leader.index(), body.family());
                            Kernel { name, value: results.first().copied().unwrap_or(leader), body }
                        }
                        Err(reason) => {
                            self.refuse(leader, reason);
                            continue;
                        }
                    }
                }
                Work::ColumnSum { leader, value } => {
                    let Some((_, grad, ty)) = self.gradients.iter().find(|(l, _, _)| *l == leader) else {
                        continue; // its fused kernel was refused
                    };
                    match body::column_sum(g, *grad, ty, value) {
                        Ok(body) => Kernel { name: format!("k{}_{}_1", leader.index(), body.family()), value, body },
                        Err(reason) => {
                            self.refuse(value, reason);
                            continue;
                        }
                    }
                }
                Work::Snapshot { value, into } => {
                    let snap = self.buffer_slot(into);
                    let body = copy(arr(snap, value), arr(value.index(), value), elems(value));
                    Kernel { name: format!("snapshot{}", value.index()), value, body }
                }
                Work::Stage { leaf, from, into } => {
                    let stage = self.buffer_slot(into);
                    let body = copy(arr(stage, leaf), arr(from.index(), leaf), elems(leaf));
                    Kernel { name: format!("stage{}", leaf.index()), value: leaf, body }
                }
                Work::CopyUpdate { leaf, from } => {
                    let from = match from {
                        Place::Value(v) => v.index(),
                        Place::Buffer(b) => self.slot_of_buffer(b),
                    };
                    let body = copy(arr(leaf.index(), leaf), arr(from, leaf), elems(leaf));
                    Kernel { name: format!("update{}", leaf.index()), value: leaf, body }
                }
            };
            self.kernels.push(kernel);
        }
    }

    /// The slot made for buffer `b` (a snapshot or a stage, made by its kernel).
    fn slot_of_buffer(&self, b: BufferId) -> usize {
        let n = self.g.len();
        n + self.slots[n..].iter().position(|s| *s == Some(Slot::Arena(b))).expect("made by an earlier kernel")
    }

    fn into_program(self) -> Program {
        let g = self.g;
        let outputs = g
            .outputs()
            .iter()
            .zip(&self.plan.outputs)
            .map(|(&o, place)| {
                let slot = match *place {
                    Place::Value(v) => v.index(),
                    Place::Buffer(b) => self.slot_of_buffer(b),
                };
                OutputSpec { slot, ty: g.ty(o).clone() }
            })
            .collect();
        let status_slot = self.slots.len();
        Program {
            kernels: self.kernels,
            plan: self.plan,
            slots: self.slots,
            names: g.values().iter().map(|v| (v.name.clone(), v.op.mnemonic())).collect(),
            inputs: self.inputs,
            leaves: self.leaves,
            consts: self.consts,
            outputs,
            status_slot,
            label_checks: self.label_checks,
        }
    }
}
