//! Which kernel a convolution or pooling gets: the implicit product on the tiles
//! (`program::ConvGemm`) where its shape has one, else the direct kernel
//! (`program::WindowKernel`), which computes every window op in the interpreter's
//! order. The choice depends on the op's shape only, never on the kernel family or
//! the threads, so a model's bits do not either.

use super::body::window_kernel;
use super::{Lowering, TWO_BATCH};
use crate::microkernel::{GemmShape, KernelFamily};
use crate::program::{Body, ConvGemm, ConvGemmOp, WindowKernel, WindowOp};
use nnc_ir::{PoolKind, Size, ValueId};

/// The most stack a product may take for its gathered K block and what it stages.
const MAX_STACK_BYTES: u64 = 384 << 10;
/// The most taps the row kernel of a direct convolution unrolls.
const MAX_ROW_TAPS: u64 = 64;
/// A forward product with fewer column panels per image than this splits its output
/// channels into blocks too, so that two threads share a layer at batch 1 (ResNet's
/// last layers, 7×7, are one panel of 512 channels).
const MIN_ITEMS_PER_IMAGE: u64 = 4;

impl Lowering<'_> {
    /// The kernel of a convolution or pooling.
    pub(super) fn lower_window(&mut self, id: ValueId, family: &dyn KernelFamily) -> Result<Body, String> {
        let mut w = window_kernel(self.g, id)?;
        if let Some(c) = self.conv_gemm(&w, family)? {
            return Ok(Body::ConvGemm(Box::new(c)));
        }
        // A convolution left to the direct kernel (a depthwise one), and a pooling whose
        // windows all have one divisor, run along output rows, four positions per
        // vector, each still the interpreter's sum or maximum.
        let taps: u64 = w.kernel.iter().product();
        let rows = match w.op {
            WindowOp::Conv => true,
            WindowOp::Pool(kind) => one_divisor(&w, kind),
            _ => false,
        };
        if rows && taps <= MAX_ROW_TAPS && !w.output.contains(&0) {
            w.by_rows = true;
            if let WindowOp::Pool(PoolKind::Max) = w.op {
                // A ceil-mode window may reach past the end padding: pad to its end.
                // More padding changes no maximum (it reads as -inf).
                for a in 0..3 {
                    w.pads_end[a] = w.pads_end[a].max(w.reach(a).saturating_sub(w.input[a] + w.pads_begin[a]));
                }
            }
            if w.pads_begin.iter().chain(&w.pads_end).any(|&p| p > 0) {
                let plane: u64 = (0..3).map(|a| w.input[a] + w.pads_begin[a] + w.pads_end[a]).product();
                let bytes = w.batch.scale(plane * w.channels_in() * 4).ok_or(TWO_BATCH)?;
                w.padded = Some(self.scratch_slot(bytes));
            }
        }
        Ok(Body::Window(Box::new(w)))
    }

    /// The implicit product of a convolution, if it has one: every convolution but
    /// the depthwise ones (one channel per group: a product of one row), and the data
    /// gradient only of stride-1 convolutions padded by less than their extent (the
    /// transposed convolution is then a convolution).
    fn conv_gemm(&mut self, w: &WindowKernel, family: &dyn KernelFamily) -> Result<Option<ConvGemm>, String> {
        if w.cg == 1 && w.mg == 1 {
            return Ok(None);
        }
        let (op, geometry, flip) = match w.op {
            WindowOp::Conv => (ConvGemmOp::Forward, w.clone(), None),
            WindowOp::ConvFilter => (ConvGemmOp::Filter, w.clone(), None),
            WindowOp::ConvData => match transposed(w) {
                Some(t) => (ConvGemmOp::Forward, t, Some(w.args[1])),
                None => return Ok(None),
            },
            WindowOp::Pool(_) | WindowOp::PoolBackward(_) => return Ok(None),
        };
        if geometry.output.contains(&0) || geometry.input.contains(&0) {
            return Ok(None);
        }
        let taps: u64 = geometry.kernel.iter().product();
        let pads = geometry.pads_begin.iter().chain(&geometry.pads_end).any(|&p| p > 0);
        // At most two spatial axes: a grid over (phase-plane) rows, the strides folded
        // into the padded planes' layout.
        let flat = geometry.output[0] == 1 && geometry.kernel[0] == 1 && geometry.input[0] == 1;
        let phases = if flat { [1, geometry.strides[1], geometry.strides[2]] } else { [1; 3] };
        let padded_row = geometry.input[2] + geometry.pads_begin[2] + geometry.pads_end[2];
        let grid = flat.then_some(padded_row.div_ceil(phases[2]));
        let positions: u64 = match grid {
            Some(row) => (geometry.output[1] - 1) * row + geometry.output[2],
            None => geometry.output.iter().product(),
        };
        let depth = geometry.cg * taps;
        let shape = match op {
            ConvGemmOp::Forward => GemmShape { m: Some(geometry.mg), k: Some(depth), n: Some(positions) },
            ConvGemmOp::Filter => GemmShape { m: Some(geometry.mg), k: None, n: Some(depth) },
        };
        let tile = family.tile_shape(&shape);
        // K in equal blocks no deeper than the tile's: the filter gradient's K is each
        // image's positions in turn.
        let k = match op {
            ConvGemmOp::Forward => depth,
            ConvGemmOp::Filter => positions,
        };
        let kc = k.div_ceil(k.div_ceil(tile.kc as u64).max(1)).max(1);
        // On the stack: the gathered block, and over the grid the forward's panel of C
        // or the filter gradient's block of dy.
        let nr = tile.nr() as u64;
        let staged = match (grid, op) {
            (None, _) => 0,
            (Some(_), ConvGemmOp::Forward) => geometry.mg * nr,
            (Some(_), ConvGemmOp::Filter) => geometry.mg * kc,
        };
        if (kc * nr + staged) * 4 > MAX_STACK_BYTES {
            return Ok(None);
        }
        let padded = match pads || phases != [1; 3] {
            true => {
                let plane: u64 = (0..3)
                    .map(|a| {
                        phases[a]
                            * (geometry.input[a] + geometry.pads_begin[a] + geometry.pads_end[a]).div_ceil(phases[a])
                    })
                    .product();
                let per_image = plane * geometry.channels_in() * 4;
                let bytes = geometry.batch.scale(per_image).ok_or(TWO_BATCH)?;
                Some(self.scratch_slot(bytes))
            }
            false => None,
        };
        let flip = match flip {
            Some(weights) => {
                let bytes = Size::fixed(taps * geometry.cg * geometry.channels_out() * 4);
                Some((weights, self.scratch_slot(bytes)))
            }
            None => None,
        };
        let a = match flip {
            Some((_, flipped)) => flipped,
            None => geometry.args[1],
        };
        let panels = geometry.groups * positions.div_ceil(nr);
        let mr = tile.mr as u64;
        let row_block = match op {
            ConvGemmOp::Forward if panels < MIN_ITEMS_PER_IMAGE && geometry.mg >= 4 * mr => {
                let blocks = MIN_ITEMS_PER_IMAGE.div_ceil(panels).min(geometry.mg / (2 * mr));
                geometry.mg.div_ceil(blocks).div_ceil(mr) * mr
            }
            _ => geometry.mg,
        };
        Ok(Some(ConvGemm {
            op,
            row_block,
            input: geometry.args[0],
            a,
            out: w.out,
            geometry,
            flip,
            padded,
            phases,
            grid,
            tile,
            kc,
        }))
    }
}

