//! Matrix-product epilogues as a sweep: what a fused dense kernel does to the rows of
//! C it has just finished (`MatMulPlan::epilogue`, a list of operations) when its tiles
//! do not apply it, in the same function as the product, so the rows are still in
//! cache and no intermediate is written and read back by another kernel.
//!
//! Each runs over the rows `[begin, end)` of the call, after their last K block: rows
//! are independent, so the split across threads stays the matrix product's. The
//! arithmetic follows `FusedOp::expand` operation for operation (`alpha·C`, then
//! `+ bias`, then the activation; `where(h > 0, C, 0)`), so the epilogue adds no
//! rounding difference of its own.
//!
//! A fused convolution's epilogue (`emit_output_run`) is applied by the convolution
//! kernels as they write each run of an output channel, in the same order of
//! operations as `FusedOp::Conv`'s expansion.

use crate::clif::{Fx, PTR};
use crate::kernels::elementwise::{unary_f32, vector_unary};
use crate::kernels::update;
use crate::program::{EpilogueOp, MatMul, OutputEpilogue};
use cranelift_codegen::ir::condcodes::FloatCC;
use cranelift_codegen::ir::{types, Endianness, InstBuilder, MemFlagsData, Type, Value};
use nnc_ir::UnaryOp;

/// Applies the epilogue to rows `[begin, end)` of C (at `c`, `n` columns).
pub(crate) fn emit(fx: &mut Fx, mm: &MatMul, c: Value, n: Value) {
    let ops = &mm.plan.epilogue;
    if let [EpilogueOp::Update(u)] = &ops[..] {
        // C and the parameter are both `[m, n]` row-major: rows are element ranges.
        let (begin, end) = (fx.begin, fx.end);
        let lo = fx.mul(begin, n);
        let hi = fx.mul(end, n);
        return update::emit_range(fx, u, lo, hi);
    }
    if ops.is_empty() {
        return;
    }
    // The buffers the operations read, once.
    let operands: Vec<Option<Value>> = ops
        .iter()
        .map(|op| match op {
            EpilogueOp::Bias(s) | EpilogueOp::ReluMask(s) => Some(fx.slot(*s)),
            _ => None,
        })
        .collect();
    // Activations that call a math helper run one element at a time.
    let vector = ops.iter().all(|op| match op {
        EpilogueOp::Activation(u) => matches!(u, UnaryOp::Relu | UnaryOp::LeakyRelu { .. }),
        _ => true,
    });
    for_rows(fx, mm, c, n, vector, |fx, ty, row, col| {
        let at = fx.add(row, col);
        let mut y = fx.load(ty, at, 0);
        for (op, &operand) in ops.iter().zip(&operands) {
            y = apply(fx, op, operand, ty, y, (c, row, col));
        }
        fx.store(y, at, 0);
    });
}

/// One operation on `y` (of type `ty`), the element at byte `col` of the row of C at
/// `row` (C at `c`).
fn apply(fx: &mut Fx, op: &EpilogueOp, operand: Option<Value>, ty: Type, y: Value, at: (Value, Value, Value)) -> Value {
    let (c, row, col) = at;
    match (op, operand) {
        (EpilogueOp::Scale(alpha), _) => {
            let a = constant(fx, ty, *alpha);
            fx.b.ins().fmul(y, a)
        }
        (EpilogueOp::Bias(_), Some(bias)) => {
            let addr = fx.add(bias, col);
            let b = fx.load(ty, addr, 0);
            fx.b.ins().fadd(y, b)
        }
        (EpilogueOp::Activation(u), _) if ty == types::F32 => unary_f32(fx, *u, y),
        (EpilogueOp::Activation(u), _) => vector_unary(fx, *u, y),
        (EpilogueOp::ReluMask(_), Some(h)) => {
            let h_row = fx.b.ins().isub(row, c);
            let h_at = fx.add(h, h_row);
            let h_at = fx.add(h_at, col);
            let hv = fx.load(ty, h_at, 0);
            let zero = constant(fx, ty, 0.0);
            let positive = fx.b.ins().fcmp(FloatCC::GreaterThan, hv, zero);
            if ty == types::F32 {
                fx.b.ins().select(positive, y, zero)
            } else {
                let flags = MemFlagsData::new().with_endianness(Endianness::Little);
                let mask = fx.b.ins().bitcast(types::F32X4, flags, positive);
                fx.b.ins().bitselect(mask, y, zero)
            }
        }
        (EpilogueOp::Bias(_) | EpilogueOp::ReluMask(_), None) | (EpilogueOp::Update(_), _) => {
            fx.fail("an epilogue operation without its operand, or an update among others");
            y
        }
    }
}

