//! Convolutions and pooling, direct: every output is the interpreter's sum
//! (`nnc-interp/src/window.rs`) in the interpreter's order, so the bits agree with
//! it and with every thread count (an item is a whole plane; sums over the batch
//! stay inside one item). This is the portable kernel every faster one is checked
//! against.
//!
//! Padding is never read: for an output position the taps inside the input form a
//! range per axis, `[lo, hi)`, computed before the tap loops, so the loops carry no
//! bounds tests and skip exactly the taps the interpreter skips.

use super::copy::zero_floats;
use super::epilogue::{emit_output_run, OutputOperands};
use crate::clif::Fx;
use crate::kernels::elementwise::little;
use crate::program::{WindowKernel, WindowOp};
use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::{types, InstBuilder, Value};
use nnc_ir::{PoolKind, Size};

const F: i64 = 4;

/// Per axis: the taps `[lo, hi)` inside the input and the count inside the padding.
type TapRanges = [(Value, Value, Value); 3];
/// Per axis: the output positions `[lo, hi)` whose tap reads the input.
type OutputRanges = [(Value, Value); 3];

pub(crate) fn items(w: &WindowKernel) -> Size {
    let planes = |per: u64| Size { fixed: w.batch.fixed * per, per_batch: w.batch.per_batch * per };
    match w.op {
        WindowOp::Conv => planes(w.channels_out()),
        WindowOp::ConvFilter => Size::fixed(w.channels_out() * w.cg),
        WindowOp::ConvData | WindowOp::Pool(_) | WindowOp::PoolBackward(_) => planes(w.channels_in()),
    }
}

fn prod(v: &[u64; 3]) -> i64 {
    v.iter().product::<u64>() as i64
}

/// `⌈max(t, 0) / d⌉` for a signed `t` and a positive constant `d`.
fn ceil_div_pos(fx: &mut Fx, t: Value, d: u64) -> Value {
    let zero = fx.iconst(0);
    let t = fx.b.ins().smax(t, zero);
    let t = fx.b.ins().iadd_imm_s(t, d as i64 - 1);
    fx.b.ins().udiv_imm_u(t, d as i64)
}

/// The taps `[lo, hi)` of output `o` on axis `a` that read the input, and (for
/// average pooling's `count_include_pad`) how many lie inside the padded input.
fn tap_range(fx: &mut Fx, w: &WindowKernel, a: usize, o: Value) -> (Value, Value, Value) {
    let start = fx.mul_imm(o, w.strides[a] as i64);
    let pb = fx.iconst(w.pads_begin[a] as i64);
    let before = fx.b.ins().isub(pb, start);
    let lo = ceil_div_pos(fx, before, w.dilations[a]);
    let end = fx.iconst((w.input[a] + w.pads_begin[a]) as i64);
    let room = fx.b.ins().isub(end, start);
    let hi = ceil_div_pos(fx, room, w.dilations[a]);
    let k = fx.iconst(w.kernel[a] as i64);
    let hi = fx.b.ins().umin(hi, k);
    let padded_end = fx.iconst((w.input[a] + w.pads_begin[a] + w.pads_end[a]) as i64);
    let padded_room = fx.b.ins().isub(padded_end, start);
    let counted = ceil_div_pos(fx, padded_room, w.dilations[a]);
    let counted = fx.b.ins().umin(counted, k);
    (lo, hi, counted)
}

/// The input index of tap `k` of output `o` on axis `a` (inside the input).
fn input_index(fx: &mut Fx, w: &WindowKernel, a: usize, o: Value, k: Value) -> Value {
    let start = fx.mul_imm(o, w.strides[a] as i64);
    let tap = fx.mul_imm(k, w.dilations[a] as i64);
    let p = fx.add(start, tap);
    fx.b.ins().iadd_imm_s(p, -(w.pads_begin[a] as i64))
}

