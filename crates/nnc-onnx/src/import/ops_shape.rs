//! Shape ops and the shape arithmetic exporters emit around them.
//!
//! Reshape-like ops (Flatten, Reshape, Squeeze, Unsqueeze) become one IR reshape with
//! a static target shape. Shape, Gather, Slice, Concat and ConstantOfShape are
//! evaluated at import time on [`Known`] values whose elements may be the batch size,
//! so `Shape → Gather → Unsqueeze → Concat → Reshape` chains fold into a constant
//! target like `[N,784]`.

use super::known::{self, foldable_size, map_known, Known, SymInt};
use super::tensor::MAX_ELEMENTS;
use super::{norm_axis, Ctx, Importer, Slot};
use crate::meta;
use crate::OnnxError;
use ndarray::ArrayD;
use nnc_ir::{infer, DType, Dim, Op, Shape, Tensor};

/// Results of Expand/ConstantOfShape up to this size are folded; larger ones stay
/// run-time broadcasts rather than becoming big constants.
const SMALL_FOLD: usize = 1024;

/// The product of `dims` as one dimension: static, or the batch times 1.
/// `None` when the batch would be multiplied by something else (or on overflow).
pub(crate) fn product_dim(dims: &[Dim]) -> Option<Dim> {
    let fixed = dims.iter().filter_map(|d| d.fixed()).try_fold(1usize, |acc, d| acc.checked_mul(d))?;
    match dims.iter().filter(|d| **d == Dim::Batch).count() {
        0 => Some(Dim::Fixed(fixed)),
        1 if fixed == 1 => Some(Dim::Batch),
        _ => None,
    }
}

fn sym_list(v: &[SymInt]) -> String {
    format!("[{}]", v.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(","))
}

/// Checks a static-or-batch shape is not absurdly large.
fn check_size(ctx: &Ctx, shape: &Shape) -> Result<(), OnnxError> {
    match shape.fixed_product() {
        Some(n) if n <= MAX_ELEMENTS => Ok(()),
        _ => Err(ctx.err(format!("shape {shape} has more than {MAX_ELEMENTS} elements"))),
    }
}

/// The target of an ONNX Reshape: `0` copies the input dimension (unless
/// `allowzero`), one `-1` is inferred, and elements may be the batch size.
fn resolve_reshape(input: &Shape, spec: &[SymInt], allowzero: bool) -> Result<Shape, String> {
    let mut dims: Vec<Option<Dim>> = Vec::with_capacity(spec.len());
    let mut infer_at = None;
    for (i, s) in spec.iter().enumerate() {
        dims.push(match *s {
            SymInt::Batch => Some(Dim::Batch),
            SymInt::Int(0) if !allowzero => Some(*input.0.get(i).ok_or_else(|| {
                format!("shape {} copies dimension {i} (0) of the {}-D input {input}", sym_list(spec), input.rank())
            })?),
            SymInt::Int(-1) if infer_at.is_none() => {
                infer_at = Some(i);
                None
            }
            SymInt::Int(-1) => return Err(format!("shape {} has more than one -1", sym_list(spec))),
            SymInt::Int(n) => {
                Some(Dim::Fixed(usize::try_from(n).map_err(|_| format!("shape {} has size {n}", sym_list(spec)))?))
            }
        });
    }
    if let Some(at) = infer_at {
        let given = Shape(dims.iter().flatten().copied().collect());
        let overflow = || format!("shape {} overflows", sym_list(spec));
        let (pi, pt) = (input.fixed_product().ok_or_else(overflow)?, given.fixed_product().ok_or_else(overflow)?);
        let inferred = match (input.batch_count(), given.batch_count()) {
            (bi, bt) if bi == bt && pt != 0 && pi % pt == 0 => Dim::Fixed(pi / pt),
            (1, 0) if pi == pt => Dim::Batch,
            _ => {
                return Err(format!(
                    "cannot infer the -1 in {} for input {input}: the batch dimension N would be merged with other dimensions or the sizes do not divide",
                    sym_list(spec)
                ))
            }
        };
        dims[at] = Some(inferred);
    }
    Ok(Shape(dims.into_iter().flatten().collect()))
}

