//! The hand-over as a state machine: its phases, the transitions allowed between them, and the
//! switch journal (`<build_dir>/.relctl-switch`) that records the phase before each step, so that
//! a relctl killed at any point is recovered from by reading where it was (see `recover`).
//!
//! ```text
//! prepared → candidate-up → gated → handed-over → processes → probation → retired
//!     └──────────┴────────────┴──────────┴─────────────┴────────────┴──→ switching-back
//! ```
//!
//! A build with no instance serving (a first build, a stopped build) starts its release in main
//! and goes from `gated` straight to `processes`: there is nothing to hand over from.
//!
//! Beside the journal, the link `.relctl-boot` names the release the build comes back to if the
//! power goes during the switch: the one that served (`from`) until the journal says `retired`,
//! `to` from then on, never ahead of the journal. Main's unit (`units/app@.service.tera`) puts
//! main's link and `current` on it before main starts, when a journal is there and no relctl
//! holds the build's switch lock — a boot after a power cut, or any start after a relctl was
//! killed — so that no release that had not passed everything comes up by itself; the next relctl
//! then finishes the switch from the journal (`recover`).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::host::atomic;
use crate::release::id::ReleaseId;
use crate::release::layout::{self, Slot};

/// Where a switch is. Each phase is recorded before its step begins: recovery treats the step as
/// possibly half done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// The journal is written; nothing live has changed.
    Prepared,
    /// The candidate is stopped, pointed at the new release, started and put through the gate;
    /// the public socket stays with the instance that serves.
    CandidateUp,
    /// The candidate passed the gate; the verify hooks run against it.
    Gated,
    /// The public socket moves to the candidate, `current` to the new release; the instance that
    /// served drains and is kept ready.
    HandedOver,
    /// Web serves the new release: the build's processes and timers become the release's, each
    /// process instance restarting on it, one at a time.
    Processes,
    /// The candidate and the processes serve through their probation; the instance that served
    /// is still ready.
    Probation,
    /// The candidate passed everything: the instance that served stops. Recovery completes the
    /// switch rather than undoing it.
    Retired,
    /// Something failed: the build goes back to the release it came from.
    SwitchingBack,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Prepared => "prepared",
            Phase::CandidateUp => "candidate-up",
            Phase::Gated => "gated",
            Phase::HandedOver => "handed-over",
            Phase::Processes => "processes",
            Phase::Probation => "probation",
            Phase::Retired => "retired",
            Phase::SwitchingBack => "switching-back",
        }
    }

    /// The phases a switch may enter from this one.
    pub fn next(self) -> &'static [Phase] {
        match self {
            Phase::Prepared => &[Phase::CandidateUp, Phase::SwitchingBack],
            Phase::CandidateUp => &[Phase::Gated, Phase::SwitchingBack],
            Phase::Gated => &[Phase::HandedOver, Phase::Processes, Phase::SwitchingBack],
            Phase::HandedOver => &[Phase::Processes, Phase::SwitchingBack],
            Phase::Processes => &[Phase::Probation, Phase::SwitchingBack],
            Phase::Probation => &[Phase::Retired, Phase::SwitchingBack],
            Phase::Retired | Phase::SwitchingBack => &[],
        }
    }

    /// Whether the release switched to has passed everything: recovery completes the switch.
    pub fn is_done(self) -> bool {
        self == Phase::Retired
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the switch journal holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The release that served before (none for a first build).
    pub from: Option<ReleaseId>,
    /// The release switched to (the same as `from` for a restart).
    pub to: ReleaseId,
    /// The relctl that wrote it.
    pub pid: u32,
    /// Where the switch is. Absent in journals of relctl versions before phases were recorded.
    #[serde(default)]
    pub phase: Option<Phase>,
    /// The instance `to` starts in.
    #[serde(default)]
    pub candidate: Option<Slot>,
    /// The instance that served `from` and is kept ready until the candidate passed its
    /// probation; none when nothing served.
    #[serde(default)]
    pub serving: Option<Slot>,
    /// Whether the switch reached `processes`: the build's processes and timers may be the new
    /// release's, and going back moves them too.
    #[serde(default)]
    pub processes_moved: bool,
}

/// A switch in progress, recorded in its journal until it ends.
#[derive(Debug)]
pub struct Switch {
    path: PathBuf,
    record: Record,
}

impl Switch {
    /// Writes the journal of a new switch, in phase `prepared`.
    pub fn begin(
        path: &Path,
        from: Option<&ReleaseId>,
        to: &ReleaseId,
        candidate: Slot,
        serving: Option<Slot>,
    ) -> Result<Switch> {
        let record = Record {
            from: from.cloned(),
            to: to.clone(),
            pid: std::process::id(),
            phase: Some(Phase::Prepared),
            candidate: Some(candidate),
            serving,
            processes_moved: false,
        };
        let switch = Switch { path: path.to_path_buf(), record };
        // Where a boot comes back to, before there is a journal to make it count.
        match from {
            Some(from) => atomic::switch_symlink(&layout::boot_link(path), &layout::release_target(from))?,
            None => {
                atomic::remove_if_exists(&layout::boot_link(path))?;
            }
        }
        switch.write()?;
        super::failpoint("entered:prepared");
        Ok(switch)
    }

    pub fn phase(&self) -> Phase {
        self.record.phase.unwrap_or(Phase::Prepared)
    }

    /// Whether the switch reached `processes` (see `Record::processes_moved`).
    pub fn processes_moved(&self) -> bool {
        self.record.processes_moved
    }

