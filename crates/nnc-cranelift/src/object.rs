//! Ahead-of-time output: the same kernels and step functions the JIT runs, written to
//! a relocatable object file with plain C entry points, and the C header that
//! declares them.
//!
//! ```text
//! int32_t <prefix>_<entry>(void *state, void *arena, <inputs...>, <outputs...>, int64_t batch);
//! void    <prefix>_init(void *state);            // with embedded weights only
//! ```
//!
//! - `state` holds every parameter and optimizer-state tensor at the offsets the
//!   header defines (64-byte aligned); it is shared by all entries, so a training step
//!   followed by `infer` sees the trained weights.
//! - `arena` holds the intermediates: its layout is planned once for `max_batch`
//!   (every storage is affine in the batch, so a placement for the largest batch is
//!   valid for every smaller one), and any batch in `0..=max_batch` runs.
//! - Inputs are read in place; outputs are copied out; the return value is 0, the
//!   1-based index of a kernel that failed (e.g. a label out of range), or -1 for a
//!   batch larger than `max_batch`.
//!
//! Differences from the JIT: position-independent code (for PIE executables), one
//! thread (the parallel-for is a serial local function), and the transcendental
//! functions other than `exp` (generated inline, as in the JIT) come from the C
//! library's libm (`logf`, `tanhf`, `erff`, `powf`; sigmoid and GELU are generated
//! from them). With glibc those are the very functions Rust's `f32::ln`/`tanh`/`powf`
//! call, so steps that use only them (the seed MLP: log in the cross-entropy) match
//! the JIT bit for bit; `erff` is musl's in the JIT and glibc's here (both within an
//! ulp or two).
//! The object needs nothing but libc (`memcpy`, `memset`) and libm.

use crate::clif::{Fx, PTR};
use crate::codegen::{define_step, Imports, Signatures, Sink, StepOptions};
use crate::error::codegen_err;
use crate::error::BackendError;
use crate::host_math::MathFn;
use crate::program::{Program, Slot};
use crate::target::{isa, Relocation};
use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::{types, AbiParam, InstBuilder, Signature, StackSlotData, StackSlotKind, Value};
use cranelift_codegen::Context;
use cranelift_frontend::FunctionBuilderContext;
use cranelift_module::{default_libcall_names, DataDescription, DataId, FuncId, Linkage, Module};
use cranelift_object::{ObjectBuilder, ObjectModule};
use nnc_ir::{DType, Size, Tensor, TensorType};
use std::collections::BTreeMap;

/// Options for [`compile_object`].
#[derive(Clone, Debug)]
pub struct ObjectOptions {
    /// Prefix of every exported symbol and header macro (a C identifier).
    pub prefix: String,
    /// Put the initial values of parameters and state into the object, with a
    /// `<prefix>_init(state)` that copies them into a state block.
    pub embed_weights: bool,
    /// The largest batch the entries accept (the arena is planned for it).
    pub max_batch: usize,
}

/// An object file and its C header.
#[derive(Clone, Debug)]
pub struct ObjectCode {
    pub object: Vec<u8>,
    pub header: String,
    /// The matrix-product kernel family in the object.
    pub kernels: &'static str,
}

/// One parameter or state tensor in the shared state block.
struct StateLeaf {
    name: String,
    ty: TensorType,
    offset: usize,
    bytes: usize,
    init: Option<Tensor>,
}

