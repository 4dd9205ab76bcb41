//! Sliding windows over the spatial axes of an `[N, C, spatial..]` tensor: the
//! geometry convolutions and pooling share, and its one output-size rule.
//!
//! A window of `kernel[i]` taps, `dilations[i]` apart, starts at `o·strides[i] −
//! pads_begin[i]` for output position `o`; taps outside `[0, input)` read padding.
//! The output size on an axis is `⌊(input + pads_begin + pads_end − extent) / stride⌋ + 1`
//! with `extent = (kernel − 1)·dilation + 1`, rounded up instead in pooling's
//! `ceil_mode`, where a last window that would start in the end padding is dropped
//! (ONNX's and PyTorch's rule).

use std::fmt;

/// The geometry of a convolution's or a pooling's window; one entry per spatial axis.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Window {
    pub kernel: Vec<usize>,
    pub strides: Vec<usize>,
    pub dilations: Vec<usize>,
    pub pads_begin: Vec<usize>,
    pub pads_end: Vec<usize>,
}

impl Window {
    /// A window with unit strides and dilations and no padding.
    pub fn new(kernel: &[usize]) -> Window {
        let r = kernel.len();
        Window {
            kernel: kernel.to_vec(),
            strides: vec![1; r],
            dilations: vec![1; r],
            pads_begin: vec![0; r],
            pads_end: vec![0; r],
        }
    }

    /// The number of spatial axes.
    pub fn rank(&self) -> usize {
        self.kernel.len()
    }

    /// The span of input positions one window covers on axis `i`.
    pub fn extent(&self, i: usize) -> usize {
        (self.kernel[i] - 1) * self.dilations[i] + 1
    }

    /// The window's own consistency: one entry per axis in every list, sizes at least 1.
    pub fn check(&self) -> Result<(), String> {
        let r = self.rank();
        if r == 0 {
            return Err("needs at least one spatial axis".into());
        }
        for (what, list) in [
            ("strides", &self.strides),
            ("dilations", &self.dilations),
            ("pads_begin", &self.pads_begin),
            ("pads_end", &self.pads_end),
        ] {
            if list.len() != r {
                return Err(format!("{what} has {} entries for {r} spatial axes", list.len()));
            }
        }
        for (what, list) in [("kernel", &self.kernel), ("strides", &self.strides), ("dilations", &self.dilations)] {
            if let Some(i) = list.iter().position(|&v| v == 0) {
                return Err(format!("{what} must be at least 1 (axis {i})"));
            }
        }
        // Sizes come from files: keep every product the kernels form far from overflow.
        const LIMIT: usize = 1 << 24;
        for (what, list) in [
            ("kernel", &self.kernel),
            ("strides", &self.strides),
            ("dilations", &self.dilations),
            ("pads_begin", &self.pads_begin),
            ("pads_end", &self.pads_end),
        ] {
            if let Some(&v) = list.iter().find(|&&v| v > LIMIT) {
                return Err(format!("{what} entry {v} is too large"));
            }
        }
        Ok(())
    }

    /// The output's spatial sizes for the given input sizes, or why there is none.
    pub fn output_size(&self, input: &[usize], ceil_mode: bool) -> Result<Vec<usize>, String> {
        self.check()?;
        if input.len() != self.rank() {
            return Err(format!("a {}-axis window over {} spatial axes", self.rank(), input.len()));
        }
        (0..self.rank())
            .map(|i| {
                let padded = input[i] + self.pads_begin[i] + self.pads_end[i];
                let extent = self.extent(i);
                if extent > padded {
                    return Err(format!(
                        "the window spans {extent} on spatial axis {i}, more than the padded input's {padded} \
                         ({} + pads {}+{})",
                        input[i], self.pads_begin[i], self.pads_end[i]
                    ));
                }
                let span = padded - extent;
                let s = self.strides[i];
                let mut out = span / s + 1;
                if ceil_mode && !span.is_multiple_of(s) {
                    out += 1;
                    if (out - 1) * s >= input[i] + self.pads_begin[i] {
                        out -= 1;
                    }
                }
                Ok(out)
            })
            .collect()
    }

