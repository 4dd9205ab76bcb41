//! Bad input is an error, never a panic or undefined behaviour; what cannot be lowered
//! is reported all at once; the CLIF text is available.

mod common;
use common::*;
use nnc_cranelift::{compile, emit_clif, BackendError, CompileOptions, TileShape};
use nnc_ir::{DType, Dim, Graph, Op, Shape, Tensor, TensorType};

fn small() -> Graph {
    let mut g = Graph::new("small");
    let x = g.input("x", batched(DType::F32, &[3])).unwrap();
    let y = g.input("y", batched(DType::F32, &[3])).unwrap();
    let w = g.param("w", Tensor::from_f32(&[3, 2], vec![1.0; 6]).unwrap()).unwrap();
    let s = g.add(x, y).unwrap();
    let o = g.matmul(s, w, false, false).unwrap();
    g.set_outputs(vec![o]);
    g
}

fn ones(shape: &[usize]) -> Tensor {
    Tensor::from_f32(shape, vec![1.0; shape.iter().product()]).unwrap()
}

#[test]
fn bad_feeds_are_errors() {
    let mut c = jit(&small());
    let ok = c.run(&feeds(&[("x", ones(&[2, 3])), ("y", ones(&[2, 3]))])).unwrap();
    assert_eq!(ok[0].to_f32_vec().unwrap(), vec![6.0; 4]);

    let err = c.run(&feeds(&[("x", ones(&[2, 3]))])).unwrap_err();
    assert!(matches!(err, BackendError::MissingFeeds { .. }), "{err}");
    assert!(err.to_string().contains("\"y\""), "{err}");

    let err = c.run(&feeds(&[("x", ones(&[2, 3])), ("y", ones(&[2, 3])), ("z", ones(&[1]))])).unwrap_err();
    assert!(matches!(err, BackendError::UnknownFeeds { .. }), "{err}");

    let err = c.run(&feeds(&[("x", ones(&[2, 4])), ("y", ones(&[2, 4]))])).unwrap_err();
    assert!(matches!(err, BackendError::FeedMismatch { .. }), "{err}");

    let err = c.run(&feeds(&[("x", ones(&[6])), ("y", ones(&[2, 3]))])).unwrap_err();
    assert!(matches!(err, BackendError::FeedMismatch { .. }), "{err}");

    let err = c.run(&feeds(&[("x", ones(&[2, 3])), ("y", ones(&[3, 3]))])).unwrap_err();
    assert!(matches!(err, BackendError::BatchMismatch { .. }), "{err}");

    let int = Tensor::from_i64(&[2, 3], vec![1; 6]).unwrap();
    let err = c.run(&feeds(&[("x", int), ("y", ones(&[2, 3]))])).unwrap_err();
    assert!(matches!(err, BackendError::FeedMismatch { .. }), "{err}");
    assert!(err.to_string().contains("i64"), "{err}");

    // Still usable after errors.
    assert!(c.run(&feeds(&[("x", ones(&[5, 3])), ("y", ones(&[5, 3]))])).is_ok());
}

#[test]
fn parameters_get_set_and_are_checked() {
    let mut c = jit(&small());
    assert_eq!(c.param_names(), vec!["w".to_string()]);
    assert_eq!(c.param("w").unwrap().to_f32_vec().unwrap(), vec![1.0; 6]);
    c.set_param("w", &Tensor::from_f32(&[3, 2], vec![2.0; 6]).unwrap()).unwrap();
    let out = c.run(&feeds(&[("x", ones(&[1, 3])), ("y", ones(&[1, 3]))])).unwrap();
    assert_eq!(out[0].to_f32_vec().unwrap(), vec![12.0; 2]);
    assert!(matches!(c.param("nope"), Err(BackendError::UnknownParam { .. })));
    assert!(matches!(c.set_param("w", &ones(&[2, 3])), Err(BackendError::FeedMismatch { .. })));
    assert!(matches!(c.set_param("x", &ones(&[1, 3])), Err(BackendError::UnknownParam { .. })));
    // Feeding a parameter sets it.
    let f =
        feeds(&[("x", ones(&[1, 3])), ("y", ones(&[1, 3])), ("w", Tensor::from_f32(&[3, 2], vec![0.5; 6]).unwrap())]);
    assert_eq!(c.run(&f).unwrap()[0].to_f32_vec().unwrap(), vec![3.0; 2]);
    assert_eq!(c.param("w").unwrap().to_f32_vec().unwrap(), vec![0.5; 6]);
}

