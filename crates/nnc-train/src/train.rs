//! The training loop: epochs of shuffled mini-batches through a [`StepBackend`],
//! test-set evaluation at the end of every epoch, divergence detection, and a report
//! with per-step losses, per-epoch metrics and throughput.
//!
//! Progress goes to an [`Observer`], so a command-line tool can draw a progress bar
//! (or stop training early) without this crate depending on a terminal library.
//!
//! [`train_with`] adds checkpoints ([`crate::checkpoint`]): written at the end of every
//! epoch, every `every` steps and at the end of the run, and resumed so that the run
//! continues bit for bit as if it had not stopped.
//!
//! Divergence: the loss is checked after every step; parameters and optimizer state
//! when the loss is not finite, every [`TrainConfig::check_every`] steps, at the end of
//! every epoch and before every checkpoint is written (so no checkpoint ever holds a
//! NaN or an infinity); and after every step under [`NanPolicy::Skip`], which keeps a
//! copy of them to undo a bad step.

use crate::backend::StepBackend;
use crate::batches::{shuffle_rng, Batches};
use crate::checkpoint::{Checkpoint, CheckpointDir, Progress, RunIdentity};
use crate::dataset::{Dataset, Labels};
use crate::error::TrainError;
use crate::metrics::{score, Accumulator, BatchScore, Metrics};
use nnc_ir::Tensor;
use std::ops::ControlFlow;
use std::path::PathBuf;
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
    /// What a NaN or infinite loss, parameter or optimizer state does.
    pub on_nan: NanPolicy,
    /// Also scan the parameters and optimizer state for NaN and infinities every this
    /// many steps (0: only when the loss is not finite, at the end of each epoch and
    /// before each checkpoint). A scan copies them once.
    pub check_every: u64,
}

impl Default for TrainConfig {
    /// The seed workload's settings: batch 100, SGD lr 0.01, shuffled, one epoch;
    /// stop on NaN, scan the parameters every 100 steps.
    fn default() -> Self {
        TrainConfig {
            batch: 100,
            length: Length::Epochs(1),
            lr: 0.01,
            seed: 0,
            shuffle: true,
            eval_batch: 1000,
            on_nan: NanPolicy::Stop,
            check_every: 100,
        }
    }
}

/// What happens when a step leaves a NaN or an infinity in the loss, a parameter or
/// the optimizer state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum NanPolicy {
    /// Stop with [`TrainError::Diverged`], naming the step and the first non-finite
    /// tensor (the loss, then parameters and state in order). No checkpoint of the
    /// bad state is written: the last one stays as it was.
    #[default]
    Stop,
    /// Undo the step (restore the parameters and state from before it) and go on with
    /// the next batch; the step still counts towards the run's length. Costs a copy of
    /// the parameters and state, and a scan of them, per step. After
    /// [`MAX_CONSECUTIVE_SKIPS`] skipped steps in a row, stops as `Stop` does.
    Skip,
}

/// Under [`NanPolicy::Skip`], this many skipped steps in a row stop the run: the
/// training is not recovering.
pub const MAX_CONSECUTIVE_SKIPS: u64 = 10;

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
    /// A step was undone under [`NanPolicy::Skip`] (`on_step` is not called for it).
    fn on_skip(&mut self, _skip: &Skipped) {}
    /// A checkpoint of the state after `step` was written.
    fn on_checkpoint(&mut self, _step: u64, _path: &std::path::Path) {}
    /// The run continues from `checkpoint` (checked to match; called before
    /// [`Observer::on_start`]).
    fn on_resume(&mut self, _checkpoint: &Checkpoint) {}
}

