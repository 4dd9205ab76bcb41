//! Program → Cranelift functions, into any `cranelift_module::Module` (the JIT's,
//! `runtime/jit.rs`, or an object file's, `object.rs`).
//!
//! One function per kernel phase (`k7_map`, `k3_matmul_pack`, `k3_matmul`, ...) and
//! one exported `step(table: *const *mut u8, batch: i64) -> i32` that calls them in
//! order with their full work range (and, for a batched matrix product, once per
//! matrix), checks the status word after kernels that can fail, and returns it
//! (0 = success). Keeping kernels as separate functions keeps Cranelift's compile
//! time linear in the graph and gives the thread pool its unit of work.

use crate::clif::{Fx, PTR};
use crate::error::{codegen_err, BackendError};
use crate::host_math::MathFn;
use crate::kernels::matmul::dots;
use crate::kernels::{cross_entropy, elementwise, matmul, onehot, reduce, softmax, update};
use crate::microkernel::MicroKernelProvider;
use crate::program::{Body, Program};
use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::{types, AbiParam, InstBuilder, Signature, UserFuncName};
use cranelift_codegen::isa::CallConv;
use cranelift_codegen::Context;
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext};
use cranelift_module::{FuncId, Linkage, Module};
use nnc_ir::Size;
use std::collections::BTreeMap;

/// A kernel in the step: its index, how many parts (matrices of a batched product),
/// and per phase the function and its work items.
type Scheduled = (usize, Size, Vec<Call>);

/// A phase's function in the step: its work items and how they split, and for a
/// product that may split by columns, that variant's function and items.
struct Call {
    id: FuncId,
    items: Size,
    split: Split,
    by_columns: Option<(FuncId, matmul::Variant)>,
    /// The parts function and the sum function of a product split along K.
    by_depth: Option<(FuncId, FuncId, matmul::Variant)>,
    /// The dot-products function and the epilogue's of a product that has them.
    by_dots: Option<(FuncId, Option<FuncId>, matmul::Variant)>,
}

/// Emits a kernel function's body.
type Emit<'p> = Box<dyn Fn(&mut Fx) + 'p>;

/// One generated function: name, work items per call, and how to emit its body.
struct Phase<'p> {
    name: String,
    items: Size,
    emit: Emit<'p>,
    /// How its items split across threads (`None`: as the kernel's main phase).
    split: Option<Split>,
    /// A variant whose items are column panels, and how to emit it (see
    /// `matmul::by_columns`).
    by_columns: Option<(matmul::Variant, Emit<'p>)>,
    /// A variant split along K, and how to emit its parts and its sum (see
    /// `matmul::by_depth`).
    by_depth: Option<(matmul::Variant, Emit<'p>, Emit<'p>)>,
    /// Dot products at few rows, and how to emit them and the epilogue (see `kernels/matmul/dots.rs`).
    by_dots: Option<(matmul::Variant, Emit<'p>, Option<Emit<'p>>)>,
}

/// How a phase's items may be split across threads: chunk boundaries at multiples of
/// `align` items, and no chunk under `MIN_CHUNK_WORK` of work, `work` per item (a
/// size: the step computes the minimum chunk at the batch it runs, so a batch-1 step
/// does not hand microseconds of work to another thread).
#[derive(Clone, Copy)]
struct Split {
    align: i64,
    work: Size,
}

/// Work below which a chunk is not worth handing to another thread, in rough
/// floating-point operations (about a microsecond of one core).
const MIN_CHUNK_WORK: u64 = 50_000;

/// What copying one float costs, in the units of `MIN_CHUNK_WORK`: a pack streams
/// from L3 or memory. In a profile of the seed step at batch 256 (Zen 3), packing the
/// 256 KiB batch gradient for the weight gradient took about 25 µs, 0.38 ns a float.
const COPY_WORK: u64 = 16;

/// The product of sizes, or (for a size with the batch twice) that at batch 32.
fn work(scale: u64, sizes: &[Size]) -> Size {
    let exact = sizes.iter().try_fold(Size::fixed(scale), |acc, &s| acc.checked_mul(s));
    exact.unwrap_or_else(|| {
        let typical = |s: &Size| s.fixed + s.per_batch * 32;
        Size::fixed(sizes.iter().map(typical).fold(scale, u64::saturating_mul))
    })
}

