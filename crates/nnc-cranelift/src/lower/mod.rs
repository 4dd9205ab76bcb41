//! Graph → [`Program`]: which values are computed, which only alias, where every
//! buffer lives, and one kernel description per computed value.
//!
//! ```text
//! verify ─► needed values ─► storages (leaves, aliases, arena) ─► in-place updates
//!        ─► kernels per value ─► update copies / snapshots ─► arena lifetimes
//! ```
//!
//! Time is the value index: the kernel of value `v` runs at time `v`; output snapshots,
//! staging copies and update copies run at `n`, `n+1`, `n+2`, and the host reads the
//! outputs at `n+3`.

use crate::error::{BackendError, Unsupported};
use crate::kernels::elementwise;
use crate::microkernel::{GemmShape, MicroKernelProvider};
use crate::plan::{MemoryPlan, Storage, StorageKind};
use crate::program::*;
use crate::shape::{broadcast_strides, dims, strides, Nest};
use nnc_ir::Size;
use nnc_ir::{CeOut, DType, FusedOp, GradOut, Graph, Op, ReduceOp, Shape, UnaryOp, UpdateOut, Value, ValueId};

const TWO_BATCH: &str = "sizes with more than one batch dimension (N²) are not supported";

pub(crate) fn lower(graph: &Graph, provider: &dyn MicroKernelProvider) -> Result<Program, BackendError> {
    nnc_ir::verify(graph).map_err(|e| BackendError::InvalidGraph(e.to_string()))?;
    let mut l = Lowering::new(graph);
    l.assign_storage();
    l.place_updates_in_place();
    l.reuse_dying_operands();
    l.build_kernels(provider);
    if !l.unsupported.is_empty() {
        return Err(BackendError::Unsupported(l.unsupported));
    }
    l.finish_updates_and_outputs();
    Ok(l.into_program())
}

struct Lowering<'g> {
    g: &'g Graph,
    n: usize,
    needed: Vec<bool>,
    /// The value whose kernel computes each value: itself, or for a result of a fused
    /// kernel with several results (siblings, see `nnc_ir::FusedOp::kernel`), the
    /// first needed sibling. Kernel time is the leader's index.
    leader: Vec<ValueId>,
    unsupported: Vec<Unsupported>,
    storages: Vec<Storage>,
    /// Storage per table slot; slots `0..n` are the graph's values.
    slot_storage: Vec<Option<usize>>,
    /// The value whose kernel creates an arena storage.
    creator: Vec<Option<ValueId>>,
    inputs: Vec<InputSpec>,
    leaves: Vec<LeafSpec>,
    consts: Vec<(ValueId, nnc_ir::Tensor)>,
    /// `(leaf storage, source slot)` for updates done by copying at the end.
    copies: Vec<(usize, ValueId, usize)>,
    /// `(kernel, time)` in execution order.
    kernels: Vec<(Kernel, usize)>,
    outputs: Vec<OutputSpec>,
    label_checks: Vec<(usize, u64, ValueId)>,
}

