//! The kernel families agree bit for bit: the assembled AVX2 tiles compute each element
//! with the same FMA chain as the Cranelift f32x4 tiles, so every product (odd sizes
//! 1, 3, 7, 17, 257; K not a multiple of 8; every transpose; several K blocks) and the
//! whole fused seed step give identical bits with `Kernels::Avx2` (and `Avx512` where
//! the CPU has it) and `Kernels::Cranelift`. Skipped on CPUs without AVX2+FMA.

mod common;
use common::*;
use nnc_autodiff::{Optimizer, LABELS, LR, STEP};
use nnc_cranelift::{compile, CompileOptions, Kernels};
use nnc_ir::{DType, Op, Tensor};

fn has_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    return std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma");
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// The assembled families this CPU runs.
fn assembled() -> Vec<Kernels> {
    let mut k = Vec::new();
    if has_avx2() {
        k.push(Kernels::Avx2);
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx512f") {
            k.push(Kernels::Avx512);
        }
    }
    k
}

fn opts(kernels: Kernels) -> CompileOptions {
    CompileOptions { kernels, checked: false, ..Default::default() }
}

#[test]
fn matrix_products_are_bitwise_equal_across_kernel_families() {
    if !has_avx2() {
        eprintln!("skipped: no AVX2+FMA");
        return;
    }
    let mut cases = 0;
    for (ta, tb) in [(false, false), (false, true), (true, false), (true, true)] {
        for &m in &[1, 3, 7, 17, 257] {
            for &k in &[1, 7, 17, 300, 784] {
                for &n in &[3, 10, 16, 17, 257] {
                    let mut r = rng((m * 7919 + k * 31 + n) as u64);
                    let sa = if ta { vec![k, m] } else { vec![m, k] };
                    let sb = if tb { vec![n, k] } else { vec![k, n] };
                    let g = one_op(
                        Op::MatMul { trans_a: ta, trans_b: tb },
                        &[fixed(DType::F32, &sa), fixed(DType::F32, &sb)],
                    );
                    let f = feeds(&[("a0", random_f32(&mut r, &sa)), ("a1", random_f32(&mut r, &sb))]);
                    let clif = compile(&g, &opts(Kernels::Cranelift)).unwrap().run(&f).unwrap();
                    // One thread as well as every core: with threads, a product with
                    // M ≤ N splits by columns and reads A in place, so only one thread
                    // packs a transposed A (through the first panel's tiles).
                    for family in assembled() {
                        for threads in [1, 0] {
                            let o = CompileOptions { threads, ..opts(family) };
                            let asm = compile(&g, &o).unwrap().run(&f).unwrap();
                            let what = format!("{family:?}, {threads} threads: {m}x{k}x{n} trans ({ta}, {tb})");
                            assert!(bits(&asm[0]) == bits(&clif[0]), "{what}");
                        }
                    }
                    cases += 1;
                }
            }
        }
    }
    assert_eq!(cases, 500);
}

/// Every assembled tile variant: rows 1..=6 (the M edge picks one at run time) times
/// every column count of one and two vectors, with A read in place and packed.
#[test]
fn every_tile_variant_is_bitwise_equal_to_the_cranelift_tiles() {
    if !has_avx2() {
        eprintln!("skipped: no AVX2+FMA");
        return;
    }
    let k = 37;
    for ta in [false, true] {
        for m in 1..=12 {
            for n in 1..=33 {
                let mut r = rng((m * 131 + n) as u64);
                let sa = if ta { vec![k, m] } else { vec![m, k] };
                let g = one_op(
                    Op::MatMul { trans_a: ta, trans_b: false },
                    &[fixed(DType::F32, &sa), fixed(DType::F32, &[k, n])],
                );
                let f = feeds(&[("a0", random_f32(&mut r, &sa)), ("a1", random_f32(&mut r, &[k, n]))]);
                let clif = compile(&g, &opts(Kernels::Cranelift)).unwrap().run(&f).unwrap();
                for family in assembled() {
                    let asm = compile(&g, &opts(family)).unwrap().run(&f).unwrap();
                    assert!(bits(&asm[0]) == bits(&clif[0]), "{family:?}: {m}x{k}x{n} trans_a {ta}");
                }
            }
        }
    }
}

