//! Conv, ConvTranspose, MaxPool, AveragePool, GlobalAveragePool, GlobalMaxPool and
//! BatchNormalization (inference and training forms).
//!
//! Opset changes: MaxPool gained `dilations`, `ceil_mode` (and `storage_order`, with
//! the `Indices` output, at 8) at 10; AveragePool `count_include_pad` at 7,
//! `ceil_mode` at 10 and `dilations` at 19; the others changed only their types.
//! `auto_pad` (`SAME_UPPER`, `SAME_LOWER`, `VALID`) is resolved into explicit pads
//! here, since the input sizes are static. BatchNormalization lost `spatial` and
//! `is_test` at 7/9 and gained `training_mode` at 14; training mode is imported from
//! opset 14 (batch statistics, and the running ones as the optional outputs).

use super::{Ctx, Importer};
use crate::OnnxError;
use nnc_ir::{BinaryOp, Conv, Dim, Op, Pool, PoolKind, ReduceOp, Shape, Tensor, UnaryOp, Window};

/// The `auto_pad` modes.
#[derive(Clone, Copy, PartialEq)]
enum AutoPad {
    NotSet,
    SameUpper,
    SameLower,
    Valid,
}

fn auto_pad(ctx: &Ctx) -> Result<AutoPad, OnnxError> {
    match ctx.attr(ctx.attrs().string("auto_pad"))?.as_deref() {
        None | Some("NOTSET") | Some("") => Ok(AutoPad::NotSet),
        Some("SAME_UPPER") => Ok(AutoPad::SameUpper),
        Some("SAME_LOWER") => Ok(AutoPad::SameLower),
        Some("VALID") => Ok(AutoPad::Valid),
        Some(other) => Err(ctx.err(format!("auto_pad \"{other}\" is not NOTSET, SAME_UPPER, SAME_LOWER or VALID"))),
    }
}

/// A list attribute of one non-negative entry per spatial axis (`default` if absent).
fn per_axis(ctx: &Ctx, name: &str, r: usize, default: usize, at_least: usize) -> Result<Vec<usize>, OnnxError> {
    let Some(values) = ctx.attr(ctx.attrs().ints(name))? else {
        return Ok(vec![default; r]);
    };
    if values.len() != r {
        return Err(ctx.err(format!("{name} {values:?} needs {r} entries, one per spatial axis")));
    }
    values
        .iter()
        .map(|&v| {
            usize::try_from(v)
                .ok()
                .filter(|&v| v >= at_least && v <= 1 << 24)
                .ok_or_else(|| ctx.err(format!("{name} {values:?}: {v} is out of range")))
        })
        .collect()
}

/// The window of a node over an input of spatial sizes `input`, `kernel` from the
/// attribute or the weight; `auto_pad` turned into pads.
fn window(ctx: &Ctx, input: &[usize], kernel: Vec<usize>) -> Result<Window, OnnxError> {
    let r = input.len();
    let mut w = Window::new(&kernel);
    w.strides = per_axis(ctx, "strides", r, 1, 1)?;
    w.dilations = per_axis(ctx, "dilations", r, 1, 1)?;
    let mode = auto_pad(ctx)?;
    match mode {
        AutoPad::NotSet => {
            let pads = per_axis(ctx, "pads", 2 * r, 0, 0)?;
            w.pads_begin = pads[..r].to_vec();
            w.pads_end = pads[r..].to_vec();
        }
        AutoPad::Valid => {}
        AutoPad::SameUpper | AutoPad::SameLower => {
            // The output is ⌈input / stride⌉; the padding that makes it so is split
            // evenly, the odd one at the end (UPPER) or the beginning (LOWER).
            for (i, &size) in input.iter().enumerate() {
                let out = size.div_ceil(w.strides[i]);
                let total = ((out - 1) * w.strides[i] + w.extent(i)).saturating_sub(size);
                let (small, large) = (total / 2, total - total / 2);
                (w.pads_begin[i], w.pads_end[i]) =
                    if mode == AutoPad::SameUpper { (small, large) } else { (large, small) };
            }
        }
    }
    w.check().map_err(|m| ctx.err(m))?;
    Ok(w)
}

