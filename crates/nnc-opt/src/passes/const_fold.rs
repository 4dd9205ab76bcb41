//! Constant folding: a value computed only from constants, with a static shape and
//! at most [`MAX_FOLDED_ELEMENTS`] elements, becomes a constant. The value is
//! computed by the interpreter, so it is exactly what running the graph would give.
//! Batch-sized values are never folded (their size is a run-time value), nor are
//! big results, which would bloat the graph (a broadcast of a scalar is cheaper to
//! compute than to store). An op the interpreter refuses (an out-of-range class
//! index, an integer division by zero) is left for run time to report.

use crate::rewrite::Rewriter;
use crate::OptError;
use nnc_ir::{Graph, Op, Tensor, ValueId};
use std::collections::HashMap;

pub const NAME: &str = "const_fold";

/// Largest constant folding creates.
pub const MAX_FOLDED_ELEMENTS: usize = 4096;

pub fn run(graph: &Graph) -> Result<Graph, OptError> {
    let mut rw = Rewriter::new(graph, NAME);
    let mut known: Vec<Option<Tensor>> = vec![None; graph.len()];
    for id in graph.ids() {
        let v = graph.value(id);
        match &v.op {
            Op::Const(t) => known[id.index()] = Some(t.clone()),
            op if !op.is_leaf() => {
                let small = v.ty.shape.as_fixed().is_some_and(|d| d.iter().product::<usize>() <= MAX_FOLDED_ELEMENTS);
                let operands: Option<Vec<&Tensor>> = v.args.iter().map(|a| known[a.index()].as_ref()).collect();
                if let (true, Some(operands)) = (small, operands) {
                    if let Some(t) = evaluate(graph, id, &operands) {
                        rw.replace(id, Op::Const(t.clone()), Vec::new());
                        known[id.index()] = Some(t);
                    }
                }
            }
            _ => {}
        }
    }
    rw.finish()
}

/// Runs the single op `id` on constant operands in the interpreter.
fn evaluate(graph: &Graph, id: ValueId, operands: &[&Tensor]) -> Option<Tensor> {
    let v = graph.value(id);
    let mut g = Graph::new("fold");
    let args: Vec<ValueId> = operands
        .iter()
        .enumerate()
        .map(|(i, &t)| g.push(format!("c{i}"), Op::Const(t.clone()), &[]))
        .collect::<Result<_, _>>()
        .ok()?;
    let out = g.push("out", v.op.clone(), &args).ok()?;
    g.set_outputs(vec![out]);
    nnc_interp::run(&g, &HashMap::new()).ok()?.pop()
}
