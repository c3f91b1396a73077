//! Who changed what: every changing command (build, promote, rollback, restart, start, stop,
//! reload, destroy, maintenance, site, renew) leaves one record — time, who (the user behind sudo
//! or SSH, not just root), host, command, build, release from → to, result, duration — in the
//! journal (a fixed `MESSAGE_ID`, fields `RELCTL_*`) and in the app's history
//! (`/var/lib/relctl/<app>/history.jsonl`, one JSON object a line), which `relctl history`
//! shows. The manifest's `[notify]` commands then get the record (after a deploy, rollback or
//! failure); their failure is reported and never fails the command.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::name::BuildName;
use crate::release::id::ReleaseId;

/// The journal's `MESSAGE_ID` of every record (`journalctl MESSAGE_ID=e9f6fc50b985472cb1378c3103c1040d`).
pub const MESSAGE_ID: &str = "e9f6fc50b985472cb1378c3103c1040d";

/// The variable `relctl -H` sets on the host: who ran it where (`alice@laptop`), as the
/// controller says.
pub const ORIGIN_ENV: &str = "RELCTL_ORIGIN";
/// The variable `relctl -H` sets on the host: sshd's `SSH_CONNECTION` of the session, which
/// sudo does not pass on.
pub const SSH_ENV: &str = "RELCTL_SSH_CONNECTION";

/// The history file of `app`, beside `relctl site`'s state.
pub fn history_file(app: &str) -> PathBuf {
    crate::release::layout::relctl_state_dir(app).join("history.jsonl")
}

/// How a command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Ok,
    Failed,
}

/// Who ran a command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Who {
    /// The person: the user sudo was run by (`SUDO_USER`), else the login user
    /// (`/proc/self/loginuid`), else the user relctl runs as.
    pub user: String,
    /// How: `sudo`, `ssh` (with the client's address), `root`, or `-H from alice@laptop`.
    pub via: String,
}

/// One record.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    #[serde(with = "crate::time::serde_rfc3339")]
    pub time: jiff::Timestamp,
    pub app: String,
    pub host: String,
    #[serde(flatten)]
    pub who: Who,
    /// The subcommand (`build`, `rollback`, …; `build --adopt` is `adopt`).
    pub command: String,
    /// relctl's arguments as given (the manifest's path left out).
    pub args: Vec<String>,
    pub build: Option<BuildName>,
    /// The build's current release before and after.
    pub from: Option<ReleaseId>,
    pub to: Option<ReleaseId>,
    pub result: Outcome,
    /// The error, one line, when it failed.
    pub error: Option<String>,
    pub duration_s: f64,
}

impl Record {
    /// The one-line summary the journal's MESSAGE carries.
    pub fn summary(&self) -> String {
        let build = self.build.as_ref().map(|b| format!(" {b}")).unwrap_or_default();
        let releases = match (&self.from, &self.to) {
            (Some(f), Some(t)) if f != t => format!(": {f} -> {t}"),
            (None, Some(t)) => format!(": -> {t}"),
            (Some(f), _) => format!(": at {f}"),
            _ => String::new(),
        };
        let result = match (self.result, &self.error) {
            (Outcome::Ok, _) => "ok".to_string(),
            (Outcome::Failed, Some(e)) => format!("failed: {e}"),
            (Outcome::Failed, None) => "failed".to_string(),
        };
        format!(
            "relctl {}{build} by {} ({}) on {}{releases}, {result} in {:.1}s",
            self.command, self.who.user, self.who.via, self.host, self.duration_s
        )
    }
}

/// The user and the way in, from this process's environment and kernel state.
pub fn who() -> Who {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let login = std::fs::read_to_string("/proc/self/loginuid")
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .filter(|uid| *uid != u32::MAX)
        .and_then(|uid| nix::unistd::User::from_uid(uid.into()).ok().flatten())
        .map(|u| u.name);
    let me = nix::unistd::User::from_uid(nix::unistd::geteuid()).ok().flatten().map_or_else(|| "?".into(), |u| u.name);
    let ssh =
        env(SSH_ENV).or_else(|| env("SSH_CONNECTION")).and_then(|c| c.split_whitespace().next().map(String::from));
    let user = env("SUDO_USER").or(login).unwrap_or(me);
    let mut via = match (env("SUDO_USER").is_some(), &ssh) {
        (true, Some(addr)) => format!("sudo, ssh from {addr}"),
        (true, None) => "sudo".to_string(),
        (false, Some(addr)) => format!("ssh from {addr}"),
        (false, None) => "local".to_string(),
    };
    if let Some(origin) = env(ORIGIN_ENV) {
        via.push_str(&format!(", relctl -H from {origin}"));
    }
    Who { user, via }
}

