//! The `crema` binary: the command line of [`crema_cli::run`].

use std::process::ExitCode;

fn main() -> ExitCode {
    ExitCode::from(crema_cli::run(std::env::args_os()))
}
