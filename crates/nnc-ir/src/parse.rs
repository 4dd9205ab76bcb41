//! The text form parser: the inverse of [`crate::print`]. One statement per line;
//! `;` starts a comment. Errors name the line and column.

use crate::error::IrError;
use crate::fused::{CeOut, ConvEpilogue, FusedOp, GradOut, UpdateOut, UpdateRule};
use crate::graph::{Graph, ValueId};
use crate::op::{BinaryOp, Op, ReduceOp, UnaryOp};
use crate::print::is_bare_char;
use crate::tensor::Tensor;
use crate::types::{DType, Dim, Shape, TensorType};
use crate::verify::verify;
use crate::window::{Conv, Pool, PoolKind, Window};
use ndarray::{ArrayD, IxDyn};

/// Parses a graph and verifies it.
pub fn parse(text: &str) -> Result<Graph, IrError> {
    let g = parse_unverified(text)?;
    verify(&g)?;
    Ok(g)
}

/// Parses a graph without running the verifier (for testing the verifier itself).
pub fn parse_unverified(text: &str) -> Result<Graph, IrError> {
    let mut graph: Option<Graph> = None;
    let mut closed = false;
    let mut outputs_seen = false;
    let mut last_line = 0;
    for (i, raw) in text.lines().enumerate() {
        let line_no = i + 1;
        last_line = line_no;
        let mut c = Cursor { line: line_no, text: raw, pos: 0 };
        c.skip_ws();
        if c.at_end() {
            continue;
        }
        if closed {
            return Err(c.error("text after the closing '}'"));
        }
        let Some(g) = graph.as_mut() else {
            c.keyword("graph")?;
            let name = c.name()?;
            c.expect('{')?;
            c.finish()?;
            graph = Some(Graph::new(name));
            continue;
        };
        if c.peek() == Some('}') {
            c.expect('}')?;
            c.finish()?;
            closed = true;
        } else if c.peek() == Some('%') {
            if outputs_seen {
                return Err(c.error("a value defined after 'return'"));
            }
            statement(&mut c, g)?;
        } else if c.rest().starts_with("update") {
            c.keyword("update")?;
            let leaf = c.value_ref(g)?;
            c.skip_ws();
            if !c.rest().starts_with("<-") {
                return Err(c.error("expected '<-'"));
            }
            c.pos += 2;
            let new = c.value_ref(g)?;
            c.finish()?;
            let mut updates = g.updates().to_vec();
            updates.push((leaf, new));
            g.set_updates(updates);
        } else {
            c.keyword("return")?;
            if outputs_seen {
                return Err(c.error("a second 'return'"));
            }
            outputs_seen = true;
            let mut outs = Vec::new();
            while !c.at_end() {
                if !outs.is_empty() {
                    c.expect(',')?;
                }
                outs.push(c.value_ref(g)?);
            }
            g.set_outputs(outs);
        }
    }
    match graph {
        Some(g) if closed => Ok(g),
        _ => {
            Err(IrError::Parse { line: last_line.max(1), column: 1, message: "missing 'graph NAME {' ... '}'".into() })
        }
    }
}

fn statement(c: &mut Cursor, g: &mut Graph) -> Result<(), IrError> {
    c.expect('%')?;
    let name_col = c.pos;
    let name = c.name()?;
    c.expect(':')?;
    let ty = c.tensor_type()?;
    c.expect('=')?;
    c.skip_ws();
    let op_col = c.pos;
    let mnemonic = c.word()?;
    let attrs = if c.peek() == Some('[') { c.attributes()? } else { Vec::new() };
    let mut args = Vec::new();
    let mut data = None;
    while !c.at_end() {
        match c.peek() {
            Some('%') => {
                if !args.is_empty() {
                    return Err(c.error("expected ',' between operands"));
                }
                args.push(c.value_ref(g)?)
            }
            Some(',') if !args.is_empty() => {
                c.expect(',')?;
                args.push(c.value_ref(g)?);
            }
            Some('[') if data.is_none() => data = Some(c.data_items()?),
            _ => return Err(c.error("unexpected text")),
        }
    }
    let op = build_op(&mnemonic, &attrs, data, &ty).map_err(|m| c.error_at(op_col, m))?;
    g.push_typed(name, ty, op, args).map_err(|e| c.error_at(name_col, e.to_string()))?;
    Ok(())
}

