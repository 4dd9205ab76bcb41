//! The portable kernel family: register tiles in Cranelift f32x4 code, emitted inline.
//! It has no micro-kernels of its own: the loop nest runs everything, and its tiles
//! are [`emit_tile`], which every family also uses for the tiles its micro-kernels do
//! not run.

use super::{ARows, GemmShape, KernelFamily, MicroKernels, Step, TileArgs};
use crate::clif::{Fx, PTR};
use crate::program::TileShape;
use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::{types, Endianness, InstBuilder, MemFlagsData, Value};
use cranelift_frontend::Variable;

/// The portable family.
pub(crate) struct CraneliftTiles {
    /// Overrides the heuristic (benchmarks and tests use it).
    pub fixed: Option<TileShape>,
}

/// A portable f32x4 tile in Cranelift IR: per K step, `nv` vector loads of the
/// panel, broadcasts of A, and `mr·nv` fused multiply-adds into accumulators that stay
/// in registers.
///
/// Cranelift's x64 backend only emits the 213/132 FMA forms, whose destination is a
/// multiplicand, never the accumulator: each FMA result lands in a fresh register and
/// the loop back edge moves it back (register copies, cheap but not free). Each A
/// element is therefore broadcast once per use, straight from memory
/// (`vbroadcastss m32`), so the FMA may consume it without an extra copy or shuffle.
/// A whole tile of `tile.mr` rows; it applies no epilogue and copies nothing.
pub(crate) fn emit_tile(fx: &mut Fx, tile: TileShape, args: &TileArgs) {
    let (mr, nv) = (tile.mr, tile.nv);
    let zero = fx.b.ins().f32const(0.0);
    let zero = fx.b.ins().splat(types::F32X4, zero);
    let acc: Vec<Variable> = (0..mr * nv).map(|_| fx.var(types::F32X4, zero)).collect();
    // Loop-carried pointers: the A row pointer(s) and the panel pointer. (Addresses
    // derived from loop-invariant values would be recomputed inside the loop by
    // Cranelift's rematerialization of add-with-immediate.)
    let a_ptrs: Vec<Variable> = match &args.a {
        ARows::Uniform { base, .. } => vec![fx.var(PTR, *base)],
        ARows::Each(rows) => rows.iter().map(|&r| fx.var(PTR, r)).collect(),
    };
    let bp = fx.var(PTR, args.b_panel);
    let fused = fx.fma && tile.fused;

    // One K step `u` of an unrolled group: acc[r][v] += A(r,k) · B(k, 4v..4v+4).
    // The panel loads are ordinary (ordered) loads that stay in registers; the A
    // loads are movable, so Cranelift places each right before its broadcast and
    // fuses the two into `vbroadcastss` from memory.
    let step = |fx: &mut Fx, a: &[Value], bp_v: Value, u: usize| {
        let row = match args.b_step {
            Step::Static(s) => u as i64 * s,
            Step::Dynamic(_) => 0,
        };
        let bvec: Vec<Value> = (0..nv).map(|v| fx.load(types::F32X4, bp_v, (row + v as i64 * 16) as i32)).collect();
        for r in 0..mr {
            let (base, offset) = match (&args.a, args.a_step) {
                (ARows::Uniform { stride, .. }, Step::Static(s)) => (a[0], u as i64 * s + r as i64 * stride),
                (ARows::Uniform { stride, .. }, Step::Dynamic(_)) => (a[0], r as i64 * stride),
                (ARows::Each(_), Step::Static(s)) => (a[r], u as i64 * s),
                (ARows::Each(_), Step::Dynamic(_)) => (a[r], 0),
            };
            for (v, &bv) in bvec.iter().enumerate() {
                // One broadcast per use: a broadcast used once is fused with its
                // load into `vbroadcastss` from memory (no shuffle uop), and the
                // 213-form FMA may then overwrite it instead of a copy. Distinct
                // (equally true) flags keep Cranelift from merging the loads.
                let x = fx.load_flags(types::F32, distinct_flags(v), base, offset as i32);
                let x = fx.b.ins().splat(types::F32X4, x);
                let var = acc[r * nv + v];
                let c = fx.get(var);
                let next = if fused {
                    fx.b.ins().fma(x, bv, c)
                } else {
                    let p = fx.b.ins().fmul(x, bv);
                    fx.b.ins().fadd(c, p)
                };
                fx.set(var, next);
            }
        }
    };

    // `count` K steps, then advance the pointers.
    let steps = |fx: &mut Fx, count: usize| {
        let mut a: Vec<Value> = a_ptrs.iter().map(|&v| fx.get(v)).collect();
        let mut bp_v = fx.get(bp);
        for u in 0..count {
            step(fx, &a, bp_v, u);
            if let Step::Dynamic(s) = args.a_step {
                a = a.iter().map(|&p| fx.add(p, s)).collect();
            }
            if let Step::Dynamic(s) = args.b_step {
                bp_v = fx.add(bp_v, s);
            }
        }
        for (var, p) in a_ptrs.iter().zip(a) {
            let next = match args.a_step {
                Step::Static(s) => fx.b.ins().iadd_imm_s(p, s * count as i64),
                Step::Dynamic(_) => p,
            };
            fx.set(*var, next);
        }
        let next_b = match args.b_step {
            Step::Static(s) => fx.b.ins().iadd_imm_s(bp_v, s * count as i64),
            Step::Dynamic(_) => bp_v,
        };
        fx.set(bp, next_b);
    };
    let unroll = tile.unroll.max(1);
    let k0 = fx.iconst(0);
    let rest = fx.for_whole_steps(k0, args.kb, unroll as i64, |fx, _| steps(fx, unroll));
    if unroll > 1 {
        fx.for_range(rest, args.kb, 1, |fx, _| steps(fx, 1));
    }

    let accumulate = fx.b.ins().icmp_imm_s(IntCC::NotEqual, args.accumulate, 0);
    fx.if_else(accumulate, |fx| store_tile(fx, tile, args, &acc, true), |fx| store_tile(fx, tile, args, &acc, false));
}

