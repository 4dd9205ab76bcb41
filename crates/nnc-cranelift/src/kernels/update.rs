//! Optimizer updates (`fused.sgd`, `fused.momentum`, `fused.adam`): the new parameter
//! and optimizer state from the old ones and the gradient, elementwise, in one pass.
//!
//! The arithmetic is `FusedOp::expand`'s, operation for operation and without
//! contraction into fused multiply-adds, so the result equals the interpreter's to the
//! last bit. Every operand of an element is loaded before any result is stored, so the
//! results may overwrite `p`, `m` and `v` in place. f32x4 over whole vectors, then
//! scalars. Used on its own (items: elements) and as the epilogue of the matrix product
//! that makes the gradient (`epilogue.rs`).

use crate::clif::Fx;
use crate::program::Update;
use cranelift_codegen::ir::{types, InstBuilder, Type, Value};
use nnc_ir::Size;
use nnc_ir::UpdateRule;

pub(crate) fn items(u: &Update) -> Size {
    u.len
}

pub(crate) fn emit(fx: &mut Fx, u: &Update) {
    let (lo, hi) = (fx.begin, fx.end);
    emit_range(fx, u, lo, hi);
}

/// Base addresses and hoisted scalars of one update.
struct Bases {
    p: Value,
    g: Value,
    states: Vec<Value>,
    outs: [Option<Value>; 3],
    scalars: Vec<Value>,
}

/// Updates elements `[lo, hi)`.
pub(crate) fn emit_range(fx: &mut Fx, u: &Update, lo: Value, hi: Value) {
    let p = fx.slot(u.p);
    let g = fx.slot(u.g);
    let states = u.states.iter().map(|&s| fx.slot(s)).collect();
    let outs = [u.p_out, u.m_out, u.v_out].map(|o| o.map(|s| fx.slot(s)));
    let scalars: Vec<Value> = u
        .scalars
        .iter()
        .map(|&s| {
            let addr = fx.slot(s);
            fx.load(types::F32, addr, 0)
        })
        .collect();
    let vector_scalars = scalars.iter().map(|&x| fx.b.ins().splat(types::F32X4, x)).collect();
    let vector = Bases { p, g, states: Vec::clone(&states), outs, scalars: vector_scalars };
    let scalar = Bases { p, g, states, outs, scalars };
    let rest = fx.for_whole_steps(lo, hi, 4, |fx, i| element(fx, u.rule, types::F32X4, i, &vector));
    fx.for_range(rest, hi, 1, |fx, i| element(fx, u.rule, types::F32, i, &scalar));
}

/// One element (or one f32x4 of elements) `i`.
fn element(fx: &mut Fx, rule: UpdateRule, ty: Type, i: Value, b: &Bases) {
    let off = fx.mul_imm(i, 4);
    let load = |fx: &mut Fx, base: Value| {
        let addr = fx.add(base, off);
        fx.load(ty, addr, 0)
    };
    let p = load(fx, b.p);
    let g = load(fx, b.g);
    let states: Vec<Value> = b.states.iter().map(|&s| load(fx, s)).collect();
    let k = |fx: &mut Fx, c: f32| {
        let c = fx.b.ins().f32const(c);
        if ty == types::F32 {
            c
        } else {
            fx.b.ins().splat(ty, c)
        }
    };
    let l2 = |fx: &mut Fx, g: Value, wd: f32| {
        if wd == 0.0 {
            return g;
        }
        let wd = k(fx, wd);
        let decay = fx.b.ins().fmul(p, wd);
        fx.b.ins().fadd(g, decay)
    };
    let s = &b.scalars;
    let (p_new, m_new, v_new) = match rule {
        UpdateRule::Sgd { weight_decay } => {
            let g = l2(fx, g, weight_decay);
            let step = fx.b.ins().fmul(g, s[0]);
            (fx.b.ins().fsub(p, step), None, None)
        }
        UpdateRule::Momentum { momentum, nesterov, weight_decay } => {
            let g = l2(fx, g, weight_decay);
            let mu = k(fx, momentum);
            let decayed = fx.b.ins().fmul(states[0], mu);
            let m_new = fx.b.ins().fadd(decayed, g);
            let dir = if nesterov {
                let look_ahead = fx.b.ins().fmul(m_new, mu);
                fx.b.ins().fadd(g, look_ahead)
            } else {
                m_new
            };
            let step = fx.b.ins().fmul(dir, s[0]);
            (fx.b.ins().fsub(p, step), Some(m_new), None)
        }
        UpdateRule::Adam { beta1, beta2, eps, decay } => {
            let (b1, c1) = (k(fx, beta1), k(fx, 1.0 - beta1));
            let m_old = fx.b.ins().fmul(states[0], b1);
            let m_g = fx.b.ins().fmul(g, c1);
            let m_new = fx.b.ins().fadd(m_old, m_g);
            let (b2, c2) = (k(fx, beta2), k(fx, 1.0 - beta2));
            let v_old = fx.b.ins().fmul(states[1], b2);
            let gg = fx.b.ins().fmul(g, g);
            let v_g = fx.b.ins().fmul(gg, c2);
            let v_new = fx.b.ins().fadd(v_old, v_g);
            let sqrt_v = fx.b.ins().sqrt(v_new);
            let sqrt_v_hat = fx.b.ins().fmul(sqrt_v, s[1]);
            let eps = k(fx, eps);
            let denom = fx.b.ins().fadd(sqrt_v_hat, eps);
            let ratio = fx.b.ins().fdiv(m_new, denom);
            let step = fx.b.ins().fmul(ratio, s[0]);
            let base = if decay { fx.b.ins().fmul(p, s[2]) } else { p };
            (fx.b.ins().fsub(base, step), Some(m_new), Some(v_new))
        }
    };
    for (out, value) in b.outs.iter().zip([Some(p_new), m_new, v_new]) {
        if let (Some(base), Some(v)) = (out, value) {
            let addr = fx.add(*base, off);
            fx.store(v, addr, 0);
        }
    }
}
