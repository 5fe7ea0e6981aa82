//! The library's error type. Every variant says which file (or layer, or field) the problem is in.

use std::path::PathBuf;

use crema_proto::ProtoError;

/// Errors from crema's library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Caffe protobuf file (prototxt, binaryproto, caffemodel, solverstate) that could not be read or used.
    #[error(transparent)]
    Proto(#[from] ProtoError),

    /// A file that could not be opened, read or written.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A numpy .npy file that is malformed or holds what crema does not read.
    #[error("{origin}: {reason}")]
    Npy { origin: String, reason: String },

    /// A net that cannot be built or run as defined: names the file and what is wrong.
    #[error("{origin}: {reason}")]
    Net { origin: String, reason: String },

    /// A problem in one layer: names the file, the layer and its type.
    #[error("{origin}: layer \"{layer}\" ({layer_type}): {reason}")]
    Layer {
        origin: String,
        layer: String,
        layer_type: String,
        reason: String,
    },

    /// A solver setting that cannot be used, or histories that do not fit the net.
    #[error(transparent)]
    Solver(#[from] crate::solver::SolverError),

    /// Values whose shape or count does not fit what they are used for.
    #[error("{origin}: {reason}")]
    Shape { origin: String, reason: String },
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
