//! Fused ops: one kernel standing for a sequence of primitives.
//!
//! The optimizer (`nnc-opt`) rewrites primitive chains of a training step into these,
//! after differentiation, so they need no gradient rules. Each fused op is *defined*
//! by its primitive expansion ([`FusedOp::expand`]): the interpreter evaluates that
//! expansion, the ONNX exporter writes it, and a backend must compute the same numbers.
//! The expansions repeat the exact primitive sequences nnc-autodiff emits, so a fused
//! graph interprets bit for bit like the graph it came from.
//!
//! Every fused op is a matrix product or a convolution with an epilogue, the
//! cross-entropy kernel, or an elementwise optimizer update:
//!
//! | op | operands | value |
//! |---|---|---|
//! | `fused.dense` | a, b, (bias) | `act(alpha·op(a)·op(b) + bias)`, bias a row vector |
//! | `fused.dense_relu_grad` | a, b, h | `where(h > 0, op(a)·op(b), 0)`, or its column sums |
//! | `fused.softmax_ce` | logits, labels | mean cross-entropy, its gradient, or the gradient's column sums |
//! | `fused.sgd` / `momentum` / `adam` | p, (m), (v), g, scalars | the new parameter or state |
//! | `fused.dense_sgd` / ... | a, b, p, (m), (v), scalars | the same with `g = op(a)·op(b)` |
//! | `fused.conv` | x, w, (bias), (residual) | `clip(act(conv(x, w) + bias + residual))`, bias one value per channel |
//!
//! ## Several results of one kernel
//!
//! Values are single-result, so a kernel with several results (an update writing the
//! parameter and its moments, a gradient kernel that also sums the bias gradient)
//! appears once per result: *siblings* with the same op and operands that differ only
//! in `out`. Each sibling is a complete, pure definition of its result (the interpreter
//! computes each on its own), and a backend computes all siblings of a group in one
//! kernel ([`FusedOp::kernel`] is the grouping key).

use crate::error::IrError;
use crate::graph::{Graph, ValueId};
use crate::infer::infer_matmul;
use crate::op::{BinaryOp, Op, ReduceOp, UnaryOp};
use crate::tensor::Tensor;
use crate::types::{DType, Dim, Shape, TensorType};
use crate::window::Conv;

/// A fused kernel and which of its results the value is.
#[derive(Clone, Debug, PartialEq)]
pub enum FusedOp {
    /// `act(alpha·op(a)·op(b) + bias)`; operands `a, b` and, with `bias`, a row
    /// vector `[n]` or `[1, n]` added to every row. 2-D operands only.
    Dense { trans_a: bool, trans_b: bool, alpha: f32, bias: bool, act: Option<UnaryOp> },
    /// The ReLU mask of the backward pass in the epilogue of the matrix product that
    /// makes the gradient: `where(h > 0, op(a)·op(b), 0)`, operands `a, b, h`.
    /// `out = col_sum` is its sum over rows (the bias gradient).
    DenseReluGrad { trans_a: bool, trans_b: bool, out: GradOut },
    /// Softmax cross-entropy from logits `[M, C]` and integer labels `[M]`: the mean
    /// loss, its gradient with respect to the logits `(softmax - onehot)/M`, or that
    /// gradient's column sums.
    SoftmaxCrossEntropy { out: CeOut },
    /// An optimizer update, elementwise: operands `p, [m], [v], g, scalars`.
    Update { rule: UpdateRule, out: UpdateOut },
    /// An optimizer update in the epilogue of the matrix product that makes the
    /// gradient `g = op(a)·op(b)`, which is never stored: operands `a, b, p, [m], [v],
    /// scalars`.
    DenseUpdate { trans_a: bool, trans_b: bool, rule: UpdateRule, out: UpdateOut },
    /// A convolution whose output goes through an epilogue as the kernel writes it:
    /// operands `x, w`, then the bias (with `epilogue.bias`) and the residual (with
    /// `epilogue.residual`).
    Conv { conv: Conv, epilogue: ConvEpilogue },
}

/// What a fused convolution does to each output element, in this order: add the
/// bias of its channel (an f32 operand `[M, 1, ..]` or `[1, M, 1, ..]`, ones on the
/// spatial axes), add the residual (an operand of the output's type), apply the
/// activation, then `max(y, min)` and `min(y, max)` with constants (ONNX's `Clip`, as
/// the importer writes it: ReLU6 is `min = 0, max = 6`).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ConvEpilogue {
    pub bias: bool,
    pub residual: bool,
    pub act: Option<UnaryOp>,
    pub min: Option<f32>,
    pub max: Option<f32>,
}

impl ConvEpilogue {
    /// Operands after `x` and `w`.
    pub fn operands(&self) -> usize {
        self.bias as usize + self.residual as usize
    }
}