impl Importer {
    /// The static `[C, spatial..]` of an `[N, C, spatial..]` operand.
    fn image(&self, ctx: &Ctx, name: &str, what: &str) -> Result<(Dim, usize, Vec<usize>), OnnxError> {
        let ty = self.ty(ctx, name)?;
        if ty.rank() < 3 {
            return Err(
                ctx.err(format!("the {what} {} needs a batch, a channel and at least one spatial axis", ty.shape))
            );
        }
        let rest: Option<Vec<usize>> = ty.shape.0[1..].iter().map(|d| d.fixed()).collect();
        let rest =
            rest.ok_or_else(|| ctx.err(format!("the {what} {} may have the batch dimension N only first", ty.shape)))?;
        Ok((ty.shape.0[0], rest[0], rest[1..].to_vec()))
    }

    fn weight(&self, ctx: &Ctx, name: &str, r: usize) -> Result<Vec<usize>, OnnxError> {
        let ty = self.ty(ctx, name)?;
        let dims = ty.shape.as_fixed().filter(|d| d.len() == r + 2).ok_or_else(|| {
            ctx.err(format!("the weight {} must be static with rank {} (2 + spatial axes)", ty.shape, r + 2))
        })?;
        if let Some(kernel) = ctx.attr(ctx.attrs().ints("kernel_shape"))? {
            if kernel.iter().map(|&k| k as usize).ne(dims[2..].iter().copied()) {
                return Err(ctx.err(format!("kernel_shape {kernel:?} differs from the weight's {:?}", &dims[2..])));
            }
        }
        Ok(dims)
    }

    /// Adds a bias `[C]` over the channel axis of `y`, naming the result `out`.
    fn channel_bias(
        &mut self,
        ctx: &Ctx,
        out: &str,
        y: nnc_ir::ValueId,
        bias: &str,
        r: usize,
    ) -> Result<nnc_ir::ValueId, OnnxError> {
        let b = self.per_channel(ctx, out, bias, r)?;
        self.emit(ctx, out, Op::Binary(BinaryOp::Add), &[y, b])
    }

    /// A `[C]` operand reshaped to `[C, 1, ..]` so it broadcasts over `[N, C, spatial..]`.
    fn per_channel(&mut self, ctx: &Ctx, out: &str, name: &str, r: usize) -> Result<nnc_ir::ValueId, OnnxError> {
        let ty = self.ty(ctx, name)?;
        let Some(&[c]) = ty.shape.as_fixed().as_deref() else {
            return Err(ctx.err(format!("\"{name}\" must be a vector over the channels, got {}", ty.shape)));
        };
        let id = self.ir(ctx, name)?;
        let mut dims = vec![Dim::Fixed(c)];
        dims.extend(std::iter::repeat_n(Dim::Fixed(1), r));
        self.emit_tmp(ctx, out, &format!("{name}_per_channel"), Op::Reshape { shape: Shape(dims) }, &[id])
    }

    fn groups(&self, ctx: &Ctx) -> Result<usize, OnnxError> {
        let g = ctx.attr(ctx.attrs().int("group", 1))?;
        usize::try_from(g).ok().filter(|&g| g >= 1).ok_or_else(|| ctx.err(format!("group {g} must be at least 1")))
    }

