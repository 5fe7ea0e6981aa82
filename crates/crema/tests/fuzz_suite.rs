//! The in-process fuzz suite: real files (tests/fixtures, the examples, files made here) mutated and fed to
//! every reader of untrusted input and to the net builder, for a bounded time, on stable Rust.
//!
//! Run: `cargo test -p crema --test fuzz_suite -- --nocapture` (part of `cargo test --workspace`).
//!
//! Settings (environment):
//! - `CREMA_FUZZ_SECONDS` (default 60): wall-clock budget of the whole suite, shared by the targets by weight.
//! - `CREMA_FUZZ_SEED` (default 0x5eed, fixed so that `cargo test` repeats itself; give a fresh one to explore).
//! - `CREMA_FUZZ_JOBS` (default: the CPU count, at most 2 on this project's machines): targets run at once.
//! - `CREMA_FUZZ_TARGETS=a,b` runs only these targets; `CREMA_FUZZ_SKIP=a,b` leaves these out.
//! - `CREMA_FUZZ_ALLOC_CAP_MB`: the cap on one allocation (default per target: 256 MiB, 640 MiB where images
//!   are decoded, since crema lets decoders hold up to 512 MiB).
//! - `CREMA_FUZZ_TOTAL_CAP_MB` (default 2048): the cap on live memory; an abort for it alone is a note (a net too
//!   large for the harness), not a failure.
//! - `CREMA_FUZZ_CASE_TIMEOUT` (default 60 s): a case running longer is reported as a hang.
//! - `CREMA_FUZZ_AVOID=huge_resize,hdf5_shuffle`: steer around known problems while they are being fixed
//!   (`huge_resize`: the image target's resizes to sizes near 512 MiB; `hdf5_shuffle`: shuffled HDF5 sources).
//! - `CREMA_FUZZ_VERBOSE=1`: targets print the errors their cases end on (for tuning seeds and mutations).
//! - `CREMA_FUZZ_OUT`: where failures go (default `<target dir>/fuzz-failures`; the failure folders of earlier runs
//!   there are removed at the start).
//! - `CREMA_FUZZ_REPLAY=<failure folder>` runs that one saved case in-process, with the normal panic output.
//! - `CREMA_FUZZ_CASE=<target>:<index>` makes case `index` of `target` again (with `CREMA_FUZZ_SEED`) and runs it.
//! - `CREMA_FUZZ_EXPORT_SEEDS=<folder>` writes the seeds into `<folder>/<cargo-fuzz target>/` and runs nothing
//!   (corpora for the cargo-fuzz targets in fuzz/, see fuzz/README.md).
//!
//! Targets (crates/crema/tests/fuzz_suite/targets.rs; seeds in seeds.rs, mutations in mutate.rs):
//! - `proto_text_net`, `proto_text_solver`: prototxt parsing (in memory and through `crema_proto::files`), upgrades,
//!   stable printing and binary round trips, idempotent upgrades; for solvers, learning-rate policies and one
//!   update of the rule.
//! - `proto_binary`: binary decoding of BlobProto, BlobProtoVector, Datum, SolverState, NetParameter;
//!   `blob::checked`, arrays and blobs from protos, Datum pixels and transforms, caffemodels copied into nets.
//! - `npy`, `hdf5`, `image`, `labels`: the .npy reader (and np.save-identical writing read back), HDF5 datasets
//!   and sources (batches, positions saved, restored and damaged), JPEG/PNG decoding (resizing, conversions, PNG
//!   round trip), label sources and class weights.
//! - `net_builder`: a mutated net (and sometimes a mutated side file it names: H, counts, HDF5 file, list) parsed,
//!   upgraded and built with `Net::new` in a phase/level/stages picked per case; every blob must hold as many
//!   values as its shape says; small nets run forward and backward; the net must take back its own weights
//!   (`to_proto` → `copy_trained_from`) and its layers their own states.
//! - `solver`: a mutated solver (nets inline or by file) built, stepped, tested, snapshot and restored from its own
//!   snapshot. `solverstate`: mutated solverstates (and caffemodels) restored into the solver that wrote them.
//!
//! How it works: the test `fuzz_suite` starts one child process per target (this same binary, running the
//! ignored test `fuzz_worker`), at most `CREMA_FUZZ_JOBS` at a time. A child makes case after case (case `i`
//! of a target is a pure function of the seed, the target and `i`: a ChaCha8 generator seeded from the three),
//! runs each inside `catch_unwind`, and saves every panic and broken invariant in a folder of its own under
//! `CREMA_FUZZ_OUT` (report.txt with the message, location and backtrace; the input as .bin and a hex or text
//! dump; its side files). The global allocator refuses any single allocation over the cap: a fallible
//! allocation (`try_reserve`) then gets an error, an infallible one aborts the child, whose SIGABRT handler
//! saves the case and the backtrace of the allocation. The parent then starts the target again after that case,
//! so one abort does not end the target's run; at the end it lists every failure and fails the test.

#[path = "fuzz_suite/mutate.rs"]
mod mutate;
#[path = "fuzz_suite/seeds.rs"]
mod seeds;
#[path = "fuzz_suite/targets.rs"]
mod targets;

use std::collections::{BTreeMap, VecDeque};
use std::io::{BufRead, BufReader, Write};
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::SeedableRng;
use targets::{Ctx, Input, Target};

// ---------------------------------------------------------------------------------------------------------
// The allocator: System, refusing any single allocation over a cap. It never allocates itself; it only
// counts in atomics, which the harness reads.
// ---------------------------------------------------------------------------------------------------------

