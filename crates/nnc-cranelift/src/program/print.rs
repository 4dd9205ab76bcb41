//! The lowered program as text (`nnc compile --emit lowered`): every kernel with what it
//! computes and, for a matrix product, its plan; then the arena's buffers. Sizes that
//! depend on the batch are printed in `N`; the layout and the run-time choices are
//! given for one batch size. The text is deterministic, so snapshots of it catch a
//! change of strategy the way Cranelift's precise-output filetests catch a change of
//! code.

use super::*;
use nnc_opt::plan::BufferUse;
use std::fmt::Write;

impl Program {
    /// The program as text, for the kernel family `family`, laid out at `batch`.
    pub(crate) fn text(&self, family: &str, batch: usize) -> String {
        let mut out = String::new();
        let layout = self.plan.layout(batch).ok();
        let total = layout.as_ref().map_or("too large".to_string(), |l| format!("{} bytes", l.total));
        let _ = writeln!(out, "program: {} kernels, {family} kernels, arena at N={batch}: {total}", self.kernels.len());
        for (i, k) in self.kernels.iter().enumerate() {
            let step = self.plan.kernels[i].step;
            let _ = writeln!(out, "{} (step {step}): {}", k.name, self.describe(&k.body));
            if let Body::MatMul(mm) = &k.body {
                for line in self.matmul_plan(mm, batch) {
                    let _ = writeln!(out, "  {line}");
                }
            }
        }
        let _ = writeln!(out, "buffers:");
        for (b, buffer) in self.plan.buffers.iter().enumerate() {
            let at = layout.as_ref().map_or(String::new(), |l| format!(" at {}", l.offsets[b]));
            let used_by = match buffer.used_by {
                BufferUse::Value(v) => format!("%{}", self.names[v.index()].0),
                BufferUse::Snapshot(v) => format!("snapshot of %{}", self.names[v.index()].0),
                BufferUse::Stage(v) => format!("staged new %{}", self.names[v.index()].0),
                BufferUse::Scratch(k) => format!("scratch of {}", self.kernels[k].name),
            };
            let size = size(buffer.size);
            let _ = writeln!(out, "  b{b}: {size} bytes{at}, steps {}..={}, {used_by}", buffer.first, buffer.last);
        }
        out
    }

    /// Each convolution and pooling kernel: the value it computes and, in a few words,
    /// which kernel computes it (`nnc compile`'s summary).
    pub(crate) fn window_kernels(&self) -> Vec<(String, String)> {
        let rows = |w: &WindowKernel| if w.by_rows { ", along output rows" } else { "" };
        let then = |w: &WindowKernel| match &w.epilogue {
            Some(e) => format!(", then {}", output_epilogue(e, &|slot| self.slot(slot))),
            None => String::new(),
        };
        self.kernels
            .iter()
            .filter_map(|k| match &k.body {
                Body::ConvGemm(c) => {
                    let what = match (c.op, c.flip) {
                        (ConvGemmOp::Forward, None) => "convolution",
                        (ConvGemmOp::Forward, Some(_)) => "data gradient (the transposed convolution)",
                        (ConvGemmOp::Filter, _) => "filter gradient",
                    };
                    let tiles = format!("{}×{}", c.tile.mr, c.tile.nr());
                    let how = format!("{what}: implicit product on {tiles} tiles{}", then(&c.geometry));
                    Some((self.slot(c.out), how))
                }
                Body::Window(w) => {
                    let what = match w.op {
                        WindowOp::Conv => "convolution",
                        WindowOp::ConvData => "data gradient",
                        WindowOp::ConvFilter => "filter gradient",
                        WindowOp::Pool(nnc_ir::PoolKind::Max) => "max pooling",
                        WindowOp::Pool(_) => "average pooling",
                        WindowOp::PoolBackward(_) => "pooling gradient",
                    };
                    Some((self.slot(w.out), format!("{what}: direct{}{}", rows(w), then(w))))
                }
                _ => None,
            })
            .collect()
    }

