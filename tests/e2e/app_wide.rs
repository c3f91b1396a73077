//! What every build of an app shares: a change to the socket unit is refused while other builds
//! run on the old one (saying what changes and how to apply it), applied with a re-bound socket
//! once they are stopped, and picked up by the others when they start; a service that does not
//! take its socket from systemd never passes the gate.

use crate::common::env::{assert_unchanged, Env};
use crate::common::scratch::{replace, variant};
use crate::common::{show, stderr, stdout};

#[test]
fn a_socket_change_is_refused_while_other_builds_run_then_applied_to_each() {
    let env = Env::boot();
    let old = variant("app-wide-old", |_| {});
    for build in ["development", "testing"] {
        let out = env.relctl_with(&old, &["build", build]);
        assert!(out.status.success(), "{build}: {}\n{}", show(&out), env.journal_tail());
    }
    let dev_pid = env.main_pid("development");
    let testing_pid = env.main_pid("testing");
    let new = variant("app-wide-new", |app| {
        replace(&app.join("relctl.toml"), "[service]", "[service]\nsocket_group = \"nogroup\"");
    });

    // -- refused while testing runs on the old socket unit; nothing changes ------------------
    let before = env.snapshot();
    let out = env.relctl_with(&new, &["build", "development"]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    for says in [
        "SocketGroup=www-data -> SocketGroup=nogroup",
        "build(s) testing still run on the old units",
        "relctl stop testing",
        "relctl build development",
        "relctl start testing",
    ] {
        assert!(err.contains(says), "does not say {says:?}: {err}");
    }
    assert_unchanged(&before, &env.snapshot(), "a refused app-wide change");
    assert_eq!((env.main_pid("development"), env.main_pid("testing")), (dev_pid, testing_pid));

    // -- with testing stopped, the build applies it and says what it cost ---------------------
    let out = env.relctl_with(&new, &["stop", "testing"]);
    assert!(out.status.success(), "{}", show(&out));
    let out = env.relctl_with(&new, &["build", "development"]);
    assert!(out.status.success(), "{}\n{}", show(&out), env.journal_tail());
    let text = stdout(&out);
    // The release starts in the instance that did not serve, whose socket unit was stopped: it
    // binds the new socket, and the old one drains; nothing queued is dropped.
    assert!(!text.contains("re-bound") && !text.contains("dropped"), "{text}");
    assert_eq!(env.serving_unit("development"), "medctrl_next@development.service");
    let sock = |b: &str| env.sh(&format!("stat -L -c '%a %G' /opt/medctrl/backend/{b}/gunicorn.sock"));
    assert_eq!(sock("development"), "660 nogroup");
    assert_eq!(env.get("development", "/")["build"], "development");

    // -- testing picks it up when it starts -----------------------------------------------------
    let out = env.relctl_with(&new, &["start", "testing"]);
    assert!(out.status.success(), "{}\n{}", show(&out), env.journal_tail());
    assert_eq!(sock("testing"), "660 nogroup");
    assert_eq!(env.get("testing", "/")["build"], "testing");
}

#[test]
fn a_service_that_binds_its_own_socket_never_passes() {
    let env = Env::boot();
    let good = variant("own-socket-good", |_| {});
    let out = env.relctl_with(&good, &["build", "development"]);
    assert!(out.status.success(), "{}\n{}", show(&out), env.journal_tail());
    let live = env.get("development", "/")["release"].clone();

    // gunicorn without LISTEN_FDS binds the address it is given instead of systemd's socket.
    let own = variant("own-socket", |app| {
        replace(
            &app.join("relctl.toml"),
            "exec = \".venv/bin/python -m gunicorn",
            "exec = \"env -u LISTEN_FDS -u LISTEN_PID -u LISTEN_FDNAMES ../.venv/bin/python -m gunicorn --bind 127.0.0.1:8123",
        );
    });
    let out = env.relctl_with(&own, &["build", "development"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let last = stderr(&out).lines().last().unwrap_or_default().to_string();
    for says in [
        "failed in medctrl_next@development.service before it took any traffic and is marked bad",
        "kept serving, untouched",
        "listens on 127.0.0.1:8123 of its own instead of serving the socket systemd passes it",
    ] {
        assert!(last.contains(says), "does not say {says:?}: {last}");
    }
    assert_eq!(env.get("development", "/")["release"], live, "the old release never stopped serving");
}