fn constant(fx: &mut Fx, ty: Type, c: f32) -> Value {
    let c = fx.b.ins().f32const(c);
    if ty == types::F32 {
        c
    } else {
        fx.b.ins().splat(ty, c)
    }
}

/// `body(ty, row address, column byte offset)` for every element of rows `[begin,
/// end)`: f32x4 over whole vectors of a row when `vector`, then single f32s.
fn for_rows(fx: &mut Fx, mm: &MatMul, c: Value, n: Value, vector: bool, body: impl Fn(&mut Fx, Type, Value, Value)) {
    debug_assert!(mm.lead.is_empty(), "epilogues are for 2-D products");
    let (begin, end) = (fx.begin, fx.end);
    let ldc = fx.mul_imm(n, 4);
    fx.for_range(begin, end, 1, |fx, r| {
        let off = fx.mul(r, ldc);
        let row = fx.add(c, off);
        let zero = fx.iconst(0);
        let rest = if vector {
            fx.for_whole_steps(zero, n, 4, |fx, j| {
                let col = fx.mul_imm(j, 4);
                body(fx, types::F32X4, row, col)
            })
        } else {
            zero
        };
        fx.for_range(rest, n, 1, |fx, j| {
            let col = fx.mul_imm(j, 4);
            body(fx, types::F32, row, col)
        });
    });
}

/// The addresses a fused convolution's epilogue reads: the output's base, so a
/// position's residual is found at the same offset from the residual's base.
pub(crate) struct OutputOperands {
    /// The first output channel's bias.
    pub bias: Option<Value>,
    /// `residual − output`, in bytes.
    pub residual: Option<Value>,
}

impl OutputOperands {
    pub(crate) fn new(fx: &mut Fx, e: &OutputEpilogue, out: Value) -> OutputOperands {
        let bias = e.bias.map(|s| fx.slot(s));
        let residual = e.residual.map(|s| {
            let r = fx.slot(s);
            fx.b.ins().isub(r, out)
        });
        OutputOperands { bias, residual }
    }

    /// The bias of output channel `channel`'s (its address).
    pub(crate) fn channel(&self, fx: &mut Fx, channel: Value) -> Option<Value> {
        self.bias.map(|b| {
            let at = fx.mul_imm(channel, 4);
            fx.add(b, at)
        })
    }
}

/// A fused convolution's epilogue over `len` outputs of one channel: `dst[i] =
/// epilogue(src[i])` (`src` may be `dst`), `bias` the address of the channel's bias,
/// the residual at `dst + residual` (see [`OutputOperands`]). Each step is the
/// expansion's operation, so the bits are those of the separate kernels.
pub(crate) fn emit_output_run(
    fx: &mut Fx,
    e: &OutputEpilogue,
    (src, dst): (Value, Value),
    len: Value,
    bias: Option<Value>,
    residual: Option<Value>,
) {
    let vector = matches!(e.act, None | Some(UnaryOp::Relu | UnaryOp::LeakyRelu { .. }));
    let b = bias.map(|at| fx.load(types::F32, at, 0));
    let (sp, dp) = (fx.var(PTR, src), fx.var(PTR, dst));
    let step = |fx: &mut Fx, ty: Type, bytes: i64| {
        let (s, d) = (fx.get(sp), fx.get(dp));
        let mut y = fx.load(ty, s, 0);
        if let Some(b) = b {
            let b = if ty == types::F32 { b } else { fx.b.ins().splat(ty, b) };
            y = fx.b.ins().fadd(y, b);
        }
        if let Some(delta) = residual {
            let at = fx.add(d, delta);
            let r = fx.load(ty, at, 0);
            y = fx.b.ins().fadd(y, r);
        }
        if let Some(u) = e.act {
            y = if ty == types::F32 { unary_f32(fx, u, y) } else { vector_unary(fx, u, y) };
        }
        if let Some(lo) = e.min {
            let lo = constant(fx, ty, lo);
            y = fx.b.ins().fmax(y, lo);
        }
        if let Some(hi) = e.max {
            let hi = constant(fx, ty, hi);
            y = fx.b.ins().fmin(y, hi);
        }
        fx.store(y, d, 0);
        let (s, d) = (fx.b.ins().iadd_imm_s(s, bytes), fx.b.ins().iadd_imm_s(d, bytes));
        fx.set(sp, s);
        fx.set(dp, d);
    };
    let z = fx.iconst(0);
    let bytes = fx.mul_imm(len, 4);
    let rest = if vector { fx.for_whole_steps(z, bytes, 16, |fx, _| step(fx, types::F32X4, 16)) } else { z };
    fx.for_range(rest, bytes, 4, |fx, _| step(fx, types::F32, 4));
}
