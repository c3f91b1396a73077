//! What the hand-over checks of an instance outside systemd, as a trait: the socket its main
//! process holds, its answer to `[health]`, what is queued on a socket, and the journal lines that
//! show why it failed. `Host` checks this host; unit tests of the hand-over use a fake.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::host::{health, listener};
use crate::plan::units;

/// The checks of a running instance the gate, the drain and the diagnosis make.
pub trait Probe {
    /// Whether process `pid` holds the listening unix socket bound at `socket`.
    fn holds(&self, pid: u32, socket: &Path) -> Result<bool>;

    /// The TCP sockets process `pid` listens on of its own (`host:port`).
    fn own_tcp_listeners(&self, pid: u32) -> Result<Vec<String>>;

    /// Asks `request` through `socket` until it is answered as `accept` says or `timeout` passed.
    fn wait_healthy(
        &self,
        socket: &Path,
        request: &health::Request,
        accept: health::Accept,
        timeout: Duration,
    ) -> Result<health::Response>;

    /// The processes `pid` forked that still run (gunicorn's workers).
    fn workers(&self, pid: u32) -> Result<usize>;

    /// Has each of `workers` workers serve `request` through `socket` before the instance takes
    /// traffic ([`health::warm`]); the answers, in order.
    fn warm(
        &self,
        socket: &Path,
        request: &health::Request,
        workers: usize,
        timeout: Duration,
    ) -> Vec<std::io::Result<health::Response>>;

    /// How many connections wait in the backlog of the socket bound at `socket`; none if nothing
    /// listens there.
    fn queued(&self, socket: &Path) -> Result<Option<u32>>;

    /// Why the live socket at `socket` is not what its unit `socket_unit` says (listening, owned
    /// by `group`, relctl's mode), if it is not.
    fn socket_mismatch(&self, socket: &Path, socket_unit: &str, group: &str) -> Result<Option<String>>;

    /// The lines of `unit`'s journal that show why it failed.
    fn journal(&self, unit: &str) -> String;
}

/// This host: `/proc`, the sockets, HTTP over them, `journalctl`.
pub struct Host;

impl Probe for Host {
    fn holds(&self, pid: u32, socket: &Path) -> Result<bool> {
        listener::holds(pid, socket)
    }

    fn own_tcp_listeners(&self, pid: u32) -> Result<Vec<String>> {
        listener::own_tcp_listeners(pid)
    }

    fn wait_healthy(
        &self,
        socket: &Path,
        request: &health::Request,
        accept: health::Accept,
        timeout: Duration,
    ) -> Result<health::Response> {
        health::wait_healthy(socket, request, accept, timeout)
    }

    fn workers(&self, pid: u32) -> Result<usize> {
        children(pid).map(|c| c.len())
    }

    fn warm(
        &self,
        socket: &Path,
        request: &health::Request,
        workers: usize,
        timeout: Duration,
    ) -> Vec<std::io::Result<health::Response>> {
        health::warm(socket, request, workers, WARM_HOLD, timeout, &|| listener::queued(socket))
    }

    fn queued(&self, socket: &Path) -> Result<Option<u32>> {
        listener::queued(socket)
    }

    fn socket_mismatch(&self, socket: &Path, socket_unit: &str, group: &str) -> Result<Option<String>> {
        if !listener::is_listening(socket)? {
            return Ok(Some(format!("{socket_unit} was active but nothing listened at its path")));
        }
        let meta = std::fs::symlink_metadata(socket).with_context(|| format!("reading {}", socket.display()))?;
        let gid = nix::unistd::Group::from_name(group).with_context(|| format!("looking up group {group}"))?;
        if gid.is_some_and(|g| g.gid.as_raw() != meta.gid()) {
            return Ok(Some(format!("its group is gid {}, the unit says {group}", meta.gid())));
        }
        if meta.mode() & 0o777 != units::SOCKET_MODE {
            return Ok(Some(format!(
                "its mode is {:04o}, the unit says {:04o}",
                meta.mode() & 0o777,
                units::SOCKET_MODE
            )));
        }
        Ok(None)
    }

    fn journal(&self, unit: &str) -> String {
        std::process::Command::new("journalctl")
            .args(["-u", unit, "-n", "200", "--no-pager", "-o", "short-precise"])
            .output()
            .map(|o| last_error(&String::from_utf8_lossy(&o.stdout)))
            .unwrap_or_else(|e| format!("(journalctl could not run: {e})\n"))
    }
}

