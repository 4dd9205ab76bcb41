//! Kernel bodies of single values and of fused kernels.

use super::{Lowering, TWO_BATCH};
use crate::kernels::elementwise;
use crate::microkernel::KernelFamily;
use crate::program::*;
use crate::shape::{broadcast_strides, dims, strides, Nest};
use nnc_ir::{CeOut, DType, FusedOp, GradOut, Graph, Op, ReduceOp, Size, TensorType, UpdateOut, ValueId};

impl Lowering<'_> {
    pub(super) fn lower_value(&mut self, id: ValueId, family: &dyn KernelFamily) -> Result<Body, String> {
        let g = self.g;
        let v = g.value(id);
        let arr = |a: ValueId| Arr { slot: a.index(), dtype: g.ty(a).dtype };
        let out = arr(id);
        let func = match &v.op {
            Op::Unary(u) => EwFunc::Unary(*u),
            Op::Binary(b) => EwFunc::Binary(*b),
            Op::Where => EwFunc::Where,
            Op::Cast { .. } => EwFunc::Cast,
            Op::Broadcast { .. } => EwFunc::Copy,
            Op::Transpose { perm } => {
                let x = v.args[0];
                let sx = strides(&dims(&g.ty(x).shape)).ok_or(TWO_BATCH)?;
                let od = dims(&v.ty.shape);
                let so = strides(&od).ok_or(TWO_BATCH)?;
                let read: Vec<Size> = perm.iter().map(|&p| sx[p]).collect();
                let nest = Nest::collapse(&od, &[so, read]);
                return Ok(Body::Elementwise(Elementwise { func: EwFunc::Copy, out, args: vec![arr(x)], nest }));
            }
            Op::MatMul { trans_a, trans_b } => {
                let operands = (v.args[0], v.args[1]);
                return self
                    .lower_matmul(operands, (id.index(), &v.ty.shape), (*trans_a, *trans_b), Vec::new(), family)
                    .map(|mm| Body::MatMul(Box::new(mm)));
            }
            Op::Softmax { axis } | Op::LogSoftmax { axis } => {
                let d = dims(&v.ty.shape);
                let prod = |s: &[Size]| s.iter().try_fold(Size::ONE, |acc, &x| acc.checked_mul(x)).ok_or(TWO_BATCH);
                return Ok(Body::Softmax(Softmax {
                    log: matches!(v.op, Op::LogSoftmax { .. }),
                    x: arr(v.args[0]),
                    out,
                    outer: prod(&d[..*axis])?,
                    len: d[*axis],
                    inner: prod(&d[*axis + 1..])?,
                }));
            }
            Op::Reduce { op, axes, keep_dims } => {
                let x = v.args[0];
                let dx = dims(&g.ty(x).shape);
                let sx = strides(&dx).ok_or(TWO_BATCH)?;
                let so = strides(&dims(&v.ty.shape)).ok_or(TWO_BATCH)?;
                let mut out_map = Vec::with_capacity(dx.len());
                let mut j = 0;
                for i in 0..dx.len() {
                    if axes.contains(&i) {
                        out_map.push(Size::ZERO);
                        if *keep_dims {
                            j += 1;
                        }
                    } else {
                        out_map.push(so[j]);
                        j += 1;
                    }
                }
                let count = axes.iter().try_fold(Size::ONE, |acc, &a| acc.checked_mul(dx[a])).ok_or(TWO_BATCH)?;
                return Ok(Body::Reduce(Reduce {
                    op: *op,
                    input: arr(x),
                    out,
                    nest: Nest::collapse(&dx, &[out_map, sx]),
                    out_numel: Size::numel(&v.ty.shape).ok_or(TWO_BATCH)?,
                    count,
                }));
            }
            Op::OneHot { depth } => {
                let x = v.args[0];
                if let Some(i) = self.input_index(x) {
                    self.label_checks.push((i, *depth as u64, id));
                }
                return Ok(Body::OneHot(OneHot {
                    idx: arr(x),
                    out,
                    rows: Size::numel(&g.ty(x).shape).ok_or(TWO_BATCH)?,
                    depth: *depth as u64,
                }));
            }
            Op::Concat { axis, sizes } => {
                let (rows, inner) = rows_and_inner(&v.ty.shape, *axis)?;
                let total: u64 = sizes.iter().map(|&s| s as u64).sum();
                let mut at = 0;
                let parts = v
                    .args
                    .iter()
                    .zip(sizes)
                    .map(|(&a, &size)| {
                        let len = size as u64 * inner;
                        let part = CopyPart { src: arr(a), src_row: len, src_at: 0, out_at: at, len };
                        at += len;
                        part
                    })
                    .collect();
                return Ok(Body::Copy(BlockCopy { out, out_row: total * inner, rows, parts }));
            }
            Op::Slice { axis, start, end } => {
                let x = v.args[0];
                let (rows, inner) = rows_and_inner(&g.ty(x).shape, *axis)?;
                let dim = g.ty(x).shape.0[*axis].fixed().ok_or("internal: a slice of the batch axis")? as u64;
                let len = (end - start) as u64 * inner;
                let part =
                    CopyPart { src: arr(x), src_row: dim * inner, src_at: *start as u64 * inner, out_at: 0, len };
                return Ok(Body::Copy(BlockCopy { out, out_row: len, rows, parts: vec![part] }));
            }
            Op::Conv(_)
            | Op::ConvBackwardData { .. }
            | Op::ConvBackwardFilter { .. }
            | Op::Pool(_)
            | Op::PoolBackward { .. } => return self.lower_window(id, family),
            // Leaves and aliases have no kernel; fused ops go through `lower_fused`.
            Op::Input | Op::Param { .. } | Op::State { .. } | Op::Const(_) | Op::Reshape { .. } | Op::Fused(_) => {
                return Err("internal: this value has no kernel of its own".into());
            }
        };
        // Elementwise with numpy broadcasting by strides.
        let od = dims(&v.ty.shape);
        let mut all = vec![strides(&od).ok_or(TWO_BATCH)?];
        for &a in &v.args {
            all.push(broadcast_strides(&g.ty(a).shape, od.len()).ok_or(TWO_BATCH)?);
        }
        let args: Vec<Arr> = v.args.iter().map(|&a| arr(a)).collect();
        let dtypes: Vec<DType> = args.iter().map(|a| a.dtype).collect();
        if !elementwise::supported(func, &dtypes, out.dtype) {
            return Err(format!("no kernel for these operand types ({dtypes:?} → {})", out.dtype));
        }
        Ok(Body::Elementwise(Elementwise { func, out, args, nest: Nest::collapse(&od, &all) }))
    }

    /// The kernel of a fused op's sibling group, led by `id`, computing `results` (its
    /// column sums are kernels of their own, see [`column_sum`]).
    pub(super) fn lower_fused(
        &mut self,
        id: ValueId,
        f: &FusedOp,
        results: &[ValueId],
        family: &dyn KernelFamily,
    ) -> Result<Body, String> {
        let g = self.g;
        let v = g.value(id);
        let args = v.args.clone();
        let result =
            |want: FusedOp| results.iter().copied().find(|&s| matches!(&g.value(s).op, Op::Fused(f) if *f == want));
        // A buffer of `ty` for a result: the sibling's own, or scratch when nothing
        // needs that result but the kernel still produces it.
        let buffer = |l: &mut Self, sibling: Option<ValueId>, ty: &nnc_ir::TensorType| -> Result<usize, String> {
            match sibling {
                Some(s) => Ok(s.index()),
                None => {
                    let elems = Size::numel(&ty.shape).ok_or(TWO_BATCH)?;
                    Ok(l.scratch_slot(elems.scale(4).ok_or(TWO_BATCH)?))
                }
            }
        };
        let two_d = |ty: &nnc_ir::TensorType| ty.rank() == 2;

        match f.clone() {
            FusedOp::Conv { .. } => self.lower_window(id, family),
            FusedOp::Dense { trans_a, trans_b, alpha, bias, act } => {
                let mut ops = Vec::new();
                if alpha != 1.0 {
                    ops.push(EpilogueOp::Scale(alpha));
                }
                if bias {
                    ops.push(EpilogueOp::Bias(args[2].index()));
                }
                ops.extend(act.map(EpilogueOp::Activation));
                let out = (id.index(), &v.ty.shape);
                let mm = self.lower_matmul((args[0], args[1]), out, (trans_a, trans_b), ops, family)?;
                Ok(Body::MatMul(Box::new(mm)))
            }
            FusedOp::DenseReluGrad { trans_a, trans_b, .. } => {
                let ty = g.ty(args[2]).clone();
                if !two_d(&ty) {
                    return Err("the gradient must be 2-D".into());
                }
                let grad = result(FusedOp::DenseReluGrad { trans_a, trans_b, out: GradOut::Grad });
                let c = buffer(self, grad, &ty)?;
                let mask = vec![EpilogueOp::ReluMask(args[2].index())];
                let mm = self.lower_matmul((args[0], args[1]), (c, &ty.shape), (trans_a, trans_b), mask, family)?;
                self.gradients.push((id, c, ty));
                Ok(Body::MatMul(Box::new(mm)))
            }
            FusedOp::SoftmaxCrossEntropy { .. } => {
                let ty = g.ty(args[0]).clone();
                let d = dims(&ty.shape);
                let classes = d[1].as_fixed().ok_or("the class count must be static")?;
                let grad_value = result(FusedOp::SoftmaxCrossEntropy { out: CeOut::Grad });
                let grad = buffer(self, grad_value, &ty)?;
                let row_ll = self.scratch_slot(d[0].scale(4).ok_or(TWO_BATCH)?);
                let labels = Arr { slot: args[1].index(), dtype: g.ty(args[1]).dtype };
                if let Some(i) = self.input_index(args[1]) {
                    self.label_checks.push((i, classes, id));
                }
                let loss = result(FusedOp::SoftmaxCrossEntropy { out: CeOut::Loss }).map(|s| s.index());
                let ce = CrossEntropy { logits: args[0].index(), labels, grad, row_ll, loss, rows: d[0], classes };
                self.gradients.push((id, grad, ty));
                Ok(Body::CrossEntropy(ce))
            }
            FusedOp::Update { rule, .. } | FusedOp::DenseUpdate { rule, .. } => {
                let dense = matches!(f, FusedOp::DenseUpdate { .. });
                let first = if dense { 2 } else { 0 }; // operand index of `p`
                let p = args[first];
                let ty = g.ty(p).clone();
                let states: Vec<usize> = args[first + 1..first + 1 + rule.states()].iter().map(|a| a.index()).collect();
                let after_states = first + 1 + rule.states();
                if dense && !two_d(&ty) {
                    return Err("the parameter must be 2-D".into());
                }
                // A fused product's gradient is scratch: written by the product, read
                // by the epilogue.
                let (g_slot, scalars) = if dense {
                    (buffer(self, None, &ty)?, &args[after_states..])
                } else {
                    (args[after_states].index(), &args[after_states + 1..])
                };
                let out = |o: UpdateOut| {
                    let op = match f {
                        FusedOp::DenseUpdate { trans_a, trans_b, .. } => {
                            FusedOp::DenseUpdate { trans_a: *trans_a, trans_b: *trans_b, rule, out: o }
                        }
                        _ => FusedOp::Update { rule, out: o },
                    };
                    result(op).map(|s| s.index())
                };
                let update = Update {
                    rule,
                    p: p.index(),
                    states,
                    g: g_slot,
                    scalars: scalars.iter().map(|a| a.index()).collect(),
                    p_out: out(UpdateOut::Param),
                    m_out: out(UpdateOut::M),
                    v_out: out(UpdateOut::V),
                    len: Size::numel(&ty.shape).ok_or(TWO_BATCH)?,
                };
                let FusedOp::DenseUpdate { trans_a, trans_b, .. } = *f else {
                    return Ok(Body::Update(update));
                };
                let c = update.g;
                let ops = vec![EpilogueOp::Update(update)];
                let mm = self.lower_matmul((args[0], args[1]), (c, &ty.shape), (trans_a, trans_b), ops, family)?;
                Ok(Body::MatMul(Box::new(mm)))
            }
        }
    }
}