/// A step undone under [`NanPolicy::Skip`].
#[derive(Clone, Debug, PartialEq)]
pub struct Skipped {
    pub step: u64,
    pub epoch: usize,
    /// What was not finite, e.g. `the loss is NaN`.
    pub reason: String,
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
/// model ([`crate::fit_to_model`]). Divergence is handled as [`TrainConfig::on_nan`]
/// says; with [`NanPolicy::Stop`], the run ends with [`TrainError::Diverged`] and the
/// parameters are those after the failing step.
pub fn train<B: StepBackend + ?Sized>(
    backend: &mut B,
    train_set: &Dataset,
    test_set: Option<&Dataset>,
    cfg: &TrainConfig,
    observer: &mut dyn Observer,
) -> Result<TrainReport, TrainError> {
    train_with(backend, train_set, test_set, cfg, Checkpointing::default(), observer).map(|o| o.report)
}

/// Checkpoints for [`train_with`]: where to write them, how often, what identifies
/// the run, and the checkpoint to continue from. `Default`: none.
#[derive(Debug, Default)]
pub struct Checkpointing {
    /// What a resumed checkpoint must match, and what written ones record.
    pub identity: RunIdentity,
    /// Write checkpoints here: at the end of every epoch, every `every` steps, and at
    /// the end of the run (also when the observer stops it early).
    pub dir: Option<CheckpointDir>,
    /// Steps between checkpoints inside an epoch (0: only at the ends of epochs).
    pub every: u64,
    /// Continue this run: the checkpoint, and the file it was read from (for errors).
    pub resume: Option<(PathBuf, Checkpoint)>,
}

/// What [`train_with`] reports beyond the [`TrainReport`].
#[derive(Clone, Debug, PartialEq)]
pub struct RunOutcome {
    /// Covers the whole run, also when resumed: the losses and epochs from before the
    /// checkpoint come from it, and the step and example counts and training and
    /// evaluation times count from the start of the original run (`total_time` is
    /// this call's).
    pub report: TrainReport,
    /// The step the run continued from, when resumed.
    pub resumed_from: Option<u64>,
    /// Steps undone under [`NanPolicy::Skip`] over the whole run.
    pub skipped: u64,
    /// The last checkpoint written by this call: its step and file.
    pub last_checkpoint: Option<(u64, PathBuf)>,
    pub checkpoints_written: u64,
}

/// [`train`], with checkpoints: resumes from `ckpt.resume` if given — after checking
/// that it matches `ckpt.identity`, the backend's parameters and this run's plan, so a
/// mismatch is an error before anything changes — and writes checkpoints into
/// `ckpt.dir`. The length in `cfg` counts from the start of the original run: a run
/// of N steps resumed with `Length::Steps(2 * N)` takes N more steps and ends with
/// the parameters an uninterrupted run of 2N steps has, bit for bit (same backend).
pub fn train_with<B: StepBackend + ?Sized>(
    backend: &mut B,
    train_set: &Dataset,
    test_set: Option<&Dataset>,
    cfg: &TrainConfig,
    mut ckpt: Checkpointing,
    observer: &mut dyn Observer,
) -> Result<RunOutcome, TrainError> {
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
    let mut run = RunState { dir: ckpt.dir.take(), every: ckpt.every, ..RunState::default() };
    let mut resumed = None;
    if let Some((path, c)) = ckpt.resume.take() {
        c.check_resumable(&ckpt.identity, &*backend, &plan)
            .map_err(|message| TrainError::Resume { path: path.clone(), message })?;
        observer.on_resume(&c);
        let Checkpoint { params, state, losses, epochs, progress, .. } = c;
        for (name, value) in params.into_iter().chain(state) {
            backend.set_value(&name, value)?;
        }
        report.steps = progress.step;
        report.examples = progress.examples;
        report.train_time = progress.train_time;
        report.eval_time = progress.eval_time;
        report.losses.extend(losses);
        report.epochs = epochs;
        rng.set_word_pos(progress.rng_word_pos);
        run.skipped = progress.skipped;
        run.consecutive_skips = progress.consecutive_skips;
        run.last_checkpoint = Some((progress.step, path));
        resumed = Some(progress);
    }
    let resumed_from = resumed.as_ref().map(|p| p.step);
    run.identity = ckpt.identity;
    observer.on_start(&plan);

    let first_epoch = resumed.as_ref().map_or(1, |p| p.epoch);
    let skip_policy = cfg.on_nan == NanPolicy::Skip;
    for epoch in first_epoch..=plan.epochs {
        let mut ep = EpochState {
            epoch,
            rng_word_pos: rng.get_word_pos(),
            first_step: report.steps,
            taken: 0,
            time: Duration::ZERO,
            losses_from: report.losses.len(),
            correct: 0,
            scored: 0,
        };
        batches.start_epoch(cfg.shuffle.then_some(&mut rng));
        let mut acc = Accumulator::default();
        if let Some(p) = resumed.take() {
            // Continue the epoch the checkpoint is in: skip its batches taken, and
            // restore its sums (the losses are added again in the same order).
            batches.skip(p.epoch_steps as usize);
            ep.taken = p.epoch_steps;
            ep.first_step = p.step - p.epoch_steps;
            ep.time = p.epoch_time;
            ep.losses_from = p.epoch_losses_from;
            ep.correct = p.epoch_correct;
            ep.scored = p.epoch_scored;
            for &loss in &report.losses[p.epoch_losses_from..] {
                acc.add_loss(loss, cfg.batch);
            }
            let correct = usize::try_from(p.epoch_correct).unwrap_or(usize::MAX);
            let scored = usize::try_from(p.epoch_scored).unwrap_or(usize::MAX);
            acc.add_score(&BatchScore { loss_sum: 0.0, correct: Some(correct), examples: scored }, false);
        }
        while report.steps < total_steps {
            let t0 = Instant::now();
            let Some(batch) = batches.next_batch() else { break };
            ep.taken += 1;
            let n = batch.indices.len();
            let step = report.steps + 1;
            let before = skip_policy.then(|| (backend.params(), backend.state()));
            let result = backend.step(batch.x, batch.y, cfg.lr, step)?;
            let fault = if !result.loss.is_finite() {
                let what = match non_finite_leaf(&*backend) {
                    Some(leaf) => format!("the loss is {}, and {}", result.loss, leaf.what),
                    None => format!("the loss is {}", result.loss),
                };
                Some(Fault { tensor: "loss".into(), what })
            } else if skip_policy || (cfg.check_every > 0 && step.is_multiple_of(cfg.check_every)) {
                non_finite_leaf(&*backend)
            } else {
                None
            };
            let (dt, skipped);
            match (fault, before) {
                (None, _) => {
                    run.consecutive_skips = 0;
                    acc.add_loss(result.loss, n);
                    if let (Some(logits), Labels::Classes(_)) = (&result.logits, &labels) {
                        let s = score(logits, batch.y, &labels)?;
                        ep.correct += s.correct.unwrap_or(0) as u64;
                        ep.scored += if s.correct.is_some() { s.examples as u64 } else { 0 };
                        acc.add_score(&s, false);
                    }
                    (dt, skipped) = (t0.elapsed(), false);
                    report.examples += n as u64;
                    report.losses.push(result.loss);
                }
                (Some(fault), Some((params, state))) => {
                    for (name, value) in params.into_iter().chain(state) {
                        backend.set_value(&name, value)?;
                    }
                    run.skipped += 1;
                    run.consecutive_skips += 1;
                    if run.consecutive_skips >= MAX_CONSECUTIVE_SKIPS {
                        let what = format!("{} ({} steps in a row skipped)", fault.what, run.consecutive_skips);
                        return Err(diverged(step, epoch, result.loss, cfg.lr, Fault { what, ..fault }, &run));
                    }
                    observer.on_skip(&Skipped { step, epoch, reason: fault.what });
                    (dt, skipped) = (t0.elapsed(), true);
                }
                (Some(fault), None) => return Err(diverged(step, epoch, result.loss, cfg.lr, fault, &run)),
            }
            ep.time += dt;
            report.train_time += dt;
            report.steps = step;
            if run.dir.is_some()
                && run.every > 0
                && step.is_multiple_of(run.every)
                && ep.taken < steps_per_epoch
                && step < total_steps
            {
                // (The end of an epoch and of the run are checkpointed below.)
                run.write(&*backend, &report, &ep, &rng, steps_per_epoch, cfg, observer)?;
            }
            if !skipped {
                let info = StepInfo { step, epoch, loss: result.loss, batch: n, train_time: report.train_time };
                if observer.on_step(&info).is_break() {
                    report.stopped_early = step < total_steps;
                    break;
                }
            }
        }
        if let Some(fault) = non_finite_leaf(&*backend) {
            return Err(diverged(
                report.steps,
                epoch,
                report.losses.last().copied().unwrap_or(f32::NAN),
                cfg.lr,
                fault,
                &run,
            ));
        }
        let steps = report.steps - ep.first_step;
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
            complete: ep.taken == steps_per_epoch,
            train: acc.finish(),
            test,
            time: ep.time,
        };
        observer.on_epoch(&epoch_report);
        report.epochs.push(epoch_report);
        if run.dir.is_some() && ep.taken == steps_per_epoch {
            run.write(&*backend, &report, &ep, &rng, steps_per_epoch, cfg, observer)?;
        }
        if report.stopped_early || report.steps >= total_steps {
            // The end of the run: checkpoint it unless that was just done.
            if run.dir.is_some() && run.last_written != Some(report.steps) {
                run.write(&*backend, &report, &ep, &rng, steps_per_epoch, cfg, observer)?;
            }
            break;
        }
    }
    report.total_time = start.elapsed();
    Ok(RunOutcome {
        report,
        resumed_from,
        skipped: run.skipped,
        last_checkpoint: run.last_checkpoint.filter(|_| run.written > 0),
        checkpoints_written: run.written,
    })
}

