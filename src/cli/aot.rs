//! `nnc compile MODEL -o OUT.o [--header OUT.h] [--train ...]`: ahead-of-time
//! compilation to an object file with C entry points (see `nnc_cranelift::object`).
//!
//! With `--train` the object has `<prefix>_train_step` (the optimized training step)
//! and `<prefix>_infer` (the model's forward pass), sharing one state block; without
//! it, only `<prefix>_infer`. Both files are checked for writability before any work
//! and written atomically, so a failure leaves neither behind.

use anyhow::{bail, Context, Result};
use nnc_ir::Graph;
use std::path::{Path, PathBuf};

pub struct AotRequest {
    pub model_path: PathBuf,
    pub model: Graph,
    /// The training step to compile beside inference.
    pub train: Option<nnc_autodiff::TrainOptions>,
    pub opt: nnc_opt::OptOptions,
    pub output: PathBuf,
    pub header: Option<PathBuf>,
    pub prefix: Option<String>,
    pub embed_weights: bool,
    pub max_batch: usize,
    pub kernels: nnc_cranelift::Kernels,
}

/// The C identifier for a model file: its stem with other characters as `_`.
fn default_prefix(model: &Path) -> String {
    let stem = model.file_stem().and_then(|s| s.to_str()).unwrap_or("model");
    let s: String = stem.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
    if s.starts_with(|c: char| c.is_ascii_digit()) || s.is_empty() {
        format!("m{s}")
    } else {
        s
    }
}

/// Fails unless `path`'s directory exists (so nothing is compiled for nothing).
fn check_writable(path: &Path, what: &str) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        bail!("cannot write the {what} {}: {} is not a directory", path.display(), dir.display());
    }
    if path.is_dir() {
        bail!("cannot write the {what} {}: it is a directory", path.display());
    }
    Ok(())
}

pub fn run(req: AotRequest) -> Result<()> {
    check_writable(&req.output, "object file")?;
    if let Some(h) = &req.header {
        check_writable(h, "header")?;
    }
    if req.max_batch == 0 {
        bail!("--max-batch must be at least 1");
    }
    let step = match &req.train {
        Some(options) => Some(
            nnc_pipeline::differentiate(&req.model, options)
                .with_context(|| format!("cannot form the training step of {}", req.model_path.display()))?,
        ),
        None => None,
    };
    let mut entries: Vec<(&str, &Graph)> = Vec::new();
    if let Some(s) = &step {
        entries.push(("train_step", &s.graph));
    }
    entries.push(("infer", &req.model));
    let prefix = req.prefix.clone().unwrap_or_else(|| default_prefix(&req.model_path));
    let object = nnc_cranelift::ObjectOptions { prefix, embed_weights: req.embed_weights, max_batch: req.max_batch };
    let backend = nnc_cranelift::CompileOptions { kernels: req.kernels, checked: false, ..Default::default() };
    let code = nnc_pipeline::compile_object(&entries, &req.opt, &backend, &object)
        .with_context(|| format!("cannot compile {} ahead of time", req.model_path.display()))?;
    nnc::write_atomically(&req.output, |f| std::io::Write::write_all(f, &code.object))?;
    if let Some(h) = &req.header {
        nnc::write_atomically(h, |f| std::io::Write::write_all(f, code.header.as_bytes()))?;
    }
    eprintln!(
        "wrote {} ({} bytes, {} kernels{}){}",
        req.output.display(),
        code.object.len(),
        code.kernels,
        if req.embed_weights { ", weights embedded" } else { "" },
        req.header.as_ref().map(|h| format!(" and {}", h.display())).unwrap_or_default()
    );
    Ok(())
}
