//! Convolutions and pooling in the JIT, for every op of the family, 1-, 2- and 3-D
//! windows with strides, dilations, uneven pads, groups and ceil mode, at several
//! batch sizes: the direct kernels give the interpreter's bits, the implicit products
//! (`conv_gemm`) its values within rounding, and every output has the same bits for
//! every thread count and kernel family. Fused convolutions apply their epilogue
//! with the same bits as the expansion's separate ops.

mod common;

use common::*;
use nnc_cranelift::{compile, CompileOptions, Kernels};
use nnc_ir::{parse, Graph, Tensor};
use std::collections::HashMap;

/// Every op of the family on one input `x: [N, 4, 7, 6]`, each its own output.
fn graph_2d() -> Graph {
    parse(
        "graph windows {
  %x: f32[N,4,7,6] = input
  %w: f32[6,2,3,2] = input
  %dy: f32[N,6,3,7] = input
  %y: f32[N,6,3,7] = conv[kernel=[3,2], strides=[2,1], dilations=[1,2], pads=[1,1,0,2], groups=2] %x, %w
  %dx: f32[N,4,7,6] = conv_backward_data[kernel=[3,2], strides=[2,1], dilations=[1,2], pads=[1,1,0,2], groups=2, input=[7,6]] %dy, %w
  %dw: f32[6,2,3,2] = conv_backward_filter[kernel=[3,2], strides=[2,1], dilations=[1,2], pads=[1,1,0,2], groups=2] %x, %dy
  %dy1: f32[N,6,6,7] = input
  %dx1: f32[N,4,7,6] = conv_backward_data[kernel=[3,2], dilations=[1,2], pads=[1,1,0,2], groups=2, input=[7,6]] %dy1, %w
  %wd: f32[4,1,3,3] = input
  %yd: f32[N,4,7,6] = conv[kernel=[3,3], pads=[1,1,1,1], groups=4] %x, %wd
  %yds: f32[N,4,4,3] = conv[kernel=[3,3], strides=[2,2], pads=[1,1,1,1], groups=4] %x, %wd
  %y1: f32[N,6,6,7] = conv[kernel=[3,2], dilations=[1,2], pads=[1,1,0,2], groups=2] %x, %w
  %dw1: f32[6,2,3,2] = conv_backward_filter[kernel=[3,2], dilations=[1,2], pads=[1,1,0,2], groups=2] %x, %dy1
  %m: f32[N,4,4,3] = max_pool[kernel=[2,2], strides=[2,2], ceil_mode] %x
  %dm: f32[N,4,7,6] = max_pool_backward[kernel=[2,2], strides=[2,2], ceil_mode, input=[7,6]] %x, %m
  %a: f32[N,4,7,6] = avg_pool[kernel=[3,3], pads=[1,1,1,1]] %x
  %ai: f32[N,4,7,6] = avg_pool[kernel=[3,3], pads=[1,1,1,1], count_include_pad] %x
  %da: f32[N,4,7,6] = avg_pool_backward[kernel=[3,3], pads=[1,1,1,1], count_include_pad, input=[7,6]] %ai
  return %y, %dx, %dw, %dx1, %y1, %dw1, %yd, %yds, %m, %dm, %a, %ai, %da
}
",
    )
    .unwrap()
}

/// A depthwise 1-D and a 3-D convolution with their gradients, and 3-D pooling.
fn graph_1d_3d() -> Graph {
    parse(
        "graph windows13 {
  %s: f32[N,3,9] = input
  %k: f32[3,1,4] = input
  %c1: f32[N,3,4] = conv[kernel=[4], strides=[2], pads=[1,0], groups=3] %s, %k
  %d1: f32[N,3,9] = conv_backward_data[kernel=[4], strides=[2], pads=[1,0], groups=3, input=[9]] %c1, %k
  %f1: f32[3,1,4] = conv_backward_filter[kernel=[4], strides=[2], pads=[1,0], groups=3] %s, %c1
  %v: f32[N,2,4,5,3] = input
  %u: f32[3,2,2,3,2] = input
  %c3: f32[N,3,3,3,2] = conv[kernel=[2,3,2], pads=[0,0,0,0,0,0]] %v, %u
  %c3p: f32[N,3,4,4,4] = conv[kernel=[2,3,2], pads=[1,1,1,0,0,1]] %v, %u
  %f3: f32[3,2,2,3,2] = conv_backward_filter[kernel=[2,3,2]] %v, %c3
  %p3: f32[N,2,2,3,2] = max_pool[kernel=[2,2,2], strides=[2,2,2], ceil_mode] %v
  return %d1, %f1, %f3, %p3, %c3p
}
",
    )
    .unwrap()
}