/// The loop's bookkeeping across epochs, and the checkpoint writer.
#[derive(Default)]
struct RunState {
    identity: RunIdentity,
    dir: Option<CheckpointDir>,
    every: u64,
    skipped: u64,
    consecutive_skips: u64,
    /// The last checkpoint of the run: written by this call, or resumed from.
    last_checkpoint: Option<(u64, PathBuf)>,
    /// The step of the last checkpoint this call wrote, and how many it wrote.
    last_written: Option<u64>,
    written: u64,
}

/// Where the loop is in the current epoch.
struct EpochState {
    epoch: usize,
    /// The shuffling RNG's position before this epoch's permutation was drawn.
    rng_word_pos: u128,
    /// The run's step count when the epoch began.
    first_step: u64,
    /// Batches taken (skipped steps included).
    taken: u64,
    time: Duration,
    /// Where the epoch's losses start in the report's.
    losses_from: usize,
    correct: u64,
    scored: u64,
}

/// A non-finite tensor, for [`TrainError::Diverged`] and [`Skipped`].
struct Fault {
    tensor: String,
    what: String,
}

fn diverged(step: u64, epoch: usize, loss: f32, lr: f32, fault: Fault, run: &RunState) -> TrainError {
    TrainError::Diverged {
        step,
        epoch,
        loss,
        lr,
        tensor: fault.tensor,
        what: fault.what,
        checkpoint: run.last_checkpoint.clone(),
    }
}

