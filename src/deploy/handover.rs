//! The hand-over, driven through the phases of `switch::Phase`: a release goes live in the instance
//! that does not serve (the candidate), passes the gate, takes the public socket; the instance that
//! served drains and is kept ready through the candidate's probation, then stops. Each phase is
//! recorded in the switch journal before its step, so `recover` knows where a killed relctl was.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::deploy::gate::{Role, Traffic};
use crate::deploy::install::apply_dropin;
use crate::deploy::processes::Restart;
use crate::deploy::switch::{Phase, Switch};
use crate::deploy::{failpoint, Deploy, Retiring, Verified};
use crate::host::{atomic, health};
use crate::release::id::ReleaseId;
use crate::release::layout::{self, Instance, Slot};
use crate::release::{secret_key, store};
use crate::systemd::unit::{ActiveState, UnitState};

/// A switch that failed: the error to report, and whether the build is settled (back where it came
/// from, or never touched). An unsettled switch keeps its journal for the next relctl.
pub(super) struct Failed {
    error: anyhow::Error,
    settled: bool,
}

impl Failed {
    fn settled(error: anyhow::Error) -> Failed {
        Failed { error, settled: true }
    }

    fn unsettled(error: anyhow::Error) -> Failed {
        Failed { error, settled: false }
    }
}

