//! The hand-over, switch-back and recovery driven against a fake systemd and fake instance checks:
//! the happy paths, each failure, every call made to fail, and a kill at each recorded phase.
//! The release store, the links and the journal are real files in a temporary directory.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

use anyhow::{bail, Result};

use crate::deploy::probe::Probe;
use crate::deploy::switch::{self, Phase};
use crate::deploy::{Deploy, Retiring};
use crate::host::health;
use crate::manifest::{self, Loaded};
use crate::plan::AppPlan;
use crate::release::id::ReleaseId;
use crate::release::layout::{self, BuildLayout, Instance, Slot};
use crate::release::store::{self, ReleaseMeta};
use crate::report::{Mode, Report};
use crate::systemd::fake::{Fake, Fate};

const MANIFEST: &str = "app = \"medctrl\"\ncomponent = \"backend\"\n[service]\nexec = \"x\"\n[builds.development]\n";

/// Instance checks by the release an instance's link points at: a release in `sick` answers 500.
struct FakeProbe {
    sd: Rc<Fake>,
    sick: RefCell<BTreeSet<ReleaseId>>,
    /// A unit that dies when the gate asks a candidate for its health (the instance that served,
    /// lost during the hand-over).
    dies_on_health: RefCell<Option<String>>,
    /// Releases whose second worker answers 500 when the gate warms the workers.
    sick_worker: RefCell<BTreeSet<ReleaseId>>,
    /// The sockets whose workers were warmed, in order.
    warmed: RefCell<Vec<PathBuf>>,
}

impl FakeProbe {
    /// The release the instance whose socket is `socket` runs.
    fn release_of(socket: &Path) -> Result<ReleaseId> {
        let slot = socket.file_name().and_then(|f| Slot::of_socket_file(Path::new(f))).expect("an instance's socket");
        let link = socket.with_file_name(slot.link());
        Ok(layout::link_release(&link)?.expect("the instance's link points at a release"))
    }
}

impl Probe for FakeProbe {
    fn holds(&self, pid: u32, _socket: &Path) -> Result<bool> {
        Ok(pid > 0)
    }

    fn own_tcp_listeners(&self, _pid: u32) -> Result<Vec<String>> {
        Ok(Vec::new())
    }

    fn wait_healthy(
        &self,
        socket: &Path,
        request: &health::Request,
        _accept: health::Accept,
        _timeout: Duration,
    ) -> Result<health::Response> {
        if let Some(unit) = self.dies_on_health.borrow_mut().take() {
            self.sd.set_active(&unit, false);
        }
        let release = FakeProbe::release_of(socket)?;
        if self.sick.borrow().contains(&release) {
            bail!("health check GET {} answered HTTP 500: database unreachable", request.uri());
        }
        Ok(health::Response { status: 200, body: release.to_string() })
    }

    fn workers(&self, _pid: u32) -> Result<usize> {
        Ok(2)
    }

    fn warm(
        &self,
        socket: &Path,
        _request: &health::Request,
        workers: usize,
        _timeout: Duration,
    ) -> Vec<std::io::Result<health::Response>> {
        self.warmed.borrow_mut().push(socket.to_path_buf());
        let sick = FakeProbe::release_of(socket).is_ok_and(|r| self.sick_worker.borrow().contains(&r));
        (0..workers)
            .map(|i| {
                let status = if sick && i == 1 { 500 } else { 200 };
                Ok(health::Response { status, body: "warm".into() })
            })
            .collect()
    }

    fn queued(&self, _socket: &Path) -> Result<Option<u32>> {
        Ok(Some(0))
    }

    fn socket_mismatch(&self, _socket: &Path, _unit: &str, _group: &str) -> Result<Option<String>> {
        Ok(None)
    }

    fn journal(&self, _unit: &str) -> String {
        String::new()
    }
}

/// One build of an app whose files live in a temporary directory, on a fake systemd.
struct World {
    _dir: tempfile::TempDir,
    app: AppPlan,
    build: BuildLayout,
    lock_dir: PathBuf,
    sd: Rc<Fake>,
    probe: FakeProbe,
}

impl World {
    fn new() -> World {
        World::with_manifest(MANIFEST)
    }

    fn with_manifest(text: &str) -> World {
        let dir = tempfile::tempdir().unwrap();
        let loaded =
            Loaded { path: "/srv/relctl.toml".into(), dir: "/srv".into(), manifest: manifest::parse(text).unwrap() };
        let mut app = crate::plan::app(&loaded).unwrap();
        app.layout.root = dir.path().join("root");
        app.layout.unit_dir = dir.path().join("units");
        app.probation_s = 0;
        let build = app.layout.build(&"development".parse().unwrap());
        std::fs::create_dir_all(&build.releases_dir).unwrap();
        let sd = Rc::new(Fake::new());
        let probe = FakeProbe {
            sd: Rc::clone(&sd),
            sick: Default::default(),
            dies_on_health: Default::default(),
            sick_worker: Default::default(),
            warmed: Default::default(),
        };
        World { lock_dir: dir.path().join("lock"), _dir: dir, app, build, sd, probe }
    }

