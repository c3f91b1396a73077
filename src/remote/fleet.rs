//! Commands on other hosts ([`Job`]: what is shipped and run), and across several: a roll,
//! `--serial N` hosts at a time, each through the full command (and so its health gate), where the
//! first group with a failure is the last group that runs — the hosts after it are not reached —
//! and the result is one row per host; or `status` of every host, merged.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use serde::{Deserialize, Serialize};

use crate::manifest::target::Target;
use crate::manifest::Loaded;
use crate::name::BuildName;
use crate::release::id::ReleaseId;
use crate::remote::ssh::{Output, Remote, Shipment};
use crate::report::{self, terminal_safe, Mode};
use crate::systemd::unit::ActiveState;

/// What a command run elsewhere ships and runs there.
pub struct Job {
    pub loaded: Loaded,
    shipment: Shipment,
    /// relctl's arguments for the host (without -H/--hosts/--serial/-f).
    pub args: Vec<String>,
    /// The sources' git revision, carried over into the release id.
    revision: Option<String>,
    /// The build whose release a roll's table shows.
    build_dir: Option<PathBuf>,
}

/// What a roll ships to each host besides the manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ships {
    /// The sources too: the command builds a release from them (`build`).
    Sources,
    /// The manifest alone.
    ManifestOnly,
}

impl Job {
    /// `build`: the build whose release a roll reports.
    pub fn new(loaded: Loaded, ships: Ships, build: Option<&BuildName>, args: Vec<String>) -> Result<Job> {
        let source = match ships {
            Ships::Sources => Some(crate::plan::build::source_copy(&loaded)?),
            Ships::ManifestOnly => None,
        };
        let revision = match &source {
            Some(s) => crate::release::git::revision(&s.source)?.map(|r| r.label()),
            None => None,
        };
        let shipment = Shipment::new(&loaded, source)?;
        let build_dir = match build {
            Some(b) => Some(crate::plan::app(&loaded)?.layout.build(b).build_dir),
            None => None,
        };
        Ok(Job { loaded, shipment, args, revision, build_dir })
    }

    /// Ships and runs on one host; the error is for a host relctl could not run on.
    /// Returns relctl's exit code there and its captured output.
    pub fn run_on(&self, target: &Target, output: &Output) -> Result<(Remote, u8, Vec<u8>)> {
        let host = Remote::new(target.clone())?;
        host.check_version()?;
        let dir = host.ship(&self.shipment)?;
        let (outcome, captured) = host.run(&dir, &self.args, self.revision.as_deref(), output)?;
        Ok((host, outcome, captured))
    }

    /// One host of a roll: its output behind `<host> | ` (captured with `--json`; only its errors
    /// with `-q`), its row.
    fn roll_on(&self, target: &Target, mode: Mode) -> HostResult {
        let prefix = target.to_string();
        let output = Output::for_hosts(mode, prefix.clone());
        let mut row = HostResult { result: HostState::Failed, ..HostResult::not_reached(target) };
        match self.run_on(target, &output) {
            Ok((host, code, captured)) => {
                row.exit_code = Some(code);
                if code == 0 {
                    row.result = HostState::Ok;
                }
                match json_answer(&captured) {
                    Ok(doc) => row.output = doc,
                    Err(why) => {
                        report::err(format!("{prefix} | relctl: {why}\n"));
                        row.result = HostState::Failed;
                        row.error = Some(why);
                    }
                }
                row.release = self.build_dir.as_ref().and_then(|d| {
                    let link = shlex::try_quote(&d.join("current").display().to_string()).ok()?.into_owned();
                    host.query(&format!("readlink {link}")).map(|r| r.trim_start_matches("releases/").to_string())
                });
            }
            Err(e) => {
                let why = crate::error::one_line(&e);
                report::err(format!("{prefix} | relctl: {why}\n"));
                row.error = Some(why);
            }
        }
        row
    }
}

/// Rolls `job` over `hosts`, `serial` at a time (see [`roll`]), showing their output as `mode` wants.
pub fn roll_job(job: &Job, hosts: &[Target], serial: usize, mode: Mode) -> Vec<HostResult> {
    roll(hosts, serial, |target| job.roll_on(target, mode))
}

/// A host's `--json` document (None when it printed nothing, e.g. it failed); the error says what
/// was wrong with one that is not JSON, and how it begins.
pub fn json_answer(answer: &[u8]) -> Result<Option<serde_json::Value>, String> {
    if answer.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    serde_json::from_slice(answer)
        .map(Some)
        .map_err(|e| format!("its --json answer is not JSON ({e}); it begins {}", beginning(answer)))
}

