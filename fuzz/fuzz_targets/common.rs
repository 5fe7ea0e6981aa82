//! What the fuzz targets share: an allocator that refuses any single allocation over 256 MiB (so that an
//! infallible allocation sized from input aborts, which libFuzzer reports as a crash, while `try_reserve` gets an
//! error), per-process scratch folders, and the side folder of files that nets and solvers name (H matrices,
//! HDF5 sources, images, an LMDB), made by the same code as the in-process suite's
//! (`crates/crema/tests/fuzz_suite/seeds.rs`).

#![allow(dead_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::OnceLock;

#[allow(dead_code, unused_imports, clippy::all)]
#[path = "../../crates/crema/tests/fuzz_suite/mutate.rs"]
pub mod mutate;
#[allow(dead_code, unused_imports, clippy::all)]
#[path = "../../crates/crema/tests/fuzz_suite/seeds.rs"]
pub mod seeds;

/// The cap on one allocation: `CREMA_FUZZ_ALLOC_CAP_MB`, 256 MiB by default (640 for image decoding, which
/// crema lets reach 512 MiB).
pub static CAP: AtomicUsize = AtomicUsize::new(256 << 20);

pub struct Capped;

unsafe impl GlobalAlloc for Capped {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() > CAP.load(Relaxed) {
            return std::ptr::null_mut();
        }
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.size() > CAP.load(Relaxed) {
            return std::ptr::null_mut();
        }
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > CAP.load(Relaxed) {
            return std::ptr::null_mut();
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Capped = Capped;

/// Sets the cap once: `CREMA_FUZZ_ALLOC_CAP_MB` or `default_mib`.
pub fn set_cap(default_mib: usize) {
    static SET: OnceLock<()> = OnceLock::new();
    SET.get_or_init(|| {
        let mib = std::env::var("CREMA_FUZZ_ALLOC_CAP_MB")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default_mib);
        CAP.store(mib << 20, Relaxed);
    });
}

/// This process's scratch folder for `target` (emptied and made once per process).
pub fn scratch(target: &str) -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir =
            std::env::temp_dir().join(format!("crema-libfuzzer-{target}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a scratch folder");
        dir
    })
}

/// The side folder (made once per process, inside the scratch folder).
pub fn side(target: &str) -> &'static Path {
    static SIDE: OnceLock<PathBuf> = OnceLock::new();
    SIDE.get_or_init(|| {
        let dir = scratch(target).join("side");
        seeds::write_side_folder(&dir).expect("the side folder can be written");
        dir
    })
}

/// The case folder: emptied for every input.
pub fn case_dir(target: &str) -> PathBuf {
    let dir = scratch(target).join("case");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a case folder");
    dir
}

/// A number from the input's bytes, to pick variants (phase, mode) deterministically.
pub fn knob(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// Values a net holds (blobs and learnable blobs): nets larger than a few million are built, not run.
pub fn net_values(net: &crema::Net) -> usize {
    let blobs = net
        .blob_names()
        .iter()
        .filter_map(|n| net.blob(n))
        .map(|b| b.count())
        .fold(0usize, usize::saturating_add);
    let params = (0..net.layer_names().count())
        .flat_map(|i| {
            net.layer_params(i)
                .iter()
                .map(|b| b.count())
                .collect::<Vec<_>>()
        })
        .fold(0usize, usize::saturating_add);
    blobs.saturating_add(params)
}
