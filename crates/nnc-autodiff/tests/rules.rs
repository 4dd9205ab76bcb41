//! Finite-difference checks of every gradient rule: each op alone (on random shapes,
//! with broadcasting where the op broadcasts, for several seeds), differentiated with
//! `gradients` and compared with central differences of the interpreter's forward pass.
//!
//! Tolerance. The interpreter computes in f32 (unit roundoff u = 6e-8). The loss is
//! `Σ y ⊙ r` with |r| < 1 over at most ~120 elements, so |L| < ~50 and each loss
//! carries a rounding error of about |L|·u·√n < 3e-5; divided by 2h = 2e-2 that is
//! < 2e-3 in the worst case, ~1e-4 typically. The truncation error of the central
//! difference is h²/6·|f'''| ≈ 2e-5·|f'''|, under 1e-3 for the inputs drawn here
//! (kept away from kinks, poles and log/sqrt of small numbers). Hence
//! `|autodiff - numeric| <= 2e-3 + 1e-2·|value|`; a wrong rule (a missing factor, a
//! sign, a transpose, a missing broadcast sum) is off by O(1) and fails by far.

mod common;

use common::*;
use nnc_ir::{
    BinaryOp, Conv, DType, Dim, Graph, Op, Pool, PoolKind, ReduceOp, Shape, Tensor, TensorType, UnaryOp, ValueId,
    Window,
};

const H: f32 = 1e-2;
const TOL: Tol = Tol { atol: 2e-3, rtol: 1e-2 };
const SEEDS: std::ops::Range<u64> = 0..3;
const BATCH: usize = 3;

