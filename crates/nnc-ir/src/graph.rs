//! The graph: a list of SSA values in definition order.
//!
//! Each value is produced by exactly one op (single-result SSA, like Cranelift's
//! instructions), so a value and the node that defines it are the same thing. Operands
//! always refer to earlier values, which makes every graph acyclic by construction and
//! its vector order a valid schedule.

use crate::error::IrError;
use crate::infer::infer_type;
use crate::op::Op;
use crate::tensor::Tensor;
use crate::types::TensorType;
use std::collections::HashMap;
use std::fmt;

/// Index of a value in its graph.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ValueId(pub u32);

impl ValueId {
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

impl fmt::Display for ValueId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{}", self.0)
    }
}

/// A value: its unique name, type, defining op and operands.
#[derive(Clone, Debug, PartialEq)]
pub struct Value {
    pub name: String,
    pub ty: TensorType,
    pub op: Op,
    pub args: Vec<ValueId>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Graph {
    pub name: String,
    values: Vec<Value>,
    outputs: Vec<ValueId>,
    updates: Vec<(ValueId, ValueId)>,
    by_name: HashMap<String, ValueId>,
}

impl Graph {
    pub fn new(name: impl Into<String>) -> Graph {
        Graph { name: name.into(), ..Graph::default() }
    }

    pub fn values(&self) -> &[Value] {
        &self.values
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    pub fn value(&self, id: ValueId) -> &Value {
        &self.values[id.index()]
    }

    pub fn ty(&self, id: ValueId) -> &TensorType {
        &self.values[id.index()].ty
    }

    pub fn name_of(&self, id: ValueId) -> &str {
        &self.values[id.index()].name
    }

    /// All value ids in definition order.
    pub fn ids(&self) -> impl Iterator<Item = ValueId> + '_ {
        (0..self.values.len() as u32).map(ValueId)
    }

    /// Graph inputs (batch, labels, hyper-parameters), in definition order.
    pub fn inputs(&self) -> Vec<ValueId> {
        self.ids().filter(|&id| matches!(self.value(id).op, Op::Input)).collect()
    }

    /// Trainable parameters, in definition order.
    pub fn params(&self) -> Vec<ValueId> {
        self.ids().filter(|&id| matches!(self.value(id).op, Op::Param { .. })).collect()
    }

    /// Persistent non-trainable state (optimizer moments), in definition order.
    pub fn states(&self) -> Vec<ValueId> {
        self.ids().filter(|&id| matches!(self.value(id).op, Op::State { .. })).collect()
    }

    /// In-place updates `(leaf, new value)`: after a run, parameter or state `leaf`
    /// holds `new value`. A training step declares its parameter and optimizer-state
    /// updates this way, so a backend can write them in place without copies.
    pub fn updates(&self) -> &[(ValueId, ValueId)] {
        &self.updates
    }

    pub fn set_updates(&mut self, updates: Vec<(ValueId, ValueId)>) {
        self.updates = updates;
    }

    pub fn outputs(&self) -> &[ValueId] {
        &self.outputs
    }

    pub fn set_outputs(&mut self, outputs: Vec<ValueId>) {
        self.outputs = outputs;
    }

    pub fn find(&self, name: &str) -> Option<ValueId> {
        self.by_name.get(name).copied()
    }

    /// A name not yet used in this graph, derived from `base`.
    pub fn fresh_name(&self, base: &str) -> String {
        if !self.by_name.contains_key(base) {
            return base.to_string();
        }
        (1..).map(|i| format!("{base}.{i}")).find(|n| !self.by_name.contains_key(n)).expect("an unused name exists")
    }

    /// Appends a value whose type is inferred from the op and operands.
    /// The name must be unused; use [`Graph::fresh_name`] to derive one.
    pub fn push(&mut self, name: impl Into<String>, op: Op, args: &[ValueId]) -> Result<ValueId, IrError> {
        let name = name.into();
        let ty = {
            let arg_types = self.arg_types(&name, &op, args)?;
            infer_type(&op, &arg_types).map_err(|message| IrError::Type {
                value: name.clone(),
                op: op.mnemonic().to_string(),
                message,
            })?
        };
        self.push_typed(name, ty, op, args.to_vec())
    }

