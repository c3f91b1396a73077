//! End to end, against a real systemd (PID 1 of its own namespaces, over an overlay of /), real
//! gunicorn services and the example Django app. Needs root; fails (never skips) without it.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::common::env::{assert_unchanged, Env};
use crate::common::scratch::{replace, variant};
use crate::common::{show, stderr, stdout};

/// What the staged copy of the sources must not contain: a checkout's `.git`, and what the
/// example's `exclude` names (`__pycache__/`, `*.pyc`, `db.sqlite3`).
const JUNK: [&str; 3] = [".git", "x.pyc", "API/db.sqlite3"];
/// What it must contain (a sample).
const SOURCES: [&str; 5] = [
    "API/manage.py",
    "API/api_settings/wsgi.py",
    "API/api_settings/views.py",
    "deploy/settings.py.tera",
    "requirements.txt",
];

/// `git args...` in `dir` on the host; returns stdout, trimmed.
fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=relctl tests", "-c", "user.email=tests@relctl.invalid", "-c", "commit.gpgsign=false"])
        .args(args)
        .output()
        .expect("git runs (apt-get install git; .ci/run installs it)");
    assert!(out.status.success(), "git {args:?} in {}: {}", dir.display(), show(&out));
    stdout(&out)
}

/// The paths (relative to `dir`, inside the sandbox) of `paths` that exist there, one a line.
fn existing(env: &Env, dir: &str, paths: &[&str]) -> String {
    env.sh(&format!("cd {dir} && for p in {}; do [ -e \"$p\" ] && echo \"$p\"; done; true", paths.join(" ")))
}

