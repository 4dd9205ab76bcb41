//! Few rows of A times a large transposed B, as dot products.
//!
//! A model exported from PyTorch stores a dense layer's weight as `[out, in]` and
//! multiplies by its transpose (`Gemm` with `transB = 1`). The tiles need B's rows
//! contiguous, so the pack phase transposes all of it into panels every step: at
//! batch 1 that pass over the seed's 784 KiB weight cost more than the product
//! itself (docs/matmul.md). But in that layout each column of C is a dot
//! product of two contiguous vectors, A's row and B's stored row, which need no pack.
//! So a product with A and the stored B both contiguous along K, a static K and N, a
//! large B and few rows at run time (`MatMulPlan::dots`, see `lower/matmul.rs`)
//! computes C that way instead of packing and tiling:
//!
//! - `dots` (work items: groups of `COLS` columns of C) computes every row of its
//!   columns. Each element is the same chain whatever the group: two f32x4
//!   accumulators over K in steps of 8 (lanes `k mod 8`, in K order, FMAs where the
//!   CPU has them), then `(s0 + s1) + (s2 + s3)` of their sum, then the last `K mod 8`
//!   terms one by one. The loop nest is Cranelift code; a family's micro-kernels may
//!   replace the Cranelift dot products of a group and one or two rows
//!   (`MicroOp::Dots`; four columns at a time: eight independent FMA chains per row)
//!   by their own with the same bits, as the x86 ones do (Cranelift's register allocation of this loop
//!   ran it at half the speed; two rows load each vector of B once). So the bits do
//!   not depend on the family, and as the step takes the variant from M alone, nor
//!   on the thread count. They differ in rounding from the tiled product.
//! - `dots_finish` (rows of C, called once) applies the product's epilogue, if any.
//!
//! A group's B rows, read once per row of A, stay in L1 across A's few rows.

use crate::clif::{Fx, PTR};
use crate::microkernel::{KernelFamily, MicroArgs, MicroOp};
use crate::program::MatMul;
use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::{types, InstBuilder, Value};

/// Columns of C per work item.
pub(crate) const COLS: u64 = 4;
/// K terms per step of the vector loop: two f32x4 accumulators.
pub(crate) const K_STEP: i64 = 8;

/// Computes the column groups `[fx.begin, fx.end)` of C for all its rows.
pub(crate) fn emit(fx: &mut Fx, mm: &MatMul, family: &dyn KernelFamily) {
    let k = mm.k.as_fixed().expect("dot products only with a static K") as i64;
    let n = mm.n.as_fixed().expect("dot products only with a static N") as i64;
    let b_col = mm.b_col.as_fixed().expect("dot products only with a static B stride") as i64 * 4;
    let (lo, hi) = (fx.begin, fx.end);
    let a = fx.slot(mm.a);
    let b = fx.slot(mm.b);
    let c = fx.slot(mm.c);
    let a_row = fx.sz(mm.a_row);
    let a_row = fx.mul_imm(a_row, 4);
    let m = fx.sz(mm.m);
    let whole_groups = n / COLS as i64;
    fx.for_range(lo, hi, 1, |fx, g| {
        let j0 = fx.mul_imm(g, COLS as i64);
        let columns = |fx: &mut Fx, count: i64| {
            let off = fx.mul_imm(j0, b_col);
            let b0 = fx.add(b, off);
            let b_rows: Vec<Value> = (0..count).map(|col| fx.b.ins().iadd_imm_s(b0, col * b_col)).collect();
            let c0 = fx.mul_imm(j0, 4);
            let c0 = fx.add(c, c0);
            // Rows `[i, i + rows)`: the family's dot products, or Cranelift's row by row.
            let block = |fx: &mut Fx, i: Value, rows: usize| {
                let a_off = fx.mul(i, a_row);
                let a_i = fx.add(a, a_off);
                let c_off = fx.mul_imm(i, n * 4);
                let c_i = fx.add(c0, c_off);
                let (b_stride, ldc) = (fx.iconst(b_col), fx.iconst(n * 4));
                let args = [a_i, a_row, b_rows[0], b_stride, c_i, ldc];
                let op = MicroOp::Dots { k: k as usize, cols: count as usize, rows };
                if let Some(kernels) = family.kernel_for(&op) {
                    return kernels.emit(fx, &op, &MicroArgs::Dots(args));
                }
                for r in 0..rows as i64 {
                    let off = fx.mul_imm(a_row, r);
                    let a_r = fx.add(a_i, off);
                    let sums = dot_rows(fx, a_r, &b_rows, k);
                    for (col, s) in sums.into_iter().enumerate() {
                        fx.store(s, c_i, (r * n * 4 + col as i64 * 4) as i32);
                    }
                }
            };
            // Pairs of rows (each B vector loaded once for both), then the odd one.
            let zero = fx.iconst(0);
            let odd = fx.b.ins().band_imm_u(m, 1);
            let pairs_end = fx.b.ins().isub(m, odd);
            fx.for_range(zero, pairs_end, 2, |fx, i| block(fx, i, 2));
            fx.for_range(pairs_end, m, 1, |fx, i| block(fx, i, 1));
        };
        if n % COLS as i64 == 0 {
            columns(fx, COLS as i64);
        } else {
            let whole = fx.b.ins().icmp_imm_s(IntCC::SignedLessThan, g, whole_groups);
            fx.if_else(whole, |fx| columns(fx, COLS as i64), |fx| columns(fx, n % COLS as i64));
        }
    });
    (fx.begin, fx.end) = (lo, hi);
}