/// Row-major flat index of a 3-axis position.
fn flat(fx: &mut Fx, idx: [Value; 3], sizes: &[u64; 3]) -> Value {
    let a = fx.mul_imm(idx[0], sizes[1] as i64);
    let a = fx.add(a, idx[1]);
    let a = fx.mul_imm(a, sizes[2] as i64);
    fx.add(a, idx[2])
}

/// Byte address of element `i` of the f32 array at `base`.
fn at(fx: &mut Fx, base: Value, i: Value) -> Value {
    let off = fx.mul_imm(i, F);
    fx.add(base, off)
}

/// The most taps a window whose taps are all inside the input has unrolled.
const MAX_UNROLLED_TAPS: u64 = 64;

/// Whether every window lies inside the input: no padding is read, so every output
/// has all the taps (`[0, K)` on every axis) at static offsets from its first.
fn interior(w: &WindowKernel) -> bool {
    (0..3).all(|a| {
        let last = (w.output[a].max(1) - 1) * w.strides[a] + (w.kernel[a] - 1) * w.dilations[a];
        w.pads_begin[a] == 0 && last < w.input[a]
    })
}

/// `body(o)` for every output position, in row-major order; `ranges` per axis are
/// computed at that axis's loop level.
fn for_outputs(fx: &mut Fx, w: &WindowKernel, body: &mut dyn FnMut(&mut Fx, [Value; 3], TapRanges)) {
    let inside = interior(w);
    let range = |fx: &mut Fx, a: usize, o: Value| match inside {
        true => {
            let k = fx.iconst(w.kernel[a] as i64);
            (fx.iconst(0), k, k)
        }
        false => tap_range(fx, w, a, o),
    };
    let z = fx.iconst(0);
    let o0_end = fx.iconst(w.output[0] as i64);
    fx.for_range(z, o0_end, 1, |fx, o0| {
        let r0 = range(fx, 0, o0);
        let z = fx.iconst(0);
        let o1_end = fx.iconst(w.output[1] as i64);
        fx.for_range(z, o1_end, 1, |fx, o1| {
            let r1 = range(fx, 1, o1);
            let z = fx.iconst(0);
            let o2_end = fx.iconst(w.output[2] as i64);
            fx.for_range(z, o2_end, 1, |fx, o2| {
                let r2 = range(fx, 2, o2);
                body(fx, [o0, o1, o2], [r0, r1, r2]);
            });
        });
    });
}

/// `body(k, p)` for the taps of output `o` inside the input, in row-major tap order:
/// `k` the flat tap index, `p` the flat input index.
fn for_taps(fx: &mut Fx, w: &WindowKernel, o: [Value; 3], r: TapRanges, body: &mut dyn FnMut(&mut Fx, Value, Value)) {
    // Every tap inside: the taps unrolled, at static offsets from the window's first.
    let taps: u64 = w.kernel.iter().product();
    if interior(w) && taps <= MAX_UNROLLED_TAPS {
        let starts: Vec<Value> = (0..3).map(|a| fx.mul_imm(o[a], w.strides[a] as i64)).collect();
        let first = flat(fx, [starts[0], starts[1], starts[2]], &w.input);
        let (i1, i2) = (w.input[1] as i64, w.input[2] as i64);
        let mut k = 0;
        for k0 in 0..w.kernel[0] as i64 {
            for k1 in 0..w.kernel[1] as i64 {
                for k2 in 0..w.kernel[2] as i64 {
                    let d = &w.dilations;
                    let off = (k0 * d[0] as i64 * i1 + k1 * d[1] as i64) * i2 + k2 * d[2] as i64;
                    let kv = fx.iconst(k);
                    let p = fx.b.ins().iadd_imm_s(first, off);
                    body(fx, kv, p);
                    k += 1;
                }
            }
        }
        return;
    }
    // The flat indices move by one tap (and `dilation` input positions) along the
    // last axis: computed once per row of taps, stepped in the innermost loop.
    let start2 = fx.mul_imm(o[2], w.strides[2] as i64);
    let start2 = fx.b.ins().iadd_imm_s(start2, -(w.pads_begin[2] as i64));
    fx.for_range(r[0].0, r[0].1, 1, |fx, k0| {
        let p0 = input_index(fx, w, 0, o[0], k0);
        fx.for_range(r[1].0, r[1].1, 1, |fx, k1| {
            let p1 = input_index(fx, w, 1, o[1], k1);
            let zero = fx.iconst(0);
            let k_row = flat(fx, [k0, k1, zero], &w.kernel);
            let p_row = flat(fx, [p0, p1, start2], &w.input);
            fx.for_range(r[2].0, r[2].1, 1, |fx, k2| {
                let k = fx.add(k_row, k2);
                let step = fx.mul_imm(k2, w.dilations[2] as i64);
                let p = fx.add(p_row, step);
                body(fx, k, p);
            });
        });
    });
}