    pub(super) fn conv(&mut self, ctx: &Ctx) -> Result<(), OnnxError> {
        let (x, w, out) = (ctx.req_input(0)?, ctx.req_input(1)?, ctx.out()?);
        let (_, c, input) = self.image(ctx, x, "input")?;
        let wd = self.weight(ctx, w, input.len())?;
        let groups = self.groups(ctx)?;
        if c != wd[1] * groups {
            return Err(ctx.err(format!(
                "the input has {c} channels, but the weight {:?} with group {groups} takes {}",
                wd,
                wd[1] * groups
            )));
        }
        if wd[0] % groups != 0 {
            return Err(ctx.err(format!("{} output channels do not split into {groups} groups", wd[0])));
        }
        let conv = Conv { window: window(ctx, &input, wd[2..].to_vec())?, groups };
        conv.window.output_size(&input, false).map_err(|m| ctx.err(m))?;
        let (ix, iw) = (self.ir(ctx, x)?, self.ir(ctx, w)?);
        let bias = ctx.input(2);
        let name = if bias.is_some() { self.fresh(&format!("{out}_conv")) } else { out.to_string() };
        let mut y = self.emit(ctx, &name, Op::Conv(conv), &[ix, iw])?;
        if let Some(b) = bias {
            y = self.channel_bias(ctx, out, y, b, input.len())?;
        }
        self.define_ir(out, y);
        Ok(())
    }

    /// ConvTranspose is the data gradient of the convolution with the same weight:
    /// its input plays the convolution's output gradient. Its output size is
    /// `stride·(I − 1) + output_padding + extent − pads`, or `output_shape`.
    pub(super) fn conv_transpose(&mut self, ctx: &Ctx) -> Result<(), OnnxError> {
        let (x, w, out) = (ctx.req_input(0)?, ctx.req_input(1)?, ctx.out()?);
        let (_, c, input) = self.image(ctx, x, "input")?;
        let r = input.len();
        let wd = self.weight(ctx, w, r)?;
        let groups = self.groups(ctx)?;
        if c != wd[0] {
            return Err(ctx.err(format!("the input has {c} channels, but the weight {wd:?} takes {}", wd[0])));
        }
        if c % groups != 0 {
            return Err(ctx.err(format!("{c} input channels do not split into {groups} groups")));
        }
        let kernel = wd[2..].to_vec();
        let mut win = Window::new(&kernel);
        win.strides = per_axis(ctx, "strides", r, 1, 1)?;
        win.dilations = per_axis(ctx, "dilations", r, 1, 1)?;
        win.check().map_err(|m| ctx.err(m))?;
        let output_padding = per_axis(ctx, "output_padding", r, 0, 0)?;
        let output_shape = match ctx.attr(ctx.attrs().ints("output_shape"))? {
            None => None,
            Some(s) => {
                // Either the spatial sizes or the whole shape.
                let s = if s.len() == r + 2 { s[2..].to_vec() } else { s };
                if s.len() != r || s.iter().any(|&v| v < 1) {
                    return Err(ctx.err(format!("output_shape {s:?} needs {r} positive spatial sizes")));
                }
                Some(s.iter().map(|&v| v as usize).collect::<Vec<usize>>())
            }
        };
        // The full span the transposed windows cover, before padding is cut.
        let spans: Vec<usize> =
            (0..r).map(|i| win.strides[i] * (input[i] - 1) + output_padding[i] + win.extent(i)).collect();
        let mode = auto_pad(ctx)?;
        let explicit = ctx.attrs().get("pads").is_some() || !matches!(mode, AutoPad::SameUpper | AutoPad::SameLower);
        let size = if explicit && mode != AutoPad::Valid {
            let pads = per_axis(ctx, "pads", 2 * r, 0, 0)?;
            win.pads_begin = pads[..r].to_vec();
            win.pads_end = pads[r..].to_vec();
            match &output_shape {
                Some(s) => s.clone(),
                None => (0..r)
                    .map(|i| {
                        spans[i].checked_sub(pads[i] + pads[r + i]).filter(|&v| v > 0).ok_or_else(|| {
                            ctx.err(format!("pads {pads:?} cut more than the output's {} on axis {i}", spans[i]))
                        })
                    })
                    .collect::<Result<_, _>>()?,
            }
        } else if mode == AutoPad::Valid {
            output_shape.clone().unwrap_or_else(|| spans.clone())
        } else {
            let size = output_shape.clone().unwrap_or_else(|| (0..r).map(|i| input[i] * win.strides[i]).collect());
            for i in 0..r {
                let total = spans[i].checked_sub(size[i]).ok_or_else(|| {
                    ctx.err(format!("output size {} is larger than the transposed window's span {}", size[i], spans[i]))
                })?;
                let (small, large) = (total / 2, total - total / 2);
                (win.pads_begin[i], win.pads_end[i]) =
                    if mode == AutoPad::SameUpper { (small, large) } else { (large, small) };
            }
            size
        };
        let conv = Conv { window: win, groups };
        let got = conv.window.output_size(&size, false).map_err(|m| ctx.err(m))?;
        if got != input {
            return Err(ctx.err(format!(
                "an output of {size:?} is not what this transposed convolution makes from {input:?} \
                 (output_padding or output_shape must stay below the stride)"
            )));
        }
        let (ix, iw) = (self.ir(ctx, x)?, self.ir(ctx, w)?);
        let bias = ctx.input(2);
        let name = if bias.is_some() { self.fresh(&format!("{out}_conv_transpose")) } else { out.to_string() };
        let mut y = self.emit(ctx, &name, Op::ConvBackwardData { conv, input: size }, &[ix, iw])?;
        if let Some(b) = bias {
            y = self.channel_bias(ctx, out, y, b, r)?;
        }
        self.define_ir(out, y);
        Ok(())
    }

