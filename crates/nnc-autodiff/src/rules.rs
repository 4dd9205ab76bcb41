//! The gradient table: one vector-Jacobian product per op.
//!
//! [`vjp`] is the single place that knows how each op differentiates. Given the value
//! `y = op(x0, x1, ..)` and `g = ∂loss/∂y`, it appends IR computing `g · ∂y/∂xi` for
//! each operand that needs one. The `match` over [`Op`] is exhaustive, so a new op
//! does not compile until it has a rule here or is declared non-differentiable.
//!
//! Conventions at kinks (measure-zero sets, but they must be deterministic):
//! - `relu`, `leaky_relu`: the derivative at 0 is that of the negative side.
//! - `max`/`min`: on ties the whole gradient goes to the first operand.
//! - `reduce_max`: every element equal to the maximum gets the full gradient.
//! - `pow`: `∂/∂b a^b = a^b·ln a` is NaN for `a < 0`, as in the math.

use crate::emit::Emitter;
use crate::error::AutodiffError;
use nnc_ir::{BinaryOp, DType, Dim, Op, PoolKind, ReduceOp, Shape, UnaryOp, ValueId};

/// 2/√π, the derivative of erf at 0.
const TWO_OVER_SQRT_PI: f32 = std::f32::consts::FRAC_2_SQRT_PI;
/// 1/√(2π), the standard normal density at 0.
const INV_SQRT_2PI: f32 = 0.398_942_3;
/// √(2/π) and the cubic coefficient of GELU's tanh approximation.
const GELU_K: f32 = 0.797_884_6;
const GELU_A: f32 = 0.044_715;

/// Whether gradients flow through operand `slot` of `op`. The condition of `where`
/// only selects between the branches: the result is piecewise constant in it, so it
/// is not a gradient path (and `greater` feeding it needs no rule).
pub(crate) fn carries_gradient(op: &Op, slot: usize) -> bool {
    !(matches!(op, Op::Where) && slot == 0)
}

