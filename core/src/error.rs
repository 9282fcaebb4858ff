//! One error type for the core. Every message names the file and the field at fault, so the
//! shells can print it on one line.

use thiserror::Error;

/// Errors raised while loading, preprocessing or running a model.
#[derive(Debug, Error)]
pub enum Error {
    /// A file the model folder must contain could not be read.
    #[error("{file}: cannot read: {reason}")]
    Missing { file: String, reason: String },
    /// A JSON file did not parse or a field had the wrong type.
    #[error("{file}: {reason}")]
    Json { file: String, reason: String },
    /// A config field holds a value normtune cannot use.
    #[error("{file}: field `{field}`: {reason}")]
    Config {
        file: String,
        field: String,
        reason: String,
    },
    /// The weights file does not match the model the config describes.
    #[error("{file}: {reason}")]
    Weights { file: String, reason: String },
    /// The tokenizer files could not be built or used.
    #[error("{file}: tokenizer: {reason}")]
    Tokenizer { file: String, reason: String },
    /// An image could not be decoded.
    #[error("{file}: not a readable image: {reason}")]
    Image { file: String, reason: String },
    /// The request itself is invalid (an empty question, a model that cannot answer it, ...).
    #[error("{0}")]
    Input(String),
    /// The device failed (readback, allocation).
    #[error("device: {0}")]
    Device(String),
}

/// Result alias for the core.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub(crate) fn json(file: &str, e: impl std::fmt::Display) -> Self {
        Error::Json {
            file: file.to_string(),
            reason: e.to_string(),
        }
    }
    pub(crate) fn config(file: &str, field: &str, reason: impl Into<String>) -> Self {
        Error::Config {
            file: file.to_string(),
            field: field.to_string(),
            reason: reason.into(),
        }
    }
}
