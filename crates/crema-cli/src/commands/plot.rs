//! `crema plot`: a Caffe training log drawn as an SVG: training loss and every test output against iteration.
//!
//! [`parse_log`] reads the lines Caffe's solver writes (with or without glog's `I1128 17:01:06.351775 13610
//! solver.cpp:218] ` prefix); [`plot_log`] parses and draws in one call, for `crema train` to use at the end.
//! The SVG's text is SVG `<text>`, so no font files are needed to write it.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use plotters::coord::ranged1d::ValueFormatter;
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;

use super::test::caffe_number;

/// Draw a Caffe training log: training loss, test outputs (and the learning rate when it changes) against
/// iteration, as an SVG.
///
/// Example: crema plot train.log curves.svg
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The training log: what `caffe train` or `crema train` printed (glog prefixes are fine).
    log: PathBuf,
    /// The SVG file to write.
    out: PathBuf,
}

/// One named curve: (iteration, value) points in log order.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub label: String,
    pub points: Vec<(f64, f64)>,
    /// Whether the log marks it as a loss (`(* w = x loss)`) or its name says so.
    pub is_loss: bool,
}

/// What a training log holds, curve by curve.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TrainingLog {
    /// `Iteration N ..., loss = X`: the (smoothed) training loss.
    pub train_loss: Vec<(f64, f64)>,
    /// `Iteration N, lr = X`.
    pub learning_rate: Vec<(f64, f64)>,
    /// `Test net output #j: name = v` after `Iteration N, Testing net (#k)`, one series per (k, j).
    pub test_outputs: Vec<Series>,
    /// `Train net output #j: name = v` after `Iteration N ..., loss = X`, one series per j.
    pub train_outputs: Vec<Series>,
}

/// The text after glog's `I1128 17:01:06.351775 13610 solver.cpp:218] ` prefix, or the line itself.
fn strip_glog_prefix(line: &str) -> &str {
    let bytes = line.as_bytes();
    let looks_like_glog = bytes.len() > 5
        && matches!(bytes[0], b'I' | b'W' | b'E' | b'F')
        && bytes[1..5].iter().all(u8::is_ascii_digit);
    if looks_like_glog {
        if let Some(at) = line.find("] ") {
            return &line[at + 2..];
        }
    }
    line
}

/// The number at the start of `text` (up to whitespace or a comma); Caffe's `nan`, `-nan` and `inf` included.
fn leading_number(text: &str) -> Option<f64> {
    let token = text.split(|c: char| c.is_whitespace() || c == ',').next()?;
    token.parse().ok()
}

/// An output line's index, name and value: `#j: name = v ...`.
fn output_line(rest: &str) -> Option<(usize, &str, f64, bool)> {
    let (index, rest) = rest.split_once(": ")?;
    let (name, rest) = rest.split_once(" = ")?;
    let value = leading_number(rest)?;
    Some((index.parse().ok()?, name, value, rest.contains(" loss)")))
}

/// The series of one kind of output line, each with its key (test net, output index), found by key in
/// constant time (a log may name many thousands of outputs).
#[derive(Default)]
struct Keys {
    in_order: Vec<(usize, usize)>,
    index: HashMap<(usize, usize), usize>,
}

/// Adds a point to the series keyed `key`, making it on first use.
fn push_point(
    series: &mut Vec<Series>,
    keys: &mut Keys,
    key: (usize, usize),
    name: &str,
    point: (f64, f64),
    is_loss: bool,
) {
    let at = match keys.index.get(&key) {
        Some(&at) => at,
        None => {
            keys.index.insert(key, series.len());
            keys.in_order.push(key);
            series.push(Series {
                label: name.to_owned(),
                points: Vec::new(),
                is_loss: is_loss || name.to_ascii_lowercase().contains("loss"),
            });
            series.len() - 1
        }
    };
    series[at].points.push(point);
}

/// Gives series that share a name an index (`per_class_accuracy[3]`), and prefixes the test net's number when
/// the log has several.
fn label_series(series: &mut [Series], keys: &Keys, prefix: &str) {
    let keys = &keys.in_order;
    let several_nets = keys.iter().any(|k| k.0 != keys[0].0);
    let mut sharing: HashMap<(usize, String), usize> = HashMap::new();
    for (s, key) in series.iter().zip(keys) {
        *sharing.entry((key.0, s.label.clone())).or_default() += 1;
    }
    let mut seen: HashMap<(usize, String), usize> = HashMap::new();
    for (s, key) in series.iter_mut().zip(keys) {
        let name_key = (key.0, std::mem::take(&mut s.label));
        let mut label = String::from(prefix);
        if several_nets {
            let _ = write!(label, "#{} ", key.0);
        }
        label.push_str(&name_key.1);
        if sharing[&name_key] > 1 {
            let position = seen.entry(name_key).or_default();
            let _ = write!(label, "[{position}]");
            *position += 1;
        }
        s.label = label;
    }
}

