//! Every op against the interpreter on small random shapes, including broadcasting,
//! odd sizes (1, 3, 7, 17), every dtype an op accepts, and the batch dimension.

mod common;
use common::*;
use nnc_cranelift::{compile, CompileOptions};
use nnc_ir::{BinaryOp, CeOut, DType, Dim, FusedOp, Graph, Op, ReduceOp, Shape, Tensor, TensorType, UnaryOp};
use std::collections::HashMap;

const TOL: f32 = 1e-5;

fn random_of(r: &mut Rng8, ty: &TensorType, batch: usize, positive: bool) -> Tensor {
    let shape = ty.shape.resolve(batch);
    match ty.dtype {
        DType::F32 if positive => random_positive(r, &shape),
        DType::F32 => random_f32(r, &shape),
        DType::I64 => random_i64(r, &shape, -9, 10),
        DType::I32 => random_i32(r, &shape, -9, 10),
        DType::Bool => random_bool(r, &shape),
    }
}

/// Builds a one-op graph over inputs of `types`, feeds random values at each batch
/// size, and compares the JIT with the interpreter.
fn check_op(op: Op, types: &[TensorType], positive: bool, seed: u64) {
    let g = one_op(op.clone(), types);
    let mut c = jit(&g);
    let mut r = rng(seed);
    for batch in [1, 3, 7] {
        let f: Vec<(String, Tensor)> =
            types.iter().enumerate().map(|(i, t)| (format!("a{i}"), random_of(&mut r, t, batch, positive))).collect();
        let f = f.into_iter().collect();
        check_compiled(&mut c, &g, &f, TOL);
    }
}

fn f32s(dims: &[usize]) -> TensorType {
    fixed(DType::F32, dims)
}

const SHAPES: &[&[usize]] = &[&[], &[1], &[3], &[7], &[17], &[2, 3, 7], &[5, 17]];

#[test]
fn unary_f32() {
    let ops = [
        UnaryOp::Neg,
        UnaryOp::Exp,
        UnaryOp::Sqrt,
        UnaryOp::Log,
        UnaryOp::Erf,
        UnaryOp::Relu,
        UnaryOp::LeakyRelu { alpha: 0.1 },
        UnaryOp::Sigmoid,
        UnaryOp::Tanh,
        UnaryOp::Gelu { approximate: false },
        UnaryOp::Gelu { approximate: true },
        UnaryOp::Identity,
    ];
    for (i, u) in ops.into_iter().enumerate() {
        let positive = matches!(u, UnaryOp::Log | UnaryOp::Sqrt);
        for (j, s) in SHAPES.iter().enumerate() {
            check_op(Op::Unary(u), &[f32s(s)], positive, (i * 100 + j) as u64);
        }
        check_op(Op::Unary(u), &[batched(DType::F32, &[5])], positive, i as u64);
    }
}

#[test]
fn unary_integers() {
    for d in [DType::I64, DType::I32] {
        for u in [UnaryOp::Neg, UnaryOp::Relu, UnaryOp::Identity] {
            check_op(Op::Unary(u), &[fixed(d, &[3, 7])], false, 1);
            check_op(Op::Unary(u), &[batched(d, &[17])], false, 2);
        }
    }
}

/// Pairs of shapes that broadcast, with and without the batch dimension.
fn broadcast_pairs() -> Vec<(Shape, Shape)> {
    let f = |d: &[usize]| Shape::fixed(d);
    let n = |rest: &[usize]| {
        let mut v = vec![Dim::Batch];
        v.extend(rest.iter().map(|&x| Dim::Fixed(x)));
        Shape(v)
    };
    vec![
        (f(&[17]), f(&[17])),
        (f(&[3, 7]), f(&[7])),
        (f(&[7]), f(&[3, 7])),
        (f(&[3, 1]), f(&[1, 7])),
        (f(&[17]), f(&[])),
        (f(&[]), f(&[3])),
        (f(&[2, 3, 4]), f(&[3, 1])),
        (f(&[2, 1, 5]), f(&[1, 3, 1])),
        (n(&[5]), f(&[5])),
        (n(&[1]), n(&[9])),
        (n(&[17]), n(&[17])),
        (f(&[1]), n(&[3])),
    ]
}