#[derive(Debug)]
enum AttrValue {
    Flag,
    Word(String),
    List(Vec<String>),
}

type Attrs = Vec<(String, AttrValue)>;

fn build_op(mnemonic: &str, attrs: &Attrs, data: Option<Vec<String>>, ty: &TensorType) -> Result<Op, String> {
    let mut used = vec![false; attrs.len()];
    let mut get = |key: &str| -> Option<&AttrValue> {
        let i = attrs.iter().position(|(k, _)| k == key)?;
        used[i] = true;
        Some(&attrs[i].1)
    };
    let flag = |v: Option<&AttrValue>| -> Result<bool, String> {
        match v {
            None => Ok(false),
            Some(AttrValue::Flag) => Ok(true),
            Some(other) => Err(format!("expected a flag, got {other:?}")),
        }
    };
    let unary = |u: UnaryOp| Ok::<Op, String>(Op::Unary(u));
    let binary = |b: BinaryOp| Ok::<Op, String>(Op::Binary(b));
    let op = match mnemonic {
        "input" => Ok(Op::Input),
        "param" => Ok(Op::Param { init: data.as_ref().map(|d| tensor(d, ty)).transpose()? }),
        "state" => Ok(Op::State { init: data.as_ref().map(|d| tensor(d, ty)).transpose()? }),
        "const" => match data.as_ref() {
            Some(d) => Ok(Op::Const(tensor(d, ty)?)),
            None => Err("a const needs its data, e.g. [1.0, 2.0]".to_string()),
        },
        "neg" => unary(UnaryOp::Neg),
        "exp" => unary(UnaryOp::Exp),
        "log" => unary(UnaryOp::Log),
        "sqrt" => unary(UnaryOp::Sqrt),
        "erf" => unary(UnaryOp::Erf),
        "relu" => unary(UnaryOp::Relu),
        "leaky_relu" => unary(UnaryOp::LeakyRelu { alpha: float(get("alpha"), "alpha")? }),
        "sigmoid" => unary(UnaryOp::Sigmoid),
        "tanh" => unary(UnaryOp::Tanh),
        "gelu" => match get("approximate") {
            None => unary(UnaryOp::Gelu { approximate: false }),
            Some(AttrValue::Word(w)) if w == "tanh" => unary(UnaryOp::Gelu { approximate: true }),
            Some(other) => Err(format!("approximate must be 'tanh', got {other:?}")),
        },
        "identity" => unary(UnaryOp::Identity),
        "add" => binary(BinaryOp::Add),
        "sub" => binary(BinaryOp::Sub),
        "mul" => binary(BinaryOp::Mul),
        "div" => binary(BinaryOp::Div),
        "pow" => binary(BinaryOp::Pow),
        "max" => binary(BinaryOp::Max),
        "min" => binary(BinaryOp::Min),
        "greater" => binary(BinaryOp::Greater),
        "where" => Ok(Op::Where),
        "matmul" => Ok(Op::MatMul { trans_a: flag(get("trans_a"))?, trans_b: flag(get("trans_b"))? }),
        "softmax" => Ok(Op::Softmax { axis: uint(get("axis"), "axis")? }),
        "log_softmax" => Ok(Op::LogSoftmax { axis: uint(get("axis"), "axis")? }),
        "reduce_sum" | "reduce_mean" | "reduce_max" => {
            let op = match mnemonic {
                "reduce_sum" => ReduceOp::Sum,
                "reduce_mean" => ReduceOp::Mean,
                _ => ReduceOp::Max,
            };
            let axes = uint_list(get("axes"), "axes")?;
            Ok(Op::Reduce { op, axes, keep_dims: flag(get("keep_dims"))? })
        }
        "reshape" => Ok(Op::Reshape { shape: shape_attr(get("shape"))? }),
        "broadcast" => Ok(Op::Broadcast { shape: shape_attr(get("shape"))? }),
        "transpose" => Ok(Op::Transpose { perm: uint_list(get("perm"), "perm")? }),
        "one_hot" => Ok(Op::OneHot { depth: uint(get("depth"), "depth")? }),
        "concat" => Ok(Op::Concat { axis: uint(get("axis"), "axis")?, sizes: uint_list(get("sizes"), "sizes")? }),
        "slice" => Ok(Op::Slice {
            axis: uint(get("axis"), "axis")?,
            start: uint(get("start"), "start")?,
            end: uint(get("end"), "end")?,
        }),
        "cast" => match get("to") {
            Some(AttrValue::Word(w)) => {
                DType::from_name(w).map(|to| Op::Cast { to }).ok_or(format!("unknown type '{w}'"))
            }
            _ => Err("cast needs to=TYPE".to_string()),
        },
        "conv" => Ok(Op::Conv(conv(&mut get)?)),
        "conv_backward_data" => {
            Ok(Op::ConvBackwardData { conv: conv(&mut get)?, input: uint_list(get("input"), "input")? })
        }
        "conv_backward_filter" => Ok(Op::ConvBackwardFilter { conv: conv(&mut get)? }),
        "max_pool" | "avg_pool" => Ok(Op::Pool(pool(mnemonic, &mut get, &flag)?)),
        "max_pool_backward" | "avg_pool_backward" => Ok(Op::PoolBackward {
            pool: pool(mnemonic.trim_end_matches("_backward"), &mut get, &flag)?,
            input: uint_list(get("input"), "input")?,
        }),
        m if m.starts_with("fused.") => fused_op(m, &mut get).map(Op::Fused),
        other => Err(format!("unknown op '{other}'")),
    }?;
    if let Some(i) = used.iter().position(|u| !u) {
        return Err(format!("{mnemonic} has no attribute '{}'", attrs[i].0));
    }
    if data.is_some() && !matches!(op, Op::Param { .. } | Op::State { .. } | Op::Const(_)) {
        return Err(format!("{mnemonic} takes no data"));
    }
    Ok(op)
}

