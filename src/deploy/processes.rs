//! The build's processes and timers, moved with web: once web serves a release (phase
//! `processes` of the switch), the processes and timers recorded with that release replace the
//! build's, and every process instance restarts on it, one at a time, each up (and ready) before
//! the next one stops. Timers run `current`, so they need no restart.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use crate::deploy::Deploy;
use crate::destroy;
use crate::host::atomic;
use crate::plan::processes::{self, ProcessSet, ProcessSpec};
use crate::plan::units;
use crate::release::id::ReleaseId;
use crate::systemd::unit::{JobKind, UnitState};

/// A process instance a deploy started, as it was once up: the probation compares against it.
#[derive(Debug, Clone)]
pub(super) struct Started {
    pub process: String,
    pub state: UnitState,
}

/// Which instances a move restarts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Restart<'s> {
    /// Every instance (a deploy, a recovery).
    All,
    /// The instances of one process (`restart --process`).
    Process(&'s str),
    /// Those the deploy going back restarted on the new release, and those not running
    /// (`moved` on the Deploy).
    Moved,
}

impl Deploy<'_> {
    /// The build's processes and timers become those recorded with `release`, which `current`
    /// points at: the units of processes and timers it does not have are stopped, disabled and
    /// removed, instances above a process's count stop, its units are written and enabled, and
    /// the instances `which` names restart on it, one at a time. Reported as the step `processes`.
    pub(super) fn move_processes(&mut self, release: &ReleaseId, which: Restart) -> Result<Vec<Started>> {
        let t = Instant::now();
        let set = processes::recorded(&self.build.release_dir(release))?;
        let (removed, written) = self.install_processes(&set)?;
        let mut started = Vec::new();
        for p in &set.processes {
            if matches!(which, Restart::Process(name) if name != p.name) {
                continue;
            }
            for n in 1..=p.instances {
                let unit = self.app.layout.process_unit(&self.build.build, &p.name, n);
                let restart = match which {
                    Restart::Moved => {
                        self.moved.contains(&unit) || !self.systemd.unit_state(&unit)?.active_state.is_up()
                    }
                    _ => true,
                };
                if restart {
                    started.push(self.restart_instance(p, &unit, release)?);
                }
            }
        }
        for timer in &set.timers {
            let unit = self.app.layout.timer_unit(&self.build.build, &timer.name);
            self.run_job(JobKind::Start, &unit)?;
        }
        let mut detail = Vec::new();
        if !started.is_empty() {
            let units: Vec<String> =
                started.iter().map(|s| format!("{} (PID {})", s.state.unit, s.state.main_pid)).collect();
            detail.push(format!("{} on release {release}", units.join(", ")));
        }
        if !set.timers.is_empty() {
            let timers: Vec<String> = set.timers.iter().map(|t| format!("{} ({})", t.name, t.on_calendar)).collect();
            detail.push(format!("timers {}", timers.join(", ")));
        }
        if written > 0 {
            detail.push(format!("wrote {written} unit file(s)"));
        }
        if !removed.is_empty() {
            detail.push(format!("removed {} (no longer in the manifest)", removed.join(", ")));
        }
        if !detail.is_empty() {
            self.report.step("processes", t, detail.join("; "));
        }
        Ok(started)
    }

    /// Installs the units of `set` for the build: removes those of processes and timers it does
    /// not have and the instances above each count, writes and enables the rest, reloads systemd
    /// when that changed anything. Returns the unit files removed and the number written.
    fn install_processes(&mut self, set: &ProcessSet) -> Result<(Vec<String>, usize)> {
        let l = &self.app.layout;
        let build = &self.build.build;
        let files = units::render_jobs(self.app, build, set)?;
        units::check_jobs_ours(&files)?;
        let stale: Vec<PathBuf> =
            units::installed_jobs(l, build)?.into_iter().filter(|p| !files.iter().any(|f| &f.path == p)).collect();
        let removed = destroy::remove_job_units(self.systemd, self.build, &stale)?;
        let mut extra = Vec::new();
        for p in &set.processes {
            let glob = l.process_glob(build, &p.name);
            let prefix = glob.trim_end_matches("*.service");
            for (unit, _) in self.systemd.running_units(&glob)? {
                let n = unit.strip_prefix(prefix).and_then(|i| i.strip_suffix(".service")).and_then(|i| i.parse().ok());
                if n.is_none_or(|n: u32| n > p.instances) {
                    self.stop_alone(&unit)?;
                    extra.push(unit);
                }
            }
        }
        if !extra.is_empty() {
            let names: Vec<&str> = extra.iter().map(String::as_str).collect();
            self.systemd.disable(&names)?;
            self.report.step("scale", Instant::now(), format!("stopped and disabled {}", extra.join(", ")));
        }
        let mut written = 0;
        for f in &files {
            if atomic::write(&f.path, f.contents.as_bytes(), 0o644, None)? {
                written += 1;
            }
        }
        let enable = units::job_units_to_enable(self.app, build, set);
        let names: Vec<&str> = enable.iter().map(String::as_str).collect();
        let enabled = if names.is_empty() { Vec::new() } else { self.systemd.enable(&names)? };
        if written > 0 || !removed.is_empty() || !enabled.is_empty() || !extra.is_empty() {
            self.systemd.reload()?;
        }
        Ok((removed, written))
    }

    /// Restarts one instance of `p` on `release` and waits until it is up: its readiness check
    /// passed (systemd runs it before the start job ends), or, without one, it kept its main
    /// process for the probation.
    fn restart_instance(&mut self, p: &ProcessSpec, unit: &str, release: &ReleaseId) -> Result<Started> {
        let t = Instant::now();
        let failed = |e: anyhow::Error, this: &mut Self| {
            this.report.warn(this.diagnose(unit));
            this.process_failed = true;
            e.context(format!("process {} ({unit}) did not come up on release {release}", p.name))
        };
        // Going back restarts it, whatever state its restart leaves it in (systemd may be
        // restarting it on the new release by itself).
        self.moved.push(unit.to_string());
        if let Err(e) = self.run_job(JobKind::Restart, unit) {
            return Err(failed(e, &mut *self));
        }
        let first = self.systemd.unit_state(unit)?;
        let settled = match &p.ready {
            Some(_) => self.still_up(unit, &first, "its start"),
            None => {
                let _waiting = self.report.waiting("process", format!("{unit} {}s", self.app.probation_s));
                std::thread::sleep(Duration::from_secs(self.app.probation_s));
                self.still_up(unit, &first, &format!("the {}s probation", self.app.probation_s))
            }
        };
        if let Err(e) = settled {
            return Err(failed(e, &mut *self));
        }
        let ready = if p.ready.is_some() { ", ready" } else { "" };
        self.report.step("process", t, format!("{unit} up on release {release}, main PID {}{ready}", first.main_pid));
        Ok(Started { process: p.name.clone(), state: first })
    }

    /// Whether `unit` is still what it was when it came up: active, same main PID, no restart.
    fn still_up(&self, unit: &str, first: &UnitState, during: &str) -> Result<()> {
        let now = self.systemd.unit_state(unit)?;
        if !first.is_active()
            || !now.is_active()
            || now.main_pid != first.main_pid
            || now.n_restarts != first.n_restarts
        {
            bail!(
                "{unit} did not stay up through {during}: now {} ({}), result '{}', restarts {} -> {}, main PID {} -> {}",
                now.active_state,
                now.sub_state,
                now.result,
                first.n_restarts,
                now.n_restarts,
                first.main_pid,
                now.main_pid
            );
        }
        Ok(())
    }

    /// Removes every process and timer of the build (a first build that failed).
    pub(super) fn remove_processes(&mut self) -> Result<()> {
        let t = Instant::now();
        let (removed, _) = self.install_processes(&ProcessSet::default())?;
        if !removed.is_empty() {
            self.report.step("processes", t, format!("removed {}", removed.join(", ")));
        }
        Ok(())
    }

    /// The probation of the processes a deploy started, checked with web's: each must still be
    /// the process that came up.
    pub(super) fn processes_stayed_up(&mut self, started: &[Started]) -> Result<()> {
        for s in started {
            if let Err(e) = self.still_up(&s.state.unit, &s.state, "the probation") {
                self.report.warn(self.diagnose(&s.state.unit));
                self.process_failed = true;
                return Err(e.context(format!("process {} failed its probation", s.process)));
            }
        }
        Ok(())
    }
}