/// The dot products of the K floats at `a` with the K floats at each of `b_rows`.
fn dot_rows(fx: &mut Fx, a: Value, b_rows: &[Value], k: i64) -> Vec<Value> {
    let zero = fx.b.ins().f32const(0.0);
    let zero = fx.b.ins().splat(types::F32X4, zero);
    let acc: Vec<[_; 2]> = b_rows.iter().map(|_| [fx.var(types::F32X4, zero), fx.var(types::F32X4, zero)]).collect();
    let vector_k = k / K_STEP * K_STEP;
    // Loop-carried pointers (addresses derived from loop-invariant values would be
    // recomputed inside the loop by Cranelift's rematerialization).
    let a_ptr = fx.var(PTR, a);
    let b_ptrs: Vec<_> = b_rows.iter().map(|&r| fx.var(PTR, r)).collect();
    let step = |fx: &mut Fx, at: i32| {
        let a_now = fx.get(a_ptr);
        let xs = [fx.load(types::F32X4, a_now, at), fx.load(types::F32X4, a_now, at + 16)];
        for (&b_ptr, acc) in b_ptrs.iter().zip(&acc) {
            let b_now = fx.get(b_ptr);
            for (half, &x) in xs.iter().enumerate() {
                let y = fx.load(types::F32X4, b_now, at + (half * 16) as i32);
                let s = fx.get(acc[half]);
                let s = mul_add(fx, x, y, s);
                fx.set(acc[half], s);
            }
        }
    };
    let advance = |fx: &mut Fx, bytes: i64| {
        for &p in std::iter::once(&a_ptr).chain(&b_ptrs) {
            let now = fx.get(p);
            let next = fx.b.ins().iadd_imm_s(now, bytes);
            fx.set(p, next);
        }
    };
    // Two steps per iteration, then the odd one.
    let steps = vector_k / K_STEP;
    let zero = fx.iconst(0);
    let pairs = fx.iconst(steps / 2);
    fx.for_range(zero, pairs, 1, |fx, _| {
        step(fx, 0);
        step(fx, (K_STEP * 4) as i32);
        advance(fx, 2 * K_STEP * 4);
    });
    if steps % 2 == 1 {
        step(fx, 0);
    }
    b_rows
        .iter()
        .zip(&acc)
        .map(|(&row, acc)| {
            let (s0, s1) = (fx.get(acc[0]), fx.get(acc[1]));
            let s = fx.b.ins().fadd(s0, s1);
            let lane = |fx: &mut Fx, l: u8| fx.b.ins().extractlane(s, l);
            let (l0, l1, l2, l3) = (lane(fx, 0), lane(fx, 1), lane(fx, 2), lane(fx, 3));
            let (p, q) = (fx.b.ins().fadd(l0, l1), fx.b.ins().fadd(l2, l3));
            let mut h = fx.b.ins().fadd(p, q);
            // The last terms from pointers past the vector part: offsets under 32 bytes,
            // whatever K.
            let (a_tail, b_tail) = (fx.b.ins().iadd_imm_s(a, vector_k * 4), fx.b.ins().iadd_imm_s(row, vector_k * 4));
            for t in 0..(k - vector_k) as i32 {
                let x = fx.load(types::F32, a_tail, t * 4);
                let y = fx.load(types::F32, b_tail, t * 4);
                h = mul_add(fx, x, y, h);
            }
            h
        })
        .collect()
}

/// `x·y + acc`: one FMA where the CPU has it (as the tiles), else a product and a sum.
fn mul_add(fx: &mut Fx, x: Value, y: Value, acc: Value) -> Value {
    if fx.fma {
        fx.b.ins().fma(x, y, acc)
    } else {
        let p = fx.b.ins().fmul(x, y);
        fx.b.ins().fadd(acc, p)
    }
}

/// Rows `[fx.begin, fx.end)` of C: the product's epilogue, after the dot products.
pub(crate) fn emit_finish(fx: &mut Fx, mm: &MatMul) {
    let c = fx.slot(mm.c);
    let n = fx.sz(mm.n);
    crate::kernels::epilogue::emit(fx, mm, c, n);
}