    /// A complete release `n`.
    fn release(&self, n: u32) -> ReleaseId {
        let id = ReleaseId::parse(&format!("2026120{n}T000000Z")).unwrap();
        let dir = self.build.release_dir(&id);
        std::fs::create_dir_all(&dir).unwrap();
        let meta = ReleaseMeta {
            id: id.clone(),
            app: "medctrl".into(),
            build: "development".parse().unwrap(),
            created: jiff::Timestamp::UNIX_EPOCH,
            git: None,
            promoted_from: None,
            settings: None,
        };
        store::mark_complete(&dir, &meta).unwrap();
        id
    }

    /// Main serves `r`, as after a build of it.
    fn live(&self, r: &ReleaseId) {
        for link in [&self.build.current, &self.inst(Slot::Main).link] {
            crate::host::atomic::switch_symlink(link, &layout::release_target(r)).unwrap();
        }
        crate::host::atomic::switch_symlink(&self.build.socket, Path::new(Slot::Main.socket_file())).unwrap();
        self.sd.set_active(&self.inst(Slot::Main).socket_unit, true);
        self.sd.set_active(&self.inst(Slot::Main).service_unit, true);
        store::mark_verified(&self.build.release_dir(r), jiff::Timestamp::now()).unwrap();
    }

    fn inst(&self, slot: Slot) -> Instance {
        self.app.layout.instance("development", slot)
    }

    /// Runs `f` on a deploy of this build.
    fn with<T>(&self, f: impl FnOnce(&mut Deploy) -> T) -> T {
        self.with_steps(f).0
    }

    /// Runs `f` on a deploy of this build; returns its result and the steps the report recorded
    /// (`name: detail`).
    fn with_steps<T>(&self, f: impl FnOnce(&mut Deploy) -> T) -> (T, Vec<String>) {
        let mut report = Report::new(Mode::Quiet, false);
        let out = {
            let mut d = Deploy::new(&self.app, &self.build, &*self.sd, &mut report)
                .with_fakes(&self.probe, self.lock_dir.clone());
            f(&mut d)
        };
        (out, report.steps().iter().map(|s| format!("{}: {}", s.step, s.detail)).collect())
    }

    fn go_live(&self, to: &ReleaseId, from: Option<&ReleaseId>) -> Result<()> {
        self.with(|d| d.go_live(to, from, Retiring::Drained).map(|_| ()))
    }

    fn recover(&self) -> Option<String> {
        self.with(|d| d.recover()).unwrap()
    }

    /// The instance the public socket points at.
    fn public(&self) -> Slot {
        let target = std::fs::read_link(&self.build.socket).unwrap();
        Slot::of_socket_file(&target).unwrap()
    }

    fn up(&self, slot: Slot) -> bool {
        self.sd.state(&self.inst(slot).service_unit).active_state.is_up()
    }

    fn pid(&self, slot: Slot) -> u32 {
        self.sd.state(&self.inst(slot).service_unit).main_pid
    }

    fn runs(&self, slot: Slot) -> Option<ReleaseId> {
        layout::link_release(&self.inst(slot).link).unwrap()
    }

    fn current(&self) -> Option<ReleaseId> {
        self.build.current_release().unwrap()
    }

    fn bad(&self, r: &ReleaseId) -> bool {
        store::bad_reason(&self.build.release_dir(r)).unwrap().is_some()
    }

    fn verified(&self, r: &ReleaseId) -> bool {
        store::verified(&self.build.release_dir(r)).unwrap().is_some()
    }

    fn journal(&self) -> Option<switch::Record> {
        switch::read(&self.build.switch_journal()).unwrap()
    }

    /// What a user would check of a build at rest: the public socket on an instance that is up,
    /// the other one stopped, `current` on the release it runs, that release not bad, no journal.
    /// Returns the release that serves.
    fn at_rest(&self) -> ReleaseId {
        let public = self.public();
        assert!(self.up(public), "the public socket points at {public:?}, which is up");
        assert!(!self.up(public.other()), "the other instance is stopped");
        let serves = self.runs(public).expect("the serving instance's link");
        assert_eq!(self.current(), Some(serves.clone()), "`current` is what serves");
        assert!(!self.bad(&serves), "{serves} serves and is not marked bad");
        assert_eq!(self.journal(), None, "no switch journal left");
        serves
    }
}

#[test]
fn a_hand_over_verifies_the_candidate_then_moves_the_public_socket_and_retires_main() {
    let w = World::new();
    let (r1, r2) = (w.release(1), w.release(2));
    w.live(&r1);
    w.sd.clear_calls();
    w.go_live(&r2, Some(&r1)).unwrap();
    assert_eq!(w.at_rest(), r2);
    assert_eq!(w.public(), Slot::Next);
    assert_eq!(w.runs(Slot::Main), Some(r2.clone()), "stopped main runs current when started");
    assert!(w.verified(&r2) && !w.bad(&r1));
    let previous = || layout::link_release(&w.build.previous_link()).unwrap();
    assert_eq!(previous(), Some(r1.clone()), "r1's static files are bridged");
    let calls = w.sd.calls();
    let start_next = calls.iter().position(|c| c == "start medctrl_next@development.service").unwrap();
    let stop_main = calls.iter().position(|c| c == "stop-alone medctrl@development.service").unwrap();
    assert!(start_next < stop_main, "main stops only after next passed: {calls:?}");

    // And back: the next release starts in main while next serves.
    let r3 = w.release(3);
    w.go_live(&r3, Some(&r2)).unwrap();
    assert_eq!((w.at_rest(), w.public()), (r3, Slot::Main));
    assert_eq!(previous(), Some(r2.clone()));
    assert!(!w.inst(Slot::Next).link.exists(), "next's link goes with it");
    // A restart of the same release keeps what was bridged.
    w.go_live(&w.current().unwrap(), w.current().as_ref()).unwrap();
    assert_eq!(previous(), Some(r2.clone()));
}