/// Compiles each `(entry name, program)` into one object with a C entry point
/// `<prefix>_<entry>` per program (e.g. `train_step` and `infer`). The programs must
/// be lowered for one kernel family, unchecked. Their family decides where the object
/// runs: `Kernels::Auto` picks for the CPU compiling (like `-march=native`); name a
/// family for an object that runs elsewhere (`Cranelift` runs on every x86-64 CPU).
pub fn compile_object(entries: &[(&str, &crate::Lowered)], opts: &ObjectOptions) -> Result<ObjectCode, BackendError> {
    let bad = |m: String| Err(BackendError::InvalidOptions(m));
    let is_ident = |s: &str| {
        s.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    };
    if !is_ident(&opts.prefix) {
        return bad(format!("the prefix {:?} is not a C identifier", opts.prefix));
    }
    let Some((_, first)) = entries.first() else { return bad("an object needs at least one entry".into()) };
    let family = first.family.as_ref();
    let mut programs = Vec::new();
    for &(name, lowered) in entries {
        if !is_ident(name) {
            return bad(format!("the entry name {name:?} is not a C identifier"));
        }
        if lowered.opts.checked {
            return bad("checked mode bounds-checks JIT code only: lower for an object without it".into());
        }
        if lowered.family.family() != family.family() {
            return bad(format!(
                "the entries are lowered for two kernel families ({} and {})",
                family.family(),
                lowered.family.family()
            ));
        }
        programs.push((name, &lowered.program));
    }

    // The shared state block: every leaf once, by name.
    let mut leaves: Vec<StateLeaf> = Vec::new();
    let mut state_bytes = 0usize;
    for (_, p) in &programs {
        for l in &p.leaves {
            match leaves.iter_mut().find(|s| s.name == l.name) {
                Some(s) if s.ty != l.ty => {
                    return bad(format!("%{} is {} in one entry and {} in another", l.name, s.ty, l.ty));
                }
                Some(s) => {
                    if s.init.is_none() {
                        s.init.clone_from(&l.init);
                    }
                }
                None => {
                    let bytes = l.ty.shape.numel(1).unwrap_or(0) * l.ty.dtype.size_bytes();
                    let offset = state_bytes.next_multiple_of(64);
                    state_bytes = offset + bytes;
                    leaves.push(StateLeaf {
                        name: l.name.clone(),
                        ty: l.ty.clone(),
                        offset,
                        bytes,
                        init: l.init.clone(),
                    });
                }
            }
        }
    }
    let mut arena_bytes = 0usize;
    for (name, p) in &programs {
        let layout = p
            .plan
            .layout(opts.max_batch)
            .map_err(|m| BackendError::TooLarge { batch: opts.max_batch, message: format!("{name}: {m}") })?;
        arena_bytes = arena_bytes.max(layout.total);
    }

    let (isa, fma) = isa(Relocation::Pic)?;
    let builder =
        ObjectBuilder::new(isa, format!("{}.o", opts.prefix), default_libcall_names()).map_err(codegen_err)?;
    let mut module = ObjectModule::new(builder);
    let call_conv = module.isa().default_call_conv();
    let sigs = Signatures::new(call_conv);
    let mut ctx = module.make_context();
    let mut fctx = FunctionBuilderContext::new();
    let libc = LibC::declare(&mut module)?;
    let math = define_math(&mut module, &libc, (&mut ctx, &mut fctx), &opts.prefix)?;
    let parallel_for = define_serial_parallel_for(&mut module, &sigs, (&mut ctx, &mut fctx), &math, &opts.prefix)?;
    let imports = Imports { math, parallel_for };
    if let Some(kernels) = family.micro_kernels() {
        kernels.prepare(&mut module)?;
    }

    let mut header_entries = Vec::new();
    for (name, program) in &programs {
        let prefix = format!("{}_{name}_", opts.prefix);
        let mut sink = Sink { module: &mut module, compile: true, text: None, defined: Vec::new() };
        // The object's `parallel_for` is serial: no column-split variants.
        let options = StepOptions { checked: false, threaded: false };
        let step = define_step(&mut sink, program, family, &imports, fma, &prefix, options)?;
        let consts = program
            .consts
            .iter()
            .enumerate()
            .map(|(i, (_, t))| define_data(&mut module, &format!("{prefix}const{i}"), t))
            .collect::<Result<Vec<_>, _>>()?;
        let entry = format!("{}_{name}", opts.prefix);
        let wrapper = Wrapper { program, leaves: &leaves, consts: &consts, step, max_batch: opts.max_batch };
        wrapper.define(&mut module, &entry, &libc, (&mut ctx, &mut fctx), &imports.math)?;
        header_entries.push(entry);
    }
    if opts.embed_weights {
        define_init(&mut module, &leaves, &libc, (&mut ctx, &mut fctx), &imports.math, &opts.prefix)?;
    }
    if let Some(kernels) = family.micro_kernels() {
        kernels.finish()?;
    }
    let object = module.finish().emit().map_err(codegen_err)?;
    let entries: Vec<(String, &Program)> = header_entries.into_iter().zip(programs.iter().map(|(_, p)| *p)).collect();
    let header = header(opts, &leaves, state_bytes, arena_bytes, &entries, family.family());
    Ok(ObjectCode { object, header, kernels: family.family() })
}

