//! The training loop: epochs of shuffled mini-batches through a [`StepBackend`],
//! test-set evaluation at the end of every epoch, divergence detection, and a report
//! with per-step losses, per-epoch metrics and throughput.
//!
//! Progress goes to an [`Observer`], so a command-line tool can draw a progress bar
//! (or stop training early) without this crate depending on a terminal library.

use crate::backend::StepBackend;
use crate::batches::{shuffle_rng, Batches};
use crate::dataset::{Dataset, Labels};
use crate::error::TrainError;
use crate::metrics::{score, Accumulator, Metrics};
use std::ops::ControlFlow;
use std::time::{Duration, Instant};

/// How long to train.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Length {
    /// Whole passes over the training set.
    Epochs(usize),
    /// A number of steps, which may end inside an epoch.
    Steps(u64),
}

#[derive(Clone, Debug, PartialEq)]
pub struct TrainConfig {
    /// Examples per step; the last batch of an epoch may be smaller.
    pub batch: usize,
    pub length: Length,
    pub lr: f32,
    /// Seeds the shuffling (the model's initial weights are seeded where it is built).
    pub seed: u64,
    /// Visit the examples in a fresh random order each epoch (otherwise in order).
    pub shuffle: bool,
    /// Examples per inference call when evaluating; affects speed and memory only.
    pub eval_batch: usize,
}

impl Default for TrainConfig {
    /// The seed workload's settings: batch 100, SGD lr 0.01, shuffled, one epoch.
    fn default() -> Self {
        TrainConfig { batch: 100, length: Length::Epochs(1), lr: 0.01, seed: 0, shuffle: true, eval_batch: 1000 }
    }
}

impl TrainConfig {
    fn validate(&self) -> Result<(), TrainError> {
        let bad = |m: String| Err(TrainError::Config(m));
        if self.batch == 0 || self.eval_batch == 0 {
            return bad(format!("batch sizes must be at least 1, got {} and {} (eval)", self.batch, self.eval_batch));
        }
        if !(self.lr.is_finite() && self.lr >= 0.0) {
            return bad(format!("the learning rate must be a finite number >= 0, got {}", self.lr));
        }
        if matches!(self.length, Length::Epochs(0) | Length::Steps(0)) {
            return bad("training needs at least one epoch or step".into());
        }
        Ok(())
    }
}

/// What a run will do, told to the observer before the first step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub total_steps: u64,
    pub steps_per_epoch: u64,
    /// Epochs started, counting a final partial one.
    pub epochs: usize,
    pub train_examples: usize,
    pub test_examples: Option<usize>,
}

/// One finished step.
#[derive(Clone, Debug, PartialEq)]
pub struct StepInfo {
    /// 1-based, counted over the whole run.
    pub step: u64,
    /// 1-based.
    pub epoch: usize,
    pub loss: f32,
    /// Examples in this step's batch.
    pub batch: usize,
    /// Time spent training so far (evaluation excluded).
    pub train_time: Duration,
}

/// One epoch's results. The last epoch may be partial (a step count that ends inside
/// it, or the observer stopping the run).
#[derive(Clone, Debug, PartialEq)]
pub struct EpochReport {
    /// 1-based.
    pub epoch: usize,
    pub steps: u64,
    pub complete: bool,
    /// Mean training loss over the epoch's examples (the loss of each step, taken
    /// before its update), and training accuracy if the step outputs its logits.
    pub train: Metrics,
    /// The test set with the parameters at the end of the epoch. Not evaluated when
    /// the observer stopped the run.
    pub test: Option<Metrics>,
    /// Training time of the epoch, evaluation excluded.
    pub time: Duration,
}

/// Hooks for progress reporting. Every method has a do-nothing default; `()` is the
/// silent observer.
pub trait Observer {
    fn on_start(&mut self, _plan: &Plan) {}
    /// After each step; `Break` ends the run after recording the partial epoch.
    fn on_step(&mut self, _step: &StepInfo) -> ControlFlow<()> {
        ControlFlow::Continue(())
    }
    /// Before evaluating the test set at the end of an epoch (it can take a while).
    fn on_evaluate(&mut self, _epoch: usize, _examples: usize) {}
    fn on_epoch(&mut self, _epoch: &EpochReport) {}
}

impl Observer for () {}

#[derive(Clone, Debug, PartialEq)]
pub struct TrainReport {
    /// The backend's name.
    pub backend: String,
    pub plan: Plan,
    /// The loss of every step, in order (for loss curves).
    pub losses: Vec<f32>,
    pub epochs: Vec<EpochReport>,
    pub steps: u64,
    /// Training examples processed (counting repeats across epochs).
    pub examples: u64,
    /// Time in training steps, including gathering batches.
    pub train_time: Duration,
    /// Time evaluating the test set.
    pub eval_time: Duration,
    /// Wall time of the whole call.
    pub total_time: Duration,
    /// The observer ended the run before the planned number of steps.
    pub stopped_early: bool,
}

impl TrainReport {
    /// Training throughput (evaluation excluded).
    pub fn examples_per_sec(&self) -> f64 {
        self.examples as f64 / self.train_time.as_secs_f64().max(1e-9)
    }

