//! Truncated, bit-flipped and random bytes fed to every reader of untrusted input: errors, never panics.

use crema_proto::{
    binary, blob, kind, text, BlobProto, BlobProtoVector, Datum, NetParameter, SolverParameter,
    SolverState,
};
use proptest::prelude::*;

fn fixture(name: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/caffe-reference/formats")
        .join(name);
    std::fs::read(path).unwrap()
}

/// Every binary reader, and what comes after decoding (shape and value checks, upgrades), on `bytes`.
fn read_everything(bytes: &[u8]) {
    if let Ok(proto) = binary::decode::<BlobProto>(bytes, "fuzz") {
        let _ = blob::checked(&proto, "fuzz");
    }
    if let Ok(mut net) = binary::decode::<NetParameter>(bytes, "fuzz") {
        for layer in &net.layer {
            for proto in &layer.blobs {
                let _ = blob::checked(proto, "fuzz");
            }
        }
        let _ = crema_proto::upgrade::upgrade_net(&mut net, "fuzz");
    }
    if let Ok(state) = binary::decode::<SolverState>(bytes, "fuzz") {
        for proto in &state.history {
            let _ = blob::checked(proto, "fuzz");
        }
    }
    let _ = binary::decode::<BlobProtoVector>(bytes, "fuzz");
    let _ = binary::decode::<Datum>(bytes, "fuzz");
    let _ = kind::sniff(bytes, Some("caffemodel"));
}

const SEEDS: &[&str] = &[
    "H_shape_1x1x4x4.binaryproto",
    "H_legacy_nchw_1x1x4x4.binaryproto",
    "H_shape_4x4.binaryproto",
    "tiny_ip.caffemodel",
];

#[test]
fn every_truncation_of_real_files_is_handled() {
    for name in SEEDS {
        let bytes = fixture(name);
        for end in 0..bytes.len() {
            read_everything(&bytes[..end]);
        }
    }
}

#[test]
fn every_single_bit_flip_of_real_files_is_handled() {
    for name in SEEDS {
        let bytes = fixture(name);
        for bit in 0..bytes.len() * 8 {
            let mut flipped = bytes.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            read_everything(&flipped);
        }
    }
}

#[test]
fn a_claim_of_gigabytes_is_an_error_not_an_allocation() {
    // BlobProto.data (field 5, packed) claiming 2^31 - 1 bytes, then 4 bytes of payload.
    let bytes = [0x2a, 0xff, 0xff, 0xff, 0xff, 0x07, 0, 0, 0x80, 0x3f];
    assert!(binary::decode::<BlobProto>(&bytes, "claim").is_err());
    // A shape of 2^62 elements with no data: decodes, then the shape check refuses it.
    let proto = BlobProto {
        shape: Some(crema_proto::BlobShape {
            dim: vec![1 << 31, 1 << 31],
        }),
        ..Default::default()
    };
    let bytes = binary::encode(&proto);
    let decoded: BlobProto = binary::decode(&bytes, "claim").unwrap();
    assert!(blob::checked(&decoded, "claim").is_err());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        read_everything(&bytes);
    }

    #[test]
    fn random_splices_of_real_files_never_panic(
        seed in 0..SEEDS.len(),
        at in any::<prop::sample::Index>(),
        insert in proptest::collection::vec(any::<u8>(), 0..16),
        cut in 0usize..8,
    ) {
        let mut bytes = fixture(SEEDS[seed]);
        let at = at.index(bytes.len());
        let end = (at + cut).min(bytes.len());
        bytes.splice(at..end, insert);
        read_everything(&bytes);
    }

    #[test]
    fn random_text_never_panics(text in "[ -~\\n\\t{}:\"'#]{0,300}") {
        let _ = text::parse::<NetParameter>(&text, "fuzz.prototxt");
        let _ = text::parse::<SolverParameter>(&text, "fuzz.prototxt");
        let _ = kind::sniff(text.as_bytes(), None);
    }

    #[test]
    fn mutated_prototxt_never_panics(at in any::<prop::sample::Index>(), insert in "[ -~\\n{}]{0,8}", cut in 0usize..6) {
        let mut source = String::from(
            "name: 'n'\nlayer { name: 'loss' type: 'InfogainLoss' bottom: 'fc' bottom: 'label'\n\
             infogain_loss_param { source: 'H.binaryproto' axis: 1 } loss_param { normalization: VALID } }\n\
             layers { name: 'old' type: INNER_PRODUCT blobs_lr: 1 }\n",
        );
        let mut at = at.index(source.len());
        while !source.is_char_boundary(at) { at -= 1; }
        let end = (at + cut).min(source.len());
        source.replace_range(at..end, &insert);
        if let Ok(mut net) = text::parse::<NetParameter>(&source, "fuzz.prototxt") {
            let _ = crema_proto::upgrade::upgrade_net(&mut net, "fuzz.prototxt");
            let printed = text::print(&net);
            prop_assert!(text::parse::<NetParameter>(&printed, "printed").is_ok());
        }
    }
}
