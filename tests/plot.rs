//! The pictures the examples draw: the file is written and holds the run's series.

#[path = "../examples/plot/mod.rs"]
mod plot;

use callagent_retry::sim::{Scenario, run};

fn outage() -> Scenario {
    let path = format!("{}/examples/scenarios/outage-and-recovery.toml", env!("CARGO_MANIFEST_DIR"));
    Scenario::from_toml(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The `points` of every polyline in an SVG, as (x, y) pairs.
fn polylines(svg: &str) -> Vec<Vec<(f64, f64)>> {
    svg.split("<polyline")
        .skip(1)
        .map(|p| {
            let start = p.find("points=\"").unwrap() + 8;
            let end = start + p[start..].find('"').unwrap();
            p[start..end]
                .split_whitespace()
                .map(|xy| {
                    let (x, y) = xy.split_once(',').unwrap();
                    (x.parse().unwrap(), y.parse().unwrap())
                })
                .collect()
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn the_outage_plot_holds_every_series() {
    let report = run(&outage(), None).await.unwrap();
    let dir = std::env::temp_dir().join(format!("callagent-plot-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("outage.svg");
    plot::run(&report, &path).unwrap();
    let svg = std::fs::read_to_string(&path).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();

    for label in ["offered", "backend calls", "successes", "budget_exhausted", "outage", "retry budget"] {
        assert!(svg.contains(label), "no {label:?} in the plot");
    }
    // One line per series (offered, backend calls, successes, each give-up outcome, the budget),
    // each with a point per second of the run.
    let seconds = report.timeline.len();
    let long: Vec<_> = polylines(&svg).into_iter().filter(|p| p.len() >= seconds / 2).collect();
    let gave_up_kinds = report.outcomes.keys().filter(|k| !k.starts_with("success")).count();
    assert_eq!(long.len(), 3 + gave_up_kinds + 1, "series drawn");
    assert!(long.iter().take(3 + gave_up_kinds).all(|p| p.len() == seconds));
    // The outage shows: the success line (third) drops to the chart's floor inside the window
    // and stands well above it before.
    let successes = &long[2];
    let floor = successes.iter().map(|p| p.1).fold(f64::MIN, f64::max); // SVG y grows downwards
    let at = |second: usize| successes[second].1;
    assert!((at(60) - floor).abs() < 1.0, "no success mid-outage");
    assert!(floor - at(15) > 100.0, "successes before the outage");
}

#[tokio::test(start_paused = true)]
async fn a_run_with_no_budget_says_so() {
    let mut scenario = outage();
    scenario.retry.budget = None;
    scenario.load.calls_per_client = 5;
    let report = run(&scenario, None).await.unwrap();
    let path = std::env::temp_dir().join(format!("callagent-plot-nobudget-{}.svg", std::process::id()));
    plot::run(&report, &path).unwrap();
    let svg = std::fs::read_to_string(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert!(svg.contains("retry budget (off)"));
}
