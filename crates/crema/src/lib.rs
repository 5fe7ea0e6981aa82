//! crema: a Caffe-compatible deep-learning trainer on the CPU, built for cost-sensitive learning.
//!
//! - [`blob`]: [`Blob`], values and gradients with Caffe's axis rules.
//! - [`layer`]: the [`Layer`] trait; [`layers`]: every layer, one file each, and the registry.
//! - [`filler`]: initial values of learnable blobs.
//! - [`net`]: [`Net`], layers wired into a graph and run forward and backward.
//! - [`solver`]: learning-rate policies and update rules; [`data`]: the files data layers read.
//! - [`imbalance`]: class weights from label counts (the ClassWeights layer, `crema infogain`); [`metrics`]:
//!   confusion matrices, per-class recall, balanced accuracy.
//! - [`math`]: the kernels (matrix products, softmax, random numbers), the one place that knows the device.
//! - [`io`]: arrays in and out of .npy and .binaryproto files; [`memory`]: allocation that fails with an error.
//! - [`proto`]: Caffe's message types and files (re-exported from `crema-proto`).
//! - [`testing`]: the finite-difference gradient checker every layer's tests use.

pub mod blob;
pub mod data;
pub mod error;
pub mod filler;
pub mod imbalance;
pub mod io;
pub mod layer;
pub mod layers;
pub mod math;
pub mod memory;
pub mod metrics;
pub mod net;
pub mod solver;
pub mod testing;

pub use blob::Blob;
pub use crema_proto as proto;
pub use error::{Error, Result};
pub use layer::{Layer, LayerContext, LayerError};
pub use net::{Net, NetOptions};
