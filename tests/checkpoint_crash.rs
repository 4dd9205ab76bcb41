//! Crash safety: `nnc train --checkpoint-every 1` killed with SIGKILL at random
//! moments, 20 times — many kills land in the middle of a checkpoint write, since
//! writing one (240 KB, flushed to disk) takes longer than a step — always leaves a
//! loadable checkpoint; every restart resumes from it, and the chain of interrupted
//! runs ends with the parameters of one uninterrupted run, bit for bit.

#![cfg(unix)]

use nnc_ir::Tensor;
use nnc_train::Checkpoint;
use rand::{Rng, SeedableRng};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const KILLS: usize = 20;

/// Changes with every checkpoint written: the file's inode (each write renames a new
/// file into place) and modification time.
fn version(dir: &Path) -> Option<(u64, i64, i64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(dir.join("checkpoint.nnc")).ok().map(|m| (m.ino(), m.mtime(), m.mtime_nsec()))
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn kill_9_during_checkpoint_writes_always_leaves_a_loadable_checkpoint() {
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    // 256 examples of 64 features, 10 classes; a 64-256-10 MLP with Adam: a checkpoint
    // holds 3 × 19K floats.
    let (n, f) = (256, 64);
    let x: Vec<f32> = (0..n * f).map(|i| ((i * 7919) % 1009) as f32 / 1009.0).collect();
    let y: Vec<i64> =
        (0..n).map(|r| (0..10).max_by(|&a, &b| x[r * f + a].total_cmp(&x[r * f + b])).unwrap() as i64).collect();
    let (xp, yp, model) = (d.join("x.npy"), d.join("y.npy"), d.join("m.onnx"));
    nnc::npy::write_npy(&xp, &Tensor::from_f32(&[n, f], x).unwrap()).unwrap();
    nnc::npy::write_npy(&yp, &Tensor::from_i64(&[n], y).unwrap()).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_nnc"))
        .args(["new-mlp", "--layers", "64,256,10", "--seed", "2", "-o", s(&model)])
        .output()
        .unwrap();
    assert!(o.status.success());
    let base = |steps: &str| -> Vec<String> {
        let args = ["train", s(&model), "--inputs", s(&xp), "--labels", s(&yp), "--batch", "32", "-q"];
        let more = ["--optimizer", "adam", "--lr", "0.001", "--steps", steps];
        args.iter().chain(&more).map(|a| a.to_string()).collect()
    };

    let ckpt = d.join("ckpt");
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
    eprintln!("kill timing seed {seed}");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let (mut last_step, mut torn_writes, mut resumed) = (0u64, 0, 0);
    for kill in 0..KILLS {
        let mut args = base("1000000");
        let exists = ckpt.join("checkpoint.nnc").exists();
        args.extend([if exists { "--resume" } else { "--checkpoint" }.to_string(), s(&ckpt).to_string()]);
        args.extend(["--checkpoint-every".to_string(), "1".to_string()]);
        resumed += usize::from(exists);
        let before = version(&ckpt);
        let mut child = Command::new(env!("CARGO_BIN_EXE_nnc"))
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        if rng.random_bool(0.2) {
            // Sometimes during start-up, before this process writes anything.
            std::thread::sleep(Duration::from_millis(rng.random_range(0..60)));
        } else {
            // Otherwise once it has written a checkpoint, at a random moment in the
            // next few writes. Waiting for the write, not
            // for a fixed time, keeps the test meaningful on a loaded machine.
            let deadline = Instant::now() + Duration::from_secs(60);
            while version(&ckpt) == before {
                assert!(Instant::now() < deadline, "kill {kill}: no checkpoint written in 60 s");
                assert!(child.try_wait().unwrap().is_none(), "kill {kill}: the trainer exited by itself");
                std::thread::sleep(Duration::from_micros(500));
            }
            std::thread::sleep(Duration::from_micros(rng.random_range(0..40_000)));
        }
        child.kill().unwrap(); // SIGKILL
        let status = child.wait().unwrap();
        assert!(status.code().is_none(), "kill {kill}: the trainer ended by itself ({status}) instead of being killed");
        torn_writes += nnc_ir::fs::leftover_temporaries(&ckpt.join("checkpoint.nnc")).unwrap().len();
        if ckpt.join("checkpoint.nnc").exists() {
            let c = Checkpoint::load(&ckpt).unwrap_or_else(|e| panic!("kill {kill}: {e}"));
            assert!(c.progress.step >= last_step, "kill {kill}: the checkpoint went back from {last_step}");
            assert!(c.params.iter().chain(&c.state).all(|(_, t)| t.as_f32().unwrap().iter().all(|v| v.is_finite())));
            last_step = c.progress.step;
        }
    }
    eprintln!(
        "{KILLS} kills in {:.1} s: {resumed} restarts resumed, {torn_writes} kills interrupted a write, last \
         checkpoint at step {last_step}",
        started.elapsed().as_secs_f64()
    );
    assert!(last_step > 0);

    // Resume the checkpoint once more, to completion, and compare with one
    // uninterrupted run of as many steps.
    let end = (last_step + 3).to_string();
    let (resumed_out, whole_out) = (d.join("resumed.onnx"), d.join("whole.onnx"));
    let mut args = base(&end);
    args.extend(["--resume".into(), s(&ckpt).into(), "--out".into(), s(&resumed_out).into()]);
    let o = Command::new(env!("CARGO_BIN_EXE_nnc")).args(&args).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut args = base(&end);
    args.extend(["--out".into(), s(&whole_out).into()]);
    let o = Command::new(env!("CARGO_BIN_EXE_nnc")).args(&args).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        std::fs::read(&resumed_out).unwrap() == std::fs::read(&whole_out).unwrap(),
        "{KILLS} interrupted runs and one uninterrupted run of {end} steps end with different parameters"
    );
}
