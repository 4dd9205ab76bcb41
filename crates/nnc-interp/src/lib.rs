//! nnc's reference interpreter: runs a [`Graph`] on ndarray, one op at a time.
//!
//! It is the oracle every other backend is checked against, so it favours clarity
//! and exact agreement with the IR's type rules (`nnc_ir::infer`) over speed. It
//! computes in f32, as the JIT does. Bad feeds and malformed graphs are errors that
//! name the value; nothing here panics on user input.
//!
//! ```text
//! feeds ──► feed::bind (names, batch, types) ──► eval each value in order ──► outputs
//! ```

mod error;
mod eval;
mod feed;
mod fused;
mod kernels;
mod scalar;
mod typing;
mod window;

pub use error::{InterpError, MissingFeed};
pub use feed::batch_size;

use nnc_ir::{Graph, Op, Tensor, ValueId};
use std::borrow::Cow;
use std::collections::HashMap;

/// Runs the graph and returns its outputs, in `graph.outputs()` order.
///
/// Only the values the outputs depend on are computed, and each intermediate value
/// is dropped right after its last use, so a big graph does not hold everything.
/// Every input (and every parameter or state without an initial value) must be fed;
/// a fed parameter or state overrides its initial value.
pub fn run(graph: &Graph, feeds: &HashMap<String, Tensor>) -> Result<Vec<Tensor>, InterpError> {
    run_roots(graph, feeds, graph.outputs())
}

/// The result of [`run_step`].
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    /// The graph's outputs, in `graph.outputs()` order.
    pub outputs: Vec<Tensor>,
    /// The new value of each updated parameter or state, in `graph.updates()` order.
    pub updates: Vec<Tensor>,
}

/// Like [`run`], but also computes the graph's in-place updates (a training step's
/// new parameters and optimizer state). The interpreter does not write them back;
/// the caller feeds them to the next step or stores them with `Graph::set_init`.
pub fn run_step(graph: &Graph, feeds: &HashMap<String, Tensor>) -> Result<Step, InterpError> {
    let mut roots = graph.outputs().to_vec();
    for &(leaf, new) in graph.updates() {
        if leaf.index() >= graph.len() || !matches!(graph.value(leaf).op, Op::Param { .. } | Op::State { .. }) {
            return Err(malformed(graph, format!("update target {leaf} is not a param or state")));
        }
        roots.push(new);
    }
    let mut outputs = run_roots(graph, feeds, &roots)?;
    let updates = outputs.split_off(graph.outputs().len());
    Ok(Step { outputs, updates })
}

/// Computes `roots` (and what they depend on), freeing other values after last use.
fn run_roots(graph: &Graph, feeds: &HashMap<String, Tensor>, roots: &[ValueId]) -> Result<Vec<Tensor>, InterpError> {
    let plan = Plan::for_roots(graph, roots)?;
    let mut ex = Executor::new(graph, feeds)?;
    for id in graph.ids() {
        if !plan.needed[id.index()] {
            continue;
        }
        ex.compute(id)?;
        for &a in &graph.value(id).args {
            if plan.last_use[a.index()] == Some(id) && !plan.is_root[a.index()] {
                ex.values[a.index()] = None;
            }
        }
    }
    let mut result = Vec::with_capacity(roots.len());
    for (i, r) in roots.iter().enumerate() {
        // Move a root out on its last mention; clone it if it is listed again later.
        let slot = &mut ex.values[r.index()];
        let value = if roots[i + 1..].contains(r) { slot.clone() } else { slot.take() };
        result.push(standard(ex.expect_value(value, *r)?.into_owned()));
    }
    Ok(result)
}

/// Runs the graph and returns the value of every value in it (index = [`ValueId`]),
/// for debugging and for tests that compare graphs before and after a pass.
/// Unlike [`run`], this computes values the outputs do not need, too.
pub fn run_all(graph: &Graph, feeds: &HashMap<String, Tensor>) -> Result<Vec<Tensor>, InterpError> {
    let mut ex = Executor::new(graph, feeds)?;
    for id in graph.ids() {
        ex.compute(id)?;
    }
    let values = std::mem::take(&mut ex.values);
    graph.ids().zip(values).map(|(id, v)| Ok(standard(ex.expect_value(v, id)?.into_owned()))).collect()
}

/// What `run` needs to compute and when each value can be dropped.
struct Plan {
    /// The value feeds a root (directly or through other values).
    needed: Vec<bool>,
    /// The last needed value that uses it as an operand.
    last_use: Vec<Option<ValueId>>,
    /// The value is returned to the caller, so it is never dropped early.
    is_root: Vec<bool>,
}

