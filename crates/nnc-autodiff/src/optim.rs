//! Optimizers as graph ops: each parameter's update is ordinary IR after the backward
//! pass, and the graph declares `param ← param_new` (and `state ← state_new`) updates
//! that a backend performs in place.
//!
//! Inputs: `lr: f32[]` for every optimizer, and for Adam `step: i64[]`, the 1-based
//! number of the step being taken (feed 1 on the first step, 2 on the second, ...).
//! Optimizer state is `<param>.m` / `<param>.v` (`Op::State`, zero-initialized).
//!
//! - SGD: `p ← p - lr·g`.
//! - Momentum (PyTorch's convention, no dampening): `m ← μ·m + g`, then
//!   `p ← p - lr·m`, or with Nesterov `p ← p - lr·(g + μ·m)` using the new `m`.
//! - Adam: `m ← β1·m + (1-β1)·g`, `v ← β2·v + (1-β2)·g²`, and with
//!   `m̂ = m/(1-β1^t)`, `v̂ = v/(1-β2^t)`: `p ← p - lr·m̂/(√v̂ + ε)`.
//! - Weight decay `λ`: for SGD and momentum it is L2 regularization, `g ← g + λ·p`
//!   before the update (PyTorch's `weight_decay`); for Adam it is decoupled (AdamW):
//!   `p ← p·(1 - lr·λ)` before the Adam step, so it does not pass through `v̂`.
//!   It applies to every trained parameter, biases included (PyTorch's default).

use crate::emit::Emitter;
use crate::error::AutodiffError;
use crate::Optimizer;
use nnc_ir::{DType, Op, Shape, Tensor, TensorType, UnaryOp, ValueId};

pub const LR: &str = "lr";
pub const STEP: &str = "step";

/// Appends the update of every `(param, gradient)` pair and returns the in-place
/// updates, each parameter followed by its optimizer state.
pub(crate) fn apply(
    em: &mut Emitter,
    optimizer: Optimizer,
    weight_decay: f32,
    trained: &[(ValueId, ValueId)],
) -> Result<Vec<(ValueId, ValueId)>, AutodiffError> {
    em.set_prefix("");
    let lr = em.graph.input(LR, TensorType::new(DType::F32, Shape::scalar()))?;
    // The per-step scalars are built once, before the per-parameter updates.
    let rule = match optimizer {
        Optimizer::Sgd => Rule::Sgd,
        Optimizer::Momentum { momentum, nesterov } => Rule::Momentum { momentum, nesterov },
        Optimizer::Adam { beta1, beta2, eps } => {
            Rule::Adam { beta1, beta2, eps, s: AdamScalars::new(em, lr, beta1, beta2, weight_decay)? }
        }
    };
    let mut updates = Vec::new();
    for &(p, g) in trained {
        let name = em.graph.name_of(p).to_string();
        // Intermediate values are named `<param>.<what>`.
        em.set_prefix(name.clone());
        let new_name = format!("{name}_new");
        match rule {
            Rule::Sgd => {
                let g = l2(em, p, g, weight_decay)?;
                let step = em.labeled("step", mul(), &[g, lr])?;
                let p_new = em.named(&new_name, sub(), &[p, step])?;
                updates.push((p, p_new));
            }
            Rule::Momentum { momentum, nesterov } => {
                let g = l2(em, p, g, weight_decay)?;
                let m = state(em, p, "m")?;
                let mu = em.scalar(momentum)?;
                let mm = em.labeled("m_decayed", mul(), &[m, mu])?;
                let m_new = em.named(&format!("{name}.m_new"), add(), &[mm, g])?;
                let dir = if nesterov {
                    let look_ahead = em.labeled("m_new_decayed", mul(), &[m_new, mu])?;
                    em.labeled("nesterov", add(), &[g, look_ahead])?
                } else {
                    m_new
                };
                let step = em.labeled("step", mul(), &[dir, lr])?;
                let p_new = em.named(&new_name, sub(), &[p, step])?;
                updates.extend([(p, p_new), (m, m_new)]);
            }
            Rule::Adam { beta1, beta2, eps, s } => {
                let m = state(em, p, "m")?;
                let v = state(em, p, "v")?;
                let (b1, one_minus_b1) = (em.scalar(beta1)?, em.scalar(complement(beta1))?);
                let m_old = em.labeled("m_decayed", mul(), &[m, b1])?;
                let m_g = em.labeled("g_scaled", mul(), &[g, one_minus_b1])?;
                let m_new = em.named(&format!("{name}.m_new"), add(), &[m_old, m_g])?;
                let (b2, one_minus_b2) = (em.scalar(beta2)?, em.scalar(complement(beta2))?);
                let v_old = em.labeled("v_decayed", mul(), &[v, b2])?;
                let gg = em.labeled("g_squared", mul(), &[g, g])?;
                let v_g = em.labeled("g_squared_scaled", mul(), &[gg, one_minus_b2])?;
                let v_new = em.named(&format!("{name}.v_new"), add(), &[v_old, v_g])?;
                // √v̂ + ε = √v·(1/√(1-β2^t)) + ε, and lr·m̂ = m·(lr/(1-β1^t)).
                let sqrt_v = em.labeled("sqrt_v", Op::Unary(UnaryOp::Sqrt), &[v_new])?;
                let sqrt_v_hat = em.labeled("sqrt_v_hat", mul(), &[sqrt_v, s.inv_sqrt_bias2])?;
                let eps = em.scalar(eps)?;
                let denom = em.labeled("denom", add(), &[sqrt_v_hat, eps])?;
                let ratio = em.labeled("ratio", Op::Binary(nnc_ir::BinaryOp::Div), &[m_new, denom])?;
                let step = em.labeled("step", mul(), &[ratio, s.step_size])?;
                let base = match s.decay {
                    Some(decay) => em.labeled("decayed", mul(), &[p, decay])?,
                    None => p,
                };
                let p_new = em.named(&new_name, sub(), &[base, step])?;
                updates.extend([(p, p_new), (m, m_new), (v, v_new)]);
            }
        }
    }
    Ok(updates)
}

