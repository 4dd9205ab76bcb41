//! tract (an independent ONNX runtime) as the oracle for ONNX semantics.
#![allow(dead_code)]

use nnc_ir::Tensor;
use tract_onnx::prelude::{
    Framework, InferenceFact, InferenceModelExt, IntoTValue, Tensor as TractTensor, TractResult,
};
use tract_onnx::tract_core::model::IntoRunnable;

pub fn to_tract(t: &Tensor) -> TractTensor {
    let r = match t {
        Tensor::F32(a) => TractTensor::from_shape(a.shape(), &a.iter().copied().collect::<Vec<_>>()),
        Tensor::I64(a) => TractTensor::from_shape(a.shape(), &a.iter().copied().collect::<Vec<_>>()),
        Tensor::I32(a) => TractTensor::from_shape(a.shape(), &a.iter().copied().collect::<Vec<_>>()),
        Tensor::Bool(a) => TractTensor::from_shape(a.shape(), &a.iter().copied().collect::<Vec<_>>()),
    };
    r.expect("shape matches data")
}

/// A result as its shape and its elements converted to f32.
pub type Flat = (Vec<usize>, Vec<f32>);

/// Runs ONNX bytes in tract with concrete inputs (in graph-input order).
pub fn run_tract(bytes: &[u8], inputs: &[Tensor]) -> TractResult<Vec<Flat>> {
    let inputs: Vec<TractTensor> = inputs.iter().map(to_tract).collect();
    let mut model = tract_onnx::onnx().model_for_read(&mut &bytes[..])?;
    for (i, t) in inputs.iter().enumerate() {
        model = model.with_input_fact(i, InferenceFact::dt_shape_from_tensor(t))?;
    }
    let runnable = model.into_optimized()?.into_runnable()?;
    let outputs = runnable.run(inputs.into_iter().map(|t| t.into_tvalue()).collect())?;
    outputs
        .iter()
        .map(|o| {
            let f = o.cast_to::<f32>()?;
            Ok((o.shape().to_vec(), f.to_plain_array_view::<f32>()?.iter().copied().collect()))
        })
        .collect()
}

pub fn flat(t: &Tensor) -> Flat {
    let v = match t {
        Tensor::F32(a) => a.iter().copied().collect(),
        Tensor::I64(a) => a.iter().map(|&v| v as f32).collect(),
        Tensor::I32(a) => a.iter().map(|&v| v as f32).collect(),
        Tensor::Bool(a) => a.iter().map(|&v| v as u8 as f32).collect(),
    };
    (t.shape().to_vec(), v)
}

pub fn assert_close(theirs: &[Flat], ours: &[Flat], what: &str) {
    assert_eq!(theirs.len(), ours.len(), "number of outputs ({what})");
    for (i, ((ts, tv), (os, ov))) in theirs.iter().zip(ours).enumerate() {
        assert_eq!(ts, os, "shape of output {i} ({what})");
        for (j, (a, b)) in tv.iter().zip(ov).enumerate() {
            let tol = 1e-4 + 1e-4 * b.abs();
            assert!((a - b).abs() <= tol, "output {i}[{j}] ({what}): tract {a} vs nnc {b}");
        }
    }
}
