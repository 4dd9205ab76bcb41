//! The graph as Graphviz DOT, for looking at what the compiler did
//! (`nnc compile --emit dot | dot -Tsvg > step.svg`).
//!
//! One node per value, labelled with its name, its op (with the attributes of a fused
//! op) and its type; one edge per operand, from the operand to its user. Values are
//! styled by what they are:
//!
//! | value | style |
//! |---|---|
//! | input | blue `invhouse` |
//! | parameter | yellow box |
//! | optimizer state | grey box |
//! | constant | small dotted box (scalars show their value) |
//! | primitive op | white rounded box |
//! | fused op | bold orange rounded box, `fused.*` mnemonic |
//! | graph output | double border, `output #i` |
//!
//! An in-place update `leaf <- new` is a dashed blue edge from the new value back to
//! the parameter or state it replaces. The output is deterministic (definition order).

use crate::graph::Graph;
use crate::op::Op;
use crate::tensor::Tensor;
use std::fmt::Write;

const INPUT_COLOR: &str = "#cfe2ff";
const PARAM_COLOR: &str = "#fff3bf";
const STATE_COLOR: &str = "#e9ecef";
const FUSED_COLOR: &str = "#ffc078";
const UPDATE_COLOR: &str = "#1c7ed6";

/// The graph in Graphviz DOT.
pub fn to_dot(graph: &Graph) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "digraph {} {{", quote(&graph.name));
    let _ = writeln!(out, "  label={};", quote(&graph.name));
    out.push_str("  labelloc=t;\n");
    out.push_str("  rankdir=TB;\n");
    out.push_str("  node [shape=box, style=rounded, fontname=\"Helvetica\", fontsize=10];\n");
    out.push_str("  edge [color=\"#495057\", arrowsize=0.6];\n");
    for id in graph.ids() {
        let v = graph.value(id);
        let mut lines = vec![v.name.clone(), op_label(&v.op), v.ty.to_string()];
        for (i, _) in graph.outputs().iter().enumerate().filter(|(_, &o)| o == id) {
            lines.push(format!("output #{i}"));
        }
        let label = lines.iter().map(|l| escape(l)).collect::<Vec<_>>().join("\\n");
        let style = match &v.op {
            Op::Input => format!("shape=invhouse, style=filled, fillcolor=\"{INPUT_COLOR}\""),
            Op::Param { .. } => format!("style=filled, fillcolor=\"{PARAM_COLOR}\""),
            Op::State { .. } => format!("style=filled, fillcolor=\"{STATE_COLOR}\""),
            Op::Const(_) => "style=dotted, fontsize=8".to_string(),
            Op::Fused(_) => format!("style=\"rounded,filled,bold\", fillcolor=\"{FUSED_COLOR}\""),
            _ => String::new(),
        };
        let output = if graph.outputs().contains(&id) { ", peripheries=2" } else { "" };
        let sep = if style.is_empty() { "" } else { ", " };
        let _ = writeln!(out, "  {id} [label=\"{label}\"{sep}{style}{output}];");
    }
    for id in graph.ids() {
        for &a in &graph.value(id).args {
            let _ = writeln!(out, "  {a} -> {id};");
        }
    }
    for &(leaf, new) in graph.updates() {
        let _ = writeln!(
            out,
            "  {new} -> {leaf} [style=dashed, color=\"{UPDATE_COLOR}\", fontcolor=\"{UPDATE_COLOR}\", \
             label=\"update\", fontsize=8, constraint=false];"
        );
    }
    out.push_str("}\n");
    out
}

/// The op's mnemonic; a fused op with its attributes, a scalar constant with its value.
fn op_label(op: &Op) -> String {
    match op {
        Op::Fused(f) => {
            let attrs = f.attributes();
            if attrs.is_empty() {
                f.mnemonic().to_string()
            } else {
                format!("{}[{}]", f.mnemonic(), attrs.join(", "))
            }
        }
        Op::Const(t) if t.len() == 1 => format!("const {}", scalar(t)),
        op => op.mnemonic().to_string(),
    }
}

fn scalar(t: &Tensor) -> String {
    match t {
        Tensor::F32(a) => a.iter().map(|v| format!("{v:?}")).collect(),
        Tensor::I64(a) => a.iter().map(|v| v.to_string()).collect(),
        Tensor::I32(a) => a.iter().map(|v| v.to_string()).collect(),
        Tensor::Bool(a) => a.iter().map(|v| v.to_string()).collect(),
    }
}

/// Text inside a double-quoted DOT string: quotes and backslashes escaped, line
/// breaks as `\n`.
fn escape(s: &str) -> String {
    let mut e = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => e.push_str("\\\""),
            '\\' => e.push_str("\\\\"),
            '\n' => e.push_str("\\n"),
            '\r' => {}
            c => e.push(c),
        }
    }
    e
}

fn quote(s: &str) -> String {
    format!("\"{}\"", escape(s))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse;

    #[test]
    fn values_edges_outputs_and_updates() {
        let g = parse(
            "graph \"a \\\"b\\\"\" {
  %x: f32[N,2] = input
  %w: f32[2] = param
  %m: f32[2] = state
  %c: f32[] = const [0.5]
  %y: f32[N,2] = mul %x, %w
  %w_new: f32[2] = mul %w, %c
  %m_new: f32[2] = add %m, %w
  update %w <- %w_new
  update %m <- %m_new
  return %y
}
",
        )
        .unwrap();
        let dot = to_dot(&g);
        assert!(dot.starts_with("digraph \"a \\\"b\\\"\" {\n"), "{dot}");
        assert!(dot.contains("v0 [label=\"x\\ninput\\nf32[N,2]\", shape=invhouse"), "{dot}");
        assert!(dot.contains("v1 [label=\"w\\nparam\\nf32[2]\", style=filled"), "{dot}");
        assert!(dot.contains("v3 [label=\"c\\nconst 0.5\\nf32[]\""), "{dot}");
        assert!(dot.contains("v4 [label=\"y\\nmul\\nf32[N,2]\\noutput #0\", peripheries=2];"), "{dot}");
        assert!(dot.contains("  v0 -> v4;\n  v1 -> v4;\n"), "{dot}");
        assert!(dot.contains("  v5 -> v1 [style=dashed"), "{dot}");
        assert!(dot.contains("  v6 -> v2 [style=dashed"), "{dot}");
        assert!(dot.ends_with("}\n"));
    }
}
