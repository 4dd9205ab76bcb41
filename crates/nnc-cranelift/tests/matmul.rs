//! Matrix products against the interpreter: every transpose combination, odd sizes,
//! the seed model's sizes, leading axes, and every tile shape the provider can emit.

mod common;
use common::*;
use nnc_cranelift::{compile, CompileOptions, TileShape};
use nnc_ir::{DType, Dim, Op, Shape, TensorType};

/// Stored operand shapes for `op(A)[m,k]·op(B)[k,n]`.
fn shapes(m: usize, k: usize, n: usize, ta: bool, tb: bool) -> (Vec<usize>, Vec<usize>) {
    (if ta { vec![k, m] } else { vec![m, k] }, if tb { vec![n, k] } else { vec![k, n] })
}

fn check_matmul(m: usize, k: usize, n: usize, ta: bool, tb: bool, opts: &CompileOptions, seed: u64) {
    let mut r = rng(seed);
    let (sa, sb) = shapes(m, k, n, ta, tb);
    let g = one_op(Op::MatMul { trans_a: ta, trans_b: tb }, &[fixed(DType::F32, &sa), fixed(DType::F32, &sb)]);
    let f = feeds(&[("a0", random_f32(&mut r, &sa)), ("a1", random_f32(&mut r, &sb))]);
    let mut c = compile(&g, opts).unwrap();
    let want = nnc_interp::run(&g, &f).unwrap();
    let got = c.run(&f).unwrap();
    assert_close_scaled(&got[0], &want[0], 1e-5, &format!("{m}x{k}x{n} trans ({ta}, {tb})"));
}

#[test]
fn small_odd_sizes_every_transpose() {
    for (ta, tb) in [(false, false), (false, true), (true, false), (true, true)] {
        for &m in &[1, 2, 3, 4, 5, 7, 9, 17] {
            for &k in &[1, 3, 7, 17] {
                for &n in &[1, 3, 4, 7, 8, 12, 13, 17, 33] {
                    check_matmul(m, k, n, ta, tb, &CompileOptions::default(), (m * 1000 + k * 100 + n) as u64);
                }
            }
        }
    }
}

#[test]
fn seed_sizes_and_odd_k_n_every_transpose() {
    for (ta, tb) in [(false, false), (false, true), (true, false), (true, true)] {
        for &m in &[1, 2, 3, 4, 5, 6, 7, 8, 9, 16, 17, 33, 100] {
            // (515, 70) and (131, 300) are split along K at up to 6 rows, into parts
            // of unequal depth, with a partial panel; with B transposed, they and
            // (784, 256) are dot products up to 16 rows (K not a multiple of 8, a
            // partial group of columns).
            for &(k, n) in &[(784, 256), (101, 37), (13, 255), (515, 70), (131, 300)] {
                check_matmul(m, k, n, ta, tb, &CompileOptions::default(), (m * 7 + k + n) as u64);
            }
        }
    }
    // The backward products of the seed model.
    check_matmul(784, 100, 256, true, false, &CompileOptions::default(), 1);
    check_matmul(256, 100, 784, true, false, &CompileOptions::default(), 2);
    check_matmul(100, 256, 784, false, false, &CompileOptions::default(), 3);
    check_matmul(100, 256, 10, false, false, &CompileOptions::default(), 4);
    check_matmul(100, 10, 256, false, true, &CompileOptions::default(), 5);
}

#[test]
fn every_tile_shape_and_k_block() {
    for mr in 1..=6 {
        for nv in 1..=3 {
            for (kc, unroll, fused) in [(256, 2, true), (5, 1, false), (7, 3, true)] {
                let tile = TileShape { mr, nv, kc, unroll, fused };
                let opts = CompileOptions { tile: Some(tile), threads: 1, ..Default::default() };
                for (ta, tb) in [(false, false), (true, true)] {
                    check_matmul(13, 17, 23, ta, tb, &opts, (mr * 10 + nv) as u64);
                    check_matmul(mr, 33, 4 * nv, ta, tb, &opts, 3);
                }
            }
        }
    }
}

