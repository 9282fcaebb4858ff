//! What the process measures of itself: medians of timings and resident memory.

/// The median of measured times (sorts `v`); `None` when `v` is empty.
pub fn median(v: &mut [f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// The process's peak resident memory in MiB (Linux `VmHWM`); `None` where the OS does not
/// tell.
pub fn peak_rss_mb() -> Option<f64> {
    status_mb("VmHWM:")
}

/// The process's resident memory now, in MiB (Linux `VmRSS`), logged with every step so a
/// leak shows as a rising line in `metrics.jsonl`.
pub fn rss_mb() -> Option<f64> {
    status_mb("VmRSS:")
}

fn status_mb(field: &str) -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix(field))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}
