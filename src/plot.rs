//! Training curves as an SVG image, for `nnc train --plot`: the training loss of every
//! step (raw, and smoothed by a centred moving average) and, when a test set was
//! evaluated, the test loss and accuracy after each epoch, on the same step axis.
//!
//! The image is rendered to a string (plotters' SVG backend, no font or bitmap
//! dependencies: text is left to the SVG viewer); the caller writes it to a file.

use anyhow::{anyhow, Result};
use nnc_train::TrainReport;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// Half the moving-average window at most: the smoothed loss at a step is the mean of
/// the losses at most this many steps before and after it (51 steps in all).
pub const MAX_HALF_WINDOW: usize = 25;

const WIDTH: u32 = 1000;
const LOSS_HEIGHT: u32 = 480;
const ACCURACY_HEIGHT: u32 = 280;
const FONT: &str = "sans-serif";

const RAW: RGBColor = RGBColor(158, 202, 225);
const SMOOTH: RGBColor = RGBColor(31, 100, 180);
const TEST_LOSS: RGBColor = RGBColor(230, 110, 20);
const ACCURACY: RGBColor = RGBColor(30, 140, 60);

/// The test set's metrics after one epoch, placed at the epoch's last step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TestPoint {
    /// The step (1-based, over the whole run) after which the test set was evaluated.
    pub step: u64,
    pub epoch: usize,
    pub loss: f32,
    /// A fraction in [0, 1] (classification only).
    pub accuracy: Option<f32>,
}

/// What one chart shows.
#[derive(Clone, Debug, PartialEq)]
pub struct Curves {
    pub title: String,
    /// The training loss of every step, in order.
    pub losses: Vec<f32>,
    /// Test-set metrics per evaluated epoch; may be empty (no test set, or a run
    /// stopped before its first evaluation).
    pub test: Vec<TestPoint>,
}

impl Curves {
    /// The curves of a finished run.
    pub fn from_report(title: impl Into<String>, report: &TrainReport) -> Curves {
        let mut step = 0;
        let mut test = Vec::new();
        for e in &report.epochs {
            step += e.steps;
            if let Some(m) = e.test {
                test.push(TestPoint { step, epoch: e.epoch, loss: m.loss, accuracy: m.accuracy });
            }
        }
        Curves { title: title.into(), losses: report.losses.clone(), test }
    }
}

/// The half-width of the moving average for a run of `steps` steps: a tenth of the
/// run, at most [`MAX_HALF_WINDOW`], so short runs are not flattened.
pub fn half_window(steps: usize) -> usize {
    (steps / 10).min(MAX_HALF_WINDOW)
}

/// Centred moving average: element `i` is the mean of `values[i - half ..= i + half]`,
/// the window cut at both ends of the slice (so the first and last values are means
/// of fewer elements). Summed in f64.
pub fn moving_average(values: &[f32], half: usize) -> Vec<f32> {
    let mut prefix = Vec::with_capacity(values.len() + 1);
    prefix.push(0.0f64);
    for &v in values {
        prefix.push(prefix.last().copied().unwrap_or(0.0) + f64::from(v));
    }
    (0..values.len())
        .map(|i| {
            let (lo, hi) = (i.saturating_sub(half), (i + half + 1).min(values.len()));
            ((prefix[hi] - prefix[lo]) / (hi - lo) as f64) as f32
        })
        .collect()
}

/// The chart as an SVG document: a loss panel, and below it a test-accuracy panel when
/// some epoch has a test accuracy.
pub fn render_svg(curves: &Curves) -> Result<String> {
    if curves.losses.is_empty() {
        return Err(anyhow!("there is no training loss to plot"));
    }
    let with_accuracy = curves.test.iter().any(|t| t.accuracy.is_some());
    let height = LOSS_HEIGHT + if with_accuracy { ACCURACY_HEIGHT } else { 0 };
    let mut svg = String::new();
    draw(curves, &mut svg, height, with_accuracy).map_err(|e| anyhow!("cannot draw the training curves: {e}"))?;
    Ok(svg)
}

type DrawResult = std::result::Result<(), Box<dyn std::error::Error>>;
type Area<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;

