//! The report: medians over runs, ratios to the baseline, targets, SVG plots.
use std::path::{Path, PathBuf};

use crate::common::{median, AnyResult, Outcome};

pub fn load(files: &[PathBuf]) -> AnyResult<Vec<Outcome>> {
    let mut v = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(f).map_err(|e| format!("{}: {e}", f.display()))?;
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            v.push(
                serde_json::from_str(line)
                    .map_err(|e| format!("{}:{}: {e}", f.display(), i + 1))?,
            );
        }
    }
    Ok(v)
}

pub fn field(o: &Outcome, name: &str) -> Option<f64> {
    match name {
        "rate" => Some(o.rate),
        "p50" => Some(o.lat.p50_ms),
        "p90" => Some(o.lat.p90_ms),
        "p99" => Some(o.lat.p99_ms),
        "p999" => Some(o.lat.p999_ms),
        "max" => Some(o.lat.max_ms),
        "mean" => Some(o.lat.mean_ms),
        "errors" => Some(o.errors as f64),
        other => o.extra.get(other).and_then(|v| v.as_f64()),
    }
}

pub fn median_of(
    files: &[PathBuf],
    scenario: &str,
    key: &str,
    server: &str,
    name: &str,
) -> AnyResult<f64> {
    let all = load(files)?;
    let mut v: Vec<f64> = all
        .iter()
        .filter(|o| o.scenario == scenario && o.key == key && o.label == server)
        .filter_map(|o| field(o, name))
        .collect();
    if v.is_empty() {
        return Err(format!("no runs of {scenario} {key} on {server}"));
    }
    Ok(median(&mut v))
}

pub fn write(
    _results: &[PathBuf],
    _meta: Option<&Path>,
    _out: &Path,
    _plots: &Path,
) -> AnyResult<()> {
    Err("todo".into())
}
