//! One module per `crema` subcommand: its clap arguments (`Args`) and `run`.

pub mod compute_mean;
pub mod convert;
pub mod convert_imageset;
pub mod forward;
pub mod infogain;
pub mod inspect;
pub mod plot;
pub mod posthoc;
pub mod predict;
pub mod test;
pub mod time;
pub mod train;
pub mod upgrade;
