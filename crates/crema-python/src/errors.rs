//! crema's errors as Python exceptions.
//!
//! A Python layer that raises inside a net turns into a crema error naming the layer and its file, which is
//! what the net returns; the exception itself is kept aside on this thread so that the `CremaError` raised to
//! the caller has it as its `__cause__`, with its traceback.

use std::cell::RefCell;

use pyo3::create_exception;
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;

create_exception!(
    crema,
    CremaError,
    PyRuntimeError,
    "A net, solver or file that crema could not build, run, read or write; the message names the file, the layer and the field."
);

thread_local! {
    static RAISED_IN_LAYER: RefCell<Option<PyErr>> = const { RefCell::new(None) };
}

/// Keeps the exception a Python layer raised until the error it caused reaches Python.
pub fn keep_layer_exception(error: PyErr) {
    RAISED_IN_LAYER.with(|slot| *slot.borrow_mut() = Some(error));
}

/// Forgets a kept exception (before a new run, so that an old one is never attached to a new error).
pub fn forget_layer_exception() {
    RAISED_IN_LAYER.with(|slot| slot.borrow_mut().take());
}

/// A crema error as a `CremaError`, caused by the Python layer's exception when one was kept.
pub fn to_py(py: Python<'_>, error: impl std::fmt::Display) -> PyErr {
    let raised = CremaError::new_err(error.to_string());
    if let Some(cause) = RAISED_IN_LAYER.with(|slot| slot.borrow_mut().take()) {
        raised.set_cause(py, Some(cause));
    }
    raised
}

/// Turns any crema result into a Python one.
pub trait OrRaise<T> {
    fn or_raise(self, py: Python<'_>) -> PyResult<T>;
}

impl<T, E: std::fmt::Display> OrRaise<T> for Result<T, E> {
    fn or_raise(self, py: Python<'_>) -> PyResult<T> {
        self.map_err(|error| to_py(py, error))
    }
}
