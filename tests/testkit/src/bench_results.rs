//! Benchmark figures in a machine-readable form, for `scripts/bench` to gather into one table:
//! when `FLOCKER_BENCH_RESULTS` names a file, each figure is appended to it as one JSON line.

use std::io::Write;

use serde_json::json;

/// The variable naming the file the figures are appended to.
pub const RESULTS_VARIABLE: &str = "FLOCKER_BENCH_RESULTS";

/// What a figure is compared with: another way of doing the same step, and the two's ratio.
#[derive(Debug, Clone, Copy)]
pub struct Baseline<'a> {
    /// The other way's figure, in the figure's unit.
    pub value: f64,
    /// What the other way is, e.g. "shell-script floor".
    pub name: &'a str,
    pub ratio: f64,
    /// How to read the ratio after its number, e.g. "× the floor" or "× faster".
    pub ratio_means: &'a str,
}

/// Appends one figure to the results file; does nothing when the variable is unset. A failure
/// to write is a warning: the figure was printed already, and a bench asserts nothing.
pub fn record(
    bench: &str,
    what: &str,
    value: f64,
    unit: &str,
    target: Option<&str>,
    baseline: Option<&Baseline>,
) {
    let Some(path) = std::env::var_os(RESULTS_VARIABLE).filter(|p| !p.is_empty()) else {
        return;
    };
    let line = json!({
        "bench": bench,
        "what": what,
        "value": value,
        "unit": unit,
        "target": target,
        "baseline": baseline.map(|b| b.value),
        "baseline_name": baseline.map(|b| b.name),
        "ratio": baseline.map(|b| b.ratio),
        "ratio_means": baseline.map(|b| b.ratio_means),
    });
    if let Err(e) = append_line(path.as_ref(), &line.to_string()) {
        eprintln!("warning: cannot append to {RESULTS_VARIABLE} {}: {e}", path.to_string_lossy());
    }
}

/// One write of the whole line to a file opened for appending, so that lines from several
/// benches never interleave and an interrupted bench leaves whole lines behind.
fn append_line(path: &std::path::Path, line: &str) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
    file.write_all(format!("{line}\n").as_bytes())
}
