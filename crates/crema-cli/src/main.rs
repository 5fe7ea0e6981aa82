//! The `crema` command: one subcommand per file in `commands/`, each a few calls into the `crema` library.

mod commands;
mod table;

use std::process::ExitCode;

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
    Test(commands::test::Args),
    Time(commands::time::Args),
    Train(commands::train::Args),
    Upgrade(commands::upgrade::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::ComputeMean(args) => commands::compute_mean::run(args),
        Command::Convert(args) => commands::convert::run(args),
        Command::ConvertImageset(args) => commands::convert_imageset::run(args),
        Command::Forward(args) => commands::forward::run(args),
        Command::Infogain(args) => commands::infogain::run(args),
        Command::Inspect(args) => commands::inspect::run(args),
        Command::Plot(args) => commands::plot::run(args),
        Command::Test(args) => commands::test::run(args),
        Command::Time(args) => commands::time::run(args),
        Command::Train(args) => commands::train::run(args),
        Command::Upgrade(args) => commands::upgrade::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            for cause in error.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::FAILURE
        }
    }
}