/// One leaf of a test graph: a parameter of a static shape, or an input whose
/// shape is the batch `N` followed by `shape` (fed with N = 3).
#[derive(Clone, Copy)]
enum Leaf<'a> {
    P(&'a [usize], Dist),
    I(&'a [usize], Dist),
}

/// Builds `y = build(leaves)`, `loss = Σ y ⊙ r`, and checks d loss / d leaf for every
/// leaf against central differences. Returns the worst error relative to `TOL`.
fn check(seed: u64, leaves: &[Leaf], build: impl Fn(&mut Graph, &[ValueId]) -> ValueId) -> f64 {
    let mut rng = rng(seed);
    let mut g = Graph::new("rule");
    let mut fed = Vec::new();
    let mut ids = Vec::new();
    for (i, leaf) in leaves.iter().enumerate() {
        let name = format!("x{i}");
        ids.push(match *leaf {
            Leaf::P(shape, d) => g.param(&name, sample(&mut rng, shape, d)).unwrap(),
            Leaf::I(shape, d) => {
                let mut dims = vec![Dim::Batch];
                dims.extend(shape.iter().map(|&s| Dim::Fixed(s)));
                let full: Vec<usize> = std::iter::once(BATCH).chain(shape.iter().copied()).collect();
                fed.push((name.clone(), sample(&mut rng, &full, d)));
                g.input(&name, TensorType::f32(&dims)).unwrap()
            }
        });
    }
    let y = build(&mut g, &ids);
    let loss = weighted_sum(&mut g, y);
    g.set_outputs(vec![loss]);
    let r = sample(&mut rng, &g.ty(y).shape.resolve(BATCH), Dist::Uniform(-1.0, 1.0));
    let mut feeds = feeds(vec![("r", r)]);
    feeds.extend(fed);
    fd_check(&g, loss, &ids, &feeds, H, TOL)
}

fn check_seeds(leaves: &[Leaf], build: impl Fn(&mut Graph, &[ValueId]) -> ValueId) {
    for seed in SEEDS {
        check(seed, leaves, &build);
    }
}

fn op(g: &mut Graph, op: Op, args: &[ValueId]) -> ValueId {
    g.op(op, args).unwrap()
}

const UNIT: Dist = Dist::Uniform(-1.0, 1.0);

#[test]
fn unary_ops() {
    let cases: &[(UnaryOp, Dist)] = &[
        (UnaryOp::Neg, UNIT),
        (UnaryOp::Exp, UNIT),
        (UnaryOp::Log, Dist::Uniform(0.5, 2.0)),
        (UnaryOp::Sqrt, Dist::Uniform(0.5, 2.0)),
        (UnaryOp::Erf, Dist::Uniform(-1.5, 1.5)),
        (UnaryOp::Relu, Dist::AwayFromZero(0.1, 1.5)),
        (UnaryOp::LeakyRelu { alpha: 0.1 }, Dist::AwayFromZero(0.1, 1.5)),
        (UnaryOp::Sigmoid, Dist::Uniform(-2.0, 2.0)),
        (UnaryOp::Tanh, Dist::Uniform(-2.0, 2.0)),
        (UnaryOp::Gelu { approximate: false }, Dist::Uniform(-2.5, 2.5)),
        (UnaryOp::Gelu { approximate: true }, Dist::Uniform(-2.5, 2.5)),
        (UnaryOp::Identity, UNIT),
    ];
    for &(u, dist) in cases {
        check_seeds(&[Leaf::P(&[3, 4], dist)], |g, x| g.unary(u, x[0]).unwrap());
        // The same rule on a batched input.
        check(7, &[Leaf::I(&[2], dist)], |g, x| g.unary(u, x[0]).unwrap());
    }
}

/// Operand shapes for the binary ops: equal, trailing broadcast, both sides
/// broadcast, scalar against matrix, and rank extension with size-1 axes.
const BINARY_SHAPES: &[(&[usize], &[usize])] =
    &[(&[3, 4], &[3, 4]), (&[3, 4], &[4]), (&[3, 1], &[1, 4]), (&[], &[3, 4]), (&[2, 1, 4], &[3, 1])];

fn check_binary(b: BinaryOp, da: Dist, db: Dist) {
    for &(sa, sb) in BINARY_SHAPES {
        check_seeds(&[Leaf::P(sa, da), Leaf::P(sb, db)], |g, x| g.binary(b, x[0], x[1]).unwrap());
        check_seeds(&[Leaf::P(sb, db), Leaf::P(sa, da)], |g, x| g.binary(b, x[1], x[0]).unwrap());
    }
}

#[test]
fn add_sub_mul() {
    for b in [BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul] {
        check_binary(b, UNIT, UNIT);
    }
}

#[test]
fn div_both_operands() {
    for &(sa, sb) in BINARY_SHAPES {
        for seed in SEEDS {
            check(seed, &[Leaf::P(sa, UNIT), Leaf::P(sb, Dist::AwayFromZero(0.5, 1.5))], |g, x| {
                g.div(x[0], x[1]).unwrap()
            });
        }
    }
}

#[test]
fn pow_both_operands() {
    for &(sa, sb) in BINARY_SHAPES {
        for seed in SEEDS {
            check(seed, &[Leaf::P(sa, Dist::Uniform(0.5, 1.5)), Leaf::P(sb, Dist::Uniform(-1.5, 1.5))], |g, x| {
                g.binary(BinaryOp::Pow, x[0], x[1]).unwrap()
            });
        }
    }
}

#[test]
fn max_min_route_to_the_selected_operand() {
    // Disjoint grids keep |a - b| >= 0.15 for every broadcast pair.
    check_binary(BinaryOp::Max, Dist::Grid(0.0), Dist::Grid(0.25));
    check_binary(BinaryOp::Min, Dist::Grid(0.0), Dist::Grid(0.25));
}

#[test]
fn where_branches() {
    for seed in SEEDS {
        let mut rng = rng(100 + seed);
        let cond: Vec<bool> = f32s(&sample(&mut rng, &[3, 4], UNIT)).iter().map(|&v| v > 0.0).collect();
        let cond = Tensor::Bool(ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(&[3, 4]), cond).unwrap());
        check(seed, &[Leaf::P(&[3, 4], UNIT), Leaf::P(&[4], UNIT)], |g, x| {
            let c = g.constant(cond.clone()).unwrap();
            g.where_(c, x[0], x[1]).unwrap()
        });
        // Branches broadcast against a smaller condition.
        let c1 =
            Tensor::Bool(ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(&[3, 1]), vec![true, false, true]).unwrap());
        check(seed, &[Leaf::P(&[1, 4], UNIT), Leaf::P(&[3, 4], UNIT)], |g, x| {
            let c = g.constant(c1.clone()).unwrap();
            g.where_(c, x[0], x[1]).unwrap()
        });
    }
}

