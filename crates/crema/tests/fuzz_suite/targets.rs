//! The fuzz targets: how each makes a case from the seeds, and what it feeds the case to.
//!
//! A target returns the stage its case reached (how deep the fuzzer gets: a net that parsed, built, ran).
//! Errors (`Err`) are expected and fine; a panic anywhere is a failure, and so is a broken invariant (an
//! `invariant!` is a panic whose message starts with `INVARIANT`).

use std::path::{Path, PathBuf};

use crema::data::{datum, hdf5, image_list, labels, pixels};
use crema::io::{self, npy, DType};
use crema::proto::caffe::Phase;
use crema::proto::{
    binary, blob, files, kind, text, upgrade, BlobProto, BlobProtoVector, Datum, NetParameter,
    NetState, SolverParameter, SolverState,
};
use rand::seq::IndexedRandom;
use rand::Rng as _;

use super::mutate::{self, Rng};
use super::seeds::{self, Corpus, Seed};

/// One case: the mutated bytes, a number that picks the variant of the run (phase, mode, sizes), and side
/// files written into the case folder before the run (a mutated H matrix, HDF5 file or list).
#[derive(Clone, Debug, Default)]
pub struct Input {
    pub seed: String,
    pub data: Vec<u8>,
    pub knob: u64,
    pub files: Vec<(String, Vec<u8>)>,
}

/// What every case of a worker shares.
pub struct Ctx {
    pub corpus: Corpus,
    /// The side folder (read only).
    pub side: PathBuf,
    /// The case folder: emptied before every case that writes files; searched before the side folder.
    pub case_dir: PathBuf,
}

impl Ctx {
    /// Empties the case folder and writes the case's side files into it.
    fn prepare(&self, input: &Input) -> PathBuf {
        let _ = std::fs::remove_dir_all(&self.case_dir);
        std::fs::create_dir_all(&self.case_dir).expect("the case folder can be made");
        for (name, bytes) in &input.files {
            std::fs::write(self.case_dir.join(name), bytes).expect("a case file can be written");
        }
        self.case_dir.clone()
    }

    fn search_dirs(&self) -> Vec<PathBuf> {
        vec![self.case_dir.clone(), self.side.clone()]
    }
}

pub struct Target {
    pub name: &'static str,
    /// Share of the time budget.
    pub weight: u32,
    /// The cap on one allocation, MiB. 640 where images are decoded: crema lets decoders hold up to
    /// `pixels::MAX_IMAGE_BYTES` (512 MiB), so anything below is by design.
    pub cap_mib: usize,
    pub generate: fn(&Ctx, &mut Rng) -> Input,
    pub run: fn(&Ctx, &Input) -> &'static str,
}

pub const TARGETS: &[Target] = &[
    Target {
        name: "proto_text_net",
        weight: 10,
        cap_mib: 256,
        generate: gen_text_net,
        run: run_text_net,
    },
    Target {
        name: "proto_text_solver",
        weight: 6,
        cap_mib: 256,
        generate: gen_text_solver,
        run: run_text_solver,
    },
    Target {
        name: "proto_binary",
        weight: 10,
        cap_mib: 256,
        generate: gen_binary,
        run: run_binary,
    },
    Target {
        name: "npy",
        weight: 5,
        cap_mib: 256,
        generate: gen_npy,
        run: run_npy,
    },
    Target {
        name: "hdf5",
        weight: 10,
        cap_mib: 256,
        generate: gen_hdf5,
        run: run_hdf5,
    },
    Target {
        name: "image",
        weight: 8,
        cap_mib: 640,
        generate: gen_image,
        run: run_image,
    },
    Target {
        name: "labels",
        weight: 5,
        cap_mib: 256,
        generate: gen_labels,
        run: run_labels,
    },
    Target {
        name: "net_builder",
        weight: 24,
        cap_mib: 640,
        generate: gen_net,
        run: run_net,
    },
    Target {
        name: "solver",
        weight: 12,
        cap_mib: 640,
        generate: gen_solver,
        run: run_solver,
    },
    Target {
        name: "solverstate",
        weight: 10,
        cap_mib: 640,
        generate: gen_solverstate,
        run: run_solverstate,
    },
];

pub fn target(name: &str) -> Option<&'static Target> {
    TARGETS.iter().find(|t| t.name == name)
}

/// With `CREMA_FUZZ_VERBOSE=1`, targets print the errors their cases end on (to tune the seeds and mutations).
fn note(stage: &str, error: impl std::fmt::Display) {
    static VERBOSE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    if *VERBOSE.get_or_init(|| std::env::var_os("CREMA_FUZZ_VERBOSE").is_some()) {
        let text = error.to_string();
        let first: String = text
            .lines()
            .next()
            .unwrap_or("")
            .chars()
            .take(200)
            .collect();
        eprintln!("[{stage}] {first}");
    }
}

/// Known problems a run can steer around while they are being fixed: `CREMA_FUZZ_AVOID=huge_resize,...`.
pub fn avoid(what: &str) -> bool {
    static AVOID: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    AVOID
        .get_or_init(|| {
            std::env::var("CREMA_FUZZ_AVOID")
                .map(|v| v.split(',').map(|s| s.trim().to_owned()).collect())
                .unwrap_or_default()
        })
        .iter()
        .any(|a| a == what)
}

macro_rules! invariant {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            panic!("INVARIANT broken: {}", format!($($fmt)+));
        }
    };
}

/// Nets with more values than this are built but not run (time, not correctness).
const MAX_RUN_VALUES: usize = 4_000_000;

fn pick_seed<'a>(rng: &mut Rng, seeds: &'a [Seed]) -> &'a Seed {
    seeds.choose(rng).expect("a non-empty seed family")
}

