//! Rebuilding a graph after a pass: every pass decides, on the input graph, which
//! values to replace by another op and which to forward to another value, then
//! [`Rewriter::finish`] builds the new graph.
//!
//! Values keep their names (a fused op takes the name of the value it replaces, so
//! `%fc1.act = fused.dense[..]` reads as what it computes), forwarded values stay in
//! place until `dce` drops them, and outputs and updates follow the forwarding.
//! Definition order is kept except where a replacement needs an operand defined
//! later; such operands move up (a depth-first schedule), which keeps every graph a
//! valid schedule without the passes having to care.

use crate::OptError;
use nnc_ir::{infer::infer_type, Graph, Op, TensorType, ValueId};

pub(crate) struct Rewriter<'g> {
    g: &'g Graph,
    pass: &'static str,
    replaced: Vec<Option<(Op, Vec<ValueId>)>>,
    forward: Vec<Option<ValueId>>,
}

impl<'g> Rewriter<'g> {
    pub fn new(g: &'g Graph, pass: &'static str) -> Rewriter<'g> {
        Rewriter { g, pass, replaced: vec![None; g.len()], forward: vec![None; g.len()] }
    }

    /// Where uses of `id` now go, following forwards.
    pub fn resolve(&self, mut id: ValueId) -> ValueId {
        // Forwarding only ever points at values that are not forwarded themselves
        // when set (see `forward`), but a chain is harmless and bounded by the length.
        for _ in 0..self.g.len() {
            match self.forward[id.index()] {
                Some(next) if next != id => id = next,
                _ => break,
            }
        }
        id
    }

    /// The op and (resolved) operands `id` has after the rewrites so far.
    pub fn current(&self, id: ValueId) -> (&Op, Vec<ValueId>) {
        match &self.replaced[id.index()] {
            Some((op, args)) => (op, args.iter().map(|&a| self.resolve(a)).collect()),
            None => {
                let v = self.g.value(id);
                (&v.op, v.args.iter().map(|&a| self.resolve(a)).collect())
            }
        }
    }

    /// `id` is computed by `op` on `args` from now on; its type must not change.
    pub fn replace(&mut self, id: ValueId, op: Op, args: Vec<ValueId>) {
        self.replaced[id.index()] = Some((op, args));
    }

    /// Replaces `id` if `op` on `args` has exactly `id`'s type (the fusion passes
    /// match shapes loosely and let this decide); returns whether it did.
    pub fn try_replace(&mut self, id: ValueId, op: Op, args: Vec<ValueId>) -> bool {
        let types: Vec<&TensorType> = args.iter().map(|&a| self.g.ty(a)).collect();
        if infer_type(&op, &types).as_ref() != Ok(self.g.ty(id)) {
            return false;
        }
        self.replace(id, op, args);
        true
    }

    /// Uses of `id` (and the outputs and updates naming it) become uses of `to`,
    /// which must have the same type.
    pub fn forward(&mut self, id: ValueId, to: ValueId) {
        let to = self.resolve(to);
        if to != id {
            self.forward[id.index()] = Some(to);
        }
    }

    fn internal(&self, message: String) -> OptError {
        OptError::Internal { pass: self.pass, message }
    }

    /// The rewritten graph.
    pub fn finish(self) -> Result<Graph, OptError> {
        let g = self.g;
        let n = g.len();
        // The operands of each value after rewriting.
        let args: Vec<Vec<ValueId>> = g.ids().map(|id| self.current(id).1).collect();
        // Depth-first, in definition order: a value comes after its operands.
        let mut order = Vec::with_capacity(n);
        let mut state = vec![0u8; n]; // 0 new, 1 on the stack, 2 placed
        for root in g.ids() {
            let mut stack = vec![(root, 0usize)];
            while let Some(&mut (id, ref mut next)) = stack.last_mut() {
                if state[id.index()] == 2 {
                    stack.pop();
                    continue;
                }
                state[id.index()] = 1;
                if let Some(&a) = args[id.index()].get(*next) {
                    *next += 1;
                    match state[a.index()] {
                        0 => stack.push((a, 0)),
                        1 => return Err(self.internal(format!("the rewrite makes %{} depend on itself", g.name_of(a)))),
                        _ => {}
                    }
                } else {
                    state[id.index()] = 2;
                    order.push(id);
                    stack.pop();
                }
            }
        }

        let mut out = Graph::new(g.name.clone());
        let mut map: Vec<Option<ValueId>> = vec![None; n];
        for id in order {
            let v = g.value(id);
            let new_args: Vec<ValueId> = args[id.index()]
                .iter()
                .map(|a| {
                    map[a.index()]
                        .ok_or_else(|| self.internal(format!("%{} is used before it is placed", g.name_of(*a))))
                })
                .collect::<Result<_, _>>()?;
            let op = match &self.replaced[id.index()] {
                Some((op, _)) => {
                    let types: Vec<&TensorType> = new_args.iter().map(|&a| out.ty(a)).collect();
                    let ty = infer_type(op, &types).map_err(|m| {
                        self.internal(format!("the replacement {} of %{} is ill-typed: {m}", op.mnemonic(), v.name))
                    })?;
                    if ty != v.ty {
                        return Err(self.internal(format!(
                            "the replacement {} of %{} has type {ty}, not {}",
                            op.mnemonic(),
                            v.name,
                            v.ty
                        )));
                    }
                    op.clone()
                }
                None => v.op.clone(),
            };
            let new =
                out.push_typed(v.name.clone(), v.ty.clone(), op, new_args).map_err(|e| self.internal(e.to_string()))?;
            map[id.index()] = Some(new);
        }
        let remap = |id: ValueId| {
            map[self.resolve(id).index()].ok_or_else(|| self.internal(format!("%{} was lost", g.name_of(id))))
        };
        let outputs = g.outputs().iter().map(|&o| remap(o)).collect::<Result<_, _>>()?;
        // The updated leaf itself is never forwarded: it is the state being written.
        let updates = g
            .updates()
            .iter()
            .map(|&(l, v)| {
                Ok((map[l.index()].ok_or_else(|| self.internal("an updated leaf was lost".into()))?, remap(v)?))
            })
            .collect::<Result<_, OptError>>()?;
        out.set_outputs(outputs);
        out.set_updates(updates);
        Ok(out)
    }
}