/// Products of several panels, K blocks and row tiles with an edge: 13 output
/// channels, 72 or 117 deep, 380 positions; one-tap products, whose full panels
/// read their input in place; and one panel of 40 channels, split into row blocks.
fn graph_wide() -> Graph {
    parse(
        "graph wide {
  %x: f32[N,8,20,19] = input
  %w: f32[13,8,3,3] = input
  %dy: f32[N,13,20,19] = input
  %yw: f32[N,13,20,19] = conv[kernel=[3,3], pads=[1,1,1,1]] %x, %w
  %dxw: f32[N,8,20,19] = conv_backward_data[kernel=[3,3], pads=[1,1,1,1], input=[20,19]] %dy, %w
  %dww: f32[13,8,3,3] = conv_backward_filter[kernel=[3,3], pads=[1,1,1,1]] %x, %dy
  %w5: f32[9,13,3,3] = input
  %ysw: f32[N,9,10,10] = conv[kernel=[3,3], strides=[2,2], pads=[1,1,1,1]] %yw, %w5
  %w1: f32[13,8,1,1] = input
  %b1: f32[13,1,1] = input
  %y11: f32[N,13,20,19] = conv[kernel=[1,1]] %x, %w1
  %y12: f32[N,13,10,10] = fused.conv[kernel=[1,1], strides=[2,2], bias, act=relu] %x, %w1, %b1
  %x5: f32[N,8,5,5] = input
  %w40: f32[40,8,3,3] = input
  %b40: f32[40,1,1] = input
  %yr: f32[N,40,5,5] = fused.conv[kernel=[3,3], pads=[1,1,1,1], bias, act=relu] %x5, %w40, %b40
  %dr: f32[N,8,5,5] = conv_backward_data[kernel=[3,3], pads=[1,1,1,1], input=[5,5]] %yr, %w40
  return %yw, %dxw, %dww, %ysw, %y11, %y12, %yr, %dr
}
",
    )
    .unwrap()
}

/// Fused convolutions (`fused.conv`) on every kernel that computes one: products over
/// the grid (2-D) and without it (1-D, 3-D), and the direct kernels (by rows, plain
/// and strided, and the plain one for many taps), each with a different epilogue:
/// bias, residual, activations (vector and per-element), clip bounds.
fn graph_fused() -> Graph {
    parse(
        "graph fused_windows {
  %x: f32[N,4,7,6] = input
  %w: f32[6,2,3,2] = input
  %b: f32[6,1,1] = input
  %r: f32[N,6,3,7] = input
  %fg: f32[N,6,3,7] = fused.conv[kernel=[3,2], strides=[2,1], dilations=[1,2], pads=[1,1,0,2], groups=2, bias, act=relu] %x, %w, %b
  %fr: f32[N,6,3,7] = fused.conv[kernel=[3,2], strides=[2,1], dilations=[1,2], pads=[1,1,0,2], groups=2, bias, residual, min=-0.25, max=0.5] %x, %w, %b, %r
  %wd: f32[4,1,3,3] = input
  %bd: f32[1,4,1,1] = input
  %fd: f32[N,4,7,6] = fused.conv[kernel=[3,3], pads=[1,1,1,1], groups=4, bias, min=0.0, max=0.3] %x, %wd, %bd
  %fds: f32[N,4,4,3] = fused.conv[kernel=[3,3], strides=[2,2], pads=[1,1,1,1], groups=4, bias, act=tanh] %x, %wd, %bd
  %wb: f32[4,1,9,9] = input
  %fdb: f32[N,4,7,6] = fused.conv[kernel=[9,9], pads=[4,4,4,4], groups=4, residual, act=leaky_relu, slope=0.1] %x, %wb, %x
  %s: f32[N,3,9] = input
  %k: f32[5,3,4] = input
  %b1: f32[5,1] = input
  %f1: f32[N,5,4] = fused.conv[kernel=[4], strides=[2], pads=[1,0], bias, act=sigmoid] %s, %k, %b1
  %v: f32[N,2,4,5,3] = input
  %u: f32[3,2,2,3,2] = input
  %b3: f32[3,1,1,1] = input
  %r3: f32[N,3,4,4,4] = input
  %f3: f32[N,3,4,4,4] = fused.conv[kernel=[2,3,2], pads=[1,1,1,0,0,1], bias, residual, act=relu, max=1.0] %v, %u, %b3, %r3
  return %fg, %fr, %fd, %fds, %fdb, %f1, %f3
}
",
    )
    .unwrap()
}

