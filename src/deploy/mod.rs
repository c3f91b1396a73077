//! Acting on a plan: stage, render, dependencies, hooks, units, then the hand-over — for one build.
//!
//! Nothing live changes before the hand-over. A build has two instances that take turns (see
//! `layout::Slot`): a new release is gated in the one that does not serve, the candidate, before
//! the public socket points at it; the one that served drains, is kept running through the
//! candidate's probation and then stops. A failure before the hand-over leaves the serving
//! instance untouched; one during the probation switches straight back to it.
//! The switch is a state machine (`switch`) whose phase is journaled in
//! `<build_dir>/.relctl-switch` before each step, so a relctl killed at any point is recovered
//! from (`recover`) by the next build or rollback.
//!
//! The steps, in files: `staging` (copy, render, dependencies, hooks), `install` (units and
//! sockets), `handover` (the switch, phase by phase), `gate` (gate, verify hooks, probation),
//! `recover`, `adopt` (taking over a hand-made setup). systemd is reached through
//! `systemd::manager::Manager` and the instances are checked through `probe::Probe`, so the unit
//! tests drive every branch against fakes.

mod adopt;
mod gate;
mod handover;
pub mod hooks;
mod install;
pub mod probe;
pub(super) mod processes;
mod recover;
pub mod sleep;
mod staging;
pub mod switch;
#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde::Serialize;

use crate::deploy::probe::{Host, Probe};
use crate::destroy;
use crate::host::health;
use crate::host::users::{self, RunAs};
use crate::name::BuildName;
use crate::plan::adopt::AdoptPlan;
use crate::plan::build::BuildPlan;
use crate::plan::rollback::{self, RollbackPlan};
use crate::plan::units;
use crate::plan::AppPlan;
use crate::release::deps;
use crate::release::handmade;
use crate::release::id::ReleaseId;
use crate::release::layout::{BuildLayout, Instance, Slot};
use crate::release::secret_key;
use crate::release::store;
use crate::report::Report;
use crate::systemd::manager::Manager;
use crate::systemd::unit::{JobKind, UnitState};

/// A build that passed verification: its unit and the health answer.
#[derive(Debug, Serialize)]
pub struct Verified {
    pub unit: UnitState,
    pub health: Option<health::Response>,
}

#[derive(Debug, Serialize)]
pub struct BuildResult {
    pub app: String,
    pub build: BuildName,
    pub release: ReleaseId,
    pub previous: Option<ReleaseId>,
    pub release_dir: String,
    pub unit: UnitState,
    pub health: Option<health::Response>,
    pub pruned: Vec<ReleaseId>,
}

#[derive(Debug, Serialize)]
pub struct RollbackResult {
    pub build: BuildName,
    pub from: ReleaseId,
    pub to: ReleaseId,
    pub unit: UnitState,
    pub health: Option<health::Response>,
}

/// Testing aids: `RELCTL_FAILPOINT=<name>` makes relctl kill itself with SIGKILL at that point, to
/// prove a crash there leaves the live build serving; `RELCTL_PAUSEPOINT=<name>` stops it there
/// (SIGSTOP), for a test to cut the power under it (`tests/e2e/power.rs`). Besides the named
/// points of the steps, each phase of a switch has two (`switch::Switch`): `entered:<phase>`,
/// right after the journal recorded it, and `leaving:<phase>`, once its step is done, right before
/// the journal records the next phase or is removed.
fn failpoint(name: &str) {
    #[cfg(test)]
    switch::tests::kill_point(name);
    if std::env::var("RELCTL_FAILPOINT").is_ok_and(|v| v == name) {
        nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL).expect("raising SIGKILL at a failpoint");
    }
    if std::env::var("RELCTL_PAUSEPOINT").is_ok_and(|v| v == name) {
        nix::sys::signal::raise(nix::sys::signal::Signal::SIGSTOP).expect("raising SIGSTOP at a pause point");
    }
}

/// How the instance that served leaves the public socket in a hand-over.
#[derive(Clone, Copy)]
enum Retiring<'r> {
    /// Its queued connections are served first (relctl's own instance).
    Drained,
    /// A hand-made setup being adopted (`build --adopt`), its files taken over as a release with
    /// the service user's group, once nothing hand-made is reachable any more.
    HandMade(&'r AdoptPlan, &'r RunAs),
}

