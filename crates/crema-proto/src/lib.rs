//! crema-proto: Caffe's file formats, as data.
//!
//! - [`caffe`]: the message types generated from our own `proto/caffe.proto`, wire- and text-compatible with
//!   BVLC Caffe's schema (every message and field), plus crema's own fields in numbers from 70000 up.
//! - [`text`]: prototxt parsing (errors with file:line:column) and printing, through reflection.
//! - [`binary`]: bounded decoding of .binaryproto, .caffemodel and .solverstate bytes.
//! - [`files`]: reading and (atomically) writing those files on disk.
//! - [`blob`]: Caffe's rules for a BlobProto's shape and values.
//! - [`upgrade`]: V0 and V1 nets, old input fields and the deprecated `solver_type`, brought to today's form.
//!
//! ```
//! use crema_proto::{text, NetParameter};
//! let net: NetParameter = text::parse("name: \"tiny\" layer { name: \"x\" type: \"Input\" top: \"x\" }", "<doc>")?;
//! assert_eq!(net.layer[0].r#type(), "Input");
//! # Ok::<(), crema_proto::ProtoError>(())
//! ```

/// Message types generated from `proto/caffe.proto`.
#[allow(clippy::all, missing_docs)]
pub mod caffe {
    include!(concat!(env!("OUT_DIR"), "/caffe.rs"));
}

pub mod binary;
pub mod blob;
mod descriptor;
mod error;
pub mod files;
pub mod kind;
pub mod text;
pub mod upgrade;

pub use caffe::{
    BlobProto, BlobProtoVector, BlobShape, Datum, LayerParameter, NetParameter, NetState,
    NetStateRule, SolverParameter, SolverState, V1LayerParameter,
};
pub use descriptor::{descriptor_pool, descriptor_set_bytes, CaffeMessage};
pub use error::{Origin, ProtoError, Result};
pub use prost_reflect;
