//! `nnc export`: a model after the graph optimizer, or its whole training step, as
//! standard ONNX.
//!
//! Fused ops are written as their primitive expansion (nnc-onnx does that), so the file
//! runs in any ONNX runtime. With `--training` the file is the training step as a pure
//! function — batch, labels, parameters, optimizer state and hyper-parameters in; loss,
//! new parameters and new state out — with the interface docs/usage.md documents
//! (`ExportOptions::training_interface` in nnc-onnx).

use crate::{LossArg, OptArgs, OptimizerArg, StepArgs};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
pub struct ExportArgs {
    /// The model to export.
    model: PathBuf,
    /// Where to write the ONNX file (replaced atomically: a failed export leaves it as it was).
    #[arg(short, long, value_name = "OUT.onnx")]
    output: PathBuf,
    /// The default-domain opset to write (11 to 27).
    #[arg(long, default_value_t = 17)]
    opset: i64,
    /// Write the whole training step (forward, loss, backward, optimizer update) instead of the model.
    #[arg(long)]
    training: bool,
    /// The loss of the training step.
    #[arg(long, value_enum, default_value = "ce", requires = "training")]
    loss: LossArg,
    /// The optimizer of the training step.
    #[arg(long, value_enum, default_value = "sgd", requires = "training")]
    optimizer: OptimizerArg,
    /// Weight decay of the training step: L2 for sgd/momentum, decoupled for adam.
    #[arg(long, default_value_t = 0.0, requires = "training")]
    weight_decay: f32,
    #[command(flatten)]
    opt: OptArgs,
}

pub fn run_export(args: ExportArgs) -> Result<()> {
    check_output(&args.output)?;
    let model = crate::import(&args.model, args.training)?;
    let graph = if args.training {
        // The learning rate is an input of the exported step, so none is needed here.
        let step = StepArgs { loss: args.loss, optimizer: args.optimizer, lr: 0.0, weight_decay: args.weight_decay };
        let tg = nnc_pipeline::differentiate(&model, &step.options())
            .with_context(|| format!("cannot form the training step of {}", args.model.display()))?;
        for note in &tg.notes {
            eprintln!("note: {note}");
        }
        tg.graph
    } else {
        model
    };
    let optimized = nnc_pipeline::optimize(&graph, &args.opt.options())
        .with_context(|| format!("cannot optimize {}", args.model.display()))?;
    for dump in &optimized.dumps {
        crate::write_stdout(&format!("; after {} (run {})\n{}", dump.pass, dump.run, dump.text))?;
    }
    let graph = primitives(optimized.graph)?;
    let options =
        nnc_onnx::ExportOptions { opset: args.opset, training_interface: args.training, ..Default::default() };
    nnc_onnx::write_file(&graph, &args.output, &options)?;
    let what = if args.training {
        format!("the {} training step of {}", optimizer_name(args.optimizer), args.model.display())
    } else {
        args.model.display().to_string()
    };
    eprintln!("wrote {} ({what}, opset {})", args.output.display(), args.opset);
    Ok(())
}

/// The graph with its fused ops as primitives, which is what ONNX can hold. Each result
/// of a kernel with several results (the loss and its gradient, a parameter and its
/// moments) expands to its own copy of the shared work; `cse` merges the copies again
/// and `dce` drops what is left over.
fn primitives(graph: nnc_ir::Graph) -> Result<nnc_ir::Graph> {
    if !nnc_ir::fused::has_fused(&graph) {
        return Ok(graph);
    }
    let expanded = nnc_ir::expand_fused(&graph).context("cannot expand the fused ops")?;
    let merged = nnc_opt::passes::cse::run(&expanded).context("cannot merge the expanded fused ops")?;
    nnc_opt::passes::dce::run(&merged).context("cannot merge the expanded fused ops")
}

fn optimizer_name(o: OptimizerArg) -> &'static str {
    match o {
        OptimizerArg::Sgd => "sgd",
        OptimizerArg::Momentum => "momentum",
        OptimizerArg::Adam => "adam",
    }
}

/// Refuses an output path that cannot be written, before any work is done, with the
/// reason (the file itself is written atomically at the end).
fn check_output(out: &Path) -> Result<()> {
    let dir = match out.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if !dir.exists() {
        bail!("cannot write {}: directory {} does not exist", out.display(), dir.display());
    }
    if !dir.is_dir() {
        bail!("cannot write {}: {} is not a directory", out.display(), dir.display());
    }
    if out.is_dir() {
        bail!("cannot write {}: it is a directory", out.display());
    }
    Ok(())
}
