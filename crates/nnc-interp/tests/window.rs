//! Convolutions and pooling against hand-computed values, and the adjoint identities
//! that define the two convolution gradients.

mod common;
use common::*;
use nnc_ir::{Conv, Op, Pool, PoolKind, Tensor, Window};

fn window(kernel: &[usize], strides: &[usize], pads: &[usize]) -> Window {
    let r = kernel.len();
    Window {
        kernel: kernel.to_vec(),
        strides: strides.to_vec(),
        dilations: vec![1; r],
        pads_begin: pads[..r].to_vec(),
        pads_end: pads[r..].to_vec(),
    }
}

fn iota(shape: &[usize], from: f32) -> Tensor {
    let n: usize = shape.iter().product();
    f32s(shape, &(0..n).map(|i| from + i as f32).collect::<Vec<_>>())
}

#[test]
fn convolution_by_hand() {
    // x = 1..9 in 3×3, w picks the diagonal of each 2×2 window.
    let x = iota(&[1, 1, 3, 3], 1.0);
    let w = f32s(&[1, 1, 2, 2], &[1.0, 0.0, 0.0, 1.0]);
    let conv = Conv { window: window(&[2, 2], &[1, 1], &[0, 0, 0, 0]), groups: 1 };
    assert_close(&eval1(Op::Conv(conv), [x.clone(), w.clone()]).unwrap(), &[1, 1, 2, 2], &[6.0, 8.0, 12.0, 14.0], 0.0);
    // Padding 1 and stride 2: windows start at -1 and 1; padded taps read zero.
    let conv = Conv { window: window(&[2, 2], &[2, 2], &[1, 1, 1, 1]), groups: 1 };
    assert_close(&eval1(Op::Conv(conv), [x, w]).unwrap(), &[1, 1, 2, 2], &[1.0, 3.0, 7.0, 14.0], 0.0);
    // Two groups of one channel: each output channel sees its own input channel.
    let x = f32s(&[1, 2, 2], &[1.0, 2.0, 3.0, 4.0]);
    let w = f32s(&[2, 1, 1], &[10.0, 100.0]);
    let conv = Conv { window: window(&[1], &[1], &[0, 0]), groups: 2 };
    assert_close(&eval1(Op::Conv(conv), [x, w]).unwrap(), &[1, 2, 2], &[10.0, 20.0, 300.0, 400.0], 0.0);
}

fn dot(a: &Tensor, b: &Tensor) -> f64 {
    let (a, b) = (a.to_f32_vec().unwrap(), b.to_f32_vec().unwrap());
    a.iter().zip(&b).map(|(x, y)| *x as f64 * *y as f64).sum()
}

/// Small integers, so every sum is exact in f32.
fn ints(shape: &[usize], seed: u32) -> Tensor {
    let n: usize = shape.iter().product();
    let data: Vec<f32> = (0..n as u32).map(|i| ((i * 7 + seed * 13) % 9) as f32 - 4.0).collect();
    f32s(shape, &data)
}

/// `⟨conv(x, w), dy⟩ = ⟨x, data(dy, w)⟩ = ⟨w, filter(x, dy)⟩`: the identities that
/// make the data and filter ops the convolution's gradients, on strided, dilated,
/// padded and grouped windows in one and two dimensions.
#[test]
fn gradients_are_the_adjoints_of_the_convolution() {
    let mut dilated = window(&[3, 2], &[2, 1], &[1, 0, 2, 1]);
    dilated.dilations = vec![1, 2];
    let cases = [
        (Conv { window: window(&[3], &[2], &[1, 2]), groups: 2 }, vec![2, 4, 9], 6),
        (Conv { window: dilated, groups: 1 }, vec![2, 3, 7, 6], 4),
        (Conv { window: window(&[3, 3], &[1, 1], &[1, 1, 1, 1]), groups: 3 }, vec![1, 3, 5, 5], 3),
    ];
    for (conv, x_shape, m) in cases {
        let x = ints(&x_shape, 1);
        let mut w_shape = vec![m, x_shape[1] / conv.groups];
        w_shape.extend(&conv.window.kernel);
        let w = ints(&w_shape, 2);
        let y = eval1(Op::Conv(conv.clone()), [x.clone(), w.clone()]).unwrap();
        let dy = ints(y.shape(), 3);
        let input = x_shape[2..].to_vec();
        let dx = eval1(Op::ConvBackwardData { conv: conv.clone(), input }, [dy.clone(), w.clone()]).unwrap();
        let dw = eval1(Op::ConvBackwardFilter { conv: conv.clone() }, [x.clone(), dy.clone()]).unwrap();
        assert_eq!(dx.shape(), x.shape());
        assert_eq!(dw.shape(), w.shape());
        let forward = dot(&y, &dy);
        assert_ne!(forward, 0.0, "a case that cannot tell the gradients apart");
        assert_eq!(forward, dot(&x, &dx), "data gradient of {conv:?}");
        assert_eq!(forward, dot(&w, &dw), "filter gradient of {conv:?}");
    }
}

