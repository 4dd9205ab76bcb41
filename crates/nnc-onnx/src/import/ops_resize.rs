//! Pad, Resize and Upsample, from primitives nnc already has, so they train and
//! compile with no kernel of their own:
//!
//! - **Pad** (static pads; `constant`, `edge`, `reflect`, `wrap`) axis by axis, each a
//!   concatenation of the blocks added around the data: a broadcast constant, a
//!   broadcast edge slice, single-row slices in reflected order, or the other end's
//!   slice. Negative pads crop with a slice. Padding is separable, so this is ONNX's
//!   all-axes-at-once result.
//! - **Resize** and **Upsample** (static scales or sizes; `nearest`, `linear`,
//!   `cubic`) axis by axis, each a product with a constant `[out, in]` interpolation
//!   matrix holding ONNX's weights for that axis (its coordinate transformation,
//!   nearest rounding, cubic coefficient and `exclude_outside`), the axis moved last
//!   for the product. Nearest resizing by a whole factor (every output row picks
//!   input row `o / factor`) is a broadcast instead, which copies exactly.
//!
//! Opset changes: Pad took `pads` and `value` as attributes before 11 and `axes` from
//! 18; Resize took only `scales` at 10, gained `roi`, `sizes` and the modes at 11,
//! `antialias`, `axes` and `keep_aspect_ratio_policy` at 18; Upsample (7, 9) is
//! Resize with `asymmetric` coordinates and `floor` rounding.

use super::{Ctx, Importer};
use crate::OnnxError;
use nnc_ir::{Dim, Op, Shape, Tensor, ValueId};

impl Importer {
    /// Defines the node's output as `y`, computed from its input `x`: the last value
    /// made takes the output's name; an unchanged input gets an identity.
    fn name_result(&mut self, ctx: &Ctx, x: ValueId, y: ValueId) -> Result<(), OnnxError> {
        let out = ctx.out()?;
        let y = match y == x {
            true => self.emit(ctx, out, Op::Unary(nnc_ir::UnaryOp::Identity), &[x])?,
            false => {
                self.g.rename(y, out).map_err(|e| ctx.err(e.to_string()))?;
                y
            }
        };
        self.define_ir(out, y);
        Ok(())
    }

    pub(super) fn pad(&mut self, ctx: &Ctx) -> Result<(), OnnxError> {
        let (data, out) = (ctx.req_input(0)?, ctx.out()?);
        let attrs = ctx.attrs();
        let mode = ctx.attr(attrs.string("mode"))?.unwrap_or_else(|| "constant".into());
        let x = self.ir(ctx, data)?;
        let ty = self.g.ty(x).clone();
        let rank = ty.rank();
        let (pads, value, axes) = if ctx.opset < 11 {
            let pads = ctx.attr(attrs.ints("pads"))?.ok_or_else(|| ctx.err("attribute pads is missing"))?;
            (pads, ctx.attr(attrs.float("value", 0.0))? as f64, None)
        } else {
            let pads = self.static_ints(ctx, ctx.req_input(1)?, "the pads input")?;
            let value = match ctx.input(2) {
                Some(n) => self.static_scalar(ctx, n, "the constant_value input")?,
                None => 0.0,
            };
            let axes = match ctx.input(3) {
                Some(n) => Some(self.static_ints(ctx, n, "the axes input")?),
                None => None,
            };
            (pads, value, axes)
        };
        let axes: Vec<usize> = match axes {
            Some(a) => a.iter().map(|&v| super::norm_axis(v, rank)).collect::<Result<_, _>>(),
            None => Ok((0..rank).collect()),
        }
        .map_err(|m| ctx.err(m))?;
        if pads.len() != 2 * axes.len() {
            return Err(ctx.err(format!("{} pads for {} axes (two per axis)", pads.len(), axes.len())));
        }
        let mut y = x;
        for (i, &axis) in axes.iter().enumerate() {
            let (b, e) = (pads[i], pads[i + axes.len()]);
            if b == 0 && e == 0 {
                continue;
            }
            let Some(len) = self.g.ty(y).shape.0[axis].fixed() else {
                return Err(ctx.err(format!("padding the batch axis {axis} is not supported")));
            };
            // Negative pads crop.
            let (cut_b, cut_e) = ((-b).max(0) as usize, (-e).max(0) as usize);
            if cut_b + cut_e >= len {
                return Err(
                    ctx.err(format!("pads {b}, {e} leave nothing of axis {axis}: zero-size tensors are not supported"))
                );
            }
            if cut_b + cut_e > 0 {
                y = self.emit_tmp(
                    ctx,
                    out,
                    &format!("crop{axis}"),
                    Op::Slice { axis, start: cut_b, end: len - cut_e },
                    &[y],
                )?;
            }
            let len = len - cut_b - cut_e;
            let (pb, pe) = (b.max(0) as usize, e.max(0) as usize);
            if pb + pe == 0 {
                continue;
            }
            let mut parts = Vec::new();
            let mut sizes = Vec::new();
            if pb > 0 {
                parts.push(self.pad_block(ctx, (y, axis, len), &mode, value, (pb, true))?);
                sizes.push(pb);
            }
            parts.push(y);
            sizes.push(len);
            if pe > 0 {
                parts.push(self.pad_block(ctx, (y, axis, len), &mode, value, (pe, false))?);
                sizes.push(pe);
            }
            y = self.emit_tmp(ctx, out, &format!("pad{axis}"), Op::Concat { axis, sizes }, &parts)?;
        }
        self.name_result(ctx, x, y)
    }

