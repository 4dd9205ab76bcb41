//! Checking feeds before any generated code runs: names, presence, batch size, types,
//! and the class indices of labels that go straight into `one_hot`.
//!
//! The generated code does unchecked memory access; everything it relies on about its
//! inputs is established here.

use crate::error::BackendError;
use crate::program::Program;
use nnc_ir::{Dim, Tensor, TensorType};
use std::collections::HashMap;

/// The feeds, resolved: the batch size, the tensor of each input (in `Program::inputs`
/// order), and the fed parameters and state (by leaf index).
pub(crate) struct Bound<'a> {
    pub batch: usize,
    pub inputs: Vec<&'a Tensor>,
    pub leaves: Vec<(usize, &'a Tensor)>,
}

fn describe(t: &Tensor) -> String {
    format!("{}{}", t.dtype(), t.ir_shape())
}

fn expected(ty: &TensorType, batch: Option<usize>) -> String {
    match batch {
        Some(n) if ty.shape.has_batch() => format!("{ty} (N={n})"),
        _ => ty.to_string(),
    }
}

/// `leaf_has_value[i]`: leaf `i` has an initial value or was set before.
pub(crate) fn bind<'a>(
    program: &Program,
    feeds: &HashMap<&str, &'a Tensor>,
    leaf_has_value: &[bool],
) -> Result<Bound<'a>, BackendError> {
    // Feeds are few (the inputs, and rarely a parameter): scans, not maps built anew
    // for every step.
    let known =
        |name: &str| program.inputs.iter().any(|s| s.name == name) || program.leaves.iter().any(|l| l.name == name);
    let mut unknown: Vec<String> = feeds.keys().filter(|n| !known(n)).map(|n| n.to_string()).collect();
    if !unknown.is_empty() {
        unknown.sort();
        return Err(BackendError::UnknownFeeds { names: unknown });
    }

    let mut missing: Vec<String> = program
        .inputs
        .iter()
        .filter(|s| !feeds.contains_key(s.name.as_str()))
        .map(|s| format!("input \"{}\": {}", s.name, s.ty))
        .collect();
    missing.extend(
        program
            .leaves
            .iter()
            .enumerate()
            .filter(|(i, l)| !leaf_has_value[*i] && !feeds.contains_key(l.name.as_str()))
            .map(|(_, l)| format!("{} \"{}\": {} (it has no initial value)", l.kind, l.name, l.ty)),
    );
    if !missing.is_empty() {
        return Err(BackendError::MissingFeeds { missing });
    }

    // The batch size: every `N` of every fed input must agree.
    let mut found: Option<(&str, usize)> = None;
    for s in &program.inputs {
        let t: &'a Tensor = feeds[s.name.as_str()];
        if !s.ty.shape.has_batch() {
            continue;
        }
        if t.shape().len() != s.ty.rank() {
            return Err(mismatch("input", &s.name, &s.ty, None, t));
        }
        for (d, &size) in s.ty.shape.dims().iter().zip(t.shape()) {
            if *d != Dim::Batch {
                continue;
            }
            match found {
                None => found = Some((&s.name, size)),
                Some((first, n)) if n != size => {
                    return Err(BackendError::BatchMismatch {
                        first: first.to_string(),
                        first_batch: n,
                        second: s.name.clone(),
                        second_batch: size,
                    })
                }
                Some(_) => {}
            }
        }
    }
    let batch = found.map_or(1, |(_, n)| n);

    let mut inputs = Vec::with_capacity(program.inputs.len());
    for s in &program.inputs {
        let t: &'a Tensor = feeds[s.name.as_str()];
        if !has_type(t, &s.ty, batch) {
            return Err(mismatch("input", &s.name, &s.ty, Some(batch), t));
        }
        inputs.push(t);
    }
    let mut leaves = Vec::new();
    for (i, l) in program.leaves.iter().enumerate() {
        if let Some(&t) = feeds.get(l.name.as_str()) {
            if !has_type(t, &l.ty, batch) {
                return Err(mismatch(l.kind, &l.name, &l.ty, None, t));
            }
            leaves.push((i, t));
        }
    }

    for &(input, depth, value) in &program.label_checks {
        let bad = match inputs[input] {
            Tensor::I64(a) => a.iter().copied().find(|&x| x < 0 || x as u64 >= depth),
            Tensor::I32(a) => a.iter().map(|&x| x as i64).find(|&x| x < 0 || x as u64 >= depth),
            _ => None,
        };
        if let Some(ix) = bad {
            let (name, op) = &program.names[value.index()];
            return Err(BackendError::Runtime {
                value: name.clone(),
                op,
                message: format!(
                    "class index {ix} out of range 0..{depth} (in input \"{}\")",
                    program.inputs[input].name
                ),
            });
        }
    }
    Ok(Bound { batch, inputs, leaves })
}

/// Whether `t` has type `ty` once the batch dimension is `batch`.
pub(crate) fn has_type(t: &Tensor, ty: &TensorType, batch: usize) -> bool {
    t.dtype() == ty.dtype && t.shape() == ty.shape.resolve(batch).as_slice()
}

pub(crate) fn mismatch(
    kind: &'static str,
    name: &str,
    ty: &TensorType,
    batch: Option<usize>,
    got: &Tensor,
) -> BackendError {
    BackendError::FeedMismatch { kind, name: name.to_string(), expected: expected(ty, batch), got: describe(got) }
}
