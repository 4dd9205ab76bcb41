//! nnc's Cranelift backend: lowers a whole [`Graph`] (a model, or a complete training
//! step) to native SIMD code and runs it with no interpreter, no per-op dispatch and no
//! allocation per step.
//!
//! ```text
//! Graph + step plan ─► lower (one kernel description per planned kernel) ─► codegen (CLIF
//!   per kernel + step) ─► Cranelift JIT ─► Compiled::run(feeds) ─► outputs, parameters
//!   updated in place
//! ```
//!
//! - [`lower`] takes a graph and its step plan (`nnc_opt::plan`) to a [`Lowered`]
//!   program, which prints as text, compiles to a [`Compiled`] ([`Lowered::compile`])
//!   or into an object file ([`compile_object`]). [`compile`] and [`emit_clif`] plan a
//!   graph as it is and do the same.
//! - A [`Compiled`] owns the parameter and state buffers (initialized from their
//!   `init`), runs steps with [`Compiled::run`], and exposes [`Compiled::param`] /
//!   [`Compiled::set_param`].
//! - The batch size is a run-time argument: one compiled step serves every batch size.
//! - What cannot be lowered is a [`BackendError::Unsupported`] that lists every such
//!   value; there is no fallback to the interpreter.
//!
//! Calling convention of the generated code: `step(table, batch) -> status`, where
//! `table[slot]` is the address of the buffer of each graph value (slot = value index),
//! then of kernel scratch buffers, then of a status word. See `nnc_opt::plan` for the
//! memory plan and `clif.rs` for the kernel functions' signature.

mod clif;
mod codegen;
mod error;
mod host_math;
mod kernels;
mod lower;
mod microkernel;
mod object;
mod peak;
mod program;
mod runtime;
mod shape;
mod target;

pub use error::{BackendError, Unsupported};
pub use object::{compile_object, ObjectCode, ObjectOptions};
pub use peak::fma_peak_gflops;
pub use program::TileShape;
pub use runtime::disasm::disassemble;
pub use runtime::Compiled;
pub use target::VectorWidth;

use microkernel::cranelift::CraneliftTiles;
use microkernel::KernelFamily;
use nnc_ir::Graph;

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
    /// Which matrix-product micro-kernels to use.
    pub kernels: Kernels,
}

/// The matrix-product micro-kernel family.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Kernels {
    /// The widest assembled kernels the CPU runs (AVX-512, else AVX2+FMA) unless a
    /// fixed `tile` or checked mode is asked for; else the Cranelift ones.
    #[default]
    Auto,
    /// Portable Cranelift f32x4 code.
    Cranelift,
    /// 256-bit kernels assembled for x86-64 AVX2+FMA; an error on other CPUs.
    Avx2,
    /// 512-bit kernels assembled for x86-64 AVX-512F; an error on other CPUs.
    Avx512,
}

impl Kernels {
    /// The family named `auto`, `cranelift`, `avx2` or `avx512`.
    pub fn from_name(name: &str) -> Option<Kernels> {
        Some(match name {
            "auto" => Kernels::Auto,
            "cranelift" => Kernels::Cranelift,
            "avx2" => Kernels::Avx2,
            "avx512" => Kernels::Avx512,
            _ => return None,
        })
    }
}

impl Default for CompileOptions {
    /// Every thread, unchecked, `Kernels::Auto`; the environment may change two of
    /// these so that any test suite can run in another mode: `NNC_CHECKED` (set to
    /// anything but `0`) turns checked mode on, and `NNC_KERNELS` names the kernel
    /// family (`auto`, `cranelift`, `avx2`, `avx512`; other values are ignored).
    fn default() -> CompileOptions {
        let checked = std::env::var_os("NNC_CHECKED").is_some_and(|v| !v.is_empty() && v != "0");
        let kernels = std::env::var("NNC_KERNELS").ok().and_then(|k| Kernels::from_name(&k)).unwrap_or_default();
        CompileOptions { tile: None, threads: 0, checked, kernels }
    }
}

/// The kernel family `opts` compiles with on this CPU (as [`Compiled::kernel_family`]
/// reports it), or why it cannot.
pub fn kernel_family(opts: &CompileOptions) -> Result<&'static str, BackendError> {
    Ok(family(opts)?.family())
}