mod capped {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};

    /// The largest single allocation granted, bytes.
    pub static CAP: AtomicUsize = AtomicUsize::new(256 << 20);
    /// The most bytes live at once (a net of many large blobs); beyond it allocations are refused too.
    pub static TOTAL_CAP: AtomicUsize = AtomicUsize::new(4 << 30);
    pub static LIVE: AtomicUsize = AtomicUsize::new(0);
    /// Largest live total seen when a large allocation was made (approximate peak).
    pub static PEAK: AtomicUsize = AtomicUsize::new(0);
    pub static LARGEST: AtomicUsize = AtomicUsize::new(0);
    pub static REFUSED: AtomicUsize = AtomicUsize::new(0);
    pub static LAST_REFUSED: AtomicUsize = AtomicUsize::new(0);
    /// Whether the last refusal was for the live total rather than the single-allocation cap.
    pub static LAST_REFUSED_TOTAL: AtomicBool = AtomicBool::new(false);

    pub struct Capped;

    #[inline]
    fn admit(size: usize) -> bool {
        if size > CAP.load(Relaxed) {
            refuse(size, false);
            return false;
        }
        if size >= 1 << 20 {
            LARGEST.fetch_max(size, Relaxed);
            let live = LIVE.load(Relaxed);
            if live.saturating_add(size) > TOTAL_CAP.load(Relaxed) {
                refuse(size, true);
                return false;
            }
            PEAK.fetch_max(live + size, Relaxed);
        }
        true
    }

    #[cold]
    fn refuse(size: usize, total: bool) {
        REFUSED.fetch_add(1, Relaxed);
        LAST_REFUSED.store(size, Relaxed);
        LAST_REFUSED_TOTAL.store(total, Relaxed);
    }

    unsafe impl GlobalAlloc for Capped {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            if !admit(layout.size()) {
                return std::ptr::null_mut();
            }
            let p = unsafe { System.alloc(layout) };
            if !p.is_null() {
                LIVE.fetch_add(layout.size(), Relaxed);
            }
            p
        }

        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            if !admit(layout.size()) {
                return std::ptr::null_mut();
            }
            let p = unsafe { System.alloc_zeroed(layout) };
            if !p.is_null() {
                LIVE.fetch_add(layout.size(), Relaxed);
            }
            p
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            unsafe { System.dealloc(ptr, layout) };
            LIVE.fetch_sub(layout.size(), Relaxed);
        }

        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            if new_size > layout.size() && !admit(new_size) {
                return std::ptr::null_mut();
            }
            let p = unsafe { System.realloc(ptr, layout, new_size) };
            if !p.is_null() {
                LIVE.fetch_add(new_size, Relaxed);
                LIVE.fetch_sub(layout.size(), Relaxed);
            }
            p
        }
    }
}

#[global_allocator]
static ALLOCATOR: capped::Capped = capped::Capped;

// ---------------------------------------------------------------------------------------------------------
// Settings
// ---------------------------------------------------------------------------------------------------------

struct Settings {
    seconds: f64,
    seed: u64,
    jobs: usize,
    only: Option<Vec<String>>,
    skip: Vec<String>,
    cap_mib: Option<usize>,
    total_cap_mib: usize,
    case_timeout: f64,
    out: PathBuf,
}

fn env_list(name: &str) -> Option<Vec<String>> {
    std::env::var(name).ok().map(|v| {
        v.split(',')
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect()
    })
}

fn parse_u64(text: &str) -> Option<u64> {
    let text = text.trim();
    match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    }
}

/// The cargo target folder this test binary was built into (`<target>/<profile>/deps/fuzz_suite-…`).
fn target_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.ancestors().nth(3).map(Path::to_path_buf))
        .filter(|dir| {
            dir.join("CACHEDIR.TAG").exists() || dir.file_name().is_some_and(|n| n == "target")
        })
        .unwrap_or_else(|| seeds::repo_root().join("target"))
}

impl Settings {
    fn from_env() -> Settings {
        let var = |name: &str| std::env::var(name).ok();
        Settings {
            seconds: var("CREMA_FUZZ_SECONDS")
                .and_then(|s| s.parse().ok())
                .unwrap_or(60.0),
            seed: var("CREMA_FUZZ_SEED")
                .and_then(|s| parse_u64(&s))
                .unwrap_or(0x5eed),
            jobs: var("CREMA_FUZZ_JOBS")
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| {
                    std::thread::available_parallelism()
                        .map(|n| n.get())
                        .unwrap_or(2)
                        .min(2)
                })
                .max(1),
            only: env_list("CREMA_FUZZ_TARGETS"),
            skip: env_list("CREMA_FUZZ_SKIP").unwrap_or_default(),
            cap_mib: var("CREMA_FUZZ_ALLOC_CAP_MB").and_then(|s| s.parse().ok()),
            total_cap_mib: var("CREMA_FUZZ_TOTAL_CAP_MB")
                .and_then(|s| s.parse().ok())
                .unwrap_or(2048),
            case_timeout: var("CREMA_FUZZ_CASE_TIMEOUT")
                .and_then(|s| s.parse().ok())
                .unwrap_or(60.0),
            out: var("CREMA_FUZZ_OUT")
                .map(PathBuf::from)
                .unwrap_or_else(|| target_dir().join("fuzz-failures")),
        }
    }

    fn cap_for(&self, target: &Target) -> usize {
        self.cap_mib.unwrap_or(target.cap_mib) << 20
    }
}

/// The generator of case `index` of `target`: ChaCha8 seeded from the suite's seed, the target and the index.
fn case_rng(seed: u64, target: &str, index: u64) -> mutate::Rng {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in target.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
    }
    let mut rng = mutate::Rng::seed_from_u64(seed ^ h.rotate_left(17));
    rng.set_stream(index);
    rng
}

// ---------------------------------------------------------------------------------------------------------
// Panics, aborts and hangs inside a worker
// ---------------------------------------------------------------------------------------------------------

#[derive(Clone)]
struct PanicRecord {
    message: String,
    location: String,
    thread: String,
    backtrace: Arc<std::backtrace::Backtrace>,
}

static PANICS: Mutex<Vec<PanicRecord>> = Mutex::new(Vec::new());

/// The case under way, for the abort handler and the watchdog.
struct Current {
    target: &'static str,
    index: u64,
    input: Arc<Input>,
}