/// Reads the curves out of a training log's text. Lines it does not know are skipped.
pub fn parse_log(text: &str) -> TrainingLog {
    let mut log = TrainingLog::default();
    let (mut test_keys, mut train_keys) = (Keys::default(), Keys::default());
    let mut testing: Option<(f64, usize)> = None;
    let mut training: Option<f64> = None;
    for line in text.lines() {
        let line = strip_glog_prefix(line.trim_end()).trim();
        if let Some(rest) = line.strip_prefix("Iteration ") {
            let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
            let Ok(iteration) = rest[..digits].parse::<u64>() else {
                continue;
            };
            let iteration = iteration as f64;
            let rest = &rest[digits..];
            if let Some(net) = rest
                .strip_prefix(", Testing net (#")
                .and_then(|r| r.strip_suffix(')'))
            {
                testing = net.parse().ok().map(|k| (iteration, k));
            } else if let Some(lr) = rest.strip_prefix(", lr = ") {
                if let Some(lr) = leading_number(lr) {
                    log.learning_rate.push((iteration, lr));
                }
            } else if let Some(at) = rest.find("loss = ") {
                if let Some(loss) = leading_number(&rest[at + "loss = ".len()..]) {
                    log.train_loss.push((iteration, loss));
                    training = Some(iteration);
                }
            }
        } else if let Some(rest) = line.strip_prefix("Test net output #") {
            if let (Some((index, name, value, is_loss)), Some((iteration, net))) =
                (output_line(rest), testing)
            {
                let key = (net, index);
                push_point(
                    &mut log.test_outputs,
                    &mut test_keys,
                    key,
                    name,
                    (iteration, value),
                    is_loss,
                );
            }
        } else if let Some(rest) = line.strip_prefix("Train net output #") {
            if let (Some((index, name, value, is_loss)), Some(iteration)) =
                (output_line(rest), training)
            {
                push_point(
                    &mut log.train_outputs,
                    &mut train_keys,
                    (0, index),
                    name,
                    (iteration, value),
                    is_loss,
                );
            }
        }
    }
    label_series(&mut log.test_outputs, &test_keys, "test ");
    label_series(&mut log.train_outputs, &train_keys, "train ");
    log
}

/// A curve to draw: its label, points, color and whether to mark each point.
struct Curve<'a> {
    label: &'a str,
    points: Vec<(f64, f64)>,
    color: RGBColor,
    markers: bool,
}

/// One chart of the figure.
struct Panel<'a> {
    title: &'a str,
    y_desc: &'a str,
    curves: Vec<Curve<'a>>,
    /// Whether the y axis may turn logarithmic (for losses spanning orders of magnitude).
    log_allowed: bool,
}

/// What [`plot_log`] drew.
#[derive(Debug, Clone, PartialEq)]
pub struct PlotSummary {
    pub train_loss_points: usize,
    pub test_outputs: usize,
    pub train_outputs: usize,
    /// Points left out because their value was NaN or infinite.
    pub non_finite: usize,
    pub learning_rate_drawn: bool,
}

const TRAIN_COLOR: RGBColor = RGBColor(31, 119, 180);
const WIDTH: u32 = 1100;
const PANEL_HEIGHT: u32 = 380;
const LEGEND_WIDTH: u32 = 250;
/// Characters of a legend label before it is cut short.
const LABEL_CHARS: usize = 30;

fn color(index: usize) -> RGBColor {
    // A qualitative palette (Tableau 10 minus the training loss's blue), then Palette99.
    const COLORS: [RGBColor; 9] = [
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(214, 39, 40),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
        RGBColor(227, 119, 194),
        RGBColor(127, 127, 127),
        RGBColor(188, 189, 34),
        RGBColor(23, 190, 207),
    ];
    COLORS.get(index).copied().unwrap_or_else(|| {
        let (r, g, b) = Palette99::pick(index).rgb();
        RGBColor(r, g, b)
    })
}

fn finite_points(points: &[(f64, f64)], dropped: &mut usize) -> Vec<(f64, f64)> {
    let kept: Vec<(f64, f64)> = points
        .iter()
        .copied()
        .filter(|(_, y)| y.is_finite())
        .collect();
    *dropped += points.len() - kept.len();
    kept
}

