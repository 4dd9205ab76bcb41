//! Two threads against one on the seed training step, measured interleaved: both
//! backends live in one process and take turns, a round of steps each, so a change in
//! the host's load between them hits both alike. On a shared host this gives steadier
//! ratios than criterion, which measures one benchmark after the other (its
//! `train_step` table has the same steps, timed that way). Not timed by criterion.
//!
//! `cargo bench -j2 --bench threads`
//!
//! For each kernel family and batch: the minimum, 10th percentile and median of the
//! step times, and the one-thread time over the two-thread time at each; then the same
//! for the default kernels with the weights stored `[out, in]` (`nnc new-mlp --layout
//! gemm`, as PyTorch exports `nn.Linear`).

mod common;

use nnc::mlp::Layout;
use nnc_autodiff::Optimizer;
use nnc_cranelift::Kernels;
use std::time::Instant;

const BATCHES: [usize; 5] = [1, 32, 100, 256, 1024];
const ROUNDS: usize = 40;

/// Step times of each backend, in seconds, interleaved round by round.
fn interleaved(backends: &mut [nnc_train::JitBackend], batch: usize) -> Vec<Vec<f64>> {
    let (x, y) = common::random_batch(&backends[0], batch, 0);
    // About 5 ms of steps per round and backend at one thread: short rounds, so both
    // backends see the same spells of the host's load.
    let steps = (500 / batch).clamp(1, 100);
    let mut times = vec![Vec::with_capacity(ROUNDS * steps); backends.len()];
    let mut n = 0;
    for round in 0..=ROUNDS {
        for (backend, times) in backends.iter_mut().zip(&mut times) {
            for _ in 0..steps {
                n += 1;
                let start = Instant::now();
                common::step(backend, &x, &y, n);
                // Round 0 warms up (pool threads, caches, the arena at this batch).
                if round > 0 {
                    times.push(start.elapsed().as_secs_f64());
                }
            }
        }
    }
    for t in &mut times {
        t.sort_by(f64::total_cmp);
    }
    times
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if !args.iter().any(|a| a == "--bench") {
        // `cargo test --benches`: building is the test.
        println!("threads: runs under `cargo bench` only");
        return;
    }
    let mut runs: Vec<(Kernels, Layout)> = common::families().into_iter().map(|k| (k, Layout::Matmul)).collect();
    runs.push((Kernels::Auto, Layout::Gemm));
    let mut rows = Vec::new();
    for (kernels, layout) in runs {
        let tg = common::seed_step_in_layout(Optimizer::Sgd, layout);
        let mut backends = [common::jit(&tg, 1, kernels), common::jit(&tg, 2, kernels)];
        let name = match layout {
            Layout::Matmul => common::family_name(kernels).to_string(),
            Layout::Gemm => format!("{}, gemm layout", common::family_name(kernels)),
        };
        for batch in BATCHES {
            let times = interleaved(&mut backends, batch);
            let at = |t: &[f64], q: f64| t[((t.len() - 1) as f64 * q) as usize];
            let mut row = vec![name.clone(), batch.to_string()];
            for q in [0.0, 0.1, 0.5] {
                let (one, two) = (at(&times[0], q), at(&times[1], q));
                row.push(format!("{:.3} / {:.3}", one * 1e3, two * 1e3));
                row.push(format!("{:.2}×", one / two));
            }
            println!("{}", row.join("  "));
            rows.push(row);
        }
    }
    common::print_table(
        &format!(
            "Seed training step, one thread / two threads, interleaved ({ROUNDS} rounds; ms, and the speed-up of two \
             threads)"
        ),
        &["kernels", "batch", "min", "speed-up", "10th percentile", "speed-up", "median", "speed-up"],
        &rows,
    );
}
