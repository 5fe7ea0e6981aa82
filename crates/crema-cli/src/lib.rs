//! The `crema` command as a library: one subcommand per file in `commands/`, each a few calls into the `crema`
//! library. [`run`] is the whole command; `main.rs` calls it, and so does the Python package, whose `crema`
//! console script runs the same commands inside Python (where `type: "Python"` layers work).

mod commands;
mod table;

use std::ffi::OsString;

use clap::{Parser, Subcommand};

/// crema: train, test and time Caffe nets on the CPU; read and write Caffe's files.
#[derive(Debug, Parser)]
#[command(name = "crema", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    ComputeMean(commands::compute_mean::Args),
    Convert(commands::convert::Args),
    ConvertImageset(commands::convert_imageset::Args),
    Forward(commands::forward::Args),
    Infogain(commands::infogain::Args),
    Inspect(commands::inspect::Args),
    Plot(commands::plot::Args),
    Predict(commands::predict::Args),
    Test(commands::test::Args),
    Time(commands::time::Args),
    Train(commands::train::Args),
    Upgrade(commands::upgrade::Args),
}

/// Runs the command line `args` (the program name first) and returns the exit status: 0 on success, 1 after
/// an error in the input (printed to stderr), 2 for a bad command line, 101 after an internal error. It never
/// exits the process, so a host (the Python package) can run several commands in one process.
pub fn run<I, T>(args: I) -> u8
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(error) => {
            // --help and --version land here too, with status 0.
            let _ = error.print();
            return u8::try_from(error.exit_code()).unwrap_or(2);
        }
    };
    let name = cli.command.name();
    let outcome = catching_panics(|| cli.command.run());
    match outcome {
        Ok(Ok(())) => 0,
        Ok(Err(error)) => {
            let message = error.to_string();
            eprintln!("error: {message}");
            let mut said = message;
            for cause in error.chain().skip(1) {
                // Library errors mostly include their source in their own message; say each thing once.
                let cause = cause.to_string();
                if !said.contains(&cause) {
                    eprintln!("  caused by: {cause}");
                    said.push_str(&cause);
                }
            }
            1
        }
        Err(panic) => {
            eprintln!(
                "error: crema {name}: internal error: {panic}\n  This is a bug in crema, not in your files: \
                 please report it with the command line and the files it read."
            );
            PANIC_EXIT
        }
    }
}

/// The exit status after an internal error (a panic), as Rust's own: scripts and fuzzers can tell it from an
/// error in the input (status 1).
const PANIC_EXIT: u8 = 101;

/// Runs `f`; a panic comes back as its message and place instead of a backtrace on stderr (set
/// `CREMA_BACKTRACE=1` to see the backtrace as well). The panic hook in place before is put back afterwards.
fn catching_panics<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    use std::sync::{Arc, Mutex};
    let previous_hook = std::panic::take_hook();
    let first: Arc<Mutex<Option<String>>> = Arc::default();
    let record = Arc::clone(&first);
    let show_backtrace = std::env::var_os("CREMA_BACKTRACE").is_some_and(|v| v != "0");
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic".to_owned());
        let place = info
            .location()
            .map(|l| format!(" (at {}:{})", l.file(), l.line()))
            .unwrap_or_default();
        if show_backtrace {
            eprintln!("{}", std::backtrace::Backtrace::force_capture());
        }
        if let Ok(mut slot) = record.lock() {
            // A panic on another thread (a data prefetcher) comes first; the main thread then reports it.
            slot.get_or_insert(format!("{message}{place}"));
        }
    }));
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|_| {
        first
            .lock()
            .ok()
            .and_then(|mut slot| slot.take())
            .unwrap_or_else(|| "a panic".to_owned())
    });
    std::panic::set_hook(previous_hook);
    outcome
}

impl Command {
    /// The subcommand's name, as typed.
    fn name(&self) -> &'static str {
        match self {
            Command::ComputeMean(_) => "compute-mean",
            Command::Convert(_) => "convert",
            Command::ConvertImageset(_) => "convert-imageset",
            Command::Forward(_) => "forward",
            Command::Infogain(_) => "infogain",
            Command::Inspect(_) => "inspect",
            Command::Plot(_) => "plot",
            Command::Predict(_) => "predict",
            Command::Test(_) => "test",
            Command::Time(_) => "time",
            Command::Train(_) => "train",
            Command::Upgrade(_) => "upgrade",
        }
    }

    fn run(self) -> anyhow::Result<()> {
        match self {
            Command::ComputeMean(args) => commands::compute_mean::run(args),
            Command::Convert(args) => commands::convert::run(args),
            Command::ConvertImageset(args) => commands::convert_imageset::run(args),
            Command::Forward(args) => commands::forward::run(args),
            Command::Infogain(args) => commands::infogain::run(args),
            Command::Inspect(args) => commands::inspect::run(args),
            Command::Plot(args) => commands::plot::run(args),
            Command::Predict(args) => commands::predict::run(args),
            Command::Test(args) => commands::test::run(args),
            Command::Time(args) => commands::time::run(args),
            Command::Train(args) => commands::train::run(args),
            Command::Upgrade(args) => commands::upgrade::run(args),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_its_message_and_place() {
        let caught = catching_panics(|| -> u32 { panic!("index {} out of range", 7) });
        let message = caught.unwrap_err();
        assert!(
            message.starts_with("index 7 out of range (at "),
            "{message}"
        );
        assert!(message.contains("lib.rs:"), "{message}");
        assert_eq!(catching_panics(|| 5), Ok(5));
    }
}