/// The number of taps `[lo, hi)` spans on all axes, or the counted ones, as f32.
fn divisor(fx: &mut Fx, kind: PoolKind, r: TapRanges) -> Value {
    let mut n = fx.iconst(1);
    for (lo, hi, counted) in r {
        let len = match kind {
            PoolKind::Avg { count_include_pad: true } => counted,
            _ => fx.b.ins().isub(hi, lo),
        };
        n = fx.mul(n, len);
    }
    fx.b.ins().fcvt_from_uint(types::F32, n)
}

/// `a cc b ? x : y` for f32 values without a branch: Cranelift lowers a select of
/// floats on a float comparison to a jump, which max pooling's data-dependent
/// comparisons mispredict half the time; on the values' bits it is a `cmov`.
fn select_f32(fx: &mut Fx, cc: FloatCC, (a, b): (Value, Value), (x, y): (Value, Value)) -> Value {
    let cond = fx.b.ins().fcmp(cc, a, b);
    let cond = fx.b.ins().uextend(types::I64, cond);
    select_bits(fx, cond, x, y)
}

/// `cond != 0 ? x : y` for f32 values, on their bits.
fn select_bits(fx: &mut Fx, cond: Value, x: Value, y: Value) -> Value {
    let flags = cranelift_codegen::ir::MemFlagsData::new();
    let (xi, yi) = (fx.b.ins().bitcast(types::I32, flags, x), fx.b.ins().bitcast(types::I32, flags, y));
    let bits = fx.b.ins().select(cond, xi, yi);
    fx.b.ins().bitcast(types::F32, flags, bits)
}

/// `plane[p] += v`.
fn accumulate(fx: &mut Fx, plane: Value, p: Value, v: Value) {
    let a = at(fx, plane, p);
    let old = fx.load(types::F32, a, 0);
    let new = fx.b.ins().fadd(old, v);
    fx.store(new, a, 0);
}