fn others(seeds: &[Seed]) -> Vec<&[u8]> {
    seeds.iter().map(|s| s.bytes.as_slice()).collect()
}

fn text_case(rng: &mut Rng, seeds: &[Seed], dict: &mutate::TextDictionary) -> Input {
    let seed = pick_seed(rng, seeds);
    let mut data = seed.bytes.clone();
    match rng.random_range(0..20) {
        0 => mutate::mutate_bytes(rng, &mut data, &others(seeds)),
        1 => {
            // Deep nesting: the parser must not recurse without bound.
            let open = *[&b"{"[..], b"<", b"[", b"layer {", b"a {"]
                .choose(rng)
                .unwrap();
            let times = *[100usize, 1000, 10_000, 100_000].choose(rng).unwrap();
            let at = rng.random_range(0..=data.len());
            let nested: Vec<u8> = open
                .iter()
                .copied()
                .cycle()
                .take(open.len() * times)
                .collect();
            data.splice(at..at, nested);
        }
        _ => mutate::mutate_text(rng, &mut data, dict),
    }
    Input {
        seed: seed.name.clone(),
        data,
        knob: rng.random(),
        files: Vec::new(),
    }
}

/// Printing is stable: print(parse(print(m))) == print(m), and the bytes round-trip.
fn check_round_trip<M: crema::proto::CaffeMessage + PartialEq>(message: &M) {
    let printed = text::print(message);
    let again: M = match text::parse(&printed, "<printed>") {
        Ok(m) => m,
        Err(e) => panic!(
            "INVARIANT broken: a parsed message's printed form does not parse: {e}\n{printed}"
        ),
    };
    let reprinted = text::print(&again);
    invariant!(
        printed == reprinted,
        "printing is not stable:\n--- first\n{printed}\n--- second\n{reprinted}"
    );
    let bytes = binary::encode(message);
    let decoded: M = match binary::decode(&bytes, "<encoded>") {
        Ok(m) => m,
        Err(e) => panic!("INVARIANT broken: an encoded message does not decode: {e}"),
    };
    invariant!(
        text::print(&decoded) == printed,
        "binary encode/decode changes the message"
    );
}

// ---------------------------------------------------------------------------------------------------------
// proto_text_net, proto_text_solver
// ---------------------------------------------------------------------------------------------------------

fn gen_text_net(ctx: &Ctx, rng: &mut Rng) -> Input {
    text_case(rng, &ctx.corpus.text_nets, &ctx.corpus.dict)
}

fn run_text_net(ctx: &Ctx, input: &Input) -> &'static str {
    let _ = kind::sniff(&input.data, Some("prototxt"));
    let mut net: NetParameter = if input.knob.is_multiple_of(4) {
        // Through the file reader: the UTF-8 check and its error positions, then the upgrades.
        let dir = ctx.prepare(input);
        let path = dir.join("net.prototxt");
        std::fs::write(&path, &input.data).expect("write");
        match files::read_net_text(&path) {
            Ok((net, _)) => net,
            Err(e) => {
                let _ = e.to_string();
                return "rejected";
            }
        }
    } else {
        let text = String::from_utf8_lossy(&input.data);
        match text::parse::<NetParameter>(&text, "fuzz.prototxt") {
            Ok(net) => net,
            Err(e) => {
                let _ = e.to_string();
                return "rejected";
            }
        }
    };
    check_round_trip(&net);
    match upgrade::upgrade_net(&mut net, "fuzz") {
        Ok(report) => {
            check_round_trip(&net);
            // Upgrading is idempotent: a second upgrade changes nothing.
            let once = text::print(&net);
            match upgrade::upgrade_net(&mut net, "fuzz") {
                Ok(_) => invariant!(
                    text::print(&net) == once,
                    "upgrading an upgraded net changes it again"
                ),
                Err(e) => panic!("INVARIANT broken: an upgraded net fails a second upgrade: {e}"),
            }
            if report.upgraded() {
                "upgraded"
            } else {
                "parsed"
            }
        }
        Err(e) => {
            note("upgrade", e);
            "upgrade error"
        }
    }
}

fn gen_text_solver(ctx: &Ctx, rng: &mut Rng) -> Input {
    text_case(rng, &ctx.corpus.text_solvers, &ctx.corpus.solver_dict)
}

fn run_text_solver(ctx: &Ctx, input: &Input) -> &'static str {
    let mut solver: SolverParameter = if input.knob.is_multiple_of(4) {
        let dir = ctx.prepare(input);
        let path = dir.join("solver.prototxt");
        std::fs::write(&path, &input.data).expect("write");
        match files::read_solver_text(&path) {
            Ok((solver, _)) => solver,
            Err(_) => return "rejected",
        }
    } else {
        let text = String::from_utf8_lossy(&input.data);
        match text::parse::<SolverParameter>(&text, "fuzz_solver.prototxt") {
            Ok(s) => s,
            Err(e) => {
                note("parse", e);
                return "rejected";
            }
        }
    };
    check_round_trip(&solver);
    if upgrade::upgrade_solver(&mut solver, "fuzz").is_err() {
        return "upgrade error";
    }
    check_round_trip(&solver);
    // What the solver computes from its own numbers, with no net.
    for iter in [
        0u32,
        1,
        2,
        3,
        10,
        1000,
        1 << 20,
        i32::MAX as u32,
        u32::MAX - 1,
        u32::MAX,
    ] {
        let _ = crema::solver::learning_rate(&solver, iter);
        let _ = crema::solver::current_step(&solver, iter);
    }
    let _ = crema::solver::iter_size(&solver);
    let _ = crema::solver::Regularization::from_param(&solver);
    let _ = crema::solver::solver_type(&solver);
    match crema::solver::create_rule(&solver) {
        Ok(mut rule) => {
            // Histories for a few small blobs, and one update of each.
            let shapes: [&[usize]; 2] = [&[3, 2], &[2]];
            if rule.presolve(&shapes).is_ok() {
                let rate = crema::solver::learning_rate(&solver, 1).unwrap_or(0.01);
                for id in 0..2 {
                    let mut diff = vec![0.5f32; if id == 0 { 6 } else { 2 }];
                    rule.compute_update(id, 0, &mut diff, rate, 1);
                }
            }
            "rule made"
        }
        Err(_) => "parsed",
    }
}