/// Whether every window of a pooling has the same divisor (always, for max): an
/// average's windows all lie inside the input, or with `count_include_pad` inside the
/// padded input (no ceil-mode window past the end padding).
fn one_divisor(w: &WindowKernel, kind: PoolKind) -> bool {
    match kind {
        PoolKind::Max => true,
        PoolKind::Avg { count_include_pad: false } => (0..3).all(|a| w.pads_begin[a] == 0 && w.reach(a) <= w.input[a]),
        PoolKind::Avg { count_include_pad: true } => {
            (0..3).all(|a| w.reach(a) <= w.input[a] + w.pads_begin[a] + w.pads_end[a])
        }
    }
}

/// The data gradient `(dy, w) → dx` of a stride-1 convolution as the convolution it
/// is: over `dy` padded by the kernel's extent less the forward pads, by the kernel
/// flipped with its channel axes swapped (`dx[c] = Σ_m Σ_k w'[c, m, k]·dy[m, p + k·d]`,
/// `w'[c, m, k] = w[m, c, K−1−k]`). `None` when a stride is not 1 or a pad reaches
/// past the extent.
fn transposed(w: &WindowKernel) -> Option<WindowKernel> {
    let extent = |a: usize| (w.kernel[a] - 1) * w.dilations[a];
    let fits = (0..3).all(|a| w.strides[a] == 1 && w.pads_begin[a] <= extent(a) && w.pads_end[a] <= extent(a));
    fits.then(|| WindowKernel {
        op: WindowOp::Conv,
        args: w.args.clone(),
        out: w.out,
        batch: w.batch,
        input: w.output,
        output: w.input,
        kernel: w.kernel,
        strides: w.strides,
        dilations: w.dilations,
        pads_begin: std::array::from_fn(|a| extent(a) - w.pads_begin[a]),
        pads_end: std::array::from_fn(|a| extent(a) - w.pads_end[a]),
        groups: w.groups,
        cg: w.mg,
        mg: w.cg,
        by_rows: false,
        padded: None,
        epilogue: None,
    })
}
