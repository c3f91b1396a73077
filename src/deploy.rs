//! Acting on a `BuildPlan`: stage, render, hooks, units, switch, (re)start, verify.
//!
//! Nothing live changes before the switch; a failure after it switches back. The switch is
//! journaled in `<build_dir>/.relctl-switch` until it is verified, so a relctl killed after the
//! switch is recovered from by the next build or rollback.

use std::fs;
use std::os::unix::fs::{chown, PermissionsExt};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::health;
use crate::hooks::{self, HookFailed};
use crate::layout::{self, BuildLayout};
use crate::plan::{AppPlan, BuildPlan};
use crate::render;
use crate::report::Report;
use crate::store::{self, ReleaseMeta};
use crate::systemd::{JobKind, Systemd, UnitState};
use crate::users::{self, RunAs};

#[derive(Debug, Serialize)]
pub struct BuildResult {
    pub app: String,
    pub build: String,
    pub release: String,
    pub previous: Option<String>,
    pub release_dir: String,
    pub unit: UnitState,
    pub health: Option<health::Response>,
    pub pruned: Vec<String>,
}

/// relctl writes /opt, /etc/systemd/system and talks to systemd: it needs root.
pub fn require_root(what: &str) -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!(
            "{what} needs root (it writes /opt, /etc/systemd/system and asks systemd to start units); run it with sudo"
        );
    }
    Ok(())
}

/// Testing aid: `RELCTL_FAILPOINT=<name>` makes relctl kill itself with SIGKILL at that point, to
/// prove a crash there leaves the live build serving.
pub fn failpoint(name: &str) {
    if std::env::var("RELCTL_FAILPOINT").is_ok_and(|v| v == name) {
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
    }
}

pub fn build(plan: &BuildPlan, systemd: &Systemd, report: &mut Report) -> Result<BuildResult> {
    let b = &plan.build;
    let t = Instant::now();
    let (user, created) = users::ensure_system_user(&plan.app.user)?;
    setup_dirs(plan, &user)?;
    let recovered = recover(&plan.app, b, systemd, report)?;
    let cleaned = store::remove_incomplete(b)?;
    let mut detail =
        format!("user {}{}, {}", user.user, if created { " (created)" } else { "" }, b.build_dir.display());
    if let Some(r) = recovered {
        detail.push_str(&format!(", {r}"));
    }
    if !cleaned.is_empty() {
        detail.push_str(&format!(", removed half-made release(s) {}", cleaned.join(", ")));
    }
    report.step("setup", t, detail);

    // From here until the switch, a failure removes the new release and changes nothing else.
    let staged = (|| -> Result<()> {
        let t = Instant::now();
        let stats = plan.copy.copy_into(&plan.release_dir)?;
        failpoint("stage");
        report.step(
            "stage",
            t,
            format!("{} files, {} KiB -> {}", stats.files, stats.bytes / 1024, plan.release_dir.display()),
        );

        let t = Instant::now();
        let rendered = write_release_files(plan, &user)?;
        failpoint("render");
        report.step("render", t, rendered);

        for hook in &plan.hooks {
            let t = Instant::now();
            let run_as = (hook.stage == "release").then_some(&user);
            let run = hooks::run(hook, &plan.release_dir, &plan.hook_env(hook), run_as);
            let run = run.inspect_err(|e| {
                if let Some(f) = e.downcast_ref::<HookFailed>() {
                    report.warn(format!("--- last lines of `{}` ---\n{}\n---", f.command, f.tail));
                }
            })?;
            report.verbose(&run.output);
            report.step(&format!("hook:{}", hook.stage), t, &hook.command);
        }
        let meta = ReleaseMeta {
            id: plan.release.clone(),
            app: plan.app.layout.app.clone(),
            build: b.build.clone(),
            created: jiff::Timestamp::now().strftime("%Y-%m-%d %H:%M:%S UTC").to_string(),
            git: store::git_label(plan.git.as_ref()),
        };
        store::mark_complete(&plan.release_dir, &meta)
    })();
    if let Err(e) = staged {
        let _ = store::remove(&plan.release_dir);
        return Err(e.context(format!(
            "build {} aborted before the switch; release {} removed, nothing live changed",
            b.build, plan.release
        )));
    }

    let t = Instant::now();
    let changed = install_units(plan, systemd)?;
    failpoint("units");
    report.step("units", t, changed);

    let previous = b.current_release();
    let live = go_live(&plan.app, b, systemd, &plan.release, previous.as_deref(), report)?;

    let t = Instant::now();
    let pruned = store::prune(b, plan.app.keep_releases)?;
    if !pruned.is_empty() {
        report.step("prune", t, format!("removed {} (keep_releases = {})", pruned.join(", "), plan.app.keep_releases));
    }
    Ok(BuildResult {
        app: plan.app.layout.app.clone(),
        build: b.build.clone(),
        release: plan.release.clone(),
        previous,
        release_dir: plan.release_dir.display().to_string(),
        unit: live.0,
        health: live.1,
        pruned,
    })
}

