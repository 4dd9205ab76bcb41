//! What a step costs, estimated from the IR: kernels launched and bytes moved.
//!
//! A *kernel* is a value that is computed (not a leaf) and not an alias of another
//! value's bytes (reshape, identity, a cast or broadcast to the same type); sibling
//! results of one fused kernel count once. *Bytes moved* adds, for every kernel, the
//! bytes of each distinct operand it reads and of each result it writes: the traffic
//! of a step whose intermediates do not stay in cache, which is what fusion saves.
//! Both count only what the outputs and updates need.

use crate::passes::dce;
use nnc_ir::{cost, Graph, Op, Size, TensorType, UnaryOp, ValueId};
use std::collections::HashMap;

/// The bytes of a value of type `ty` (0 for a shape with the batch twice, which no
/// backend compiles).
pub(crate) fn bytes_of(ty: &TensorType) -> Size {
    Size::bytes_of(ty).unwrap_or(Size::ZERO)
}

/// A value that shares its operand's bytes: no kernel, no buffer.
pub fn is_alias(g: &Graph, id: ValueId) -> bool {
    let v = g.value(id);
    match &v.op {
        Op::Reshape { .. } | Op::Unary(UnaryOp::Identity) => true,
        Op::Cast { to } => *to == g.ty(v.args[0]).dtype,
        Op::Broadcast { .. } => v.ty == *g.ty(v.args[0]),
        Op::Transpose { perm } => perm.iter().enumerate().all(|(i, &p)| i == p),
        _ => false,
    }
}

/// The kernels of a step in schedule order (definition order of their first
/// result), each with its results, and the kernel of every value (`None` for leaves,
/// aliases and values nothing needs).
pub fn kernels(g: &Graph) -> (Vec<Vec<ValueId>>, Vec<Option<usize>>) {
    let live = dce::live(g);
    let mut groups: Vec<Vec<ValueId>> = Vec::new();
    let mut of = vec![None; g.len()];
    let mut fused: HashMap<(String, Vec<ValueId>), usize> = HashMap::new();
    for id in g.ids() {
        let v = g.value(id);
        if !live[id.index()] || v.op.is_leaf() || is_alias(g, id) {
            continue;
        }
        let k = match &v.op {
            Op::Fused(f) => *fused.entry((format!("{:?}", f.kernel()), v.args.clone())).or_insert_with(|| {
                groups.push(Vec::new());
                groups.len() - 1
            }),
            _ => {
                groups.push(Vec::new());
                groups.len() - 1
            }
        };
        groups[k].push(id);
        of[id.index()] = Some(k);
    }
    (groups, of)
}

/// Kernels and traffic of one step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StepCost {
    pub kernels: usize,
    pub bytes_moved: Size,
}

pub fn step_cost(g: &Graph) -> StepCost {
    let (groups, _) = kernels(g);
    let mut bytes = Size::ZERO;
    for members in &groups {
        let mut read: Vec<ValueId> = Vec::new();
        for &m in members {
            for &a in &g.value(m).args {
                if !read.contains(&a) {
                    read.push(a);
                }
            }
            bytes = bytes + bytes_of(g.ty(m));
        }
        bytes = bytes + read.iter().map(|&a| bytes_of(g.ty(a))).sum();
    }
    StepCost { kernels: groups.len(), bytes_moved: bytes }
}

/// One pass as it ran.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PassRun {
    pub name: &'static str,
    /// Whether the pass changed the graph.
    pub changed: bool,
    pub values_before: usize,
    pub values_after: usize,
}

/// Before/after figures of an optimization.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    pub before: StepCost,
    pub after: StepCost,
    pub passes: Vec<PassRun>,
    /// Op mnemonics and how many values of each the optimized graph has (leaves excluded).
    pub op_counts: Vec<(&'static str, usize)>,
    /// The memory plan of the optimized graph: the arena, and one buffer per value.
    pub arena: Size,
    pub naive: Size,
    /// Floating-point operations per step (as `nnc_ir::cost` counts them).
    pub flops_before: Size,
    pub flops_after: Size,
}

impl Report {
    pub(crate) fn new(before: &Graph, after: &Graph, passes: Vec<PassRun>, arena: Size, naive: Size) -> Report {
        let op_counts = cost::op_counts(after)
            .into_iter()
            .filter(|(m, _)| !matches!(*m, "input" | "param" | "state" | "const"))
            .collect();
        // Size in the batch like every size: the line through N = 1 and N = 2.
        let flops = |g: &Graph| {
            let (one, two) = (cost::flops(g, 1), cost::flops(g, 2));
            let per_batch = two.saturating_sub(one);
            Size { fixed: one.saturating_sub(per_batch), per_batch }
        };
        Report {
            before: step_cost(before),
            after: step_cost(after),
            passes,
            op_counts,
            arena,
            naive,
            flops_before: flops(before),
            flops_after: flops(after),
        }
    }

    /// The report as text, with sizes at batch size `batch`.
    pub fn render(&self, batch: usize) -> String {
        let mut out = String::new();
        let b = |l: Size| group(l.at(batch).unwrap_or(u64::MAX));
        out += &format!("kernels per step: {} -> {}\n", self.before.kernels, self.after.kernels);
        out += &format!(
            "bytes moved per step (N={batch}): {} -> {}\n",
            b(self.before.bytes_moved),
            b(self.after.bytes_moved)
        );
        out += &format!("FLOPs per step (N={batch}): {} -> {}\n", b(self.flops_before), b(self.flops_after));
        out += &format!("arena (N={batch}): {} bytes, one buffer per value: {} bytes\n", b(self.arena), b(self.naive));
        let ops: Vec<String> = self.op_counts.iter().map(|(m, n)| format!("{m} {n}")).collect();
        out += &format!("ops: {}\n", ops.join(", "));
        let passes: Vec<String> =
            self.passes.iter().map(|p| format!("{}{}", p.name, if p.changed { "" } else { " (no change)" })).collect();
        out += &format!("passes: {}\n", passes.join(", "));
        out
    }
}

/// Thousands separators.
fn group(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}