    /// The `n` rows added before (`begin`) or after `y`'s `len` rows along `axis`.
    fn pad_block(
        &mut self,
        ctx: &Ctx,
        (y, axis, len): (ValueId, usize, usize),
        mode: &str,
        value: f64,
        (n, begin): (usize, bool),
    ) -> Result<ValueId, OnnxError> {
        let out = ctx.out()?;
        let ty = self.g.ty(y).clone();
        let mut dims = ty.shape.0.clone();
        dims[axis] = Dim::Fixed(n);
        let block = Shape(dims);
        let side = if begin { "before" } else { "after" };
        let slice = |imp: &mut Self, start: usize, end: usize| {
            imp.emit_tmp(ctx, out, &format!("{side}{axis}_{start}"), Op::Slice { axis, start, end }, &[y])
        };
        match mode {
            "constant" => {
                let c = match ty.dtype {
                    nnc_ir::DType::F32 => Tensor::scalar_f32(value as f32),
                    nnc_ir::DType::I64 => Tensor::scalar_i64(value as i64),
                    nnc_ir::DType::I32 => Tensor::I32(ndarray::arr0(value as i32).into_dyn()),
                    d => return Err(ctx.err(format!("constant padding of {d} is not supported"))),
                };
                let c = self.emit_const(ctx, out, "pad_value", c)?;
                self.emit_tmp(ctx, out, &format!("{side}{axis}"), Op::Broadcast { shape: block }, &[c])
            }
            "edge" => {
                let at = if begin { 0 } else { len - 1 };
                let row = slice(self, at, at + 1)?;
                self.emit_tmp(ctx, out, &format!("{side}{axis}"), Op::Broadcast { shape: block }, &[row])
            }
            "reflect" => {
                if n >= len {
                    return Err(ctx.err(format!("a reflected pad of {n} needs more than {len} rows on axis {axis}")));
                }
                // Rows n, n−1, …, 1 before; len−2, len−3, …, len−1−n after.
                let rows: Vec<usize> = match begin {
                    true => (1..=n).rev().collect(),
                    false => (0..n).map(|k| len - 2 - k).collect(),
                };
                let parts = rows.iter().map(|&r| slice(self, r, r + 1)).collect::<Result<Vec<_>, _>>()?;
                match parts[..] {
                    [one] => Ok(one),
                    _ => self.emit_tmp(
                        ctx,
                        out,
                        &format!("{side}{axis}"),
                        Op::Concat { axis, sizes: vec![1; n] },
                        &parts,
                    ),
                }
            }
            "wrap" => {
                if n > len {
                    return Err(ctx.err(format!("a wrapped pad of {n} needs at least {n} rows on axis {axis}")));
                }
                match begin {
                    true => slice(self, len - n, len),
                    false => slice(self, 0, n),
                }
            }
            m => Err(ctx.err(format!("mode \"{m}\" is not constant, edge, reflect or wrap"))),
        }
    }