/// How long warm-up requests are held back for the workers to accept their connections.
const WARM_HOLD: Duration = Duration::from_secs(1);

/// The children of process `pid`: from `/proc/<pid>/task/*/children` where the kernel has them
/// (each thread's own), else every process whose parent it is (`/proc/*/stat`).
fn children(pid: u32) -> Result<Vec<u32>> {
    let tasks = format!("/proc/{pid}/task");
    let mut found = Vec::new();
    let mut listed = true;
    for task in std::fs::read_dir(&tasks).with_context(|| format!("reading {tasks}"))? {
        let file = task.with_context(|| format!("reading {tasks}"))?.path().join("children");
        match std::fs::read_to_string(&file) {
            Ok(text) => found.extend(text.split_whitespace().filter_map(|c| c.parse::<u32>().ok())),
            // A kernel without CONFIG_PROC_CHILDREN, or a thread gone since the listing.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                listed = listed && !file.parent().is_some_and(Path::exists)
            }
            Err(e) => return Err(e).with_context(|| format!("reading {}", file.display())),
        }
    }
    if listed {
        return Ok(found);
    }
    found.clear();
    for entry in std::fs::read_dir("/proc").context("reading /proc")? {
        let entry = entry.context("reading /proc")?;
        let Some(child) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        // A process gone since the listing is no child any more.
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        if parent_in_stat(&stat) == Some(pid) {
            found.push(child);
        }
    }
    Ok(found)
}

/// The parent PID in a `/proc/<pid>/stat` line: the second field after the command, which is in
/// parentheses and may hold spaces and parentheses itself.
fn parent_in_stat(stat: &str) -> Option<u32> {
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// The journal lines worth showing: from the start of the last error the app logged (a Python
/// traceback, Django's "Internal Server Error: <path>") when it is among them, at most 60 lines,
/// else the last 15.
pub fn last_error(journal: &str) -> String {
    let lines: Vec<&str> = journal.lines().collect();
    let starts = |l: &&str| l.contains("Traceback (most recent call last):") || l.contains("Internal Server Error: ");
    let from = match lines.iter().rposition(starts) {
        // Django's message comes right before its traceback.
        Some(i) if i > 0 && lines[i - 1].contains("Internal Server Error: ") => i - 1,
        Some(i) => i,
        None => lines.len().saturating_sub(15),
    };
    let shown = &lines[from..lines.len().min(from + 60)];
    shown.iter().map(|l| format!("{l}\n")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_parent_comes_from_after_the_command() {
        assert_eq!(parent_in_stat("42 (gunicorn) S 7 42 42 0 -1"), Some(7));
        assert_eq!(parent_in_stat("43 (a) b) (c) R 42 43 43 0"), Some(42));
        assert_eq!(parent_in_stat("garbage"), None);
        let me = std::process::id();
        let child = std::process::Command::new("sleep").arg("5").spawn().unwrap();
        let found = children(me);
        let mut child = child;
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(found.unwrap().contains(&child.id()), "sleep is a child of the test");
    }

    #[test]
    fn a_failed_gate_shows_the_apps_last_error_from_its_start() {
        let mut journal: Vec<String> = (0..100).map(|i| format!("Dec 02 gunicorn[1]: noise {i}")).collect();
        journal.push("Dec 02 gunicorn[7]: Internal Server Error: /".into());
        journal.push("Dec 02 gunicorn[7]: Traceback (most recent call last):".into());
        journal.extend((0..40).map(|i| format!("Dec 02 gunicorn[7]:   File \"x.py\", line {i}")));
        journal.push("Dec 02 gunicorn[7]: django.core.exceptions.ImproperlyConfigured: boom".into());
        journal.push("Dec 02 systemd[1]: Stopping x".into());
        let shown = last_error(&journal.join("\n"));
        assert!(shown.starts_with("Dec 02 gunicorn[7]: Internal Server Error: /\n"), "{shown}");
        assert!(shown.contains("ImproperlyConfigured: boom\nDec 02 systemd[1]: Stopping x\n"), "{shown}");
        let quiet: Vec<String> = (0..30).map(|i| format!("line {i}")).collect();
        let shown = last_error(&quiet.join("\n"));
        assert!(shown.starts_with("line 15\n") && shown.ends_with("line 29\n"), "{shown}");
    }
}
