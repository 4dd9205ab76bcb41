//! `TensorProto` → IR [`Tensor`]: inline `raw_data`, the typed `*_data` fields, or an
//! external file. Sizes are checked before anything is allocated.

use super::external::read_external;
use crate::proto::tensor_proto::{DataLocation, DataType};
use crate::proto::TensorProto;
use crate::OnnxError;
use ndarray::{ArrayD, IxDyn};
use nnc_ir::{DType, Tensor};
use std::path::Path;

/// Largest element count accepted for any one tensor (the IR's limit).
pub(crate) use nnc_ir::MAX_ELEMENTS;

/// Checked element count of `dims`, or an error naming `what`.
pub(crate) fn element_count(dims: &[i64], what: impl Fn(String) -> OnnxError) -> Result<Vec<usize>, OnnxError> {
    let mut shape = Vec::with_capacity(dims.len());
    let mut count: usize = 1;
    for &d in dims {
        let d = usize::try_from(d).map_err(|_| what(format!("negative dimension {d} in shape {dims:?}")))?;
        count = count
            .checked_mul(d)
            .filter(|&c| c <= MAX_ELEMENTS)
            .ok_or_else(|| what(format!("shape {dims:?} has more than {MAX_ELEMENTS} elements")))?;
        shape.push(d);
    }
    Ok(shape)
}

/// The IR element type an ONNX element type is read as, if nnc can hold it.
/// Narrower types are widened, which is exact (float16 → f32, int16 → i32, ...), and
/// so are unsigned integers that fit i64. Double is not read: narrowing it to f32
/// would round the model's values, so it is refused ([`refuse_float64`]).
pub(crate) fn ir_dtype(data_type: i32) -> Option<DType> {
    match DataType::try_from(data_type).ok()? {
        DataType::Float | DataType::Float16 | DataType::Bfloat16 => Some(DType::F32),
        DataType::Int64 | DataType::Uint32 | DataType::Uint64 => Some(DType::I64),
        DataType::Int32 | DataType::Int16 | DataType::Int8 | DataType::Uint16 | DataType::Uint8 => Some(DType::I32),
        DataType::Bool => Some(DType::Bool),
        _ => None,
    }
}

/// Refuses a float64 element type: `what` names the tensor or input (`initializer
/// "fc1.weight"`), for [`OnnxError::Float64`]. The one check every float64 source
/// goes through (initializers, Constant values, graph inputs, test-data tensors).
pub(crate) fn refuse_float64(data_type: i32, what: impl FnOnce() -> String) -> Result<(), OnnxError> {
    if data_type == DataType::Double as i32 {
        return Err(OnnxError::Float64 { what: what() });
    }
    Ok(())
}

/// The ONNX name of an element type, for messages.
pub(crate) fn type_name(data_type: i32) -> String {
    match DataType::try_from(data_type) {
        Ok(t) => t.as_str_name().to_string(),
        Err(_) => format!("unknown type {data_type}"),
    }
}

/// Bytes per element in `raw_data` for the types nnc reads.
fn raw_width(t: DataType) -> usize {
    match t {
        DataType::Int64 | DataType::Uint64 => 8,
        DataType::Float | DataType::Int32 | DataType::Uint32 => 4,
        DataType::Float16 | DataType::Bfloat16 | DataType::Int16 | DataType::Uint16 => 2,
        _ => 1,
    }
}

/// Decodes a tensor. `name` is used in errors (ONNX allows unnamed tensors in
/// attributes); `base_dir` is the model's directory, for external data.
pub(crate) fn read_tensor(t: &TensorProto, name: &str, base_dir: Option<&Path>) -> Result<Tensor, OnnxError> {
    let err = |message: String| OnnxError::Tensor { name: name.to_string(), message };
    let shape = element_count(&t.dims, err)?;
    let count: usize = shape.iter().product();
    let data_type =
        DataType::try_from(t.data_type).map_err(|_| err(format!("unknown element type {}", t.data_type)))?;
    refuse_float64(t.data_type, || format!("tensor \"{name}\""))?;
    if ir_dtype(t.data_type).is_none() {
        return Err(err(format!("element type {} is not supported", type_name(t.data_type))));
    }
    if t.segment.is_some() {
        return Err(err("segmented tensors are not supported".into()));
    }
    let raw;
    let raw_bytes: Option<&[u8]> = if t.data_location == DataLocation::External as i32 {
        let need = count * raw_width(data_type);
        raw = read_external(t, name, base_dir, need)?;
        Some(&raw)
    } else if !t.raw_data.is_empty() {
        Some(&t.raw_data)
    } else {
        None
    };
    let values = match raw_bytes {
        Some(bytes) => decode_raw(bytes, data_type, count).map_err(err)?,
        None => decode_typed(t, data_type, count).map_err(err)?,
    };
    values.into_tensor(&shape).map_err(err)
}

/// Decoded elements before they are shaped.
enum Values {
    F32(Vec<f32>),
    I64(Vec<i64>),
    I32(Vec<i32>),
    Bool(Vec<bool>),
}

