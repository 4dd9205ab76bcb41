use nnc_ir::IrError;
use thiserror::Error;

/// Why a model could not be turned into gradients or a training step.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum AutodiffError {
    /// Values on a path from a parameter to the loss whose op has no gradient rule:
    /// every such node, as `(value name, op mnemonic)`, in definition order.
    #[error(
        "no gradient rule for {}: comparisons, one_hot, integer or bool values and casts \
         other than f32 to f32 are not differentiable, and these lie on a path from a \
         parameter to the loss",
        list_nodes(.nodes)
    )]
    NoGradient { nodes: Vec<(String, &'static str)> },
    /// The loss cannot be attached to the model's output.
    #[error("cannot attach the {loss} loss to %{output}: {reason}")]
    Loss { loss: &'static str, output: String, reason: String },
    /// The value to differentiate is not a scalar f32, or a `wrt` value is not f32.
    #[error("cannot differentiate: {0}")]
    NotDifferentiable(String),
    /// No trainable parameter reaches the loss, so a training step would do nothing.
    #[error("nothing to train: {0}")]
    NothingToTrain(String),
    /// An optimizer or loss option is out of range.
    #[error("invalid training option: {0}")]
    Options(String),
    /// The model given to differentiate does not verify.
    #[error("the model is not valid IR: {0}")]
    Model(IrError),
    /// Building IR failed. For a verified model this is a bug in nnc-autodiff.
    #[error("internal error while building the training graph: {0}")]
    Ir(#[from] IrError),
}

fn list_nodes(nodes: &[(String, &'static str)]) -> String {
    let items: Vec<String> = nodes.iter().map(|(name, op)| format!("%{name} ({op})")).collect();
    items.join(", ")
}