static CURRENT: Mutex<Option<Current>> = Mutex::new(None);
/// When the case under way started, in ms since the worker started; `u64::MAX` between cases.
static CASE_STARTED_MS: AtomicU64 = AtomicU64::new(u64::MAX);
static WORKER_EPOCH: Mutex<Option<Instant>> = Mutex::new(None);
static SETTINGS_SEED: AtomicU64 = AtomicU64::new(0);
static OUT_DIR: Mutex<Option<PathBuf>> = Mutex::new(None);
/// Cases run and stages reached, for the abort handler's report.
static STAGES: Mutex<Vec<(&'static str, u64)>> = Mutex::new(Vec::new());

fn install_silent_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let message = if let Some(s) = info.payload().downcast_ref::<&str>() {
            (*s).to_owned()
        } else if let Some(s) = info.payload().downcast_ref::<String>() {
            s.clone()
        } else {
            "(a panic with a non-string payload)".to_owned()
        };
        let location = info
            .location()
            .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()))
            .unwrap_or_default();
        let record = PanicRecord {
            message,
            location,
            thread: std::thread::current().name().unwrap_or("?").to_owned(),
            backtrace: Arc::new(std::backtrace::Backtrace::force_capture()),
        };
        if let Ok(mut panics) = PANICS.lock() {
            panics.push(record);
        }
    }));
}

/// The frames of a backtrace that say where: crema's own, and those of the crates it reads files with.
fn short_backtrace(backtrace: &std::backtrace::Backtrace) -> String {
    let text = backtrace.to_string();
    let mut out = Vec::new();
    let mut keep = false;
    let mut frames = 0;
    for line in text.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("at ") {
            if keep {
                out.push(line.to_owned());
            }
            continue;
        }
        let interesting = [
            "crema",
            "hdf5",
            "image",
            "png",
            "zune",
            "prost",
            "heed",
            "fuzz_suite",
            "alloc::",
            "core::",
        ]
        .iter()
        .any(|k| trimmed.contains(k))
            && ![
                "std::panicking",
                "core::panicking",
                "std::backtrace",
                "fuzz_suite::install_silent_panic_hook",
                "fuzz_suite::on_abort",
                "core::ops::function::FnOnce::call_once",
                "std::panic::catch_unwind",
            ]
            .iter()
            .any(|k| trimmed.contains(k));
        keep = interesting && frames < 40;
        if keep {
            frames += 1;
            out.push(line.to_owned());
        }
    }
    if out.is_empty() {
        text
    } else {
        out.join("\n")
    }
}

fn hex_dump(bytes: &[u8], limit: usize) -> String {
    let mut out = String::new();
    for (row, chunk) in bytes[..bytes.len().min(limit)].chunks(16).enumerate() {
        out.push_str(&format!("{:08x}  ", row * 16));
        for b in chunk {
            out.push_str(&format!("{b:02x} "));
        }
        out.push_str(&"   ".repeat(16 - chunk.len()));
        out.push(' ');
        out.extend(chunk.iter().map(|&b| {
            if b.is_ascii_graphic() || b == b' ' {
                b as char
            } else {
                '.'
            }
        }));
        out.push('\n');
    }
    if bytes.len() > limit {
        out.push_str(&format!("... ({} bytes in all)\n", bytes.len()));
    }
    out
}

/// Saves a failing case in its own folder; returns the folder.
#[allow(clippy::too_many_arguments)]
fn save_failure(
    out: &Path,
    seed: u64,
    target: &str,
    index: u64,
    kind: &str,
    input: &Input,
    message: &str,
    location: &str,
    backtrace: &str,
) -> PathBuf {
    let dir = out.join(format!("{target}-s{seed:x}-c{index}-{kind}"));
    let _ = std::fs::create_dir_all(dir.join("files"));
    let report = format!(
        "target: {target}\nseed: {seed:#x}\ncase: {index}\nkind: {kind}\nseed file: {}\nknob: {:#x}\nside files: {}\n\
         message: {message}\nlocation: {location}\n\nreplay (in-process, normal panic output):\n  \
         CREMA_FUZZ_REPLAY={} cargo test -p crema --test fuzz_suite -- fuzz_suite --nocapture\n\
         or make the case again from the seed:\n  \
         CREMA_FUZZ_SEED={seed:#x} CREMA_FUZZ_CASE={target}:{index} cargo test -p crema --test fuzz_suite -- fuzz_suite --nocapture\n\n\
         backtrace (frames of crema and the readers it uses):\n{backtrace}\n",
        input.seed,
        input.knob,
        input.files.iter().map(|(n, b)| format!("{n} ({} bytes)", b.len())).collect::<Vec<_>>().join(", "),
        dir.display(),
    );
    let _ = std::fs::write(dir.join("report.txt"), report);
    let _ = std::fs::write(dir.join("input.bin"), &input.data);
    let _ = std::fs::write(dir.join("knob.txt"), format!("{}\n", input.knob));
    let _ = std::fs::write(dir.join("seed.txt"), format!("{}\n", input.seed));
    match std::str::from_utf8(&input.data) {
        Ok(text) if !text.contains('\0') => {
            let _ = std::fs::write(dir.join("input.txt"), text);
        }
        _ => {
            let _ = std::fs::write(dir.join("input.hex"), hex_dump(&input.data, 1 << 16));
        }
    }
    for (name, bytes) in &input.files {
        let _ = std::fs::write(dir.join("files").join(name), bytes);
    }
    dir
}