impl Importer {
    /// `out = reshape(x, target)`, folded when `x` is known.
    fn reshape_to(&mut self, ctx: &Ctx, x: &str, out: &str, target: Shape) -> Result<(), OnnxError> {
        check_size(ctx, &target)?;
        let fixed = target.as_fixed();
        self.fold_or_emit(
            ctx,
            out,
            &[x],
            |k| match &fixed {
                Some(dims) => Ok(Some(map_known!(&k[0], a => known::reshape(a, dims)))),
                None => Ok(None),
            },
            |imp, ids| imp.emit(ctx, out, Op::Reshape { shape: target }, ids),
        )
    }

    /// Integer elements of an import-time input (an axes list, slice bounds).
    fn known_ints(&mut self, ctx: &Ctx, name: &str, what: &str) -> Result<Vec<i64>, OnnxError> {
        self.need_known(ctx, name, what)?.ints().ok_or_else(|| {
            ctx.err(format!("{what} (\"{name}\") must hold integers that do not depend on the batch size"))
        })
    }

    /// Axes from the attribute (before `input_from`) or from input 1 (from then on).
    fn axes_arg(&mut self, ctx: &Ctx, input_from: i64) -> Result<Option<Vec<i64>>, OnnxError> {
        if ctx.opset < input_from {
            ctx.attr(ctx.attrs().ints("axes"))
        } else {
            match ctx.input(1) {
                Some(name) => Ok(Some(self.known_ints(ctx, name, "the axes input")?)),
                None => Ok(None),
            }
        }
    }

    pub(super) fn flatten(&mut self, ctx: &Ctx) -> Result<(), OnnxError> {
        let (x, out) = (ctx.req_input(0)?, ctx.out()?);
        let shape = self.ty(ctx, x)?.shape;
        let rank = shape.rank() as i64;
        let axis = ctx.attr(ctx.attrs().int("axis", 1))?;
        let at = if axis < 0 { axis + rank } else { axis };
        if !(0..=rank).contains(&at) {
            return Err(ctx.err(format!("axis {axis} is out of range for rank {rank}")));
        }
        let (lead, rest) = shape.0.split_at(at as usize);
        let (Some(outer), Some(inner)) = (product_dim(lead), product_dim(rest)) else {
            return Err(ctx.err(format!(
                "cannot flatten {shape} at axis {at}: the batch dimension N would be merged with other dimensions"
            )));
        };
        self.reshape_to(ctx, x, out, Shape(vec![outer, inner]))
    }

    pub(super) fn reshape(&mut self, ctx: &Ctx) -> Result<(), OnnxError> {
        let (x, spec_name, out) = (ctx.req_input(0)?, ctx.req_input(1)?, ctx.out()?);
        let allowzero = ctx.opset >= 14 && ctx.attr(ctx.attrs().int("allowzero", 0))? != 0;
        let spec = self
            .need_known(ctx, spec_name, "the shape input")?
            .sym_elems()
            .ok_or_else(|| ctx.err(format!("the shape input (\"{spec_name}\") must hold integers")))?;
        let input = self.ty(ctx, x)?.shape;
        let target = resolve_reshape(&input, &spec, allowzero).map_err(|m| ctx.err(m))?;
        self.reshape_to(ctx, x, out, target)
    }

    pub(super) fn transpose(&mut self, ctx: &Ctx) -> Result<(), OnnxError> {
        let (x, out) = (ctx.req_input(0)?, ctx.out()?);
        let rank = self.ty(ctx, x)?.rank();
        let perm: Vec<usize> = match ctx.attr(ctx.attrs().ints("perm"))? {
            None => (0..rank).rev().collect(),
            Some(p) => {
                let mut seen = vec![false; rank];
                let valid = p.len() == rank
                    && p.iter().all(|&v| {
                        usize::try_from(v)
                            .ok()
                            .filter(|&v| v < rank)
                            .is_some_and(|v| !std::mem::replace(&mut seen[v], true))
                    });
                if !valid {
                    return Err(ctx.err(format!("perm {p:?} is not a permutation of {rank} axes")));
                }
                p.iter().map(|&v| v as usize).collect()
            }
        };
        let fold_perm = perm.clone();
        self.fold_or_emit(
            ctx,
            out,
            &[x],
            |k| Ok(Some(map_known!(&k[0], a => known::transpose(a, &fold_perm)))),
            |imp, ids| imp.emit(ctx, out, Op::Transpose { perm }, ids),
        )?;
        let marked = ctx.node.metadata_props.iter().any(|p| p.key == meta::FUSE && p.value == meta::FUSE_MATMUL);
        if let (true, Some(id)) = (marked, self.slot(ctx, out)?.ir) {
            self.fusable_transposes.insert(id);
        }
        Ok(())
    }

