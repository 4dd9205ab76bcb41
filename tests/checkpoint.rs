//! `nnc train --checkpoint/--resume/--on-nan` end to end: a run stopped and resumed
//! ends bit for bit where an uninterrupted one does; bad, foreign or damaged
//! checkpoints are refused with one line and left as they were; a diverging run stops
//! naming the step and the tensor, and keeps its last good checkpoint.

use nnc_ir::Tensor;
use nnc_train::Checkpoint;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn nnc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nnc")).args(args).env_remove("NNC_DATA").output().expect("nnc runs")
}

fn ok(args: &[&str]) -> String {
    let o = nnc(args);
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "nnc {args:?} failed:\n{stderr}");
    stderr
}

/// Runs a command that must fail with exit code 1 and returns its error line.
fn fails(args: &[&str]) -> String {
    let o = nnc(args);
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(1), "nnc {args:?} should fail:\n{stderr}");
    let line = stderr.lines().last().unwrap_or_default().to_string();
    assert!(line.starts_with("error: "), "one error line last:\n{stderr}");
    line
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A toy problem: 120 examples of 8 features; the class is the largest of the first 3.
/// Batches of 16 make 8 steps per epoch, the last of 8 examples.
struct Toy {
    dir: tempfile::TempDir,
    model: PathBuf,
    x: PathBuf,
    y: PathBuf,
}