/// Appends the gradient contributions of value `y` to its operands. `g` is the
/// gradient of the loss with respect to `y`; `wants[i]` says whether operand `i` needs
/// a contribution. Each contribution returned has exactly its operand's type.
/// An op without a rule is [`AutodiffError::NoGradient`] naming `y`.
pub(crate) fn vjp(
    em: &mut Emitter,
    y: ValueId,
    g: ValueId,
    wants: &[bool],
) -> Result<Vec<Option<ValueId>>, AutodiffError> {
    let value = em.graph.value(y);
    let (name, op, args) = (value.name.clone(), value.op.clone(), value.args.clone());
    let no_rule = || AutodiffError::NoGradient { nodes: vec![(name.clone(), op.mnemonic())] };
    let mut out = vec![None; args.len()];
    if !wants.iter().any(|&w| w) {
        return Ok(out);
    }
    // Gradients are f32: an integer or bool result or operand on a gradient path means
    // the op is piecewise constant or not a function of reals (casts to integers,
    // comparisons, integer arithmetic).
    let f32_only =
        em.ty(y).dtype == DType::F32 && args.iter().zip(wants).all(|(&a, &w)| !w || em.ty(a).dtype == DType::F32);
    if !f32_only {
        return Err(no_rule());
    }
    let want = |i: usize| wants.get(i).copied().unwrap_or(false);

    match &op {
        // Leaves have no operands; the sweep never asks for them.
        Op::Input | Op::Param { .. } | Op::State { .. } | Op::Const(_) => {}
        Op::Unary(u) => out[0] = Some(unary(em, *u, args[0], y, g)?),
        Op::Binary(b) => {
            let (a, c) = (args[0], args[1]);
            let (ga, gc) = match b {
                BinaryOp::Add => (Some(g), Some(g)),
                BinaryOp::Sub => (Some(g), want(1).then(|| em.unary(UnaryOp::Neg, g)).transpose()?),
                BinaryOp::Mul => {
                    (want(0).then(|| em.mul(g, c)).transpose()?, want(1).then(|| em.mul(g, a)).transpose()?)
                }
                BinaryOp::Div => {
                    // ∂(a/c)/∂c = -a/c² = -(1/c)·y, so both reuse g/c.
                    let q = em.div(g, c)?;
                    let gc = if want(1) {
                        let qy = em.mul(q, y)?;
                        Some(em.unary(UnaryOp::Neg, qy)?)
                    } else {
                        None
                    };
                    (Some(q), gc)
                }
                BinaryOp::Pow => {
                    let ga = if want(0) {
                        let one = em.scalar(1.0)?;
                        let c_minus_1 = em.sub(c, one)?;
                        let p = em.binary(BinaryOp::Pow, a, c_minus_1)?;
                        let d = em.mul(p, c)?;
                        Some(em.mul(g, d)?)
                    } else {
                        None
                    };
                    let gc = if want(1) {
                        let ln_a = em.unary(UnaryOp::Log, a)?;
                        let d = em.mul(y, ln_a)?;
                        Some(em.mul(g, d)?)
                    } else {
                        None
                    };
                    (ga, gc)
                }
                // Route g to the operand that was selected; ties go to `a`.
                BinaryOp::Max | BinaryOp::Min => {
                    let c_selected = if *b == BinaryOp::Max {
                        em.binary(BinaryOp::Greater, c, a)?
                    } else {
                        em.binary(BinaryOp::Greater, a, c)?
                    };
                    let zero = em.scalar(0.0)?;
                    (
                        want(0).then(|| em.op(Op::Where, &[c_selected, zero, g])).transpose()?,
                        want(1).then(|| em.op(Op::Where, &[c_selected, g, zero])).transpose()?,
                    )
                }
                BinaryOp::Greater => return Err(no_rule()),
            };
            out[0] = unbroadcast(em, ga, a, want(0))?;
            out[1] = unbroadcast(em, gc, c, want(1))?;
        }
        Op::Where => {
            let (cond, a, b) = (args[0], args[1], args[2]);
            let zero = em.scalar(0.0)?;
            let ga = want(1).then(|| em.op(Op::Where, &[cond, g, zero])).transpose()?;
            let gb = want(2).then(|| em.op(Op::Where, &[cond, zero, g])).transpose()?;
            out[1] = unbroadcast(em, ga, a, want(1))?;
            out[2] = unbroadcast(em, gb, b, want(2))?;
        }
        Op::MatMul { trans_a, trans_b } => {
            // C = op(A)·op(B) gives dA = G·op(B)ᵀ, dB = op(A)ᵀ·G; for a transposed
            // operand the gradient is transposed back. Each case is one matmul with
            // transpose flags, never a materialized transpose.
            let (a, b) = (args[0], args[1]);
            let (da, db) = match (trans_a, trans_b) {
                (false, false) => ((g, b, false, true), (a, g, true, false)),
                (false, true) => ((g, b, false, false), (g, a, true, false)),
                (true, false) => ((b, g, false, true), (a, g, false, false)),
                (true, true) => ((b, g, true, true), (g, a, true, true)),
            };
            let ga = want(0).then(|| em.matmul(da.0, da.1, da.2, da.3)).transpose()?;
            let gb = want(1).then(|| em.matmul(db.0, db.1, db.2, db.3)).transpose()?;
            // Leading (batch-of-matrices) axes may have been broadcast.
            out[0] = unbroadcast(em, ga, a, want(0))?;
            out[1] = unbroadcast(em, gb, b, want(1))?;
        }
        Op::Softmax { axis } => {
            // dx = y ⊙ (g - Σ_axis g ⊙ y)
            let gy = em.mul(g, y)?;
            let s = em.reduce_sum(gy, vec![*axis], true)?;
            let d = em.sub(g, s)?;
            out[0] = Some(em.mul(y, d)?);
        }
        Op::LogSoftmax { axis } => {
            // dx = g - softmax(x) ⊙ Σ_axis g, with softmax(x) = exp(y)
            let s = em.reduce_sum(g, vec![*axis], true)?;
            let p = em.unary(UnaryOp::Exp, y)?;
            let ps = em.mul(p, s)?;
            out[0] = Some(em.sub(g, ps)?);
        }
        Op::Reduce { op: r, axes, keep_dims } => {
            let x = args[0];
            let x_shape = em.shape(x);
            let g = match r {
                ReduceOp::Sum | ReduceOp::Max => g,
                ReduceOp::Mean => mean_scale(em, g, &x_shape, axes)?,
            };
            let g_kept = align_reduced(em, g, &x_shape, axes, *keep_dims)?;
            out[0] = Some(match r {
                ReduceOp::Sum | ReduceOp::Mean => em.broadcast_to(g_kept, &x_shape)?,
                ReduceOp::Max => {
                    // The elements below the maximum get nothing.
                    let y_kept = align_reduced(em, y, &x_shape, axes, *keep_dims)?;
                    let below = em.binary(BinaryOp::Greater, y_kept, x)?;
                    let zero = em.scalar(0.0)?;
                    em.op(Op::Where, &[below, zero, g_kept])?
                }
            });
        }
        Op::Reshape { .. } => {
            let shape = em.shape(args[0]);
            out[0] = Some(em.reshape_to(g, &shape)?);
        }
        Op::Transpose { perm } => {
            let mut inverse = vec![0; perm.len()];
            for (i, &p) in perm.iter().enumerate() {
                inverse[p] = i;
            }
            out[0] = Some(em.op(Op::Transpose { perm: inverse }, &[g])?);
        }
        Op::Broadcast { .. } => {
            let shape = em.shape(args[0]);
            out[0] = Some(em.sum_to(g, &shape)?);
        }
        // f32 → f32 is the identity; every other cast was refused above.
        Op::Cast { to: DType::F32 } => out[0] = Some(g),
        Op::Cast { .. } => return Err(no_rule()),
        Op::OneHot { .. } => return Err(no_rule()),
        // Each operand's gradient is its slice of the gradient.
        Op::Concat { axis, sizes } => {
            let mut start = 0;
            for (i, &size) in sizes.iter().enumerate() {
                if want(i) {
                    out[i] = Some(em.op(Op::Slice { axis: *axis, start, end: start + size }, &[g])?);
                }
                start += size;
            }
        }
        // Zeros where the slice was not taken, the gradient where it was.
        Op::Slice { axis, start, end } => {
            let shape = em.shape(args[0]);
            let len = shape.0[*axis].fixed().unwrap_or(*end);
            let mut parts = Vec::new();
            let mut sizes = Vec::new();
            for (lo, hi) in [(0, *start), (*start, *end), (*end, len)] {
                if lo == hi {
                    continue;
                }
                if lo == *start {
                    parts.push(g);
                } else {
                    let mut dims = shape.0.clone();
                    dims[*axis] = nnc_ir::Dim::Fixed(hi - lo);
                    let zero = em.scalar(0.0)?;
                    parts.push(em.op(Op::Broadcast { shape: nnc_ir::Shape(dims) }, &[zero])?);
                }
                sizes.push(hi - lo);
            }
            out[0] = Some(match parts[..] {
                [only] => only,
                _ => em.op(Op::Concat { axis: *axis, sizes }, &parts)?,
            });
        }
        // The three convolutions are each other's adjoints: with x ⊛ w the forward
        // convolution, ⟨x ⊛ w, dy⟩ = ⟨x, data(dy, w)⟩ = ⟨w, filter(x, dy)⟩. So every
        // gradient of every one of them is one of the three, and the set is closed
        // under differentiation.
        Op::Conv(conv) => {
            let (x, w) = (args[0], args[1]);
            let input = spatial(em, x);
            let data = Op::ConvBackwardData { conv: conv.clone(), input };
            out[0] = want(0).then(|| em.op(data, &[g, w])).transpose()?;
            out[1] = want(1).then(|| em.op(Op::ConvBackwardFilter { conv: conv.clone() }, &[x, g])).transpose()?;
        }
        Op::ConvBackwardData { conv, .. } => {
            let (dy, w) = (args[0], args[1]);
            out[0] = want(0).then(|| em.op(Op::Conv(conv.clone()), &[g, w])).transpose()?;
            out[1] = want(1).then(|| em.op(Op::ConvBackwardFilter { conv: conv.clone() }, &[g, dy])).transpose()?;
        }
        Op::ConvBackwardFilter { conv } => {
            let (x, dy) = (args[0], args[1]);
            let input = spatial(em, x);
            let data = Op::ConvBackwardData { conv: conv.clone(), input };
            out[0] = want(0).then(|| em.op(data, &[dy, g])).transpose()?;
            out[1] = want(1).then(|| em.op(Op::Conv(conv.clone()), &[x, g])).transpose()?;
        }
        Op::Pool(pool) => {
            let x = args[0];
            let backward = Op::PoolBackward { pool: pool.clone(), input: spatial(em, x) };
            out[0] = Some(match pool.kind {
                PoolKind::Max => em.op(backward, &[x, g])?,
                PoolKind::Avg { .. } => em.op(backward, &[g])?,
            });
        }
        // Average pooling's gradient is linear in dy, and its adjoint is the pooling.
        // Max pooling's would gather at each window's maximum, which no primitive
        // does: second derivatives through max pooling are not supported.
        Op::PoolBackward { pool, .. } => match pool.kind {
            PoolKind::Avg { .. } => out[0] = Some(em.op(Op::Pool(pool.clone()), &[g])?),
            PoolKind::Max => return Err(no_rule()),
        },
        // Differentiate first, then fuse: fused ops only appear in optimized graphs.
        Op::Fused(_) => return Err(no_rule()),
    }
    Ok(out)
}

