//! The passes, one file each. Every pass is `run(&Graph) -> Result<Graph, OptError>`:
//! it never changes what the graph computes (the interpreter gives the same outputs
//! and updates before and after) and leaves dead values to `dce`. A pass expects a
//! verified graph, as every stage of nnc does; `optimize` verifies its input and,
//! in debug builds and tests, every pass's output.

pub mod const_fold;
pub mod cse;
pub mod dce;
pub mod fold_transpose;
pub mod fuse_bias_grad;
pub mod fuse_conv;
pub mod fuse_dense;
pub mod fuse_relu_grad;
pub mod fuse_softmax_ce;
pub mod fuse_update;
pub mod simplify;

use crate::OptError;
use nnc_ir::Graph;

/// A pass: its name (as `--passes` and `--dump-after` spell it), its function, and
/// one line on what it does.
#[derive(Clone, Copy)]
pub struct Pass {
    pub name: &'static str,
    pub run: fn(&Graph) -> Result<Graph, OptError>,
    pub about: &'static str,
}

/// Every pass, in the order `-O1` first runs them.
pub const ALL: &[Pass] = &[
    Pass {
        name: simplify::NAME,
        run: simplify::run,
        about: "x*1, x+0, identity, neg(neg x), transpose and reshape chains",
    },
    Pass {
        name: const_fold::NAME,
        run: const_fold::run,
        about: "small static values computed from constants become constants",
    },
    Pass { name: cse::NAME, run: cse::run, about: "one value per distinct computation and constant" },
    Pass { name: dce::NAME, run: dce::run, about: "drop what no output or update needs" },
    Pass {
        name: fold_transpose::NAME,
        run: fold_transpose::run,
        about: "transposes feeding matrix products become flags",
    },
    Pass {
        name: fuse_softmax_ce::NAME,
        run: fuse_softmax_ce::run,
        about: "cross-entropy loss and its gradient as one kernel",
    },
    Pass {
        name: fuse_update::NAME,
        run: fuse_update::run,
        about: "optimizer updates, in the weight-gradient product's epilogue where possible",
    },
    Pass { name: fuse_dense::NAME, run: fuse_dense::run, about: "matmul + alpha + bias + activation" },
    Pass {
        name: fuse_conv::NAME,
        run: fuse_conv::run,
        about: "conv + bias + residual + activation + clip as one kernel",
    },
    Pass {
        name: fuse_relu_grad::NAME,
        run: fuse_relu_grad::run,
        about: "the ReLU mask in the epilogue of the product making the gradient",
    },
    Pass {
        name: fuse_bias_grad::NAME,
        run: fuse_bias_grad::run,
        about: "bias-gradient sums in the epilogue of the gradient's kernel",
    },
];

/// The pass called `name`.
pub fn find(name: &str) -> Result<Pass, OptError> {
    ALL.iter()
        .copied()
        .find(|p| p.name == name)
        .ok_or_else(|| OptError::UnknownPass { name: name.to_string(), known: ALL.iter().map(|p| p.name).collect() })
}