    /// The test metrics after the last epoch that was evaluated.
    pub fn final_test(&self) -> Option<Metrics> {
        self.epochs.iter().rev().find_map(|e| e.test)
    }
}

/// Trains `backend` on `train_set` as `cfg` says, evaluating `test_set` at the end of
/// every epoch (including a final partial one). Both data sets must already fit the
/// model ([`crate::fit_to_model`]). A NaN or infinite loss stops the run with
/// [`TrainError::Diverged`]; the parameters are then those after the failing step.
pub fn train<B: StepBackend + ?Sized>(
    backend: &mut B,
    train_set: &Dataset,
    test_set: Option<&Dataset>,
    cfg: &TrainConfig,
    observer: &mut dyn Observer,
) -> Result<TrainReport, TrainError> {
    let start = Instant::now();
    cfg.validate()?;
    check_set("training", train_set, backend)?;
    if let Some(test) = test_set {
        check_set("test", test, backend)?;
    }
    let labels = backend.labels().clone();
    let mut batches = Batches::new(train_set, cfg.batch)?;
    let steps_per_epoch = batches.per_epoch() as u64;
    let total_steps = match cfg.length {
        Length::Epochs(e) => (e as u64).saturating_mul(steps_per_epoch),
        Length::Steps(s) => s,
    };
    let plan = Plan {
        total_steps,
        steps_per_epoch,
        epochs: total_steps.div_ceil(steps_per_epoch) as usize,
        train_examples: train_set.len(),
        test_examples: test_set.map(Dataset::len),
    };
    observer.on_start(&plan);

    let mut rng = shuffle_rng(cfg.seed);
    let mut report = TrainReport {
        backend: backend.name().to_string(),
        plan: plan.clone(),
        losses: Vec::with_capacity(total_steps.min(1 << 24) as usize),
        epochs: Vec::with_capacity(plan.epochs),
        steps: 0,
        examples: 0,
        train_time: Duration::ZERO,
        eval_time: Duration::ZERO,
        total_time: Duration::ZERO,
        stopped_early: false,
    };
    for epoch in 1..=plan.epochs {
        batches.start_epoch(cfg.shuffle.then_some(&mut rng));
        let mut acc = Accumulator::default();
        let (first_step, mut epoch_time) = (report.steps, Duration::ZERO);
        while report.steps < total_steps {
            let t0 = Instant::now();
            let Some(batch) = batches.next_batch() else { break };
            let n = batch.indices.len();
            let step = report.steps + 1;
            let result = backend.step(batch.x, batch.y, cfg.lr, step)?;
            if !result.loss.is_finite() {
                return Err(TrainError::Diverged { step, epoch, loss: result.loss, lr: cfg.lr });
            }
            acc.add_loss(result.loss, n);
            if let (Some(logits), Labels::Classes(_)) = (&result.logits, &labels) {
                acc.add_score(&score(logits, batch.y, &labels)?, false);
            }
            let dt = t0.elapsed();
            epoch_time += dt;
            report.train_time += dt;
            report.steps = step;
            report.examples += n as u64;
            report.losses.push(result.loss);
            let info = StepInfo { step, epoch, loss: result.loss, batch: n, train_time: report.train_time };
            if observer.on_step(&info).is_break() {
                report.stopped_early = step < total_steps;
                break;
            }
        }
        let steps = report.steps - first_step;
        let test = match test_set {
            Some(test) if !report.stopped_early => {
                observer.on_evaluate(epoch, test.len());
                let t0 = Instant::now();
                let m = evaluate(backend, test, cfg.eval_batch)?;
                report.eval_time += t0.elapsed();
                Some(m)
            }
            _ => None,
        };
        let epoch_report = EpochReport {
            epoch,
            steps,
            complete: steps == steps_per_epoch,
            train: acc.finish(),
            test,
            time: epoch_time,
        };
        observer.on_epoch(&epoch_report);
        report.epochs.push(epoch_report);
        if report.stopped_early {
            break;
        }
    }
    report.total_time = start.elapsed();
    Ok(report)
}

/// Mean loss and accuracy (classification) of the backend's current parameters on
/// a data set, in batches of `batch` examples, without changing anything.
pub fn evaluate<B: StepBackend + ?Sized>(backend: &mut B, ds: &Dataset, batch: usize) -> Result<Metrics, TrainError> {
    check_set("evaluation", ds, backend)?;
    let labels = backend.labels().clone();
    let mut batches = Batches::new(ds, batch)?;
    let mut acc = Accumulator::default();
    while let Some(b) = batches.next_batch() {
        let prediction = backend.infer(b.x)?;
        acc.add_score(&score(&prediction, b.y, &labels)?, true);
    }
    Ok(acc.finish())
}

/// Checks that a data set is not empty and fits the backend, naming the set.
fn check_set<B: StepBackend + ?Sized>(set: &'static str, ds: &Dataset, backend: &B) -> Result<(), TrainError> {
    let wrap = |source| TrainError::DataSet { set, source: Box::new(source) };
    if ds.is_empty() {
        return Err(wrap(TrainError::Shape("it has no examples".into())));
    }
    ds.check_fits(backend.input_type(), backend.labels()).map_err(wrap)
}