/// The elementwise rules: `g · f'(x)`, written with the result `y = f(x)` where that
/// is cheaper.
fn unary(em: &mut Emitter, u: UnaryOp, x: ValueId, y: ValueId, g: ValueId) -> Result<ValueId, AutodiffError> {
    let r = match u {
        UnaryOp::Identity => g,
        UnaryOp::Neg => em.unary(UnaryOp::Neg, g)?,
        UnaryOp::Exp => em.mul(g, y)?,
        UnaryOp::Log => em.div(g, x)?,
        UnaryOp::Sqrt => {
            // d√x = 1/(2√x)
            let half = em.scale(g, 0.5)?;
            em.div(half, y)?
        }
        UnaryOp::Erf => {
            // d erf(x) = 2/√π · exp(-x²)
            let xx = em.mul(x, x)?;
            let e = em.scale(xx, -1.0)?;
            let e = em.unary(UnaryOp::Exp, e)?;
            let d = em.scale(e, TWO_OVER_SQRT_PI)?;
            em.mul(g, d)?
        }
        UnaryOp::Relu => {
            // y > 0 exactly where x > 0; using y lets x die after the forward pass.
            let zero = em.scalar(0.0)?;
            let mask = em.binary(BinaryOp::Greater, y, zero)?;
            em.op(Op::Where, &[mask, g, zero])?
        }
        UnaryOp::LeakyRelu { alpha } => {
            let zero = em.scalar(0.0)?;
            let mask = em.binary(BinaryOp::Greater, x, zero)?;
            let leak = em.scale(g, alpha)?;
            em.op(Op::Where, &[mask, g, leak])?
        }
        UnaryOp::Sigmoid => {
            // σ' = σ(1 - σ)
            let one = em.scalar(1.0)?;
            let one_minus = em.sub(one, y)?;
            let d = em.mul(y, one_minus)?;
            em.mul(g, d)?
        }
        UnaryOp::Tanh => {
            // tanh' = 1 - tanh²
            let one = em.scalar(1.0)?;
            let yy = em.mul(y, y)?;
            let d = em.sub(one, yy)?;
            em.mul(g, d)?
        }
        UnaryOp::Gelu { approximate: false } => {
            // gelu(x) = x·Φ(x), so gelu' = Φ(x) + x·φ(x)
            // with Φ(x) = (1 + erf(x/√2))/2 and φ(x) = exp(-x²/2)/√(2π).
            let one = em.scalar(1.0)?;
            let xs = em.scale(x, std::f32::consts::FRAC_1_SQRT_2)?;
            let erf = em.unary(UnaryOp::Erf, xs)?;
            let erf1 = em.add(erf, one)?;
            let cdf = em.scale(erf1, 0.5)?;
            let xx = em.mul(x, x)?;
            let e = em.scale(xx, -0.5)?;
            let e = em.unary(UnaryOp::Exp, e)?;
            let pdf = em.scale(e, INV_SQRT_2PI)?;
            let xpdf = em.mul(x, pdf)?;
            let d = em.add(cdf, xpdf)?;
            em.mul(g, d)?
        }
        UnaryOp::Gelu { approximate: true } => {
            // gelu(x) = x/2·(1 + tanh u), u = k(x + a x³), k = √(2/π), so
            // gelu' = (1 + t)/2 + x/2·(1 - t²)·k(1 + 3a x²) with t = tanh u.
            let one = em.scalar(1.0)?;
            let xx = em.mul(x, x)?;
            let axx = em.scale(xx, GELU_A)?;
            let inner = em.add(axx, one)?;
            let xin = em.mul(x, inner)?;
            let u = em.scale(xin, GELU_K)?;
            let t = em.unary(UnaryOp::Tanh, u)?;
            let t1 = em.add(t, one)?;
            let left = em.scale(t1, 0.5)?;
            let tt = em.mul(t, t)?;
            let sech2 = em.sub(one, tt)?;
            let k3a = em.scale(xx, 3.0 * GELU_A * GELU_K)?;
            let k = em.scalar(GELU_K)?;
            let du = em.add(k3a, k)?;
            let half_x = em.scale(x, 0.5)?;
            let r = em.mul(half_x, sech2)?;
            let right = em.mul(r, du)?;
            let d = em.add(left, right)?;
            em.mul(g, d)?
        }
    };
    Ok(r)
}

