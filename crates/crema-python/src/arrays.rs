//! Array files from Python: `crema.read_array(path)` and `crema.write_array(path, array)`, .npy or .binaryproto
//! by extension, with crema's readers (bounded, checked) and writers (byte-identical to numpy's and pycaffe's,
//! written atomically). `crema convert` is the same on the command line.

use std::path::PathBuf;

use crema::io::{Array, ArrayData};
use numpy::ndarray::{ArrayD, IxDyn};
use numpy::{PyArrayDyn, PyArrayMethods, PyUntypedArrayMethods};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::errors::OrRaise;

/// Reads a .npy or .binaryproto file as a numpy array (float32, or float64 for a float64 file).
#[pyfunction]
pub fn read_array(py: Python<'_>, path: PathBuf) -> PyResult<Bound<'_, PyAny>> {
    let array = py.detach(|| crema::io::read_array(&path)).or_raise(py)?;
    let shape = IxDyn(array.shape());
    let made = match array.into_data() {
        ArrayData::F32(values) => {
            PyArrayDyn::from_owned_array(py, from_vec(shape, values)?).into_any()
        }
        ArrayData::F64(values) => {
            PyArrayDyn::from_owned_array(py, from_vec(shape, values)?).into_any()
        }
    };
    Ok(made)
}

fn from_vec<T>(shape: IxDyn, values: Vec<T>) -> PyResult<ArrayD<T>> {
    ArrayD::from_shape_vec(shape, values).map_err(|e| PyValueError::new_err(e.to_string()))
}

/// Writes `array` (anything numpy turns into float32 or float64) as a .npy or .binaryproto file; a binaryproto
/// holds float32 values as Caffe's does.
#[pyfunction]
pub fn write_array(py: Python<'_>, path: PathBuf, array: &Bound<'_, PyAny>) -> PyResult<()> {
    let numpy = py.import("numpy")?;
    let as_array = numpy.call_method1("asarray", (array,))?;
    let dtype: String = as_array.getattr("dtype")?.getattr("name")?.extract()?;
    let made = if dtype == "float64" {
        let values = numpy
            .call_method1("ascontiguousarray", (&as_array, "float64"))?
            .cast_into::<PyArrayDyn<f64>>()?;
        let shape = values.shape().to_vec();
        Array::from_f64(shape, values.readonly().as_slice()?.to_vec())
    } else {
        let values = numpy
            .call_method1("ascontiguousarray", (&as_array, "float32"))?
            .cast_into::<PyArrayDyn<f32>>()?;
        let shape = values.shape().to_vec();
        Array::from_f32(shape, values.readonly().as_slice()?.to_vec())
    }
    .or_raise(py)?;
    py.detach(|| crema::io::write_array(&path, &made))
        .or_raise(py)
}