/// Whether a value shares its operand's buffer instead of being computed.
fn is_alias(g: &Graph, v: &Value) -> bool {
    match &v.op {
        Op::Reshape { .. } | Op::Unary(UnaryOp::Identity) => true,
        Op::Cast { to } => *to == g.ty(v.args[0]).dtype,
        Op::Broadcast { shape } => *shape == g.ty(v.args[0]).shape,
        Op::Transpose { perm } => perm.iter().enumerate().all(|(i, &p)| i == p),
        _ => false,
    }
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

/// A read of a storage's current contents: at kernel `time`, by the kernel of
/// `reader` (`None`: the host, after the step), which may write its result over the
/// element it reads (`in_place`).
#[derive(Clone, Copy)]
struct Read {
    time: usize,
    reader: Option<ValueId>,
    operand: ValueId,
    in_place: bool,
}

/// Each value's leader (see `Lowering::leader`).
fn leaders(g: &Graph, needed: &[bool]) -> Vec<ValueId> {
    let mut groups: Vec<(nnc_ir::FusedOp, &[ValueId], ValueId)> = Vec::new();
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

impl<'g> Lowering<'g> {
    fn new(g: &'g Graph) -> Lowering<'g> {
        let n = g.len();
        // Values the outputs and updates depend on; everything else is dead code.
        let mut needed = vec![false; n];
        for &o in g.outputs() {
            needed[o.index()] = true;
        }
        for &(_, new) in g.updates() {
            needed[new.index()] = true;
        }
        for id in (0..n).rev() {
            if needed[id] {
                for a in &g.values()[id].args {
                    needed[a.index()] = true;
                }
            }
        }
        Lowering {
            g,
            n,
            leader: leaders(g, &needed),
            needed,
            unsupported: Vec::new(),
            storages: Vec::new(),
            slot_storage: vec![None; n],
            creator: Vec::new(),
            inputs: Vec::new(),
            leaves: Vec::new(),
            consts: Vec::new(),
            copies: Vec::new(),
            kernels: Vec::new(),
            outputs: Vec::new(),
            label_checks: Vec::new(),
        }
    }

    fn refuse(&mut self, id: ValueId, reason: impl Into<String>) {
        let v = self.g.value(id);
        self.unsupported.push(Unsupported { value: v.name.clone(), op: v.op.mnemonic(), reason: reason.into() });
    }

    fn new_storage(&mut self, kind: StorageKind, bytes: Size, creator: Option<ValueId>) -> usize {
        self.storages.push(Storage { kind, bytes });
        self.creator.push(creator);
        self.storages.len() - 1
    }

    /// A new table slot backed by a new arena storage.
    fn scratch_slot(&mut self, bytes: Size) -> usize {
        let s = self.new_storage(StorageKind::Arena { first: usize::MAX, last: 0 }, bytes, None);
        self.slot_storage.push(Some(s));
        self.slot_storage.len() - 1
    }

    fn storage(&self, id: ValueId) -> Option<usize> {
        self.slot_storage[id.index()]
    }

    fn assign_storage(&mut self) {
        let g = self.g;
        for id in g.ids() {
            let v = g.value(id);
            let leaf = v.op.is_leaf();
            if !leaf && !self.needed[id.index()] {
                continue;
            }
            let Some(bytes) = Size::bytes_of(&v.ty) else {
                self.refuse(id, TWO_BATCH);
                continue;
            };
            let storage = match &v.op {
                Op::Input => {
                    self.inputs.push(InputSpec { value: id, name: v.name.clone(), ty: v.ty.clone() });
                    self.new_storage(StorageKind::Input(self.inputs.len() - 1), bytes, None)
                }
                Op::Param { init } | Op::State { init } => {
                    if v.ty.shape.has_batch() {
                        self.refuse(
                            id,
                            "a parameter or state needs a static shape (its buffer is owned by the compiled step)",
                        );
                        continue;
                    }
                    let kind = if matches!(v.op, Op::Param { .. }) { "param" } else { "state" };
                    self.leaves.push(LeafSpec {
                        value: id,
                        name: v.name.clone(),
                        kind,
                        ty: v.ty.clone(),
                        init: init.clone(),
                    });
                    self.new_storage(StorageKind::Leaf(self.leaves.len() - 1), bytes, None)
                }
                Op::Const(t) => {
                    if !self.needed[id.index()] {
                        continue;
                    }
                    self.consts.push((id, t.clone()));
                    self.new_storage(StorageKind::Const(self.consts.len() - 1), bytes, None)
                }
                _ if is_alias(g, v) => match self.storage(v.args[0]) {
                    Some(s) => s,
                    None => continue, // the operand was refused
                },
                _ => self.new_storage(StorageKind::Arena { first: usize::MAX, last: 0 }, bytes, Some(id)),
            };
            self.slot_storage[id.index()] = Some(storage);
        }
    }

    /// Reads of each storage's *current* contents, by kernels and, at the end of the
    /// step, by the host (outputs and update sources).
    fn reads(&self) -> Vec<Vec<Read>> {
        let g = self.g;
        let mut reads = vec![Vec::new(); self.storages.len()];
        for id in g.ids() {
            let v = g.value(id);
            if !self.needed[id.index()] || v.op.is_leaf() || is_alias(g, v) {
                continue;
            }
            let leader = self.leader[id.index()];
            for (pos, &a) in v.args.iter().enumerate() {
                if let Some(s) = self.storage(a) {
                    let in_place =
                        reads_in_place_at(g, v, pos) && g.ty(a).dtype.size_bytes() == v.ty.dtype.size_bytes();
                    reads[s].push(Read { time: leader.index(), reader: Some(leader), operand: a, in_place });
                }
            }
        }
        let end = self.n + 3;
        for &o in g.outputs().iter().chain(g.updates().iter().map(|(_, new)| new)) {
            if let Some(s) = self.storage(o) {
                reads[s].push(Read { time: end, reader: None, operand: o, in_place: false });
            }
        }
        reads
    }

    /// Writes an update's new value straight into the parameter's buffer when nothing
    /// reads the old value afterwards; the rest become copies at the end of the step.
    fn place_updates_in_place(&mut self) {
        let g = self.g;
        let reads = self.reads();
        for &(leaf, new) in g.updates() {
            let (Some(l), Some(s)) = (self.storage(leaf), self.storage(new)) else { continue };
            if l == s {
                continue; // `p ← p`: nothing to do
            }
            let leader = self.leader[new.index()];
            let t = leader.index();
            let creates = matches!(self.storages[s].kind, StorageKind::Arena { .. }) && self.creator[s] == Some(new);
            let legal = creates
                && reads[l].iter().all(|r| r.time < t || (r.time == t && r.reader == Some(leader) && r.in_place));
            if legal {
                for slot in self.slot_storage.iter_mut() {
                    if *slot == Some(s) {
                        *slot = Some(l);
                    }
                }
                // The arena storage is gone; an empty interval keeps it out of the layout.
                self.storages[s].bytes = Size::ZERO;
            } else {
                self.copies.push((l, leaf, new.index()));
            }
        }
    }

    /// An elementwise value may take over the arena buffer of a same-shape operand
    /// whose last read is this op (`p - lr·g` reuses the buffer of `lr·g`), which
    /// shrinks the arena and the memory the step touches.
    fn reuse_dying_operands(&mut self) {
        let g = self.g;
        for id in g.ids() {
            let v = g.value(id);
            if !self.needed[id.index()] || v.op.is_leaf() || is_alias(g, v) || !reads_in_place(v) {
                continue;
            }
            let Some(own) = self.storage(id) else { continue };
            if !matches!(self.storages[own].kind, StorageKind::Arena { .. }) || self.creator[own] != Some(id) {
                continue; // already written in place into a parameter
            }
            let same_layout =
                |x: ValueId| g.ty(x).shape == v.ty.shape && g.ty(x).dtype.size_bytes() == v.ty.dtype.size_bytes();
            let reads = self.reads();
            let t = id.index();
            let target = v.args.iter().filter(|&&a| same_layout(a)).find_map(|&a| {
                let s = self.storage(a)?;
                let dies_here = reads[s]
                    .iter()
                    .all(|r| r.time < t || (r.time == t && r.reader == Some(id) && same_layout(r.operand)));
                (s != own && matches!(self.storages[s].kind, StorageKind::Arena { .. }) && dies_here).then_some(s)
            });
            if let Some(s) = target {
                for slot in self.slot_storage.iter_mut() {
                    if *slot == Some(own) {
                        *slot = Some(s);
                    }
                }
                self.storages[own].bytes = Size::ZERO;
            }
        }
    }

    fn build_kernels(&mut self, provider: &dyn MicroKernelProvider) {
        let g = self.g;
        for id in g.ids() {
            let v = g.value(id);
            if !self.needed[id.index()] || v.op.is_leaf() || is_alias(g, v) || self.storage(id).is_none() {
                continue;
            }
            if v.args.iter().any(|&a| self.storage(a).is_none()) {
                continue; // an operand was refused; it is already reported
            }
            if let Op::Fused(f) = &v.op {
                if self.leader[id.index()] != id {
                    continue; // computed by its leader's kernel
                }
                match self.lower_fused(id, f, provider) {
                    Ok(bodies) => {
                        for (j, (value, body)) in bodies.into_iter().enumerate() {
                            let suffix = if j == 0 { String::new() } else { format!("_{j}") };
                            let name = format!("k{}_{}{suffix}", id.index(), body.family());
                            self.kernels.push((Kernel { name, value, body }, id.index()));
                        }
                    }
                    Err(reason) => self.refuse(id, reason),
                }
                continue;
            }
            match self.lower_value(id, provider) {
                Ok(body) => {
                    let name = format!("k{}_{}", id.index(), body.family());
                    self.kernels.push((Kernel { name, value: id, body }, id.index()));
                }
                Err(reason) => self.refuse(id, reason),
            }
        }
    }

    fn lower_value(&mut self, id: ValueId, provider: &dyn MicroKernelProvider) -> Result<Body, String> {
        let g = self.g;
        let v = g.value(id);
        let arr = |a: ValueId| Arr { slot: a.index(), dtype: g.ty(a).dtype };
        let out = arr(id);
        let func = match &v.op {
            Op::Unary(u) => EwFunc::Unary(*u),
            Op::Binary(b) => EwFunc::Binary(*b),
            Op::Where => EwFunc::Where,
            Op::Cast { .. } => EwFunc::Cast,
            Op::Broadcast { .. } => EwFunc::Copy,
            Op::Transpose { perm } => {
                let x = v.args[0];
                let sx = strides(&dims(&g.ty(x).shape)).ok_or(TWO_BATCH)?;
                let od = dims(&v.ty.shape);
                let so = strides(&od).ok_or(TWO_BATCH)?;
                let read: Vec<Size> = perm.iter().map(|&p| sx[p]).collect();
                let nest = Nest::collapse(&od, &[so, read]);
                return Ok(Body::Elementwise(Elementwise { func: EwFunc::Copy, out, args: vec![arr(x)], nest }));
            }
            Op::MatMul { trans_a, trans_b } => {
                let operands = (v.args[0], v.args[1]);
                return self
                    .lower_matmul(operands, (id.index(), &v.ty.shape), (*trans_a, *trans_b), provider)
                    .map(Body::MatMul);
            }
            Op::Softmax { axis } | Op::LogSoftmax { axis } => {
                let d = dims(&v.ty.shape);
                let prod = |s: &[Size]| s.iter().try_fold(Size::ONE, |acc, &x| acc.checked_mul(x)).ok_or(TWO_BATCH);
                return Ok(Body::Softmax(Softmax {
                    log: matches!(v.op, Op::LogSoftmax { .. }),
                    x: arr(v.args[0]),
                    out,
                    outer: prod(&d[..*axis])?,
                    len: d[*axis],
                    inner: prod(&d[*axis + 1..])?,
                }));
            }
            Op::Reduce { op, axes, keep_dims } => {
                let x = v.args[0];
                let dx = dims(&g.ty(x).shape);
                let sx = strides(&dx).ok_or(TWO_BATCH)?;
                let so = strides(&dims(&v.ty.shape)).ok_or(TWO_BATCH)?;
                let mut out_map = Vec::with_capacity(dx.len());
                let mut j = 0;
                for i in 0..dx.len() {
                    if axes.contains(&i) {
                        out_map.push(Size::ZERO);
                        if *keep_dims {
                            j += 1;
                        }
                    } else {
                        out_map.push(so[j]);
                        j += 1;
                    }
                }
                let count = axes.iter().try_fold(Size::ONE, |acc, &a| acc.checked_mul(dx[a])).ok_or(TWO_BATCH)?;
                return Ok(Body::Reduce(Reduce {
                    op: *op,
                    input: arr(x),
                    out,
                    nest: Nest::collapse(&dx, &[out_map, sx]),
                    out_numel: Size::numel(&v.ty.shape).ok_or(TWO_BATCH)?,
                    count,
                }));
            }
            Op::OneHot { depth } => {
                let x = v.args[0];
                if let Some(s) = self.storage(x) {
                    if let StorageKind::Input(i) = self.storages[s].kind {
                        self.label_checks.push((i, *depth as u64, id));
                    }
                }
                return Ok(Body::OneHot(OneHot {
                    idx: arr(x),
                    out,
                    rows: Size::numel(&g.ty(x).shape).ok_or(TWO_BATCH)?,
                    depth: *depth as u64,
                }));
            }
            // Leaves and aliases have no kernel; fused ops go through `lower_fused`.
            Op::Input | Op::Param { .. } | Op::State { .. } | Op::Const(_) | Op::Reshape { .. } | Op::Fused(_) => {
                return Err("internal: this value has no kernel of its own".into());
            }
        };
        // Elementwise with numpy broadcasting by strides.
        let od = dims(&v.ty.shape);
        let mut all = vec![strides(&od).ok_or(TWO_BATCH)?];
        for &a in &v.args {
            all.push(broadcast_strides(&g.ty(a).shape, od.len()).ok_or(TWO_BATCH)?);
        }
        let args: Vec<Arr> = v.args.iter().map(|&a| arr(a)).collect();
        let dtypes: Vec<DType> = args.iter().map(|a| a.dtype).collect();
        if !elementwise::supported(func, &dtypes, out.dtype) {
            return Err(format!("no kernel for these operand types ({dtypes:?} → {})", out.dtype));
        }
        Ok(Body::Elementwise(Elementwise { func, out, args, nest: Nest::collapse(&od, &all) }))
    }

    /// The kernels of a fused op's sibling group, led by `id`: the group kernel, then
    /// a column-sum reduction per needed column-sum result. Each body comes with the
    /// value its errors are reported against.
    fn lower_fused(
        &mut self,
        id: ValueId,
        f: &FusedOp,
        provider: &dyn MicroKernelProvider,
    ) -> Result<Vec<(ValueId, Body)>, String> {
        let g = self.g;
        let v = g.value(id);
        let args = v.args.clone();
        // The needed results of the group, by op.
        let siblings: Vec<(ValueId, FusedOp)> = g
            .ids()
            .filter(|s| self.needed[s.index()] && self.leader[s.index()] == id)
            .filter_map(|s| match &g.value(s).op {
                Op::Fused(f) => Some((s, *f)),
                _ => None,
            })
            .collect();
        let result = |want: FusedOp| siblings.iter().find(|(_, f)| *f == want).map(|&(s, _)| s);
        // A buffer of `ty` for a result: the sibling's own, or scratch when nothing
        // needs that result but the kernel still produces it.
        let buffer = |l: &mut Self, sibling: Option<ValueId>, ty: &nnc_ir::TensorType| -> Result<usize, String> {
            match sibling {
                Some(s) => Ok(s.index()),
                None => {
                    let elems = Size::numel(&ty.shape).ok_or(TWO_BATCH)?;
                    Ok(l.scratch_slot(elems.scale(4).ok_or(TWO_BATCH)?))
                }
            }
        };
        let col_sum = |c: usize, s: ValueId, ty: &nnc_ir::TensorType| -> Result<(ValueId, Body), String> {
            let d = dims(&ty.shape);
            let (m, n) = (d[0], d[1]);
            let nest = Nest::collapse(&d, &[vec![Size::ZERO, Size::ONE], vec![n, Size::ONE]]);
            let out = Arr { slot: s.index(), dtype: DType::F32 };
            let input = Arr { slot: c, dtype: DType::F32 };
            Ok((s, Body::Reduce(Reduce { op: ReduceOp::Sum, input, out, nest, out_numel: n, count: m })))
        };
        let two_d = |ty: &nnc_ir::TensorType| ty.rank() == 2;

        match *f {
            FusedOp::Dense { trans_a, trans_b, alpha, bias, act } => {
                let mut mm =
                    self.lower_matmul((args[0], args[1]), (id.index(), &v.ty.shape), (trans_a, trans_b), provider)?;
                mm.epilogue = Some(Box::new(Epilogue::Dense { alpha, bias: bias.then(|| args[2].index()), act }));
                Ok(vec![(id, Body::MatMul(mm))])
            }
            FusedOp::DenseReluGrad { trans_a, trans_b, .. } => {
                let ty = g.ty(args[2]).clone();
                if !two_d(&ty) {
                    return Err("the gradient must be 2-D".into());
                }
                let grad = result(FusedOp::DenseReluGrad { trans_a, trans_b, out: GradOut::Grad });
                let c = buffer(self, grad, &ty)?;
                let mut mm = self.lower_matmul((args[0], args[1]), (c, &ty.shape), (trans_a, trans_b), provider)?;
                mm.epilogue = Some(Box::new(Epilogue::ReluMask { h: args[2].index() }));
                let mut bodies = vec![(grad.unwrap_or(id), Body::MatMul(mm))];
                if let Some(s) = result(FusedOp::DenseReluGrad { trans_a, trans_b, out: GradOut::ColSum }) {
                    bodies.push(col_sum(c, s, &ty)?);
                }
                Ok(bodies)
            }
            FusedOp::SoftmaxCrossEntropy { .. } => {
                let ty = g.ty(args[0]).clone();
                let d = dims(&ty.shape);
                let classes = d[1].as_fixed().ok_or("the class count must be static")?;
                let grad_value = result(FusedOp::SoftmaxCrossEntropy { out: CeOut::Grad });
                let grad = buffer(self, grad_value, &ty)?;
                let row_ll = self.scratch_slot(d[0].scale(4).ok_or(TWO_BATCH)?);
                let labels = Arr { slot: args[1].index(), dtype: g.ty(args[1]).dtype };
                if let Some(StorageKind::Input(i)) = self.storage(args[1]).map(|s| self.storages[s].kind) {
                    self.label_checks.push((i, classes, id));
                }
                let loss = result(FusedOp::SoftmaxCrossEntropy { out: CeOut::Loss }).map(|s| s.index());
                let ce = CrossEntropy { logits: args[0].index(), labels, grad, row_ll, loss, rows: d[0], classes };
                let mut bodies = vec![(id, Body::CrossEntropy(ce))];
                if let Some(s) = result(FusedOp::SoftmaxCrossEntropy { out: CeOut::GradColSum }) {
                    bodies.push(col_sum(grad, s, &ty)?);
                }
                Ok(bodies)
            }
            FusedOp::Update { rule, .. } | FusedOp::DenseUpdate { rule, .. } => {
                let dense = matches!(f, FusedOp::DenseUpdate { .. });
                let first = if dense { 2 } else { 0 }; // operand index of `p`
                let p = args[first];
                let ty = g.ty(p).clone();
                let states: Vec<usize> = args[first + 1..first + 1 + rule.states()].iter().map(|a| a.index()).collect();
                let after_states = first + 1 + rule.states();
                let (g_slot, scalars) = if dense {
                    (None, &args[after_states..])
                } else {
                    (Some(args[after_states].index()), &args[after_states + 1..])
                };
                let out = |o: UpdateOut| {
                    let op = match f {
                        FusedOp::DenseUpdate { trans_a, trans_b, .. } => {
                            FusedOp::DenseUpdate { trans_a: *trans_a, trans_b: *trans_b, rule, out: o }
                        }
                        _ => FusedOp::Update { rule, out: o },
                    };
                    result(op).map(|s| s.index())
                };
                let mut update = Update {
                    rule,
                    p: p.index(),
                    states,
                    g: g_slot.unwrap_or(usize::MAX),
                    scalars: scalars.iter().map(|a| a.index()).collect(),
                    p_out: out(UpdateOut::Param),
                    m_out: out(UpdateOut::M),
                    v_out: out(UpdateOut::V),
                    len: Size::numel(&ty.shape).ok_or(TWO_BATCH)?,
                };
                let FusedOp::DenseUpdate { trans_a, trans_b, .. } = *f else {
                    return Ok(vec![(id, Body::Update(update))]);
                };
                if !two_d(&ty) {
                    return Err("the parameter must be 2-D".into());
                }
                // The gradient is scratch: written by the product, read by the epilogue.
                let c = buffer(self, None, &ty)?;
                update.g = c;
                let mut mm = self.lower_matmul((args[0], args[1]), (c, &ty.shape), (trans_a, trans_b), provider)?;
                mm.epilogue = Some(Box::new(Epilogue::Update(update)));
                Ok(vec![(id, Body::MatMul(mm))])
            }
        }
    }

    /// `C = op(a)·op(b)` into table slot `c`, which holds a tensor of shape `out`.
    fn lower_matmul(
        &mut self,
        (a, b): (ValueId, ValueId),
        (c, out): (usize, &Shape),
        (trans_a, trans_b): (bool, bool),
        provider: &dyn MicroKernelProvider,
    ) -> Result<MatMul, String> {
        let g = self.g;
        let (da, db) = (dims(&g.ty(a).shape), dims(&g.ty(b).shape));
        let (sa, sb) = (strides(&da).ok_or(TWO_BATCH)?, strides(&db).ok_or(TWO_BATCH)?);
        let (ra, rb) = (da.len(), db.len());
        let (m, a_row, a_k) =
            if trans_a { (da[ra - 1], sa[ra - 1], sa[ra - 2]) } else { (da[ra - 2], sa[ra - 2], sa[ra - 1]) };
        let (k, n, b_k, b_col) = if trans_b {
            (db[rb - 1], db[rb - 2], sb[rb - 1], sb[rb - 2])
        } else {
            (db[rb - 2], db[rb - 1], sb[rb - 2], sb[rb - 1])
        };

        // Leading axes: each operand's stride along the output's leading axes.
        let od = dims(out);
        let so = strides(&od).ok_or(TWO_BATCH)?;
        let lr = od.len() - 2;
        let lead_strides = |d: &[Size], s: &[Size], shape: &Shape| -> Vec<Size> {
            let own = d.len() - 2;
            (0..lr)
                .map(|i| match (i + own).checked_sub(lr) {
                    Some(p) if shape.dims()[p] != nnc_ir::Dim::Fixed(1) => s[p],
                    _ => Size::ZERO,
                })
                .collect()
        };
        let la = lead_strides(&da, &sa, &g.ty(a).shape);
        let lb = lead_strides(&db, &sb, &g.ty(b).shape);
        let lc = so[..lr].to_vec();
        let nest = Nest::collapse(&od[..lr], &[la, lb, lc]);
        let mut lead: Vec<Lead> = (0..nest.dims.len())
            .filter(|&i| !nest.dims[i].is_fixed(1))
            .map(|i| Lead { dim: nest.dims[i], a: nest.strides[0][i], b: nest.strides[1][i], c: nest.strides[2][i] })
            .collect();
        let mut m = m;
        // A stack of matrices times one matrix, laid out row after row: one taller product.
        if let [l] = lead.as_slice() {
            let rows_follow = m.checked_mul(a_row) == Some(l.a) && m.checked_mul(n) == Some(l.c);
            if l.b.is_fixed(0) && rows_follow {
                if let Some(tall) = l.dim.checked_mul(m) {
                    m = tall;
                    lead.clear();
                }
            }
        }

        let tile = provider.tile_shape(&GemmShape { m: m.as_fixed(), k: k.as_fixed(), n: n.as_fixed() });
        let nr = tile.nr() as u64;
        // A row-major B is read in place. A panel read in place strides through B's
        // rows, which at a power-of-two row length (1 KiB for 256 floats) map to a few
        // L1 sets and evict each other, so every row tile would read it from L2:
        // where the provider's tiles copy B (`copies_b`), each panel's first row tile
        // packs it for the others (measured as fast as a pack pass, or faster: the
        // `[out, in]` seed step's weight gradient, whose B is X, at batch 1024 on one
        // thread 9.37 → 9.20–9.25 ms; below batch 192 the pass did not pay at all);
        // else a static M of at least four row tiles packs it in a pass of its own.
        // A transposed B has every panel packed.
        let pack_b = match (b_col.is_fixed(1), n.as_fixed(), m.as_fixed()) {
            (false, _, _) => PackB::All,
            (true, Some(_), Some(mf)) if mf >= 4 * tile.mr as u64 && !provider.copies_b() => PackB::All,
            (true, _, _) => PackB::Edge,
        };
        // Packed B: K rows of every panel (N rounded up to whole panels), or of one.
        let packed_bytes = match (pack_b, n.as_fixed(), k.has_batch()) {
            (PackB::Edge, _, _) => k.scale(nr * 4),
            (_, Some(nf), _) => k.scale(nf.div_ceil(nr) * nr * 4),
            (_, None, false) => Some(Size { fixed: k.fixed * nr * 4, per_batch: k.fixed * n.per_batch * 4 }),
            (_, None, true) => None,
        }
        .ok_or(TWO_BATCH)?;
        let packed = self.scratch_slot(packed_bytes);
        // Split a static K into equal blocks no deeper than `kc` (784 → 3 × 262, not
        // 256+256+256+16); a run-time K uses `kc`.
        let kc = match k.as_fixed() {
            Some(kk) if kk > 0 => kk.div_ceil(kk.div_ceil(tile.kc as u64)),
            _ => tile.kc as u64,
        };
        // Packed A: rows `[i, i + mr)` of one K block at `i·kc` floats; room for M
        // rows plus one partial tile. A transposed A is packed so that a tile's rows are
        // contiguous at each k, unless the product has a single panel and the tiles
        // broadcast from strided rows at no cost (assembled ones): each tile is then
        // read once, and packing would only add a pass over A.
        let single_panel = provider.reads_strided_a() && n.as_fixed().is_some_and(|n| n <= nr);
        let packed_a = if a_k.is_fixed(1) || (single_panel && a_row.as_fixed().is_some()) {
            None
        } else {
            let mr = tile.mr as u64;
            let bytes = match m.as_fixed() {
                Some(mf) => Some(Size::fixed((mf + mr) * kc * 4)),
                None => Some(Size { fixed: mr * kc * 4, per_batch: m.per_batch * kc * 4 }),
            }
            .ok_or(TWO_BATCH)?;
            Some(self.scratch_slot(bytes))
        };
        // Few rows of a large transposed B: dot products (see `kernels/matmul/dots.rs`); else few
        // rows of a large B: K in parts with partial sums (see `matmul::by_depth`).
        let dots = crate::kernels::matmul::dots::applies(m, k, n, a_k, b_k, b_col, lead.is_empty());
        let depth = match crate::kernels::matmul::depth_parts(m, k, n, a_row, lead.is_empty()).filter(|_| !dots) {
            Some((parts, max_rows)) => {
                let bytes = Size::fixed(parts * max_rows * n.fixed * 4);
                Some(DepthSplit { slot: self.scratch_slot(bytes), parts, max_rows })
            }
            None => None,
        };
        Ok(MatMul {
            a: a.index(),
            b: b.index(),
            c,
            packed,
            m,
            k,
            n,
            a_row,
            a_k,
            b_k,
            b_col,
            lead,
            tile,
            pack_b,
            packed_a,
            kc,
            epilogue: None,
            depth,
        })
    }

    /// Snapshots of outputs whose buffer an update overwrites, then the update copies
    /// (staged when the source is itself overwritten), and the output list.
    fn finish_updates_and_outputs(&mut self) {
        let g = self.g;
        let n = self.n;
        let copy_targets: Vec<usize> = self.copies.iter().map(|c| c.0).collect();
        let copy = |out: Arr, src: Arr, elems: Size| {
            let nest = Nest::collapse(&[elems], &[vec![Size::ONE], vec![Size::ONE]]);
            Body::Elementwise(Elementwise { func: EwFunc::Copy, out, args: vec![src], nest })
        };
        for &o in g.outputs() {
            let ty = g.ty(o).clone();
            let mut slot = o.index();
            if self.storage(o).is_some_and(|s| copy_targets.contains(&s)) {
                let elems = Size::numel(&ty.shape).unwrap_or(Size::ZERO);
                let bytes = elems.scale(ty.dtype.size_bytes() as u64).unwrap_or(Size::ZERO);
                let snap = self.scratch_slot(bytes);
                let body = copy(Arr { slot: snap, dtype: ty.dtype }, Arr { slot, dtype: ty.dtype }, elems);
                self.kernels.push((Kernel { name: format!("snapshot{}", o.index()), value: o, body }, n));
                slot = snap;
            }
            self.outputs.push(OutputSpec { slot, ty });
        }
        let copies = std::mem::take(&mut self.copies);
        let mut finals = Vec::new();
        for &(_, leaf, src) in &copies {
            let ty = g.ty(leaf).clone();
            let elems = Size::numel(&ty.shape).unwrap_or(Size::ZERO);
            let mut from = src;
            if self.slot_storage[src].is_some_and(|s| copy_targets.contains(&s)) {
                let bytes = elems.scale(ty.dtype.size_bytes() as u64).unwrap_or(Size::ZERO);
                let stage = self.scratch_slot(bytes);
                let body = copy(Arr { slot: stage, dtype: ty.dtype }, Arr { slot: src, dtype: ty.dtype }, elems);
                self.kernels.push((Kernel { name: format!("stage{}", leaf.index()), value: leaf, body }, n + 1));
                from = stage;
            }
            let body = copy(Arr { slot: leaf.index(), dtype: ty.dtype }, Arr { slot: from, dtype: ty.dtype }, elems);
            finals.push((Kernel { name: format!("update{}", leaf.index()), value: leaf, body }, n + 2));
        }
        self.kernels.extend(finals);
    }

    fn into_program(mut self) -> Program {
        // Arena lifetimes from the kernels that touch each storage; outputs live to the end.
        for (k, time) in &self.kernels {
            for slot in k.body.slots() {
                if let Some(s) = self.slot_storage[slot] {
                    if let StorageKind::Arena { first, last } = &mut self.storages[s].kind {
                        *first = (*first).min(*time);
                        *last = (*last).max(*time);
                    }
                }
            }
        }
        for o in &self.outputs {
            if let Some(s) = self.slot_storage[o.slot] {
                if let StorageKind::Arena { last, .. } = &mut self.storages[s].kind {
                    *last = self.n + 3;
                }
            }
        }
        // A storage no kernel listed (only merged-away ones, which have no bytes) is
        // kept live for the whole step, so it can never overlap another.
        for s in &mut self.storages {
            if let StorageKind::Arena { first, last } = &mut s.kind {
                if *first > *last {
                    (*first, *last) = (0, self.n + 3);
                }
            }
        }
        let status_slot = self.slot_storage.len();
        Program {
            kernels: self.kernels.into_iter().map(|(k, _)| k).collect(),
            plan: MemoryPlan { storages: self.storages, slot_storage: self.slot_storage },
            names: self.g.values().iter().map(|v| (v.name.clone(), v.op.mnemonic())).collect(),
            inputs: self.inputs,
            leaves: self.leaves,
            consts: self.consts,
            outputs: self.outputs,
            n_slots: status_slot + 2,
            status_slot,
            pool_slot: status_slot + 1,
            label_checks: self.label_checks,
        }
    }
}