/// The BUILD_NAME workflow of the MedCtrl guide, done by relctl: two builds side by side, each
/// socket answering with its own build, units, files and status as a user would check them, the
/// sources staged without a checkout's junk, and a second release of one build.
#[test]
fn two_builds_side_by_side_then_a_second_release() {
    let env = Env::boot();

    // -- build development from the example, testing from a git checkout with junk in it ------
    let out = env.ok(&["build", "development"]);
    assert!(out.contains("medctrl development is live at release"), "{out}");
    for step in ["setup", "stage", "render", "deps", "hook:release", "units", "switch", "start", "verify"] {
        assert!(out.lines().any(|l| l.trim_start().starts_with(step)), "no step {step} in:\n{out}");
    }
    let checkout = variant("checkout", |app| {
        std::fs::create_dir(app.join("API/__pycache__")).unwrap();
        std::fs::write(app.join("API/__pycache__/manage.cpython-311.pyc"), "stale bytecode").unwrap();
        std::fs::write(app.join("x.pyc"), "stray bytecode").unwrap();
        std::fs::write(app.join("API/db.sqlite3"), "a developer's database").unwrap();
        git(app, &["init", "-q"]);
        git(app, &["add", "-A"]);
        git(app, &["commit", "-qm", "everything, junk included"]);
    });
    let app = checkout.parent().unwrap();
    assert!(JUNK.iter().all(|p| app.join(p).exists()), "the checkout has all its junk");
    let revision = git(app, &["rev-parse", "--short", "HEAD"]);
    let json_out = env.relctl_with(&checkout, &["--json", "build", "testing"]);
    assert!(json_out.status.success(), "{}", show(&json_out));
    let doc: Value = serde_json::from_slice(&json_out.stdout).expect("build --json prints one JSON document");
    assert_eq!(doc["result"]["build"], "testing");
    assert_eq!(doc["result"]["unit"]["active_state"], "active");
    let testing_release = doc["result"]["release"].as_str().unwrap().to_string();
    assert!(
        testing_release.ends_with(&format!("-{revision}")),
        "the release id names the checkout's {revision}: {testing_release}"
    );

    // -- the release has the sources, not the checkout's .git nor the excluded files ----------
    let release_dir = format!("/opt/medctrl/backend/testing/releases/{testing_release}");
    assert_eq!(existing(&env, &release_dir, &SOURCES), SOURCES.join("\n"), "the sources are staged");
    assert_eq!(existing(&env, &release_dir, &JUNK), "", "staged although .git or excluded");
    // The checkout's stale bytecode is not staged: what is there is relctl's, compiled from the
    // sources before the seal.
    let pyc = format!("{release_dir}/API/__pycache__/manage.cpython-311.pyc");
    assert_eq!(env.sh(&format!("test -f {pyc} && ! grep -q 'stale bytecode' {pyc} && echo compiled")), "compiled");

    // -- each socket answers with its own build -----------------------------------------------
    let dev = env.get("development", "/");
    assert_eq!(dev["build"], "development");
    let dev_release = dev["release"].as_str().unwrap().to_string();
    assert_eq!(env.sh("readlink /opt/medctrl/backend/development/current"), format!("releases/{dev_release}"));
    let testing = env.get("testing", "/x?q=1");
    assert_eq!(testing["build"], "testing");
    assert_eq!(testing["release"], testing_release.as_str());
    assert_eq!(testing["path"], "/x");
    assert!(dev_release.len() >= 16 && dev_release.starts_with("20"), "release id {dev_release}");

    // -- units and files as a user would check them -------------------------------------------
    for unit in [
        "medctrl@development.service",
        "medctrl@development.socket",
        "medctrl@testing.service",
        "medctrl@testing.socket",
    ] {
        assert!(env.sb.is_active(unit), "{unit} not active\n{}", env.journal_tail());
    }
    assert_eq!(env.sh("stat -L -c '%a %G %F' /opt/medctrl/backend/development/gunicorn.sock"), "660 www-data socket");
    let settings = format!(
        "/opt/medctrl/backend/development/releases/{dev_release}/API/api_settings/settings/deploy_development.py"
    );
    assert_eq!(env.sh(&format!("stat -c '%a %U %G' {settings}")), "640 root medctrl");
    assert!(env.sh(&format!("cat {settings}")).contains("RELCTL_BUILD = \"development\""));
    assert_eq!(env.sh("systemctl show -P ProtectSystem medctrl@development.service"), "strict");
    // Hardened: systemd's own exposure score is at most 1.1 (lower is safer; 1.1 with outbound IP
    // open, the default a real app keeps), and it still serves.
    let analyze =
        env.sh("systemd-analyze security --no-pager medctrl@development.service | grep 'Overall exposure level'");
    let score: f64 =
        analyze.split("medctrl@development.service: ").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap();
    assert!(score <= 1.1, "{analyze}");
    assert!(env.sh("stat -c %U:%a /var/cache/medctrl/backend/development").starts_with("medctrl:"), "a writable HOME");
    assert_eq!(env.sh("systemctl show -P User medctrl@development.service"), "medctrl");
    assert_eq!(env.sh(&format!("ps -o user= -p {}", env.main_pid("development"))), "medctrl");
    assert_eq!(
        env.sh("systemctl is-enabled medctrl@development.service medctrl@testing.socket medctrl.target | sort -u"),
        "enabled"
    );
    assert!(
        env.sh("test -f /var/lib/medctrl/backend/development/db.sqlite3 && echo yes") == "yes",
        "migrate hook made the database in the state dir"
    );

    // -- status ------------------------------------------------------------------------------
    let st = env.relctl(&["--json", "status"]);
    assert_eq!(st.status.code(), Some(0), "{}", show(&st));
    let st: Value = serde_json::from_slice(&st.stdout).unwrap();
    let builds = st["builds"].as_array().unwrap();
    assert_eq!(builds.len(), 2);
    for b in builds {
        assert_eq!(b["state"], "active");
        assert!(b["main_pid"].as_u64().unwrap() > 1);
    }
    assert_eq!(builds[0]["build"], "development");
    assert_eq!(builds[0]["release"], dev_release.as_str());
    assert_eq!(builds[0]["route"], "/api");
    let table = env.ok(&["status"]);
    assert!(table.lines().next().unwrap().starts_with("BUILD"), "{table}");
    assert!(table.contains(&dev_release) && table.contains("/testapi"), "{table}");

    // -- a second build of development is a new release, and it serves -----------------------
    let out = env.ok(&["build", "development"]);
    assert!(out.contains("units") && out.contains("unchanged"), "unit files did not change: {out}");
    let dev2 = env.get("development", "/");
    let dev2_release = dev2["release"].as_str().unwrap();
    assert_ne!(dev2_release, dev_release);
    assert!(dev2_release > dev_release.as_str(), "release ids sort by time");
    assert_eq!(env.sh("ls /opt/medctrl/backend/development/releases | wc -l"), "2");
    assert_eq!(env.get("testing", "/")["release"], testing_release.as_str(), "testing untouched");
}