/// The SIGABRT handler of a worker: an infallible allocation was refused (or something else aborted). Says which
/// case, saves it with the backtrace of where the process aborted, and lets the abort go on.
extern "C" fn on_abort(_signal: i32) {
    let refused = capped::LAST_REFUSED.load(Ordering::Relaxed);
    let total = capped::LAST_REFUSED_TOTAL.load(Ordering::Relaxed);
    let mut err = std::io::stderr();
    let case = CURRENT.try_lock().ok().and_then(|c| {
        c.as_ref()
            .map(|c| (c.target, c.index, Arc::clone(&c.input)))
    });
    let index = case.as_ref().map_or(u64::MAX, |c| c.1);
    let _ = writeln!(
        err,
        "\n@@fuzz abort case={index} refused={refused} total_cap={total}"
    );
    if let Ok(stages) = STAGES.try_lock() {
        for (stage, count) in stages.iter() {
            let _ = writeln!(err, "@@fuzz stage {count} {stage}");
        }
    }
    let backtrace = std::backtrace::Backtrace::force_capture();
    let short = short_backtrace(&backtrace);
    if let (Some((target, index, input)), Ok(Some(out))) =
        (case, OUT_DIR.try_lock().map(|o| o.clone()))
    {
        let message = if refused > 0 {
            format!(
                "the process aborted; the last allocation refused was {refused} bytes ({:.1} MiB){}",
                refused as f64 / 1048576.0,
                if total { ", refused for the cap on live memory" } else { "" }
            )
        } else {
            "the process aborted (no allocation was refused: not an allocation failure)".to_owned()
        };
        let location = first_crema_frame(&short);
        // Refused only because the live total passed the harness's cap: memory use, not an unchecked size.
        let kind = if total && refused <= capped::CAP.load(Ordering::Relaxed) {
            "abort-live-cap"
        } else {
            "abort"
        };
        let dir = save_failure(
            &out,
            SETTINGS_SEED.load(Ordering::Relaxed),
            target,
            index,
            kind,
            &input,
            &message,
            &location,
            &short,
        );
        let _ = writeln!(
            err,
            "@@fuzz failure\t{kind}\t{location}\t{}\t{message}",
            dir.display()
        );
    }
    let _ = writeln!(err, "{short}");
}

/// The first frame in crema's sources, as `file:line`, for grouping aborts.
fn first_crema_frame(short: &str) -> String {
    short
        .lines()
        .map(str::trim)
        .filter_map(|l| l.strip_prefix("at "))
        .find(|l| l.contains("crates/crema") && !l.contains("/tests/"))
        .or_else(|| {
            short
                .lines()
                .map(str::trim)
                .filter_map(|l| l.strip_prefix("at "))
                .find(|l| !l.contains("/rustc/") && !l.contains("fuzz_suite.rs"))
        })
        .map(|l| {
            l.rsplit_once("crates/")
                .map_or(l, |(_, rest)| rest)
                .to_owned()
        })
        .unwrap_or_else(|| "?".to_owned())
}

#[cfg(target_os = "linux")]
fn install_abort_handler() {
    extern "C" {
        fn signal(signum: i32, handler: usize) -> usize;
    }
    const SIGABRT: i32 = 6;
    // SAFETY: installs a handler for SIGABRT; the process is about to die when it runs.
    unsafe {
        signal(SIGABRT, on_abort as extern "C" fn(i32) as usize);
    }
}

#[cfg(not(target_os = "linux"))]
fn install_abort_handler() {}

fn now_ms() -> u64 {
    WORKER_EPOCH
        .lock()
        .unwrap()
        .map_or(0, |e| e.elapsed().as_millis() as u64)
}