    pub(super) fn pool(&mut self, ctx: &Ctx, max: bool) -> Result<(), OnnxError> {
        let (x, out) = (ctx.req_input(0)?, ctx.out()?);
        if ctx.node.output.get(1).is_some_and(|s| !s.is_empty()) {
            return Err(ctx.err("the Indices output of MaxPool is not supported"));
        }
        let (_, _, input) = self.image(ctx, x, "input")?;
        let r = input.len();
        if ctx.attrs().get("kernel_shape").is_none() {
            return Err(ctx.err("kernel_shape is required"));
        }
        let kernel = per_axis(ctx, "kernel_shape", r, 1, 1)?;
        let since = |opset: i64, name: &str| ctx.opset >= opset || ctx.attrs().get(name).is_none();
        if !since(10, "ceil_mode") || !since(if max { 10 } else { 19 }, "dilations") {
            return Err(ctx.err("ceil_mode and dilations are not attributes of this op at this opset"));
        }
        let ceil_mode = ctx.attr(ctx.attrs().int("ceil_mode", 0))? != 0;
        let kind = if max {
            PoolKind::Max
        } else {
            PoolKind::Avg { count_include_pad: ctx.attr(ctx.attrs().int("count_include_pad", 0))? != 0 }
        };
        let pool = Pool { kind, window: window(ctx, &input, kernel)?, ceil_mode };
        pool.check().map_err(|m| ctx.err(m))?;
        pool.window.output_size(&input, ceil_mode).map_err(|m| ctx.err(m))?;
        let ix = self.ir(ctx, x)?;
        let y = self.emit(ctx, out, Op::Pool(pool), &[ix])?;
        self.define_ir(out, y);
        Ok(())
    }

    /// GlobalAveragePool and GlobalMaxPool: a mean or maximum over the spatial axes,
    /// which are kept with size 1.
    pub(super) fn global_pool(&mut self, ctx: &Ctx, op: ReduceOp) -> Result<(), OnnxError> {
        let (x, out) = (ctx.req_input(0)?, ctx.out()?);
        let (_, _, input) = self.image(ctx, x, "input")?;
        let ix = self.ir(ctx, x)?;
        let axes = (2..input.len() + 2).collect();
        let y = self.emit(ctx, out, Op::Reduce { op, axes, keep_dims: true }, &[ix])?;
        self.define_ir(out, y);
        Ok(())
    }