/// A fused op from its mnemonic and attributes (see `FusedOp`'s text form).
fn fused_op<'a>(mnemonic: &str, get: &mut impl FnMut(&str) -> Option<&'a AttrValue>) -> Result<FusedOp, String> {
    fn flag<'a>(get: &mut impl FnMut(&str) -> Option<&'a AttrValue>, key: &str) -> Result<bool, String> {
        match get(key) {
            None => Ok(false),
            Some(AttrValue::Flag) => Ok(true),
            Some(other) => Err(format!("{key}: expected a flag, got {other:?}")),
        }
    }
    fn float_or<'a>(
        get: &mut impl FnMut(&str) -> Option<&'a AttrValue>,
        key: &str,
        default: f32,
    ) -> Result<f32, String> {
        match get(key) {
            None => Ok(default),
            v => float(v, key),
        }
    }
    fn word<'a>(get: &mut impl FnMut(&str) -> Option<&'a AttrValue>, key: &str) -> Result<Option<&'a str>, String> {
        match get(key) {
            None => Ok(None),
            Some(AttrValue::Word(w)) => Ok(Some(w.as_str())),
            Some(other) => Err(format!("{key}: expected a word, got {other:?}")),
        }
    }
    let bad_out = |o: &str| format!("{mnemonic} has no result '{o}'");
    let update_out = |o: Option<&str>| match o {
        None => Ok(UpdateOut::Param),
        Some("m") => Ok(UpdateOut::M),
        Some("v") => Ok(UpdateOut::V),
        Some(o) => Err(bad_out(o)),
    };
    fn rule<'a>(
        mnemonic: &str,
        get: &mut impl FnMut(&str) -> Option<&'a AttrValue>,
    ) -> Result<Option<UpdateRule>, String> {
        let kind = mnemonic.trim_start_matches("fused.").trim_start_matches("dense_");
        Ok(Some(match kind {
            "sgd" => UpdateRule::Sgd { weight_decay: float_or(get, "weight_decay", 0.0)? },
            "momentum" => UpdateRule::Momentum {
                momentum: float(get("momentum"), "momentum")?,
                nesterov: flag(get, "nesterov")?,
                weight_decay: float_or(get, "weight_decay", 0.0)?,
            },
            "adam" => UpdateRule::Adam {
                beta1: float(get("beta1"), "beta1")?,
                beta2: float(get("beta2"), "beta2")?,
                eps: float(get("eps"), "eps")?,
                decay: flag(get, "decay")?,
            },
            _ => return Ok(None),
        }))
    }
    fn activation<'a>(get: &mut impl FnMut(&str) -> Option<&'a AttrValue>) -> Result<Option<UnaryOp>, String> {
        Ok(match word(get, "act")? {
            None => None,
            Some("relu") => Some(UnaryOp::Relu),
            Some("leaky_relu") => Some(UnaryOp::LeakyRelu { alpha: float(get("slope"), "slope")? }),
            Some("sigmoid") => Some(UnaryOp::Sigmoid),
            Some("tanh") => Some(UnaryOp::Tanh),
            Some("gelu") => match word(get, "approximate")? {
                None => Some(UnaryOp::Gelu { approximate: false }),
                Some("tanh") => Some(UnaryOp::Gelu { approximate: true }),
                Some(o) => return Err(format!("approximate must be 'tanh', got '{o}'")),
            },
            Some(o) => return Err(format!("'{o}' is not a dense activation")),
        })
    }
    Ok(match mnemonic {
        "fused.conv" => {
            let conv = conv(get)?;
            let (bias, residual) = (flag(get, "bias")?, flag(get, "residual")?);
            let act = activation(get)?;
            let bound = |v: Option<&AttrValue>, key: &str| v.map(|v| float(Some(v), key)).transpose();
            let (min, max) = (bound(get("min"), "min")?, bound(get("max"), "max")?);
            FusedOp::Conv { conv, epilogue: ConvEpilogue { bias, residual, act, min, max } }
        }
        "fused.dense" => {
            let (trans_a, trans_b) = (flag(get, "trans_a")?, flag(get, "trans_b")?);
            let alpha = float_or(get, "alpha", 1.0)?;
            let bias = flag(get, "bias")?;
            let act = activation(get)?;
            FusedOp::Dense { trans_a, trans_b, alpha, bias, act }
        }
        "fused.dense_relu_grad" => {
            let (trans_a, trans_b) = (flag(get, "trans_a")?, flag(get, "trans_b")?);
            let out = match word(get, "out")? {
                None => GradOut::Grad,
                Some("col_sum") => GradOut::ColSum,
                Some(o) => return Err(bad_out(o)),
            };
            FusedOp::DenseReluGrad { trans_a, trans_b, out }
        }
        "fused.softmax_ce" => FusedOp::SoftmaxCrossEntropy {
            out: match word(get, "out")? {
                None => CeOut::Loss,
                Some("grad") => CeOut::Grad,
                Some("grad_col_sum") => CeOut::GradColSum,
                Some(o) => return Err(bad_out(o)),
            },
        },
        m if m.starts_with("fused.dense_") => {
            let (trans_a, trans_b) = (flag(get, "trans_a")?, flag(get, "trans_b")?);
            let Some(rule) = rule(m, get)? else { return Err(format!("unknown op '{m}'")) };
            FusedOp::DenseUpdate { trans_a, trans_b, rule, out: update_out(word(get, "out")?)? }
        }
        m => {
            let Some(rule) = rule(m, get)? else { return Err(format!("unknown op '{m}'")) };
            FusedOp::Update { rule, out: update_out(word(get, "out")?)? }
        }
    })
}