/// A worker's run of one target, in this process. Prints `@@fuzz` lines for the parent.
fn worker_main(target: &'static Target, settings: &Settings) {
    let start_index: u64 = std::env::var("CREMA_FUZZ_WORKER_START")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let seconds: f64 = std::env::var("CREMA_FUZZ_WORKER_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(settings.seconds);
    let root = std::env::var("CREMA_FUZZ_TMP")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            std::env::temp_dir().join(format!("crema-fuzz-{}", std::process::id()))
        });
    let started = Instant::now();
    *WORKER_EPOCH.lock().unwrap() = Some(started);
    SETTINGS_SEED.store(settings.seed, Ordering::Relaxed);
    *OUT_DIR.lock().unwrap() = Some(settings.out.clone());
    let _ = std::fs::create_dir_all(&settings.out);
    capped::CAP.store(settings.cap_for(target), Ordering::Relaxed);
    capped::TOTAL_CAP.store(settings.total_cap_mib << 20, Ordering::Relaxed);
    install_abort_handler();

    let ctx = Ctx {
        corpus: seeds::corpus(&root.join("side")),
        side: root.join("side"),
        case_dir: root.join("case"),
    };
    let init = started.elapsed().as_secs_f64();
    install_silent_panic_hook();

    // The watchdog: a case running past the timeout is saved as a hang, and the worker ends.
    let timeout_ms = (settings.case_timeout * 1000.0) as u64;
    std::thread::Builder::new()
        .name("fuzz-watchdog".into())
        .spawn(move || loop {
            std::thread::sleep(Duration::from_millis(250));
            let began = CASE_STARTED_MS.load(Ordering::Relaxed);
            if began == u64::MAX || now_ms().saturating_sub(began) < timeout_ms {
                continue;
            }
            let case = CURRENT.lock().ok().and_then(|c| {
                c.as_ref()
                    .map(|c| (c.target, c.index, Arc::clone(&c.input)))
            });
            if let Some((target, index, input)) = case {
                let out = OUT_DIR.lock().unwrap().clone().unwrap();
                let message = format!("the case still runs after {:.0} s", timeout_ms as f64 / 1000.0);
                let dir = save_failure(
                    &out,
                    SETTINGS_SEED.load(Ordering::Relaxed),
                    target,
                    index,
                    "hang",
                    &input,
                    &message,
                    "-",
                    "(the watchdog cannot see the worker's stack; replay the case to find where it loops)",
                );
                println!("@@fuzz failure\thang\t{target}\t{}\t{message}", dir.display());
                println!("@@fuzz hang case={index}");
                if let Ok(stages) = STAGES.try_lock() {
                    for (stage, count) in stages.iter() {
                        println!("@@fuzz stage {count} {stage}");
                    }
                }
                let _ = std::io::stdout().flush();
                std::process::exit(3);
            }
        })
        .expect("the watchdog starts");

    let deadline = started + Duration::from_secs_f64(seconds.max(0.1));
    let mut index = start_index;
    let mut cases = 0u64;
    let mut seen: BTreeMap<String, u64> = BTreeMap::new();
    let mut slow: Vec<(f64, u64)> = Vec::new();
    loop {
        if Instant::now() >= deadline && cases > 0 {
            break;
        }
        let mut rng = case_rng(settings.seed, target.name, index);
        let input = Arc::new((target.generate)(&ctx, &mut rng));
        *CURRENT.lock().unwrap() = Some(Current {
            target: target.name,
            index,
            input: Arc::clone(&input),
        });
        let panics_before = PANICS.lock().unwrap().len();
        let began = Instant::now();
        CASE_STARTED_MS.store(now_ms(), Ordering::Relaxed);
        let result = std::panic::catch_unwind(AssertUnwindSafe(|| (target.run)(&ctx, &input)));
        CASE_STARTED_MS.store(u64::MAX, Ordering::Relaxed);
        let took = began.elapsed().as_secs_f64();
        if took > 2.0 {
            slow.push((took, index));
        }
        let new_panics: Vec<PanicRecord> = PANICS.lock().unwrap()[panics_before..].to_vec();
        let stage = match &result {
            Ok(stage) => *stage,
            Err(_) => "panicked",
        };
        {
            let mut stages = STAGES.lock().unwrap();
            match stages.iter_mut().find(|(s, _)| *s == stage) {
                Some((_, n)) => *n += 1,
                None => stages.push((stage, 1)),
            }
        }
        // A panic resumed from another thread (`resume_unwind`) does not call the hook: record it from the
        // payload.
        let mut new_panics = new_panics;
        if let (Err(payload), true) = (&result, new_panics.is_empty()) {
            let message = if let Some(s) = payload.downcast_ref::<&str>() {
                (*s).to_owned()
            } else if let Some(s) = payload.downcast_ref::<String>() {
                s.clone()
            } else {
                "(a panic with a non-string payload, resumed without the panic hook)".to_owned()
            };
            new_panics.push(PanicRecord {
                message,
                location: "(resumed: no location)".into(),
                thread: "?".into(),
                backtrace: Arc::new(std::backtrace::Backtrace::force_capture()),
            });
        }
        if let Some(first) = new_panics.first() {
            let kind = if first.message.starts_with("INVARIANT") {
                "invariant"
            } else if result.is_ok() {
                "panic-in-thread"
            } else {
                "panic"
            };
            let head: String = first
                .message
                .lines()
                .next()
                .unwrap_or("")
                .chars()
                .take(60)
                .collect();
            let key = format!("{kind} {} {head}", first.location);
            let n = seen.entry(key.clone()).or_insert(0);
            *n += 1;
            if *n <= 2 {
                let message = format!(
                    "{} (thread '{}'{})",
                    first.message,
                    first.thread,
                    if new_panics.len() > 1 {
                        format!(", and {} more panics in this case", new_panics.len() - 1)
                    } else {
                        String::new()
                    }
                );
                let dir = save_failure(
                    &settings.out,
                    settings.seed,
                    target.name,
                    index,
                    kind,
                    &input,
                    &message,
                    &first.location,
                    &short_backtrace(&first.backtrace),
                );
                let one_line: String = message
                    .lines()
                    .next()
                    .unwrap_or("")
                    .chars()
                    .take(300)
                    .collect();
                println!(
                    "@@fuzz failure\t{kind}\t{}\t{}\t{one_line}",
                    first.location,
                    dir.display()
                );
            } else {
                println!("@@fuzz repeat\t{kind}\t{}", first.location);
            }
        }
        // A case that left the panic list long (a panic in a loop) must not grow memory without bound.
        if new_panics.len() > 100 {
            PANICS.lock().unwrap().truncate(panics_before);
        }
        index += 1;
        cases += 1;
    }
    *CURRENT.lock().unwrap() = None;
    let run = started.elapsed().as_secs_f64() - init;
    for (stage, count) in STAGES.lock().unwrap().iter() {
        println!("@@fuzz stage {count} {stage}");
    }
    slow.sort_by(|a, b| b.0.total_cmp(&a.0));
    for (took, index) in slow.iter().take(3) {
        println!("@@fuzz slow {index} {took:.1}");
    }
    println!(
        "@@fuzz done cases={cases} next={index} init={init:.2} run={run:.2} largest={} refused={} peak={}",
        capped::LARGEST.load(Ordering::Relaxed),
        capped::REFUSED.load(Ordering::Relaxed),
        capped::PEAK.load(Ordering::Relaxed),
    );
    let _ = std::io::stdout().flush();
    let _ = std::fs::remove_dir_all(&root);
}

// ---------------------------------------------------------------------------------------------------------
// The parent: children per target, their reports gathered
// ---------------------------------------------------------------------------------------------------------

#[derive(Default)]
struct TargetReport {
    name: String,
    cases: u64,
    wall: f64,
    init: f64,
    stages: BTreeMap<String, u64>,
    /// (kind, location, folder, message)
    failures: Vec<(String, String, String, String)>,
    repeats: u64,
    slow: Vec<(u64, f64)>,
    largest: usize,
    refused: usize,
    restarts: usize,
    notes: Vec<String>,
}

