//! `Blob`: one blob as Python sees it, its values and gradients numpy arrays over crema's own memory.
//!
//! A `Blob` object does not hold values; it says where they live (a net's blob by name, a layer's learnable
//! blob, a blob lent to a Python layer for one call, a Python layer's own learnable blob) and makes a fresh
//! numpy view each time `.data` or `.diff` is read, as pycaffe does. A view stays valid while its blob keeps
//! its size: reshaping to more values moves the memory, so take `.data` again after a reshape.

use std::sync::atomic::{AtomicPtr, Ordering};

use numpy::ndarray::{ArrayViewD, IxDyn};
use numpy::{PyArrayDyn, PyArrayMethods, PyUntypedArrayMethods};
use pyo3::exceptions::{PyIndexError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyTuple;

use crate::errors::OrRaise;
use crate::net::Net;
use crate::python_layer::BlobVec;

/// A shape as Python writes a tuple: `(4, 3)`, `(5,)`, `()`.
fn as_tuple(shape: &[usize]) -> String {
    match shape {
        [one] => format!("({one},)"),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Which of a blob's two arrays.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Data,
    Diff,
}

impl Part {
    fn name(self) -> &'static str {
        match self {
            Part::Data => "data",
            Part::Diff => "diff",
        }
    }
}

/// Where a blob's values live.
pub enum Source {
    /// A net's blob by name. With in-place layers a name has several versions in crema: values are read from
    /// the newest (what Caffe's one shared blob holds after forward), gradients from the oldest (what it holds
    /// after backward); a net input's values from the input itself, so that writing them feeds the net.
    Net { net: Py<Net>, name: String },
    /// One version of a net's blob, by id: what a forward that stopped at a layer left there, or what a
    /// backward that stopped at a layer reads.
    Version { net: Py<Net>, id: usize },
    /// Learnable blob `index` of layer `layer` of a net.
    Param {
        net: Py<Net>,
        layer: usize,
        index: usize,
    },
    /// A blob lent to a Python layer for one call of `setup`, `reshape`, `forward` or `backward`; the pointer
    /// is cleared when the call returns. Blobs the layer may only read (bottoms in forward, tops in backward)
    /// give read-only arrays.
    Lent {
        blob: AtomicPtr<crema::Blob>,
        writable: bool,
    },
    /// Blob `index` of a Python layer's own learnable blobs (`self.blobs`).
    Own { blobs: Py<BlobVec>, index: usize },
}

/// The blob a loan points at, or an error once the loan has ended.
fn lent_pointer(blob: &AtomicPtr<crema::Blob>) -> PyResult<*mut crema::Blob> {
    let pointer = blob.load(Ordering::Acquire);
    if pointer.is_null() {
        return Err(PyRuntimeError::new_err(
            "this blob was lent to a Python layer for one call only; keep copies of its values \
             (blob.data.copy()), not the blob",
        ));
    }
    Ok(pointer)
}

/// A blob: `.data` and `.diff` are numpy arrays sharing crema's memory.
#[pyclass(module = "crema._native", frozen)]
pub struct Blob {
    source: Source,
}

impl Blob {
    pub fn new(source: Source) -> Blob {
        Blob { source }
    }

    /// A blob lent to a Python layer for one call.
    pub fn lent(blob: *mut crema::Blob, writable: bool) -> Blob {
        Blob::new(Source::Lent {
            blob: AtomicPtr::new(blob),
            writable,
        })
    }

    /// Ends a loan: the blob is not to be reached any more.
    pub fn end_loan(&self) {
        if let Source::Lent { blob, .. } = &self.source {
            blob.store(std::ptr::null_mut(), Ordering::Release);
        }
    }

    fn writable(&self) -> bool {
        !matches!(
            self.source,
            Source::Lent {
                writable: false,
                ..
            }
        )
    }

    /// Runs `f` on the crema blob that holds `part`, to read it.
    pub fn read<R>(
        &self,
        py: Python<'_>,
        part: Part,
        f: impl FnOnce(&crema::Blob) -> PyResult<R>,
    ) -> PyResult<R> {
        match &self.source {
            Source::Lent { blob, .. } => {
                // SAFETY: as in `with`; only read here, so a blob the layer may only read is never written.
                f(unsafe { &*lent_pointer(blob)? })
            }
            _ => self.with(py, part, |b| f(b)),
        }
    }

    /// Runs `f` on the crema blob that holds `part`, to change it; an error for a blob lent read-only.
    pub fn with<R>(
        &self,
        py: Python<'_>,
        part: Part,
        f: impl FnOnce(&mut crema::Blob) -> PyResult<R>,
    ) -> PyResult<R> {
        match &self.source {
            Source::Net { net, name } => net.get().with_net(py, |net| {
                let ids = net.blob_version_ids(name);
                // A net input that a layer rewrites in place: writes must reach the input itself, so its values
                // are the input's (what was fed), not the rewritten ones.
                let input = ids.len() > 1 && net.input_names().contains(&name.as_str());
                let id = match part {
                    Part::Data if !input => ids.last(),
                    Part::Data | Part::Diff => ids.first(),
                };
                let id = *id.ok_or_else(|| {
                    PyRuntimeError::new_err(format!("the net has no blob \"{name}\""))
                })?;
                f(net.blob_by_id_mut(id))
            })?,
            Source::Version { net, id } => {
                net.get().with_net(py, |net| f(net.blob_by_id_mut(*id)))?
            }
            Source::Param { net, layer, index } => net.get().with_net(py, |net| {
                let params = net.layer_params_mut(*layer);
                let count = params.len();
                let blob = params.get_mut(*index).ok_or_else(|| {
                    PyIndexError::new_err(format!(
                        "the layer has {count} learnable blobs, not {}",
                        index + 1
                    ))
                })?;
                f(blob)
            })?,
            Source::Lent { blob, writable } => {
                let pointer = lent_pointer(blob)?;
                if !writable {
                    return Err(PyValueError::new_err(format!(
                        "this blob's {} is read-only in this call (a Python layer writes its tops in \
                         forward and its bottoms' diffs in backward)",
                        part.name()
                    )));
                }
                // SAFETY: the pointer is set from a live blob by the Python layer for the duration of one call
                // into Python and cleared before that call returns; the net does not touch the blob meanwhile,
                // and a blob the net lent mutably is lent to Python alone.
                f(unsafe { &mut *pointer })
            }
            Source::Own { blobs, index } => blobs.get().with_blob(*index, f),
        }
    }

    /// A numpy view of `part`, kept alive by (and keeping alive) `this`.
    fn view<'py>(this: &Bound<'py, Blob>, part: Part) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
        let py = this.py();
        let blob = this.get();
        let (pointer, shape) = blob.read(py, part, |b| {
            let values = match part {
                Part::Data => b.data(),
                Part::Diff => b.diff(),
            };
            Ok((values.as_ptr(), b.shape().to_vec()))
        })?;
        // SAFETY: the pointer holds the blob's count of values, laid out C-contiguous in `shape`. The array
        // keeps `this` alive, and with it the net or layer that owns the memory.
        let array = unsafe {
            let view = ArrayViewD::from_shape_ptr(IxDyn(&shape), pointer);
            PyArrayDyn::borrow_from_array(&view, this.clone().into_any())
        };
        if !blob.writable() {
            array.call_method1("setflags", (false,))?;
        }
        Ok(array)
    }

    /// Copies `value` into `part`, which it must match in shape (or in count, as a flat sequence).
    fn assign(this: &Bound<'_, Blob>, part: Part, value: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = this.py();
        let numpy = py.import("numpy")?;
        let array = numpy
            .call_method1("ascontiguousarray", (value, "float32"))?
            .cast_into::<PyArrayDyn<f32>>()?;
        let given = array.shape().to_vec();
        // A copy first: the array may be this very blob's memory (`blob.data = blob.data`).
        let values = array.readonly().as_slice()?.to_vec();
        this.get().with(py, part, |blob| {
            if given != blob.shape() {
                return Err(PyValueError::new_err(format!(
                    "cannot set .{} of a blob of shape {} to an array of shape {}",
                    part.name(),
                    as_tuple(blob.shape()),
                    as_tuple(&given)
                )));
            }
            match part {
                Part::Data => blob.data_mut().copy_from_slice(&values),
                Part::Diff => blob.diff_mut().copy_from_slice(&values),
            }
            Ok(())
        })
    }

    fn shape(&self, py: Python<'_>) -> PyResult<Vec<usize>> {
        self.read(py, Part::Data, |b| Ok(b.shape().to_vec()))
    }
}