    /// Integers known at import that do not depend on the batch.
    fn static_ints(&mut self, ctx: &Ctx, name: &str, what: &str) -> Result<Vec<i64>, OnnxError> {
        self.need_known(ctx, name, what)?.ints().ok_or_else(|| {
            ctx.err(format!("{what} (\"{name}\") must hold integers that do not depend on the batch size"))
        })
    }

    /// Floats known at import (a float or integer tensor).
    fn static_floats(&mut self, ctx: &Ctx, name: &str, what: &str) -> Result<Vec<f64>, OnnxError> {
        let known = self.need_known(ctx, name, what)?;
        match known.tensor() {
            Some(Tensor::F32(a)) => Ok(a.iter().map(|&v| v as f64).collect()),
            Some(t) => t
                .to_i64_vec()
                .map(|v| v.iter().map(|&x| x as f64).collect())
                .ok_or_else(|| ctx.err(format!("{what} (\"{name}\") must hold numbers"))),
            None => Err(ctx.err(format!("{what} (\"{name}\") must not depend on the batch size"))),
        }
    }

    fn static_scalar(&mut self, ctx: &Ctx, name: &str, what: &str) -> Result<f64, OnnxError> {
        match self.static_floats(ctx, name, what)?[..] {
            [v] => Ok(v),
            _ => Err(ctx.err(format!("{what} (\"{name}\") must hold one value"))),
        }
    }

    pub(super) fn upsample(&mut self, ctx: &Ctx) -> Result<(), OnnxError> {
        let attrs = ctx.attrs();
        let mode = ctx.attr(attrs.string("mode"))?.unwrap_or_else(|| "nearest".into());
        let scales = match ctx.opset {
            ..9 => ctx
                .attr(attrs.floats("scales"))?
                .ok_or_else(|| ctx.err("attribute scales is missing"))?
                .iter()
                .map(|&s| s as f64)
                .collect(),
            _ => self.static_floats(ctx, ctx.req_input(1)?, "the scales input")?,
        };
        let mode = match mode.as_str() {
            "nearest" => Interp::Nearest(Nearest::Floor),
            "linear" | "bilinear" => Interp::Linear,
            m => return Err(ctx.err(format!("mode \"{m}\" is not nearest or linear"))),
        };
        let spec = ResizeSpec { mode, coords: Coords::Asymmetric, cubic_a: -0.75, exclude_outside: false };
        self.resize_by(ctx, Target::Scales(scales), &spec, None, None)
    }

    pub(super) fn resize(&mut self, ctx: &Ctx) -> Result<(), OnnxError> {
        let attrs = ctx.attrs();
        let mode_name = ctx.attr(attrs.string("mode"))?.unwrap_or_else(|| "nearest".into());
        let coords = match ctx.opset {
            ..11 => Coords::Asymmetric,
            _ => match ctx.attr(attrs.string("coordinate_transformation_mode"))?.as_deref().unwrap_or("half_pixel") {
                "half_pixel" => Coords::HalfPixel,
                "half_pixel_symmetric" => Coords::HalfPixelSymmetric,
                "pytorch_half_pixel" => Coords::PytorchHalfPixel,
                "align_corners" => Coords::AlignCorners,
                "asymmetric" => Coords::Asymmetric,
                "tf_half_pixel_for_nn" => Coords::TfHalfPixelForNn,
                m => return Err(ctx.err(format!("coordinate_transformation_mode \"{m}\" is not supported"))),
            },
        };
        let nearest = match ctx.opset {
            ..11 => Nearest::Floor,
            _ => match ctx.attr(attrs.string("nearest_mode"))?.as_deref().unwrap_or("round_prefer_floor") {
                "round_prefer_floor" => Nearest::RoundPreferFloor,
                "round_prefer_ceil" => Nearest::RoundPreferCeil,
                "floor" => Nearest::Floor,
                "ceil" => Nearest::Ceil,
                m => return Err(ctx.err(format!("nearest_mode \"{m}\" is not supported"))),
            },
        };
        let mode = match mode_name.as_str() {
            "nearest" => Interp::Nearest(nearest),
            "linear" => Interp::Linear,
            "cubic" => Interp::Cubic,
            m => return Err(ctx.err(format!("mode \"{m}\" is not nearest, linear or cubic"))),
        };
        if ctx.attr(attrs.int("antialias", 0))? != 0 {
            return Err(ctx.err("antialias is not supported"));
        }
        // With sizes, one scale for every axis: the smallest or the largest ratio.
        let keep = match ctx.attr(attrs.string("keep_aspect_ratio_policy"))?.as_deref().unwrap_or("stretch") {
            "stretch" => None,
            "not_larger" => Some(false),
            "not_smaller" => Some(true),
            p => {
                return Err(
                    ctx.err(format!("keep_aspect_ratio_policy \"{p}\" is not stretch, not_larger or not_smaller"))
                )
            }
        };
        let spec = ResizeSpec {
            mode,
            coords,
            cubic_a: ctx.attr(attrs.float("cubic_coeff_a", -0.75))? as f64,
            exclude_outside: ctx.attr(attrs.int("exclude_outside", 0))? != 0,
        };
        let axes = ctx.attr(attrs.ints("axes"))?;
        let (scales_at, sizes_at) = if ctx.opset < 11 { (1, usize::MAX) } else { (2, 3) };
        let target = match (ctx.input(sizes_at), ctx.input(scales_at)) {
            (Some(n), _) => Target::Sizes(self.static_ints(ctx, n, "the sizes input")?),
            (None, Some(n)) => Target::Scales(self.static_floats(ctx, n, "the scales input")?),
            (None, None) => return Err(ctx.err("needs scales or sizes")),
        };
        self.resize_by(ctx, target, &spec, axes, keep)
    }