#[test]
fn pooling_by_hand() {
    let max = |w: Window, ceil_mode| Op::Pool(Pool { kind: PoolKind::Max, window: w, ceil_mode });
    let x = iota(&[1, 1, 4, 4], 0.0);
    assert_close(
        &eval1(max(window(&[2, 2], &[2, 2], &[0; 4]), false), [x]).unwrap(),
        &[1, 1, 2, 2],
        &[5.0, 7.0, 13.0, 15.0],
        0.0,
    );
    // ceil_mode keeps the partial windows at the end: [0,1,3,4], [2,5], [6,7], [8].
    let x = iota(&[1, 1, 3, 3], 0.0);
    assert_close(
        &eval1(max(window(&[2, 2], &[2, 2], &[0; 4]), true), [x]).unwrap(),
        &[1, 1, 2, 2],
        &[4.0, 5.0, 7.0, 8.0],
        0.0,
    );
    // Padding never wins a maximum, even over negative values.
    let x = f32s(&[1, 1, 2], &[-3.0, -5.0]);
    assert_close(&eval1(max(window(&[2], &[1], &[1, 1]), false), [x]).unwrap(), &[1, 1, 3], &[-3.0, -3.0, -5.0], 0.0);

    // Average with padding 1 over a 2×2 input: each 3×3 window holds all four values.
    let avg = |count_include_pad| {
        let kind = PoolKind::Avg { count_include_pad };
        Op::Pool(Pool { kind, window: window(&[3, 3], &[1, 1], &[1, 1, 1, 1]), ceil_mode: false })
    };
    let x = f32s(&[1, 1, 2, 2], &[1.0, 2.0, 3.0, 4.0]);
    assert_close(&eval1(avg(false), [x.clone()]).unwrap(), &[1, 1, 2, 2], &[2.5; 4], 0.0);
    assert_close(&eval1(avg(true), [x]).unwrap(), &[1, 1, 2, 2], &[10.0 / 9.0; 4], 1e-7);
}

#[test]
fn pooling_gradients_by_hand() {
    // Max: each window's gradient goes to its maximum; overlapping windows add.
    let pool = Pool { kind: PoolKind::Max, window: window(&[2], &[1], &[0, 0]), ceil_mode: false };
    let x = f32s(&[1, 1, 3], &[1.0, 3.0, 2.0]);
    let dy = f32s(&[1, 1, 2], &[10.0, 100.0]);
    let dx = eval1(Op::PoolBackward { pool, input: vec![3] }, [x, dy.clone()]).unwrap();
    assert_close(&dx, &[1, 1, 3], &[0.0, 110.0, 0.0], 0.0);
    // Average: spread over the counted taps.
    let kind = PoolKind::Avg { count_include_pad: false };
    let pool = Pool { kind, window: window(&[2], &[1], &[0, 0]), ceil_mode: false };
    let dx = eval1(Op::PoolBackward { pool, input: vec![3] }, [dy]).unwrap();
    assert_close(&dx, &[1, 1, 3], &[5.0, 55.0, 50.0], 0.0);
}