/// The static spatial sizes of an `[N, C, spatial..]` value (the verifier has checked
/// that they are static).
fn spatial(em: &Emitter, x: ValueId) -> Vec<usize> {
    em.shape(x).0[2..].iter().map(|d| d.fixed().unwrap_or(0)).collect()
}

/// A broadcasting op's contribution, summed down to the operand's shape.
fn unbroadcast(
    em: &mut Emitter,
    contribution: Option<ValueId>,
    operand: ValueId,
    wanted: bool,
) -> Result<Option<ValueId>, AutodiffError> {
    match contribution {
        Some(c) if wanted => {
            let shape = em.shape(operand);
            Ok(Some(em.sum_to(c, &shape)?))
        }
        _ => Ok(None),
    }
}

/// `g` divided by the number of elements a mean over `axes` averaged. A reduced
/// batch axis makes the count a run-time value.
fn mean_scale(em: &mut Emitter, g: ValueId, x_shape: &Shape, axes: &[usize]) -> Result<ValueId, AutodiffError> {
    let dims: Vec<Dim> = axes.iter().map(|&a| x_shape.0[a]).collect();
    let fixed: usize = dims.iter().filter_map(|d| d.fixed()).product();
    let over_batch = dims.contains(&Dim::Batch);
    Ok(match (over_batch, fixed) {
        (false, 1) => g,
        (false, n) => em.scale(g, 1.0 / n as f32)?,
        (true, n) => {
            let mut count = em.batch_size()?;
            if n != 1 {
                count = em.scale(count, n as f32)?;
            }
            em.div(g, count)?
        }
    })
}

/// A reduction's result (or its gradient) reshaped so it broadcasts against the
/// reduction's input: reduced axes become size 1. Not needed when the axes were kept
/// or are all leading (broadcasting aligns from the right).
fn align_reduced(
    em: &mut Emitter,
    v: ValueId,
    x_shape: &Shape,
    axes: &[usize],
    keep_dims: bool,
) -> Result<ValueId, AutodiffError> {
    let leading = axes.iter().enumerate().all(|(i, &a)| i == a);
    if keep_dims || leading {
        return Ok(v);
    }
    let kept =
        Shape(x_shape.0.iter().enumerate().map(|(i, &d)| if axes.contains(&i) { Dim::Fixed(1) } else { d }).collect());
    Ok(em.reshape_to(v, &kept)?)
}
