//! Fuzzes the net builder: prototxt parsed, upgraded, built (Net::new) in a phase and stages picked from the
//! input, then run forward and backward once when small, its weights and layer states saved and restored:
//! `cargo +nightly fuzz run net_builder`. Files the net names (H.binaryproto, h5_list.txt, img_list.txt, db,
//! ...) are in a side folder made at start; seed the corpus with tests/fixtures/prototxt and the suite's nets.
#![no_main]

use crema::proto::caffe::Phase;
use crema::proto::{text, upgrade, NetParameter, NetState};
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

const TARGET: &str = "net_builder";

fuzz_target!(|bytes: &[u8]| {
    common::set_cap(640);
    let side = common::side(TARGET);
    let Ok(mut param) =
        text::parse::<NetParameter>(&String::from_utf8_lossy(bytes), "fuzz.prototxt")
    else {
        return;
    };
    if upgrade::upgrade_net(&mut param, "fuzz.prototxt").is_err() {
        return;
    }
    let knob = common::knob(bytes);
    let state = match (&param.state, knob & 1) {
        (Some(state), 1) => state.clone(),
        _ => NetState {
            phase: Some(if knob & 2 != 0 {
                Phase::Test
            } else {
                Phase::Train
            } as i32),
            level: Some(((knob >> 2) % 3) as i32),
            stage: ["deploy", "a", "b"]
                .iter()
                .enumerate()
                .filter(|(i, _)| knob >> (8 + i) & 1 != 0)
                .map(|(_, s)| s.to_string())
                .collect(),
        },
    };
    let options = crema::NetOptions {
        origin: "fuzz.prototxt".into(),
        search_dirs: vec![side.to_path_buf()],
        seed: knob >> 32,
    };
    let Ok(mut net) = crema::Net::new(&param, &state, &options) else {
        return;
    };
    if common::net_values(&net) > 4_000_000 {
        return;
    }
    if net.forward().is_ok() {
        let _ = net.backward();
    }
    let proto = net.to_proto(false);
    let _ = net.copy_trained_from(&proto, "self");
    for (name, state) in net.layer_states() {
        let _ = net.set_layer_state(&name, &state);
        let mut damaged = state.clone();
        if let Some(b) = damaged.get_mut((knob as usize >> 16) % state.len().max(1)) {
            *b ^= 0x80;
        }
        let _ = net.set_layer_state(&name, &damaged);
    }
});
