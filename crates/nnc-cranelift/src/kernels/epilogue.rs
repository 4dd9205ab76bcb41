//! Matrix-product epilogues: what a fused dense kernel does to the rows of C it has
//! just finished (see [`Epilogue`]), in the same function as the product, so the rows
//! are still in cache and no intermediate is written and read back by another kernel.
//!
//! Each runs over the rows `[begin, end)` of the call, after their last K block: rows
//! are independent, so the split across threads stays the matrix product's. The
//! arithmetic follows `FusedOp::expand` operation for operation (`alpha·C`, then
//! `+ bias`, then the activation; `where(h > 0, C, 0)`), so the epilogue adds no
//! rounding difference of its own.

use crate::clif::Fx;
use crate::kernels::elementwise::{unary_f32, vector_unary};
use crate::kernels::update;
use crate::program::{Epilogue, MatMul};
use cranelift_codegen::ir::condcodes::FloatCC;
use cranelift_codegen::ir::{types, Endianness, InstBuilder, MemFlagsData, Type, Value};
use nnc_ir::UnaryOp;

/// Applies the epilogue to rows `[begin, end)` of C (at `c`, `ldc` bytes per row, `n`
/// columns).
pub(crate) fn emit(fx: &mut Fx, mm: &MatMul, ep: &Epilogue, c: Value, n: Value) {
    let (begin, end) = (fx.begin, fx.end);
    match ep {
        Epilogue::Update(u) => {
            // C and the parameter are both `[m, n]` row-major: rows are element ranges.
            let lo = fx.mul(begin, n);
            let hi = fx.mul(end, n);
            update::emit_range(fx, u, lo, hi);
        }
        Epilogue::Dense { alpha, bias, act } => {
            let bias = bias.map(|s| fx.slot(s));
            // Activations that call a math helper run one element at a time.
            let vector = act.is_none_or(|u| matches!(u, UnaryOp::Relu | UnaryOp::LeakyRelu { .. }));
            for_rows(fx, mm, c, n, vector, |fx, ty, row, col| {
                let at = fx.add(row, col);
                let mut y = fx.load(ty, at, 0);
                if *alpha != 1.0 {
                    let a = constant(fx, ty, *alpha);
                    y = fx.b.ins().fmul(y, a);
                }
                if let Some(b) = bias {
                    let addr = fx.add(b, col);
                    let b = fx.load(ty, addr, 0);
                    y = fx.b.ins().fadd(y, b);
                }
                if let Some(u) = act {
                    y = if ty == types::F32 { unary_f32(fx, *u, y) } else { vector_unary(fx, *u, y) };
                }
                fx.store(y, at, 0);
            });
        }
        Epilogue::ReluMask { h } => {
            let h = fx.slot(*h);
            for_rows(fx, mm, c, n, true, |fx, ty, row, col| {
                let at = fx.add(row, col);
                let y = fx.load(ty, at, 0);
                let h_row = fx.b.ins().isub(row, c);
                let h_at = fx.add(h, h_row);
                let h_at = fx.add(h_at, col);
                let hv = fx.load(ty, h_at, 0);
                let zero = constant(fx, ty, 0.0);
                let positive = fx.b.ins().fcmp(FloatCC::GreaterThan, hv, zero);
                let y = if ty == types::F32 {
                    fx.b.ins().select(positive, y, zero)
                } else {
                    let mask = fx.b.ins().bitcast(
                        types::F32X4,
                        MemFlagsData::new().with_endianness(Endianness::Little),
                        positive,
                    );
                    fx.b.ins().bitselect(mask, y, zero)
                };
                fx.store(y, at, 0);
            });
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