/// Whether `b` is a fused convolution's bias for its output `y`: f32 `[M, 1, ..]` or
/// `[1, M, 1, ..]`, `y`'s channels and a 1 per spatial axis of `y`.
pub fn is_channel_bias(b: &TensorType, y: &TensorType) -> bool {
    let (m, spatial) = (y.shape.0[1], y.rank() - 2);
    let ones = |d: &[Dim]| d.len() == spatial && d.iter().all(|&d| d == Dim::Fixed(1));
    b.dtype == DType::F32
        && match &b.shape.0[..] {
            [c, rest @ ..] if ones(rest) => *c == m,
            [one, c, rest @ ..] if ones(rest) => *one == Dim::Fixed(1) && *c == m,
            _ => false,
        }
}

/// The results of a gradient kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GradOut {
    Grad,
    /// The gradient summed over rows (axis 0): a bias gradient.
    ColSum,
}

/// The results of the cross-entropy kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CeOut {
    Loss,
    Grad,
    /// The gradient summed over rows: the gradient of the last layer's bias.
    GradColSum,
}

/// The results of an update kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UpdateOut {
    /// The new parameter.
    Param,
    /// The new first moment (momentum's velocity, Adam's `m`).
    M,
    /// The new second moment (Adam's `v`).
    V,
}

/// The optimizer an update applies, with nnc-autodiff's formulas (see its `optim.rs`).
/// Scalars that change per step (`lr`, Adam's bias corrections) are operands;
/// constants are attributes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum UpdateRule {
    /// `p - lr·g'`, scalar operand `lr`.
    Sgd { weight_decay: f32 },
    /// `m' = μ·m + g'`, `p - lr·m'` (Nesterov: `p - lr·(g' + μ·m')`); scalar `lr`.
    Momentum { momentum: f32, nesterov: bool, weight_decay: f32 },
    /// Adam; scalars `step_size = lr/(1-β1^t)`, `inv_sqrt_bias2 = 1/√(1-β2^t)` and,
    /// with `decay`, AdamW's `1 - lr·λ` multiplying `p`.
    Adam { beta1: f32, beta2: f32, eps: f32, decay: bool },
}

// With `weight_decay` λ ≠ 0, SGD and momentum use `g' = g + λ·p` (L2), else `g' = g`.

impl UpdateRule {
    /// Optimizer state tensors (each of the parameter's type) the rule keeps.
    pub fn states(self) -> usize {
        match self {
            UpdateRule::Sgd { .. } => 0,
            UpdateRule::Momentum { .. } => 1,
            UpdateRule::Adam { .. } => 2,
        }
    }

    /// Scalar operands after the tensors.
    pub fn scalars(self) -> usize {
        match self {
            UpdateRule::Sgd { .. } | UpdateRule::Momentum { .. } => 1,
            UpdateRule::Adam { decay, .. } => 2 + decay as usize,
        }
    }

    fn has(self, out: UpdateOut) -> bool {
        match out {
            UpdateOut::Param => true,
            UpdateOut::M => self.states() >= 1,
            UpdateOut::V => self.states() >= 2,
        }
    }

    fn name(self) -> &'static str {
        match self {
            UpdateRule::Sgd { .. } => "sgd",
            UpdateRule::Momentum { .. } => "momentum",
            UpdateRule::Adam { .. } => "adam",
        }
    }

    /// Elementwise floating-point operations per parameter element.
    fn flops_per_element(self) -> u64 {
        let l2 = |wd: f32| if wd != 0.0 { 2 } else { 0 };
        match self {
            UpdateRule::Sgd { weight_decay } => 2 + l2(weight_decay),
            UpdateRule::Momentum { nesterov, weight_decay, .. } => 4 + 2 * nesterov as u64 + l2(weight_decay),
            UpdateRule::Adam { decay, .. } => 13 + decay as u64,
        }
    }
}

/// Activations a dense epilogue may apply.
pub fn is_dense_activation(u: UnaryOp) -> bool {
    matches!(u, UnaryOp::Relu | UnaryOp::LeakyRelu { .. } | UnaryOp::Sigmoid | UnaryOp::Tanh | UnaryOp::Gelu { .. })
}

impl FusedOp {
    pub fn arity(&self) -> usize {
        match self {
            FusedOp::Dense { bias, .. } => 2 + *bias as usize,
            FusedOp::DenseReluGrad { .. } => 3,
            FusedOp::SoftmaxCrossEntropy { .. } => 2,
            FusedOp::Update { rule, .. } => 2 + rule.states() + rule.scalars(),
            FusedOp::DenseUpdate { rule, .. } => 3 + rule.states() + rule.scalars(),
            FusedOp::Conv { epilogue, .. } => 2 + epilogue.operands(),
        }
    }