// ---------------------------------------------------------------------------------------------------------
// proto_binary
// ---------------------------------------------------------------------------------------------------------

fn gen_binary(ctx: &Ctx, rng: &mut Rng) -> Input {
    let seeds = &ctx.corpus.binary;
    let seed = pick_seed(rng, seeds);
    let mut data = seed.bytes.clone();
    mutate::mutate_proto(rng, &mut data, &others(seeds), &ctx.corpus.proto_strings);
    Input {
        seed: seed.name.clone(),
        data,
        knob: rng.random(),
        files: Vec::new(),
    }
}

fn blob_checks(proto: &BlobProto, origin: &str) -> bool {
    let _ = blob::is_legacy_shape(proto);
    let _ = blob::raw_shape(proto);
    let _ = blob::checked_shape(proto, origin);
    let _ = blob::diff_values(proto).map(|v| v.len());
    let Ok((shape, values)) = blob::checked(proto, origin) else {
        return false;
    };
    invariant!(
        shape.iter().product::<usize>() == values.len(),
        "blob::checked gave shape {shape:?} for {} values",
        values.len()
    );
    let _ = io::array_from_blobproto(proto, origin).map(|a| a.summary());
    let _ = crema::Blob::from_proto(proto, origin);
    true
}

fn run_binary(ctx: &Ctx, input: &Input) -> &'static str {
    let bytes = &input.data;
    let mut stage = "rejected";
    let _ = kind::sniff(bytes, None);
    let _ = kind::sniff(bytes, Some("caffemodel"));
    let _ = kind::sniff(bytes, Some("solverstate"));
    if let Ok(proto) = binary::decode::<BlobProto>(bytes, "fuzz.binaryproto") {
        if blob_checks(&proto, "fuzz.binaryproto") {
            stage = "blob";
        }
    }
    if let Ok(vector) = binary::decode::<BlobProtoVector>(bytes, "fuzz") {
        for proto in &vector.blobs {
            blob_checks(proto, "fuzz");
        }
    }
    if let Ok(datum_value) = binary::decode::<Datum>(bytes, "fuzz") {
        let _ = datum::parse(bytes);
        for mode in [
            pixels::ColorMode::Native,
            pixels::ColorMode::Color,
            pixels::ColorMode::Gray,
        ] {
            if let Ok(p) = datum::pixels(&datum_value, mode) {
                transform_view(p.view(), input.knob);
                stage = "datum";
            }
        }
    }
    if let Ok(state) = binary::decode::<SolverState>(bytes, "fuzz") {
        for proto in &state.history {
            blob_checks(proto, "fuzz");
        }
        for saved in &state.crema_layer_state {
            let s = saved.state();
            let _ = hdf5::Hdf5Position::from_bytes(s).map(|p| p.to_bytes());
            let _ = crema::math::rng_from_state(s);
        }
    }
    if let Ok(mut net) = binary::decode::<NetParameter>(bytes, "fuzz.caffemodel") {
        for layer in &net.layer {
            for proto in &layer.blobs {
                blob_checks(proto, "fuzz");
            }
        }
        if upgrade::upgrade_net(&mut net, "fuzz").is_ok() && !net.layer.is_empty() {
            // As `--weights`: copy into each of our nets that shares layer names.
            for (name, text_net) in seeds::OUR_NETS.iter().chain(&[("tiny_ip", TINY_IP)]) {
                let wanted = text::parse::<NetParameter>(text_net, name).expect("our nets parse");
                if !wanted
                    .layer
                    .iter()
                    .any(|l| net.layer.iter().any(|m| m.name == l.name))
                {
                    continue;
                }
                if let Ok(mut built) = seeds::build(text_net, &ctx.side) {
                    if built.copy_trained_from(&net, "fuzz.caffemodel").is_ok() {
                        stage = "weights copied";
                        if input.knob.is_multiple_of(2) {
                            let _ = built.forward();
                        }
                    }
                }
                break;
            }
        }
    }
    if input.knob.is_multiple_of(8) {
        // The file readers on the same bytes.
        let dir = ctx.prepare(input);
        let path = dir.join("fuzz.binaryproto");
        std::fs::write(&path, bytes).expect("write");
        let _ = io::read_blobproto(&path);
        let _ = io::read_array(&path);
        let _ = files::read_net_binary(&path);
    }
    stage
}

const TINY_IP: &str = r#"name: "tiny_ip"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 } } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
  inner_product_param { num_output: 4 weight_filler { type: "gaussian" std: 0.5 } bias_filler { type: "constant" value: 0.1 } } }
"#;

