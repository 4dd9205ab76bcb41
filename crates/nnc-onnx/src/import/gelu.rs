//! Recognizes GELU written out elementwise, as PyTorch exports it below opset 20 and
//! as nnc's own exporter writes it:
//!
//! - erf form:  `x * 0.5 * (1 + erf(x / sqrt(2)))` (or `x * (1/sqrt(2))`)
//! - tanh form: `x * 0.5 * (1 + tanh(sqrt(2/pi) * (x + 0.044715 * x^3)))`
//!
//! in any association and operand order of the products and sums. Matching runs on the
//! IR when the last `Mul` is lowered; the matched pieces become removable and vanish
//! unless something else uses them.

use super::{Ctx, Importer};
use crate::OnnxError;
use nnc_ir::{infer, BinaryOp, Graph, Op, Tensor, UnaryOp, ValueId};

struct GeluMatch {
    x: ValueId,
    approximate: bool,
    /// Every value of the pattern except `x`.
    parts: Vec<ValueId>,
}

impl Importer {
    /// If `a * b` completes a GELU, defines `out` as one IR gelu and returns true.
    pub(super) fn try_fuse_gelu(&mut self, ctx: &Ctx, a: &str, b: &str, out: &str) -> Result<bool, OnnxError> {
        let (Some(ia), Some(ib)) = (self.slot(ctx, a)?.ir, self.slot(ctx, b)?.ir) else { return Ok(false) };
        let Some(m) = match_product(&self.g, ia, ib) else { return Ok(false) };
        // The fused op must have exactly the product's type (no broadcasting by the constants).
        let product = infer::infer_type(&Op::Binary(BinaryOp::Mul), &[self.g.ty(ia), self.g.ty(ib)]);
        if product.as_ref() != Ok(self.g.ty(m.x)) {
            return Ok(false);
        }
        let id = self.emit(ctx, out, Op::Unary(UnaryOp::Gelu { approximate: m.approximate }), &[m.x])?;
        self.removable.extend(m.parts);
        self.define_ir(out, id);
        Ok(true)
    }
}

fn binary(g: &Graph, id: ValueId, op: BinaryOp) -> Option<(ValueId, ValueId)> {
    let v = g.value(id);
    (v.op == Op::Binary(op)).then(|| (v.args[0], v.args[1]))
}

fn unary(g: &Graph, id: ValueId, op: UnaryOp) -> Option<ValueId> {
    let v = g.value(id);
    (v.op == Op::Unary(op)).then(|| v.args[0])
}

/// A one-element f32 constant close to `want`.
fn is_const(g: &Graph, id: ValueId, want: f32) -> bool {
    match &g.value(id).op {
        Op::Const(Tensor::F32(a)) if a.len() == 1 => a.iter().all(|&v| (v - want).abs() <= 1e-4 * want.abs().max(1.0)),
        _ => false,
    }
}

/// `x * s` (either order) or `x / d` with the given scale.
fn is_scaled(g: &Graph, id: ValueId, x: ValueId, mul: f32) -> bool {
    if let Some((p, q)) = binary(g, id, BinaryOp::Mul) {
        return (p == x && is_const(g, q, mul)) || (q == x && is_const(g, p, mul));
    }
    binary(g, id, BinaryOp::Div).is_some_and(|(p, q)| p == x && is_const(g, q, 1.0 / mul))
}

/// Tries both ways of seeing `a * b` as a product of three factors.
fn match_product(g: &Graph, a: ValueId, b: ValueId) -> Option<GeluMatch> {
    for (inner, other) in [(a, b), (b, a)] {
        if let Some((p, q)) = binary(g, inner, BinaryOp::Mul) {
            if let Some(mut m) = match_factors(g, [p, q, other]) {
                m.parts.push(inner);
                return Some(m);
            }
        }
    }
    None
}

fn match_factors(g: &Graph, f: [ValueId; 3]) -> Option<GeluMatch> {
    const ORDERS: [[usize; 3]; 6] = [[0, 1, 2], [0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]];
    for [h, o, x] in ORDERS {
        let (half, one_plus, x) = (f[h], f[o], f[x]);
        if !is_const(g, half, 0.5) {
            continue;
        }
        if let Some((approximate, mut parts)) = match_one_plus(g, one_plus, x) {
            parts.extend([half, one_plus]);
            return Some(GeluMatch { x, approximate, parts });
        }
    }
    None
}

/// `1 + erf(x/√2)` or `1 + tanh(√(2/π)(x + 0.044715x³))`.
fn match_one_plus(g: &Graph, id: ValueId, x: ValueId) -> Option<(bool, Vec<ValueId>)> {
    let (p, q) = binary(g, id, BinaryOp::Add)?;
    for (one, t) in [(p, q), (q, p)] {
        if !is_const(g, one, 1.0) {
            continue;
        }
        if let Some(w) = unary(g, t, UnaryOp::Erf) {
            if is_scaled(g, w, x, std::f32::consts::FRAC_1_SQRT_2) {
                let mut parts = vec![one, t, w];
                parts.extend(g.value(w).args.iter().filter(|&&a| a != x));
                return Some((false, parts));
            }
        }
        if let Some(w) = unary(g, t, UnaryOp::Tanh) {
            if let Some(mut parts) = match_tanh_inner(g, w, x) {
                parts.extend([one, t, w]);
                return Some((true, parts));
            }
        }
    }
    None
}

/// `k * (x + c * x³)` with k = √(2/π), c = 0.044715, in any operand order.
fn match_tanh_inner(g: &Graph, id: ValueId, x: ValueId) -> Option<Vec<ValueId>> {
    const K: f32 = 0.797_884_6;
    let (p, q) = binary(g, id, BinaryOp::Mul)?;
    for (k, s) in [(p, q), (q, p)] {
        if !is_const(g, k, K) {
            continue;
        }
        let Some((s1, s2)) = binary(g, s, BinaryOp::Add) else { continue };
        for (xx, r) in [(s1, s2), (s2, s1)] {
            if xx != x {
                continue;
            }
            let Some((r1, r2)) = binary(g, r, BinaryOp::Mul) else { continue };
            for (c, cube) in [(r1, r2), (r2, r1)] {
                if is_const(g, c, 0.044_715) {
                    if let Some(mut parts) = match_cube(g, cube, x) {
                        parts.extend([k, s, r, c, cube]);
                        return Some(parts);
                    }
                }
            }
        }
    }
    None
}

/// `x³` as `pow(x, 3)`, `x * (x * x)` or `(x * x) * x`; returns the pieces besides `x`.
fn match_cube(g: &Graph, id: ValueId, x: ValueId) -> Option<Vec<ValueId>> {
    if let Some((b, e)) = binary(g, id, BinaryOp::Pow) {
        return (b == x && is_const(g, e, 3.0)).then(|| vec![e]);
    }
    let (p, q) = binary(g, id, BinaryOp::Mul)?;
    for (single, square) in [(p, q), (q, p)] {
        if single == x && binary(g, square, BinaryOp::Mul) == Some((x, x)) {
            return Some(vec![square]);
        }
    }
    None
}
