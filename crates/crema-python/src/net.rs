//! `Net`: a crema net reachable from Python, whether it stands alone (`caffe.Net(...)`) or belongs to a solver
//! (`solver.net`, `solver.test_nets[i]`), so that writing into its blobs feeds the very net that trains.
//!
//! Long runs (forward, backward) let go of the interpreter, so other Python threads go on; a Python layer
//! inside the net takes it back for its own calls.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, TryLockError};

use crema::proto::caffe::Phase;
use crema::proto::{files, NetState};
use crema::NetOptions;
use numpy::PyReadonlyArrayDyn;
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;

use crate::blob::{Blob, Source};
use crate::errors::{forget_layer_exception, OrRaise};
use crate::solver::Solver;

/// Where a net lives.
enum Home {
    /// Built from Python and owned here.
    Own(Box<Mutex<crema::Net>>),
    /// A solver's train net (`test` None) or one of its test nets.
    InSolver {
        solver: Py<Solver>,
        test: Option<usize>,
    },
}

/// A net: its blobs, layers and learnable blobs, run forward and backward over any range of layers.
#[pyclass(module = "crema._native", frozen)]
pub struct Net {
    home: Home,
}

/// Caffe's phase numbers, as pycaffe's `caffe.TRAIN` (0) and `caffe.TEST` (1).
pub fn phase_from_int(phase: i32) -> PyResult<Phase> {
    match phase {
        0 => Ok(Phase::Train),
        1 => Ok(Phase::Test),
        other => Err(PyValueError::new_err(format!(
            "phase {other}: give caffe.TRAIN (0) or caffe.TEST (1)"
        ))),
    }
}

/// Locks `mutex` without waiting: a net or solver in use by another call (another thread, or a Python layer
/// reaching back into the net that runs it) is an error, never a deadlock.
pub fn lock_now<'a, T>(mutex: &'a Mutex<T>, what: &str) -> PyResult<std::sync::MutexGuard<'a, T>> {
    match mutex.try_lock() {
        Ok(guard) => Ok(guard),
        Err(TryLockError::Poisoned(poisoned)) => Ok(poisoned.into_inner()),
        Err(TryLockError::WouldBlock) => Err(PyRuntimeError::new_err(format!(
            "the {what} is in use by another call (another thread, or a Python layer inside it)"
        ))),
    }
}

impl Net {
    pub fn in_solver(solver: Py<Solver>, test: Option<usize>) -> Net {
        Net {
            home: Home::InSolver { solver, test },
        }
    }

    /// Runs `f` on the crema net.
    pub fn with_net<R>(&self, py: Python<'_>, f: impl FnOnce(&mut crema::Net) -> R) -> PyResult<R> {
        match &self.home {
            Home::Own(net) => Ok(f(&mut *lock_now(net, "net")?)),
            Home::InSolver { solver, test } => {
                solver.get().with_solver(py, |solver| match test {
                    None => Ok(f(solver.net_mut())),
                    Some(i) => solver.test_nets_mut().get_mut(*i).map(f).ok_or_else(|| {
                        PyRuntimeError::new_err(format!("the solver has no test net {i}"))
                    }),
                })?
            }
        }
    }

    /// [`Net::with_net`] with the interpreter let go meanwhile; `f` must not touch Python.
    fn running<R: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&mut crema::Net) -> R + Send,
    ) -> PyResult<R> {
        forget_layer_exception();
        match &self.home {
            Home::Own(net) => {
                let mut guard = lock_now(net, "net")?;
                let net: &mut crema::Net = &mut guard;
                Ok(py.detach(move || f(net)))
            }
            Home::InSolver { .. } => self.with_net(py, f),
        }
    }
}

/// Builds a net as `caffe.Net(model, phase, weights=, stages=, level=)` does, paths resolved against the
/// model's folder after the working directory.
fn build(
    model: &Path,
    phase: Phase,
    weights: Option<&Path>,
    stages: Vec<String>,
    level: i32,
) -> crema::Result<crema::Net> {
    let (param, _) = files::read_net_text(model)?;
    let state = NetState {
        phase: Some(phase as i32),
        level: Some(level),
        stage: stages,
    };
    let options = NetOptions {
        origin: model.display().to_string(),
        search_dirs: model
            .parent()
            .map(|p| vec![p.to_path_buf()])
            .unwrap_or_default(),
        seed: crate::seed(),
    };
    let mut net = crema::Net::new(&param, &state, &options)?;
    if let Some(weights) = weights {
        let (trained, _) = files::read_net_binary(weights)?;
        net.copy_trained_from(&trained, &weights.display().to_string())?;
    }
    Ok(net)
}