pub(crate) fn emit(fx: &mut Fx, w: &WindowKernel) {
    if w.by_rows {
        return emit_conv_rows(fx, w);
    }
    let (is, os, ks) = (prod(&w.input), prod(&w.output), prod(&w.kernel));
    let (c_in, c_out) = (w.channels_in() as i64, w.channels_out() as i64);
    let args: Vec<Value> = w.args.iter().map(|&s| fx.slot(s)).collect();
    let out = fx.slot(w.out);
    let epilogue = w.epilogue.as_ref().map(|e| (e, OutputOperands::new(fx, e, out)));
    let (begin, end) = (fx.begin, fx.end);
    fx.for_range(begin, end, 1, |fx, item| match w.op {
        WindowOp::Conv => {
            // Item (n, m): y[n, m, o] = Σ_c Σ_k w[m, c, k]·x[n, g·cg + c, p].
            let (x, wt) = (args[0], args[1]);
            let n = fx.b.ins().udiv_imm_u(item, c_out);
            let m = fx.b.ins().urem_imm_u(item, c_out);
            let g = fx.b.ins().udiv_imm_u(m, w.mg as i64);
            let first = fx.mul_imm(g, w.cg as i64);
            let row = fx.mul_imm(n, c_in);
            let first = fx.add(row, first);
            let y_plane = fx.mul_imm(item, os);
            let y_plane = at(fx, out, y_plane);
            let w_rows = fx.mul_imm(m, w.cg as i64);
            for_outputs(fx, w, &mut |fx, o, r| {
                let zero = fx.b.ins().f32const(0.0);
                let acc = fx.var(types::F32, zero);
                let z = fx.iconst(0);
                let cg = fx.iconst(w.cg as i64);
                fx.for_range(z, cg, 1, |fx, c| {
                    let xc = fx.add(first, c);
                    let xc = fx.mul_imm(xc, is);
                    let x_plane = at(fx, x, xc);
                    let wc = fx.add(w_rows, c);
                    let wc = fx.mul_imm(wc, ks);
                    let w_plane = at(fx, wt, wc);
                    for_taps(fx, w, o, r, &mut |fx, k, p| {
                        let wa = at(fx, w_plane, k);
                        let wv = fx.load(types::F32, wa, 0);
                        let xa = at(fx, x_plane, p);
                        let xv = fx.load(types::F32, xa, 0);
                        let prod = fx.b.ins().fmul(wv, xv);
                        let a = fx.get(acc);
                        let a = fx.b.ins().fadd(a, prod);
                        fx.set(acc, a);
                    });
                });
                let oi = flat(fx, o, &w.output);
                let ya = at(fx, y_plane, oi);
                let a = fx.get(acc);
                fx.store(a, ya, 0);
            });
            if let Some((e, operands)) = &epilogue {
                let bias = operands.channel(fx, m);
                let len = fx.iconst(os);
                emit_output_run(fx, e, (y_plane, y_plane), len, bias, operands.residual);
            }
        }
        WindowOp::ConvData => {
            // Item (n, c): dx[n, c, p] += w[m, c', k]·dy[n, m, o] over m, o, k.
            let (dy, wt) = (args[0], args[1]);
            let n = fx.b.ins().udiv_imm_u(item, c_in);
            let c = fx.b.ins().urem_imm_u(item, c_in);
            let g = fx.b.ins().udiv_imm_u(c, w.cg as i64);
            let ci = fx.b.ins().urem_imm_u(c, w.cg as i64);
            let dx_plane = fx.mul_imm(item, is);
            let dx_plane = at(fx, out, dx_plane);
            zero_floats(fx, dx_plane, is);
            let m0 = fx.mul_imm(g, w.mg as i64);
            let m1 = fx.b.ins().iadd_imm_s(m0, w.mg as i64);
            fx.for_range(m0, m1, 1, |fx, m| {
                let row = fx.mul_imm(n, c_out);
                let dy_plane = fx.add(row, m);
                let dy_plane = fx.mul_imm(dy_plane, os);
                let dy_plane = at(fx, dy, dy_plane);
                let wc = fx.mul_imm(m, w.cg as i64);
                let wc = fx.add(wc, ci);
                let wc = fx.mul_imm(wc, ks);
                let w_plane = at(fx, wt, wc);
                for_outputs(fx, w, &mut |fx, o, r| {
                    let oi = flat(fx, o, &w.output);
                    let ga = at(fx, dy_plane, oi);
                    let gy = fx.load(types::F32, ga, 0);
                    for_taps(fx, w, o, r, &mut |fx, k, p| {
                        let wa = at(fx, w_plane, k);
                        let wv = fx.load(types::F32, wa, 0);
                        let v = fx.b.ins().fmul(wv, gy);
                        accumulate(fx, dx_plane, p, v);
                    });
                });
            });
        }
        WindowOp::ConvFilter => {
            // Item (m, c): dw[m, c, k] = Σ_n Σ_o x[n, g·cg + c, p]·dy[n, m, o].
            let (x, dy) = (args[0], args[1]);
            let m = fx.b.ins().udiv_imm_u(item, w.cg as i64);
            let ci = fx.b.ins().urem_imm_u(item, w.cg as i64);
            let g = fx.b.ins().udiv_imm_u(m, w.mg as i64);
            let xc = fx.mul_imm(g, w.cg as i64);
            let xc = fx.add(xc, ci);
            let dw_plane = fx.mul_imm(item, ks);
            let dw_plane = at(fx, out, dw_plane);
            let batch = fx.sz(w.batch);
            for_kernel(fx, w, &mut |fx, k, ranges| {
                let zero = fx.b.ins().f32const(0.0);
                let acc = fx.var(types::F32, zero);
                let z = fx.iconst(0);
                fx.for_range(z, batch, 1, |fx, b| {
                    let row = fx.mul_imm(b, c_in);
                    let x_plane = fx.add(row, xc);
                    let x_plane = fx.mul_imm(x_plane, is);
                    let x_plane = at(fx, x, x_plane);
                    let row = fx.mul_imm(b, c_out);
                    let dy_plane = fx.add(row, m);
                    let dy_plane = fx.mul_imm(dy_plane, os);
                    let dy_plane = at(fx, dy, dy_plane);
                    let tap2 = fx.mul_imm(k[2], w.dilations[2] as i64);
                    let tap2 = fx.b.ins().iadd_imm_s(tap2, -(w.pads_begin[2] as i64));
                    fx.for_range(ranges[0].0, ranges[0].1, 1, |fx, o0| {
                        let p0 = input_index(fx, w, 0, o0, k[0]);
                        fx.for_range(ranges[1].0, ranges[1].1, 1, |fx, o1| {
                            let p1 = input_index(fx, w, 1, o1, k[1]);
                            let zero = fx.iconst(0);
                            let o_row = flat(fx, [o0, o1, zero], &w.output);
                            let p_row = flat(fx, [p0, p1, tap2], &w.input);
                            fx.for_range(ranges[2].0, ranges[2].1, 1, |fx, o2| {
                                let step = fx.mul_imm(o2, w.strides[2] as i64);
                                let p = fx.add(p_row, step);
                                let xa = at(fx, x_plane, p);
                                let xv = fx.load(types::F32, xa, 0);
                                let oi = fx.add(o_row, o2);
                                let ga = at(fx, dy_plane, oi);
                                let gv = fx.load(types::F32, ga, 0);
                                let prod = fx.b.ins().fmul(xv, gv);
                                let a = fx.get(acc);
                                let a = fx.b.ins().fadd(a, prod);
                                fx.set(acc, a);
                            });
                        });
                    });
                });
                let ki = flat(fx, k, &w.kernel);
                let da = at(fx, dw_plane, ki);
                let a = fx.get(acc);
                fx.store(a, da, 0);
            });
        }
        WindowOp::Pool(kind) => {
            let x_plane = fx.mul_imm(item, is);
            let x_plane = at(fx, args[0], x_plane);
            let y_plane = fx.mul_imm(item, os);
            let y_plane = at(fx, out, y_plane);
            for_outputs(fx, w, &mut |fx, o, r| {
                let init = match kind {
                    PoolKind::Max => fx.b.ins().f32const(f32::NEG_INFINITY),
                    PoolKind::Avg { .. } => fx.b.ins().f32const(0.0),
                };
                let acc = fx.var(types::F32, init);
                for_taps(fx, w, o, r, &mut |fx, _, p| {
                    let xa = at(fx, x_plane, p);
                    let v = fx.load(types::F32, xa, 0);
                    let a = fx.get(acc);
                    let a = match kind {
                        // Only a larger value replaces the best (NaN never does).
                        PoolKind::Max => select_f32(fx, FloatCC::GreaterThan, (v, a), (v, a)),
                        PoolKind::Avg { .. } => fx.b.ins().fadd(a, v),
                    };
                    fx.set(acc, a);
                });
                let mut y = fx.get(acc);
                if let PoolKind::Avg { .. } = kind {
                    let d = divisor(fx, kind, r);
                    y = fx.b.ins().fdiv(y, d);
                }
                let oi = flat(fx, o, &w.output);
                let ya = at(fx, y_plane, oi);
                fx.store(y, ya, 0);
            });
        }
        WindowOp::PoolBackward(kind) => {
            let dy = *args.last().unwrap_or(&out);
            let dy_plane = fx.mul_imm(item, os);
            let dy_plane = at(fx, dy, dy_plane);
            let dx_plane = fx.mul_imm(item, is);
            let dx_plane = at(fx, out, dx_plane);
            zero_floats(fx, dx_plane, is);
            let x_plane = match kind {
                PoolKind::Max => {
                    let xp = fx.mul_imm(item, is);
                    Some(at(fx, args[0], xp))
                }
                PoolKind::Avg { .. } => None,
            };
            for_outputs(fx, w, &mut |fx, o, r| {
                let oi = flat(fx, o, &w.output);
                let ga = at(fx, dy_plane, oi);
                let gy = fx.load(types::F32, ga, 0);
                match x_plane {
                    // The first tap, then only a larger value, is the window's maximum.
                    Some(xp) => {
                        let neg_inf = fx.b.ins().f32const(f32::NEG_INFINITY);
                        let best_v = fx.var(types::F32, neg_inf);
                        let none = fx.iconst(-1);
                        let best_p = fx.var(types::I64, none);
                        for_taps(fx, w, o, r, &mut |fx, _, p| {
                            let xa = at(fx, xp, p);
                            let v = fx.load(types::F32, xa, 0);
                            let (bv, bp) = (fx.get(best_v), fx.get(best_p));
                            let larger = fx.b.ins().fcmp(FloatCC::GreaterThan, v, bv);
                            let zero = fx.iconst(0);
                            let first = fx.b.ins().icmp(IntCC::SignedLessThan, bp, zero);
                            let take = fx.b.ins().bor(larger, first);
                            let take = fx.b.ins().uextend(types::I64, take);
                            let nv = select_bits(fx, take, v, bv);
                            let np = fx.b.ins().select(take, p, bp);
                            fx.set(best_v, nv);
                            fx.set(best_p, np);
                        });
                        let bp = fx.get(best_p);
                        let zero = fx.iconst(0);
                        let found = fx.b.ins().icmp(IntCC::SignedGreaterThanOrEqual, bp, zero);
                        fx.if_then(found, |fx| accumulate(fx, dx_plane, bp, gy));
                    }
                    None => {
                        let d = divisor(fx, kind, r);
                        let share = fx.b.ins().fdiv(gy, d);
                        for_taps(fx, w, o, r, &mut |fx, _, p| accumulate(fx, dx_plane, p, share));
                    }
                }
            });
        }
    });
}

