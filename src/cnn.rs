//! The CNN model builder behind `nnc new-cnn`: LeNet-5 for `[N, 1, 28, 28]` images
//! (as in `tests/fixtures/cnn/make_fixtures.py` and the usual PyTorch tutorial): two
//! 5×5 convolutions (6 and 16 channels, the first padded by 2), each followed by ReLU
//! and 2×2 max pooling, then dense layers 400-120-84-classes with ReLU between. The
//! dense weights are stored `[out, in]`, as PyTorch's `nn.Linear` does.

use crate::mlp::Init;
use nnc_ir::window::{Conv, Pool, PoolKind, Window};
use nnc_ir::{BinaryOp, Dim, Graph, IrError, Op, Shape, Tensor, TensorType, UnaryOp, ValueId};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

#[derive(Clone, Debug)]
pub struct CnnSpec {
    pub classes: usize,
    pub init: Init,
    pub seed: u64,
}

/// A weight of `shape`, whose fan-in is `shape[1..]`'s product. Biases start at zero.
fn weights(init: Init, shape: &[usize], fan_out: usize, rng: &mut ChaCha8Rng) -> Tensor {
    let n: usize = shape.iter().product();
    let data = crate::mlp::draw_weights(init, n / shape[0], fan_out, n, rng);
    Tensor::from_f32(shape, data).expect("shape matches")
}

fn zeros(n: usize) -> Tensor {
    Tensor::from_f32(&[n], vec![0.0; n]).expect("shape matches")
}

/// Builds LeNet-5: `input: f32[N, 1, 28, 28]` → `logits: f32[N, classes]`, with
/// parameters `conv1`, `conv2`, `fc1`, `fc2`, `fc3` (`.weight`, `.bias`).
pub fn build_lenet5(spec: &CnnSpec) -> Result<Graph, IrError> {
    if spec.classes == 0 {
        return Err(IrError::structure("classes", "a classifier needs at least one class"));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
    let mut g = Graph::new("lenet5");
    let image = TensorType::f32(&[Dim::Batch, Dim::Fixed(1), Dim::Fixed(28), Dim::Fixed(28)]);
    let mut h: ValueId = g.input("input", image)?;
    for (i, (c_in, c_out, pad)) in [(1, 6, 2), (6, 16, 0)].into_iter().enumerate() {
        let layer = format!("conv{}", i + 1);
        let w = g.param(&format!("{layer}.weight"), weights(spec.init, &[c_out, c_in, 5, 5], c_out * 25, &mut rng))?;
        let b = g.param(&format!("{layer}.bias"), zeros(c_out))?;
        let mut window = Window::new(&[5, 5]);
        window.pads_begin = vec![pad, pad];
        window.pads_end = vec![pad, pad];
        let y = g.named(&format!("{layer}.conv"), Op::Conv(Conv { window, groups: 1 }), &[h, w])?;
        let shape = Shape(vec![Dim::Fixed(c_out), Dim::Fixed(1), Dim::Fixed(1)]);
        let b = g.named(&format!("{layer}.bias_per_channel"), Op::Reshape { shape }, &[b])?;
        let y = g.named(&format!("{layer}.add"), Op::Binary(BinaryOp::Add), &[y, b])?;
        let y = g.named(&format!("{layer}.relu"), Op::Unary(UnaryOp::Relu), &[y])?;
        let mut window = Window::new(&[2, 2]);
        window.strides = vec![2, 2];
        let pool = Pool { kind: PoolKind::Max, window, ceil_mode: false };
        h = g.named(&format!("{layer}.pool"), Op::Pool(pool), &[y])?;
    }
    let flat = Shape(vec![Dim::Batch, Dim::Fixed(400)]);
    h = g.named("flatten", Op::Reshape { shape: flat }, &[h])?;
    let widths = [400, 120, 84, spec.classes];
    for (i, pair) in widths.windows(2).enumerate() {
        let layer = format!("fc{}", i + 1);
        let w = g.param(&format!("{layer}.weight"), weights(spec.init, &[pair[1], pair[0]], pair[1], &mut rng))?;
        let b = g.param(&format!("{layer}.bias"), zeros(pair[1]))?;
        let mm = g.named(&format!("{layer}.matmul"), Op::MatMul { trans_a: false, trans_b: true }, &[h, w])?;
        let last = i == widths.len() - 2;
        let name = if last { "logits".to_string() } else { format!("{layer}.add") };
        h = g.named(&name, Op::Binary(BinaryOp::Add), &[mm, b])?;
        if !last {
            h = g.named(&format!("{layer}.relu"), Op::Unary(UnaryOp::Relu), &[h])?;
        }
    }
    g.set_outputs(vec![h]);
    Ok(g)
}
