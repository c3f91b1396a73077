//! Power loss at any point. The sandbox's systemd is SIGKILLed, which kills every process in it at
//! once (the pid namespace goes with its PID 1): a power cut. A new systemd then boots over the
//! same disk (`Sandbox::boot_disk`, which keeps the overlay's upper layer in a scratch dir) into
//! multi-user.target, as a machine boots: the app's units and nginx start because they are enabled,
//! no relctl command runs. After each cut, every build answers through real nginx on the release it
//! last verified, from the instance its public socket names, with `current` on that release and no
//! process of any other release running; its timer is active again; and the next relctl command
//! finishes what was interrupted and exits 0, leaving no switch journal.
//!
//! The cuts: at rest with main serving and with next serving; during a `relctl build` at the end of
//! each phase of its switch that leaves something else on disk; during a `relctl promote` and a `relctl rollback`. relctl is held where the power
//! goes by `RELCTL_PAUSEPOINT=leaving:<phase>`: it stops itself (SIGSTOP) once the step of that
//! phase is done, right before the journal records the next phase (or is removed), the state a cut
//! at the end of the step leaves on disk. The test cuts the power as soon as relctl is stopped
//! there, which makes every case deterministic: no timing, no race with the deploy.
//!
//! Each reboot prints the seconds from the new systemd's start to each build's first 200 through
//! nginx (asked every 20 ms from the host, whose network the sandbox shares); nothing is asserted
//! about them.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::env::{binds, Env, RELCTL};
use crate::common::sandbox::Sandbox;
use crate::common::scratch::{replace, scratch_dir, variant};
use crate::common::show;

const ROOT: &str = "/opt/medctrl/backend";
/// The nginx snippet, on the sandbox's disk like the rest of /etc.
const SNIPPET: &str = "/etc/nginx/snippets/medctrl.conf";
const BUILDS: [(&str, &str); 2] = [("development", "/api/"), ("testing", "/testapi/")];

/// What a build should serve after a cut: its release, and the route nginx serves it at.
struct Expect<'a> {
    build: &'a str,
    route: &'a str,
    release: String,
}

/// `GET path` through nginx on `port`, from the host: the status and the body, or None when
/// nothing answered (nginx not up yet).
fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut answer = String::new();
    s.read_to_string(&mut answer).ok()?;
    let status = answer.split(' ').nth(1)?.parse().ok()?;
    Some((status, answer.split_once("\r\n\r\n").map(|(_, body)| body.to_string()).unwrap_or_default()))
}

/// What one route answered while the host booted.
#[derive(Default)]
struct Seen {
    first_200: Option<Instant>,
    /// The release of every 200.
    releases: BTreeSet<String>,
    /// Other answers, by status (502 while the app starts).
    other: BTreeSet<u16>,
}

/// Asks each route through nginx every 20 ms, from before the boot until each answered 200 a few
/// times (or a minute passed).
struct Watch(JoinHandle<Vec<Seen>>);

impl Watch {
    fn start(port: u16, routes: Vec<String>) -> Watch {
        Watch(std::thread::spawn(move || {
            let mut seen: Vec<Seen> = routes.iter().map(|_| Seen::default()).collect();
            let mut oks = vec![0; routes.len()];
            let deadline = Instant::now() + Duration::from_secs(60);
            while Instant::now() < deadline && oks.iter().any(|n| *n < 5) {
                for (i, route) in routes.iter().enumerate() {
                    match get(port, route) {
                        Some((200, body)) => {
                            seen[i].first_200.get_or_insert_with(Instant::now);
                            oks[i] += 1;
                            let release = serde_json::from_str::<Value>(&body)
                                .ok()
                                .and_then(|v| v["release"].as_str().map(str::to_string))
                                .unwrap_or_else(|| format!("(not the app's JSON: {body:?})"));
                            seen[i].releases.insert(release);
                        }
                        Some((status, _)) => {
                            seen[i].other.insert(status);
                        }
                        None => {}
                    }
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            seen
        }))
    }

    fn finish(self) -> Vec<Seen> {
        self.0.join().unwrap()
    }
}

/// The test's disk: removed when the test passed (it holds a virtualenv), kept for a look when it
/// failed.
struct Disk(PathBuf);

impl Drop for Disk {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("power: the sandbox's disk is kept for a look: {}", self.0.display());
        } else {
            std::fs::remove_dir_all(&self.0).unwrap();
        }
    }
}