fn draw(curves: &Curves, svg: &mut String, height: u32, with_accuracy: bool) -> DrawResult {
    let root = SVGBackend::with_string(svg, (WIDTH, height)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(&curves.title, (FONT, 22))?;
    let (loss_area, accuracy_area) = if with_accuracy {
        let (top, bottom) = root.split_vertically(LOSS_HEIGHT - 30);
        (top, Some(bottom))
    } else {
        (root, None)
    };
    // Test points sit at step numbers, which can pass the count of losses when steps
    // were skipped (`--on-nan skip` records no loss for them).
    let steps = curves.test.iter().map(|t| t.step).fold(curves.losses.len() as u64, u64::max);
    draw_losses(curves, &loss_area, steps)?;
    if let Some(area) = accuracy_area {
        draw_accuracy(curves, &area, steps)?;
    }
    loss_area.present()?;
    Ok(())
}

fn draw_losses(curves: &Curves, area: &Area, steps: u64) -> DrawResult {
    let half = half_window(curves.losses.len());
    let smooth = moving_average(&curves.losses, half);
    // The axis covers every loss, unless a spike of the raw loss would flatten the rest:
    // it then stops at 3 times the highest smoothed or test loss, and the spike is cut.
    let peak = smooth.iter().chain(curves.test.iter().map(|t| &t.loss)).fold(0.0f32, |m, &v| m.max(v));
    let raw_peak = curves.losses.iter().fold(0.0f32, |m, &v| m.max(v));
    let top = raw_peak.clamp(peak, 3.0 * peak) * 1.05;
    let top = if top > 0.0 && top.is_finite() { top } else { 1.0 };

    let mut chart = ChartBuilder::on(area)
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0..steps.max(1), 0f32..top)?;
    chart
        .configure_mesh()
        .x_desc("step")
        .y_desc("loss")
        .label_style((FONT, 14))
        .axis_desc_style((FONT, 16))
        .light_line_style(WHITE.mix(0.0))
        .bold_line_style(BLACK.mix(0.08))
        .draw()?;

    let points = |values: Vec<f32>| values.into_iter().enumerate().map(|(i, v)| (i as u64 + 1, v.min(top)));
    chart
        .draw_series(LineSeries::new(points(curves.losses.clone()), RAW.stroke_width(1)))?
        .label("training loss (each step)")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], RAW.stroke_width(2)));
    chart
        .draw_series(LineSeries::new(points(smooth), SMOOTH.stroke_width(2)))?
        .label(format!("training loss (mean of {} steps)", 2 * half + 1))
        .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], SMOOTH.stroke_width(2)));
    if !curves.test.is_empty() {
        let test: Vec<(u64, f32)> = curves.test.iter().map(|t| (t.step, t.loss.min(top))).collect();
        chart
            .draw_series(LineSeries::new(test.clone(), TEST_LOSS.stroke_width(2)))?
            .label("test loss (end of each epoch)")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], TEST_LOSS.stroke_width(2)));
        chart.draw_series(test.into_iter().map(|p| Circle::new(p, 4, TEST_LOSS.filled())))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .label_font((FONT, 14))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .draw()?;
    Ok(())
}

fn draw_accuracy(curves: &Curves, area: &Area, steps: u64) -> DrawResult {
    let points: Vec<(u64, f32)> = curves
        .test
        .iter()
        .filter_map(|t| t.accuracy.map(|a| (t.step, 100.0 * a)))
        .filter(|p| p.1.is_finite())
        .collect();
    let (lo, hi) = points.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), p| (lo.min(p.1), hi.max(p.1)));
    // Whole multiples of 5 around the values, within 0..100.
    let lo = ((lo - 2.0) / 5.0).floor().clamp(0.0, 19.0) * 5.0;
    let hi = (((hi + 2.0) / 5.0).ceil() * 5.0).clamp(lo + 5.0, 100.0);

    let mut chart = ChartBuilder::on(area)
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0..steps.max(1), lo..hi)?;
    chart
        .configure_mesh()
        .x_desc("step")
        .y_desc("test accuracy (%)")
        .y_label_formatter(&|v| format!("{v:.0}"))
        .label_style((FONT, 14))
        .axis_desc_style((FONT, 16))
        .light_line_style(WHITE.mix(0.0))
        .bold_line_style(BLACK.mix(0.08))
        .draw()?;
    chart
        .draw_series(LineSeries::new(points.clone(), ACCURACY.stroke_width(2)))?
        .label("test accuracy (end of each epoch)")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], ACCURACY.stroke_width(2)));
    chart.draw_series(points.iter().map(|&p| Circle::new(p, 4, ACCURACY.filled())))?;
    if let Some(&(step, accuracy)) = points.last() {
        let style = TextStyle::from((FONT, 14).into_font()).color(&ACCURACY).pos(Pos::new(HPos::Right, VPos::Bottom));
        chart.draw_series(std::iter::once(Text::new(format!("{accuracy:.2}%"), (step, accuracy), style)))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .label_font((FONT, 14))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .draw()?;
    Ok(())
}
