//! The process itself: the signals that stop a run, medians of timings, resident memory.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize};

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

/// Ctrl-C (SIGINT) or SIGTERM (what batch schedulers send before killing a job) records the
/// signal (the loop checkpoints at the next optimizer-step boundary and exits 130 or 143, as a
/// shell reports them); a second signal ends the process at once. `NORMTUNE_INTERRUPT_AFTER=N`
/// raises the same flag after N optimizer steps, so tests can interrupt at an exact step.
pub fn interrupt_flag() -> anyhow::Result<Arc<AtomicUsize>> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let seen = Arc::new(AtomicBool::new(false));
    let which = Arc::new(AtomicUsize::new(0));
    for (sig, code) in [(SIGINT, 130), (SIGTERM, 143)] {
        // Registered first, so it sees the flag as the earlier signal left it.
        signal_hook::flag::register_conditional_shutdown(sig, code, seen.clone())?;
        signal_hook::flag::register(sig, seen.clone())?;
        signal_hook::flag::register_usize(sig, which.clone(), sig as usize)?;
    }
    Ok(which)
}
