//! SVG pictures of simulated runs (shared by the `simulate` and `storm` examples and tested by
//! `tests/plot.rs`).
#![allow(dead_code)]

use std::error::Error;
use std::path::Path;

use callagent_retry::sim::Report;
use plotters::prelude::*;

/// Colours of the series, fixed so pictures compare run to run.
const OFFERED: RGBColor = RGBColor(90, 90, 90);
const BACKEND: RGBColor = RGBColor(31, 119, 180);
const SUCCESS: RGBColor = RGBColor(44, 160, 44);
const GAVE_UP: [RGBColor; 6] = [
    RGBColor(214, 39, 40),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(188, 189, 34),
];
const BUDGET: RGBColor = RGBColor(23, 190, 207);
const OUTAGE: RGBColor = RGBColor(255, 200, 200);

type Result<T> = std::result::Result<T, Box<dyn Error>>;

/// Draws `points` as a 2-pixel line named `name` in the chart's legend.
macro_rules! line {
    ($chart:expr, $points:expr, $name:expr, $colour:expr) => {{
        let colour = $colour;
        $chart
            .draw_series(LineSeries::new($points, colour.stroke_width(2)))?
            .label($name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], colour.stroke_width(2)));
    }};
}

/// The legend box, top right, over a translucent background.
macro_rules! legend {
    ($chart:expr) => {
        $chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperRight)
            .draw()?
    };
}

/// Draws `report`'s run second by second: offered calls, backend calls, successes and each
/// give-up outcome per second above, the retry budget's balance below, outages shaded.
pub fn run(report: &Report, path: &Path) -> Result<()> {
    let ticks = &report.timeline;
    let seconds = ticks.len().max(1) as f64;
    let root = SVGBackend::new(path, (960, 600)).into_drawing_area();
    root.fill(&WHITE)?;
    let (top, bottom) = root.split_vertically(420);

    let peak = ticks.iter().map(|t| t.offered.max(t.backend_calls)).max().unwrap_or(1).max(1) as f64;
    let title = format!("{}: calls per second (5 s average, simulated time)", report.scenario);
    let mut chart = ChartBuilder::on(&top)
        .caption(title, ("sans-serif", 20))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(50)
        .build_cartesian_2d(0.0..seconds, 0.0..peak * 1.1)?;
    chart.configure_mesh().x_desc("seconds").y_desc("calls / s").draw()?;
    for &(start, end) in &report.outages {
        chart
            .draw_series(std::iter::once(Rectangle::new([(start, 0.0), (end, peak * 1.1)], OUTAGE.filled())))?
            .label("outage")
            .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 15, y + 5)], OUTAGE.filled()));
    }
    let mut line =
        |name: &str, colour: RGBColor, value: &dyn Fn(&callagent_retry::sim::Tick) -> u64| -> Result<()> {
            let per_second: Vec<f64> = ticks.iter().map(|t| value(t) as f64).collect();
            chart
                .draw_series(LineSeries::new(smooth(&per_second), colour.stroke_width(2)))?
                .label(name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], colour.stroke_width(2)));
            Ok(())
        };
    line("backend calls", BACKEND, &|t| t.backend_calls)?;
    line("offered", OFFERED, &|t| t.offered)?;
    line("successes", SUCCESS, &|t| t.successes)?;
    let mut outcomes: Vec<&String> = ticks.iter().flat_map(|t| t.gave_up.keys()).collect();
    outcomes.sort_unstable();
    outcomes.dedup();
    for (i, outcome) in outcomes.into_iter().enumerate() {
        let key = outcome.clone();
        line(outcome, GAVE_UP[i % GAVE_UP.len()], &move |t| t.gave_up.get(&key).copied().unwrap_or(0))?;
    }
    legend!(chart);

    let balance: Vec<(f64, f64)> = ticks
        .iter()
        .enumerate()
        .filter_map(|(t, tick)| tick.budget_available.map(|b| (t as f64 + 1.0, b as f64)))
        .collect();
    let most = balance.iter().map(|p| p.1).fold(1.0, f64::max);
    let mut chart = ChartBuilder::on(&bottom)
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(50)
        .build_cartesian_2d(0.0..seconds, 0.0..most * 1.1)?;
    chart.configure_mesh().x_desc("seconds").y_desc("retries left").draw()?;
    for &(start, end) in &report.outages {
        chart.draw_series(std::iter::once(Rectangle::new(
            [(start, 0.0), (end, most * 1.1)],
            OUTAGE.filled(),
        )))?;
    }
    let label = if balance.is_empty() { "retry budget (off)" } else { "retry budget: retries it allows" };
    line!(chart, balance, label, BUDGET);
    legend!(chart);
    root.present()?;
    Ok(())
}

/// A centred 5-second moving average: one-second buckets of a uniform load alternate between
/// neighbouring counts, which hides the shape of the run.
fn smooth(per_second: &[f64]) -> Vec<(f64, f64)> {
    (0..per_second.len())
        .map(|i| {
            let window = &per_second[i.saturating_sub(2)..(i + 3).min(per_second.len())];
            (i as f64 + 0.5, window.iter().sum::<f64>() / window.len() as f64)
        })
        .collect()
}

/// Draws backend calls per second of several runs of one scenario (one per policy) against the
/// offered load, outages shaded.
pub fn policies(runs: &[(String, Report)], path: &Path) -> Result<()> {
    let Some((_, first)) = runs.first() else { return Err("no runs to plot".into()) };
    let seconds = runs.iter().map(|(_, r)| r.timeline.len()).max().unwrap_or(1).max(1) as f64;
    let peak = runs
        .iter()
        .flat_map(|(_, r)| r.timeline.iter().map(|t| t.backend_calls.max(t.offered)))
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let root = SVGBackend::new(path, (960, 480)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("{}: backend calls per second by policy (5 s average)", first.scenario),
            ("sans-serif", 20),
        )
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(50)
        .build_cartesian_2d(0.0..seconds, 0.0..peak * 1.1)?;
    chart.configure_mesh().x_desc("seconds (simulated)").y_desc("calls / s").draw()?;
    for &(start, end) in &first.outages {
        chart.draw_series(std::iter::once(Rectangle::new(
            [(start, 0.0), (end.min(seconds), peak * 1.1)],
            OUTAGE.filled(),
        )))?;
    }
    let offered: Vec<f64> = first.timeline.iter().map(|t| t.offered as f64).collect();
    line!(chart, smooth(&offered), "offered", OFFERED);
    let colours = [BACKEND, GAVE_UP[0], GAVE_UP[1], GAVE_UP[2], SUCCESS, BUDGET];
    for (i, (name, report)) in runs.iter().enumerate() {
        let colour = colours[i % colours.len()];
        let calls: Vec<f64> = report.timeline.iter().map(|t| t.backend_calls as f64).collect();
        line!(chart, smooth(&calls), name.as_str(), colour);
    }
    legend!(chart);
    root.present()?;
    Ok(())
}
