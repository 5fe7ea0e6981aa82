//! One module per `crema` subcommand: its clap arguments (`Args`) and `run`.

pub mod convert;
pub mod inspect;
pub mod upgrade;
