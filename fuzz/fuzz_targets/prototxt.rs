//! Fuzzes the prototxt parser on nets and solvers, the upgrades, printing, and what a solver computes from its
//! own numbers: `cargo +nightly fuzz run prototxt`.
#![no_main]

use crema_proto::{text, upgrade, NetParameter, SolverParameter};
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fn round_trip<M: crema_proto::CaffeMessage>(message: &M) {
    let printed = text::print(message);
    let again: M =
        text::parse(&printed, "<printed>").expect("a parsed message's printed form parses");
    assert_eq!(text::print(&again), printed, "printing is stable");
}

fuzz_target!(|bytes: &[u8]| {
    common::set_cap(256);
    let _ = crema_proto::kind::sniff(bytes, Some("prototxt"));
    let text = String::from_utf8_lossy(bytes);
    if let Ok(mut net) = text::parse::<NetParameter>(&text, "fuzz.prototxt") {
        round_trip(&net);
        if upgrade::upgrade_net(&mut net, "fuzz").is_ok() {
            round_trip(&net);
        }
    }
    if let Ok(mut solver) = text::parse::<SolverParameter>(&text, "fuzz_solver.prototxt") {
        round_trip(&solver);
        if upgrade::upgrade_solver(&mut solver, "fuzz").is_ok() {
            for iter in [0u32, 1, 7, 1000, i32::MAX as u32, u32::MAX] {
                let _ = crema::solver::learning_rate(&solver, iter);
                let _ = crema::solver::current_step(&solver, iter);
            }
            let _ = crema::solver::iter_size(&solver);
            let _ = crema::solver::Regularization::from_param(&solver);
            if let Ok(mut rule) = crema::solver::create_rule(&solver) {
                let shapes: [&[usize]; 1] = [&[3]];
                if rule.presolve(&shapes).is_ok() {
                    let mut diff = [0.5f32; 3];
                    rule.compute_update(0, 0, &mut diff, 0.01, 1);
                }
            }
        }
    }
});
