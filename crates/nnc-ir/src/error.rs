use thiserror::Error;

/// Errors from building, verifying or parsing IR.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum IrError {
    /// An op's operands do not fit the op (types, shapes, attributes).
    #[error("%{value} ({op}): {message}")]
    Type { value: String, op: String, message: String },
    /// A value is defined twice, used before definition, or missing.
    #[error("%{value}: {message}")]
    Structure { value: String, message: String },
    /// The text form could not be parsed.
    #[error("line {line}, column {column}: {message}")]
    Parse { line: usize, column: usize, message: String },
}

impl IrError {
    pub fn structure(value: impl Into<String>, message: impl Into<String>) -> IrError {
        IrError::Structure { value: value.into(), message: message.into() }
    }
}
