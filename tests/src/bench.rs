//! What the benchmark binaries share: statistics, the machine's name, and
//! writing figures into their place in docs/PERFORMANCE.md.

use std::path::Path;
use std::time::Duration;

pub fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values[values.len() / 2]
}

pub fn p90(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values[(values.len() * 9 / 10).min(values.len() - 1)]
}

/// Milliseconds with two decimals.
pub fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

/// Cores and CPU model, e.g. `2 × AMD EPYC`.
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
            })
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    format!("{cores} × {cpu}")
}

/// Replaces what stands between `<!-- {marker}:begin -->` and
/// `<!-- {marker}:end -->` in `path` with `figures` (appends both markers
/// the first time).
pub fn write_between_markers(path: &Path, marker: &str, figures: &str) {
    let begin = format!("<!-- {marker}:begin -->");
    let end = format!("<!-- {marker}:end -->");
    let current = std::fs::read_to_string(path).unwrap_or_default();
    let updated = match (current.find(&begin), current.find(&end)) {
        (Some(b), Some(e)) if b < e => format!("{}{begin}\n{figures}{}", &current[..b], &current[e..]),
        _ => format!("{current}\n{begin}\n{figures}{end}\n"),
    };
    std::fs::write(path, updated).expect("write figures");
}
