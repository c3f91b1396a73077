//! Rolling a command across hosts: `--serial N` hosts at a time, each through the full command
//! (and so its health gate); the first group with a failure is the last group that runs — the
//! hosts after it are not reached — and the result is one row per host.

use std::time::Instant;

use serde::Serialize;

use crate::remote::Target;

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
