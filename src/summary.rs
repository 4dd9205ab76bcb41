//! The human-readable summary `nnc compile` prints.

use nnc_autodiff::{Part, TrainGraph, TrainOptions};
use nnc_ir::{cost, Graph};
use std::fmt::Write;

/// Thousands separators, for counts people read.
pub fn group_digits(n: u64) -> String {
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

pub fn summary(graph: &Graph) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "graph {}", graph.name);
    let _ = writeln!(out, "inputs:");
    for id in graph.inputs() {
        let _ = writeln!(out, "  {}: {}", graph.name_of(id), graph.ty(id));
    }
    let _ = writeln!(out, "outputs:");
    for &id in graph.outputs() {
        let _ = writeln!(out, "  {}: {}", graph.name_of(id), graph.ty(id));
    }
    let params = graph.params();
    let (count, bytes) = cost::param_sizes(graph);
    let _ = writeln!(
        out,
        "parameters: {} tensors, {} values, {} bytes",
        params.len(),
        group_digits(count as u64),
        group_digits(bytes as u64)
    );
    for id in params {
        let ty = graph.ty(id);
        let _ = writeln!(
            out,
            "  {}: {} ({} values)",
            graph.name_of(id),
            ty,
            group_digits(ty.shape.numel(1).unwrap_or(0) as u64)
        );
    }
    let ops: Vec<String> = cost::op_counts(graph)
        .into_iter()
        .filter(|(name, _)| !matches!(*name, "input" | "param"))
        .map(|(name, n)| format!("{name} {n}"))
        .collect();
    let _ = writeln!(out, "ops: {}", ops.join(", "));
    let _ = writeln!(out, "FLOPs per example: {}", group_digits(cost::flops_per_example(graph)));
    out
}

/// The training step's summary: the model's summary, then ops and FLOPs of each part
/// (forward, loss, backward, update).
pub fn train_summary(tg: &TrainGraph, opts: &TrainOptions, lr: f32) -> String {
    let mut out = summary(&tg.graph);
    let _ = writeln!(
        out,
        "training step: loss {}, optimizer {:?}, lr {lr} (fed at run time)",
        opts.loss.name(),
        opts.optimizer
    );
    for note in &tg.notes {
        let _ = writeln!(out, "note: {note}");
    }
    const BATCH: usize = 100;
    let (one, two, at) = (tg.summary(1), tg.summary(2), tg.summary(BATCH));
    let _ =
        writeln!(out, "{:<9} {:>5} {:>15} {:>20}", "part", "ops", "FLOPs/example", format!("FLOPs/step (N={BATCH})"));
    for part in Part::ALL {
        let i = part as usize;
        let per_example = two[i].flops.saturating_sub(one[i].flops);
        let _ = writeln!(
            out,
            "{:<9} {:>5} {:>15} {:>20}",
            format!("{part:?}").to_lowercase(),
            at[i].ops,
            group_digits(per_example),
            group_digits(at[i].flops)
        );
    }
    out
}
