//! Builds that sleep when idle (`[builds.*] idle_stop_s`). nginx connects to the build's wake
//! socket (`layout::WAKE_SOCKET`); its first connection starts systemd-socket-proxyd
//! (`<app>_wake@<build>.service`), which passes connections on to the public socket, whose
//! instance systemd starts on the first one. When no connection came for `idle_stop_s`, the proxy
//! exits and its `ExecStopPost=` stops the build's instances, processes and timers, while systemd
//! keeps every socket (`units/wake@.service.tera`).
//!
//! A deploy (build, promote, rollback, restart, reload, start) of a build that sleeps first wakes
//! the instance that served, so the new release goes through the whole hand-over (candidate, gate,
//! verify hooks, probation) as for any build; then, when no request came through nginx since the
//! build last slept (the proxy does not run), the build sleeps again at once.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};

use crate::deploy::Deploy;
use crate::host::atomic;
use crate::plan::units;
use crate::release::layout::{Slot, Wake};
use crate::systemd::unit::{ActiveState, JobKind};

/// The file whose time says since when a build sleeps, in its directory; written when it goes to
/// sleep (by relctl, or by the wake service's `ExecStopPost=`).
pub const ASLEEP_MARK: &str = ".relctl-asleep";

impl Deploy<'_> {
    fn wake_units(&self) -> Wake {
        self.app.layout.wake(&self.build.build)
    }

    /// Runs `change` on a build that sleeps when idle as on any other: woken first when it
    /// sleeps, let sleep again afterwards when nobody asked for it meanwhile (also after a failed
    /// change, whose build still serves what it served). Builds that always run: just `change`.
    pub(super) fn around_sleep<T>(&mut self, change: impl FnOnce(&mut Self) -> Result<T>) -> Result<T> {
        let Some(idle) = self.app.idle_stop_s(&self.build.build) else {
            let out = change(self)?;
            self.forget_wake()?;
            return Ok(out);
        };
        let woke = self.wake_if_asleep()?;
        match change(self) {
            Ok(out) => {
                self.settle_sleep(idle)?;
                Ok(out)
            }
            Err(e) if woke => match self.settle_sleep(idle) {
                Ok(()) => Err(e),
                Err(s) => Err(e.context(format!("letting build {} sleep again failed too ({s:#})", self.build.build))),
            },
            Err(e) => Err(e),
        }
    }

    /// Whether the build sleeps: its wake socket listens and neither instance runs.
    fn asleep(&self) -> Result<bool> {
        if !self.systemd.unit_state(&self.wake_units().socket_unit)?.is_active() {
            return Ok(false);
        }
        Ok(self.serving()?.is_none() && self.build.current_release()?.is_some())
    }

    /// Starts the instance the public socket points at (the one that served before the build
    /// slept; main when that one's socket is gone, after a reboot), so that a deploy hands over
    /// from it. Returns whether the build slept.
    fn wake_if_asleep(&mut self) -> Result<bool> {
        if !self.asleep()? {
            return Ok(false);
        }
        self.hold_switch_lock()?;
        let t = Instant::now();
        let pointed = self.build.serving(|_| Ok(true))?.unwrap_or(Slot::Main);
        let slot =
            if pointed == Slot::Next && !self.instance(Slot::Next).socket.exists() { Slot::Main } else { pointed };
        let inst = self.instance(slot);
        self.ensure_socket(&inst)?;
        self.point_public(&inst)?;
        self.run_job(JobKind::Start, &inst.service_unit)
            .with_context(|| format!("waking build {} (it slept) to deploy over it", self.build.build))?;
        self.report.step("wake", t, format!("build slept; started {} to hand over from", inst.service_unit));
        Ok(true)
    }

    /// After a change of a build that sleeps when idle: its wake drop-in (idle time; the
    /// processes and timers that wake with it) written, its wake socket listening, and, when no
    /// request came through nginx since it last slept (the wake service does not run), its
    /// instances, processes and timers stopped.
    fn settle_sleep(&mut self, idle: u64) -> Result<()> {
        let t = Instant::now();
        let wake = self.wake_units();
        let jobs = match self.build.current_release()? {
            Some(id) => {
                let set = crate::plan::processes::recorded(&self.build.release_dir(&id))?;
                units::job_units_to_enable(self.app, &self.build.build, &set)
            }
            None => Vec::new(),
        };
        let dropin = units::wake_dropin(&self.build.build, idle, &jobs);
        if let Some(dir) = wake.dropin.parent() {
            atomic::ensure_dir(dir)?;
        }
        if atomic::write(&wake.dropin, dropin.as_bytes(), 0o644, None)? {
            self.systemd.reload()?;
        }
        if !self.systemd.unit_state(&wake.socket_unit)?.is_active() {
            self.run_job(JobKind::Start, &wake.socket_unit)?;
        }
        if self.systemd.unit_state(&wake.service_unit)?.is_active() {
            let detail = format!(
                "stays awake: requests came through {}; sleeps after {idle}s without one",
                wake.socket.display()
            );
            self.report.step("sleep", t, detail);
            return Ok(());
        }
        self.sleep_now()?;
        let detail = format!(
            "sleeps: no request came through {} since it last slept; the next one wakes it",
            wake.socket.display()
        );
        self.report.step("sleep", t, detail);
        Ok(())
    }

    /// Stops the processes and timers of the build, then both instances (their sockets stay),
    /// each job waited for, and marks since when it sleeps.
    fn sleep_now(&mut self) -> Result<()> {
        let prefix = self.app.layout.job_prefix(&self.build.build);
        for (unit, _) in self.systemd.running_units(&format!("{prefix}*"))? {
            self.run_job(JobKind::Stop, &unit)?;
        }
        for slot in [Slot::Next, Slot::Main] {
            let unit = self.instance(slot).service_unit;
            if self.systemd.unit_state(&unit)?.active_state != ActiveState::Inactive {
                self.run_job(JobKind::Stop, &unit)?;
            }
        }
        let mark: PathBuf = self.build.build_dir.join(ASLEEP_MARK);
        atomic::write(&mark, format!("{}\n", jiff::Timestamp::now()).as_bytes(), 0o644, None)?;
        Ok(())
    }

    /// A build that slept when idle and no longer does (`idle_stop_s` gone from the manifest): its
    /// wake service and socket stopped and its drop-in removed, so nothing stops it when idle.
    /// nginx must then reach its public socket: the step says to write nginx's configuration.
    fn forget_wake(&mut self) -> Result<()> {
        let wake = self.wake_units();
        let Some(dir) = wake.dropin.parent().filter(|d| d.exists()) else { return Ok(()) };
        let t = Instant::now();
        for unit in [&wake.service_unit, &wake.socket_unit] {
            self.systemd.stop_if_running(unit)?;
        }
        std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
        self.systemd.reload()?;
        let detail = format!(
            "no idle_stop_s any more: stopped {} and {}; run relctl nginx-snippet (or relctl site) so nginx reaches {}",
            wake.service_unit,
            wake.socket_unit,
            self.build.socket.display()
        );
        self.report.step("sleep", t, detail);
        Ok(())
    }

    /// `relctl stop` of a build that sleeps when idle: its wake service and socket first, so no
    /// request wakes it again.
    pub(super) fn stop_wake(&mut self) -> Result<()> {
        let wake = self.wake_units();
        for unit in [&wake.service_unit, &wake.socket_unit] {
            self.systemd.stop_if_running(unit)?;
        }
        Ok(())
    }
}