/// The first bytes of a host's answer, quoted and escaped for the terminal.
fn beginning(answer: &[u8]) -> String {
    const SHOWN: usize = 80;
    let text = String::from_utf8_lossy(&answer[..answer.len().min(SHOWN)]);
    let more = if answer.len() > SHOWN { "..." } else { "" };
    format!("\"{}\"{more}", terminal_safe(&text).replace('\n', "\\n"))
}

/// What `status` said on one host: its `--json` document, or why relctl could not ask or could
/// not read the answer.
pub struct HostStatus {
    pub host: String,
    /// relctl's exit code there, and its answer.
    pub status: Result<(u8, StatusAnswer), String>,
}

/// A host's `relctl --json status` answer: the document as it came (for `--json`), and what the
/// table shows of each build, read by type.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusAnswer {
    pub doc: serde_json::Value,
    pub app: String,
    pub builds: Vec<BuildRow>,
}

/// What a host's status document must hold (the fields of `relctl --json status` a table shows).
#[derive(Debug, Deserialize)]
struct StatusDoc {
    app: String,
    builds: Vec<BuildRow>,
}

/// One build of a host's status answer.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct BuildRow {
    pub build: String,
    /// The serving instance's ActiveState, as systemd spells it (a value this relctl does not
    /// know reads as `Other`).
    #[serde(deserialize_with = "active_state")]
    pub state: ActiveState,
    pub sub_state: String,
    pub release: Option<ReleaseId>,
    pub main_pid: Option<u32>,
    pub route: Option<String>,
    /// While the build sleeps when idle (a host's relctl that knows of sleeping says so).
    #[serde(default)]
    pub sleeping: Option<Sleeping>,
}

/// `"sleeping"` of a build in a host's status answer.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Sleeping {
    pub for_s: Option<u64>,
}

fn active_state<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<ActiveState, D::Error> {
    Ok(ActiveState::parse(&String::deserialize(deserializer)?))
}

/// Reads a host's answer to `relctl --json status`, which exited with `code`: an error says
/// what was wrong (no answer, not JSON, a field missing or of the wrong type) and how the answer
/// begins.
pub fn parse_status(code: u8, answer: &[u8]) -> Result<StatusAnswer, String> {
    let doc = match (json_answer(answer)?, code) {
        (Some(doc), _) => doc,
        (None, 1..) => return Err(format!("relctl status exited {code} there without an answer")),
        (None, _) => return Err("relctl status answered nothing".into()),
    };
    let typed: StatusDoc = serde_path_to_error::deserialize(&doc).map_err(|e| {
        format!(
            "its status answer is not relctl's status JSON (at {}: {}); it begins {}",
            e.path(),
            e.inner(),
            beginning(answer)
        )
    })?;
    Ok(StatusAnswer { doc, app: typed.app, builds: typed.builds })
}

/// `status` on every host at once (`job` runs `status` with `--json`).
pub fn status_of(job: &Job, hosts: &[Target]) -> Vec<HostStatus> {
    std::thread::scope(|s| {
        let handles: Vec<_> = hosts
            .iter()
            .map(|t| {
                s.spawn(move || {
                    let status = job
                        .run_on(t, &Output::Captured(t.to_string()))
                        .map_err(|e| crate::error::one_line(&e))
                        .and_then(|(_, code, out)| Ok((code, parse_status(code, &out)?)));
                    HostStatus { host: t.to_string(), status }
                })
            })
            .collect();
        handles
            .into_iter()
            .zip(hosts)
            .map(|(h, t)| {
                h.join().unwrap_or_else(|_| HostStatus {
                    host: t.to_string(),
                    status: Err("relctl's thread for this host panicked".into()),
                })
            })
            .collect()
    })
}

/// The rows of one status table over hosts: host, build, state, release, PID, route.
pub fn status_rows(statuses: &[HostStatus]) -> Vec<[String; 6]> {
    let mut table = Vec::new();
    for h in statuses {
        match &h.status {
            Ok((_, answer)) => {
                let dash = || "-".to_string();
                for b in &answer.builds {
                    table.push([
                        h.host.clone(),
                        b.build.clone(),
                        match &b.sleeping {
                            Some(Sleeping { for_s: Some(n) }) => {
                                format!("sleeping ({})", crate::report::duration_s(*n))
                            }
                            Some(_) => "sleeping".to_string(),
                            None => format!("{} ({})", b.state, b.sub_state),
                        },
                        b.release.as_ref().map_or_else(dash, ReleaseId::to_string),
                        b.main_pid.map_or_else(dash, |p| p.to_string()),
                        b.route.clone().unwrap_or_else(dash),
                    ]);
                }
            }
            Err(why) => {
                table.push([h.host.clone(), "-".into(), format!("unknown: {why}"), "-".into(), "-".into(), "-".into()])
            }
        }
    }
    table
}

