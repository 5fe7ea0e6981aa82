//! `crema._native`: the extension module under the `crema` and `caffe` Python packages.
//!
//! - [`arrays`]: .npy and .binaryproto files as numpy arrays.
//! - [`blob`]: blobs as numpy arrays that share the net's memory (`blob.data`, `blob.diff`).
//! - [`net`]: nets built from a prototxt, run forward and backward layer range by layer range.
//! - [`solver`]: solvers stepped from Python, their train and test nets reachable as nets.
//! - [`python_layer`]: `type: "Python"` layers, which run a user's Python class inside any net.
//! - [`errors`]: crema's errors as Python exceptions, carrying the exception a Python layer raised.
//!
//! The pycaffe API itself (`caffe.Net`'s ordered dicts, keyword arguments, `caffe.io`, `NetSpec`) is written in
//! Python on top of these, in `python/caffe/`.

mod arrays;
mod blob;
mod errors;
mod net;
mod python_layer;
mod solver;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use pyo3::prelude::*;
use pyo3::types::PyBytes;

/// The seed of every net made from Python (`caffe.set_random_seed`); crema's default otherwise.
static SEED: AtomicU64 = AtomicU64::new(1701);
/// Whether the user set [`SEED`]: solvers whose file gives no `random_seed` then use it too.
static SEED_SET: AtomicBool = AtomicBool::new(false);

fn seed() -> u64 {
    SEED.load(Ordering::Relaxed)
}

fn seed_set_by_user() -> Option<u64> {
    SEED_SET.load(Ordering::Relaxed).then(seed)
}

/// Sets the seed of the nets and solvers made from now on (fillers, dropout; a solver's own `random_seed`
/// wins where its file gives one).
#[pyfunction]
fn set_random_seed(seed: i64) {
    // Caffe takes any integer and uses its bits; so does crema.
    SEED.store(seed as u64, Ordering::Relaxed);
    SEED_SET.store(true, Ordering::Relaxed);
}

/// `caffe.proto` as an encoded FileDescriptorSet, from which `caffe.proto.caffe_pb2` is made.
#[pyfunction]
fn descriptor_set(py: Python<'_>) -> Bound<'_, PyBytes> {
    PyBytes::new(py, crema::proto::descriptor_set_bytes())
}

/// Runs the `crema` command line `argv` (program name first) in this process and returns its exit status:
/// the `crema` console script and `python -m crema`, where Python layers work.
#[pyfunction]
fn main(py: Python<'_>, argv: Vec<String>) -> u8 {
    py.detach(|| crema_cli::run(argv))
}

/// Decodes the JPEG or PNG image at `path` as an `H × W × C` uint8 array, channels in RGB order (`color`) or
/// one grey channel, for `caffe.io.load_image`.
#[pyfunction]
fn read_image<'py>(
    py: Python<'py>,
    path: std::path::PathBuf,
    color: bool,
) -> PyResult<Bound<'py, numpy::PyArray3<u8>>> {
    use crema::data::pixels::{read_image, ColorMode};
    let mode = if color {
        ColorMode::Color
    } else {
        ColorMode::Gray
    };
    let image = py
        .detach(|| read_image(&path, mode))
        .map_err(|error| pyo3::exceptions::PyOSError::new_err(error.to_string()))?;
    let (channels, height, width) = (image.channels(), image.height(), image.width());
    let planes = image.values();
    let mut pixels = vec![0u8; planes.len()];
    for c in 0..channels {
        // crema keeps BGR planes, as OpenCV; pycaffe's images are RGB, channels last.
        let source = if channels == 3 { 2 - c } else { c };
        let plane = &planes[source * height * width..(source + 1) * height * width];
        for (i, &value) in plane.iter().enumerate() {
            pixels[i * channels + c] = value;
        }
    }
    let array = numpy::ndarray::Array3::from_shape_vec((height, width, channels), pixels)
        .map_err(|e| pyo3::exceptions::PyValueError::new_err(e.to_string()))?;
    Ok(numpy::PyArray3::from_owned_array(py, array))
}

/// The names of every layer type crema has, `Python` included.
#[pyfunction]
fn layer_types() -> Vec<&'static str> {
    let mut names = crema::layers::type_names();
    names.push(python_layer::TYPE_NAME);
    names.sort_unstable();
    names
}

#[pymodule]
fn _native(module: &Bound<'_, PyModule>) -> PyResult<()> {
    crema::layers::register(python_layer::TYPE_NAME, python_layer::create);
    module.add_class::<blob::Blob>()?;
    module.add_class::<net::Net>()?;
    module.add_class::<solver::Solver>()?;
    module.add_class::<python_layer::BlobVec>()?;
    module.add("CremaError", module.py().get_type::<errors::CremaError>())?;
    module.add("__version__", env!("CARGO_PKG_VERSION"))?;
    module.add_function(wrap_pyfunction!(set_random_seed, module)?)?;
    module.add_function(wrap_pyfunction!(descriptor_set, module)?)?;
    module.add_function(wrap_pyfunction!(main, module)?)?;
    module.add_function(wrap_pyfunction!(layer_types, module)?)?;
    module.add_function(wrap_pyfunction!(read_image, module)?)?;
    module.add_function(wrap_pyfunction!(arrays::read_array, module)?)?;
    module.add_function(wrap_pyfunction!(arrays::write_array, module)?)?;
    Ok(())
}
