//! A systemd for unit tests: units that start, stop, crash and restart as the test says, any call
//! made to fail, and a log of every call made, in order.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};

use anyhow::{bail, Result};

use crate::systemd::manager::Manager;
use crate::systemd::unit::{ActiveState, JobKind, JobMode, LoadState, UnitState};

/// What becomes of a service after its start job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Starts and keeps running.
    Runs,
    /// The start job fails (the process exited before it was ready): the unit is failed.
    FailsToStart,
    /// The first start fails, leaving the unit activating (auto-restart) as `Restart=on-failure`
    /// does; later ones run (a release that crashes, then the one before it).
    FailsOnce,
    /// The start job is done, then the process dies and systemd restarts it once the state has
    /// been read this many times (a crash during the probation).
    RestartsAfter(u32),
}

/// A systemd manager in memory.
#[derive(Default)]
pub struct Fake {
    units: RefCell<BTreeMap<String, UnitState>>,
    fates: RefCell<BTreeMap<String, Fate>>,
    reads: RefCell<BTreeMap<String, u32>>,
    failing: RefCell<BTreeSet<String>>,
    calls: RefCell<Vec<String>>,
    pid: Cell<u32>,
}

impl Fake {
    pub fn new() -> Fake {
        Fake { pid: Cell::new(100), ..Default::default() }
    }

    /// What becomes of `unit` from its next start on.
    pub fn fate(&self, unit: &str, fate: Fate) {
        self.fates.borrow_mut().insert(unit.to_string(), fate);
    }

    /// Makes the call `call` fail from now on, as it is logged: e.g. `start a@b.service`,
    /// `stop-alone a@b.service`, `reload`, `enable`, `state a@b.service`.
    pub fn fail(&self, call: &str) {
        self.failing.borrow_mut().insert(call.to_string());
    }

    /// Lets `call` succeed again.
    pub fn heal(&self, call: &str) {
        self.failing.borrow_mut().remove(call);
    }

    /// Every call made, in order; reads of unit state left out.
    pub fn calls(&self) -> Vec<String> {
        self.calls.borrow().iter().filter(|c| !c.starts_with("state ")).cloned().collect()
    }

    /// Every call made, in order, reads of unit state (`state <unit>`) included.
    pub fn all_calls(&self) -> Vec<String> {
        self.calls.borrow().clone()
    }

    /// Forgets the calls made so far.
    pub fn clear_calls(&self) {
        self.calls.borrow_mut().clear();
    }

    /// The unit's state as the test sees it, without counting as a read.
    pub fn state(&self, unit: &str) -> UnitState {
        self.units.borrow().get(unit).cloned().unwrap_or_else(|| UnitState::not_loaded(unit))
    }

    /// Puts `unit` in `state` (active with a new main PID, or inactive), as a boot would.
    pub fn set_active(&self, unit: &str, active: bool) {
        let state = if active { self.running(unit) } else { UnitState::not_loaded(unit) };
        self.units.borrow_mut().insert(unit.to_string(), state);
    }

    /// The power goes: every unit is gone at once, as after a reboot before anything started.
    pub fn power_cut(&self) {
        self.units.borrow_mut().clear();
        self.reads.borrow_mut().clear();
    }

    fn check(&self, call: String) -> Result<()> {
        let failing = self.failing.borrow().contains(&call);
        self.calls.borrow_mut().push(call.clone());
        if failing {
            bail!("{call}: the fake systemd was told to fail it");
        }
        Ok(())
    }

    fn running(&self, unit: &str) -> UnitState {
        let pid = self.pid.get() + 1;
        self.pid.set(pid);
        UnitState {
            unit: unit.to_string(),
            load_state: LoadState::Loaded,
            active_state: ActiveState::Active,
            sub_state: "running".into(),
            active_since_us: 1,
            main_pid: if unit.ends_with(".service") { pid } else { 0 },
            n_restarts: 0,
            result: "success".into(),
        }
    }

    fn start(&self, unit: &str) -> Result<()> {
        let fate = self.fates.borrow().get(unit).copied().unwrap_or(Fate::Runs);
        self.reads.borrow_mut().remove(unit);
        if fate == Fate::FailsOnce {
            self.fates.borrow_mut().insert(unit.to_string(), Fate::Runs);
        }
        if matches!(fate, Fate::FailsToStart | Fate::FailsOnce) {
            let mut failed = UnitState::not_loaded(unit);
            (failed.load_state, failed.active_state, failed.sub_state) =
                (LoadState::Loaded, ActiveState::Failed, "failed".into());
            if fate == Fate::FailsOnce {
                // As with `Restart=on-failure`: systemd is about to start it again.
                (failed.active_state, failed.sub_state) = (ActiveState::Activating, "auto-restart".into());
            }
            failed.result = "exit-code".into();
            self.units.borrow_mut().insert(unit.to_string(), failed);
            bail!("start of {unit} failed: job result 'failed' (see: journalctl -u {unit})");
        }
        let state = self.running(unit);
        self.units.borrow_mut().insert(unit.to_string(), state);
        Ok(())
    }
}

