//! The thread pool the generated step splits its kernels over.
//!
//! The step function calls [`nnc_parallel_for`] for every kernel phase with more than
//! one work item (rows or column panels of a product, elements, ...): it cuts
//! `[0, items)` into contiguous chunks, about four per thread, and returns when all are
//! done. Each thread (the caller is thread 0) has a home range of chunks, the same
//! part of every job: it claims those first, in order, then takes what is left of the
//! others' from their far end. So the same rows of a weight matrix go to the same core
//! in every kernel and every step, and stay in its L2 between the forward product and
//! the update (see `MatMulPlan::depth`), while a slow or descheduled thread still has its
//! chunks run by the others. Kernels
//! write only the outputs of their own items and never sum across items, so every
//! element is computed by the same instructions in the same order whatever the split:
//! results are bitwise identical for every thread count. That is also why any call
//! may fall back to running everything on the caller (the pool is busy with another
//! step, or the work is too small to be worth waking a thread).
//!
//! Kernels are a few microseconds to a millisecond long and a step runs a dozen of
//! them, so the workers spin between jobs for a while (a futex wake-up costs more than
//! many small kernels), yielding the core now and then so that on a busy machine they
//! do not starve the threads they wait for, and park after 200 µs without work.
//! One pool per thread count is shared by every compiled function of the process.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::{JoinHandle, Thread};
use std::time::{Duration, Instant};

/// A generated kernel function: `(table, batch, part, begin, end)`.
pub(crate) type KernelFn = unsafe extern "C" fn(*const *mut u8, i64, i64, i64, i64);

/// Workers spin this long after a job before they park.
const SPIN: Duration = Duration::from_micros(200);

/// Spinning threads yield the core this often (in spin iterations), so on a busy
/// machine a descheduled thread we wait for gets to run.
const YIELD_EVERY: u32 = 64;

/// The job being run. Chunks are claimed, by the publishing thread and the workers
/// alike, with a compare-and-swap on one thread's `ranges` word, `generation << 32 |
/// end << 16 | next`: its home chunks `[next, end)` not yet claimed (the owner takes
/// `next`, others `end - 1`). The publisher writes the next job's fields only once
/// every chunk of the current one is claimed and done, so a claim that succeeds proves
/// the fields the claimer read (after seeing the generation) belong to that job: a
/// worker that was descheduled while reading a job can never run a chunk of the wrong
/// one. And the publisher never waits for a worker that has not started; on a busy
/// machine it simply runs the chunks itself.
struct Shared {
    /// Per thread: 0 the publisher, `w + 1` worker `w`.
    ranges: Vec<AtomicU64>,
    /// Chunks of the current job that have finished.
    done: AtomicU64,
    kernel: AtomicUsize,
    table: AtomicPtr<*mut u8>,
    batch: AtomicI64,
    part: AtomicI64,
    items: AtomicI64,
    /// Items per chunk; chunk `i` is `[i·chunk, min((i+1)·chunk, items))`.
    chunk: AtomicI64,
    stop: AtomicBool,
    /// Per worker: it is parked or about to park, so a new job must unpark it.
    sleeping: Vec<AtomicBool>,
}

const CHUNK_MASK: u64 = 0xffff;
/// Chunks per job are at most this (one per thread, and threads are few).
const MAX_CHUNKS: u64 = 0xffff;
/// Chunks per thread of a large enough range: threads that finish early claim the
/// rest, so a core slowed by another process (or a slower core) does not leave the
/// others waiting at the end of every kernel.
const CHUNKS_PER_THREAD: u64 = 4;

impl Shared {
    /// Claims and runs chunks of job `generation` until none is left, thread `me`'s
    /// own first. The job's fields must have been read after observing `generation`.
    fn work(&self, me: usize, generation: u64, job: &Job) {
        while let Some(chunk) = self.claim(me, generation) {
            let lo = chunk as i64 * job.chunk;
            let hi = (lo + job.chunk).min(job.items);
            // SAFETY: the publisher's contract (`Pool::run`): chunks are disjoint, and
            // the table stays alive until every claimed chunk is `done`.
            unsafe { (job.kernel)(job.table, job.batch, job.part, lo, hi) };
            self.done.fetch_add(1, Ordering::Release);
        }
    }

    /// The next chunk of job `generation` for thread `me`: the first left of its home
    /// range, else the last left of another thread's, else `None`.
    fn claim(&self, me: usize, generation: u64) -> Option<u64> {
        let threads = self.ranges.len();
        for t in (0..threads).map(|i| (me + i) % threads) {
            let range = &self.ranges[t];
            loop {
                let cur = range.load(Ordering::Acquire);
                let (next, end) = (cur & CHUNK_MASK, (cur >> 16) & CHUNK_MASK);
                if cur >> 32 != generation || next >= end {
                    break;
                }
                let (new, chunk) = if t == me { (cur + 1, next) } else { (cur - (1 << 16), end - 1) };
                if range.compare_exchange_weak(cur, new, Ordering::AcqRel, Ordering::Relaxed).is_ok() {
                    return Some(chunk);
                }
            }
        }
        None
    }

