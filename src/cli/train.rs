//! `nnc train` and `nnc eval`: load data, form the training step, drive the loop with
//! a progress bar, report, and write the trained model.

use crate::Backend;
use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use nnc_ir::Graph;
use nnc_train::{
    evaluate, fit_to_model, load_mnist_dir_with, store_params, train_with, Checkpoint, CheckpointDir, Checkpointing,
    CompileOptions, Dataset, EpochReport, InterpBackend, JitBackend, Length, Metrics, NanPolicy, Observer, Plan,
    RunIdentity, Skipped, StepBackend, StepInfo, TrainConfig, CHECKPOINT_FILE,
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
    /// The model as imported for training.
    pub model: Graph,
    /// The model as imported for inference, where it differs (batch normalization):
    /// evaluation runs it, and `--out` writes it with the trained values.
    pub inference_model: Option<Graph>,
    pub options: nnc_autodiff::TrainOptions,
    pub backend: Backend,
    /// How the JIT compiles the step (threads).
    pub compile: CompileOptions,
    pub data: DataSource,
    pub config: TrainConfig,
    pub out: Option<PathBuf>,
    /// Draw the training curves into this SVG file after training.
    pub plot: Option<PathBuf>,
    /// How the plot's title names the model (a file name, or the seed MLP).
    pub model_name: String,
    pub quiet: bool,
    /// `--checkpoint`, `--checkpoint-every`, `--resume`, `--on-nan`.
    pub checkpoint: CheckpointArgs,
}