/// A window from `kernel=`, and `strides=`, `dilations=`, `pads=` where they differ
/// from the defaults.
fn window<'a>(get: &mut impl FnMut(&str) -> Option<&'a AttrValue>) -> Result<Window, String> {
    let mut w = Window::new(&uint_list(get("kernel"), "kernel")?);
    let r = w.rank();
    if let Some(v) = get("strides") {
        w.strides = uint_list(Some(v), "strides")?;
    }
    if let Some(v) = get("dilations") {
        w.dilations = uint_list(Some(v), "dilations")?;
    }
    if let Some(v) = get("pads") {
        let pads = uint_list(Some(v), "pads")?;
        if pads.len() != 2 * r {
            return Err(format!("pads needs {} entries (begins, then ends), got {}", 2 * r, pads.len()));
        }
        w.pads_begin = pads[..r].to_vec();
        w.pads_end = pads[r..].to_vec();
    }
    w.check()?;
    Ok(w)
}

fn conv<'a>(get: &mut impl FnMut(&str) -> Option<&'a AttrValue>) -> Result<Conv, String> {
    let window = window(get)?;
    let groups = match get("groups") {
        None => 1,
        v => uint(v, "groups")?,
    };
    Ok(Conv { window, groups })
}

fn pool<'a>(
    mnemonic: &str,
    get: &mut impl FnMut(&str) -> Option<&'a AttrValue>,
    flag: &impl Fn(Option<&AttrValue>) -> Result<bool, String>,
) -> Result<Pool, String> {
    let window = window(get)?;
    let ceil_mode = flag(get("ceil_mode"))?;
    let kind = if mnemonic == "max_pool" {
        PoolKind::Max
    } else {
        PoolKind::Avg { count_include_pad: flag(get("count_include_pad"))? }
    };
    Ok(Pool { kind, window, ceil_mode })
}

