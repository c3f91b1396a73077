//! What runs in a build beside web: its `[processes.*]` (how many instances of each) and its
//! `[timers.*]`, resolved from the manifest for one build. Each release records the set it was
//! built with (`.relctl/processes.json`), so a rollback runs the processes and timers of the
//! release it goes back to, and a process the manifest no longer has is removed by the next build.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::host::atomic;
use crate::release::store;

use crate::manifest::{Build, Manifest};
use crate::plan::script::start_script;

/// One `[processes.<name>]` as a build runs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessSpec {
    pub name: String,
    pub exec: String,
    pub instances: u32,
    pub stop_timeout_s: u64,
    pub ready: Option<String>,
    pub ready_timeout_s: u64,
}

/// One `[timers.<name>]` as a build runs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimerSpec {
    pub name: String,
    pub exec: String,
    pub on_calendar: String,
    pub randomized_delay_s: u64,
    pub persistent: bool,
    pub timeout_s: u64,
    pub on_failure: Option<String>,
}

/// A build's processes (each with at least one instance) and timers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessSet {
    pub processes: Vec<ProcessSpec>,
    pub timers: Vec<TimerSpec>,
    /// The build's secrets file, which every process and job reads as web does.
    #[serde(default)]
    pub secrets: Option<PathBuf>,
    /// `[service] workdir`: where each command starts, relative to the release.
    #[serde(default)]
    pub workdir: Option<String>,
}

/// A script a release carries for its processes and timers, relative to the release.
#[derive(Debug, Clone, Serialize)]
pub struct Script {
    pub path: String,
    pub contents: String,
}

impl ProcessSet {
    /// The processes and timers build `decl` runs: those its `processes` and `timers` name (with
    /// the counts it gives), or every one the manifest declares; a process with 0 instances is
    /// left out.
    pub fn resolve(m: &Manifest, decl: &Build) -> ProcessSet {
        let processes = m
            .processes
            .iter()
            .filter_map(|(name, p)| {
                let instances = match &decl.processes {
                    Some(chosen) => *chosen.get(name)?,
                    None => p.instances,
                };
                (instances > 0).then(|| ProcessSpec {
                    name: name.clone(),
                    exec: p.exec.clone(),
                    instances,
                    stop_timeout_s: p.stop_timeout_s,
                    ready: p.ready.clone(),
                    ready_timeout_s: p.ready_timeout_s,
                })
            })
            .collect();
        let timers = m
            .timers
            .iter()
            .filter(|(name, _)| decl.timers.as_ref().is_none_or(|chosen| chosen.contains(name)))
            .map(|(name, t)| TimerSpec {
                name: name.clone(),
                exec: t.exec.clone(),
                on_calendar: t.on_calendar.trim().to_string(),
                randomized_delay_s: t.randomized_delay_s,
                persistent: t.persistent,
                timeout_s: t.timeout_s,
                on_failure: t.on_failure.clone(),
            })
            .collect();
        ProcessSet { processes, timers, secrets: decl.secrets.clone(), workdir: m.service.workdir.clone() }
    }

    /// Refuses a timer whose `on_calendar` systemd does not accept (`systemd-analyze calendar`),
    /// before anything is touched; systemd would otherwise refuse to load the timer mid-deploy.
    pub fn check_calendars(&self) -> Result<()> {
        let Ok(analyze) = which::which("systemd-analyze") else { return Ok(()) };
        for t in &self.timers {
            let out = std::process::Command::new(&analyze)
                .args(["calendar", "--", &t.on_calendar])
                .stdin(std::process::Stdio::null())
                .output()
                .with_context(|| format!("running {} calendar", analyze.display()))?;
            if !out.status.success() {
                let why = String::from_utf8_lossy(&out.stderr).trim().replace('\n', " ");
                return Err(crate::error::Error::Usage(format!(
                    "[timers.{}] on_calendar \"{}\" is not a calendar expression systemd accepts ({why}); see man systemd.time, e.g. \"daily\", \"*-*-* 03:00:00\", \"Mon..Fri 08:00\"",
                    t.name,
                    t.on_calendar.escape_debug()
                ))
                .into());
            }
        }
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.processes.is_empty() && self.timers.is_empty()
    }