/// This host's name.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_else(|_| "?".into())
}

/// `user@host` of whoever runs relctl here, for [`ORIGIN_ENV`] on another host.
pub fn origin() -> String {
    format!("{}@{}", who().user, hostname())
}

/// Writes `record` to the journal and appends it to `history` (created 0600). Both are tried;
/// the first error is returned.
pub fn record(record: &Record, history: &Path) -> Result<()> {
    let journal = journal(record);
    let file = append(record, history);
    journal.and(file)
}

fn journal(r: &Record) -> Result<()> {
    use libsystemd::logging::{journal_send, Priority};
    let priority = if r.result == Outcome::Ok { Priority::Info } else { Priority::Error };
    let opt = |v: Option<String>| v.unwrap_or_default();
    let fields = [
        ("MESSAGE_ID", MESSAGE_ID.to_string()),
        ("SYSLOG_IDENTIFIER", "relctl".to_string()),
        ("RELCTL_APP", r.app.clone()),
        ("RELCTL_COMMAND", r.command.clone()),
        ("RELCTL_ARGS", r.args.join(" ")),
        ("RELCTL_BUILD", opt(r.build.as_ref().map(|b| b.to_string()))),
        ("RELCTL_USER", r.who.user.clone()),
        ("RELCTL_VIA", r.who.via.clone()),
        ("RELCTL_FROM", opt(r.from.as_ref().map(|i| i.to_string()))),
        ("RELCTL_TO", opt(r.to.as_ref().map(|i| i.to_string()))),
        ("RELCTL_RESULT", if r.result == Outcome::Ok { "ok" } else { "failed" }.to_string()),
        ("RELCTL_DURATION_S", format!("{:.3}", r.duration_s)),
    ];
    if !libsystemd::logging::connected_to_journal() && !Path::new("/run/systemd/journal/socket").exists() {
        return Ok(());
    }
    journal_send(priority, &r.summary(), fields.into_iter())
        .map_err(|e| anyhow::anyhow!("{e}"))
        .context("writing to the journal")
}

fn append(r: &Record, history: &Path) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = history.parent() {
        crate::host::atomic::ensure_root_dir(dir, 0o755)?;
    }
    let mut line = serde_json::to_string(r).context("encoding the history record")?;
    line.push('\n');
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(history)
        .with_context(|| format!("opening {}", history.display()))?;
    // One write of a whole line: concurrent appends (two apps' lock holders) do not interleave.
    f.write_all(line.as_bytes()).with_context(|| format!("appending to {}", history.display()))
}

/// The records of `history`, oldest first (only `build`'s, when given). A line that does not
/// parse (a newer relctl's, a torn write) is skipped.
pub fn read(history: &Path, build: Option<&BuildName>) -> Result<Vec<Record>> {
    let Some(text) = crate::host::atomic::read_string_if_exists(history)? else { return Ok(Vec::new()) };
    Ok(text
        .lines()
        .filter_map(|l| serde_json::from_str::<Record>(l).ok())
        .filter(|r| build.is_none_or(|b| r.build.as_ref() == Some(b)))
        .collect())
}

/// `[notify]`: runs each command with `sh -c`, the record as JSON on stdin and as `RELCTL_*`
/// variables; a command that fails or outlives `timeout` is reported in the returned messages.
pub fn notify(commands: &[String], r: &Record, timeout: Duration) -> Vec<String> {
    let json = serde_json::to_string(r).unwrap_or_default();
    let mut problems = Vec::new();
    for c in commands {
        if let Err(e) = run_notify(c, r, &json, timeout) {
            problems.push(format!("notification `{c}`: {e:#}"));
        }
    }
    problems
}

