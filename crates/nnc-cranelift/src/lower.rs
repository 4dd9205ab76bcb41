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

use crate::elementwise;
use crate::error::{BackendError, Unsupported};
use crate::plan::{Bytes, MemoryPlan, Storage, StorageKind};
use crate::program::*;
use crate::provider::{GemmShape, MicroKernelProvider};
use crate::shape::{broadcast_strides, dims, numel, strides, Nest, Sz};
use nnc_ir::{DType, Graph, Op, Shape, UnaryOp, Value, ValueId};

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

    fn new_storage(&mut self, kind: StorageKind, bytes: Bytes, creator: Option<ValueId>) -> usize {
        self.storages.push(Storage { kind, bytes });
        self.creator.push(creator);
        self.storages.len() - 1
    }

    /// A new table slot backed by a new arena storage.
    fn scratch_slot(&mut self, bytes: Bytes) -> usize {
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
            let Some(bytes) = numel(&v.ty.shape).and_then(|e| Bytes::of(e, v.ty.dtype.size_bytes())) else {
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

    /// Reads of each storage's *current* contents: `(time, reader, operand)`, with the
    /// end of the step for outputs and update sources (`reader` = `None`).
    fn reads(&self) -> Vec<Vec<(usize, Option<ValueId>, ValueId)>> {
        let g = self.g;
        let mut reads = vec![Vec::new(); self.storages.len()];
        for id in g.ids() {
            let v = g.value(id);
            if !self.needed[id.index()] || v.op.is_leaf() || is_alias(g, v) {
                continue;
            }
            for &a in &v.args {
                if let Some(s) = self.storage(a) {
                    reads[s].push((id.index(), Some(id), a));
                }
            }
        }
        let end = self.n + 3;
        for &o in g.outputs().iter().chain(g.updates().iter().map(|(_, new)| new)) {
            if let Some(s) = self.storage(o) {
                reads[s].push((end, None, o));
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
            let t = new.index();
            let nv = g.value(new);
            let creates = matches!(self.storages[s].kind, StorageKind::Arena { .. }) && self.creator[s] == Some(new);
            let legal = creates
                && reads[l].iter().all(|&(time, reader, operand)| {
                    time < t
                        || (time == t
                            && reader == Some(new)
                            && reads_in_place(nv)
                            && g.ty(operand).shape == nv.ty.shape
                            && g.ty(operand).dtype.size_bytes() == nv.ty.dtype.size_bytes())
                });
            if legal {
                for slot in self.slot_storage.iter_mut() {
                    if *slot == Some(s) {
                        *slot = Some(l);
                    }
                }
                // The arena storage is gone; an empty interval keeps it out of the layout.
                self.storages[s].bytes = Bytes { fixed: 0, per_batch: 0 };
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
                let dies_here = reads[s].iter().all(|&(time, reader, operand)| {
                    time < t || (time == t && reader == Some(id) && same_layout(operand))
                });
                (s != own && matches!(self.storages[s].kind, StorageKind::Arena { .. }) && dies_here).then_some(s)
            });
            if let Some(s) = target {
                for slot in self.slot_storage.iter_mut() {
                    if *slot == Some(own) {
                        *slot = Some(s);
                    }
                }
                self.storages[own].bytes = Bytes { fixed: 0, per_batch: 0 };
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
                let read: Vec<Sz> = perm.iter().map(|&p| sx[p]).collect();
                let nest = Nest::collapse(&od, &[so, read]);
                return Ok(Body::Elementwise(Elementwise { func: EwFunc::Copy, out, args: vec![arr(x)], nest }));
            }
            Op::MatMul { trans_a, trans_b } => {
                return self.lower_matmul(id, *trans_a, *trans_b, provider).map(Body::MatMul);
            }
            Op::Softmax { axis } | Op::LogSoftmax { axis } => {
                let d = dims(&v.ty.shape);
                let prod = |s: &[Sz]| s.iter().try_fold(Sz::ONE, |acc, &x| acc.mul(x)).ok_or(TWO_BATCH);
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
                        out_map.push(Sz::ZERO);
                        if *keep_dims {
                            j += 1;
                        }
                    } else {
                        out_map.push(so[j]);
                        j += 1;
                    }
                }
                let count = axes.iter().try_fold(Sz::ONE, |acc, &a| acc.mul(dx[a])).ok_or(TWO_BATCH)?;
                return Ok(Body::Reduce(Reduce {
                    op: *op,
                    input: arr(x),
                    out,
                    nest: Nest::collapse(&dx, &[out_map, sx]),
                    out_numel: numel(&v.ty.shape).ok_or(TWO_BATCH)?,
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
                    rows: numel(&g.ty(x).shape).ok_or(TWO_BATCH)?,
                    depth: *depth as u64,
                }));
            }
            // Leaves and aliases never get here; any other op (the fused ops of
            // `nnc-opt`) has no lowering in this backend yet.
            other if other.is_leaf() || matches!(other, Op::Reshape { .. }) => {
                return Err("internal: a leaf or alias has no kernel".into());
            }
            Op::Fused(f) => return Err(format!("{} is not lowered yet", f.mnemonic())),
            _ => return Err("this op has no lowering in the Cranelift backend yet".into()),
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

    fn lower_matmul(
        &mut self,
        id: ValueId,
        trans_a: bool,
        trans_b: bool,
        provider: &dyn MicroKernelProvider,
    ) -> Result<MatMul, String> {
        let g = self.g;
        let v = g.value(id);
        let (a, b) = (v.args[0], v.args[1]);
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
        let od = dims(&v.ty.shape);
        let so = strides(&od).ok_or(TWO_BATCH)?;
        let lr = od.len() - 2;
        let lead_strides = |d: &[Sz], s: &[Sz], shape: &Shape| -> Vec<Sz> {
            let own = d.len() - 2;
            (0..lr)
                .map(|i| match (i + own).checked_sub(lr) {
                    Some(p) if shape.dims()[p] != nnc_ir::Dim::Fixed(1) => s[p],
                    _ => Sz::ZERO,
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
            let rows_follow = m.mul(a_row) == Some(l.a) && m.mul(n) == Some(l.c);
            if l.b.is_fixed(0) && rows_follow {
                if let Some(tall) = l.dim.mul(m) {
                    m = tall;
                    lead.clear();
                }
            }
        }

        let tile = provider.tile_shape(&GemmShape { m: m.as_fixed(), k: k.as_fixed(), n: n.as_fixed() });
        let nr = tile.nr() as u64;
        // A row-major B is read in place; otherwise every panel is packed.
        let pack_all = !b_col.is_fixed(1);
        // Packed B: K rows of every panel (N rounded up to whole panels), or of one.
        let packed_bytes = match (pack_all, n.as_fixed(), k.batch) {
            (false, _, _) => Bytes::of(k.scale(nr * 4).ok_or(TWO_BATCH)?, 1),
            (true, Some(nf), _) => Bytes::of(k.scale(nf.div_ceil(nr) * nr * 4).ok_or(TWO_BATCH)?, 1),
            (true, None, false) => Some(Bytes { fixed: k.k * nr * 4, per_batch: k.k * n.k * 4 }),
            (true, None, true) => None,
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
        // rows plus one partial tile.
        let packed_a = if a_k.is_fixed(1) {
            None
        } else {
            let mr = tile.mr as u64;
            let bytes = match m.as_fixed() {
                Some(mf) => Bytes::of(Sz::fixed((mf + mr) * kc * 4), 1),
                None => Some(Bytes { fixed: mr * kc * 4, per_batch: m.k * kc * 4 }),
            }
            .ok_or(TWO_BATCH)?;
            Some(self.scratch_slot(bytes))
        };
        Ok(MatMul {
            a: a.index(),
            b: b.index(),
            c: id.index(),
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
            pack_all,
            packed_a,
            kc,
        })
    }

    /// Snapshots of outputs whose buffer an update overwrites, then the update copies
    /// (staged when the source is itself overwritten), and the output list.
    fn finish_updates_and_outputs(&mut self) {
        let g = self.g;
        let n = self.n;
        let copy_targets: Vec<usize> = self.copies.iter().map(|c| c.0).collect();
        let copy = |out: Arr, src: Arr, elems: Sz| {
            let nest = Nest::collapse(&[elems], &[vec![Sz::ONE], vec![Sz::ONE]]);
            Body::Elementwise(Elementwise { func: EwFunc::Copy, out, args: vec![src], nest })
        };
        for &o in g.outputs() {
            let ty = g.ty(o).clone();
            let mut slot = o.index();
            if self.storage(o).is_some_and(|s| copy_targets.contains(&s)) {
                let elems = numel(&ty.shape).unwrap_or(Sz::ZERO);
                let bytes = Bytes::of(elems, ty.dtype.size_bytes()).unwrap_or(Bytes { fixed: 0, per_batch: 0 });
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
            let elems = numel(&ty.shape).unwrap_or(Sz::ZERO);
            let mut from = src;
            if self.slot_storage[src].is_some_and(|s| copy_targets.contains(&s)) {
                let bytes = Bytes::of(elems, ty.dtype.size_bytes()).unwrap_or(Bytes { fixed: 0, per_batch: 0 });
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
            n_slots: status_slot + 1,
            status_slot,
            label_checks: self.label_checks,
        }
    }
}
