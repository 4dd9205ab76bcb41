//! Program → JIT'd machine code: the step's functions defined into a Cranelift
//! `JITModule` with the host's math functions and thread pool as symbols, then
//! finalized.

use crate::codegen::{define_step, Imports, Signatures, Sink, StepOptions};
use crate::error::{codegen_err, BackendError};
use crate::host_math::MathFn;
use crate::microkernel::KernelFamily;
use crate::program::Program;
use crate::target::{isa, Relocation};
use cranelift_jit::{JITBuilder, JITModule};
use cranelift_module::{default_libcall_names, Linkage, Module};
use std::collections::BTreeMap;

/// The host function the step calls to split a kernel over the thread pool.
pub(crate) const PARALLEL_FOR: &str = "nnc_parallel_for";

/// The step function: `table` of buffer addresses, batch size; returns the status.
pub(crate) type StepFn = unsafe extern "C" fn(*const *mut u8, i64) -> i32;

/// JIT'd code and the module that owns its memory.
pub(crate) struct JitCode {
    module: Option<JITModule>,
    pub step: StepFn,
    /// Every function's name, address and size in bytes (for profilers).
    pub functions: Vec<(String, usize, usize)>,
}

impl Drop for JitCode {
    fn drop(&mut self) {
        if let Some(module) = self.module.take() {
            // SAFETY: `step` (the only pointer into this module's code) lives in `self`
            // and is never used after `drop`, so no code of the module can still run.
            unsafe { module.free_memory() };
        }
    }
}

/// Compiles and links every function of `program`.
pub(crate) fn compile(program: &Program, family: &dyn KernelFamily, checked: bool) -> Result<JitCode, BackendError> {
    match generate(program, family, Output::Code, checked)? {
        Generated::Code(code) => Ok(*code),
        Generated::Clif(_) => Err(BackendError::Codegen("internal: no code".into())),
    }
}

/// The CLIF of every function of `program` as generated (before Cranelift's own
/// optimizations).
pub(crate) fn clif(program: &Program, family: &dyn KernelFamily, checked: bool) -> Result<String, BackendError> {
    match generate(program, family, Output::Clif, checked)? {
        Generated::Clif(text) => Ok(text),
        Generated::Code(_) => Err(BackendError::Codegen("internal: no CLIF".into())),
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Output {
    Code,
    Clif,
}

enum Generated {
    Code(Box<JitCode>),
    Clif(String),
}

/// Builds every function into a JIT module: compiled and linked, or as CLIF text.
fn generate(
    program: &Program,
    family: &dyn KernelFamily,
    output: Output,
    checked: bool,
) -> Result<Generated, BackendError> {
    let (isa, fma) = isa(Relocation::Absolute)?;
    let mut builder = JITBuilder::with_isa(isa, default_libcall_names());
    builder.symbol(PARALLEL_FOR, crate::runtime::pool::nnc_parallel_for as *const u8);
    for f in MathFn::ALL {
        builder.symbol(f.symbol(), f.address());
    }
    let mut module = JITModule::new(builder);
    let call_conv = module.isa().default_call_conv();
    let mut math = BTreeMap::new();
    for f in MathFn::ALL {
        let id = module.declare_function(f.symbol(), Linkage::Import, &f.signature(call_conv)).map_err(codegen_err)?;
        math.insert(f, id);
    }
    let sigs = Signatures::new(call_conv);
    let parallel_for =
        module.declare_function(PARALLEL_FOR, Linkage::Import, &sigs.parallel_for).map_err(codegen_err)?;
    let imports = Imports { math, parallel_for };
    if let Some(kernels) = family.micro_kernels() {
        kernels.prepare(&mut module)?;
    }
    let (compile, text) = (output == Output::Code, (output == Output::Clif).then(String::new));
    let mut sink = Sink { module: &mut module, compile, text, defined: Vec::new() };
    let step_id = define_step(&mut sink, program, family, &imports, fma, "", StepOptions { checked, threaded: true })?;
    let (clif, mut defined) = (sink.text.take().unwrap_or_default(), std::mem::take(&mut sink.defined));
    if let Some(kernels) = family.micro_kernels() {
        defined.extend(kernels.finish()?);
    }

    if output == Output::Clif {
        return Ok(Generated::Clif(clif));
    }
    module.finalize_definitions().map_err(codegen_err)?;
    let ptr = module.get_finalized_function(step_id);
    // SAFETY: `ptr` is the entry of the function just defined with `step_sig`, i.e.
    // `(i64, i64) -> i32` in the platform's default calling convention, which is the
    // `extern "C"` ABI of `StepFn` (pointers are 64-bit on every supported host).
    let step = unsafe { std::mem::transmute::<*const u8, StepFn>(ptr) };
    let functions: Vec<_> =
        defined.into_iter().map(|(id, name, size)| (name, module.get_finalized_function(id) as usize, size)).collect();
    if std::env::var_os("NNC_PERF_MAP").is_some() {
        write_perf_map(&functions);
    }
    Ok(Generated::Code(Box::new(JitCode { module: Some(module), step, functions })))
}

/// Appends the jitted functions to `/tmp/perf-<pid>.map`, where `perf report` looks
/// for the symbols of JIT code (enabled by `NNC_PERF_MAP=1`). A profiling aid: a
/// failure to write it is reported on stderr and otherwise ignored.
fn write_perf_map(functions: &[(String, usize, usize)]) {
    use std::io::Write;
    let path = format!("/tmp/perf-{}.map", std::process::id());
    let lines: String = functions.iter().map(|(name, addr, size)| format!("{addr:x} {size:x} {name}\n")).collect();
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut f| f.write_all(lines.as_bytes()));
    if let Err(e) = written {
        eprintln!("warning: cannot write {path}: {e}");
    }
}
