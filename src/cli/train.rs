//! `nnc train` and `nnc eval`: load data, form the training step, drive the loop with
//! a progress bar, report, and write the trained model.

use crate::Backend;
use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use nnc_ir::Graph;
use nnc_train::{
    evaluate, fit_to_model, load_mnist_dir, store_params, train, Dataset, EpochReport, InterpBackend, JitBackend,
    Length, Metrics, Observer, Plan, StepBackend, StepInfo, TrainConfig,
};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Where the training examples come from.
pub enum DataSource {
    /// An MNIST-format directory (train and t10k IDX files).
    Mnist(PathBuf),
    /// NPY arrays: inputs `[N, ...]` and labels `[N]`; no test set.
    Npy { inputs: PathBuf, labels: PathBuf },
}

pub struct TrainRequest {
    pub model: Graph,
    pub options: nnc_autodiff::TrainOptions,
    pub backend: Backend,
    pub data: DataSource,
    pub config: TrainConfig,
    pub out: Option<PathBuf>,
    pub quiet: bool,
}

pub fn run_train(req: TrainRequest) -> Result<()> {
    let TrainRequest { mut model, options, backend, data, config, out, quiet } = req;
    if let Some(out) = &out {
        check_writable(out)?;
    }
    let mut backend = make_backend(&model, &options, backend)?;
    let (train_set, test_set) = load_data(&data)?;
    let input_ty = backend.input_type().clone();
    let labels = backend.labels().clone();
    let train_set = fit_to_model(train_set, &input_ty, &labels).context("the training set does not fit the model")?;
    let test_set = test_set
        .map(|t| fit_to_model(t, &input_ty, &labels).context("the test set does not fit the model"))
        .transpose()?;

    let mut observer = ProgressObserver::new(quiet);
    let report = train(backend.as_mut(), &train_set, test_set.as_ref(), &config, &mut observer);
    observer.finish();
    let report = report?;
    eprintln!(
        "trained {} steps ({} examples) in {:.2} s on {}: {:.0} examples/s, final loss {:.4}",
        report.steps,
        report.examples,
        report.train_time.as_secs_f64(),
        report.backend,
        report.examples_per_sec(),
        report.losses.last().copied().unwrap_or(f32::NAN)
    );
    if let Some(m) = report.final_test() {
        crate::write_stdout(&format!("test: {}\n", describe(&m)))?;
    }
    if let Some(out) = out {
        store_params(&mut model, &backend.params())?;
        nnc_onnx::write_file(&model, &out, &nnc_onnx::ExportOptions::default())?;
        eprintln!("wrote {}", out.display());
    }
    Ok(())
}

/// The training step on the chosen backend; prints the differentiation's notes.
fn make_backend(model: &Graph, options: &nnc_autodiff::TrainOptions, backend: Backend) -> Result<Box<dyn StepBackend>> {
    let tg = nnc_autodiff::training_graph(model, options).context("cannot form the training step")?;
    for note in &tg.notes {
        eprintln!("note: {note}");
    }
    Ok(match backend {
        Backend::Interp => Box::new(InterpBackend::from_train_graph(&tg)?),
        Backend::Jit => {
            let started = Instant::now();
            let jit =
                JitBackend::from_train_graph(&tg, &Default::default()).context("cannot compile the training step")?;
            eprintln!(
                "compiled the training step: {} kernels in {:.0} ms",
                jit.kernel_count(),
                started.elapsed().as_secs_f64() * 1e3
            );
            Box::new(jit)
        }
    })
}

/// `nnc eval`: loss and accuracy of a model on the test split of a data directory.
pub fn run_eval(model: &Graph, backend: Backend, data: &Path, batch: usize) -> Result<()> {
    let options = nnc_autodiff::TrainOptions::default();
    let mut backend = make_backend(model, &options, backend).context("cannot evaluate the model")?;
    let (_, test) = load_mnist_dir(data)?;
    let test = fit_to_model(test, &backend.input_type().clone(), &backend.labels().clone())?;
    let m = evaluate(backend.as_mut(), &test, batch)?;
    crate::write_stdout(&format!("test: {}\n", describe(&m)))?;
    Ok(())
}