    pub fn mnemonic(&self) -> &'static str {
        match self {
            FusedOp::Dense { .. } => "fused.dense",
            FusedOp::DenseReluGrad { .. } => "fused.dense_relu_grad",
            FusedOp::SoftmaxCrossEntropy { .. } => "fused.softmax_ce",
            FusedOp::Update { rule, .. } => match rule {
                UpdateRule::Sgd { .. } => "fused.sgd",
                UpdateRule::Momentum { .. } => "fused.momentum",
                UpdateRule::Adam { .. } => "fused.adam",
            },
            FusedOp::DenseUpdate { rule, .. } => match rule {
                UpdateRule::Sgd { .. } => "fused.dense_sgd",
                UpdateRule::Momentum { .. } => "fused.dense_momentum",
                UpdateRule::Adam { .. } => "fused.dense_adam",
            },
            FusedOp::Conv { .. } => "fused.conv",
        }
    }

    /// The kernel this value is a result of: the op with `out` set to the primary
    /// result. Values with equal kernels and equal operands are siblings, computed
    /// together.
    pub fn kernel(&self) -> FusedOp {
        match self.clone() {
            FusedOp::DenseReluGrad { trans_a, trans_b, .. } => {
                FusedOp::DenseReluGrad { trans_a, trans_b, out: GradOut::Grad }
            }
            FusedOp::SoftmaxCrossEntropy { .. } => FusedOp::SoftmaxCrossEntropy { out: CeOut::Loss },
            FusedOp::Update { rule, .. } => FusedOp::Update { rule, out: UpdateOut::Param },
            FusedOp::DenseUpdate { trans_a, trans_b, rule, .. } => {
                FusedOp::DenseUpdate { trans_a, trans_b, rule, out: UpdateOut::Param }
            }
            d @ (FusedOp::Dense { .. } | FusedOp::Conv { .. }) => d,
        }
    }

    /// The transpose flags of the matrix product at the kernel's core, if it has one;
    /// operands 0 and 1 are the product's `a` and `b`.
    pub fn matmul_flags(&self) -> Option<(bool, bool)> {
        match *self {
            FusedOp::Dense { trans_a, trans_b, .. }
            | FusedOp::DenseReluGrad { trans_a, trans_b, .. }
            | FusedOp::DenseUpdate { trans_a, trans_b, .. } => Some((trans_a, trans_b)),
            FusedOp::SoftmaxCrossEntropy { .. } | FusedOp::Update { .. } | FusedOp::Conv { .. } => None,
        }
    }

    /// The same op with other transpose flags (for ops with a matrix product).
    pub fn with_matmul_flags(&self, ta: bool, tb: bool) -> FusedOp {
        let mut f = self.clone();
        match &mut f {
            FusedOp::Dense { trans_a, trans_b, .. }
            | FusedOp::DenseReluGrad { trans_a, trans_b, .. }
            | FusedOp::DenseUpdate { trans_a, trans_b, .. } => {
                *trans_a = ta;
                *trans_b = tb;
            }
            FusedOp::SoftmaxCrossEntropy { .. } | FusedOp::Update { .. } | FusedOp::Conv { .. } => {}
        }
        f
    }

    /// Whether operand `slot` is read only at the position of the element being
    /// written (same shape as the result, no broadcast), so the result may overwrite
    /// it in place. Matrix-product operands and reductions are not.
    pub fn reads_elementwise(&self, slot: usize) -> bool {
        match self {
            // The residual is read where the output is written, but the tiles of a
            // convolution may write a panel before its epilogue reads the residual.
            FusedOp::Dense { .. } | FusedOp::SoftmaxCrossEntropy { .. } | FusedOp::Conv { .. } => false,
            FusedOp::DenseReluGrad { out, .. } => slot == 2 && *out == GradOut::Grad,
            // p, the states and g have the result's type; the scalars broadcast.
            FusedOp::Update { rule, .. } => slot < 2 + rule.states(),
            FusedOp::DenseUpdate { rule, .. } => (2..3 + rule.states()).contains(&slot),
        }
    }

    /// Attributes for the text form, in a fixed order; defaults are omitted.
    pub(crate) fn attributes(&self) -> Vec<String> {
        let mut attrs = Vec::new();
        let flags = |attrs: &mut Vec<String>, ta: bool, tb: bool| {
            if ta {
                attrs.push("trans_a".to_string());
            }
            if tb {
                attrs.push("trans_b".to_string());
            }
        };
        let activation = |attrs: &mut Vec<String>, act: Option<UnaryOp>| {
            if let Some(u) = act {
                attrs.push(format!("act={}", Op::Unary(u).mnemonic()));
                match u {
                    UnaryOp::LeakyRelu { alpha } => attrs.push(format!("slope={alpha:?}")),
                    UnaryOp::Gelu { approximate: true } => attrs.push("approximate=tanh".to_string()),
                    _ => {}
                }
            }
        };
        match self.clone() {
            FusedOp::Dense { trans_a, trans_b, alpha, bias, act } => {
                flags(&mut attrs, trans_a, trans_b);
                if alpha != 1.0 {
                    attrs.push(format!("alpha={alpha:?}"));
                }
                if bias {
                    attrs.push("bias".to_string());
                }
                activation(&mut attrs, act);
            }
            FusedOp::Conv { conv, epilogue: e } => {
                attrs = conv.attributes();
                if e.bias {
                    attrs.push("bias".to_string());
                }
                if e.residual {
                    attrs.push("residual".to_string());
                }
                activation(&mut attrs, e.act);
                if let Some(lo) = e.min {
                    attrs.push(format!("min={lo:?}"));
                }
                if let Some(hi) = e.max {
                    attrs.push(format!("max={hi:?}"));
                }
            }
            FusedOp::DenseReluGrad { trans_a, trans_b, out } => {
                flags(&mut attrs, trans_a, trans_b);
                if out == GradOut::ColSum {
                    attrs.push("out=col_sum".to_string());
                }
            }
            FusedOp::SoftmaxCrossEntropy { out } => match out {
                CeOut::Loss => {}
                CeOut::Grad => attrs.push("out=grad".to_string()),
                CeOut::GradColSum => attrs.push("out=grad_col_sum".to_string()),
            },
            FusedOp::Update { rule, out } => {
                rule_attributes(&mut attrs, rule);
                out_attribute(&mut attrs, out);
            }
            FusedOp::DenseUpdate { trans_a, trans_b, rule, out } => {
                flags(&mut attrs, trans_a, trans_b);
                rule_attributes(&mut attrs, rule);
                out_attribute(&mut attrs, out);
            }
        }
        attrs
    }
}

