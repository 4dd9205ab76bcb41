//! Liveness and copying a graph without its dead values: the one mechanism behind
//! the importer's clean-up, autodiff's pruning and the optimizer's `dce` pass. Each of
//! those only decides which values are roots (always kept).

use crate::error::IrError;
use crate::graph::{Graph, Value, ValueId};

impl Graph {
    /// Which values are needed: the outputs, both sides of every update, the values
    /// `is_root` accepts, and (transitively) their operands.
    pub fn live(&self, is_root: impl Fn(ValueId, &Value) -> bool) -> Vec<bool> {
        let mut live = vec![false; self.len()];
        for &o in self.outputs() {
            live[o.index()] = true;
        }
        for &(leaf, new) in self.updates() {
            live[leaf.index()] = true;
            live[new.index()] = true;
        }
        // Operands come before their users, so one backward sweep settles liveness.
        for id in self.ids().collect::<Vec<_>>().into_iter().rev() {
            if is_root(id, self.value(id)) {
                live[id.index()] = true;
            }
            if live[id.index()] {
                for &a in &self.value(id).args {
                    live[a.index()] = true;
                }
            }
        }
        live
    }

    /// A copy with only the values `keep` marks (names, order, outputs and updates
    /// kept), and each old id's new id (`None` if dropped). `keep` must be closed under
    /// operands and include the outputs and updates, as [`Graph::live`] gives.
    pub fn retain(&self, keep: &[bool]) -> Result<(Graph, Vec<Option<ValueId>>), IrError> {
        let mut out = Graph::new(self.name.clone());
        let mut map: Vec<Option<ValueId>> = vec![None; self.len()];
        let dropped = |id: ValueId| IrError::structure(self.name_of(id), "is needed but was dropped");
        for id in self.ids().filter(|id| keep.get(id.index()).copied().unwrap_or(false)) {
            let v = self.value(id);
            let args = v.args.iter().map(|&a| map[a.index()].ok_or_else(|| dropped(a))).collect::<Result<_, _>>()?;
            map[id.index()] = Some(out.push_typed(v.name.clone(), v.ty.clone(), v.op.clone(), args)?);
        }
        let remap = |id: ValueId| map[id.index()].ok_or_else(|| dropped(id));
        let outputs = self.outputs().iter().map(|&o| remap(o)).collect::<Result<_, _>>()?;
        let updates =
            self.updates().iter().map(|&(l, n)| Ok((remap(l)?, remap(n)?))).collect::<Result<_, IrError>>()?;
        out.set_outputs(outputs);
        out.set_updates(updates);
        Ok((out, map))
    }
}