/// `body(k, ranges)` for every tap `k` of the kernel in row-major order, with the
/// output positions `[lo, hi)` per axis whose tap `k` reads the input.
fn for_kernel(fx: &mut Fx, w: &WindowKernel, body: &mut dyn FnMut(&mut Fx, [Value; 3], OutputRanges)) {
    // Output o reads the input at tap k when 0 ≤ o·s − pb + k·d < input.
    let range = |fx: &mut Fx, a: usize, k: Value| {
        let tap = fx.mul_imm(k, w.dilations[a] as i64);
        let pb = fx.iconst(w.pads_begin[a] as i64);
        let before = fx.b.ins().isub(pb, tap);
        let lo = ceil_div_pos(fx, before, w.strides[a]);
        let end = fx.iconst((w.input[a] + w.pads_begin[a]) as i64);
        let room = fx.b.ins().isub(end, tap);
        let hi = ceil_div_pos(fx, room, w.strides[a]);
        let out = fx.iconst(w.output[a] as i64);
        (lo, fx.b.ins().umin(hi, out))
    };
    let z = fx.iconst(0);
    let k0_end = fx.iconst(w.kernel[0] as i64);
    fx.for_range(z, k0_end, 1, |fx, k0| {
        let r0 = range(fx, 0, k0);
        let z = fx.iconst(0);
        let k1_end = fx.iconst(w.kernel[1] as i64);
        fx.for_range(z, k1_end, 1, |fx, k1| {
            let r1 = range(fx, 1, k1);
            let z = fx.iconst(0);
            let k2_end = fx.iconst(w.kernel[2] as i64);
            fx.for_range(z, k2_end, 1, |fx, k2| {
                let r2 = range(fx, 2, k2);
                body(fx, [k0, k1, k2], [r0, r1, r2]);
            });
        });
    });
}

