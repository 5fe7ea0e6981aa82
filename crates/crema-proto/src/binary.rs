//! Binary protobuf: decoding bytes from a file into a Caffe message, with limits.
//!
//! Decoding never allocates from a length read in the bytes before checking it against the bytes that are
//! really there (prost checks every length prefix against the remaining buffer), nests at most 100 deep, and
//! reports truncation, bad wire types and invalid UTF-8 as [`ProtoError::Decode`].

use crate::descriptor::CaffeMessage;
use crate::error::{ProtoError, Result};

/// The largest binary file crema reads, as Caffe's `ReadProtoFromBinaryFile` (INT_MAX bytes).
pub const MAX_BINARY_BYTES: u64 = i32::MAX as u64;

/// Decodes `bytes` as the message `M`; `origin` names the bytes in errors.
///
/// ```
/// use crema_proto::{binary, BlobProto};
/// use prost::Message;
/// let blob = BlobProto { data: vec![1.0, 2.0], ..Default::default() };
/// let back: BlobProto = binary::decode(&blob.encode_to_vec(), "<memory>")?;
/// assert_eq!(back, blob);
/// assert!(binary::decode::<BlobProto>(&[0x2a, 0xff, 0x01], "<memory>").is_err());
/// # Ok::<(), crema_proto::ProtoError>(())
/// ```
pub fn decode<M: CaffeMessage>(bytes: &[u8], origin: &str) -> Result<M> {
    if bytes.len() as u64 > MAX_BINARY_BYTES {
        return Err(ProtoError::TooLarge {
            origin: origin.to_owned(),
            message: M::NAME,
            size: bytes.len() as u64,
            limit: MAX_BINARY_BYTES,
        });
    }
    M::decode(bytes).map_err(|error| ProtoError::Decode {
        origin: origin.to_owned(),
        message: M::NAME,
        reason: error.to_string(),
    })
}

/// Encodes `message` as protobuf bytes, fields in number order as Caffe's C++ writer does.
pub fn encode<M: CaffeMessage>(message: &M) -> Vec<u8> {
    message.encode_to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BlobProto, NetParameter};

    #[test]
    fn length_prefix_past_the_end_is_an_error() {
        // Field 5 (data, packed float), length 0x7fffffff, no payload: a claim of 2 GiB.
        let bytes = [0x2a, 0xff, 0xff, 0xff, 0xff, 0x07];
        let err = decode::<BlobProto>(&bytes, "h.binaryproto").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("h.binaryproto: not a valid BlobProto"),
            "{err}"
        );
    }

    #[test]
    fn deep_nesting_is_refused() {
        // caffe.proto has no recursive message, so nest unknown groups 200 deep (0x0b: field 1, start group).
        let bytes = vec![0x0b; 200];
        assert!(decode::<NetParameter>(&bytes, "deep").is_err());
    }
}
