//! Whether the process that holds a run is still alive: a [`RunId`] names
//! its holder (`@<host>:<pid>`), and a holder of this host whose process is
//! gone (killed before it released its lease) can be taken over.

use crate::ids::RunId;

impl RunId {
    /// A fresh run id that sorts by its start time and names its holder:
    /// `<UTC start>-<random hex>@<host>:<pid>`.
    pub fn generate(now: chrono::DateTime<chrono::Utc>) -> Self {
        Self::new(format!(
            "{}-{:08x}@{}:{}",
            now.format("%Y%m%dT%H%M%S%3fZ"),
            fastrand::u32(..),
            this_host(),
            std::process::id()
        ))
    }

    /// The host and process that made this id, when it says so.
    pub fn holder(&self) -> Option<(&str, u32)> {
        let (_, holder) = self.as_str().rsplit_once('@')?;
        let (host, pid) = holder.rsplit_once(':')?;
        Some((host, pid.parse().ok()?))
    }

    /// True when this id was made by a process of this host that no longer
    /// exists (it was killed before it could release its lease). Unknown
    /// (other host, no `/proc`) counts as alive.
    pub fn holder_is_gone(&self) -> bool {
        match self.holder() {
            Some((host, pid)) if host == this_host() && pid != std::process::id() => !process_exists(pid),
            _ => false,
        }
    }
}

/// The initial PID namespace (`PROC_PID_INIT_INO`): a process in no container.
const INITIAL_PID_NAMESPACE: &str = "pid:[4026531836]";

/// Where a pid means something: this machine's host name (without
/// separators that would confuse [`RunId::holder`]), plus `.pidns<inode>`
/// inside a container's PID namespace. Two containers may share a host name
/// (`network_mode: host`, a fixed `hostname:`) but not their pids: with the
/// namespace in the name, a pid is only ever looked up where it was made.
pub fn this_host() -> &'static str {
    static HOST: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HOST.get_or_init(|| {
        let raw = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .or_else(|| std::env::var("HOSTNAME").ok())
            .unwrap_or_else(|| "localhost".into());
        let host: String = raw.trim().chars().filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.')).collect();
        let host = if host.is_empty() { "localhost".into() } else { host };
        let namespace = std::fs::read_link("/proc/self/ns/pid").ok();
        let inode = namespace
            .as_ref()
            .and_then(|ns| ns.to_str())
            .filter(|ns| *ns != INITIAL_PID_NAMESPACE)
            .and_then(|ns| ns.strip_prefix("pid:[")?.strip_suffix(']'));
        match inode {
            Some(inode) => format!("{host}.pidns{inode}"),
            None => host,
        }
    })
}

/// A killed process stays in `/proc` as a zombie (state `Z`) until its
/// parent reaps it: that is gone too, it will never release a lease.
fn process_exists(pid: u32) -> bool {
    if !cfg!(target_os = "linux") {
        return true;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !is_dead_state(&stat),
        // Only "no such entry" is gone; a stat we may not read (hidepid=1,
        // another user's process) is unknown, and unknown counts as alive.
        Err(e) => e.kind() != std::io::ErrorKind::NotFound,
    }
}

