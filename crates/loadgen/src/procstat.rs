//! CPU time and peak memory of processes, from `/proc` (Linux).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// Clock ticks per second of `/proc/<pid>/stat` times.
pub fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions; it only reads a system constant.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

/// User + system CPU seconds `pid` has used so far.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces: count fields after its closing ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // fields[0] is field 3 (state); utime is field 14, stime field 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / clock_ticks())
}

/// Busy CPU seconds of the whole machine so far, all cores (user, nice, system and steal from
/// `/proc/stat`): with the watched processes' own CPU, it tells how much else ran. Interrupt
/// and softirq time is left out: on loopback it is mostly the benchmark's own packets, and
/// the kernel charges it to no process.
pub fn machine_busy_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let v: Vec<u64> = line.split_whitespace().filter_map(|x| x.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal
    let busy = v.first()? + v.get(1)? + v.get(2)? + v.get(7).copied().unwrap_or(0);
    Some(busy as f64 / clock_ticks())
}

fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// `VmHWM` (peak resident set size) of `pid`, in KiB.
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// `VmRSS` (resident set size now) of `pid`, in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// `pid` and all its descendants (nginx's master and workers, for instance).
pub fn process_tree(pid: u32) -> Vec<u32> {
    let mut parents: HashMap<u32, Vec<u32>> = HashMap::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for entry in dir.flatten() {
            if let Some(child) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok())
                && let Some(parent) = parent_of(child)
            {
                parents.entry(parent).or_default().push(child);
            }
        }
    }
    let mut out = vec![pid];
    let mut i = 0;
    while i < out.len() {
        if let Some(children) = parents.get(&out[i]) {
            out.extend_from_slice(children);
        }
        i += 1;
    }
    out
}

/// CPU seconds per process of a tree at one moment.
#[derive(Debug, Clone, Default)]
pub struct TreeSample(HashMap<u32, f64>);

impl TreeSample {
    /// Samples `root` and its descendants.
    pub fn take(root: u32) -> TreeSample {
        TreeSample(process_tree(root).into_iter().filter_map(|p| Some((p, cpu_seconds(p)?))).collect())
    }

    /// CPU seconds used between `self` (earlier) and `later`, over processes alive at `later`.
    pub fn cpu_since(&self, later: &TreeSample) -> f64 {
        later.0.iter().map(|(pid, &t)| (t - self.0.get(pid).copied().unwrap_or(0.0)).max(0.0)).sum()
    }

    /// The processes sampled.
    pub fn pids(&self) -> impl Iterator<Item = u32> + '_ {
        self.0.keys().copied()
    }
}

/// What a watched process (tree) used during the measured window.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProcUsage {
    /// The name it was watched under (`gateway`, `proxy`, `provider`, `loadgen`).
    pub name: String,
    /// The root pid.
    pub pid: u32,
    /// Processes in the tree at the end of the window.
    pub processes: usize,
    /// User + system CPU seconds in the window.
    pub cpu_seconds: f64,
    /// Sum of the tree's `VmHWM` at the end of the window, in KiB (peak RSS since start;
    /// for a multi-process tree, an upper bound: shared pages count once per process).
    pub peak_rss_kib: u64,
}

impl ProcUsage {
    /// Usage of `root`'s tree between two samples.
    pub fn between(name: &str, root: u32, before: &TreeSample, after: &TreeSample) -> ProcUsage {
        ProcUsage {
            name: name.to_owned(),
            pid: root,
            processes: after.0.len(),
            cpu_seconds: before.cpu_since(after),
            peak_rss_kib: after.pids().filter_map(peak_rss_kib).sum(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_process() {
        let me = std::process::id();
        let burn = (0..2_000_000u64).fold(0u64, |a, b| a.wrapping_mul(31).wrapping_add(b));
        assert!(burn != 1);
        assert!(cpu_seconds(me).is_some());
        assert!(machine_busy_seconds().unwrap() > 0.0);
        assert!(peak_rss_kib(me).unwrap() > 0);
        assert!(process_tree(me).contains(&me));
        let s = TreeSample::take(me);
        assert!(s.cpu_since(&TreeSample::take(me)) >= 0.0);
    }
}