    fn read_job(&self) -> Option<Job> {
        let kernel = self.kernel.load(Ordering::Relaxed);
        if kernel == 0 {
            return None;
        }
        // SAFETY: `kernel` was stored from a `KernelFn` by `Pool::run`.
        let kernel = unsafe { std::mem::transmute::<usize, KernelFn>(kernel) };
        Some(Job {
            kernel,
            table: self.table.load(Ordering::Relaxed),
            batch: self.batch.load(Ordering::Relaxed),
            part: self.part.load(Ordering::Relaxed),
            items: self.items.load(Ordering::Relaxed),
            chunk: self.chunk.load(Ordering::Relaxed),
        })
    }
}

#[derive(Clone, Copy)]
struct Job {
    kernel: KernelFn,
    table: *const *mut u8,
    batch: i64,
    part: i64,
    items: i64,
    chunk: i64,
}

pub(crate) struct Pool {
    threads: usize,
    shared: Arc<Shared>,
    /// The workers that started, with their indices (`sleeping`, `ranges[w + 1]`).
    handles: Vec<(usize, Thread)>,
    joins: Vec<JoinHandle<()>>,
    /// Held while a job is in flight; a second step finds it taken and runs serially.
    busy: Mutex<()>,
}

impl Pool {
    /// The process-wide pool of `threads` threads (the caller counts as one).
    pub fn shared(threads: usize) -> Arc<Pool> {
        static POOLS: OnceLock<Mutex<HashMap<usize, Arc<Pool>>>> = OnceLock::new();
        let pools = POOLS.get_or_init(Default::default);
        let mut pools = pools.lock().unwrap_or_else(|e| e.into_inner());
        pools.entry(threads).or_insert_with(|| Arc::new(Pool::new(threads))).clone()
    }