/// Runs one child for `target` from case `start` for `seconds`; returns its stdout and stderr lines and status.
fn run_child(
    target: &Target,
    settings: &Settings,
    start: u64,
    seconds: f64,
    tmp: &Path,
) -> (Vec<String>, Vec<String>, Option<i32>, bool) {
    let exe = std::env::current_exe().expect("the test binary's path");
    let mut child = Command::new(exe)
        .args([
            "fuzz_worker",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("CREMA_FUZZ_WORKER", target.name)
        .env("CREMA_FUZZ_WORKER_SECONDS", format!("{seconds:.3}"))
        .env("CREMA_FUZZ_WORKER_START", start.to_string())
        .env("CREMA_FUZZ_SEED", settings.seed.to_string())
        .env("CREMA_FUZZ_OUT", &settings.out)
        .env("CREMA_FUZZ_TMP", tmp)
        .env("CREMA_FUZZ_CASE_TIMEOUT", settings.case_timeout.to_string())
        .env("RUST_BACKTRACE", "0")
        .env_remove("CREMA_FUZZ_REPLAY")
        .env_remove("CREMA_FUZZ_CASE")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the worker starts");
    let read = |pipe: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut lines = Vec::new();
            let mut tail: VecDeque<String> = VecDeque::new();
            for line in BufReader::new(pipe).lines() {
                let Ok(mut line) = line else { break };
                // libtest prints `test fuzz_worker ... ` with no newline before the worker's first line.
                if let Some(at) = line.find("@@fuzz") {
                    line.drain(..at);
                }
                if line.starts_with("@@fuzz") || line.contains("memory allocation of") {
                    lines.push(line);
                } else {
                    tail.push_back(line);
                    if tail.len() > 60 {
                        tail.pop_front();
                    }
                }
            }
            lines.extend(tail.into_iter().map(|l| format!("| {l}")));
            lines
        })
    };
    let out = read(Box::new(child.stdout.take().unwrap()));
    let err = read(Box::new(child.stderr.take().unwrap()));
    // Seeds take a moment to make; a hang is caught by the child's watchdog, this is the last resort.
    let limit = Duration::from_secs_f64(seconds + settings.case_timeout + 90.0);
    let began = Instant::now();
    let mut killed = false;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status.code(),
            Ok(None) if began.elapsed() > limit => {
                let _ = child.kill();
                killed = true;
                break child.wait().ok().and_then(|s| s.code());
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(_) => break None,
        }
    };
    (
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default(),
        status,
        killed,
    )
}

fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
}

fn run_target(target: &'static Target, settings: &Settings, seconds: f64) -> TargetReport {
    let mut report = TargetReport {
        name: target.name.to_owned(),
        ..Default::default()
    };
    let began = Instant::now();
    let deadline = began + Duration::from_secs_f64(seconds);
    let mut start = 0u64;
    let mut abort_sites: BTreeMap<String, usize> = BTreeMap::new();
    loop {
        let remaining = deadline
            .saturating_duration_since(Instant::now())
            .as_secs_f64();
        if report.restarts > 0 && remaining < 1.0 {
            break;
        }
        let tmp = std::env::temp_dir().join(format!(
            "crema-fuzz-{}-{}-{}",
            std::process::id(),
            target.name,
            report.restarts
        ));
        let (out, err, status, killed) =
            run_child(target, settings, start, remaining.max(1.0), &tmp);
        let _ = std::fs::remove_dir_all(&tmp);
        let mut done = false;
        let mut next = None;
        let mut refused_message = None;
        for line in out.iter().chain(&err) {
            if let Some(rest) = line.strip_prefix("@@fuzz failure\t") {
                let parts: Vec<&str> = rest.splitn(4, '\t').collect();
                if let [kind, location, dir, message] = parts[..] {
                    if kind.starts_with("abort") {
                        *abort_sites.entry(location.to_owned()).or_insert(0) += 1;
                    }
                    if kind == "abort-live-cap" {
                        report.notes.push(format!(
                            "an allocation at {location} was refused because the live total passed \
                             CREMA_FUZZ_TOTAL_CAP_MB (a net too large for the harness, not a failure): {dir}"
                        ));
                        continue;
                    }
                    report.failures.push((
                        kind.to_owned(),
                        location.to_owned(),
                        dir.to_owned(),
                        message.to_owned(),
                    ));
                }
            } else if line.starts_with("@@fuzz repeat") {
                report.repeats += 1;
            } else if let Some(rest) = line.strip_prefix("@@fuzz stage ") {
                if let Some((count, stage)) = rest.split_once(' ') {
                    *report.stages.entry(stage.to_owned()).or_insert(0) +=
                        count.parse::<u64>().unwrap_or(0);
                    report.cases += count.parse::<u64>().unwrap_or(0);
                }
            } else if let Some(rest) = line.strip_prefix("@@fuzz slow ") {
                if let Some((index, took)) = rest.split_once(' ') {
                    report
                        .slow
                        .push((index.parse().unwrap_or(0), took.parse().unwrap_or(0.0)));
                }
            } else if line.starts_with("@@fuzz done") {
                done = true;
                report.init += field(line, "init")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0.0);
                report.largest = report.largest.max(
                    field(line, "largest")
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0),
                );
                report.refused += field(line, "refused")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
            } else if line.starts_with("@@fuzz abort") || line.starts_with("@@fuzz hang") {
                next = field(line, "case")
                    .and_then(|v| v.parse::<u64>().ok())
                    .filter(|&c| c != u64::MAX)
                    .map(|c| c + 1);
            } else if line.contains("memory allocation of") {
                refused_message = Some(line.clone());
            }
        }
        if done && status == Some(0) {
            break;
        }
        // The child died: an abort (refused allocation, stack overflow), a hang, or a crash.
        report.restarts += 1;
        if let Some(m) = refused_message {
            report.notes.push(m);
        }
        match next {
            Some(n) => start = n,
            None => {
                let tail: Vec<&String> = err
                    .iter()
                    .chain(&out)
                    .filter(|l| l.starts_with("| "))
                    .collect();
                let tail_text = tail
                    .iter()
                    .rev()
                    .take(25)
                    .rev()
                    .map(|l| l.as_str())
                    .collect::<Vec<_>>()
                    .join("\n");
                report.failures.push((
                    "crash".into(),
                    "-".into(),
                    "-".into(),
                    format!(
                        "the worker ended with status {status:?}{} before or outside a case; its last output:\n{tail_text}",
                        if killed { " (killed after its time)" } else { "" }
                    ),
                ));
                break;
            }
        }
        if abort_sites.values().any(|&n| n >= 4) || report.restarts >= 25 {
            report.notes.push(format!(
                "stopped restarting after {} restarts (the same abort keeps coming back; fix it or \
                 CREMA_FUZZ_SKIP={} to fuzz the rest)",
                report.restarts, target.name
            ));
            break;
        }
    }
    report.wall = began.elapsed().as_secs_f64();
    report
}

