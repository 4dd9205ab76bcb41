//! Optimizer updates as nnc-autodiff writes them (see its `optim.rs`) become one
//! elementwise kernel per parameter, `fused.sgd` / `fused.momentum` / `fused.adam`,
//! whose siblings (`out=m`, `out=v`) are the new optimizer state: one pass over the
//! parameter, its state and its gradient instead of 2 to 14 kernels.
//!
//! When the gradient is a 2-D matmul used by nothing but the update (a weight
//! gradient), the update goes into that product's epilogue instead
//! (`fused.dense_sgd` ...): each gradient tile updates the weights in registers and the
//! gradient is never written to memory.
//!
//! Recognized, for a declared update `p ← p_new` of a parameter:
//! - SGD: `p_new = p - g'·lr`;
//! - momentum: `m_new = m·μ + g'` (a declared update of a state `m`), then
//!   `p_new = p - m_new·lr`, or with Nesterov `p - (g' + m_new·μ)·lr`;
//! - Adam: `m_new = m·β1 + g·(1-β1)`, `v_new = v·β2 + g·g·(1-β2)`,
//!   `p_new = [p·decay] - m_new / (√v_new·c + ε) · step_size`, where `1-β` must be the
//!   exact f32 complement of `β` (as nnc-autodiff computes it);
//!
//! with `g' = g + p·λ` (L2 weight decay, λ a constant) or `g' = g`. Every
//! intermediate value must be used only inside the chain; otherwise nothing fires.

use crate::pattern::{binary, is_scalar, matmul_2d, scalar_const, unary, Uses};
use crate::rewrite::Rewriter;
use crate::OptError;
use nnc_ir::{BinaryOp, FusedOp, Graph, Op, UnaryOp, UpdateOut, UpdateRule, ValueId};
use std::collections::HashMap;

pub const NAME: &str = "fuse_update";

pub fn run(graph: &Graph) -> Result<Graph, OptError> {
    let uses = Uses::of(graph);
    let m = Matcher { g: graph, state_updates: graph.updates().iter().map(|&(l, v)| (v, l)).collect() };
    let mut rw = Rewriter::new(graph, NAME);
    for &(p, p_new) in graph.updates() {
        if !matches!(graph.value(p).op, Op::Param { .. }) {
            continue;
        }
        let Some(mut u) = m.update(p, p_new) else { continue };
        let results: Vec<ValueId> = std::iter::once(p_new).chain(u.states.iter().map(|s| s.1)).collect();
        let inside: Vec<ValueId> = u.chain.iter().chain(&results).copied().collect();
        if !u.chain.iter().all(|&c| uses.used_only_by(c, &inside)) {
            continue;
        }
        let leaves: Vec<ValueId> = std::iter::once(p).chain(u.states.iter().map(|s| s.0)).collect();
        let (kind, args): (Box<dyn Fn(UpdateOut) -> FusedOp>, Vec<ValueId>) = match matmul_2d(graph, u.grad) {
            Some((trans_a, trans_b, a, b)) if uses.used_only_by(u.grad, &inside) => {
                let rule = u.rule;
                let args = [a, b].into_iter().chain(leaves).chain(u.scalars.drain(..)).collect();
                (Box::new(move |out| FusedOp::DenseUpdate { trans_a, trans_b, rule, out }), args)
            }
            _ => {
                let rule = u.rule;
                let args = leaves.into_iter().chain([u.grad]).chain(u.scalars.drain(..)).collect();
                (Box::new(move |out| FusedOp::Update { rule, out }), args)
            }
        };
        let outs = [UpdateOut::Param, UpdateOut::M, UpdateOut::V];
        // All or nothing: the siblings replace the parameter and every state together.
        let ok = results.iter().zip(outs).all(|(&r, out)| {
            let types: Vec<_> = args.iter().map(|&a| graph.ty(a)).collect();
            nnc_ir::infer::infer_type(&Op::Fused(kind(out)), &types).as_ref() == Ok(graph.ty(r))
        });
        if ok {
            for (&r, out) in results.iter().zip(outs) {
                rw.try_replace(r, Op::Fused(kind(out)), args.clone());
            }
        }
    }
    rw.finish()
}

