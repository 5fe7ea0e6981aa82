//! Fuzzes every binary protobuf reader and the checks after it: `cargo +nightly fuzz run binary_readers`.
#![no_main]

use crema_proto::{binary, blob, kind, upgrade, BlobProto, NetParameter, SolverState};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    if let Ok(proto) = binary::decode::<BlobProto>(bytes, "fuzz") {
        let _ = blob::checked(&proto, "fuzz");
        let _ = crema::io::array_from_blobproto(&proto, "fuzz");
    }
    if let Ok(mut net) = binary::decode::<NetParameter>(bytes, "fuzz") {
        let _ = upgrade::upgrade_net(&mut net, "fuzz");
    }
    if let Ok(state) = binary::decode::<SolverState>(bytes, "fuzz") {
        for proto in &state.history {
            let _ = blob::checked(proto, "fuzz");
        }
    }
    let _ = kind::sniff(bytes, None);
});
