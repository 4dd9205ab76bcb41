//! The text form printer. Output is deterministic: values in definition order, every
//! value with its declared type, attributes in a fixed order. `parse(print(g))` prints
//! identically.
//!
//! ```text
//! graph mlp {
//!   %x: f32[N,784] = input
//!   %fc1.weight: f32[256,784] = param
//!   %fc1: f32[N,256] = matmul[trans_b] %x, %fc1.weight
//!   return %fc1
//! }
//! ```

use crate::graph::Graph;
use crate::op::{Op, UnaryOp};
use crate::tensor::Tensor;
use std::fmt::Write;

/// Prints the graph without parameter values (constants are always printed).
pub fn print(graph: &Graph) -> String {
    print_impl(graph, false)
}

/// Prints the graph including every parameter's initial value.
pub fn print_with_data(graph: &Graph) -> String {
    print_impl(graph, true)
}

fn print_impl(graph: &Graph, with_data: bool) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "graph {} {{", ident(&graph.name));
    for v in graph.values() {
        let _ = write!(out, "  %{}: {} = {}", ident(&v.name), v.ty, v.op.mnemonic());
        let attrs = attributes(&v.op);
        if !attrs.is_empty() {
            let _ = write!(out, "[{}]", attrs.join(", "));
        }
        for (i, a) in v.args.iter().enumerate() {
            let sep = if i == 0 { " " } else { ", " };
            let _ = write!(out, "{sep}%{}", ident(graph.name_of(*a)));
        }
        match &v.op {
            Op::Const(t) => {
                let _ = write!(out, " {}", data(t));
            }
            Op::Param { init: Some(t) } | Op::State { init: Some(t) } if with_data => {
                let _ = write!(out, " {}", data(t));
            }
            _ => {}
        }
        out.push('\n');
    }
    for &(leaf, new) in graph.updates() {
        let _ = writeln!(out, "  update %{} <- %{}", ident(graph.name_of(leaf)), ident(graph.name_of(new)));
    }
    let outs: Vec<String> = graph.outputs().iter().map(|&o| format!("%{}", ident(graph.name_of(o)))).collect();
    let _ = writeln!(out, "  return {}", outs.join(", "));
    out.push_str("}\n");
    out
}

/// Characters allowed in a bare name; anything else is printed quoted.
pub(crate) fn is_bare_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '/' | '-')
}

/// A name, bare when it is made of ordinary characters, otherwise quoted with escapes.
pub(crate) fn ident(name: &str) -> String {
    if !name.is_empty() && name.chars().all(is_bare_char) {
        return name.to_string();
    }
    let mut s = String::from("\"");
    for c in name.chars() {
        match c {
            '"' => s.push_str("\\\""),
            '\\' => s.push_str("\\\\"),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s.push('"');
    s
}

fn list<T: std::fmt::Display>(items: &[T]) -> String {
    let parts: Vec<String> = items.iter().map(|i| i.to_string()).collect();
    format!("[{}]", parts.join(","))
}

/// Attributes in a fixed order; flags print bare, defaults are omitted.
fn attributes(op: &Op) -> Vec<String> {
    let mut attrs = Vec::new();
    match op {
        Op::MatMul { trans_a, trans_b } => {
            if *trans_a {
                attrs.push("trans_a".to_string());
            }
            if *trans_b {
                attrs.push("trans_b".to_string());
            }
        }
        Op::Unary(UnaryOp::LeakyRelu { alpha }) => attrs.push(format!("alpha={alpha:?}")),
        Op::Unary(UnaryOp::Gelu { approximate: true }) => attrs.push("approximate=tanh".to_string()),
        Op::Softmax { axis } | Op::LogSoftmax { axis } => attrs.push(format!("axis={axis}")),
        Op::Reduce { axes, keep_dims, .. } => {
            attrs.push(format!("axes={}", list(axes)));
            if *keep_dims {
                attrs.push("keep_dims".to_string());
            }
        }
        Op::Reshape { shape } | Op::Broadcast { shape } => attrs.push(format!("shape={shape}")),
        Op::Transpose { perm } => attrs.push(format!("perm={}", list(perm))),
        Op::Cast { to } => attrs.push(format!("to={to}")),
        Op::OneHot { depth } => attrs.push(format!("depth={depth}")),
        Op::Concat { axis, sizes } => {
            attrs.push(format!("axis={axis}"));
            attrs.push(format!("sizes={}", list(sizes)));
        }
        Op::Slice { axis, start, end } => {
            attrs.push(format!("axis={axis}"));
            attrs.push(format!("start={start}"));
            attrs.push(format!("end={end}"));
        }
        Op::Conv(conv) | Op::ConvBackwardFilter { conv } => attrs = conv.attributes(),
        Op::ConvBackwardData { conv, input } => {
            attrs = conv.attributes();
            attrs.push(format!("input={}", list(input)));
        }
        Op::Pool(pool) => attrs = pool.attributes(),
        Op::PoolBackward { pool, input } => {
            attrs = pool.attributes();
            attrs.push(format!("input={}", list(input)));
        }
        Op::Fused(f) => attrs = f.attributes(),
        Op::Input | Op::Param { .. } | Op::State { .. } | Op::Const(_) | Op::Unary(_) | Op::Binary(_) | Op::Where => {}
    }
    attrs
}

/// Row-major data as a flat list. f32 uses Rust's shortest round-trip formatting.
fn data(t: &Tensor) -> String {
    let items: Vec<String> = match t {
        Tensor::F32(a) => a.iter().map(|v| format!("{v:?}")).collect(),
        Tensor::I64(a) => a.iter().map(|v| v.to_string()).collect(),
        Tensor::I32(a) => a.iter().map(|v| v.to_string()).collect(),
        Tensor::Bool(a) => a.iter().map(|v| v.to_string()).collect(),
    };
    format!("[{}]", items.join(", "))
}
