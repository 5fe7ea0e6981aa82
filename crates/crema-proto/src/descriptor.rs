//! The reflection view of caffe.proto: the descriptor pool built into the crate, and the trait that ties each
//! generated type to its descriptor so that text format and upgrades can work on any message by name.

use std::sync::OnceLock;

use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor};

static DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/caffe_descriptor.bin"));

/// `caffe.proto` compiled, as an encoded `FileDescriptorSet`: what Python's protobuf needs to make the
/// `caffe_pb2` module of the same schema.
pub fn descriptor_set_bytes() -> &'static [u8] {
    DESCRIPTOR_SET
}

/// The descriptor pool of `caffe.proto` as compiled into this crate.
pub fn descriptor_pool() -> &'static DescriptorPool {
    static POOL: OnceLock<DescriptorPool> = OnceLock::new();
    POOL.get_or_init(|| {
        // Built by build.rs from the same schema as the generated types; failing here is a build defect.
        DescriptorPool::decode(DESCRIPTOR_SET).expect("build.rs wrote a valid descriptor set")
    })
}

/// A generated Caffe message type that crema reads and writes as a whole file or a text block.
pub trait CaffeMessage: prost::Message + prost::Name + Default + Sized {
    /// The message's descriptor in [`descriptor_pool`].
    fn descriptor() -> MessageDescriptor {
        descriptor_pool()
            .get_message_by_name(&Self::full_name())
            .expect("every generated type is in the pool it was generated from")
    }

    /// The same message as a [`DynamicMessage`], for work that goes field by field.
    fn to_dynamic(&self) -> DynamicMessage {
        DynamicMessage::decode(Self::descriptor(), self.encode_to_vec().as_slice())
            .expect("a message encoded by prost decodes with its own descriptor")
    }

    /// The typed message back from a [`DynamicMessage`] of the same descriptor.
    fn from_dynamic(message: &DynamicMessage) -> Self {
        Self::decode(message.encode_to_vec().as_slice())
            .expect("a dynamic message of this descriptor decodes as its generated type")
    }
}

impl<T: prost::Message + prost::Name + Default> CaffeMessage for T {}