fn parent(settings: &Settings) {
    let targets: Vec<&'static Target> = targets::TARGETS
        .iter()
        .filter(|t| {
            settings
                .only
                .as_ref()
                .is_none_or(|only| only.iter().any(|o| o == t.name))
        })
        .filter(|t| !settings.skip.iter().any(|s| s == t.name))
        .collect();
    assert!(
        !targets.is_empty(),
        "no fuzz target selected (CREMA_FUZZ_TARGETS / CREMA_FUZZ_SKIP)"
    );
    // Empty the failure folder of what earlier runs saved (only that: CREMA_FUZZ_OUT may name any folder).
    if let Ok(entries) = std::fs::read_dir(&settings.out) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let ours = targets::TARGETS
                .iter()
                .any(|t| name.starts_with(&format!("{}-s", t.name)) && name.contains("-c"));
            if ours && entry.path().join("report.txt").exists() {
                let _ = std::fs::remove_dir_all(entry.path());
            } else if name == "summary.txt" {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
    std::fs::create_dir_all(&settings.out).expect("the failure folder can be made");
    let total_weight: u32 = targets.iter().map(|t| t.weight).sum();
    let lanes = settings.jobs.min(targets.len());
    let budget = settings.seconds * lanes as f64;
    println!(
        "fuzz suite: seed {:#x} (CREMA_FUZZ_SEED), {:.0} s (CREMA_FUZZ_SECONDS), {lanes} at a time, {} targets; \
         failures go to {}",
        settings.seed,
        settings.seconds,
        targets.len(),
        settings.out.display()
    );
    let mut queue: Vec<(&'static Target, f64)> = targets
        .iter()
        .map(|t| (*t, budget * f64::from(t.weight) / f64::from(total_weight)))
        .collect();
    queue.sort_by(|a, b| b.1.total_cmp(&a.1));
    let queue = Arc::new(Mutex::new(VecDeque::from(queue)));
    let reports = Arc::new(Mutex::new(Vec::new()));
    let started = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..lanes {
            let queue = Arc::clone(&queue);
            let reports = Arc::clone(&reports);
            scope.spawn(move || loop {
                let Some((target, seconds)) = queue.lock().unwrap().pop_front() else {
                    break;
                };
                let report = run_target(target, settings, seconds);
                println!(
                    "  {:<18} {:>7} cases in {:>5.1} s{}",
                    report.name,
                    report.cases,
                    report.wall,
                    if report.failures.is_empty() {
                        String::new()
                    } else {
                        format!(", {} failures", report.failures.len())
                    }
                );
                reports.lock().unwrap().push(report);
            });
        }
    });
    let mut reports = std::mem::take(&mut *reports.lock().unwrap());
    reports.sort_by_key(|r| targets.iter().position(|t| t.name == r.name));

    let mut summary = String::new();
    summary.push_str(&format!(
        "fuzz suite: seed {:#x}, {:.1} s wall, {lanes} at a time\n",
        settings.seed,
        started.elapsed().as_secs_f64()
    ));
    let mut failures = Vec::new();
    for r in &reports {
        let stages = r
            .stages
            .iter()
            .map(|(s, n)| format!("{s}: {n}"))
            .collect::<Vec<_>>()
            .join(", ");
        summary.push_str(&format!(
            "{:<18} {:>7} cases, {:>5.1} s (seeds made in {:.1} s){}; largest allocation {:.1} MiB, {} refused\n    {stages}\n",
            r.name,
            r.cases,
            r.wall,
            r.init,
            if r.restarts > 0 { format!(", {} restarts", r.restarts) } else { String::new() },
            r.largest as f64 / 1048576.0,
            r.refused,
        ));
        for (index, took) in &r.slow {
            summary.push_str(&format!("    slow case: {index} took {took:.1} s\n"));
        }
        for note in &r.notes {
            summary.push_str(&format!("    note: {note}\n"));
        }
        if r.repeats > 0 {
            summary.push_str(&format!(
                "    {} more failing cases repeated a failure already saved\n",
                r.repeats
            ));
        }
        // One entry per place and kind of failure, with every case saved for it.
        let mut groups: Vec<(&str, &str, &str, Vec<&str>)> = Vec::new();
        for (kind, location, dir, message) in &r.failures {
            let key = |m: &str| m.chars().take(40).collect::<String>();
            match groups.iter_mut().find(|g| {
                g.0 == kind && g.1 == location && (location != "-" || key(g.2) == key(message))
            }) {
                Some(group) => group.3.push(dir),
                None => groups.push((kind, location, message, vec![dir])),
            }
        }
        for (kind, location, message, dirs) in groups {
            let cases = if dirs.len() > 1 {
                format!(" ({} cases)", dirs.len())
            } else {
                String::new()
            };
            failures.push(format!(
                "[{}] {kind} at {location}{cases}: {message}\n    saved in {}",
                r.name,
                dirs.join("\n             ")
            ));
        }
    }
    if !failures.is_empty() {
        summary.push_str(&format!("\n{} FAILURES:\n", failures.len()));
        for f in &failures {
            summary.push_str(&format!("{f}\n"));
        }
    }
    let _ = std::fs::write(settings.out.join("summary.txt"), &summary);
    println!("{summary}");
    assert!(
        failures.is_empty(),
        "the fuzz suite found {} failures (seed {:#x}); see above and {}",
        failures.len(),
        settings.seed,
        settings.out.display()
    );
}

// ---------------------------------------------------------------------------------------------------------
// Replays
// ---------------------------------------------------------------------------------------------------------