/// Everything that changes one build, with what it needs: the app, the build's paths, systemd
/// and the report.
pub struct Deploy<'a> {
    app: &'a AppPlan,
    build: &'a BuildLayout,
    systemd: &'a dyn Manager,
    report: &'a mut Report,
    /// The build's switch lock, once relctl starts or switches an instance.
    switch_lock: Option<crate::host::lock::AppLock>,
    /// `--no-wait`: fail at once when the switch lock is held.
    no_wait: bool,
    /// How the instances are checked: this host's sockets and journal, or a test's fake.
    probe: &'a dyn Probe,
    /// Where the switch lock lives (`lock::LOCK_DIR`; a test's own directory).
    lock_dir: PathBuf,
    /// The process instances this deploy restarted (going back restarts them again).
    moved: Vec<String>,
    /// A process failed (and was diagnosed): going back does not diagnose web, which did not.
    process_failed: bool,
}

impl<'a> Deploy<'a> {
    pub fn new(app: &'a AppPlan, build: &'a BuildLayout, systemd: &'a dyn Manager, report: &'a mut Report) -> Self {
        Deploy {
            app,
            build,
            systemd,
            report,
            switch_lock: None,
            no_wait: false,
            probe: &Host,
            lock_dir: PathBuf::from(crate::host::lock::LOCK_DIR),
            moved: Vec::new(),
            process_failed: false,
        }
    }

    /// Checks the instances through `probe` and keeps the switch lock in `lock_dir` (unit tests).
    #[cfg(test)]
    fn with_fakes(mut self, probe: &'a dyn Probe, lock_dir: PathBuf) -> Self {
        self.probe = probe;
        self.lock_dir = lock_dir;
        self
    }

    /// With `--no-wait`: a held switch lock fails at once instead of being waited for.
    pub fn no_wait(mut self, no_wait: bool) -> Self {
        self.no_wait = no_wait;
        self
    }

    /// `relctl build`: stage the planned release, install the units, switch, (re)start, verify.
    /// With `adoption`, the hand-made setup it plans for is taken over on the way (see
    /// [`Deploy::retire_hand_made`]).
    pub fn build(&mut self, plan: &BuildPlan, adoption: Option<&'a AdoptPlan>) -> Result<BuildResult> {
        let b = self.build;
        let unit_files = units::render(self.app)?;
        self.check_app_wide_change(&unit_files)?;
        units::check_jobs_ours(&units::render_jobs(self.app, &b.build, &plan.processes)?)?;
        for note in &plan.notes {
            self.report.warn(format!("relctl: note: {note}"));
        }
        let t = Instant::now();
        users::check_service_user(&self.app.manifest, &self.app.user, &units::paths(self.app))?;
        let (user, created) = users::ensure_system_user(&self.app.user, &self.app.layout.app)?;
        staging::setup_dirs(plan, &user)?;
        let recovered = self.recover()?;
        let cleaned = store::remove_incomplete(b)?;
        let leftovers = destroy::remove_leftovers(&self.app.layout.root)?;
        let mut detail =
            format!("user {}{}, {}", user.user, if created { " (created)" } else { "" }, b.build_dir.display());
        if let Some(r) = recovered {
            detail.push_str(&format!(", {r}"));
        }
        if !cleaned.is_empty() {
            detail.push_str(&format!(", removed half-made release(s) {}", join(&cleaned)));
        }
        if !leftovers.is_empty() {
            let dirs = join(leftovers.iter().map(|d| d.display()));
            detail.push_str(&format!(", removed what an interrupted destroy left: {dirs}"));
        }
        self.report.step("setup", t, detail);

        if let Some(a) = adoption.filter(|a| !a.found.unit_files.is_empty()) {
            let t = Instant::now();
            handmade::back_up(&a.found, &a.backup_dir)?;
            let names: Vec<String> = a.found.unit_files.iter().map(|p| p.display().to_string()).collect();
            self.report.step("backup", t, format!("{} -> {}", names.join(", "), a.backup_dir.display()));
        }

        if let Err(e) = self.stage(plan, &user, &unit_files) {
            let removed = match store::remove(&plan.release_dir) {
                Ok(()) => format!("release {} removed", plan.release),
                Err(r) => format!("release {} could not be removed ({r:#}); the next build removes it", plan.release),
            };
            return Err(
                e.context(format!("build {} aborted before the switch; {removed}, nothing live changed", b.build))
            );
        }

        let t = Instant::now();
        // Units from now on run main on its own link: a build made by an earlier relctl gets it.
        self.ensure_main_link()?;
        let changed = self.install_units(plan, &unit_files)?;
        failpoint("units");
        self.report.step("units", t, changed);

        // A current release whose directory was removed by hand is nothing to go back to.
        let previous = match adoption {
            Some(a) => Some(a.release.clone()),
            None => b.current_release()?.filter(|p| b.release_dir(p).is_dir()),
        };
        if let Some(a) = adoption {
            // Nothing hand-made serves: its files can become a release right away.
            if !self.systemd.unit_state(&b.service_unit)?.active_state.is_up() {
                self.retire_hand_made(a, &user)?;
            }
        }
        let retiring = match adoption {
            Some(a) => Retiring::HandMade(a, &user),
            None => Retiring::Drained,
        };
        let live = match self.around_sleep(|d| d.go_live(&plan.release, previous.as_ref(), retiring)) {
            Ok(live) => live,
            Err(e) => return Err(self.restore_hand_made(adoption, e)),
        };

        let t = Instant::now();
        let pruned = store::prune(b, self.app.keep_releases)?;
        let collected = deps::collect(&self.app.layout.root)?;
        if !pruned.is_empty() || !collected.is_empty() {
            let mut detail = format!("removed {} (keep_releases = {})", join(&pruned), self.app.keep_releases);
            if !collected.is_empty() {
                detail.push_str(&format!("; dependencies no kept release uses: {}", join(&collected)));
            }
            self.report.step("prune", t, detail);
        }
        Ok(BuildResult {
            app: self.app.layout.app.clone(),
            build: b.build.clone(),
            release: plan.release.clone(),
            previous,
            release_dir: plan.release_dir.display().to_string(),
            unit: live.unit,
            health: live.health,
            pruned,
        })
    }