fn rule_attributes(attrs: &mut Vec<String>, rule: UpdateRule) {
    match rule {
        UpdateRule::Sgd { weight_decay } => {
            if weight_decay != 0.0 {
                attrs.push(format!("weight_decay={weight_decay:?}"));
            }
        }
        UpdateRule::Momentum { momentum, nesterov, weight_decay } => {
            attrs.push(format!("momentum={momentum:?}"));
            if nesterov {
                attrs.push("nesterov".to_string());
            }
            if weight_decay != 0.0 {
                attrs.push(format!("weight_decay={weight_decay:?}"));
            }
        }
        UpdateRule::Adam { beta1, beta2, eps, decay } => {
            attrs.push(format!("beta1={beta1:?}"));
            attrs.push(format!("beta2={beta2:?}"));
            attrs.push(format!("eps={eps:?}"));
            if decay {
                attrs.push("decay".to_string());
            }
        }
    }
}

fn out_attribute(attrs: &mut Vec<String>, out: UpdateOut) {
    match out {
        UpdateOut::Param => {}
        UpdateOut::M => attrs.push("out=m".to_string()),
        UpdateOut::V => attrs.push("out=v".to_string()),
    }
}

/// The operands of an update, by role.
struct UpdateArgs<'a, T> {
    /// `a, b` of the matrix product making the gradient, or the gradient itself.
    grad: GradSource<'a, T>,
    p: &'a T,
    states: &'a [T],
    scalars: &'a [T],
}

enum GradSource<'a, T> {
    Value(&'a T),
    MatMul(&'a T, &'a T),
}

fn split_update<'a, T>(f: &FusedOp, args: &'a [T]) -> Option<(UpdateRule, UpdateOut, UpdateArgs<'a, T>)> {
    if args.len() != f.arity() {
        return None;
    }
    match f.clone() {
        FusedOp::Update { rule, out } => {
            let s = rule.states();
            Some((
                rule,
                out,
                UpdateArgs {
                    grad: GradSource::Value(&args[1 + s]),
                    p: &args[0],
                    states: &args[1..1 + s],
                    scalars: &args[2 + s..],
                },
            ))
        }
        FusedOp::DenseUpdate { rule, out, .. } => {
            let s = rule.states();
            Some((
                rule,
                out,
                UpdateArgs {
                    grad: GradSource::MatMul(&args[0], &args[1]),
                    p: &args[2],
                    states: &args[3..3 + s],
                    scalars: &args[3 + s..],
                },
            ))
        }
        _ => None,
    }
}