#[test]
fn parameter_without_initial_value_must_be_set() {
    let mut g = Graph::new("noinit");
    let x = g.input("x", fixed(DType::F32, &[2])).unwrap();
    let p = g.push_typed("p".into(), fixed(DType::F32, &[2]), Op::Param { init: None }, vec![]).unwrap();
    let y = g.add(x, p).unwrap();
    g.set_outputs(vec![y]);
    let mut c = jit(&g);
    let f = feeds(&[("x", ones(&[2]))]);
    let err = c.run(&f).unwrap_err();
    assert!(err.to_string().contains("\"p\""), "{err}");
    assert!(c.param("p").is_err());
    c.set_param("p", &ones(&[2])).unwrap();
    assert_eq!(c.run(&f).unwrap()[0].to_f32_vec().unwrap(), vec![2.0, 2.0]);
}

#[test]
fn unsupported_values_are_listed_together() {
    let mut g = Graph::new("bad");
    let x = g.input("x", batched(DType::F32, &[1])).unwrap();
    // A parameter with the batch dimension, and a value of N² elements.
    let p = g.push_typed("p".into(), batched(DType::F32, &[1]), Op::Param { init: None }, vec![]).unwrap();
    let sq = g.broadcast(x, Shape(vec![Dim::Batch, Dim::Batch])).unwrap();
    let y = g.add(x, p).unwrap();
    g.set_outputs(vec![sq, y]);
    let err = compile(&g, &CompileOptions::default()).unwrap_err();
    let BackendError::Unsupported(items) = &err else { panic!("expected Unsupported, got {err}") };
    let names: Vec<&str> = items.iter().map(|u| u.value.as_str()).collect();
    assert!(names.contains(&"p") && names.contains(&"broadcast"), "{err}");
    assert!(emit_clif(&g, &CompileOptions::default()).is_err());
}

#[test]
fn invalid_graphs_and_options_are_errors() {
    let g = Graph::new("empty"); // no outputs
    assert!(matches!(compile(&g, &CompileOptions::default()), Err(BackendError::InvalidGraph(_))));
    let bad = CompileOptions {
        tile: Some(TileShape { mr: 0, nv: 2, kc: 256, unroll: 1, fused: true }),
        threads: 1,
        ..Default::default()
    };
    assert!(matches!(compile(&small(), &bad), Err(BackendError::InvalidOptions(_))));
}

#[test]
fn emit_clif_shows_every_function() {
    // The portable kernels, whose micro-kernel is CLIF too (assembled tiles are calls).
    let options = CompileOptions { kernels: nnc_cranelift::Kernels::Cranelift, ..Default::default() };
    let text = emit_clif(&small(), &options).unwrap();
    assert!(text.contains("; step"), "{text}");
    assert!(text.contains("matmul_pack"), "{text}");
    assert!(text.contains("fma") || text.contains("fmul"), "{text}");
    assert!(text.contains("function"), "{text}");
}

#[test]
fn input_of_scalar_type_needs_no_batch() {
    let mut g = Graph::new("scalar");
    let x = g.input("x", TensorType::new(DType::F32, Shape::scalar())).unwrap();
    let y = g.add(x, x).unwrap();
    g.set_outputs(vec![y]);
    check(&g, &feeds(&[("x", Tensor::scalar_f32(1.5))]), 0.0);
}

#[test]
fn non_contiguous_feeds_are_copied() {
    let mut c = jit(&small());
    // A column-major [2, 3] tensor: the same values in another memory order.
    let col_major = ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(&[3, 2]), vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0])
        .unwrap()
        .reversed_axes();
    let row_major = Tensor::F32(col_major.as_standard_layout().into_owned());
    let a = c.run(&feeds(&[("x", Tensor::F32(col_major)), ("y", ones(&[2, 3]))])).unwrap();
    let b = c.run(&feeds(&[("x", row_major), ("y", ones(&[2, 3]))])).unwrap();
    assert_eq!(a, b);
}
