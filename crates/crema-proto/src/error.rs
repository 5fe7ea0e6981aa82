//! The one error type of crema-proto: every variant names the file (or other origin) it came from.

use std::path::PathBuf;

/// Where a message came from: a file path, or a label such as `<string>` for text given in memory.
pub type Origin = String;

/// Errors reading, writing, parsing or upgrading Caffe's files.
#[derive(Debug, thiserror::Error)]
pub enum ProtoError {
    /// The file could not be opened, read or written.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A path that names a directory, a FIFO, a device or a socket where a file is expected: reading it could
    /// block forever or never end.
    #[error("{path}: is {kind}, not a regular file")]
    NotAFile { path: PathBuf, kind: &'static str },

    /// A text-format (prototxt) file that does not parse.
    #[error("{origin}:{line}:{column}: {message}\n{context}")]
    TextParse {
        origin: Origin,
        line: usize,
        column: usize,
        message: String,
        /// The offending line with a caret under the column.
        context: String,
    },

    /// A binary protobuf file that does not decode as the message it should hold.
    #[error("{origin}: not a valid {message} ({reason})")]
    Decode {
        origin: Origin,
        message: &'static str,
        reason: String,
    },

    /// A file larger than crema is willing to read.
    #[error("{origin}: {size} bytes is over the limit of {limit} bytes for a {message}")]
    TooLarge {
        origin: Origin,
        message: &'static str,
        size: u64,
        limit: u64,
    },

    /// A message that decodes but breaks one of Caffe's rules (a shape that disagrees with its data, ...).
    #[error("{origin}: {field}: {reason}")]
    Invalid {
        origin: Origin,
        /// Path of the offending field, such as `shape.dim[2]` or `layer[3] "ip1".type`.
        field: String,
        reason: String,
    },
}

impl ProtoError {
    pub(crate) fn invalid(
        origin: &str,
        field: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        ProtoError::Invalid {
            origin: origin.to_owned(),
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// Result with [`ProtoError`].
pub type Result<T, E = ProtoError> = std::result::Result<T, E>;
