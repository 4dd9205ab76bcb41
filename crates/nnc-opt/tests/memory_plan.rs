//! The memory plan is checked by running it: the interpreter computes every value,
//! then a simulated step writes each kernel's results into the planned bytes (arena
//! or the updated leaf's buffer) and checks that every operand a kernel reads still
//! holds that operand's value, and that outputs and updates end up right. An
//! overlap of two live buffers, or an update written in place too early, fails it.

mod common;

use common::*;
use nnc_autodiff::Loss;
use nnc_ir::{Graph, Op, Tensor, UnaryOp, ValueId};
use nnc_opt::memory_plan::{FIXED_ALIGN, PER_EXAMPLE_ALIGN};
use nnc_opt::{optimize, plan, MemoryPlan, OptOptions, Storage};
use std::collections::HashMap;

fn bytes(t: &Tensor) -> Vec<u8> {
    match t {
        Tensor::F32(a) => a.iter().flat_map(|v| v.to_le_bytes()).collect(),
        Tensor::I64(a) => a.iter().flat_map(|v| v.to_le_bytes()).collect(),
        Tensor::I32(a) => a.iter().flat_map(|v| v.to_le_bytes()).collect(),
        Tensor::Bool(a) => a.iter().map(|&v| v as u8).collect(),
    }
}

struct Memory<'p> {
    plan: &'p MemoryPlan,
    batch: usize,
    arena: Vec<u8>,
    /// The buffers of parameters and state (updated in place).
    leaves: HashMap<ValueId, Vec<u8>>,
    /// Inputs and constants, read-only.
    fixed: HashMap<ValueId, Vec<u8>>,
}

impl Memory<'_> {
    fn read(&self, id: ValueId) -> Vec<u8> {
        match &self.plan.storage[id.index()] {
            Storage::Arena { offset, size } => {
                let (o, s) = (offset.at(self.batch).unwrap() as usize, size.at(self.batch).unwrap() as usize);
                self.arena[o..o + s].to_vec()
            }
            Storage::InPlace { leaf } => self.leaves[leaf].clone(),
            Storage::Alias { of } => self.read(*of),
            Storage::Leaf => self.leaves.get(&id).or(self.fixed.get(&id)).unwrap().clone(),
            Storage::Unused => panic!("reading an unused value {id}"),
        }
    }

    fn write(&mut self, id: ValueId, data: &[u8]) {
        match &self.plan.storage[id.index()] {
            Storage::Arena { offset, size } => {
                let (o, s) = (offset.at(self.batch).unwrap() as usize, size.at(self.batch).unwrap() as usize);
                assert_eq!(s, data.len());
                self.arena[o..o + s].copy_from_slice(data);
            }
            Storage::InPlace { leaf } => self.leaves.get_mut(leaf).unwrap().copy_from_slice(data),
            other => panic!("a kernel writes {id} stored as {other:?}"),
        }
    }
}

/// Runs `g`'s schedule on the plan at one batch size.
fn simulate(g: &Graph, plan: &MemoryPlan, batch: usize, seed: u64) {
    let feeds = random_feeds(g, batch, seed);
    let values = nnc_interp::run_all(g, &feeds).unwrap();
    let expect = |id: ValueId| bytes(&values[id.index()]);
    let mut mem = Memory {
        plan,
        batch,
        arena: vec![0xAA; plan.arena_bytes(batch) as usize],
        leaves: HashMap::new(),
        fixed: HashMap::new(),
    };
    for id in g.ids() {
        match g.value(id).op {
            Op::Param { .. } | Op::State { .. } => mem.leaves.insert(id, expect(id)),
            Op::Input | Op::Const(_) => mem.fixed.insert(id, expect(id)),
            _ => None,
        };
        if let Storage::Arena { offset, .. } = plan.storage[id.index()] {
            let align = if offset.per_batch > 0 { PER_EXAMPLE_ALIGN } else { FIXED_ALIGN };
            assert_eq!(offset.at(batch).unwrap() % align.min(FIXED_ALIGN), 0, "%{} is misaligned", g.name_of(id));
        }
    }
    let (kernels, _) = nnc_opt::report::kernels(g);
    for members in &kernels {
        for &m in members {
            for &a in &g.value(m).args {
                assert!(
                    mem.read(a) == expect(a),
                    "%{} reads %{}, which was overwritten\n{}",
                    g.name_of(m),
                    g.name_of(a),
                    plan.describe(g)
                );
            }
        }
        for &m in members {
            mem.write(m, &expect(m));
        }
    }
    for &o in g.outputs() {
        assert!(mem.read(o) == expect(o), "output %{}", g.name_of(o));
    }
    for &(leaf, new) in g.updates() {
        let got = match plan.storage[new.index()] {
            Storage::InPlace { leaf: l } => {
                assert_eq!(l, leaf);
                mem.leaves[&leaf].clone()
            }
            _ => {
                assert!(
                    plan.copied_updates.contains(&(leaf, new)),
                    "%{} is neither in place nor copied",
                    g.name_of(new)
                );
                mem.read(new)
            }
        };
        assert!(got == expect(new), "update of %{}", g.name_of(leaf));
    }
}

