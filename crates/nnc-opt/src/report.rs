//! What a step costs, estimated from the IR and its plan: kernels launched and bytes
//! moved.
//!
//! The kernels are the plan's ([`crate::plan`]): the ones the backend runs. *Bytes
//! moved* adds, for every kernel, the bytes of each distinct operand it reads and of
//! each result it writes: the traffic of a step whose intermediates do not stay in
//! cache, which is what fusion saves. Both count only what the outputs and updates
//! need.

use crate::plan::{self, StepPlan, Work};
use nnc_ir::{cost, FusedOp, Graph, Op, Size, TensorType, ValueId};

/// The bytes of a value of type `ty` (0 for a shape with the batch twice, which no
/// backend compiles).
pub(crate) fn bytes_of(ty: &TensorType) -> Size {
    Size::bytes_of(ty).unwrap_or(Size::ZERO)
}

/// Kernels and traffic of one step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StepCost {
    pub kernels: usize,
    pub bytes_moved: Size,
}

/// The cost of a step as `plan` runs it.
pub fn step_cost(g: &Graph, plan: &StepPlan) -> StepCost {
    let mut bytes = Size::ZERO;
    for k in &plan.kernels {
        let (read, written): (Vec<ValueId>, Vec<ValueId>) = match &k.work {
            Work::Compute { leader, results } => {
                let mut read: Vec<ValueId> = Vec::new();
                for &a in &g.value(*leader).args {
                    if !read.contains(&a) {
                        read.push(a);
                    }
                }
                (read, results.clone())
            }
            // It reads the gradient of the group, which has the shape of the
            // cross-entropy's logits or of the ReLU gradient's mask.
            Work::ColumnSum { leader, value } => {
                let args = &g.value(*leader).args;
                let like = match g.value(*leader).op {
                    Op::Fused(FusedOp::SoftmaxCrossEntropy { .. }) => args[0],
                    _ => args[2],
                };
                (vec![like], vec![*value])
            }
            Work::Snapshot { value, .. } => (vec![*value], vec![*value]),
            Work::Stage { from, .. } => (vec![*from], vec![*from]),
            Work::CopyUpdate { leaf, .. } => (vec![*leaf], vec![*leaf]),
        };
        bytes = bytes + read.iter().chain(&written).map(|&v| bytes_of(g.ty(v))).sum();
    }
    StepCost { kernels: plan.kernels.len(), bytes_moved: bytes }
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
    /// Floating-point operations per step (as `nnc_ir::cost` counts them).
    pub flops_before: Size,
    pub flops_after: Size,
}

impl Report {
    pub(crate) fn new(before: &Graph, after: &Graph, after_plan: &StepPlan, passes: Vec<PassRun>) -> Report {
        let op_counts = cost::op_counts(after)
            .into_iter()
            .filter(|(m, _)| !matches!(*m, "input" | "param" | "state" | "const"))
            .collect();
        // Linear in the batch like every size: the line through N = 1 and N = 2.
        let flops = |g: &Graph| {
            let (one, two) = (cost::flops(g, 1), cost::flops(g, 2));
            let per_batch = two.saturating_sub(one);
            Size { fixed: one.saturating_sub(per_batch), per_batch }
        };
        Report {
            before: step_cost(before, &plan::plan(before)),
            after: step_cost(after, after_plan),
            passes,
            op_counts,
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