/// Transforms a view with a transformer picked by `knob` (crop, mirror, scale, mean values).
fn transform_view(view: crema::data::transform::View, knob: u64) {
    let mut param = crema::proto::caffe::TransformationParameter::default();
    if knob & 1 != 0 {
        param.mirror = Some(true);
    }
    if knob & 2 != 0 {
        param.crop_size = Some(((knob >> 8) % 6) as u32);
    }
    if knob & 4 != 0 {
        param.mean_value = vec![1.0, 2.0, 3.0][..((knob >> 16) % 4) as usize].to_vec();
    }
    param.scale = Some(0.5);
    let phase = if knob & 8 != 0 {
        Phase::Train
    } else {
        Phase::Test
    };
    let Ok(transformer) = crema::data::transform::Transformer::new(&param, phase, &[]) else {
        return;
    };
    if let Ok([c, h, w]) = transformer.output_shape(view.channels, view.height, view.width) {
        let n = c.saturating_mul(h).saturating_mul(w);
        if n <= 1 << 22 {
            let mut out = vec![0.0f32; n];
            let mut rng = crema::math::rng(knob, 0);
            let _ = transformer.transform(view, &mut rng, &mut out);
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// npy
// ---------------------------------------------------------------------------------------------------------

fn gen_npy(ctx: &Ctx, rng: &mut Rng) -> Input {
    let seeds = &ctx.corpus.npy;
    let seed = pick_seed(rng, seeds);
    let mut data = seed.bytes.clone();
    if rng.random_bool(0.3) && data.len() > 10 {
        // Mutate the header text: its numbers and its punctuation are where the parser is.
        let header_end = data.iter().position(|&b| b == b'\n').unwrap_or(data.len());
        let (head, tail) = data.split_at(header_end);
        let mut head = head.to_vec();
        let tail = tail.to_vec();
        let start = 10.min(head.len());
        let mut dict_text = head.split_off(start);
        let dict = npy_dictionary();
        for _ in 0..mutate::stack_depth(rng) {
            mutate::mutate_tokens_once(rng, &mut dict_text, &dict.idents, &dict.strings);
        }
        head.extend(dict_text);
        // Keep the header length field in step half of the time.
        if rng.random() && head.len() >= 10 && head[6] == 1 {
            let len = (head.len() - 10 + tail.len().min(1)) as u16;
            head[8..10].copy_from_slice(&len.to_le_bytes());
        }
        data = head;
        data.extend(tail);
    } else {
        mutate::mutate_bytes(rng, &mut data, &others(seeds));
    }
    Input {
        seed: seed.name.clone(),
        data,
        knob: rng.random(),
        files: Vec::new(),
    }
}

fn npy_dictionary() -> mutate::TextDictionary {
    mutate::TextDictionary {
        idents: ["True", "False", "None", "descr", "fortran_order", "shape"]
            .map(String::from)
            .to_vec(),
        strings: [
            "'<f4'",
            "'<f8'",
            "'>f4'",
            "'|u1'",
            "'<i8'",
            "'|b1'",
            "'<f2'",
            "'<c8'",
            "'|O'",
            "'<U3'",
            "'descr'",
            "'shape'",
            "'fortran_order'",
            "''",
        ]
        .map(String::from)
        .to_vec(),
        ..Default::default()
    }
}

fn run_npy(ctx: &Ctx, input: &Input) -> &'static str {
    let array = if input.knob.is_multiple_of(4) {
        let dir = ctx.prepare(input);
        let path = dir.join("fuzz.npy");
        std::fs::write(&path, &input.data).expect("write");
        let _ = io::read_array(&path);
        let _ = labels::read_labels(&path, "label");
        io::read_npy(&path)
    } else {
        npy::read_npy_bytes(&input.data, "fuzz.npy")
    };
    let Ok(array) = array else {
        return "rejected";
    };
    invariant!(
        array.shape().iter().product::<usize>() == array.len(),
        "an array of shape {:?} holds {} values",
        array.shape(),
        array.len()
    );
    let _ = array.summary();
    // np.save-identical bytes read back to the same array.
    let written = npy::npy_bytes(&array);
    match npy::read_npy_bytes(&written, "written") {
        Ok(back) => invariant!(
            npy::npy_bytes(&back) == written,
            "an array written as .npy reads back different"
        ),
        Err(e) => panic!("INVARIANT broken: crema cannot read the .npy it wrote: {e}"),
    }
    let proto = io::array_to_blobproto(&array);
    let _ = blob::checked(&proto, "array");
    let mut reshaped = array.clone();
    let _ = reshaped.reshape(&[array.len()], "fuzz");
    let _ = reshaped.reshape(&[(input.knob % 7) as usize, usize::MAX / 2 + 1], "fuzz");
    let _ = array.clone().cast(DType::F64).cast(DType::F32);
    "read"
}

// ---------------------------------------------------------------------------------------------------------
// hdf5
// ---------------------------------------------------------------------------------------------------------

fn gen_hdf5(ctx: &Ctx, rng: &mut Rng) -> Input {
    let seeds = &ctx.corpus.h5;
    // The fixtures' half-megabyte files are mostly values: pick them rarely.
    let small: Vec<Seed> = seeds
        .iter()
        .filter(|s| s.bytes.len() < 64 * 1024)
        .cloned()
        .collect();
    let family = if rng.random_bool(0.9) && !small.is_empty() {
        &small
    } else {
        seeds
    };
    let seed = pick_seed(rng, family);
    let mut data = seed.bytes.clone();
    mutate::mutate_bytes(rng, &mut data, &others(family));
    Input {
        seed: seed.name.clone(),
        data,
        knob: rng.random(),
        files: Vec::new(),
    }
}

fn run_hdf5(ctx: &Ctx, input: &Input) -> &'static str {
    let mut files = input.files.clone();
    files.push(("f.h5".into(), input.data.clone()));
    let list_text: &[u8] = match input.knob % 4 {
        0 => b"f.h5\nf.h5\n",
        1 => b"f.h5\n../d1.h5\n",
        _ => b"f.h5\n",
    };
    files.push(("list.txt".into(), list_text.to_vec()));
    let dir = ctx.prepare(&Input {
        files,
        ..Input::default()
    });
    let path = dir.join("f.h5");
    let mut stage = "rejected";
    for name in ["data", "label", "extra", "big", "missing"] {
        if let Ok((shape, values)) = hdf5::read_dataset(&path, name) {
            invariant!(
                shape.iter().product::<usize>() == values.len(),
                "read_dataset gave shape {shape:?} for {} values",
                values.len()
            );
            stage = "dataset read";
        }
    }
    let _ = labels::read_labels(&path, "label");
    let names: Vec<String> = match (input.knob >> 4) % 4 {
        0 => vec!["data".into(), "label".into()],
        1 => vec!["data".into()],
        2 => vec!["label".into()],
        _ => vec!["label".into(), "data".into(), "extra".into()],
    };
    let shuffle = input.knob & 64 != 0 && !avoid("hdf5_shuffle");
    let mut source = match hdf5::Hdf5Source::open(
        &dir.join("list.txt"),
        &names,
        shuffle,
        crema::math::rng(input.knob, 0),
    ) {
        Ok(source) => source,
        Err(e) => {
            note("open", e);
            return stage;
        }
    };
    stage = "source opened";
    let row_lens: Vec<usize> = (0..names.len())
        .map(|i| source.row_shape(i).iter().product::<usize>())
        .collect();
    let _ = source.total_rows();
    let batch = 1 + ((input.knob >> 8) % 7) as usize;
    // The harness's own buffers: only for rows of a sane size.
    if row_lens.iter().all(|&n| n.saturating_mul(batch) <= 1 << 20) {
        let mut buffers: Vec<Vec<f32>> = row_lens.iter().map(|&n| vec![0.0; n * batch]).collect();
        for round in 0..3 {
            let mut outputs: Vec<&mut [f32]> =
                buffers.iter_mut().map(|b| b.as_mut_slice()).collect();
            if source.next_batch(batch, &mut outputs).is_err() {
                break;
            }
            stage = "batches read";
            // Save and restore the position, exactly and with a damaged copy.
            let saved = source.position().to_bytes();
            match hdf5::Hdf5Position::from_bytes(&saved) {
                Some(position) => {
                    invariant!(
                        position.to_bytes() == saved,
                        "a position does not survive to_bytes/from_bytes"
                    );
                    if let Err(e) = source.set_position(position) {
                        panic!("INVARIANT broken: a source refuses its own position: {e}");
                    }
                }
                None => panic!("INVARIANT broken: a source's position bytes do not read back"),
            }
            if round == 1 {
                let mut damaged = saved.clone();
                let at = (input.knob as usize >> 12) % damaged.len().max(1);
                if let Some(b) = damaged.get_mut(at) {
                    *b ^= 1 << ((input.knob >> 40) % 8);
                }
                if let Some(position) = hdf5::Hdf5Position::from_bytes(&damaged) {
                    let _ = source.set_position(position);
                }
            }
        }
    }
    stage
}

// ---------------------------------------------------------------------------------------------------------
// image
// ---------------------------------------------------------------------------------------------------------

fn gen_image(ctx: &Ctx, rng: &mut Rng) -> Input {
    let seeds = &ctx.corpus.images;
    let seed = pick_seed(rng, seeds);
    let mut data = seed.bytes.clone();
    mutate::mutate_bytes(rng, &mut data, &others(seeds));
    Input {
        seed: seed.name.clone(),
        data,
        knob: rng.random(),
        files: Vec::new(),
    }
}

fn run_image(ctx: &Ctx, input: &Input) -> &'static str {
    let knob = input.knob;
    let mode = [
        pixels::ColorMode::Native,
        pixels::ColorMode::Color,
        pixels::ColorMode::Gray,
    ][(knob % 3) as usize];
    // An encoded Datum, as the Data layer decodes it.
    let _ = datum::pixels(&datum::encoded_datum(input.data.clone(), 1), mode).map(|p| {
        transform_view(p.view(), knob >> 3);
    });
    if knob % 16 == 1 {
        let dir = ctx.prepare(input);
        let path = dir.join("fuzz.png");
        std::fs::write(&path, &input.data).expect("write");
        let _ = pixels::read_image(&path, mode);
    }
    let Ok(image) = pixels::decode(&input.data, mode) else {
        return "rejected";
    };
    invariant!(
        image.values().len() == image.channels() * image.height() * image.width(),
        "a decoded image of {} × {} × {} holds {} values",
        image.channels(),
        image.height(),
        image.width(),
        image.values().len()
    );
    // Resizing: small sizes mostly, now and then sizes near and past the 512 MiB limit.
    let sizes: &[usize] = &[
        1,
        2,
        3,
        7,
        64,
        65536,
        1 << 20,
        44_739_242,
        89_478_485,
        178_956_970,
        1 << 29,
    ];
    let (h, w) = if (knob >> 8).is_multiple_of(8) && !avoid("huge_resize") {
        (
            sizes[((knob >> 16) % sizes.len() as u64) as usize],
            sizes[((knob >> 24) % sizes.len() as u64) as usize],
        )
    } else {
        (
            1 + ((knob >> 16) % 40) as usize,
            1 + ((knob >> 24) % 40) as usize,
        )
    };
    // Only sizes whose output the harness can afford to fill (resizing writes every byte).
    if h.saturating_mul(w).saturating_mul(image.channels()) <= 1 << 26
        || (knob >> 32).is_multiple_of(4)
    {
        if let Ok(resized) = image.resize(h, w) {
            invariant!(
                (resized.height(), resized.width()) == (h, w),
                "resize to {h} × {w} gave {} × {}",
                resized.height(),
                resized.width()
            );
        }
    }
    let gray = image.to_gray();
    let color = image.to_color();
    transform_view(crema::data::transform::View::of_image(&color), knob >> 5);
    let raw = datum::raw_datum(&image, 2);
    let _ = datum::pixels(&raw, mode).map(|p| transform_view(p.view(), knob >> 7));
    if image.values().len() <= 1 << 20 {
        for (img, what) in [(&image, "image"), (&gray, "gray"), (&color, "color")] {
            if let Ok(png) = img.encode(pixels::Encoding::Png) {
                match pixels::decode(&png, pixels::ColorMode::Native) {
                    Ok(back) => invariant!(
                        back == *img,
                        "a {what} image of {} channels written as PNG reads back different",
                        img.channels()
                    ),
                    Err(e) => panic!("INVARIANT broken: crema cannot read the PNG it wrote: {e}"),
                }
            }
            let _ = img.encode(pixels::Encoding::Jpeg);
        }
    }
    "decoded"
}

