//! Loss and accuracy of predictions, computed on the host from a backend's output.
//!
//! Evaluation needs only a backend's inference function; the loss formulas here are
//! the ones nnc-autodiff builds into the training step (softmax cross-entropy, mean
//! squared error over every element), summed in f64 so that batch sizes and batch
//! order do not change the result.

use crate::dataset::{slice, Labels};
use crate::error::TrainError;
use nnc_ir::Tensor;

/// Loss and accuracy over a set of examples.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Metrics {
    /// Mean loss per example.
    pub loss: f32,
    /// Fraction of examples whose highest score is the label's class (classification
    /// only; during training, only if the step outputs its logits).
    pub accuracy: Option<f32>,
    pub examples: usize,
}

/// Sums over one batch of predictions.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BatchScore {
    /// The sum over examples of each example's loss.
    pub loss_sum: f64,
    /// Examples whose argmax is their label (classification only).
    pub correct: Option<usize>,
    pub examples: usize,
}

/// Scores predictions `[b, C]` (logits) or `[b, ...]` (targets) against labels.
pub fn score(prediction: &Tensor, labels: &Tensor, spec: &Labels) -> Result<BatchScore, TrainError> {
    let bad = |want: String| {
        TrainError::Backend(format!(
            "the prediction is {}{}, expected {want}",
            prediction.dtype(),
            prediction.ir_shape()
        ))
    };
    let (Tensor::F32(p), n) = (prediction, labels.shape().first().copied().unwrap_or(0)) else {
        return Err(bad("f32".into()));
    };
    let p = p.as_standard_layout();
    let p = slice_of(&p);
    match (spec, labels) {
        (Labels::Classes(c), Tensor::I64(y)) => {
            if prediction.shape() != [n, *c] {
                return Err(bad(format!("f32[{n},{c}]")));
            }
            let y = slice(y);
            if let Some((index, &value)) =
                y.iter().enumerate().find(|&(_, &v)| usize::try_from(v).map_or(true, |v| v >= *c))
            {
                return Err(TrainError::LabelRange { index, value, classes: *c });
            }
            let (loss_sum, correct) = cross_entropy(p, y, *c);
            Ok(BatchScore { loss_sum, correct: Some(correct), examples: n })
        }
        (Labels::Targets(shape), Tensor::F32(y)) => {
            let want: Vec<usize> = std::iter::once(n).chain(shape.iter().copied()).collect();
            if prediction.shape() != want.as_slice() {
                return Err(bad(format!("f32{}", nnc_ir::Shape::fixed(&want))));
            }
            if y.shape() != want.as_slice() {
                return Err(TrainError::Shape(format!(
                    "targets {} do not match the model's f32{}",
                    nnc_ir::Shape::fixed(y.shape()),
                    nnc_ir::Shape::fixed(&want)
                )));
            }
            let per_example = shape.iter().product::<usize>().max(1);
            let sq: f64 = p.iter().zip(slice(y)).map(|(&a, &b)| (f64::from(a) - f64::from(b)).powi(2)).sum();
            Ok(BatchScore { loss_sum: sq / per_example as f64, correct: None, examples: n })
        }
        _ => Err(TrainError::Shape(format!("labels {}{} do not match {spec:?}", labels.dtype(), labels.ir_shape()))),
    }
}

/// The summed softmax cross-entropy of logit rows and how many rows' first maximum
/// is the label. Labels are in `0..classes`.
fn cross_entropy(logits: &[f32], labels: &[i64], classes: usize) -> (f64, usize) {
    let mut loss = 0.0f64;
    let mut correct = 0;
    for (row, &label) in logits.chunks_exact(classes).zip(labels) {
        let (mut best, mut max) = (0, f32::NEG_INFINITY);
        for (i, &v) in row.iter().enumerate() {
            if v > max {
                (best, max) = (i, v);
            }
        }
        // log_softmax(x)[label] = x[label] - max - ln(sum(exp(x - max))).
        let sum: f64 = row.iter().map(|&v| (f64::from(v) - f64::from(max)).exp()).sum();
        let label = label as usize;
        loss += f64::from(max) + sum.ln() - f64::from(row[label]);
        correct += usize::from(best == label);
    }
    (loss, correct)
}

fn slice_of<'a>(a: &'a ndarray::CowArray<'_, f32, ndarray::IxDyn>) -> &'a [f32] {
    a.as_slice().expect("a standard-layout array has a slice")
}

/// Running sums for an epoch or an evaluation.
#[derive(Clone, Debug, Default)]
pub(crate) struct Accumulator {
    loss_sum: f64,
    examples: usize,
    correct: usize,
    scored: usize,
}

impl Accumulator {
    /// A training step's mean loss over `n` examples.
    pub fn add_loss(&mut self, mean: f32, n: usize) {
        self.loss_sum += f64::from(mean) * n as f64;
        self.examples += n;
    }

    pub fn add_score(&mut self, s: &BatchScore, count_loss: bool) {
        if count_loss {
            self.loss_sum += s.loss_sum;
            self.examples += s.examples;
        }
        if let Some(c) = s.correct {
            self.correct += c;
            self.scored += s.examples;
        }
    }

    pub fn finish(&self) -> Metrics {
        Metrics {
            loss: (self.loss_sum / self.examples.max(1) as f64) as f32,
            accuracy: (self.scored > 0).then(|| (self.correct as f64 / self.scored as f64) as f32),
            examples: self.examples,
        }
    }
}
