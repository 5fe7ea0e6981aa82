//! `crema time`: how long each layer takes forward and backward, as `caffe time` measures it.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::forward::build_net;
use super::test::{caffe_number, note_zero_inputs, PhaseArg};
use crate::table::{pad_left, pad_right};

/// Time a net: one forward-backward pass to warm up, then N passes timing every layer forward and backward.
///
/// Example: crema time --model train_val.prototxt --iterations 100
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The net definition (prototxt; old V0/V1 formats are upgraded).
    #[arg(long)]
    model: PathBuf,
    /// Number of timed forward-backward passes.
    #[arg(long, default_value_t = 50)]
    iterations: usize,
    /// The phase to build the net in.
    #[arg(long, value_enum, default_value = "train")]
    phase: PhaseArg,
    /// A stage of the net state (repeatable), matched by include/exclude rules.
    #[arg(long = "stage")]
    stages: Vec<String>,
    /// The net state's level.
    #[arg(long, default_value_t = 0)]
    level: i32,
    /// Seed for random fillers and dropout.
    #[arg(long, default_value_t = 1701)]
    seed: u64,
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

pub fn run(args: Args) -> Result<()> {
    if args.iterations == 0 {
        bail!("--iterations 0: give at least 1 pass to time");
    }
    let mut net = build_net(
        &args.model,
        None,
        args.phase.phase(),
        &args.stages,
        args.level,
        args.seed,
    )?;
    note_zero_inputs(&net, "time");

    println!(
        "Warm-up: one forward-backward pass of net \"{}\" ({} phase)",
        net.name(),
        args.phase.name()
    );
    let loss = net.forward().context("warm-up forward")?;
    println!("Initial loss: {}", caffe_number(f64::from(loss)));
    net.clear_param_diffs();
    net.backward().context("warm-up backward")?;

    let layers = net.layer_names().count();
    let mut forward = vec![Duration::ZERO; layers];
    let mut backward = vec![Duration::ZERO; layers];
    let (mut forward_total, mut backward_total) = (Duration::ZERO, Duration::ZERO);
    let (mut fastest, mut slowest) = (Duration::MAX, Duration::ZERO);
    println!("Timing {} forward-backward passes", args.iterations);
    let all = Instant::now();
    for pass in 0..args.iterations {
        let start = Instant::now();
        let (_, times) = net
            .forward_timed()
            .with_context(|| format!("forward of pass {}", pass + 1))?;
        let forward_end = Instant::now();
        for (sum, t) in forward.iter_mut().zip(times) {
            *sum += t;
        }
        let times = net
            .backward_timed()
            .with_context(|| format!("backward of pass {}", pass + 1))?;
        let end = Instant::now();
        for (sum, t) in backward.iter_mut().zip(times) {
            *sum += t;
        }
        forward_total += forward_end - start;
        backward_total += end - forward_end;
        fastest = fastest.min(end - start);
        slowest = slowest.max(end - start);
    }
    let total = all.elapsed();

    let n = args.iterations as f64;
    let names: Vec<&str> = net.layer_names().collect();
    let types: Vec<&str> = net.layer_types().collect();
    let cell = |v: f64| format!("{v:.4}");
    let forward_cells: Vec<String> = forward.iter().map(|&d| cell(ms(d) / n)).collect();
    let backward_cells: Vec<String> = (0..layers)
        .map(|i| {
            if net.layer_needs_backward(i) {
                cell(ms(backward[i]) / n)
            } else {
                "-".into()
            }
        })
        .collect();
    let width = |cells: &[String]| cells.iter().map(String::len).max().unwrap_or(0);
    let (name_w, type_w) = (
        names.iter().map(|s| s.chars().count()).max().unwrap_or(0),
        types.iter().map(|s| s.len()).max().unwrap_or(0),
    );
    let (fw, bw) = (width(&forward_cells), width(&backward_cells));
    println!("\nAverage time per layer (\"-\": the layer runs no backward)");
    for i in 0..layers {
        let unit = if backward_cells[i] == "-" { "  " } else { "ms" };
        let line = format!(
            "  {}  {}  forward: {} ms  backward: {} {unit}",
            pad_right(names[i], name_w),
            pad_right(types[i], type_w),
            pad_left(&forward_cells[i], fw),
            pad_left(&backward_cells[i], bw),
        );
        println!("{}", line.trim_end());
    }
    let summary = [
        ("Average Forward pass:", ms(forward_total) / n),
        ("Average Backward pass:", ms(backward_total) / n),
        ("Average Forward-Backward:", ms(total) / n),
        ("Fastest Forward-Backward:", ms(fastest)),
        ("Slowest Forward-Backward:", ms(slowest)),
        ("Total Time:", ms(total)),
    ];
    let cells: Vec<String> = summary.iter().map(|&(_, v)| cell(v)).collect();
    let value_w = width(&cells);
    let label_w = summary.iter().map(|(l, _)| l.len()).max().unwrap_or(0);
    println!();
    for ((label, _), value) in summary.iter().zip(&cells) {
        println!("{label:<label_w$} {value:>value_w$} ms");
    }
    println!("({} passes)", args.iterations);
    Ok(())
}
