//! `type: "Python"` layers: a user's Python class run as a layer of any net, as Caffe's PythonLayer does.
//!
//! The class is found by `crema._python_layer.create` (on `sys.path`, then in the prototxt's folder and the
//! working directory) and made with the layer's LayerParameter; `param_str`, `phase` and `blobs` are set on it
//! before `setup`. Each call hands it lists of [`Blob`]s lent for that call only: bottoms are read-only in
//! `forward`, tops in `backward`. As in Caffe, `reshape` runs before every `forward`.
//!
//! The layer's own learnable blobs (`self.blobs.add_blob(...)`) live here, in Rust, so that solvers update and
//! snapshots save them like any other layer's.

use std::sync::atomic::{AtomicPtr, Ordering};

use crema::layer::{required_text, Arity, Layer, LayerContext, LayerError, LayerResult};
use prost::Message;
use pyo3::exceptions::{PyIndexError, PyRuntimeError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList};

use crate::blob::{Blob, Source};
use crate::errors::{keep_layer_exception, OrRaise};

/// The layer type name in prototxts.
pub const TYPE_NAME: &str = "Python";

/// A Python layer's own learnable blobs as Python sees them (`self.blobs`): a list that grows with
/// `add_blob(*shape)`. It points at the blobs the Rust layer owns, and is cut off when the layer is dropped.
#[pyclass(module = "crema._native", frozen, sequence)]
pub struct BlobVec {
    blobs: AtomicPtr<Vec<crema::Blob>>,
}

impl BlobVec {
    /// Runs `f` on the layer's blobs.
    fn with_blobs<R>(&self, f: impl FnOnce(&mut Vec<crema::Blob>) -> PyResult<R>) -> PyResult<R> {
        let pointer = self.blobs.load(Ordering::Acquire);
        if pointer.is_null() {
            return Err(PyRuntimeError::new_err(
                "the Python layer these blobs belonged to is gone (its net was dropped)",
            ));
        }
        // SAFETY: the pointer is the `params` field of a boxed PythonLayer, which clears it when dropped; the
        // net only uses those blobs while no Python code of this layer runs, all under the interpreter lock.
        f(unsafe { &mut *pointer })
    }

    /// Runs `f` on blob `index`.
    pub fn with_blob<R>(
        &self,
        index: usize,
        f: impl FnOnce(&mut crema::Blob) -> PyResult<R>,
    ) -> PyResult<R> {
        self.with_blobs(|blobs| {
            let count = blobs.len();
            let blob = blobs.get_mut(index).ok_or_else(|| {
                PyIndexError::new_err(format!("the layer has {count} blobs, not {}", index + 1))
            })?;
            f(blob)
        })
    }
}

#[pymethods]
impl BlobVec {
    /// Adds a learnable blob of `shape`, zero-filled; returns nothing, as Caffe's.
    #[pyo3(signature = (*shape))]
    fn add_blob(&self, py: Python<'_>, shape: Vec<usize>) -> PyResult<()> {
        let blob = crema::Blob::new(&shape).or_raise(py)?;
        self.with_blobs(|blobs| {
            blobs.push(blob);
            Ok(())
        })
    }

    fn __len__(&self) -> PyResult<usize> {
        self.with_blobs(|blobs| Ok(blobs.len()))
    }

    fn __getitem__(this: &Bound<'_, Self>, index: isize) -> PyResult<Blob> {
        let count = this.get().__len__()?;
        let resolved = if index < 0 {
            count.checked_sub(index.unsigned_abs())
        } else {
            Some(index.unsigned_abs())
        };
        match resolved {
            Some(i) if i < count => Ok(Blob::new(Source::Own {
                blobs: this.clone().unbind(),
                index: i,
            })),
            _ => Err(PyIndexError::new_err(format!(
                "blob index {index} out of range for {count} blobs"
            ))),
        }
    }
}

/// A layer whose work is done by a Python object.
struct PythonLayer {
    /// `module.Class`, for errors.
    class: String,
    instance: Py<PyAny>,
    blob_vec: Py<BlobVec>,
    params: Vec<crema::Blob>,
    /// Whether `reshape` ran since the last `forward`: Caffe reshapes before every forward, and Python layers
    /// rely on it (data layers load the next item there).
    reshaped: bool,
}

/// Makes the layer: imports the module, makes the object, hands it its parameters.
pub fn create(ctx: &mut LayerContext) -> LayerResult<Box<dyn Layer>> {
    let python = ctx.param.python_param.clone().unwrap_or_default();
    let module = required_text(
        python.module.as_deref(),
        "python_param.module",
        "the Python module that defines the layer",
    )?
    .to_owned();
    let class = required_text(
        python.layer.as_deref(),
        "python_param.layer",
        "the name of the layer's class",
    )?
    .to_owned();
    let mut search_dirs: Vec<String> = ctx
        .search_dirs
        .iter()
        .map(|dir| dir.display().to_string())
        .collect();
    if let Ok(here) = std::env::current_dir() {
        search_dirs.push(here.display().to_string());
    }
    let param_bytes = ctx.param.encode_to_vec();
    let phase = ctx.phase as i32;
    let param_str = python.param_str.unwrap_or_default();
    let (instance, blob_vec) = Python::attach(|py| -> Result<_, String> {
        let blob_vec = Py::new(
            py,
            BlobVec {
                blobs: AtomicPtr::new(std::ptr::null_mut()),
            },
        )
        .map_err(|e| e.to_string())?;
        let made = py
            .import("crema._python_layer")
            .and_then(|helper| {
                helper.call_method1(
                    "create",
                    (
                        &module,
                        &class,
                        &param_str,
                        phase,
                        PyBytes::new(py, &param_bytes),
                        search_dirs,
                        blob_vec.clone_ref(py),
                    ),
                )
            })
            .map_err(|error| {
                let message = describe(py, &error);
                keep_layer_exception(error);
                message
            })?;
        Ok((made.unbind(), blob_vec))
    })
    .map_err(LayerError::new)?;
    let mut layer = Box::new(PythonLayer {
        class: format!("{module}.{class}"),
        instance,
        blob_vec,
        params: Vec::new(),
        reshaped: false,
    });
    let params: *mut Vec<crema::Blob> = &mut layer.params;
    layer.blob_vec.get().blobs.store(params, Ordering::Release);
    Ok(layer)
}