    pub(super) fn unsqueeze(&mut self, ctx: &Ctx) -> Result<(), OnnxError> {
        let (x, out) = (ctx.req_input(0)?, ctx.out()?);
        let axes = self.axes_arg(ctx, 13)?.ok_or_else(|| ctx.err("axes are missing"))?;
        let input = self.ty(ctx, x)?.shape;
        let rank = input.rank() + axes.len();
        let mut at = axes.iter().map(|&a| norm_axis(a, rank)).collect::<Result<Vec<_>, _>>().map_err(|m| ctx.err(m))?;
        at.sort_unstable();
        if at.windows(2).any(|w| w[0] == w[1]) {
            return Err(ctx.err(format!("axes {axes:?} repeat an axis")));
        }
        let mut rest = input.0.iter();
        let dims = (0..rank)
            .map(|i| if at.contains(&i) { Some(Dim::Fixed(1)) } else { rest.next().copied() })
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| ctx.err("axes do not fit the input"))?;
        self.reshape_to(ctx, x, out, Shape(dims))
    }

    pub(super) fn squeeze(&mut self, ctx: &Ctx) -> Result<(), OnnxError> {
        let (x, out) = (ctx.req_input(0)?, ctx.out()?);
        let axes = self.axes_arg(ctx, 13)?;
        let input = self.ty(ctx, x)?.shape;
        let dims: Vec<Dim> = match axes {
            None => input.0.iter().copied().filter(|&d| d != Dim::Fixed(1)).collect(),
            Some(axes) => {
                let at = axes.iter().map(|&a| norm_axis(a, input.rank())).collect::<Result<Vec<_>, _>>();
                let at = at.map_err(|m| ctx.err(m))?;
                if let Some(&a) = at.iter().find(|&&a| input.0[a] != Dim::Fixed(1)) {
                    return Err(ctx.err(format!("cannot squeeze axis {a} of size {} in {input}", input.0[a])));
                }
                input.0.iter().enumerate().filter(|(i, _)| !at.contains(i)).map(|(_, &d)| d).collect()
            }
        };
        self.reshape_to(ctx, x, out, Shape(dims))
    }

    /// The input's shape as an import-time vector (the batch stays symbolic).
    pub(super) fn shape(&mut self, ctx: &Ctx) -> Result<(), OnnxError> {
        let (x, out) = (ctx.req_input(0)?, ctx.out()?);
        let dims = self.ty(ctx, x)?.shape.0;
        let rank = dims.len() as i64;
        let clamp = |v: i64| (if v < 0 { v + rank } else { v }).clamp(0, rank) as usize;
        let (start, end) = if ctx.opset >= 15 {
            let attrs = ctx.attrs();
            (clamp(ctx.attr(attrs.int("start", 0))?), clamp(ctx.attr(attrs.int("end", rank))?))
        } else {
            (0, dims.len())
        };
        let elems = dims.get(start..end.max(start)).unwrap_or(&[]).iter().map(|&d| SymInt::from_dim(d)).collect();
        self.define(out, Slot { ir: None, known: Some(Known::sym_vec(elems)) });
        Ok(())
    }

    pub(super) fn gather(&mut self, ctx: &Ctx) -> Result<(), OnnxError> {
        let (data, indices, out) = (ctx.req_input(0)?, ctx.req_input(1)?, ctx.out()?);
        let axis = ctx.attr(ctx.attrs().int("axis", 0))?;
        let data = self.need_known(ctx, data, "the data input")?;
        let idx = match self.need_known(ctx, indices, "the indices input")? {
            Known::T(Tensor::I64(a)) => a,
            Known::T(Tensor::I32(a)) => a.mapv(i64::from),
            _ => return Err(ctx.err(format!("the indices input (\"{indices}\") must hold integers"))),
        };
        let axis = norm_axis(axis, data.shape().len()).map_err(|m| ctx.err(m))?;
        let mut out_shape = data.shape().to_vec();
        out_shape.splice(axis..=axis, idx.shape().iter().copied());
        if !foldable_size(&out_shape) {
            return Err(ctx.err("the result is too large to compute at import time"));
        }
        let value = (|| -> Result<Known, String> { Ok(map_known!(&data, a => known::gather(a, &idx, axis))) })();
        let value = value.map_err(|m| ctx.err(m))?;
        self.define(out, Slot { ir: None, known: Some(value) });
        Ok(())
    }

    pub(super) fn slice(&mut self, ctx: &Ctx) -> Result<(), OnnxError> {
        let (data, out) = (ctx.req_input(0)?, ctx.out()?);
        let (starts, ends, axes, steps) = if ctx.opset < 10 {
            let attrs = ctx.attrs();
            let starts = ctx.attr(attrs.ints("starts"))?.ok_or_else(|| ctx.err("attribute starts is missing"))?;
            let ends = ctx.attr(attrs.ints("ends"))?.ok_or_else(|| ctx.err("attribute ends is missing"))?;
            (starts, ends, ctx.attr(attrs.ints("axes"))?, None)
        } else {
            let starts = self.known_ints(ctx, ctx.req_input(1)?, "the starts input")?;
            let ends = self.known_ints(ctx, ctx.req_input(2)?, "the ends input")?;
            let axes = match ctx.input(3) {
                Some(n) => Some(self.known_ints(ctx, n, "the axes input")?),
                None => None,
            };
            let steps = match ctx.input(4) {
                Some(n) => Some(self.known_ints(ctx, n, "the steps input")?),
                None => None,
            };
            (starts, ends, axes, steps)
        };
        let axes = axes.unwrap_or_else(|| (0..starts.len() as i64).collect());
        let steps = steps.unwrap_or_else(|| vec![1; starts.len()]);
        if ends.len() != starts.len() || axes.len() != starts.len() || steps.len() != starts.len() {
            return Err(ctx.err("starts, ends, axes and steps have different lengths"));
        }
        if self.peek_known(data).is_none() {
            return self.slice_at_run_time(ctx, data, (&starts, &ends, &axes, &steps));
        }
        let value = self.need_known(ctx, data, "the data input")?;
        let shape = value.shape().to_vec();
        let mut picks: Vec<Vec<usize>> = shape.iter().map(|&d| (0..d).collect()).collect();
        let mut done = vec![false; shape.len()];
        for i in 0..starts.len() {
            let axis = norm_axis(axes[i], shape.len()).map_err(|m| ctx.err(m))?;
            if std::mem::replace(&mut done[axis], true) {
                return Err(ctx.err(format!("axis {axis} is sliced twice")));
            }
            picks[axis] = slice_positions(shape[axis], starts[i], ends[i], steps[i]).map_err(|m| ctx.err(m))?;
        }
        let value = (|| -> Result<Known, String> {
            Ok(map_known!(&value, a => Ok::<_, String>(known::select_each(a, &picks))))
        })();
        let value = value.map_err(|m| ctx.err(m))?;
        self.define(out, Slot { ir: None, known: Some(value) });
        Ok(())
    }

    /// A slice of run-time data: one `slice` per axis it narrows, each a contiguous
    /// range (step 1) of a static axis.
    fn slice_at_run_time(
        &mut self,
        ctx: &Ctx,
        data: &str,
        (starts, ends, axes, steps): (&[i64], &[i64], &[i64], &[i64]),
    ) -> Result<(), OnnxError> {
        let out = ctx.out()?;
        let x = self.ir(ctx, data)?;
        let shape = self.g.ty(x).shape.clone();
        let mut done = vec![false; shape.rank()];
        let mut ranges = Vec::new();
        for i in 0..starts.len() {
            let axis = norm_axis(axes[i], shape.rank()).map_err(|m| ctx.err(m))?;
            if std::mem::replace(&mut done[axis], true) {
                return Err(ctx.err(format!("axis {axis} is sliced twice")));
            }
            let Some(len) = shape.0[axis].fixed() else {
                if starts[i] == 0 && ends[i] >= i64::MAX / 2 && steps[i] == 1 {
                    continue; // all of the batch
                }
                return Err(ctx.err(format!("slicing the batch axis {axis} of run-time data is not supported")));
            };
            let picks = slice_positions(len, starts[i], ends[i], steps[i]).map_err(|m| ctx.err(m))?;
            if picks.is_empty() {
                return Err(ctx.err(format!("the slice of axis {axis} is empty: zero-size tensors are not supported")));
            }
            if steps[i] != 1 {
                return Err(ctx.err(format!(
                    "step {} on axis {axis}: slices of run-time data with a step other than 1 are not supported",
                    steps[i]
                )));
            }
            if picks.len() < len {
                ranges.push((axis, picks[0], picks[0] + picks.len()));
            }
        }
        let mut y = x;
        for (k, &(axis, start, end)) in ranges.iter().enumerate() {
            let op = Op::Slice { axis, start, end };
            y = match k + 1 == ranges.len() {
                true => self.emit(ctx, out, op, &[y])?,
                false => self.emit_tmp(ctx, out, &format!("axis{axis}"), op, &[y])?,
            };
        }
        self.define_ir(out, y);
        Ok(())
    }

    /// Split: one `slice` per output along `axis`, of the sizes given (the `split`
    /// attribute before opset 13, the input from 13) or equal (as many as outputs; at
    /// opset 18 `num_outputs` of `⌈len / n⌉`, the last smaller).
    pub(super) fn split(&mut self, ctx: &Ctx) -> Result<(), OnnxError> {
        let data = ctx.req_input(0)?;
        let attrs = ctx.attrs();
        let x = self.ir(ctx, data)?;
        let shape = self.g.ty(x).shape.clone();
        let axis = norm_axis(ctx.attr(attrs.int("axis", 0))?, shape.rank()).map_err(|m| ctx.err(m))?;
        let Some(len) = shape.0[axis].fixed() else {
            return Err(ctx.err(format!("splitting the batch axis {axis} is not supported")));
        };
        let outputs = ctx.node.output.len();
        let given = match ctx.opset {
            ..13 => ctx.attr(attrs.ints("split"))?,
            _ => match ctx.input(1) {
                Some(n) => Some(self.known_ints(ctx, n, "the split input")?),
                None => None,
            },
        };
        let sizes: Vec<usize> = match given {
            Some(sizes) => {
                let sizes: Option<Vec<usize>> = sizes.iter().map(|&s| usize::try_from(s).ok()).collect();
                let sizes = sizes.ok_or_else(|| ctx.err("split sizes must not be negative"))?;
                if sizes.iter().sum::<usize>() != len || sizes.len() != outputs {
                    return Err(ctx.err(format!(
                        "split sizes {sizes:?} do not divide axis {axis} of {shape} into {outputs} outputs"
                    )));
                }
                sizes
            }
            None => {
                let parts = match ctx.attr(attrs.opt_int("num_outputs"))? {
                    Some(n) if n as usize != outputs || n < 1 => {
                        return Err(ctx.err(format!("num_outputs {n} but {outputs} outputs")));
                    }
                    Some(_) => outputs,
                    None if len % outputs.max(1) != 0 => {
                        return Err(
                            ctx.err(format!("axis {axis} of {shape} does not split into {outputs} equal parts"))
                        );
                    }
                    None => outputs,
                };
                let each = len.div_ceil(parts.max(1));
                (0..parts).map(|i| each.min(len.saturating_sub(i * each))).collect()
            }
        };
        let mut start = 0;
        for (name, &size) in ctx.node.output.iter().zip(&sizes) {
            if size == 0 {
                return Err(ctx.err(format!("output \"{name}\" would be empty: zero-size tensors are not supported")));
            }
            let end = start + size;
            if !name.is_empty() {
                let y = match size == len {
                    true => x,
                    false => self.emit(ctx, name, Op::Slice { axis, start, end }, &[x])?,
                };
                self.define_ir(name, y);
            }
            start = end;
        }
        Ok(())
    }

    pub(super) fn concat(&mut self, ctx: &Ctx) -> Result<(), OnnxError> {
        let out = ctx.out()?;
        let axis = ctx.attr(ctx.attrs().opt_int("axis"))?.ok_or_else(|| ctx.err("attribute axis is missing"))?;
        let inputs = ctx.inputs();
        if inputs.is_empty() {
            return Err(ctx.err("needs at least one input"));
        }
        // Shapes and constants fold; anything known only at run time makes it a
        // run-time concatenation of all the inputs.
        if inputs.iter().any(|name| self.peek_known(name).is_none()) {
            return self.concat_at_run_time(ctx, axis, &inputs);
        }
        let mut parts = Vec::with_capacity(inputs.len());
        for name in &inputs {
            parts.push(self.take_known(name).ok_or_else(|| ctx.err(format!("internal: \"{name}\" lost its value")))?);
        }
        let axis = norm_axis(axis, parts[0].shape().len()).map_err(|m| ctx.err(m))?;
        let value = concat_known(&parts, axis).map_err(|m| ctx.err(m))?;
        self.define(out, Slot { ir: None, known: Some(value) });
        Ok(())
    }

    fn concat_at_run_time(&mut self, ctx: &Ctx, axis: i64, inputs: &[&str]) -> Result<(), OnnxError> {
        let out = ctx.out()?;
        let ids = inputs.iter().map(|name| self.ir(ctx, name)).collect::<Result<Vec<_>, _>>()?;
        let rank = self.g.ty(ids[0]).rank();
        let axis = norm_axis(axis, rank).map_err(|m| ctx.err(m))?;
        let mut sizes = Vec::with_capacity(ids.len());
        for (name, &id) in inputs.iter().zip(&ids) {
            let ty = self.g.ty(id);
            match ty.shape.0.get(axis).and_then(|d| d.fixed()) {
                Some(n) => sizes.push(n),
                None => {
                    let what = if ty.rank() > axis { "the batch axis" } else { "an axis it does not have" };
                    return Err(ctx.err(format!("input \"{name}\" {} is concatenated along {what} ({axis})", ty.shape)));
                }
            }
        }
        let y = self.emit(ctx, out, Op::Concat { axis, sizes }, &ids)?;
        self.define_ir(out, y);
        Ok(())
    }

    /// A tensor filled with one value: folded when small and static, otherwise a
    /// run-time broadcast of the value (which also covers a batch-sized shape).
    pub(super) fn constant_of_shape(&mut self, ctx: &Ctx) -> Result<(), OnnxError> {
        let (spec, out) = (ctx.req_input(0)?, ctx.out()?);
        let spec = self
            .need_known(ctx, spec, "the shape input")?
            .sym_elems()
            .ok_or_else(|| ctx.err("the shape input must hold integers"))?;
        let dims = spec.iter().map(|s| s.to_dim()).collect::<Result<Vec<_>, _>>().map_err(|m| ctx.err(m))?;
        let shape = Shape(dims);
        check_size(ctx, &shape)?;
        let value = match ctx.attr(ctx.attrs().tensor("value"))? {
            Some(t) => {
                super::tensor::refuse_float64(t.data_type, || ctx.describe_value())?;
                super::tensor::read_tensor(t, out, self.base_dir.as_deref())?
            }
            None => Tensor::scalar_f32(0.0),
        };
        if value.len() != 1 {
            return Err(ctx.err(format!("the value attribute must have one element, got {}", value.len())));
        }
        let scalar = (|| -> Result<Known, String> { Ok(map_known!(&Known::T(value), a => known::reshape(a, &[]))) })();
        let scalar = scalar.ok().and_then(|s| s.tensor().cloned());
        let scalar = scalar.ok_or_else(|| ctx.err("the value attribute must be a number"))?;
        if let Some(fixed) = shape.as_fixed().filter(|f| f.iter().product::<usize>() <= SMALL_FOLD) {
            let filled =
                (|| -> Result<Known, String> { Ok(map_known!(&Known::T(scalar), a => known::expand(a, &fixed))) })();
            self.define(out, Slot { ir: None, known: Some(filled.map_err(|m| ctx.err(m))?) });
            return Ok(());
        }
        let c = self.emit_const(ctx, out, "value", scalar)?;
        let id = self.emit(ctx, out, Op::Broadcast { shape }, &[c])?;
        self.define_ir(out, id);
        Ok(())
    }

    /// Bidirectional broadcast to a shape given as an import-time vector.
    pub(super) fn expand(&mut self, ctx: &Ctx) -> Result<(), OnnxError> {
        let (x, spec, out) = (ctx.req_input(0)?, ctx.req_input(1)?, ctx.out()?);
        let spec = self
            .need_known(ctx, spec, "the shape input")?
            .sym_elems()
            .ok_or_else(|| ctx.err("the shape input must hold integers"))?;
        let dims = spec.iter().map(|s| s.to_dim()).collect::<Result<Vec<_>, _>>().map_err(|m| ctx.err(m))?;
        let input = self.ty(ctx, x)?.shape;
        let target = infer::broadcast_shapes(&input, &Shape(dims)).map_err(|m| ctx.err(m))?;
        check_size(ctx, &target)?;
        let fixed = target.as_fixed().filter(|f| f.iter().product::<usize>() <= SMALL_FOLD);
        self.fold_or_emit(
            ctx,
            out,
            &[x],
            |k| match &fixed {
                Some(f) => Ok(Some(map_known!(&k[0], a => known::expand(a, f)))),
                None => Ok(None),
            },
            |imp, ids| imp.emit(ctx, out, Op::Broadcast { shape: target }, ids),
        )
    }
}