    /// `relctl rollback`: switches back to the planned target (resolved before the lock),
    /// restarts and verifies it, and marks the release it left as bad. The build must still be
    /// as planned: a relctl that changed it while this one waited for the lock (or the recovery
    /// from an interrupted one) leaves the rollback undone.
    pub fn rollback(&mut self, plan: &RollbackPlan) -> Result<RollbackResult> {
        let b = self.build;
        self.recover_as_step()?;
        let now = rollback::resolve(&b.build, &store::list(b)?, Some(&plan.to))?;
        if now.from != plan.from {
            bail!(
                "build {}'s current release is now {}, not {} as planned (another relctl changed the build while this one waited for the lock, or an interrupted one was recovered from); nothing was rolled back: see relctl releases {}",
                b.build,
                now.from,
                plan.from,
                b.build
            );
        }
        let (current, target) = (now.from, now.to);
        let live = self.around_sleep(|d| d.go_live(&target, Some(&current), Retiring::Drained))?;
        store::mark_bad(&b.release_dir(&current), &format!("rolled back to {target}"))?;
        Ok(RollbackResult { build: b.build.clone(), from: current, to: target, unit: live.unit, health: live.health })
    }

    /// Finishes a switch an earlier relctl left in the journal, reported as the step `recover`.
    fn recover_as_step(&mut self) -> Result<()> {
        let t = Instant::now();
        if let Some(r) = self.recover()? {
            self.report.step("recover", t, r);
        }
        Ok(())
    }

    /// One of the build's two instances.
    fn instance(&self, slot: Slot) -> Instance {
        self.app.layout.instance(&self.build.build, slot)
    }

    /// Runs a systemd job on `unit` and waits for it ([`Manager::run_job`]), showing the wait.
    fn run_job(&self, kind: JobKind, unit: &str) -> Result<()> {
        let _waiting = self.report.waiting(kind.verb(), unit);
        self.systemd.run_job(kind, unit)
    }

    /// Stops `unit` alone ([`Manager::stop_alone`]), showing the wait.
    fn stop_alone(&self, unit: &str) -> Result<()> {
        let _waiting = self.report.waiting("stop", unit);
        self.systemd.stop_alone(unit)
    }

    /// The instance that serves (see `BuildLayout::serving`).
    fn serving(&self) -> Result<Option<Instance>> {
        let up = |slot| Ok(self.systemd.unit_state(&self.instance(slot).service_unit)?.active_state.is_up());
        Ok(self.build.serving(up)?.map(|slot| self.instance(slot)))
    }

    /// Holds the build's switch lock from now on, so that main, started by relctl, leaves the
    /// public socket to relctl (see `lock::switch_lock`).
    fn hold_switch_lock(&mut self) -> Result<()> {
        if self.switch_lock.is_none() {
            let dir = &self.lock_dir;
            let wait = (!self.no_wait).then_some(crate::host::lock::SWITCH_LOCK_WAIT);
            self.switch_lock =
                Some(crate::host::lock::switch_lock(dir, &self.app.layout.app, &self.build.build, wait)?);
        }
        Ok(())
    }