/// `loss 0.4321, accuracy 84.50% (10000 examples)`.
fn describe(m: &Metrics) -> String {
    let accuracy = m.accuracy.map(|a| format!(", accuracy {:.2}%", 100.0 * a)).unwrap_or_default();
    format!("loss {:.4}{accuracy} ({} examples)", m.loss, m.examples)
}

fn load_data(data: &DataSource) -> Result<(Dataset, Option<Dataset>)> {
    match data {
        DataSource::Mnist(dir) => {
            let (train, test) = load_mnist_dir(dir)?;
            Ok((train, Some(test)))
        }
        DataSource::Npy { inputs, labels } => {
            let x = crate::npy::read_npy(inputs)?;
            let y = crate::npy::read_npy(labels)?;
            let ds = Dataset::new(x, y)
                .with_context(|| format!("{} and {} do not form a data set", inputs.display(), labels.display()))?;
            Ok((ds, None))
        }
    }
}

/// Fails early (before training) if `--out` cannot be written, so an hour of training
/// is not lost to a typo. The file itself is only written, atomically, at the end.
fn check_writable(out: &Path) -> Result<()> {
    let dir = match out.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        bail!("cannot write {}: directory {} does not exist", out.display(), dir.display());
    }
    tempfile::NamedTempFile::new_in(dir).with_context(|| format!("cannot write {}", out.display()))?;
    Ok(())
}

/// Draws a progress bar with the running loss and throughput, and prints one line per
/// epoch.
struct ProgressObserver {
    bar: Option<ProgressBar>,
    quiet: bool,
}

impl ProgressObserver {
    fn new(quiet: bool) -> ProgressObserver {
        ProgressObserver { bar: None, quiet }
    }

    fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }

    fn println(&self, line: String) {
        match &self.bar {
            Some(bar) => bar.println(line),
            None => eprintln!("{line}"),
        }
    }
}

impl Observer for ProgressObserver {
    fn on_start(&mut self, plan: &Plan) {
        if self.quiet {
            return;
        }
        let bar = ProgressBar::new(plan.total_steps);
        bar.set_style(
            ProgressStyle::with_template(
                "{bar:30} {pos}/{len} steps  epoch {prefix}  {msg}  [{elapsed_precise}<{eta}]",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        self.bar = Some(bar);
    }

    fn on_step(&mut self, step: &StepInfo) -> ControlFlow<()> {
        if let Some(bar) = &self.bar {
            bar.set_position(step.step);
            bar.set_prefix(step.epoch.to_string());
            if step.step.is_multiple_of(10) {
                let secs = step.train_time.as_secs_f64().max(1e-9);
                bar.set_message(format!(
                    "loss {:.4}  {:.0} ex/s",
                    step.loss,
                    step.step as f64 * step.batch as f64 / secs
                ));
            }
        }
        ControlFlow::Continue(())
    }

    fn on_epoch(&mut self, e: &EpochReport) {
        let test = e.test.as_ref().map(|t| format!(", test {}", describe(t))).unwrap_or_default();
        let partial = if e.complete { "" } else { " (partial)" };
        self.println(format!(
            "epoch {}{partial}: {} steps, train loss {:.4}{test} ({:.1} s)",
            e.epoch,
            e.steps,
            e.train.loss,
            e.time.as_secs_f64()
        ));
    }
}

pub fn length(epochs: Option<usize>, steps: Option<u64>) -> Length {
    match (epochs, steps) {
        (Some(e), _) => Length::Epochs(e),
        (None, Some(s)) => Length::Steps(s),
        // The seed workload: 1000 steps.
        (None, None) => Length::Steps(1000),
    }
}
