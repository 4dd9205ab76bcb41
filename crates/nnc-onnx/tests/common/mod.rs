//! Builders for ONNX models in tests, written with the crate's own proto types the
//! way real exporters lay models out.
#![allow(dead_code)]

pub mod graphs;

use nnc_onnx::proto::attribute_proto::AttributeType;
use nnc_onnx::proto::tensor_proto::DataType;
use nnc_onnx::proto::tensor_shape_proto::{dimension, Dimension};
use nnc_onnx::proto::type_proto::{self, Value as TypeValue};
use nnc_onnx::proto::*;
use prost::Message;

/// One dimension of a graph input's declared shape.
#[derive(Clone, Copy)]
pub enum D {
    /// `dim_param` (a symbolic size).
    P(&'static str),
    /// `dim_value`.
    V(i64),
    /// Neither set.
    Unknown,
}

pub fn value_info(name: &str, elem: DataType, dims: &[D]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| Dimension {
            value: match d {
                D::P(p) => Some(dimension::Value::DimParam(p.to_string())),
                D::V(v) => Some(dimension::Value::DimValue(*v)),
                D::Unknown => None,
            },
            ..Default::default()
        })
        .collect();
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            value: Some(TypeValue::TensorType(type_proto::Tensor {
                elem_type: elem as i32,
                shape: Some(TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub fn f32_input(name: &str, dims: &[D]) -> ValueInfoProto {
    value_info(name, DataType::Float, dims)
}

/// A float tensor in `raw_data`, as PyTorch writes initializers.
pub fn raw_f32(name: &str, dims: &[i64], data: &[f32]) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: DataType::Float as i32,
        raw_data: data.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ..Default::default()
    }
}

/// A float tensor in `float_data`, as onnx.helper writes it.
pub fn typed_f32(name: &str, dims: &[i64], data: &[f32]) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: DataType::Float as i32,
        float_data: data.to_vec(),
        ..Default::default()
    }
}

pub fn i64_tensor(name: &str, dims: &[i64], data: &[i64]) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: DataType::Int64 as i32,
        int64_data: data.to_vec(),
        ..Default::default()
    }
}

pub fn attr_int(name: &str, i: i64) -> AttributeProto {
    AttributeProto { name: name.into(), r#type: AttributeType::Int as i32, i, ..Default::default() }
}

pub fn attr_float(name: &str, f: f32) -> AttributeProto {
    AttributeProto { name: name.into(), r#type: AttributeType::Float as i32, f, ..Default::default() }
}

pub fn attr_ints(name: &str, ints: &[i64]) -> AttributeProto {
    AttributeProto { name: name.into(), r#type: AttributeType::Ints as i32, ints: ints.to_vec(), ..Default::default() }
}

pub fn attr_floats(name: &str, floats: &[f32]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Floats as i32,
        floats: floats.to_vec(),
        ..Default::default()
    }
}

pub fn attr_string(name: &str, s: &str) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::String as i32,
        s: s.as_bytes().to_vec(),
        ..Default::default()
    }
}

pub fn attr_tensor(name: &str, t: TensorProto) -> AttributeProto {
    AttributeProto { name: name.into(), r#type: AttributeType::Tensor as i32, t: Some(t), ..Default::default() }
}

pub fn node(op: &str, name: &str, inputs: &[&str], outputs: &[&str], attribute: Vec<AttributeProto>) -> NodeProto {
    NodeProto {
        op_type: op.into(),
        name: name.into(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        attribute,
        ..Default::default()
    }
}

/// A Constant node holding an int64 vector (PyTorch's shape constants).
pub fn const_i64(name: &str, out: &str, data: &[i64]) -> NodeProto {
    node("Constant", name, &[], &[out], vec![attr_tensor("value", i64_tensor("", &[data.len() as i64], data))])
}

/// A Constant node holding a float scalar.
pub fn const_f32(name: &str, out: &str, v: f32) -> NodeProto {
    node("Constant", name, &[], &[out], vec![attr_tensor("value", raw_f32("", &[], &[v]))])
}

pub fn model(opset: i64, graph: GraphProto) -> ModelProto {
    ModelProto {
        ir_version: 8,
        producer_name: "test".into(),
        opset_import: vec![OperatorSetIdProto { domain: String::new(), version: opset }],
        graph: Some(graph),
        ..Default::default()
    }
}

pub fn bytes(m: &ModelProto) -> Vec<u8> {
    m.encode_to_vec()
}

/// Deterministic pseudo-random numbers in [-scale, scale) (xorshift).
pub fn noise(n: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
        })
        .collect()
}