/// A range around `[lo, hi]` (finite) with a margin, never empty, and finite even at the ends of f64.
fn padded(lo: f64, hi: f64, fraction: f64) -> std::ops::Range<f64> {
    let pad = if hi > lo {
        (hi / 2.0 - lo / 2.0) * 2.0 * fraction
    } else if lo == 0.0 {
        1.0
    } else {
        lo.abs() * 0.1
    };
    let range = lo - pad..hi + pad;
    if range.start.is_finite() && range.end.is_finite() && range.end > range.start {
        range
    } else {
        lo..if hi > lo {
            hi
        } else {
            lo + lo.abs().max(1.0) * f64::EPSILON * 4.0
        }
    }
}

/// Draws the axes and curves of a panel into its chart (linear or logarithmic y axis).
fn draw_curves<DB, Y>(
    mut chart: ChartContext<'_, DB, Cartesian2d<RangedCoordf64, Y>>,
    panel: &Panel,
    y_desc: &str,
) -> Result<()>
where
    DB: DrawingBackend,
    DB::ErrorType: 'static,
    Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    let y_format = |v: &f64| caffe_number(*v);
    let x_format = |v: &f64| format!("{}", v.round() as i64);
    chart
        .configure_mesh()
        .x_desc("iteration")
        .y_desc(y_desc)
        .x_label_formatter(&x_format)
        .y_label_formatter(&y_format)
        .label_style(("sans-serif", 13))
        .axis_desc_style(("sans-serif", 15))
        .light_line_style(RGBColor(238, 238, 238))
        .bold_line_style(RGBColor(200, 200, 200))
        .draw()
        .map_err(|e| anyhow!("drawing the axes of \"{}\": {e}", panel.title))?;
    for curve in &panel.curves {
        let style = ShapeStyle::from(&curve.color).stroke_width(2);
        chart
            .draw_series(LineSeries::new(curve.points.iter().copied(), style))
            .map_err(|e| anyhow!("drawing \"{}\": {e}", curve.label))?;
        if curve.markers {
            chart
                .draw_series(
                    curve
                        .points
                        .iter()
                        .map(|&p| Circle::new(p, 3, curve.color.filled())),
                )
                .map_err(|e| anyhow!("drawing \"{}\": {e}", curve.label))?;
        }
    }
    Ok(())
}

fn draw_panel<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, panel: &Panel) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let (chart_area, legend_area) = area.split_horizontally(WIDTH - LEGEND_WIDTH);
    let points = panel.curves.iter().flat_map(|c| c.points.iter());
    let (mut x_lo, mut x_hi, mut y_lo, mut y_hi) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in points {
        x_lo = x_lo.min(x);
        x_hi = x_hi.max(x);
        y_lo = y_lo.min(y);
        y_hi = y_hi.max(y);
    }
    let log_scale = panel.log_allowed && y_lo > 0.0 && y_hi / y_lo >= 50.0;
    let x_range = if x_hi > x_lo {
        x_lo..x_hi
    } else {
        padded(x_lo, x_hi, 0.0)
    };
    let mut builder = ChartBuilder::on(&chart_area);
    builder
        .caption(panel.title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(42)
        .y_label_area_size(70);
    let build_error =
        |e: DrawingAreaErrorKind<DB::ErrorType>| anyhow!("drawing \"{}\": {e}", panel.title);
    if log_scale {
        let y_range = (y_lo / 1.25..y_hi * 1.25).log_scale();
        let chart = builder
            .build_cartesian_2d(x_range, y_range)
            .map_err(build_error)?;
        draw_curves(chart, panel, &format!("{} (log scale)", panel.y_desc))?;
    } else {
        let chart = builder
            .build_cartesian_2d(x_range, padded(y_lo, y_hi, 0.05))
            .map_err(build_error)?;
        draw_curves(chart, panel, panel.y_desc)?;
    }

    // The legend beside the chart, so it never hides a curve.
    let row = 18;
    let top = 50;
    let (_, height) = legend_area.dim_in_pixel();
    let fits = ((height as i32 - top - row) / row).max(1) as usize;
    let shown = if panel.curves.len() > fits {
        fits - 1
    } else {
        panel.curves.len()
    };
    let text_style = ("sans-serif", 13).into_font().color(&BLACK);
    let legend_error = |e: DrawingAreaErrorKind<DB::ErrorType>| anyhow!("drawing the legend: {e}");
    for (i, curve) in panel.curves.iter().take(shown).enumerate() {
        let y = top + row * i as i32;
        legend_area
            .draw(&PathElement::new(
                vec![(4, y), (28, y)],
                ShapeStyle::from(&curve.color).stroke_width(3),
            ))
            .map_err(legend_error)?;
        let mut label: String = curve.label.chars().take(LABEL_CHARS).collect();
        if curve.label.chars().count() > LABEL_CHARS {
            label.push('…');
        }
        legend_area
            .draw(&Text::new(label, (34, y - 7), text_style.clone()))
            .map_err(legend_error)?;
    }
    if shown < panel.curves.len() {
        let y = top + row * shown as i32;
        legend_area
            .draw(&Text::new(
                format!("… and {} more", panel.curves.len() - shown),
                (34, y - 7),
                text_style.clone(),
            ))
            .map_err(legend_error)?;
    }
    Ok(())
}

