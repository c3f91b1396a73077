//! Reading units' journal entries with `journalctl -o json` (a child process; relctl does not
//! read journal files itself), one [`Entry`] at a time as journalctl prints them, so `--follow`
//! streams.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};

use anyhow::{bail, Context, Result};
use serde::Deserialize;

/// The fields relctl asks journalctl for (`--output-fields`; it adds the timestamps and cursor).
const FIELDS: &str = "MESSAGE,PRIORITY,_PID,_SYSTEMD_UNIT,UNIT,OBJECT_SYSTEMD_UNIT,COREDUMP_UNIT";

/// What journalctl says when the user may not read the system journal.
const NO_PERMISSION: &str = "insufficient permissions";

/// Which entries to read.
#[derive(Debug, Clone)]
pub struct Query {
    /// Entries of any of these units (journalctl `-u`, each: the unit's own output and systemd's
    /// messages about it).
    pub units: Vec<String>,
    /// Only the last N.
    pub lines: Option<u64>,
    /// Only those at or after this time, in journalctl's syntax.
    pub since: Option<String>,
    /// Keep reading new entries until the reader stops or journalctl is ended.
    pub follow: bool,
}

impl Query {
    /// journalctl's arguments for this query.
    pub fn args(&self) -> Vec<String> {
        let mut args: Vec<String> =
            ["--no-pager", "--all", "--output=json", &format!("--output-fields={FIELDS}")].map(String::from).into();
        for unit in &self.units {
            args.push(format!("--unit={unit}"));
        }
        if let Some(n) = self.lines {
            args.push(format!("--lines={n}"));
        }
        if let Some(since) = &self.since {
            args.push(format!("--since={since}"));
        }
        if self.follow {
            args.push("--follow".into());
        }
        args
    }
}

/// One journal entry, as far as relctl shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// When it was written, in microseconds since the epoch (`__REALTIME_TIMESTAMP`).
    pub realtime_us: i64,
    /// The units it names, most specific first: the unit that wrote it (`_SYSTEMD_UNIT`), the unit
    /// systemd writes about (`UNIT`, `OBJECT_SYSTEMD_UNIT`), the unit that dumped core.
    pub units: Vec<String>,
    pub pid: Option<u32>,
    /// 0 (emerg) .. 7 (debug).
    pub priority: Option<u8>,
    pub message: String,
}

/// A field as journalctl's JSON has it: text; bytes (an array of numbers, when not UTF-8); or
/// an array of either when the entry has the field more than once. Null (a field journalctl
/// left out) is a missing field.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Field {
    Text(String),
    Bytes(Vec<u8>),
    Many(Vec<Field>),
}

impl Field {
    /// The (first) value as text.
    fn text(&self) -> Option<String> {
        match self {
            Field::Text(s) => Some(s.clone()),
            Field::Bytes(b) => Some(String::from_utf8_lossy(b).into_owned()),
            Field::Many(all) => all.first().and_then(Field::text),
        }
    }
}

#[derive(Debug, Deserialize)]
struct Raw {
    #[serde(rename = "__REALTIME_TIMESTAMP")]
    realtime: Option<Field>,
    #[serde(rename = "MESSAGE")]
    message: Option<Field>,
    #[serde(rename = "PRIORITY")]
    priority: Option<Field>,
    #[serde(rename = "_PID")]
    pid: Option<Field>,
    #[serde(rename = "_SYSTEMD_UNIT")]
    systemd_unit: Option<Field>,
    #[serde(rename = "UNIT")]
    unit: Option<Field>,
    #[serde(rename = "OBJECT_SYSTEMD_UNIT")]
    object_unit: Option<Field>,
    #[serde(rename = "COREDUMP_UNIT")]
    coredump_unit: Option<Field>,
}

impl Entry {
    /// Parses one line of `journalctl -o json`.
    pub fn parse(line: &str) -> Result<Entry> {
        let raw: Raw = serde_json::from_str(line).context("not a journal entry in JSON")?;
        let text = |f: &Option<Field>| f.as_ref().and_then(Field::text);
        let realtime = text(&raw.realtime).context("the entry has no __REALTIME_TIMESTAMP")?;
        let realtime_us =
            realtime.parse().with_context(|| format!("__REALTIME_TIMESTAMP {realtime:?} is not a number"))?;
        let units =
            [&raw.systemd_unit, &raw.unit, &raw.object_unit, &raw.coredump_unit].into_iter().filter_map(text).collect();
        Ok(Entry {
            realtime_us,
            units,
            pid: text(&raw.pid).and_then(|p| p.parse().ok()),
            priority: text(&raw.priority).and_then(|p| p.parse().ok()),
            message: text(&raw.message).unwrap_or_default(),
        })
    }
}

