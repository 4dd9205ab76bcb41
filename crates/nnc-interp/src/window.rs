//! Convolutions and pooling on ndarray, written as the sums of their definitions
//! (`nnc_ir::Op::Conv` and the others) in one fixed order: the oracle for every
//! faster kernel, so plain loops over a table of taps.
//!
//! Tensors are `[N, C, spatial..]` in row-major order. The spatial axes are flattened:
//! [`Taps`] lists, for every output position and every kernel tap, the flat input
//! position it reads, or padding.

use ndarray::{ArrayD, IxDyn};
use nnc_ir::{Conv, Pool, PoolKind, Window};

/// Where each tap of each output position reads, for one window over one input size.
struct Taps {
    /// Output positions (the product of the output's spatial sizes).
    outputs: usize,
    /// Taps per window (the product of the kernel's sizes).
    taps: usize,
    /// `index[o·taps + k]`: the flat input position tap `k` of output `o` reads, or
    /// `None` for padding.
    index: Vec<Option<usize>>,
    /// Per output position: the taps inside the padded input (average pooling's
    /// divisor with `count_include_pad`).
    in_padded: Vec<usize>,
}

impl Taps {
    fn new(w: &Window, input: &[usize], output: &[usize]) -> Taps {
        let r = w.rank();
        let outputs: usize = output.iter().product();
        let taps: usize = w.kernel.iter().product();
        // Per axis, per output position: the input index of each tap, and the count
        // inside the padded input.
        let axes: Vec<Vec<(Vec<Option<usize>>, usize)>> =
            (0..r).map(|i| (0..output[i]).map(|o| nnc_ir::window::taps(w, i, o, input[i])).collect()).collect();
        let mut index = Vec::with_capacity(outputs * taps);
        let mut in_padded = Vec::with_capacity(outputs);
        for o in multi_indices(output) {
            in_padded.push((0..r).map(|i| axes[i][o[i]].1).product());
            for k in multi_indices(&w.kernel) {
                let mut flat = Some(0usize);
                for i in 0..r {
                    flat = match (flat, axes[i][o[i]].0[k[i]]) {
                        (Some(f), Some(p)) => Some(f * input[i] + p),
                        _ => None,
                    };
                }
                index.push(flat);
            }
        }
        Taps { outputs, taps, index, in_padded }
    }

    fn of(&self, o: usize) -> &[Option<usize>] {
        &self.index[o * self.taps..(o + 1) * self.taps]
    }
}

/// Every multi-index below `sizes`, in row-major order.
fn multi_indices(sizes: &[usize]) -> impl Iterator<Item = Vec<usize>> + '_ {
    let total: usize = sizes.iter().product();
    (0..total).map(move |mut flat| {
        let mut idx = vec![0; sizes.len()];
        for i in (0..sizes.len()).rev() {
            idx[i] = flat % sizes[i];
            flat /= sizes[i];
        }
        idx
    })
}

/// `[N, C, spatial..]` of an operand, checked against the window's rank.
fn image_dims(shape: &[usize], w: &Window, what: &str) -> Result<(usize, usize, Vec<usize>), String> {
    if shape.len() != w.rank() + 2 {
        return Err(format!("the {what} has rank {}, the window {} spatial axes", shape.len(), w.rank()));
    }
    Ok((shape[0], shape[1], shape[2..].to_vec()))
}

fn standard(a: &ArrayD<f32>) -> Vec<f32> {
    a.iter().copied().collect()
}

fn array(dims: Vec<usize>, data: Vec<f32>) -> Result<ArrayD<f32>, String> {
    ArrayD::from_shape_vec(IxDyn(&dims), data).map_err(|e| e.to_string())
}

/// The sizes a convolution relates: batch, channels, groups and positions.
struct ConvDims {
    n: usize,
    groups: usize,
    /// Input and output channels per group.
    cg: usize,
    mg: usize,
    input: Vec<usize>,
    output: Vec<usize>,
}

impl ConvDims {
    fn new(conv: &Conv, n: usize, c: usize, m: usize, input: Vec<usize>) -> Result<ConvDims, String> {
        let g = conv.groups;
        if g == 0 || !c.is_multiple_of(g) || !m.is_multiple_of(g) {
            return Err(format!("{c} input and {m} output channels do not split into {g} groups"));
        }
        let output = conv.window.output_size(&input, false)?;
        Ok(ConvDims { n, groups: g, cg: c / g, mg: m / g, input, output })
    }

    fn in_size(&self) -> usize {
        self.input.iter().product()
    }

    fn out_size(&self) -> usize {
        self.output.iter().product()
    }

    fn image(&self, channels: usize, spatial: &[usize]) -> Vec<usize> {
        [self.n, channels].iter().chain(spatial).copied().collect()
    }
}

