//! Reductions (sum, mean, max over any set of axes).
//!
//! The loop nest walks the input in memory order; the output has stride 0 along
//! reduced axes. When the innermost axis is reduced, a row is folded in registers
//! (f32x4 partial results, then the lanes) and combined into its output element once;
//! when it is kept (e.g. a bias gradient, summing `[N, 256]` over `N`), each input row
//! is combined into the output row with vector ops. A mean divides at the end.
//!
//! The range `[begin, end)` is over the outermost dimension when that dimension is
//! kept (rows of the output are independent), or over groups of output columns when
//! a `[rows, columns]` input is summed over its rows (a bias gradient: each column is
//! summed over the rows in the same order whatever the split); otherwise the kernel is
//! one work item.

use crate::clif::Fx;
use crate::kernels::elementwise::clif_type;
use crate::program::Reduce;
use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::{types, InstBuilder, Value};
use nnc_ir::Size;
use nnc_ir::{DType, ReduceOp};

/// Whether rows of the outermost dimension can be done independently.
fn outer_kept(r: &Reduce) -> bool {
    r.nest.strides[0][0] != Size::ZERO
}

/// Output columns per work item when the items are column groups (a cache line).
pub(crate) const COLUMNS_PER_ITEM: u64 = 16;

/// The number of column groups when the items are column groups: a `[rows, columns]`
/// nest whose rows are reduced and whose static columns are kept and contiguous in
/// both arrays, two groups or more.
pub(crate) fn column_groups(r: &Reduce) -> Option<u64> {
    let [_, cols] = r.nest.dims.as_slice() else { return None };
    let c = cols.as_fixed()?;
    let contiguous = r.nest.strides[0][1].is_fixed(1) && r.nest.strides[1][1].is_fixed(1);
    (!outer_kept(r) && contiguous && c >= 2 * COLUMNS_PER_ITEM).then(|| c.div_ceil(COLUMNS_PER_ITEM))
}

pub(crate) fn items(r: &Reduce) -> Size {
    if outer_kept(r) {
        r.nest.dims[0]
    } else if let Some(groups) = column_groups(r) {
        Size::fixed(groups)
    } else {
        Size::ONE
    }
}

/// The identity of the combination, as a scalar of the element type.
fn identity(fx: &mut Fx, op: ReduceOp, d: DType) -> Value {
    match (op, d) {
        (ReduceOp::Max, DType::F32) => fx.b.ins().f32const(f32::NEG_INFINITY),
        (ReduceOp::Max, DType::I64) => fx.b.ins().iconst(types::I64, i64::MIN),
        (ReduceOp::Max, _) => fx.b.ins().iconst(types::I32, i32::MIN as i64),
        (_, DType::F32) => fx.b.ins().f32const(0.0),
        (_, d) => fx.b.ins().iconst(clif_type(d), 0),
    }
}

/// `max(a, b)` or `a + b`, for floats or integers as the values are.
fn combine(fx: &mut Fx, op: ReduceOp, a: Value, b: Value) -> Value {
    let float = fx.b.func.dfg.value_type(a).lane_type().is_float();
    match (op, float) {
        (ReduceOp::Max, true) => fx.b.ins().fmax(a, b),
        (ReduceOp::Max, false) => fx.b.ins().smax(a, b),
        (_, true) => fx.b.ins().fadd(a, b),
        (_, false) => fx.b.ins().iadd(a, b),
    }
}

pub(crate) fn emit(fx: &mut Fx, r: &Reduce, status: Option<(usize, u32)>) {
    let d = r.out.dtype;
    let ty = clif_type(d);
    let es = d.size_bytes() as u64;
    let float = d == DType::F32;
    let out = fx.slot(r.out.slot);
    let input = fx.slot(r.input.slot);
    let kept = outer_kept(r);

    let groups = column_groups(r);
    // The output elements this call owns.
    let (o_lo, o_hi) = if kept {
        let lo = fx.mul_sz(fx.begin, r.nest.strides[0][0]);
        let hi = fx.mul_sz(fx.end, r.nest.strides[0][0]);
        (lo, hi)
    } else if groups.is_some() {
        // Columns of a contiguous output: element indices.
        let lo = fx.mul_imm(fx.begin, COLUMNS_PER_ITEM as i64);
        let hi = fx.mul_imm(fx.end, COLUMNS_PER_ITEM as i64);
        let cols = fx.sz(r.out_numel);
        (lo, fx.min(hi, cols))
    } else {
        let z = fx.iconst(0);
        (z, fx.sz(r.out_numel))
    };
    let init = identity(fx, r.op, d);
    fx.for_range(o_lo, o_hi, 1, |fx, i| {
        let off = fx.mul_imm(i, es as i64);
        let addr = fx.add(out, off);
        fx.store(init, addr, 0);
    });

    let strides: Vec<Vec<Size>> =
        r.nest.strides.iter().map(|s| s.iter().map(|x| x.scale(es).unwrap_or(Size::ZERO)).collect()).collect();
    let ctx = Ctx { r, strides: &strides, ty, float, columns: groups.map(|_| (o_lo, o_hi)) };
    let (lo, hi) = if kept {
        (fx.begin, fx.end)
    } else {
        let z = fx.iconst(0);
        (z, fx.sz(r.nest.dims[0]))
    };
    ctx.level(fx, 0, lo, hi, out, input);

    if r.op == ReduceOp::Mean {
        let count = fx.sz(r.count);
        if float {
            let c = fx.b.ins().fcvt_from_uint(types::F32, count);
            fx.for_range(o_lo, o_hi, 1, |fx, i| {
                let off = fx.mul_imm(i, es as i64);
                let addr = fx.add(out, off);
                let x = fx.load(types::F32, addr, 0);
                let y = fx.b.ins().fdiv(x, c);
                fx.store(y, addr, 0);
            });
        } else {
            // An integer mean over an empty axis is an error (as in the interpreter).
            let empty = fx.b.ins().icmp_imm_s(IntCC::Equal, count, 0);
            let has_out = fx.lt(o_lo, o_hi);
            let failed = fx.b.ins().band(empty, has_out);
            if let Some((slot, code)) = status {
                fx.if_then(failed, |fx| fx.set_status(slot, code));
            }
            let one = fx.iconst(1);
            let safe = fx.b.ins().select(empty, one, count);
            let safe = if ty == types::I32 { fx.b.ins().ireduce(types::I32, safe) } else { safe };
            fx.for_range(o_lo, o_hi, 1, |fx, i| {
                let off = fx.mul_imm(i, es as i64);
                let addr = fx.add(out, off);
                let x = fx.load(ty, addr, 0);
                let y = fx.b.ins().sdiv(x, safe);
                fx.store(y, addr, 0);
            });
        }
    }
}