#[test]
fn binary_f32_with_broadcasting() {
    let ops = [
        BinaryOp::Add,
        BinaryOp::Sub,
        BinaryOp::Mul,
        BinaryOp::Div,
        BinaryOp::Pow,
        BinaryOp::Max,
        BinaryOp::Min,
        BinaryOp::Greater,
    ];
    for (i, b) in ops.into_iter().enumerate() {
        for (j, (x, y)) in broadcast_pairs().into_iter().enumerate() {
            let types = [TensorType::new(DType::F32, x), TensorType::new(DType::F32, y)];
            let positive = matches!(b, BinaryOp::Pow | BinaryOp::Div);
            check_op(Op::Binary(b), &types, positive, (i * 100 + j) as u64);
        }
    }
}

#[test]
fn binary_integers() {
    let ops = [BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::Max, BinaryOp::Min, BinaryOp::Greater];
    for d in [DType::I64, DType::I32] {
        for (i, b) in ops.into_iter().enumerate() {
            for (j, (x, y)) in broadcast_pairs().into_iter().enumerate() {
                let types = [TensorType::new(d, x), TensorType::new(d, y)];
                check_op(Op::Binary(b), &types, false, (i * 100 + j) as u64);
            }
        }
    }
}

#[test]
fn integer_division_truncates_wraps_and_refuses_zero() {
    let g = one_op(Op::Binary(BinaryOp::Div), &[fixed(DType::I64, &[4]), fixed(DType::I64, &[4])]);
    let mut c = jit(&g);
    let x = Tensor::from_i64(&[4], vec![-7, 7, i64::MIN, 9]).unwrap();
    let y = Tensor::from_i64(&[4], vec![2, -2, -1, 3]).unwrap();
    check_compiled(&mut c, &g, &feeds(&[("a0", x.clone()), ("a1", y)]), 0.0);
    let zero = Tensor::from_i64(&[4], vec![2, 0, 1, 3]).unwrap();
    let err = c.run(&feeds(&[("a0", x), ("a1", zero)])).unwrap_err();
    assert!(err.to_string().contains("division by zero"), "{err}");
}

#[test]
fn where_with_broadcasting_every_dtype() {
    for (i, d) in [DType::F32, DType::I64, DType::I32, DType::Bool].into_iter().enumerate() {
        for (j, (x, y)) in broadcast_pairs().into_iter().enumerate() {
            let types = [
                TensorType::new(DType::Bool, x.clone()),
                TensorType::new(d, y.clone()),
                TensorType::new(d, Shape::fixed(&[1])),
            ];
            check_op(Op::Where, &types, false, (i * 100 + j) as u64);
            let types = [TensorType::new(DType::Bool, y), TensorType::new(d, x.clone()), TensorType::new(d, x)];
            check_op(Op::Where, &types, false, (i * 100 + j + 50) as u64);
        }
    }
}

#[test]
fn every_cast() {
    for from in DType::ALL {
        for to in DType::ALL {
            check_op(Op::Cast { to }, &[fixed(from, &[3, 7])], false, 1);
            check_op(Op::Cast { to }, &[batched(from, &[17])], false, 2);
        }
    }
    // Saturation, NaN and truncation toward zero, as Rust's `as`.
    let g = one_op(Op::Cast { to: DType::I32 }, &[f32s(&[6])]);
    let x = Tensor::from_f32(&[6], vec![f32::NAN, 1e20, -1e20, -2.7, 2.7, 0.5]).unwrap();
    check(&g, &feeds(&[("a0", x)]), 0.0);
}