#[derive(Debug, Serialize)]
pub struct RollbackResult {
    pub build: String,
    pub from: String,
    pub to: String,
    pub unit: UnitState,
    pub health: Option<health::Response>,
}

/// Switches BUILD back to `to` (default: the newest good release older than current), restarts
/// and verifies it, and marks the release it left as bad.
pub fn rollback(
    app: &AppPlan,
    b: &BuildLayout,
    to: Option<&str>,
    systemd: &Systemd,
    report: &mut Report,
) -> Result<RollbackResult> {
    let t = Instant::now();
    if let Some(r) = recover(app, b, systemd, report)? {
        report.step("recover", t, r);
    }
    let current = b
        .current_release()
        .with_context(|| format!("build {} has no current release: nothing to roll back", b.build))?;
    let releases = store::list(b)?;
    let target = match to {
        Some(id) => {
            let r = releases.iter().find(|r| r.id == id).with_context(|| {
                let ids: Vec<&str> = releases.iter().map(|r| r.id.as_str()).collect();
                format!("build {} has no release {id}; its releases: {}", b.build, ids.join(", "))
            })?;
            if !r.complete {
                bail!(
                    "release {id} of build {} is incomplete (its build never finished); cannot roll back to it",
                    b.build
                );
            }
            if r.id == current {
                bail!("release {id} is already current for build {}", b.build);
            }
            r.id.clone()
        }
        None => store::previous(&releases, &current).map(|r| r.id.clone()).with_context(|| {
            format!(
                "build {} has no good release older than {current} to roll back to (see relctl releases {})",
                b.build, b.build
            )
        })?,
    };
    let (unit, health) = go_live(app, b, systemd, &target, Some(&current), report)?;
    store::mark_bad(&b.release_dir(&current), &format!("rolled back to {target}"))?;
    Ok(RollbackResult { build: b.build.clone(), from: current, to: target, unit, health })
}

/// The journal of a switch in progress; present only between the switch and its verification.
#[derive(Debug, Serialize, Deserialize)]
struct PendingSwitch {
    from: Option<String>,
    to: String,
    pid: u32,
}

fn pending_path(b: &BuildLayout) -> std::path::PathBuf {
    b.build_dir.join(".relctl-switch")
}

/// Switches `current` to `to`, applies its drop-in, (re)starts the service and verifies it. If
/// that fails, marks `to` bad and switches back to `from`, restarting and verifying it.
fn go_live(
    app: &AppPlan,
    b: &BuildLayout,
    systemd: &Systemd,
    to: &str,
    from: Option<&str>,
    report: &mut Report,
) -> Result<(UnitState, Option<health::Response>)> {
    let t = Instant::now();
    let pending = PendingSwitch { from: from.map(String::from), to: to.to_string(), pid: std::process::id() };
    layout::write_atomic(&pending_path(b), &serde_json::to_vec(&pending)?, 0o644, None)?;
    switch(app, b, systemd, to)?;
    failpoint("switch");
    report.step(
        "switch",
        t,
        format!("current -> releases/{to}{}", from.map(|p| format!(" (was {p})")).unwrap_or_default()),
    );

    let verified = start_and_verify(app, b, systemd, report);
    let outcome = match verified {
        Ok(v) => Ok(v),
        Err(cause) => {
            report.warn(diagnose(systemd, &b.service_unit));
            let _ = store::mark_bad(&b.release_dir(to), &crate::error::one_line(&cause));
            Err(match from {
                None => cause.context(format!(
                    "release {to} of build {} failed and is marked bad; there is no previous release to switch back to",
                    b.build
                )),
                Some(prev) => {
                    report.warn(format!(
                        "relctl: release {to} failed: {}; switching back to {prev}",
                        crate::error::one_line(&cause)
                    ));
                    let t = Instant::now();
                    let back = switch(app, b, systemd, prev).and_then(|_| {
                        systemd.run_job(JobKind::Restart, &b.service_unit)?;
                        report.step("back", t, format!("current -> releases/{prev}, {} restarted", b.service_unit));
                        verify(app, b, systemd, report)
                    });
                    match back {
                        Ok(_) => cause.context(format!("release {to} of build {} failed and is marked bad; switched back to {prev}, which is serving", b.build)),
                        Err(e) => cause.context(format!("release {to} of build {} failed, and switching back to {prev} failed too ({})", b.build, crate::error::one_line(&e))),
                    }
                }
            })
        }
    };
    let _ = fs::remove_file(pending_path(b));
    outcome
}

