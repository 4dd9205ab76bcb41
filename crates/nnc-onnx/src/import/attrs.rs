//! Typed access to a node's attributes.

use crate::proto::attribute_proto::AttributeType;
use crate::proto::{AttributeProto, NodeProto, TensorProto};

pub(crate) struct Attrs<'a> {
    node: &'a NodeProto,
}

impl<'a> Attrs<'a> {
    pub(crate) fn new(node: &'a NodeProto) -> Attrs<'a> {
        Attrs { node }
    }

    pub(crate) fn get(&self, name: &str) -> Option<&'a AttributeProto> {
        self.node.attribute.iter().find(|a| a.name == name)
    }

    /// The attribute if present, after checking its declared type. Very old models
    /// leave `type` unset; those are taken at their word.
    fn typed(&self, name: &str, want: AttributeType) -> Result<Option<&'a AttributeProto>, String> {
        match self.get(name) {
            None => Ok(None),
            Some(a) if a.r#type == want as i32 || a.r#type == AttributeType::Undefined as i32 => Ok(Some(a)),
            Some(a) => {
                let got = AttributeType::try_from(a.r#type).map(|t| t.as_str_name().to_string());
                Err(format!(
                    "attribute {name} must be {}, got {}",
                    want.as_str_name(),
                    got.unwrap_or_else(|_| format!("type {}", a.r#type))
                ))
            }
        }
    }

    pub(crate) fn int(&self, name: &str, default: i64) -> Result<i64, String> {
        Ok(self.typed(name, AttributeType::Int)?.map_or(default, |a| a.i))
    }

    pub(crate) fn opt_int(&self, name: &str) -> Result<Option<i64>, String> {
        Ok(self.typed(name, AttributeType::Int)?.map(|a| a.i))
    }

    pub(crate) fn float(&self, name: &str, default: f32) -> Result<f32, String> {
        Ok(self.typed(name, AttributeType::Float)?.map_or(default, |a| a.f))
    }

    pub(crate) fn ints(&self, name: &str) -> Result<Option<Vec<i64>>, String> {
        Ok(self.typed(name, AttributeType::Ints)?.map(|a| a.ints.clone()))
    }

    pub(crate) fn floats(&self, name: &str) -> Result<Option<Vec<f32>>, String> {
        Ok(self.typed(name, AttributeType::Floats)?.map(|a| a.floats.clone()))
    }

    pub(crate) fn string(&self, name: &str) -> Result<Option<String>, String> {
        match self.typed(name, AttributeType::String)? {
            None => Ok(None),
            Some(a) => String::from_utf8(a.s.clone()).map(Some).map_err(|_| format!("attribute {name} is not UTF-8")),
        }
    }

    pub(crate) fn tensor(&self, name: &str) -> Result<Option<&'a TensorProto>, String> {
        match self.typed(name, AttributeType::Tensor)? {
            None => Ok(None),
            Some(a) => a.t.as_ref().map(Some).ok_or_else(|| format!("attribute {name} has no tensor")),
        }
    }
}
