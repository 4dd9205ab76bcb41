//! The functions a kernel is generated as (its phases), how the step splits each one's
//! work items across threads, and the alternatives a matrix product's plan gives the
//! step at run time.

use crate::clif::Fx;
use crate::error::{codegen_err, BackendError};
use crate::kernels::matmul::dots;
use crate::kernels::{conv, copy, cross_entropy, elementwise, matmul, onehot, reduce, softmax, update, window};
use crate::microkernel::KernelFamily;
use crate::program::{Body, Program, Variant, WindowKernel};
use nnc_ir::Size;

/// Emits a kernel function's body.
pub(super) type Emit<'p> = Box<dyn Fn(&mut Fx) + 'p>;

/// One generated function of a kernel: name, work items per call, how to emit its
/// body, how its items split across threads, and what the step may run instead.
pub(super) struct Phase<'p> {
    pub name: String,
    pub items: Size,
    pub emit: Emit<'p>,
    pub split: Split,
    /// In order: each one, when the step takes it, replaces everything before it (the
    /// phase split by rows, or the alternatives listed earlier).
    pub alternatives: Vec<Alternative<'p>>,
}

/// Work the step does instead of a phase's (or the whole kernel's) when M is at most
/// `variant.max_rows`: `parts` over the variant's items, then `finish` over C's rows on
/// one thread.
pub(super) struct Alternative<'p> {
    /// Appended to the phase's name for its functions.
    pub suffix: &'static str,
    pub variant: Variant,
    /// Taken only when the step runs on a thread pool (a split across threads that
    /// does not change the bits; the others do, so the step takes them from M alone).
    pub threaded_only: bool,
    /// Instead of every phase of the kernel, not only this one.
    pub whole_kernel: bool,
    pub parts: Emit<'p>,
    pub finish: Option<(&'static str, Emit<'p>)>,
}

/// How a phase's items may be split across threads: chunk boundaries at multiples of
/// `align` items, and no chunk under `MIN_CHUNK_WORK` of work, `work` per item (a
/// size: the step computes the minimum chunk at the batch it runs, so a batch-1 step
/// does not hand microseconds of work to another thread).
#[derive(Clone, Copy)]
pub(super) struct Split {
    pub align: i64,
    pub work: Size,
}

/// Work below which a chunk is not worth handing to another thread, in rough
/// floating-point operations (about a microsecond of one core).
pub(super) const MIN_CHUNK_WORK: u64 = 50_000;

/// What copying one float costs, in the units of `MIN_CHUNK_WORK`: a pack streams
/// from L3 or memory (about 0.4 ns a float).
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
        Body::MatMul(m) => (m.plan.tile.mr as i64, work(2, &[m.k, m.n])),
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
        // A plane: every output position's taps (of every channel of its group).
        Body::Window(w) => {
            let taps: u64 = w.kernel.iter().product::<u64>() * w.cg.max(1);
            (1, Size::fixed(2 * taps * w.output.iter().product::<u64>()))
        }
        Body::ConvGemm(c) => (1, conv::item_work(c)),
        Body::Copy(b) => (1, Size::fixed(COPY_WORK * copy::row_elements(b))),
    };
    Split { align, work }
}

/// The phase copying a window op's input planes into zeroed padded (phase) planes
/// (`kernels/conv.rs`'s `emit_pad_planes`): a plane per item, about a copy per padded
/// element.
fn pad_phase<'p>(name: &str, w: &'p WindowKernel, (input, padded): (usize, usize), phases: [u64; 3]) -> Phase<'p> {
    let plane: u64 =
        (0..3).map(|a| (w.input[a] + w.pads_begin[a] + w.pads_end[a]).div_ceil(phases[a]) * phases[a]).product();
    Phase {
        name: format!("{name}_pad"),
        items: conv::pad_items(w),
        emit: Box::new(move |fx| conv::emit_pad_planes(fx, w, (input, padded), phases)),
        split: Split { align: 1, work: Size::fixed(COPY_WORK * plane) },
        alternatives: Vec::new(),
    }
}

