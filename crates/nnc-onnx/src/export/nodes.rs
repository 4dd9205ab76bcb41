//! The ONNX nodes for each IR op. The main node of a value is named after the value
//! and outputs it; helper values get fresh names derived from it (`<name>::...`).
//!
//! Where ONNX has no direct equivalent the forms are chosen so the importer maps them
//! back to the same op: a 2-D matmul with transpose flags is a Gemm without bias, a
//! batched one a marked Transpose + MatMul, GELU below opset 20 its erf (or tanh)
//! formula, a batch-sized broadcast an Expand whose shape is computed with
//! Shape/Gather/Concat.
//!
//! Two forms only exist below opset 13 and import as what they are, not as the
//! original op: a softmax over an inner axis (Transpose, Softmax, Transpose) and a
//! reduction over no axes (Identity).

use super::{proto_build as pb, Exporter};
use crate::meta;
use crate::OnnxError;
use nnc_ir::{BinaryOp, Dim, Op, ReduceOp, Shape, Tensor, UnaryOp, ValueId};

impl Exporter<'_> {
    pub(super) fn op_nodes(&mut self, id: ValueId) -> Result<(), OnnxError> {
        let g = self.g;
        let v = g.value(id);
        let name = v.name.as_str();
        let args: Vec<&str> = v.args.iter().map(|&a| g.name_of(a)).collect();
        match &v.op {
            Op::Input | Op::Param { .. } | Op::State { .. } => {}
            Op::Const(t) => {
                self.node("Constant", &[], name, vec![pb::attr_tensor("value", pb::tensor(name, t))]);
            }
            Op::Unary(u) => self.unary(name, *u, args[0]),
            Op::Binary(b) => {
                let op_type = match b {
                    BinaryOp::Add => "Add",
                    BinaryOp::Sub => "Sub",
                    BinaryOp::Mul => "Mul",
                    BinaryOp::Div => "Div",
                    BinaryOp::Pow => "Pow",
                    BinaryOp::Max => "Max",
                    BinaryOp::Min => "Min",
                    BinaryOp::Greater => "Greater",
                };
                self.node(op_type, &args, name, vec![]);
            }
            Op::Where => self.node("Where", &args, name, vec![]),
            Op::MatMul { trans_a, trans_b } => self.matmul(name, v.args[0], v.args[1], *trans_a, *trans_b),
            Op::Softmax { axis } => self.softmax("Softmax", name, args[0], *axis, v.ty.rank()),
            Op::LogSoftmax { axis } => self.softmax("LogSoftmax", name, args[0], *axis, v.ty.rank()),
            Op::Reduce { op, axes, keep_dims } => self.reduce(name, *op, args[0], axes, *keep_dims),
            Op::Reshape { shape } => self.reshape(name, args[0], shape)?,
            Op::Transpose { perm } => {
                let perm = perm.iter().map(|&p| p as i64).collect();
                self.node("Transpose", &args, name, vec![pb::attr_ints("perm", perm)]);
            }
            Op::Broadcast { shape } => self.broadcast(name, args[0], shape)?,
            Op::OneHot { depth } => {
                let depth = self.ints_initializer(&format!("{name}::depth"), &[*depth as i64]);
                let values = Tensor::F32(ndarray::arr1(&[0.0f32, 1.0]).into_dyn());
                let values = self.initializer(&format!("{name}::values"), &values);
                self.node("OneHot", &[args[0], &depth, &values], name, vec![pb::attr_int("axis", -1)]);
            }
            Op::Cast { to } => {
                self.node("Cast", &args, name, vec![pb::attr_int("to", pb::data_type(*to) as i64)]);
            }
            Op::Concat { axis, .. } => self.node("Concat", &args, name, vec![pb::attr_int("axis", *axis as i64)]),
            Op::Slice { axis, start, end } => {
                let starts = self.ints_initializer(&format!("{name}::starts"), &[*start as i64]);
                let ends = self.ints_initializer(&format!("{name}::ends"), &[*end as i64]);
                let axes = self.ints_initializer(&format!("{name}::axes"), &[*axis as i64]);
                self.node("Slice", &[args[0], &starts, &ends, &axes], name, vec![]);
            }
            Op::Conv(_)
            | Op::ConvBackwardData { .. }
            | Op::ConvBackwardFilter { .. }
            | Op::Pool(_)
            | Op::PoolBackward { .. } => self.window_nodes(id)?,
            // `export_model` expands fused ops before it gets here.
            Op::Fused(f) => {
                return Err(OnnxError::Export {
                    value: name.to_string(),
                    message: format!("internal: {} was not expanded into primitives", f.mnemonic()),
                })
            }
        }
        Ok(())
    }

    fn unary(&mut self, name: &str, u: UnaryOp, x: &str) {
        let op_type = match u {
            UnaryOp::Neg => "Neg",
            UnaryOp::Exp => "Exp",
            UnaryOp::Log => "Log",
            UnaryOp::Sqrt => "Sqrt",
            UnaryOp::Erf => "Erf",
            UnaryOp::Relu => "Relu",
            UnaryOp::Sigmoid => "Sigmoid",
            UnaryOp::Tanh => "Tanh",
            UnaryOp::Identity => "Identity",
            UnaryOp::LeakyRelu { alpha } => {
                return self.node("LeakyRelu", &[x], name, vec![pb::attr_float("alpha", alpha)]);
            }
            UnaryOp::Gelu { approximate } if self.opset >= 20 => {
                let mode = if approximate { "tanh" } else { "none" };
                return self.node("Gelu", &[x], name, vec![pb::attr_string("approximate", mode)]);
            }
            UnaryOp::Gelu { approximate } => return self.gelu_formula(name, x, approximate),
        };
        self.node(op_type, &[x], name, vec![]);
    }

    /// A scalar f32 Constant node (a Constant, not an initializer, so the importer
    /// treats it as a constant rather than a trainable parameter).
    fn scalar(&mut self, base: &str, v: f32) -> String {
        let name = self.fresh(base);
        let t = pb::tensor(&name, &Tensor::scalar_f32(v));
        self.node("Constant", &[], &name, vec![pb::attr_tensor("value", t)]);
        name
    }

    /// A helper node with a fresh output name.
    fn helper(
        &mut self,
        op_type: &str,
        inputs: &[&str],
        base: &str,
        attrs: Vec<crate::proto::AttributeProto>,
    ) -> String {
        let out = self.fresh(base);
        self.node(op_type, inputs, &out, attrs);
        out
    }

    /// `x * (1 + erf(x / √2)) * 0.5`, or the tanh approximation, below opset 20.
    fn gelu_formula(&mut self, name: &str, x: &str, approximate: bool) {
        let inner = if approximate {
            let three = self.scalar(&format!("{name}::three"), 3.0);
            let cube = self.helper("Pow", &[x, &three], &format!("{name}::cube"), vec![]);
            let c = self.scalar(&format!("{name}::coeff"), 0.044_715);
            let scaled = self.helper("Mul", &[&cube, &c], &format!("{name}::cube_scaled"), vec![]);
            let sum = self.helper("Add", &[x, &scaled], &format!("{name}::poly"), vec![]);
            let k = self.scalar(&format!("{name}::sqrt_2_over_pi"), 0.797_884_6);
            let arg = self.helper("Mul", &[&sum, &k], &format!("{name}::tanh_arg"), vec![]);
            self.helper("Tanh", &[&arg], &format!("{name}::tanh"), vec![])
        } else {
            let sqrt2 = self.scalar(&format!("{name}::sqrt2"), std::f32::consts::SQRT_2);
            let arg = self.helper("Div", &[x, &sqrt2], &format!("{name}::erf_arg"), vec![]);
            self.helper("Erf", &[&arg], &format!("{name}::erf"), vec![])
        };
        let one = self.scalar(&format!("{name}::one"), 1.0);
        let one_plus = self.helper("Add", &[&inner, &one], &format!("{name}::one_plus"), vec![]);
        let prod = self.helper("Mul", &[x, &one_plus], &format!("{name}::x_times"), vec![]);
        let half = self.scalar(&format!("{name}::half"), 0.5);
        self.node("Mul", &[&prod, &half], name, vec![]);
    }

    fn matmul(&mut self, name: &str, a: ValueId, b: ValueId, trans_a: bool, trans_b: bool) {
        let (ra, rb) = (self.g.ty(a).rank(), self.g.ty(b).rank());
        let (a, b) = (self.g.name_of(a), self.g.name_of(b));
        if !trans_a && !trans_b {
            return self.node("MatMul", &[a, b], name, vec![]);
        }
        if ra == 2 && rb == 2 {
            let attrs = vec![pb::attr_int("transA", trans_a as i64), pb::attr_int("transB", trans_b as i64)];
            return self.node("Gemm", &[a, b], name, attrs);
        }
        let mut swap = |x: &str, rank: usize, tag: &str| {
            let mut perm: Vec<i64> = (0..rank as i64).collect();
            perm.swap(rank - 2, rank - 1);
            let t = self.helper("Transpose", &[x], &format!("{name}::{tag}"), vec![pb::attr_ints("perm", perm)]);
            // Marks the transpose as the matmul's flag, so import folds it back.
            if let Some(node) = self.nodes.last_mut() {
                node.metadata_props.push(meta::entry(meta::FUSE, meta::FUSE_MATMUL));
            }
            t
        };
        let a = if trans_a { swap(a, ra, "a_t") } else { a.to_string() };
        let b = if trans_b { swap(b, rb, "b_t") } else { b.to_string() };
        self.node("MatMul", &[&a, &b], name, vec![]);
    }

    /// Below opset 13 Softmax normalizes over all axes from `axis` on, so a softmax
    /// over an inner axis is wrapped in transposes that make it the last one.
    fn softmax(&mut self, op_type: &str, name: &str, x: &str, axis: usize, rank: usize) {
        if self.opset >= 13 || axis + 1 == rank {
            return self.node(op_type, &[x], name, vec![pb::attr_int("axis", axis as i64)]);
        }
        let mut perm: Vec<i64> = (0..rank as i64).collect();
        perm.swap(axis, rank - 1);
        let to_last =
            self.helper("Transpose", &[x], &format!("{name}::to_last"), vec![pb::attr_ints("perm", perm.clone())]);
        let attrs = vec![pb::attr_int("axis", rank as i64 - 1)];
        let s = self.helper(op_type, &[&to_last], &format!("{name}::last_axis"), attrs);
        self.node("Transpose", &[&s], name, vec![pb::attr_ints("perm", perm)]);
    }

    fn reduce(&mut self, name: &str, op: ReduceOp, x: &str, axes: &[usize], keep_dims: bool) {
        let (op_type, input_from) = match op {
            ReduceOp::Sum => ("ReduceSum", 13),
            ReduceOp::Mean => ("ReduceMean", 18),
            ReduceOp::Max => ("ReduceMax", 18),
        };
        let axes: Vec<i64> = axes.iter().map(|&a| a as i64).collect();
        let mut attrs = vec![pb::attr_int("keepdims", keep_dims as i64)];
        if self.opset >= input_from {
            if axes.is_empty() {
                // No axes: the identity, which ONNX spells noop_with_empty_axes.
                attrs.push(pb::attr_int("noop_with_empty_axes", 1));
                return self.node(op_type, &[x], name, attrs);
            }
            let axes = self.ints_initializer(&format!("{name}::axes"), &axes);
            return self.node(op_type, &[x, &axes], name, attrs);
        }
        if axes.is_empty() {
            // The attribute form has no way to reduce over nothing.
            return self.node("Identity", &[x], name, vec![]);
        }
        attrs.insert(0, pb::attr_ints("axes", axes));
        self.node(op_type, &[x], name, attrs);
    }

    /// The batch dimension is written as -1, which ONNX infers from the element count.
    fn reshape(&mut self, name: &str, x: &str, shape: &Shape) -> Result<(), OnnxError> {
        let has_zero = shape.0.contains(&Dim::Fixed(0));
        let spec: Vec<i64> = shape.0.iter().map(|d| d.fixed().map_or(-1, |n| n as i64)).collect();
        let mut attrs = vec![];
        if has_zero {
            // 0 means "copy the input dimension" unless allowzero (opset 14), and with
            // allowzero a -1 is not allowed.
            if self.opset < 14 || shape.has_batch() {
                return Err(OnnxError::Export {
                    value: name.to_string(),
                    message: format!(
                        "a reshape to {shape} (a zero-size dimension) needs opset 14 and no batch dimension"
                    ),
                });
            }
            attrs.push(pb::attr_int("allowzero", 1));
        }
        let spec = self.ints_initializer(&format!("{name}::shape"), &spec);
        self.node("Reshape", &[x, &spec], name, attrs);
        Ok(())
    }

    fn broadcast(&mut self, name: &str, x: &str, shape: &Shape) -> Result<(), OnnxError> {
        let target = if shape.has_batch() {
            self.batch_shape(name, shape)?
        } else {
            let dims: Vec<i64> = shape.0.iter().map(|d| d.fixed().unwrap_or(1) as i64).collect();
            self.ints_initializer(&format!("{name}::shape"), &dims)
        };
        self.node("Expand", &[x, &target], name, vec![]);
        Ok(())
    }

    /// A shape vector containing the run-time batch size: Concat of constant runs and
    /// the `[N]` vector taken from a graph input that has the batch dimension.
    fn batch_shape(&mut self, name: &str, shape: &Shape) -> Result<String, OnnxError> {
        let batch = self.batch_vector(name)?;
        let mut parts: Vec<String> = Vec::new();
        let mut run: Vec<i64> = Vec::new();
        for d in &shape.0 {
            match d {
                Dim::Fixed(n) => run.push(*n as i64),
                Dim::Batch => {
                    if !run.is_empty() {
                        parts.push(self.ints_initializer(&format!("{name}::dims"), &std::mem::take(&mut run)));
                    }
                    parts.push(batch.clone());
                }
            }
        }
        if !run.is_empty() {
            parts.push(self.ints_initializer(&format!("{name}::dims"), &run));
        }
        let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
        Ok(self.helper("Concat", &refs, &format!("{name}::shape"), vec![pb::attr_int("axis", 0)]))
    }

    fn batch_vector(&mut self, for_value: &str) -> Result<String, OnnxError> {
        if let Some(v) = &self.batch_vector {
            return Ok(v.clone());
        }
        let g = self.g;
        let source = g.values().iter().find_map(|v| {
            let leaf = matches!(v.op, Op::Input | Op::Param { init: None });
            let axis = v.ty.shape.0.iter().position(|d| *d == Dim::Batch)?;
            leaf.then(|| (v.name.clone(), axis))
        });
        let Some((source, axis)) = source else {
            return Err(OnnxError::Export {
                value: for_value.to_string(),
                message: "broadcasts to a batch-sized shape, but no graph input has the batch dimension".into(),
            });
        };
        let shape = self.helper("Shape", &[&source], "nnc::batch_shape", vec![]);
        let index = self.ints_initializer("nnc::batch_axis", &[axis as i64]);
        let vector = self.helper("Gather", &[&shape, &index], "nnc::batch", vec![pb::attr_int("axis", 0)]);
        self.batch_vector = Some(vector.clone());
        Ok(vector)
    }
}