/// The C library functions the object calls.
struct LibC {
    memcpy: FuncId,
    memset: FuncId,
    f32_unary: BTreeMap<&'static str, FuncId>,
    powf: FuncId,
}

impl LibC {
    fn declare(module: &mut ObjectModule) -> Result<LibC, BackendError> {
        let cc = module.isa().default_call_conv();
        let mut mem = Signature::new(cc);
        mem.params.extend([AbiParam::new(PTR), AbiParam::new(PTR), AbiParam::new(PTR)]);
        mem.returns.push(AbiParam::new(PTR));
        let mut set = Signature::new(cc);
        set.params.extend([AbiParam::new(PTR), AbiParam::new(types::I32), AbiParam::new(PTR)]);
        set.returns.push(AbiParam::new(PTR));
        let memcpy = module.declare_function("memcpy", Linkage::Import, &mem).map_err(codegen_err)?;
        let memset = module.declare_function("memset", Linkage::Import, &set).map_err(codegen_err)?;
        let mut f32_unary = BTreeMap::new();
        for name in ["logf", "tanhf", "erff"] {
            let id = module.declare_function(name, Linkage::Import, &MathFn::Log.signature(cc)).map_err(codegen_err)?;
            f32_unary.insert(name, id);
        }
        let powf = module.declare_function("powf", Linkage::Import, &MathFn::Pow.signature(cc)).map_err(codegen_err)?;
        Ok(LibC { memcpy, memset, f32_unary, powf })
    }
}

type Contexts<'a> = (&'a mut Context, &'a mut FunctionBuilderContext);