impl Plan {
    fn for_roots(graph: &Graph, roots: &[ValueId]) -> Result<Plan, InterpError> {
        let n = graph.len();
        let mut needed = vec![false; n];
        let mut is_root = vec![false; n];
        for r in roots {
            if r.index() >= n {
                return Err(malformed(graph, format!("output {r} does not exist")));
            }
            needed[r.index()] = true;
            is_root[r.index()] = true;
        }
        // Operands always precede their users, so one backward sweep finds the
        // needed set and, at each operand's first sighting, its last use.
        let mut last_use = vec![None; n];
        for id in (0..n as u32).rev().map(ValueId) {
            if !needed[id.index()] {
                continue;
            }
            for &a in &graph.value(id).args {
                if a >= id {
                    return Err(malformed(
                        graph,
                        format!("%{} uses {a}, which is not defined before it", graph.name_of(id)),
                    ));
                }
                needed[a.index()] = true;
                last_use[a.index()].get_or_insert(id);
            }
        }
        Ok(Plan { needed, last_use, is_root })
    }
}

/// The values computed so far; leaves are borrowed from the feeds or the graph.
struct Executor<'a> {
    graph: &'a Graph,
    batch: usize,
    leaves: Vec<Option<&'a Tensor>>,
    values: Vec<Option<Cow<'a, Tensor>>>,
}

impl<'a> Executor<'a> {
    fn new(graph: &'a Graph, feeds: &'a HashMap<String, Tensor>) -> Result<Executor<'a>, InterpError> {
        let (batch, leaves) = feed::bind(graph, feeds)?;
        Ok(Executor { graph, batch, leaves, values: vec![None; graph.len()] })
    }

    fn compute(&mut self, id: ValueId) -> Result<(), InterpError> {
        let v = self.graph.value(id);
        if v.op.is_leaf() {
            let t = self.leaves[id.index()]
                .ok_or_else(|| malformed(self.graph, format!("leaf %{} has no tensor", v.name)))?;
            self.values[id.index()] = Some(Cow::Borrowed(t));
            return Ok(());
        }
        let mut args = Vec::with_capacity(v.args.len());
        for &a in &v.args {
            let t = (a < id).then(|| self.values[a.index()].as_deref()).flatten();
            args.push(t.ok_or_else(|| malformed(self.graph, format!("%{} uses {a} before it is computed", v.name)))?);
        }
        let op_error = |message| InterpError::Op { value: v.name.clone(), op: v.op.mnemonic(), message };
        let op = typing::resolve_batch(&v.op, self.batch);
        let ty = typing::result_type(&op, &args, self.batch).map_err(op_error)?;
        // A graph whose declared type disagrees with its operands is refused before
        // anything is computed.
        if ty.dtype != v.ty.dtype || ty.shape.as_fixed() != Some(v.ty.shape.resolve(self.batch)) {
            return Err(feed::type_mismatch(self.graph, id, self.batch, &ty.to_string()));
        }
        let out = standard(eval::eval(&op, &args).map_err(op_error)?);
        if !feed::has_type(&out, &ty, self.batch) {
            let message = format!("interpreter bug: computed {}, but the op's type is {ty}", feed::describe(&out));
            return Err(op_error(message));
        }
        self.values[id.index()] = Some(Cow::Owned(out));
        Ok(())
    }

    fn expect_value(&self, v: Option<Cow<'a, Tensor>>, id: ValueId) -> Result<Cow<'a, Tensor>, InterpError> {
        v.ok_or_else(|| malformed(self.graph, format!("{id} was not computed")))
    }
}

fn malformed(graph: &Graph, message: String) -> InterpError {
    InterpError::Malformed { graph: graph.name.clone(), message }
}

/// The tensor in row-major (standard) layout, so kernels' layout choices never leak
/// out and callers can rely on `as_slice()`.
fn standard(t: Tensor) -> Tensor {
    fn fix<T: Clone>(a: ndarray::ArrayD<T>) -> ndarray::ArrayD<T> {
        if a.is_standard_layout() {
            a
        } else {
            a.as_standard_layout().into_owned()
        }
    }
    match t {
        Tensor::F32(a) => Tensor::F32(fix(a)),
        Tensor::I64(a) => Tensor::I64(fix(a)),
        Tensor::I32(a) => Tensor::I32(fix(a)),
        Tensor::Bool(a) => Tensor::Bool(fix(a)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nnc_ir::{Dim, TensorType};

    #[test]
    fn plan_frees_each_value_after_its_last_needed_use() {
        let mut g = Graph::new("g");
        let x = g.input("x", TensorType::f32(&[Dim::Fixed(2)])).unwrap();
        let a = g.relu(x).unwrap();
        let b = g.add(a, x).unwrap();
        g.mul(a, b).unwrap(); // dead: not needed by any output
        let c = g.add(b, b).unwrap();
        g.set_outputs(vec![c, a]);
        let plan = Plan::for_roots(&g, g.outputs()).unwrap();
        assert_eq!(plan.needed, [true, true, true, false, true]);
        // `dead` does not count as a use: b dies at c, x at b.
        assert_eq!(plan.last_use, [Some(b), Some(b), Some(c), None, None]);
        assert_eq!(plan.is_root, [false, true, false, false, true]);
    }
}