    /// `(x − mean) / √(var + ε) · scale + bias` with the running statistics, or (in
    /// training mode, or imported for training with the statistics as state) the
    /// batch's.
    pub(super) fn batch_norm(&mut self, ctx: &Ctx) -> Result<(), OnnxError> {
        let out = ctx.out()?;
        let attrs = ctx.attrs();
        let training = if ctx.opset >= 14 {
            ctx.attr(attrs.int("training_mode", 0))? != 0
        } else if ctx.opset < 7 {
            ctx.attr(attrs.int("is_test", 0))? == 0
        } else {
            false
        };
        let extra_outputs = ctx.node.output.iter().skip(1).any(|s| !s.is_empty());
        // Before opset 14 training was told by the outputs (mean, var, saved mean and
        // var), whose meaning changed with the opsets: not supported.
        if (training || extra_outputs) && !(training && ctx.opset >= 14) {
            return Err(ctx.err(
                "BatchNormalization's training form (batch statistics, running-statistics outputs) is supported from opset 14, with training_mode=1",
            ));
        }
        if ctx.opset < 9 && ctx.attr(attrs.int("spatial", 1))? == 0 {
            return Err(ctx.err("BatchNormalization with spatial=0 (statistics per position) is not supported"));
        }
        let eps = ctx.attr(attrs.float("epsilon", 1e-5))?;
        let names: Vec<&str> = (0..5).map(|i| ctx.req_input(i)).collect::<Result<_, _>>()?;
        let x = names[0];
        let ty = self.ty(ctx, x)?;
        if ty.rank() < 2 || ty.shape.0[1].fixed().is_none() {
            return Err(ctx.err(format!("the input {} needs a static channel axis", ty.shape)));
        }
        let r = ty.rank() - 2;
        let channels = ty.shape.0[1].fixed().unwrap_or(0);
        for &n in &names[1..] {
            let t = self.ty(ctx, n)?;
            if t.shape != Shape::fixed(&[channels]) {
                return Err(
                    ctx.err(format!("\"{n}\" must have shape [{channels}], one value per channel, got {}", t.shape))
                );
            }
        }
        // Imported for training, running statistics that are state are updated in place.
        let state = |imp: &mut Self, n: &str| -> Result<Option<nnc_ir::ValueId>, OnnxError> {
            let id = imp.ir(ctx, n)?;
            Ok(matches!(imp.g.value(id).op, Op::State { .. }).then_some(id))
        };
        let leaves = match (state(self, names[3])?, state(self, names[4])?) {
            (Some(m), Some(v)) if self.training => Some((m, v)),
            _ => None,
        };
        let [scale, bias, mean, var] =
            [names[1], names[2], names[3], names[4]].map(|n| self.per_channel(ctx, out, n, r));
        let (scale, bias, mean, var) = (scale?, bias?, mean?, var?);
        let ix = self.ir(ctx, x)?;
        let e = self.emit_const(ctx, out, "epsilon", Tensor::scalar_f32(eps))?;
        if training || leaves.is_some() {
            return self.batch_norm_training(ctx, (ix, r, channels), (scale, bias, mean, var), e, leaves);
        }
        let var_eps = self.emit_tmp(ctx, out, "var_eps", Op::Binary(BinaryOp::Add), &[var, e])?;
        let std = self.emit_tmp(ctx, out, "std", Op::Unary(UnaryOp::Sqrt), &[var_eps])?;
        let centered = self.emit_tmp(ctx, out, "centered", Op::Binary(BinaryOp::Sub), &[ix, mean])?;
        let normed = self.emit_tmp(ctx, out, "normalized", Op::Binary(BinaryOp::Div), &[centered, std])?;
        let scaled = self.emit_tmp(ctx, out, "scaled", Op::Binary(BinaryOp::Mul), &[normed, scale])?;
        let y = self.emit(ctx, out, Op::Binary(BinaryOp::Add), &[scaled, bias])?;
        self.define_ir(out, y);
        Ok(())
    }