    pub fn process(&self, name: &str) -> Option<&ProcessSpec> {
        self.processes.iter().find(|p| p.name == name)
    }

    /// The scripts the release carries: how each process, its readiness check, each timer's job
    /// and its failure notification start (in `.relctl/`, run through `current`).
    pub fn scripts(&self, release_dir: &Path, what: &str) -> Vec<Script> {
        let workdir = self.workdir.as_deref();
        let script = |path: String, exec: &str, role: String| Script {
            contents: start_script(release_dir, workdir, exec, &format!("{role} of {what}")),
            path,
        };
        let mut scripts = Vec::new();
        for p in &self.processes {
            scripts.push(script(process_script(&p.name), &p.exec, format!("process {}", p.name)));
            if let Some(ready) = &p.ready {
                scripts.push(script(
                    ready_script(&p.name),
                    ready,
                    format!("the readiness check of process {}", p.name),
                ));
            }
        }
        for t in &self.timers {
            scripts.push(script(timer_script(&t.name), &t.exec, format!("timer {}", t.name)));
            if let Some(notify) = &t.on_failure {
                scripts.push(script(
                    failed_script(&t.name),
                    notify,
                    format!("the failure notification of timer {}", t.name),
                ));
            }
        }
        scripts
    }

    /// For `--dry-run`: one line per process and timer.
    pub fn describe(&self) -> Vec<String> {
        let mut lines = Vec::new();
        for p in &self.processes {
            let ready = p.ready.as_ref().map(|r| format!(", ready when `{r}` passes")).unwrap_or_default();
            lines.push(format!(
                "process {} x{}: `{}` (stops within {}s{ready})",
                p.name, p.instances, p.exec, p.stop_timeout_s
            ));
        }
        for t in &self.timers {
            let failure = t.on_failure.as_ref().map(|c| format!(", on failure `{c}`")).unwrap_or_default();
            lines.push(format!("timer {} ({}): `{}`{failure}", t.name, t.on_calendar, t.exec));
        }
        lines
    }
}

/// Where a release records its set: `.relctl/processes.json`.
pub fn recorded_file(release_dir: &Path) -> PathBuf {
    store::meta_dir(release_dir).join("processes.json")
}

/// Records `set` with the release in `release_dir`.
pub fn record(release_dir: &Path, set: &ProcessSet) -> Result<()> {
    atomic::write(&recorded_file(release_dir), to_json(set)?.as_bytes(), 0o644, None)?;
    Ok(())
}

/// `set` as a release records it.
pub fn to_json(set: &ProcessSet) -> Result<String> {
    serde_json::to_string_pretty(set).context("serializing the release's processes")
}

/// The set recorded with the release in `release_dir`; none for a release made by a relctl
/// before processes and timers.
pub fn recorded(release_dir: &Path) -> Result<ProcessSet> {
    let path = recorded_file(release_dir);
    let Some(bytes) = atomic::read_if_exists(&path)? else { return Ok(ProcessSet::default()) };
    serde_json::from_slice(&bytes).with_context(|| format!("reading {}", path.display()))
}