struct Power {
    env: Env,
    disk: Disk,
    manifest: PathBuf,
    port: u16,
    /// (case, build, seconds from systemd's start to the first 200 through nginx)
    figures: Vec<(String, String, f64)>,
}

impl Power {
    fn relctl(&self, args: &[&str]) -> std::process::Output {
        self.env.relctl_with(&self.manifest, args)
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.relctl(args);
        assert!(out.status.success(), "relctl {args:?}: {}\n{}", show(&out), self.env.journal_tail());
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn sh(&self, script: &str) -> String {
        self.env.sh(script)
    }

    fn current(&self, build: &str) -> String {
        self.sh(&format!("readlink {ROOT}/{build}/current")).trim_start_matches("releases/").to_string()
    }

    fn journal(&self, build: &str) -> Option<Value> {
        let out = self.env.sb.sh(&format!("cat {ROOT}/{build}/.relctl-switch"));
        out.status.success().then(|| serde_json::from_slice(&out.stdout).unwrap())
    }

    /// Starts `relctl -f manifest args` held at `point` (`RELCTL_PAUSEPOINT`) and waits until it
    /// stopped there; returns it (it ends with the power) and the journal of `build`'s switch.
    fn hold(&self, manifest: &Path, point: &str, args: &[&str], build: &str) -> (Child, Value) {
        // Through a shell that waits for relctl: nsenter stops itself when its own child stops
        // (job control), and a stopped nsenter could not reap relctl once the power is cut, which
        // would keep the sandbox's PID 1 from ever finishing its exit.
        let mut child = self
            .env
            .sb
            .command("sh")
            .args(["-c", "\"$@\"; exit $?", "sh", "env"])
            .arg(format!("RELCTL_PAUSEPOINT={point}"))
            .arg(RELCTL)
            .arg("-f")
            .arg(manifest)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                let out = child.wait_with_output().unwrap();
                panic!("relctl {args:?} ended ({status}) before it reached {point}: {}", show(&out));
            }
            let stopped = self.sh("for p in $(pgrep -x relctl); do awk '{print $3}' /proc/$p/stat; done");
            if stopped == "T" {
                break;
            }
            assert!(Instant::now() < deadline, "relctl {args:?} did not reach {point} within 120 s");
            std::thread::sleep(Duration::from_millis(50));
        }
        let journal = self.journal(build).unwrap_or_else(|| panic!("{point}: no switch journal"));
        let phase = point.trim_start_matches("leaving:");
        assert_eq!(journal["phase"], phase, "held at {point}: {journal}");
        (child, journal)
    }

    /// Cuts the power: systemd and everything in the sandbox killed at once. `held` (a relctl held
    /// at a pause point) dies with it.
    fn cut(&mut self, held: Option<Child>) {
        self.env.sb.kill();
        if let Some(child) = held {
            let _ = child.wait_with_output().unwrap();
        }
    }

    /// Boots a new systemd over the disk into multi-user.target, with nothing but what is enabled
    /// starting; then checks what each build serves and prints when it first answered.
    fn boot(&mut self, case: &str, expect: &[Expect]) {
        let watch = Watch::start(self.port, expect.iter().map(|e| e.route.to_string()).collect());
        self.env.sb = Sandbox::boot_disk(&binds(), &self.disk.0, Some("multi-user.target"), &["nginx.service"]);
        let started = Instant::now() - self.env.sb.since_start();
        let seen = watch.finish();
        for (e, seen) in expect.iter().zip(&seen) {
            let first = seen.first_200.unwrap_or_else(|| {
                panic!(
                    "{case}: {} ({}) never answered 200 through nginx after the boot (answers: {:?})\n{}",
                    e.build,
                    e.route,
                    seen.other,
                    self.env.sb.journal_all(80)
                )
            });
            let secs = first.duration_since(started).as_secs_f64();
            eprintln!(
                "power: {case}: {} answered 200 through nginx {secs:.2} s after systemd started (before: {:?})",
                e.build, seen.other
            );
            self.figures.push((case.to_string(), e.build.to_string(), secs));
            assert_eq!(
                seen.releases,
                BTreeSet::from([e.release.clone()]),
                "{case}: {} answered with these releases from the boot on, not only {}",
                e.build,
                e.release
            );
        }
        // They came up because they are enabled: the app's target is wanted by multi-user.target.
        assert!(self.env.sb.is_active("medctrl.target"), "{case}: medctrl.target is not active after the boot");
        for e in expect {
            self.serves(case, e);
        }
    }

    /// `e.build` serves `e.release` and nothing else runs: through nginx; from the instance its
    /// public socket names, which is active while the other is not; with `current` and the running
    /// processes' working directories on that release; its timer active.
    fn serves(&self, case: &str, e: &Expect) {
        let (build, release) = (e.build, &e.release);
        let body = self.sh(&format!("curl -sS --fail --max-time 10 http://127.0.0.1:{}{}", self.port, e.route));
        let answer: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(answer["release"], release.as_str(), "{case}: {build} through nginx");
        let unit = self.env.serving_unit(build);
        assert!(self.env.sb.is_active(&unit), "{case}: {build}'s public socket names {unit}, which is not active");
        let other = if unit.starts_with("medctrl_next@") {
            format!("medctrl@{build}.service")
        } else {
            format!("medctrl_next@{build}.service")
        };
        assert!(!self.env.sb.is_active(&other), "{case}: {other} runs beside {unit}");
        assert_eq!(self.current(build), *release, "{case}: {build}'s current");
        // Every process working in one of the build's releases (gunicorn's master and workers)
        // works in that one.
        let cwds = self.sh(&format!(
            "for p in $(ls /proc | grep -E '^[0-9]+$'); do readlink /proc/$p/cwd; done 2>/dev/null | grep '^{ROOT}/{build}/releases/' | cut -d/ -f7 | sort -u"
        ));
        assert_eq!(cwds, *release, "{case}: the releases {build}'s processes run");
        let timer = format!("medctrl_{build}_clearsessions.timer");
        assert!(self.env.sb.is_active(&timer), "{case}: {timer} is not active again");
    }

    /// The next relctl command after a cut: it exits 0 and leaves no switch journal, and `build`
    /// is at rest (see `serves`). Returns its stdout and the release `build` serves.
    fn next_command(&self, case: &str, args: &[&str], build: &str) -> (String, String) {
        let out = self.relctl(args);
        assert!(
            out.status.success(),
            "{case}: relctl {args:?} after the cut: {}\n{}",
            show(&out),
            self.env.journal_tail()
        );
        for (b, _) in BUILDS {
            assert_eq!(self.journal(b), None, "{case}: relctl {args:?} left {b}'s switch journal");
        }
        let route = BUILDS.iter().find(|(b, _)| *b == build).unwrap().1;
        let release = self.current(build);
        self.serves(case, &Expect { build, route, release: release.clone() });
        (String::from_utf8_lossy(&out.stdout).into_owned(), release)
    }

    fn state(&self, build: &str, release: &str) -> String {
        let out = self.relctl(&["--json", "releases", build]);
        assert!(out.status.success(), "{}", show(&out));
        let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
        let r = doc["releases"].as_array().unwrap().iter().find(|r| r["id"] == release);
        r.map_or("gone".to_string(), |r| r["state"].as_str().unwrap().to_string())
    }
}

