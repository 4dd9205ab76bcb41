//! The step plan is checked by running it: the interpreter computes every value,
//! then a simulated step runs the plan's kernels in order, writing each kernel's
//! results into the planned bytes (an arena buffer or the updated leaf's buffer) and
//! filling every kernel's scratch with garbage, and checks that every operand a kernel
//! reads still holds that operand's value, and that outputs and updates end up right.
//! An overlap of two live buffers, or an update written in place too early, fails it.

mod common;

use common::*;
use nnc_autodiff::Loss;
use nnc_ir::{Graph, Op, Size, Tensor, UnaryOp, ValueId};
use nnc_opt::plan::{ArenaLayout, BufferId, Place, Work, ARENA_ALIGN};
use nnc_opt::{optimize, plan, OptOptions, StepPlan, Storage};
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
    plan: &'p StepPlan,
    layout: ArenaLayout,
    arena: Vec<u8>,
    /// The buffers of parameters and state (updated in place).
    leaves: HashMap<ValueId, Vec<u8>>,
    /// Inputs and constants, read-only.
    fixed: HashMap<ValueId, Vec<u8>>,
}

impl Memory<'_> {
    fn range(&self, b: BufferId, len: usize) -> std::ops::Range<usize> {
        let o = self.layout.offsets[b.0];
        o..o + len
    }

    fn read(&self, id: ValueId, len: usize) -> Vec<u8> {
        match self.plan.storage[id.index()] {
            Storage::Buffer(b) => self.arena[self.range(b, len)].to_vec(),
            Storage::InPlace { leaf } => self.leaves[&leaf].clone(),
            Storage::Alias { of } => self.read(of, len),
            Storage::Leaf => self.leaves.get(&id).or(self.fixed.get(&id)).unwrap().clone(),
            Storage::Unused => panic!("reading an unused value {id}"),
        }
    }

    fn write(&mut self, id: ValueId, data: &[u8]) {
        match self.plan.storage[id.index()] {
            Storage::Buffer(b) => {
                let r = self.range(b, data.len());
                self.arena[r].copy_from_slice(data)
            }
            Storage::InPlace { leaf } => self.leaves.get_mut(&leaf).unwrap().copy_from_slice(data),
            Storage::Leaf if self.leaves.contains_key(&id) => self.leaves.get_mut(&id).unwrap().copy_from_slice(data),
            other => panic!("a kernel writes {id} stored as {other:?}"),
        }
    }
}

