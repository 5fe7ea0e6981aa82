//! crema: a Caffe-compatible deep-learning trainer on the CPU, built for cost-sensitive learning.
//!
//! - [`io`]: arrays in and out of .npy and .binaryproto files.
//! - [`proto`]: Caffe's message types and files (re-exported from `crema-proto`).

pub mod error;
pub mod io;

pub use crema_proto as proto;
pub use error::{Error, Result};