fn family(opts: &CompileOptions) -> Result<Box<dyn KernelFamily>, BackendError> {
    if let Some(t) = opts.tile {
        if !t.is_valid() {
            return Err(BackendError::InvalidOptions(format!(
                "tile {t:?}: mr must be 1..=8, nv 1..=4, kc at least 1, unroll 1..=8"
            )));
        }
    }
    let cranelift = || -> Box<dyn KernelFamily> { Box::new(CraneliftTiles { fixed: opts.tile }) };
    #[cfg(target_arch = "x86_64")]
    {
        use microkernel::x86::X86Tiles;
        use target::{has_avx2_fma, has_avx512f, VectorWidth};
        let avx2 = has_avx2_fma();
        match opts.kernels {
            Kernels::Avx2 if !avx2 => {
                return Err(BackendError::InvalidOptions(
                    "this CPU has no AVX2 and FMA: use --kernels cranelift".into(),
                ))
            }
            Kernels::Avx512 if !has_avx512f() => {
                return Err(BackendError::InvalidOptions("this CPU has no AVX-512F: use --kernels avx2".into()))
            }
            Kernels::Avx2 | Kernels::Avx512 if opts.checked => {
                return Err(BackendError::InvalidOptions(
                    "checked mode bounds-checks Cranelift code only: use --kernels cranelift".into(),
                ))
            }
            Kernels::Avx2 => return Ok(Box::new(X86Tiles::new(VectorWidth::V256))),
            Kernels::Avx512 => return Ok(Box::new(X86Tiles::new(VectorWidth::V512))),
            // AVX-512 where the CPU has it: measured faster at every batch of the
            // seed step (docs/performance.md).
            Kernels::Auto if avx2 && opts.tile.is_none() && !opts.checked => {
                let width = if has_avx512f() { VectorWidth::V512 } else { VectorWidth::V256 };
                return Ok(Box::new(X86Tiles::new(width)));
            }
            _ => {}
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    if matches!(opts.kernels, Kernels::Avx2 | Kernels::Avx512) {
        return Err(BackendError::InvalidOptions("AVX2 kernels need an x86-64 CPU: use --kernels cranelift".into()));
    }
    Ok(cranelift())
}

/// A graph lowered by its step plan for one kernel family: the kernels' descriptions
/// and buffers, ready for code generation ([`Lowered::compile`] for the JIT,
/// [`compile_object`] for an object file). It prints as the lowered program: every
/// kernel with its plan and its buffers.
pub struct Lowered {
    program: program::Program,
    family: Box<dyn KernelFamily>,
    opts: CompileOptions,
}

impl std::fmt::Debug for Lowered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lowered").field("kernels", &self.program.kernels.len()).finish_non_exhaustive()
    }
}

/// Lowers `graph` by its step plan (`nnc_opt::plan` of this very graph, as
/// `nnc_opt::optimize` returns it) for the kernel family `opts` names.
pub fn lower(graph: &Graph, plan: nnc_opt::StepPlan, opts: &CompileOptions) -> Result<Lowered, BackendError> {
    nnc_ir::verify(graph).map_err(|e| BackendError::InvalidGraph(e.to_string()))?;
    let family = family(opts)?;
    let program = lower::lower(graph, plan, family.as_ref())?;
    Ok(Lowered { program, family, opts: opts.clone() })
}

impl Lowered {
    /// JIT-compiles the program.
    pub fn compile(self) -> Result<Compiled, BackendError> {
        let Lowered { program, family, opts } = self;
        let code = runtime::jit::compile(&program, family.as_ref(), opts.checked)?;
        let threads = match opts.threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        Compiled::new(program, code, threads, (family.family(), family.vector_width()), opts.checked)
    }

    /// The Cranelift IR of every generated function, as text (before Cranelift's own
    /// optimizations): the kernels, then `step`.
    pub fn clif(&self) -> Result<String, BackendError> {
        runtime::jit::clif(&self.program, self.family.as_ref(), self.opts.checked)
    }

    /// The lowered program as text: every kernel with what it computes and, for a
    /// matrix product, its plan (tile, packing and copies, epilogue, splits), then the
    /// arena's buffers; the layout and the run-time choices at `batch`.
    pub fn text(&self, batch: usize) -> String {
        self.program.text(self.family.family(), batch)
    }

    /// Each convolution's and pooling's value and the kernel chosen for it, in a few
    /// words (an implicit product on the tiles, or a direct kernel).
    pub fn window_kernels(&self) -> Vec<(String, String)> {
        self.program.window_kernels()
    }

    /// The step plan the program executes, with its kernels' scratch buffers.
    pub fn plan(&self) -> &nnc_opt::StepPlan {
        &self.program.plan
    }

    /// The number of kernels the step runs.
    pub fn kernel_count(&self) -> usize {
        self.program.kernels.len()
    }

    /// The matrix-product kernel family (as [`Compiled::kernel_family`] reports it).
    pub fn kernel_family(&self) -> &'static str {
        self.family.family()
    }
}

/// Plans, lowers and compiles `graph` as it is (the `nnc` tool and the trainer
/// optimize it first, through `nnc-pipeline`).
pub fn compile(graph: &Graph, opts: &CompileOptions) -> Result<Compiled, BackendError> {
    planned(graph, opts)?.compile()
}

/// The Cranelift IR of `graph` as it is, planned and lowered (see [`Lowered::clif`]).
pub fn emit_clif(graph: &Graph, opts: &CompileOptions) -> Result<String, BackendError> {
    planned(graph, opts)?.clif()
}

/// `graph` verified, planned and lowered.
fn planned(graph: &Graph, opts: &CompileOptions) -> Result<Lowered, BackendError> {
    nnc_ir::verify(graph).map_err(|e| BackendError::InvalidGraph(e.to_string()))?;
    lower(graph, nnc_opt::plan::plan(graph), opts)
}
