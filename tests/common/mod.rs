//! Helpers shared by the end-to-end tests.

/// The test accuracy in percent from `nnc train`'s last line of stdout, e.g.
/// "test: loss 0.4382, accuracy 84.26% (10000 examples)".
#[allow(dead_code)]
pub fn final_accuracy(stdout: &str) -> f64 {
    stdout
        .lines()
        .last()
        .and_then(|l| l.split("accuracy ").nth(1))
        .and_then(|r| r.split('%').next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no accuracy in:\n{stdout}"))
}

/// A tensor's values as f32.
#[allow(dead_code)]
pub fn f32s(t: &nnc_ir::Tensor) -> Vec<f32> {
    t.to_f32_vec().unwrap()
}

/// The largest difference relative to the largest magnitude of `want`.
#[allow(dead_code)]
pub fn relative_error(got: &[f32], want: &[f32]) -> f64 {
    assert_eq!(got.len(), want.len());
    let scale = want.iter().fold(0f64, |m, v| m.max(v.abs() as f64));
    let diff = got.iter().zip(want).fold(0f64, |m, (g, w)| m.max((*g as f64 - *w as f64).abs()));
    diff / scale
}
