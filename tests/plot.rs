//! `nnc train --plot FILE.svg`: the CLI writes a well-formed SVG with the loss curves
//! (and the per-epoch test metrics when there is a test set), refuses a bad path before
//! training, and the smoothing is a centred moving average.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

// The drawing code is a module of the `nnc` binary; the unit-level checks compile it
// here too (it depends only on nnc-train and plotters).
#[allow(dead_code)]
#[path = "../src/plot.rs"]
mod plot;

fn nnc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nnc")).args(args).env_remove("NNC_DATA").output().expect("nnc runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

/// A small separable problem: class = which of the first 3 features is largest. Values
/// are bytes so the same examples can be written as NPY or as IDX images.
fn toy_examples(n: usize, features: usize, salt: usize) -> (Vec<u8>, Vec<u8>) {
    let x: Vec<u8> = (0..n * features).map(|i| (((i + salt) * 7919) % 251) as u8).collect();
    let labels = (0..n).map(|r| (0..3).max_by_key(|&c| x[r * features + c]).expect("three features") as u8).collect();
    (x, labels)
}

fn write_npy(dir: &Path, n: usize, features: usize) -> (PathBuf, PathBuf) {
    let (x, y) = toy_examples(n, features, 0);
    let x = x.into_iter().map(|b| f32::from(b) / 255.0).collect();
    let (xp, yp) = (dir.join("x.npy"), dir.join("y.npy"));
    nnc::npy::write_npy(&xp, &nnc_ir::Tensor::from_f32(&[n, features], x).unwrap()).unwrap();
    nnc::npy::write_npy(&yp, &nnc_ir::Tensor::from_i64(&[n], y.into_iter().map(i64::from).collect()).unwrap()).unwrap();
    (xp, yp)
}

/// An MNIST-format directory of 4×4 "images" (uncompressed IDX), with a test split.
fn write_mnist_dir(dir: &Path, train: usize, test: usize) -> PathBuf {
    let dir = dir.join("toy-mnist");
    std::fs::create_dir(&dir).unwrap();
    for (split, n, salt) in [("train", train, 0), ("t10k", test, 1)] {
        let (x, y) = toy_examples(n, 16, salt);
        nnc_train::idx::write_idx(&dir.join(format!("{split}-images-idx3-ubyte")), &[n, 4, 4], &x).unwrap();
        nnc_train::idx::write_idx(&dir.join(format!("{split}-labels-idx1-ubyte")), &[n], &y).unwrap();
    }
    dir
}

