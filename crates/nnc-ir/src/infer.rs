//! Type inference: the result type of each op from its operand types. The builder
//! uses it to type new values and the verifier to check declared types.

use crate::op::{BinaryOp, Op, UnaryOp};
use crate::types::{DType, Dim, Shape, TensorType};
use crate::window::{Conv, PoolKind};

/// Numpy-style broadcast of two shapes (aligned at the right).
pub fn broadcast_shapes(a: &Shape, b: &Shape) -> Result<Shape, String> {
    let rank = a.rank().max(b.rank());
    let mut dims = Vec::with_capacity(rank);
    for i in 0..rank {
        let da = pick(a, rank, i);
        let db = pick(b, rank, i);
        dims.push(match (da, db) {
            (x, y) if x == y => x,
            (Dim::Fixed(1), y) => y,
            (x, Dim::Fixed(1)) => x,
            _ => return Err(format!("shapes {a} and {b} do not broadcast (axis {i}: {da} vs {db})")),
        });
    }
    Ok(Shape(dims))
}

fn pick(s: &Shape, rank: usize, i: usize) -> Dim {
    let offset = rank - s.rank();
    if i < offset {
        Dim::Fixed(1)
    } else {
        s.0[i - offset]
    }
}

/// The result type of `op` applied to operands of the given types.
pub fn infer_type(op: &Op, args: &[&TensorType]) -> Result<TensorType, String> {
    if args.len() != op.arity() {
        return Err(format!("takes {} operands, got {}", op.arity(), args.len()));
    }
    match op {
        Op::Input => Err("an input's type is declared, not inferred".into()),
        Op::Param { init } | Op::State { init } => match init {
            Some(t) => Ok(TensorType::new(t.dtype(), t.ir_shape())),
            None => Err("a parameter or state without an initial value has a declared type".into()),
        },
        Op::Const(t) => Ok(TensorType::new(t.dtype(), t.ir_shape())),
        Op::Unary(u) => {
            let x = args[0];
            let numeric_ok =
                matches!(u, UnaryOp::Identity) || (matches!(u, UnaryOp::Neg | UnaryOp::Relu) && x.dtype != DType::Bool);
            if x.dtype != DType::F32 && !numeric_ok {
                return Err(format!("needs f32, got {}", x.dtype));
            }
            Ok(x.clone())
        }
        Op::Binary(b) => {
            let (x, y) = (args[0], args[1]);
            if x.dtype != y.dtype {
                return Err(format!("operand types differ: {} vs {}", x.dtype, y.dtype));
            }
            if x.dtype == DType::Bool {
                return Err("needs numbers, got bool".into());
            }
            if matches!(b, BinaryOp::Pow) && x.dtype != DType::F32 {
                return Err(format!("needs f32, got {}", x.dtype));
            }
            let shape = broadcast_shapes(&x.shape, &y.shape)?;
            let dtype = if b.is_comparison() { DType::Bool } else { x.dtype };
            Ok(TensorType::new(dtype, shape))
        }
        Op::Where => {
            let (c, x, y) = (args[0], args[1], args[2]);
            if c.dtype != DType::Bool {
                return Err(format!("condition must be bool, got {}", c.dtype));
            }
            if x.dtype != y.dtype {
                return Err(format!("branch types differ: {} vs {}", x.dtype, y.dtype));
            }
            let shape = broadcast_shapes(&broadcast_shapes(&c.shape, &x.shape)?, &y.shape)?;
            Ok(TensorType::new(x.dtype, shape))
        }
        Op::MatMul { trans_a, trans_b } => infer_matmul(args[0], args[1], *trans_a, *trans_b),
        Op::Softmax { axis } | Op::LogSoftmax { axis } => {
            let x = args[0];
            if x.dtype != DType::F32 {
                return Err(format!("needs f32, got {}", x.dtype));
            }
            if *axis >= x.rank() {
                return Err(format!("axis {axis} out of range for rank {}", x.rank()));
            }
            Ok(x.clone())
        }
        Op::Reduce { axes, keep_dims, .. } => {
            let x = args[0];
            if x.dtype == DType::Bool {
                return Err("needs numbers, got bool".into());
            }
            if axes.windows(2).any(|w| w[0] >= w[1]) {
                return Err(format!("axes {axes:?} must be sorted and distinct"));
            }
            if let Some(a) = axes.iter().find(|&&a| a >= x.rank()) {
                return Err(format!("axis {a} out of range for rank {}", x.rank()));
            }
            let dims = x
                .shape
                .0
                .iter()
                .enumerate()
                .filter_map(|(i, &d)| match (axes.contains(&i), keep_dims) {
                    (false, _) => Some(d),
                    (true, true) => Some(Dim::Fixed(1)),
                    (true, false) => None,
                })
                .collect();
            Ok(TensorType::new(x.dtype, Shape(dims)))
        }
        Op::Reshape { shape } => {
            let x = args[0];
            if x.shape.batch_count() != shape.batch_count() || shape.batch_count() > 1 {
                return Err(format!("cannot reshape {} to {shape}: the batch dimension must be kept once", x.shape));
            }
            if x.shape.fixed_product() != shape.fixed_product() {
                return Err(format!("cannot reshape {} to {shape}: element counts differ", x.shape));
            }
            Ok(TensorType::new(x.dtype, shape.clone()))
        }
        Op::Transpose { perm } => {
            let x = args[0];
            let mut seen = vec![false; x.rank()];
            if perm.len() != x.rank() || perm.iter().any(|&p| p >= x.rank() || std::mem::replace(&mut seen[p], true)) {
                return Err(format!("{perm:?} is not a permutation of {} axes", x.rank()));
            }
            Ok(TensorType::new(x.dtype, Shape(perm.iter().map(|&p| x.shape.0[p]).collect())))
        }
        Op::Broadcast { shape } => {
            let x = args[0];
            let out = broadcast_shapes(&x.shape, shape)?;
            if &out != shape {
                return Err(format!("cannot broadcast {} to {shape}", x.shape));
            }
            Ok(TensorType::new(x.dtype, shape.clone()))
        }
        Op::Cast { to } => Ok(TensorType::new(*to, args[0].shape.clone())),
        Op::OneHot { depth } => {
            let x = args[0];
            if !matches!(x.dtype, DType::I64 | DType::I32) {
                return Err(format!("needs integer class indices, got {}", x.dtype));
            }
            if *depth == 0 {
                return Err("depth must be at least 1".into());
            }
            let mut dims = x.shape.0.clone();
            dims.push(Dim::Fixed(*depth));
            Ok(TensorType::new(DType::F32, Shape(dims)))
        }
        Op::Concat { axis, sizes } => {
            let first = args.first().ok_or("needs at least one operand")?;
            let along = |t: &TensorType| -> Result<usize, String> {
                match t.shape.0.get(*axis) {
                    Some(Dim::Fixed(n)) => Ok(*n),
                    Some(Dim::Batch) => Err(format!("cannot concatenate along the batch axis {axis}")),
                    None => Err(format!("axis {axis} is out of range for {}", t.shape)),
                }
            };
            let mut total = 0usize;
            for (i, (t, &size)) in args.iter().zip(sizes).enumerate() {
                if t.dtype != first.dtype {
                    return Err(format!("operand types differ: {} vs {}", first.dtype, t.dtype));
                }
                let same_rest =
                    t.rank() == first.rank() && (0..t.rank()).all(|a| a == *axis || t.shape.0[a] == first.shape.0[a]);
                if !same_rest {
                    return Err(format!("operand {i} {} differs from {} off axis {axis}", t.shape, first.shape));
                }
                if along(t)? != size {
                    return Err(format!("operand {i} {} is not {size} long on axis {axis}", t.shape));
                }
                total = total.checked_add(size).ok_or("the concatenation's size overflows")?;
            }
            let mut dims = first.shape.0.clone();
            dims[*axis] = Dim::Fixed(total);
            Ok(TensorType::new(first.dtype, Shape(dims)))
        }
        Op::Slice { axis, start, end } => {
            let x = args[0];
            let len = match x.shape.0.get(*axis) {
                Some(Dim::Fixed(n)) => *n,
                Some(Dim::Batch) => return Err(format!("cannot slice along the batch axis {axis}")),
                None => return Err(format!("axis {axis} is out of range for {}", x.shape)),
            };
            if start >= end || *end > len {
                return Err(format!("[{start}, {end}) is not a non-empty range of axis {axis} of {}", x.shape));
            }
            let mut dims = x.shape.0.clone();
            dims[*axis] = Dim::Fixed(end - start);
            Ok(TensorType::new(x.dtype, Shape(dims)))
        }
        Op::Conv(conv) => {
            let (x, w) = (image(args[0], "input")?, image(args[1], "weight")?);
            let (c, spatial) = channels_and_spatial(x, "input")?;
            let wdims = fixed_dims(w, "weight")?;
            let (m, cg) = (wdims[0], wdims[1]);
            check_groups(conv, c, m, cg)?;
            if wdims[2..] != conv.window.kernel[..] {
                return Err(format!("weight {} does not have the kernel {:?}", w.shape, conv.window.kernel));
            }
            let out = conv.window.output_size(&spatial, false)?;
            Ok(image_type(x.shape.0[0], m, &out))
        }
        Op::ConvBackwardData { conv, input } => {
            let (dy, w) = (image(args[0], "output gradient")?, image(args[1], "weight")?);
            let (m, out) = channels_and_spatial(dy, "output gradient")?;
            let wdims = fixed_dims(w, "weight")?;
            let cg = wdims[1];
            let c = cg.checked_mul(conv.groups).ok_or("channel count overflows")?;
            check_groups(conv, c, wdims[0], cg)?;
            if wdims[0] != m {
                return Err(format!("weight {} has {} output channels, the gradient {m}", w.shape, wdims[0]));
            }
            if wdims[2..] != conv.window.kernel[..] {
                return Err(format!("weight {} does not have the kernel {:?}", w.shape, conv.window.kernel));
            }
            expect_output(conv.window.output_size(input, false)?, &out, input)?;
            Ok(image_type(dy.shape.0[0], c, input))
        }
        Op::ConvBackwardFilter { conv } => {
            let (x, dy) = (image(args[0], "input")?, image(args[1], "output gradient")?);
            let (c, spatial) = channels_and_spatial(x, "input")?;
            let (m, out) = channels_and_spatial(dy, "output gradient")?;
            if x.shape.0[0] != dy.shape.0[0] {
                return Err(format!("input {} and output gradient {} differ in the batch", x.shape, dy.shape));
            }
            if conv.groups == 0 || !c.is_multiple_of(conv.groups) {
                return Err(format!("{c} input channels do not split into {} groups", conv.groups));
            }
            check_groups(conv, c, m, c / conv.groups)?;
            expect_output(conv.window.output_size(&spatial, false)?, &out, &spatial)?;
            let mut dims = vec![m, c / conv.groups];
            dims.extend(&conv.window.kernel);
            Ok(TensorType::new(DType::F32, Shape::fixed(&dims)))
        }
        Op::Pool(pool) => {
            let x = image(args[0], "input")?;
            let (c, spatial) = channels_and_spatial(x, "input")?;
            pool.check()?;
            let out = pool.window.output_size(&spatial, pool.ceil_mode)?;
            Ok(image_type(x.shape.0[0], c, &out))
        }
        Op::PoolBackward { pool, input } => {
            let dy = image(args[args.len() - 1], "output gradient")?;
            let (c, out) = channels_and_spatial(dy, "output gradient")?;
            pool.check()?;
            if let PoolKind::Max = pool.kind {
                let x = image(args[0], "input")?;
                let (cx, spatial) = channels_and_spatial(x, "input")?;
                if x.shape.0[0] != dy.shape.0[0] || cx != c || &spatial != input {
                    return Err(format!("input {} does not match the output gradient {}", x.shape, dy.shape));
                }
            }
            expect_output(pool.window.output_size(input, pool.ceil_mode)?, &out, input)?;
            Ok(image_type(dy.shape.0[0], c, input))
        }
        Op::Fused(f) => crate::fused::infer(f, args),
    }
}