#[test]
fn a_restart_hands_the_same_release_over_and_marks_nothing() {
    let w = World::new();
    let r1 = w.release(1);
    w.live(&r1);
    let pid = w.pid(Slot::Main);
    w.go_live(&r1, Some(&r1)).unwrap();
    assert_eq!((w.at_rest(), w.public()), (r1.clone(), Slot::Next));
    assert_ne!(w.pid(Slot::Next), pid);
}

#[test]
fn only_a_candidate_is_warmed_never_the_socket_users_reach() {
    let w = World::new();
    let r1 = w.release(1);
    // A first build: main starts with the public socket on it already.
    w.go_live(&r1, None).unwrap();
    assert!(w.probe.warmed.borrow().is_empty(), "{:?}", w.probe.warmed.borrow());
    // A restart: the candidate, next, before the public socket moves to it.
    w.go_live(&r1, Some(&r1)).unwrap();
    assert_eq!(*w.probe.warmed.borrow(), [w.inst(Slot::Next).socket]);
    // A reload: the instance that serves, under traffic.
    w.with(|d| d.reload()).unwrap();
    assert_eq!(w.probe.warmed.borrow().len(), 1, "a reload warms nothing");
}

#[test]
fn a_candidate_that_fails_its_gate_never_takes_traffic() {
    for fate in ["sick", "a sick worker", "fails to start"] {
        let w = World::new();
        let (r1, r2) = (w.release(1), w.release(2));
        w.live(&r1);
        let pid = w.pid(Slot::Main);
        match fate {
            "sick" => {
                w.probe.sick.borrow_mut().insert(r2.clone());
            }
            "a sick worker" => {
                w.probe.sick_worker.borrow_mut().insert(r2.clone());
            }
            _ => w.sd.fate("medctrl_next@development.service", Fate::FailsToStart),
        }
        let err = format!("{:#}", w.go_live(&r2, Some(&r1)).unwrap_err());
        assert!(
            err.contains(&format!(
                "release {r2} of build development failed in medctrl_next@development.service before it took any traffic and is marked bad; release {r1} kept serving, untouched"
            )),
            "{fate}: {err}"
        );
        if fate == "a sick worker" {
            assert!(
                err.contains("warming the 2 workers of medctrl_next@development.service with GET / through")
                    && err.contains("request 2 of 2 answered HTTP 500: warm"),
                "{err}"
            );
        }
        assert_eq!(w.at_rest(), r1, "{fate}");
        assert_eq!((w.public(), w.pid(Slot::Main)), (Slot::Main, pid), "{fate}: main never touched");
        assert!(w.bad(&r2), "{fate}");
    }
}

#[test]
fn a_candidate_that_fails_its_probation_is_switched_back_from_at_once() {
    let w = World::new();
    let (r1, r2) = (w.release(1), w.release(2));
    w.live(&r1);
    let pid = w.pid(Slot::Main);
    // next's main process is replaced between the gate and the end of the probation
    w.sd.fate("medctrl_next@development.service", Fate::RestartsAfter(1));
    let err = format!("{:#}", w.go_live(&r2, Some(&r1)).unwrap_err());
    assert!(err.contains("did not stay up for the 0s probation"), "{err}");
    assert!(
        err.contains(&format!(
            "release {r2} of build development failed and is marked bad; switched back to {r1}, which medctrl@development.service kept serving"
        )),
        "{err}"
    );
    assert_eq!((w.at_rest(), w.public(), w.pid(Slot::Main)), (r1.clone(), Slot::Main, pid));
    assert!(w.bad(&r2));
}

#[test]
fn when_the_instance_kept_ready_is_gone_main_starts_on_the_old_release() {
    let w = World::new();
    let (r1, r2) = (w.release(1), w.release(2));
    w.live(&r1);
    w.sd.fate("medctrl_next@development.service", Fate::RestartsAfter(1));
    *w.probe.dies_on_health.borrow_mut() = Some("medctrl@development.service".into());
    let err = format!("{:#}", w.go_live(&r2, Some(&r1)).unwrap_err());
    assert!(err.contains(&format!("failed and is marked bad; switched back to {r1}, which is serving")), "{err}");
    assert_eq!((w.at_rest(), w.public()), (r1, Slot::Main));
}

#[test]
fn a_cold_start_runs_main_and_a_failed_one_goes_back_to_the_previous_release() {
    // A first build.
    let w = World::new();
    let r1 = w.release(1);
    w.go_live(&r1, None).unwrap();
    assert_eq!((w.at_rest(), w.public()), (r1.clone(), Slot::Main));
    assert!(w.verified(&r1));

    // A stopped build, started on a release that fails: main goes back to the previous one.
    let r2 = w.release(2);
    w.with(|d| d.stop()).unwrap();
    w.probe.sick.borrow_mut().insert(r2.clone());
    let err = format!("{:#}", w.go_live(&r2, Some(&r1)).unwrap_err());
    assert!(err.contains(&format!("failed and is marked bad; switched back to {r1}, which is serving")), "{err}");
    assert_eq!((w.at_rest(), w.public()), (r1, Slot::Main));
    assert!(w.bad(&r2));

    // A first build that fails has nothing to go back to, and says so.
    let w = World::new();
    let r1 = w.release(1);
    w.probe.sick.borrow_mut().insert(r1.clone());
    let err = format!("{:#}", w.go_live(&r1, None).unwrap_err());
    assert!(err.contains("there is no previous release to switch back to"), "{err}");
    assert!(w.bad(&r1) && w.journal().is_none());
}

