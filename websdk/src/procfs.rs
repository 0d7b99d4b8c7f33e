//! What `/proc` says about the browser's processes: whether one is alive, which processes are
//! one browser's (every Chromium process carries its `--user-data-dir`), and their memory.

use std::path::Path;

pub(crate) fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// Whether `pid` runs: not gone and not a zombie waiting to be reaped.
pub(crate) fn alive(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The state follows the command name, which is in parentheses and may contain anything.
    let state = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next());
    !matches!(state, None | Some("Z" | "X" | "x"))
}

/// The live processes started with `--user-data-dir=<profile>`: one browser and all its helpers.
pub(crate) fn processes_of(profile: &Path) -> Vec<u32> {
    let needle = format!("--user-data-dir={}", profile.display());
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| has_arg(&c, needle.as_bytes()))
        })
        .filter(|pid| alive(*pid))
        .collect()
}

/// Whether `cmdline` holds `arg` whole. Chromium's helpers rewrite their command line into one
/// space-separated string, so an argument ends at a NUL, a space or the end.
fn has_arg(cmdline: &[u8], arg: &[u8]) -> bool {
    cmdline.windows(arg.len()).enumerate().any(|(at, w)| {
        w == arg
            && (at == 0 || matches!(cmdline[at - 1], 0 | b' '))
            && matches!(cmdline.get(at + arg.len()), None | Some(0 | b' '))
    })
}

/// What a Chromium process is: `browser`, or its `--type` (and utility sub-type), e.g.
/// `renderer`, `utility network.mojom.NetworkService`.
pub(crate) fn kind(pid: u32) -> String {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
    let value = |key: &str| text.split(' ').find_map(|a| a.strip_prefix(key)).map(str::to_owned);
    match (value("--type="), value("--utility-sub-type=")) {
        (None, _) => "browser".to_owned(),
        (Some(kind), None) => kind,
        (Some(kind), Some(sub)) => format!("{kind} {sub}"),
    }
}

/// Proportional set size of `pids`, summed (`Pss:` of `smaps_rollup`), in bytes.
pub(crate) fn pss_bytes(pids: &[u32]) -> u64 {
    pids.iter()
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok())
        .filter_map(|text| {
            let line = text.lines().find(|l| l.starts_with("Pss:"))?;
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .sum::<u64>()
        * 1024
}

/// CPU time the processes have used (user and system), in seconds, from `/proc/PID/stat`.
pub(crate) fn cpu_seconds(pids: &[u32]) -> f64 {
    // The kernel's clock ticks per second: 100 on every Linux this runs on (USER_HZ).
    const TICKS: f64 = 100.0;
    let ticks: u64 = pids
        .iter()
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok())
        .filter_map(|stat| {
            // The command (field 2) may hold spaces: count fields after its closing parenthesis.
            let rest = stat.rsplit_once(')')?.1;
            let fields: Vec<&str> = rest.split_whitespace().collect();
            // utime and stime are fields 14 and 15, so 12 and 13 after the command and state.
            Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
        })
        .sum();
    ticks as f64 / TICKS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_made_up_one_is_not() {
        assert!(alive(std::process::id()));
        assert!(!alive(u32::MAX - 1));
    }

    #[test]
    fn an_argument_is_found_whole_in_either_form_of_command_line() {
        let arg = b"--user-data-dir=/tmp/p";
        assert!(has_arg(b"chromium\0--user-data-dir=/tmp/p\0", arg));
        assert!(has_arg(b"chromium --type=renderer --user-data-dir=/tmp/p --x\0", arg));
        assert!(!has_arg(b"chromium --user-data-dir=/tmp/p2\0", arg));
        assert!(!has_arg(b"chromium x--user-data-dir=/tmp/p\0", arg));
    }

    #[test]
    fn memory_of_this_process_is_read() {
        assert!(pss_bytes(&[std::process::id()]) > 0);
        assert!(processes_of(Path::new("/nonexistent/profile")).is_empty());
    }
}
