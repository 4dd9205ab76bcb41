//! Elementwise ops, casts, constants and the identity-like ops (Identity, Dropout).

use super::fold::{self, Arith, Compare, Func};
use super::known::Known;
use super::tensor::read_tensor;
use super::{Ctx, Importer, Slot};
use crate::proto::tensor_proto::DataType;
use crate::OnnxError;
use ndarray::{ArrayD, IxDyn};
use nnc_ir::{BinaryOp, DType, Op, Tensor, UnaryOp};

#[derive(Clone, Copy, Debug)]
pub(crate) enum Bin {
    Arith(Arith, BinaryOp),
    Compare(Compare),
}

impl Importer {
    pub(super) fn binary(&mut self, ctx: &Ctx, bin: Bin) -> Result<(), OnnxError> {
        let (a, b, out) = (ctx.req_input(0)?, ctx.req_input(1)?, ctx.out()?);
        if matches!(bin, Bin::Arith(Arith::Mul, _)) && self.try_fuse_gelu(ctx, a, b, out)? {
            return Ok(());
        }
        self.binary_named(ctx, bin, a, b, out)
    }

    /// Max and Min take any number of inputs: a chain of binary ops.
    pub(super) fn variadic(&mut self, ctx: &Ctx, bin: Bin) -> Result<(), OnnxError> {
        let inputs = ctx.inputs();
        let out = ctx.out()?;
        match inputs.as_slice() {
            [] => Err(ctx.err("needs at least one input")),
            [x] => self.identity_of(ctx, x, out),
            [first, rest @ ..] => {
                let mut acc = first.to_string();
                for (k, next) in rest.iter().enumerate() {
                    let name = if k + 1 == rest.len() { out.to_string() } else { self.fresh(&format!("{out}_{k}")) };
                    self.binary_named(ctx, bin, &acc, next, &name)?;
                    acc = name;
                }
                Ok(())
            }
        }
    }

    /// `min(max(x, lo), hi)`: the bounds are attributes below opset 11 and optional
    /// inputs from 11 on; a missing bound is no bound. With `lo > hi` every element
    /// becomes `hi`, as ONNX says.
    pub(super) fn clip(&mut self, ctx: &Ctx) -> Result<(), OnnxError> {
        let (x, out) = (ctx.req_input(0)?, ctx.out()?);
        let bounds: [Option<String>; 2] = if ctx.opset >= 11 {
            [ctx.input(1).map(str::to_string), ctx.input(2).map(str::to_string)]
        } else {
            let attrs = ctx.attrs();
            let mut named = [None, None];
            for (i, key) in ["min", "max"].into_iter().enumerate() {
                if attrs.get(key).is_some() {
                    let v = ctx.attr(attrs.float(key, 0.0))?;
                    let name = self.fresh(&format!("{out}_{key}"));
                    self.define(&name, Slot { ir: None, known: Some(Known::T(Tensor::scalar_f32(v))) });
                    named[i] = Some(name);
                }
            }
            named
        };
        for b in bounds.iter().flatten() {
            let ty = self.ty(ctx, b)?;
            if ty.rank() != 0 && ty.shape.numel(1) != Some(1) {
                return Err(ctx.err(format!("the bound \"{b}\" must be a scalar, got {}", ty.shape)));
            }
        }
        match bounds {
            [None, None] => self.identity_of(ctx, x, out),
            [Some(lo), None] => self.binary_named(ctx, Bin::Arith(Arith::Max, BinaryOp::Max), x, &lo, out),
            [None, Some(hi)] => self.binary_named(ctx, Bin::Arith(Arith::Min, BinaryOp::Min), x, &hi, out),
            [Some(lo), Some(hi)] => {
                let low = self.fresh(&format!("{out}_lower"));
                self.binary_named(ctx, Bin::Arith(Arith::Max, BinaryOp::Max), x, &lo, &low)?;
                self.binary_named(ctx, Bin::Arith(Arith::Min, BinaryOp::Min), &low, &hi, out)
            }
        }
    }

    fn binary_named(&mut self, ctx: &Ctx, bin: Bin, a: &str, b: &str, out: &str) -> Result<(), OnnxError> {
        match bin {
            Bin::Arith(op, ir_op) => self.fold_or_emit(
                ctx,
                out,
                &[a, b],
                |k| fold::arith(op, &k[0], &k[1]),
                |imp, ids| {
                    let (x, mut y) = (ids[0], ids[1]);
                    // Pow allows an exponent of another type; the IR does not.
                    let to = imp.g.ty(x).dtype;
                    if ir_op == BinaryOp::Pow && imp.g.ty(y).dtype != to {
                        y = imp.emit_tmp(ctx, out, "exponent", Op::Cast { to }, &[y])?;
                    }
                    imp.emit(ctx, out, Op::Binary(ir_op), &[x, y])
                },
            ),
            Bin::Compare(Compare::Equal) => {
                self.fold_only(ctx, out, &[a, b], |k| fold::compare(Compare::Equal, &k[0], &k[1]))
            }
            Bin::Compare(op) => self.fold_or_emit(
                ctx,
                out,
                &[a, b],
                |k| fold::compare(op, &k[0], &k[1]),
                // The IR has only `greater`; `a < b` is `b > a`.
                |imp, ids| {
                    let args = if op == Compare::Less { [ids[1], ids[0]] } else { [ids[0], ids[1]] };
                    imp.emit(ctx, out, Op::Binary(BinaryOp::Greater), &args)
                },
            ),
        }
    }