#[pymethods]
impl Net {
    #[new]
    #[pyo3(signature = (model, phase, weights=None, stages=Vec::new(), level=0))]
    fn new(
        py: Python<'_>,
        model: PathBuf,
        phase: i32,
        weights: Option<PathBuf>,
        stages: Vec<String>,
        level: i32,
    ) -> PyResult<Net> {
        let phase = phase_from_int(phase)?;
        forget_layer_exception();
        let net = build(&model, phase, weights.as_deref(), stages, level).or_raise(py)?;
        Ok(Net {
            home: Home::Own(Box::new(Mutex::new(net))),
        })
    }

    /// The net's name (the prototxt's `name`).
    #[getter]
    fn name(&self, py: Python<'_>) -> PyResult<String> {
        self.with_net(py, |n| n.name().to_owned())
    }

    /// 0 for TRAIN, 1 for TEST.
    #[getter]
    fn phase(&self, py: Python<'_>) -> PyResult<i32> {
        self.with_net(py, |n| n.phase() as i32)
    }

    /// Layer names in running order, crema's inserted Splits included (as Caffe's).
    fn layer_names(&self, py: Python<'_>) -> PyResult<Vec<String>> {
        self.with_net(py, |n| n.layer_names().map(str::to_owned).collect())
    }

    /// Layer types in running order.
    fn layer_types(&self, py: Python<'_>) -> PyResult<Vec<String>> {
        self.with_net(py, |n| n.layer_types().map(str::to_owned).collect())
    }

    /// Every blob name once, in the order blobs are made (one entry for a blob that layers rewrite in place).
    fn blob_names(&self, py: Python<'_>) -> PyResult<Vec<String>> {
        self.with_net(py, |n| {
            let mut names: Vec<String> = Vec::new();
            for name in n.blob_names() {
                if !names.contains(name) {
                    names.push(name.clone());
                }
            }
            names
        })
    }

    fn input_names(&self, py: Python<'_>) -> PyResult<Vec<String>> {
        self.with_net(py, |n| {
            n.input_names().into_iter().map(str::to_owned).collect()
        })
    }

    fn output_names(&self, py: Python<'_>) -> PyResult<Vec<String>> {
        self.with_net(py, |n| {
            n.output_names().into_iter().map(str::to_owned).collect()
        })
    }

    /// The blob names layer `index` reads.
    fn bottom_names(&self, py: Python<'_>, index: usize) -> PyResult<Vec<String>> {
        self.with_net(py, |n| {
            checked_layer(n, index).map(|i| {
                n.layer_bottom_names(i)
                    .into_iter()
                    .map(str::to_owned)
                    .collect()
            })
        })?
    }

    /// The blob names layer `index` writes.
    fn top_names(&self, py: Python<'_>, index: usize) -> PyResult<Vec<String>> {
        self.with_net(py, |n| {
            checked_layer(n, index).map(|i| {
                n.layer_top_names(i)
                    .into_iter()
                    .map(str::to_owned)
                    .collect()
            })
        })?
    }

    /// How many learnable blobs layer `index` has.
    fn param_count(&self, py: Python<'_>, index: usize) -> PyResult<usize> {
        self.with_net(py, |n| {
            checked_layer(n, index).map(|i| n.layer_params(i).len())
        })?
    }

    /// The blob called `name`.
    fn blob(this: &Bound<'_, Self>, name: String) -> PyResult<Blob> {
        let known = this
            .get()
            .with_net(this.py(), |n| n.blob_names().contains(&name))?;
        if !known {
            return Err(pyo3::exceptions::PyKeyError::new_err(name));
        }
        Ok(Blob::new(Source::Net {
            net: this.clone().unbind(),
            name,
        }))
    }

    /// Blob `name` as a run over part of the net leaves it, when layers rewrite it in place: after a forward
    /// that stopped at layer `end`, the newest version made by a layer up to `end`; for a backward that stopped
    /// at layer `end` (`backward` true), the version that layers from `end` on read (made before `end`).
    fn blob_at(this: &Bound<'_, Self>, name: String, end: usize, backward: bool) -> PyResult<Blob> {
        let id = this.get().with_net(this.py(), |n| {
            let versions = n.blob_version_ids(&name);
            let made_by = |id: &usize| n.blob_producer(*id).unwrap_or(0);
            let fits = |id: &&usize| {
                if backward {
                    made_by(id) < end
                } else {
                    made_by(id) <= end
                }
            };
            versions
                .iter()
                .rev()
                .find(fits)
                .or(versions.first())
                .copied()
        })?;
        let id = id.ok_or_else(|| pyo3::exceptions::PyKeyError::new_err(name.clone()))?;
        Ok(Blob::new(Source::Version {
            net: this.clone().unbind(),
            id,
        }))
    }

