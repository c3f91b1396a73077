//! Installing a build's units and sockets, and refusing a change to what every build shares while
//! other builds run on the old units.

use std::time::Instant;

use anyhow::Result;

use crate::deploy::Deploy;
use crate::error::Error;
use crate::host::atomic;
use crate::plan::build::BuildPlan;
use crate::plan::units::UnitFile;
use crate::release::layout::{self, Instance, Slot};
use crate::systemd::unit::{ActiveState, JobKind};

impl Deploy<'_> {
    /// Writes the unit files, enables the build, and reloads systemd when either changed anything
    /// (`EnableUnitFiles` only makes the symlinks: until a reload, `<app>.target` does not want
    /// a newly enabled build, so a `systemctl start <app>.target` would leave it out).
    pub(super) fn install_units(&self, plan: &BuildPlan, unit_files: &[UnitFile]) -> Result<String> {
        let mut changed = Vec::new();
        for unit in unit_files {
            if atomic::write(&unit.path, unit.contents.as_bytes(), 0o644, None)? {
                changed.push(unit.path.file_name().unwrap_or_default().to_string_lossy().into_owned());
            }
        }
        let enable: Vec<&str> = plan.enable.iter().map(String::as_str).collect();
        let mut enabled = self.systemd.enable(&enable)?;
        let disable: Vec<&str> = plan.disable.iter().map(String::as_str).collect();
        enabled.extend(self.systemd.disable(&disable)?);
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
    pub(super) fn ensure_socket(&mut self, inst: &Instance) -> Result<()> {
        let t = Instant::now();
        let state = self.systemd.unit_state(&inst.socket_unit)?;
        if !state.is_active() {
            self.run_job(JobKind::Start, &inst.socket_unit)?;
            if state.active_state == ActiveState::Failed {
                self.report.step("socket", t, format!("{} had failed; started it again", inst.socket_unit));
            }
            return Ok(());
        }
        if let Some(why) = self.probe.socket_mismatch(&inst.socket, &inst.socket_unit, &self.app.socket_group)? {
            self.stop_alone(&inst.service_unit)?;
            self.stop_alone(&inst.socket_unit)?;
            self.run_job(JobKind::Start, &inst.socket_unit)?;
            let detail =
                format!("re-bound {}: {why}; connections queued on the old socket were dropped", inst.socket.display());
            self.report.step("socket", t, detail);
        }
        Ok(())
    }

    /// A manifest change to what every build shares (the socket unit: root, socket, socket_group;
    /// the service user) reaches running builds only when their sockets are re-bound or their
    /// services restarted. relctl does that for the build it deploys, and refuses, before anything
    /// is touched, while other builds run on the old units.
    pub(super) fn check_app_wide_change(&self, unit_files: &[UnitFile]) -> Result<()> {
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
        Err(Error::Usage(format!(
            "the manifest changes what every build of {app} shares ({}), and build(s) {} still run on the old units; re-binding their sockets drops their queued connections, so relctl does not do it behind your back: run {}, then relctl build {}, then {}",
            changes.join("; "),
            others.join(", "),
            stop.join("; "),
            self.build.build,
            start.join("; ")
        ))
        .into())
    }

    /// Main's link, made from `current` for a build set up by a relctl that ran main on `current`
    /// itself.
    pub(super) fn ensure_main_link(&self) -> Result<()> {
        let main = self.instance(Slot::Main);
        if std::fs::symlink_metadata(&main.link).is_err() {
            if let Some(current) = self.build.current_release()? {
                atomic::switch_symlink(&main.link, &layout::release_target(&current))?;
            }
        }
        Ok(())
    }
}

/// Writes (or removes) an instance's drop-in; returns whether it changed.
pub(super) fn apply_dropin(inst: &Instance, contents: Option<&str>) -> Result<bool> {
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
