//! Fuzzes solverstates: the bytes decoded and checked, then restored into a small solver (SGD, HDF5Data,
//! ClassWeights with running counts, Dropout: histories and layer states) and stepped once:
//! `cargo +nightly fuzz run solverstate`. The state names its caffemodel `fz_model.caffemodel`, a valid one
//! written beside it. Seed the corpus with solverstates the suite's solvers write (see fuzz/README.md).
#![no_main]

use crema::proto::{binary, blob, SolverState};
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

const TARGET: &str = "solverstate";

struct Quiet;
impl crema::solver::SolverLog for Quiet {
    fn line(&mut self, _: &str) {}
}

fuzz_target!(|bytes: &[u8]| {
    common::set_cap(640);
    let side = common::side(TARGET);
    if let Ok(state) = binary::decode::<SolverState>(bytes, "fuzz") {
        for proto in &state.history {
            let _ = blob::checked(proto, "fuzz");
            let _ = crema::Blob::from_proto(proto, "fuzz");
        }
        for saved in &state.crema_layer_state {
            let _ = crema::data::hdf5::Hdf5Position::from_bytes(saved.state());
            let _ = crema::math::rng_from_state(saved.state());
        }
    } else {
        return;
    }
    let dir = common::case_dir(TARGET);
    // The model every state names: the SGD solver's weights.
    static MODEL: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    let model = MODEL.get_or_init(|| {
        let solver =
            common::seeds::solver(common::seeds::OUR_SOLVERS[0].1, side, &side.join("model"))
                .expect("the seed solver builds");
        binary::encode(&solver.net().to_proto(false))
    });
    std::fs::write(dir.join(common::seeds::SOLVERSTATE_MODEL), model).expect("write");
    let path = dir.join("fuzz.solverstate");
    std::fs::write(&path, bytes).expect("write");
    let Ok(mut solver) =
        common::seeds::solver(common::seeds::OUR_SOLVERS[0].1, side, &dir.join("snap"))
    else {
        return;
    };
    if solver.restore(&path).is_ok() {
        let _ = solver.step(1, &mut Quiet);
    }
});