/// Positions ONNX Slice keeps on one axis of size `dim` (clamping like numpy).
fn slice_positions(dim: usize, start: i64, end: i64, step: i64) -> Result<Vec<usize>, String> {
    let d = dim as i64;
    if d == 0 {
        return if step == 0 { Err("slice step 0".into()) } else { Ok(Vec::new()) };
    }
    let wrap = |v: i64| if v < 0 { v.saturating_add(d) } else { v };
    let (start, end) = (wrap(start), wrap(end));
    let mut out = Vec::new();
    match step {
        0 => return Err("slice step 0".into()),
        s if s > 0 => {
            let (mut i, end) = (start.clamp(0, d), end.clamp(0, d));
            while i < end {
                out.push(i as usize);
                i = i.saturating_add(s);
            }
        }
        s => {
            let (mut i, end) = (start.clamp(0, d - 1), end.clamp(-1, d - 1));
            while i > end {
                out.push(i as usize);
                i = i.saturating_add(s);
            }
        }
    }
    Ok(out)
}

/// Concatenation of known values of one element type.
fn concat_known(parts: &[Known], axis: usize) -> Result<Known, String> {
    let dtype = parts[0].dtype();
    if parts.iter().any(|p| p.dtype() != dtype) {
        return Err("inputs have different element types".into());
    }
    let total: usize = parts.iter().map(Known::len).sum();
    if total > known::FOLD_LIMIT {
        return Err("the result is too large to compute at import time".into());
    }
    fn cat<T: Clone>(arrays: Vec<&ArrayD<T>>, axis: usize) -> Result<ArrayD<T>, String> {
        known::concat(&arrays, axis)
    }
    Ok(match dtype {
        DType::I64 => {
            let syms: Vec<ArrayD<SymInt>> = parts.iter().filter_map(Known::to_sym).collect();
            Known::sym(cat(syms.iter().collect(), axis)?)
        }
        DType::F32 => Known::T(Tensor::F32(cat(parts.iter().filter_map(|p| p.tensor()?.as_f32()).collect(), axis)?)),
        DType::I32 => Known::T(Tensor::I32(cat(
            parts
                .iter()
                .filter_map(|p| match p {
                    Known::T(Tensor::I32(a)) => Some(a),
                    _ => None,
                })
                .collect(),
            axis,
        )?)),
        DType::Bool => Known::T(Tensor::Bool(cat(
            parts
                .iter()
                .filter_map(|p| match p {
                    Known::T(Tensor::Bool(a)) => Some(a),
                    _ => None,
                })
                .collect(),
            axis,
        )?)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reshape_targets() {
        let input = Shape(vec![Dim::Batch, Dim::Fixed(1), Dim::Fixed(28), Dim::Fixed(28)]);
        let t = resolve_reshape(&input, &[SymInt::Batch, SymInt::Int(-1)], false).unwrap();
        assert_eq!(t.to_string(), "[N,784]");
        let t = resolve_reshape(&input, &[SymInt::Int(-1), SymInt::Int(784)], false).unwrap();
        assert_eq!(t.to_string(), "[N,784]");
        let t = resolve_reshape(&input, &[SymInt::Int(0), SymInt::Int(-1)], false).unwrap();
        assert_eq!(t.to_string(), "[N,784]");
        assert!(resolve_reshape(&input, &[SymInt::Int(-1)], false).is_err());
    }

    #[test]
    fn slice_positions_follow_onnx() {
        assert_eq!(slice_positions(4, 0, 1, 1).unwrap(), vec![0]);
        assert_eq!(slice_positions(4, -1, i64::MAX, 1).unwrap(), vec![3]);
        assert_eq!(slice_positions(4, -1, i64::MIN, -1).unwrap(), vec![3, 2, 1, 0]);
        assert_eq!(slice_positions(4, 1, 100, 2).unwrap(), vec![1, 3]);
        assert_eq!(slice_positions(0, -1, i64::MIN, -1).unwrap(), Vec::<usize>::new());
    }
}