/// The column sums of a fused kernel's `[m, n]` gradient of type `ty` at `grad` into
/// `value` (a bias gradient): a reduction over the rows.
pub(super) fn column_sum(g: &Graph, grad: usize, ty: &TensorType, value: ValueId) -> Result<Body, String> {
    let d = dims(&ty.shape);
    let [m, n] = d[..] else { return Err("the gradient must be 2-D".into()) };
    let nest = Nest::collapse(&d, &[vec![Size::ZERO, Size::ONE], vec![n, Size::ONE]]);
    let out = Arr { slot: value.index(), dtype: g.ty(value).dtype };
    let input = Arr { slot: grad, dtype: DType::F32 };
    Ok(Body::Reduce(Reduce { op: ReduceOp::Sum, input, out, nest, out_numel: n, count: m }))
}

/// A shape seen as `[rows, dims[axis], inner]` around `axis`: the rows (with the
/// batch, if it comes before the axis) and the elements after the axis (static).
fn rows_and_inner(shape: &nnc_ir::Shape, axis: usize) -> Result<(Size, u64), String> {
    let d = dims(shape);
    let rows = d[..axis].iter().try_fold(Size::ONE, |acc, &x| acc.checked_mul(x)).ok_or(TWO_BATCH)?;
    let inner = d[axis + 1..].iter().try_fold(Size::ONE, |acc, &x| acc.checked_mul(x)).ok_or(TWO_BATCH)?;
    let inner = inner.as_fixed().ok_or("no compiled kernel joins or slices blocks that hold the batch axis")?;
    Ok((rows, inner))
}

