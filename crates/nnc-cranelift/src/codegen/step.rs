//! The step function: every kernel's phases in order over their work items, split
//! across the thread pool (`nnc_parallel_for`), with the alternatives a product's plan
//! gives taken at run time from M, and the status word checked after kernels that can
//! fail.

use super::phases::{Split, MIN_CHUNK_WORK};
use super::Imports;
use crate::clif::Fx;
use crate::program::{Program, Variant};
use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::{types, InstBuilder, Value};
use cranelift_module::FuncId;
use nnc_ir::Size;

/// A kernel in the step: its index, how many parts (matrices of a batched product),
/// and its phases' calls.
pub(super) struct Scheduled {
    pub index: usize,
    pub parts: Size,
    pub calls: Vec<Call>,
}

/// A phase's function in the step: its work items and how they split, and the
/// alternatives the step may take instead.
pub(super) struct Call {
    pub id: FuncId,
    pub items: Size,
    pub split: Split,
    pub alternatives: Vec<Taken>,
}

/// An alternative's functions (see `phases::Alternative`).
#[derive(Clone, Copy)]
pub(super) struct Taken {
    pub parts: FuncId,
    pub finish: Option<FuncId>,
    pub variant: Variant,
    pub threaded_only: bool,
    pub whole_kernel: bool,
}

/// What the step function's kernels share.
pub(super) struct Step<'a> {
    pub program: &'a Program,
    pub imports: &'a Imports,
    pub checked: bool,
}

impl Step<'_> {
    /// Kernel `kernel`'s calls, for each of its parts, then its status check.
    pub fn kernel(&self, fx: &mut Fx, kernel: &Scheduled) {
        if kernel.parts.is_fixed(1) {
            let zero = fx.iconst(0);
            self.parts(fx, kernel, zero);
        } else {
            let zero = fx.iconst(0);
            let n = fx.sz(kernel.parts);
            fx.for_range(zero, n, 1, |fx, p| self.parts(fx, kernel, p));
        }
        if self.checked || self.program.kernels[kernel.index].body.can_fail() {
            let addr = fx.slot(self.program.status_slot);
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

    /// One part of a kernel: its phases in order, or an alternative of the whole kernel.
    fn parts(&self, fx: &mut Fx, kernel: &Scheduled, part: Value) {
        let whole: Vec<Taken> =
            kernel.calls.iter().flat_map(|c| c.alternatives.iter().copied()).filter(|t| t.whole_kernel).collect();
        self.either(fx, part, &whole, &|fx| {
            for call in &kernel.calls {
                let own: Vec<Taken> = call.alternatives.iter().copied().filter(|t| !t.whole_kernel).collect();
                self.either(fx, part, &own, &|fx| self.by_rows(fx, part, call));
            }
        });
    }

    /// The last of `alternatives` when the step takes it, else the ones before it, and
    /// so on down to `otherwise`.
    fn either(&self, fx: &mut Fx, part: Value, alternatives: &[Taken], otherwise: &dyn Fn(&mut Fx)) {
        let Some((last, before)) = alternatives.split_last() else { return otherwise(fx) };
        let pool = last.threaded_only.then(|| {
            let pool = fx.slot(self.program.pool_slot());
            fx.b.ins().icmp_imm_u(IntCC::NotEqual, pool, 0)
        });
        let (rows, few) = few_rows(fx, &last.variant);
        let take = match pool {
            Some(threaded) => fx.b.ins().band(threaded, few),
            None => few,
        };
        let taken = |fx: &mut Fx| {
            self.parallel(fx, part, last.parts, last.variant.items, Split { align: 1, work: last.variant.work });
            if let Some(finish) = last.finish {
                let (table, batch) = (fx.table, fx.batch);
                let zero = fx.iconst(0);
                fx.call(finish, &[table, batch, part, zero, rows]);
            }
        };
        fx.if_else(take, taken, |fx| self.either(fx, part, before, otherwise));
    }

    /// A phase over its own items: one call, or split across the pool's threads.
    fn by_rows(&self, fx: &mut Fx, part: Value, call: &Call) {
        if call.items.is_fixed(1) {
            let (table, batch) = (fx.table, fx.batch);
            let zero = fx.iconst(0);
            let one = fx.iconst(1);
            fx.call(call.id, &[table, batch, part, zero, one]);
        } else {
            self.parallel(fx, part, call.id, call.items, call.split);
        }
    }

    /// `kernel` over `items`, split across the pool's threads.
    fn parallel(&self, fx: &mut Fx, part: Value, kernel: FuncId, items: Size, split: Split) {
        let (table, batch) = (fx.table, fx.batch);
        let n = fx.sz(items);
        let pool = fx.slot(self.program.pool_slot());
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
        fx.call(self.imports.parallel_for, &[pool, kernel, table, batch, part, n, align, min_chunk]);
    }
}

/// M (at this batch), and whether it is few enough rows for `variant`.
fn few_rows(fx: &mut Fx, variant: &Variant) -> (Value, Value) {
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
}
