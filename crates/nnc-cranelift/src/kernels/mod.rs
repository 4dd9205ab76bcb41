//! The kernels of the step, one file per family: each turns one kernel description of
//! the program (`program/`) into the body of a Cranelift function over a range of its
//! work items.

pub(crate) mod conv;
pub(crate) mod copy;
pub(crate) mod cross_entropy;
pub(crate) mod elementwise;
pub(crate) mod epilogue;
pub(crate) mod exp;
pub(crate) mod matmul;
pub(crate) mod onehot;
pub(crate) mod reduce;
pub(crate) mod softmax;
pub(crate) mod update;
pub(crate) mod window;