    /// A slot's name: the value's, or its arena buffer's.
    fn slot(&self, slot: usize) -> String {
        match (self.names.get(slot), self.slots.get(slot)) {
            (Some((name, _)), _) => format!("%{name}"),
            (None, Some(Some(Slot::Arena(b)))) => format!("b{}", b.0),
            _ => format!("slot {slot}"),
        }
    }

    fn describe(&self, body: &Body) -> String {
        let s = |slot: usize| self.slot(slot);
        match body {
            Body::Elementwise(e) => {
                let args: Vec<String> = e.args.iter().map(|a| s(a.slot)).collect();
                let func = match e.func {
                    EwFunc::Unary(u) => format!("{u:?}").to_lowercase(),
                    EwFunc::Binary(b) => format!("{b:?}").to_lowercase(),
                    EwFunc::Where => "where".into(),
                    EwFunc::Cast => format!("cast to {}", e.out.dtype),
                    EwFunc::Copy => "copy".into(),
                };
                let dims: Vec<String> = e.nest.dims.iter().map(|&d| size(d)).collect();
                format!("{} = {func} {} over [{}]", s(e.out.slot), args.join(", "), dims.join(", "))
            }
            Body::Reduce(r) => {
                let op = format!("{:?}", r.op).to_lowercase();
                format!("{} = {op} of {} ({} elements each)", s(r.out.slot), s(r.input.slot), size(r.count))
            }
            Body::Softmax(x) => {
                let op = if x.log { "log_softmax" } else { "softmax" };
                format!(
                    "{} = {op} {} over {} of [{}, {}, {}]",
                    s(x.out.slot),
                    s(x.x.slot),
                    size(x.len),
                    size(x.outer),
                    size(x.len),
                    size(x.inner)
                )
            }
            Body::Window(w) => {
                let args: Vec<String> = w.args.iter().map(|&a| s(a)).collect();
                let then = w.epilogue.as_ref().map_or(String::new(), |e| written(e, &s));
                let rows = match (w.by_rows, w.padded) {
                    (false, _) => String::new(),
                    (true, None) => ", along output rows".to_string(),
                    (true, Some(p)) => format!(", along output rows, padded in {}", s(p)),
                };
                format!("{} = {:?} {} over {}{rows}{then}", s(w.out), w.op, args.join(", "), geometry(w))
            }
            Body::Copy(b) => {
                let parts: Vec<String> = b
                    .parts
                    .iter()
                    .map(|p| {
                        format!(
                            "{}[{}..{}] → [{}..{}]",
                            s(p.src.slot),
                            p.src_at,
                            p.src_at + p.len,
                            p.out_at,
                            p.out_at + p.len
                        )
                    })
                    .collect();
                format!("{} = blocks of {} rows of {}: {}", s(b.out.slot), size(b.rows), b.out_row, parts.join(", "))
            }
            Body::ConvGemm(c) => {
                let what = match (c.op, c.flip) {
                    (ConvGemmOp::Forward, None) => format!("{}·windows({})", s(c.a), s(c.input)),
                    (ConvGemmOp::Forward, Some((wt, _))) => {
                        format!("flipped({})·windows({}) (the data gradient)", s(wt), s(c.input))
                    }
                    (ConvGemmOp::Filter, _) => format!("{}·windows({})ᵀ (the filter gradient)", s(c.a), s(c.input)),
                };
                let mut padded = c.padded.map_or(String::new(), |p| format!(", padded in {}", s(p)));
                if c.reads_in_place() {
                    padded += ", full panels read in place";
                }
                if c.row_block < c.geometry.mg {
                    padded += &format!(", output channels in blocks of {}", c.row_block);
                }
                let then = c.geometry.epilogue.as_ref().map_or(String::new(), |e| written(e, &s));
                format!(
                    "{} = {what} as an implicit product on {}×{} tiles, K blocks of {}: {}{padded}{then}",
                    s(c.out),
                    c.tile.mr,
                    c.tile.nr(),
                    c.kc,
                    geometry(&c.geometry)
                )
            }
            Body::OneHot(h) => format!("{} = one_hot {} of depth {}", s(h.out.slot), s(h.idx.slot), h.depth),
            Body::Update(u) => format!("{}, in {} elements", update(self, u), size(u.len)),
            Body::CrossEntropy(c) => {
                let loss = c.loss.map_or("no loss".to_string(), |l| format!("loss {}", s(l)));
                format!(
                    "softmax cross-entropy of {} [{}, {}] and {}: gradient {}, row log-likelihoods {}, {loss}",
                    s(c.logits),
                    size(c.rows),
                    c.classes,
                    s(c.labels.slot),
                    s(c.grad),
                    s(c.row_ll)
                )
            }
            Body::MatMul(m) => {
                let lead = if m.lead.is_empty() {
                    String::new()
                } else {
                    let dims: Vec<String> = m.lead.iter().map(|l| size(l.dim)).collect();
                    format!(" for each of [{}]", dims.join(", "))
                };
                format!(
                    "{} = {}·{}: [{}, {}]·[{}, {}]{lead}",
                    s(m.c),
                    s(m.a),
                    s(m.b),
                    size(m.m),
                    size(m.k),
                    size(m.k),
                    size(m.n)
                )
            }
        }
    }