    /// Training mode: normalized by the batch's statistics over every axis but the
    /// channels (the variance the population's, as ONNX's reference computes it), and
    /// the running statistics `input·momentum + batch·(1 − momentum)` as the optional
    /// second and third outputs (opset 14+), and as the new values of the running
    /// statistics' state leaves `update` (mean, variance) when given.
    fn batch_norm_training(
        &mut self,
        ctx: &Ctx,
        (x, r, channels): (nnc_ir::ValueId, usize, usize),
        (scale, bias, mean, var): (nnc_ir::ValueId, nnc_ir::ValueId, nnc_ir::ValueId, nnc_ir::ValueId),
        eps: nnc_ir::ValueId,
        update: Option<(nnc_ir::ValueId, nnc_ir::ValueId)>,
    ) -> Result<(), OnnxError> {
        let out = ctx.out()?;
        let momentum = ctx.attr(ctx.attrs().float("momentum", 0.9))?;
        let axes: Vec<usize> = std::iter::once(0).chain(2..2 + r).collect();
        let reduce = Op::Reduce { op: ReduceOp::Mean, axes, keep_dims: true };
        let batch_mean = self.emit_tmp(ctx, out, "batch_mean", reduce.clone(), &[x])?;
        let centered = self.emit_tmp(ctx, out, "centered", Op::Binary(BinaryOp::Sub), &[x, batch_mean])?;
        let squares = self.emit_tmp(ctx, out, "squares", Op::Binary(BinaryOp::Mul), &[centered, centered])?;
        let batch_var = self.emit_tmp(ctx, out, "batch_var", reduce, &[squares])?;
        let var_eps = self.emit_tmp(ctx, out, "var_eps", Op::Binary(BinaryOp::Add), &[batch_var, eps])?;
        let std = self.emit_tmp(ctx, out, "std", Op::Unary(UnaryOp::Sqrt), &[var_eps])?;
        let normed = self.emit_tmp(ctx, out, "normalized", Op::Binary(BinaryOp::Div), &[centered, std])?;
        let scaled = self.emit_tmp(ctx, out, "scaled", Op::Binary(BinaryOp::Mul), &[normed, scale])?;
        let y = self.emit(ctx, out, Op::Binary(BinaryOp::Add), &[scaled, bias])?;
        self.define_ir(out, y);
        let keep = self.emit_const(ctx, out, "momentum", Tensor::scalar_f32(momentum))?;
        let take = self.emit_const(ctx, out, "one_minus_momentum", Tensor::scalar_f32(1.0 - momentum))?;
        let vector = Op::Reshape { shape: Shape::fixed(&[channels]) };
        let leaves = update.map(|(m, v)| [m, v]);
        for (i, (running, batch)) in [(mean, batch_mean), (var, batch_var)].into_iter().enumerate() {
            let output = ctx.node.output.get(i + 1).filter(|n| !n.is_empty());
            if output.is_none() && leaves.is_none() {
                continue;
            }
            let stat = ["mean", "var"][i];
            let name = output.cloned().unwrap_or_else(|| format!("{out}_running_{stat}"));
            let running = self.emit_tmp(ctx, &name, &format!("running_{stat}"), vector.clone(), &[running])?;
            let batch = self.emit_tmp(ctx, &name, &format!("batch_{stat}"), vector.clone(), &[batch])?;
            let kept = self.emit_tmp(ctx, &name, "kept", Op::Binary(BinaryOp::Mul), &[running, keep])?;
            let taken = self.emit_tmp(ctx, &name, "taken", Op::Binary(BinaryOp::Mul), &[batch, take])?;
            let new = match output {
                Some(name) => {
                    let new = self.emit(ctx, name, Op::Binary(BinaryOp::Add), &[kept, taken])?;
                    self.define_ir(name, new);
                    new
                }
                None => self.emit_tmp(ctx, &name, "new", Op::Binary(BinaryOp::Add), &[kept, taken])?,
            };
            if let Some(leaves) = leaves {
                self.updates.push((leaves[i], new));
            }
        }
        Ok(())
    }
}