#[test]
fn reductions_over_every_axis_set() {
    let axes_sets: &[&[usize]] = &[&[], &[0], &[1], &[2], &[0, 1], &[1, 2], &[0, 2], &[0, 1, 2]];
    for (i, op) in [ReduceOp::Sum, ReduceOp::Mean, ReduceOp::Max].into_iter().enumerate() {
        for d in [DType::F32, DType::I64, DType::I32] {
            for (j, axes) in axes_sets.iter().enumerate() {
                for keep_dims in [false, true] {
                    let reduce = Op::Reduce { op, axes: axes.to_vec(), keep_dims };
                    check_op(reduce.clone(), &[fixed(d, &[3, 7, 17])], false, (i * 100 + j) as u64);
                    check_op(reduce.clone(), &[fixed(d, &[1, 5, 1])], false, (i * 100 + j) as u64);
                    check_op(reduce, &[batched(d, &[9, 3])], false, (i * 100 + j) as u64);
                }
            }
        }
    }
    // The bias gradient of the seed model: sum over the batch of [N, 256].
    check_op(
        Op::Reduce { op: ReduceOp::Sum, axes: vec![0], keep_dims: false },
        &[batched(DType::F32, &[256])],
        false,
        9,
    );
}

#[test]
fn column_sums_split_across_threads_agree_bit_for_bit() {
    // A `[rows, columns]` input summed over its rows is split into groups of 16
    // columns (45 here: two whole groups and a partial one); every thread count gives
    // the interpreter's result and the same bits.
    for (i, op) in [ReduceOp::Sum, ReduceOp::Mean, ReduceOp::Max].into_iter().enumerate() {
        let g = one_op(Op::Reduce { op, axes: vec![0], keep_dims: true }, &[fixed(DType::F32, &[3000, 45])]);
        let mut r = rng(i as u64);
        let f = feeds(&[("a0", random_f32(&mut r, &[3000, 45]))]);
        let want = nnc_interp::run(&g, &f).unwrap();
        let mut outs = Vec::new();
        for threads in [1, 2, 3] {
            let mut c = compile(&g, &CompileOptions { threads, ..Default::default() }).unwrap();
            let got = c.run(&f).unwrap();
            assert_close(&got[0], &want[0], TOL, &format!("{op:?} on {threads} threads"));
            outs.push(bits(&got[0]));
        }
        assert!(outs.iter().all(|o| *o == outs[0]), "{op:?}: thread counts differ");
    }
}

#[test]
fn softmax_and_log_softmax_along_every_axis() {
    for (i, shape) in [&[17usize][..], &[3, 7], &[2, 3, 5], &[1, 10]].into_iter().enumerate() {
        for axis in 0..shape.len() {
            check_op(Op::Softmax { axis }, &[f32s(shape)], false, i as u64);
            check_op(Op::LogSoftmax { axis }, &[f32s(shape)], false, i as u64);
        }
    }
    check_op(Op::LogSoftmax { axis: 1 }, &[batched(DType::F32, &[10])], false, 5);
    check_op(Op::Softmax { axis: 0 }, &[batched(DType::F32, &[3])], false, 6);
    // Large logits must not overflow.
    let g = one_op(Op::LogSoftmax { axis: 1 }, &[f32s(&[1, 3])]);
    check(&g, &feeds(&[("a0", Tensor::from_f32(&[1, 3], vec![1000.0, 0.0, -1000.0]).unwrap())]), TOL);
}

#[test]
fn transpose_and_broadcast_materialize() {
    for (i, perm) in [vec![1, 0], vec![0, 2, 1], vec![2, 0, 1], vec![1, 2, 0]].into_iter().enumerate() {
        let shape: Vec<usize> = [3usize, 7, 17][..perm.len()].to_vec();
        for d in DType::ALL {
            check_op(Op::Transpose { perm: perm.clone() }, &[fixed(d, &shape)], false, i as u64);
        }
    }
    check_op(Op::Transpose { perm: vec![1, 0] }, &[batched(DType::F32, &[5])], false, 7);
    for d in DType::ALL {
        check_op(Op::Broadcast { shape: Shape::fixed(&[3, 7]) }, &[fixed(d, &[7])], false, 1);
        check_op(Op::Broadcast { shape: Shape::fixed(&[3, 7]) }, &[fixed(d, &[3, 1])], false, 2);
        check_op(Op::Broadcast { shape: Shape(vec![Dim::Batch, Dim::Fixed(4)]) }, &[fixed(d, &[])], false, 3);
    }
}

