//! [`Solver`]: training as `caffe train` does it: the train net and its test nets built from a SolverParameter,
//! iterations of forward/backward (accumulated over `iter_size`) and updates, tests every `test_interval`,
//! snapshots every `snapshot` iterations, and resuming from a snapshot.
//!
//! Lines are logged in Caffe's shapes (`Iteration N, loss = X`, `    Train net output #k: name = v`,
//! `Iteration N, Testing net (#0)`, `    Test net output #k: name = v`, `Iteration N, lr = X`) so that parsers of
//! Caffe logs keep working.
//!
//! Resuming is exact: a snapshot's .solverstate holds, besides Caffe's iteration and histories, the state of
//! every stateful layer (data readers' positions, random generators) in crema's own fields, which Caffe ignores.
//! A run of 2N iterations and a run of N resumed for N more end with identical weights.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crema_proto::caffe::{CremaLayerState, Phase};
use crema_proto::{files, NetParameter, NetState, SolverParameter, SolverState};

use super::{apply_update, create_rule, current_step, presolve, UpdateRule};
use crate::error::{Error, Result};
use crate::layer::resolve_path;
use crate::net::{Net, NetOptions};

/// Where a solver's lines and progress go.
pub trait SolverLog {
    /// One line of the log, in Caffe's shapes.
    fn line(&mut self, text: &str);

    /// Called after every iteration with the smoothed loss.
    fn progress(&mut self, _iter: u32, _max_iter: u32, _smoothed_loss: f32) {}

    /// Asked after every iteration: true stops the run there, without a snapshot (a host's own interruption,
    /// such as Ctrl-C in Python, which the host then reports).
    fn interrupted(&mut self) -> bool {
        false
    }
}

/// A log that prints every line to standard error, as Caffe does.
pub struct StderrLog;

impl SolverLog for StderrLog {
    fn line(&mut self, text: &str) {
        eprintln!("{text}");
    }
}

/// How a solver is set up beyond its SolverParameter.
#[derive(Debug, Clone, Default)]
pub struct SolverOptions {
    /// The solver file, for errors, for resolving net paths and for the default snapshot prefix.
    pub solver_path: Option<PathBuf>,
    /// Stages added to the train and test nets' states (`crema train --stage`).
    pub stages: Vec<String>,
    /// Level of the train and test nets' states, when given (`crema train --level`).
    pub level: Option<i32>,
}

/// The means of one test: each output's name, mean value per element, and loss weight.
#[derive(Debug, Clone, PartialEq)]
pub struct TestScores {
    pub net: usize,
    pub outputs: Vec<(String, Vec<f32>, f32)>,
}

/// A training run: the train net, its test nets, the update rule and where the run stands.
pub struct Solver {
    param: SolverParameter,
    train: Net,
    tests: Vec<Net>,
    rule: Box<dyn UpdateRule>,
    iter: u32,
    losses: VecDeque<f32>,
    smoothed_loss: f32,
    snapshot_prefix: String,
    stop: Arc<AtomicBool>,
    /// The solver file (or `<solver>`), named in errors about its fields.
    origin: String,
}

/// Names the solver file in an error about one of its fields (the update rule and learning-rate code reports
/// the field alone).
fn in_solver_file(origin: &str) -> impl FnOnce(Error) -> Error + '_ {
    move |error| match error {
        Error::Solver(error) => Error::Net {
            origin: origin.to_owned(),
            reason: error.to_string(),
        },
        other => other,
    }
}

fn merge_state(
    base: Option<&NetState>,
    phase: Phase,
    extra: Option<&NetState>,
    options: &SolverOptions,
) -> NetState {
    let mut state = NetState {
        phase: Some(phase as i32),
        ..Default::default()
    };
    for source in [base, extra].into_iter().flatten() {
        if source.level.is_some() {
            state.level = source.level;
        }
        state.stage.extend(source.stage.iter().cloned());
    }
    if let Some(level) = options.level {
        state.level = Some(level);
    }
    state.stage.extend(options.stages.iter().cloned());
    state
}

impl Solver {
    /// Builds the solver that `param` describes: its train net and test nets (from `net`/`net_param`,
    /// `train_net`/`train_net_param`, `test_net`/`test_net_param`), seeded by `random_seed`.
    pub fn new(param: SolverParameter, options: &SolverOptions) -> Result<Solver> {
        let origin = options
            .solver_path
            .as_ref()
            .map_or("<solver>".to_owned(), |p| p.display().to_string());
        Self::build(param, options, origin.clone()).map_err(in_solver_file(&origin))
    }