fn run_notify(command: &str, r: &Record, json: &str, timeout: Duration) -> Result<()> {
    use std::process::{Command, Stdio};
    let opt = |v: Option<String>| v.unwrap_or_default();
    let mut child = Command::new("/bin/sh")
        .arg("-c")
        .arg(command)
        .env("RELCTL_EVENT", &r.command)
        .env("RELCTL_RESULT", if r.result == Outcome::Ok { "ok" } else { "failed" })
        .env("RELCTL_APP", &r.app)
        .env("RELCTL_BUILD", opt(r.build.as_ref().map(|b| b.to_string())))
        .env("RELCTL_FROM", opt(r.from.as_ref().map(|i| i.to_string())))
        .env("RELCTL_TO", opt(r.to.as_ref().map(|i| i.to_string())))
        .env("RELCTL_USER", &r.who.user)
        .env("RELCTL_HOST", &r.host)
        .env("RELCTL_ERROR", opt(r.error.clone()))
        .env("RELCTL_SUMMARY", r.summary())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting /bin/sh")?;
    if let Some(mut stdin) = child.stdin.take() {
        // A command that does not read its stdin closes it: not an error.
        let _ignored = stdin.write_all(json.as_bytes());
    }
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            if status.success() {
                return Ok(());
            }
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                use std::io::Read;
                let _partial = e.read_to_string(&mut err);
            }
            let last = err.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or_default().trim().to_string();
            anyhow::bail!("{status}{}", if last.is_empty() { String::new() } else { format!(": {last}") });
        }
        if std::time::Instant::now() > deadline {
            child.kill().ok();
            child.wait().ok();
            anyhow::bail!("still running after {}s, stopped", timeout.as_secs());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> Record {
        Record {
            time: "2026-12-03T15:00:00Z".parse().unwrap(),
            app: "medctrl".into(),
            host: "web1".into(),
            who: Who { user: "alice".into(), via: "sudo".into() },
            command: "build".into(),
            args: vec!["build".into(), "production".into()],
            build: Some("production".parse().unwrap()),
            from: Some(ReleaseId::parse("20261203T140000Z-abc1234").unwrap()),
            to: Some(ReleaseId::parse("20261203T150000Z-def5678").unwrap()),
            result: Outcome::Ok,
            error: None,
            duration_s: 12.25,
        }
    }

    #[test]
    fn records_append_as_lines_and_read_back_by_build() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("medctrl/history.jsonl");
        append(&record(), &file).unwrap();
        let mut other = record();
        other.build = Some("testing".parse().unwrap());
        other.result = Outcome::Failed;
        other.error = Some("the gate failed".into());
        append(&other, &file).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
        std::fs::write(&file, format!("{}not json\n", std::fs::read_to_string(&file).unwrap())).unwrap();
        assert_eq!(read(&file, None).unwrap().len(), 2, "a torn line is skipped");
        let testing = read(&file, Some(&"testing".parse().unwrap())).unwrap();
        assert_eq!(testing.len(), 1);
        assert_eq!(
            testing[0].summary(),
            "relctl build testing by alice (sudo) on web1: 20261203T140000Z-abc1234 -> 20261203T150000Z-def5678, failed: the gate failed in 12.2s"
        );
        let line = std::fs::read_to_string(&file).unwrap();
        assert!(line.starts_with("{\"time\":\"2026-12-03T15:00:00Z\",\"app\":\"medctrl\",\"host\":\"web1\",\"user\":\"alice\",\"via\":\"sudo\",\"command\":\"build\""), "{line}");
    }

    #[test]
    fn notifications_get_the_record_and_their_failures_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("got");
        let ok = format!(
            "cat > {o}.json; echo \"$RELCTL_EVENT $RELCTL_RESULT $RELCTL_BUILD $RELCTL_USER\" > {o}",
            o = out.display()
        );
        let problems =
            notify(&[ok, "echo nope >&2; exit 3".into(), "sleep 5".into()], &record(), Duration::from_millis(300));
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "build ok production alice\n");
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.path().join("got.json")).unwrap()).unwrap();
        assert_eq!(json["to"], "20261203T150000Z-def5678");
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert_eq!(problems[0], "notification `echo nope >&2; exit 3`: exit status: 3: nope");
        assert_eq!(problems[1], "notification `sleep 5`: still running after 0s, stopped");
    }
}