    /// `relctl start`: the instance that serves (main if none does) gets its socket and service
    /// started, the public socket points at it; waits for the jobs and verifies.
    pub fn start(&mut self) -> Result<Verified> {
        self.around_sleep(Self::start_serving)
    }

    fn start_serving(&mut self) -> Result<Verified> {
        let inst = match self.serving()? {
            Some(s) => s,
            None => {
                self.stop_instance(&self.instance(Slot::Next))?;
                self.instance(Slot::Main)
            }
        };
        self.hold_switch_lock()?;
        secret_key::ensure(&self.build.secret_key_file())?;
        self.ensure_socket(&inst)?;
        self.point_public(&inst)?;
        let t = Instant::now();
        self.run_job(JobKind::Start, &inst.service_unit)?;
        self.report.step("start", t, format!("{} and {} done", inst.socket_unit, inst.service_unit));
        let (first, health) = self.gate(&inst, gate::Traffic::Public)?;
        let verified = self.probation(&inst, &first, health)?;
        // The processes start with main (they are wanted by it); any that did not are started.
        if let Some(current) = self.build.current_release()? {
            self.move_processes(&current, processes::Restart::Moved)?;
        }
        Ok(verified)
    }

    /// `relctl restart BUILD --process NAME`: the instances of one process restart on the
    /// current release, one at a time, each up (and ready) before the next stops; web is left
    /// alone.
    pub fn restart_process(&mut self, name: &str) -> Result<Vec<UnitState>> {
        self.recover_as_step()?;
        let current = self
            .build
            .current_release()?
            .with_context(|| format!("build {} has no current release", self.build.build))?;
        let set = crate::plan::processes::recorded(&self.build.release_dir(&current))?;
        if set.process(name).is_none() {
            let known: Vec<&str> = set.processes.iter().map(|p| p.name.as_str()).collect();
            return Err(crate::error::Error::Usage(format!(
                "build {} runs no process \"{name}\" (its release {current} runs: {})",
                self.build.build,
                if known.is_empty() { "none".to_string() } else { known.join(", ") }
            ))
            .into());
        }
        let started = self.move_processes(&current, processes::Restart::Process(name))?;
        let t = Instant::now();
        let waiting = self.report.waiting("probation", format!("{name} {}s", self.app.probation_s));
        std::thread::sleep(std::time::Duration::from_secs(self.app.probation_s));
        drop(waiting);
        self.processes_stayed_up(&started)?;
        self.report.step("probation", t, format!("{name}: {} instance(s) stable", started.len()));
        started.iter().map(|s| self.systemd.unit_state(&s.state.unit)).collect()
    }

    /// `relctl stop`: both instances, services and sockets. Returns main's state afterwards.
    pub fn stop(&mut self) -> Result<UnitState> {
        let main = self.instance(Slot::Main);
        let t = Instant::now();
        self.stop_wake()?;
        self.stop_instance(&self.instance(Slot::Next))?;
        self.run_job(JobKind::Stop, &main.service_unit)?;
        self.run_job(JobKind::Stop, &main.socket_unit)?;
        self.report.step("stop", t, format!("{} and {} stopped", main.service_unit, main.socket_unit));
        self.systemd.unit_state(&main.service_unit)
    }

    /// `relctl restart BUILD`: the current release starts in the other instance, passes the gate,
    /// takes the public socket; the instance that served drains and stops. A build that is not
    /// running is just started.
    pub fn restart(&mut self) -> Result<Verified> {
        // A switch an earlier relctl left unsettled is finished first: `current` is then the
        // release that should serve, and its journal is not written over.
        self.recover_as_step()?;
        let current = self
            .build
            .current_release()?
            .with_context(|| format!("build {} has no current release", self.build.build))?;
        self.around_sleep(|d| d.go_live(&current, Some(&current), Retiring::Drained))
    }

    /// `relctl reload`: systemd's reload of the instance that serves (gunicorn: new workers, same
    /// main process), verified.
    pub fn reload(&mut self) -> Result<Verified> {
        self.around_sleep(Self::reload_serving)
    }

    fn reload_serving(&mut self) -> Result<Verified> {
        let inst = self.serving()?.unwrap_or_else(|| self.instance(Slot::Main));
        let t = Instant::now();
        self.run_job(JobKind::Reload, &inst.service_unit)?;
        self.report.step("reload", t, format!("{} done", inst.service_unit));
        let (first, health) = self.gate(&inst, gate::Traffic::Public)?;
        self.probation(&inst, &first, health)
    }
}

fn join<T: std::fmt::Display>(items: impl IntoIterator<Item = T>) -> String {
    items.into_iter().map(|i| i.to_string()).collect::<Vec<_>>().join(", ")
}