/// `y[n, m, o] = Σ_c Σ_k w[m, c, k] · x[n, g·cg + c, tap(o, k)]`, summed over `c`
/// then `k` from zero.
pub(crate) fn conv(x: &ArrayD<f32>, w: &ArrayD<f32>, conv: &Conv) -> Result<ArrayD<f32>, String> {
    let (n, c, input) = image_dims(x.shape(), &conv.window, "input")?;
    let m = w.shape()[0];
    let d = ConvDims::new(conv, n, c, m, input)?;
    check_weight(w.shape(), &d, conv)?;
    let taps = Taps::new(&conv.window, &d.input, &d.output);
    let (xs, ws) = (standard(x), standard(w));
    let (is, os, kt) = (d.in_size(), d.out_size(), taps.taps);
    let mut y = vec![0f32; n * m * os];
    for b in 0..n {
        for g in 0..d.groups {
            for mo in g * d.mg..(g + 1) * d.mg {
                for o in 0..os {
                    let mut acc = 0f32;
                    for ci in 0..d.cg {
                        let plane = &xs[(b * c + g * d.cg + ci) * is..][..is];
                        let wk = &ws[(mo * d.cg + ci) * kt..][..kt];
                        for (k, tap) in taps.of(o).iter().enumerate() {
                            if let Some(p) = tap {
                                acc += wk[k] * plane[*p];
                            }
                        }
                    }
                    y[(b * m + mo) * os + o] = acc;
                }
            }
        }
    }
    array(d.image(m, &d.output), y)
}

/// `dx[n, g·cg + c, i] = Σ_m Σ_{(o, k) reading i} w[m, c, k] · dy[n, m, o]`, summed
/// over `m`, then `o`, then `k`.
pub(crate) fn conv_backward_data(
    dy: &ArrayD<f32>,
    w: &ArrayD<f32>,
    conv: &Conv,
    input: &[usize],
) -> Result<ArrayD<f32>, String> {
    let (n, m, output) = image_dims(dy.shape(), &conv.window, "output gradient")?;
    let c = w.shape()[1] * conv.groups;
    let d = ConvDims::new(conv, n, c, m, input.to_vec())?;
    check_weight(w.shape(), &d, conv)?;
    if d.output != output {
        return Err(format!("an input of {input:?} gives an output of {:?}, not {output:?}", d.output));
    }
    let taps = Taps::new(&conv.window, &d.input, &d.output);
    let (dys, ws) = (standard(dy), standard(w));
    let (is, os, kt) = (d.in_size(), d.out_size(), taps.taps);
    let mut dx = vec![0f32; n * c * is];
    for b in 0..n {
        for g in 0..d.groups {
            for ci in 0..d.cg {
                let plane = &mut dx[(b * c + g * d.cg + ci) * is..][..is];
                for mo in g * d.mg..(g + 1) * d.mg {
                    let wk = &ws[(mo * d.cg + ci) * kt..][..kt];
                    let grad = &dys[(b * m + mo) * os..][..os];
                    for (o, &gy) in grad.iter().enumerate() {
                        for (k, tap) in taps.of(o).iter().enumerate() {
                            if let Some(p) = tap {
                                plane[*p] += wk[k] * gy;
                            }
                        }
                    }
                }
            }
        }
    }
    array(d.image(c, input), dx)
}

/// `dw[m, c, k] = Σ_n Σ_o x[n, g·cg + c, tap(o, k)] · dy[n, m, o]`, summed over `n`
/// then `o`.
pub(crate) fn conv_backward_filter(x: &ArrayD<f32>, dy: &ArrayD<f32>, conv: &Conv) -> Result<ArrayD<f32>, String> {
    let (n, c, input) = image_dims(x.shape(), &conv.window, "input")?;
    let (ny, m, output) = image_dims(dy.shape(), &conv.window, "output gradient")?;
    let d = ConvDims::new(conv, n, c, m, input)?;
    if ny != n || d.output != output {
        return Err(format!("input {:?} does not match the output gradient {:?}", x.shape(), dy.shape()));
    }
    let taps = Taps::new(&conv.window, &d.input, &d.output);
    let (xs, dys) = (standard(x), standard(dy));
    let (is, os, kt) = (d.in_size(), d.out_size(), taps.taps);
    let mut dw = vec![0f32; m * d.cg * kt];
    for g in 0..d.groups {
        for mo in g * d.mg..(g + 1) * d.mg {
            for ci in 0..d.cg {
                let wk = &mut dw[(mo * d.cg + ci) * kt..][..kt];
                for (k, acc) in wk.iter_mut().enumerate() {
                    for b in 0..n {
                        let plane = &xs[(b * c + g * d.cg + ci) * is..][..is];
                        let grad = &dys[(b * m + mo) * os..][..os];
                        for (o, &gy) in grad.iter().enumerate() {
                            if let Some(p) = taps.of(o)[k] {
                                *acc += plane[p] * gy;
                            }
                        }
                    }
                }
            }
        }
    }
    let dims: Vec<usize> = [m, d.cg].iter().chain(&conv.window.kernel).copied().collect();
    array(dims, dw)
}