impl Values {
    fn into_tensor(self, shape: &[usize]) -> Result<Tensor, String> {
        let bad = |e: ndarray::ShapeError| format!("cannot shape data as {shape:?}: {e}");
        Ok(match self {
            Values::F32(v) => Tensor::F32(ArrayD::from_shape_vec(IxDyn(shape), v).map_err(bad)?),
            Values::I64(v) => Tensor::I64(ArrayD::from_shape_vec(IxDyn(shape), v).map_err(bad)?),
            Values::I32(v) => Tensor::I32(ArrayD::from_shape_vec(IxDyn(shape), v).map_err(bad)?),
            Values::Bool(v) => Tensor::Bool(ArrayD::from_shape_vec(IxDyn(shape), v).map_err(bad)?),
        })
    }
}

fn length_error(found: usize, unit: &str, count: usize) -> String {
    let relation = if found < count { "shorter" } else { "longer" };
    format!("data is {relation} than declared: {found} {unit} for {count} elements")
}

fn decode_raw(bytes: &[u8], t: DataType, count: usize) -> Result<Values, String> {
    let width = raw_width(t);
    let need = count * width;
    if bytes.len() != need {
        let relation = if bytes.len() < need { "shorter" } else { "longer" };
        return Err(format!(
            "data is {relation} than declared: {} bytes where {count} elements need {need}",
            bytes.len()
        ));
    }
    let chunks = bytes.chunks_exact(width);
    Ok(match t {
        DataType::Float => Values::F32(chunks.map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()),
        DataType::Float16 => Values::F32(chunks.map(|c| f16_to_f32(u16::from_le_bytes([c[0], c[1]]))).collect()),
        DataType::Bfloat16 => {
            Values::F32(chunks.map(|c| f32::from_bits((u16::from_le_bytes([c[0], c[1]]) as u32) << 16)).collect())
        }
        DataType::Int64 => {
            Values::I64(chunks.map(|c| i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]])).collect())
        }
        DataType::Uint64 => Values::I64(
            chunks
                .map(|c| u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
                .map(|v| i64::try_from(v).map_err(|_| format!("uint64 value {v} does not fit in i64")))
                .collect::<Result<_, _>>()?,
        ),
        DataType::Uint32 => Values::I64(chunks.map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]) as i64).collect()),
        DataType::Int32 => Values::I32(chunks.map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()),
        DataType::Int16 => Values::I32(chunks.map(|c| i16::from_le_bytes([c[0], c[1]]) as i32).collect()),
        DataType::Uint16 => Values::I32(chunks.map(|c| u16::from_le_bytes([c[0], c[1]]) as i32).collect()),
        DataType::Int8 => Values::I32(chunks.map(|c| c[0] as i8 as i32).collect()),
        DataType::Uint8 => Values::I32(chunks.map(|c| c[0] as i32).collect()),
        DataType::Bool => Values::Bool(chunks.map(|c| c[0] != 0).collect()),
        other => return Err(format!("element type {} is not supported", other.as_str_name())),
    })
}

fn decode_typed(t: &TensorProto, data_type: DataType, count: usize) -> Result<Values, String> {
    fn exact<T: Copy>(data: &[T], count: usize) -> Result<&[T], String> {
        if data.len() == count {
            Ok(data)
        } else {
            Err(length_error(data.len(), "values", count))
        }
    }
    Ok(match data_type {
        DataType::Float => Values::F32(exact(&t.float_data, count)?.to_vec()),
        DataType::Int64 => Values::I64(exact(&t.int64_data, count)?.to_vec()),
        DataType::Uint32 | DataType::Uint64 => Values::I64(
            exact(&t.uint64_data, count)?
                .iter()
                .map(|&v| i64::try_from(v).map_err(|_| format!("value {v} does not fit in i64")))
                .collect::<Result<_, _>>()?,
        ),
        DataType::Int32 | DataType::Int16 | DataType::Int8 | DataType::Uint16 | DataType::Uint8 => {
            Values::I32(exact(&t.int32_data, count)?.to_vec())
        }
        DataType::Bool => Values::Bool(exact(&t.int32_data, count)?.iter().map(|&v| v != 0).collect()),
        DataType::Float16 => Values::F32(exact(&t.int32_data, count)?.iter().map(|&v| f16_to_f32(v as u16)).collect()),
        DataType::Bfloat16 => Values::F32(
            exact(&t.int32_data, count)?.iter().map(|&v| f32::from_bits(((v as u32) & 0xffff) << 16)).collect(),
        ),
        other => return Err(format!("element type {} is not supported", other.as_str_name())),
    })
}

/// IEEE half → single precision (exact; handles subnormals, infinities and NaN).
fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h as u32) & 0x8000) << 16;
    let exp = ((h >> 10) & 0x1f) as u32;
    let man = (h & 0x3ff) as u32;
    let bits = match (exp, man) {
        (0, 0) => sign,
        (0, _) => {
            // Subnormal: value = man * 2^-24, exactly representable in f32.
            let v = man as f32 * f32::from_bits(0x3380_0000);
            return if sign != 0 { -v } else { v };
        }
        (0x1f, 0) => sign | 0x7f80_0000,
        (0x1f, _) => sign | 0x7fc0_0000 | (man << 13),
        _ => sign | ((exp + 112) << 23) | (man << 13),
    };
    f32::from_bits(bits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_precision() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
        assert!(f16_to_f32(0x7c00).is_infinite());
        assert!(f16_to_f32(0x7e00).is_nan());
    }
}