    /// Appends a value with a declared type, as the parser and the ONNX importer do
    /// for inputs. The verifier checks declared types against inference.
    pub fn push_typed(&mut self, name: String, ty: TensorType, op: Op, args: Vec<ValueId>) -> Result<ValueId, IrError> {
        if self.by_name.contains_key(&name) {
            return Err(IrError::structure(name, "defined twice"));
        }
        if let Some(bad) = args.iter().find(|a| a.index() >= self.values.len()) {
            return Err(IrError::structure(name, format!("operand {bad} is not defined before use")));
        }
        let id = ValueId(self.values.len() as u32);
        self.by_name.insert(name.clone(), id);
        self.values.push(Value { name, ty, op, args });
        Ok(id)
    }

    fn arg_types(&self, name: &str, op: &Op, args: &[ValueId]) -> Result<Vec<&TensorType>, IrError> {
        if args.len() != op.arity() {
            return Err(IrError::Type {
                value: name.to_string(),
                op: op.mnemonic().to_string(),
                message: format!("takes {} operands, got {}", op.arity(), args.len()),
            });
        }
        args.iter()
            .map(|a| {
                self.values
                    .get(a.index())
                    .map(|v| &v.ty)
                    .ok_or_else(|| IrError::structure(name, format!("operand {a} is not defined before use")))
            })
            .collect()
    }

    /// Replaces the initial value of a parameter or state (e.g. after training).
    pub fn set_init(&mut self, id: ValueId, value: Tensor) {
        if let Op::Param { init } | Op::State { init } = &mut self.values[id.index()].op {
            *init = Some(value);
        }
    }

    /// Removes and returns the initial value of a parameter or state, e.g. once a
    /// backend holds the values in its own buffers.
    pub fn take_init(&mut self, id: ValueId) -> Option<Tensor> {
        match &mut self.values[id.index()].op {
            Op::Param { init } | Op::State { init } => init.take(),
            _ => None,
        }
    }

    /// Renames a value; fails if the new name is taken.
    pub fn rename(&mut self, id: ValueId, name: impl Into<String>) -> Result<(), IrError> {
        let name = name.into();
        if self.values[id.index()].name == name {
            return Ok(());
        }
        if self.by_name.contains_key(&name) {
            return Err(IrError::structure(name, "defined twice"));
        }
        let old = std::mem::replace(&mut self.values[id.index()].name, name.clone());
        self.by_name.remove(&old);
        self.by_name.insert(name, id);
        Ok(())
    }

    /// For every value, the values that use it as an operand.
    pub fn users(&self) -> Vec<Vec<ValueId>> {
        let mut users = vec![Vec::new(); self.values.len()];
        for id in self.ids() {
            for &a in &self.value(id).args {
                if !users[a.index()].contains(&id) {
                    users[a.index()].push(id);
                }
            }
        }
        users
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Dim, TensorType};

    #[test]
    fn take_init_leaves_the_parameter_and_its_type() {
        let mut g = Graph::new("g");
        let x = g.input("x", TensorType::f32(&[Dim::Batch, Dim::Fixed(2)])).unwrap();
        let w = g.param("w", Tensor::from_f32(&[2], vec![1.0, 2.0]).unwrap()).unwrap();
        assert_eq!(g.take_init(w), Some(Tensor::from_f32(&[2], vec![1.0, 2.0]).unwrap()));
        assert_eq!(g.value(w).op, Op::Param { init: None });
        assert_eq!(g.ty(w), &TensorType::f32(&[Dim::Fixed(2)]));
        assert_eq!(g.take_init(w), None);
        assert_eq!(g.take_init(x), None);
        g.set_init(w, Tensor::from_f32(&[2], vec![3.0, 4.0]).unwrap());
        assert!(matches!(&g.value(w).op, Op::Param { init: Some(_) }));
    }
}