    fn resize_by(
        &mut self,
        ctx: &Ctx,
        target: Target,
        spec: &ResizeSpec,
        axes: Option<Vec<i64>>,
        keep: Option<bool>,
    ) -> Result<(), OnnxError> {
        let x = self.ir(ctx, ctx.req_input(0)?)?;
        let ty = self.g.ty(x).clone();
        let rank = ty.rank();
        if ty.dtype != nnc_ir::DType::F32 {
            return Err(ctx.err(format!("resizing {} is not supported (f32 only)", ty.dtype)));
        }
        let axes: Vec<usize> = match axes {
            Some(a) => {
                a.iter().map(|&v| super::norm_axis(v, rank)).collect::<Result<_, _>>().map_err(|m| ctx.err(m))?
            }
            None => (0..rank).collect(),
        };
        let target = match (target, keep) {
            (Target::Sizes(sizes), Some(larger)) => kept_aspect(ctx, &ty.shape, &axes, &sizes, larger)?,
            (t, _) => t,
        };
        let count = match &target {
            Target::Scales(s) => s.len(),
            Target::Sizes(s) => s.len(),
            Target::Both(s) => s.len(),
        };
        if count != axes.len() {
            return Err(ctx.err(format!("{count} scales or sizes for {} axes", axes.len())));
        }
        let mut y = x;
        for (i, &axis) in axes.iter().enumerate() {
            let dim = self.g.ty(y).shape.0[axis];
            let (scale, out_len) = match (&target, dim) {
                (Target::Scales(s), Dim::Fixed(len)) => (s[i], (len as f64 * s[i]).floor() as i64),
                (Target::Sizes(s), Dim::Fixed(len)) => (s[i] as f64 / len as f64, s[i]),
                (Target::Both(s), Dim::Fixed(_)) => s[i],
                (Target::Scales(s), Dim::Batch) if s[i] == 1.0 => continue,
                (Target::Sizes(_) | Target::Both(_), Dim::Batch) => {
                    return Err(ctx.err("sizes for the batch axis are not supported"))
                }
                (_, Dim::Batch) => return Err(ctx.err(format!("resizing the batch axis {axis} is not supported"))),
            };
            let len = dim.fixed().unwrap_or(0);
            if out_len < 1 || scale <= 0.0 {
                return Err(ctx.err(format!(
                    "axis {axis} of {len} would resize to {out_len}: zero-size tensors are not supported"
                )));
            }
            let out_len = out_len as usize;
            if out_len == len && scale == 1.0 {
                continue;
            }
            y = self.resize_axis(ctx, y, (axis, len, out_len, scale), spec)?;
        }
        self.name_result(ctx, x, y)
    }