/// `[N, k] · [k, n]`, `[N, k]ᵀ · [N, n]` (K is the batch), and `[m, k] · [N, k]ᵀ`
/// (N is the batch) at several batch sizes through one compiled function.
#[test]
fn batch_dependent_m_k_and_n() {
    let cases: [(TensorType, TensorType, bool, bool); 3] = [
        (batched(DType::F32, &[19]), fixed(DType::F32, &[19, 10]), false, false),
        (batched(DType::F32, &[9]), batched(DType::F32, &[21]), true, false),
        (fixed(DType::F32, &[5, 11]), batched(DType::F32, &[11]), false, true),
    ];
    for (i, (ta_ty, tb_ty, ta, tb)) in cases.into_iter().enumerate() {
        let g = one_op(Op::MatMul { trans_a: ta, trans_b: tb }, &[ta_ty.clone(), tb_ty.clone()]);
        let mut c = jit(&g);
        let mut r = rng(i as u64);
        for batch in [0, 1, 2, 7, 30, 100] {
            let f = feeds(&[
                ("a0", random_f32(&mut r, &ta_ty.shape.resolve(batch))),
                ("a1", random_f32(&mut r, &tb_ty.shape.resolve(batch))),
            ]);
            check_compiled(&mut c, &g, &f, 1e-5);
        }
    }
}

#[test]
fn leading_axes_broadcast_and_batched() {
    let cases: [(&[usize], &[usize], bool, bool); 6] = [
        (&[2, 5, 7], &[7, 3], false, false), // stack times matrix: one tall product
        (&[2, 7, 5], &[7, 3], true, false),  // transposed stack: one product per matrix
        (&[2, 5, 7], &[2, 7, 3], false, false),
        (&[2, 1, 5, 7], &[3, 3, 7], false, true),
        (&[5, 7], &[4, 7, 9], false, false),
        (&[3, 2, 4, 6], &[3, 2, 9, 4], true, true),
    ];
    for (i, (sa, sb, ta, tb)) in cases.into_iter().enumerate() {
        let g = one_op(Op::MatMul { trans_a: ta, trans_b: tb }, &[fixed(DType::F32, sa), fixed(DType::F32, sb)]);
        let mut r = rng(i as u64);
        check(&g, &feeds(&[("a0", random_f32(&mut r, sa)), ("a1", random_f32(&mut r, sb))]), 1e-5);
    }
    // A batch of matrices whose count is the batch size.
    let mut a = batched(DType::F32, &[3, 4]);
    a.shape = Shape(vec![Dim::Batch, Dim::Fixed(3), Dim::Fixed(4)]);
    let g = one_op(Op::MatMul { trans_a: false, trans_b: false }, &[a, fixed(DType::F32, &[4, 5])]);
    let mut c = jit(&g);
    let mut r = rng(9);
    for batch in [1, 6] {
        check_compiled(
            &mut c,
            &g,
            &feeds(&[("a0", random_f32(&mut r, &[batch, 3, 4])), ("a1", random_f32(&mut r, &[4, 5]))]),
            1e-5,
        );
    }
    let g = one_op(
        Op::MatMul { trans_a: true, trans_b: false },
        &[
            TensorType::new(DType::F32, Shape(vec![Dim::Batch, Dim::Fixed(4), Dim::Fixed(3)])),
            batched(DType::F32, &[4, 2]),
        ],
    );
    let mut c = jit(&g);
    for batch in [1, 5] {
        check_compiled(
            &mut c,
            &g,
            &feeds(&[("a0", random_f32(&mut r, &[batch, 4, 3])), ("a1", random_f32(&mut r, &[batch, 4, 2]))]),
            1e-5,
        );
    }
}
