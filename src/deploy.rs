//! Acting on a `BuildPlan`: stage, render, hooks, units, switch, (re)start, verify.
//! Nothing live changes before the switch; a failure after it switches back.

use std::fs;
use std::os::unix::fs::{chown, PermissionsExt};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::Serialize;

use crate::health;
use crate::hooks::{self, HookFailed, RunAs};
use crate::layout::{self, BuildLayout};
use crate::plan::{AppPlan, BuildPlan};
use crate::render;
use crate::report::Report;
use crate::store::{self, ReleaseMeta};
use crate::systemd::{JobKind, Systemd, UnitState};

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
        bail!("{what} needs root (it writes /opt, /etc/systemd/system and asks systemd to start units); run it with sudo");
    }
    Ok(())
}

pub fn build(plan: &BuildPlan, report: &mut Report) -> Result<BuildResult> {
    let b = &plan.build;
    let t = Instant::now();
    require_root(&format!("relctl build {}", b.build))?;
    let systemd = Systemd::connect()?;
    report.step("check", t, format!("manifest {}, systemd reachable", plan.app.manifest.display()));

    let t = Instant::now();
    let (user, created) = hooks::ensure_system_user(&plan.app.user)?;
    setup_dirs(plan, &user)?;
    let cleaned = store::remove_incomplete(b)?;
    let mut detail = format!("user {}{}, {}", user.user, if created { " (created)" } else { "" }, b.build_dir.display());
    if !cleaned.is_empty() {
        detail.push_str(&format!(", removed half-made release(s) {}", cleaned.join(", ")));
    }
    report.step("setup", t, detail);

    // From here until the switch, a failure removes the new release and changes nothing else.
    let staged = (|| -> Result<()> {
        let t = Instant::now();
        let stats = plan.copy.copy_into(&plan.release_dir)?;
        report.step("stage", t, format!("{} files, {} KiB -> {}", stats.files, stats.bytes / 1024, plan.release_dir.display()));

        let t = Instant::now();
        let rendered = write_release_files(plan, &user)?;
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
            created: jiff::Timestamp::now().to_string(),
            git: store::git_label(plan.git.as_ref()),
        };
        store::mark_complete(&plan.release_dir, &meta)
    })();
    if let Err(e) = staged {
        let _ = store::remove(&plan.release_dir);
        return Err(e.context(format!("build {} aborted before the switch; release {} removed, nothing live changed", b.build, plan.release)));
    }

    let t = Instant::now();
    let changed = install_units(plan, &systemd)?;
    report.step("units", t, changed);

    let t = Instant::now();
    let previous = b.current_release();
    layout::switch_symlink(&b.current, &Path::new("releases").join(&plan.release))?;
    report.step("switch", t, format!("current -> releases/{}{}", plan.release, previous.as_ref().map(|p| format!(" (was {p})")).unwrap_or_default()));

    let verified = start_and_verify(&plan.app, b, &systemd, report);
    let (unit, health) = match verified {
        Ok(v) => v,
        Err(e) => return Err(switch_back(plan, &systemd, previous.as_deref(), e, report)),
    };

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
        unit,
        health,
        pruned,
    })
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

/// Writes the settings file (0640 root:<user>) and the release's environment file.
fn write_release_files(plan: &BuildPlan, user: &RunAs) -> Result<String> {
    let meta = plan.meta_dir();
    layout::ensure_dir(&meta)?;
    fs::set_permissions(&meta, fs::Permissions::from_mode(0o755))?;
    layout::write_atomic(&meta.join("environment"), render::env_file(&plan.environment).as_bytes(), 0o644, None)?;
    let Some(settings) = &plan.settings else {
        return Ok("environment".into());
    };
    let dest = plan.release_dir.join(&settings.path);
    if let Some(parent) = dest.parent() {
        layout::ensure_dir(parent)?;
    }
    layout::write_atomic(&dest, settings.contents.as_bytes(), 0o640, Some(user.gid))?;
    Ok(format!("{} from {} (0640 root:{})", settings.path, settings.template, user.user))
}

/// Writes the unit files and the drop-in, reloads systemd when any changed, enables the build.
fn install_units(plan: &BuildPlan, systemd: &Systemd) -> Result<String> {
    let mut changed = Vec::new();
    for unit in &plan.app.units {
        if layout::write_atomic(&unit.path, unit.contents.as_bytes(), 0o644, None)? {
            changed.push(unit.path.file_name().unwrap().to_string_lossy().into_owned());
        }
    }
    match &plan.dropin {
        Some(d) => {
            layout::ensure_dir(d.path.parent().unwrap())?;
            if layout::write_atomic(&d.path, d.contents.as_bytes(), 0o644, None)? {
                changed.push(d.path.display().to_string());
            }
        }
        None => {
            if plan.dropin_path.exists() {
                fs::remove_file(&plan.dropin_path).with_context(|| format!("removing {}", plan.dropin_path.display()))?;
                changed.push(format!("removed {}", plan.dropin_path.display()));
            }
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

/// Starts the socket, starts or restarts the service, waits for the jobs, then checks the unit
/// (read uncached) and the health path.
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
    report.step(kind.verb(), t, format!("{} done", b.service_unit));
    verify(app, b, systemd, report)
}

/// The unit must be active and, with `[health]`, answer 2xx/3xx through its socket.
pub fn verify(app: &AppPlan, b: &BuildLayout, systemd: &Systemd, report: &mut Report) -> Result<(UnitState, Option<health::Response>)> {
    let t = Instant::now();
    let health = match &app.health {
        Some(h) => Some(health::wait_healthy(&b.socket, &h.path, Duration::from_secs(h.timeout_s))?),
        None => None,
    };
    let state = systemd.unit_state(&b.service_unit)?;
    if !state.is_active() {
        bail!("{} is {} ({}) after its job finished, result '{}'", b.service_unit, state.active_state, state.sub_state, state.result);
    }
    let detail = match &health {
        Some(r) => format!("{} active, main PID {}; GET {} -> {}", b.service_unit, state.main_pid, app.health.as_ref().unwrap().path, r.status),
        None => format!("{} active, main PID {}", b.service_unit, state.main_pid),
    };
    report.step("verify", t, detail);
    Ok((state, health))
}

/// The new release failed after the switch: point `current` back at the previous release,
/// restart it, mark the new one bad. Returns the error to report.
fn switch_back(plan: &BuildPlan, systemd: &Systemd, previous: Option<&str>, cause: anyhow::Error, report: &mut Report) -> anyhow::Error {
    let b = &plan.build;
    let _ = store::mark_bad(&plan.release_dir, &crate::error::one_line(&cause));
    let Some(prev) = previous else {
        return cause.context(format!("release {} of build {} failed and there is no previous release to switch back to; it is marked bad", plan.release, b.build));
    };
    report.warn(format!("relctl: release {} failed: {}; switching back to {prev}", plan.release, crate::error::one_line(&cause)));
    let back = (|| -> Result<()> {
        layout::switch_symlink(&b.current, &Path::new("releases").join(prev))?;
        systemd.run_job(JobKind::Restart, &b.service_unit)?;
        verify(&plan.app, b, systemd, report).map(|_| ())
    })();
    match back {
        Ok(()) => cause.context(format!("release {} of build {} failed and is marked bad; switched back to {prev}, which is serving", plan.release, b.build)),
        Err(e) => cause.context(format!(
            "release {} of build {} failed, and switching back to {prev} failed too ({})",
            plan.release,
            b.build,
            crate::error::one_line(&e)
        )),
    }
}