/// An f32 `[N, C, spatial..]` operand (the batch, or a static size, first).
fn image<'a>(t: &'a TensorType, what: &str) -> Result<&'a TensorType, String> {
    if t.dtype != DType::F32 {
        return Err(format!("the {what} must be f32, got {}", t.dtype));
    }
    if t.rank() < 3 {
        return Err(format!("the {what} {} needs a batch, a channel and at least one spatial axis", t.shape));
    }
    Ok(t)
}

/// The static sizes after the leading axis.
fn channels_and_spatial(t: &TensorType, what: &str) -> Result<(usize, Vec<usize>), String> {
    let rest: Option<Vec<usize>> = t.shape.0[1..].iter().map(|d| d.fixed()).collect();
    let rest = rest.ok_or_else(|| format!("the {what} {} may have the batch only on its first axis", t.shape))?;
    Ok((rest[0], rest[1..].to_vec()))
}

fn fixed_dims(t: &TensorType, what: &str) -> Result<Vec<usize>, String> {
    t.shape.as_fixed().ok_or_else(|| format!("the {what} {} must have a static shape", t.shape))
}

/// `C` input and `M` output channels, a weight with `cg` input channels per group.
fn check_groups(conv: &Conv, c: usize, m: usize, cg: usize) -> Result<(), String> {
    let g = conv.groups;
    if g == 0 {
        return Err("groups must be at least 1".into());
    }
    if cg == 0 || c != cg * g {
        return Err(format!("{c} input channels do not fit a weight of {cg} channels per group in {g} groups"));
    }
    if m == 0 || !m.is_multiple_of(g) {
        return Err(format!("{m} output channels do not split into {g} groups"));
    }
    Ok(())
}