fn check(g: &Graph, what: &str) -> MemoryPlan {
    let p = plan(g).unwrap();
    for (batch, seed) in [(1, 1), (7, 2)] {
        simulate(g, &p, batch, seed);
    }
    assert!(p.arena_bytes(64) <= p.naive_bytes(64) + 64 * p.storage.len() as u64, "{what}");
    p
}

#[test]
fn plans_of_training_steps_run() {
    let mut graphs = vec![("seed", sgd_step(&seed_mlp()))];
    for (name, opt, wd) in optimizers() {
        graphs.push((name, step(&mlp(&[12, 16, 8, 5], UnaryOp::Relu, 4), Loss::CrossEntropy, opt, wd)));
    }
    for act in ACTIVATIONS {
        graphs.push(("act", sgd_step(&mlp(&[12, 16, 8, 5], act, 3))));
    }
    graphs.push(("mse", step(&mlp(&[6, 7, 3], UnaryOp::Tanh, 5), Loss::Mse, nnc_autodiff::Optimizer::adam(), 0.0)));
    for (name, g) in graphs {
        let raw = check(&g, name);
        let o = optimize(&g, &OptOptions::default()).unwrap();
        let opt = check(&o.graph, name);
        assert_eq!(opt, o.plan);
        assert!(raw.copied_updates.is_empty() && opt.copied_updates.is_empty(), "{name}: updates in place");
        assert!(opt.arena_bytes(100) < opt.naive_bytes(100), "{name}");
    }
}

#[test]
fn update_after_a_later_read_is_copied() {
    let g = nnc_ir::parse(
        r#"
graph late {
  %w: f32[3] = param
  %g: f32[3] = input
  %lr: f32[] = input
  %w_new: f32[3] = fused.sgd %w, %g, %lr
  %late: f32[3] = mul %w, %w_new          ; reads the old w after its update kernel
  update %w <- %w_new
  return %late
}
"#,
    )
    .unwrap();
    let p = check(&g, "late");
    assert_eq!(p.copied_updates, [(ValueId(0), ValueId(3))]);
}

#[test]
fn matmul_operand_is_not_overwritten_in_place() {
    // dense_sgd reads w both as the product's operand and elementwise: not in place.
    let g = nnc_ir::parse(
        r#"
graph tied {
  %w: f32[3,3] = param
  %lr: f32[] = input
  %w_new: f32[3,3] = fused.dense_sgd[trans_a] %w, %w, %w, %lr
  update %w <- %w_new
  return %w_new
}
"#,
    )
    .unwrap();
    let p = check(&g, "tied");
    assert_eq!(p.copied_updates.len(), 1);
}

#[test]
fn dying_elementwise_operands_are_reused() {
    let g = nnc_ir::parse(
        r#"
graph chain {
  %x: f32[N,8] = input
  %a: f32[N,8] = exp %x
  %b: f32[N,8] = neg %a                   ; over a
  %c: f32[N,8] = tanh %b                  ; over b (so a's bytes again)
  %d: f32[N,8] = mul %c, %x               ; NOT over c: c is read later; x is an input
  %e: f32[N,8] = sigmoid %d               ; over d
  %f: f32[N,8] = add %e, %c               ; over e or c, both die here
  return %f
}
"#,
    )
    .unwrap();
    let p = check(&g, "chain");
    let name = |id: ValueId| g.name_of(id).to_string();
    let reused: Vec<(String, String)> = p.reused.iter().map(|&(v, a)| (name(v), name(a))).collect();
    insta::assert_snapshot!(format!("{reused:?}\n{}", p.describe(&g)));
}