/// The scripts' paths, relative to the release.
pub fn process_script(name: &str) -> String {
    format!(".relctl/process-{name}")
}
pub fn ready_script(name: &str) -> String {
    format!(".relctl/ready-{name}")
}
pub fn timer_script(name: &str) -> String {
    format!(".relctl/timer-{name}")
}
pub fn failed_script(name: &str) -> String {
    format!(".relctl/timer-{name}-failed")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest;

    const M: &str = r#"app = "shop"
[service]
exec = "x"
workdir = "src"
[processes.worker]
exec = ".venv/bin/celery -A proj worker -n w$RELCTL_PROCESS_INSTANCE@%h"
instances = 2
ready = ".venv/bin/celery -A proj inspect ping"
[processes.beat]
exec = ".venv/bin/celery -A proj beat"
[timers.clearsessions]
exec = ".venv/bin/python manage.py clearsessions"
on_calendar = " daily "
on_failure = "notify"
[builds.production]
[builds.review]
processes = { worker = 1 }
timers = []
[builds.quiet]
processes = { worker = 0, beat = 0 }
"#;

    fn set(build: &str) -> ProcessSet {
        let m = manifest::parse(M).unwrap();
        ProcessSet::resolve(&m, &m.builds[build])
    }

    #[test]
    fn each_build_runs_what_it_names_or_everything() {
        let all = set("production");
        let counts: Vec<(&str, u32)> = all.processes.iter().map(|p| (p.name.as_str(), p.instances)).collect();
        assert_eq!(counts, [("worker", 2), ("beat", 1)]);
        assert_eq!(all.timers[0].on_calendar, "daily");
        let review = set("review");
        assert_eq!((review.processes.len(), review.processes[0].instances, review.timers.len()), (1, 1, 0));
        let quiet = set("quiet");
        assert!(quiet.processes.is_empty() && quiet.timers.len() == 1, "{quiet:?}");
    }

    #[test]
    fn scripts_start_each_command_in_the_release_workdir() {
        let scripts = set("production").scripts(Path::new("/opt/shop/app/production/releases/r1"), "release r1");
        let paths: Vec<&str> = scripts.iter().map(|s| s.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                ".relctl/process-worker",
                ".relctl/ready-worker",
                ".relctl/process-beat",
                ".relctl/timer-clearsessions",
                ".relctl/timer-clearsessions-failed"
            ]
        );
        let worker = &scripts[0].contents;
        assert!(worker.contains("cd '/opt/shop/app/production/releases/r1/src' || exit 1\n"), "{worker}");
        assert!(
            worker.ends_with(
                "exec /opt/shop/app/production/releases/r1/.venv/bin/celery -A proj worker -n w$RELCTL_PROCESS_INSTANCE@%h\n"
            ),
            "{worker}"
        );
    }

    #[test]
    fn a_calendar_systemd_does_not_accept_is_refused_naming_the_timer() {
        let mut set = set("production");
        assert!(set.check_calendars().is_ok(), "daily");
        set.timers[0].on_calendar = "every day at 3".into();
        let err = set.check_calendars().unwrap_err();
        assert!(crate::error::is_usage(&err));
        let msg = err.to_string();
        assert!(msg.starts_with("[timers.clearsessions] on_calendar \"every day at 3\" is not a calendar expression systemd accepts (Failed to parse"), "{msg}");
    }

    #[test]
    fn names_counts_and_references_are_checked() {
        let parse = |extra: &str| manifest::parse(&format!("app = \"shop\"\n[service]\nexec = \"x\"\n{extra}"));
        for (bad, msg) in [
            ("[processes.my_worker]\nexec = \"x\"", "[processes.my_worker] name must match"),
            ("[processes.web]\nexec = \"x\"", "[processes.web] name"),
            ("[processes.w]\nexec = \" \"", "[processes.w] exec must not be empty"),
            ("[processes.w]\nexec = \"x\"\ninstances = 33", "instances = 33 must be at most 32"),
            ("[processes.w]\nexec = \"x\"\nstop_timeout_s = 0", "stop_timeout_s = 0"),
            ("[timers.t]\nexec = \"x\"\non_calendar = \"\"", "[timers.t] on_calendar"),
            ("[timers.t-failed]\nexec = \"x\"\non_calendar = \"daily\"", "not end in \"-failed\""),
            ("[processes.t]\nexec = \"x\"\n[timers.t]\nexec = \"x\"\non_calendar = \"daily\"", "has the name of"),
            ("[builds.b]\nprocesses = { worker = 1 }", "not declared as [processes.worker]"),
            ("[builds.b]\ntimers = [\"daily\"]", "not declared as [timers.daily]"),
            ("[processes.w]\nexec = \"x\"\nstop = 1", "unknown field `stop`"),
        ] {
            let err = parse(bad).unwrap_err();
            assert!(err.contains(msg), "{bad}: {err}");
        }
    }
}