    /// A product's plan, a line per choice, and which split the step takes at `batch`.
    fn matmul_plan(&self, m: &MatMul, batch: usize) -> Vec<String> {
        let p = &m.plan;
        let mut lines = Vec::new();
        let stride =
            |s: Size| if s.is_fixed(1) { "contiguous".to_string() } else { format!("{} floats apart", size(s)) };
        lines.push(format!(
            "strides: A rows {}, A k {}; B k {}, B columns {}",
            stride(m.a_row),
            stride(m.a_k),
            stride(m.b_k),
            stride(m.b_col)
        ));
        let blocks = m.k.as_fixed().map_or(String::new(), |k| format!(" ({} of K {k})", k.div_ceil(p.kc.max(1))));
        lines.push(format!("tile {}×{}, K blocks of {}{blocks}", p.tile.mr, p.tile.nr(), p.kc));
        let pack = match p.pack_b {
            PackB::All => format!("B: every panel packed into b{}", self.buffer_of(p.packed)),
            PackB::Edge if m.n.as_fixed().is_some_and(|n| n % p.tile.nr() as u64 == 0) => "B: read in place".into(),
            PackB::Edge => format!("B: read in place, the partial panel packed into b{}", self.buffer_of(p.packed)),
        };
        let copy_b = match p.copy_b {
            CopyB::No => "",
            CopyB::ByFirstRowTile => ", copied to the stack by each panel's first row tile",
        };
        lines.push(pack + copy_b);
        lines.push(match p.packed_a {
            None => "A: read in place".to_string(),
            Some(PackedA { slot, by: PackA::Pass }) => format!("A: packed into b{} by a pass", self.buffer_of(slot)),
            Some(PackedA { slot, by: PackA::FirstPanelTiles }) => {
                format!("A: packed into b{} by the first panel's tiles as they read it", self.buffer_of(slot))
            }
        });
        if let Some(cols) = p.row_tile_cols {
            lines.push(format!("last one or two rows: one-row tiles of up to {cols} columns"));
        }
        if !p.epilogue.is_empty() {
            let ops: Vec<String> = p.epilogue.iter().map(|op| self.epilogue_op(op)).collect();
            let at = match p.epilogue_at {
                EpilogueAt::Tiles => "in the tiles",
                EpilogueAt::Sweep => "a sweep over the rows",
            };
            lines.push(format!("epilogue ({at}): {}", ops.join(", ")));
        }
        let rows = m.m.at(batch).unwrap_or(u64::MAX);
        let mut split = Vec::new();
        if let Some(v) = p.columns {
            let deeper = if v.deeper_than.is_some() { " and K > M" } else { "" };
            split.push(format!("by {} column panels at M ≤ {}{deeper} on a thread pool", size(v.items), v.max_rows));
        }
        if let Some(d) = p.depth {
            split.push(format!(
                "along K in {} parts into b{} at M ≤ {}",
                d.parts,
                self.buffer_of(d.slot),
                d.variant.max_rows
            ));
        }
        if let Some(v) = p.dots {
            split.push(format!("as dot products of {} column groups at M ≤ {}", size(v.items), v.max_rows));
        }
        if !split.is_empty() {
            lines.push(format!("splits: by rows, or {}", split.join("; or ")));
        }
        // The later variants take precedence, as in the step (`codegen/step.rs`).
        let taken = |v: &Option<Variant>| v.is_some_and(|v| v.taken_at(batch));
        let taken = if taken(&p.dots) {
            "dot products"
        } else if taken(&p.depth.map(|d| d.variant)) {
            "along K"
        } else if taken(&p.columns) {
            "by columns on a thread pool, else by rows"
        } else {
            "by rows"
        };
        lines.push(format!("at N={batch}: M = {rows}, {taken}"));
        lines
    }