/// The first NaN or infinity in the parameters, then the optimizer state, in order.
fn non_finite_leaf<B: StepBackend + ?Sized>(backend: &B) -> Option<Fault> {
    first_non_finite(&backend.params(), "parameter").or_else(|| first_non_finite(&backend.state(), "optimizer state"))
}

fn first_non_finite(leaves: &[(String, Tensor)], kind: &str) -> Option<Fault> {
    leaves.iter().find_map(|(name, t)| {
        let (element, value) = t.as_f32()?.iter().enumerate().find(|(_, v)| !v.is_finite())?;
        Some(Fault { tensor: name.clone(), what: format!("{kind} \"{name}\" holds {value} at element {element}") })
    })
}

impl RunState {
    /// Writes a checkpoint of the state after the last step taken (the caller knows
    /// `dir` is set), first checking that no parameter or state is non-finite.
    #[allow(clippy::too_many_arguments)]
    fn write<B: StepBackend + ?Sized>(
        &mut self,
        backend: &B,
        report: &TrainReport,
        ep: &EpochState,
        rng: &rand_chacha::ChaCha8Rng,
        steps_per_epoch: u64,
        cfg: &TrainConfig,
        observer: &mut dyn Observer,
    ) -> Result<(), TrainError> {
        let Some(dir) = &self.dir else { return Ok(()) };
        let (params, state) = (backend.params(), backend.state());
        if let Some(fault) =
            first_non_finite(&params, "parameter").or_else(|| first_non_finite(&state, "optimizer state"))
        {
            let loss = report.losses.last().copied().unwrap_or(f32::NAN);
            return Err(diverged(report.steps, ep.epoch, loss, cfg.lr, fault, self));
        }
        // A finished epoch is stored as the start of the next one, not yet shuffled.
        let progress = if ep.taken >= steps_per_epoch {
            Progress {
                epoch: ep.epoch + 1,
                epoch_steps: 0,
                rng_word_pos: rng.get_word_pos(),
                epoch_time: Duration::ZERO,
                epoch_losses_from: report.losses.len(),
                epoch_correct: 0,
                epoch_scored: 0,
                ..Progress::default()
            }
        } else {
            Progress {
                epoch: ep.epoch,
                epoch_steps: ep.taken,
                rng_word_pos: ep.rng_word_pos,
                epoch_time: ep.time,
                epoch_losses_from: ep.losses_from,
                epoch_correct: ep.correct,
                epoch_scored: ep.scored,
                ..Progress::default()
            }
        };
        let progress = Progress {
            step: report.steps,
            skipped: self.skipped,
            consecutive_skips: self.consecutive_skips,
            examples: report.examples,
            train_time: report.train_time,
            eval_time: report.eval_time,
            ..progress
        };
        let checkpoint = Checkpoint {
            identity: self.identity.clone(),
            backend: backend.name().to_string(),
            epochs: report.epochs.iter().filter(|e| e.epoch < progress.epoch).cloned().collect(),
            progress,
            params,
            state,
            losses: report.losses.clone(),
        };
        dir.write(&checkpoint)?;
        self.written += 1;
        self.last_written = Some(report.steps);
        self.last_checkpoint = Some((report.steps, dir.file()));
        observer.on_checkpoint(report.steps, &dir.file());
        Ok(())
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::StepResult;
    use crate::dataset::Labels;
    use crate::{InterpBackend, JitBackend};
    use nnc_autodiff::{Optimizer, TrainOptions};
    use nnc_ir::{Dim, Graph, TensorType};

    /// A ReLU MLP with small pseudo-random weights.
    fn mlp(layers: &[usize], seed: u64) -> Graph {
        let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let mut next = move || {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.8
        };
        let mut g = Graph::new("mlp");
        let mut h = g.input("input", TensorType::f32(&[Dim::Batch, Dim::Fixed(layers[0])])).unwrap();
        for (i, pair) in layers.windows(2).enumerate() {
            let w: Vec<f32> = (0..pair[0] * pair[1]).map(|_| next()).collect();
            let w = g.param(&format!("w{i}"), Tensor::from_f32(&[pair[0], pair[1]], w).unwrap()).unwrap();
            let b = g.param(&format!("b{i}"), Tensor::from_f32(&[pair[1]], vec![0.0; pair[1]]).unwrap()).unwrap();
            let mm = g.matmul(h, w, false, false).unwrap();
            h = g.add(mm, b).unwrap();
            if i + 2 < layers.len() {
                h = g.relu(h).unwrap();
            }
        }
        g.set_outputs(vec![h]);
        g
    }

    /// `n` examples of 4 features; the class is the largest of the first three.
    fn data(n: usize, seed: u64) -> Dataset {
        let x: Vec<f32> = (0..n * 4).map(|i| ((i as u64 * 7919 + seed * 31) % 101) as f32 / 101.0).collect();
        let y: Vec<i64> =
            (0..n).map(|r| (0..3).max_by(|&a, &b| x[r * 4 + a].total_cmp(&x[r * 4 + b])).unwrap() as i64).collect();
        Dataset::new(Tensor::from_f32(&[n, 4], x).unwrap(), Tensor::from_i64(&[n], y).unwrap()).unwrap()
    }

    fn bits(leaves: &[(String, Tensor)]) -> Vec<(String, Vec<u32>)> {
        leaves.iter().map(|(n, t)| (n.clone(), t.as_f32().unwrap().iter().map(|v| v.to_bits()).collect())).collect()
    }

    /// Epoch reports without their times.
    fn epochs(r: &TrainReport) -> Vec<(usize, u64, bool, Metrics, Option<Metrics>)> {
        r.epochs.iter().map(|e| (e.epoch, e.steps, e.complete, e.train, e.test)).collect()
    }

    fn options(optimizer: Optimizer) -> TrainOptions {
        TrainOptions { optimizer, output_logits: true, ..TrainOptions::default() }
    }

    fn backend(jit: bool, model: &Graph, opts: &TrainOptions) -> Box<dyn StepBackend> {
        match jit {
            true => Box::new(JitBackend::new(model, opts, &Default::default()).unwrap()),
            false => Box::new(InterpBackend::new(model, opts).unwrap()),
        }
    }

    /// 45 examples in batches of 8: 6 steps per epoch, the last of 5 examples. A run
    /// of 20 steps stopped after steps 4, 6 (an epoch's end), 11 and resumed each time
    /// ends with the parameters, optimizer state, losses and epoch reports of an
    /// uninterrupted one, bit for bit; so do their final checkpoints.
    #[test]
    fn a_resumed_run_is_bit_for_bit_the_uninterrupted_one() {
        let (train_set, test_set) = (data(45, 1), data(20, 2));
        let model = mlp(&[4, 8, 3], 3);
        for (optimizer, jit) in [(Optimizer::Sgd, false), (Optimizer::momentum(), false), (Optimizer::adam(), false)]
            .into_iter()
            .chain([(Optimizer::adam(), true)])
        {
            let opts = options(optimizer);
            let cfg = TrainConfig { batch: 8, length: Length::Steps(20), lr: 0.05, seed: 5, ..TrainConfig::default() };
            let identity = RunIdentity::new(&model, &opts, &cfg, &train_set);
            let tmp = tempfile::tempdir().unwrap();
            let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));

            let mut whole = backend(jit, &model, &opts);
            let ckpt = Checkpointing {
                identity: identity.clone(),
                dir: Some(CheckpointDir::open(&a, false).unwrap()),
                every: 5,
                resume: None,
            };
            let full = train_with(whole.as_mut(), &train_set, Some(&test_set), &cfg, ckpt, &mut ()).unwrap();
            assert_eq!(full.last_checkpoint.as_ref().map(|c| c.0), Some(20));
            // Every 5 steps except 20 (the end), the ends of epochs 1-3 (6, 12, 18), the end.
            assert_eq!(full.checkpoints_written, 3 + 3 + 1);

            let mut last = None;
            for (i, stop) in [4u64, 6, 11, 20].into_iter().enumerate() {
                let mut part = backend(jit, &model, &opts);
                let cfg = TrainConfig { length: Length::Steps(stop), ..cfg.clone() };
                let resume = (i > 0).then(|| (b.join(crate::CHECKPOINT_FILE), crate::Checkpoint::load(&b).unwrap()));
                let ckpt = Checkpointing {
                    identity: identity.clone(),
                    dir: Some(CheckpointDir::open(&b, i > 0).unwrap()),
                    every: 0,
                    resume,
                };
                let o = train_with(part.as_mut(), &train_set, Some(&test_set), &cfg, ckpt, &mut ()).unwrap();
                assert_eq!(o.resumed_from, [None, Some(4), Some(6), Some(11)][i]);
                assert_eq!(o.report.steps, stop);
                last = Some((o, part));
            }
            let (resumed, part) = last.unwrap();
            let what = format!("{optimizer:?}, jit {jit}");
            assert_eq!(bits(&part.params()), bits(&whole.params()), "{what}");
            assert_eq!(bits(&part.state()), bits(&whole.state()), "{what}");
            let losses = |r: &TrainReport| r.losses.iter().map(|l| l.to_bits()).collect::<Vec<_>>();
            assert_eq!(losses(&resumed.report), losses(&full.report), "{what}");
            assert_eq!(epochs(&resumed.report), epochs(&full.report), "{what}");
            assert_eq!(resumed.report.examples, full.report.examples);
            let (ca, cb) = (crate::Checkpoint::load(&a).unwrap(), crate::Checkpoint::load(&b).unwrap());
            assert_eq!(bits(&ca.params), bits(&cb.params), "{what}");
            assert_eq!(bits(&ca.state), bits(&cb.state), "{what}");
            let untimed = |p: &Progress| Progress {
                train_time: Duration::ZERO,
                eval_time: Duration::ZERO,
                epoch_time: Duration::ZERO,
                ..p.clone()
            };
            assert_eq!(untimed(&ca.progress), untimed(&cb.progress), "{what}");
            assert_eq!(ca.identity, cb.identity);
        }
    }

    #[test]
    fn a_checkpoint_of_another_run_is_refused_before_anything_changes() {
        let train_set = data(45, 1);
        let model = mlp(&[4, 8, 3], 3);
        let opts = options(Optimizer::adam());
        let cfg = TrainConfig { batch: 8, length: Length::Steps(7), lr: 0.05, ..TrainConfig::default() };
        let tmp = tempfile::tempdir().unwrap();
        let identity = RunIdentity::new(&model, &opts, &cfg, &train_set);
        let ckpt = Checkpointing {
            identity,
            dir: Some(CheckpointDir::open(tmp.path(), false).unwrap()),
            every: 0,
            resume: None,
        };
        train_with(&mut InterpBackend::new(&model, &opts).unwrap(), &train_set, None, &cfg, ckpt, &mut ()).unwrap();
        let saved = crate::Checkpoint::load(tmp.path()).unwrap();
        let resume = |model: &Graph, opts: &TrainOptions, cfg: &TrainConfig, ds: &Dataset| {
            let mut b = InterpBackend::new(model, opts).unwrap();
            let before = bits(&b.params());
            let ckpt = Checkpointing {
                identity: RunIdentity::new(model, opts, cfg, ds),
                dir: None,
                every: 0,
                resume: Some((tmp.path().join("checkpoint.nnc"), saved.clone())),
            };
            let e = train_with(&mut b, ds, None, cfg, ckpt, &mut ()).unwrap_err().to_string();
            assert_eq!(bits(&b.params()), before, "a refused checkpoint changes nothing");
            e
        };
        let long = TrainConfig { length: Length::Steps(20), ..cfg.clone() };
        let e = resume(&model, &options(Optimizer::Sgd), &long, &train_set);
        assert!(e.contains("optimizer adam") && e.contains("optimizer sgd"), "{e}");
        let e = resume(&model, &opts, &TrainConfig { lr: 0.1, ..long.clone() }, &train_set);
        assert!(e.contains("learning rate 0.05") && e.contains("learning rate 0.1"), "{e}");
        let e = resume(&model, &opts, &TrainConfig { seed: 1, ..long.clone() }, &train_set);
        assert!(e.contains("shuffling on, seed 0"), "{e}");
        let e = resume(&model, &opts, &long, &data(45, 9));
        assert!(e.contains("training set"), "{e}");
        let e = resume(&mlp(&[4, 5, 3], 3), &opts, &long, &train_set);
        assert!(e.contains("\"w0\" is f32[4,8], and this model's is f32[4,5]"), "{e}");
        let e = resume(&model, &opts, &TrainConfig { length: Length::Steps(6), ..cfg.clone() }, &train_set);
        assert!(e.contains("at step 7, past the end of this run (6 steps"), "{e}");
    }

    #[test]
    fn stop_names_the_step_and_tensor_and_keeps_the_last_checkpoint() {
        let train_set = data(45, 1);
        let model = mlp(&[4, 8, 3], 3);
        let opts = options(Optimizer::Sgd);
        let cfg = TrainConfig { batch: 8, length: Length::Steps(50), lr: 1e30, ..TrainConfig::default() };
        let tmp = tempfile::tempdir().unwrap();
        let ckpt = Checkpointing {
            identity: RunIdentity::new(&model, &opts, &cfg, &train_set),
            dir: Some(CheckpointDir::open(tmp.path(), false).unwrap()),
            every: 1,
            resume: None,
        };
        let mut b = InterpBackend::new(&model, &opts).unwrap();
        let e = train_with(&mut b, &train_set, None, &cfg, ckpt, &mut ()).unwrap_err();
        let TrainError::Diverged { step, ref tensor, checkpoint: Some((last, ref path)), .. } = e else {
            panic!("{e:?}")
        };
        let message = e.to_string();
        assert!(message.contains(&format!("diverged at step {step}")), "{message}");
        assert!(message.contains("learning rate than 1e30"), "{message}");
        assert!(message.contains(&format!("the last checkpoint (step {last}) is intact")), "{message}");
        assert_eq!(tensor, "loss", "{message}");
        assert_eq!(last, step - 1);
        let c = crate::Checkpoint::read_file(path).unwrap();
        assert_eq!(c.progress.step, last);
        assert!(c.params.iter().all(|(_, t)| t.as_f32().unwrap().iter().all(|v| v.is_finite())));
    }

    /// Makes the loss NaN at the given steps (after the real step has updated the
    /// parameters), or — `noop` — takes no step at all there.
    struct Inject<B> {
        inner: B,
        bad: Vec<u64>,
        noop: bool,
    }

    impl<B: StepBackend> StepBackend for Inject<B> {
        fn name(&self) -> &str {
            self.inner.name()
        }
        fn input_type(&self) -> &TensorType {
            self.inner.input_type()
        }
        fn labels(&self) -> &Labels {
            self.inner.labels()
        }
        fn step(&mut self, x: &Tensor, y: &Tensor, lr: f32, step: u64) -> Result<StepResult, TrainError> {
            if !self.bad.contains(&step) {
                return self.inner.step(x, y, lr, step);
            }
            if self.noop {
                return Ok(StepResult { loss: 1.0, logits: None });
            }
            Ok(StepResult { loss: f32::NAN, ..self.inner.step(x, y, lr, step)? })
        }
        fn infer(&mut self, x: &Tensor) -> Result<Tensor, TrainError> {
            self.inner.infer(x)
        }
        fn params(&self) -> Vec<(String, Tensor)> {
            self.inner.params()
        }
        fn state(&self) -> Vec<(String, Tensor)> {
            self.inner.state()
        }
        fn set_value(&mut self, name: &str, value: Tensor) -> Result<(), TrainError> {
            self.inner.set_value(name, value)
        }
    }

    #[test]
    fn skip_undoes_bad_steps_and_stop_names_them() {
        let train_set = data(45, 1);
        let model = mlp(&[4, 8, 3], 3);
        let opts = options(Optimizer::adam());
        let cfg = TrainConfig {
            batch: 8,
            length: Length::Steps(15),
            lr: 0.05,
            on_nan: NanPolicy::Skip,
            ..TrainConfig::default()
        };
        let bad = vec![3, 7, 8];
        let inject = |noop| Inject { inner: InterpBackend::new(&model, &opts).unwrap(), bad: bad.clone(), noop };
        let mut skipping = inject(false);
        let o = train_with(&mut skipping, &train_set, None, &cfg, Checkpointing::default(), &mut ()).unwrap();
        assert_eq!((o.skipped, o.report.steps, o.report.losses.len()), (3, 15, 12));
        let mut reference = inject(true);
        train(&mut reference, &train_set, None, &cfg, &mut ()).unwrap();
        assert_eq!(bits(&skipping.params()), bits(&reference.params()), "a skipped step leaves no trace");
        assert_eq!(bits(&skipping.state()), bits(&reference.state()));

        let stop = TrainConfig { on_nan: NanPolicy::Stop, ..cfg.clone() };
        let e = train(&mut inject(false), &train_set, None, &stop, &mut ()).unwrap_err();
        assert!(matches!(&e, TrainError::Diverged { step: 3, epoch: 1, tensor, .. } if tensor == "loss"), "{e}");
        assert!(e.to_string().contains("at step 3 (epoch 1): the loss is NaN"), "{e}");

        let mut hopeless =
            Inject { inner: InterpBackend::new(&model, &opts).unwrap(), bad: (2..100).collect(), noop: false };
        let e = train(&mut hopeless, &train_set, None, &cfg, &mut ()).unwrap_err();
        assert!(matches!(e, TrainError::Diverged { step: 11, .. }), "{e}");
        assert!(e.to_string().contains("10 steps in a row skipped"), "{e}");
    }
}