/// The stored shape of a matmul operand: `lead` batch-of-matrices axes, then the
/// matrix, transposed if the flag is set.
fn stored(lead: &[usize], rows: usize, cols: usize, trans: bool) -> Vec<usize> {
    let mut s = lead.to_vec();
    if trans {
        s.extend([cols, rows]);
    } else {
        s.extend([rows, cols]);
    }
    s
}

#[test]
fn matmul_all_transpose_combinations_and_leading_broadcast() {
    let leads: &[(&[usize], &[usize])] = &[(&[], &[]), (&[2], &[]), (&[], &[2]), (&[2, 1], &[3]), (&[2, 1], &[2])];
    for trans_a in [false, true] {
        for trans_b in [false, true] {
            for &(la, lb) in leads {
                let sa = stored(la, 3, 4, trans_a);
                let sb = stored(lb, 4, 5, trans_b);
                check_seeds(&[Leaf::P(&sa, UNIT), Leaf::P(&sb, UNIT)], |g, x| {
                    g.matmul(x[0], x[1], trans_a, trans_b).unwrap()
                });
            }
            // A batched input times a weight: the weight's gradient sums over N.
            let sb = stored(&[], 4, 5, trans_b);
            let sa = if trans_a { vec![4, 3] } else { vec![3, 4] };
            check(11, &[Leaf::I(&sa, UNIT), Leaf::P(&sb, UNIT)], |g, x| {
                g.matmul(x[0], x[1], trans_a, trans_b).unwrap()
            });
        }
    }
}

#[test]
fn softmax_and_log_softmax_every_axis() {
    for axis in 0..3 {
        check_seeds(&[Leaf::P(&[2, 3, 4], Dist::Uniform(-2.0, 2.0))], |g, x| g.softmax(x[0], axis).unwrap());
        check_seeds(&[Leaf::P(&[2, 3, 4], Dist::Uniform(-2.0, 2.0))], |g, x| g.log_softmax(x[0], axis).unwrap());
    }
    check(5, &[Leaf::I(&[4], UNIT)], |g, x| g.log_softmax(x[0], 1).unwrap());
    check(5, &[Leaf::I(&[4], UNIT)], |g, x| g.softmax(x[0], 0).unwrap());
}

#[test]
fn reductions_every_axes_and_keep_dims() {
    let axes_sets: &[&[usize]] = &[&[], &[0], &[1], &[2], &[0, 2], &[1, 2], &[0, 1, 2]];
    for op in [ReduceOp::Sum, ReduceOp::Mean, ReduceOp::Max] {
        // Distinct values keep the maximum unique and at least 0.2 above the rest.
        let dist = if op == ReduceOp::Max { Dist::Distinct(-2.0) } else { UNIT };
        for &axes in axes_sets {
            for keep in [false, true] {
                check_seeds(&[Leaf::P(&[2, 3, 4], dist)], |g, x| g.reduce(op, x[0], axes, keep).unwrap());
            }
        }
    }
}

#[test]
fn reductions_over_the_batch() {
    for op in [ReduceOp::Sum, ReduceOp::Mean, ReduceOp::Max] {
        let dist = if op == ReduceOp::Max { Dist::Distinct(-2.0) } else { UNIT };
        for &axes in &[&[0][..], &[1], &[0, 1], &[0, 2]] {
            for keep in [false, true] {
                // Through a parameter too: p's gradient sums the batch.
                check(3, &[Leaf::I(&[2, 4], dist), Leaf::P(&[4], Dist::Uniform(-0.01, 0.01))], |g, x| {
                    let s = g.add(x[0], x[1]).unwrap();
                    g.reduce(op, s, axes, keep).unwrap()
                });
            }
        }
    }
}