/// Whether the reader wants more entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    More,
    /// Stop reading (e.g. nobody reads relctl's output any more).
    Stop,
}

/// Runs journalctl for `query` and hands each entry to `each` as soon as journalctl prints it.
/// Returns how many entries there were. Fails when journalctl cannot run or fails; a failure for
/// want of permission says who may read the journal.
pub fn read(query: &Query, mut each: impl FnMut(Entry) -> Result<Flow>) -> Result<u64> {
    let child = Command::new("journalctl")
        .args(query.args())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("running journalctl (is systemd installed?)")?;
    let mut journalctl = Running(child);
    let stdout = journalctl.0.stdout.take().expect("stdout is piped");
    let mut stderr = journalctl.0.stderr.take().expect("stderr is piped");
    // Read stderr alongside, so journalctl never blocks on a full stderr pipe.
    let errors = std::thread::spawn(move || {
        let mut text = String::new();
        stderr.read_to_string(&mut text).map(|_| text)
    });
    let mut count = 0;
    for line in BufReader::new(stdout).lines() {
        let line = line.context("reading journalctl's output")?;
        if line.trim().is_empty() {
            continue;
        }
        let entry = Entry::parse(&line).with_context(|| format!("journalctl printed {:?}", clip(&line)))?;
        count += 1;
        if each(entry)? == Flow::Stop {
            // Ends journalctl (it would otherwise follow forever); its exit status is moot.
            return Ok(count);
        }
    }
    let status = journalctl.0.wait().context("waiting for journalctl")?;
    let stderr = match errors.join() {
        Ok(read) => read.context("reading journalctl's errors")?,
        Err(_) => bail!("the thread reading journalctl's errors panicked"),
    };
    check(status, &stderr)?;
    // Warnings on success (e.g. a corrupt journal file it skipped) are journalctl's to tell.
    for line in stderr.lines().filter(|l| !l.trim().is_empty()) {
        crate::report::err(format!("journalctl: {}\n", line.trim()));
    }
    Ok(count)
}

/// Whether journalctl shows this user the system journal: root, or a member of a group it may
/// read it as (systemd-journal; adm and wheel, which systemd's tmpfiles grant it by ACL). Only a
/// guess, to explain an empty result; journalctl decides.
pub fn sees_system_journal() -> bool {
    use nix::unistd::{getegid, geteuid, getgroups, Group};
    if geteuid().is_root() {
        return true;
    }
    let mut groups = getgroups().unwrap_or_default();
    groups.push(getegid());
    ["systemd-journal", "adm", "wheel"]
        .into_iter()
        .any(|name| matches!(Group::from_name(name), Ok(Some(g)) if groups.contains(&g.gid)))
}

/// journalctl's exit status and stderr as a result: its own words, and who may read the journal
/// when it lacked the permission.
fn check(status: ExitStatus, stderr: &str) -> Result<()> {
    if status.success() {
        return Ok(());
    }
    let said: Vec<&str> = stderr.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    let said = if said.is_empty() { "it printed no reason".to_string() } else { said.join(" ") };
    if said.contains(NO_PERMISSION) {
        bail!(
            "journalctl cannot read the system journal as this user ({said}): run relctl logs as root (sudo), or as a member of the systemd-journal or adm group"
        );
    }
    bail!("journalctl failed ({status}): {said}");
}

fn clip(line: &str) -> &str {
    match line.char_indices().nth(200) {
        Some((i, _)) => &line[..i],
        None => line,
    }
}