/// The math helpers: libm's functions where they are the helper, generated
/// functions for sigmoid and GELU (the formulas of `host_math.rs`).
fn define_math(
    module: &mut ObjectModule,
    libc: &LibC,
    (ctx, fctx): Contexts,
    prefix: &str,
) -> Result<BTreeMap<MathFn, FuncId>, BackendError> {
    let cc = module.isa().default_call_conv();
    let mut math = BTreeMap::new();
    math.insert(MathFn::Log, libc.f32_unary["logf"]);
    math.insert(MathFn::Tanh, libc.f32_unary["tanhf"]);
    math.insert(MathFn::Erf, libc.f32_unary["erff"]);
    math.insert(MathFn::Pow, libc.powf);
    let none = BTreeMap::new();
    for f in [MathFn::Sigmoid, MathFn::GeluErf, MathFn::GeluTanh] {
        let name = format!("{prefix}_{}", f.symbol());
        let sig = f.signature(cc);
        let id = module.declare_function(&name, Linkage::Local, &sig).map_err(codegen_err)?;
        let mut sink = Sink { module: &mut *module, compile: true, text: None, defined: Vec::new() };
        let lib = &libc.f32_unary;
        sink.function(id, &name, &sig, (&mut *ctx, &mut *fctx), &none, false, |fx| {
            let entry = fx.b.current_block().expect("entry block");
            let x = fx.b.block_params(entry)[0];
            let k = |fx: &mut Fx, c: f32| fx.b.ins().f32const(c);
            let one = k(fx, 1.0);
            let half = k(fx, 0.5);
            let y = match f {
                MathFn::Sigmoid => {
                    // x >= 0: 1/(1 + exp(-x)); else e/(1 + e) with e = exp(x).
                    let zero = k(fx, 0.0);
                    let nonneg = fx.b.ins().fcmp(FloatCC::GreaterThanOrEqual, x, zero);
                    let neg_x = fx.b.ins().fneg(x);
                    let arg = fx.b.ins().select(nonneg, neg_x, x);
                    let e = crate::kernels::exp::emit_expf(fx, arg);
                    let denom = fx.b.ins().fadd(one, e);
                    let num = fx.b.ins().select(nonneg, one, e);
                    fx.b.ins().fdiv(num, denom)
                }
                MathFn::GeluErf => {
                    let c = k(fx, std::f64::consts::FRAC_1_SQRT_2 as f32);
                    let scaled = fx.b.ins().fmul(x, c);
                    let inner = call(fx, lib["erff"], &[scaled]);
                    let hx = fx.b.ins().fmul(half, x);
                    let s = fx.b.ins().fadd(one, inner);
                    fx.b.ins().fmul(hx, s)
                }
                _ => {
                    let c = k(fx, (2.0 / std::f64::consts::PI).sqrt() as f32);
                    let a = k(fx, 0.044715);
                    let ax = fx.b.ins().fmul(a, x);
                    let axx = fx.b.ins().fmul(ax, x);
                    let axxx = fx.b.ins().fmul(axx, x);
                    let sum = fx.b.ins().fadd(x, axxx);
                    let arg = fx.b.ins().fmul(c, sum);
                    let inner = call(fx, lib["tanhf"], &[arg]);
                    let hx = fx.b.ins().fmul(half, x);
                    let s = fx.b.ins().fadd(one, inner);
                    fx.b.ins().fmul(hx, s)
                }
            };
            fx.b.ins().return_(&[y]);
        })?;
        math.insert(f, id);
    }
    Ok(math)
}

fn call(fx: &mut Fx, id: FuncId, args: &[Value]) -> Value {
    fx.call_returning(id, args)
}

/// A local `nnc_parallel_for` that runs every item on the calling thread.
fn define_serial_parallel_for(
    module: &mut ObjectModule,
    sigs: &Signatures,
    (ctx, fctx): Contexts,
    math: &BTreeMap<MathFn, FuncId>,
    prefix: &str,
) -> Result<FuncId, BackendError> {
    let name = format!("{prefix}_parallel_for");
    let id = module.declare_function(&name, Linkage::Local, &sigs.parallel_for).map_err(codegen_err)?;
    let mut sink = Sink { module: &mut *module, compile: true, text: None, defined: Vec::new() };
    let kernel_sig = sigs.kernel.clone();
    sink.function(id, &name, &sigs.parallel_for, (ctx, fctx), math, false, |fx| {
        let entry = fx.b.current_block().expect("entry block");
        let p = fx.b.block_params(entry).to_vec();
        let (kernel, table, batch, part, items) = (p[1], p[2], p[3], p[4], p[5]);
        let sig = fx.b.import_signature(kernel_sig);
        let zero = fx.iconst(0);
        fx.b.ins().call_indirect(sig, kernel, &[table, batch, part, zero, items]);
        fx.b.ins().return_(&[]);
    })?;
    Ok(id)
}

/// Read-only data holding a tensor's bytes (little-endian), 64-byte aligned.
fn define_data(module: &mut ObjectModule, name: &str, t: &Tensor) -> Result<DataId, BackendError> {
    let id = module.declare_data(name, Linkage::Local, false, false).map_err(codegen_err)?;
    let mut bytes = vec![0u8; t.size_bytes().max(1)];
    crate::runtime::buffers::write_tensor(t, &mut bytes[..t.size_bytes()]);
    let mut desc = DataDescription::new();
    desc.define(bytes.into_boxed_slice());
    desc.set_align(64);
    module.define_data(id, &desc).map_err(codegen_err)?;
    Ok(id)
}