    /// `y` resized along `axis` from `len` to `out_len` rows.
    fn resize_axis(
        &mut self,
        ctx: &Ctx,
        y: ValueId,
        (axis, len, out_len, scale): (usize, usize, usize, f64),
        spec: &ResizeSpec,
    ) -> Result<ValueId, OnnxError> {
        let out = ctx.out()?;
        let weights = interpolation(spec, len, out_len, scale);
        let ty = self.g.ty(y).clone();
        let rank = ty.rank();
        // Nearest by a whole factor: row o is input row o / factor, a broadcast.
        let factor = out_len / len;
        let picks = |o: usize| (0..len).all(|i| weights[o * len + i] == if i == o / factor { 1.0 } else { 0.0 });
        let whole = factor >= 1 && factor * len == out_len && (0..out_len).all(picks);
        if whole {
            let mut dims = ty.shape.0.clone();
            dims.insert(axis + 1, Dim::Fixed(1));
            let split =
                self.emit_tmp(ctx, out, &format!("rows{axis}"), Op::Reshape { shape: Shape(dims.clone()) }, &[y])?;
            dims[axis + 1] = Dim::Fixed(factor);
            let copies =
                self.emit_tmp(ctx, out, &format!("copies{axis}"), Op::Broadcast { shape: Shape(dims) }, &[split])?;
            let mut merged = ty.shape.0.clone();
            merged[axis] = Dim::Fixed(out_len);
            return self.emit_tmp(ctx, out, &format!("resized{axis}"), Op::Reshape { shape: Shape(merged) }, &[copies]);
        }
        // The axis last, a product with the [len, out_len] matrix (the weights
        // transposed), and back.
        let mut perm: Vec<usize> = (0..rank).filter(|&a| a != axis).collect();
        perm.push(axis);
        let moved = match axis + 1 == rank {
            true => y,
            false => self.emit_tmp(ctx, out, &format!("last{axis}"), Op::Transpose { perm: perm.clone() }, &[y])?,
        };
        let matrix = Tensor::from_f32(&[out_len, len], weights.iter().map(|&w| w as f32).collect())
            .map_err(|e| ctx.err(e.to_string()))?;
        let matrix = self.emit_const(ctx, out, &format!("interpolation{axis}"), matrix)?;
        let product = self.emit_tmp(
            ctx,
            out,
            &format!("interpolated{axis}"),
            Op::MatMul { trans_a: false, trans_b: true },
            &[moved, matrix],
        )?;
        if axis + 1 == rank {
            return Ok(product);
        }
        let mut inverse = vec![0; rank];
        for (i, &p) in perm.iter().enumerate() {
            inverse[p] = i;
        }
        self.emit_tmp(ctx, out, &format!("resized{axis}"), Op::Transpose { perm: inverse }, &[product])
    }
}

enum Target {
    Scales(Vec<f64>),
    Sizes(Vec<i64>),
    /// A scale and an output size per axis.
    Both(Vec<(f64, i64)>),
}

/// Sizes under a kept aspect ratio: the smallest (`not_larger`) or largest ratio of
/// size to input on every axis given, each output `⌊scale·len + ½⌋`.
fn kept_aspect(ctx: &Ctx, shape: &Shape, axes: &[usize], sizes: &[i64], larger: bool) -> Result<Target, OnnxError> {
    if axes.len() != sizes.len() {
        return Err(ctx.err(format!("{} sizes for {} axes", sizes.len(), axes.len())));
    }
    let lens = axes
        .iter()
        .map(|&a| shape.0[a].fixed().ok_or_else(|| ctx.err("sizes for the batch axis are not supported")))
        .collect::<Result<Vec<_>, _>>()?;
    let ratios = sizes.iter().zip(&lens).map(|(&s, &l)| s as f64 / l as f64);
    let scale = match larger {
        true => ratios.fold(f64::MIN, f64::max),
        false => ratios.fold(f64::MAX, f64::min),
    };
    Ok(Target::Both(lens.iter().map(|&l| (scale, (scale * l as f64 + 0.5) as i64)).collect()))
}