#[test]
fn one_hot_from_i64_and_i32() {
    for d in [DType::I64, DType::I32] {
        let g = one_op(Op::OneHot { depth: 10 }, &[batched(d, &[])]);
        let mut c = jit(&g);
        let mut r = rng(3);
        for batch in [1, 7, 100] {
            let labels = match d {
                DType::I64 => random_i64(&mut r, &[batch], 0, 10),
                _ => random_i32(&mut r, &[batch], 0, 10),
            };
            check_compiled(&mut c, &g, &feeds(&[("a0", labels)]), 0.0);
        }
    }
    let g = one_op(Op::OneHot { depth: 3 }, &[fixed(DType::I64, &[2, 2])]);
    check(&g, &feeds(&[("a0", Tensor::from_i64(&[2, 2], vec![0, 2, 1, 1]).unwrap())]), 0.0);
    let g = one_op(Op::OneHot { depth: 37 }, &[fixed(DType::I64, &[5])]);
    check(&g, &feeds(&[("a0", Tensor::from_i64(&[5], vec![36, 0, 17, 5, 3]).unwrap())]), 0.0);
}

#[test]
fn one_hot_refuses_out_of_range_labels() {
    // Labels fed directly are checked before the step runs.
    let g = one_op(Op::OneHot { depth: 3 }, &[fixed(DType::I64, &[3])]);
    let mut c = jit(&g);
    for bad in [3, -1] {
        let err = c.run(&feeds(&[("a0", Tensor::from_i64(&[3], vec![0, bad, 1]).unwrap())])).unwrap_err();
        assert!(err.to_string().contains("out of range"), "{err}");
    }
    // Computed indices are checked by the generated code.
    let mut g = nnc_ir::Graph::new("computed");
    let x = g.input("x", fixed(DType::I64, &[2])).unwrap();
    let y = g.binary(BinaryOp::Add, x, x).unwrap();
    let h = g.op(Op::OneHot { depth: 3 }, &[y]).unwrap();
    g.set_outputs(vec![h]);
    let mut c = jit(&g);
    check_compiled(&mut c, &g, &feeds(&[("x", Tensor::from_i64(&[2], vec![1, 0]).unwrap())]), 0.0);
    let err = c.run(&feeds(&[("x", Tensor::from_i64(&[2], vec![1, 2]).unwrap())])).unwrap_err();
    assert!(err.to_string().contains("one_hot"), "{err}");
}

#[test]
fn reshape_and_identity_alias_their_operand() {
    let mut g = nnc_ir::Graph::new("alias");
    let x = g.input("x", batched(DType::F32, &[2, 3])).unwrap();
    let r = g.reshape(x, Shape(vec![Dim::Batch, Dim::Fixed(6)])).unwrap();
    let i = g.unary(UnaryOp::Identity, r).unwrap();
    let e = g.unary(UnaryOp::Exp, i).unwrap();
    let back = g.reshape(e, Shape(vec![Dim::Fixed(3), Dim::Batch, Dim::Fixed(2)])).unwrap();
    let cast = g.cast(back, DType::F32).unwrap();
    g.set_outputs(vec![cast, r, x]);
    let mut c = jit(&g);
    let mut rr = rng(1);
    for batch in [1, 4] {
        check_compiled(&mut c, &g, &feeds(&[("x", random_f32(&mut rr, &[batch, 2, 3]))]), TOL);
    }
}

#[test]
fn constants_and_dead_values() {
    let mut g = nnc_ir::Graph::new("consts");
    let x = g.input("x", batched(DType::F32, &[3])).unwrap();
    let k = g.constant(Tensor::from_f32(&[3], vec![1.0, -2.0, 0.5]).unwrap()).unwrap();
    let y = g.mul(x, k).unwrap();
    let _dead = g.unary(UnaryOp::Exp, y).unwrap();
    let s = g.scalar(2.0).unwrap();
    let z = g.add(y, s).unwrap();
    g.set_outputs(vec![z, k]);
    let mut rr = rng(2);
    check(&g, &feeds(&[("x", random_f32(&mut rr, &[5, 3]))]), TOL);
}

