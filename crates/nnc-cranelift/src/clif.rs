//! A small layer over Cranelift's `FunctionBuilder` for writing kernels: loops, the
//! buffer table, batch-dependent sizes, memory access and calls to math helpers.
//!
//! Every kernel function has the signature
//! `fn(table: *const *mut u8, batch: i64, part: i64, begin: i64, end: i64)`:
//! `table[slot]` is the base address of a buffer (see `plan.rs`), `batch` the run-time
//! batch size, `part` the index of one matrix in a batched matrix product (0
//! otherwise), and `[begin, end)` the range of work items to do. Kernels keep no state
//! and write only the outputs of their own items, so the step splits the items across
//! threads (`runtime/pool.rs`):
//!
//! | kernel | work items | splittable |
//! |---|---|---|
//! | elementwise, copy, cast | outermost dimension of the collapsed loop nest | yes |
//! | matmul `compute` | rows of C (its packed-A rows too) | yes, after `pack` |
//! | matmul `compute`, `_cols` variant | column panels of C | yes, after `pack` |
//! | matmul `_depth` variant | fixed ranges of K, each into its own partial C | yes, after `pack`; then `_depth_sum` over the rows |
//! | matmul `pack` | B's panels when every panel of a static N is packed, else one item | if panels |
//! | reduce | outermost dimension if it is kept; groups of 16 columns of a `[rows, columns]` sum over rows; else one item | unless one item |
//! | softmax | the dimensions before the axis | yes |
//! | one_hot | rows | yes |

use crate::host_math::MathFn;
use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::{types, InstBuilder, MemFlagsData, StackSlotData, StackSlotKind, Type, Value};
use cranelift_frontend::{FunctionBuilder, Variable};
use cranelift_module::{FuncId, Module};
use nnc_ir::Size;
use std::collections::BTreeMap;

/// Memory flags for the generated code's loads and stores: the planner guarantees every
/// address is inside a live buffer, but not any alignment beyond the element size.
pub(crate) fn mem() -> MemFlagsData {
    MemFlagsData::new().with_notrap()
}

/// The function being built, with the kernel's parameters.
pub(crate) struct Fx<'a> {
    pub b: FunctionBuilder<'a>,
    module: &'a mut dyn Module,
    math: &'a BTreeMap<MathFn, FuncId>,
    pub table: Value,
    pub batch: Value,
    pub part: Value,
    pub begin: Value,
    pub end: Value,
    /// The target has fused multiply-add (without it Cranelift calls a slow libcall).
    pub fma: bool,
    /// Checked mode: every load and store is bounds-checked.
    checks: Option<Checks>,
    /// The first internal inconsistency met while emitting (see [`Fx::fail`]).
    failure: Option<String>,
}

/// What checked mode knows in a kernel: the byte ranges it may touch (its buffers, read
/// from the table, and its stack slots) and the status code of a violation.
struct Checks {
    ranges: Vec<(Value, Value)>,
    status_slot: usize,
    code: u32,
}

/// Status bit of an out-of-bounds access caught in checked mode (the low bits are the
/// 1-based kernel index, as for other kernel errors).
pub(crate) const OUT_OF_BOUNDS: u32 = 0x4000_0000;

/// Pointer-sized integer type of the generated code.
pub(crate) const PTR: Type = types::I64;

