//! The reverse sweep: from the loss back to the parameters.
//!
//! 1. Find the values that need a gradient: those that depend on a `wrt` value *and*
//!    lead to the loss. Nothing is computed for any other value (inputs, labels,
//!    constants, dead branches), so e.g. the first layer's input gets no gradient.
//! 2. Seed `∂loss/∂loss = 1` and walk the values in reverse definition order. Every
//!    user of a value comes after it, so when the walk reaches a value its gradient
//!    is complete; [`rules::vjp`] then appends its operands' contributions.
//! 3. Contributions to a value with several uses are summed as they arrive.
//!
//! A value's final gradient is named `<value>.grad`. An op without a rule does not
//! stop the walk: it is recorded and the walk goes on with a placeholder, so the
//! error lists every such node at once.

use crate::emit::Emitter;
use crate::error::AutodiffError;
use crate::rules::{self, carries_gradient};
use nnc_ir::{DType, Graph, IrError, Op, Tensor, TensorType, ValueId};
use std::collections::HashSet;

/// Appends the gradients of the scalar `loss` with respect to each `wrt` value.
/// `None` for a `wrt` value the loss does not depend on.
pub(crate) fn backward(
    em: &mut Emitter,
    loss: ValueId,
    wrt: &[ValueId],
) -> Result<Vec<Option<ValueId>>, AutodiffError> {
    check_ids(&em.graph, loss, wrt)?;
    let needs = needs_gradient(&em.graph, loss, wrt);
    let mut acc = Accumulator::new(&em.graph, &needs);
    if !needs[loss.index()] {
        return Ok(vec![None; wrt.len()]);
    }
    let seed_name = format!("{}.grad", em.graph.name_of(loss));
    let seed = em.named(&seed_name, Op::Const(Tensor::scalar_f32(1.0)), &[])?;
    acc.grads[loss.index()] = Some(seed);
    acc.named.insert(seed);

    let mut missing: Vec<(String, &'static str)> = Vec::new();
    for y in (0..=loss.0).rev().map(ValueId) {
        let value = em.graph.value(y);
        if !needs[y.index()] || value.op.is_leaf() {
            continue;
        }
        let wants: Vec<bool> = value
            .args
            .iter()
            .enumerate()
            .map(|(slot, a)| needs[a.index()] && carries_gradient(&value.op, slot))
            .collect();
        let args = value.args.clone();
        let name = value.name.clone();
        let g = match acc.grads[y.index()] {
            Some(g) => g,
            // Only reachable after a missing rule cut the path: keep walking so the
            // error names every op without a rule, not just the first.
            None if !missing.is_empty() => {
                let ty = em.ty(y).clone();
                em.graph.push_typed(em.graph.fresh_name(&format!("{name}.grad.placeholder")), ty, Op::Input, vec![])?
            }
            None => continue,
        };
        em.set_prefix(format!("{name}.bwd"));
        match rules::vjp(em, y, g, &wants) {
            Ok(contributions) => {
                for ((slot, &a), c) in args.iter().enumerate().zip(contributions) {
                    if let (true, Some(c)) = (wants[slot], c) {
                        acc.add(em, a, c)?;
                    }
                }
            }
            Err(AutodiffError::NoGradient { nodes }) => missing.extend(nodes),
            Err(e) => return Err(e),
        }
    }
    if !missing.is_empty() {
        missing.reverse();
        return Err(AutodiffError::NoGradient { nodes: missing });
    }
    Ok(wrt.iter().map(|w| acc.grads[w.index()]).collect())
}

fn check_ids(graph: &Graph, loss: ValueId, wrt: &[ValueId]) -> Result<(), AutodiffError> {
    if let Some(bad) = std::iter::once(&loss).chain(wrt).find(|v| v.index() >= graph.len()) {
        return Err(AutodiffError::NotDifferentiable(format!("{bad} is not a value of graph {}", graph.name)));
    }
    let ty = graph.ty(loss);
    if *ty != TensorType::new(DType::F32, nnc_ir::Shape::scalar()) {
        return Err(AutodiffError::NotDifferentiable(format!(
            "the loss %{} must be an f32 scalar, not {ty}",
            graph.name_of(loss)
        )));
    }
    if let Some(&w) = wrt.iter().find(|&&w| graph.ty(w).dtype != DType::F32) {
        return Err(AutodiffError::NotDifferentiable(format!(
            "%{} is {}; only f32 values have gradients",
            graph.name_of(w),
            graph.ty(w)
        )));
    }
    Ok(())
}

/// Values that depend on some `wrt` value and lead to `loss`, both along gradient
/// paths (operands that carry gradients). Values after the loss never qualify.
fn needs_gradient(graph: &Graph, loss: ValueId, wrt: &[ValueId]) -> Vec<bool> {
    let n = loss.index() + 1;
    let mut depends = vec![false; n];
    for w in wrt.iter().filter(|w| w.index() < n) {
        depends[w.index()] = true;
    }
    for id in (0..n as u32).map(ValueId) {
        let v = graph.value(id);
        if v.args.iter().enumerate().any(|(slot, a)| carries_gradient(&v.op, slot) && depends[a.index()]) {
            depends[id.index()] = true;
        }
    }
    let mut leads = vec![false; n];
    leads[loss.index()] = true;
    for id in (0..n as u32).rev().map(ValueId) {
        if !leads[id.index()] {
            continue;
        }
        let v = graph.value(id);
        for (slot, a) in v.args.iter().enumerate() {
            if carries_gradient(&v.op, slot) {
                leads[a.index()] = true;
            }
        }
    }
    depends.iter().zip(&leads).map(|(&d, &l)| d && l).collect()
}

/// Running sums of gradient contributions, and the naming of complete gradients.
struct Accumulator {
    grads: Vec<Option<ValueId>>,
    /// How many contributions each value will receive, and has received.
    expected: Vec<usize>,
    received: Vec<usize>,
    /// Values already given a `.grad` name (a gradient passed through unchanged,
    /// e.g. by `add`, is the same value as its user's gradient and keeps that name).
    named: HashSet<ValueId>,
    /// Values before this index belong to the forward graph and are never renamed.
    first_new: usize,
}

impl Accumulator {
    fn new(graph: &Graph, needs: &[bool]) -> Accumulator {
        let mut expected = vec![0; graph.len()];
        for (i, &needed) in needs.iter().enumerate() {
            let v = &graph.values()[i];
            if !needed || v.op.is_leaf() {
                continue;
            }
            for (slot, a) in v.args.iter().enumerate() {
                if needs[a.index()] && carries_gradient(&v.op, slot) {
                    expected[a.index()] += 1;
                }
            }
        }
        Accumulator {
            grads: vec![None; graph.len()],
            received: vec![0; graph.len()],
            expected,
            named: HashSet::new(),
            first_new: graph.len(),
        }
    }

    fn add(&mut self, em: &mut Emitter, to: ValueId, c: ValueId) -> Result<(), AutodiffError> {
        if em.ty(c) != em.ty(to) {
            return Err(IrError::structure(
                em.graph.name_of(c),
                format!(
                    "gradient contribution of type {} for %{} of type {}",
                    em.ty(c),
                    em.graph.name_of(to),
                    em.ty(to)
                ),
            )
            .into());
        }
        let name = em.graph.name_of(to).to_string();
        let sum = match self.grads[to.index()] {
            None => c,
            Some(prev) => em.named(&format!("{name}.grad.acc"), Op::Binary(nnc_ir::BinaryOp::Add), &[prev, c])?,
        };
        self.grads[to.index()] = Some(sum);
        self.received[to.index()] += 1;
        let complete = self.received[to.index()] == self.expected[to.index()];
        if complete && sum.index() >= self.first_new && self.named.insert(sum) {
            let fresh = em.graph.fresh_name(&format!("{name}.grad"));
            em.graph.rename(sum, fresh)?;
        }
        Ok(())
    }
}