/// Every call the hand-over makes (reads of unit state included), made to fail in turn: the build
/// ends at rest on the old release or on the new one verified — at once, or through the journal
/// the next relctl recovers from.
#[test]
fn any_failing_call_leaves_the_build_at_rest_or_recoverable() {
    let calls = {
        let w = World::new();
        let (r1, r2) = (w.release(1), w.release(2));
        w.live(&r1);
        w.sd.clear_calls();
        w.go_live(&r2, Some(&r1)).unwrap();
        w.sd.all_calls()
    };
    assert!(calls.len() > 10, "{calls:?}");
    let mut seen = BTreeSet::new();
    for call in calls.iter().filter(|c| seen.insert(c.to_string())) {
        let w = World::new();
        let (r1, r2) = (w.release(1), w.release(2));
        w.live(&r1);
        w.sd.fail(call);
        let err = w.go_live(&r2, Some(&r1)).expect_err(call);
        w.sd.heal(call);
        let recovered = w.journal().map(|_| w.recover());
        let serves = w.at_rest();
        assert!(
            serves == r1 && !w.verified(&r2) || serves == r2 && w.verified(&r2),
            "{call}: {serves} serves; {err:#}; recovered: {recovered:?}"
        );
    }
}

/// A relctl killed right after it recorded each phase: the next one reads the phase and brings
/// the build to rest — back on the old release before the candidate passed, on the new one after.
#[test]
fn a_kill_at_each_recorded_phase_is_recovered_from() {
    let phases = [Phase::CandidateUp, Phase::Gated, Phase::HandedOver, Phase::Probation, Phase::Retired];
    for phase in phases {
        let w = World::new();
        let (r1, r2) = (w.release(1), w.release(2));
        w.live(&r1);
        switch::tests::kill_at(Some(phase));
        let killed = catch_unwind(AssertUnwindSafe(|| w.go_live(&r2, Some(&r1))));
        switch::tests::kill_at(None);
        assert!(killed.is_err(), "{phase}: killed");
        assert_eq!(w.journal().and_then(|j| j.phase), Some(phase), "{phase}: the journal says where it was");
        let done = w.recover().unwrap();
        let serves = w.at_rest();
        if phase.is_done() {
            assert_eq!(serves, r2, "{phase}: {done}");
            assert!(w.verified(&r2) && done.contains("had passed its probation and is kept"), "{phase}: {done}");
        } else {
            assert_eq!((serves, w.public()), (r1.clone(), Slot::Main), "{phase}: {done}");
            assert!(w.bad(&r2) && done.contains("marked bad"), "{phase}: {done}");
        }
    }

    // Killed while switching back from a candidate that failed its probation.
    let w = World::new();
    let (r1, r2) = (w.release(1), w.release(2));
    w.live(&r1);
    w.sd.fate("medctrl_next@development.service", Fate::RestartsAfter(1));
    switch::tests::kill_at(Some(Phase::SwitchingBack));
    assert!(catch_unwind(AssertUnwindSafe(|| w.go_live(&r2, Some(&r1)))).is_err());
    switch::tests::kill_at(None);
    assert_eq!(w.public(), Slot::Next, "killed before the public socket went back");
    let done = w.recover().unwrap();
    assert!(done.contains("public socket back on medctrl@development.service"), "{done}");
    assert_eq!((w.at_rest(), w.public()), (r1, Slot::Main));

    // Killed during a cold start: main restarts on the release it came from.
    let w = World::new();
    let (r1, r2) = (w.release(1), w.release(2));
    w.live(&r1);
    w.with(|d| d.stop()).unwrap();
    switch::tests::kill_at(Some(Phase::Gated));
    assert!(catch_unwind(AssertUnwindSafe(|| w.go_live(&r2, Some(&r1)))).is_err());
    switch::tests::kill_at(None);
    let done = w.recover().unwrap();
    assert!(done.contains(&format!("medctrl@development.service restarted on {r1}")), "{done}");
    assert_eq!(w.at_rest(), r1);
}

impl World {
    /// The power goes, then the host boots: every unit is gone at once; main starts because it is
    /// enabled, as its unit starts it — with a switch journal there (and no relctl: its lock went
    /// with /run), its link and `current` first go back on `.relctl-boot` (`ExecStartPre=`, which
    /// `plan::units`' tests run for real), and once up it takes the public socket
    /// (`ExecStartPost=`). Next, which is not enabled, stays down.
    fn power_cut_and_boot(&self) {
        self.sd.power_cut();
        let boot = self.build.boot_link();
        if self.build.switch_journal().exists() && boot.is_dir() {
            let target = std::fs::read_link(&boot).unwrap();
            for link in [&self.inst(Slot::Main).link, &self.build.current] {
                crate::host::atomic::switch_symlink(link, &target).unwrap();
            }
        }
        self.sd.set_active(&self.inst(Slot::Main).socket_unit, true);
        self.sd.set_active(&self.inst(Slot::Main).service_unit, true);
        crate::host::atomic::switch_symlink(&self.build.socket, Path::new(Slot::Main.socket_file())).unwrap();
        // The processes, wanted by main, start after it (on `current`).
        if self.unit_file("medctrl_development_worker@.service").exists() {
            for n in [1, 2] {
                self.sd.set_active(&self.worker(n), true);
            }
        }
    }
}