/// Pooling as the zoo's models use it, along output rows: ResNet's padded strided
/// max, SqueezeNet's ceil-mode max, LeNet-style averages (with and without counted
/// padding), a dilated max; and an average whose windows differ in divisor (the
/// plain kernel).
fn graph_pools() -> Graph {
    parse(
        "graph pools {
  %x: f32[N,3,9,8] = input
  %mp: f32[N,3,5,4] = max_pool[kernel=[3,3], strides=[2,2], pads=[1,1,1,1]] %x
  %mc: f32[N,3,4,4] = max_pool[kernel=[3,3], strides=[2,2], ceil_mode] %x
  %md: f32[N,3,7,6] = max_pool[kernel=[2,2], dilations=[2,2]] %x
  %a2: f32[N,3,4,4] = avg_pool[kernel=[2,2], strides=[2,2]] %x
  %ac: f32[N,3,5,4] = avg_pool[kernel=[3,3], strides=[2,2], pads=[1,1,1,1], count_include_pad] %x
  %ae: f32[N,3,5,4] = avg_pool[kernel=[3,3], strides=[2,2], pads=[1,1,1,1]] %x
  return %mp, %mc, %md, %a2, %ac, %ae
}
",
    )
    .unwrap()
}

fn feeds_for(g: &Graph, batch: usize, seed: u64) -> HashMap<String, Tensor> {
    let mut r = rng(seed);
    let mut f = HashMap::new();
    for v in g.values() {
        if matches!(v.op, nnc_ir::Op::Input) {
            f.insert(v.name.clone(), random_f32(&mut r, &v.ty.shape.resolve(batch)));
        }
    }
    f
}

fn bits(ts: &[Tensor]) -> Vec<Vec<u32>> {
    ts.iter().map(|t| t.to_f32_vec().unwrap().iter().map(|v| v.to_bits()).collect()).collect()
}

/// The outputs computed by implicit products: the convolutions but the depthwise ones
/// and the strided data gradients.
const PRODUCTS: [&str; 18] =
    ["y", "dw", "dx1", "y1", "dw1", "f3", "c3p", "yw", "dxw", "dww", "ysw", "y11", "y12", "yr", "dr", "fg", "fr", "f1"];

#[test]
fn window_kernels_match_the_interpreter_with_the_same_bits_for_every_thread_count_and_family() {
    let families = [Kernels::Cranelift, Kernels::Auto];
    for g in [graph_2d(), graph_1d_3d(), graph_wide(), graph_fused(), graph_pools()] {
        let mut compiled: Vec<_> = families
            .iter()
            .flat_map(|&kernels| [1, 2, 3].map(|threads| CompileOptions { threads, kernels, ..Default::default() }))
            .map(|o| compile(&g, &o).unwrap())
            .collect();
        let names: Vec<String> = g.outputs().iter().map(|&o| g.value(o).name.clone()).collect();
        for batch in [1, 2, 5] {
            let feeds = feeds_for(&g, batch, batch as u64);
            let want = nnc_interp::run(&g, &feeds).unwrap();
            let first = compiled[0].run(&feeds).unwrap();
            for (i, name) in names.iter().enumerate() {
                if PRODUCTS.contains(&name.as_str()) {
                    assert_close_scaled(&first[i], &want[i], 1e-5, &format!("{} {name} at batch {batch}", g.name));
                } else {
                    let same = bits(&first[i..=i]) == bits(&want[i..=i]);
                    assert!(same, "{} {name} at batch {batch} is not the interpreter's", g.name);
                }
            }
            for c in &mut compiled[1..] {
                let got = bits(&c.run(&feeds).unwrap());
                for (i, (a, b)) in got.iter().zip(&bits(&first)).enumerate() {
                    let how = format!("{} threads, {} kernels", c.threads(), c.kernel_family());
                    assert!(a == b, "{} {} at batch {batch} differs with {how}", g.name, names[i]);
                }
            }
        }
    }
}