    /// Learnable blob `index` of layer `layer`.
    fn param(this: &Bound<'_, Self>, layer: usize, index: usize) -> PyResult<Blob> {
        let count = this.get().param_count(this.py(), layer)?;
        if index >= count {
            return Err(pyo3::exceptions::PyIndexError::new_err(format!(
                "layer {layer} has {count} learnable blobs"
            )));
        }
        Ok(Blob::new(Source::Param {
            net: this.clone().unbind(),
            layer,
            index,
        }))
    }

    /// Runs layers `start..=end` forward; returns their weighted loss. A solver's test net first takes the
    /// train net's current weights, which Caffe's test nets share.
    fn forward(&self, py: Python<'_>, start: usize, end: usize) -> PyResult<f32> {
        if let Home::InSolver {
            solver,
            test: Some(index),
        } = &self.home
        {
            forget_layer_exception();
            return solver
                .get()
                .with_solver(py, |s| {
                    s.refresh_test_net(*index)?;
                    s.test_nets_mut()[*index].forward_range(start, end)
                })?
                .or_raise(py);
        }
        self.running(py, |n| n.forward_range(start, end))?
            .or_raise(py)
    }

    /// Runs layers `start` down to `end` backward, after setting the gradients of outputs given in `diffs`.
    fn backward(
        &self,
        py: Python<'_>,
        start: usize,
        end: usize,
        diffs: Vec<(String, PyReadonlyArrayDyn<'_, f32>)>,
    ) -> PyResult<()> {
        let mut given: Vec<(String, Vec<f32>)> = Vec::with_capacity(diffs.len());
        for (name, array) in &diffs {
            let values = match array.as_slice() {
                Ok(values) => values.to_vec(),
                Err(_) => array.as_array().iter().copied().collect(),
            };
            given.push((name.clone(), values));
        }
        self.running(py, move |n| {
            let borrowed: Vec<(&str, &[f32])> = given
                .iter()
                .map(|(name, values)| (name.as_str(), values.as_slice()))
                .collect();
            n.backward_range(&borrowed, start, end)
        })?
        .or_raise(py)
    }

    /// Shapes every layer's tops again after inputs were reshaped.
    fn reshape(&self, py: Python<'_>) -> PyResult<()> {
        self.running(py, |n| n.reshape())?.or_raise(py)
    }

    /// Zeroes every learnable blob's gradient.
    fn clear_param_diffs(&self, py: Python<'_>) -> PyResult<()> {
        self.with_net(py, |n| n.clear_param_diffs())
    }

    /// Writes the weights as a .caffemodel (atomically).
    fn save(&self, py: Python<'_>, path: PathBuf) -> PyResult<()> {
        let proto = self.with_net(py, |n| n.to_proto(false))?;
        files::write_binary(&path, &proto).or_raise(py)
    }

    /// Copies weights from a .caffemodel by layer name, as `CopyTrainedLayersFrom`.
    fn copy_from(&self, py: Python<'_>, path: PathBuf) -> PyResult<()> {
        let (trained, _) = files::read_net_binary(&path).or_raise(py)?;
        self.with_net(py, |n| {
            n.copy_trained_from(&trained, &path.display().to_string())
        })?
        .or_raise(py)?;
        Ok(())
    }

    /// Copies the learnable blobs of `other`'s layers into this net's layers of the same name (pycaffe's
    /// `share_with` shares the memory instead; crema copies, once).
    fn copy_params_from(this: &Bound<'_, Self>, other: &Bound<'_, Net>) -> PyResult<()> {
        let py = this.py();
        if this.is(other) {
            return Ok(());
        }
        let source = other.get().with_net(py, |n| n.to_proto(false))?;
        this.get()
            .with_net(py, |n| n.copy_trained_from(&source, "the other net"))?
            .or_raise(py)?;
        Ok(())
    }
}

fn checked_layer(net: &crema::Net, index: usize) -> PyResult<usize> {
    let count = net.layer_names().count();
    if index < count {
        Ok(index)
    } else {
        Err(pyo3::exceptions::PyIndexError::new_err(format!(
            "layer {index}: the net has {count} layers"
        )))
    }
}
