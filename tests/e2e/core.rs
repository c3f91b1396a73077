//! End to end, against a real systemd (PID 1 of its own namespaces, over an overlay of /), real
//! gunicorn services and the example Django app. Needs root; fails (never skips) without it.

use serde_json::Value;

use crate::common::env::{assert_unchanged, Env};
use crate::common::scratch::{replace, variant};
use crate::common::{show, stderr};

/// The whole BUILD_NAME workflow of the MedCtrl guide, done by relctl: two builds side by side,
/// socket activation, restart isolation, stop/start, status exit codes, a second release, and
/// bad input refused without touching anything.
#[test]
fn build_two_builds_restart_stop_status_and_rebuild() {
    let env = Env::boot();

    // -- build development and testing --------------------------------------------------------
    let out = env.ok(&["build", "development"]);
    assert!(out.contains("medctrl development is live at release"), "{out}");
    for step in ["setup", "stage", "render", "hook:build", "hook:release", "units", "switch", "start", "verify"] {
        assert!(out.lines().any(|l| l.trim_start().starts_with(step)), "no step {step} in:\n{out}");
    }
    let json_out = env.relctl(&["--json", "build", "testing"]);
    assert!(json_out.status.success(), "{}", show(&json_out));
    let doc: Value = serde_json::from_slice(&json_out.stdout).expect("build --json prints one JSON document");
    assert_eq!(doc["result"]["build"], "testing");
    assert_eq!(doc["result"]["unit"]["active_state"], "active");
    let testing_release = doc["result"]["release"].as_str().unwrap().to_string();

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
    assert_eq!(env.sh("stat -c '%a %G %F' /opt/medctrl/backend/development/gunicorn.sock"), "660 www-data socket");
    let settings = format!(
        "/opt/medctrl/backend/development/releases/{dev_release}/API/api_settings/settings/deploy_development.py"
    );
    assert_eq!(env.sh(&format!("stat -c '%a %U %G' {settings}")), "640 root medctrl");
    assert!(env.sh(&format!("cat {settings}")).contains("RELCTL_BUILD = \"development\""));
    assert_eq!(env.sh("systemctl show -P ProtectSystem medctrl@development.service"), "strict");
    assert_eq!(env.sh("systemctl show -P User medctrl@development.service"), "medctrl");
    assert_eq!(env.sh("ps -o user= -p $(systemctl show -P MainPID medctrl@development.service)"), "medctrl");
    assert_eq!(
        env.sh("systemctl is-enabled medctrl@development.service medctrl@testing.socket medctrl.target | sort -u"),
        "enabled"
    );
    assert!(
        env.sh("test -f /var/lib/medctrl/backend/development/db.sqlite3 && echo yes") == "yes",
        "migrate hook made the database in the state dir"
    );
    // the repo's own files are not copied: .git never, excluded patterns neither
    assert_eq!(env.sh(&format!("ls -A /opt/medctrl/backend/development/releases/{dev_release} | grep -c -e '^.git$' -e __pycache__ || true")), "0");

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

    // -- restart testing leaves development alone; the socket stays --------------------------
    let dev_pid = env.main_pid("development");
    let testing_pid = env.main_pid("testing");
    let sock_inode = env.sh("stat -c %i /opt/medctrl/backend/testing/gunicorn.sock");
    env.ok(&["restart", "testing"]);
    assert_eq!(env.main_pid("development"), dev_pid, "restarting testing must not touch development");
    assert_ne!(env.main_pid("testing"), testing_pid, "testing got a new main process");
    assert_eq!(env.sh("stat -c %i /opt/medctrl/backend/testing/gunicorn.sock"), sock_inode, "the socket was kept open");
    assert_eq!(env.get("testing", "/")["build"], "testing");

    // -- reload: gunicorn's graceful reload keeps the main process, replaces the workers -------
    let testing_pid = env.main_pid("testing");
    let workers = env.sh(&format!("cat /proc/{testing_pid}/task/*/children"));
    env.ok(&["reload", "testing"]);
    assert_eq!(env.main_pid("testing"), testing_pid, "reload keeps the main process");
    assert_ne!(env.sh(&format!("cat /proc/{testing_pid}/task/*/children")), workers, "reload replaced the workers");
    assert_eq!(env.get("testing", "/")["build"], "testing");

    // -- stop / start, status exit codes ------------------------------------------------------
    env.ok(&["stop", "testing"]);
    assert!(!env.sb.is_active("medctrl@testing.service") && !env.sb.is_active("medctrl@testing.socket"));
    let st = env.relctl(&["status"]);
    assert_eq!(st.status.code(), Some(3), "a stopped build makes status exit 3: {}", show(&st));
    assert_eq!(env.relctl(&["status", "development"]).status.code(), Some(0));
    let st = env.relctl(&["--json", "status", "testing"]);
    assert_eq!(st.status.code(), Some(3));
    let st: Value = serde_json::from_slice(&st.stdout).unwrap();
    assert_eq!(st["builds"][0]["state"], "inactive");
    env.ok(&["start", "testing"]);
    assert_eq!(env.get("testing", "/")["build"], "testing");

    // -- restart without a build restarts the target (every build) ---------------------------
    let dev_pid = env.main_pid("development");
    let testing_pid = env.main_pid("testing");
    env.ok(&["restart"]);
    assert_ne!(env.main_pid("development"), dev_pid);
    assert_ne!(env.main_pid("testing"), testing_pid);
    assert!(env.sb.is_active("medctrl@development.service") && env.sb.is_active("medctrl@testing.service"));

    // -- a second build of development is a new release, and it serves -----------------------
    let out = env.ok(&["build", "development"]);
    assert!(out.contains("units") && out.contains("unchanged"), "unit files did not change: {out}");
    let dev2 = env.get("development", "/");
    let dev2_release = dev2["release"].as_str().unwrap();
    assert_ne!(dev2_release, dev_release);
    assert!(dev2_release > dev_release.as_str(), "release ids sort by time");
    assert_eq!(env.sh("ls /opt/medctrl/backend/development/releases | wc -l"), "2");
    assert_eq!(env.get("testing", "/")["release"], testing_release.as_str(), "testing untouched");

    // -- bad input is refused with exit 2 and nothing changes ---------------------------------
    let before = env.snapshot();
    let dev_pid = env.main_pid("development");
    for bad in ["../x", "Dev", "a.b", "x@y"] {
        let out = env.relctl(&["build", bad]);
        assert_eq!(out.status.code(), Some(2), "{bad}: {}", show(&out));
        let err = stderr(&out);
        assert!(err.starts_with(&format!("relctl: invalid build name \"{bad}\"")) && err.lines().count() == 1, "{err}");
    }
    let out = env.relctl(&["build", "staging"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("declared builds: development, testing"), "{}", stderr(&out));
    let out = env.relctl(&["restart", "staging"]);
    assert_eq!(out.status.code(), Some(2));
    assert_unchanged(&before, &env.snapshot(), "refused commands");
    assert_eq!(env.main_pid("development"), dev_pid);
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
    let template = bad_template.parent().unwrap().join("deploy/settings.py.tera");
    let out = env.relctl_with(&bad_template, &["build", "testing"]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert_eq!(stderr(&out).trim(), format!("relctl: {}:2: undefined variable `vars.nope` (template variables: app, component, build, release, root, build_dir, release_dir, current, socket, state_dir, vars.*, secrets.*)", template.display()));
    assert_unchanged(&before, &env.snapshot(), "a bad template");

    // -- secrets: refused when world-readable; else given to hooks and service, never shown ----
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