impl Toy {
    fn new() -> Toy {
        let dir = tempfile::tempdir().unwrap();
        let (n, f) = (120, 8);
        let x: Vec<f32> = (0..n * f).map(|i| ((i * 7919) % 101) as f32 / 101.0).collect();
        let y: Vec<i64> =
            (0..n).map(|r| (0..3).max_by(|&a, &b| x[r * f + a].total_cmp(&x[r * f + b])).unwrap() as i64).collect();
        let (xp, yp, model) = (dir.path().join("x.npy"), dir.path().join("y.npy"), dir.path().join("m.onnx"));
        nnc::npy::write_npy(&xp, &Tensor::from_f32(&[n, f], x).unwrap()).unwrap();
        nnc::npy::write_npy(&yp, &Tensor::from_i64(&[n], y).unwrap()).unwrap();
        ok(&["new-mlp", "--layers", "8,16,3", "--seed", "1", "-o", s(&model)]);
        Toy { dir, model, x: xp, y: yp }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `nnc train` on the toy data with `extra` flags.
    fn args<'a>(&'a self, extra: &[&'a str]) -> Vec<&'a str> {
        let mut a =
            vec!["train", s(&self.model), "--inputs", s(&self.x), "--labels", s(&self.y), "--batch", "16", "-q"];
        a.extend_from_slice(extra);
        a
    }
}

fn f32_bits(leaves: &[(String, Tensor)]) -> Vec<(String, Vec<u32>)> {
    leaves.iter().map(|(n, t)| (n.clone(), t.as_f32().unwrap().iter().map(|v| v.to_bits()).collect())).collect()
}

/// 22 steps in one go, and 11 steps + `--resume` to 22 (then on to epoch 4 with
/// `--epochs`): the same parameters, bit for bit — the same ONNX file, the same
/// parameters and optimizer state in the checkpoints — with SGD and Adam, shuffled,
/// on the JIT and on the interpreter.
#[test]
fn a_resumed_run_ends_with_the_uninterrupted_parameters() {
    let toy = Toy::new();
    for (optimizer, backend) in [("sgd", "jit"), ("adam", "jit"), ("adam", "interp")] {
        let tag = format!("{optimizer}-{backend}");
        let (a, b) = (toy.path(&format!("a-{tag}")), toy.path(&format!("b-{tag}")));
        let out = |name: &str| toy.path(&format!("{name}-{tag}.onnx"));
        let flags = ["--optimizer", optimizer, "--lr", "0.05", "--backend", backend];
        let (out_a, out_half, out_b) = (out("whole"), out("half"), out("resumed"));
        let mut whole = toy.args(&flags);
        whole.extend(["--steps", "22", "--checkpoint", s(&a), "--out", s(&out_a)]);
        ok(&whole);
        let mut half = toy.args(&flags);
        half.extend(["--steps", "11", "--checkpoint", s(&b), "--checkpoint-every", "4", "--out", s(&out_half)]);
        ok(&half);
        assert_eq!(Checkpoint::load(&b).unwrap().progress.step, 11);
        let mut rest = toy.args(&flags);
        rest.extend(["--steps", "22", "--resume", s(&b), "--out", s(&out_b)]);
        let stderr = ok(&rest);
        assert!(stderr.contains("resuming from") && stderr.contains("at step 11 (epoch 2)"), "{stderr}");
        assert!(stderr.contains("trained 22 steps"), "{stderr}");

        let read = |p: &Path| std::fs::read(p).unwrap();
        assert_ne!(read(&out_half), read(&out_a), "{tag}: 11 steps are not 22");
        assert_eq!(read(&out_b), read(&out_a), "{tag}: the resumed run's model differs");
        let (ca, cb) = (Checkpoint::load(&a).unwrap(), Checkpoint::load(&b).unwrap());
        assert_eq!(ca.progress.step, 22);
        assert_eq!(f32_bits(&ca.params), f32_bits(&cb.params), "{tag}");
        assert_eq!(f32_bits(&ca.state), f32_bits(&cb.state), "{tag}");
        assert_eq!(
            ca.losses.iter().map(|l| l.to_bits()).collect::<Vec<_>>(),
            cb.losses.iter().map(|l| l.to_bits()).collect::<Vec<_>>()
        );
        assert_eq!(ca.identity, cb.identity);

        // Resume both again, to the end of epoch 4 (32 steps): still identical.
        for dir in [&a, &b] {
            let mut more = toy.args(&flags);
            more.extend(["--epochs", "4", "--resume", s(dir)]);
            ok(&more);
        }
        let (ca, cb) = (Checkpoint::load(&a).unwrap(), Checkpoint::load(&b).unwrap());
        assert_eq!((ca.progress.step, ca.progress.epoch, ca.progress.epoch_steps), (32, 5, 0));
        assert_eq!(f32_bits(&ca.params), f32_bits(&cb.params), "{tag}");
        assert_eq!(f32_bits(&ca.state), f32_bits(&cb.state), "{tag}");
    }
}

/// Damaged, foreign and mismatched checkpoints: exit code 1, one line naming the
/// problem, and the checkpoint and `--out` untouched.
#[test]
fn bad_checkpoints_are_refused_and_left_as_they_were() {
    let toy = Toy::new();
    let good = toy.path("good");
    let sgd = ["--optimizer", "sgd", "--lr", "0.05"];
    let mut first = toy.args(&sgd);
    first.extend(["--steps", "5", "--checkpoint", s(&good)]);
    ok(&first);
    let bytes = std::fs::read(good.join("checkpoint.nnc")).unwrap();
    let out = toy.path("out.onnx");

    // (name, damage to the file, flags other than the good run's, expected words)
    type Damage = fn(&mut Vec<u8>);
    let cases: Vec<(&str, Damage, Vec<&str>, &[&str])> = vec![
        ("truncated", |b| b.truncate(b.len() / 2), vec![], &["truncated"]),
        ("empty", |b| b.clear(), vec![], &["truncated"]),
        (
            "flipped",
            |b| {
                let at = b.len() - 100;
                b[at] ^= 1
            },
            vec![],
            &["corrupt", "checksum"],
        ),
        ("trailing", |b| b.extend_from_slice(b"junk"), vec![], &["corrupt"]),
        ("not-a-checkpoint", |b| *b = b"\x08\x07\x12\x04onnx".to_vec(), vec![], &["not an nnc checkpoint"]),
        ("optimizer", |_| {}, vec!["--optimizer", "adam"], &["optimizer sgd", "optimizer adam"]),
        ("lr", |_| {}, vec!["--lr", "0.1"], &["learning rate 0.05", "learning rate 0.1"]),
        ("batch", |_| {}, vec!["--batch", "10"], &["batch size 16", "batch size 10"]),
        ("shuffle", |_| {}, vec!["--no-shuffle"], &["shuffling on, seed 0", "shuffling off"]),
        ("seed", |_| {}, vec!["--seed", "3"], &["shuffling on, seed 0", "shuffling on, seed 3"]),
    ];
    for (name, damage, flags, words) in cases {
        let dir = toy.path(name);
        std::fs::create_dir(&dir).unwrap();
        let mut b = bytes.clone();
        damage(&mut b);
        std::fs::write(dir.join("checkpoint.nnc"), &b).unwrap();
        let mut args = toy.args(&sgd);
        // Later flags win: `--lr 0.1` after the good run's `--lr 0.05`, and so on.
        args.extend(flags);
        args.extend(["--steps", "10", "--resume", s(&dir), "--out", s(&out)]);
        let args: Vec<&str> = dedup_flags(&args);
        let line = fails(&args);
        for w in words {
            assert!(line.contains(w), "{name}: {line}");
        }
        assert!(line.contains("checkpoint.nnc"), "{name}: the error names the file: {line}");
        assert_eq!(std::fs::read(dir.join("checkpoint.nnc")).unwrap(), b, "{name}: the checkpoint was changed");
        assert!(!out.exists(), "{name}: no --out after a refused resume");
    }

    // Another model: the first parameter that differs is named.
    let wide = toy.path("wide.onnx");
    ok(&["new-mlp", "--layers", "8,32,3", "--seed", "1", "-o", s(&wide)]);
    let mut args = toy.args(&sgd);
    args[1] = s(&wide);
    args.extend(["--steps", "10", "--resume", s(&good)]);
    let line = fails(&args);
    assert!(line.contains("\"fc1.weight\" is f32[8,16], and this model's is f32[8,32]"), "{line}");
    // Same shapes, another graph.
    let tanh = toy.path("tanh.onnx");
    ok(&["new-mlp", "--layers", "8,16,3", "--activation", "tanh", "--seed", "1", "-o", s(&tanh)]);
    args[1] = s(&tanh);
    let line = fails(&args);
    assert!(line.contains("the graph differs"), "{line}");
    // A run shorter than the checkpoint.
    let mut args = toy.args(&sgd);
    args.extend(["--steps", "3", "--resume", s(&good)]);
    assert!(fails(&args).contains("at step 5, past the end of this run (3 steps"));
    // No checkpoint there; a fresh run into a directory that has one.
    let nowhere = toy.path("nowhere");
    let mut args = toy.args(&sgd);
    args.extend(["--steps", "10", "--resume", s(&nowhere)]);
    assert!(fails(&args).contains("no such directory"));
    assert!(!toy.path("nowhere").exists(), "a failed --resume creates nothing");
    let mut args = toy.args(&sgd);
    args.extend(["--steps", "10", "--checkpoint", s(&good)]);
    assert!(fails(&args).contains("already holds a checkpoint (step 5)"));
    let mut args = toy.args(&sgd);
    args.extend(["--steps", "10", "--checkpoint-every", "2"]);
    assert!(fails(&args).contains("--checkpoint-every needs --checkpoint"));
    assert_eq!(std::fs::read(good.join("checkpoint.nnc")).unwrap(), bytes, "the good checkpoint is untouched");
}

/// Keeps the last occurrence of each `--flag value` pair (clap refuses repeats).
fn dedup_flags<'a>(args: &[&'a str]) -> Vec<&'a str> {
    let takes_value = |f: &str| f.starts_with("--") && !matches!(f, "--no-shuffle");
    let mut pairs: Vec<Vec<&'a str>> = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let n = if takes_value(args[i]) && i + 1 < args.len() { 2 } else { 1 };
        let item = args[i..i + n].to_vec();
        if n == 2 {
            pairs.retain(|p| p[0] != item[0]);
        }
        pairs.push(item);
        i += n;
    }
    pairs.concat()
}

