//! `Solver`: a crema solver stepped from Python, as pycaffe's `caffe.SGDSolver(path)` and
//! `caffe.get_solver(path)`; its nets are [`Net`]s that live inside it.

use std::path::PathBuf;
use std::sync::Mutex;

use crema::proto::files;
use crema::solver::{SolverLog, SolverOptions};
use pyo3::prelude::*;

use crate::errors::{forget_layer_exception, OrRaise};
use crate::net::{lock_now, Net};

/// The log of a run started from Python: Caffe's lines on stderr, and Ctrl-C (or any signal Python's handlers
/// turn into an exception) stops the run after the iteration under way and is raised when it returns.
#[derive(Default)]
struct PythonLog {
    raised: Option<PyErr>,
}

impl SolverLog for PythonLog {
    fn line(&mut self, text: &str) {
        eprintln!("{text}");
    }

    fn interrupted(&mut self) -> bool {
        if self.raised.is_none() {
            self.raised = Python::attach(|py| py.check_signals().err());
        }
        self.raised.is_some()
    }
}

/// A run's outcome as Python sees it: an interruption first, then crema's error.
fn finish<T>(py: Python<'_>, log: PythonLog, outcome: crema::Result<T>) -> PyResult<T> {
    if let Some(raised) = log.raised {
        return Err(raised);
    }
    outcome.or_raise(py)
}

/// A training run: the train net, its test nets, the update rule and the iteration.
#[pyclass(module = "crema._native", frozen)]
pub struct Solver {
    solver: Mutex<crema::solver::Solver>,
}

impl Solver {
    /// Runs `f` on the crema solver.
    pub fn with_solver<R>(
        &self,
        _py: Python<'_>,
        f: impl FnOnce(&mut crema::solver::Solver) -> R,
    ) -> PyResult<R> {
        Ok(f(&mut *lock_now(&self.solver, "solver")?))
    }

    /// Runs `f` with the interpreter let go; Python layers in the nets take it back for their calls.
    fn running<R: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&mut crema::solver::Solver) -> R + Send,
    ) -> PyResult<R> {
        forget_layer_exception();
        let mut guard = lock_now(&self.solver, "solver")?;
        let solver: &mut crema::solver::Solver = &mut guard;
        Ok(py.detach(move || f(solver)))
    }
}

#[pymethods]
impl Solver {
    /// The solver that `path` defines; `forced_type` (`"SGD"`, `"Adam"`...) replaces the file's type, as
    /// `caffe.SGDSolver(path)` and its siblings do.
    #[new]
    #[pyo3(signature = (path, forced_type=None))]
    fn new(py: Python<'_>, path: PathBuf, forced_type: Option<String>) -> PyResult<Solver> {
        let (mut param, _) = files::read_solver_text(&path).or_raise(py)?;
        if let Some(kind) = forced_type {
            param.r#type = Some(kind);
            param.solver_type = None;
        }
        if param.random_seed() < 0 {
            if let Some(seed) = crate::seed_set_by_user() {
                param.random_seed = Some(seed as i64);
            }
        }
        let options = SolverOptions {
            solver_path: Some(path),
            ..SolverOptions::default()
        };
        forget_layer_exception();
        let solver = crema::solver::Solver::new(param, &options).or_raise(py)?;
        Ok(Solver {
            solver: Mutex::new(solver),
        })
    }

    /// The number of iterations done.
    #[getter]
    fn iter(&self, py: Python<'_>) -> PyResult<u32> {
        self.with_solver(py, |s| s.iter())
    }

    /// The solver's type (`"SGD"`, `"Adam"`...).
    #[getter(r#type)]
    fn kind(&self, py: Python<'_>) -> PyResult<String> {
        self.with_solver(py, |s| s.param().r#type().to_owned())
    }

    /// The SolverParameter as read (after upgrades), encoded, for `caffe_pb2.SolverParameter.FromString`.
    fn param_bytes<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, pyo3::types::PyBytes>> {
        let bytes = self.with_solver(py, |s| prost::Message::encode_to_vec(s.param()))?;
        Ok(pyo3::types::PyBytes::new(py, &bytes))
    }

    /// The train net.
    #[getter]
    fn net(this: &Bound<'_, Self>) -> Net {
        Net::in_solver(this.clone().unbind(), None)
    }

    /// The test nets.
    #[getter]
    fn test_nets(this: &Bound<'_, Self>) -> PyResult<Vec<Net>> {
        let count = this.get().with_solver(this.py(), |s| s.test_nets().len())?;
        Ok((0..count)
            .map(|i| Net::in_solver(this.clone().unbind(), Some(i)))
            .collect())
    }

    /// Runs `iters` iterations (tests and snapshots included, at their intervals).
    fn step(&self, py: Python<'_>, iters: u32) -> PyResult<()> {
        let (log, outcome) = self.running(py, |s| {
            let mut log = PythonLog::default();
            let outcome = s.step(iters, &mut log);
            (log, outcome)
        })?;
        finish(py, log, outcome)
    }

    /// Trains to `max_iter`, resuming first from the .solverstate `resume` when given.
    #[pyo3(signature = (resume=None))]
    fn solve(&self, py: Python<'_>, resume: Option<PathBuf>) -> PyResult<()> {
        let (log, outcome) = self.running(py, |s| {
            let mut log = PythonLog::default();
            let outcome = match &resume {
                Some(state) => s.restore(state),
                None => Ok(()),
            }
            .and_then(|()| s.solve(&mut log));
            (log, outcome)
        })?;
        finish(py, log, outcome)
    }

    /// Writes `<prefix>_iter_N.caffemodel` and `.solverstate`; returns their paths.
    fn snapshot(&self, py: Python<'_>) -> PyResult<(PathBuf, PathBuf)> {
        self.running(py, |s| s.snapshot(&mut PythonLog::default()))?
            .or_raise(py)
    }

    /// Resumes from a .solverstate (iteration, histories, data positions).
    fn restore(&self, py: Python<'_>, path: PathBuf) -> PyResult<()> {
        self.running(py, |s| s.restore(&path))?.or_raise(py)
    }

    /// Runs every test net `test_iter` batches with the train net's weights, logging the means.
    fn test_all(&self, py: Python<'_>) -> PyResult<()> {
        self.running(py, |s| s.test_all(&mut PythonLog::default()).map(drop))?
            .or_raise(py)
    }
}
