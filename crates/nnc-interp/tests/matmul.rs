//! MatMul against a naive triple loop, for every transpose combination and with
//! broadcast leading axes.

mod common;
use common::*;
use nnc_ir::{Op, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng as SmallRng;

fn random(rng: &mut SmallRng, shape: &[usize]) -> Tensor {
    let n = shape.iter().product();
    f32s(shape, &(0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect::<Vec<_>>())
}

/// Element (i, j) of the last two axes of `t` at flat matrix offset `base`, read
/// through an optional transpose. `rows`/`cols` are the stored sizes.
fn at(data: &[f32], base: usize, cols: usize, i: usize, j: usize, trans: bool) -> f32 {
    if trans {
        data[base + j * cols + i]
    } else {
        data[base + i * cols + j]
    }
}

/// Naive matmul of stored [.., r, c] operands with leading axes already equal
/// (`batch` matrices each), accumulating in f64.
#[allow(clippy::too_many_arguments)]
fn naive(a: &[f32], b: &[f32], batch: (usize, usize), m: usize, k: usize, n: usize, ta: bool, tb: bool) -> Vec<f32> {
    let (a_cols, b_cols) = (if ta { m } else { k }, if tb { k } else { n });
    let mut out = Vec::new();
    for bi in 0..batch.0.max(batch.1) {
        let (abase, bbase) = ((bi % batch.0) * m * k, (bi % batch.1) * k * n);
        for i in 0..m {
            for j in 0..n {
                let s: f64 =
                    (0..k).map(|p| at(a, abase, a_cols, i, p, ta) as f64 * at(b, bbase, b_cols, p, j, tb) as f64).sum();
                out.push(s as f32);
            }
        }
    }
    out
}

#[test]
fn every_transpose_combination_matches_a_triple_loop() {
    let mut rng = SmallRng::seed_from_u64(1);
    for &(m, k, n) in &[(1, 1, 1), (3, 5, 4), (7, 33, 9), (16, 17, 1)] {
        for ta in [false, true] {
            for tb in [false, true] {
                let a = random(&mut rng, &if ta { [k, m] } else { [m, k] });
                let b = random(&mut rng, &if tb { [n, k] } else { [k, n] });
                let got = eval1(Op::MatMul { trans_a: ta, trans_b: tb }, [a.clone(), b.clone()]).unwrap();
                let want = naive(&a.to_f32_vec().unwrap(), &b.to_f32_vec().unwrap(), (1, 1), m, k, n, ta, tb);
                assert_close(&got, &[m, n], &want, 1e-5);
            }
        }
    }
}

#[test]
fn leading_axes_broadcast() {
    let mut rng = SmallRng::seed_from_u64(2);
    let (m, k, n) = (3, 4, 2);
    for ta in [false, true] {
        for tb in [false, true] {
            // a: [2,1,m,k] against b: [5,k,n] → [2,5,m,n]. Checked one output matrix at a
            // time: a's matrix depends on the first axis, b's on the second.
            let a = random(&mut rng, &if ta { [2, 1, k, m] } else { [2, 1, m, k] });
            let b = random(&mut rng, &if tb { [5, n, k] } else { [5, k, n] });
            let got = eval1(Op::MatMul { trans_a: ta, trans_b: tb }, [a.clone(), b.clone()]).unwrap();
            assert_eq!(got.shape(), &[2, 5, m, n]);
            let (av, bv, gv) = (a.to_f32_vec().unwrap(), b.to_f32_vec().unwrap(), got.to_f32_vec().unwrap());
            for i in 0..2 {
                for j in 0..5 {
                    let want = naive(&av[i * m * k..][..m * k], &bv[j * k * n..][..k * n], (1, 1), m, k, n, ta, tb);
                    let off = (i * 5 + j) * m * n;
                    assert_close(&f32s(&[m, n], &gv[off..off + m * n]), &[m, n], &want, 1e-5);
                }
            }
        }
    }
}

#[test]
fn rank_two_operand_against_a_batched_one() {
    let mut rng = SmallRng::seed_from_u64(3);
    let a = random(&mut rng, &[4, 3, 5]);
    let b = random(&mut rng, &[5, 2]);
    let got = eval1(Op::MatMul { trans_a: false, trans_b: false }, [a.clone(), b.clone()]).unwrap();
    let want = naive(&a.to_f32_vec().unwrap(), &b.to_f32_vec().unwrap(), (4, 1), 3, 5, 2, false, false);
    assert_close(&got, &[4, 3, 2], &want, 1e-5);
}

#[test]
fn empty_inner_dimension_gives_zeros() {
    let got = eval1(Op::MatMul { trans_a: false, trans_b: false }, [f32s(&[2, 0], &[]), f32s(&[0, 3], &[])]).unwrap();
    assert_close(&got, &[2, 3], &[0.0; 6], 0.0);
}
