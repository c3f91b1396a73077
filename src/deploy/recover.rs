//! Recovering from a relctl killed during a switch, from the phase its journal recorded (see
//! `switch`): a switch that had passed the candidate's probation is completed; any other goes
//! back to the release it came from, in the instance the journal says was kept ready for it.

use anyhow::Result;

use crate::deploy::processes::Restart;
use crate::deploy::switch::{self, Record};
use crate::deploy::Deploy;
use crate::host::atomic;
use crate::release::id::ReleaseId;
use crate::release::layout::{Instance, Slot};
use crate::release::store;
use crate::systemd::unit::{ActiveState, JobKind};

impl Deploy<'_> {
    /// A previous relctl was killed during a switch: the switch is completed or undone, as its
    /// phase says, and its journal removed. Returns what was done.
    pub(super) fn recover(&mut self) -> Result<Option<String>> {
        let b = self.build;
        let journal = b.switch_journal();
        let Some(record) = switch::read(&journal)? else { return Ok(None) };
        self.hold_switch_lock()?;
        let completed = record.phase.is_some_and(|p| p.is_done()) && b.release_dir(&record.to).is_dir();
        let done = if completed { self.complete(&record)? } else { self.go_back(&record)? };
        switch::end(&journal)?;
        Ok(Some(done))
    }

    /// The switch had passed everything: the candidate keeps serving, the instance that served
    /// stops, the release is marked verified.
    fn complete(&mut self, r: &Record) -> Result<String> {
        let b = self.build;
        self.report.warn(format!(
            "relctl: an interrupted relctl (pid {}) left build {} switching to release {}, which had passed its probation; completing the switch",
            r.pid, b.build, r.to
        ));
        let candidate = self.instance(r.candidate.unwrap_or(Slot::Main));
        let mut done = Vec::new();
        if self.is_up(&candidate)? {
            self.point_public(&candidate)?;
            if let Some(serving) = r.serving.filter(|s| *s != candidate.slot).map(|s| self.instance(s)) {
                if self.is_up(&serving)? {
                    done.push(format!("stopped {}", serving.service_unit));
                }
                self.stop_instance(&serving)?;
                if serving.slot == Slot::Main {
                    self.switch(&serving, &r.to)?;
                }
            }
        } else {
            // The candidate is gone (the power went, or it was stopped): main serves `to`. Whether
            // what runs in main now (the release the switch came from, or `to` after a boot) is
            // `to` is not recorded, so main restarts on it.
            done.push(self.restart_main_on_to(r)?);
        }
        store::mark_verified(&b.release_dir(&r.to), jiff::Timestamp::now())?;
        Ok(format!(
            "recovered from an interrupted relctl (pid {}): release {} had passed its probation and is kept{}",
            r.pid,
            r.to,
            notes(&done)
        ))
    }

    /// Main (re)started on `r.to`, with `current` and the public socket on it and next stopped;
    /// returns what it did.
    fn restart_main_on_to(&mut self, r: &Record) -> Result<String> {
        let main = self.instance(Slot::Main);
        self.stop_instance(&self.instance(Slot::Next))?;
        self.switch(&main, &r.to)?;
        if self.build.current_release()?.as_ref() != Some(&r.to) {
            atomic::switch_symlink(&self.build.current, &crate::release::layout::release_target(&r.to))?;
        }
        self.stop_alone(&main.service_unit)?;
        self.ensure_socket(&main)?;
        self.run_job(JobKind::Start, &main.service_unit)?;
        self.point_public(&main)?;
        Ok(format!("{} restarted on {}", main.service_unit, r.to))
    }

    /// The switch had not passed everything: `to` is marked bad and the build goes back to `from`
    /// — the instance kept ready for it takes the public socket and the other one stops, or main
    /// restarts on it when none was kept — with `current` on it.
    fn go_back(&mut self, r: &Record) -> Result<String> {
        let b = self.build;
        let interrupted = b.release_dir(&r.to);
        if Some(&r.to) != r.from.as_ref() && interrupted.is_dir() {
            store::mark_bad(&interrupted, "its build was interrupted after the switch, before verification")?;
        }
        let mut done = Vec::new();
        if let Some(from) = r.from.as_ref().filter(|f| b.release_dir(f).is_dir()) {
            self.report.warn(format!(
                "relctl: an interrupted relctl (pid {}) left build {} switching to unverified release {}; going back to {from}",
                r.pid, b.build, r.to
            ));
            done = self.back_to(r, from)?;
            if b.current_release()?.as_ref() != Some(from) {
                done.push(format!("switched back from {} to {from}", r.to));
            }
            self.current_back(from)?;
            if r.processes_moved {
                self.move_processes(from, Restart::All)?;
                done.push(format!("processes restarted on {from}"));
            }
        } else if r.processes_moved {
            self.remove_processes()?;
            done.push("processes and timers removed".to_string());
        }
        Ok(format!("recovered from an interrupted relctl (pid {}): release {} marked bad{}", r.pid, r.to, notes(&done)))
    }

    /// Puts the public socket back on the instance that serves `from`; returns what it did.
    fn back_to(&mut self, r: &Record, from: &ReleaseId) -> Result<Vec<String>> {
        let mut done = Vec::new();
        // The instance that served `from` and was kept ready for it (a journal of an earlier
        // relctl does not say which: main restarts on `from` then).
        let kept = match r.serving.map(|s| self.instance(s)) {
            Some(inst) if self.is_up(&inst)? => Some(inst),
            _ => None,
        };
        match kept {
            Some(inst) => {
                let public = std::fs::read_link(&self.build.socket).ok();
                if public.as_deref() != Some(std::path::Path::new(inst.slot.socket_file())) {
                    self.point_public(&inst)?;
                    done.push(format!("public socket back on {}", inst.service_unit));
                }
                let other = self.instance(inst.slot.other());
                if self.systemd.unit_state(&other.service_unit)?.active_state != ActiveState::Inactive {
                    done.push(format!("stopped {}", other.service_unit));
                }
                self.stop_instance(&other)?;
            }
            None if self.serving()?.is_some() => {
                let main = self.instance(Slot::Main);
                self.stop_instance(&self.instance(Slot::Next))?;
                self.switch(&main, from)?;
                self.stop_alone(&main.service_unit)?;
                self.ensure_socket(&main)?;
                self.run_job(JobKind::Start, &main.service_unit)?;
                self.point_public(&main)?;
                done.push(format!("{} restarted on {from}", main.service_unit));
            }
            None => {}
        }
        Ok(done)
    }

    /// Whether `inst`'s service is running or on its way there.
    fn is_up(&self, inst: &Instance) -> Result<bool> {
        Ok(self.systemd.unit_state(&inst.service_unit)?.active_state.is_up())
    }
}

/// `, a, b` for the notes `a` and `b`.
fn notes(done: &[String]) -> String {
    done.iter().map(|d| format!(", {d}")).collect()
}
