//! Acting on a plan: stage, render, dependencies, hooks, units, then the hand-over — for one build.
//!
//! Nothing live changes before the hand-over. A build has two instances that take turns (see
//! `layout::Slot`): a new release is gated in the one that does not serve, the candidate, before
//! the public socket points at it; the one that served drains, is kept running through the
//! candidate's probation and then stops. A failure before the hand-over leaves the serving
//! instance untouched; one during the probation switches straight back to it.
//! The switch is journaled in `<build_dir>/.relctl-switch` until it is verified, so a relctl
//! killed in between is recovered from by the next build or rollback.

pub mod hooks;

use std::collections::BTreeMap;
use std::os::unix::fs::{chown, MetadataExt, PermissionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use fs_err as fs;
use serde::{Deserialize, Serialize};

use crate::deploy::hooks::HookFailed;
use crate::destroy;
use crate::error::UsageError;
use crate::host::atomic;
use crate::host::health;
use crate::host::listener;
use crate::host::users::{self, RunAs};
use crate::plan::hook::{Hook, HookStage};
use crate::plan::units::{self, UnitFile};
use crate::plan::{AdoptPlan, AppPlan, BuildPlan};
use crate::release::deps::{self, DepPlan};
use crate::release::handmade;
use crate::release::id::ReleaseId;
use crate::release::layout::{self, BuildLayout, Instance, Slot};
use crate::release::render;
use crate::release::secret_key;
use crate::release::stage;
use crate::release::store::{self, ReleaseMeta, ReleaseState};
use crate::report::{self, Report};
use crate::systemd::{ActiveState, JobKind, Systemd, UnitState};

/// A build that passed verification: its unit and the health answer.
#[derive(Debug, Serialize)]
pub struct Verified {
    pub unit: UnitState,
    pub health: Option<health::Response>,
}

#[derive(Debug, Serialize)]
pub struct BuildResult {
    pub app: String,
    pub build: String,
    pub release: ReleaseId,
    pub previous: Option<ReleaseId>,
    pub release_dir: String,
    pub unit: UnitState,
    pub health: Option<health::Response>,
    pub pruned: Vec<ReleaseId>,
}

#[derive(Debug, Serialize)]
pub struct RollbackResult {
    pub build: String,
    pub from: ReleaseId,
    pub to: ReleaseId,
    pub unit: UnitState,
    pub health: Option<health::Response>,
}

/// Testing aid: `RELCTL_FAILPOINT=<name>` makes relctl kill itself with SIGKILL at that point, to
/// prove a crash there leaves the live build serving.
fn failpoint(name: &str) {
    if std::env::var("RELCTL_FAILPOINT").is_ok_and(|v| v == name) {
        nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL).expect("raising SIGKILL at a failpoint");
    }
}

/// The journal of a switch in progress; present only between the switch and its verification.
#[derive(Debug, Serialize, Deserialize)]
struct PendingSwitch {
    from: Option<ReleaseId>,
    to: ReleaseId,
    pid: u32,
}

/// Everything that changes one build, with what it needs: the app, the build's paths, systemd
/// and the report.
pub struct Deploy<'a> {
    app: &'a AppPlan,
    build: &'a BuildLayout,
    systemd: &'a Systemd,
    report: &'a mut Report,
    /// A hand-made setup this build takes over (`build --adopt`).
    adoption: Option<&'a AdoptPlan>,
    /// The service user, once the build made sure it exists.
    user: Option<RunAs>,
    /// The build's switch lock, once relctl starts or switches an instance.
    switch_lock: Option<crate::host::lock::AppLock>,
    /// `--no-wait`: fail at once when the switch lock is held.
    no_wait: bool,
}