// ---------------------------------------------------------------------------------------------------------
// labels (read_labels, class weights, image lists)
// ---------------------------------------------------------------------------------------------------------

fn gen_labels(ctx: &Ctx, rng: &mut Rng) -> Input {
    let seeds = &ctx.corpus.labels;
    let seed = pick_seed(rng, seeds);
    let mut data = seed.bytes.clone();
    if seed.name.ends_with(".txt") && rng.random_bool(0.7) {
        mutate::mutate_text(rng, &mut data, &ctx.corpus.dict);
    } else {
        mutate::mutate_bytes(rng, &mut data, &others(seeds));
    }
    Input {
        seed: seed.name.clone(),
        data,
        knob: rng.random(),
        files: Vec::new(),
    }
}

fn run_labels(ctx: &Ctx, input: &Input) -> &'static str {
    let file_name = input
        .seed
        .rsplit('#')
        .next()
        .unwrap_or("labels.txt")
        .to_owned();
    let dir = ctx.prepare(&Input {
        files: vec![(file_name.clone(), input.data.clone())],
        ..Input::default()
    });
    let _ = image_list::parse_list(&String::from_utf8_lossy(&input.data));
    let _ = image_list::read_list(&dir.join(&file_name));
    let Ok(read) = labels::read_labels(&dir.join(&file_name), "label") else {
        return "rejected";
    };
    let values = read.values;
    let _ = crema::imbalance::counts_from_values(&values);
    let knob = input.knob;
    let classes = match knob % 4 {
        0 => 1 + (knob >> 8) as usize % 10,
        1 => {
            values
                .iter()
                .filter(|v| v.is_finite())
                .fold(0.0f64, |m, &v| m.max(v))
                .min(1e6) as usize
                + 1
        }
        2 => [0usize, 46_340, 46_341, usize::MAX][((knob >> 8) % 4) as usize],
        _ => 4,
    };
    let ignore = match (knob >> 16) % 4 {
        0 => None,
        1 => Some(-1),
        2 => Some(i64::MIN),
        _ => Some(1),
    };
    let Ok(counts) = crema::imbalance::count_labels(values.iter().copied(), classes, ignore) else {
        return "read";
    };
    let beta = [
        0.0,
        0.5,
        0.999,
        0.999_999_999,
        1.0,
        -0.1,
        f64::NAN,
        f64::INFINITY,
    ][((knob >> 24) % 8) as usize];
    for method in [
        crema::imbalance::Method::InverseFrequency,
        crema::imbalance::Method::MedianFrequency,
        crema::imbalance::Method::EffectiveNumber { beta },
    ] {
        for normalization in [
            crema::imbalance::Normalization::MeanOne,
            crema::imbalance::Normalization::SumOne,
            crema::imbalance::Normalization::None,
        ] {
            if let Ok(weights) = crema::imbalance::class_weights(&counts, method, normalization) {
                invariant!(
                    weights.len() == counts.len(),
                    "{} weights for {} classes",
                    weights.len(),
                    counts.len()
                );
                if counts.len() <= 4096 {
                    let _ = crema::imbalance::diagonal_matrix(&weights);
                }
            }
        }
    }
    "weights"
}

