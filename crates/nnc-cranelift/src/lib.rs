//! nnc's Cranelift backend: lowers a whole [`Graph`] (a model, or a complete training
//! step) to native SIMD code and runs it with no interpreter, no per-op dispatch and no
//! allocation per step.
//!
//! ```text
//! Graph ─► lower (storage plan, one kernel per value) ─► codegen (CLIF per kernel + step)
//!       ─► Cranelift JIT ─► Compiled::run(feeds) ─► outputs, parameters updated in place
//! ```
//!
//! - [`compile`] returns a [`Compiled`] that owns the parameter and state buffers
//!   (initialized from their `init`), runs steps with [`Compiled::run`], and exposes
//!   [`Compiled::param`] / [`Compiled::set_param`].
//! - [`emit_clif`] returns the generated Cranelift IR as text.
//! - The batch size is a run-time argument: one compiled step serves every batch size.
//! - What cannot be lowered is a [`BackendError::Unsupported`] that lists every such
//!   value; there is no fallback to the interpreter.
//!
//! Calling convention of the generated code: `step(table, batch) -> status`, where
//! `table[slot]` is the address of the buffer of each graph value (slot = value index),
//! then of kernel scratch buffers, then of a status word. See `plan.rs` for the memory
//! plan and `clif.rs` for the kernel functions' signature.

mod buffers;
mod clif;
mod codegen;
mod cross_entropy;
mod disasm;
mod elementwise;
mod epilogue;
mod error;
mod feeds;
mod lower;
mod math;
mod matmul;
mod object;
mod onehot;
mod plan;
mod pool;
mod program;
mod provider;
mod reduce;
mod runtime;
mod shape;
mod softmax;
mod update;

pub use disasm::disassemble;
pub use error::{BackendError, Unsupported};
pub use object::{compile_object, ObjectCode, ObjectOptions};
pub use provider::TileShape;
pub use runtime::Compiled;

use nnc_ir::Graph;
use provider::{CraneliftTiles, MicroKernelProvider};

/// Options for [`compile`] and [`emit_clif`].
#[derive(Clone, Debug, PartialEq)]
pub struct CompileOptions {
    /// Use this register tile for every matrix product instead of the per-shape
    /// heuristic (for benchmarks and tests).
    pub tile: Option<TileShape>,
    /// Worker threads a step runs on (0: one per available core). Results are
    /// bitwise identical for every count: work is split by output rows, never
    /// inside a sum.
    pub threads: usize,
    /// Checked mode: every load and store of the generated code is bounds-checked
    /// against the buffers its kernel may touch; a violation stops the step with an
    /// error naming the kernel ([`BackendError::OutOfBounds`]). Several times slower;
    /// for debugging the backend. Defaults to on when `NNC_CHECKED` is set (to
    /// anything but `0`), so any test suite can run in checked mode.
    pub checked: bool,
}

impl Default for CompileOptions {
    fn default() -> CompileOptions {
        let checked = std::env::var_os("NNC_CHECKED").is_some_and(|v| !v.is_empty() && v != "0");
        CompileOptions { tile: None, threads: 0, checked }
    }
}

fn provider(opts: &CompileOptions) -> Result<CraneliftTiles, BackendError> {
    if let Some(t) = opts.tile {
        if !t.is_valid() {
            return Err(BackendError::InvalidOptions(format!(
                "tile {t:?}: mr must be 1..=8, nv 1..=4, kc at least 1, unroll 1..=8"
            )));
        }
    }
    Ok(CraneliftTiles { fixed: opts.tile })
}

/// Compiles the graph to native code.
pub fn compile(graph: &Graph, opts: &CompileOptions) -> Result<Compiled, BackendError> {
    let provider = provider(opts)?;
    let program = lower::lower(graph, &provider)?;
    let (code, _) = codegen::generate(&program, &provider, true, false, opts.checked)?;
    let code = code.ok_or_else(|| BackendError::Codegen("internal: no code".into()))?;
    let threads = match opts.threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    Compiled::new(program, code, threads, provider.family(), opts.checked)
}

/// The Cranelift IR of every generated function, as text (before Cranelift's own
/// optimizations): the kernels, then `step`.
pub fn emit_clif(graph: &Graph, opts: &CompileOptions) -> Result<String, BackendError> {
    let provider = provider(opts)?;
    let program = lower::lower(graph, &provider)?;
    let (_, text) = codegen::generate(&program, &provider, false, true, opts.checked)?;
    Ok(text)
}