/// A convolution or pooling along output rows (`WindowKernel::by_rows`), item `(n,
/// m)`: four consecutive positions of a row per vector, `y = Σ_c Σ_k w[m, c, k]·x[...]`
/// (or the taps' maximum, or their sum over the one divisor) in the interpreter's order
/// with its roundings (a multiply, then an add), read from the padded planes, whose
/// padding changes nothing: `acc + w·0 = acc` for a sum that starts at +0, and -inf
/// never replaces a maximum. A strided row is computed at every input column its
/// windows start at, into the stack, and every stride-th kept.
fn emit_conv_rows(fx: &mut Fx, w: &WindowKernel) {
    let pd: [u64; 3] = match w.padded {
        Some(_) => std::array::from_fn(|a| w.input[a] + w.pads_begin[a] + w.pads_end[a]),
        None => w.input,
    };
    let (plane, os) = (prod(&pd), prod(&w.output));
    let (c_in, c_out, taps) = (w.channels_in() as i64, w.channels_out() as i64, prod(&w.kernel));
    let (o1s, o2s) = (w.output[1] as i64, w.output[2] as i64);
    // Positions per row computed: the output's, or every one a strided window starts at.
    let full = (o2s - 1) * w.strides[2] as i64 + 1;
    let staged = (w.strides[2] > 1).then(|| fx.stack_buffer((full * F) as u32));
    let x_base = fx.slot(w.padded.unwrap_or(w.args[0]));
    let pool = match w.op {
        WindowOp::Pool(kind) => Some(kind),
        _ => None,
    };
    let wt = pool.is_none().then(|| fx.slot(w.args[1]));
    let out = fx.slot(w.out);
    let epilogue = w.epilogue.as_ref().map(|e| (e, OutputOperands::new(fx, e, out)));
    let (begin, end) = (fx.begin, fx.end);
    fx.for_range(begin, end, 1, |fx, item| {
        let n = fx.b.ins().udiv_imm_u(item, c_out);
        let m = fx.b.ins().urem_imm_u(item, c_out);
        let g = fx.b.ins().udiv_imm_u(m, w.mg as i64);
        let x_planes = super::conv::group_planes(fx, x_base, (n, g), (c_in, w.cg as i64), plane);
        let w_row = wt.map(|wt| {
            let row = fx.mul_imm(m, w.cg as i64 * taps * F);
            fx.add(wt, row)
        });
        let y_plane = fx.mul_imm(item, os * F);
        let y_plane = fx.add(out, y_plane);
        let z = fx.iconst(0);
        let rows = fx.iconst(w.output[0] as i64 * o1s);
        fx.for_range(z, rows, 1, |fx, row| {
            let o0 = fx.b.ins().udiv_imm_u(row, o1s);
            let o1 = fx.b.ins().urem_imm_u(row, o1s);
            let r0 = fx.mul_imm(o0, (w.strides[0] * pd[1]) as i64);
            let r1 = fx.mul_imm(o1, w.strides[1] as i64);
            let in_row = fx.add(r0, r1);
            let in_row = fx.mul_imm(in_row, pd[2] as i64 * F);
            let in_row = fx.add(x_planes, in_row);
            let y_row = fx.mul_imm(row, o2s * F);
            let y_row = fx.add(y_plane, y_row);
            let dst = staged.unwrap_or(y_row);
            // Positions `[j, j + lanes)` of the row.
            let sum = |fx: &mut Fx, j: Value, ty: types::Type| {
                let init = if pool == Some(PoolKind::Max) { f32::NEG_INFINITY } else { 0.0 };
                let init = fx.b.ins().f32const(init);
                let init = if ty == types::F32 { init } else { fx.b.ins().splat(ty, init) };
                let acc = fx.var(ty, init);
                let jb = fx.mul_imm(j, F);
                let x_at = fx.add(in_row, jb);
                let z = fx.iconst(0);
                let cg = fx.iconst(w.cg as i64);
                fx.for_range(z, cg, 1, |fx, c| {
                    let xc = fx.mul_imm(c, plane * F);
                    let xc = fx.add(x_at, xc);
                    let wc = w_row.map(|w_row| {
                        let at = fx.mul_imm(c, taps * F);
                        fx.add(w_row, at)
                    });
                    let mut t = 0;
                    for k0 in 0..w.kernel[0] {
                        for k1 in 0..w.kernel[1] {
                            for k2 in 0..w.kernel[2] {
                                let d = &w.dilations;
                                let off = ((k0 * d[0] * pd[1] + k1 * d[1]) * pd[2] + k2 * d[2]) as i64 * F;
                                let xv = fx.load(ty, xc, off as i32);
                                let a = fx.get(acc);
                                let a = match (pool, wc) {
                                    (None, Some(wc)) => {
                                        let wv = fx.load(types::F32, wc, (t * F) as i32);
                                        let wv = if ty == types::F32 { wv } else { fx.b.ins().splat(ty, wv) };
                                        let p = fx.b.ins().fmul(wv, xv);
                                        fx.b.ins().fadd(a, p)
                                    }
                                    (None, None) => {
                                        fx.fail("a convolution by rows without its weights");
                                        a
                                    }
                                    (Some(PoolKind::Avg { .. }), _) => fx.b.ins().fadd(a, xv),
                                    // Only a larger value replaces the best (NaN never does).
                                    (Some(PoolKind::Max), _) if ty == types::F32 => {
                                        select_f32(fx, FloatCC::GreaterThan, (xv, a), (xv, a))
                                    }
                                    (Some(PoolKind::Max), _) => {
                                        let larger = fx.b.ins().fcmp(FloatCC::GreaterThan, xv, a);
                                        let mask = fx.b.ins().bitcast(ty, little(), larger);
                                        fx.b.ins().bitselect(mask, xv, a)
                                    }
                                };
                                fx.set(acc, a);
                                t += 1;
                            }
                        }
                    }
                });
                let mut a = fx.get(acc);
                if let Some(PoolKind::Avg { .. }) = pool {
                    // Every window has all its taps counted (see `lower/conv.rs`).
                    let d = fx.b.ins().f32const(taps as f32);
                    let d = if ty == types::F32 { d } else { fx.b.ins().splat(ty, d) };
                    a = fx.b.ins().fdiv(a, d);
                }
                let at = fx.add(dst, jb);
                fx.store(a, at, 0);
            };
            let z = fx.iconst(0);
            let full_v = fx.iconst(full);
            let rest = fx.for_whole_steps(z, full_v, 4, |fx, j| sum(fx, j, types::F32X4));
            fx.for_range(rest, full_v, 1, |fx, j| sum(fx, j, types::F32));
            if let Some(buf) = staged {
                for o2 in 0..o2s {
                    let v = fx.load(types::F32, buf, (o2 * w.strides[2] as i64 * F) as i32);
                    fx.store(v, y_row, (o2 * F) as i32);
                }
            }
            if let Some((e, operands)) = &epilogue {
                let bias = operands.channel(fx, m);
                let len = fx.iconst(o2s);
                emit_output_run(fx, e, (y_row, y_row), len, bias, operands.residual);
            }
        });
    });
}