    pub(super) fn unary(&mut self, ctx: &Ctx, u: UnaryOp, f: Option<Func>) -> Result<(), OnnxError> {
        let (x, out) = (ctx.req_input(0)?, ctx.out()?);
        self.fold_or_emit(
            ctx,
            out,
            &[x],
            |k| match f {
                Some(f) => fold::func(f, &k[0]),
                None => Ok(None),
            },
            |imp, ids| imp.emit(ctx, out, Op::Unary(u), ids),
        )
    }

    pub(super) fn gelu_node(&mut self, ctx: &Ctx) -> Result<(), OnnxError> {
        let approximate = match ctx.attr(ctx.attrs().string("approximate"))?.as_deref() {
            None | Some("none") => false,
            Some("tanh") => true,
            Some(other) => return Err(ctx.err(format!("approximate=\"{other}\" is not one of none, tanh"))),
        };
        self.unary(ctx, UnaryOp::Gelu { approximate }, None)
    }

    pub(super) fn identity(&mut self, ctx: &Ctx) -> Result<(), OnnxError> {
        let (x, out) = (ctx.req_input(0)?, ctx.out()?);
        self.identity_of(ctx, x, out)
    }

    /// `out = x`: an IR identity (keeping the ONNX name on the result), or the same
    /// import-time value.
    fn identity_of(&mut self, ctx: &Ctx, x: &str, out: &str) -> Result<(), OnnxError> {
        self.fold_or_emit(
            ctx,
            out,
            &[x],
            |k| Ok(Some(k[0].clone())),
            |imp, ids| imp.emit(ctx, out, Op::Unary(UnaryOp::Identity), ids),
        )
    }

    /// Inference-mode dropout is the identity and its mask all true. Training mode is
    /// refused rather than silently ignored.
    pub(super) fn dropout(&mut self, ctx: &Ctx) -> Result<(), OnnxError> {
        let (x, out) = (ctx.req_input(0)?, ctx.out()?);
        if let Some(mode) = ctx.input(2) {
            let off = match self.take_known(mode) {
                Some(Known::T(Tensor::Bool(a))) => a.iter().all(|v| !v),
                _ => false,
            };
            if !off {
                return Err(ctx.err("training_mode must be a constant false; only inference-mode Dropout is supported"));
            }
        }
        if let Some(mask) = ctx.node.output.get(1).filter(|m| self.is_used(m)) {
            let shape = self.ty(ctx, x)?.shape;
            let t = self.emit_const(ctx, mask, "true", Tensor::Bool(ArrayD::from_elem(IxDyn(&[]), true)))?;
            let id = self.emit(ctx, mask, Op::Broadcast { shape }, &[t])?;
            self.define_ir(mask, id);
        }
        self.identity_of(ctx, x, out)
    }

    pub(super) fn where_(&mut self, ctx: &Ctx) -> Result<(), OnnxError> {
        let (c, a, b, out) = (ctx.req_input(0)?, ctx.req_input(1)?, ctx.req_input(2)?, ctx.out()?);
        self.fold_or_emit(
            ctx,
            out,
            &[c, a, b],
            |k| fold::select(&k[0], &k[1], &k[2]),
            |imp, ids| imp.emit(ctx, out, Op::Where, ids),
        )
    }

    pub(super) fn cast(&mut self, ctx: &Ctx) -> Result<(), OnnxError> {
        let (x, out) = (ctx.req_input(0)?, ctx.out()?);
        let code = ctx.attr(ctx.attrs().opt_int("to"))?.ok_or_else(|| ctx.err("attribute to is missing"))?;
        let to = match DataType::try_from(code as i32) {
            Ok(DataType::Float) => DType::F32,
            Ok(DataType::Int64) => DType::I64,
            Ok(DataType::Int32) => DType::I32,
            Ok(DataType::Bool) => DType::Bool,
            _ => {
                return Err(ctx.err(format!(
                    "cannot cast to {}; nnc supports float, int64, int32 and bool",
                    super::tensor::type_name(code as i32)
                )))
            }
        };
        self.fold_or_emit(
            ctx,
            out,
            &[x],
            |k| fold::cast(&k[0], to),
            |imp, ids| imp.emit(ctx, out, Op::Cast { to }, ids),
        )
    }

    /// Constants are placed in the IR where the node stands (so an exported graph
    /// re-imports unchanged) and dropped again if only import-time folding reads them.
    pub(super) fn constant(&mut self, ctx: &Ctx) -> Result<(), OnnxError> {
        let out = ctx.out()?;
        let attrs = ctx.attrs();
        let value = if let Some(t) = ctx.attr(attrs.tensor("value"))? {
            super::tensor::refuse_float64(t.data_type, || ctx.describe_value())?;
            read_tensor(t, out, self.base_dir.as_deref())?
        } else if let Some(a) = attrs.get("value_float") {
            Tensor::scalar_f32(a.f)
        } else if let Some(v) = ctx.attr(attrs.floats("value_floats"))? {
            Tensor::F32(ArrayD::from_shape_vec(IxDyn(&[v.len()]), v).map_err(|e| ctx.err(e.to_string()))?)
        } else if let Some(a) = attrs.get("value_int") {
            Tensor::scalar_i64(a.i)
        } else if let Some(v) = ctx.attr(attrs.ints("value_ints"))? {
            Tensor::I64(ArrayD::from_shape_vec(IxDyn(&[v.len()]), v).map_err(|e| ctx.err(e.to_string()))?)
        } else if let Some(a) = ctx.node.attribute.first() {
            return Err(ctx.err(format!("attribute {} is not supported (sparse and string constants)", a.name)));
        } else {
            return Err(ctx.err("has no value attribute"));
        };
        let id = self.emit(ctx, out, Op::Const(value.clone()), &[])?;
        self.define(out, Slot { ir: Some(id), known: Some(Known::T(value)) });
        Ok(())
    }
}
