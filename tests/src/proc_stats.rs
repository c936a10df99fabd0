//! Resource figures of a running process from /proc: CPU ticks, a `kB`
//! field of its status (resident memory), and its descendants (the
//! benches and the soak sample the app and its webview processes).

use anyhow::{Context, Result};

/// CPU time (user + system) of `pid` so far, in clock ticks.
pub fn cpu_ticks(pid: u32) -> Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .context("bad stat")?
        .1
        .split_whitespace()
        .collect();
    // utime and stime are fields 14 and 15 (1-based), 12 and 13 after ')'.
    let utime: u64 = fields.get(11).context("utime")?.parse()?;
    let stime: u64 = fields.get(12).context("stime")?.parse()?;
    Ok(utime + stime)
}

/// Every process below `pid` (an app's WebKit web and network processes).
pub fn descendants(pid: u32) -> Vec<u32> {
    let parent_of = |p: u32| -> Option<u32> {
        let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).ok()?;
        stat.rsplit_once(')')?
            .1
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    };
    let all: Vec<u32> = std::fs::read_dir("/proc")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    all.into_iter()
        .filter(|&p| {
            let mut cur = p;
            while let Some(parent) = parent_of(cur) {
                if parent == pid {
                    return true;
                }
                if parent <= 1 {
                    break;
                }
                cur = parent;
            }
            false
        })
        .collect()
}

/// A `kB` field of /proc/PID/status (`VmRSS:`, `VmHWM:`).
pub fn status_kib(pid: u32, key: &str) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .with_context(|| format!("no {key}"))
}