#[test]
fn reshape_transpose_broadcast_identity_cast() {
    for seed in SEEDS {
        check(seed, &[Leaf::P(&[2, 3, 4], UNIT)], |g, x| g.reshape(x[0], Shape::fixed(&[6, 4])).unwrap());
        check(seed, &[Leaf::P(&[2, 3, 4], UNIT)], |g, x| g.reshape(x[0], Shape::fixed(&[4, 1, 6])).unwrap());
        for perm in [[2, 0, 1], [1, 0, 2], [0, 2, 1]] {
            check(seed, &[Leaf::P(&[2, 3, 4], UNIT)], |g, x| g.transpose(x[0], &perm).unwrap());
        }
        check(seed, &[Leaf::P(&[3, 1], UNIT)], |g, x| g.broadcast(x[0], Shape::fixed(&[2, 3, 4])).unwrap());
        check(seed, &[Leaf::P(&[], UNIT)], |g, x| g.broadcast(x[0], Shape::fixed(&[2, 3])).unwrap());
        check(seed, &[Leaf::P(&[3, 4], UNIT)], |g, x| g.cast(x[0], DType::F32).unwrap());
        check(seed, &[Leaf::P(&[3, 4], UNIT)], |g, x| op(g, Op::Unary(UnaryOp::Identity), &[x[0]]));
    }
    let n4 = Shape(vec![Dim::Batch, Dim::Fixed(4)]);
    check(1, &[Leaf::P(&[4], UNIT)], |g, x| g.broadcast(x[0], n4.clone()).unwrap());
    check(1, &[Leaf::I(&[4], UNIT)], |g, x| {
        g.reshape(x[0], Shape(vec![Dim::Fixed(2), Dim::Batch, Dim::Fixed(2)])).unwrap()
    });
    check(1, &[Leaf::I(&[2, 4], UNIT)], |g, x| g.transpose(x[0], &[2, 0, 1]).unwrap());
}

#[test]
fn concat_and_slice() {
    for seed in SEEDS {
        check(seed, &[Leaf::P(&[2, 3, 4], UNIT), Leaf::P(&[2, 1, 4], UNIT)], |g, x| {
            op(g, Op::Concat { axis: 1, sizes: vec![3, 1] }, &[x[0], x[1]])
        });
        check(seed, &[Leaf::P(&[2, 3, 4], UNIT)], |g, x| {
            op(g, Op::Concat { axis: 2, sizes: vec![4, 4] }, &[x[0], x[0]])
        });
        for (start, end) in [(0, 2), (1, 3), (2, 4), (1, 2)] {
            check(seed, &[Leaf::P(&[3, 4], UNIT)], |g, x| op(g, Op::Slice { axis: 1, start, end }, &[x[0]]));
        }
    }
    // Over the batch: the slice's zeros are batch-sized.
    check(1, &[Leaf::I(&[5, 3], UNIT)], |g, x| op(g, Op::Slice { axis: 2, start: 1, end: 2 }, &[x[0]]));
}

/// A value used several times: the contributions of all uses add up.
#[test]
fn accumulation_over_several_uses() {
    for seed in SEEDS {
        check(seed, &[Leaf::P(&[3, 4], UNIT), Leaf::P(&[4], UNIT)], |g, x| {
            let xx = g.mul(x[0], x[0]).unwrap();
            let e = g.unary(UnaryOp::Exp, x[0]).unwrap();
            let s = g.add(xx, e).unwrap();
            let t = g.mul(s, x[1]).unwrap();
            g.sub(t, x[1]).unwrap()
        });
    }
}

/// The relu written with a comparison: the condition of `where` is not a gradient
/// path, so `greater` needs no rule.
#[test]
fn where_of_a_comparison() {
    for seed in SEEDS {
        check(seed, &[Leaf::P(&[3, 4], Dist::AwayFromZero(0.1, 1.0))], |g, x| {
            let zero = g.scalar(0.0).unwrap();
            let c = g.binary(BinaryOp::Greater, x[0], zero).unwrap();
            g.where_(c, x[0], zero).unwrap()
        });
    }
}

