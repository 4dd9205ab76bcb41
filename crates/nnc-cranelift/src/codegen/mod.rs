//! Program → Cranelift functions, into any `cranelift_module::Module` (the JIT's,
//! `runtime/jit.rs`, or an object file's, `object.rs`).
//!
//! One function per kernel phase (`k7_map`, `k3_matmul_pack`, `k3_matmul`, ...) and
//! one exported `step(table: *const *mut u8, batch: i64) -> i32` that calls them in
//! order with their full work range (and, for a batched matrix product, once per
//! matrix), checks the status word after kernels that can fail, and returns it
//! (0 = success). Keeping kernels as separate functions keeps Cranelift's compile
//! time linear in the graph and gives the thread pool its unit of work.

mod phases;
mod step;

use crate::clif::{Fx, PTR};
use crate::error::{codegen_err, BackendError};
use crate::host_math::MathFn;
use crate::microkernel::KernelFamily;
use crate::program::Program;
use cranelift_codegen::ir::{types, AbiParam, InstBuilder, Signature, UserFuncName};
use cranelift_codegen::isa::CallConv;
use cranelift_codegen::Context;
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext};
use cranelift_module::{FuncId, Linkage, Module};
use phases::phases;
use std::collections::BTreeMap;

/// What the generated functions call outside themselves.
pub(crate) struct Imports {
    pub math: BTreeMap<MathFn, FuncId>,
    pub parallel_for: FuncId,
}

/// Signatures of the generated functions.
pub(crate) struct Signatures {
    /// `kernel(table, batch, part, begin, end)`.
    pub kernel: Signature,
    /// `step(table, batch) -> status`.
    pub step: Signature,
    /// `nnc_parallel_for(pool, kernel, table, batch, part, items, align, min_chunk)`.
    pub parallel_for: Signature,
}

impl Signatures {
    pub fn new(call_conv: CallConv) -> Signatures {
        let mut kernel = Signature::new(call_conv);
        kernel.params.extend([AbiParam::new(PTR); 5]);
        let mut parallel_for = Signature::new(call_conv);
        parallel_for.params.extend([AbiParam::new(PTR); 8]);
        let mut step = Signature::new(call_conv);
        step.params.extend([AbiParam::new(PTR); 2]);
        step.returns.push(AbiParam::new(types::I32));
        Signatures { kernel, step, parallel_for }
    }
}

/// Where generated functions go: compiled into `module` (when `compile`), their CLIF
/// appended to `text` (when given), and `(id, name, code size)` recorded.
pub(crate) struct Sink<'m> {
    pub module: &'m mut dyn Module,
    pub compile: bool,
    pub text: Option<String>,
    pub defined: Vec<(FuncId, String, usize)>,
}

impl Sink<'_> {
    /// Builds the body of function `id` with `emit` (on an `Fx` whose parameters are
    /// the function's), then defines it.
    #[allow(clippy::too_many_arguments)]
    pub fn function(
        &mut self,
        id: FuncId,
        name: &str,
        sig: &Signature,
        (ctx, fctx): (&mut Context, &mut FunctionBuilderContext),
        math: &BTreeMap<MathFn, FuncId>,
        fma: bool,
        emit: impl FnOnce(&mut Fx),
    ) -> Result<(), BackendError> {
        ctx.func.signature = sig.clone();
        ctx.func.name = UserFuncName::user(0, id.as_u32());
        let frontend = self.module.target_config();
        {
            let mut b = FunctionBuilder::new(&mut ctx.func, fctx);
            let entry = b.create_block();
            b.append_block_params_for_function_params(entry);
            b.switch_to_block(entry);
            let params = b.block_params(entry).to_vec();
            let mut fx = Fx::new(b, &mut *self.module, math, &params, fma);
            emit(&mut fx);
            fx.finish(frontend).map_err(|e| codegen_err(format!("{name}: {e}")))?;
        }
        if let Some(text) = &mut self.text {
            text.push_str(&format!("; {name}\n{}\n", ctx.func.display()));
        }
        if self.compile {
            self.module.define_function(id, ctx).map_err(|e| codegen_err(format!("{name}: {e:?}")))?;
            let size = ctx.compiled_code().map_or(0, |c| c.code_info().total_size as usize);
            self.defined.push((id, name.to_string(), size));
        }
        self.module.clear_context(ctx);
        Ok(())
    }
}