/// `run_views` hands out the step's buffers (and a fed input that is an output) in
/// place: the same values as the copies `run` returns, for every dtype and across
/// batch sizes (the views follow the arena as it grows).
#[test]
fn outputs_as_views_match_the_copies() {
    let mut g = Graph::new("views");
    let x = g.input("x", batched(DType::F32, &[5])).unwrap();
    let w = g.input("w", f32s(&[5, 3])).unwrap();
    let i = g.input("i", batched(DType::I64, &[3])).unwrap();
    let y = g.op(Op::MatMul { trans_a: false, trans_b: false }, &[x, w]).unwrap();
    let zero = g.constant(Tensor::scalar_f32(0.0)).unwrap();
    let positive = g.op(Op::Binary(BinaryOp::Greater), &[y, zero]).unwrap();
    let doubled = g.op(Op::Binary(BinaryOp::Add), &[i, i]).unwrap();
    let count = g.op(Op::Cast { to: DType::I32 }, &[positive]).unwrap();
    g.set_outputs(vec![y, positive, doubled, count, x]);
    let mut c = jit(&g);
    let mut r = rng(41);
    for batch in [2, 9, 1, 0] {
        let x = random_f32(&mut r, &[batch, 5]);
        let w = random_f32(&mut r, &[5, 3]);
        let i = random_i64(&mut r, &[batch, 3], -9, 10);
        let feeds: std::collections::HashMap<&str, &Tensor> = [("x", &x), ("w", &w), ("i", &i)].into();
        let copies = c.run_borrowed(&feeds).expect("runs");
        let views = c.run_views(&feeds).expect("runs");
        assert_eq!(views.len(), copies.len());
        for (k, (view, copy)) in views.iter().zip(&copies).enumerate() {
            assert_eq!(view.dtype(), copy.dtype(), "output {k} at batch {batch}");
            assert_eq!(&view.to_tensor(), copy, "output {k} at batch {batch}");
        }
        assert_eq!(views[4], x.view(), "the input passed through");
        let want =
            nnc_interp::run(&g, &[("x", &x), ("w", &w), ("i", &i)].map(|(n, t)| (n.to_string(), t.clone())).into())
                .expect("interprets");
        assert_close(&views[0].to_tensor(), &want[0], TOL, "the product");
        for k in 1..4 {
            assert_eq!(views[k].to_tensor(), want[k], "output {k} at batch {batch}");
        }
    }
}

/// Inputs that take `exp` through its clamp, overflow, subnormal and NaN paths.
const EXP_EDGES: [f32; 20] = [
    f32::NAN,
    f32::INFINITY,
    f32::NEG_INFINITY,
    0.0,
    -0.0,
    1.0,
    -1.0,
    0.5,
    1e-40,
    -1e-40,
    -87.5,
    -100.0,
    -103.97,
    -104.0,
    -1000.0,
    88.72283,
    88.7229,
    89.0,
    1000.0,
    -3.4e38,
];

/// Bit for bit, any NaN matching any NaN (a NaN's payload may follow operand order).
fn assert_same_bits(got: &Tensor, want: &Tensor, what: &str) {
    let (g, w) = (got.as_f32().unwrap(), want.as_f32().unwrap());
    assert_eq!(g.shape(), w.shape(), "{what}: shape");
    for (i, (a, b)) in g.iter().zip(w.iter()).enumerate() {
        assert!(a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()), "{what}: element {i}: {a:e} vs {b:e}");
    }
}