/// Runs `g`'s plan at one batch size.
fn simulate(g: &Graph, plan: &StepPlan, batch: usize, seed: u64) {
    let feeds = random_feeds(g, batch, seed);
    let values = nnc_interp::run_all(g, &feeds).unwrap();
    let expect = |id: ValueId| bytes(&values[id.index()]);
    let layout = plan.layout(batch).unwrap();
    for &offset in &layout.offsets {
        assert_eq!(offset % ARENA_ALIGN, 0, "misaligned buffer");
    }
    let mut mem =
        Memory { plan, arena: vec![0xAA; layout.total], layout, leaves: HashMap::new(), fixed: HashMap::new() };
    for id in g.ids() {
        match g.value(id).op {
            Op::Param { .. } | Op::State { .. } => mem.leaves.insert(id, expect(id)),
            Op::Input | Op::Const(_) => mem.fixed.insert(id, expect(id)),
            _ => None,
        };
    }
    let check = |mem: &Memory, reader: &str, a: ValueId| {
        assert!(
            mem.read(a, expect(a).len()) == expect(a),
            "{reader} reads %{}, which was overwritten\n{}",
            g.name_of(a),
            plan.describe(g, batch)
        );
    };
    let mut buffers: HashMap<BufferId, Vec<u8>> = HashMap::new();
    for k in &plan.kernels {
        for &s in &k.scratch {
            let len = plan.buffers[s.0].size.at(batch).unwrap() as usize;
            let r = mem.range(s, len);
            mem.arena[r].fill(0x55);
        }
        match &k.work {
            Work::Compute { leader, results } => {
                for &a in &g.value(*leader).args {
                    check(&mem, g.name_of(*leader), a);
                }
                for &r in results {
                    mem.write(r, &expect(r));
                }
            }
            Work::ColumnSum { value, .. } => mem.write(*value, &expect(*value)),
            Work::Snapshot { value, into } => {
                check(&mem, "a snapshot", *value);
                let data = expect(*value);
                let r = mem.range(*into, data.len());
                mem.arena[r].copy_from_slice(&data);
                buffers.insert(*into, data);
            }
            Work::Stage { from, into, .. } => {
                check(&mem, "a stage", *from);
                let data = expect(*from);
                let r = mem.range(*into, data.len());
                mem.arena[r].copy_from_slice(&data);
                buffers.insert(*into, data);
            }
            Work::CopyUpdate { leaf, from } => {
                let data = match from {
                    Place::Value(v) => {
                        check(&mem, "an update copy", *v);
                        expect(*v)
                    }
                    Place::Buffer(b) => {
                        let data = buffers[b].clone();
                        assert!(mem.arena[mem.range(*b, data.len())] == data[..], "a stage was overwritten");
                        data
                    }
                };
                mem.leaves.get_mut(leaf).unwrap().copy_from_slice(&data);
            }
        }
    }
    for (&o, place) in g.outputs().iter().zip(&plan.outputs) {
        let got = match place {
            Place::Value(v) => mem.read(*v, expect(o).len()),
            Place::Buffer(b) => mem.arena[mem.range(*b, expect(o).len())].to_vec(),
        };
        assert!(got == expect(o), "output %{}", g.name_of(o));
    }
    for &(leaf, new) in g.updates() {
        assert!(mem.leaves[&leaf] == expect(new), "update of %{}", g.name_of(leaf));
    }
}

/// The plan of `g`, checked at two batch sizes, with a scratch buffer for every
/// computing kernel (as a backend adds them).
fn check(g: &Graph, what: &str) -> StepPlan {
    let mut p = plan(g);
    assert!(p.refused.is_empty(), "{what}: {:?}", p.refused);
    for k in 0..p.kernels.len() {
        if matches!(p.kernels[k].work, Work::Compute { .. }) {
            p.add_scratch(k, Size { fixed: 64, per_batch: 8 });
        }
    }
    for (batch, seed) in [(1, 1), (7, 2)] {
        simulate(g, &p, batch, seed);
    }
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
        assert_eq!(plan(&o.graph), o.plan);
        assert!(raw.copied_updates.is_empty() && opt.copied_updates.is_empty(), "{name}: updates in place");
        let arena = o.plan.layout(100).unwrap().total as u64;
        assert!(arena < o.plan.naive_bytes(&o.graph).at(100).unwrap(), "{name}");
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
    insta::assert_snapshot!(format!("{reused:?}\n{}", plan(&g).describe(&g, 10)));
}

#[test]
fn outputs_and_sources_that_update_copies_overwrite_are_copied_first() {
    // `a` and `b` swap: each new value is the other leaf, so neither is in place, and
    // `b`'s copy would overwrite `a`'s new value before `a`'s copy reads it: staged.
    // The output `a` is the old value, which `a`'s copy overwrites: snapshotted.
    let g = nnc_ir::parse(
        r#"
graph swap {
  %a: f32[4] = param
  %b: f32[4] = param
  %x: f32[4] = input
  %a2: f32[4] = identity %b
  %b2: f32[4] = add %a, %x
  update %a <- %a2
  update %b <- %b2
  return %a
}
"#,
    )
    .unwrap();
    let p = check(&g, "swap");
    let work: Vec<&Work> = p.kernels.iter().map(|k| &k.work).collect();
    assert!(matches!(work[0], Work::Compute { .. }), "{work:?}");
    assert!(matches!(work[1], Work::Snapshot { value: ValueId(0), .. }), "{work:?}");
    assert!(matches!(work[2], Work::Stage { leaf: ValueId(0), .. }), "{work:?}");
    assert!(matches!(work[3..], [Work::CopyUpdate { .. }, Work::CopyUpdate { .. }]), "{work:?}");
    assert_eq!(p.copied_updates.len(), 2);
}
