//! What a step costs, estimated from the IR: kernels launched and bytes moved.
//!
//! A *kernel* is a value that is computed (not a leaf) and not an alias of another
//! value's bytes (reshape, identity, a cast or broadcast to the same type); sibling
//! results of one fused kernel count once. *Bytes moved* adds, for every kernel, the
//! bytes of each distinct operand it reads and of each result it writes: the traffic
//! of a step whose intermediates do not stay in cache, which is what fusion saves.
//! Both count only what the outputs and updates need.

use crate::passes::dce;
use nnc_ir::{cost, Graph, Op, TensorType, UnaryOp, ValueId};
use std::collections::HashMap;
use std::fmt;

/// A size `fixed + per_example·N` for batch size `N`. Every size in nnc is of this
/// form: a shape has at most one batch dimension.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Linear {
    pub fixed: u64,
    pub per_example: u64,
}

impl Linear {
    /// The bytes of a value of type `ty`.
    pub fn bytes_of(ty: &TensorType) -> Linear {
        let bytes = ty.dtype.size_bytes() as u64 * ty.shape.fixed_product().unwrap_or(0) as u64;
        if ty.shape.has_batch() {
            Linear { fixed: 0, per_example: bytes }
        } else {
            Linear { fixed: bytes, per_example: 0 }
        }
    }

    pub fn at(self, batch: usize) -> u64 {
        self.fixed + self.per_example * batch as u64
    }
}

impl std::ops::Add for Linear {
    type Output = Linear;
    fn add(self, o: Linear) -> Linear {
        Linear { fixed: self.fixed + o.fixed, per_example: self.per_example + o.per_example }
    }
}

impl std::iter::Sum for Linear {
    fn sum<I: Iterator<Item = Linear>>(iter: I) -> Linear {
        iter.fold(Linear::default(), |a, b| a + b)
    }
}

impl fmt::Display for Linear {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.fixed, self.per_example) {
            (c, 0) => write!(f, "{c}"),
            (0, k) => write!(f, "{k}·N"),
            (c, k) => write!(f, "{c} + {k}·N"),
        }
    }
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
    pub bytes_moved: Linear,
}

pub fn step_cost(g: &Graph) -> StepCost {
    let (groups, _) = kernels(g);
    let mut bytes = Linear::default();
    for members in &groups {
        let mut read: Vec<ValueId> = Vec::new();
        for &m in members {
            for &a in &g.value(m).args {
                if !read.contains(&a) {
                    read.push(a);
                }
            }
            bytes = bytes + Linear::bytes_of(g.ty(m));
        }
        bytes = bytes + read.iter().map(|&a| Linear::bytes_of(g.ty(a))).sum();
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
    pub arena: Linear,
    pub naive: Linear,
    /// Floating-point operations per step (as `nnc_ir::cost` counts them).
    pub flops_before: Linear,
    pub flops_after: Linear,
}

impl Report {
    pub(crate) fn new(before: &Graph, after: &Graph, passes: Vec<PassRun>, arena: Linear, naive: Linear) -> Report {
        let op_counts = cost::op_counts(after)
            .into_iter()
            .filter(|(m, _)| !matches!(*m, "input" | "param" | "state" | "const"))
            .collect();
        // Linear in the batch like every size: the line through N = 1 and N = 2.
        let flops = |g: &Graph| {
            let (one, two) = (cost::flops(g, 1), cost::flops(g, 2));
            let per_example = two.saturating_sub(one);
            Linear { fixed: one.saturating_sub(per_example), per_example }
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
        let b = |l: Linear| group(l.at(batch));
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