impl Deploy<'_> {
    /// Makes `to` live (`from` is what serves now, if anything; the same release for a restart).
    /// With an instance serving, `to` is verified in the other one first and the users never see
    /// a release that fails the gate; the switch is journaled, phase by phase, until it ends.
    pub(super) fn go_live(&mut self, to: &ReleaseId, from: Option<&ReleaseId>, retiring: Retiring) -> Result<Verified> {
        let b = self.build;
        self.hold_switch_lock()?;
        secret_key::ensure(&b.secret_key_file())?;
        let serving = match from {
            Some(_) => self.serving()?,
            None => None,
        };
        let candidate = serving.as_ref().map_or(Slot::Main, |s| s.slot.other());
        let journal = b.switch_journal();
        let mut sw = Switch::begin(&journal, from, to, candidate, serving.as_ref().map(|s| s.slot))?;
        let outcome = match (from, serving) {
            (Some(from), Some(serving)) => self.hand_over(&mut sw, to, from, serving, retiring),
            _ => self.cold_start(&mut sw, to, from),
        };
        let outcome = match outcome {
            Ok(v) => store::mark_verified(&b.release_dir(to), jiff::Timestamp::now())
                .with_context(|| {
                    format!("release {to} of build {} is live and verified, but recording that failed", b.build)
                })
                .map(|()| v),
            // Not settled: the journal stays, and the next build or rollback finishes the switch
            // from the phase it recorded.
            Err(Failed { error, settled: false }) => {
                return Err(error.context(format!(
                    "the switch journal {} is kept: the next relctl build, rollback or restart of {} finishes the switch from its phase ({})",
                    journal.display(),
                    b.build,
                    sw.phase()
                )))
            }
            Err(Failed { error, settled: true }) => Err(error),
        };
        match (outcome, sw.finish()) {
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

    /// Nothing serves yet (a first build, or a stopped build): main starts on `to`, with `current`
    /// and the public socket on it, passes the gate, the verify hooks and its probation; a failure
    /// goes back to `from` in main.
    fn cold_start(&mut self, sw: &mut Switch, to: &ReleaseId, from: Option<&ReleaseId>) -> Result<Verified, Failed> {
        let main = self.instance(Slot::Main);
        let started = (|| -> Result<Verified> {
            sw.enter(Phase::CandidateUp)?;
            let t = Instant::now();
            self.stop_instance(&self.instance(Slot::Next))?;
            self.switch(&main, to)?;
            self.set_current(to)?;
            self.point_public(&main)?;
            failpoint("switch");
            let was = from.map(|p| format!(" (was {p})")).unwrap_or_default();
            self.report.step("switch", t, format!("current -> releases/{to}{was}"));
            let (first, health) = self.start_and_verify(&main, Traffic::Public)?;
            sw.enter(Phase::Gated)?;
            self.verify(&main, to, Role::Live)?;
            sw.enter(Phase::Processes)?;
            let processes = self.move_processes(to, Restart::All)?;
            sw.enter(Phase::Probation)?;
            let verified = self.probation(&main, &first, health)?;
            self.processes_stayed_up(&processes)?;
            sw.enter(Phase::Retired)?;
            Ok(verified)
        })();
        started.map_err(|cause| {
            let cause = match sw.enter(Phase::SwitchingBack) {
                Ok(()) => cause,
                Err(e) => cause.context(format!("recording the switch back failed too ({e:#})")),
            };
            let failed = self.fail_back(to, from, cause);
            self.processes_back(sw, from, failed)
        })
    }

    /// After web went back to `from`, the processes go back too, when the switch had moved them:
    /// those restarted on the new release and those not running restart on `from` (with no
    /// `from`, the build's processes and timers are removed). A failure there leaves the switch
    /// unsettled.
    fn processes_back(&mut self, sw: &Switch, from: Option<&ReleaseId>, failed: Failed) -> Failed {
        if !sw.processes_moved() || !failed.settled {
            return failed;
        }
        let back = match from {
            Some(from) => self.move_processes(from, Restart::Moved).map(|_| ()),
            None => self.remove_processes(),
        };
        match back {
            Ok(()) => failed,
            Err(e) => Failed::unsettled(failed.error.context(format!(
                "moving the processes of build {} back failed too ({})",
                self.build.build,
                crate::error::one_line(&e)
            ))),
        }
    }

    /// `serving` serves `from`: `to` starts in the other instance, the candidate, and must pass
    /// the gate through the candidate's own socket before the public socket points at it. Then
    /// `serving` drains and is kept ready through the candidate's probation (a failure switches
    /// back to it at once), and stops. `current` points at `to` from the hand-over on.
    fn hand_over(
        &mut self,
        sw: &mut Switch,
        to: &ReleaseId,
        from: &ReleaseId,
        serving: Instance,
        retiring: Retiring,
    ) -> Result<Verified, Failed> {
        let candidate = self.instance(serving.slot.other());
        let t = Instant::now();
        let verified = (|| -> Result<(UnitState, Option<health::Response>)> {
            sw.enter(Phase::CandidateUp)?;
            // An instance that does not serve (one that served before a `systemctl restart` of main
            // took the build back) is stopped before it runs `to`.
            self.stop_instance(&candidate)?;
            self.switch(&candidate, to)?;
            let gated = self.start_and_verify(&candidate, Traffic::NotYet)?;
            sw.enter(Phase::Gated)?;
            self.verify(&candidate, to, Role::Candidate)?;
            Ok(gated)
        })();
        failpoint("candidate");
        let (first, health) = match verified {
            Ok(v) => v,
            Err(cause) => return Err(self.refuse_candidate(sw, to, from, &candidate, cause)),
        };
        let passed = (|| -> Result<Verified> {
            sw.enter(Phase::HandedOver)?;
            self.point_public(&candidate)?;
            match retiring {
                Retiring::HandMade(a, user) if !a.release_dir.exists() => self.retire_hand_made(a, user)?,
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
            sw.enter(Phase::Processes)?;
            let processes = self.move_processes(to, Restart::All)?;
            sw.enter(Phase::Probation)?;
            let verified = self.probation(&candidate, &first, health)?;
            self.processes_stayed_up(&processes)?;
            Ok(verified)
        })();
        let verified = match passed {
            Ok(v) => v,
            Err(cause) => {
                let cause = match sw.enter(Phase::SwitchingBack) {
                    Ok(()) => cause,
                    Err(e) => cause.context(format!("recording the switch back failed too ({e:#})")),
                };
                let failed = self.switch_back(to, from, &serving, &candidate, cause);
                return Err(self.processes_back(sw, Some(from), failed));
            }
        };
        // From here on `to` has passed everything: a failure leaves the journal at `retired`, and
        // the next relctl completes the switch.
        sw.enter(Phase::Retired).and_then(|()| self.retire(&serving, &candidate, to)).map_err(Failed::unsettled)?;
        Ok(verified)
    }

    /// The candidate failed before it took any traffic: it stops, `current` stays on `from`, `to`
    /// is marked bad. Returns the error to report.
    fn refuse_candidate(
        &mut self,
        sw: &mut Switch,
        to: &ReleaseId,
        from: &ReleaseId,
        candidate: &Instance,
        cause: anyhow::Error,
    ) -> Failed {
        self.report.warn(self.diagnose(&candidate.service_unit));
        let stopped = sw
            .enter(Phase::SwitchingBack)
            .and_then(|()| self.stop_instance(candidate))
            .and_then(|()| self.current_back(from));
        let marked = self.mark_failed(to, Some(from), &cause);
        let err = cause.context(format!(
            "release {to} of build {} failed in {} before it took any traffic{marked}; release {from} kept serving, untouched",
            self.build.build, candidate.service_unit
        ));
        match stopped {
            Ok(()) => Failed::settled(err),
            Err(e) => Failed::unsettled(err.context(format!("stopping {} failed too ({e:#})", candidate.service_unit))),
        }
    }

    /// The candidate passed its probation: the instance that served stops; main, if it was that
    /// instance, is pointed at `to` (stopped, it runs `current` again when something starts it).
    pub(super) fn retire(&mut self, serving: &Instance, candidate: &Instance, to: &ReleaseId) -> Result<()> {
        let t = Instant::now();
        self.stop_instance(serving)?;
        if serving.slot == Slot::Main {
            self.switch(serving, to)?;
        }
        self.report.step(
            "retire",
            t,
            format!("{} stopped; {} serves release {to}", serving.service_unit, candidate.service_unit),
        );
        Ok(())
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
    ) -> Failed {
        if !self.systemd.unit_state(&serving.service_unit).is_ok_and(|s| s.active_state.is_up()) {
            return self.fail_back(to, Some(from), cause);
        }
        if !self.process_failed {
            self.report.warn(self.diagnose(&candidate.service_unit));
        }
        let marked = format!("failed{}", self.mark_failed(to, Some(from), &cause));
        let t = Instant::now();
        let back = self
            .point_public(serving)
            .and_then(|()| self.stop_instance(candidate))
            .and_then(|()| self.current_back(from))
            .map(|()| self.report.step("back", t, format!("{} serves release {from} again", serving.service_unit)));
        let b = &self.build.build;
        match back {
            Ok(()) => Failed::settled(cause.context(format!(
                "release {to} of build {b} {marked}; switched back to {from}, which {} kept serving",
                serving.service_unit
            ))),
            Err(e) => Failed::unsettled(cause.context(format!(
                "release {to} of build {b} {marked}, and switching back to {from} failed too ({})",
                crate::error::one_line(&e)
            ))),
        }
    }

    /// `current` back on `from`, and main's link too once main is stopped (a failed candidate that
    /// was main had it on the new release).
    pub(super) fn current_back(&self, from: &ReleaseId) -> Result<()> {
        if self.build.current_release()?.as_ref() != Some(from) {
            self.set_current(from)?;
        }
        let main = self.instance(Slot::Main);
        if !self.systemd.unit_state(&main.service_unit)?.active_state.is_up() {
            self.switch(&main, from)?;
        }
        Ok(())
    }

    /// Points `current`, the build's current release, at `release`, and `.relctl-previous` at the
    /// release `current` left, whose static files nginx still serves where the new release has
    /// none (asset bridging: pages it rendered keep their assets until the next switch).
    fn set_current(&self, release: &ReleaseId) -> Result<()> {
        if let Some(before) = self.build.current_release()?.filter(|b| b != release) {
            atomic::switch_symlink(&self.build.previous_link(), &layout::release_target(&before))?;
        }
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
    fn fail_back(&mut self, to: &ReleaseId, from: Option<&ReleaseId>, cause: anyhow::Error) -> Failed {
        let b = self.build;
        let main = self.instance(Slot::Main);
        if !self.process_failed {
            self.report.warn(self.diagnose(&main.service_unit));
        }
        let marked = format!("failed{}", self.mark_failed(to, from, &cause));
        let Some(prev) = from else {
            return Failed::settled(cause.context(format!(
                "release {to} of build {} {marked}; there is no previous release to switch back to",
                b.build
            )));
        };
        let t = Instant::now();
        let back = self.restart_main_on(prev).and_then(|(first, health)| {
            self.report.step("back", t, format!("current -> releases/{prev}, {} restarted", main.service_unit));
            self.probation(&main, &first, health)
        });
        match back {
            Ok(_) => Failed::settled(cause.context(format!(
                "release {to} of build {} {marked}; switched back to {prev}, which is serving",
                b.build
            ))),
            Err(e) => Failed::unsettled(cause.context(format!(
                "release {to} of build {} {marked}, and switching back to {prev} failed too ({})",
                b.build,
                crate::error::one_line(&e)
            ))),
        }
    }

    /// Main (re)started on `release`, with `current` and the public socket on it and next stopped;
    /// returns what the gate saw.
    pub(super) fn restart_main_on(&mut self, release: &ReleaseId) -> Result<(UnitState, Option<health::Response>)> {
        let main = self.instance(Slot::Main);
        self.switch(&main, release)?;
        self.set_current(release)?;
        let gated = self.start_and_verify(&main, Traffic::Public)?;
        self.point_public(&main)?;
        self.stop_instance(&self.instance(Slot::Next))?;
        Ok(gated)
    }

    /// Points the build's public socket at `inst`'s socket: a new symlink renamed over it, so
    /// every `connect(2)` reaches one instance or the other, never nothing.
    pub(super) fn point_public(&self, inst: &Instance) -> Result<()> {
        let target = Path::new(inst.slot.socket_file());
        if std::fs::read_link(&self.build.socket).is_ok_and(|t| t == target) {
            return Ok(());
        }
        atomic::switch_symlink(&self.build.socket, target)
    }

    /// Waits until nothing is queued on the listening socket bound at `socket` any more (its
    /// backlog was accepted), at most 10 s.
    pub(super) fn drain(&self, socket: &Path) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let _waiting = self.report.waiting("handover", format!("draining {}", socket.display()));
        while Instant::now() < deadline {
            match self.probe.queued(socket)? {
                Some(n) if n > 0 => std::thread::sleep(Duration::from_millis(20)),
                _ => return Ok(()),
            }
        }
        Ok(())
    }

    /// Stops an instance's service (gunicorn finishes its in-flight requests), then its socket;
    /// next's `next` link goes with it. Each alone (`Manager::stop_alone`): a stop of main must
    /// not reach next, which is `PartOf=` it for `systemctl`'s sake.
    pub(super) fn stop_instance(&self, inst: &Instance) -> Result<()> {
        for unit in [&inst.service_unit, &inst.socket_unit] {
            if self.systemd.unit_state(unit)?.active_state != ActiveState::Inactive {
                self.stop_alone(unit)?;
            }
        }
        if inst.slot == Slot::Next {
            atomic::remove_if_exists(&inst.link)?;
        }
        Ok(())
    }

    /// Points `inst`'s link (`current`, `next`) at `release` and installs the drop-in recorded with
    /// that release for the instance.
    pub(super) fn switch(&self, inst: &Instance, release: &ReleaseId) -> Result<()> {
        atomic::switch_symlink(&inst.link, &layout::release_target(release))?;
        let recorded = store::recorded_dropin(&self.build.release_dir(release))?;
        if apply_dropin(inst, recorded.as_deref())? {
            self.systemd.reload()?;
        }
        Ok(())
    }
}