fn new_mlp(dir: &Path, layers: &str) -> PathBuf {
    let model = dir.join("toy.onnx");
    let o = nnc(&["new-mlp", "--layers", layers, "--seed", "1", "-o", model.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    model
}

/// Checks that `svg` is one `<svg>` element whose tags nest properly, and returns the
/// names of all elements and the text content of the `<text>` elements.
fn parse_svg(svg: &str) -> (Vec<String>, Vec<String>) {
    assert!(svg.starts_with("<svg"), "not an SVG document: {}", &svg[..svg.len().min(200)]);
    assert!(svg.trim_end().ends_with("</svg>"), "the SVG document is not closed");
    let (mut open, mut elements, mut texts) = (Vec::<String>::new(), Vec::new(), Vec::new());
    let mut rest = svg;
    while let Some(start) = rest.find('<') {
        let text = &rest[..start];
        if open.last().is_some_and(|t| t == "text") && !text.trim().is_empty() {
            texts.push(text.trim().to_string());
        } else {
            assert!(text.trim().is_empty() || !open.is_empty(), "text outside the document: {text:?}");
        }
        let end = rest[start..].find('>').expect("an unterminated tag") + start;
        let tag = &rest[start + 1..end];
        assert!(!tag.contains('<'), "a '<' inside a tag: {tag:?}");
        if let Some(name) = tag.strip_prefix('/') {
            assert_eq!(open.pop().as_deref(), Some(name.trim()), "mismatched closing tag </{name}>");
        } else if !tag.starts_with('?') && !tag.starts_with('!') {
            let name = tag.split(|c: char| c.is_whitespace() || c == '/').next().unwrap().to_string();
            assert!(!name.is_empty(), "a tag without a name: <{tag}>");
            elements.push(name.clone());
            if !tag.ends_with('/') {
                open.push(name);
            }
        }
        rest = &rest[end + 1..];
        if open.is_empty() {
            assert!(rest.trim().is_empty(), "content after the root element: {rest:?}");
        }
    }
    assert!(open.is_empty(), "unclosed elements: {open:?}");
    (elements, texts)
}

/// The number of points of the longest polyline.
fn longest_polyline(svg: &str) -> usize {
    svg.split("<polyline")
        .skip(1)
        .filter_map(|p| p.split("points=\"").nth(1)?.split('"').next())
        .map(|points| points.split_whitespace().count())
        .max()
        .unwrap_or(0)
}

#[test]
fn train_plots_loss_and_test_metrics_per_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let data = write_mnist_dir(d, 200, 60);
    let model = new_mlp(d, "16,16,3");
    let svg_path = d.join("curve.svg");
    // 200 examples / batch 20 = 10 steps per epoch; 25 steps end inside the third epoch,
    // which is evaluated too.
    let o = nnc(&[
        "train",
        model.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--batch",
        "20",
        "--steps",
        "25",
        "--lr",
        "0.5",
        "-q",
        "--plot",
        svg_path.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("wrote"), "{}", stderr(&o));
    let svg = std::fs::read_to_string(&svg_path).unwrap();
    let (elements, texts) = parse_svg(&svg);
    // Raw loss, smoothed loss, test loss, test accuracy (and legend samples).
    assert!(elements.iter().filter(|e| *e == "polyline").count() >= 4, "{elements:?}");
    assert_eq!(longest_polyline(&svg), 25, "one point per step");
    // Three test points for the loss and three for the accuracy.
    assert!(elements.iter().filter(|e| *e == "circle").count() >= 6, "{elements:?}");
    for label in ["step", "loss", "test accuracy (%)", "training loss (each step)", "test loss (end of each epoch)"] {
        assert!(texts.iter().any(|t| t == label), "no text {label:?} in {texts:?}");
    }
    let title = texts.first().expect("a title");
    assert!(title.contains("toy.onnx") && title.contains("SGD") && title.contains("lr 0.5"), "{title}");
    assert!(title.contains("batch 20") && title.contains("toy-mnist"), "{title}");
    assert!(texts.iter().any(|t| t.ends_with('%') && t.parse::<f32>().is_err()), "the final accuracy: {texts:?}");
    assert!(!svg.contains("NaN"), "non-finite coordinates");
}

#[test]
fn without_a_test_set_the_plot_is_the_loss_curve() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (x, y) = write_npy(d, 120, 8);
    let model = new_mlp(d, "8,16,3");
    let svg_path = d.join("loss.svg");
    let o = nnc(&[
        "train",
        model.to_str().unwrap(),
        "--inputs",
        x.to_str().unwrap(),
        "--labels",
        y.to_str().unwrap(),
        "--batch",
        "20",
        "--steps",
        "40",
        "--optimizer",
        "adam",
        "--lr",
        "0.01",
        "-q",
        "--plot",
        svg_path.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let svg = std::fs::read_to_string(&svg_path).unwrap();
    let (elements, texts) = parse_svg(&svg);
    assert_eq!(longest_polyline(&svg), 40);
    assert!(!elements.iter().any(|e| e == "circle"), "no test points: {elements:?}");
    for label in ["step", "loss", "training loss (each step)"] {
        assert!(texts.iter().any(|t| t == label), "no text {label:?} in {texts:?}");
    }
    assert!(!texts.iter().any(|t| t.contains("test")), "no test curves: {texts:?}");
    assert!(texts[0].contains("Adam") && texts[0].contains("x.npy"), "{}", texts[0]);
}

#[test]
fn a_bad_plot_path_fails_before_training_and_leaves_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (x, y) = write_npy(d, 20, 8);
    let model = new_mlp(d, "8,16,3");
    let out = d.join("trained.onnx");
    let run = |plot: &Path| {
        let o = nnc(&[
            "train",
            model.to_str().unwrap(),
            "--inputs",
            x.to_str().unwrap(),
            "--labels",
            y.to_str().unwrap(),
            "--steps",
            "1",
            "--out",
            out.to_str().unwrap(),
            "--plot",
            plot.to_str().unwrap(),
        ]);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{err}");
        assert_eq!(err.lines().count(), 1, "one line, and nothing from training before it:\n{err}");
        assert!(err.starts_with("error: ") && !err.contains("panicked"), "{err}");
        err
    };
    let missing = d.join("no-such-dir").join("curve.svg");
    let err = run(&missing);
    assert!(err.contains("no-such-dir") && err.contains("does not exist"), "{err}");
    assert!(!missing.exists() && !d.join("no-such-dir").exists());

    let png = d.join("curve.png");
    let err = run(&png);
    assert!(err.contains("curve.png") && err.contains(".svg"), "{err}");
    assert!(!png.exists());
    assert!(!out.exists(), "no model written by a refused run");
    let left: Vec<_> = std::fs::read_dir(d).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(left.len(), 3, "only the data and the model remain: {left:?}");
}

#[test]
fn smoothing_is_a_centred_moving_average() {
    // Window of 3 (half 1), cut at the ends.
    let got = plot::moving_average(&[1.0, 2.0, 6.0, 1.0, 0.0], 1);
    assert_eq!(got, vec![1.5, 3.0, 3.0, 7.0 / 3.0, 0.5]);
    // Half 0 is the identity; a window wider than the data is the running mean of
    // everything in reach.
    assert_eq!(plot::moving_average(&[3.0, 1.0, 2.0], 0), vec![3.0, 1.0, 2.0]);
    assert_eq!(plot::moving_average(&[3.0, 1.0, 2.0], 10), vec![2.0, 2.0, 2.0]);
    assert!(plot::moving_average(&[], 5).is_empty());
    // Against the definition, on a long noisy series with the default window.
    let values: Vec<f32> = (0..1000).map(|i| 2.0 / (1.0 + i as f32 / 100.0) + ((i * 37) % 11) as f32 / 20.0).collect();
    let half = plot::half_window(values.len());
    assert_eq!(half, plot::MAX_HALF_WINDOW);
    let smooth = plot::moving_average(&values, half);
    for (i, &s) in smooth.iter().enumerate() {
        let window = &values[i.saturating_sub(half)..(i + half + 1).min(values.len())];
        let mean = window.iter().map(|&v| f64::from(v)).sum::<f64>() / window.len() as f64;
        assert!((f64::from(s) - mean).abs() < 1e-5, "step {i}: {s} vs {mean}");
    }
    // It smooths: the step-to-step variation falls by far.
    let roughness = |v: &[f32]| v.windows(2).map(|w| (w[1] - w[0]).abs()).sum::<f32>();
    assert!(roughness(&smooth) < 0.1 * roughness(&values));
    // Short runs get a narrower window.
    assert_eq!(plot::half_window(40), 4);
    assert_eq!(plot::half_window(5), 0);
}

#[test]
fn test_points_sit_at_the_end_of_each_epoch() {
    use nnc_train::{EpochReport, Metrics, Plan, TrainReport};
    use std::time::Duration;
    let epoch = |epoch, steps, complete, test: Option<(f32, f32)>| EpochReport {
        epoch,
        steps,
        complete,
        train: Metrics { loss: 1.0, accuracy: None, examples: 10 },
        test: test.map(|(loss, a)| Metrics { loss, accuracy: Some(a), examples: 50 }),
        time: Duration::from_millis(1),
    };
    let report = TrainReport {
        backend: "test".into(),
        plan: Plan { total_steps: 25, steps_per_epoch: 10, epochs: 3, train_examples: 100, test_examples: Some(50) },
        losses: (0..25).map(|i| 2.0 - i as f32 / 20.0).collect(),
        epochs: vec![
            epoch(1, 10, true, Some((1.5, 0.5))),
            epoch(2, 10, true, Some((1.0, 0.75))),
            epoch(3, 5, false, Some((0.8, 0.8))),
        ],
        steps: 25,
        examples: 250,
        train_time: Duration::from_millis(3),
        eval_time: Duration::ZERO,
        total_time: Duration::from_millis(3),
        stopped_early: false,
    };
    let curves = plot::Curves::from_report("t", &report);
    let steps: Vec<u64> = curves.test.iter().map(|t| t.step).collect();
    assert_eq!(steps, [10, 20, 25]);
    assert_eq!(curves.losses.len(), 25);
    let svg = plot::render_svg(&curves).unwrap();
    let (_, texts) = parse_svg(&svg);
    assert!(texts.iter().any(|t| t == "80.00%"), "{texts:?}");
    // Skipped steps (`--on-nan skip`) record no loss: fewer losses than steps still
    // draws, with the step axis reaching the last test point.
    let mut skipped = curves.clone();
    skipped.losses.truncate(22);
    let (_, texts) = parse_svg(&plot::render_svg(&skipped).unwrap());
    assert!(texts.iter().any(|t| t == "25"), "the step axis reaches 25: {texts:?}");
    // No steps, nothing to draw: an error, not an empty picture.
    let empty = plot::Curves { title: "t".into(), losses: vec![], test: vec![] };
    assert!(plot::render_svg(&empty).is_err());
}