impl Manager for Fake {
    fn unit_state(&self, unit: &str) -> Result<UnitState> {
        self.check(format!("state {unit}"))?;
        let fate = self.fates.borrow().get(unit).copied();
        let mut units = self.units.borrow_mut();
        let Some(state) = units.get_mut(unit) else { return Ok(UnitState::not_loaded(unit)) };
        if let (Some(Fate::RestartsAfter(n)), true) = (fate, state.is_active()) {
            let mut reads = self.reads.borrow_mut();
            let read = reads.entry(unit.to_string()).or_insert(0);
            *read += 1;
            if *read > n {
                let pid = self.pid.get() + 1;
                self.pid.set(pid);
                (state.main_pid, state.n_restarts) = (pid, state.n_restarts + 1);
                *read = 0;
            }
        }
        Ok(state.clone())
    }

    fn run_job_in(&self, kind: JobKind, unit: &str, mode: JobMode) -> Result<()> {
        let verb = match (kind, mode) {
            (JobKind::Stop, JobMode::IgnoreDependencies) => "stop-alone",
            _ => kind.verb(),
        };
        self.check(format!("{verb} {unit}"))?;
        match kind {
            JobKind::Start => {
                if self.units.borrow().get(unit).is_some_and(|s| s.active_state.is_up()) {
                    return Ok(());
                }
                self.start(unit)
            }
            JobKind::Restart => self.start(unit),
            JobKind::Stop => {
                self.units.borrow_mut().insert(unit.to_string(), UnitState::not_loaded(unit));
                Ok(())
            }
            JobKind::Reload => {
                if !self.units.borrow().get(unit).is_some_and(|s| s.is_active()) {
                    bail!("reload of {unit} failed: job result 'failed'");
                }
                Ok(())
            }
        }
    }

    fn reload(&self) -> Result<()> {
        self.check("reload".into())
    }

    fn enable(&self, _units: &[&str]) -> Result<Vec<String>> {
        self.check("enable".into())?;
        Ok(Vec::new())
    }

    fn disable(&self, units: &[&str]) -> Result<Vec<String>> {
        self.check(format!("disable {}", units.join(" ")))?;
        Ok(units.iter().map(|u| u.to_string()).collect())
    }

    fn reset_failed(&self, units: &[&str]) -> Result<Vec<String>> {
        self.check(format!("reset-failed {}", units.join(" ")))?;
        Ok(Vec::new())
    }

    fn running_units(&self, pattern: &str) -> Result<Vec<(String, ActiveState)>> {
        self.check(format!("list {pattern}"))?;
        // One `*`, anywhere: what relctl's patterns use.
        let matches = |name: &str| match pattern.split_once('*') {
            Some((prefix, suffix)) => {
                name.len() >= prefix.len() + suffix.len() && name.starts_with(prefix) && name.ends_with(suffix)
            }
            None => name == pattern,
        };
        Ok(self
            .units
            .borrow()
            .values()
            .filter(|s| matches(&s.unit) && s.active_state.is_up())
            .map(|s| (s.unit.clone(), s.active_state.clone()))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_start_stop_crash_and_calls_fail_as_told() {
        let f = Fake::new();
        f.run_job(JobKind::Start, "a@b.service").unwrap();
        let first = f.unit_state("a@b.service").unwrap();
        assert!(first.is_active() && first.main_pid > 0);
        f.stop_alone("a@b.service").unwrap();
        assert_eq!(f.unit_state("a@b.service").unwrap().active_state, ActiveState::Inactive);
        f.fate("a@b.service", Fate::FailsToStart);
        assert!(f.run_job(JobKind::Start, "a@b.service").is_err());
        assert_eq!(f.unit_state("a@b.service").unwrap().active_state, ActiveState::Failed);
        f.fate("a@b.service", Fate::RestartsAfter(1));
        f.run_job(JobKind::Start, "a@b.service").unwrap();
        let pid = f.unit_state("a@b.service").unwrap().main_pid;
        let later = f.unit_state("a@b.service").unwrap();
        assert!(later.main_pid != pid && later.n_restarts == 1, "{later:?}");
        f.fail("reload");
        assert!(f.reload().is_err());
        assert_eq!(
            f.calls(),
            ["start a@b.service", "stop-alone a@b.service", "start a@b.service", "start a@b.service", "reload"]
        );
        assert_eq!(f.running_units("a@*").unwrap().len(), 1);
    }
}