/// Draws a parsed log into SVG text; `title` heads the figure.
pub fn render_svg(log: &TrainingLog, title: &str) -> Result<(String, PlotSummary)> {
    let mut non_finite = 0;
    let mut loss_curves = Vec::new();
    if !log.train_loss.is_empty() {
        loss_curves.push(Curve {
            label: "training loss",
            points: finite_points(&log.train_loss, &mut non_finite),
            color: TRAIN_COLOR,
            markers: log.train_loss.len() == 1,
        });
    }
    let mut other_curves = Vec::new();
    let mut next_color = 0;
    for series in &log.test_outputs {
        let curve = Curve {
            label: &series.label,
            points: finite_points(&series.points, &mut non_finite),
            color: color(next_color),
            markers: true,
        };
        next_color += 1;
        if series.is_loss {
            loss_curves.push(curve);
        } else {
            other_curves.push(curve);
        }
    }
    // Train outputs that are losses repeat the training loss; the others (a training accuracy) join the tests.
    let train_extra: Vec<&Series> = log.train_outputs.iter().filter(|s| !s.is_loss).collect();
    for series in &train_extra {
        other_curves.push(Curve {
            label: &series.label,
            points: finite_points(&series.points, &mut non_finite),
            color: color(next_color),
            markers: false,
        });
        next_color += 1;
    }
    let lr_points = finite_points(&log.learning_rate, &mut non_finite);
    let lr_changes = lr_points.windows(2).any(|w| w[0].1 != w[1].1);
    let mut panels = Vec::new();
    loss_curves.retain(|c| !c.points.is_empty());
    other_curves.retain(|c| !c.points.is_empty());
    if !loss_curves.is_empty() {
        panels.push(Panel {
            title: "Loss",
            y_desc: "loss",
            curves: loss_curves,
            log_allowed: true,
        });
    }
    if !other_curves.is_empty() {
        panels.push(Panel {
            title: "Test outputs",
            y_desc: "value",
            curves: other_curves,
            log_allowed: false,
        });
    }
    if lr_changes {
        panels.push(Panel {
            title: "Learning rate",
            y_desc: "learning rate",
            curves: vec![Curve {
                label: "lr",
                points: lr_points,
                color: RGBColor(60, 60, 60),
                markers: false,
            }],
            log_allowed: true,
        });
    }
    if panels.is_empty() {
        bail!(
            "nothing to plot: no \"Iteration N, loss = X\" or \"Test net output #j: name = v\" lines with finite \
             values (is this the output of `caffe train` or `crema train`?)"
        );
    }
    let summary = PlotSummary {
        train_loss_points: log.train_loss.len(),
        test_outputs: log.test_outputs.len(),
        train_outputs: train_extra.len(),
        non_finite,
        learning_rate_drawn: lr_changes,
    };
    let mut svg = String::new();
    {
        let height = 50 + PANEL_HEIGHT * panels.len() as u32;
        let root = SVGBackend::with_string(&mut svg, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE)
            .map_err(|e| anyhow!("drawing the background: {e}"))?;
        let body = root
            .titled(title, ("sans-serif", 22))
            .map_err(|e| anyhow!("drawing the title: {e}"))?;
        let areas = body.split_evenly((panels.len(), 1));
        for (area, panel) in areas.iter().zip(&panels) {
            draw_panel(area, panel)?;
        }
        root.present()
            .map_err(|e| anyhow!("finishing the SVG: {e}"))?;
    }
    Ok((svg, summary))
}