fn replay_ctx() -> (Ctx, PathBuf) {
    let root = std::env::temp_dir().join(format!("crema-fuzz-replay-{}", std::process::id()));
    let ctx = Ctx {
        corpus: seeds::corpus(&root.join("side")),
        side: root.join("side"),
        case_dir: root.join("case"),
    };
    (ctx, root)
}

fn replay_folder(dir: &Path, settings: &Settings) {
    let report =
        std::fs::read_to_string(dir.join("report.txt")).expect("report.txt in the failure folder");
    let name = report
        .lines()
        .find_map(|l| l.strip_prefix("target: "))
        .expect("a target line in report.txt");
    let target = targets::target(name).expect("a known target");
    let mut files = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir.join("files")) {
        for entry in entries.flatten() {
            files.push((
                entry.file_name().to_string_lossy().into_owned(),
                std::fs::read(entry.path()).expect("a side file"),
            ));
        }
    }
    files.sort();
    let input = Input {
        seed: std::fs::read_to_string(dir.join("seed.txt"))
            .unwrap_or_default()
            .trim()
            .to_owned(),
        data: std::fs::read(dir.join("input.bin")).expect("input.bin"),
        knob: parse_u64(&std::fs::read_to_string(dir.join("knob.txt")).unwrap_or_default())
            .unwrap_or(0),
        files,
    };
    run_one(target, input, settings);
}

fn run_one(target: &'static Target, input: Input, settings: &Settings) {
    let (ctx, root) = replay_ctx();
    capped::CAP.store(settings.cap_for(target), Ordering::Relaxed);
    install_abort_handler();
    println!(
        "replaying a case of {} (seed file {}, knob {:#x}, {} bytes, side files {:?})",
        target.name,
        input.seed,
        input.knob,
        input.data.len(),
        input.files.iter().map(|(n, _)| n).collect::<Vec<_>>()
    );
    let stage = (target.run)(&ctx, &input);
    println!("the case ran to the stage: {stage}");
    let _ = std::fs::remove_dir_all(root);
}

// ---------------------------------------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------------------------------------

/// Writes the seeds, by the cargo-fuzz target they suit, under `dir` (for `cargo fuzz run <target> <dir>/<target>`).
fn export_seeds(dir: &Path) {
    let root = std::env::temp_dir().join(format!("crema-fuzz-export-{}", std::process::id()));
    let corpus = seeds::corpus(&root.join("side"));
    let families: [(&str, Vec<&seeds::Seed>); 7] = [
        (
            "prototxt",
            corpus
                .text_nets
                .iter()
                .chain(&corpus.text_solvers)
                .collect(),
        ),
        (
            "net_builder",
            corpus
                .buildable_nets
                .iter()
                .chain(&corpus.text_nets)
                .collect(),
        ),
        ("binary_readers", corpus.binary.iter().collect()),
        ("npy_reader", corpus.npy.iter().collect()),
        (
            "hdf5_reader",
            corpus
                .h5
                .iter()
                .filter(|s| s.bytes.len() < 64 * 1024)
                .collect(),
        ),
        ("solverstate", corpus.solverstates.iter().collect()),
        ("image_decode", corpus.images.iter().collect()),
    ];
    for (target, seeds) in families {
        let folder = dir.join(target);
        std::fs::create_dir_all(&folder).expect("a corpus folder");
        for (i, seed) in seeds.iter().enumerate() {
            let name: String = seed
                .name
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '.' || c == '_' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            std::fs::write(folder.join(format!("{i:03}-{name}")), &seed.bytes)
                .expect("a seed file");
        }
        println!("{}: {} seeds", folder.display(), seeds.len());
    }
    let _ = std::fs::remove_dir_all(root);
}

#[test]
fn fuzz_suite() {
    let settings = Settings::from_env();
    if let Ok(dir) = std::env::var("CREMA_FUZZ_EXPORT_SEEDS") {
        export_seeds(Path::new(&dir));
        return;
    }
    if let Ok(dir) = std::env::var("CREMA_FUZZ_REPLAY") {
        replay_folder(Path::new(&dir), &settings);
        return;
    }
    if let Ok(case) = std::env::var("CREMA_FUZZ_CASE") {
        let (name, index) = case
            .split_once(':')
            .expect("CREMA_FUZZ_CASE=<target>:<index>");
        let target = targets::target(name).expect("a known target");
        let index: u64 = index.parse().expect("a case index");
        let (ctx, root) = replay_ctx();
        let input = (target.generate)(&ctx, &mut case_rng(settings.seed, target.name, index));
        let _ = std::fs::remove_dir_all(root);
        let dir = save_failure(
            &settings.out,
            settings.seed,
            name,
            index,
            "case",
            &input,
            "-",
            "-",
            "-",
        );
        println!("case {name}:{index} saved in {}", dir.display());
        run_one(target, input, &settings);
        return;
    }
    parent(&settings);
}

#[test]
#[ignore = "a child process of fuzz_suite"]
fn fuzz_worker() {
    let Ok(name) = std::env::var("CREMA_FUZZ_WORKER") else {
        return;
    };
    let settings = Settings::from_env();
    let target = targets::target(&name).expect("a known target");
    worker_main(target, &settings);
}

/// Every seed net of ours builds and runs, and every seed solver runs and snapshots (a seed that does not would
/// leave its layers unfuzzed).
#[test]
fn our_seeds_work() {
    let root = std::env::temp_dir().join(format!("crema-fuzz-seeds-{}", std::process::id()));
    let side = root.join("side");
    let corpus = seeds::corpus(&side);
    assert_eq!(corpus.solverstates.len(), seeds::SOLVERSTATE_SOLVERS.len());
    for (name, net) in seeds::OUR_NETS {
        let mut built = seeds::build(net, &side).unwrap_or_else(|e| panic!("{name}: {e}"));
        built
            .forward()
            .unwrap_or_else(|e| panic!("{name}: forward: {e}"));
        built
            .backward()
            .unwrap_or_else(|e| panic!("{name}: backward: {e}"));
    }
    let _ = std::fs::remove_dir_all(root);
}