/// Kernel `index`'s parts (matrices of a batched product) and phases.
pub(super) fn phases<'p>(
    program: &'p Program,
    index: usize,
    family: &'p dyn KernelFamily,
) -> Result<(Size, Vec<Phase<'p>>), BackendError> {
    let k = &program.kernels[index];
    let status = (program.status_slot, index as u32 + 1);
    let fails = k.body.can_fail().then_some(status);
    let name = k.name.clone();
    let split = split_of(&k.body);
    let one = |items: Size, emit: Emit<'p>| Phase { name: name.clone(), items, emit, split, alternatives: Vec::new() };
    Ok(match &k.body {
        Body::Elementwise(e) => {
            (Size::ONE, vec![one(elementwise::items(e), Box::new(move |fx| elementwise::emit(fx, e, fails)))])
        }
        Body::Reduce(r) => (Size::ONE, vec![one(reduce::items(r), Box::new(move |fx| reduce::emit(fx, r, fails)))]),
        Body::Softmax(s) => (Size::ONE, vec![one(softmax::items(s), Box::new(move |fx| softmax::emit(fx, s)))]),
        Body::OneHot(h) => (Size::ONE, vec![one(onehot::items(h), Box::new(move |fx| onehot::emit(fx, h, status)))]),
        Body::Update(u) => (Size::ONE, vec![one(update::items(u), Box::new(move |fx| update::emit(fx, u)))]),
        Body::Window(w) => {
            let mut list = Vec::new();
            if let Some(padded) = w.padded {
                list.push(pad_phase(&name, w, (w.args[0], padded), [1; 3]));
            }
            list.push(one(window::items(w), Box::new(move |fx| window::emit(fx, w))));
            (Size::ONE, list)
        }
        Body::Copy(b) => (Size::ONE, vec![one(copy::items(b), Box::new(move |fx| copy::emit(fx, b)))]),
        Body::ConvGemm(c) => {
            let mut list = Vec::new();
            if c.flip.is_some() {
                let mut flip = one(Size::ONE, Box::new(move |fx| conv::emit_flip(fx, c)));
                flip.name = format!("{name}_flip");
                list.push(flip);
            }
            if let Some(padded) = c.padded {
                list.push(pad_phase(&name, &c.geometry, (c.input, padded), c.phases));
            }
            list.push(one(conv::items(c), Box::new(move |fx| conv::emit(fx, c, family))));
            (Size::ONE, list)
        }
        Body::CrossEntropy(ce) => {
            let mut list =
                vec![one(cross_entropy::row_items(ce), Box::new(move |fx| cross_entropy::emit_rows(fx, ce, status)))];
            if ce.loss.is_some() {
                let mut loss = one(Size::ONE, Box::new(move |fx| cross_entropy::emit_loss(fx, ce)));
                loss.name = format!("{name}_loss");
                list.push(loss);
            }
            (Size::ONE, list)
        }
        Body::MatMul(m) => {
            let parts = matmul::parts(m).ok_or_else(|| codegen_err("batched matrix product with an N² count"))?;
            // Panels: K rows of `nr` floats copied, each worth about `COPY_WORK`
            // floating-point operations.
            let pack_split = Split { align: 1, work: work(m.plan.tile.nr() as u64 * COPY_WORK, &[m.k]) };
            let pack = Phase {
                name: format!("{name}_pack"),
                items: matmul::pack_items(m),
                emit: Box::new(move |fx| matmul::emit_pack(fx, m, family)),
                split: pack_split,
                alternatives: Vec::new(),
            };
            let mut compute = one(m.m, Box::new(move |fx| matmul::emit_compute(fx, m, family)));
            let plan = &m.plan;
            if let Some(variant) = plan.columns {
                compute.alternatives.push(Alternative {
                    suffix: "_cols",
                    variant,
                    threaded_only: true,
                    whole_kernel: false,
                    parts: Box::new(move |fx| matmul::emit_compute_columns(fx, m, family)),
                    finish: None,
                });
            }
            if let Some(depth) = plan.depth {
                compute.alternatives.push(Alternative {
                    suffix: "_depth",
                    variant: depth.variant,
                    threaded_only: false,
                    whole_kernel: false,
                    parts: Box::new(move |fx| matmul::emit_compute_depth(fx, m, family)),
                    finish: Some(("_depth_sum", Box::new(move |fx| matmul::emit_depth_sum(fx, m)))),
                });
            }
            if let Some(variant) = plan.dots {
                let finish: Option<(&'static str, Emit<'p>)> = (!plan.epilogue.is_empty())
                    .then(|| ("_dots_finish", Box::new(move |fx: &mut Fx| dots::emit_finish(fx, m)) as Emit<'p>));
                compute.alternatives.push(Alternative {
                    suffix: "_dots",
                    variant,
                    threaded_only: false,
                    whole_kernel: true,
                    parts: Box::new(move |fx| dots::emit(fx, m, family)),
                    finish,
                });
            }
            (parts, vec![pack, compute])
        }
    })
}