/// The result type of a fused op (called by `infer::infer_type` after the arity check).
pub(crate) fn infer(f: &FusedOp, args: &[&TensorType]) -> Result<TensorType, String> {
    let two_d = |a: &TensorType, b: &TensorType, ta: bool, tb: bool| {
        if a.rank() != 2 || b.rank() != 2 {
            return Err(format!("the matrix product needs 2-D operands, got {} and {}", a.shape, b.shape));
        }
        infer_matmul(a, b, ta, tb)
    };
    match f.clone() {
        FusedOp::Conv { conv, epilogue: e } => {
            let y = crate::infer::infer_type(&Op::Conv(conv), &args[..2])?;
            let mut at = 2;
            if e.bias {
                let b = args[at];
                at += 1;
                if !is_channel_bias(b, &y) {
                    let m = y.shape.0[1];
                    return Err(format!("the bias must be f32 with one value per channel ([{m}, 1, ..]), got {b}"));
                }
            }
            if e.residual && args[at] != &y {
                return Err(format!("the residual must have the output's type {y}, got {}", args[at]));
            }
            if let Some(u) = e.act.filter(|&u| !is_dense_activation(u)) {
                return Err(format!("{} is not a convolution activation", Op::Unary(u).mnemonic()));
            }
            if let Some(c) = [e.min, e.max].into_iter().flatten().find(|c| c.is_nan()) {
                return Err(format!("clip bounds must be numbers, got {c}"));
            }
            Ok(y)
        }
        FusedOp::Dense { trans_a, trans_b, alpha, bias, act } => {
            let y = two_d(args[0], args[1], trans_a, trans_b)?;
            if !alpha.is_finite() {
                return Err(format!("alpha must be finite, got {alpha}"));
            }
            if bias {
                let n = y.shape.0[1];
                let b = args[2];
                let row = b.shape.0 == [n] || b.shape.0 == [Dim::Fixed(1), n];
                if b.dtype != DType::F32 || !row {
                    return Err(format!("the bias must be an f32 row vector [{n}] or [1,{n}], got {b}"));
                }
            }
            if let Some(u) = act.filter(|&u| !is_dense_activation(u)) {
                return Err(format!("{} is not a dense activation", Op::Unary(u).mnemonic()));
            }
            Ok(y)
        }
        FusedOp::DenseReluGrad { trans_a, trans_b, out } => {
            let y = two_d(args[0], args[1], trans_a, trans_b)?;
            if args[2] != &y {
                return Err(format!("the mask operand must have the product's type {y}, got {}", args[2]));
            }
            Ok(match out {
                GradOut::Grad => y,
                GradOut::ColSum => TensorType::new(DType::F32, Shape(vec![y.shape.0[1]])),
            })
        }
        FusedOp::SoftmaxCrossEntropy { out } => {
            let (logits, labels) = (args[0], args[1]);
            let [rows, classes] = logits.shape.0[..] else {
                return Err(format!("logits must be [M, C], got {logits}"));
            };
            if logits.dtype != DType::F32 || classes == Dim::Batch {
                return Err(format!("logits must be f32 [M, C] with a static C, got {logits}"));
            }
            if !matches!(labels.dtype, DType::I64 | DType::I32) || labels.shape.0 != [rows] {
                return Err(format!("labels must be integer class indices [{rows}], got {labels}"));
            }
            Ok(match out {
                CeOut::Loss => TensorType::new(DType::F32, Shape::scalar()),
                CeOut::Grad => logits.clone(),
                CeOut::GradColSum => TensorType::new(DType::F32, Shape(vec![classes])),
            })
        }
        FusedOp::Update { .. } | FusedOp::DenseUpdate { .. } => {
            let Some((rule, out, ua)) = split_update(f, args) else {
                return Err("wrong operand count".into());
            };
            let p = *ua.p;
            if p.dtype != DType::F32 {
                return Err(format!("the parameter must be f32, got {p}"));
            }
            let g = match ua.grad {
                GradSource::Value(g) => (*g).clone(),
                GradSource::MatMul(a, b) => {
                    let (ta, tb) = f.matmul_flags().unwrap_or((false, false));
                    two_d(a, b, ta, tb)?
                }
            };
            if g != *p {
                return Err(format!("the gradient {g} does not have the parameter's type {p}"));
            }
            if let Some(s) = ua.states.iter().find(|s| **s != p) {
                return Err(format!("optimizer state {s} does not have the parameter's type {p}"));
            }
            if let Some(s) = ua.scalars.iter().find(|s| s.dtype != DType::F32 || s.rank() != 0) {
                return Err(format!("scalar operands must be f32[], got {s}"));
            }
            if !rule.has(out) {
                let out = match out {
                    UpdateOut::Param => "param",
                    UpdateOut::M => "m",
                    UpdateOut::V => "v",
                };
                return Err(format!("{} has no result '{out}'", rule.name()));
            }
            Ok(p.clone())
        }
    }
}