/// The power lost during a switch, at either end of each phase (right after the journal recorded
/// it, or once its step is done), with either instance the candidate: the host boots with main on
/// the release the build came from — on the new one once the journal said `retired` — with
/// `current` on it too, and the next relctl brings the build to rest there.
#[test]
fn a_power_cut_at_each_phase_boots_on_the_last_verified_release_and_is_recovered_from() {
    let phases = [
        Phase::Prepared,
        Phase::CandidateUp,
        Phase::Gated,
        Phase::HandedOver,
        Phase::Processes,
        Phase::Probation,
        Phase::Retired,
    ];
    for candidate in [Slot::Next, Slot::Main] {
        for phase in phases {
            for leaving in [false, true] {
                let case = format!("candidate {candidate:?}, {} {phase}", if leaving { "leaving" } else { "entered" });
                let w = World::new();
                std::fs::create_dir_all(&w.app.layout.unit_dir).unwrap();
                let (r1, r2, r3) = (
                    w.release_with(1, &processes(true)),
                    w.release_with(2, &processes(true)),
                    w.release_with(3, &processes(true)),
                );
                w.live(&r1);
                w.with(|d| d.move_processes(&r1, super::processes::Restart::All).map(|_| ())).unwrap();
                let (from, to) = match candidate {
                    Slot::Next => (r1, r2),
                    Slot::Main => {
                        w.go_live(&r2, Some(&r1)).unwrap();
                        assert_eq!(w.public(), Slot::Next);
                        (r2, r3)
                    }
                };
                if leaving {
                    switch::tests::kill_leaving(phase);
                } else if phase == Phase::Prepared {
                    // `prepared` is recorded by the journal's first write: nothing runs before the
                    // candidate's step, which is `leaving prepared`.
                    continue;
                } else {
                    switch::tests::kill_at(Some(phase));
                }
                let killed = catch_unwind(AssertUnwindSafe(|| w.go_live(&to, Some(&from))));
                switch::tests::kill_at(None);
                assert!(killed.is_err(), "{case}: killed");
                assert_eq!(w.journal().and_then(|j| j.phase), Some(phase), "{case}");
                w.power_cut_and_boot();
                let back = if phase.is_done() { to.clone() } else { from.clone() };
                assert_eq!(w.runs(Slot::Main), Some(back.clone()), "{case}: main boots on {back}");
                assert_eq!(w.current(), Some(back.clone()), "{case}: current");
                let done = w.recover().unwrap();
                assert_eq!(w.at_rest(), back, "{case}: {done}");
                assert_eq!(w.public(), Slot::Main, "{case}: {done}");
                assert!(!w.build.boot_link().exists(), "{case}: the boot link goes with the journal");
                if phase.is_done() {
                    assert!(w.verified(&to), "{case}: {done}");
                } else {
                    assert!(w.bad(&to), "{case}: {done}");
                }
                assert!(w.sd.state(&w.worker(1)).is_active() && w.sd.state(&w.worker(2)).is_active(), "{case}");
            }
        }
    }
}

/// The power lost while a switch goes back from a candidate that failed its probation, at either
/// end of `switching-back`: the boot and the recovery end on the release it came from.
#[test]
fn a_power_cut_while_switching_back_boots_on_the_release_it_came_from() {
    for candidate in [Slot::Next, Slot::Main] {
        for leaving in [false, true] {
            let case =
                format!("candidate {candidate:?}, {} switching-back", if leaving { "leaving" } else { "entered" });
            let w = World::new();
            let (r1, r2, r3) = (w.release(1), w.release(2), w.release(3));
            w.live(&r1);
            let (from, to) = match candidate {
                Slot::Next => (r1, r2),
                Slot::Main => {
                    w.go_live(&r2, Some(&r1)).unwrap();
                    (r2, r3)
                }
            };
            w.sd.fate(&w.inst(candidate).service_unit, Fate::RestartsAfter(1));
            if leaving {
                switch::tests::kill_leaving(Phase::SwitchingBack);
            } else {
                switch::tests::kill_at(Some(Phase::SwitchingBack));
            }
            let killed = catch_unwind(AssertUnwindSafe(|| w.go_live(&to, Some(&from))));
            switch::tests::kill_at(None);
            assert!(killed.is_err(), "{case}: killed");
            assert_eq!(w.journal().and_then(|j| j.phase), Some(Phase::SwitchingBack), "{case}");
            w.sd.fate(&w.inst(candidate).service_unit, Fate::Runs);
            w.power_cut_and_boot();
            assert_eq!((w.runs(Slot::Main), w.current()), (Some(from.clone()), Some(from.clone())), "{case}");
            let done = w.recover().unwrap();
            assert_eq!((w.at_rest(), w.public()), (from.clone(), Slot::Main), "{case}: {done}");
            assert!(w.bad(&to), "{case}: {done}");
        }
    }
}

