//! Which ONNX ops the importer handles, and which of their inputs are read at import
//! time (shapes, axes, ...) rather than used as run-time data.

use crate::proto::NodeProto;

/// The ONNX default operator-set domain (`""` and `"ai.onnx"` are the same domain).
pub(crate) fn is_default_domain(domain: &str) -> bool {
    domain.is_empty() || domain == "ai.onnx"
}

/// Whether `op_type` of the default domain can be imported at `opset`.
pub(crate) fn is_supported(op_type: &str, opset: i64) -> bool {
    let since = match op_type {
        "Gemm" | "MatMul" | "Add" | "Sub" | "Mul" | "Div" | "Neg" | "Exp" | "Log" | "Sqrt" | "Pow" | "Relu"
        | "LeakyRelu" | "Sigmoid" | "Tanh" | "Softmax" | "LogSoftmax" | "Flatten" | "Reshape" | "Transpose"
        | "Identity" | "Dropout" | "Constant" | "Cast" | "Unsqueeze" | "Squeeze" | "Max" | "Min" | "Greater"
        | "Less" | "Equal" | "ReduceSum" | "ReduceMean" | "ReduceMax" | "Shape" | "Gather" | "Slice" | "Concat"
        | "Split" | "Conv" | "ConvTranspose" | "MaxPool" | "AveragePool" | "GlobalAveragePool" | "GlobalMaxPool"
        | "BatchNormalization" | "Clip" => 1,
        "Expand" => 8,
        "Pad" => 2,
        "Upsample" => 7,
        "Resize" => 10,
        "Erf" | "Where" | "ConstantOfShape" | "OneHot" => 9,
        "Gelu" => 20,
        _ => return false,
    };
    opset >= since
}

/// Whether input `pos` of `node` is read as an import-time value (a shape, axes,
/// slice bounds, a dropout ratio, Clip's bounds) or only for its type (`Shape`), as
/// opposed to data. Float initializers used only this way become constants instead
/// of parameters: a clip's bounds are part of the function (ReLU6), never trained.
pub(crate) fn is_value_input(node: &NodeProto, pos: usize) -> bool {
    match node.op_type.as_str() {
        "Shape" | "ConstantOfShape" => true,
        "Reshape" | "Expand" | "Unsqueeze" | "Squeeze" | "ReduceSum" | "ReduceMean" | "ReduceMax" | "Gather" => {
            pos >= 1
        }
        "Slice" | "Dropout" | "OneHot" | "Split" | "Pad" | "Upsample" => pos >= 1,
        "Resize" | "Clip" => pos >= 1,
        _ => false,
    }
}

/// Whether input `pos` of `node` is state the op reads but does not train: batch
/// normalization's running mean and variance. Float initializers used only this way
/// become state, not parameters.
pub(crate) fn is_state_input(node: &NodeProto, pos: usize) -> bool {
    node.op_type == "BatchNormalization" && (pos == 3 || pos == 4)
}
