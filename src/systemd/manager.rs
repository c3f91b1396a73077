//! What relctl asks of systemd's manager, as a trait: `dbus::Systemd` does it over D-Bus; the unit
//! tests of the hand-over, switch-back and recovery drive `fake::Fake`, which can fail any call.

use anyhow::Result;

use crate::systemd::unit::{ActiveState, JobKind, JobMode, UnitState};

/// systemd's manager, as relctl uses it to deploy a build.
pub trait Manager {
    /// A unit's state, read uncached. Units systemd does not know read as inactive.
    fn unit_state(&self, unit: &str) -> Result<UnitState>;

    /// Queues a job for `unit` in `mode` and waits for systemd to finish it. A result other than
    /// `done` is an error naming the unit and the result.
    fn run_job_in(&self, kind: JobKind, unit: &str, mode: JobMode) -> Result<()>;

    /// Reloads systemd's unit files (daemon-reload).
    fn reload(&self) -> Result<()>;

    /// Enables the given unit files (instances like `app@build.service` included); returns the
    /// changes made, empty when all were enabled already.
    fn enable(&self, units: &[&str]) -> Result<Vec<String>>;

    /// Disables the given unit files (instances included): the symlinks their `[Install]` sections
    /// made are removed. Returns the files removed. Like `enable`, it does not reload.
    fn disable(&self, units: &[&str]) -> Result<Vec<String>>;

    /// Resets those of `units` (names, no glob characters) that are failed, so that systemd
    /// unloads them once nothing refers to them. Returns the units it reset.
    fn reset_failed(&self, units: &[&str]) -> Result<Vec<String>>;

    /// The loaded units whose names match `pattern` (a shell glob) and that are active or on their
    /// way there, with their active state.
    fn running_units(&self, pattern: &str) -> Result<Vec<(String, ActiveState)>>;

    /// [`Manager::run_job_in`] with `replace`, the mode `systemctl` uses.
    fn run_job(&self, kind: JobKind, unit: &str) -> Result<()> {
        self.run_job_in(kind, unit, JobMode::Replace)
    }

    /// Stops `unit` alone ([`JobMode::IgnoreDependencies`]): a stop of a build's main instance
    /// must not reach its next instance, which is `PartOf=` it for `systemctl`'s sake.
    fn stop_alone(&self, unit: &str) -> Result<()> {
        self.run_job_in(JobKind::Stop, unit, JobMode::IgnoreDependencies)
    }

    /// Stops `unit` (a name, no glob characters) if systemd has it running, starting or stopping,
    /// and waits for the job; returns whether it had to. A unit that ends and is unloaded while
    /// this asks is stopped too.
    fn stop_if_running(&self, unit: &str) -> Result<bool> {
        if self.running_units(unit)?.is_empty() {
            return Ok(false);
        }
        match self.run_job(JobKind::Stop, unit) {
            Err(e) if !self.running_units(unit)?.is_empty() => Err(e),
            _ => Ok(true),
        }
    }
}