/// `/proc/<pid>/stat` is `pid (comm) state ...`; `comm` may hold spaces and
/// parentheses, so the state is the first field after the last `)`.
fn is_dead_state(stat: &str) -> bool {
    let state = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next());
    matches!(state, Some("Z" | "X" | "x"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_name_their_holder() {
        let id = RunId::generate(chrono::Utc::now());
        assert_eq!(id.holder(), Some((this_host(), std::process::id())));
        assert!(!id.holder_is_gone(), "our own process is alive");
        let dead = RunId::new(format!("20250101T000000000Z-00000000@{}:{}", this_host(), u32::MAX - 1));
        assert!(dead.holder_is_gone());
        let elsewhere = RunId::new(format!("20250101T000000000Z-00000000@other-host:{}", u32::MAX - 1));
        assert!(!elsewhere.holder_is_gone());
        assert_eq!(RunId::new("legacy-id").holder(), None);
    }

    /// On a `/proc` mounted `hidepid=1` (or any other reason `stat` cannot
    /// be read) a process of another user is listed but its files are not
    /// readable: it is alive, and its lease must not be released. The outer
    /// half re-runs this test as `nobody` in a mount namespace with such a
    /// `/proc` (root, `unshare` and `setpriv` needed; skipped otherwise). A
    /// new proc instance, not a remount: a remount would change the options
    /// of the machine's own `/proc`.
    #[test]
    fn a_live_holder_whose_stat_is_unreadable_is_not_gone() {
        let name = "liveness::tests::a_live_holder_whose_stat_is_unreadable_is_not_gone";
        if std::env::var_os("MC_HIDEPID_CHILD").is_some() {
            assert!(std::path::Path::new("/proc/1").exists(), "pid 1 is listed");
            assert!(std::fs::read_to_string("/proc/1/stat").is_err(), "its stat is hidden from this user");
            let live = RunId::new(format!("20250101T000000000Z-00000000@{}:1", this_host()));
            assert!(!live.holder_is_gone(), "pid 1 is alive; only its /proc files are hidden");
            return;
        }
        let root = std::fs::read_to_string("/proc/self/status")
            .is_ok_and(|s| s.lines().any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0")));
        let exe = std::env::current_exe().expect("test binary");
        let script = "mount -t proc -o hidepid=1 proc /proc || exit 77; \
                      exec setpriv --reuid=65534 --regid=65534 --clear-groups \"$0\" --exact \"$1\" --test-threads=1";
        let status = std::process::Command::new("unshare")
            .args(["-m", "--propagation", "private", "sh", "-c", script])
            .arg(&exe)
            .arg(name)
            .env("MC_HIDEPID_CHILD", "1")
            .status();
        match status {
            Ok(s) if root && s.code() != Some(77) => assert!(s.success(), "the live holder was taken for gone: {s}"),
            _ => eprintln!("skipped: needs root, unshare, setpriv and a remountable /proc"),
        }
    }

    /// A run id made in another PID namespace names a different holder
    /// space, so its pid is never looked up here (where it means another
    /// process, or none). The outer half re-runs this test in a new PID
    /// namespace (root and `unshare` needed; skipped otherwise).
    #[test]
    fn pids_of_another_pid_namespace_are_never_looked_up() {
        let name = "liveness::tests::pids_of_another_pid_namespace_are_never_looked_up";
        if let Some(outer) = std::env::var_os("MC_PIDNS_OUTER") {
            let outer = RunId::new(outer.to_string_lossy().into_owned());
            assert!(this_host().contains(".pidns"), "{}", this_host());
            assert_ne!(outer.holder().map(|h| h.0), Some(this_host()));
            assert!(!outer.holder_is_gone(), "the outer process is alive; its pid is not ours to look up");
            let own = RunId::new(format!("20250101T000000000Z-00000000@{}:{}", this_host(), u32::MAX - 1));
            assert!(own.holder_is_gone(), "a dead pid of this namespace is still gone");
            return;
        }
        let initial =
            std::fs::read_link("/proc/self/ns/pid").is_ok_and(|ns| ns.to_str() == Some(INITIAL_PID_NAMESPACE));
        if initial {
            assert!(!this_host().contains(".pidns"), "{}", this_host());
        }
        // Our pid does not exist in the new namespace (which starts at 1).
        let outer = RunId::generate(chrono::Utc::now());
        let exe = std::env::current_exe().expect("test binary");
        let status = std::process::Command::new("unshare")
            .args(["--pid", "--fork", "--mount-proc"])
            .arg(&exe)
            .args(["--exact", name, "--test-threads=1"])
            .env("MC_PIDNS_OUTER", outer.as_str())
            .stdout(std::process::Stdio::null())
            .status();
        match status {
            Ok(s) if s.code() == Some(0) => {}
            Ok(s)
                if initial
                    && std::fs::read_to_string("/proc/self/status").is_ok_and(|st| {
                        st.lines().any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
                    }) =>
            {
                panic!("in a new PID namespace: {s}")
            }
            _ => eprintln!("skipped: needs root and unshare"),
        }
    }

    #[test]
    fn a_zombie_is_gone() {
        assert!(is_dead_state("4242 (memory-connector) Z 1 4242 4242 0 -1"));
        assert!(is_dead_state("4242 (a) b (c)) X 1"));
        assert!(!is_dead_state("4242 (a) Z) S 1 4242"));
        assert!(!is_dead_state("4242 (sync) R 1"));
        assert!(process_exists(std::process::id()));
        // A child killed and not yet reaped is a zombie: gone.
        let mut child = std::process::Command::new("sleep").arg("30").spawn().expect("spawn sleep");
        let pid = child.id();
        assert!(process_exists(pid));
        child.kill().expect("kill");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while process_exists(pid) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(!process_exists(pid), "a killed, unreaped child counts as gone");
        child.wait().expect("reap");
        assert!(!process_exists(pid));
    }
}