#[pymethods]
impl Blob {
    /// The values: a float32 numpy array sharing the blob's memory (write into it with `blob.data[...] = x`).
    #[getter]
    fn data<'py>(this: &Bound<'py, Self>) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
        Blob::view(this, Part::Data)
    }

    #[setter(data)]
    fn set_data(this: &Bound<'_, Self>, value: &Bound<'_, PyAny>) -> PyResult<()> {
        Blob::assign(this, Part::Data, value)
    }

    /// The gradients: a float32 numpy array sharing the blob's memory.
    #[getter]
    fn diff<'py>(this: &Bound<'py, Self>) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
        Blob::view(this, Part::Diff)
    }

    #[setter(diff)]
    fn set_diff(this: &Bound<'_, Self>, value: &Bound<'_, PyAny>) -> PyResult<()> {
        Blob::assign(this, Part::Diff, value)
    }

    /// The shape, as a tuple.
    #[getter(shape)]
    fn shape_tuple<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        PyTuple::new(py, self.shape(py)?)
    }

    /// The number of values.
    #[getter]
    fn count(&self, py: Python<'_>) -> PyResult<usize> {
        self.read(py, Part::Data, |b| Ok(b.count()))
    }

    /// Caffe's legacy axis 0 (1 where the blob has fewer axes).
    #[getter]
    fn num(&self, py: Python<'_>) -> PyResult<usize> {
        self.read(py, Part::Data, |b| Ok(b.legacy_dim(0)))
    }

    #[getter]
    fn channels(&self, py: Python<'_>) -> PyResult<usize> {
        self.read(py, Part::Data, |b| Ok(b.legacy_dim(1)))
    }

    #[getter]
    fn height(&self, py: Python<'_>) -> PyResult<usize> {
        self.read(py, Part::Data, |b| Ok(b.legacy_dim(2)))
    }

    #[getter]
    fn width(&self, py: Python<'_>) -> PyResult<usize> {
        self.read(py, Part::Data, |b| Ok(b.legacy_dim(3)))
    }

    /// Gives the blob a new shape, `blob.reshape(n, c, h, w)`; views taken before may no longer be valid.
    #[pyo3(signature = (*shape))]
    fn reshape(&self, py: Python<'_>, shape: Vec<i64>) -> PyResult<()> {
        let shape = shape
            .iter()
            .map(|&d| {
                usize::try_from(d).map_err(|_| {
                    PyValueError::new_err(format!(
                        "reshape{shape:?}: every dimension must be 0 or more"
                    ))
                })
            })
            .collect::<PyResult<Vec<usize>>>()?;
        match &self.source {
            // Every version of a net's blob keeps one shape, as Caffe's single blob does.
            Source::Net { net, name } => net.get().with_net(py, |net| {
                for id in net.blob_version_ids(name) {
                    net.blob_by_id_mut(id).reshape(&shape).or_raise(py)?;
                }
                Ok(())
            })?,
            _ => self.with(py, Part::Data, |b| b.reshape(&shape).or_raise(py)),
        }
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        match self.shape(py) {
            Ok(shape) => format!("<Blob shape {}>", as_tuple(&shape)),
            Err(_) => "<Blob (no longer reachable)>".to_owned(),
        }
    }
}