/// The C entry point of one program.
struct Wrapper<'a> {
    program: &'a Program,
    leaves: &'a [StateLeaf],
    consts: &'a [DataId],
    step: FuncId,
    max_batch: usize,
}

impl Wrapper<'_> {
    fn define(
        &self,
        module: &mut ObjectModule,
        name: &str,
        libc: &LibC,
        (ctx, fctx): Contexts,
        math: &BTreeMap<MathFn, FuncId>,
    ) -> Result<(), BackendError> {
        let p = self.program;
        let layout =
            p.plan.layout(self.max_batch).map_err(|m| BackendError::TooLarge { batch: self.max_batch, message: m })?;
        let mut sig = Signature::new(module.isa().default_call_conv());
        let pointers = 2 + p.inputs.len() + p.outputs.len();
        sig.params.extend(std::iter::repeat_n(AbiParam::new(PTR), pointers));
        sig.params.push(AbiParam::new(types::I64));
        sig.returns.push(AbiParam::new(types::I32));
        let id = module.declare_function(name, Linkage::Export, &sig).map_err(codegen_err)?;
        let leaf_offset = |i: usize| {
            let leaf = &p.leaves[i];
            self.leaves.iter().find(|s| s.name == leaf.name).map_or(0, |s| s.offset)
        };
        let mut sink = Sink { module: &mut *module, compile: true, text: None, defined: Vec::new() };
        sink.function(id, name, &sig, (ctx, fctx), math, false, |fx| {
            let entry = fx.b.current_block().expect("entry block");
            let params = fx.b.block_params(entry).to_vec();
            let (state, arena) = (params[0], params[1]);
            let inputs = &params[2..2 + p.inputs.len()];
            let outputs = &params[2 + p.inputs.len()..pointers];
            let batch = params[pointers];
            let too_big = fx.b.ins().icmp_imm_s(IntCC::UnsignedGreaterThan, batch, self.max_batch as i64);
            fx.if_then(too_big, |fx| {
                let err = fx.b.ins().iconst(types::I32, -1);
                fx.b.ins().return_(&[err]);
                let after = fx.b.create_block();
                fx.b.switch_to_block(after);
            });
            let table = fx.b.create_sized_stack_slot(StackSlotData::new(
                StackSlotKind::ExplicitSlot,
                (p.n_slots() * 8) as u32,
                3,
            ));
            let status = fx.b.create_sized_stack_slot(StackSlotData::new(StackSlotKind::ExplicitSlot, 4, 2));
            let table_addr = fx.b.ins().stack_addr(PTR, table, 0);
            let status_addr = fx.b.ins().stack_addr(PTR, status, 0);
            let zero32 = fx.b.ins().iconst(types::I32, 0);
            fx.store(zero32, status_addr, 0);
            for (slot, storage) in p.slots.iter().enumerate() {
                let addr = match *storage {
                    None => fx.iconst(0),
                    Some(Slot::Input(i)) => inputs[i],
                    Some(Slot::Leaf(i)) => fx.b.ins().iadd_imm_s(state, leaf_offset(i) as i64),
                    Some(Slot::Const(i)) => fx.data_addr(self.consts[i]),
                    Some(Slot::Arena(b)) => fx.b.ins().iadd_imm_s(arena, layout.offsets[b.0] as i64),
                };
                fx.store(addr, table_addr, (slot * 8) as i32);
            }
            fx.store(status_addr, table_addr, (p.status_slot * 8) as i32);
            let null = fx.iconst(0);
            fx.store(null, table_addr, (p.pool_slot() * 8) as i32);
            let result = fx.call_returning(self.step, &[table_addr, batch]);
            let failed = fx.b.ins().icmp_imm_s(IntCC::NotEqual, result, 0);
            fx.if_then(failed, |fx| {
                fx.b.ins().return_(&[result]);
                let after = fx.b.create_block();
                fx.b.switch_to_block(after);
            });
            for (o, out) in p.outputs.iter().zip(outputs) {
                let bytes = Size::bytes_of(&o.ty).unwrap_or(Size::ZERO);
                let fixed = fx.iconst(bytes.fixed as i64);
                let per = fx.mul_imm(batch, bytes.per_batch as i64);
                let len = fx.add(fixed, per);
                let src = fx.load(PTR, table_addr, (o.slot * 8) as i32);
                fx.call_returning(libc.memcpy, &[*out, src, len]);
            }
            let ok = fx.b.ins().iconst(types::I32, 0);
            fx.b.ins().return_(&[ok]);
        })
    }
}