#[test]
fn power_loss_at_any_point_boots_every_build_on_its_last_verified_release() {
    let dir = scratch_dir("power");
    let disk = Disk(dir.join("disk"));
    std::fs::create_dir(&disk.0).unwrap();
    // The example, with a probation of 1 s (the default 2 s is the same, slower).
    let manifest = variant("power", |app| {
        replace(&app.join("relctl.toml"), "timeout_s = 30", "timeout_s = 30\nprobation_s = 1");
    });
    let env = Env { sb: Sandbox::boot_disk(&binds(), &disk.0, None, &[]) };
    let mut p = Power { env, disk, manifest, port: 0, figures: Vec::new() };

    // Installed: development once (main serves), testing twice (next serves), nginx in front.
    p.ok(&["build", "development"]);
    p.ok(&["build", "testing"]);
    p.ok(&["build", "testing"]);
    p.port = p.env.nginx_in_front(&p.manifest, SNIPPET);
    assert_eq!(p.env.serving_unit("development"), "medctrl@development.service");
    assert_eq!(p.env.serving_unit("testing"), "medctrl_next@testing.service");
    let rest = |p: &Power| -> Vec<Expect<'static>> {
        BUILDS.iter().map(|(build, route)| Expect { build, route, release: p.current(build) }).collect()
    };

    // -- (a), (b): at rest, development on main, testing on next ---------------------------------
    let expect = rest(&p);
    p.cut(None);
    let case = "at rest (development on main, testing on next)";
    p.boot(case, &expect);
    let (_, now) = p.next_command(case, &["status"], "development");
    assert_eq!(now, expect[0].release, "{case}");

    // -- (c): a build held at the end of each phase of its switch ---------------------------------
    // After a boot main serves, so the first build's candidate is next; each next command after a
    // cut (a restart) hands the build to next, so the candidate of every later one is main.
    // The phases that leave a different build on disk: the candidate up beside the old serving
    // instance (candidate-up; prepared and gated leave the same), the public socket and `current`
    // moved (handed-over; processes adds no file), the probation, and the switch done (retired,
    // then recovered once by a build and once by a restart). Every phase, at either end, is cut
    // against the fakes in `deploy::tests`; these are the cuts a real boot must prove.
    let mut cases = vec![("retired", "build")];
    for phase in ["candidate-up", "handed-over", "probation", "retired"] {
        cases.push((phase, "restart"));
    }
    for (phase, next) in cases {
        let candidate = if p.env.serving_unit("development").starts_with("medctrl@") { "next" } else { "main" };
        let case = format!("build cut at the end of {phase} (candidate {candidate})");
        let (held, journal) =
            p.hold(&p.manifest, &format!("leaving:{phase}"), &["build", "development"], "development");
        assert_eq!(journal["candidate"], candidate, "{case}: {journal}");
        let (from, to) = (journal["from"].as_str().unwrap().to_string(), journal["to"].as_str().unwrap().to_string());
        // Until the candidate passed its probation the build comes back on the release it came
        // from; from `retired` on, on the new one.
        let back = if phase == "retired" { to.clone() } else { from.clone() };
        let mut expect = rest(&p);
        expect[0].release = back.clone();
        p.cut(Some(held));
        p.boot(&case, &expect);
        // status says what serves and that a switch was interrupted, and changes nothing.
        let out = p.relctl(&["--json", "status", "development"]);
        assert!(out.status.success(), "{case}: status: {}", show(&out));
        let status: Value = serde_json::from_slice(&out.stdout).unwrap();
        let row = &status["builds"][0];
        assert_eq!(
            (&row["release"], &row["unit"]),
            (&Value::from(back.as_str()), &Value::from("medctrl@development.service")),
            "{case}: {status}"
        );
        assert_eq!(
            (&row["switch"]["phase"], &row["switch"]["in_progress"]),
            (&Value::from(phase), &Value::from(false)),
            "{case}: {status}"
        );
        let (done, now) = p.next_command(&case, &[next, "development"], "development");
        assert!(done.contains("recovered from an interrupted relctl"), "{case}: {done}");
        if next == "restart" {
            assert_eq!(now, back, "{case}: a restart keeps the release");
        } else {
            assert!(now != from && now != to, "{case}: the build made a release of its own");
        }
        if phase == "retired" {
            assert_ne!(p.state("development", &to), "bad", "{case}: the switch was completed");
        } else {
            assert_eq!(p.state("development", &to), "bad", "{case}: the interrupted release is marked bad");
        }
    }

    // A release that fails its gate: the switch goes back, and the power goes once it is back
    // (the end of `switching-back`, the phase a switch records only when something failed).
    let broken = variant("power-broken", |app| {
        replace(
            &app.join("API/api_settings/views.py"),
            "def health(request):\n",
            "def health(request):\n    return HttpResponse(\"broken\", status=500)\n",
        );
    });
    let candidate = if p.env.serving_unit("development").starts_with("medctrl@") { "next" } else { "main" };
    let case = format!("build of a release failing its gate, cut at the end of switching-back (candidate {candidate})");
    let (held, journal) = p.hold(&broken, "leaving:switching-back", &["build", "development"], "development");
    let (from, to) = (journal["from"].as_str().unwrap().to_string(), journal["to"].as_str().unwrap().to_string());
    let expect = rest(&p);
    assert_eq!(expect[0].release, from, "{case}: back on the release it came from before the cut");
    p.cut(Some(held));
    p.boot(&case, &expect);
    let (_, now) = p.next_command(&case, &["restart", "development"], "development");
    assert_eq!(now, from, "{case}");
    assert_eq!(p.state("development", &to), "bad", "{case}");

    // -- (d): a promote and a rollback held where they moved the most ------------------------------
    // testing: main serves since the first boot (the candidate is next).
    let case = "promote development -> testing cut at the end of probation (candidate next)";
    let (held, journal) = p.hold(&p.manifest, "leaving:probation", &["promote", "development", "testing"], "testing");
    assert_eq!(journal["candidate"], "next", "{case}: {journal}");
    let (from, to) = (journal["from"].as_str().unwrap().to_string(), journal["to"].as_str().unwrap().to_string());
    let mut expect = rest(&p);
    expect[1].release = from.clone();
    p.cut(Some(held));
    p.boot(case, &expect);
    let (_, now) = p.next_command(case, &["restart", "testing"], "testing");
    assert_eq!(now, from, "{case}");
    assert_eq!(p.state("testing", &to), "bad", "{case}: the promoted release is marked bad");

    // testing: next serves after that restart (the candidate is main).
    let case = "rollback of testing cut at the end of handed-over (candidate main)";
    let (held, journal) = p.hold(&p.manifest, "leaving:handed-over", &["rollback", "testing"], "testing");
    assert_eq!(journal["candidate"], "main", "{case}: {journal}");
    let (from, to) = (journal["from"].as_str().unwrap().to_string(), journal["to"].as_str().unwrap().to_string());
    let mut expect = rest(&p);
    expect[1].release = from.clone();
    p.cut(Some(held));
    p.boot(case, &expect);
    // The next command is the rollback again, to the release named (the recovery marked it bad:
    // a plain rollback would look for an older good one).
    let (done, now) = p.next_command(case, &["rollback", "testing", "--to", &to], "testing");
    assert!(done.contains("recovered from an interrupted relctl"), "{case}: {done}");
    assert_eq!(now, to, "{case}");
    assert_eq!(p.state("testing", &from), "bad", "{case}: rolled back from");

    p.env.sb.kill();
    eprintln!("power: seconds from systemd's start to the first 200 through nginx:");
    for (case, build, secs) in &p.figures {
        eprintln!("power:   {secs:5.2}  {build:<12} {case}");
    }
    // Nothing of the sandbox reached the host: its files are on the disk, below the scratch dir.
    for path in [ROOT, "/etc/systemd/system/medctrl@.service", "/etc/nginx/sites-enabled/relctl-test", SNIPPET] {
        assert!(!Path::new(path).exists(), "{path} exists on the host");
    }
    assert!(p.disk.0.join("upper").join(ROOT.trim_start_matches('/')).is_dir());
    assert!(p.disk.0.starts_with(env!("CARGO_TARGET_TMPDIR")));
    // And the disk goes with the test.
    let disk = p.disk.0.clone();
    drop(p);
    assert!(!disk.exists(), "{} is left", disk.display());
}