fn float(v: Option<&AttrValue>, key: &str) -> Result<f32, String> {
    match v {
        Some(AttrValue::Word(w)) => w.parse().map_err(|_| format!("{key}: '{w}' is not a number")),
        _ => Err(format!("needs {key}=NUMBER")),
    }
}

fn uint(v: Option<&AttrValue>, key: &str) -> Result<usize, String> {
    match v {
        Some(AttrValue::Word(w)) => w.parse().map_err(|_| format!("{key}: '{w}' is not a non-negative integer")),
        _ => Err(format!("needs {key}=INTEGER")),
    }
}

fn uint_list(v: Option<&AttrValue>, key: &str) -> Result<Vec<usize>, String> {
    match v {
        Some(AttrValue::List(items)) => {
            items.iter().map(|w| w.parse().map_err(|_| format!("{key}: '{w}' is not a non-negative integer"))).collect()
        }
        _ => Err(format!("needs {key}=[...]")),
    }
}

fn shape_attr(v: Option<&AttrValue>) -> Result<Shape, String> {
    match v {
        Some(AttrValue::List(items)) => items.iter().map(|w| dim(w)).collect::<Result<_, _>>().map(Shape),
        _ => Err("needs shape=[...]".to_string()),
    }
}

fn dim(w: &str) -> Result<Dim, String> {
    if w == "N" {
        return Ok(Dim::Batch);
    }
    w.parse().map(Dim::Fixed).map_err(|_| format!("'{w}' is not a dimension (a size or N)"))
}

fn tensor(items: &[String], ty: &TensorType) -> Result<Tensor, String> {
    let Some(shape) = ty.shape.as_fixed() else {
        return Err(format!("data needs a static shape, not {}", ty.shape));
    };
    let numel = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    if numel != Some(items.len()) {
        return Err(format!(
            "{} needs {} values, got {}",
            ty,
            numel.map_or("too many".into(), |n| n.to_string()),
            items.len()
        ));
    }
    fn parse_all<T: std::str::FromStr>(items: &[String], what: &str) -> Result<Vec<T>, String> {
        items.iter().map(|s| s.parse::<T>().map_err(|_| format!("'{s}' is not {what}"))).collect()
    }
    let dims = IxDyn(&shape);
    let shape_err = |e: ndarray::ShapeError| e.to_string();
    Ok(match ty.dtype {
        DType::F32 => Tensor::F32(ArrayD::from_shape_vec(dims, parse_all(items, "an f32")?).map_err(shape_err)?),
        DType::I64 => Tensor::I64(ArrayD::from_shape_vec(dims, parse_all(items, "an i64")?).map_err(shape_err)?),
        DType::I32 => Tensor::I32(ArrayD::from_shape_vec(dims, parse_all(items, "an i32")?).map_err(shape_err)?),
        DType::Bool => Tensor::Bool(ArrayD::from_shape_vec(dims, parse_all(items, "a bool")?).map_err(shape_err)?),
    })
}

