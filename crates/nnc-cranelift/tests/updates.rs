//! In-place updates: the parameters after a step equal the interpreter's update values
//! in every aliasing situation (written in place, copied at the end, swapped, returned
//! as outputs before and after the update), over several steps.

mod common;
use common::*;
use nnc_ir::{DType, Graph, Op, Tensor, UnaryOp, ValueId};
use std::collections::HashMap;

/// Runs `steps` steps on the JIT and the interpreter (feeding the interpreter its own
/// updates back) and compares outputs and every parameter and state.
fn check_steps(g: &Graph, steps: usize) {
    let mut c = jit(g);
    let leaves: Vec<ValueId> = g.params().into_iter().chain(g.states()).collect();
    let mut state: HashMap<String, Tensor> =
        leaves.iter().map(|&l| (g.name_of(l).to_string(), c.param(g.name_of(l)).unwrap())).collect();
    let mut r = rng(1);
    for step in 0..steps {
        let mut f = HashMap::new();
        for i in g.inputs() {
            f.insert(g.name_of(i).to_string(), random_f32(&mut r, &g.ty(i).shape.resolve(3)));
        }
        let mut fi = f.clone();
        fi.extend(state.clone());
        let want = nnc_interp::run_step(g, &fi).unwrap();
        let got = c.run(&f).unwrap();
        for (i, (a, b)) in got.iter().zip(&want.outputs).enumerate() {
            assert_close(a, b, 1e-6, &format!("step {step} output {i}"));
        }
        for (&(leaf, _), new) in g.updates().iter().zip(want.updates) {
            state.insert(g.name_of(leaf).to_string(), new);
        }
        for (name, want) in &state {
            assert_close(&c.param(name).unwrap(), want, 1e-6, &format!("step {step} {name}"));
        }
    }
}

fn param(g: &mut Graph, name: &str, v: f32) -> ValueId {
    g.param(name, Tensor::from_f32(&[2, 3], (0..6).map(|i| v + i as f32).collect()).unwrap()).unwrap()
}

#[test]
fn elementwise_update_is_written_in_place() {
    let mut g = Graph::new("sgd");
    let x = g.input("x", fixed(DType::F32, &[2, 3])).unwrap();
    let p = param(&mut g, "p", 1.0);
    let lr = g.scalar(0.5).unwrap();
    let step = g.mul(lr, x).unwrap();
    let new = g.sub(p, step).unwrap();
    g.set_updates(vec![(p, new)]);
    g.set_outputs(vec![new]);
    check_steps(&g, 3);
}

#[test]
fn old_value_read_after_the_new_one_forces_a_copy() {
    let mut g = Graph::new("late_read");
    let x = g.input("x", fixed(DType::F32, &[2, 3])).unwrap();
    let p = param(&mut g, "p", 1.0);
    let new = g.add(p, x).unwrap();
    let late = g.mul(p, new).unwrap(); // reads the old p after the new value exists
    g.set_updates(vec![(p, new)]);
    g.set_outputs(vec![late, p]); // and returns the old p
    check_steps(&g, 3);
}

#[test]
fn swapped_parameters() {
    let mut g = Graph::new("swap");
    let x = g.input("x", fixed(DType::F32, &[2, 3])).unwrap();
    let a = param(&mut g, "a", 1.0);
    let b = param(&mut g, "b", 10.0);
    let s = g.add(a, x).unwrap();
    g.set_updates(vec![(a, b), (b, a)]);
    g.set_outputs(vec![s, a, b]);
    check_steps(&g, 3);
}

#[test]
fn shared_new_value_identity_update_and_state() {
    let mut g = Graph::new("shared");
    let x = g.input("x", fixed(DType::F32, &[2, 3])).unwrap();
    let a = param(&mut g, "a", 1.0);
    let b = param(&mut g, "b", 2.0);
    let m = g.push("m", Op::State { init: Some(Tensor::from_f32(&[2, 3], vec![0.0; 6]).unwrap()) }, &[]).unwrap();
    let e = g.unary(UnaryOp::Neg, x).unwrap();
    let new = g.add(a, e).unwrap();
    let m_new = g.add(m, new).unwrap();
    let same = g.unary(UnaryOp::Identity, b).unwrap();
    g.set_updates(vec![(a, new), (b, same), (m, m_new)]);
    g.set_outputs(vec![new, m]);
    check_steps(&g, 4);
    // The same new value feeding two parameters.
    let mut g = Graph::new("two");
    let x = g.input("x", fixed(DType::F32, &[2, 3])).unwrap();
    let a = param(&mut g, "a", 1.0);
    let b = param(&mut g, "b", 2.0);
    let new = g.add(a, x).unwrap();
    let r = g.reshape(new, nnc_ir::Shape::fixed(&[3, 2])).unwrap();
    let back = g.reshape(r, nnc_ir::Shape::fixed(&[2, 3])).unwrap();
    g.set_updates(vec![(a, new), (b, back)]);
    g.set_outputs(vec![b]);
    check_steps(&g, 3);
}

#[test]
fn update_from_a_matrix_product_and_an_input() {
    let mut g = Graph::new("mm");
    let x = g.input("x", fixed(DType::F32, &[3, 3])).unwrap();
    let w = g.param("w", Tensor::from_f32(&[3, 3], (0..9).map(|i| i as f32 * 0.1).collect()).unwrap()).unwrap();
    let v = g.param("v", Tensor::from_f32(&[3, 3], vec![0.0; 9]).unwrap()).unwrap();
    let y = g.matmul(w, x, false, false).unwrap(); // reads w while writing y: never in place
    g.set_updates(vec![(w, y), (v, x)]);
    g.set_outputs(vec![y]);
    check_steps(&g, 3);
}