// ---------------------------------------------------------------------------------------------------------
// net_builder
// ---------------------------------------------------------------------------------------------------------

/// A mutated side file for a net case, written into the case folder (searched before the side folder).
fn side_file_case(ctx: &Ctx, rng: &mut Rng) -> Vec<(String, Vec<u8>)> {
    let side = |name: &str| std::fs::read(ctx.side.join(name)).expect("side file");
    let strings = &ctx.corpus.proto_strings;
    match rng.random_range(0..8) {
        0 | 1 => {
            let name = *[
                "H5.binaryproto",
                "H.binaryproto",
                "H4.binaryproto",
                "mean.binaryproto",
                "H_balance.binaryproto",
            ]
            .choose(rng)
            .unwrap();
            let mut bytes = side(name);
            mutate::mutate_proto(rng, &mut bytes, &[], strings);
            vec![(name.to_owned(), bytes)]
        }
        2 => {
            let name = *["H4.npy", "counts.npy"].choose(rng).unwrap();
            let mut bytes = side(name);
            mutate::mutate_bytes(rng, &mut bytes, &[]);
            vec![(name.to_owned(), bytes)]
        }
        3 => {
            let mut bytes = side("counts.txt");
            mutate::mutate_text(rng, &mut bytes, &ctx.corpus.dict);
            vec![("counts.txt".to_owned(), bytes)]
        }
        4 | 5 => {
            // A damaged HDF5 file in place of d1.h5, listed alone.
            let mut bytes = side("d1.h5");
            let others = others(&ctx.corpus.h5);
            mutate::mutate_bytes(rng, &mut bytes, &others);
            vec![
                ("d1.h5".to_owned(), bytes),
                ("h5_list.txt".to_owned(), b"d1.h5\n".to_vec()),
                ("h5_one.txt".to_owned(), b"d1.h5\n".to_vec()),
            ]
        }
        6 => {
            let mut bytes = b"../d1.h5\n../d2.h5\n".to_vec();
            mutate::mutate_text(rng, &mut bytes, &ctx.corpus.dict);
            vec![("h5_list.txt".to_owned(), bytes)]
        }
        _ => {
            let mut bytes = side("img_list.txt");
            mutate::mutate_text(rng, &mut bytes, &ctx.corpus.dict);
            vec![("img_list.txt".to_owned(), bytes)]
        }
    }
}