/// `exp` is nnc's own (`nnc_ir::math::expf`), generated inline four lanes at a time
/// and one at a time: the elementwise op, softmax, log-softmax and the fused softmax
/// cross-entropy give the interpreter's bits, for rows whose lengths leave every
/// remainder of four, with edge values mixed in.
#[test]
fn exp_softmax_and_cross_entropy_match_the_interpreter_bit_for_bit() {
    let mut r = rng(11);
    let run = |g: &Graph, f: &HashMap<String, Tensor>| {
        let want = nnc_interp::run(g, f).unwrap();
        (jit(g).run(f).unwrap(), want)
    };
    let with_edges = |r: &mut Rng8, shape: &[usize], scale: f32| {
        let mut v = random_f32(r, shape).as_f32().unwrap().iter().map(|x| x * scale).collect::<Vec<f32>>();
        for (i, e) in EXP_EDGES.iter().enumerate() {
            if let Some(x) = v.get_mut(i * 3) {
                *x = *e;
            }
        }
        Tensor::from_f32(shape, v).unwrap()
    };
    for n in [1, 3, 4, 5, 17, 67] {
        let g = one_op(Op::Unary(UnaryOp::Exp), &[f32s(&[n])]);
        let f = feeds(&[("a0", with_edges(&mut r, &[n], 60.0))]);
        let (got, want) = run(&g, &f);
        assert_same_bits(&got[0], &want[0], &format!("exp of {n}"));
    }
    for classes in [1, 3, 4, 10, 17] {
        for rows in [1, 5, 9] {
            let x = with_edges(&mut r, &[rows, classes], 20.0);
            for op in [Op::Softmax { axis: 1 }, Op::LogSoftmax { axis: 1 }] {
                let g = one_op(op.clone(), &[f32s(&[rows, classes])]);
                let (got, want) = run(&g, &feeds(&[("a0", x.clone())]));
                assert_same_bits(&got[0], &want[0], &format!("{op:?} of {rows}x{classes}"));
            }
        }
    }
    // The fused cross-entropy: its loss and gradient, every count of rows from 1 to 9
    // (zero to two groups of four rows, and every remainder), finite logits and some
    // with infinities.
    for classes in [3, 10] {
        let mut g = Graph::new("ce");
        let x = g.input("x", batched(DType::F32, &[classes])).unwrap();
        let y = g.input("y", batched(DType::I64, &[])).unwrap();
        let loss = g.op(Op::Fused(FusedOp::SoftmaxCrossEntropy { out: CeOut::Loss }), &[x, y]).unwrap();
        let grad = g.op(Op::Fused(FusedOp::SoftmaxCrossEntropy { out: CeOut::Grad }), &[x, y]).unwrap();
        g.set_outputs(vec![loss, grad]);
        let mut c = jit(&g);
        for rows in 1..=9 {
            for infinite in [false, true] {
                let mut logits = random_f32(&mut r, &[rows, classes])
                    .as_f32()
                    .unwrap()
                    .iter()
                    .map(|v| v * 30.0)
                    .collect::<Vec<f32>>();
                if infinite {
                    logits[0] = f32::NEG_INFINITY;
                    *logits.last_mut().unwrap() = f32::INFINITY;
                }
                let labels = random_i64(&mut r, &[rows], 0, classes as i64);
                let f = feeds(&[("x", Tensor::from_f32(&[rows, classes], logits).unwrap()), ("y", labels)]);
                let want = nnc_interp::run(&g, &f).unwrap();
                let got = c.run(&f).unwrap();
                for (i, name) in ["loss", "gradient"].into_iter().enumerate() {
                    assert_same_bits(&got[i], &want[i], &format!("{name}, {rows}x{classes}, infinities {infinite}"));
                }
            }
        }
    }
}

#[test]
fn concat_and_slice_every_dtype() {
    for d in [DType::F32, DType::I64, DType::I32, DType::Bool] {
        let (a, b) = (batched(d, &[3, 5]), batched(d, &[2, 5]));
        check_op(Op::Concat { axis: 1, sizes: vec![3, 2] }, &[a.clone(), b], false, 1);
        check_op(Op::Concat { axis: 2, sizes: vec![5, 5, 5] }, &[a.clone(), a.clone(), a.clone()], false, 2);
        check_op(Op::Slice { axis: 2, start: 1, end: 4 }, &[a.clone()], false, 3);
        check_op(Op::Slice { axis: 1, start: 2, end: 3 }, &[a], false, 4);
        // Odd byte counts: a bool row of 7, sliced to 3.
        check_op(Op::Slice { axis: 0, start: 2, end: 5 }, &[fixed(d, &[7])], false, 5);
    }
}