/// Floating-point operations of the kernel of `f` at a batch size, counting each
/// of the kernel's results in `outs` once and the work they share once (see
/// `cost::value_flops`). `args` are the operand types.
pub(crate) fn kernel_flops(f: &FusedOp, outs: &[FusedOp], args: &[&TensorType], batch: usize) -> u64 {
    let numel = |t: &TensorType| t.shape.numel(batch).unwrap_or(0) as u64;
    let matmul = |ta: bool, tb: bool| -> (u64, u64) {
        match infer_matmul(args[0], args[1], ta, tb) {
            Ok(y) => {
                let a = args[0].shape.resolve(batch);
                let k = (if ta { a[a.len() - 2] } else { a[a.len() - 1] }) as u64;
                (2 * numel(&y) * k, numel(&y))
            }
            Err(_) => (0, 0),
        }
    };
    match f.clone() {
        FusedOp::Conv { epilogue: e, .. } => {
            // As `cost::value_flops` counts a convolution, plus one per epilogue step.
            let Ok(y) = infer(f, args) else { return 0 };
            let out = numel(&y);
            let act = match e.act {
                Some(UnaryOp::Gelu { .. }) => 8,
                Some(_) => 1,
                None => 0,
            };
            let steps = e.bias as u64 + e.residual as u64 + act + e.min.is_some() as u64 + e.max.is_some() as u64;
            crate::cost::conv_flops(&y, args[1], batch) + steps * out
        }
        FusedOp::Dense { trans_a, trans_b, alpha, bias, act } => {
            let (mm, out) = matmul(trans_a, trans_b);
            let act = match act {
                Some(UnaryOp::Gelu { .. }) => 8 * out,
                Some(_) => out,
                None => 0,
            };
            mm + (alpha != 1.0) as u64 * out + bias as u64 * out + act
        }
        FusedOp::DenseReluGrad { trans_a, trans_b, .. } => {
            let (mm, out) = matmul(trans_a, trans_b);
            let col_sum = outs.iter().any(|o| matches!(o, FusedOp::DenseReluGrad { out: GradOut::ColSum, .. }));
            mm + out + col_sum as u64 * out
        }
        FusedOp::SoftmaxCrossEntropy { .. } => {
            let n = numel(args[0]);
            let has = |o: CeOut| outs.contains(&FusedOp::SoftmaxCrossEntropy { out: o });
            let rows = args[0].shape.resolve(batch).first().copied().unwrap_or(0) as u64;
            let loss = if has(CeOut::Loss) { n + rows } else { 0 };
            let grad = if has(CeOut::Grad) || has(CeOut::GradColSum) { 3 * n } else { 0 };
            4 * n + loss + grad + has(CeOut::GradColSum) as u64 * n
        }
        FusedOp::Update { rule, .. } => rule.flops_per_element() * numel(args[0]),
        FusedOp::DenseUpdate { trans_a, trans_b, rule, .. } => {
            let (mm, out) = matmul(trans_a, trans_b);
            mm + rule.flops_per_element() * out
        }
    }
}

/// Appends primitives to a graph, naming them after the value being expanded.
struct Emit<'g> {
    g: &'g mut Graph,
    prefix: String,
}

impl Emit<'_> {
    fn op(&mut self, what: &str, op: Op, args: &[ValueId]) -> Result<ValueId, IrError> {
        let name = self.g.fresh_name(&format!("{}.{what}", self.prefix));
        self.g.push(name, op, args)
    }

    fn bin(&mut self, what: &str, b: BinaryOp, x: ValueId, y: ValueId) -> Result<ValueId, IrError> {
        self.op(what, Op::Binary(b), &[x, y])
    }

    fn scalar(&mut self, what: &str, v: f32) -> Result<ValueId, IrError> {
        self.op(what, Op::Const(Tensor::scalar_f32(v)), &[])
    }
}