/// `1 - β`, exact in f32 (Sterbenz) for β in [0.5, 1). It must be the complement of
/// the same f32 β the bias correction `1 - β^t` uses, or the correction does not
/// cancel on the first step: with β2 = 0.999f32 = 0.99899995, the decimal 0.001
/// would make v̂ = 0.99995·g². Hence constants like 0.0010000467 in printed graphs.
fn complement(beta: f32) -> f32 {
    1.0 - beta
}

/// An optimizer with the scalars it shares across parameters.
#[derive(Clone, Copy)]
enum Rule {
    Sgd,
    Momentum { momentum: f32, nesterov: bool },
    Adam { beta1: f32, beta2: f32, eps: f32, s: AdamScalars },
}

fn mul() -> Op {
    Op::Binary(nnc_ir::BinaryOp::Mul)
}

fn add() -> Op {
    Op::Binary(nnc_ir::BinaryOp::Add)
}

fn sub() -> Op {
    Op::Binary(nnc_ir::BinaryOp::Sub)
}

/// `g + λ·p`, the gradient of the loss plus `λ/2·‖p‖²`.
fn l2(em: &mut Emitter, p: ValueId, g: ValueId, weight_decay: f32) -> Result<ValueId, AutodiffError> {
    if weight_decay == 0.0 {
        return Ok(g);
    }
    let wd = em.scalar(weight_decay)?;
    let decay = em.labeled("l2", mul(), &[p, wd])?;
    Ok(em.labeled("grad_l2", add(), &[g, decay])?)
}

/// A zero-initialized optimizer state leaf `<param>.<suffix>` of the parameter's type.
fn state(em: &mut Emitter, p: ValueId, suffix: &str) -> Result<ValueId, AutodiffError> {
    let name = format!("{}.{suffix}", em.graph.name_of(p));
    let ty = em.ty(p).clone();
    let Some(dims) = ty.shape.as_fixed() else {
        return Err(AutodiffError::NotDifferentiable(format!(
            "parameter %{} has type {ty}: a parameter (and its optimizer state) needs a static shape",
            em.graph.name_of(p)
        )));
    };
    let zeros = Tensor::from_f32(&dims, vec![0.0; dims.iter().product()])
        .map_err(|e| nnc_ir::IrError::structure(&name, format!("zeros of shape {}: {e}", ty.shape)))?;
    let name = em.graph.fresh_name(&name);
    Ok(em.graph.push(name, Op::State { init: Some(zeros) }, &[])?)
}

/// The per-step scalars Adam shares across all parameters.
#[derive(Clone, Copy)]
struct AdamScalars {
    /// `lr / (1 - β1^t)`
    step_size: ValueId,
    /// `1 / √(1 - β2^t)`
    inv_sqrt_bias2: ValueId,
    /// `1 - lr·λ` for decoupled weight decay, if any.
    decay: Option<ValueId>,
}

impl AdamScalars {
    fn new(em: &mut Emitter, lr: ValueId, beta1: f32, beta2: f32, weight_decay: f32) -> Result<Self, AutodiffError> {
        em.set_prefix("adam");
        let div = || Op::Binary(nnc_ir::BinaryOp::Div);
        let step = em.graph.input(STEP, TensorType::new(DType::I64, Shape::scalar()))?;
        let t = em.named("adam.t", Op::Cast { to: DType::F32 }, &[step])?;
        let one = em.scalar(1.0)?;
        let b1 = em.scalar(beta1)?;
        let b1t = em.named("adam.beta1_t", Op::Binary(nnc_ir::BinaryOp::Pow), &[b1, t])?;
        let bias1 = em.named("adam.bias1", sub(), &[one, b1t])?;
        let step_size = em.named("adam.step_size", div(), &[lr, bias1])?;
        let b2 = em.scalar(beta2)?;
        let b2t = em.named("adam.beta2_t", Op::Binary(nnc_ir::BinaryOp::Pow), &[b2, t])?;
        let bias2 = em.named("adam.bias2", sub(), &[one, b2t])?;
        let sqrt_bias2 = em.named("adam.sqrt_bias2", Op::Unary(UnaryOp::Sqrt), &[bias2])?;
        let inv_sqrt_bias2 = em.named("adam.inv_sqrt_bias2", div(), &[one, sqrt_bias2])?;
        let decay = if weight_decay == 0.0 {
            None
        } else {
            let wd = em.scalar(weight_decay)?;
            let lr_wd = em.named("adamw.lr_wd", mul(), &[lr, wd])?;
            Some(em.named("adamw.decay", sub(), &[one, lr_wd])?)
        };
        Ok(AdamScalars { step_size, inv_sqrt_bias2, decay })
    }
}