/// Writes the accumulators `acc` (row-major, `nv` per row) to C: `C = acc`, or with
/// `add`, `C += acc`; whole vectors, then the lanes of a partial last vector.
fn store_tile(fx: &mut Fx, tile: TileShape, args: &TileArgs, acc: &[Variable], add: bool) {
    let (mr, nv) = (tile.mr, tile.nv);
    let mut row = args.c;
    for r in 0..mr {
        for v in 0..nv {
            let lanes = args.cols.saturating_sub(4 * v).min(4);
            let x = fx.get(acc[r * nv + v]);
            let at = (v * 16) as i32;
            if lanes == 4 {
                let x = if add {
                    let old = fx.load(types::F32X4, row, at);
                    fx.b.ins().fadd(old, x)
                } else {
                    x
                };
                fx.store(x, row, at);
            }
            for lane in 0..if lanes < 4 { lanes } else { 0 } {
                let at = at + 4 * lane as i32;
                let mut y = fx.b.ins().extractlane(x, lane as u8);
                if add {
                    let old = fx.load(types::F32, row, at);
                    y = fx.b.ins().fadd(old, y);
                }
                fx.store(y, row, at);
            }
        }
        if r + 1 < mr {
            row = fx.add(row, args.ldc);
        }
    }
}

impl KernelFamily for CraneliftTiles {
    fn family(&self) -> &'static str {
        "cranelift-f32x4"
    }

    fn vector_width(&self) -> crate::target::VectorWidth {
        crate::target::VectorWidth::V128
    }

    fn tile_shape(&self, shape: &GemmShape) -> TileShape {
        if let Some(t) = self.fixed {
            return t;
        }
        // 4 rows × 2 f32x4 (8 accumulators, K unrolled by 2, fused multiply-add)
        // measured fastest at the seed shapes (`examples/tile_sweep.rs`, see
        // docs/matmul.md): x86 has 16 vector registers, and every FMA result needs
        // a register besides its accumulator (see `emit_tile`). Outputs of at most 4
        // columns take a one-vector panel so the padding does not double the work.
        let nv = match shape.n {
            Some(n) if n <= 4 => 1,
            _ => 2,
        };
        TileShape { mr: 4, nv, kc: 256, unroll: 2, fused: true }
    }

    fn micro_kernels(&self) -> Option<&dyn MicroKernels> {
        None
    }
}

/// Flags of a movable read-only f32 load, different for each `v < 4` so that loads of
/// the same address stay separate instructions. Every variant is true of an f32 load
/// from the A operand: it is naturally aligned and little-endian on every target this
/// JIT supports.
fn distinct_flags(v: usize) -> MemFlagsData {
    let f = crate::clif::mem().with_readonly().with_can_move();
    let f = if v & 1 == 1 { f.with_endianness(Endianness::Little) } else { f };
    if v & 2 == 2 {
        f.with_aligned()
    } else {
        f
    }
}