fn expect_output(expected: Vec<usize>, got: &[usize], input: &[usize]) -> Result<(), String> {
    if expected != got {
        return Err(format!("an input of spatial size {input:?} gives an output of {expected:?}, not {got:?}"));
    }
    Ok(())
}

fn image_type(lead: Dim, channels: usize, spatial: &[usize]) -> TensorType {
    let mut dims = vec![lead, Dim::Fixed(channels)];
    dims.extend(spatial.iter().map(|&s| Dim::Fixed(s)));
    TensorType::new(DType::F32, Shape(dims))
}

pub(crate) fn infer_matmul(a: &TensorType, b: &TensorType, trans_a: bool, trans_b: bool) -> Result<TensorType, String> {
    if a.dtype != DType::F32 || b.dtype != DType::F32 {
        return Err(format!("needs f32 operands, got {} and {}", a.dtype, b.dtype));
    }
    if a.rank() < 2 || b.rank() < 2 {
        return Err(format!("needs operands of rank >= 2, got {} and {}", a.shape, b.shape));
    }
    let (ra, rb) = (a.rank(), b.rank());
    let (m, ka) = if trans_a { (a.shape.0[ra - 1], a.shape.0[ra - 2]) } else { (a.shape.0[ra - 2], a.shape.0[ra - 1]) };
    let (kb, n) = if trans_b { (b.shape.0[rb - 1], b.shape.0[rb - 2]) } else { (b.shape.0[rb - 2], b.shape.0[rb - 1]) };
    if ka != kb {
        return Err(format!(
            "inner dimensions differ: {}{} x {}{} contracts {ka} with {kb}",
            a.shape,
            if trans_a { "ᵀ" } else { "" },
            b.shape,
            if trans_b { "ᵀ" } else { "" }
        ));
    }
    let lead = broadcast_shapes(&Shape(a.shape.0[..ra - 2].to_vec()), &Shape(b.shape.0[..rb - 2].to_vec()))?;
    let mut dims = lead.0;
    dims.push(m);
    dims.push(n);
    Ok(TensorType::new(DType::F32, Shape(dims)))
}