impl FusedOp {
    /// Appends to `g` the primitives this op stands for, applied to `args` (values of
    /// `g`), and returns the value equal to this op's result. Intermediate values are
    /// named `<name>.<what>`. This is the op's definition.
    pub fn expand(&self, g: &mut Graph, args: &[ValueId], name: &str) -> Result<ValueId, IrError> {
        let wrong = |m: String| IrError::Type { value: name.to_string(), op: self.mnemonic().to_string(), message: m };
        if args.len() != self.arity() {
            return Err(wrong(format!("takes {} operands, got {}", self.arity(), args.len())));
        }
        let mut e = Emit { g, prefix: name.to_string() };
        match self.clone() {
            FusedOp::Conv { conv, epilogue: ep } => {
                let mut y = e.op("conv", Op::Conv(conv), &args[..2])?;
                let mut at = 2;
                if ep.bias {
                    y = e.bin("bias", BinaryOp::Add, y, args[at])?;
                    at += 1;
                }
                if ep.residual {
                    y = e.bin("residual", BinaryOp::Add, y, args[at])?;
                }
                if let Some(u) = ep.act {
                    y = e.op("act", Op::Unary(u), &[y])?;
                }
                if let Some(lo) = ep.min {
                    let lo = e.scalar("min", lo)?;
                    y = e.bin("lower", BinaryOp::Max, y, lo)?;
                }
                if let Some(hi) = ep.max {
                    let hi = e.scalar("max", hi)?;
                    y = e.bin("upper", BinaryOp::Min, y, hi)?;
                }
                Ok(y)
            }
            FusedOp::Dense { trans_a, trans_b, alpha, bias, act } => {
                let mut y = e.op("matmul", Op::MatMul { trans_a, trans_b }, &args[..2])?;
                if alpha != 1.0 {
                    let k = e.scalar("alpha", alpha)?;
                    y = e.bin("scaled", BinaryOp::Mul, y, k)?;
                }
                if bias {
                    y = e.bin("add", BinaryOp::Add, y, args[2])?;
                }
                if let Some(u) = act {
                    y = e.op("act", Op::Unary(u), &[y])?;
                }
                Ok(y)
            }
            FusedOp::DenseReluGrad { trans_a, trans_b, out } => {
                let y = e.op("matmul", Op::MatMul { trans_a, trans_b }, &args[..2])?;
                let zero = e.scalar("zero", 0.0)?;
                let mask = e.bin("mask", BinaryOp::Greater, args[2], zero)?;
                let grad = e.op("grad", Op::Where, &[mask, y, zero])?;
                match out {
                    GradOut::Grad => Ok(grad),
                    GradOut::ColSum => e.op("col_sum", sum(&[0], false), &[grad]),
                }
            }
            FusedOp::SoftmaxCrossEntropy { out } => {
                let (logits, labels) = (args[0], args[1]);
                let ty = e.g.ty(logits).clone();
                let [rows, classes] = ty.shape.0[..] else {
                    return Err(wrong(format!("logits must be [M, C], got {ty}")));
                };
                let depth = classes.fixed().ok_or_else(|| wrong("the class count must be static".into()))?;
                let log_probs = e.op("log_probs", Op::LogSoftmax { axis: 1 }, &[logits])?;
                let one_hot = e.op("one_hot", Op::OneHot { depth }, &[labels])?;
                if out == CeOut::Loss {
                    // -mean_rows(Σ_classes onehot ⊙ log_softmax)
                    let picked = e.bin("picked", BinaryOp::Mul, one_hot, log_probs)?;
                    let ll = e.op("log_likelihood", sum(&[1], false), &[picked])?;
                    let mean = Op::Reduce { op: ReduceOp::Mean, axes: vec![0], keep_dims: false };
                    let mean = e.op("mean", mean, &[ll])?;
                    return e.op("loss", Op::Unary(UnaryOp::Neg), &[mean]);
                }
                // The reverse sweep of the loss above, as nnc-autodiff writes it:
                // ∂loss/∂log_probs = -onehot/M, then the log_softmax rule
                // g - softmax·Σ_classes g, which is (softmax - onehot)/M.
                let one = e.scalar("one", 1.0)?;
                let ones = e.op("ones", Op::Broadcast { shape: Shape(vec![rows]) }, &[one])?;
                let count = e.op("count", sum(&[0], false), &[ones])?;
                let minus_one = e.scalar("minus_one", -1.0)?;
                let scale = e.bin("scale", BinaryOp::Div, minus_one, count)?;
                let scale = e.op("scale_rows", Op::Broadcast { shape: ty.shape.clone() }, &[scale])?;
                let d_log_probs = e.bin("d_log_probs", BinaryOp::Mul, scale, one_hot)?;
                let row_sum = e.op("row_sum", sum(&[1], true), &[d_log_probs])?;
                let probs = e.op("probs", Op::Unary(UnaryOp::Exp), &[log_probs])?;
                let scaled = e.bin("probs_scaled", BinaryOp::Mul, probs, row_sum)?;
                let grad = e.bin("grad", BinaryOp::Sub, d_log_probs, scaled)?;
                match out {
                    CeOut::GradColSum => e.op("col_sum", sum(&[0], false), &[grad]),
                    _ => Ok(grad),
                }
            }
            FusedOp::Update { .. } | FusedOp::DenseUpdate { .. } => {
                let Some((rule, out, ua)) = split_update(self, args) else {
                    return Err(wrong("not an update".into()));
                };
                let g = match ua.grad {
                    GradSource::Value(&g) => g,
                    GradSource::MatMul(&a, &b) => {
                        let (trans_a, trans_b) = self.matmul_flags().unwrap_or((false, false));
                        e.op("grad", Op::MatMul { trans_a, trans_b }, &[a, b])?
                    }
                };
                expand_update(&mut e, rule, out, *ua.p, ua.states, g, ua.scalars)
            }
        }
    }
}

fn sum(axes: &[usize], keep_dims: bool) -> Op {
    Op::Reduce { op: ReduceOp::Sum, axes: axes.to_vec(), keep_dims }
}

