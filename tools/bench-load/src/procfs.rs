//! What the kernel says about the server processes: CPU time from `/proc/<pid>/stat`, memory
//! and threads from `/proc/<pid>/status`, children from every process's parent PID.

use std::fs;

use serde::Serialize;

use crate::Result;

/// The fields of `/proc/<pid>/stat` the harness uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Stat {
    /// The executable name (`comm`), at most 15 bytes.
    pub(crate) comm: String,
    /// The state: `R` running, `S` sleeping, `Z` zombie (exited, not yet reaped), ….
    pub(crate) state: char,
    /// The parent's PID.
    pub(crate) ppid: u32,
    /// User-mode CPU time of the whole process (every thread), in clock ticks.
    pub(crate) utime: u64,
    /// Kernel-mode CPU time of the whole process, in clock ticks.
    pub(crate) stime: u64,
}

/// Parses one `/proc/<pid>/stat` line.
///
/// `comm` sits in parentheses and may itself contain spaces and parentheses, so the fields
/// are counted from the last `)`: after it come state (3), ppid (4), …, utime (14), stime (15).
pub(crate) fn parse_stat(line: &str) -> Option<Stat> {
    let open = line.find('(')?;
    let close = line.rfind(')')?;
    let comm = line.get(open + 1..close)?.to_owned();
    let rest: Vec<&str> = line.get(close + 1..)?.split_whitespace().collect();
    let field = |n: usize| rest.get(n - 3).and_then(|v| v.parse::<u64>().ok());
    Some(Stat {
        comm,
        state: rest.first()?.chars().next()?,
        ppid: u32::try_from(field(4)?).ok()?,
        utime: field(14)?,
        stime: field(15)?,
    })
}

/// The fields of `/proc/<pid>/status` the harness uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub(crate) struct Memory {
    /// Resident set size now (`VmRSS`), in KiB.
    pub(crate) rss_kib: u64,
    /// Peak resident set size over the process's life (`VmHWM`), in KiB.
    pub(crate) hwm_kib: u64,
    /// Threads now.
    pub(crate) threads: u64,
}

impl Memory {
    /// The sum over several processes (a sidecar deployment is several).
    fn add(self, other: Self) -> Self {
        Self {
            rss_kib: self.rss_kib + other.rss_kib,
            hwm_kib: self.hwm_kib + other.hwm_kib,
            threads: self.threads + other.threads,
        }
    }
}

/// Parses `/proc/<pid>/status`; `None` when a field is missing (a kernel thread, or a
/// zombie, has no `VmRSS`).
pub(crate) fn parse_status(text: &str) -> Option<Memory> {
    let value = |key: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(key)?.strip_prefix(':'))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
    };
    Some(Memory {
        rss_kib: value("VmRSS")?,
        hwm_kib: value("VmHWM")?,
        threads: value("Threads")?,
    })
}

/// The stat of process `pid`.
pub(crate) fn stat(pid: u32) -> Result<Stat> {
    let path = format!("/proc/{pid}/stat");
    let text = fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    parse_stat(&text).ok_or_else(|| format!("{path}: unexpected format").into())
}

/// CPU time (user + system) of every process in `pids`, in clock ticks.
pub(crate) fn cpu_ticks(pids: &[u32]) -> Result<u64> {
    pids.iter()
        .map(|&pid| stat(pid).map(|s| s.utime + s.stime))
        .sum()
}

/// Memory and threads summed over every process in `pids`.
pub(crate) fn memory(pids: &[u32]) -> Result<Memory> {
    pids.iter().try_fold(Memory::default(), |total, &pid| {
        let path = format!("/proc/{pid}/status");
        let text = fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
        let memory = parse_status(&text).ok_or_else(|| format!("{path}: unexpected format"))?;
        Ok(total.add(memory))
    })
}

/// The PIDs of the live children of `parent` (nginx's workers), by scanning every process's
/// parent PID: `/proc/<pid>/task/<tid>/children` needs a kernel option this does not.
pub(crate) fn children(parent: u32) -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found: Vec<u32> = entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| stat(pid).is_ok_and(|s| s.ppid == parent))
        .collect();
    found.sort_unstable();
    found
}

/// Microseconds per clock tick (the unit of `utime` and `stime`; 10 000 at the usual 100 Hz).
pub(crate) fn micros_per_tick() -> f64 {
    1e6 / rustix::param::clock_ticks_per_second() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_from_the_last_parenthesis() {
        let line = "4242 (nginx: (worker) x) S 4200 4200 4200 0 -1 4194624 915 0 0 0 \
                    137 42 0 0 20 0 1 0 5555 12345678 900 18446744073709551615 1 1 0 0 0 0 0 \
                    4096 0 0 0 0 17 1 0 0 0 0 0";
        let stat = parse_stat(line).unwrap();
        assert_eq!(stat.comm, "nginx: (worker) x");
        assert_eq!(stat.state, 'S');
        assert_eq!(stat.ppid, 4200);
        assert_eq!((stat.utime, stat.stime), (137, 42));
    }

    #[test]
    fn truncated_stat_is_refused() {
        assert_eq!(parse_stat("1 (init) S 0 1 1"), None);
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn status_gives_rss_peak_and_threads() {
        let text = "Name:\tligand-bench-l\nState:\tS (sleeping)\nVmPeak:\t  900000 kB\n\
                    VmHWM:\t   21000 kB\nVmRSS:\t   19876 kB\nThreads:\t7\nSigQ:\t0/1\n";
        let memory = parse_status(text).unwrap();
        assert_eq!(
            memory,
            Memory {
                rss_kib: 19876,
                hwm_kib: 21000,
                threads: 7
            }
        );
        assert_eq!(memory.add(memory).threads, 14);
    }

    #[test]
    fn status_without_memory_is_refused() {
        assert_eq!(parse_status("Name:\tkthreadd\nThreads:\t1\n"), None);
    }

    #[test]
    fn this_process_can_be_read() {
        let me = std::process::id();
        assert!(cpu_ticks(&[me]).is_ok());
        assert!(memory(&[me]).unwrap().threads >= 1);
        assert!(micros_per_tick() > 0.0);
    }
}