/// Day-to-day control of two live builds: restarting or reloading one leaves the other alone,
/// stop and start, status exit codes, and `restart` without a build restarting every build.
#[test]
fn restart_reload_stop_and_start_touch_only_their_build() {
    let env = Env::boot();
    env.ok(&["build", "development"]);
    env.ok(&["build", "testing"]);

    // -- restart testing: next takes over, main stops; development is left alone --------------
    let dev_pid = env.main_pid("development");
    let testing_pid = env.main_pid("testing");
    assert_eq!(env.serving_unit("testing"), "medctrl@testing.service");
    env.ok(&["restart", "testing"]);
    assert_eq!(env.main_pid("development"), dev_pid, "restarting testing must not touch development");
    assert_eq!(env.sh("readlink /opt/medctrl/backend/testing/gunicorn.sock"), ".relctl-next.sock");
    assert_ne!(env.main_pid("testing"), testing_pid, "testing got a new main process");
    assert!(!env.sb.is_active("medctrl@testing.service"), "the instance that served before is stopped");
    assert_eq!(env.get("testing", "/")["build"], "testing");
    let doc: Value = serde_json::from_str(&env.ok(&["--json", "status", "testing"])).unwrap();
    assert_eq!(doc["builds"][0]["unit"], "medctrl_next@testing.service", "{doc}");
    assert_eq!(doc["builds"][0]["main_pid"], env.main_pid("testing"), "{doc}");
    assert_eq!(doc["builds"][0]["other"], Value::Null, "{doc}");
    // and back: the next restart runs in main again
    let testing_pid = env.main_pid("testing");
    env.ok(&["restart", "testing"]);
    assert_eq!(env.serving_unit("testing"), "medctrl@testing.service");
    assert!(!env.sb.is_active("medctrl_next@testing.service"));
    assert_ne!(env.main_pid("testing"), testing_pid);
    env.ok(&["restart", "testing"]);
    assert_eq!(env.serving_unit("testing"), "medctrl_next@testing.service");

    // -- the MedCtrl guide's own systemctl commands still do what they say, whichever serves ---
    // restart: main restarts and takes the public socket (next, PartOf= main, restarts beside it)
    let testing_pid = env.main_pid("testing");
    env.sh("systemctl restart medctrl@testing.service");
    assert_eq!(env.sh("readlink /opt/medctrl/backend/testing/gunicorn.sock"), ".relctl-live.sock");
    assert_ne!(env.main_pid("testing"), testing_pid);
    assert_eq!(env.get("testing", "/")["build"], "testing");
    let doc: Value = serde_json::from_str(&env.ok(&["--json", "status", "testing"])).unwrap();
    assert_eq!(doc["builds"][0]["unit"], "medctrl@testing.service", "{doc}");
    assert_eq!(doc["builds"][0]["other"]["unit"], "medctrl_next@testing.service", "{doc}");
    // relctl's next restart runs in the idle next instance and stops main
    env.ok(&["restart", "testing"]);
    assert_eq!(env.serving_unit("testing"), "medctrl_next@testing.service");
    assert!(!env.sb.is_active("medctrl@testing.service"));
    // stop: reaches next, which serves
    env.sh("systemctl stop medctrl@testing.service");
    assert!(!env.sb.is_active("medctrl_next@testing.service") && !env.sb.is_active("medctrl@testing.service"));
    // start: main starts and serves
    env.sh("systemctl start medctrl@testing.service");
    assert_eq!(env.serving_unit("testing"), "medctrl@testing.service");
    assert_eq!(env.get("testing", "/")["build"], "testing");
    // as at boot (all of testing down while next served, then the target starts what is
    // enabled: main's socket and service): main takes the public socket
    env.ok(&["restart", "testing"]);
    assert_eq!(env.serving_unit("testing"), "medctrl_next@testing.service");
    env.sh("systemctl stop medctrl@testing.service medctrl@testing.socket medctrl_next@testing.socket");
    assert!(!env.sb.is_active("medctrl_next@testing.service"));
    // the target wants every build relctl enabled (systemd reloaded after enabling them)
    let wants = env.sh("systemctl show -P Wants medctrl.target");
    for unit in ["medctrl@testing.service", "medctrl@testing.socket", "medctrl@development.service"] {
        assert!(wants.split(' ').any(|w| w == unit), "{wants}");
    }
    env.sh("systemctl start medctrl.target");
    assert_eq!(env.serving_unit("testing"), "medctrl@testing.service");
    assert_eq!(env.get("testing", "/")["build"], "testing");
    assert_eq!(env.main_pid("development"), dev_pid, "none of this touched development");

    // -- reload: gunicorn's graceful reload keeps the main process, replaces the workers -------
    let testing_pid = env.main_pid("testing");
    let workers = env.sh(&format!("cat /proc/{testing_pid}/task/*/children"));
    env.ok(&["reload", "testing"]);
    assert_eq!(env.main_pid("testing"), testing_pid, "reload keeps the main process");
    assert_ne!(env.sh(&format!("cat /proc/{testing_pid}/task/*/children")), workers, "reload replaced the workers");
    assert_eq!(env.get("testing", "/")["build"], "testing");
    assert_eq!(env.main_pid("development"), dev_pid, "reloading testing must not touch development");

    // -- stop / start, status exit codes ------------------------------------------------------
    env.ok(&["stop", "testing"]);
    assert!(!env.sb.is_active("medctrl@testing.service") && !env.sb.is_active("medctrl@testing.socket"));
    assert!(env.sb.is_active("medctrl@development.service"), "stopping testing must not stop development");
    let st = env.relctl(&["status"]);
    assert_eq!(st.status.code(), Some(3), "a stopped build makes status exit 3: {}", show(&st));
    assert_eq!(env.relctl(&["status", "development"]).status.code(), Some(0));
    let st = env.relctl(&["--json", "status", "testing"]);
    assert_eq!(st.status.code(), Some(3));
    let st: Value = serde_json::from_slice(&st.stdout).unwrap();
    assert_eq!(st["builds"][0]["state"], "inactive");
    env.ok(&["start", "testing"]);
    assert_eq!(env.get("testing", "/")["build"], "testing");
    assert_eq!(env.relctl(&["status"]).status.code(), Some(0), "both builds active again");

    // -- restart without a build restarts the target (every build) ---------------------------
    let dev_pid = env.main_pid("development");
    let testing_pid = env.main_pid("testing");
    env.ok(&["restart"]);
    assert_ne!(env.main_pid("development"), dev_pid);
    assert_ne!(env.main_pid("testing"), testing_pid);
    assert!(env.sb.is_active("medctrl@development.service") && env.sb.is_active("medctrl@testing.service"));
    assert_eq!(env.get("development", "/")["build"], "development");
    assert_eq!(env.get("testing", "/")["build"], "testing");
}

