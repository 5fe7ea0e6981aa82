//! One module per `crema` subcommand: its clap arguments (`Args`) and `run`.

pub mod convert;
pub mod forward;
pub mod inspect;
pub mod plot;
pub mod test;
pub mod time;
pub mod train;
pub mod upgrade;