fn window(kernel: &[usize], strides: &[usize], dilations: &[usize], pads: &[usize]) -> Window {
    let r = kernel.len();
    Window {
        kernel: kernel.to_vec(),
        strides: strides.to_vec(),
        dilations: dilations.to_vec(),
        pads_begin: pads[..r].to_vec(),
        pads_end: pads[r..].to_vec(),
    }
}

/// The convolutions of the tests below: 1-D grouped with strides and uneven pads;
/// 2-D with strides, dilations and pads that differ per axis; depthwise.
fn convs() -> Vec<(Conv, [usize; 3], &'static [usize], &'static [usize])> {
    vec![
        // (conv, [C, M, spatial rank], input spatial, weight spatial)
        (Conv { window: window(&[3], &[2], &[1], &[1, 2]), groups: 2 }, [2, 4, 1], &[7], &[3]),
        (Conv { window: window(&[3, 2], &[2, 1], &[1, 2], &[1, 0, 0, 1]), groups: 1 }, [2, 3, 2], &[5, 6], &[3, 2]),
        (Conv { window: window(&[3, 3], &[1, 1], &[1, 1], &[1, 1, 1, 1]), groups: 3 }, [3, 3, 2], &[4, 4], &[3, 3]),
    ]
}

fn dims(lead: &[usize], rest: &[usize]) -> Vec<usize> {
    lead.iter().chain(rest).copied().collect()
}

#[test]
fn convolution_input_and_weight() {
    for (conv, [c, m, _], input, kernel) in convs() {
        let x = dims(&[c], input);
        let w = dims(&[m, c / conv.groups], kernel);
        check_seeds(&[Leaf::I(&x, UNIT), Leaf::P(&w, UNIT)], |g, a| op(g, Op::Conv(conv.clone()), a));
    }
}

/// The data and filter gradients are ops too (ConvTranspose is the first), so their
/// own gradients are checked as well: each is again one of the three convolutions.
#[test]
fn convolution_gradients_are_differentiable() {
    for (conv, [c, m, _], input, kernel) in convs() {
        let out = conv.window.output_size(input, false).unwrap();
        let dy = dims(&[m], &out);
        let w = dims(&[m, c / conv.groups], kernel);
        let data = Op::ConvBackwardData { conv: conv.clone(), input: input.to_vec() };
        check_seeds(&[Leaf::I(&dy, UNIT), Leaf::P(&w, UNIT)], |g, a| op(g, data.clone(), a));
        let x = dims(&[c], input);
        let filter = Op::ConvBackwardFilter { conv: conv.clone() };
        check_seeds(&[Leaf::I(&x, UNIT), Leaf::I(&dy, UNIT)], |g, a| op(g, filter.clone(), a));
    }
}

#[test]
fn pooling_max_and_average() {
    let windows = [
        (window(&[3], &[2], &[1], &[1, 1]), &[2usize, 7][..], false),
        (window(&[2, 2], &[2, 2], &[1, 1], &[0, 0, 0, 0]), &[2, 5, 5][..], true),
        (window(&[3, 2], &[2, 1], &[2, 1], &[1, 0, 1, 1]), &[1, 7, 4][..], false),
    ];
    for (w, x, ceil_mode) in windows {
        let kinds =
            [PoolKind::Max, PoolKind::Avg { count_include_pad: false }, PoolKind::Avg { count_include_pad: true }];
        for kind in kinds {
            // Distinct values keep each window's maximum unique under perturbation.
            let dist = if kind == PoolKind::Max { Dist::Distinct(-2.0) } else { UNIT };
            let pool = Pool { kind, window: w.clone(), ceil_mode };
            check_seeds(&[Leaf::I(x, dist)], |g, a| op(g, Op::Pool(pool.clone()), a));
            if kind != PoolKind::Max {
                let input = x[1..].to_vec();
                let out = w.output_size(&input, ceil_mode).unwrap();
                let dy = dims(&[x[0]], &out);
                let backward = Op::PoolBackward { pool: pool.clone(), input };
                check_seeds(&[Leaf::I(&dy, UNIT)], |g, a| op(g, backward.clone(), a));
            }
        }
    }
}
