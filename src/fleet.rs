//! Commands on other hosts ([`Job`]: what is shipped and run), and across several: a roll,
//! `--serial N` hosts at a time, each through the full command (and so its health gate), where the
//! first group with a failure is the last group that runs — the hosts after it are not reached —
//! and the result is one row per host; or `status` of every host, merged.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use serde::Serialize;

use crate::error::Outcome;
use crate::manifest::Loaded;
use crate::remote::{Output, Remote, Shipment, Target};

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

impl Job {
    /// `ships_source`: the command builds a release from the sources (`build`); `build`: the build
    /// whose release a roll reports.
    pub fn new(loaded: Loaded, ships_source: bool, build: Option<&str>, args: Vec<String>) -> Result<Job> {
        let source = if ships_source { Some(crate::plan::source_copy(&loaded)?) } else { None };
        let revision = match &source {
            Some(s) => crate::git::revision(&s.source)?.map(|r| r.label()),
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
    pub fn run_on(&self, target: &Target, output: &Output) -> Result<(Remote, Outcome, Vec<u8>)> {
        let host = Remote::new(target.clone())?;
        host.check_version()?;
        let dir = host.ship(&self.shipment)?;
        let (outcome, captured) = host.run(&dir, &self.args, self.revision.as_deref(), output)?;
        Ok((host, outcome, captured))
    }

    /// One host of a roll: its output behind `<host> | ` (or captured, with `json`), its row.
    fn roll_on(&self, target: &Target, json: bool) -> HostResult {
        let prefix = target.to_string();
        let output = if json { Output::Captured(prefix.clone()) } else { Output::Prefixed(prefix.clone()) };
        let mut row = HostResult { result: HostState::Failed, ..HostResult::not_reached(target) };
        match self.run_on(target, &output) {
            Ok((host, outcome, captured)) => {
                row.exit_code = Some(match outcome {
                    Outcome::Ok => 0,
                    Outcome::NotActive => 3,
                    Outcome::Exited(c) => c,
                });
                if outcome == Outcome::Ok {
                    row.result = HostState::Ok;
                }
                row.output = serde_json::from_slice(&captured).ok();
                row.release = self.build_dir.as_ref().and_then(|d| {
                    let link = shlex::try_quote(&d.join("current").display().to_string()).ok()?.into_owned();
                    host.query(&format!("readlink {link}")).map(|r| r.trim_start_matches("releases/").to_string())
                });
            }
            Err(e) => {
                let why = crate::error::one_line(&e);
                eprintln!("{prefix} | relctl: {why}");
                row.error = Some(why);
            }
        }
        row
    }
}

/// Rolls `job` over `hosts`, `serial` at a time (see [`roll`]).
pub fn roll_job(job: &Job, hosts: &[Target], serial: usize, json: bool) -> Vec<HostResult> {
    roll(hosts, serial, |target| job.roll_on(target, json))
}

/// What `status` said on one host: its `--json` document, or why relctl could not ask.
pub struct HostStatus {
    pub host: String,
    pub status: Result<(Outcome, serde_json::Value), String>,
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
                        .map(|(_, code, out)| (code, serde_json::from_slice(&out).unwrap_or_default()))
                        .map_err(|e| crate::error::one_line(&e));
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
            Ok((_, doc)) => {
                for b in doc["builds"].as_array().into_iter().flatten() {
                    let s = |k: &str| b[k].as_str().map(str::to_string).unwrap_or_else(|| "-".into());
                    table.push([
                        h.host.clone(),
                        s("build"),
                        format!("{} ({})", s("state"), s("sub_state")),
                        s("release"),
                        b["main_pid"].as_u64().map_or("-".into(), |p| p.to_string()),
                        s("route"),
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

    #[test]
    fn a_group_runs_whole_and_the_next_group_waits_for_it() {
        use HostState::*;
        let rows = roll(&hosts(5), 2, ok_but(&["h3"]));
        let expected = [("h1", Ok), ("h2", Ok), ("h3", Failed), ("h4", Ok), ("h5", NotReached)];
        assert_eq!(states(&rows), expected.map(|(h, s)| (h.to_string(), s)));
        assert!(roll(&hosts(3), 3, ok_but(&[])).iter().all(|r| r.result == Ok));
    }
}
