//! Releases you can trust, end to end in the real systemd sandbox: the health gate rolls back a
//! release that cannot import and one whose health path fails, rollback restores code and
//! settings together, concurrent builds serialize on the app's lock, and relctl killed at any
//! phase of a build leaves the old release serving. Needs root; fails (never skips) without it.

use std::path::Path;
use std::process::{Output, Stdio};

use serde_json::Value;

use crate::common::env::{Env, RELCTL};
use crate::common::scratch::{append, replace, variant};
use crate::common::{show, stderr};

impl Env {
    fn build_with(&self, manifest: &Path, build: &str) -> Output {
        self.relctl_with(manifest, &["build", build])
    }

    fn releases(&self, manifest: &Path, build: &str) -> Value {
        let out = self.relctl_with(manifest, &["--json", "releases", build]);
        assert!(out.status.success(), "{}", show(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    }

    fn release_state(&self, manifest: &Path, build: &str, id: &str) -> String {
        let doc = self.releases(manifest, build);
        let r = doc["releases"].as_array().unwrap().iter().find(|r| r["id"] == id);
        r.map(|r| r["state"].as_str().unwrap().to_string()).unwrap_or_else(|| format!("missing from {doc}"))
    }
}

#[test]
fn health_gate_rolls_back_bad_releases_and_rollback_restores_settings() {
    let env = Env::boot();
    let good = variant("good", |_| {});
    let out = env.build_with(&good, "development");
    assert!(out.status.success(), "{}\n{}", show(&out), env.journal_tail());
    let r1 = env.get("development", "/")["release"].as_str().unwrap().to_string();
    let pid1 = env.main_pid("development");

    // -- a release whose code cannot import is rejected in the candidate; r1 never stops -------
    let broken = variant("broken-import", |app| {
        append(
            &app.join("API/api_settings/wsgi.py"),
            "\nimport relctl_no_such_module  # noqa: only the server imports wsgi.py, so migrate passes\n",
        )
    });
    let out = env.build_with(&broken, "development");
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let err = stderr(&out);
    let last = err.lines().last().unwrap();
    let kept = format!("before it took any traffic and is marked bad; release {r1} kept serving, untouched");
    assert!(last.contains(&kept), "{last}");
    assert!(last.contains("failed in medctrl_next@development.service"), "names the unit: {last}");
    assert!(err.contains("relctl_no_such_module"), "the journal lines show why: {err}");
    let bad_import = last.split("release ").nth(1).unwrap().split(' ').next().unwrap().to_string();
    assert_eq!(env.get("development", "/")["release"], r1.as_str(), "the old release is serving");
    assert_eq!(env.main_pid("development"), pid1, "the live instance was never touched");
    assert!(env.sb.is_active("medctrl@development.service"));
    assert!(!env.sb.is_active("medctrl_next@development.service"), "the failed candidate is stopped");
    assert_eq!(env.sh("readlink /opt/medctrl/backend/development/current"), format!("releases/{r1}"));
    assert_eq!(env.release_state(&good, "development", &bad_import), "bad");

    // -- a release whose health path answers 500 is rejected too -----------------------------
    let sick = variant("health-500", |app| {
        replace(
            &app.join("API/api_settings/views.py"),
            "return HttpResponse(\"ok\", content_type=\"text/plain\")",
            "return HttpResponse(\"database unreachable\", status=500)",
        );
        replace(&app.join("relctl.toml"), "timeout_s = 30", "timeout_s = 4");
    });
    let out = env.build_with(&sick, "development");
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let last = stderr(&out).lines().last().unwrap().to_string();
    assert!(
        last.contains("health check GET /api/health (SCRIPT_NAME: /api)")
            && last.contains("HTTP 500: database unreachable"),
        "{last}"
    );
    assert!(last.contains(&format!("release {r1} kept serving, untouched")), "{last}");
    assert_eq!(env.get("development", "/")["release"], r1.as_str());
    assert_eq!(env.main_pid("development"), pid1);

    // -- a good release with different settings, then rollback ------------------------------
    let marked = variant("marked", |app| append(&app.join("deploy/settings.py.tera"), "\nRELCTL_MARK = \"three\"\n"));
    let out = env.build_with(&marked, "development");
    assert!(out.status.success(), "{}", show(&out));
    let r3 = env.get("development", "/")["release"].as_str().unwrap().to_string();
    assert_ne!(r3, r1);
    let settings = "/opt/medctrl/backend/development/current/API/api_settings/settings/deploy_development.py";
    assert!(env.sh(&format!("cat {settings}")).contains("RELCTL_MARK = \"three\""));
    let doc = env.releases(&good, "development");
    let states: Vec<(String, String)> = doc["releases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["id"].as_str().unwrap().into(), r["state"].as_str().unwrap().into()))
        .collect();
    assert_eq!(states.iter().filter(|(_, s)| s == "bad").count(), 2, "{states:?}");
    assert!(
        states.contains(&(r1.clone(), "previous".into())) && states.contains(&(r3.clone(), "current".into())),
        "{states:?}"
    );
    let table = String::from_utf8_lossy(&env.relctl_with(&good, &["releases", "development"]).stdout).into_owned();
    assert!(table.starts_with("RELEASE") && table.contains("previous") && table.contains("bad"), "{table}");

    let out = env.relctl_with(&good, &["rollback", "development"]);
    assert!(out.status.success(), "{}", show(&out));
    let back = env.get("development", "/");
    assert_eq!(
        back["release"],
        r1.as_str(),
        "code and settings are r1's again (the release id comes from the settings file)"
    );
    assert!(!env.sh(&format!("cat {settings}")).contains("RELCTL_MARK"), "settings rolled back");
    assert_eq!(env.release_state(&good, "development", &r3), "bad");
    assert_eq!(env.release_state(&good, "development", &r1), "current");

    // -- nothing left to roll back to ----------------------------------------------------------
    let out = env.relctl_with(&good, &["rollback", "development"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(stderr(&out).contains(&format!("has no good release older than {r1}")), "{}", stderr(&out));
    // --to an explicit release (even one marked bad) works
    let out = env.relctl_with(&good, &["rollback", "development", "--to", &r3]);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(env.get("development", "/")["release"], r3.as_str());
    // An unknown --to is a usage error (exit 2), found before the lock, naming the releases.
    let out = env.relctl_with(&good, &["rollback", "development", "--to", "20000101T000000Z"]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let err = stderr(&out);
    assert!(err.contains("has no release 20000101T000000Z; its releases: ") && err.contains(&r1), "{err}");
    assert_eq!(env.get("development", "/")["release"], r3.as_str());
}

#[test]
fn builds_serialize_and_a_killed_build_leaves_the_old_release_serving() {
    let env = Env::boot();
    let manifest = variant("locking", |_| {});
    let m = manifest.to_str().unwrap();
    let out = env.build_with(&manifest, "testing");
    assert!(out.status.success(), "{}", show(&out));

    // -- two builds at once: the second waits for the first, naming it ----------------------
    let spawn = || {
        env.sb
            .command(RELCTL)
            .args(["-f", m, "build", "testing"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let first = spawn();
    std::thread::sleep(std::time::Duration::from_millis(700));
    let nowait = env.relctl_with(&manifest, &["--no-wait", "restart", "testing"]);
    let second = spawn();
    let (first, second) = (first.wait_with_output().unwrap(), second.wait_with_output().unwrap());
    assert!(first.status.success() && second.status.success(), "{}\n{}", show(&first), show(&second));
    let waited = stderr(&second);
    assert!(
        waited.contains("relctl: waiting for the lock on medctrl, held by pid") && waited.contains("build testing`"),
        "{waited}"
    );
    assert_eq!(nowait.status.code(), Some(1), "{}", show(&nowait));
    assert!(stderr(&nowait).starts_with("relctl: medctrl is locked by another relctl (pid "), "{}", stderr(&nowait));
    let doc = env.releases(&manifest, "testing");
    let releases = doc["releases"].as_array().unwrap();
    assert_eq!(releases.len(), 3, "{doc}");
    assert!(releases.iter().all(|r| r["state"] != "incomplete" && r["state"] != "bad"), "{doc}");

    // -- kill -9 at every phase of a build: the live release keeps answering ------------------
    // (next serving, so that main, which systemctl starts, is the candidate)
    if env.serving_unit("testing") != "medctrl_next@testing.service" {
        let out = env.relctl_with(&manifest, &["restart", "testing"]);
        assert!(out.status.success(), "{}", show(&out));
    }
    let live = env.get("testing", "/")["release"].as_str().unwrap().to_string();
    let live_pid = env.main_pid("testing");
    // killed by someone else while a hook runs
    let hooked = variant("killed-in-hook", |app| {
        replace(&app.join("relctl.toml"), "build = [", "build = [\"kill -9 $PPID; sleep 1\", ")
    });
    let out = env.build_with(&hooked, "testing");
    assert_eq!(std::os::unix::process::ExitStatusExt::signal(&out.status), Some(9), "{}", show(&out));
    assert_eq!(env.get("testing", "/")["release"], live.as_str());
    // and at relctl's own failpoints up to the candidate's verification: the old release serves
    let kill_at = |phase: &str| {
        let out = env
            .sb
            .command("env")
            .args([&format!("RELCTL_FAILPOINT={phase}"), RELCTL, "-f", m, "build", "testing"])
            .output()
            .unwrap();
        assert_eq!(std::os::unix::process::ExitStatusExt::signal(&out.status), Some(9), "{phase}: {}", show(&out));
    };
    for phase in ["stage", "render", "units", "candidate"] {
        kill_at(phase);
        assert_eq!(
            env.get("testing", "/")["release"],
            live.as_str(),
            "killed at {phase}: the old release must keep serving"
        );
        assert_eq!(env.main_pid("testing"), live_pid, "killed at {phase}");
        // `current` (what nginx serves static files from) moves only with the hand-over
        let current = env.sh("readlink /opt/medctrl/backend/testing/current");
        assert_eq!(current, format!("releases/{live}"), "killed at {phase}");
    }
    // after the hand-over (killed right after it, then right after `current` switched): the
    // verified candidate serves; the instance that served is kept ready, not restarted
    let live_unit = env.serving_unit("testing");
    for phase in ["handover", "switch"] {
        kill_at(phase);
        assert_ne!(env.serving_unit("testing"), live_unit, "{phase}: the public socket points at the candidate");
        assert_ne!(env.get("testing", "/")["release"], live.as_str(), "{phase}: the candidate serves the new release");
        let kept = env.sh(&format!("systemctl show -P MainPID {live_unit}"));
        assert_eq!(kept, live_pid.to_string(), "{phase}: {live_unit} is kept ready, not restarted");
    }
    assert_ne!(env.sh("readlink /opt/medctrl/backend/testing/current"), format!("releases/{live}"));

    // -- the next build recovers and succeeds ---------------------------------------------------
    let out = env.build_with(&manifest, "testing");
    assert!(out.status.success(), "{}", show(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("recovered from an interrupted relctl (pid"), "{text}");
    assert!(
        text.contains("switched back from") && text.contains(&format!("public socket back on {live_unit}")),
        "{text}"
    );
    let now = env.get("testing", "/")["release"].as_str().unwrap().to_string();
    assert_ne!(now, live);
    let doc = env.releases(&manifest, "testing");
    assert!(doc["releases"].as_array().unwrap().iter().all(|r| r["state"] != "incomplete"), "{doc}");
    // What is left: the instance that serves, its socket and link; main's socket file and link
    // stay (main's units are the enabled ones, started at boot); the build's secret key; the link to
    // the release that served before (its static files are bridged).
    let expected = if env.serving_unit("testing").starts_with("medctrl_next@") {
        ".relctl-live.sock .relctl-main .relctl-next.sock .relctl-previous .relctl-secret-key current gunicorn.sock next releases"
    } else {
        ".relctl-live.sock .relctl-main .relctl-previous .relctl-secret-key current gunicorn.sock releases"
    };
    assert_eq!(env.sh("ls -A /opt/medctrl/backend/testing | sort | tr '\\n' ' '"), expected);

    // -- a candidate that dies during its probation: straight back to the instance kept ready ---
    // (with main serving and next the candidate: systemd's automatic restart of a crashed main
    // would restart next too, which is PartOf= main)
    if env.serving_unit("testing") != "medctrl@testing.service" {
        let out = env.relctl_with(&manifest, &["restart", "testing"]);
        assert!(out.status.success(), "{}", show(&out));
    }
    let (kept_unit, kept_pid) = (env.serving_unit("testing"), env.main_pid("testing"));
    let was = env.get("testing", "/")["release"].as_str().unwrap().to_string();
    let patient = variant("probation", |app| {
        replace(&app.join("relctl.toml"), "timeout_s = 30", "timeout_s = 30\nprobation_s = 8")
    });
    let build = env
        .sb
        .command(RELCTL)
        .args(["-f", patient.to_str().unwrap(), "build", "testing"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    while env.serving_unit("testing") == kept_unit {
        assert!(std::time::Instant::now() < deadline, "the candidate never took the public socket");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let candidate = env.serving_unit("testing");
    env.sh(&format!("kill -9 $(systemctl show -P MainPID {candidate})"));
    let out = build.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let last = stderr(&out).lines().last().unwrap_or_default().to_string();
    assert!(last.contains("did not stay up for the 8s probation"), "{last}");
    assert!(last.contains(&format!("switched back to {was}, which {kept_unit} kept serving")), "{last}");
    assert_eq!(env.serving_unit("testing"), kept_unit);
    assert_eq!(env.main_pid("testing"), kept_pid, "the instance kept ready serves, not restarted");
    assert_eq!(env.get("testing", "/")["release"], was.as_str());
    assert_eq!(env.sh("readlink /opt/medctrl/backend/testing/current"), format!("releases/{was}"));
    assert!(!env.sb.is_active(&candidate), "the candidate is stopped");
    let doc = env.releases(&manifest, "testing");
    let newest = doc["releases"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(newest["state"], "bad", "{doc}");
}
