//! Measures matrix-product GFLOP/s for several register tiles at the seed model's
//! shapes, as the minimum over 400 runs (robust to other load on the machine):
//!
//! `cargo run --release -p nnc-cranelift --example tile_sweep -- 4x2x256x2x1 4x3x256x2x0`
//!
//! Each argument is a tile `MRxNVxKCxUNROLLxFUSED` (see `TileShape`); with none, the
//! default per-shape choice is measured. The first two cases (4 rows) mostly measure
//! the packing of B.

use ndarray::{ArrayD, IxDyn};
use nnc_cranelift::{compile, CompileOptions, TileShape};
use nnc_ir::{Graph, Op, Shape, Tensor, TensorType};
use std::collections::HashMap;
use std::time::Instant;

fn main() {
    let cases: [(&str, usize, usize, usize, bool, bool); 7] = [
        ("pack? 4x784 · 784x256", 4, 784, 256, false, false),
        ("pack? 4x784 · (256x784)ᵀ", 4, 784, 256, false, true),
        ("fwd 100x784 · 784x256", 100, 784, 256, false, false),
        ("fwd 100x784 · (256x784)ᵀ", 100, 784, 256, false, true),
        ("dW (100x784)ᵀ · 100x256", 784, 100, 256, true, false),
        ("dX 100x256 · (784x256)ᵀ", 100, 256, 784, false, true),
        ("fwd2 100x256 · 256x10", 100, 256, 10, false, false),
    ];
    let tiles: Vec<Option<TileShape>> = std::env::args()
        .skip(1)
        .map(|s| {
            let v: Vec<usize> = s.split('x').filter_map(|x| x.parse().ok()).collect();
            match v[..] {
                [mr, nv, kc, unroll, fused] => Some(TileShape { mr, nv, kc, unroll, fused: fused == 1 }),
                _ => {
                    eprintln!("expected MRxNVxKCxUNROLLxFUSED, got {s}");
                    std::process::exit(2)
                }
            }
        })
        .collect();
    let tiles = if tiles.is_empty() { vec![None] } else { tiles };
    for (name, m, k, n, ta, tb) in cases {
        let sa = if ta { vec![k, m] } else { vec![m, k] };
        let sb = if tb { vec![n, k] } else { vec![k, n] };
        let mut g = Graph::new("mm");
        let a = g.input("a", TensorType::new(nnc_ir::DType::F32, Shape::fixed(&sa))).unwrap();
        let b = g.input("b", TensorType::new(nnc_ir::DType::F32, Shape::fixed(&sb))).unwrap();
        let c = g.op(Op::MatMul { trans_a: ta, trans_b: tb }, &[a, b]).unwrap();
        g.set_outputs(vec![c]);
        let t = |s: &[usize]| {
            Tensor::F32(
                ArrayD::from_shape_vec(
                    IxDyn(s),
                    (0..s.iter().product::<usize>()).map(|i| (i % 7) as f32 * 0.1).collect(),
                )
                .unwrap(),
            )
        };
        let feeds: HashMap<String, Tensor> = [("a".to_string(), t(&sa)), ("b".to_string(), t(&sb))].into();
        for tile in &tiles {
            let mut comp =
                compile(&g, &CompileOptions { tile: *tile, threads: 1, checked: false, ..Default::default() }).unwrap();
            for _ in 0..20 {
                comp.run(&feeds).unwrap();
            }
            // The minimum over many short runs is robust to other load on the machine.
            let mut secs = f64::MAX;
            for _ in 0..400 {
                let start = Instant::now();
                comp.run(&feeds).unwrap();
                secs = secs.min(start.elapsed().as_secs_f64());
            }
            let gflops = 2.0 * (m * k * n) as f64 / secs / 1e9;
            println!(
                "{name:28} {:?}: {:.1} GFLOP/s ({:.1} µs)",
                tile.map(|t| (t.mr, t.nv, t.kc, t.unroll, t.fused)),
                gflops,
                secs * 1e6
            );
        }
    }
}