/// An exception as `Type: message` and the traceback of the user's code (`crema._python_layer.describe`).
fn describe(py: Python<'_>, error: &PyErr) -> String {
    py.import("crema._python_layer")
        .and_then(|helper| helper.call_method1("describe", (error.value(py), error.traceback(py))))
        .and_then(|text| text.extract::<String>())
        .unwrap_or_else(|_| error.to_string())
}

/// One call's lent blobs, cut off when dropped (also when the call raised, and whatever the layer did to the
/// lists it was given).
struct Loan<'py> {
    lent: Vec<Bound<'py, Blob>>,
}

impl<'py> Loan<'py> {
    fn lend(
        &mut self,
        py: Python<'py>,
        blobs: &[*mut crema::Blob],
        writable: bool,
    ) -> PyResult<Bound<'py, PyList>> {
        let first = self.lent.len();
        for &blob in blobs {
            self.lent.push(Bound::new(py, Blob::lent(blob, writable))?);
        }
        PyList::new(py, &self.lent[first..])
    }
}

impl Drop for Loan<'_> {
    fn drop(&mut self) {
        for blob in &self.lent {
            blob.get().end_loan();
        }
    }
}

impl PythonLayer {
    /// Calls `method(first, [flags,] second)` on the object with lent blobs; an exception becomes an error
    /// with its traceback (and is kept for the caller in Python).
    fn call(
        &mut self,
        method: &str,
        first: &[*mut crema::Blob],
        first_writable: bool,
        flags: Option<&[bool]>,
        second: &[*mut crema::Blob],
    ) -> LayerResult {
        let class = &self.class;
        Python::attach(|py| {
            let mut loan = Loan { lent: Vec::new() };
            let outcome = (|| -> PyResult<()> {
                let first = loan.lend(py, first, first_writable)?;
                let second = loan.lend(py, second, true)?;
                let instance = self.instance.bind(py);
                match flags {
                    Some(flags) => {
                        instance.call_method1(method, (first, flags.to_vec(), second))?
                    }
                    None => instance.call_method1(method, (first, second))?,
                };
                Ok(())
            })();
            drop(loan);
            outcome.map_err(|error| {
                let message = format!("{class}.{method} raised {}", describe(py, &error));
                keep_layer_exception(error);
                LayerError::new(message)
            })
        })
    }
}

/// Blobs a call may only read, as pointers for [`Blob::lent`] (which makes their arrays read-only).
fn read_only(blobs: &[&crema::Blob]) -> Vec<*mut crema::Blob> {
    blobs
        .iter()
        .map(|&blob| std::ptr::from_ref(blob).cast_mut())
        .collect()
}

/// Blobs a call may write and reshape.
fn writable(blobs: &mut [&mut crema::Blob]) -> Vec<*mut crema::Blob> {
    blobs
        .iter_mut()
        .map(|blob| std::ptr::from_mut(&mut **blob))
        .collect()
}

impl Layer for PythonLayer {
    fn type_name(&self) -> &'static str {
        TYPE_NAME
    }

    fn bottom_arity(&self) -> Arity {
        Arity::at_least(0)
    }

    fn top_arity(&self) -> Arity {
        Arity::at_least(0)
    }

    fn setup(&mut self, bottom: &[&crema::Blob], top: &mut [&mut crema::Blob]) -> LayerResult {
        self.call("setup", &read_only(bottom), false, None, &writable(top))
    }

    fn reshape(&mut self, bottom: &[&crema::Blob], top: &mut [&mut crema::Blob]) -> LayerResult {
        self.call("reshape", &read_only(bottom), false, None, &writable(top))?;
        self.reshaped = true;
        Ok(())
    }

    fn forward(&mut self, bottom: &[&crema::Blob], top: &mut [&mut crema::Blob]) -> LayerResult {
        if !self.reshaped {
            self.reshape(bottom, top)?;
        }
        self.reshaped = false;
        self.call("forward", &read_only(bottom), false, None, &writable(top))
    }

    fn backward(
        &mut self,
        top: &[&crema::Blob],
        propagate_down: &[bool],
        bottom: &mut [&mut crema::Blob],
    ) -> LayerResult {
        self.call(
            "backward",
            &read_only(top),
            false,
            Some(propagate_down),
            &writable(bottom),
        )
    }

    fn params(&self) -> &[crema::Blob] {
        &self.params
    }

    fn params_mut(&mut self) -> &mut [crema::Blob] {
        &mut self.params
    }
}

impl Drop for PythonLayer {
    fn drop(&mut self) {
        self.blob_vec
            .get()
            .blobs
            .store(std::ptr::null_mut(), Ordering::Release);
    }
}