fn gen_net(ctx: &Ctx, rng: &mut Rng) -> Input {
    let seeds = if rng.random_bool(0.85) {
        &ctx.corpus.buildable_nets
    } else {
        &ctx.corpus.text_nets
    };
    let seed = pick_seed(rng, seeds);
    let mut data = seed.bytes.clone();
    let mut files = Vec::new();
    // A side file alone (the net as it is), or the net mutated, or both.
    match rng.random_range(0..10) {
        0 | 1 => files = side_file_case(ctx, rng),
        2 => {
            files = side_file_case(ctx, rng);
            mutate::mutate_text(rng, &mut data, &ctx.corpus.dict);
        }
        _ => mutate::mutate_text(rng, &mut data, &ctx.corpus.dict),
    }
    Input {
        seed: seed.name.clone(),
        data,
        knob: rng.random(),
        files,
    }
}

fn net_state(net: &NetParameter, knob: u64) -> NetState {
    if knob & 1 != 0 {
        if let Some(state) = &net.state {
            return state.clone();
        }
    }
    let stages = ["deploy", "finetune", "augment", "eval-on-holdout", "a", "b"];
    NetState {
        phase: Some(if knob & 2 != 0 {
            Phase::Test
        } else {
            Phase::Train
        } as i32),
        level: Some(((knob >> 2) % 4) as i32 - 1),
        stage: stages
            .iter()
            .enumerate()
            .filter(|(i, _)| knob >> (8 + i) & 1 != 0)
            .map(|(_, s)| s.to_string())
            .collect(),
    }
}

/// Values a net holds (blobs and learnable blobs).
fn net_values(net: &crema::Net) -> usize {
    let blobs: usize = net
        .blob_names()
        .iter()
        .filter_map(|n| net.blob(n))
        .map(|b| b.count())
        .fold(0, usize::saturating_add);
    let params: usize = (0..net.layer_names().count())
        .flat_map(|i| {
            net.layer_params(i)
                .iter()
                .map(|b| b.count())
                .collect::<Vec<_>>()
        })
        .fold(0, usize::saturating_add);
    blobs.saturating_add(params)
}

fn run_net(ctx: &Ctx, input: &Input) -> &'static str {
    let dir = ctx.prepare(input);
    let _ = dir;
    let text = String::from_utf8_lossy(&input.data);
    let mut param = match text::parse::<NetParameter>(&text, "fuzz.prototxt") {
        Ok(param) => param,
        Err(e) => {
            note("parse", e);
            return "rejected";
        }
    };
    if let Err(e) = upgrade::upgrade_net(&mut param, "fuzz.prototxt") {
        note("upgrade", e);
        return "upgrade error";
    }
    let knob = input.knob;
    let state = net_state(&param, knob);
    let options = crema::NetOptions {
        origin: "fuzz.prototxt".into(),
        search_dirs: ctx.search_dirs(),
        seed: knob >> 32,
    };
    let mut net = match crema::Net::new(&param, &state, &options) {
        Ok(net) => net,
        Err(e) => {
            note("build", e);
            return "parsed";
        }
    };
    let _ = net.warnings();
    let _ = net.visible_blob_names();
    let _ = net.input_names();
    let _ = net.output_names();
    // Every blob holds as many values as its shape says (a blob left unshaped has shape [] and no values, but
    // shape [] means one value).
    for name in net.blob_names() {
        if let Some(blob) = net.blob(name) {
            let expected = crema::blob::shape_count(blob.shape()).unwrap_or(usize::MAX);
            invariant!(
                blob.data().len() == expected && blob.diff().len() == expected,
                "blob \"{name}\" has shape {:?} ({expected} values) but holds {} values and {} gradients after Net::new",
                blob.shape(),
                blob.data().len(),
                blob.diff().len()
            );
        }
    }
    if net_values(&net) > MAX_RUN_VALUES {
        let _ = net.to_proto(false);
        return "built (too big to run)";
    }
    let mut stage = "built";
    match net.forward() {
        Ok(_) => {
            stage = "forward";
            let _ = net.output_values();
            match net.backward() {
                Ok(()) => stage = "backward",
                Err(e) => note("backward", e),
            }
        }
        Err(e) => note("forward", e),
    }
    // Weights out and back in; layer states out, damaged, and back in; a second pass.
    let proto = net.to_proto(knob & 4 != 0);
    if let Err(e) = net.copy_trained_from(&proto, "self") {
        panic!("INVARIANT broken: a net refuses its own weights (Net::to_proto → copy_trained_from): {e}");
    }
    for (name, state_bytes) in net.layer_states() {
        if let Err(e) = net.set_layer_state(&name, &state_bytes) {
            panic!("INVARIANT broken: layer {name} refuses its own state (Net::layer_states → set_layer_state): {e}");
        }
        let mut damaged = state_bytes.clone();
        let mut rng: Rng = rand::SeedableRng::seed_from_u64(knob);
        mutate::mutate_bytes(&mut rng, &mut damaged, &[]);
        let _ = net.set_layer_state(&name, &damaged);
    }
    net.clear_param_diffs();
    if knob & 16 != 0 && net.forward().is_ok() {
        let _ = net.backward();
    }
    stage
}