    /// Records `phase` before its step begins. A transition the state machine does not allow is
    /// a bug in relctl, refused before anything is recorded.
    pub fn enter(&mut self, phase: Phase) -> Result<()> {
        let now = self.phase();
        if !now.next().contains(&phase) {
            bail!("relctl bug: the switch to {} cannot go from {now} to {phase}", self.record.to);
        }
        super::failpoint(&format!("leaving:{now}"));
        self.record.phase = Some(phase);
        self.record.processes_moved |= phase == Phase::Processes;
        self.write()?;
        if phase.is_done() {
            // The journal says so first: a boot comes back to `to` only once recovery would keep it.
            atomic::switch_symlink(&layout::boot_link(&self.path), &layout::release_target(&self.record.to))?;
        }
        super::failpoint(&format!("entered:{phase}"));
        Ok(())
    }

    /// The switch ended (verified, or back where it came from): the journal goes.
    pub fn finish(self) -> Result<bool> {
        super::failpoint(&format!("leaving:{}", self.phase()));
        end(&self.path)
    }

    fn write(&self) -> Result<()> {
        let json = serde_json::to_vec(&self.record).context("serializing the switch journal")?;
        atomic::write(&self.path, &json, 0o644, None)?;
        Ok(())
    }
}

/// Removes the journal at `path`, then its boot link (a link without a journal counts for
/// nothing). Returns whether there was a journal.
pub fn end(path: &Path) -> Result<bool> {
    let ended = atomic::remove_if_exists(path)?;
    atomic::remove_if_exists(&layout::boot_link(path))?;
    Ok(ended)
}

/// The journal at `path`, if a switch was interrupted there.
pub fn read(path: &Path) -> Result<Option<Record>> {
    let Some(bytes) = atomic::read_if_exists(path)? else { return Ok(None) };
    let record = serde_json::from_slice(&bytes).with_context(|| {
        format!(
            "reading the switch journal {}; remove it once `current` points at the release that should serve",
            path.display()
        )
    })?;
    Ok(Some(record))
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use std::cell::RefCell;

    thread_local! {
        static KILL_AT: RefCell<Option<String>> = const { RefCell::new(None) };
    }

    /// Makes the next switch on this thread panic right after it recorded `phase`, as a relctl
    /// killed there would stop: nothing after it runs, the journal says `phase`.
    pub fn kill_at(phase: Option<Phase>) {
        KILL_AT.with(|k| *k.borrow_mut() = phase.map(|p| format!("entered:{p}")));
    }

    /// Makes the next switch on this thread panic once the step of `phase` is done, right before
    /// the journal records the next phase or is removed (the pause point `leaving:<phase>`).
    pub fn kill_leaving(phase: Phase) {
        KILL_AT.with(|k| *k.borrow_mut() = Some(format!("leaving:{phase}")));
    }

    /// Called at every failpoint (`deploy::failpoint`): panics at the one asked for.
    pub(in crate::deploy) fn kill_point(point: &str) {
        if KILL_AT.with(|k| k.borrow().as_deref() == Some(point)) {
            KILL_AT.with(|k| *k.borrow_mut() = None);
            panic!("killed at {point}");
        }
    }

    fn id(n: u32) -> ReleaseId {
        ReleaseId::parse(&format!("2026120{n}T000000Z")).unwrap()
    }

    #[test]
    fn every_phase_is_recorded_before_its_step_and_only_allowed_transitions_are() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".relctl-switch");
        let mut s = Switch::begin(&path, Some(&id(1)), &id(2), Slot::Next, Some(Slot::Main)).unwrap();
        assert_eq!(read(&path).unwrap().unwrap().phase, Some(Phase::Prepared));
        for phase in
            [Phase::CandidateUp, Phase::Gated, Phase::HandedOver, Phase::Processes, Phase::Probation, Phase::Retired]
        {
            s.enter(phase).unwrap();
            let r = read(&path).unwrap().unwrap();
            assert_eq!((r.phase, r.candidate, r.serving), (Some(phase), Some(Slot::Next), Some(Slot::Main)));
        }
        let err = s.enter(Phase::SwitchingBack).unwrap_err().to_string();
        assert!(err.contains("cannot go from retired to switching-back"), "{err}");
        assert!(s.finish().unwrap());
        assert!(read(&path).unwrap().is_none());

        let mut s = Switch::begin(&path, None, &id(2), Slot::Main, None).unwrap();
        let err = s.enter(Phase::HandedOver).unwrap_err().to_string();
        assert!(err.contains("cannot go from prepared to handed-over"), "{err}");
        assert_eq!(read(&path).unwrap().unwrap().phase, Some(Phase::Prepared), "a refused step records nothing");
        assert!(!s.processes_moved());
        for phase in [Phase::CandidateUp, Phase::Gated, Phase::Processes, Phase::Probation, Phase::SwitchingBack] {
            s.enter(phase).unwrap();
        }
        assert!(s.processes_moved(), "going back after processes moves them back");
        assert!(read(&path).unwrap().unwrap().processes_moved);
        assert!(Phase::SwitchingBack.next().is_empty() && Phase::Retired.is_done());
    }

    #[test]
    fn a_journal_of_an_earlier_relctl_reads_without_a_phase() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".relctl-switch");
        std::fs::write(&path, r#"{"from":"20261201T000000Z","to":"20261202T000000Z","pid":7}"#).unwrap();
        let r = read(&path).unwrap().unwrap();
        assert_eq!((r.phase, r.candidate, r.serving, r.pid), (None, None, None, 7));
        std::fs::write(&path, "{").unwrap();
        assert!(read(&path).unwrap_err().to_string().contains("remove it once `current` points"));
    }
}