/// How one host came out of a roll.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum HostState {
    Ok,
    Failed,
    /// An earlier host failed: this one was left as it was.
    NotReached,
}

/// One host's row.
#[derive(Debug, Clone, Serialize)]
pub struct HostResult {
    pub host: String,
    pub result: HostState,
    /// relctl's exit code on the host, when it ran there.
    pub exit_code: Option<u8>,
    /// Why it failed before relctl ran there (unreachable, another version, ...).
    pub error: Option<String>,
    /// The build's current release there afterwards, when relctl could ask.
    pub release: Option<String>,
    pub seconds: f64,
    /// The host's own `--json` document.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<serde_json::Value>,
}

impl HostResult {
    fn not_reached(host: &Target) -> HostResult {
        HostResult {
            host: host.to_string(),
            result: HostState::NotReached,
            exit_code: None,
            error: None,
            release: None,
            seconds: 0.0,
            output: None,
        }
    }

    /// `ok`, `failed (exit 2)`, `failed: <why>`, `not reached`.
    pub fn describe(&self) -> String {
        match (self.result, self.exit_code, &self.error) {
            (HostState::Ok, _, _) => "ok".into(),
            (HostState::NotReached, _, _) => "not reached".into(),
            (HostState::Failed, _, Some(e)) => format!("failed: {e}"),
            (HostState::Failed, Some(code), None) => format!("failed (exit {code})"),
            (HostState::Failed, None, None) => "failed".into(),
        }
    }
}

/// Runs `job` on `hosts`, `serial` at a time (in parallel within a group), stopping after the
/// first group in which a host failed. Returns a row per host, in order.
pub fn roll(hosts: &[Target], serial: usize, job: impl Fn(&Target) -> HostResult + Sync) -> Vec<HostResult> {
    let mut rows = Vec::new();
    let mut stopped = false;
    for group in hosts.chunks(serial.max(1)) {
        if stopped {
            rows.extend(group.iter().map(HostResult::not_reached));
            continue;
        }
        let results: Vec<HostResult> = std::thread::scope(|s| {
            let handles: Vec<_> = group.iter().map(|h| s.spawn(|| timed(h, &job))).collect();
            handles
                .into_iter()
                .zip(group)
                .map(|(handle, host)| {
                    handle.join().unwrap_or_else(|_| HostResult {
                        result: HostState::Failed,
                        error: Some("relctl's thread for this host panicked".into()),
                        ..HostResult::not_reached(host)
                    })
                })
                .collect()
        });
        stopped = results.iter().any(|r| r.result != HostState::Ok);
        rows.extend(results);
    }
    rows
}

fn timed(host: &Target, job: &impl Fn(&Target) -> HostResult) -> HostResult {
    let t = Instant::now();
    let mut r = job(host);
    r.seconds = t.elapsed().as_secs_f64();
    r
}

