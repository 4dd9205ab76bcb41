//! `--max-memory`: the memory budget of this process's command.
//!
//! The budget type, its parsing and its default (half of physical memory) live in
//! `nnc_ir::limits`, because the importer and the data-set readers check against it
//! too; this module only holds the value the command line chose, so that every place
//! that loads a model or data (`import`, the data sets of `train`/`eval`, NPY feeds of
//! `run`, the JIT's arena before the first step) reads the same one.

use anyhow::{Context, Result};
use nnc_ir::MemoryBudget;
use std::sync::OnceLock;

static BUDGET: OnceLock<MemoryBudget> = OnceLock::new();

/// Sets the budget from `--max-memory SIZE` (or the default without one). The flag is
/// parsed here rather than by clap so that a bad size is a one-line error, exit 1.
pub fn init(flag: Option<&str>) -> Result<MemoryBudget> {
    let budget = match flag {
        Some(text) => MemoryBudget::parse(text).map_err(anyhow::Error::msg).context("--max-memory")?,
        None => MemoryBudget::default(),
    };
    Ok(*BUDGET.get_or_init(|| budget))
}

/// The budget of this command.
pub fn budget() -> MemoryBudget {
    *BUDGET.get_or_init(MemoryBudget::default)
}