/// Bad input is refused with exit 2 before anything is touched: invalid and undeclared build
/// names leave every file and the live build's process as they were.
#[test]
fn bad_input_is_refused_with_exit_2_and_nothing_changes() {
    let env = Env::boot();
    env.ok(&["build", "development"]);
    let before = env.snapshot();
    let dev_pid = env.main_pid("development");
    for bad in ["../x", "Dev", "a.b", "x@y"] {
        let out = env.relctl(&["build", bad]);
        assert_eq!(out.status.code(), Some(2), "{bad}: {}", show(&out));
        let err = stderr(&out);
        assert!(err.starts_with(&format!("relctl: invalid build name \"{bad}\"")) && err.lines().count() == 1, "{err}");
    }
    let out = env.relctl(&["build", "staging"]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(stderr(&out).contains("declared builds: development, testing"), "{}", stderr(&out));
    let out = env.relctl(&["restart", "staging"]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert_unchanged(&before, &env.snapshot(), "refused commands");
    assert_eq!(env.main_pid("development"), dev_pid);
    assert_eq!(env.get("development", "/")["build"], "development");
}

/// A failing hook aborts the build before anything live changes: the running release keeps
/// serving, the half-built release is removed, and the error names the hook and its status.
/// A settings template with an undefined variable is refused before anything is touched.
#[test]
fn failing_hook_and_bad_template_leave_the_live_build_alone() {
    let env = Env::boot();
    env.ok(&["build", "testing"]);
    let live = env.get("testing", "/")["release"].as_str().unwrap().to_string();
    let pid = env.main_pid("testing");

    let failing = variant("hook-fails", |app| {
        replace(
            &app.join("relctl.toml"),
            "release = [",
            "release = [\"echo migrating; echo 'no database' >&2; exit 4\", ",
        )
    });
    let before = env.snapshot();
    let out = env.relctl_with(&failing, &["build", "testing"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let err = stderr(&out);
    assert!(err.contains("no database"), "the tail of the hook's output is shown: {err}");
    let last = err.lines().last().unwrap();
    assert!(last.starts_with("relctl: build testing aborted before the switch"), "{last}");
    assert!(
        last.contains("release hook `echo migrating; echo 'no database' >&2; exit 4` exited with status 4"),
        "{last}"
    );
    assert_unchanged(&before, &env.snapshot(), "a failed hook");
    assert_eq!(env.get("testing", "/")["release"], live.as_str());
    assert_eq!(env.main_pid("testing"), pid);

    let bad_template = variant("bad-template", |app| {
        let text = "from api_settings.settings.common import *\nX = \"{{ vars.nope }}\"\n";
        std::fs::write(app.join("deploy/settings.py.tera"), text).unwrap()
    });
    let out = env.relctl_with(&bad_template, &["build", "testing"]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    // named as the manifest gives it
    assert_eq!(stderr(&out).trim(), "relctl: deploy/settings.py.tera:2: undefined variable `vars.nope` (template variables: app, component, build, release, root, build_dir, release_dir, current, socket, state_dir, vars.*, secrets.*)");
    assert_unchanged(&before, &env.snapshot(), "a bad template");
}

/// A world-readable secrets file is refused before anything is touched; a private one reaches the
/// hooks and the service, and relctl never prints it nor writes it to unit files or releases.
#[test]
fn secrets_reach_hooks_and_service_but_no_file_or_output() {
    let env = Env::boot();
    let secret = "hunter2-do-not-print";
    env.sh(&format!("mkdir -p /etc/relctl/medctrl && printf 'SECRET_KEY={secret}\\n' > /etc/relctl/medctrl/testing.env && chmod 0644 /etc/relctl/medctrl/testing.env"));
    let with_secrets = variant("secrets", |app| {
        let manifest = app.join("relctl.toml");
        replace(
            &manifest,
            "route = \"/testapi\"",
            "route = \"/testapi\"\nsecrets = \"/etc/relctl/medctrl/testing.env\"",
        );
        replace(&manifest, "release = [", "release = [\"test -n \\\"$SECRET_KEY\\\"\", ");
    });
    let before = env.snapshot();
    let out = env.relctl_with(&with_secrets, &["build", "testing"]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert_eq!(stderr(&out).trim(), "relctl: secrets file /etc/relctl/medctrl/testing.env of build testing is world-readable (mode 0644); run: chmod o-rwx /etc/relctl/medctrl/testing.env");
    assert_unchanged(&before, &env.snapshot(), "a world-readable secrets file");
    env.sh("chmod 0640 /etc/relctl/medctrl/testing.env");
    let out = env.relctl_with(&with_secrets, &["-v", "build", "testing"]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(!show(&out).contains(secret), "relctl printed a secret: {}", show(&out));
    let pid = env.main_pid("testing");
    assert!(
        env.sh(&format!("tr '\\0' '\\n' < /proc/{pid}/environ")).contains(&format!("SECRET_KEY={secret}")),
        "the service gets its secrets"
    );
    assert_eq!(
        env.sh(&format!("grep -rl {secret} /etc/systemd/system /opt/medctrl || true")),
        "",
        "no secret in unit files or releases"
    );
    assert_eq!(
        env.sh("cat /etc/systemd/system/medctrl@testing.service.d/50-relctl.conf | grep EnvironmentFile"),
        "EnvironmentFile=/etc/relctl/medctrl/testing.env"
    );
}