struct Ctx<'a> {
    r: &'a Reduce,
    /// Byte strides: `[0]` output, `[1]` input.
    strides: &'a [Vec<Size>],
    ty: cranelift_codegen::ir::Type,
    float: bool,
    /// The innermost range, when the items are column groups (`column_groups`).
    columns: Option<(Value, Value)>,
}

impl Ctx<'_> {
    fn level(&self, fx: &mut Fx, d: usize, lo: Value, hi: Value, out: Value, input: Value) {
        let last = self.r.nest.dims.len() - 1;
        if d == last {
            self.innermost(fx, lo, hi, out, input);
            return;
        }
        fx.for_range(lo, hi, 1, |fx, i| {
            let oo = fx.mul_sz(i, self.strides[0][d]);
            let o = fx.add(out, oo);
            let io = fx.mul_sz(i, self.strides[1][d]);
            let x = fx.add(input, io);
            let (lo, hi) = match self.columns {
                Some(range) if d + 1 == last => range,
                _ => (fx.iconst(0), fx.sz(self.r.nest.dims[d + 1])),
            };
            self.level(fx, d + 1, lo, hi, o, x);
        });
    }

    fn innermost(&self, fx: &mut Fx, lo: Value, hi: Value, out: Value, input: Value) {
        let d = self.r.nest.dims.len() - 1;
        let (os, is) = (self.strides[0][d], self.strides[1][d]);
        let op = self.r.op;
        let vector = self.float && is.is_fixed(4);
        if os == Size::ZERO {
            // Reduced row: fold in registers, then into the one output element.
            let init = identity(fx, op, self.r.out.dtype);
            let acc = fx.var(self.ty, init);
            let mut start = lo;
            if vector {
                let v0 = fx.b.ins().splat(types::F32X4, init);
                let vacc = fx.var(types::F32X4, v0);
                start = fx.for_whole_steps(lo, hi, 4, |fx, i| {
                    let off = fx.mul_imm(i, 4);
                    let addr = fx.add(input, off);
                    let x = fx.load(types::F32X4, addr, 0);
                    let a = fx.get(vacc);
                    let y = combine(fx, op, a, x);
                    fx.set(vacc, y);
                });
                let v = fx.get(vacc);
                let mut s = fx.get(acc);
                for lane in 0..4u8 {
                    let x = fx.b.ins().extractlane(v, lane);
                    s = combine(fx, op, s, x);
                }
                fx.set(acc, s);
            }
            fx.for_range(start, hi, 1, |fx, i| {
                let off = fx.mul_sz(i, is);
                let addr = fx.add(input, off);
                let x = fx.load(self.ty, addr, 0);
                let a = fx.get(acc);
                let y = combine(fx, op, a, x);
                fx.set(acc, y);
            });
            let old = fx.load(self.ty, out, 0);
            let a = fx.get(acc);
            let y = combine(fx, op, old, a);
            fx.store(y, out, 0);
        } else {
            // Kept row: out[i] = out[i] ⊕ in[i].
            let mut start = lo;
            if vector && os.is_fixed(4) {
                start = fx.for_whole_steps(lo, hi, 4, |fx, i| {
                    let off = fx.mul_imm(i, 4);
                    let src = fx.add(input, off);
                    let dst = fx.add(out, off);
                    let x = fx.load(types::F32X4, src, 0);
                    let o = fx.load(types::F32X4, dst, 0);
                    let y = combine(fx, op, o, x);
                    fx.store(y, dst, 0);
                });
            }
            fx.for_range(start, hi, 1, |fx, i| {
                let so = fx.mul_sz(i, is);
                let src = fx.add(input, so);
                let doff = fx.mul_sz(i, os);
                let dst = fx.add(out, doff);
                let x = fx.load(self.ty, src, 0);
                let o = fx.load(self.ty, dst, 0);
                let y = combine(fx, op, o, x);
                fx.store(y, dst, 0);
            });
        }
    }
}
