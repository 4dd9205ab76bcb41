//! The `nnc` command-line tool.

mod cli;
mod limits;
mod plot;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use cli::train::{DataSource, TrainRequest};
use nnc::mlp::{build_mlp, Activation, Init, Layout, MlpSpec};
use nnc::{npy, summary};
use nnc_ir::Tensor;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "nnc", version, about = "A compile-ahead neural-network compiler")]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Refuse models, data sets and training steps that would need more memory than
    /// SIZE (bytes, or with K, M, G, T: 512M, 8G), checked from declared sizes before
    /// allocating [default: half of physical memory].
    #[arg(long, global = true, value_name = "SIZE")]
    max_memory: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Build a multi-layer perceptron with seeded initial weights and write it as ONNX.
    NewMlp {
        /// Layer widths, input first (e.g. 784,256,10).
        #[arg(long, value_delimiter = ',', default_values_t = [784usize, 256, 10])]
        layers: Vec<usize>,
        #[arg(long, value_enum, default_value = "relu")]
        activation: Activation,
        #[arg(long, value_enum, default_value = "he")]
        init: Init,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// How each layer stores its weight.
        #[arg(long, value_enum, default_value = "matmul")]
        layout: Layout,
        /// Where to write the model.
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Build LeNet-5 (two 5×5 convolutions with ReLU and max pooling, dense layers
    /// 400-120-84-CLASSES) for [N, 1, 28, 28] images with seeded weights and write it as ONNX.
    NewCnn {
        #[arg(long, default_value_t = 10)]
        classes: usize,
        #[arg(long, value_enum, default_value = "he")]
        init: Init,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Where to write the model.
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Import and verify a model, then print a summary or the IR.
    Compile {
        model: PathBuf,
        /// What to print.
        #[arg(long, value_enum, default_value = "summary")]
        emit: Emit,
        /// Compile the training step (loss, backward pass, optimizer update) instead of inference.
        #[arg(long)]
        train: bool,
        /// The batch size the sizes of --emit opt-report and --emit lowered are given at.
        #[arg(long, default_value_t = 100)]
        batch: usize,
        #[command(flatten)]
        step: StepArgs,
        #[command(flatten)]
        opt: OptArgs,
        /// Compile ahead of time: write an object file with C entry points (the
        /// inference pass, and the training step with --train) instead of printing.
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// With -o: also write the C header that declares the entry points.
        #[arg(long, requires = "output")]
        header: Option<PathBuf>,
        /// With -o: prefix of the C symbols [default: the model file's name].
        #[arg(long, requires = "output")]
        prefix: Option<String>,
        /// With -o: put the initial weights into the object (`<prefix>_init`).
        #[arg(long, requires = "output")]
        embed_weights: bool,
        /// With -o: the largest batch the entry points accept.
        #[arg(long, requires = "output", default_value_t = 1024)]
        max_batch: usize,
        /// Matrix-product kernels (of --emit clif|asm and -o; the summary names the family
        /// this picks). With -o, `auto` picks for this CPU: name a family for an object
        /// that must run on others.
        #[arg(long, value_enum, default_value = "auto")]
        kernels: KernelsArg,
    },
    /// Train a model (default: the seed 784-256-10 MLP) on MNIST-format data or NPY arrays.
    Train {
        /// The model to train; without one, the seed MLP (as `nnc new-mlp` makes it).
        model: Option<PathBuf>,
        /// An MNIST-format directory [default: $NNC_DATA, then /usr/share/datasets/fashion-mnist].
        #[arg(long, conflicts_with_all = ["inputs", "labels"])]
        data: Option<PathBuf>,
        /// Training inputs as NPY (float32 [N, ...]); needs --labels.
        #[arg(long, requires = "labels")]
        inputs: Option<PathBuf>,
        /// Training labels as NPY (integer [N] for --loss ce); needs --inputs.
        #[arg(long, requires = "inputs")]
        labels: Option<PathBuf>,
        /// Number of passes over the training set.
        #[arg(long, conflicts_with = "steps")]
        epochs: Option<usize>,
        /// Number of steps [default: 1000, the seed workload].
        #[arg(long)]
        steps: Option<u64>,
        #[arg(long, default_value_t = 100)]
        batch: usize,
        /// Seed for shuffling.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Keep the data set's order.
        #[arg(long)]
        no_shuffle: bool,
        #[command(flatten)]
        step: StepArgs,
        #[arg(long, value_enum, default_value = "jit")]
        backend: Backend,
        /// Threads of the jitted step (0: one per available core). Results are the same
        /// bits for every count.
        #[arg(long, default_value_t = 0)]
        threads: usize,
        /// Matrix-product kernels of the jitted step.
        #[arg(long, value_enum, default_value = "auto")]
        kernels: KernelsArg,
        /// Write the trained model here as ONNX.
        #[arg(long)]
        out: Option<PathBuf>,
        /// After training, draw the loss curves and the per-epoch test loss and accuracy
        /// into this SVG file.
        #[arg(long, value_name = "FILE.svg")]
        plot: Option<PathBuf>,
        /// No progress bar.
        #[arg(long, short)]
        quiet: bool,
        #[command(flatten)]
        checkpoint: cli::train::CheckpointArgs,
    },
    /// Loss and accuracy of a classifier on the test split of an MNIST-format directory.
    Eval {
        model: PathBuf,
        #[arg(long, value_enum, default_value = "jit")]
        backend: Backend,
        /// An MNIST-format directory [default: $NNC_DATA, then /usr/share/datasets/fashion-mnist].
        #[arg(long)]
        data: Option<PathBuf>,
        #[arg(long, default_value_t = 1000)]
        batch: usize,
    },
    /// Time the jitted training step of a model (default: the seed MLP), or its inference pass, on random data.
    Bench {
        model: Option<PathBuf>,
        #[arg(long, default_value_t = 100)]
        batch: usize,
        /// Timed steps (after 5 warm-up steps); the median is reported.
        #[arg(long, default_value_t = 200)]
        steps: usize,
        /// Worker threads of the step (0: one per available core; the number used is reported).
        #[arg(long, default_value_t = 0)]
        threads: usize,
        /// Matrix-product kernels (the family used is reported).
        #[arg(long, value_enum, default_value = "auto")]
        kernels: KernelsArg,
        #[command(flatten)]
        step: StepArgs,
        /// Time the inference pass (the model's outputs from its inputs) instead of the training step.
        #[arg(long)]
        infer: bool,
        /// One JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Optimize a model and write it as standard ONNX; with --training, its whole training step.
    Export(cli::export::ExportArgs),
    /// Run inference on NPY inputs.
    Run {
        model: PathBuf,
        /// An input as PATH (for the first graph input) or NAME=PATH; repeatable.
        #[arg(long = "input", required = true)]
        inputs: Vec<String>,
        /// Write the first output to this NPY file (otherwise print all outputs).
        #[arg(long)]
        output: Option<PathBuf>,
        #[arg(long, value_enum, default_value = "jit")]
        backend: Backend,
    },
}

/// Graph-optimizer control (for `--emit ir-opt` and `--emit opt-report`).
#[derive(clap::Args, Clone)]
struct OptArgs {
    /// No optimization passes.
    #[arg(short = 'O', value_parser = ["0", "1"], default_value = "1", value_name = "LEVEL")]
    level: String,
    /// Run exactly these passes, in this order (comma-separated; see --help of nnc-opt's pass list).
    #[arg(long, value_name = "A,B,C")]
    passes: Option<String>,
    /// Print the graph after each run of this pass.
    #[arg(long, value_name = "PASS")]
    dump_after: Option<String>,
}

impl OptArgs {
    fn options(&self) -> nnc_opt::OptOptions {
        nnc_opt::OptOptions::from_flags(self.level == "0", self.passes.as_deref(), self.dump_after.as_deref())
    }
}

/// How the training step is formed.
#[derive(clap::Args, Clone)]
struct StepArgs {
    /// The loss attached to the model's output.
    #[arg(long, value_enum, default_value = "ce")]
    loss: LossArg,
    #[arg(long, value_enum, default_value = "sgd")]
    optimizer: OptimizerArg,
    /// Learning rate (a run-time input of the step).
    #[arg(long, default_value_t = 0.01)]
    lr: f32,
    /// Weight decay: L2 for sgd/momentum, decoupled for adam.
    #[arg(long, default_value_t = 0.0)]
    weight_decay: f32,
}

impl StepArgs {
    fn options(&self) -> nnc_autodiff::TrainOptions {
        nnc_autodiff::TrainOptions {
            loss: match self.loss {
                LossArg::Ce => nnc_autodiff::Loss::CrossEntropy,
                LossArg::Mse => nnc_autodiff::Loss::Mse,
            },
            optimizer: match self.optimizer {
                OptimizerArg::Sgd => nnc_autodiff::Optimizer::Sgd,
                OptimizerArg::Momentum => nnc_autodiff::Optimizer::momentum(),
                OptimizerArg::Adam => nnc_autodiff::Optimizer::adam(),
            },
            weight_decay: self.weight_decay,
            ..Default::default()
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum LossArg {
    /// Softmax cross-entropy with integer class labels.
    Ce,
    /// Mean squared error.
    Mse,
}

#[derive(Clone, Copy, ValueEnum)]
enum OptimizerArg {
    Sgd,
    /// SGD with momentum 0.9.
    Momentum,
    /// Adam (0.9, 0.999, 1e-8).
    Adam,
}

/// What `nnc compile` prints. Each stage of the pipeline (`nnc_pipeline::Stage`) is
/// also a name: `import`, `differentiate`, `optimize`, `lower`, `codegen`.
#[derive(Clone, Copy, PartialEq, ValueEnum)]
enum Emit {
    /// Inputs, outputs, parameters, op counts and FLOPs.
    Summary,
    /// The IR text form (parameter values omitted): the imported model (stage `import`), or with --train its training step.
    #[value(alias = "import")]
    Ir,
    /// The IR text form with every parameter value.
    IrData,
    /// The training step's IR (stage `differentiate`; implies --train).
    #[value(alias = "differentiate")]
    TrainIr,
    /// The IR after the graph optimizer (stage `optimize`: fusion, clean-up).
    #[value(alias = "optimize")]
    IrOpt,
    /// The optimizer's report: kernels, bytes moved and the step plan, before and after.
    OptReport,
    /// The graph in Graphviz DOT after the optimizer (fused ops filled orange; updates dashed).
    Dot,
    /// The lowered program (stage `lower`): every kernel, its plan and its buffers, laid out at --batch.
    #[value(alias = "lower")]
    Lowered,
    /// The Cranelift IR the JIT generates (stage `codegen`; of the training step with --train).
    #[value(alias = "codegen")]
    Clif,
    /// The machine code the JIT generates, disassembled (x86-64; of the training step with --train).
    Asm,
}

/// The summary's last line: which matrix-product kernels a compile would use here.
fn kernels_line(options: &nnc_cranelift::CompileOptions) -> Result<String> {
    let family = nnc_cranelift::kernel_family(options)?;
    Ok(format!("matrix-product kernels: {family} (choose with --kernels)\n"))
}

/// The summary's convolution lines: the kernel the backend chose for each
/// convolution and pooling (nothing for a model without them, or one the backend
/// cannot lower, which `--emit lowered` reports).
fn window_kernels(graph: &nnc_ir::Graph, opt: &nnc_opt::OptOptions, backend: &nnc_cranelift::CompileOptions) -> String {
    let lowered = nnc_pipeline::optimize(graph, opt).ok().and_then(|o| nnc_pipeline::lower(&o, backend).ok());
    let kernels = lowered.map(|l| l.window_kernels()).unwrap_or_default();
    if kernels.is_empty() {
        return String::new();
    }
    let mut text = String::from("convolution and pooling kernels:\n");
    for (value, kernel) in kernels {
        text += &format!("  {value}: {kernel}\n");
    }
    text
}

/// `--kernels`: the matrix-product micro-kernel family of the JIT.
#[derive(Clone, Copy, ValueEnum)]
pub enum KernelsArg {
    /// The widest assembled kernels this CPU runs (AVX-512, else AVX2+FMA), else Cranelift's.
    Auto,
    /// Portable Cranelift f32x4 code.
    Cranelift,
    /// 256-bit kernels assembled for AVX2+FMA (x86-64).
    Avx2,
    /// 512-bit kernels assembled for AVX-512F (x86-64).
    Avx512,
}

impl From<KernelsArg> for nnc_cranelift::Kernels {
    fn from(k: KernelsArg) -> Self {
        match k {
            KernelsArg::Auto => nnc_cranelift::Kernels::Auto,
            KernelsArg::Cranelift => nnc_cranelift::Kernels::Cranelift,
            KernelsArg::Avx2 => nnc_cranelift::Kernels::Avx2,
            KernelsArg::Avx512 => nnc_cranelift::Kernels::Avx512,
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Backend {
    /// Native code generated with Cranelift.
    Jit,
    /// The reference interpreter (slow, exact, every op).
    Interp,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match limits::init(cli.max_memory.as_deref()).and_then(|_| run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> Result<()> {
    match command {
        Command::NewMlp { layers, activation, init, seed, layout, output } => {
            let graph = build_mlp(&MlpSpec { layers, activation, init, seed, layout })?;
            nnc_onnx::write_file(&graph, &output, &nnc_onnx::ExportOptions::default())?;
            eprintln!("wrote {}", output.display());
            Ok(())
        }
        Command::NewCnn { classes, init, seed, output } => {
            let graph = nnc::cnn::build_lenet5(&nnc::cnn::CnnSpec { classes, init, seed })?;
            nnc_onnx::write_file(&graph, &output, &nnc_onnx::ExportOptions::default())?;
            eprintln!("wrote {}", output.display());
            Ok(())
        }
        Command::Compile {
            model,
            emit,
            train,
            batch,
            step,
            opt,
            output,
            header,
            prefix,
            embed_weights,
            max_batch,
            kernels,
        } => {
            let kernels: nnc_cranelift::Kernels = kernels.into();
            let backend = nnc_cranelift::CompileOptions { kernels, ..Default::default() };
            let graph = import(&model, train || emit == Emit::TrainIr)?;
            if let Some(output) = output {
                return cli::aot::run(cli::aot::AotRequest {
                    model_path: model,
                    model: graph,
                    train: train.then(|| step.options()),
                    opt: opt.options(),
                    output,
                    header,
                    prefix,
                    embed_weights,
                    max_batch,
                    kernels,
                });
            }
            // The stages up to the one `--emit` shows: the training step with --train
            // (`--emit train-ir` implies it), then the optimizer (`-O0`: no passes),
            // the backend's lowering and its code.
            let tg = match train || emit == Emit::TrainIr {
                true => Some(
                    nnc_pipeline::differentiate(&graph, &step.options())
                        .with_context(|| format!("cannot form the training step of {}", model.display()))?,
                ),
                false => None,
            };
            let graph = tg.as_ref().map_or(&graph, |tg| &tg.graph);
            let optimized = || -> Result<nnc_opt::Optimized> {
                let optimized = nnc_pipeline::optimize(graph, &opt.options())?;
                for dump in &optimized.dumps {
                    write_stdout(&format!("; after {} (run {})\n{}", dump.pass, dump.run, dump.text))?;
                }
                Ok(optimized)
            };
            let text = match emit {
                Emit::Summary => {
                    let head = match &tg {
                        Some(tg) => summary::train_summary(tg, &step.options(), step.lr),
                        None => summary::summary(graph),
                    };
                    head + &kernels_line(&backend)? + &window_kernels(graph, &opt.options(), &backend)
                }
                Emit::Ir | Emit::TrainIr => nnc_ir::print(graph),
                Emit::IrData => nnc_ir::print_with_data(graph),
                Emit::IrOpt => nnc_ir::print(&optimized()?.graph),
                Emit::Dot => nnc_ir::to_dot(&optimized()?.graph),
                Emit::OptReport => {
                    let o = optimized()?;
                    format!("{}\n{}", o.report.render(batch), o.plan.describe(&o.graph, batch))
                }
                Emit::Lowered => nnc_pipeline::lower(&optimized()?, &backend)?.text(batch),
                Emit::Clif => nnc_pipeline::lower(&optimized()?, &backend)?.clif()?,
                Emit::Asm => {
                    let options = nnc_cranelift::CompileOptions { threads: 1, ..backend };
                    let compiled = nnc_pipeline::codegen(nnc_pipeline::lower(&optimized()?, &options)?)?;
                    nnc_cranelift::disassemble(&compiled)?
                }
            };
            write_stdout(&text)
        }
        Command::Train {
            model,
            data,
            inputs,
            labels,
            epochs,
            steps,
            batch,
            seed,
            no_shuffle,
            step,
            backend,
            threads,
            kernels,
            out,
            plot,
            quiet,
            checkpoint,
        } => {
            let (model, inference_model, model_name) = match model {
                Some(path) => {
                    let name = path.file_name().unwrap_or(path.as_os_str()).to_string_lossy().into_owned();
                    let model = import(&path, true)?;
                    // A model that updates state in training (batch normalization's
                    // running statistics) is evaluated and written out as imported
                    // for inference.
                    let inference = match model.updates().is_empty() {
                        true => None,
                        false => Some(import(&path, false)?),
                    };
                    (model, inference, name)
                }
                None => {
                    let spec = MlpSpec::seed_model();
                    let layers: Vec<String> = spec.layers.iter().map(usize::to_string).collect();
                    (build_mlp(&spec)?, None, format!("seed MLP {}", layers.join("-")))
                }
            };
            let data = match (inputs, labels) {
                (Some(inputs), Some(labels)) => DataSource::Npy { inputs, labels },
                _ => DataSource::Mnist(data.unwrap_or_else(nnc_train::default_data_dir)),
            };
            let config = nnc_train::TrainConfig {
                batch,
                length: cli::train::length(epochs, steps),
                lr: step.lr,
                seed,
                shuffle: !no_shuffle,
                ..Default::default()
            };
            cli::train::run_train(TrainRequest {
                model,
                inference_model,
                options: step.options(),
                backend,
                compile: nnc_train::CompileOptions { threads, kernels: kernels.into(), ..Default::default() },
                data,
                config,
                out,
                plot,
                model_name,
                quiet,
                checkpoint,
            })
        }
        Command::Bench { model, batch, steps, threads, kernels, step, infer, json } => {
            let model = match model {
                Some(path) => import(&path, !infer)?,
                None => build_mlp(&MlpSpec::seed_model())?,
            };
            let options = step.options();
            let kernels = kernels.into();
            let request = cli::bench::BenchRequest { model, options, batch, steps, threads, kernels, infer, json };
            cli::bench::run_bench(request)
        }
        Command::Eval { model, backend, data, batch } => {
            let graph = import(&model, false)?;
            cli::train::run_eval(&graph, backend, &data.unwrap_or_else(nnc_train::default_data_dir), batch)
        }
        Command::Export(args) => cli::export::run_export(args),
        Command::Run { model, inputs, output, backend } => {
            let graph = import(&model, false)?;
            let feeds = read_feeds(&graph, &inputs)?;
            let outputs = match backend {
                Backend::Interp => nnc_interp::run(&graph, &feeds)?,
                Backend::Jit => nnc_pipeline::compile(&graph, &Default::default(), &Default::default())?.run(&feeds)?,
            };
            match output {
                Some(path) => {
                    npy::write_npy(&path, &outputs[0])?;
                    eprintln!("wrote {} ({} {:?})", path.display(), outputs[0].dtype(), outputs[0].shape());
                }
                None => {
                    for (&id, t) in graph.outputs().iter().zip(&outputs) {
                        write_stdout(&format!(
                            "{}: {} {:?}\n{}\n",
                            graph.name_of(id),
                            t.dtype(),
                            t.shape(),
                            display(t)
                        ))?;
                    }
                }
            }
            Ok(())
        }
    }
}

/// Writes to stdout; a closed pipe (`nnc ... | head`) ends the output quietly instead
/// of panicking like `print!` does.
fn write_stdout(text: &str) -> Result<()> {
    use std::io::Write;
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e).context("cannot write to stdout"),
        _ => Ok(()),
    }
}

/// Imports a model for inference, or (`training`) to be trained: see
/// `nnc_onnx::ImportOptions::training`.
fn import(path: &Path, training: bool) -> Result<nnc_ir::Graph> {
    let opts = nnc_onnx::ImportOptions { training, max_memory: limits::budget(), ..Default::default() };
    nnc_pipeline::import(path, &opts).with_context(|| format!("cannot import {}", path.display()))
}

/// `PATH` feeds the first graph input; `NAME=PATH` feeds the input called NAME.
fn read_feeds(graph: &nnc_ir::Graph, specs: &[String]) -> Result<HashMap<String, Tensor>> {
    let mut feeds = HashMap::new();
    for spec in specs {
        let (name, path) = match spec.split_once('=') {
            Some((name, path)) => (name.to_string(), path),
            None => {
                let Some(&first) = graph.inputs().first() else {
                    bail!("the model has no inputs to feed {spec} to");
                };
                (graph.name_of(first).to_string(), spec.as_str())
            }
        };
        let tensor = npy::read_npy_with(Path::new(path), limits::budget())?;
        if feeds.insert(name.clone(), tensor).is_some() {
            bail!("input {name} is given twice");
        }
    }
    Ok(feeds)
}

fn display(t: &Tensor) -> String {
    match t {
        Tensor::F32(a) => format!("{a}"),
        Tensor::I64(a) => format!("{a}"),
        Tensor::I32(a) => format!("{a}"),
        Tensor::Bool(a) => format!("{a}"),
    }
}
