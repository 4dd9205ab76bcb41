//! [`Compiled`]: the JIT'd step with the buffers it runs on.
//!
//! A run checks the feeds (`feeds.rs`), lays out the arena for the batch size (only
//! when it changes; the arena never shrinks), fills the buffer table, calls the step,
//! and copies the outputs out. Parameters and state live in buffers owned here and are
//! updated in place by the step itself.

pub(crate) mod buffers;
pub(crate) mod disasm;
pub(crate) mod feeds;
pub(crate) mod jit;
pub(crate) mod pool;

use crate::error::BackendError;
use crate::program::Program;
use crate::program::Slot;
use crate::target::VectorWidth;
use buffers::{contiguous_ptr, read_tensor, write_tensor, AlignedBuf};
use feeds::bind;
use jit::JitCode;
use ndarray::{ArrayViewD, Dimension, IxDyn};
use nnc_ir::{DType, Tensor, TensorView};
use nnc_opt::plan::ArenaLayout;
use pool::Pool;
use std::collections::HashMap;
use std::sync::Arc;

/// A graph compiled to native code, with its parameter and state buffers.
///
/// Not `Send`: the buffer table holds raw addresses.
pub struct Compiled {
    program: Program,
    code: JitCode,
    /// Parameter and state buffers, in `Program::leaves` order, and whether each holds
    /// a value (from its initial value, `set_param`, or a feed).
    leaves: Vec<AlignedBuf>,
    leaf_set: Vec<bool>,
    consts: Vec<AlignedBuf>,
    arena: AlignedBuf,
    layout: Option<ArenaLayout>,
    /// Copies of inputs that were not contiguous row-major tensors.
    staging: Vec<AlignedBuf>,
    table: Vec<*mut u8>,
    status: Box<u32>,
    /// The threads kernels are split over (`None`: one thread).
    pool: Option<Arc<Pool>>,
    /// The matrix-product kernel family (see `KernelFamily::family`).
    kernels: &'static str,
    /// The vector width of its FMAs.
    vector_width: VectorWidth,
    /// Checked mode (see `CompileOptions::checked`).
    checked: bool,
    /// Buffer lengths a test made smaller than they are, to provoke a checked-mode error.
    shrunk: Vec<(usize, usize)>,
}