    fn new(threads: usize) -> Pool {
        let workers = threads.saturating_sub(1);
        let shared = Arc::new(Shared {
            ranges: (0..=workers).map(|_| AtomicU64::new(0)).collect(),
            done: AtomicU64::new(0),
            kernel: AtomicUsize::new(0),
            table: AtomicPtr::new(std::ptr::null_mut()),
            batch: AtomicI64::new(0),
            part: AtomicI64::new(0),
            items: AtomicI64::new(0),
            chunk: AtomicI64::new(0),
            stop: AtomicBool::new(false),
            sleeping: (0..workers).map(|_| AtomicBool::new(false)).collect(),
        });
        let mut joins = Vec::with_capacity(workers);
        let mut handles = Vec::with_capacity(workers);
        for w in 0..workers {
            let shared = shared.clone();
            let spawned =
                std::thread::Builder::new().name(format!("nnc-worker-{}", w + 1)).spawn(move || worker(&shared, w));
            // Without the thread the pool is smaller; results do not depend on it.
            if let Ok(join) = spawned {
                handles.push((w, join.thread().clone()));
                joins.push(join);
            }
        }
        Pool { threads: threads.max(1), shared, handles, joins, busy: Mutex::new(()) }
    }

    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Runs `kernel` over `[0, items)` split into about `CHUNKS_PER_THREAD` chunks per
    /// thread, chunk boundaries at multiples of `align` items and no chunk under
    /// `min_chunk` items.
    ///
    /// # Safety
    /// `kernel` must be safe to call with `table`, `batch`, `part` and any sub-range of
    /// `[0, items)`, from any thread, concurrently for disjoint sub-ranges.
    #[allow(clippy::too_many_arguments)]
    unsafe fn run(
        &self,
        kernel: KernelFn,
        table: *const *mut u8,
        batch: i64,
        part: i64,
        items: i64,
        align: i64,
        min_chunk: i64,
    ) {
        // SAFETY: the caller's contract, for the whole range on this thread.
        let serial = || unsafe { kernel(table, batch, part, 0, items) };
        if self.handles.is_empty() || items < 2 * min_chunk.max(1) {
            return serial();
        }
        let Ok(_busy) = self.busy.try_lock() else { return serial() };
        let (n, align) = (items as u64, align.max(1) as u64);
        let per_chunk = n.div_ceil((self.handles.len() as u64 + 1) * CHUNKS_PER_THREAD).max(min_chunk as u64);
        let chunk = per_chunk.div_ceil(align) * align;
        let chunks = n.div_ceil(chunk);
        if !(2..=MAX_CHUNKS).contains(&chunks) {
            return serial();
        }
        let s = &*self.shared;
        s.kernel.store(kernel as usize, Ordering::Relaxed);
        s.table.store(table.cast_mut(), Ordering::Relaxed);
        s.batch.store(batch, Ordering::Relaxed);
        s.part.store(part, Ordering::Relaxed);
        s.items.store(items, Ordering::Relaxed);
        s.chunk.store(chunk as i64, Ordering::Relaxed);
        s.done.store(0, Ordering::Relaxed);
        // Generations wrap around, skipping 0 (what workers have seen at start).
        let generation = ((s.ranges[0].load(Ordering::Relaxed) >> 32) + 1) & 0xffff_ffff;
        let generation = generation.max(1);
        // Home ranges: thread t gets chunks [t·chunks/T, (t+1)·chunks/T). Each store
        // publishes the fields above (Release) and opens that range for claims;
        // workers' first, so they start while the caller opens its own.
        let threads = s.ranges.len() as u64;
        let home = |t: u64| {
            let (start, end) = (t * chunks / threads, (t + 1) * chunks / threads);
            generation << 32 | end << 16 | start
        };
        for t in 1..threads {
            s.ranges[t as usize].store(home(t), Ordering::SeqCst);
        }
        for (w, t) in &self.handles {
            if s.sleeping[*w].load(Ordering::SeqCst) {
                t.unpark();
            }
        }
        s.ranges[0].store(home(0), Ordering::SeqCst);
        let job = Job { kernel, table, batch, part, items, chunk: chunk as i64 };
        s.work(0, generation, &job);
        let mut spins = 0u32;
        while s.done.load(Ordering::Acquire) != chunks {
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(YIELD_EVERY) {
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        let s = &*self.shared;
        s.stop.store(true, Ordering::SeqCst);
        for range in &s.ranges {
            range.fetch_add(1 << 32, Ordering::SeqCst);
        }
        for (_, t) in &self.handles {
            t.unpark();
        }
        for j in self.joins.drain(..) {
            let _ = j.join();
        }
    }
}

/// A worker: waits for a new job (spinning, then parked), and helps run it.
fn worker(s: &Shared, w: usize) {
    let mut seen = 0u64;
    loop {
        let started = Instant::now();
        let mut spins = 0u32;
        let generation = loop {
            let g = s.ranges[w + 1].load(Ordering::Acquire) >> 32;
            if g != seen {
                break g;
            }
            spins = spins.wrapping_add(1);
            if !spins.is_multiple_of(YIELD_EVERY) {
                std::hint::spin_loop();
                continue;
            }
            if started.elapsed() < SPIN {
                std::thread::yield_now();
                continue;
            }
            s.sleeping[w].store(true, Ordering::SeqCst);
            if s.ranges[w + 1].load(Ordering::SeqCst) >> 32 == seen {
                std::thread::park();
            }
            s.sleeping[w].store(false, Ordering::SeqCst);
        };
        seen = generation;
        if s.stop.load(Ordering::SeqCst) {
            return;
        }
        if let Some(job) = s.read_job() {
            s.work(w + 1, generation, &job);
        }
    }
}

/// Called by the generated step for every splittable kernel phase. `pool` is null
/// for a single-threaded step.
///
/// # Safety
/// As [`Pool::run`]; `pool` is null or points at a live `Pool`.
pub(crate) unsafe extern "C" fn nnc_parallel_for(
    pool: *const Pool,
    kernel: KernelFn,
    table: *const *mut u8,
    batch: i64,
    part: i64,
    items: i64,
    align: i64,
    min_chunk: i64,
) {
    // SAFETY: the caller's contract.
    unsafe {
        match pool.as_ref() {
            Some(pool) => pool.run(kernel, table, batch, part, items, align, min_chunk),
            None => kernel(table, batch, part, 0, items),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    /// Counts each item it is given: `table` points at one counter per item.
    unsafe extern "C" fn count_items(table: *const *mut u8, _: i64, _: i64, begin: i64, end: i64) {
        let counters = table.cast::<AtomicU32>();
        for i in begin..end {
            // SAFETY: the test passes a live array of at least `end` counters.
            unsafe { (*counters.add(i as usize)).fetch_add(1, Ordering::Relaxed) };
        }
    }

    #[test]
    fn every_item_runs_exactly_once_whoever_claims_it() {
        // Jobs of every size and chunking, one after another, with the workers
        // claiming their home ranges and stealing the rest as timing has it.
        for threads in [2, 3] {
            let pool = Pool::new(threads);
            let counters: Vec<AtomicU32> = (0..300).map(|_| AtomicU32::new(0)).collect();
            for job in 0..3000i64 {
                let items = 1 + job % 300;
                let (align, min_chunk) = (1 + job % 7, 1 + job % 3);
                let table = counters.as_ptr().cast::<*mut u8>();
                // SAFETY: `count_items` touches only counters `[begin, end)` of `table`,
                // atomically, and `counters` outlives the call.
                unsafe { pool.run(count_items, table, 0, 0, items, align, min_chunk) };
                for (i, c) in counters.iter().enumerate() {
                    let want = u32::from((i as i64) < items);
                    assert_eq!(c.swap(0, Ordering::Relaxed), want, "{threads} threads, job {job}, item {i}");
                }
            }
        }
    }
}