#[test]
fn a_journal_of_an_earlier_relctl_goes_back_to_where_it_came_from() {
    let w = World::new();
    let (r1, r2) = (w.release(1), w.release(2));
    w.live(&r1);
    let json = format!(r#"{{"from":"{r1}","to":"{r2}","pid":7}}"#);
    std::fs::write(w.build.switch_journal(), json).unwrap();
    let done = w.recover().unwrap();
    assert!(done.starts_with(&format!("recovered from an interrupted relctl (pid 7): release {r2} marked bad")));
    assert_eq!(w.at_rest(), r1);
}

/// A switch that could not get back by itself keeps its journal; the next restart finishes it
/// before it restarts, instead of writing over it.
#[test]
fn an_unsettled_switch_is_finished_by_the_next_restart() {
    let w = World::new();
    let (r1, r2) = (w.release(1), w.release(2));
    w.live(&r1);
    w.probe.sick.borrow_mut().insert(r2.clone());
    // The sick candidate cannot even be stopped: the build is not back where it came from.
    w.sd.fail("stop-alone medctrl_next@development.service");
    let err = format!("{:#}", w.go_live(&r2, Some(&r1)).unwrap_err());
    assert!(err.contains("the switch journal") && err.contains("is kept"), "{err}");
    assert_eq!(w.journal().and_then(|j| j.phase), Some(Phase::SwitchingBack));
    w.sd.heal("stop-alone medctrl_next@development.service");
    let (restarted, steps) = w.with_steps(|d| d.restart().map(|_| ()));
    restarted.unwrap();
    let recovered =
        format!("recover: recovered from an interrupted relctl (pid {}): release {r2} marked bad", std::process::id());
    assert!(steps.iter().any(|s| s.starts_with(&recovered)), "{steps:?}");
    assert_eq!(w.at_rest(), r1);
    assert!(w.bad(&r2));
}

/// The build's processes: a worker (2 instances) and a timer, recorded with release `n`; with
/// `worker = false`, the timer alone.
fn processes(worker: bool) -> crate::plan::processes::ProcessSet {
    use crate::plan::processes::{ProcessSet, ProcessSpec, TimerSpec};
    let spec = ProcessSpec {
        name: "worker".into(),
        exec: "celery worker".into(),
        instances: 2,
        stop_timeout_s: 60,
        ready: None,
        ready_timeout_s: 60,
    };
    let timer = TimerSpec {
        name: "clear".into(),
        exec: "manage.py clearsessions".into(),
        on_calendar: "daily".into(),
        randomized_delay_s: 0,
        persistent: true,
        timeout_s: 60,
        on_failure: None,
    };
    ProcessSet { processes: if worker { vec![spec] } else { Vec::new() }, timers: vec![timer], ..Default::default() }
}

impl World {
    /// Release `n`, recording `set` as its processes.
    fn release_with(&self, n: u32, set: &crate::plan::processes::ProcessSet) -> ReleaseId {
        let id = self.release(n);
        crate::plan::processes::record(&self.build.release_dir(&id), set).unwrap();
        id
    }

    fn worker(&self, n: u32) -> String {
        format!("medctrl_development_worker@{n}.service")
    }

    fn unit_file(&self, name: &str) -> PathBuf {
        self.app.layout.unit_dir.join(name)
    }
}

#[test]
fn processes_move_to_the_release_after_web_took_it_one_instance_at_a_time() {
    let w = World::new();
    std::fs::create_dir_all(&w.app.layout.unit_dir).unwrap();
    let (r1, r2) = (w.release_with(1, &processes(true)), w.release_with(2, &processes(true)));
    w.live(&r1);
    w.sd.clear_calls();
    let (done, steps) = w.with_steps(|d| d.go_live(&r2, Some(&r1), Retiring::Drained).map(|_| ()));
    done.unwrap();
    assert_eq!(w.at_rest(), r2);
    let calls = w.sd.calls();
    let at = |c: &str| calls.iter().position(|x| x == c).unwrap_or_else(|| panic!("no {c}: {calls:?}"));
    let handed = at("start medctrl_next@development.service");
    let (w1, w2) = (at(&format!("restart {}", w.worker(1))), at(&format!("restart {}", w.worker(2))));
    let retired = at("stop-alone medctrl@development.service");
    assert!(handed < w1 && w1 < w2 && w2 < retired, "web first, then the workers one by one, then retire: {calls:?}");
    assert!(w.sd.state(&w.worker(2)).is_active());
    for file in
        ["medctrl_development_worker@.service", "medctrl_development_clear.service", "medctrl_development_clear.timer"]
    {
        let text = std::fs::read_to_string(w.unit_file(file)).unwrap();
        assert!(text.contains(layout::MARKER) && text.contains("X-Relctl-Build=development"), "{file}:\n{text}");
    }
    assert!(calls.contains(&"start medctrl_development_clear.timer".to_string()), "{calls:?}");
    assert!(steps.iter().any(|s| s.starts_with("processes: ") && s.contains(&format!("on release {r2}"))), "{steps:?}");
}

#[test]
fn a_process_that_fails_on_the_new_release_takes_the_whole_build_back() {
    let w = World::new();
    std::fs::create_dir_all(&w.app.layout.unit_dir).unwrap();
    let (r1, r2) = (w.release_with(1, &processes(true)), w.release_with(2, &processes(true)));
    w.live(&r1);
    w.with(|d| d.move_processes(&r1, super::processes::Restart::All).map(|_| ())).unwrap();
    let untouched = w.sd.state(&w.worker(2)).main_pid;
    w.sd.fate(&w.worker(1), Fate::FailsOnce);
    w.sd.clear_calls();
    let err = format!("{:#}", w.go_live(&r2, Some(&r1)).unwrap_err());
    assert!(err.contains("process worker (medctrl_development_worker@1.service) did not come up"), "{err}");
    assert!(err.contains("marked bad") && err.contains(&format!("switched back to {r1}")), "{err}");
    assert_eq!(w.at_rest(), r1, "web is back on the old release");
    assert!(w.bad(&r2));
    let calls = w.sd.calls();
    let restarts = |unit: &str| calls.iter().filter(|c| **c == format!("restart {unit}")).count();
    assert_eq!(restarts(&w.worker(1)), 2, "worker 1 failed on the new release and restarted on the old: {calls:?}");
    assert_eq!(restarts(&w.worker(2)), 0, "worker 2 kept running the old release: {calls:?}");
    assert_eq!(w.sd.state(&w.worker(2)).main_pid, untouched);
    assert!(w.sd.state(&w.worker(1)).is_active());
}

#[test]
fn a_process_gone_from_the_release_has_its_units_removed_and_comes_back_with_a_rollback() {
    let w = World::new();
    std::fs::create_dir_all(&w.app.layout.unit_dir).unwrap();
    let (r1, r2) = (w.release_with(1, &processes(true)), w.release_with(2, &processes(false)));
    w.live(&r1);
    w.with(|d| d.move_processes(&r1, super::processes::Restart::All).map(|_| ())).unwrap();
    let template = w.unit_file("medctrl_development_worker@.service");
    assert!(template.exists());
    w.go_live(&r2, Some(&r1)).unwrap();
    assert!(!template.exists(), "the worker's unit file is removed");
    assert!(!w.sd.state(&w.worker(1)).active_state.is_up() && !w.sd.state(&w.worker(2)).active_state.is_up());
    assert!(w.unit_file("medctrl_development_clear.timer").exists(), "the timer stays");
    // Going back to r1 brings its worker back.
    w.go_live(&r1, Some(&r2)).unwrap();
    assert!(template.exists() && w.sd.state(&w.worker(2)).is_active());
}

#[test]
fn a_kill_after_the_processes_moved_is_recovered_with_the_processes() {
    let w = World::new();
    std::fs::create_dir_all(&w.app.layout.unit_dir).unwrap();
    let (r1, r2) = (w.release_with(1, &processes(true)), w.release_with(2, &processes(false)));
    w.live(&r1);
    w.with(|d| d.move_processes(&r1, super::processes::Restart::All).map(|_| ())).unwrap();
    switch::tests::kill_at(Some(Phase::Probation));
    assert!(catch_unwind(AssertUnwindSafe(|| w.go_live(&r2, Some(&r1)))).is_err());
    switch::tests::kill_at(None);
    let journal = w.journal().unwrap();
    assert!(journal.processes_moved && journal.phase == Some(Phase::Probation));
    assert!(!w.unit_file("medctrl_development_worker@.service").exists(), "r2 has no worker");
    let done = w.recover().unwrap();
    assert!(done.contains(&format!("processes restarted on {r1}")), "{done}");
    assert_eq!(w.at_rest(), r1);
    assert!(w.unit_file("medctrl_development_worker@.service").exists() && w.sd.state(&w.worker(1)).is_active());
}

#[test]
fn a_smaller_count_stops_the_instances_above_it() {
    let w = World::new();
    std::fs::create_dir_all(&w.app.layout.unit_dir).unwrap();
    let mut one = processes(true);
    one.processes[0].instances = 1;
    let (r1, r2) = (w.release_with(1, &processes(true)), w.release_with(2, &one));
    w.live(&r1);
    w.with(|d| d.move_processes(&r1, super::processes::Restart::All).map(|_| ())).unwrap();
    assert!(w.sd.state(&w.worker(2)).is_active());
    w.sd.clear_calls();
    w.go_live(&r2, Some(&r1)).unwrap();
    assert!(w.sd.state(&w.worker(1)).is_active() && !w.sd.state(&w.worker(2)).active_state.is_up());
    let calls = w.sd.calls();
    assert!(calls.contains(&format!("stop-alone {}", w.worker(2))), "{calls:?}");
    assert!(calls.contains(&format!("disable {}", w.worker(2))), "{calls:?}");
    assert!(w.unit_file("medctrl_development_worker@.service").exists(), "the process itself stays");
}

#[test]
fn restart_of_one_process_restarts_its_instances_and_leaves_web_alone() {
    let w = World::new();
    std::fs::create_dir_all(&w.app.layout.unit_dir).unwrap();
    let r1 = w.release_with(1, &processes(true));
    w.live(&r1);
    w.with(|d| d.move_processes(&r1, super::processes::Restart::All).map(|_| ())).unwrap();
    let (web, pids) = (w.pid(Slot::Main), [w.worker(1), w.worker(2)].map(|u| w.sd.state(&u).main_pid));
    w.sd.clear_calls();
    let units = w.with(|d| d.restart_process("worker")).unwrap();
    assert_eq!(units.len(), 2);
    let now = [w.worker(1), w.worker(2)].map(|u| w.sd.state(&u).main_pid);
    assert!(now[0] != pids[0] && now[1] != pids[1], "both instances restarted: {pids:?} -> {now:?}");
    assert_eq!(w.pid(Slot::Main), web, "web untouched");
    assert!(w.sd.calls().iter().all(|c| !c.contains("medctrl@") && !c.contains("medctrl_next@")), "{:?}", w.sd.calls());
    let err = w.with(|d| d.restart_process("beat")).unwrap_err();
    assert!(crate::error::is_usage(&err), "{err}");
    assert!(err.to_string().contains("runs no process \"beat\"") && err.to_string().contains("runs: worker"), "{err}");
}

/// A build that sleeps when idle, served by main on `r` and asleep: main's socket and the wake
/// socket listen, no instance runs.
fn asleep_on(w: &World, r: &ReleaseId) {
    w.live(r);
    w.sd.set_active(&w.inst(Slot::Main).service_unit, false);
    w.sd.set_active(&w.app.layout.wake("development").socket_unit, true);
}

fn sleeper() -> World {
    World::with_manifest(&format!("{MANIFEST}idle_stop_s = 600\n"))
}

#[test]
fn a_restart_of_a_sleeping_build_wakes_it_hands_over_and_lets_it_sleep_again() {
    let w = sleeper();
    let r1 = w.release(1);
    asleep_on(&w, &r1);
    let (out, steps) = w.with_steps(|d| d.restart().map(|_| ()));
    out.unwrap();
    assert!(steps[0].starts_with("wake: build slept; started medctrl@development.service"), "{steps:?}");
    assert!(steps.iter().any(|s| s.starts_with("handover: medctrl_next@development.service serves")), "{steps:?}");
    assert!(steps.last().unwrap().starts_with("sleep: sleeps: no request came through"), "{steps:?}");
    assert_eq!(w.public(), Slot::Next, "the candidate took over before the build slept");
    assert!(!w.up(Slot::Main) && !w.up(Slot::Next), "both instances stopped: it sleeps");
    assert_eq!(w.current(), Some(r1.clone()));
    assert!(w.verified(&r1) && w.journal().is_none());
    assert!(w.build.build_dir.join(crate::deploy::sleep::ASLEEP_MARK).is_file());
    let dropin = std::fs::read_to_string(&w.app.layout.wake("development").dropin).unwrap();
    assert!(dropin.contains("Environment=RELCTL_IDLE_STOP_S=600\n"), "{dropin}");
}

#[test]
fn a_sleeping_build_that_got_requests_meanwhile_stays_awake() {
    let w = sleeper();
    let (r1, r2) = (w.release(1), w.release(2));
    asleep_on(&w, &r1);
    // nginx's requests started the wake service (and, through it, main).
    w.sd.set_active(&w.app.layout.wake("development").service_unit, true);
    let (out, steps) = w.with_steps(|d| d.around_sleep(|d| d.go_live(&r2, Some(&r1), Retiring::Drained)));
    out.unwrap();
    assert!(steps.last().unwrap().starts_with("sleep: stays awake: requests came through"), "{steps:?}");
    assert_eq!(w.at_rest(), r2);
}

#[test]
fn a_failed_deploy_of_a_sleeping_build_leaves_the_old_release_and_lets_it_sleep() {
    let w = sleeper();
    let (r1, r2) = (w.release(1), w.release(2));
    asleep_on(&w, &r1);
    w.probe.sick.borrow_mut().insert(r2.clone());
    let (out, steps) = w.with_steps(|d| d.around_sleep(|d| d.go_live(&r2, Some(&r1), Retiring::Drained)));
    assert!(format!("{:#}", out.unwrap_err()).contains("HTTP 500"));
    assert_eq!(w.current(), Some(r1.clone()));
    assert_eq!(w.public(), Slot::Main, "the candidate never took the public socket");
    assert!(!w.up(Slot::Main) && !w.up(Slot::Next), "asleep again: {steps:?}");
}

#[test]
fn a_build_that_no_longer_sleeps_loses_its_wake_units() {
    let w = sleeper();
    let r1 = w.release(1);
    asleep_on(&w, &r1);
    w.with(|d| d.restart().map(|_| ())).unwrap();
    let dropin = w.app.layout.wake("development").dropin;
    assert!(dropin.is_file());
    // The manifest drops idle_stop_s: the next deploy stops the wake units and removes the drop-in.
    let mut w = w;
    w.app.sleepers.clear();
    let (out, steps) = w.with_steps(|d| d.restart().map(|_| ()));
    out.unwrap();
    assert!(!dropin.parent().unwrap().exists());
    assert!(
        steps.last().unwrap().contains("no idle_stop_s any more: stopped medctrl_wake@development.service"),
        "{steps:?}"
    );
    assert!(!w.sd.state("medctrl_wake@development.socket").is_active());
}

#[test]
fn a_build_that_always_runs_never_touches_the_wake_units() {
    let w = World::new();
    let r1 = w.release(1);
    w.live(&r1);
    w.sd.clear_calls();
    w.with(|d| d.restart().map(|_| ())).unwrap();
    assert!(!w.sd.calls().iter().any(|c| c.contains("wake")), "{:?}", w.sd.calls());
    assert_eq!(w.at_rest(), r1);
}