impl std::fmt::Debug for Compiled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compiled")
            .field("kernels", &self.program.kernels.len())
            .field("params", &self.program.leaves.iter().map(|l| &l.name).collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Compiled {
    pub(crate) fn new(
        program: Program,
        code: JitCode,
        threads: usize,
        (kernels, vector_width): (&'static str, VectorWidth),
        checked: bool,
    ) -> Result<Compiled, BackendError> {
        let too_large = |message: String| BackendError::TooLarge { batch: 1, message };
        let mut leaves = Vec::with_capacity(program.leaves.len());
        for l in &program.leaves {
            let mut buf =
                AlignedBuf::zeroed(l.ty.shape.numel(1).unwrap_or(0) * l.ty.dtype.size_bytes()).map_err(too_large)?;
            if let Some(init) = &l.init {
                write_tensor(init, buf.bytes_mut());
            }
            leaves.push(buf);
        }
        let leaf_set = program.leaves.iter().map(|l| l.init.is_some()).collect();
        let mut consts = Vec::with_capacity(program.consts.len());
        for (_, t) in &program.consts {
            let mut buf = AlignedBuf::zeroed(t.size_bytes()).map_err(too_large)?;
            write_tensor(t, buf.bytes_mut());
            consts.push(buf);
        }
        let staging = program.inputs.iter().map(|_| AlignedBuf::default()).collect();
        // Checked mode reads each buffer's byte length at `table[n_slots + slot]`.
        let table = vec![std::ptr::null_mut(); program.n_slots() * if checked { 2 } else { 1 }];
        Ok(Compiled {
            program,
            code,
            leaves,
            leaf_set,
            consts,
            arena: AlignedBuf::default(),
            layout: None,
            staging,
            table,
            status: Box::new(0),
            pool: (threads > 1).then(|| Pool::shared(threads)),
            kernels,
            vector_width,
            checked,
            shrunk: Vec::new(),
        })
    }

    /// Runs one step: computes the outputs (in `graph.outputs()` order) and applies the
    /// graph's updates to the parameters and state held here.
    ///
    /// Every input must be fed. Feeding a parameter or state sets it (as `set_param`
    /// does) before the step, and the value persists.
    pub fn run(&mut self, feeds: &HashMap<String, Tensor>) -> Result<Vec<Tensor>, BackendError> {
        self.run_borrowed(&feeds.iter().map(|(k, v)| (k.as_str(), v)).collect())
    }

    /// [`Compiled::run`] on borrowed tensors, so a caller that keeps its batch
    /// elsewhere (the trainer) does not copy it into an owned map every step.
    pub fn run_borrowed(&mut self, feeds: &HashMap<&str, &Tensor>) -> Result<Vec<Tensor>, BackendError> {
        Ok(self.run_views(feeds)?.iter().map(TensorView::to_tensor).collect())
    }

    /// [`Compiled::run_borrowed`] without copying the outputs: each is a view of the
    /// buffer the step wrote it to (or of the input or parameter it is), valid until
    /// the next call that takes `&mut self`. For callers that only read the outputs
    /// (a benchmark, a loss, an argmax), or copy them into memory of their own.
    pub fn run_views<'a>(&'a mut self, feeds: &HashMap<&str, &'a Tensor>) -> Result<Vec<TensorView<'a>>, BackendError> {
        let batch = self.execute(feeds)?;
        let mut outputs = Vec::with_capacity(self.program.outputs.len());
        for o in &self.program.outputs {
            let shape = IxDyn(&o.ty.shape.resolve(batch));
            let ptr = self.table[o.slot].cast_const();
            // SAFETY: the output's slot points at a live buffer of the output's type
            // for this batch, the step's own (borrowed with `self`) or a fed tensor
            // (borrowed for `'a` too); nothing writes either while the views live.
            let view = unsafe {
                match o.ty.dtype {
                    DType::F32 => TensorView::F32(view_of(ptr, shape)?),
                    DType::I64 => TensorView::I64(view_of(ptr, shape)?),
                    DType::I32 => TensorView::I32(view_of(ptr, shape)?),
                    DType::Bool => {
                        // The generated code only ever writes 0 or 1 to a bool; checked,
                        // since any other byte would not be a valid `bool`.
                        let bytes: ArrayViewD<'a, u8> = view_of(ptr, shape.clone())?;
                        if bytes.iter().any(|&b| b > 1) {
                            return Err(BackendError::Codegen(
                                "internal: a bool output holds a byte other than 0 or 1".into(),
                            ));
                        }
                        TensorView::Bool(view_of(ptr, shape)?)
                    }
                }
            };
            outputs.push(view);
        }
        Ok(outputs)
    }

    /// Binds the feeds and runs the step; returns the batch size.
    fn execute(&mut self, feeds: &HashMap<&str, &Tensor>) -> Result<usize, BackendError> {
        let bound = bind(&self.program, feeds, &self.leaf_set)?;
        let batch = bound.batch;
        for &(i, t) in &bound.leaves {
            write_tensor(t, self.leaves[i].bytes_mut());
            self.leaf_set[i] = true;
        }
        if self.layout.as_ref().is_none_or(|l| l.batch != batch) {
            let too_large = |message| BackendError::TooLarge { batch, message };
            let layout = self.program.plan.layout(batch).map_err(too_large)?;
            self.arena.ensure(layout.total).map_err(too_large)?;
            self.layout = Some(layout);
        }
        let Some(layout) = self.layout.as_ref() else {
            return Err(BackendError::Codegen("internal: no arena layout".into()));
        };

        // Inputs: the caller's memory when it is contiguous, else a row-major copy.
        let mut input_ptrs = Vec::with_capacity(bound.inputs.len());
        for (i, t) in bound.inputs.iter().enumerate() {
            let ptr = match contiguous_ptr(t) {
                Some(p) => p.cast_mut(),
                None => {
                    let buf = &mut self.staging[i];
                    buf.ensure(t.size_bytes()).map_err(|message| BackendError::TooLarge { batch, message })?;
                    write_tensor(t, &mut buf.bytes_mut()[..t.size_bytes()]);
                    buf.as_mut_ptr()
                }
            };
            input_ptrs.push(ptr);
        }

        let arena = self.arena.as_mut_ptr();
        let plan = &self.program.plan;
        for (slot, storage) in self.program.slots.iter().enumerate() {
            self.table[slot] = match *storage {
                None => std::ptr::null_mut(),
                Some(Slot::Input(i)) => input_ptrs[i],
                Some(Slot::Leaf(i)) => self.leaves[i].as_mut_ptr(),
                Some(Slot::Const(i)) => self.consts[i].as_mut_ptr(),
                // SAFETY: `layout` places every arena buffer inside `layout.total`
                // bytes, and `ensure` made the arena at least that long.
                Some(Slot::Arena(b)) => unsafe { arena.add(layout.offsets[b.0]) },
            };
        }
        if self.checked {
            let n = self.program.n_slots();
            for (slot, storage) in self.program.slots.iter().enumerate() {
                let len = match *storage {
                    None => 0,
                    Some(Slot::Input(i)) => bound.inputs[i].size_bytes(),
                    Some(Slot::Leaf(i)) => self.leaves[i].bytes().len(),
                    Some(Slot::Const(i)) => self.consts[i].bytes().len(),
                    Some(Slot::Arena(b)) => plan.buffers[b.0].size.at(batch).map_or(0, |b| b as usize),
                };
                let len = self.shrunk.iter().find(|s| s.0 == slot).map_or(len, |s| s.1.min(len));
                self.table[n + slot] = len as *mut u8;
            }
            self.table[n + self.program.status_slot] = 4 as *mut u8;
        }
        *self.status = 0;
        let status_ptr: *mut u32 = &mut *self.status;
        self.table[self.program.status_slot] = status_ptr.cast();
        self.table[self.program.pool_slot()] =
            self.pool.as_ref().map_or(std::ptr::null_mut(), |p| Arc::as_ptr(p).cast_mut().cast());

        // SAFETY: the table holds, for every slot the code touches, the address of a
        // live buffer of the size the code assumes for this batch: inputs were checked
        // against their declared types (`bind`), parameters and constants have their
        // static sizes, arena storages are placed for `batch`, and the status slot
        // points at a u32, the pool slot at a live `Pool` (we hold an `Arc`) or null.
        // Kernels split across threads write disjoint items (see `runtime/pool.rs`). Inputs are
        // only read (no kernel writes an input storage). Nothing else runs on these
        // buffers during the call (`&mut self`). In checked mode the second half of the
        // table holds each buffer's true length (or less, never more).
        let status = unsafe { (self.code.step)(self.table.as_ptr(), batch as i64) };
        if status != 0 {
            return Err(self.runtime_error(status));
        }
        Ok(batch)
    }

    fn runtime_error(&self, status: i32) -> BackendError {
        let out_of_bounds = status as u32 & crate::clif::OUT_OF_BOUNDS != 0;
        let index = (status as u32 & !crate::clif::OUT_OF_BOUNDS) as i32;
        let kernel = usize::try_from(index - 1).ok().and_then(|i| self.program.kernels.get(i));
        if let (true, Some(k)) = (out_of_bounds, kernel) {
            let value = self.program.names[k.value.index()].0.clone();
            return BackendError::OutOfBounds { kernel: k.name.clone(), value };
        }
        match kernel {
            Some(k) => {
                let (name, op) = &self.program.names[k.value.index()];
                let message = match *op {
                    "one_hot" => "a class index is out of range".to_string(),
                    "div" => "integer division by zero".to_string(),
                    _ => "integer mean over an empty axis".to_string(),
                };
                BackendError::Runtime { value: name.clone(), op, message }
            }
            None => BackendError::Codegen(format!("internal: unknown status {status}")),
        }
    }

    fn leaf(&self, name: &str) -> Result<usize, BackendError> {
        self.program
            .leaves
            .iter()
            .position(|l| l.name == name)
            .ok_or_else(|| BackendError::UnknownParam { name: name.to_string() })
    }

    /// The current value of a parameter or state.
    pub fn param(&self, name: &str) -> Result<Tensor, BackendError> {
        let i = self.leaf(name)?;
        if !self.leaf_set[i] {
            return Err(BackendError::ParamUnset { names: vec![name.to_string()] });
        }
        let ty = &self.program.leaves[i].ty;
        let shape = ty.shape.resolve(1);
        read_tensor(ty.dtype, &shape, self.leaves[i].bytes())
            .ok_or_else(|| BackendError::Codegen("internal: parameter size mismatch".into()))
    }

    /// Replaces the value of a parameter or state.
    pub fn set_param(&mut self, name: &str, value: &Tensor) -> Result<(), BackendError> {
        let i = self.leaf(name)?;
        let l = &self.program.leaves[i];
        if !feeds::has_type(value, &l.ty, 1) {
            return Err(feeds::mismatch(l.kind, &l.name, &l.ty, None, value));
        }
        write_tensor(value, self.leaves[i].bytes_mut());
        self.leaf_set[i] = true;
        Ok(())
    }

    /// Names of the parameters and state, in definition order.
    pub fn param_names(&self) -> Vec<String> {
        self.program.leaves.iter().map(|l| l.name.clone()).collect()
    }

    /// Arena bytes the memory plan needs at this batch size (intermediates and kernel
    /// scratch; inputs, parameters and constants are not in the arena).
    pub fn arena_bytes(&self, batch: usize) -> Result<usize, BackendError> {
        self.program.plan.layout(batch).map(|l| l.total).map_err(|message| BackendError::TooLarge { batch, message })
    }

    /// Appends the JIT'd functions to `/tmp/perf-<pid>.map`, the file `perf report`
    /// reads to name JIT code, and returns its path.
    pub fn write_perf_map(&self) -> std::io::Result<std::path::PathBuf> {
        use std::io::Write;
        let path = std::path::PathBuf::from(format!("/tmp/perf-{}.map", std::process::id()));
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&path)?;
        for (name, addr, size) in &self.code.functions {
            writeln!(f, "{addr:x} {size:x} nnc::{name}")?;
        }
        Ok(path)
    }

    /// The machine code of every JIT'd function, in definition order (the kernels, then
    /// `step`): its name, its address and its bytes. Each function's bytes are its
    /// instructions followed by its constant pool (the constants its code loads
    /// RIP-relative). [`crate::disassemble`] turns them into text.
    pub fn machine_code(&self) -> Vec<(String, u64, Vec<u8>)> {
        self.code
            .functions
            .iter()
            .map(|(name, addr, size)| {
                let bytes = if *size == 0 {
                    Vec::new()
                } else {
                    // SAFETY: `addr`/`size` are the finalized address and emitted size
                    // of a function of the JIT module that `self.code` owns; the
                    // module's code memory is freed only when `self.code` is dropped
                    // (`JitCode::drop`), so it is live, initialized and (read-execute,
                    // hence readable) for the duration of `&self`. Nothing writes code
                    // memory after finalization.
                    unsafe { std::slice::from_raw_parts(*addr as *const u8, *size) }.to_vec()
                };
                (name.clone(), *addr as u64, bytes)
            })
            .collect()
    }

    /// Makes checked mode believe the buffer of value `name` is only `bytes` long, so
    /// a test can see an access past it caught. No effect outside checked mode.
    #[doc(hidden)]
    pub fn shrink_buffer_for_testing(&mut self, name: &str, bytes: usize) {
        if let Some(slot) = self.program.names.iter().position(|(n, _)| n == name) {
            self.shrunk.push((slot, bytes));
        }
    }

    /// The kernel family the matrix products use.
    pub fn kernel_family(&self) -> &'static str {
        self.kernels
    }

    /// The vector width of the matrix products' FMAs (the peak to compare against:
    /// [`crate::fma_peak_gflops`]).
    pub fn vector_width(&self) -> VectorWidth {
        self.vector_width
    }

    /// Threads the step runs on.
    pub fn threads(&self) -> usize {
        self.pool.as_ref().map_or(1, |p| p.threads())
    }

    /// Number of kernels in the step (for summaries).
    pub fn kernel_count(&self) -> usize {
        self.program.kernels.len()
    }
}

/// A view of `shape` elements of `T` at `ptr` (dangling when empty).
///
/// # Safety
/// `ptr` must point at that many initialized `T`s that live, unwritten, for `'a`.
unsafe fn view_of<'a, T>(ptr: *const u8, shape: IxDyn) -> Result<ArrayViewD<'a, T>, BackendError> {
    let len = shape.size();
    let ptr = if len == 0 { std::ptr::NonNull::<T>::dangling().as_ptr().cast_const() } else { ptr.cast::<T>() };
    if ptr.is_null() || !ptr.is_aligned() {
        return Err(BackendError::Codegen("internal: an output buffer is null or misaligned".into()));
    }
    // SAFETY: the caller's contract, and `ptr` is non-null and aligned.
    Ok(unsafe { ArrayViewD::from_shape_ptr(shape, ptr) })
}
