//! Helpers shared by the end-to-end tests.

/// The test accuracy in percent from `nnc train`'s last line of stdout, e.g.
/// "test: loss 0.4382, accuracy 84.26% (10000 examples)".
pub fn final_accuracy(stdout: &str) -> f64 {
    stdout
        .lines()
        .last()
        .and_then(|l| l.split("accuracy ").nth(1))
        .and_then(|r| r.split('%').next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no accuracy in:\n{stdout}"))
}