/// nnc-autodiff's update formulas, in its order of operations.
fn expand_update(
    e: &mut Emit,
    rule: UpdateRule,
    out: UpdateOut,
    p: ValueId,
    states: &[ValueId],
    g: ValueId,
    scalars: &[ValueId],
) -> Result<ValueId, IrError> {
    use BinaryOp::{Add, Div, Mul, Sub};
    let l2 = |e: &mut Emit, g: ValueId, wd: f32| -> Result<ValueId, IrError> {
        if wd == 0.0 {
            return Ok(g);
        }
        let wd = e.scalar("weight_decay", wd)?;
        let decay = e.bin("l2", Mul, p, wd)?;
        e.bin("grad_l2", Add, g, decay)
    };
    match rule {
        UpdateRule::Sgd { weight_decay } => {
            let g = l2(e, g, weight_decay)?;
            let step = e.bin("step", Mul, g, scalars[0])?;
            e.bin("new", Sub, p, step)
        }
        UpdateRule::Momentum { momentum, nesterov, weight_decay } => {
            let g = l2(e, g, weight_decay)?;
            let mu = e.scalar("momentum", momentum)?;
            let decayed = e.bin("m_decayed", Mul, states[0], mu)?;
            let m_new = e.bin("m_new", Add, decayed, g)?;
            if out == UpdateOut::M {
                return Ok(m_new);
            }
            let dir = if nesterov {
                let look_ahead = e.bin("m_new_decayed", Mul, m_new, mu)?;
                e.bin("nesterov", Add, g, look_ahead)?
            } else {
                m_new
            };
            let step = e.bin("step", Mul, dir, scalars[0])?;
            e.bin("new", Sub, p, step)
        }
        UpdateRule::Adam { beta1, beta2, eps, decay } => {
            let (b1, c1) = (e.scalar("beta1", beta1)?, e.scalar("one_minus_beta1", 1.0 - beta1)?);
            let m_old = e.bin("m_decayed", Mul, states[0], b1)?;
            let m_g = e.bin("g_scaled", Mul, g, c1)?;
            let m_new = e.bin("m_new", Add, m_old, m_g)?;
            if out == UpdateOut::M {
                return Ok(m_new);
            }
            let (b2, c2) = (e.scalar("beta2", beta2)?, e.scalar("one_minus_beta2", 1.0 - beta2)?);
            let v_old = e.bin("v_decayed", Mul, states[1], b2)?;
            let gg = e.bin("g_squared", Mul, g, g)?;
            let v_g = e.bin("g_squared_scaled", Mul, gg, c2)?;
            let v_new = e.bin("v_new", Add, v_old, v_g)?;
            if out == UpdateOut::V {
                return Ok(v_new);
            }
            let sqrt_v = e.op("sqrt_v", Op::Unary(UnaryOp::Sqrt), &[v_new])?;
            let sqrt_v_hat = e.bin("sqrt_v_hat", Mul, sqrt_v, scalars[1])?;
            let eps = e.scalar("eps", eps)?;
            let denom = e.bin("denom", Add, sqrt_v_hat, eps)?;
            let ratio = e.bin("ratio", Div, m_new, denom)?;
            let step = e.bin("step", Mul, ratio, scalars[0])?;
            let base = if decay { e.bin("decayed", Mul, p, scalars[2])? } else { p };
            e.bin("new", Sub, base, step)
        }
    }
}

/// Whether the graph has any fused op.
pub fn has_fused(graph: &Graph) -> bool {
    graph.values().iter().any(|v| matches!(v.op, Op::Fused(_)))
}

/// The graph with every fused op replaced by its primitive expansion (for backends
/// and formats that only know primitives, like ONNX). Every other value keeps its
/// name; an expanded value's result takes the fused value's name.
pub fn expand_fused(graph: &Graph) -> Result<Graph, IrError> {
    let mut out = Graph::new(graph.name.clone());
    let mut map = Vec::with_capacity(graph.len());
    for v in graph.values() {
        let args: Vec<ValueId> = v.args.iter().map(|a| map[a.index()]).collect();
        // Intermediates may have taken a later value's name; such a value is renamed.
        let name = out.fresh_name(&v.name);
        let id = match &v.op {
            Op::Fused(f) => {
                let tmp = out.fresh_name(&format!("{name}.fused"));
                let id = f.expand(&mut out, &args, &tmp)?;
                let name = out.fresh_name(&name);
                out.rename(id, name)?;
                if out.ty(id) != &v.ty {
                    return Err(IrError::structure(
                        &v.name,
                        format!("the expansion of {} has type {}, not {}", f.mnemonic(), out.ty(id), v.ty),
                    ));
                }
                id
            }
            op => out.push_typed(name, v.ty.clone(), op.clone(), args)?,
        };
        map.push(id);
    }
    out.set_outputs(graph.outputs().iter().map(|o| map[o.index()]).collect());
    out.set_updates(graph.updates().iter().map(|&(l, n)| (map[l.index()], map[n.index()])).collect());
    Ok(out)
}
