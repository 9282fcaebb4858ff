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
    /// A device failure on one line. burn and cubecl report them over many lines ("An error
    /// happened during execution / Caused by: / ..."); this keeps the causes, and says what to
    /// change when the device ran out of memory or past one of its limits.
    pub fn device(e: impl std::fmt::Display) -> Self {
        let text = one_line(&e.to_string());
        let lower = text.to_lowercase();
        let memory = [
            "out of memory",
            "out of device memory",
            "outofmemory",
            "can't allocate buffer",
            "maximum buffer size",
            "cube count too big",
        ]
        .iter()
        .any(|m| lower.contains(m));
        Error::Device(if memory {
            format!(
                "out of device memory or past a device limit (lower batch_size, or the PEFT rank \
                 or prefix length; raise train.grad_accum to keep the effective batch): {text}"
            )
        } else {
            text
        })
    }
    pub(crate) fn config(file: &str, field: &str, reason: impl Into<String>) -> Self {
        Error::Config {
            file: file.to_string(),
            field: field.to_string(),
            reason: reason.into(),
        }
    }
}

/// A multi-line failure report (burn's "Caused by:" chains, a wgpu validation error, a panic
/// with a backtrace) as one line: its distinct causes joined by ": ", without the headings and
/// backtrace frames.
pub fn one_line(text: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for line in text.lines().map(str::trim) {
        if line == "stack backtrace:" || line.starts_with("Asked at:") {
            break;
        }
        let noise = line.is_empty()
            || line == "Caused by:"
            || line.starts_with("An error happened during execution")
            || line.starts_with("No backtrace available")
            || line.starts_with("note: ");
        if !noise && !parts.contains(&line) {
            parts.push(line);
        }
    }
    let mut out = String::new();
    for p in parts {
        if !out.is_empty() {
            out.push_str(if out.ends_with([':', '.', ';']) {
                " "
            } else {
                ": "
            });
        }
        out.push_str(p);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cubecl_failure_chain_reads_as_one_line_with_advice() {
        // The shape of the error a wgpu device gave for a 9.6 GB LoRA matrix (abridged).
        let chain = "An error happened during execution\nCaused by:\n  the work writing it was \
            skipped 78 operation(s) below a failure: matmul_naive: An unknown error happened.\n\
            Unable to launch matmul because a required feature is unavailable: Cube count too big \
            (1, 6250000, 1)\n\n";
        let e = Error::device(chain).to_string();
        assert!(!e.contains('\n'), "{e}");
        assert!(e.starts_with("device: out of device memory"), "{e}");
        assert!(e.contains("batch_size") && e.contains("Cube count too big (1, 6250000, 1)"));
        let plain = Error::device("the adapter was lost\nCaused by:\n  timeout").to_string();
        assert_eq!(plain, "device: the adapter was lost: timeout");
    }
}
