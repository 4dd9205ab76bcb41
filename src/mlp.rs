//! The MLP model builder behind `nnc new-mlp`: dense layers with seeded initial
//! weights, in either layout ONNX files of dense layers come in: weights `[in, out]`
//! with MatMul + Add, or `[out, in]` (as PyTorch's `nn.Linear` stores them) with a
//! transposed product, which the export writes as `Gemm` with `transB = 1`, as
//! `torch.onnx.export` does for `nn.Linear` on a 2-D input.

use nnc_ir::{Dim, Graph, IrError, Tensor, TensorType, UnaryOp, ValueId};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal, Uniform};

/// The hidden-layer activation.
#[derive(Clone, Copy, Debug, PartialEq, clap::ValueEnum)]
pub enum Activation {
    Relu,
    LeakyRelu,
    Sigmoid,
    Tanh,
    Gelu,
}

impl Activation {
    pub fn op(self) -> UnaryOp {
        match self {
            Activation::Relu => UnaryOp::Relu,
            Activation::LeakyRelu => UnaryOp::LeakyRelu { alpha: 0.01 },
            Activation::Sigmoid => UnaryOp::Sigmoid,
            Activation::Tanh => UnaryOp::Tanh,
            Activation::Gelu => UnaryOp::Gelu { approximate: false },
        }
    }
}

/// How initial weights are drawn. Biases start at zero.
#[derive(Clone, Copy, Debug, PartialEq, clap::ValueEnum)]
pub enum Init {
    /// He/Kaiming normal: N(0, 2/fan_in), the usual choice before ReLU.
    He,
    /// Glorot/Xavier uniform: U(±sqrt(6/(fan_in+fan_out))), for tanh and sigmoid.
    Xavier,
    /// PyTorch's `nn.Linear` default: U(±1/sqrt(fan_in)).
    Torch,
}

/// How a layer stores its weight and multiplies by it.
#[derive(Clone, Copy, Debug, PartialEq, clap::ValueEnum)]
pub enum Layout {
    /// Weights `[in, out]`: `MatMul` then `Add`.
    Matmul,
    /// Weights `[out, in]`, as PyTorch's `nn.Linear` stores them: `Gemm` with
    /// `transB = 1` then `Add` (`torch.onnx.export` writes `nn.Linear` on 2-D inputs
    /// as the same `Gemm`, with the bias as its third input).
    Gemm,
}

#[derive(Clone, Debug)]
pub struct MlpSpec {
    /// Layer widths, input first: `[784, 256, 10]` is one hidden layer of 256.
    pub layers: Vec<usize>,
    pub activation: Activation,
    pub init: Init,
    pub seed: u64,
    pub layout: Layout,
}

impl MlpSpec {
    /// The seed workload: 784-256-10 with ReLU and He initialization.
    pub fn seed_model() -> MlpSpec {
        MlpSpec {
            layers: vec![784, 256, 10],
            activation: Activation::Relu,
            init: Init::He,
            seed: 0,
            layout: Layout::Matmul,
        }
    }
}

/// Builds the inference graph: `input: f32[N, layers[0]]` → `logits: f32[N, layers[-1]]`.
/// Parameters are `fcK.weight: [in, out]` (`[out, in]` with `Layout::Gemm`) and
/// `fcK.bias: [out]`, K counting from 1. Both layouts draw the same weights: the
/// `Gemm` layout stores the transpose of the `MatMul` layout's matrix.
pub fn build_mlp(spec: &MlpSpec) -> Result<Graph, IrError> {
    if spec.layers.len() < 2 || spec.layers.contains(&0) {
        return Err(IrError::structure(
            "layers",
            format!("an MLP needs at least two non-zero layer widths, got {:?}", spec.layers),
        ));
    }
    if let Some(pair) = spec.layers.windows(2).find(|p| p[0].checked_mul(p[1]).is_none_or(|n| n > nnc_ir::MAX_ELEMENTS))
    {
        return Err(IrError::structure(
            "layers",
            format!("a {}x{} weight matrix has more than {} elements", pair[0], pair[1], nnc_ir::MAX_ELEMENTS),
        ));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
    let mut g = Graph::new("mlp");
    let mut h: ValueId = g.input("input", TensorType::f32(&[Dim::Batch, Dim::Fixed(spec.layers[0])]))?;
    let last = spec.layers.len() - 2;
    for (i, pair) in spec.layers.windows(2).enumerate() {
        let (fan_in, fan_out) = (pair[0], pair[1]);
        let layer = format!("fc{}", i + 1);
        let mut w = init_weights(spec.init, fan_in, fan_out, &mut rng);
        let gemm = spec.layout == Layout::Gemm;
        if gemm {
            w = transposed(&w);
        }
        let w = g.param(&format!("{layer}.weight"), w)?;
        let b = g.param(
            &format!("{layer}.bias"),
            Tensor::from_f32(&[fan_out], vec![0.0; fan_out]).expect("shape matches"),
        )?;
        let mm = g.named(&format!("{layer}.matmul"), nnc_ir::Op::MatMul { trans_a: false, trans_b: gemm }, &[h, w])?;
        let name = if i == last { "logits".to_string() } else { format!("{layer}.add") };
        h = g.named(&name, nnc_ir::Op::Binary(nnc_ir::BinaryOp::Add), &[mm, b])?;
        if i != last {
            h = g.named(&format!("{layer}.act"), nnc_ir::Op::Unary(spec.activation.op()), &[h])?;
        }
    }
    g.set_outputs(vec![h]);
    Ok(g)
}

/// The transpose of a 2-D f32 tensor, row-major.
fn transposed(w: &Tensor) -> Tensor {
    let a = w.as_f32().expect("weights are f32");
    Tensor::F32(a.t().as_standard_layout().into_owned())
}

fn init_weights(init: Init, fan_in: usize, fan_out: usize, rng: &mut ChaCha8Rng) -> Tensor {
    let data = draw_weights(init, fan_in, fan_out, fan_in * fan_out, rng);
    Tensor::from_f32(&[fan_in, fan_out], data).expect("shape matches")
}

/// `n` weights of a layer with these fans, drawn as `init` says.
pub(crate) fn draw_weights(init: Init, fan_in: usize, fan_out: usize, n: usize, rng: &mut ChaCha8Rng) -> Vec<f32> {
    match init {
        Init::He => {
            let normal = Normal::new(0.0f32, (2.0 / fan_in as f32).sqrt()).expect("std dev is finite and positive");
            (0..n).map(|_| normal.sample(rng)).collect()
        }
        Init::Xavier | Init::Torch => {
            let bound = match init {
                Init::Xavier => (6.0 / (fan_in + fan_out) as f32).sqrt(),
                _ => 1.0 / (fan_in as f32).sqrt(),
            };
            let uniform = Uniform::new_inclusive(-bound, bound).expect("bound is finite and positive");
            (0..n).map(|_| uniform.sample(rng)).collect()
        }
    }
}
