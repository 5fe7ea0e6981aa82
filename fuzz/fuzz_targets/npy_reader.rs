//! Fuzzes the .npy reader: `cargo +nightly fuzz run npy_reader`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let _ = crema::io::npy::read_npy_bytes(bytes, "fuzz");
});