fn split_of(body: &Body) -> Split {
    let (align, work) = match body {
        // Row tiles (and packed-A tiles) start at multiples of `mr`.
        Body::MatMul(m) => (m.tile.mr as i64, work(2, &[m.k, m.n])),
        Body::Elementwise(e) => (1, work(1, &e.nest.dims[1..])),
        // Column groups stream their columns of every row.
        Body::Reduce(r) => match reduce::column_groups(r) {
            Some(_) => (1, work(COPY_WORK * reduce::COLUMNS_PER_ITEM, &r.nest.dims[..1])),
            None => (1, work(1, &r.nest.dims[1..])),
        },
        // Each element costs a call to `exp`.
        Body::Softmax(s) => (1, work(30, &[s.len, s.inner])),
        Body::CrossEntropy(c) => (1, Size::fixed(40 * c.classes)),
        Body::OneHot(h) => (1, Size::fixed(h.depth)),
        Body::Update(_) => (1, Size::fixed(10)),
    };
    Split { align, work }
}

fn phases<'p>(
    program: &'p Program,
    index: usize,
    provider: &'p dyn MicroKernelProvider,
) -> Result<(Size, Vec<Phase<'p>>), BackendError> {
    let k = &program.kernels[index];
    let status = (program.status_slot, index as u32 + 1);
    let fails = k.body.can_fail().then_some(status);
    let name = k.name.clone();
    let one = |items: Size, emit: Emit<'p>| Phase {
        name: name.clone(),
        items,
        emit,
        split: None,
        by_columns: None,
        by_depth: None,
        by_dots: None,
    };
    Ok(match &k.body {
        Body::Elementwise(e) => {
            (Size::ONE, vec![one(elementwise::items(e), Box::new(move |fx| elementwise::emit(fx, e, fails)))])
        }
        Body::Reduce(r) => (Size::ONE, vec![one(reduce::items(r), Box::new(move |fx| reduce::emit(fx, r, fails)))]),
        Body::Softmax(s) => (Size::ONE, vec![one(softmax::items(s), Box::new(move |fx| softmax::emit(fx, s)))]),
        Body::OneHot(h) => (Size::ONE, vec![one(onehot::items(h), Box::new(move |fx| onehot::emit(fx, h, status)))]),
        Body::Update(u) => (Size::ONE, vec![one(update::items(u), Box::new(move |fx| update::emit(fx, u)))]),
        Body::CrossEntropy(ce) => {
            let mut list =
                vec![one(cross_entropy::row_items(ce), Box::new(move |fx| cross_entropy::emit_rows(fx, ce, status)))];
            if ce.loss.is_some() {
                list.push(Phase {
                    name: format!("{name}_loss"),
                    items: Size::ONE,
                    emit: Box::new(move |fx| cross_entropy::emit_loss(fx, ce)),
                    split: None,
                    by_columns: None,
                    by_depth: None,
                    by_dots: None,
                });
            }
            (Size::ONE, list)
        }
        Body::MatMul(m) => {
            let parts = matmul::parts(m).ok_or_else(|| codegen_err("batched matrix product with an N² count"))?;
            (
                parts,
                vec![
                    Phase {
                        name: format!("{name}_pack"),
                        items: matmul::pack_items(m),
                        emit: Box::new(move |fx| matmul::emit_pack(fx, m, provider)),
                        // Panels: K rows of `nr` floats copied, each worth about
                        // `COPY_WORK` floating-point operations.
                        split: Some(Split { align: 1, work: work(m.tile.nr() as u64 * COPY_WORK, &[m.k]) }),
                        by_columns: None,
                        by_depth: None,
                        by_dots: None,
                    },
                    Phase {
                        name: name.clone(),
                        items: m.m,
                        emit: Box::new(move |fx| matmul::emit_compute(fx, m, provider)),
                        split: None,
                        by_columns: matmul::by_columns(m, provider).map(|cols| {
                            let emit: Emit<'p> = Box::new(move |fx| matmul::emit_compute_columns(fx, m, provider));
                            (cols, emit)
                        }),
                        by_depth: matmul::by_depth(m).map(|depth| {
                            let parts: Emit<'p> = Box::new(move |fx| matmul::emit_compute_depth(fx, m, provider));
                            let sum: Emit<'p> = Box::new(move |fx| matmul::emit_depth_sum(fx, m));
                            (depth, parts, sum)
                        }),
                        by_dots: dots::variant(m).map(|dots| {
                            let emit: Emit<'p> = Box::new(move |fx| dots::emit(fx, m, provider));
                            let finish = m.epilogue.is_some().then(|| {
                                let finish: Emit<'p> = Box::new(move |fx| dots::emit_finish(fx, m));
                                finish
                            });
                            (dots, emit, finish)
                        }),
                    },
                ],
            )
        }
    })
}

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
            fx.finish(frontend);
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