    fn epilogue_op(&self, op: &EpilogueOp) -> String {
        match op {
            EpilogueOp::Scale(a) => format!("scale {a}"),
            EpilogueOp::Bias(b) => format!("bias {}", self.slot(*b)),
            EpilogueOp::Activation(u) => format!("{u:?}").to_lowercase(),
            EpilogueOp::ReluMask(h) => format!("relu mask {}", self.slot(*h)),
            EpilogueOp::Update(u) => update(self, u),
        }
    }

    /// The arena buffer behind a scratch slot.
    fn buffer_of(&self, slot: usize) -> usize {
        match self.slots.get(slot) {
            Some(Some(Slot::Arena(b))) => b.0,
            _ => usize::MAX,
        }
    }
}

/// An optimizer update as text.
fn update(p: &Program, u: &Update) -> String {
    let rule = match u.rule {
        UpdateRule::Sgd { .. } => "sgd",
        UpdateRule::Momentum { .. } => "momentum",
        UpdateRule::Adam { .. } => "adam",
    };
    let outs: Vec<String> = [u.p_out, u.m_out, u.v_out].into_iter().flatten().map(|s| p.slot(s)).collect();
    format!("{} = {rule} of {} with gradient {}", outs.join(", "), p.slot(u.p), p.slot(u.g))
}

/// A size: `784`, `N`, `4·N`, `64 + 32·N`.
fn size(s: Size) -> String {
    match (s.fixed, s.per_batch) {
        (_, 0) => s.fixed.to_string(),
        (0, 1) => "N".into(),
        _ => s.to_string(),
    }
}

/// A fused convolution's epilogue: the steps it applies to each output, in order.
fn output_epilogue(e: &OutputEpilogue, s: &dyn Fn(usize) -> String) -> String {
    let mut steps = Vec::new();
    steps.extend(e.bias.map(|b| format!("+ {} per channel", s(b))));
    steps.extend(e.residual.map(|r| format!("+ {}", s(r))));
    steps.extend(e.act.map(|u| nnc_ir::Op::Unary(u).mnemonic().to_string()));
    steps.extend(e.min.map(|lo| format!("max {lo:?}")));
    steps.extend(e.max.map(|hi| format!("min {hi:?}")));
    steps.join(", ")
}

/// The epilogue as `--emit lowered` ends a kernel's line with it.
fn written(e: &OutputEpilogue, s: &dyn Fn(usize) -> String) -> String {
    format!(", then {} as it is written", output_epilogue(e, s))
}

/// A window op's planes, kernel, strides, dilations, pads and groups.
fn geometry(w: &WindowKernel) -> String {
    let list = |v: &[u64; 3]| format!("{v:?}");
    format!(
        "planes of {} from {} by kernel {} strides {} dilations {} pads {}+{}, {} groups",
        list(&w.output),
        list(&w.input),
        list(&w.kernel),
        list(&w.strides),
        list(&w.dilations),
        list(&w.pads_begin),
        list(&w.pads_end),
        w.groups
    )
}