    fn build(param: SolverParameter, options: &SolverOptions, origin: String) -> Result<Solver> {
        let solver_error = |reason: String| Error::Net {
            origin: origin.clone(),
            reason,
        };
        let folder = options
            .solver_path
            .as_ref()
            .and_then(|p| p.parent())
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let search_dirs = [folder.clone()];
        let resolve = |path: &str| resolve_path(path, &search_dirs);
        // A net file that cannot be read is named with the solver field that gave it; one that does not parse
        // names its own file and line.
        let field_error = |field: &str, path: &str, error: crema_proto::ProtoError| match error {
            crema_proto::ProtoError::Io { .. } | crema_proto::ProtoError::NotAFile { .. } => {
                Error::Net {
                    origin: origin.clone(),
                    reason: format!("{field}: \"{path}\": {error}"),
                }
            }
            other => other.into(),
        };
        let load = |field: &str, path: &str| -> Result<(NetParameter, String, PathBuf)> {
            let file = resolve(path);
            let (net, _) = files::read_net_text(&file).map_err(|e| field_error(field, path, e))?;
            Ok((
                net,
                file.display().to_string(),
                file.parent().map(Path::to_path_buf).unwrap_or_default(),
            ))
        };
        let seed = if param.random_seed() >= 0 {
            param.random_seed() as u64
        } else {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64)
        };

        // The train net: exactly one of its four sources.
        let sources = [
            param.train_net_param.is_some(),
            param.train_net.is_some(),
            param.net_param.is_some(),
            param.net.is_some(),
        ];
        if sources.iter().filter(|&&s| s).count() != 1 {
            return Err(solver_error(
                "give exactly one of train_net_param, train_net, net_param and net".into(),
            ));
        }
        let (train_param, train_origin, train_dir) = if let Some(net) = &param.train_net_param {
            (
                net.clone(),
                format!("{origin}: train_net_param"),
                folder.clone(),
            )
        } else if let Some(path) = &param.train_net {
            load("train_net", path)?
        } else if let Some(net) = &param.net_param {
            (net.clone(), format!("{origin}: net_param"), folder.clone())
        } else {
            load("net", param.net())?
        };
        let state = merge_state(
            train_param.state.as_ref(),
            Phase::Train,
            param.train_state.as_ref(),
            options,
        );
        let mut train = Net::new(
            &train_param,
            &state,
            &NetOptions {
                origin: train_origin,
                search_dirs: vec![train_dir.clone()],
                seed,
            },
        )?;

        // The solver's own `weights` files initialise the train net, in order (as `--weights` does).
        for path in &param.weights {
            let file = resolve(path);
            let (weights, _) =
                files::read_net_binary(&file).map_err(|e| field_error("weights", path, e))?;
            train.copy_trained_from(&weights, &file.display().to_string())?;
        }

        // Test nets: the listed ones, then the general net for the remaining test_iter entries.
        let mut test_params: Vec<(NetParameter, String, PathBuf)> = Vec::new();
        for (i, net) in param.test_net_param.iter().enumerate() {
            test_params.push((
                net.clone(),
                format!("{origin}: test_net_param[{i}]"),
                folder.clone(),
            ));
        }
        for path in &param.test_net {
            test_params.push(load("test_net", path)?);
        }
        let general = param.net_param.is_some() || param.net.is_some();
        if general {
            while test_params.len() < param.test_iter.len() {
                let (net, net_origin) = match &param.net_param {
                    Some(net) => (net.clone(), format!("{origin}: net_param")),
                    None => {
                        let (net, net_origin, _) = load("net", param.net())?;
                        (net, net_origin)
                    }
                };
                test_params.push((net, net_origin, train_dir.clone()));
            }
        }
        if test_params.len() != param.test_iter.len() {
            return Err(solver_error(format!(
                "{} test nets but {} test_iter values; give one test_iter per test net",
                test_params.len(),
                param.test_iter.len()
            )));
        }
        if !param.test_state.is_empty() && param.test_state.len() != test_params.len() {
            return Err(solver_error(format!(
                "{} test_state values for {} test nets; give none or one per test net",
                param.test_state.len(),
                test_params.len()
            )));
        }
        let mut tests = Vec::with_capacity(test_params.len());
        for (i, (net, net_origin, dir)) in test_params.into_iter().enumerate() {
            let state = merge_state(
                net.state.as_ref(),
                Phase::Test,
                param.test_state.get(i),
                options,
            );
            tests.push(Net::new(
                &net,
                &state,
                &NetOptions {
                    origin: net_origin,
                    search_dirs: vec![dir],
                    seed: seed.wrapping_add(1 + i as u64),
                },
            )?);
        }