/// Defines the kernels of `program` and its `step` function in the sink's module,
/// every name prefixed with `prefix`; returns the step function's id. `threaded`: the
/// step may get a thread pool, so products also get their column-split variant.
#[allow(clippy::too_many_arguments)]
pub(crate) fn define_step(
    sink: &mut Sink,
    program: &Program,
    provider: &dyn MicroKernelProvider,
    imports: &Imports,
    fma: bool,
    prefix: &str,
    checked: bool,
    threaded: bool,
) -> Result<FuncId, BackendError> {
    let sigs = Signatures::new(sink.module.isa().default_call_conv());
    let mut ctx = sink.module.make_context();
    let mut fctx = FunctionBuilderContext::new();

    // Kernel functions, and for each kernel its parts and phases for the step.
    let mut schedule: Vec<Scheduled> = Vec::new();
    for index in 0..program.kernels.len() {
        let (parts, list) = phases(program, index, provider)?;
        let mut calls = Vec::new();
        for phase in list {
            let slots = program.kernels[index].body.slots();
            let mut define = |name: String, emit: &dyn Fn(&mut Fx)| {
                let id = sink.module.declare_function(&name, Linkage::Local, &sigs.kernel).map_err(codegen_err)?;
                sink.function(id, &name, &sigs.kernel, (&mut ctx, &mut fctx), &imports.math, fma, |fx| {
                    if checked {
                        fx.enable_checks(&slots, program.n_slots, program.status_slot, index as u32 + 1);
                    }
                    emit(fx);
                    fx.b.ins().return_(&[]);
                })?;
                Ok::<_, BackendError>(id)
            };
            let id = define(format!("{prefix}{}", phase.name), &phase.emit)?;
            let by_columns = match phase.by_columns.as_ref().filter(|_| threaded) {
                Some((cols, emit)) => Some((define(format!("{prefix}{}_cols", phase.name), emit)?, *cols)),
                None => None,
            };
            // Defined for one thread too: the split along K changes rounding, so
            // every step takes it at the same M whatever its threads.
            let by_depth = match phase.by_depth.as_ref() {
                Some((depth, parts, sum)) => {
                    let parts = define(format!("{prefix}{}_depth", phase.name), parts)?;
                    Some((parts, define(format!("{prefix}{}_depth_sum", phase.name), sum)?, *depth))
                }
                None => None,
            };
            // Defined for one thread too, as the split along K.
            let by_dots = match phase.by_dots.as_ref() {
                Some((dots, emit, finish)) => {
                    let id = define(format!("{prefix}{}_dots", phase.name), emit)?;
                    let finish = match finish {
                        Some(f) => Some(define(format!("{prefix}{}_dots_finish", phase.name), f)?),
                        None => None,
                    };
                    Some((id, finish, *dots))
                }
                None => None,
            };
            let split = phase.split.unwrap_or_else(|| split_of(&program.kernels[index].body));
            calls.push(Call { id, items: phase.items, split, by_columns, by_depth, by_dots });
        }
        schedule.push((index, parts, calls));
    }

    // The step function.
    let name = format!("{prefix}step");
    let linkage = if prefix.is_empty() { Linkage::Export } else { Linkage::Local };
    let step_id = sink.module.declare_function(&name, linkage, &sigs.step).map_err(codegen_err)?;
    sink.function(step_id, &name, &sigs.step, (&mut ctx, &mut fctx), &imports.math, fma, |fx| {
        for (index, parts, calls) in &schedule {
            // `kernel` over `items`, split across the pool's threads.
            let parallel = |fx: &mut Fx, part, kernel: FuncId, items: Size, split: Split| {
                let (table, batch) = (fx.table, fx.batch);
                let n = fx.sz(items);
                let pool = fx.slot(program.pool_slot);
                let kernel = fx.func_addr(kernel);
                let align = fx.iconst(split.align);
                // ceil(MIN_CHUNK_WORK / work per item) at this batch.
                let per_item = fx.sz(split.work);
                let one = fx.iconst(1);
                let per_item = fx.b.ins().umax(per_item, one);
                let total = fx.iconst(MIN_CHUNK_WORK as i64);
                let total = fx.add(total, per_item);
                let total = fx.b.ins().iadd_imm_s(total, -1);
                let min_chunk = fx.b.ins().udiv(total, per_item);
                fx.call(imports.parallel_for, &[pool, kernel, table, batch, part, n, align, min_chunk]);
            };
            // M (at this batch), and whether it is few enough rows for `variant`.
            let few_rows = |fx: &mut Fx, variant: &matmul::Variant| {
                let rows = fx.sz(variant.rows);
                let few = fx.b.ins().icmp_imm_u(IntCC::UnsignedLessThanOrEqual, rows, variant.max_rows);
                let few = match variant.deeper_than {
                    Some(k) => {
                        let k = fx.sz(k);
                        let deeper = fx.b.ins().icmp(IntCC::UnsignedGreaterThan, k, rows);
                        fx.b.ins().band(few, deeper)
                    }
                    None => few,
                };
                (rows, few)
            };
            // `variant`'s function over its items.
            let parallel_variant = |fx: &mut Fx, part, id: FuncId, variant: &matmul::Variant| {
                parallel(fx, part, id, variant.items, Split { align: 1, work: variant.work });
            };
            // A phase by rows, or by columns where it has that variant.
            let call_by_width = |fx: &mut Fx, part, call: &Call| {
                let by_rows = |fx: &mut Fx| {
                    if call.items.is_fixed(1) {
                        let (table, batch) = (fx.table, fx.batch);
                        let zero = fx.iconst(0);
                        let one = fx.iconst(1);
                        fx.call(call.id, &[table, batch, part, zero, one]);
                    } else {
                        parallel(fx, part, call.id, call.items, call.split);
                    }
                };
                let Some((cols_id, cols)) = call.by_columns else {
                    return by_rows(fx);
                };
                // By columns when there are threads to split for and A is the
                // smaller operand (see `matmul::by_columns`).
                let pool = fx.slot(program.pool_slot);
                let threaded = fx.b.ins().icmp_imm_u(IntCC::NotEqual, pool, 0);
                let (_, few) = few_rows(fx, &cols);
                let columns = fx.b.ins().band(threaded, few);
                fx.if_else(columns, |fx| parallel_variant(fx, part, cols_id, &cols), by_rows);
            };
            let call_each = |fx: &mut Fx, part| {
                for call in calls {
                    let Some((parts_id, sum_id, depth)) = call.by_depth else {
                        call_by_width(fx, part, call);
                        continue;
                    };
                    // Along K at few rows (see `matmul::by_depth`), else by width.
                    let (rows, few) = few_rows(fx, &depth);
                    let along_k = |fx: &mut Fx| {
                        parallel_variant(fx, part, parts_id, &depth);
                        let (table, batch) = (fx.table, fx.batch);
                        let zero = fx.iconst(0);
                        fx.call(sum_id, &[table, batch, part, zero, rows]);
                    };
                    fx.if_else(few, along_k, |fx| call_by_width(fx, part, call));
                }
            };
            // At few rows, a product with dot products skips its pack and tiles.
            let call_all = |fx: &mut Fx, part| {
                let Some((dots_id, finish_id, dots)) = calls.iter().find_map(|c| c.by_dots) else {
                    return call_each(fx, part);
                };
                let (rows, few) = few_rows(fx, &dots);
                let by_dots = |fx: &mut Fx| {
                    parallel_variant(fx, part, dots_id, &dots);
                    if let Some(finish_id) = finish_id {
                        let (table, batch) = (fx.table, fx.batch);
                        let zero = fx.iconst(0);
                        fx.call(finish_id, &[table, batch, part, zero, rows]);
                    }
                };
                fx.if_else(few, by_dots, |fx| call_each(fx, part));
            };
            if parts.is_fixed(1) {
                let zero = fx.iconst(0);
                call_all(fx, zero);
            } else {
                let zero = fx.iconst(0);
                let n = fx.sz(*parts);
                fx.for_range(zero, n, 1, |fx, p| call_all(fx, p));
            }
            if checked || program.kernels[*index].body.can_fail() {
                let addr = fx.slot(program.status_slot);
                let status = fx.load(types::I32, addr, 0);
                let failed = fx.b.ins().icmp_imm_s(IntCC::NotEqual, status, 0);
                fx.if_then(failed, |fx| {
                    fx.b.ins().return_(&[status]);
                    // Unreachable continuation block for the builder.
                    let after = fx.b.create_block();
                    fx.b.switch_to_block(after);
                });
            }
        }
        let ok = fx.b.ins().iconst(types::I32, 0);
        fx.b.ins().return_(&[ok]);
    })?;
    Ok(step_id)
}