/// Points `current` at `release` and installs the drop-in recorded with that release.
fn switch(app: &AppPlan, b: &BuildLayout, systemd: &Systemd, release: &str) -> Result<()> {
    layout::switch_symlink(&b.current, &Path::new("releases").join(release))?;
    let recorded = store::recorded_dropin(&b.release_dir(release));
    if apply_dropin(app, b, recorded.as_deref())? {
        systemd.reload()?;
    }
    Ok(())
}

/// Writes (or removes) the build's drop-in; returns whether it changed.
fn apply_dropin(app: &AppPlan, b: &BuildLayout, contents: Option<&str>) -> Result<bool> {
    let path = app.layout.dropin_file(&b.build);
    match contents {
        Some(c) => {
            layout::ensure_dir(path.parent().unwrap())?;
            layout::write_atomic(&path, c.as_bytes(), 0o644, None)
        }
        None if path.exists() => {
            fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
            Ok(true)
        }
        None => Ok(false),
    }
}

/// A previous relctl was killed between a switch and its verification: switch back to where it
/// came from and restart, so what serves is a verified release. Returns what was done.
fn recover(app: &AppPlan, b: &BuildLayout, systemd: &Systemd, report: &Report) -> Result<Option<String>> {
    let path = pending_path(b);
    let Ok(text) = fs::read(&path) else { return Ok(None) };
    let Ok(p) = serde_json::from_slice::<PendingSwitch>(&text) else {
        fs::remove_file(&path)?;
        return Ok(None);
    };
    let _ = store::mark_bad(&b.release_dir(&p.to), "its build was interrupted after the switch, before verification");
    let Some(from) = p.from.filter(|f| b.release_dir(f).is_dir()) else {
        fs::remove_file(&path)?;
        return Ok(Some(format!(
            "release {} was left unverified by an interrupted relctl (pid {}); marked bad",
            p.to, p.pid
        )));
    };
    report.warn(format!("relctl: an interrupted relctl (pid {}) left build {} switched to unverified release {}; switching back to {from}", p.pid, b.build, p.to));
    switch(app, b, systemd, &from)?;
    let state = systemd.unit_state(&b.service_unit)?;
    if state.active_state != "inactive" {
        systemd.run_job(JobKind::Restart, &b.service_unit)?;
    }
    fs::remove_file(&path)?;
    Ok(Some(format!("recovered from an interrupted relctl: switched back from {} to {from}", p.to)))
}

fn setup_dirs(plan: &BuildPlan, user: &RunAs) -> Result<()> {
    let b = &plan.build;
    for dir in [&plan.app.layout.root, &b.build_dir, &b.releases_dir] {
        layout::ensure_dir(dir)?;
    }
    // The state directory is systemd's (StateDirectory=); release hooks (migrations) run before
    // the first start, so it must exist and belong to the service user already.
    layout::ensure_dir(&b.state_dir)?;
    chown(&b.state_dir, Some(user.uid), Some(user.gid)).with_context(|| format!("chown {}", b.state_dir.display()))?;
    Ok(())
}

/// Writes what the release carries of its configuration: environment file, start script, the
/// build's drop-in as of this release, and the settings file (0640 root:<user>).
fn write_release_files(plan: &BuildPlan, user: &RunAs) -> Result<String> {
    let meta = plan.meta_dir();
    layout::ensure_dir(&meta)?;
    fs::set_permissions(&meta, fs::Permissions::from_mode(0o755))?;
    layout::write_atomic(&meta.join("environment"), render::env_file(&plan.environment).as_bytes(), 0o644, None)?;
    layout::write_atomic(&meta.join("start"), plan.start_script.as_bytes(), 0o755, None)?;
    if let Some(d) = &plan.dropin {
        layout::write_atomic(&meta.join(store::DROPIN_FILE), d.contents.as_bytes(), 0o644, None)?;
    }
    let Some(settings) = &plan.settings else {
        return Ok("environment, start script".into());
    };
    let dest = plan.release_dir.join(&settings.path);
    if let Some(parent) = dest.parent() {
        layout::ensure_dir(parent)?;
    }
    layout::write_atomic(&dest, settings.contents.as_bytes(), 0o640, Some(user.gid))?;
    Ok(format!("{} from {} (0640 root:{}), environment, start script", settings.path, settings.template, user.user))
}