/// A recognized update.
struct Update {
    rule: UpdateRule,
    /// The raw gradient (before any L2 term).
    grad: ValueId,
    /// `(state leaf, its new value)`, m then v.
    states: Vec<(ValueId, ValueId)>,
    scalars: Vec<ValueId>,
    /// Intermediate values the fused op makes unnecessary.
    chain: Vec<ValueId>,
}

struct Matcher<'g> {
    g: &'g Graph,
    /// New value → the state leaf it updates.
    state_updates: HashMap<ValueId, ValueId>,
}

impl Matcher<'_> {
    /// `x·s` in either order with `s` satisfying `pred`: `(x, s)`.
    fn mul_by(&self, id: ValueId, pred: impl Fn(ValueId) -> bool) -> Option<(ValueId, ValueId)> {
        let (a, b) = binary(self.g, id, BinaryOp::Mul)?;
        [(a, b), (b, a)].into_iter().find(|&(_, s)| pred(s))
    }

    /// `x·c` with `c` a scalar constant: `(x, c's value)`.
    fn mul_const(&self, id: ValueId) -> Option<(ValueId, f32)> {
        let (x, c) = self.mul_by(id, |s| scalar_const(self.g, s).is_some())?;
        Some((x, scalar_const(self.g, c)?))
    }

    /// `a + b` in either order where `first` accepts `a`: `first`'s result and `b`.
    fn add_with<T>(&self, id: ValueId, first: impl Fn(ValueId) -> Option<T>) -> Option<(T, ValueId)> {
        let (a, b) = binary(self.g, id, BinaryOp::Add)?;
        [(a, b), (b, a)].into_iter().find_map(|(x, y)| Some((first(x)?, y)))
    }

    fn state_of(&self, new: ValueId) -> Option<ValueId> {
        let leaf = *self.state_updates.get(&new)?;
        matches!(self.g.value(leaf).op, Op::State { .. }).then_some(leaf)
    }

    /// `g + p·λ` (L2) or `g`: `(g, λ, chain)`.
    fn l2(&self, p: ValueId, g2: ValueId) -> (ValueId, f32, Vec<ValueId>) {
        let l2 = self.add_with(g2, |t| {
            let (x, wd) = self.mul_const(t)?;
            (x == p).then_some((t, wd))
        });
        match l2 {
            Some(((term, wd), g)) if wd != 0.0 => (g, wd, vec![g2, term]),
            _ => (g2, 0.0, Vec::new()),
        }
    }

    fn update(&self, p: ValueId, p_new: ValueId) -> Option<Update> {
        let (base, step) = binary(self.g, p_new, BinaryOp::Sub)?;
        self.adam(p, base, step).or_else(|| {
            if base == p {
                self.momentum(p, step).or_else(|| self.sgd(p, step))
            } else {
                None
            }
        })
    }

    fn sgd(&self, p: ValueId, step: ValueId) -> Option<Update> {
        let (g2, lr) = self.mul_by(step, |s| is_scalar(self.g, s))?;
        let (grad, weight_decay, mut chain) = self.l2(p, g2);
        chain.push(step);
        Some(Update { rule: UpdateRule::Sgd { weight_decay }, grad, states: Vec::new(), scalars: vec![lr], chain })
    }

    /// `m·μ + g'` for a state `m` updated by this value: `(m, μ, g')`.
    fn velocity(&self, m_new: ValueId) -> Option<(ValueId, f32, ValueId, ValueId)> {
        let m = self.state_of(m_new)?;
        let ((decayed, mu), g2) = self.add_with(m_new, |t| {
            let (x, mu) = self.mul_const(t)?;
            (x == m).then_some((t, mu))
        })?;
        Some((m, mu, g2, decayed))
    }

    fn momentum(&self, p: ValueId, step: ValueId) -> Option<Update> {
        let (dir, lr) = self.mul_by(step, |s| is_scalar(self.g, s))?;
        let (m_new, nesterov, mut chain) = match self.velocity(dir) {
            Some(_) => (dir, false, vec![step]),
            None => {
                // g' + m_new·μ
                let ((look_ahead, m_new), g2) = self.add_with(dir, |t| {
                    let (m_new, _) = self.mul_const(t)?;
                    self.velocity(m_new).map(|_| (t, m_new))
                })?;
                let (_, mu, g2_m, _) = self.velocity(m_new)?;
                if g2 != g2_m || self.mul_const(look_ahead)?.1.to_bits() != mu.to_bits() {
                    return None;
                }
                (m_new, true, vec![step, dir, look_ahead])
            }
        };
        let (m, momentum, g2, decayed) = self.velocity(m_new)?;
        chain.push(decayed);
        let (grad, weight_decay, l2_chain) = self.l2(p, g2);
        chain.extend(l2_chain);
        Some(Update {
            rule: UpdateRule::Momentum { momentum, nesterov, weight_decay },
            grad,
            states: vec![(m, m_new)],
            scalars: vec![lr],
            chain,
        })
    }

    /// `s·β + t·(1-β)` for a state `s` this value updates: `(s, β, t, chain)`.
    fn moment(&self, new: ValueId) -> Option<(ValueId, f32, ValueId, Vec<ValueId>)> {
        let s = self.state_of(new)?;
        let (a, b) = binary(self.g, new, BinaryOp::Add)?;
        [(a, b), (b, a)].into_iter().find_map(|(x, y)| {
            let (sx, beta) = self.mul_const(x)?;
            let (t, c) = self.mul_const(y)?;
            (sx == s && c.to_bits() == (1.0 - beta).to_bits()).then_some((s, beta, t, vec![x, y]))
        })
    }

    fn adam(&self, p: ValueId, base: ValueId, step: ValueId) -> Option<Update> {
        // AdamW: the base is p·(1 - lr·λ), a per-step scalar.
        let (decay, mut chain) = if base == p {
            (None, Vec::new())
        } else {
            let (x, d) = self.mul_by(base, |s| s != p && is_scalar(self.g, s))?;
            (x == p).then_some((Some(d), vec![base]))?
        };
        let (ratio, step_size) = self.mul_by(step, |s| is_scalar(self.g, s))?;
        let (m_new, denom) = binary(self.g, ratio, BinaryOp::Div)?;
        let (a, b) = binary(self.g, denom, BinaryOp::Add)?;
        let (sqrt_v_hat, eps) = [(a, b), (b, a)].into_iter().find_map(|(x, e)| Some((x, scalar_const(self.g, e)?)))?;
        let (sqrt_v, inv_sqrt_bias2) = self.mul_by(sqrt_v_hat, |s| is_scalar(self.g, s))?;
        let (UnaryOp::Sqrt, v_new) = unary(self.g, sqrt_v)? else { return None };
        let (m, beta1, g, m_chain) = self.moment(m_new)?;
        let (v, beta2, gg, v_chain) = self.moment(v_new)?;
        if binary(self.g, gg, BinaryOp::Mul) != Some((g, g)) || m == v {
            return None;
        }
        chain.extend([step, ratio, denom, sqrt_v_hat, sqrt_v, gg]);
        chain.extend(m_chain.into_iter().chain(v_chain));
        let mut scalars = vec![step_size, inv_sqrt_bias2];
        scalars.extend(decay);
        Some(Update {
            rule: UpdateRule::Adam { beta1, beta2, eps, decay: decay.is_some() },
            grad: g,
            states: vec![(m, m_new), (v, v_new)],
            scalars,
            chain,
        })
    }
}