pub fn run_train(req: TrainRequest) -> Result<()> {
    let TrainRequest {
        model,
        inference_model,
        options,
        backend,
        compile,
        data,
        mut config,
        out,
        plot,
        model_name,
        quiet,
        checkpoint,
    } = req;
    if let Some(out) = &out {
        check_writable(out)?;
    }
    if let Some(plot) = &plot {
        check_plot_path(plot)?;
    }
    config.on_nan = checkpoint.on_nan.policy();
    // Read the checkpoint to resume and lock the checkpoint directory before any work:
    // a bad checkpoint is reported at once, and nothing is written until training.
    let (resume, checkpoint_dir) = checkpoint.open()?;
    let mut backend = make_backend((&model, inference_model.as_ref()), &options, backend, &compile, config.batch)?;
    let (train_set, test_set) = load_data(&data)?;
    let input_ty = backend.input_type().clone();
    let labels = backend.labels().clone();
    let train_set = fit_to_model(train_set, &input_ty, &labels).context("the training set does not fit the model")?;
    let test_set = test_set
        .map(|t| fit_to_model(t, &input_ty, &labels).context("the test set does not fit the model"))
        .transpose()?;

    let identity = match resume.is_some() || checkpoint_dir.is_some() {
        true => RunIdentity::new(&model, &options, &config, &train_set),
        false => RunIdentity::default(),
    };
    // `--out` writes the inference form where there is one.
    let mut model = inference_model.unwrap_or(model);
    // The backend holds the parameters from here on, and `--out` stores the trained
    // ones back into the model: its copy of the initial values would only add to the
    // run's memory.
    for (name, _) in backend.params() {
        if let Some(id) = model.find(&name) {
            model.take_init(id);
        }
    }
    let mut observer = ProgressObserver::new(quiet);
    observer.resume = resume.as_ref().map(|(path, _)| (path.clone(), backend.name().to_string()));
    let checkpointing =
        Checkpointing { identity, dir: checkpoint_dir, every: checkpoint.checkpoint_every.unwrap_or(0), resume };
    let outcome = train_with(backend.as_mut(), &train_set, test_set.as_ref(), &config, checkpointing, &mut observer);
    observer.finish();
    let outcome = outcome?;
    let report = outcome.report;
    eprintln!(
        "trained {} steps ({} examples) in {:.2} s on {}: {:.0} examples/s, final loss {:.4}",
        report.steps,
        report.examples,
        report.train_time.as_secs_f64(),
        report.backend,
        report.examples_per_sec(),
        report.losses.last().copied().unwrap_or(f32::NAN)
    );
    if outcome.skipped > 0 {
        eprintln!("skipped {} steps with a NaN or infinity (--on-nan skip)", outcome.skipped);
    }
    if let Some((step, path)) = &outcome.last_checkpoint {
        eprintln!("wrote checkpoint {} (step {step})", path.display());
    }
    if let Some(m) = report.final_test() {
        crate::write_stdout(&format!("test: {}\n", describe(&m)))?;
    }
    let plot = match plot {
        Some(path) => {
            let title = plot_title(&model_name, &data, &options, &config);
            Some((path, crate::plot::render_svg(&crate::plot::Curves::from_report(title, &report))?))
        }
        None => None,
    };
    if let Some(out) = out {
        // The parameters, and the state the model reads (running statistics).
        let mut values = backend.params();
        values.extend(
            backend.state().into_iter().filter(|(n, _)| {
                model.find(n).is_some_and(|id| matches!(model.value(id).op, nnc_ir::Op::State { .. }))
            }),
        );
        store_params(&mut model, &values)?;
        nnc_onnx::write_file(&model, &out, &nnc_onnx::ExportOptions::default())?;
        eprintln!("wrote {}", out.display());
    }
    if let Some((path, svg)) = plot {
        nnc::write_atomically(&path, |f| std::io::Write::write_all(f, svg.as_bytes()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

/// `mlp.onnx on fashion-mnist: Adam, lr 0.001, batch 100`.
fn plot_title(model: &str, data: &DataSource, options: &nnc_autodiff::TrainOptions, config: &TrainConfig) -> String {
    let data = match data {
        DataSource::Mnist(dir) => dir,
        DataSource::Npy { inputs, .. } => inputs,
    };
    let data = data.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| data.display().to_string());
    let optimizer = match options.optimizer {
        nnc_autodiff::Optimizer::Sgd => "SGD".to_string(),
        nnc_autodiff::Optimizer::Momentum { momentum, nesterov: false } => format!("SGD, momentum {momentum}"),
        nnc_autodiff::Optimizer::Momentum { momentum, nesterov: true } => format!("SGD, Nesterov momentum {momentum}"),
        nnc_autodiff::Optimizer::Adam { .. } => "Adam".to_string(),
    };
    let decay =
        if options.weight_decay != 0.0 { format!(", weight decay {}", options.weight_decay) } else { String::new() };
    format!("{model} on {data}: {optimizer}, lr {}, batch {}{decay}", config.lr, config.batch)
}

/// The training step on the chosen backend; prints the differentiation's notes. The
/// JIT's memory at `batch` (arenas and parameters) is checked against the budget here,
/// before the first step allocates its arena.
fn make_backend(
    (model, inference): (&Graph, Option<&Graph>),
    options: &nnc_autodiff::TrainOptions,
    backend: Backend,
    compile: &CompileOptions,
    batch: usize,
) -> Result<Box<dyn StepBackend>> {
    let tg = nnc_pipeline::differentiate(model, options).context("cannot form the training step")?;
    for note in &tg.notes {
        eprintln!("note: {note}");
    }
    Ok(match backend {
        Backend::Interp => Box::new(InterpBackend::with_inference(&tg, inference)?),
        Backend::Jit => {
            let started = Instant::now();
            let jit =
                JitBackend::with_inference(&tg, inference, compile).context("cannot compile the training step")?;
            check_step_memory(&jit, batch)?;
            eprintln!(
                "compiled the training step: {} kernels ({}, {} thread{}) in {:.0} ms",
                jit.kernel_count(),
                jit.kernel_family(),
                jit.threads(),
                if jit.threads() == 1 { "" } else { "s" },
                started.elapsed().as_secs_f64() * 1e3
            );
            Box::new(jit)
        }
    })
}

/// Refuses a jitted step whose arenas plus parameters at `batch` exceed the budget.
fn check_step_memory(jit: &JitBackend, batch: usize) -> Result<()> {
    let budget = crate::limits::budget();
    let (arena, params) = jit.memory_bytes(batch)?;
    let need = arena.saturating_add(params);
    if need > budget.bytes() {
        let size = nnc_ir::limits::format_bytes;
        bail!(
            "the training step needs {} at batch {batch} (arena {} + parameters {}), over the limit {budget} \
             (--max-memory; a smaller --batch needs less)",
            size(need),
            size(arena),
            size(params)
        );
    }
    Ok(())
}

/// `nnc eval`: loss and accuracy of a model on the test split of a data directory.
pub fn run_eval(model: &Graph, backend: Backend, data: &Path, batch: usize) -> Result<()> {
    let options = nnc_autodiff::TrainOptions::default();
    let mut backend = make_backend((model, None), &options, backend, &CompileOptions::default(), batch)
        .context("cannot evaluate the model")?;
    let (_, test) = load_mnist_dir_with(data, crate::limits::budget())?;
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
            let (train, test) = load_mnist_dir_with(dir, crate::limits::budget())?;
            Ok((train, Some(test)))
        }
        DataSource::Npy { inputs, labels } => {
            // Both files' declared sizes together, before either is read.
            let budget = crate::limits::budget();
            let need = crate::npy::npy_header(inputs)?
                .memory_bytes
                .saturating_add(crate::npy::npy_header(labels)?.memory_bytes);
            budget
                .check(format_args!("the data set ({} and {})", inputs.display(), labels.display()), need)
                .map_err(anyhow::Error::msg)?;
            let x = crate::npy::read_npy_with(inputs, budget)?;
            let y = crate::npy::read_npy_with(labels, budget)?;
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

/// `--plot` must name an SVG file in an existing, writable directory: checked before
/// training, like `--out`.
fn check_plot_path(plot: &Path) -> Result<()> {
    if !plot.extension().is_some_and(|e| e.eq_ignore_ascii_case("svg")) {
        bail!("cannot plot to {}: the plot is an SVG image, name it FILE.svg", plot.display());
    }
    check_writable(plot)
}

/// Draws a progress bar with the running loss and throughput, and prints one line per
/// epoch.
struct ProgressObserver {
    bar: Option<ProgressBar>,
    quiet: bool,
    /// The checkpoint file a resumed run continues, and this run's backend.
    resume: Option<(PathBuf, String)>,
}

impl ProgressObserver {
    fn new(quiet: bool) -> ProgressObserver {
        ProgressObserver { bar: None, quiet, resume: None }
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
    fn on_resume(&mut self, c: &Checkpoint) {
        let Some((path, backend)) = &self.resume else { return };
        eprintln!("resuming from {} at step {} (epoch {})", path.display(), c.progress.step, c.progress.epoch);
        if &c.backend != backend {
            eprintln!(
                "note: the checkpoint was written by the {} backend; continuing on {backend} is not bit for bit the \
                 run {} would make",
                c.backend, c.backend
            );
        }
    }

    fn on_skip(&mut self, skip: &Skipped) {
        self.println(format!("step {} (epoch {}) skipped: {}", skip.step, skip.epoch, skip.reason));
    }

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

/// Checkpoints and divergence (`nnc train`).
#[derive(clap::Args, Clone, Debug)]
pub struct CheckpointArgs {
    /// Write checkpoints (parameters, optimizer state, step, shuffling state) into this
    /// directory: at the end of every epoch and of training, and every
    /// --checkpoint-every steps. Each replaces the last atomically.
    #[arg(long, value_name = "DIR")]
    pub checkpoint: Option<PathBuf>,
    /// Also write a checkpoint every N steps.
    #[arg(long, value_name = "N")]
    pub checkpoint_every: Option<u64>,
    /// Continue the run checkpointed in DIR, bit for bit, and keep checkpointing there
    /// (unless --checkpoint names another directory). The model, data and training
    /// flags must be those of the original run; --steps/--epochs count from its start.
    #[arg(long, value_name = "DIR")]
    pub resume: Option<PathBuf>,
    /// A NaN or infinite loss or parameter: stop (naming the step and the tensor; the
    /// last checkpoint stays), or skip the step (undo its update) and go on.
    #[arg(long, value_enum, default_value = "stop")]
    pub on_nan: OnNan,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum OnNan {
    Stop,
    Skip,
}

impl OnNan {
    fn policy(self) -> NanPolicy {
        match self {
            OnNan::Stop => NanPolicy::Stop,
            OnNan::Skip => NanPolicy::Skip,
        }
    }
}

/// A checkpoint to continue, and the file it was read from.
type Resume = (PathBuf, Checkpoint);

impl CheckpointArgs {
    /// Reads the checkpoint to resume, then creates and locks the directory to write
    /// checkpoints into. Writes nothing else.
    fn open(&self) -> Result<(Option<Resume>, Option<CheckpointDir>)> {
        match self.checkpoint_every {
            Some(0) => bail!("--checkpoint-every must be at least 1"),
            Some(_) if self.checkpoint.is_none() && self.resume.is_none() => {
                bail!("--checkpoint-every needs --checkpoint DIR (or --resume DIR)")
            }
            _ => {}
        }
        let resume = match &self.resume {
            Some(dir) => Some((dir.join(CHECKPOINT_FILE), Checkpoint::load(dir).context("cannot resume")?)),
            None => None,
        };
        let target = self.checkpoint.as_ref().or(self.resume.as_ref());
        let dir = match target {
            Some(dir) => {
                let continuing = self.resume.as_ref().is_some_and(|r| same_dir(r, dir));
                Some(CheckpointDir::open(dir, continuing)?)
            }
            None => None,
        };
        Ok((resume, dir))
    }
}

/// Whether two paths name the same existing directory.
fn same_dir(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}