/// Writes the unit files, reloads systemd when any changed, enables the build.
fn install_units(plan: &BuildPlan, systemd: &Systemd) -> Result<String> {
    let mut changed = Vec::new();
    for unit in &plan.app.units {
        if layout::write_atomic(&unit.path, unit.contents.as_bytes(), 0o644, None)? {
            changed.push(unit.path.file_name().unwrap().to_string_lossy().into_owned());
        }
    }
    if !changed.is_empty() {
        systemd.reload()?;
    }
    let enable: Vec<&str> = plan.enable.iter().map(String::as_str).collect();
    systemd.enable(&enable)?;
    Ok(if changed.is_empty() {
        format!("unchanged; enabled {}", plan.enable.join(", "))
    } else {
        format!("wrote {}, reloaded systemd; enabled {}", changed.join(", "), plan.enable.join(", "))
    })
}

/// Starts the socket, starts or restarts the service, waits for the jobs, then verifies.
pub fn start_and_verify(
    app: &AppPlan,
    b: &BuildLayout,
    systemd: &Systemd,
    report: &mut Report,
) -> Result<(UnitState, Option<health::Response>)> {
    let t = Instant::now();
    systemd.run_job(JobKind::Start, &b.socket_unit)?;
    let before = systemd.unit_state(&b.service_unit)?;
    let kind = if matches!(before.active_state.as_str(), "active" | "activating" | "reloading") {
        JobKind::Restart
    } else {
        JobKind::Start
    };
    systemd.run_job(kind, &b.service_unit)?;
    failpoint("restart");
    report.step(kind.verb(), t, format!("{} done", b.service_unit));
    verify(app, b, systemd, report)
}

/// The unit must be active, answer 2xx/3xx on the health path (with `[health]`), and stay up
/// through the probation window: same main PID, no automatic restarts.
pub fn verify(
    app: &AppPlan,
    b: &BuildLayout,
    systemd: &Systemd,
    report: &mut Report,
) -> Result<(UnitState, Option<health::Response>)> {
    let t = Instant::now();
    let unit = &b.service_unit;
    let first = systemd.unit_state(unit)?;
    if !first.is_active() {
        bail!(
            "{unit} is {} ({}) after its job finished, result '{}'",
            first.active_state,
            first.sub_state,
            first.result
        );
    }
    let health = match &app.health {
        Some(h) => Some(health::wait_healthy(&b.socket, &h.path, Duration::from_secs(h.timeout_s))?),
        None => None,
    };
    let probation = Duration::from_secs(app.probation_s);
    let settle = probation.saturating_sub(t.elapsed());
    std::thread::sleep(settle);
    let state = systemd.unit_state(unit)?;
    if !state.is_active() || state.n_restarts != first.n_restarts || state.main_pid != first.main_pid {
        bail!(
            "{unit} did not stay up for the {}s probation: now {} ({}), result '{}', restarts {} -> {}, main PID {} -> {}",
            app.probation_s, state.active_state, state.sub_state, state.result, first.n_restarts, state.n_restarts, first.main_pid, state.main_pid
        );
    }
    let detail = match (&health, &app.health) {
        (Some(r), Some(h)) => format!(
            "{unit} active, main PID {}; GET {} -> {}; stable for {}s",
            state.main_pid, h.path, r.status, app.probation_s
        ),
        _ => format!("{unit} active, main PID {}; stable for {}s", state.main_pid, app.probation_s),
    };
    report.step("verify", t, detail);
    Ok((state, health))
}

/// Why a unit failed, for people: its state and the last lines of its journal.
fn diagnose(systemd: &Systemd, unit: &str) -> String {
    let state = systemd
        .unit_state(unit)
        .map(|s| {
            format!("{unit}: {} ({}), result '{}', restarts {}", s.active_state, s.sub_state, s.result, s.n_restarts)
        })
        .unwrap_or_else(|e| format!("{unit}: state unknown ({e})"));
    let journal = std::process::Command::new("journalctl")
        .args(["-u", unit, "-n", "15", "--no-pager", "-o", "short-precise"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    format!("--- {state}; last journal lines ---\n{}---", journal)
}