/// How the step is generated.
#[derive(Clone, Copy)]
pub(crate) struct StepOptions {
    /// Checked mode: every load and store bounds-checked.
    pub checked: bool,
    /// The step may get a thread pool, so products also get their column-split variant.
    pub threaded: bool,
}

/// Defines the kernels of `program` and its `step` function in the sink's module,
/// every name prefixed with `prefix`; returns the step function's id.
pub(crate) fn define_step(
    sink: &mut Sink,
    program: &Program,
    family: &dyn KernelFamily,
    imports: &Imports,
    fma: bool,
    prefix: &str,
    StepOptions { checked, threaded }: StepOptions,
) -> Result<FuncId, BackendError> {
    let sigs = Signatures::new(sink.module.isa().default_call_conv());
    let mut ctx = sink.module.make_context();
    let mut fctx = FunctionBuilderContext::new();

    // Kernel functions, and for each kernel its parts and calls for the step.
    let mut schedule: Vec<step::Scheduled> = Vec::new();
    for index in 0..program.kernels.len() {
        let (parts, list) = phases(program, index, family)?;
        let slots = program.kernels[index].body.slots();
        let mut define = |name: String, emit: &dyn Fn(&mut Fx)| {
            let id = sink.module.declare_function(&name, Linkage::Local, &sigs.kernel).map_err(codegen_err)?;
            sink.function(id, &name, &sigs.kernel, (&mut ctx, &mut fctx), &imports.math, fma, |fx| {
                if checked {
                    fx.enable_checks(&slots, program.n_slots(), program.status_slot, index as u32 + 1);
                }
                emit(fx);
                fx.b.ins().return_(&[]);
            })?;
            Ok::<_, BackendError>(id)
        };
        let mut calls = Vec::new();
        for phase in list {
            let id = define(format!("{prefix}{}", phase.name), &phase.emit)?;
            let mut alternatives = Vec::new();
            // The splits that change rounding are defined for one thread too: every
            // step takes them at the same M whatever its threads.
            for alt in phase.alternatives.iter().filter(|a| threaded || !a.threaded_only) {
                let parts = define(format!("{prefix}{}{}", phase.name, alt.suffix), &alt.parts)?;
                let finish = match &alt.finish {
                    Some((suffix, emit)) => Some(define(format!("{prefix}{}{suffix}", phase.name), emit)?),
                    None => None,
                };
                alternatives.push(step::Taken {
                    parts,
                    finish,
                    variant: alt.variant,
                    threaded_only: alt.threaded_only,
                    whole_kernel: alt.whole_kernel,
                });
            }
            calls.push(step::Call { id, items: phase.items, split: phase.split, alternatives });
        }
        schedule.push(step::Scheduled { index, parts, calls });
    }

    // The step function.
    let name = format!("{prefix}step");
    let linkage = if prefix.is_empty() { Linkage::Export } else { Linkage::Local };
    let step_id = sink.module.declare_function(&name, linkage, &sigs.step).map_err(codegen_err)?;
    let step = step::Step { program, imports, checked };
    sink.function(step_id, &name, &sigs.step, (&mut ctx, &mut fctx), &imports.math, fma, |fx| {
        for kernel in &schedule {
            step.kernel(fx, kernel);
        }
        let ok = fx.b.ins().iconst(types::I32, 0);
        fx.b.ins().return_(&[ok]);
    })?;
    Ok(step_id)
}