/// Parses a training log's text and writes its plot to `out` (an SVG file, written atomically).
pub fn plot_log(text: &str, title: &str, out: &Path) -> Result<PlotSummary> {
    let log = parse_log(text);
    let (svg, summary) = render_svg(&log, title)?;
    crema::proto::files::write_atomic(out, svg.as_bytes())?;
    Ok(summary)
}

pub fn run(args: Args) -> Result<()> {
    let text = crema::proto::files::read_text_file(&args.log, "training log")
        .context("reading the training log")?;
    let title = format!(
        "Training log {}",
        args.log.file_name().map_or_else(
            || args.log.display().to_string(),
            |n| n.to_string_lossy().into_owned()
        )
    );
    let summary = plot_log(&text, &title, &args.out)
        .with_context(|| format!("plotting {}", args.log.display()))?;
    let mut drawn = vec![format!(
        "training loss ({} points)",
        summary.train_loss_points
    )];
    drawn.push(match summary.test_outputs {
        0 => "no test outputs".to_owned(),
        1 => "1 test output".to_owned(),
        n => format!("{n} test outputs"),
    });
    if summary.train_outputs > 0 {
        drawn.push(format!("{} train outputs", summary.train_outputs));
    }
    if summary.learning_rate_drawn {
        drawn.push("the learning rate".into());
    }
    println!("wrote {}: {}", args.out.display(), drawn.join(", "));
    if summary.non_finite > 0 {
        eprintln!(
            "note: {} NaN or infinite values left out of the plot (the training diverged there)",
            summary.non_finite
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "\
I1128 17:01:06.351775 13610 solver.cpp:330] Iteration 0, Testing net (#0)
I1128 17:01:06.400000 13610 solver.cpp:397]     Test net output #0: accuracy = 0.116
I1128 17:01:06.400000 13610 solver.cpp:397]     Test net output #1: loss = 2.31 (* 1 = 2.31 loss)
I1128 17:01:06.400000 13610 solver.cpp:397]     Test net output #2: per_class_accuracy = 0.5
I1128 17:01:06.400000 13610 solver.cpp:397]     Test net output #3: per_class_accuracy = 0.25
I1128 17:01:06.451775 13610 solver.cpp:218] Iteration 0 (0 iter/s, 0.1s/100 iters), loss = 2.30
I1128 17:01:06.451775 13610 solver.cpp:237]     Train net output #0: loss = 2.30 (* 1 = 2.30 loss)
I1128 17:01:06.451775 13610 sgd_solver.cpp:105] Iteration 0, lr = 0.01
Iteration 100, loss = 1.5
    Train net output #0: loss = 1.4 (* 1 = 1.4 loss)
Iteration 100, lr = 0.001
Iteration 200, Testing net (#0)
    Test net output #0: accuracy = 0.6
    Test net output #1: loss = -nan (* 1 = -nan loss)
    Test net output #2: per_class_accuracy = 0.75
    Test net output #3: per_class_accuracy = 0.5
Iteration 200, loss = 0.9
Some other line
";

    #[test]
    fn parses_caffe_lines_with_and_without_glog_prefixes() {
        let log = parse_log(LOG);
        assert_eq!(
            log.train_loss,
            vec![(0.0, 2.30), (100.0, 1.5), (200.0, 0.9)]
        );
        assert_eq!(log.learning_rate, vec![(0.0, 0.01), (100.0, 0.001)]);
        let labels: Vec<&str> = log.test_outputs.iter().map(|s| s.label.as_str()).collect();
        assert_eq!(
            labels,
            [
                "test accuracy",
                "test loss",
                "test per_class_accuracy[0]",
                "test per_class_accuracy[1]"
            ]
        );
        assert_eq!(log.test_outputs[0].points, vec![(0.0, 0.116), (200.0, 0.6)]);
        assert!(log.test_outputs[1].is_loss && !log.test_outputs[0].is_loss);
        assert!(log.test_outputs[1].points[1].1.is_nan());
        assert_eq!(log.train_outputs[0].points, vec![(0.0, 2.30), (100.0, 1.4)]);
    }

    #[test]
    fn renders_an_svg_with_every_curve_named() {
        let (svg, summary) = render_svg(&parse_log(LOG), "a log").unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..100]);
        for text in [
            "a log",
            "training loss",
            "test accuracy",
            "test per_class_accuracy[1]",
            "iteration",
            "Learning rate",
        ] {
            assert!(svg.contains(text), "{text} missing");
        }
        assert_eq!(summary.non_finite, 1);
        assert!(summary.learning_rate_drawn);
        assert!(render_svg(&parse_log("nothing here\n"), "t").is_err());
    }
}
