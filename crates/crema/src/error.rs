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

    /// An HDF5 file or source list that could not be read (the message names the file and the dataset).
    #[error(transparent)]
    Hdf5(#[from] crate::data::hdf5::Hdf5Error),

    /// A buffer whose size came from input that the memory cannot hold.
    #[error(transparent)]
    OutOfMemory(#[from] crate::memory::AllocError),

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

/// The size of the regular file at `path` ([`crema_proto::files::regular_file_size`]), a missing or unreadable
/// one being an [`Error::Io`] like any other read of it.
pub(crate) fn regular_file_size(path: &std::path::Path) -> Result<u64> {
    crema_proto::files::regular_file_size(path).map_err(|e| match e {
        ProtoError::Io { path, source } => Error::Io { path, source },
        other => other.into(),
    })
}

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