/// A journalctl that is ended (and reaped) when dropped, whether it finished or not.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        // Both fail only when journalctl already exited and was reaped: nothing left to end.
        self.0.kill().ok();
        self.0.wait().ok();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SERVICE_LINE: &str = r#"{"__REALTIME_TIMESTAMP":"1795471171603396","_SYSTEMD_UNIT":"medctrl_next@development.service","_PID":"250","PRIORITY":"6","__CURSOR":"s=5;i=3d","MESSAGE":"[2026-11-23 21:59:31 +0000] [250] [INFO] Worker exiting (pid: 250)"}"#;
    const SYSTEMD_LINE: &str = r#"{"_PID":"1","__REALTIME_TIMESTAMP":"1795471171869766","_SYSTEMD_UNIT":"init.scope","UNIT":"medctrl_next@development.socket","PRIORITY":"6","MESSAGE":"medctrl_next@development.socket: Deactivated successfully."}"#;

    #[test]
    fn parses_a_services_line() {
        let e = Entry::parse(SERVICE_LINE).unwrap();
        assert_eq!(
            e,
            Entry {
                realtime_us: 1795471171603396,
                units: vec!["medctrl_next@development.service".into()],
                pid: Some(250),
                priority: Some(6),
                message: "[2026-11-23 21:59:31 +0000] [250] [INFO] Worker exiting (pid: 250)".into(),
            }
        );
    }

    #[test]
    fn systemds_messages_name_the_unit_they_are_about_after_their_own() {
        let e = Entry::parse(SYSTEMD_LINE).unwrap();
        assert_eq!(e.units, ["init.scope", "medctrl_next@development.socket"]);
        assert_eq!(e.pid, Some(1));
    }

    #[test]
    fn binary_repeated_and_missing_fields() {
        // Not UTF-8: an array of bytes; twice: an array of values; too long without --all: null.
        let e =
            Entry::parse(r#"{"__REALTIME_TIMESTAMP":"1","MESSAGE":[104,105,255],"PRIORITY":["3","4"],"_PID":null}"#)
                .unwrap();
        assert_eq!(e.message, "hi\u{fffd}");
        assert_eq!(e.priority, Some(3));
        assert_eq!(e.pid, None);
        assert!(e.units.is_empty());
        let e = Entry::parse(r#"{"__REALTIME_TIMESTAMP":"1","MESSAGE":null}"#).unwrap();
        assert_eq!(e.message, "");
    }

    #[test]
    fn refuses_what_is_not_an_entry() {
        assert!(Entry::parse("-- No entries --").is_err());
        let err = Entry::parse(r#"{"MESSAGE":"x"}"#).unwrap_err().to_string();
        assert!(err.contains("__REALTIME_TIMESTAMP"), "{err}");
        assert!(Entry::parse(r#"{"__REALTIME_TIMESTAMP":"soon"}"#).is_err());
    }

    #[test]
    fn arguments() {
        let q = Query {
            units: vec!["a@b.service".into(), "a@b.socket".into()],
            lines: Some(200),
            since: Some("10 min ago".into()),
            follow: true,
        };
        let args = q.args();
        assert_eq!(
            &args[..3],
            ["--no-pager", "--all", "--output=json"],
            "--all: long messages in full rather than null"
        );
        assert_eq!(
            &args[4..],
            ["--unit=a@b.service", "--unit=a@b.socket", "--lines=200", "--since=10 min ago", "--follow"]
        );
        let q = Query { lines: None, since: None, follow: false, ..q };
        assert_eq!(q.args().len(), 6);
    }

    #[test]
    fn failures_say_what_journalctl_said() {
        use std::os::unix::process::ExitStatusExt;
        let failed = ExitStatus::from_raw(1 << 8);
        assert!(check(ExitStatus::from_raw(0), "").is_ok());
        let err = check(failed, "Failed to parse timestamp: garbage\n").unwrap_err().to_string();
        assert_eq!(err, "journalctl failed (exit status: 1): Failed to parse timestamp: garbage");
        let err = check(failed, "Hint: You are currently not seeing messages from other users and the system.\n      Users in groups 'adm', 'systemd-journal' can see all messages.\nNo journal files were opened due to insufficient permissions.\n").unwrap_err().to_string();
        assert!(err.starts_with("journalctl cannot read the system journal as this user ("), "{err}");
        assert!(err.ends_with("run relctl logs as root (sudo), or as a member of the systemd-journal or adm group"));
        assert!(!err.contains('\n'));
        let err = check(failed, "").unwrap_err().to_string();
        assert!(err.ends_with("it printed no reason"), "{err}");
    }
}