        let rule = create_rule(&param)?;
        // The learning-rate policy's fields are checked now, not at the first update (or snapshot).
        super::learning_rate(&param, 0)?;
        current_step(&param, 0)?;
        let snapshot_prefix = match (&param.snapshot_prefix, &options.solver_path) {
            (Some(prefix), Some(path)) if Path::new(prefix).is_dir() => {
                let stem = path
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default();
                Path::new(prefix).join(stem).display().to_string()
            }
            (Some(prefix), _) => prefix.clone(),
            (None, Some(path)) => path.with_extension("").display().to_string(),
            (None, None) => "crema".to_owned(),
        };
        Ok(Solver {
            param,
            train,
            tests,
            rule,
            iter: 0,
            losses: VecDeque::new(),
            smoothed_loss: 0.0,
            snapshot_prefix,
            stop: Arc::new(AtomicBool::new(false)),
            origin,
        })
    }

    /// A flag that, once set (by a signal handler, say), makes the solver snapshot and stop after the
    /// iteration under way.
    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.stop)
    }

    /// The number of iterations done.
    pub fn iter(&self) -> u32 {
        self.iter
    }

    /// The train net.
    pub fn net(&self) -> &Net {
        &self.train
    }

    /// The train net, for loading weights before training.
    pub fn net_mut(&mut self) -> &mut Net {
        &mut self.train
    }

    /// The test nets.
    pub fn test_nets(&self) -> &[Net] {
        &self.tests
    }

    /// The test nets, for front ends that let the user write into them.
    pub fn test_nets_mut(&mut self) -> &mut [Net] {
        &mut self.tests
    }

    /// Gives test net `index` the train net's current weights, as Caffe's test nets, which share the train
    /// net's memory, always have them (front ends call it before running a test net themselves).
    pub fn refresh_test_net(&mut self, index: usize) -> Result<()> {
        match self.tests.get_mut(index) {
            Some(test) => test.copy_params_from(&self.train),
            None => Err(Error::Net {
                origin: self.origin.clone(),
                reason: format!(
                    "the solver has {} test nets, not {}",
                    self.tests.len(),
                    index + 1
                ),
            }),
        }
    }

    /// The solver's parameters.
    pub fn param(&self) -> &SolverParameter {
        &self.param
    }

    /// The prefix snapshots are written under (`<prefix>_iter_<N>.caffemodel`).
    pub fn snapshot_prefix(&self) -> &str {
        &self.snapshot_prefix
    }

    /// Trains to `max_iter` as `caffe train` does, then snapshots (unless just done) and tests once more.
    pub fn solve(&mut self, log: &mut dyn SolverLog) -> Result<()> {
        let origin = self.origin.clone();
        self.run_to_the_end(log).map_err(in_solver_file(&origin))
    }

    fn run_to_the_end(&mut self, log: &mut dyn SolverLog) -> Result<()> {
        let max_iter = u32::try_from(self.param.max_iter()).unwrap_or(0);
        let remaining = max_iter.saturating_sub(self.iter);
        self.step(remaining, log)?;
        if self.stop.load(Ordering::SeqCst) || log.interrupted() {
            return Ok(());
        }
        let snapshot = self.param.snapshot();
        if self.param.snapshot_after_train()
            && (snapshot <= 0 || !self.iter.is_multiple_of(snapshot as u32))
        {
            self.snapshot(log)?;
        }
        let display = self.param.display();
        if display > 0 && self.iter.is_multiple_of(display as u32) {
            let loss = self.train.forward()?;
            log.line(&format!("Iteration {}, loss = {loss}", self.iter));
        }
        let interval = self.param.test_interval();
        if interval > 0 && self.iter.is_multiple_of(interval as u32) {
            self.test_all(log)?;
        }
        log.line("Optimization Done.");
        Ok(())
    }

    /// Runs `iters` iterations (or until the stop flag is set, which snapshots first).
    pub fn step(&mut self, iters: u32, log: &mut dyn SolverLog) -> Result<()> {
        let origin = self.origin.clone();
        self.run_steps(iters, log).map_err(in_solver_file(&origin))
    }

    fn run_steps(&mut self, iters: u32, log: &mut dyn SolverLog) -> Result<()> {
        let iter_size = super::iter_size(&self.param)?;
        let max_iter = u32::try_from(self.param.max_iter()).unwrap_or(0);
        let stop_iter = self.iter + iters;
        let average = self.param.average_loss().max(1) as usize;
        let display = u32::try_from(self.param.display()).unwrap_or(0);
        let interval = u32::try_from(self.param.test_interval()).unwrap_or(0);
        let snapshot = u32::try_from(self.param.snapshot()).unwrap_or(0);
        if !self.rule.histories().is_prepared() {
            presolve(&self.train, self.rule.as_mut())?;
        }
        while self.iter < stop_iter {
            if interval > 0
                && self.iter.is_multiple_of(interval)
                && (self.iter > 0 || self.param.test_initialization())
            {
                self.test_all(log)?;
            }
            let displaying = display > 0 && self.iter.is_multiple_of(display);
            self.train.clear_param_diffs();
            let mut loss = 0.0;
            for _ in 0..iter_size {
                loss += self.train.forward()?;
                self.train.backward()?;
            }
            loss /= iter_size as f32;
            if self.losses.len() == average {
                self.losses.pop_front();
            }
            self.losses.push_back(loss);
            self.smoothed_loss = self.losses.iter().sum::<f32>() / self.losses.len() as f32;
            if displaying {
                log.line(&format!(
                    "Iteration {}, loss = {}",
                    self.iter, self.smoothed_loss
                ));
                let mut k = 0;
                for (name, values, weight) in self.train.output_values() {
                    for value in values {
                        log.line(&output_line("Train", k, &name, value, weight));
                        k += 1;
                    }
                }
            }
            let rate = apply_update(&mut self.train, self.rule.as_mut(), &self.param, self.iter)?;
            if displaying {
                log.line(&format!("Iteration {}, lr = {rate}", self.iter));
            }
            self.iter += 1;
            log.progress(self.iter, max_iter, self.smoothed_loss);
            if snapshot > 0 && self.iter.is_multiple_of(snapshot) {
                self.snapshot(log)?;
            }
            if log.interrupted() {
                break;
            }
            if self.stop.load(Ordering::SeqCst) {
                log.line(&format!(
                    "Stopping at iteration {}: snapshotting first.",
                    self.iter
                ));
                if !(snapshot > 0 && self.iter.is_multiple_of(snapshot)) {
                    self.snapshot(log)?;
                }
                break;
            }
        }
        Ok(())
    }

    /// Runs every test net for its `test_iter` batches with the train net's current weights, logs the mean of
    /// each output, and returns them.
    pub fn test_all(&mut self, log: &mut dyn SolverLog) -> Result<Vec<TestScores>> {
        let mut all = Vec::with_capacity(self.tests.len());
        for index in 0..self.tests.len() {
            log.line(&format!("Iteration {}, Testing net (#{index})", self.iter));
            let net = &mut self.tests[index];
            net.copy_params_from(&self.train)?;
            let batches = self.param.test_iter.get(index).copied().unwrap_or(0).max(0) as usize;
            let mut sums: Vec<(String, Vec<f64>, f32)> = Vec::new();
            let mut loss = 0.0f64;
            for _ in 0..batches {
                loss += f64::from(net.forward()?);
                let outputs = net.output_values();
                if sums.is_empty() {
                    sums = outputs
                        .iter()
                        .map(|(name, values, weight)| {
                            (name.clone(), vec![0.0; values.len()], *weight)
                        })
                        .collect();
                }
                for ((_, sum, _), (_, values, _)) in sums.iter_mut().zip(&outputs) {
                    for (s, &v) in sum.iter_mut().zip(values) {
                        *s += f64::from(v);
                    }
                }
            }
            if self.param.test_compute_loss() && batches > 0 {
                log.line(&format!("Test loss: {}", loss / batches as f64));
            }
            let mut k = 0;
            let mut outputs = Vec::with_capacity(sums.len());
            for (name, sum, weight) in sums {
                let means: Vec<f32> = sum
                    .iter()
                    .map(|&s| (s / batches.max(1) as f64) as f32)
                    .collect();
                for &mean in &means {
                    log.line(&output_line("Test", k, &name, mean, weight));
                    k += 1;
                }
                outputs.push((name, means, weight));
            }
            all.push(TestScores {
                net: index,
                outputs,
            });
        }
        Ok(all)
    }

    /// The file names a snapshot at the current iteration gets.
    pub fn snapshot_paths(&self) -> (PathBuf, PathBuf) {
        let base = format!("{}_iter_{}", self.snapshot_prefix, self.iter);
        (
            PathBuf::from(format!("{base}.caffemodel")),
            PathBuf::from(format!("{base}.solverstate")),
        )
    }

    /// Writes `<prefix>_iter_<N>.caffemodel` and `.solverstate`, each atomically (a kill midway leaves the
    /// previous snapshots whole). Returns their paths.
    pub fn snapshot(&mut self, log: &mut dyn SolverLog) -> Result<(PathBuf, PathBuf)> {
        let (model, state_path) = self.snapshot_paths();
        if let Some(folder) = model.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(folder).map_err(|e| Error::Io {
                path: folder.to_path_buf(),
                source: e,
            })?;
        }
        // Everything the solverstate needs is gathered before either file is written, so that a failure
        // leaves no caffemodel without its solverstate.
        let current_step = current_step(&self.param, self.iter).map_err(|e| Error::Net {
            origin: self.origin.clone(),
            reason: e.to_string(),
        })?;
        let mut crema_layer_state = Vec::new();
        for (net, states) in std::iter::once(self.train.layer_states())
            .chain(self.tests.iter().map(Net::layer_states))
            .enumerate()
        {
            for (layer, state) in states {
                crema_layer_state.push(CremaLayerState {
                    net: Some(net as u32),
                    layer: Some(layer),
                    state: Some(state),
                });
            }
        }
        let state = SolverState {
            iter: Some(self.iter as i32),
            learned_net: Some(model.display().to_string()),
            history: self
                .rule
                .history()
                .iter()
                .map(|b| b.to_proto(false))
                .collect(),
            current_step: Some(current_step as i32),
            crema_layer_state,
        };
        log.line(&format!(
            "Snapshotting to binary proto file {}",
            model.display()
        ));
        files::write_binary(&model, &self.train.to_proto(self.param.snapshot_diff()))?;
        log.line(&format!(
            "Snapshotting solver state to binary proto file {}",
            state_path.display()
        ));
        files::write_binary(&state_path, &state)?;
        Ok((model, state_path))
    }

    /// Continues from a .solverstate (crema's or Caffe's): iteration, histories, the weights of the snapshot it
    /// names, and, where crema wrote them, the layers' states.
    pub fn restore(&mut self, path: &Path) -> Result<()> {
        let origin = path.display().to_string();
        let state: SolverState = files::read_binary(path)?;
        let learned = state.learned_net();
        if !learned.is_empty() {
            let given = PathBuf::from(learned);
            let model = if given.exists() {
                given
            } else {
                path.parent()
                    .map(|p| p.join(given.file_name().unwrap_or_default()))
                    .unwrap_or(given)
            };
            let (weights, _) = files::read_net_binary(&model).map_err(|e| Error::Net {
                origin: origin.clone(),
                reason: format!("learned_net: \"{learned}\": {e}"),
            })?;
            self.train
                .copy_trained_from(&weights, &model.display().to_string())?;
        }
        presolve(&self.train, self.rule.as_mut())?;
        let history = self.rule.history_mut();
        if history.len() != state.history.len() {
            return Err(Error::Net {
                origin,
                reason: format!(
                    "holds {} history blobs but the {} solver for this net keeps {}; was it written for another \
                     net or solver type?",
                    state.history.len(),
                    self.rule.type_name(),
                    self.rule.history().len()
                ),
            });
        }
        for (i, (target, proto)) in history.iter_mut().zip(&state.history).enumerate() {
            match target.copy_data_from_proto(
                proto,
                &format!("{origin}: history[{i}]"),
                "the solverstate",
            ) {
                Err(Error::Shape { reason, .. }) => {
                    return Err(Error::Net {
                        origin,
                        reason: format!("history[{i}] does not fit the net's blob: {reason}"),
                    })
                }
                other => other?,
            }
        }
        for saved in &state.crema_layer_state {
            let net = match saved.net() {
                0 => &mut self.train,
                k => self
                    .tests
                    .get_mut(k as usize - 1)
                    .ok_or_else(|| Error::Net {
                        origin: origin.clone(),
                        reason: format!(
                            "a layer state names test net {}, which this solver does not have",
                            k - 1
                        ),
                    })?,
            };
            net.set_layer_state(saved.layer(), saved.state())?;
        }
        self.iter = u32::try_from(state.iter()).unwrap_or(0);
        self.losses.clear();
        Ok(())
    }
}

/// `    Train net output #k: name = v`, with Caffe's ` (* w = w·v loss)` for weighted outputs.
fn output_line(kind: &str, k: usize, name: &str, value: f32, weight: f32) -> String {
    let mut line = format!("    {kind} net output #{k}: {name} = {value}");
    if weight != 0.0 {
        line.push_str(&format!(" (* {weight} = {} loss)", weight * value));
    }
    line
}