/// `<prefix>_init(state)`: the initial value of every leaf (zero where it has none).
fn define_init(
    module: &mut ObjectModule,
    leaves: &[StateLeaf],
    libc: &LibC,
    (ctx, fctx): Contexts,
    math: &BTreeMap<MathFn, FuncId>,
    prefix: &str,
) -> Result<(), BackendError> {
    let data: Vec<Option<DataId>> = leaves
        .iter()
        .enumerate()
        .map(|(i, l)| l.init.as_ref().map(|t| define_data(module, &format!("{prefix}_init{i}"), t)).transpose())
        .collect::<Result<_, _>>()?;
    let mut sig = Signature::new(module.isa().default_call_conv());
    sig.params.push(AbiParam::new(PTR));
    let name = format!("{prefix}_init");
    let id = module.declare_function(&name, Linkage::Export, &sig).map_err(codegen_err)?;
    let mut sink = Sink { module: &mut *module, compile: true, text: None, defined: Vec::new() };
    sink.function(id, &name, &sig, (ctx, fctx), math, false, |fx| {
        let entry = fx.b.current_block().expect("entry block");
        let state = fx.b.block_params(entry)[0];
        for (l, d) in leaves.iter().zip(&data) {
            let dst = fx.b.ins().iadd_imm_s(state, l.offset as i64);
            let len = fx.iconst(l.bytes as i64);
            match d {
                Some(d) => {
                    let src = fx.data_addr(*d);
                    fx.call_returning(libc.memcpy, &[dst, src, len]);
                }
                None => {
                    let zero = fx.b.ins().iconst(types::I32, 0);
                    fx.call_returning(libc.memset, &[dst, zero, len]);
                }
            }
        }
        fx.b.ins().return_(&[]);
    })
}

fn c_type(d: DType) -> &'static str {
    match d {
        DType::F32 => "float",
        DType::I64 => "int64_t",
        DType::I32 => "int32_t",
        DType::Bool => "uint8_t",
    }
}

/// `fc1.weight` → `FC1_WEIGHT`.
fn macro_name(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_uppercase() } else { '_' }).collect()
}

/// `fc1.weight` → `fc1_weight`, never starting with a digit.
fn c_name(name: &str) -> String {
    let s: String = name.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
    if s.starts_with(|c: char| c.is_ascii_digit()) {
        format!("_{s}")
    } else {
        s
    }
}