    /// The text form's attributes: the kernel, then each list that differs from its
    /// default (unit strides and dilations, no padding); pads in ONNX's order, all
    /// begins then all ends.
    fn attributes(&self) -> Vec<String> {
        let mut attrs = vec![format!("kernel={}", list(&self.kernel))];
        if self.strides.iter().any(|&s| s != 1) {
            attrs.push(format!("strides={}", list(&self.strides)));
        }
        if self.dilations.iter().any(|&d| d != 1) {
            attrs.push(format!("dilations={}", list(&self.dilations)));
        }
        if self.pads_begin.iter().chain(&self.pads_end).any(|&p| p != 0) {
            let pads: Vec<usize> = self.pads_begin.iter().chain(&self.pads_end).copied().collect();
            attrs.push(format!("pads={}", list(&pads)));
        }
        attrs
    }
}

fn list(items: &[usize]) -> String {
    let parts: Vec<String> = items.iter().map(|i| i.to_string()).collect();
    format!("[{}]", parts.join(","))
}

/// A convolution's attributes: its window (the kernel's spatial sizes included) and
/// the number of channel groups. Input channels `C` and output channels `M` are both
/// split into `groups` equal parts; output group `g` reads input group `g` only.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Conv {
    pub window: Window,
    pub groups: usize,
}

impl Conv {
    /// The attributes in the text form's order, defaults omitted.
    pub fn attributes(&self) -> Vec<String> {
        let mut attrs = self.window.attributes();
        if self.groups != 1 {
            attrs.push(format!("groups={}", self.groups));
        }
        attrs
    }
}

/// What a pooling window computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PoolKind {
    /// The maximum of the taps inside the input (padding never wins).
    Max,
    /// The mean of the taps inside the input, or, with `count_include_pad`, their sum
    /// over the number of taps inside the padded input (taps past the end padding,
    /// which only `ceil_mode` makes, are never counted).
    Avg { count_include_pad: bool },
}

/// A pooling's attributes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Pool {
    pub kind: PoolKind,
    pub window: Window,
    pub ceil_mode: bool,
}

impl Pool {
    /// The attributes in the text form's order, defaults omitted.
    pub fn attributes(&self) -> Vec<String> {
        let mut attrs = self.window.attributes();
        if self.ceil_mode {
            attrs.push("ceil_mode".into());
        }
        if let PoolKind::Avg { count_include_pad: true } = self.kind {
            attrs.push("count_include_pad".into());
        }
        attrs
    }

    /// Checks what convolutions allow but pooling does not: a window that lies
    /// wholly in the padding would have no input to pool.
    pub fn check(&self) -> Result<(), String> {
        self.window.check()?;
        let w = &self.window;
        for i in 0..w.rank() {
            if w.pads_begin[i] >= w.extent(i) || w.pads_end[i] >= w.extent(i) {
                return Err(format!(
                    "pads {}+{} on spatial axis {i} must each be smaller than the window's span {}",
                    w.pads_begin[i],
                    w.pads_end[i],
                    w.extent(i)
                ));
            }
        }
        Ok(())
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.attributes().join(", "))
    }
}

/// The taps of one output position along one axis: for each tap `j < kernel`, the
/// input index it reads, or `None` where it reads padding; and how many taps lie
/// inside the padded input (pooling's `count_include_pad` divisor).
pub fn taps(w: &Window, axis: usize, out: usize, input: usize) -> (Vec<Option<usize>>, usize) {
    let start = (out * w.strides[axis]) as isize - w.pads_begin[axis] as isize;
    let padded_end = (input + w.pads_end[axis]) as isize;
    let mut in_padded = 0;
    let idx = (0..w.kernel[axis])
        .map(|j| {
            let p = start + (j * w.dilations[axis]) as isize;
            if p < padded_end {
                in_padded += 1;
            }
            (p >= 0 && p < input as isize).then_some(p as usize)
        })
        .collect();
    (idx, in_padded)
}
