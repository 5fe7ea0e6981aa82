//! `crema train`: train a net as `caffe train` does, from a solver prototxt.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use anyhow::{bail, Context, Result};
use crema::proto::files;
use crema::solver::{Solver, SolverLog, SolverOptions};
use indicatif::{ProgressBar, ProgressStyle};

/// Train a net from a solver prototxt, as `caffe train --solver` does.
///
/// The log keeps Caffe's line shapes; on a terminal a progress bar sits below it. Ctrl-C or SIGTERM
/// snapshot and stop. At the end a plot of the training loss and test outputs is written next to the
/// snapshots (`<prefix>_training.svg`).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The solver prototxt.
    #[arg(long)]
    solver: PathBuf,
    /// .caffemodel files to initialise the weights from, by layer name (fine-tuning), comma-separated.
    #[arg(long, value_delimiter = ',')]
    weights: Vec<PathBuf>,
    /// A .solverstate to resume from.
    #[arg(long)]
    snapshot: Option<PathBuf>,
    /// A stage added to the train and test nets' states (repeatable).
    #[arg(long = "stage")]
    stages: Vec<String>,
    /// The level of the train and test nets' states.
    #[arg(long)]
    level: Option<i32>,
    /// Do not write the training plot.
    #[arg(long)]
    no_plot: bool,
}

/// Prints lines to stderr (above the progress bar when there is one) and keeps them for the plot.
struct CliLog {
    lines: Vec<String>,
    bar: Option<ProgressBar>,
}

impl SolverLog for CliLog {
    fn line(&mut self, text: &str) {
        match &self.bar {
            Some(bar) => bar.println(text),
            None => eprintln!("{text}"),
        }
        self.lines.push(text.to_owned());
    }

    fn progress(&mut self, iter: u32, _max_iter: u32, smoothed_loss: f32) {
        if let Some(bar) = &self.bar {
            bar.set_position(u64::from(iter));
            bar.set_message(format!("{smoothed_loss:.4}"));
        }
    }
}

pub fn run(args: Args) -> Result<()> {
    if !args.weights.is_empty() && args.snapshot.is_some() {
        bail!("give --snapshot to resume training or --weights to fine-tune, not both");
    }
    let (param, report) = files::read_solver_text(&args.solver)?;
    for step in &report.steps {
        eprintln!("note: {}: upgraded on load: {step}", args.solver.display());
    }
    let options = SolverOptions {
        solver_path: Some(args.solver.clone()),
        stages: args.stages.clone(),
        level: args.level,
    };
    let mut solver = Solver::new(param, &options)?;
    for net in std::iter::once(solver.net()).chain(solver.test_nets()) {
        for warning in net.warnings() {
            eprintln!("warning: {warning}");
        }
    }
    for weights in &args.weights {
        let (trained, _) = files::read_net_binary(weights)?;
        let copied = solver
            .net_mut()
            .copy_trained_from(&trained, &weights.display().to_string())?;
        eprintln!(
            "Copied weights of {} layers from {}",
            copied.len(),
            weights.display()
        );
    }
    if let Some(state) = &args.snapshot {
        solver.restore(state)?;
        eprintln!(
            "Resuming from {} at iteration {}",
            state.display(),
            solver.iter()
        );
    }
    stop_on_signals(solver.stop_flag())?;

    let max_iter = u64::try_from(solver.param().max_iter()).unwrap_or(0);
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = ProgressBar::new(max_iter);
        bar.set_style(
            ProgressStyle::with_template(
                "{bar:30} {pos}/{len} iterations  loss {msg}  {per_sec}  {eta} left",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.set_position(u64::from(solver.iter()));
        bar
    });
    let mut log = CliLog {
        lines: Vec::new(),
        bar,
    };
    let result = solver.solve(&mut log);
    if let Some(bar) = &log.bar {
        bar.finish_and_clear();
    }
    result?;
    if !args.no_plot {
        let plot = PathBuf::from(format!("{}_training.svg", solver.snapshot_prefix()));
        let title = format!("{} ({})", solver.net().name(), args.solver.display());
        // Training is done and its snapshots written: a log with nothing to draw (`display: 0` and no tests)
        // is worth a note, not a failed command.
        match super::plot::plot_log(&log.lines.join("\n"), &title, &plot) {
            Ok(_) => eprintln!("Training plot written to {}", plot.display()),
            Err(error) => eprintln!("note: no training plot: {error}"),
        }
    }
    Ok(())
}

/// Makes Ctrl-C and SIGTERM set `flag`, which snapshots and stops the solver. The handler is installed once per
/// process, since a host (the Python package) may run several trainings in one process; it sets the flag of
/// the training under way.
fn stop_on_signals(flag: Arc<AtomicBool>) -> Result<()> {
    static TRAINING_NOW: Mutex<Option<Arc<AtomicBool>>> = Mutex::new(None);
    static INSTALLED: OnceLock<Result<(), String>> = OnceLock::new();
    *TRAINING_NOW.lock().unwrap_or_else(PoisonError::into_inner) = Some(flag);
    INSTALLED
        .get_or_init(|| {
            ctrlc::set_handler(|| {
                if let Some(flag) = &*TRAINING_NOW.lock().unwrap_or_else(PoisonError::into_inner) {
                    flag.store(true, Ordering::SeqCst);
                }
            })
            .map_err(|error| error.to_string())
        })
        .clone()
        .map_err(anyhow::Error::msg)
        .context("installing the Ctrl-C handler")
}