/// The table of a roll.
pub fn print_table(rows: &[HostResult]) {
    let table: Vec<[String; 4]> = rows
        .iter()
        .map(|r| {
            [
                r.host.clone(),
                r.describe(),
                r.release.clone().unwrap_or_else(|| "-".into()),
                if r.result == HostState::NotReached { "-".into() } else { format!("{:.1}", r.seconds) },
            ]
        })
        .collect();
    crate::report::print_table(&["HOST", "RESULT", "RELEASE", "SECONDS"], &table);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(n: usize) -> Vec<Target> {
        (1..=n).map(|i| format!("h{i}").parse().unwrap()).collect()
    }

    fn ok_but(failing: &'static [&'static str]) -> impl Fn(&Target) -> HostResult + Sync {
        move |h| HostResult {
            result: if failing.contains(&h.host.as_str()) { HostState::Failed } else { HostState::Ok },
            exit_code: Some(if failing.contains(&h.host.as_str()) { 1 } else { 0 }),
            ..HostResult::not_reached(h)
        }
    }

    fn states(rows: &[HostResult]) -> Vec<(String, HostState)> {
        rows.iter().map(|r| (r.host.clone(), r.result)).collect()
    }

    #[test]
    fn the_first_failure_stops_the_roll() {
        use HostState::*;
        let rows = roll(&hosts(4), 1, ok_but(&["h2"]));
        let expected = [("h1", Ok), ("h2", Failed), ("h3", NotReached), ("h4", NotReached)];
        assert_eq!(states(&rows), expected.map(|(h, s)| (h.to_string(), s)));
        assert_eq!(rows[1].describe(), "failed (exit 1)");
        assert_eq!(rows[2].describe(), "not reached");
    }

    const STATUS: &str = r#"{"app": "medctrl", "builds": [{"build": "production", "unit": "medctrl@production.service",
        "state": "active", "sub_state": "running", "release": "20261123T130501Z-0123abc", "since": null,
        "main_pid": 4242, "route": "/", "socket": "/run/x.sock", "active": true, "other": null}]}"#;

    #[test]
    fn a_hosts_status_answer_reads_by_type_into_rows() {
        let answer = parse_status(0, STATUS.as_bytes()).unwrap();
        assert_eq!(answer.app, "medctrl");
        assert_eq!(answer.builds[0].state, ActiveState::Active);
        let asleep =
            STATUS.replace("\"other\": null", "\"other\": null, \"sleeping\": {\"since\": null, \"for_s\": 75}");
        let asleep = parse_status(0, asleep.as_bytes()).unwrap();
        let rows = status_rows(&[HostStatus { host: "web1".into(), status: Ok((0, asleep)) }]);
        assert_eq!(rows[0][2], "sleeping (1m 15s)");
        let newer = parse_status(0, STATUS.replace("\"active\"", "\"hibernating\"").as_bytes()).unwrap();
        assert_eq!(newer.builds[0].state, ActiveState::Other("hibernating".into()));
        let rows = status_rows(&[HostStatus { host: "web1".into(), status: Ok((0, answer)) }]);
        let expected = ["web1", "production", "active (running)", "20261123T130501Z-0123abc", "4242", "/"];
        assert_eq!(rows, [expected.map(String::from)]);
    }

    #[test]
    fn a_garbled_status_answer_is_an_error_row_naming_what_was_wrong() {
        let why = |answer: &[u8]| parse_status(0, answer).unwrap_err();
        // Not JSON: what the parser said and how the answer begins, escaped.
        assert_eq!(
            why(b"Welcome to web1!\n\x1b]0;pwned\x07{}"),
            "its --json answer is not JSON (expected value at line 1 column 1); it begins \"Welcome to web1!\\n\\u{1b}]0;pwned\\u{7}{}\""
        );
        // Truncated.
        let truncated = &STATUS.as_bytes()[..100];
        assert!(why(truncated).starts_with("its --json answer is not JSON (EOF while parsing"), "{}", why(truncated));
        assert!(why(truncated).ends_with("...") || why(truncated).ends_with('"'), "{}", why(truncated));
        // JSON, but not a status answer: wrong types, missing fields, a bad release id.
        assert_eq!(
            why(STATUS.replace("4242", "\"4242\"").as_bytes()).split("; it begins").next().unwrap(),
            "its status answer is not relctl's status JSON (at builds[0].main_pid: invalid type: string \"4242\", expected u32)"
        );
        assert!(why(br#"{"builds": []}"#).contains("missing field `app`"), "{}", why(br#"{"builds": []}"#));
        assert!(why(b"[1, 2]").starts_with("its status answer is not relctl's status JSON"));
        assert!(why(STATUS.replace("20261123T130501Z", "yesterday").as_bytes()).contains("at builds[0].release"));
        // No answer at all: relctl failed there (its error was relayed), or printed nothing.
        assert_eq!(parse_status(1, b"").unwrap_err(), "relctl status exited 1 there without an answer");
        assert_eq!(parse_status(0, b"\n").unwrap_err(), "relctl status answered nothing");
        // The error is the host's row, not an empty table.
        let rows = status_rows(&[HostStatus { host: "web1".into(), status: Err(why(b"<html>")) }]);
        assert_eq!(rows.len(), 1);
        assert_eq!(
            (rows[0][0].as_str(), rows[0][2].starts_with("unknown: its --json answer is not JSON")),
            ("web1", true)
        );
    }

    #[test]
    fn a_rolls_json_answer_that_is_not_json_is_said_so() {
        assert_eq!(json_answer(b"").unwrap(), None);
        assert_eq!(json_answer(b"{\"ok\": true}").unwrap(), Some(serde_json::json!({ "ok": true })));
        assert!(json_answer(b"motd\n{}").unwrap_err().ends_with("it begins \"motd\\n{}\""));
        let long = json_answer(&[b'x'; 200]).unwrap_err();
        assert!(long.ends_with(&format!("\"{}\"...", "x".repeat(80))), "{long}");
    }

    #[test]
    fn a_group_runs_whole_and_the_next_group_waits_for_it() {
        use HostState::*;
        let rows = roll(&hosts(5), 2, ok_but(&["h3"]));
        let expected = [("h1", Ok), ("h2", Ok), ("h3", Failed), ("h4", Ok), ("h5", NotReached)];
        assert_eq!(states(&rows), expected.map(|(h, s)| (h.to_string(), s)));
        assert!(roll(&hosts(3), 3, ok_but(&[])).iter().all(|r| r.result == Ok));
    }
}