fn header(
    opts: &ObjectOptions,
    leaves: &[StateLeaf],
    state_bytes: usize,
    arena_bytes: usize,
    entries: &[(String, &Program)],
    kernels: &str,
) -> String {
    let p = macro_name(&opts.prefix);
    let needs = match kernels {
        "avx512-asm" => "an x86-64 CPU with AVX-512F",
        "avx2-asm" => "an x86-64 CPU with AVX2 and FMA",
        _ => "any CPU of the target architecture",
    };
    let mut h = String::new();
    h.push_str(&format!(
        "/* Generated by nnc {}: the entry points of {}.o. Link with -lm.\n\
         *\n\
         * Every entry takes a state block (parameters and optimizer state at the offsets\n\
         * below, {p}_STATE_BYTES bytes, 64-byte aligned), an arena of {p}_ARENA_BYTES bytes\n\
         * (scratch, 64-byte aligned, reusable between calls), its inputs, its outputs and\n\
         * the batch size (0..={p}_MAX_BATCH). It returns 0 on success, -1 if the batch is\n\
         * too large, or the 1-based index of the kernel that failed (a label out of\n\
         * range). Shapes are row-major; N is the batch size.\n\
         *\n\
         * Matrix-product kernels: {kernels}; the code needs {needs}. */\n",
        env!("CARGO_PKG_VERSION"),
        opts.prefix
    ));
    h.push_str(&format!(
        "#ifndef {p}_H\n#define {p}_H\n\n#include <stddef.h>\n#include <stdint.h>\n\n#ifdef __cplusplus\nextern \"C\" {{\n#endif\n\n"
    ));
    h.push_str(&format!("#define {p}_KERNELS \"{kernels}\"\n"));
    h.push_str(&format!("#define {p}_MAX_BATCH {}\n", opts.max_batch));
    h.push_str(&format!("#define {p}_STATE_BYTES {state_bytes}\n"));
    h.push_str(&format!("#define {p}_ARENA_BYTES {arena_bytes}\n\n"));
    h.push_str("/* Parameters and optimizer state in the state block: byte offset and elements. */\n");
    for l in leaves {
        let m = macro_name(&l.name);
        h.push_str(&format!(
            "#define {p}_{m}_OFFSET {}\n#define {p}_{m}_ELEMENTS {} /* {} {} */\n",
            l.offset,
            l.ty.shape.numel(1).unwrap_or(0),
            c_type(l.ty.dtype),
            l.ty.shape
        ));
    }
    h.push('\n');
    for (entry, prog) in entries {
        let mut params = vec!["void *state".to_string(), "void *arena".to_string()];
        let mut doc = Vec::new();
        for i in &prog.inputs {
            params.push(format!("const {} *{}", c_type(i.ty.dtype), c_name(&i.name)));
            doc.push(format!(" *   {}: {} {}", c_name(&i.name), i.ty.dtype, i.ty.shape));
        }
        for (k, o) in prog.outputs.iter().enumerate() {
            params.push(format!("{} *out{k}", c_type(o.ty.dtype)));
            doc.push(format!(" *   out{k}: {} {} (written)", o.ty.dtype, o.ty.shape));
        }
        params.push("int64_t batch".to_string());
        // Element counts of every argument at a batch size, for sizing buffers.
        let entry_macro = macro_name(entry);
        let counts = prog
            .inputs
            .iter()
            .map(|i| (c_name(&i.name), &i.ty))
            .chain(prog.outputs.iter().enumerate().map(|(k, o)| (format!("out{k}"), &o.ty)));
        for (arg, ty) in counts {
            let per = ty.shape.dims().iter().filter_map(|d| d.fixed()).product::<usize>();
            let count = if ty.shape.has_batch() { format!("((size_t)(batch) * {per})") } else { format!("({per})") };
            h.push_str(&format!("#define {entry_macro}_{}_ELEMENTS(batch) {count}\n", macro_name(&arg)));
        }
        h.push_str(&format!("/* {entry}:\n{}\n */\nint32_t {entry}({});\n\n", doc.join("\n"), params.join(", ")));
    }
    if opts.embed_weights {
        h.push_str(&format!(
            "/* Writes the initial parameters (embedded in the object) and zeroed optimizer\n * state into a state block. */\nvoid {}_init(void *state);\n\n",
            opts.prefix
        ));
    }
    h.push_str(&format!("#ifdef __cplusplus\n}}\n#endif\n\n#endif /* {p}_H */\n"));
    h
}