impl<'a> Deploy<'a> {
    pub fn new(app: &'a AppPlan, build: &'a BuildLayout, systemd: &'a Systemd, report: &'a mut Report) -> Self {
        Deploy { app, build, systemd, report, adoption: None, user: None, switch_lock: None, no_wait: false }
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
        self.adoption = adoption;
        let unit_files = units::render(self.app)?;
        self.check_app_wide_change(&unit_files)?;
        let t = Instant::now();
        users::check_service_user(&self.app.manifest, &self.app.user, &units::paths(self.app))?;
        let (user, created) = users::ensure_system_user(&self.app.user, &self.app.layout.app)?;
        self.user = Some(user.clone());
        setup_dirs(plan, &user)?;
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
                self.retire_hand_made(a)?;
            }
        }
        let live = match self.go_live(&plan.release, previous.as_ref()) {
            Ok(live) => live,
            Err(e) => return Err(self.restore_hand_made(e)),
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

    /// Copies the sources, writes the release's files and runs the hooks. Nothing live changes
    /// here; the caller removes the release if this fails.
    /// `unit_files`: the app's units as this build installs them (release hooks run with the
    /// service's settings).
    fn stage(&mut self, plan: &BuildPlan, user: &RunAs, unit_files: &[UnitFile]) -> Result<()> {
        let t = Instant::now();
        let stats = plan.copy.copy_into(&plan.release_dir)?;
        failpoint("stage");
        let from = match plan.origin.promoted_from() {
            Some(p) => format!(" of {p}"),
            None => String::new(),
        };
        let detail =
            format!("{} files{from}, {} KiB -> {}", stats.files, stats.bytes / 1024, plan.release_dir.display());
        self.report.step("stage", t, detail);

        let t = Instant::now();
        let rendered = write_release_files(plan, user)?;
        // The sealed shape for the [deps] builds and build hooks; the release stays root's alone.
        self.seal(&plan.release_dir, user, stage::Seal::Staging)?;
        failpoint("render");
        self.report.step("render", t, rendered);

        for dep in &plan.deps {
            let t = Instant::now();
            let detail = self.ensure_dep(plan, dep)?;
            stage::link_beneath(&plan.release_dir, Path::new(dep.path.trim_end_matches('/')), &dep.entry)?;
            self.report.step("deps", t, detail);
        }

        let (build_hooks, release_hooks): (Vec<&Hook>, Vec<&Hook>) =
            plan.hooks.iter().partition(|h| h.stage == HookStage::Build);
        self.run_hooks(plan, &build_hooks)?;
        // What the deps and build hooks added is sealed too, and the release opens up.
        self.seal(&plan.release_dir, user, stage::Seal::Final)?;
        self.run_release_hooks(plan, &release_hooks, unit_files)?;
        let settings = plan.settings.as_ref().map(|f| f.path.clone());
        self.mark_complete(&plan.release, plan.origin.git_label(), plan.origin.promoted_from().cloned(), settings)
    }

    /// Makes a release private to the service's group, but for its `[static]` directory (with
    /// `Seal::Staging`, private to root still).
    fn seal(&self, release_dir: &Path, user: &RunAs, how: stage::Seal) -> Result<()> {
        let public: Vec<_> = self.app.static_files.iter().map(|st| release_dir.join(&st.dir)).collect();
        stage::seal(release_dir, user.gid, &public, how)
    }

    /// Writes the release's `release.json`: from now on it is complete.
    fn mark_complete(
        &self,
        release: &ReleaseId,
        git: Option<String>,
        promoted_from: Option<store::PromotedFrom>,
        settings: Option<String>,
    ) -> Result<()> {
        let meta = ReleaseMeta {
            id: release.clone(),
            app: self.app.layout.app.clone(),
            build: self.build.build.clone(),
            created: report::utc(jiff::Timestamp::now()),
            git,
            promoted_from,
            settings,
        };
        store::mark_complete(&self.build.release_dir(release), &meta)
    }

    /// Runs hooks in the new release, as root (`build`) or as the service user (`release`).
    fn run_hooks(&mut self, plan: &BuildPlan, hooks: &[&Hook]) -> Result<()> {
        for hook in hooks {
            self.run_hook(hook, &plan.release_dir, &plan.hook_env())?;
        }
        Ok(())
    }

    /// Runs the release hooks the way the service runs: each in a transient unit with the
    /// settings of the service unit this build installs (user, sandbox, `UMask=`, state
    /// directory, the release's environment file and the secrets), pinned to the new release.
    fn run_release_hooks(&mut self, plan: &BuildPlan, release_hooks: &[&Hook], unit_files: &[UnitFile]) -> Result<()> {
        if release_hooks.is_empty() {
            return Ok(());
        }
        let l = &self.app.layout;
        let b = self.build;
        let service_path = l.unit_dir.join(l.service_template());
        let service = unit_files
            .iter()
            .find(|u| u.path == service_path)
            .with_context(|| format!("rendering {} for the release hooks", service_path.display()))?;
        let main = self.instance(Slot::Main);
        let timeout = Duration::from_secs(self.app.release_timeout_s);
        let sources = hooks::ServiceSources {
            service: (&service.path, &service.contents),
            service_unit: &b.service_unit,
            unit_dir: &l.unit_dir,
            relctl_dropin: (&plan.dropin_path, plan.dropin.as_ref().map(|d| d.contents.as_str())),
            user: &self.app.user,
        };
        let properties =
            hooks::service_unit_properties(&sources, &[&main.link, &b.current], &plan.release_dir, timeout)?;
        let env = [("RELCTL_RELEASE_DIR".to_string(), plan.release_dir.display().to_string())].into();
        for hook in release_hooks {
            let spec = hooks::HookUnit {
                unit: hooks::unit_name(&l.app, &b.build),
                description: format!("relctl release hook of {} {}, release {}", l.app, b.build, plan.release),
                properties: properties.clone(),
                env: BTreeMap::clone(&env),
                timeout,
            };
            self.report.verbose(format!("relctl: release hook in {}: {}", spec.unit, spec.properties.join(" ")));
            let t = Instant::now();
            self.show_output(hooks::run_in_unit(hook, &spec, self.systemd))?;
            self.report.step(&format!("hook:{}", hook.stage), t, &hook.command);
        }
        Ok(())
    }

    /// Runs one hook in `cwd` and reports it as a step.
    fn run_hook(&mut self, hook: &Hook, cwd: &Path, env: &std::collections::BTreeMap<String, String>) -> Result<()> {
        let t = Instant::now();
        self.run_quietly(hook, cwd, env)?;
        self.report.step(&format!("hook:{}", hook.stage), t, &hook.command);
        Ok(())
    }

    /// Runs one command in `cwd`: its output shown with -v; a failure prints the tail of it.
    fn run_quietly(&mut self, hook: &Hook, cwd: &Path, env: &std::collections::BTreeMap<String, String>) -> Result<()> {
        self.show_output(hooks::run(hook, cwd, env))
    }

    /// What a hook (or a dependency's build command) printed: shown with -v; when it failed, the
    /// tail of it is shown.
    fn show_output(&self, ran: Result<String>) -> Result<()> {
        let output = ran.inspect_err(|e| {
            if let Some(f) = e.downcast_ref::<HookFailed>() {
                self.report.warn(format!("--- last lines of `{}` ---\n{}\n---", f.command, f.tail));
            }
        })?;
        self.report.verbose(&output);
        Ok(())
    }

    /// `[hooks] verify` against `inst`, which runs `release` and passed the gate, before it takes
    /// traffic: as root in the release, with the release's environment, `RELCTL_SOCKET` (the
    /// instance's own socket) and `RELCTL_URL` (`http://localhost`, for `curl --unix-socket`).
    /// `role`: `candidate` (beside the instance that serves) or `live` (nothing else serves).
    fn verify(&mut self, inst: &Instance, release: &ReleaseId, role: &str) -> Result<()> {
        if self.app.verify.is_empty() {
            return Ok(());
        }
        let dir = self.build.release_dir(release);
        let mut env = store::environment(&dir)?;
        env.insert("RELCTL_RELEASE_DIR".into(), dir.display().to_string());
        env.insert("RELCTL_SOCKET".into(), inst.socket.display().to_string());
        env.insert("RELCTL_URL".into(), "http://localhost".into());
        env.insert("RELCTL_INSTANCE".into(), role.into());
        for hook in &self.app.verify {
            self.run_hook(hook, &dir, &env)?;
        }
        Ok(())
    }

    /// The dependency's entry, complete: reused when it is, else built at its final path (what a
    /// killed build left there is removed first). A failed build removes what it made.
    fn ensure_dep(&mut self, plan: &BuildPlan, dep: &DepPlan) -> Result<String> {
        if dep.is_complete() {
            return Ok(format!("{}: reused {}", dep.name, dep.entry.display()));
        }
        let cleaned = deps::remove_half_built(dep)?;
        atomic::ensure_dir(&dep.entry)?;
        let built = (|| -> Result<()> {
            for command in &dep.build {
                let hook = Hook { stage: HookStage::Build, command: command.clone() };
                let mut env = plan.hook_env();
                env.insert("RELCTL_DEP_DIR".into(), dep.entry.display().to_string());
                self.run_quietly(&hook, &plan.release_dir, &env)?;
            }
            failpoint("deps");
            deps::mark_complete(dep)
        })();
        if let Err(e) = built {
            return Err(match fs::remove_dir_all(&dep.entry) {
                Ok(()) => e.context(format!("building [deps.{}] into {} (removed)", dep.name, dep.entry.display())),
                Err(r) => e.context(format!(
                    "building [deps.{}] into {} (could not remove it: {r}; the next build does)",
                    dep.name,
                    dep.entry.display()
                )),
            });
        }
        let half = if cleaned { ", after removing what an interrupted build left" } else { "" };
        Ok(format!("{}: built {} (keyed by {}){half}", dep.name, dep.entry.display(), dep.keyed_by.join(", ")))
    }

    /// `relctl rollback`: switches back to `to` (default: the newest good release older than
    /// current), restarts and verifies it, and marks the release it left as bad.
    pub fn rollback(&mut self, to: Option<&ReleaseId>) -> Result<RollbackResult> {
        let b = self.build;
        let t = Instant::now();
        if let Some(r) = self.recover()? {
            self.report.step("recover", t, r);
        }
        let releases = store::list(b)?;
        let current = releases
            .iter()
            .find(|r| r.state == ReleaseState::Current)
            .map(|r| r.id.clone())
            .with_context(|| format!("build {} has no current release: nothing to roll back", b.build))?;
        let target = match to {
            Some(id) => {
                store::check_rollback_target(&b.build, &releases, id)?;
                id.clone()
            }
            None => releases.iter().find(|r| r.state == ReleaseState::Previous).map(|r| r.id.clone()).with_context(
                || {
                    format!(
                        "build {} has no good release older than {current} to roll back to (see relctl releases {})",
                        b.build, b.build
                    )
                },
            )?,
        };
        let live = self.go_live(&target, Some(&current))?;
        store::mark_bad(&b.release_dir(&current), &format!("rolled back to {target}"))?;
        Ok(RollbackResult { build: b.build.clone(), from: current, to: target, unit: live.unit, health: live.health })
    }

    /// One of the build's two instances.
    fn instance(&self, slot: Slot) -> Instance {
        self.app.layout.instance(&self.build.build, slot)
    }

    /// The instance that serves: the one the public socket points at, if its service is up. A
    /// public socket that is no symlink of relctl's (a hand-made setup being adopted) is served
    /// by main, if main is up.
    fn serving(&self) -> Result<Option<Instance>> {
        let slot =
            std::fs::read_link(&self.build.socket).ok().and_then(|t| Slot::of_socket_file(&t)).unwrap_or(Slot::Main);
        let inst = self.instance(slot);
        Ok(self.systemd.unit_state(&inst.service_unit)?.active_state.is_up().then_some(inst))
    }

    /// Main's link, made from `current` for a build set up by a relctl that ran main on `current`
    /// itself.
    fn ensure_main_link(&self) -> Result<()> {
        let main = self.instance(Slot::Main);
        if std::fs::symlink_metadata(&main.link).is_err() {
            if let Some(current) = self.build.current_release()? {
                atomic::switch_symlink(&main.link, &layout::release_target(&current))?;
            }
        }
        Ok(())
    }

    /// Holds the build's switch lock from now on, so that main, started by relctl, leaves the
    /// public socket to relctl (see `lock::switch_lock`).
    fn hold_switch_lock(&mut self) -> Result<()> {
        if self.switch_lock.is_none() {
            let dir = Path::new(crate::host::lock::LOCK_DIR);
            let wait = (!self.no_wait).then_some(crate::host::lock::SWITCH_LOCK_WAIT);
            self.switch_lock =
                Some(crate::host::lock::switch_lock(dir, &self.app.layout.app, &self.build.build, wait)?);
        }
        Ok(())
    }

    /// `relctl start`: the instance that serves (main if none does) gets its socket and service
    /// started, the public socket points at it; waits for the jobs and verifies.
    pub fn start(&mut self) -> Result<Verified> {
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
        self.systemd.run_job(JobKind::Start, &inst.service_unit)?;
        self.report.step("start", t, format!("{} and {} done", inst.socket_unit, inst.service_unit));
        let (first, health) = self.gate(&inst)?;
        self.probation(&inst, &first, health)
    }

    /// `relctl stop`: both instances, services and sockets. Returns main's state afterwards.
    pub fn stop(&mut self) -> Result<UnitState> {
        let main = self.instance(Slot::Main);
        let t = Instant::now();
        self.stop_instance(&self.instance(Slot::Next))?;
        self.systemd.run_job(JobKind::Stop, &main.service_unit)?;
        self.systemd.run_job(JobKind::Stop, &main.socket_unit)?;
        self.report.step("stop", t, format!("{} and {} stopped", main.service_unit, main.socket_unit));
        self.systemd.unit_state(&main.service_unit)
    }

    /// `relctl restart BUILD`: the current release starts in the other instance, passes the gate,
    /// takes the public socket; the instance that served drains and stops. A build that is not
    /// running is just started.
    pub fn restart(&mut self) -> Result<Verified> {
        let current = self
            .build
            .current_release()?
            .with_context(|| format!("build {} has no current release", self.build.build))?;
        self.go_live(&current, Some(&current))
    }

    /// `relctl reload`: systemd's reload of the instance that serves (gunicorn: new workers, same
    /// main process), verified.
    pub fn reload(&mut self) -> Result<Verified> {
        let inst = self.serving()?.unwrap_or_else(|| self.instance(Slot::Main));
        let t = Instant::now();
        self.systemd.run_job(JobKind::Reload, &inst.service_unit)?;
        self.report.step("reload", t, format!("{} done", inst.service_unit));
        let (first, health) = self.gate(&inst)?;
        self.probation(&inst, &first, health)
    }

    /// Makes `to` live (`from` is what serves now, if anything; the same release for a restart).
    /// With an instance serving, `to` is verified in the other one first and the users never see
    /// a release that fails the gate; the switch is journaled until it is verified.
    fn go_live(&mut self, to: &ReleaseId, from: Option<&ReleaseId>) -> Result<Verified> {
        let b = self.build;
        self.hold_switch_lock()?;
        secret_key::ensure(&b.secret_key_file())?;
        let journal = b.switch_journal();
        let pending = PendingSwitch { from: from.cloned(), to: to.clone(), pid: std::process::id() };
        let json = serde_json::to_vec(&pending).context("serializing the switch journal")?;
        atomic::write(&journal, &json, 0o644, None)?;
        let outcome = match (from, self.serving()?) {
            (Some(from), Some(serving)) => self.hand_over(to, from, serving),
            _ => self.cold_start(to, from),
        };
        let outcome = outcome.and_then(|v| {
            let dir = b.release_dir(to);
            store::mark_verified(&dir, &report::utc(jiff::Timestamp::now())).with_context(|| {
                format!("release {to} of build {} is live and verified, but recording that failed", b.build)
            })?;
            Ok(v)
        });
        let cleared = atomic::remove_if_exists(&journal);
        match (outcome, cleared) {
            (Ok(v), Ok(_)) => Ok(v),
            (Ok(_), Err(e)) => Err(e.context(format!(
                "release {to} of build {} is live and verified, but its switch journal could not be removed; remove {} by hand, or the next build will treat {to} as interrupted and switch away from it",
                b.build,
                journal.display()
            ))),
            (Err(e), Ok(_)) => Err(e),
            (Err(e), Err(j)) => {
                Err(e.context(format!("the switch journal {} could not be removed either ({j:#})", journal.display())))
            }
        }
    }

    /// Nothing serves yet (a first build, or a stopped build): main starts on `to`.
    fn cold_start(&mut self, to: &ReleaseId, from: Option<&ReleaseId>) -> Result<Verified> {
        let main = self.instance(Slot::Main);
        let t = Instant::now();
        self.stop_instance(&self.instance(Slot::Next))?;
        self.switch(&main, to)?;
        self.set_current(to)?;
        self.point_public(&main)?;
        failpoint("switch");
        let was = from.map(|p| format!(" (was {p})")).unwrap_or_default();
        self.report.step("switch", t, format!("current -> releases/{to}{was}"));
        let started = self
            .start_and_verify(&main)
            .and_then(|v| self.verify(&main, to, "live").map(|()| v))
            .and_then(|(first, health)| self.probation(&main, &first, health));
        started.map_err(|cause| self.fail_back(to, from, cause))
    }

    /// `serving` serves `from`: `to` starts in the other instance, the candidate, and must pass
    /// the gate through the candidate's own socket before the public socket points at it. Then
    /// `serving` drains and is kept ready through the candidate's probation (a failure switches
    /// back to it at once), and stops. `current` points at `to` from the hand-over on.
    fn hand_over(&mut self, to: &ReleaseId, from: &ReleaseId, serving: Instance) -> Result<Verified> {
        let candidate = self.instance(serving.slot.other());
        let b = self.build;
        let t = Instant::now();
        // An instance that does not serve (one that served before a `systemctl restart` of main
        // took the build back) is stopped before it runs `to`.
        self.stop_instance(&candidate)?;
        self.switch(&candidate, to)?;
        let verified =
            self.start_and_verify(&candidate).and_then(|v| self.verify(&candidate, to, "candidate").map(|()| v));
        failpoint("candidate");
        let (first, health) = match verified {
            Ok(v) => v,
            Err(cause) => {
                self.report.warn(self.diagnose(&candidate.service_unit));
                let stopped = self.stop_instance(&candidate).and_then(|()| self.current_back(from));
                let marked = self.mark_failed(to, Some(from), &cause);
                let err = cause.context(format!(
                    "release {to} of build {} failed in {} before it took any traffic{marked}; release {from} kept serving, untouched",
                    b.build, candidate.service_unit
                ));
                return Err(match stopped {
                    Ok(()) => err,
                    Err(e) => err.context(format!("stopping {} failed too ({e:#})", candidate.service_unit)),
                });
            }
        };
        self.point_public(&candidate)?;
        match self.adoption {
            Some(a) if !a.release_dir.exists() => self.retire_hand_made(a)?,
            // Connections already queued on the instance that served are served before it stops.
            _ => self.drain(&serving.socket)?,
        }
        failpoint("handover");
        self.report.step(
            "handover",
            t,
            format!("{} serves release {to}; {} drained, kept ready", candidate.service_unit, serving.service_unit),
        );
        if to != from {
            let t = Instant::now();
            self.set_current(to)?;
            self.report.step("switch", t, format!("current -> releases/{to} (was {from})"));
        }
        failpoint("switch");
        match self.probation(&candidate, &first, health) {
            Ok(v) => {
                let t = Instant::now();
                self.stop_instance(&serving)?;
                if serving.slot == Slot::Main {
                    // Stopped, main runs `current` again when something starts it.
                    self.switch(&serving, to)?;
                }
                self.report.step(
                    "retire",
                    t,
                    format!("{} stopped; {} serves release {to}", serving.service_unit, candidate.service_unit),
                );
                Ok(v)
            }
            Err(cause) => Err(self.switch_back(to, from, &serving, &candidate, cause)),
        }
    }

    /// The candidate failed its probation after it took the public socket: the public socket goes
    /// back to `serving`, which was kept ready, `current` back to `from`, the candidate stops.
    /// Without `serving` up (a retired hand-made setup), main starts on `from` instead.
    fn switch_back(
        &mut self,
        to: &ReleaseId,
        from: &ReleaseId,
        serving: &Instance,
        candidate: &Instance,
        cause: anyhow::Error,
    ) -> anyhow::Error {
        if !self.systemd.unit_state(&serving.service_unit).is_ok_and(|s| s.active_state.is_up()) {
            return self.fail_back(to, Some(from), cause);
        }
        self.report.warn(self.diagnose(&candidate.service_unit));
        let marked = format!("failed{}", self.mark_failed(to, Some(from), &cause));
        let t = Instant::now();
        let back = self
            .point_public(serving)
            .and_then(|()| self.stop_instance(candidate))
            .and_then(|()| self.current_back(from))
            .map(|()| self.report.step("back", t, format!("{} serves release {from} again", serving.service_unit)));
        let b = &self.build.build;
        match back {
            Ok(()) => cause.context(format!(
                "release {to} of build {b} {marked}; switched back to {from}, which {} kept serving",
                serving.service_unit
            )),
            Err(e) => cause.context(format!(
                "release {to} of build {b} {marked}, and switching back to {from} failed too ({})",
                crate::error::one_line(&e)
            )),
        }
    }

    /// `current` back on `from`, and main's link too once main is stopped (a failed candidate that
    /// was main had it on the new release).
    fn current_back(&self, from: &ReleaseId) -> Result<()> {
        if self.build.current_release()?.as_ref() != Some(from) {
            self.set_current(from)?;
        }
        let main = self.instance(Slot::Main);
        if !self.systemd.unit_state(&main.service_unit)?.active_state.is_up() {
            self.switch(&main, from)?;
        }
        Ok(())
    }

    /// Points `current`, the build's current release, at `release`.
    fn set_current(&self, release: &ReleaseId) -> Result<()> {
        atomic::switch_symlink(&self.build.current, &layout::release_target(release))
    }

    /// Marks `to` bad for `cause`, unless it is the release that was serving (a restart), and says
    /// how that went, for the error message: "", " and is marked bad" or why it could not be.
    fn mark_failed(&self, to: &ReleaseId, from: Option<&ReleaseId>, cause: &anyhow::Error) -> String {
        if Some(to) == from {
            return String::new();
        }
        match store::mark_bad(&self.build.release_dir(to), &crate::error::one_line(cause)) {
            Ok(()) => " and is marked bad".to_string(),
            Err(e) => format!(" and could not be marked bad ({e:#})"),
        }
    }

    /// `to` failed in main with nothing else serving: mark it bad and start main on `from`, with
    /// the public socket on it and next stopped. Returns the error to report, which says what
    /// state the build is left in.
    fn fail_back(&mut self, to: &ReleaseId, from: Option<&ReleaseId>, cause: anyhow::Error) -> anyhow::Error {
        let b = self.build;
        let main = self.instance(Slot::Main);
        self.report.warn(self.diagnose(&main.service_unit));
        let marked = format!("failed{}", self.mark_failed(to, from, &cause));
        let Some(prev) = from else {
            return cause.context(format!(
                "release {to} of build {} {marked}; there is no previous release to switch back to",
                b.build
            ));
        };
        let t = Instant::now();
        let back = self.switch(&main, prev).and_then(|()| self.set_current(prev)).and_then(|()| {
            let (first, health) = self.start_and_verify(&main)?;
            self.point_public(&main)?;
            self.stop_instance(&self.instance(Slot::Next))?;
            self.report.step("back", t, format!("current -> releases/{prev}, {} restarted", main.service_unit));
            self.probation(&main, &first, health)
        });
        match back {
            Ok(_) => cause.context(format!(
                "release {to} of build {} {marked}; switched back to {prev}, which is serving",
                b.build
            )),
            Err(e) => cause.context(format!(
                "release {to} of build {} {marked}, and switching back to {prev} failed too ({})",
                b.build,
                crate::error::one_line(&e)
            )),
        }
    }

    /// Points the build's public socket at `inst`'s socket: a new symlink renamed over it, so
    /// every `connect(2)` reaches one instance or the other, never nothing.
    fn point_public(&self, inst: &Instance) -> Result<()> {
        let target = Path::new(inst.slot.socket_file());
        if std::fs::read_link(&self.build.socket).is_ok_and(|t| t == target) {
            return Ok(());
        }
        atomic::switch_symlink(&self.build.socket, target)
    }

    /// Waits until nothing is queued on the listening socket bound at `socket` any more (its
    /// backlog was accepted), at most 10 s.
    fn drain(&self, socket: &Path) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            match listener::queued(socket)? {
                Some(n) if n > 0 => std::thread::sleep(Duration::from_millis(20)),
                _ => return Ok(()),
            }
        }
        Ok(())
    }

    /// Stops an instance's service (gunicorn finishes its in-flight requests), then its socket;
    /// next's `next` link goes with it. Each alone (`Systemd::stop_alone`): a stop of main must
    /// not reach next, which is `PartOf=` it for `systemctl`'s sake.
    fn stop_instance(&self, inst: &Instance) -> Result<()> {
        for unit in [&inst.service_unit, &inst.socket_unit] {
            if self.systemd.unit_state(unit)?.active_state != ActiveState::Inactive {
                self.systemd.stop_alone(unit)?;
            }
        }
        if inst.slot == Slot::Next {
            atomic::remove_if_exists(&inst.link)?;
        }
        Ok(())
    }

    /// Takes the hand-made setup of `build --adopt` out of service, once nothing hand-made is
    /// reachable through the public socket any more: its listener (bound at the public path,
    /// which now names relctl's symlink) is drained, its service stopped — the public socket
    /// re-made at once if the hand-made server removes it as it exits (gunicorn unlinks the path
    /// it bound) — and only then (the stopped server may have read files lazily until it exited)
    /// are its files moved into the adopted release, which gets what a rollback needs to run it.
    fn retire_hand_made(&mut self, a: &AdoptPlan) -> Result<()> {
        let b = self.build;
        let t = Instant::now();
        let mut detail = String::new();
        if self.systemd.unit_state(&b.service_unit)?.active_state.is_up() {
            self.drain(&b.socket)?;
            detail = match self.stop_keeping_public(&b.service_unit)? {
                None => format!("{} drained and stopped, the public socket untouched; ", b.service_unit),
                Some(gap) => format!(
                    "{} drained and stopped; it removed the public socket as it exited, re-made within {} µs; ",
                    b.service_unit,
                    gap.as_micros()
                ),
            };
        }
        handmade::move_into(&a.found, &a.release_dir)?;
        write_start(&a.release_dir, a.environment.vars(), &a.start_script)?;
        if let Some(d) = &a.dropin {
            atomic::write(&store::dropin_copy(&a.release_dir), d.as_bytes(), 0o644, None)?;
        }
        let user = self.user.as_ref().context("the service user is not known before the build's setup")?;
        self.seal(&a.release_dir, user, stage::Seal::Adopted)?;
        self.mark_complete(&a.release, None, None, None)?;
        let moved = if a.found.entries.is_empty() { "nothing".to_string() } else { a.found.entries.join(", ") };
        detail.push_str(&format!("moved {moved} into {}", a.release_dir.display()));
        self.report.step("adopt", t, detail);
        Ok(())
    }

    /// Stops the hand-made `unit` while the public socket points at the candidate, re-making the
    /// public socket whenever it disappears. Returns the longest time it was missing, if it was:
    /// from the last check that saw it to the moment it was back.
    fn stop_keeping_public(&self, unit: &str) -> Result<Option<Duration>> {
        const POLL: Duration = Duration::from_micros(20);
        let public = self.build.socket.as_path();
        let target = Path::new(Slot::Next.socket_file());
        let stopping = AtomicBool::new(true);
        let mut spare = atomic::SpareSymlink::new(public, target)?;
        let stopping = &stopping;
        std::thread::scope(|s| {
            let watcher = s.spawn(move || -> Result<Option<Duration>> {
                // Sleeps of POLL, not POLL plus the default 50 µs of timer slack.
                nix::sys::prctl::set_timerslack(1000).context("setting the watcher's timer slack")?;
                let mut longest: Option<Duration> = None;
                let mut seen = Instant::now();
                loop {
                    let last = !stopping.load(Ordering::Acquire);
                    if std::fs::symlink_metadata(public).is_ok() {
                        seen = Instant::now();
                    } else {
                        spare.put()?;
                        let gap = seen.elapsed();
                        longest = Some(longest.map_or(gap, |l| l.max(gap)));
                        seen = Instant::now();
                    }
                    if last {
                        return Ok(longest);
                    }
                    std::thread::sleep(POLL);
                }
            });
            let stopped = self.systemd.stop_alone(unit);
            stopping.store(false, Ordering::Release);
            let gap = watcher
                .join()
                .map_err(|_| anyhow::anyhow!("the thread keeping {} in place panicked", public.display()))?;
            stopped?;
            gap
        })
    }

    /// `build --adopt` failed: while the hand-made setup had not been taken over yet (its server
    /// still serves), its unit files go back in place; the error says where things stand.
    fn restore_hand_made(&mut self, e: anyhow::Error) -> anyhow::Error {
        let Some(a) = self.adoption else { return e };
        if a.release_dir.exists() {
            return e.context(format!(
                "the hand-made setup of build {} had been taken over as release {} (its unit files are in {})",
                self.build.build,
                a.release,
                a.backup_dir.display()
            ));
        }
        if a.found.unit_files.is_empty() {
            return e;
        }
        match handmade::restore(&a.found, &a.backup_dir).and_then(|()| self.systemd.reload()) {
            Ok(()) => e.context(format!(
                "the hand-made setup of build {} keeps serving; its unit files are back in place (copies in {})",
                self.build.build,
                a.backup_dir.display()
            )),
            Err(r) => e.context(format!(
                "restoring the hand-made unit files from {} failed too ({r:#})",
                a.backup_dir.display()
            )),
        }
    }

    /// Points `inst`'s link (`current`, `next`) at `release` and installs the drop-in recorded with
    /// that release for the instance.
    fn switch(&self, inst: &Instance, release: &ReleaseId) -> Result<()> {
        let b = self.build;
        atomic::switch_symlink(&inst.link, &layout::release_target(release))?;
        let recorded = store::recorded_dropin(&b.release_dir(release))?;
        if apply_dropin(inst, recorded.as_deref())? {
            self.systemd.reload()?;
        }
        Ok(())
    }

    /// A previous relctl was killed between a switch and its verification: the build goes back to
    /// the release it came from — the instance still running it takes the public socket (or main
    /// starts on it), the other one stops, `current` points at it. Returns what was done.
    fn recover(&mut self) -> Result<Option<String>> {
        let b = self.build;
        let journal = b.switch_journal();
        let Some(bytes) = atomic::read_if_exists(&journal)? else { return Ok(None) };
        let p: PendingSwitch = serde_json::from_slice(&bytes).with_context(|| {
            format!(
                "reading the switch journal {}; remove it once `current` points at the release that should serve",
                journal.display()
            )
        })?;
        self.hold_switch_lock()?;
        let interrupted = b.release_dir(&p.to);
        if Some(&p.to) != p.from.as_ref() && interrupted.is_dir() {
            store::mark_bad(&interrupted, "its build was interrupted after the switch, before verification")?;
        }
        let mut done = Vec::new();
        if let Some(from) = p.from.filter(|f| b.release_dir(f).is_dir()) {
            self.report.warn(format!(
                "relctl: an interrupted relctl (pid {}) left build {} switching to unverified release {}; going back to {from}",
                p.pid, b.build, p.to
            ));
            let serving = self.serving()?;
            let mut runs_from = None;
            for slot in [
                serving.as_ref().map_or(Slot::Main, |s| s.slot),
                serving.as_ref().map_or(Slot::Next, |s| s.slot.other()),
            ] {
                let inst = self.instance(slot);
                if self.runs(&inst, &from)? {
                    runs_from = Some(inst);
                    break;
                }
            }
            match runs_from {
                Some(inst) => {
                    if serving.as_ref().is_none_or(|s| s.slot != inst.slot) {
                        self.point_public(&inst)?;
                        done.push(format!("public socket back on {}", inst.service_unit));
                    }
                    let other = self.instance(inst.slot.other());
                    if self.systemd.unit_state(&other.service_unit)?.active_state != ActiveState::Inactive {
                        done.push(format!("stopped {}", other.service_unit));
                    }
                    self.stop_instance(&other)?;
                }
                None if serving.is_some() => {
                    let main = self.instance(Slot::Main);
                    self.stop_instance(&self.instance(Slot::Next))?;
                    self.switch(&main, &from)?;
                    self.systemd.stop_alone(&main.service_unit)?;
                    self.ensure_socket(&main)?;
                    self.systemd.run_job(JobKind::Start, &main.service_unit)?;
                    self.point_public(&main)?;
                    done.push(format!("{} restarted on {from}", main.service_unit));
                }
                None => {}
            }
            if b.current_release()?.as_ref() != Some(&from) {
                done.push(format!("switched back from {} to {from}", p.to));
            }
            self.current_back(&from)?;
        }
        atomic::remove_if_exists(&journal)?;
        Ok(Some(format!(
            "recovered from an interrupted relctl (pid {}): release {} marked bad{}",
            p.pid,
            p.to,
            done.iter().map(|d| format!(", {d}")).collect::<String>()
        )))
    }

    /// Whether `inst` is up and runs `release`: its link points at it, or its main process works in
    /// it (main keeps running the release it started on after `current` moved on).
    fn runs(&self, inst: &Instance, release: &ReleaseId) -> Result<bool> {
        let state = self.systemd.unit_state(&inst.service_unit)?;
        if !state.active_state.is_up() {
            return Ok(false);
        }
        let linked = layout::link_release(&inst.link).is_ok_and(|r| r.as_ref() == Some(release));
        let dir = self.build.release_dir(release);
        let works_in = state.main_pid > 0
            && std::fs::read_link(format!("/proc/{}/cwd", state.main_pid)).is_ok_and(|cwd| cwd.starts_with(&dir));
        Ok(linked || works_in)
    }

    /// Writes the unit files, enables the build, and reloads systemd when either changed anything
    /// (`EnableUnitFiles` only makes the symlinks: until a reload, `<app>.target` does not want
    /// a newly enabled build, so a `systemctl start <app>.target` would leave it out).
    fn install_units(&self, plan: &BuildPlan, unit_files: &[UnitFile]) -> Result<String> {
        let mut changed = Vec::new();
        for unit in unit_files {
            if atomic::write(&unit.path, unit.contents.as_bytes(), 0o644, None)? {
                changed.push(unit.path.file_name().unwrap_or_default().to_string_lossy().into_owned());
            }
        }
        let enable: Vec<&str> = plan.enable.iter().map(String::as_str).collect();
        let enabled = self.systemd.enable(&enable)?;
        if !changed.is_empty() || !enabled.is_empty() {
            self.systemd.reload()?;
        }
        let wrote = if changed.is_empty() { "unchanged".to_string() } else { format!("wrote {}", changed.join(", ")) };
        Ok(match (changed.is_empty() && enabled.is_empty(), enabled.is_empty()) {
            (true, _) => format!("unchanged; enabled {}", plan.enable.join(", ")),
            (false, true) => format!("{wrote}, reloaded systemd; enabled {}", plan.enable.join(", ")),
            (false, false) => format!("{wrote}; enabled {}, reloaded systemd", plan.enable.join(", ")),
        })
    }

    /// `inst`'s socket unit running and listening at its path with its group and mode. A failed
    /// socket is started again; one whose live socket does not match its unit (the path, group or
    /// mode changed since it was bound) is re-bound, which drops the connections queued on it.
    fn ensure_socket(&mut self, inst: &Instance) -> Result<()> {
        let t = Instant::now();
        let state = self.systemd.unit_state(&inst.socket_unit)?;
        if !state.is_active() {
            self.systemd.run_job(JobKind::Start, &inst.socket_unit)?;
            if state.active_state == ActiveState::Failed {
                self.report.step("socket", t, format!("{} had failed; started it again", inst.socket_unit));
            }
            return Ok(());
        }
        if let Some(why) = self.socket_mismatch(inst)? {
            self.systemd.stop_alone(&inst.service_unit)?;
            self.systemd.stop_alone(&inst.socket_unit)?;
            self.systemd.run_job(JobKind::Start, &inst.socket_unit)?;
            let detail =
                format!("re-bound {}: {why}; connections queued on the old socket were dropped", inst.socket.display());
            self.report.step("socket", t, detail);
        }
        Ok(())
    }

    /// Why the live socket at `inst`'s path is not what its unit says, if it is not.
    fn socket_mismatch(&self, inst: &Instance) -> Result<Option<String>> {
        if !listener::is_listening(&inst.socket)? {
            return Ok(Some(format!("{} was active but nothing listened at its path", inst.socket_unit)));
        }
        let meta =
            std::fs::symlink_metadata(&inst.socket).with_context(|| format!("reading {}", inst.socket.display()))?;
        let group = nix::unistd::Group::from_name(&self.app.socket_group)
            .with_context(|| format!("looking up group {}", self.app.socket_group))?;
        if group.is_some_and(|g| g.gid.as_raw() != meta.gid()) {
            return Ok(Some(format!("its group is gid {}, the unit says {}", meta.gid(), self.app.socket_group)));
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

    /// A manifest change to what every build shares (the socket unit: root, socket, socket_group;
    /// the service user) reaches running builds only when their sockets are re-bound or their
    /// services restarted. relctl does that for the build it deploys, and refuses, before anything
    /// is touched, while other builds run on the old units.
    fn check_app_wide_change(&self, unit_files: &[UnitFile]) -> Result<()> {
        let mut changes = Vec::new();
        for unit in unit_files {
            let Some(old) = atomic::read_string_if_exists(&unit.path)? else { continue };
            let watched = |l: &&str| {
                ["ListenStream=", "SocketGroup=", "SocketMode=", "User=", "Group="].iter().any(|k| l.starts_with(k))
            };
            let before: Vec<&str> = old.lines().filter(watched).collect();
            let after: Vec<&str> = unit.contents.lines().filter(watched).collect();
            for (was, now) in before.iter().zip(&after).filter(|(a, b)| a != b) {
                changes.push(format!("{was} -> {now}"));
            }
        }
        if changes.is_empty() {
            return Ok(());
        }
        let app = &self.app.layout.app;
        let mut others = Vec::new();
        for slot in Slot::BOTH {
            let prefix = format!("{}@", slot.unit_prefix(app));
            for (unit, _) in self.systemd.running_units(&format!("{prefix}*"))? {
                let build = unit.strip_prefix(&prefix).and_then(|i| i.rsplit_once('.')).map(|(b, _)| b.to_string());
                others.extend(build.filter(|b| *b != self.build.build));
            }
        }
        others.sort();
        others.dedup();
        if others.is_empty() {
            return Ok(());
        }
        let stop: Vec<String> = others.iter().map(|o| format!("relctl stop {o}")).collect();
        let start: Vec<String> = others.iter().map(|o| format!("relctl start {o}")).collect();
        Err(UsageError(format!(
            "the manifest changes what every build of {app} shares ({}), and build(s) {} still run on the old units; re-binding their sockets drops their queued connections, so relctl does not do it behind your back: run {}, then relctl build {}, then {}",
            changes.join("; "),
            others.join(", "),
            stop.join("; "),
            self.build.build,
            start.join("; ")
        ))
        .into())
    }

    /// Starts `inst`'s socket, starts its service afresh (stopped first, alone, if it runs: a
    /// restart of main would reach next), waits for the jobs, then runs the gate through the
    /// instance's own socket.
    fn start_and_verify(&mut self, inst: &Instance) -> Result<(UnitState, Option<health::Response>)> {
        self.hold_switch_lock()?;
        self.ensure_socket(inst)?;
        let t = Instant::now();
        let before = self.systemd.unit_state(&inst.service_unit)?;
        let kind = if before.active_state.is_up() { JobKind::Restart } else { JobKind::Start };
        if kind == JobKind::Restart {
            self.systemd.stop_alone(&inst.service_unit)?;
        }
        self.systemd.run_job(JobKind::Start, &inst.service_unit)?;
        failpoint("restart");
        self.report.step(kind.verb(), t, format!("{} done", inst.service_unit));
        self.gate(inst)
    }

    /// The gate, through `inst`'s own socket: the unit is active, its main process holds the socket
    /// systemd passes it (and listens on nothing of its own), and `[health]` answers 2xx/3xx.
    fn gate(&mut self, inst: &Instance) -> Result<(UnitState, Option<health::Response>)> {
        let t = Instant::now();
        let unit = &inst.service_unit;
        let first = self.systemd.unit_state(unit)?;
        if !first.is_active() {
            bail!(
                "{unit} is {} ({}) after its job finished, result '{}'",
                first.active_state,
                first.sub_state,
                first.result
            );
        }
        if !listener::holds(first.main_pid, &inst.socket)? {
            bail!(
                "{unit} is active, but its main process (PID {}) does not hold the listening socket {}: the service must take its socket from systemd (LISTEN_FDS), not bind one of its own (for gunicorn: no --bind)",
                first.main_pid,
                inst.socket.display()
            );
        }
        let own = listener::own_tcp_listeners(first.main_pid)?;
        if !own.is_empty() {
            bail!(
                "{unit}'s main process (PID {}) listens on {} of its own instead of serving the socket systemd passes it ({}): the service must take its socket from systemd (LISTEN_FDS; for gunicorn: no --bind)",
                first.main_pid,
                own.join(", "),
                inst.socket.display()
            );
        }
        let h = &self.app.health;
        let request = health::Request { script_name: self.app.script_name(&self.build.build), path: h.path.clone() };
        let response = health::wait_healthy(&inst.socket, &request, h.accept, Duration::from_secs(h.timeout_s))?;
        let answered = format!("; GET {} -> {}", request.uri(), response.status);
        let health = Some(response);
        self.report.step("verify", t, format!("{unit} active, main PID {}{answered}", first.main_pid));
        Ok((first, health))
    }

    /// The probation window: the service keeps its main PID and is not restarted by systemd for
    /// `probation_s` after it passed the gate.
    fn probation(&mut self, inst: &Instance, first: &UnitState, health: Option<health::Response>) -> Result<Verified> {
        let t = Instant::now();
        let unit = &inst.service_unit;
        std::thread::sleep(Duration::from_secs(self.app.probation_s));
        let state = self.systemd.unit_state(unit)?;
        if !state.is_active() || state.n_restarts != first.n_restarts || state.main_pid != first.main_pid {
            bail!(
                "{unit} did not stay up for the {}s probation: now {} ({}), result '{}', restarts {} -> {}, main PID {} -> {}",
                self.app.probation_s,
                state.active_state,
                state.sub_state,
                state.result,
                first.n_restarts,
                state.n_restarts,
                first.main_pid,
                state.main_pid
            );
        }
        self.report.step(
            "probation",
            t,
            format!("{unit} stable for {}s, main PID {}", self.app.probation_s, state.main_pid),
        );
        Ok(Verified { unit: state, health })
    }

    /// Why a unit failed, for people: its state and the last lines of its journal.
    fn diagnose(&self, unit: &str) -> String {
        let state = match self.systemd.unit_state(unit) {
            Ok(s) => format!(
                "{unit}: {} ({}), result '{}', restarts {}",
                s.active_state, s.sub_state, s.result, s.n_restarts
            ),
            Err(e) => format!("{unit}: state unknown ({e:#})"),
        };
        let journal = std::process::Command::new("journalctl")
            .args(["-u", unit, "-n", "200", "--no-pager", "-o", "short-precise"])
            .output()
            .map(|o| last_error(&String::from_utf8_lossy(&o.stdout)))
            .unwrap_or_else(|e| format!("(journalctl could not run: {e})\n"));
        format!("--- {state}; last journal lines ---\n{journal}---")
    }
}

/// The journal lines worth showing: from the start of the last error the app logged (a Python
/// traceback, Django's "Internal Server Error: <path>") when it is among them, at most 60 lines,
/// else the last 15.
fn last_error(journal: &str) -> String {
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

fn join<T: std::fmt::Display>(items: impl IntoIterator<Item = T>) -> String {
    items.into_iter().map(|i| i.to_string()).collect::<Vec<_>>().join(", ")
}

/// Writes (or removes) an instance's drop-in; returns whether it changed.
fn apply_dropin(inst: &Instance, contents: Option<&str>) -> Result<bool> {
    match contents {
        Some(c) => {
            if let Some(dir) = inst.dropin.parent() {
                atomic::ensure_dir(dir)?;
            }
            atomic::write(&inst.dropin, c.as_bytes(), 0o644, None)
        }
        None => atomic::remove_if_exists(&inst.dropin),
    }
}

/// The release's `.relctl/environment` (0600 root: it may hold secrets, and systemd reads it as
/// root) and `.relctl/start`, which the units run it by.
fn write_start(
    release_dir: &Path,
    environment: &std::collections::BTreeMap<String, String>,
    start: &str,
) -> Result<()> {
    let meta = store::meta_dir(release_dir);
    atomic::ensure_dir(&meta)?;
    fs::set_permissions(&meta, std::fs::Permissions::from_mode(0o755))?;
    // 0600 root: it may hold values rendered from secrets; systemd reads it as root.
    let env = render::env_file(environment)
        .with_context(|| format!("writing the environment of {}", release_dir.display()))?;
    atomic::write(&store::environment_file(release_dir), env.as_bytes(), 0o600, None)?;
    atomic::write(&meta.join("start"), start.as_bytes(), 0o755, None)?;
    Ok(())
}

/// The build's directories, and its state directory owned by the service user.
fn setup_dirs(plan: &BuildPlan, user: &RunAs) -> Result<()> {
    let b = &plan.build;
    for dir in [&plan.app.layout.root, &b.build_dir, &b.releases_dir] {
        atomic::ensure_dir(dir)?;
    }
    // Before the release hooks, which run with the service's environment files.
    secret_key::ensure(&b.secret_key_file())?;
    // The state directory is systemd's (StateDirectory=, StateDirectoryMode=0700); release hooks
    // (migrations) run before the first start, so it must exist and belong to the service user
    // already. It and the cache directory are not for other users: one that an earlier relctl let
    // everyone into (systemd's default 0755, which systemd keeps for a directory that exists) loses
    // the bits for others; a group an admin gave access on purpose (a drop-in's 0750) keeps them.
    let new = !b.state_dir.exists();
    atomic::ensure_dir(&b.state_dir)?;
    chown(&b.state_dir, Some(user.uid), Some(user.gid)).with_context(|| format!("chown {}", b.state_dir.display()))?;
    for dir in [&b.state_dir, &b.cache_dir] {
        let mode = match fs::symlink_metadata(dir) {
            Ok(m) if m.is_dir() => m.mode() & 0o7777,
            _ => continue,
        };
        let narrowed = if new && dir == &b.state_dir { 0o700 } else { mode & !0o007 };
        if narrowed != mode {
            fs::set_permissions(dir, std::fs::Permissions::from_mode(narrowed))?;
        }
    }
    Ok(())
}

/// Writes what the release carries of its configuration: environment file, start script, the
/// build's drop-in as of this release, and the settings file (0640 root:<user>).
fn write_release_files(plan: &BuildPlan, user: &RunAs) -> Result<String> {
    write_start(&plan.release_dir, plan.environment.vars(), &plan.start_script)?;
    if let Some(d) = &plan.dropin {
        atomic::write(&store::dropin_copy(&plan.release_dir), d.contents.as_bytes(), 0o644, None)?;
    }
    let Some(settings) = &plan.settings else {
        return Ok("environment, start script".into());
    };
    // Beneath the release through file descriptors: the source may hold symlinks on the way.
    stage::write_beneath(&plan.release_dir, Path::new(&settings.path), settings.contents.as_bytes(), 0o640, user.gid)?;
    Ok(format!("{} from {} (0640 root:{}), environment, start script", settings.path, settings.template, user.user))
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn the_environment_file_is_written_for_root_alone() {
        let dir = tempfile::tempdir().unwrap();
        let env = std::collections::BTreeMap::from([("DB_PASSWORD".to_string(), "s3cret".to_string())]);
        write_start(dir.path(), &env, "#!/bin/sh\n").unwrap();
        let meta = std::fs::metadata(store::environment_file(dir.path())).unwrap();
        assert_eq!((meta.uid(), meta.mode() & 0o7777), (0, 0o600));
        assert_eq!(store::environment(dir.path()).unwrap(), env, "root reads it back");
        assert_eq!(std::fs::metadata(store::meta_dir(dir.path()).join("start")).unwrap().mode() & 0o7777, 0o755);
    }
}
