//! Adam on Fashion-MNIST through the CLI: the seed MLP (784-256-10), lr 1e-3, batch
//! 100, the JIT backend, one epoch. The bar is ≥ 87% after 10 epochs (measured
//! 88.30%, see docs/usage.md); 10 epochs take too long for the test suite, so this checks
//! the first epoch, which already separates Adam from plain SGD.

mod common;

use std::path::Path;
use std::process::Command;

const DATA: &str = "/usr/share/datasets/fashion-mnist";

#[test]
fn adam_reaches_81_percent_after_one_epoch_on_fashion_mnist() {
    if !Path::new(DATA).join("train-images-idx3-ubyte.gz").exists() {
        assert!(std::env::var_os("CI").is_none(), "Fashion-MNIST missing: run .ci/install-test-deps.sh");
        eprintln!("skipping: Fashion-MNIST is not installed");
        return;
    }
    let o = Command::new(env!("CARGO_BIN_EXE_nnc"))
        .args(["train", "-q", "--data", DATA, "--optimizer", "adam", "--lr", "1e-3", "--epochs", "1"])
        .env_remove("NNC_DATA")
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success(), "{stderr}");
    assert!(stderr.contains("trained 600 steps"), "one epoch is 600 steps of 100:\n{stderr}");
    let accuracy = common::final_accuracy(&stdout);
    // Measured after one epoch: 84.26% with the default shuffling seed 0, 83.93–84.90%
    // over seeds 0–4; the bound leaves 3 points for changes in summation order. Plain
    // SGD at lr 0.01 (the seed workload) reaches 76.70% after the same epoch: the bound
    // is well above it.
    assert!(accuracy >= 81.0, "test accuracy after one epoch of Adam: {accuracy}%:\n{stderr}");
}
