//! The process metrics Prometheus client libraries export
//! (`process_cpu_seconds_total`, `process_resident_memory_bytes`, …), read
//! from `/proc/self` at scrape time: a few small file reads, no dependency.
//! Elsewhere than Linux they are absent.

/// What `/proc/self` says of this process; `None` where a file was unreadable.
#[derive(Debug, Default, PartialEq)]
pub struct Sample {
    pub cpu_seconds: Option<f64>,
    pub resident_bytes: Option<f64>,
    pub virtual_bytes: Option<f64>,
    pub open_fds: Option<f64>,
    pub max_fds: Option<f64>,
    pub start_time_seconds: Option<f64>,
}

/// Clock ticks per second of `/proc/*/stat` times. The kernel exports them
/// in USER_HZ, which is 100 on every architecture Linux runs services on;
/// Prometheus's own procfs library assumes the same rather than call sysconf.
const USER_HZ: f64 = 100.0;

/// Fields of `/proc/self/stat` after the command name: (utime + stime in
/// ticks, starttime in ticks since boot).
fn parse_stat(stat: &str) -> Option<(f64, f64)> {
    // The command name is in parentheses and may hold spaces or ')' itself.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Field 3 (state) is index 0: utime is field 14, stime 15, starttime 22.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    let start: f64 = fields.get(19)?.parse().ok()?;
    Some((utime + stime, start))
}

/// A `Name:   1234 kB` line of `/proc/self/status`, in bytes.
fn status_bytes(status: &str, name: &str) -> Option<f64> {
    let line = status.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))?;
    let kb: f64 = line.split_whitespace().next()?.parse().ok()?;
    Some(kb * 1024.0)
}

/// The soft limit of `Max open files` in `/proc/self/limits`.
fn max_open_files(limits: &str) -> Option<f64> {
    let line = limits.lines().find_map(|l| l.strip_prefix("Max open files"))?;
    // "unlimited" is not a number: the metric is then absent, not wrong.
    line.split_whitespace().next()?.parse().ok()
}

/// `btime` of `/proc/stat`: boot time, seconds since the epoch.
fn boot_time(stat: &str) -> Option<f64> {
    stat.lines().find_map(|l| l.strip_prefix("btime "))?.trim().parse().ok()
}

/// Reads `/proc/self` now.
pub fn sample() -> Sample {
    let read = |path: &str| std::fs::read_to_string(path).ok();
    let stat = read("/proc/self/stat").and_then(|s| parse_stat(&s));
    let status = read("/proc/self/status");
    let boot = read("/proc/stat").and_then(|s| boot_time(&s));
    Sample {
        cpu_seconds: stat.map(|(ticks, _)| ticks / USER_HZ),
        resident_bytes: status.as_deref().and_then(|s| status_bytes(s, "VmRSS")),
        virtual_bytes: status.as_deref().and_then(|s| status_bytes(s, "VmSize")),
        open_fds: std::fs::read_dir("/proc/self/fd").ok().map(|dir| dir.count() as f64),
        max_fds: read("/proc/self/limits").and_then(|s| max_open_files(&s)),
        start_time_seconds: boot.zip(stat).map(|(boot, (_, start))| boot + start / USER_HZ),
    }
}

/// Appends the process metrics, from a fresh [`sample`], in Prometheus text
/// format. Written here rather than through the recorder, whose counters
/// are integers: CPU seconds are not.
pub fn render(out: &mut String) {
    use std::fmt::Write as _;
    let sample = sample();
    let families = [
        (
            "process_cpu_seconds_total",
            "counter",
            "user and system CPU time spent in seconds",
            sample.cpu_seconds,
        ),
        ("process_resident_memory_bytes", "gauge", "resident memory size in bytes", sample.resident_bytes),
        ("process_virtual_memory_bytes", "gauge", "virtual memory size in bytes", sample.virtual_bytes),
        ("process_open_fds", "gauge", "number of open file descriptors", sample.open_fds),
        ("process_max_fds", "gauge", "maximum number of open file descriptors", sample.max_fds),
        (
            "process_start_time_seconds",
            "gauge",
            "start time of the process since the Unix epoch in seconds",
            sample.start_time_seconds,
        ),
    ];
    for (name, kind, help, value) in families {
        if let Some(value) = value {
            // Writing to a String cannot fail.
            let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n\n");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_read_after_a_command_name_with_spaces() {
        let stat = "4242 (tokio (rt) x) S 1 4242 4242 0 -1 4194560 1500 0 0 0 250 75 0 0 20 0 9 0 123456 \
                    1000000 2000 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";
        assert_eq!(parse_stat(stat), Some((325.0, 123456.0)));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn status_limits_and_boot_time_parse() {
        let status = "Name:\tprmonitor\nVmSize:\t  204800 kB\nVmRSS:\t   10240 kB\n";
        assert_eq!(status_bytes(status, "VmRSS"), Some(10240.0 * 1024.0));
        assert_eq!(status_bytes(status, "VmSize"), Some(204800.0 * 1024.0));
        assert_eq!(status_bytes(status, "VmSwap"), None);
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max open files            1024                 524288               files\n";
        assert_eq!(max_open_files(limits), Some(1024.0));
        assert_eq!(max_open_files("Max open files  unlimited unlimited files\n"), None);
        assert_eq!(boot_time("cpu 1 2 3\nbtime 1700000000\nprocesses 5\n"), Some(1_700_000_000.0));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_is_sampled() {
        let sample = sample();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after the epoch")
            .as_secs_f64();
        let start = sample.start_time_seconds.expect("a start time");
        assert!(start > 1_500_000_000.0 && start <= now + 1.0, "{start} vs {now}");
        assert!(sample.resident_bytes.expect("rss") > 0.0);
        assert!(sample.virtual_bytes.expect("vsz") >= sample.resident_bytes.expect("rss"));
        assert!(sample.open_fds.expect("fds") >= 3.0);
        assert!(sample.max_fds.expect("limit") >= sample.open_fds.expect("fds"));
        assert!(sample.cpu_seconds.expect("cpu") >= 0.0);
        let mut text = String::new();
        render(&mut text);
        for name in ["process_cpu_seconds_total", "process_resident_memory_bytes", "process_open_fds"] {
            assert!(text.contains(&format!("# HELP {name} ")), "{text}");
            assert!(text.lines().any(|l| l.starts_with(&format!("{name} "))), "{text}");
        }
    }
}