/// A convolution's or pooling's kernel, its spatial axes padded to three.
pub(super) fn window_kernel(g: &Graph, id: ValueId) -> Result<WindowKernel, String> {
    let v = g.value(id);
    let static_dims = |a: ValueId| -> Result<(Size, Vec<u64>), String> {
        let dims = &g.ty(a).shape.0;
        let rest: Option<Vec<u64>> = dims[1..].iter().map(|d| d.fixed().map(|x| x as u64)).collect();
        Ok((Size::of(dims[0]), rest.ok_or("internal: a window operand with the batch past its first axis")?))
    };
    let (batch, _) = static_dims(id)?;
    let mut epilogue = None;
    let (op, window, groups, image, grad) = match &v.op {
        Op::Conv(c) => (WindowOp::Conv, &c.window, c.groups, v.args[0], id),
        Op::Fused(FusedOp::Conv { conv, epilogue: e }) => {
            let mut slots = v.args[2..].iter().map(|a| a.index());
            let (bias, residual) = (e.bias.then(|| slots.next()).flatten(), e.residual.then(|| slots.next()).flatten());
            epilogue = Some(OutputEpilogue { bias, residual, act: e.act, min: e.min, max: e.max });
            (WindowOp::Conv, &conv.window, conv.groups, v.args[0], id)
        }
        Op::ConvBackwardData { conv, .. } => (WindowOp::ConvData, &conv.window, conv.groups, id, v.args[0]),
        Op::ConvBackwardFilter { conv } => (WindowOp::ConvFilter, &conv.window, conv.groups, v.args[0], v.args[1]),
        Op::Pool(p) => (WindowOp::Pool(p.kind), &p.window, 0, v.args[0], id),
        Op::PoolBackward { pool, .. } => {
            (WindowOp::PoolBackward(pool.kind), &pool.window, 0, id, v.args[v.args.len() - 1])
        }
        _ => return Err("internal: not a window op".into()),
    };
    let (_, x_dims) = static_dims(image)?;
    let (_, y_dims) = static_dims(grad)?;
    let batch = if matches!(op, WindowOp::ConvFilter) { static_dims(image)?.0 } else { batch };
    let r = window.rank();
    if r > 3 {
        return Err(format!("{}-D windows have no compiled kernel (1-, 2- and 3-D do)", r));
    }
    let pad3 = |v: &[u64], fill: u64| -> [u64; 3] {
        let mut a = [fill; 3];
        a[3 - v.len()..].copy_from_slice(v);
        a
    };
    let u = |v: &[usize]| v.iter().map(|&x| x as u64).collect::<Vec<u64>>();
    let (c, m) = (x_dims[0], y_dims[0]);
    let (groups, cg, mg) = if groups == 0 { (c, 1, 1) } else { (groups as u64, c / groups as u64, m / groups as u64) };
    Ok(WindowKernel {
        op,
        args: v.args.iter().map(|a| a.index()).collect(),
        out: id.index(),
        batch,
        input: pad3(&x_dims[1..], 1),
        output: pad3(&y_dims[1..], 1),
        kernel: pad3(&u(&window.kernel), 1),
        strides: pad3(&u(&window.strides), 1),
        dilations: pad3(&u(&window.dilations), 1),
        pads_begin: pad3(&u(&window.pads_begin), 0),
        pads_end: pad3(&u(&window.pads_end), 0),
        groups,
        cg,
        mg,
        by_rows: false,
        padded: None,
        epilogue,
    })
}