impl<'a> Fx<'a> {
    /// Wraps a builder whose entry block is current. `params` are the function's
    /// parameters: all five of a kernel, or `(table, batch)` of the step function, whose
    /// `part`, `begin` and `end` are then 0.
    pub fn new(
        mut b: FunctionBuilder<'a>,
        module: &'a mut dyn Module,
        math: &'a BTreeMap<MathFn, FuncId>,
        params: &[Value],
        fma: bool,
    ) -> Fx<'a> {
        let zero = b.ins().iconst(PTR, 0);
        let p = |i: usize| params.get(i).copied().unwrap_or(zero);
        Fx {
            table: p(0),
            batch: p(1),
            part: p(2),
            begin: p(3),
            end: p(4),
            b,
            module,
            math,
            fma,
            checks: None,
            failure: None,
        }
    }

    /// Turns on checked mode for this kernel: loads and stores outside the buffers of
    /// `slots` (base at `table[slot]`, byte length at `table[n_slots + slot]`), the
    /// status word and the kernel's stack slots set `OUT_OF_BOUNDS | code` in the status
    /// word and are skipped (a load yields zero). Call in the entry block.
    pub fn enable_checks(&mut self, slots: &[usize], n_slots: usize, status_slot: usize, code: u32) {
        let mut seen: Vec<usize> = slots.to_vec();
        seen.push(status_slot);
        seen.sort_unstable();
        seen.dedup();
        let table = self.table;
        let ranges = seen
            .into_iter()
            .map(|slot| {
                let flags = mem().with_readonly();
                let base = self.b.ins().load(PTR, flags, table, (slot * 8) as i32);
                let len = self.b.ins().load(PTR, flags, table, ((n_slots + slot) * 8) as i32);
                (base, len)
            })
            .collect();
        self.checks = Some(Checks { ranges, status_slot, code: OUT_OF_BOUNDS | code });
    }

    /// A stack buffer of `bytes` (16-byte aligned) and its address; in checked mode its
    /// range is allowed. Call before any loop, so the address dominates its uses.
    pub fn stack_buffer(&mut self, bytes: u32) -> Value {
        let slot = self.b.create_sized_stack_slot(StackSlotData::new(StackSlotKind::ExplicitSlot, bytes, 4));
        let addr = self.b.ins().stack_addr(PTR, slot, 0);
        if self.checks.is_some() {
            let len = self.iconst(bytes as i64);
            if let Some(c) = &mut self.checks {
                c.ranges.push((addr, len));
            }
        }
        addr
    }

    /// Whether `[addr + offset, addr + offset + size)` lies inside an allowed range.
    fn in_bounds(&mut self, addr: Value, offset: i32, size: u32) -> Option<Value> {
        let ranges = self.checks.as_ref()?.ranges.clone();
        let start = self.b.ins().iadd_imm_s(addr, offset as i64);
        let end = self.b.ins().iadd_imm_s(start, size as i64);
        let mut ok = self.b.ins().iconst(types::I8, 0);
        for (base, len) in ranges {
            let limit = self.b.ins().iadd(base, len);
            let lo = self.b.ins().icmp(IntCC::UnsignedGreaterThanOrEqual, start, base);
            let hi = self.b.ins().icmp(IntCC::UnsignedLessThanOrEqual, end, limit);
            let inside = self.b.ins().band(lo, hi);
            ok = self.b.ins().bor(ok, inside);
        }
        Some(ok)
    }

    /// Records an out-of-bounds access in the status word.
    fn violation(&mut self) {
        let Some(c) = &self.checks else { return };
        let (slot, code) = (c.status_slot, c.code);
        let table = self.table;
        let addr = self.b.ins().load(PTR, mem().with_readonly(), table, (slot * 8) as i32);
        let v = self.b.ins().iconst(types::I32, code as i64);
        self.b.ins().store(mem(), v, addr, 0);
    }

    fn zero_of(&mut self, ty: Type) -> Value {
        if ty.is_vector() {
            let z = self.zero_of(ty.lane_type());
            self.b.ins().splat(ty, z)
        } else if ty == types::F32 {
            self.b.ins().f32const(0.0)
        } else {
            self.b.ins().iconst(ty, 0)
        }
    }

    /// A load with these flags (bounds-checked in checked mode).
    pub fn load_flags(&mut self, ty: Type, flags: MemFlagsData, addr: Value, offset: i32) -> Value {
        let Some(ok) = self.in_bounds(addr, offset, ty.bytes()) else {
            return self.b.ins().load(ty, flags, addr, offset);
        };
        let zero = self.zero_of(ty);
        let out = self.var(ty, zero);
        self.if_else(
            ok,
            |fx| {
                let x = fx.b.ins().load(ty, mem(), addr, offset);
                fx.set(out, x);
            },
            |fx| fx.violation(),
        );
        self.get(out)
    }

    /// Records that the code being emitted cannot be right (a bug of the backend: a
    /// plan that asked for what a micro-kernel does not run); [`Fx::finish`] reports
    /// the first such message.
    pub fn fail(&mut self, message: impl Into<String>) {
        self.failure.get_or_insert_with(|| message.into());
    }

    /// Seals every block and finishes the function; errors if [`Fx::fail`] was called.
    pub fn finish(self, frontend: cranelift_codegen::isa::TargetFrontendConfig) -> Result<(), String> {
        let mut b = self.b;
        b.seal_all_blocks();
        b.finalize(frontend);
        self.failure.map_or(Ok(()), |m| Err(format!("internal: {m}")))
    }

    pub fn iconst(&mut self, v: i64) -> Value {
        self.b.ins().iconst(PTR, v)
    }

    /// A batch-dependent size as a run-time value.
    pub fn sz(&mut self, s: Size) -> Value {
        if !s.has_batch() {
            return self.iconst(s.fixed as i64);
        }
        let k = self.iconst(s.per_batch as i64);
        let scaled = self.b.ins().imul(k, self.batch);
        if s.fixed == 0 {
            return scaled;
        }
        self.b.ins().iadd_imm_s(scaled, s.fixed as i64)
    }

    /// `x·s` for a run-time `x`, folding the common constant cases.
    pub fn mul_sz(&mut self, x: Value, s: Size) -> Value {
        match s.as_fixed() {
            Some(0) => self.iconst(0),
            Some(1) => x,
            _ => {
                let v = self.sz(s);
                self.b.ins().imul(x, v)
            }
        }
    }

    /// The base address of a buffer slot.
    pub fn slot(&mut self, slot: usize) -> Value {
        let table = self.table;
        self.b.ins().load(PTR, mem().with_readonly(), table, (slot * 8) as i32)
    }

    pub fn add(&mut self, a: Value, b: Value) -> Value {
        self.b.ins().iadd(a, b)
    }

    pub fn mul(&mut self, a: Value, b: Value) -> Value {
        self.b.ins().imul(a, b)
    }

    pub fn mul_imm(&mut self, a: Value, k: i64) -> Value {
        if k == 1 {
            a
        } else {
            self.b.ins().imul_imm_s(a, k)
        }
    }

    pub fn min(&mut self, a: Value, b: Value) -> Value {
        self.b.ins().smin(a, b)
    }

    pub fn lt(&mut self, a: Value, b: Value) -> Value {
        self.b.ins().icmp(IntCC::SignedLessThan, a, b)
    }

    pub fn load(&mut self, ty: Type, addr: Value, offset: i32) -> Value {
        self.load_flags(ty, mem(), addr, offset)
    }

    pub fn store(&mut self, v: Value, addr: Value, offset: i32) {
        let ty = self.b.func.dfg.value_type(v);
        match self.in_bounds(addr, offset, ty.bytes()) {
            None => {
                self.b.ins().store(mem(), v, addr, offset);
            }
            Some(ok) => self.if_else(
                ok,
                |fx| {
                    fx.b.ins().store(mem(), v, addr, offset);
                },
                |fx| fx.violation(),
            ),
        }
    }

    pub fn var(&mut self, ty: Type, init: Value) -> Variable {
        let v = self.b.declare_var(ty);
        self.b.def_var(v, init);
        v
    }

    pub fn get(&mut self, v: Variable) -> Value {
        self.b.use_var(v)
    }

    pub fn set(&mut self, v: Variable, x: Value) {
        self.b.def_var(v, x);
    }

    /// `for i in (start..end).step_by(step) { body(i) }` for a positive `step`; the
    /// test is at the top, so an empty range runs nothing.
    pub fn for_range(&mut self, start: Value, end: Value, step: i64, body: impl FnOnce(&mut Self, Value)) {
        self.loop_while_below(start, end, body, |fx, i| fx.b.ins().iadd_imm_s(i, step));
    }

    /// `for_range` with a step computed at run time (positive).
    pub fn for_range_by(&mut self, start: Value, end: Value, step: Value, body: impl FnOnce(&mut Self, Value)) {
        self.loop_while_below(start, end, body, |fx, i| fx.b.ins().iadd(i, step));
    }

    /// `i = start; while i < end { body(i); i = next(i) }`, `i` a block parameter.
    fn loop_while_below(
        &mut self,
        start: Value,
        end: Value,
        body: impl FnOnce(&mut Self, Value),
        next: impl FnOnce(&mut Self, Value) -> Value,
    ) {
        let header = self.b.create_block();
        let looped = self.b.create_block();
        let exit = self.b.create_block();
        self.b.append_block_param(header, PTR);
        self.b.ins().jump(header, &[start.into()]);
        self.b.switch_to_block(header);
        let i = self.b.block_params(header)[0];
        let go = self.lt(i, end);
        self.b.ins().brif(go, looped, &[], exit, &[]);
        self.b.switch_to_block(looped);
        body(self, i);
        let next = next(self, i);
        self.b.ins().jump(header, &[next.into()]);
        self.b.switch_to_block(exit);
    }

    /// `for i in (start..end).step_by(step)` while `i + step <= end`: whole steps only.
    /// Returns the first index not covered, where a remainder loop can continue.
    pub fn for_whole_steps(
        &mut self,
        start: Value,
        end: Value,
        step: i64,
        body: impl FnOnce(&mut Self, Value),
    ) -> Value {
        let i_var = self.var(PTR, start);
        let header = self.b.create_block();
        let looped = self.b.create_block();
        let exit = self.b.create_block();
        self.b.ins().jump(header, &[]);
        self.b.switch_to_block(header);
        let i = self.get(i_var);
        let last = self.b.ins().iadd_imm_s(i, step);
        let go = self.b.ins().icmp(IntCC::SignedLessThanOrEqual, last, end);
        self.b.ins().brif(go, looped, &[], exit, &[]);
        self.b.switch_to_block(looped);
        body(self, i);
        let i = self.get(i_var);
        let next = self.b.ins().iadd_imm_s(i, step);
        self.set(i_var, next);
        self.b.ins().jump(header, &[]);
        self.b.switch_to_block(exit);
        self.get(i_var)
    }

    /// `if cond != 0 { then() }`.
    pub fn if_then(&mut self, cond: Value, then: impl FnOnce(&mut Self)) {
        let yes = self.b.create_block();
        let done = self.b.create_block();
        self.b.ins().brif(cond, yes, &[], done, &[]);
        self.b.switch_to_block(yes);
        then(self);
        self.b.ins().jump(done, &[]);
        self.b.switch_to_block(done);
    }

    /// `if cond != 0 { then() } else { otherwise() }`.
    pub fn if_else(&mut self, cond: Value, then: impl FnOnce(&mut Self), otherwise: impl FnOnce(&mut Self)) {
        let yes = self.b.create_block();
        let no = self.b.create_block();
        let done = self.b.create_block();
        self.b.ins().brif(cond, yes, &[], no, &[]);
        self.b.switch_to_block(yes);
        then(self);
        self.b.ins().jump(done, &[]);
        self.b.switch_to_block(no);
        otherwise(self);
        self.b.ins().jump(done, &[]);
        self.b.switch_to_block(done);
    }

    /// Calls another function of the module.
    /// The module the function is being generated for (to define what it calls).
    pub fn module(&mut self) -> &mut dyn Module {
        &mut *self.module
    }

    pub fn call(&mut self, id: FuncId, args: &[Value]) {
        let func_ref = self.module.declare_func_in_func(id, &mut *self.b.func);
        self.b.ins().call(func_ref, args);
    }

    /// Calls a function of the module and returns its first result (or a zero if it
    /// has none).
    pub fn call_returning(&mut self, id: FuncId, args: &[Value]) -> Value {
        let func_ref = self.module.declare_func_in_func(id, &mut *self.b.func);
        let call = self.b.ins().call(func_ref, args);
        match self.b.inst_results(call).first() {
            Some(&v) => v,
            None => self.iconst(0),
        }
    }

    /// The address of a data object of the module.
    pub fn data_addr(&mut self, id: cranelift_module::DataId) -> Value {
        let gv = self.module.declare_data_in_func(id, &mut *self.b.func);
        self.b.ins().symbol_value(PTR, gv)
    }

    /// The address of another function of the module.
    pub fn func_addr(&mut self, id: FuncId) -> Value {
        let func_ref = self.module.declare_func_in_func(id, &mut *self.b.func);
        self.b.ins().func_addr(PTR, func_ref)
    }

    /// Calls a math helper on f32 arguments.
    pub fn call_math(&mut self, f: MathFn, args: &[Value]) -> Value {
        let id = self.math[&f];
        let func_ref = self.module.declare_func_in_func(id, &mut *self.b.func);
        let call = self.b.ins().call(func_ref, args);
        self.b.inst_results(call)[0]
    }

    /// Records a run-time error (`code` names the kernel) in the status word; the step
    /// function checks it after the kernel and returns it.
    pub fn set_status(&mut self, status_slot: usize, code: u32) {
        let addr = self.slot(status_slot);
        let c = self.b.ins().iconst(types::I32, code as i64);
        self.store(c, addr, 0);
    }
}