/// A run-time M (the batch): the assembled kernels pack B only from enough rows, and
/// give the last one or two rows to one-row tiles across several panels; a large
/// transposed B is dot products up to 16 rows. One compiled product runs every M in
/// turn, crossing these choices back and forth.
#[test]
fn batch_sized_products_are_bitwise_equal_across_kernel_families() {
    if !has_avx2() {
        eprintln!("skipped: no AVX2+FMA");
        return;
    }
    for (k, trans_b) in [(5, false), (300, false), (5, true), (300, true), (131, true)] {
        for &n in &[40, 64, 100, 256, 301] {
            let sb = if trans_b { [n, k] } else { [k, n] };
            let g =
                one_op(Op::MatMul { trans_a: false, trans_b }, &[batched(DType::F32, &[k]), fixed(DType::F32, &sb)]);
            let mut clif = compile(&g, &opts(Kernels::Cranelift)).unwrap();
            let mut asm: Vec<_> = assembled().into_iter().map(|f| (f, compile(&g, &opts(f)).unwrap())).collect();
            for &m in &[1, 2, 200, 3, 8, 191, 192, 7, 197, 9, 16, 17, 14] {
                let mut r = rng((m * 7919 + k * 31 + n) as u64);
                let f = feeds(&[("a0", random_f32(&mut r, &[m, k])), ("a1", random_f32(&mut r, &sb))]);
                let want = bits(&clif.run(&f).unwrap()[0]);
                for (family, c) in &mut asm {
                    assert!(bits(&c.run(&f).unwrap()[0]) == want, "{family:?}: {m}x{k}x{n} trans_b {trans_b}");
                }
            }
        }
    }
}

#[test]
fn the_seed_step_is_bitwise_equal_across_kernel_families() {
    if !has_avx2() {
        eprintln!("skipped: no AVX2+FMA");
        return;
    }
    // The seed sizes, and odd ones: the fused epilogues' masked last vectors and edge
    // rows (bias+ReLU, the ReLU mask, SGD) at every width.
    // Weights stored `[out, in]` too (dot products at batch 1, 7 and 2).
    for (optimizer, sizes, out_in) in [
        (Optimizer::Sgd, [784, 256, 10], false),
        (Optimizer::adam(), [784, 256, 10], false),
        (Optimizer::Sgd, [37, 23, 5], false),
        (Optimizer::Sgd, [19, 40, 3], false),
        (Optimizer::adam(), [37, 23, 5], false),
        (Optimizer::Sgd, [784, 256, 10], true),
    ] {
        let g = fused_step_in_layout(optimizer, 8, sizes, out_in);
        let [inputs, _, classes] = sizes;
        let run = |kernels: Kernels| {
            let mut c = compile(&g, &opts(kernels)).unwrap();
            let family = match kernels {
                Kernels::Avx2 => "avx2-asm",
                Kernels::Avx512 => "avx512-asm",
                _ => "cranelift-f32x4",
            };
            assert_eq!(c.kernel_family(), family);
            let mut r = rng(6);
            let mut out = Vec::new();
            for (step, batch) in [100, 1, 7, 257, 2].into_iter().enumerate() {
                let mut f = feeds(&[
                    ("x", random_f32(&mut r, &[batch, inputs])),
                    (LABELS, random_i64(&mut r, &[batch], 0, classes as i64)),
                    (LR, Tensor::scalar_f32(0.01)),
                ]);
                if matches!(optimizer, Optimizer::Adam { .. }) {
                    f.insert(STEP.into(), Tensor::scalar_i64(step as i64 + 1));
                }
                if step == 0 && kernels == Kernels::Cranelift {
                    check(&g, &f, 1e-5); // against the interpreter
                }
                out.push(bits(&c.run(&f).unwrap()[0]));
            }
            out.extend(c.param_names().iter().map(|n| bits(&c.param(n).unwrap())));
            out
        };
        let clif = run(Kernels::Cranelift);
        for family in assembled() {
            assert!(run(family) == clif, "{family:?}, {optimizer:?}, {sizes:?}, out_in {out_in}");
        }
    }
}