// ---------------------------------------------------------------------------------------------------------
// solver
// ---------------------------------------------------------------------------------------------------------

fn gen_solver(ctx: &Ctx, rng: &mut Rng) -> Input {
    let seeds = if rng.random_bool(0.85) {
        &ctx.corpus.runnable_solvers
    } else {
        &ctx.corpus.text_solvers
    };
    let seed = pick_seed(rng, seeds);
    let mut data = seed.bytes.clone();
    // Side files are the net builder's business: nets named by a solver resolve their files in their own
    // folder (the side folder), which a case folder cannot shadow.
    let files = Vec::new();
    mutate::mutate_text(rng, &mut data, &ctx.corpus.solver_dict);
    Input {
        seed: seed.name.clone(),
        data,
        knob: rng.random(),
        files,
    }
}

/// Keeps a mutated solver from running for hours: a few test iterations, a few accumulated batches, and its
/// snapshots in the case folder.
fn tame(param: &mut SolverParameter, dir: &Path) {
    param.snapshot_prefix = Some(dir.join("snap").display().to_string());
    for t in &mut param.test_iter {
        *t = (*t).clamp(-1, 2);
    }
    if param.iter_size() > 3 {
        param.iter_size = Some(3);
    }
}

fn solver_values(solver: &crema::solver::Solver) -> usize {
    std::iter::once(solver.net())
        .chain(solver.test_nets())
        .map(net_values)
        .fold(0, usize::saturating_add)
}

fn run_solver(ctx: &Ctx, input: &Input) -> &'static str {
    let dir = ctx.prepare(input);
    let text = String::from_utf8_lossy(&input.data);
    let Ok(mut param) = text::parse::<SolverParameter>(&text, "fuzz_solver.prototxt") else {
        return "rejected";
    };
    if upgrade::upgrade_solver(&mut param, "fuzz").is_err() {
        return "upgrade error";
    }
    tame(&mut param, &dir);
    // Net files resolve against the solver's folder: the side folder.
    let solver_path = ctx.side.join("solver.prototxt");
    let options = crema::solver::SolverOptions {
        solver_path: Some(solver_path),
        stages: if input.knob & 1 != 0 {
            vec!["a".into()]
        } else {
            vec![]
        },
        level: None,
    };
    let mut solver = match crema::solver::Solver::new(param, &options) {
        Ok(s) => s,
        Err(e) => {
            note("build", e);
            return "parsed";
        }
    };
    if solver_values(&solver) > MAX_RUN_VALUES {
        return "built (too big to run)";
    }
    let steps = 1 + (input.knob >> 4) as u32 % 3;
    if solver.step(steps, &mut seeds::Quiet).is_err() {
        return "built";
    }
    let _ = solver.test_all(&mut seeds::Quiet);
    let Ok((_, state_path)) = solver.snapshot(&mut seeds::Quiet) else {
        return "stepped";
    };
    let iter = solver.iter();
    match solver.restore(&state_path) {
        Ok(()) => invariant!(
            solver.iter() == iter,
            "a restored solver is at another iteration"
        ),
        Err(e) => panic!("INVARIANT broken: a solver cannot restore its own snapshot: {e}"),
    }
    let _ = solver.step(1, &mut seeds::Quiet);
    "snapshot restored"
}

// ---------------------------------------------------------------------------------------------------------
// solverstate
// ---------------------------------------------------------------------------------------------------------

fn gen_solverstate(ctx: &Ctx, rng: &mut Rng) -> Input {
    let corpus = &ctx.corpus;
    let k = rng.random_range(0..corpus.solverstates.len());
    let seed = &corpus.solverstates[k];
    let mut data = seed.bytes.clone();
    let mut model = corpus.solverstate_models[k].bytes.clone();
    match rng.random_range(0..6) {
        0 => mutate::mutate_proto(rng, &mut model, &[], &corpus.proto_strings),
        1 => {
            mutate::mutate_proto(rng, &mut model, &[], &corpus.proto_strings);
            mutate::mutate_proto(
                rng,
                &mut data,
                &others(&corpus.solverstates),
                &corpus.proto_strings,
            );
        }
        _ => mutate::mutate_proto(
            rng,
            &mut data,
            &others(&corpus.solverstates),
            &corpus.proto_strings,
        ),
    }
    Input {
        seed: seed.name.clone(),
        data,
        // The low byte picks the solver the state was written by (mostly) or another one.
        knob: (rng.random::<u64>() & !0xff)
            | if rng.random_bool(0.9) {
                k as u64
            } else {
                rng.random_range(0..corpus.solverstates.len()) as u64
            },
        files: vec![(seeds::SOLVERSTATE_MODEL.to_owned(), model)],
    }
}

fn run_solverstate(ctx: &Ctx, input: &Input) -> &'static str {
    let dir = ctx.prepare(input);
    let k = (input.knob & 0xff) as usize % seeds::SOLVERSTATE_SOLVERS.len();
    let (_, text) = seeds::OUR_SOLVERS[seeds::SOLVERSTATE_SOLVERS[k]];
    let mut solver = seeds::solver(text, &ctx.side, &dir.join("snap")).expect("our solvers build");
    let path = dir.join("fuzz.solverstate");
    std::fs::write(&path, &input.data).expect("write");
    match solver.restore(&path) {
        Ok(()) => {
            if solver.step(1, &mut seeds::Quiet).is_ok() {
                let _ = solver.snapshot(&mut seeds::Quiet);
                "restored and stepped"
            } else {
                "restored"
            }
        }
        Err(e) => {
            note("restore", e);
            "rejected"
        }
    }
}