/// `--lr 1e30`: the run stops at the step whose loss is not finite, names it and the
/// tensor, exits 1, writes no `--out`, and leaves the checkpoint of the step before.
/// `--on-nan skip` undoes such steps and gives up after 10 in a row. NaN in the data
/// is refused before training.
#[test]
fn divergence_stops_cleanly_and_keeps_the_last_good_checkpoint() {
    let toy = Toy::new();
    let dir = toy.path("nan");
    let out = toy.path("nan.onnx");
    let mut args = toy.args(&["--lr", "1e30", "--steps", "50", "--checkpoint-every", "1"]);
    args.extend(["--checkpoint", s(&dir), "--out", s(&out)]);
    let line = fails(&args);
    let step: u64 = line
        .split("diverged at step ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no step in: {line}"));
    assert!(line.contains("the loss is NaN") || line.contains("the loss is inf"), "{line}");
    assert!(line.contains("try a smaller learning rate than 1e30"), "{line}");
    assert!(line.contains(&format!("the last checkpoint (step {}) is intact", step - 1)), "{line}");
    assert!(!out.exists());
    let c = Checkpoint::load(&dir).unwrap();
    assert_eq!(c.progress.step, step - 1, "the last good checkpoint is the step before");
    assert!(c.params.iter().chain(&c.state).all(|(_, t)| t.as_f32().unwrap().iter().all(|v| v.is_finite())));
    assert!(nnc_ir::fs::leftover_temporaries(&dir.join("checkpoint.nnc")).unwrap().is_empty());

    // The same with --on-nan skip: every step after the first is undone, until 10 in a row.
    let skip_dir = toy.path("skip");
    let mut args = toy.args(&["--lr", "1e30", "--steps", "50", "--on-nan", "skip", "--checkpoint-every", "1"]);
    args.extend(["--checkpoint", s(&skip_dir)]);
    let o = nnc(&args);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("step 2 (epoch 1) skipped: the loss is"), "{stderr}");
    assert!(stderr.contains("10 steps in a row skipped"), "{stderr}");
    let c = Checkpoint::load(&skip_dir).unwrap();
    assert_eq!((c.progress.skipped, c.progress.consecutive_skips), (c.progress.step - 1, c.progress.step - 1));
    assert!(c.params.iter().all(|(_, t)| t.as_f32().unwrap().iter().all(|v| v.is_finite())));

    // A NaN in the data never reaches a step.
    let bad_x = toy.path("bad_x.npy");
    let mut x = nnc::npy::read_npy(&toy.x).unwrap().to_f32_vec().unwrap();
    x[8 * 5 + 2] = f32::NAN;
    nnc::npy::write_npy(&bad_x, &Tensor::from_f32(&[120, 8], x).unwrap()).unwrap();
    let mut args = toy.args(&["--steps", "5"]);
    args[3] = s(&bad_x);
    let line = fails(&args);
    assert!(line.contains("example 5") && line.contains("NaN"), "{line}");
}