struct Cursor<'a> {
    line: usize,
    text: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn error(&self, message: impl Into<String>) -> IrError {
        self.error_at(self.pos, message)
    }

    fn error_at(&self, pos: usize, message: impl Into<String>) -> IrError {
        IrError::Parse { line: self.line, column: self.text[..pos].chars().count() + 1, message: message.into() }
    }

    fn rest(&self) -> &'a str {
        &self.text[self.pos..]
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn skip_ws(&mut self) {
        let trimmed = self.rest().trim_start();
        self.pos = self.text.len() - trimmed.len();
        if trimmed.starts_with(';') {
            self.pos = self.text.len();
        }
    }

    fn at_end(&mut self) -> bool {
        self.skip_ws();
        self.pos >= self.text.len()
    }

    fn finish(&mut self) -> Result<(), IrError> {
        if self.at_end() {
            Ok(())
        } else {
            Err(self.error("unexpected text at end of line"))
        }
    }

    fn expect(&mut self, ch: char) -> Result<(), IrError> {
        self.skip_ws();
        if self.peek() == Some(ch) {
            self.pos += ch.len_utf8();
            Ok(())
        } else {
            Err(self.error(format!("expected '{ch}'")))
        }
    }

    fn keyword(&mut self, kw: &str) -> Result<(), IrError> {
        let start = self.pos;
        match self.word() {
            Ok(w) if w == kw => Ok(()),
            _ => Err(self.error_at(start, format!("expected '{kw}'"))),
        }
    }

    /// A bare word: letters, digits and `_ . / : - +`.
    fn word(&mut self) -> Result<String, IrError> {
        self.skip_ws();
        let len = self.rest().find(|c: char| !(is_bare_char(c) || c == '+')).unwrap_or(self.rest().len());
        if len == 0 {
            return Err(self.error("expected a word"));
        }
        let w = self.rest()[..len].to_string();
        self.pos += len;
        Ok(w)
    }

    /// A name: bare, or quoted with `\"`, `\\` and `\n` escapes.
    fn name(&mut self) -> Result<String, IrError> {
        self.skip_ws();
        if self.peek() != Some('"') {
            return self.word();
        }
        let start = self.pos;
        self.pos += 1;
        let mut out = String::new();
        let mut chars = self.rest().char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => {
                    self.pos += i + 1;
                    return Ok(out);
                }
                '\\' => match chars.next() {
                    Some((_, 'n')) => out.push('\n'),
                    Some((_, e @ ('"' | '\\'))) => out.push(e),
                    _ => return Err(self.error_at(start, "bad escape in quoted name")),
                },
                c => out.push(c),
            }
        }
        Err(self.error_at(start, "unterminated quoted name"))
    }

    fn value_ref(&mut self, g: &Graph) -> Result<ValueId, IrError> {
        self.expect('%')?;
        let start = self.pos;
        let name = self.name()?;
        g.find(&name).ok_or_else(|| self.error_at(start, format!("%{name} is not defined before use")))
    }

    fn tensor_type(&mut self) -> Result<TensorType, IrError> {
        self.skip_ws();
        let start = self.pos;
        let len = self.rest().find(|c: char| !c.is_ascii_alphanumeric()).unwrap_or(self.rest().len());
        let dtype_name = &self.rest()[..len];
        let dtype =
            DType::from_name(dtype_name).ok_or_else(|| self.error_at(start, format!("unknown type '{dtype_name}'")))?;
        self.pos += len;
        let items = self.list()?;
        let dims = items.iter().map(|w| dim(w).map_err(|m| self.error_at(start, m))).collect::<Result<_, _>>()?;
        Ok(TensorType::new(dtype, Shape(dims)))
    }

    /// `[a, b, c]` of bare words (possibly empty).
    fn list(&mut self) -> Result<Vec<String>, IrError> {
        self.expect('[')?;
        let mut items = Vec::new();
        loop {
            self.skip_ws();
            if self.peek() == Some(']') {
                self.pos += 1;
                return Ok(items);
            }
            if !items.is_empty() {
                self.expect(',')?;
            }
            items.push(self.word()?);
        }
    }

    fn data_items(&mut self) -> Result<Vec<String>, IrError> {
        self.list()
    }

    /// `[key=value, flag, key=[...]]`
    fn attributes(&mut self) -> Result<Attrs, IrError> {
        self.expect('[')?;
        let mut attrs: Attrs = Vec::new();
        loop {
            self.skip_ws();
            if self.peek() == Some(']') {
                self.pos += 1;
                return Ok(attrs);
            }
            if !attrs.is_empty() {
                self.expect(',')?;
            }
            let key_pos = self.pos;
            let key = self.word()?;
            if attrs.iter().any(|(k, _)| *k == key) {
                return Err(self.error_at(key_pos, format!("attribute '{key}' given twice")));
            }
            self.skip_ws();
            let value = if self.peek() == Some('=') {
                self.pos += 1;
                self.skip_ws();
                if self.peek() == Some('[') {
                    AttrValue::List(self.list()?)
                } else {
                    AttrValue::Word(self.word()?)
                }
            } else {
                AttrValue::Flag
            };
            attrs.push((key, value));
        }
    }
}