fn check_weight(shape: &[usize], d: &ConvDims, conv: &Conv) -> Result<(), String> {
    let expected: Vec<usize> = [d.mg * d.groups, d.cg].iter().chain(&conv.window.kernel).copied().collect();
    if shape != expected {
        return Err(format!("weight {shape:?} does not fit the convolution (expected {expected:?})"));
    }
    Ok(())
}

/// The divisor of an average window: its counted taps.
fn divisor(pool: &Pool, taps: &Taps, o: usize) -> f32 {
    match pool.kind {
        PoolKind::Avg { count_include_pad: true } => taps.in_padded[o] as f32,
        _ => taps.of(o).iter().filter(|t| t.is_some()).count() as f32,
    }
}

/// Max: the largest tap inside the input (padding never wins; the first of equal
/// maxima is the one the gradient goes to). Average: the taps' sum in tap order over
/// the divisor.
pub(crate) fn pool(x: &ArrayD<f32>, pool: &Pool) -> Result<ArrayD<f32>, String> {
    let (n, c, input) = image_dims(x.shape(), &pool.window, "input")?;
    pool.check()?;
    let output = pool.window.output_size(&input, pool.ceil_mode)?;
    let taps = Taps::new(&pool.window, &input, &output);
    let xs = standard(x);
    let (is, os) = (input.iter().product::<usize>(), taps.outputs);
    let mut y = Vec::with_capacity(n * c * os);
    for plane in xs.chunks_exact(is.max(1)).take(n * c) {
        for o in 0..os {
            let inside = taps.of(o).iter().filter_map(|t| t.map(|p| plane[p]));
            y.push(match pool.kind {
                PoolKind::Max => inside.fold(f32::NEG_INFINITY, |best, v| if v > best { v } else { best }),
                PoolKind::Avg { .. } => inside.fold(0.0, |s, v| s + v) / divisor(pool, &taps, o),
            });
        }
    }
    let dims: Vec<usize> = [n, c].iter().chain(&output).copied().collect();
    array(dims, y)
}

/// Max: each window's gradient added at its first maximal tap. Average: each
/// window's gradient over its divisor, added at every tap inside the input. Windows
/// in output order, taps in tap order.
pub(crate) fn pool_backward(
    x: Option<&ArrayD<f32>>,
    dy: &ArrayD<f32>,
    pool: &Pool,
    input: &[usize],
) -> Result<ArrayD<f32>, String> {
    let (n, c, output) = image_dims(dy.shape(), &pool.window, "output gradient")?;
    pool.check()?;
    if pool.window.output_size(input, pool.ceil_mode)? != output {
        return Err(format!("an input of {input:?} does not give an output of {output:?}"));
    }
    let taps = Taps::new(&pool.window, input, &output);
    let is: usize = input.iter().product();
    let os = taps.outputs;
    let xs = match (pool.kind, x) {
        (PoolKind::Max, Some(x)) => {
            let expected: Vec<usize> = [n, c].iter().chain(input).copied().collect();
            if x.shape() != expected {
                return Err(format!("input {:?} does not match the output gradient {:?}", x.shape(), dy.shape()));
            }
            standard(x)
        }
        (PoolKind::Max, None) => return Err("max pooling's gradient needs the input".into()),
        (PoolKind::Avg { .. }, _) => Vec::new(),
    };
    let dys = standard(dy);
    let mut dx = vec![0f32; n * c * is];
    for (plane_index, grad) in dys.chunks_exact(os.max(1)).take(n * c).enumerate() {
        let plane = &mut dx[plane_index * is..][..is];
        for (o, &gy) in grad.iter().enumerate() {
            match pool.kind {
                PoolKind::Max => {
                    let xp = &xs[plane_index * is..][..is];
                    let mut best: Option<usize> = None;
                    for p in taps.of(o).iter().flatten() {
                        if best.is_none_or(|b| xp[*p] > xp[b]) {
                            best = Some(*p);
                        }
                    }
                    if let Some(b) = best {
                        plane[b] += gy;
                    }
                }
                PoolKind::Avg { .. } => {
                    let share = gy / divisor(pool, &taps, o);
                    for p in taps.of(o).iter().flatten() {
                        plane[*p] += share;
                    }
                }
            }
        }
    }
    let dims: Vec<usize> = [n, c].iter().chain(input).copied().collect();
    array(dims, dx)
}