#[derive(Clone, Copy)]
enum Interp {
    Nearest(Nearest),
    Linear,
    Cubic,
}

#[derive(Clone, Copy)]
enum Nearest {
    RoundPreferFloor,
    RoundPreferCeil,
    Floor,
    Ceil,
}

#[derive(Clone, Copy)]
enum Coords {
    HalfPixel,
    HalfPixelSymmetric,
    PytorchHalfPixel,
    AlignCorners,
    Asymmetric,
    TfHalfPixelForNn,
}

struct ResizeSpec {
    mode: Interp,
    coords: Coords,
    cubic_a: f64,
    exclude_outside: bool,
}

/// The input coordinate of output row `o` (ONNX's coordinate transformations; its
/// "output width" is `len · scale`, which need not be whole).
fn source(coords: Coords, o: usize, len: usize, out_len: usize, scale: f64) -> f64 {
    let (o, width) = (o as f64, len as f64 * scale);
    match coords {
        Coords::HalfPixel => (o + 0.5) / scale - 0.5,
        Coords::HalfPixelSymmetric => {
            let adjustment = out_len as f64 / width;
            let center = len as f64 / 2.0;
            center * (1.0 - adjustment) + (o + 0.5) / scale - 0.5
        }
        Coords::PytorchHalfPixel if width == 1.0 => -0.5,
        Coords::PytorchHalfPixel => (o + 0.5) / scale - 0.5,
        Coords::AlignCorners if width == 1.0 => 0.0,
        Coords::AlignCorners => o * (len as f64 - 1.0) / (width - 1.0),
        Coords::Asymmetric => o / scale,
        Coords::TfHalfPixelForNn => (o + 0.5) / scale,
    }
}

/// The `[out_len, len]` weights of one axis, row-major: each output row's
/// combination of input rows, indices past the ends clamped to them (ONNX's
/// reference reads an edge-padded input), or for cubic with `exclude_outside` left
/// out and the rest renormalized.
fn interpolation(spec: &ResizeSpec, len: usize, out_len: usize, scale: f64) -> Vec<f64> {
    let mut w = vec![0.0; out_len * len];
    let clamp = |i: i64| i.clamp(0, len as i64 - 1) as usize;
    for o in 0..out_len {
        let x = source(spec.coords, o, len, out_len, scale);
        let row = &mut w[o * len..(o + 1) * len];
        match spec.mode {
            Interp::Nearest(mode) => {
                let (x0, r) = (x.floor(), x - x.floor());
                let up = match mode {
                    Nearest::RoundPreferFloor => r > 0.5,
                    Nearest::RoundPreferCeil => r >= 0.5,
                    Nearest::Floor => false,
                    Nearest::Ceil => r > 0.0,
                };
                row[clamp(x0 as i64 + up as i64)] = 1.0;
            }
            Interp::Linear => {
                let x0 = x.floor();
                let r = x - x0;
                row[clamp(x0 as i64)] += 1.0 - r;
                row[clamp(x0 as i64 + 1)] += r;
            }
            Interp::Cubic => {
                let x0 = x.floor();
                let r = x - x0;
                let a = spec.cubic_a;
                let coeffs = [
                    ((a * (r + 1.0) - 5.0 * a) * (r + 1.0) + 8.0 * a) * (r + 1.0) - 4.0 * a,
                    ((a + 2.0) * r - (a + 3.0)) * r * r + 1.0,
                    ((a + 2.0) * (1.0 - r) - (a + 3.0)) * (1.0 - r) * (1.0 - r) + 1.0,
                    ((a * (2.0 - r) - 5.0 * a) * (2.0 - r) + 8.0 * a) * (2.0 - r) - 4.0 * a,
                ];
                let taps: Vec<(i64, f64)> = (0..4).map(|k| (x0 as i64 - 1 + k as i64, coeffs[k])).collect();
                let inside = |i: i64| (0..len as i64).contains(&i);
                let total: f64 = taps.iter().filter(|(i, _)| inside(*i)).map(|(_, c)| c).sum();
                for (i, c) in taps {
                    match spec.exclude_outside {
                        true if inside(i) => row[i as usize] += c / total,
                        true => {}
                        false => row[clamp(i)] += c,
                    }
                }
            }
        }
    }
    w
}
