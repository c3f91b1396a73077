//! Recovering from a relctl killed between a switch and its verification.

use super::*;

impl Deploy<'_> {
    /// A previous relctl was killed between a switch and its verification: the build goes back to
    /// the release it came from — the instance still running it takes the public socket (or main
    /// starts on it), the other one stops, `current` points at it. Returns what was done.
    pub(super) fn recover(&mut self) -> Result<Option<String>> {
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
                    self.stop_alone(&main.service_unit)?;
                    self.ensure_socket(&main)?;
                    self.run_job(JobKind::Start, &main.service_unit)?;
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
    pub(super) fn runs(&self, inst: &Instance, release: &ReleaseId) -> Result<bool> {
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
}
