//! The pipeline, spelled out in one place.
//!
//! `-O1` cleans up (simplify, fold constants, merge duplicates, drop dead code), folds
//! transposes into matrix products, fuses, and cleans up again. The fusions run in
//! this order: the loss (its gradient feeds everything after it); optimizer updates,
//! which take the weight-gradient products into their epilogues before `fuse_dense`
//! could mistake a constant learning rate for a Gemm alpha; forward layers (dense, then
//! convolutions); the ReLU mask; and bias gradients, which need the fused gradient
//! kernels to exist. `-O0` runs nothing. `--passes` runs exactly the passes given, in
//! order.

use crate::passes::{self, Pass};
use crate::plan::{self, StepPlan};
use crate::report::{PassRun, Report};
use crate::OptError;
use nnc_ir::Graph;

/// The optimization level.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Level {
    /// No passes.
    O0,
    /// The full pipeline.
    #[default]
    O1,
}

/// The passes of `-O1`, in order.
pub const O1: &[&str] = &[
    "simplify",
    "const_fold",
    "cse",
    "dce",
    "fold_transpose",
    "fuse_softmax_ce",
    "fuse_update",
    "fuse_dense",
    "fuse_conv",
    "fuse_relu_grad",
    "fuse_bias_grad",
    "cse",
    "dce",
];

impl Level {
    pub fn passes(self) -> &'static [&'static str] {
        match self {
            Level::O0 => &[],
            Level::O1 => O1,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OptOptions {
    pub level: Level,
    /// Run exactly these passes, in this order, instead of the level's pipeline.
    pub passes: Option<Vec<String>>,
    /// Keep the graph's text after each run of this pass.
    pub dump_after: Option<String>,
    /// Verify after every pass even in release builds (always done in debug builds
    /// and tests).
    pub verify: bool,
}

impl OptOptions {
    /// Options from CLI-style strings: `-O0`/`-O1`, `--passes a,b,c` and
    /// `--dump-after PASS`. Pass names are checked by [`optimize`].
    pub fn from_flags(o0: bool, passes: Option<&str>, dump_after: Option<&str>) -> OptOptions {
        OptOptions {
            level: if o0 { Level::O0 } else { Level::O1 },
            passes: passes.map(|p| p.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect()),
            dump_after: dump_after.map(str::to_string),
            verify: false,
        }
    }
}

/// The graph after one run of the pass named in `OptOptions::dump_after`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dump {
    pub pass: &'static str,
    /// 1 for the pass's first run in the pipeline, 2 for its second, ...
    pub run: usize,
    pub text: String,
}

#[derive(Clone, Debug)]
pub struct Optimized {
    pub graph: Graph,
    pub dumps: Vec<Dump>,
    pub report: Report,
    /// The plan of the optimized graph (kernels and storage; a backend adds scratch).
    pub plan: StepPlan,
}

/// The names of every pass, for help texts and errors.
pub fn pass_names() -> Vec<&'static str> {
    passes::ALL.iter().map(|p| p.name).collect()
}

/// Optimizes a verified graph. The result computes the same outputs and updates.
pub fn optimize(graph: &Graph, opts: &OptOptions) -> Result<Optimized, OptError> {
    nnc_ir::verify(graph).map_err(OptError::Input)?;
    let names: Vec<&str> = match &opts.passes {
        Some(list) => list.iter().map(String::as_str).collect(),
        None => opts.level.passes().to_vec(),
    };
    let pipeline: Vec<Pass> = names.iter().map(|n| passes::find(n)).collect::<Result<_, _>>()?;
    if let Some(d) = &opts.dump_after {
        let pass = passes::find(d)?;
        if !pipeline.iter().any(|p| p.name == pass.name) {
            return Err(OptError::NotInPipeline { name: pass.name, pipeline: names.join(",") });
        }
    }
    let verify = cfg!(debug_assertions) || opts.verify;
    let mut g = graph.clone();
    let mut runs = Vec::new();
    let mut dumps = Vec::new();
    for pass in pipeline {
        let next = (pass.run)(&g)?;
        if verify {
            nnc_ir::verify(&next).map_err(|error| OptError::Verify { pass: pass.name, error })?;
        }
        runs.push(PassRun { name: pass.name, changed: next != g, values_before: g.len(), values_after: next.len() });
        g = next;
        if opts.dump_after.as_deref() == Some(pass.name) {
            let run = dumps.len() + 1;
            dumps.push(Dump { pass: pass.name, run, text: nnc_ir::print(&g) });
        }
    }
    let plan = plan::plan(&g);
    let report = Report::new(graph, &g, &plan, runs);
    Ok(Optimized { graph: g, dumps, report, plan })
}
