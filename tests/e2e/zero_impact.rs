//! Deploys users do not feel, through real nginx under load (wrk): a release that answers 500 on
//! every path is refused without a single user request reaching it, and restarts and builds in
//! between drop nothing.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::env::Env;
use crate::common::scratch::{replace, variant};
use crate::common::{show, stderr};

const SNIPPET: &str = "/etc/nginx/snippets/medctrl.conf";

#[test]
fn a_broken_release_never_receives_a_request_and_deploys_drop_nothing() {
    let env = Env::boot();
    // The example, but its start records the CPU priority it starts at (its autogroup's nice).
    let good = variant("zero-good", |app| {
        replace(
            &app.join("relctl.toml"),
            "exec = \".venv/bin/python -m gunicorn",
            "exec = \"/bin/sh -c 'cat /proc/self/autogroup >> $RELCTL_STATE_DIR/start-priority; exec ../.venv/bin/python -m gunicorn",
        );
        replace(&app.join("relctl.toml"), "api_settings.wsgi:application\"", "api_settings.wsgi:application'\"");
    });
    let out = env.relctl_with(&good, &["build", "development"]);
    assert!(out.status.success(), "{}\n{}", show(&out), env.journal_tail());
    let port = env.nginx_in_front(&good, SNIPPET);
    let live = env.get("development", "/")["release"].as_str().unwrap().to_string();

    // Every view of this release answers 500, its health path included.
    let broken = variant("zero-broken", |app| {
        replace(
            &app.join("API/api_settings/views.py"),
            "def echo(request):\n",
            "def echo(request):\n    return HttpResponse(\"broken\", status=500)\n",
        );
        replace(
            &app.join("API/api_settings/views.py"),
            "def health(request):\n",
            "def health(request):\n    return HttpResponse(\"broken\", status=500)\n",
        );
        replace(&app.join("relctl.toml"), "timeout_s = 30", "timeout_s = 3");
    });

    let wrk = Command::new("wrk")
        .stdout(Stdio::piped())
        .args(["-t2", "-c8", "-d600s", "--timeout", "10s", &format!("http://127.0.0.1:{port}/api/x")])
        .spawn()
        .expect("wrk runs (apt-get install wrk; .ci/run installs it)");
    std::thread::sleep(Duration::from_secs(1));
    let out = env.relctl_with(&broken, &["build", "development"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let last = stderr(&out).lines().last().unwrap_or_default().to_string();
    assert!(last.contains("before it took any traffic and is marked bad"), "{last}");
    assert!(last.contains("HTTP 500: broken"), "{last}");
    for _ in 0..2 {
        env.ok(&["restart", "development"]);
    }
    let out = env.relctl_with(&good, &["build", "development"]);
    assert!(out.status.success(), "{}", show(&out));
    // wrk stops on SIGINT and reports what it saw until then: the load covered every deploy.
    let wrk = crate::common::stop_wrk(wrk);
    let report = String::from_utf8_lossy(&wrk.stdout).into_owned();
    assert!(wrk.status.success(), "{report}");
    let requests: u64 =
        report.split(" requests in").next().unwrap().rsplit(' ').next().unwrap().trim().parse().unwrap();
    assert!(requests > 1000, "{report}");
    assert!(!report.contains("Non-2xx"), "a user request got an error response during the deploys:\n{report}");
    assert!(!report.contains("Socket errors"), "a user request failed during the deploys:\n{report}");
    assert_ne!(env.get("development", "/")["release"], live.as_str(), "the last good build is live");

    // One start per deploy (the first build, two restarts, the good build; the broken build's
    // start does not record), each at nice 10 until ready; what serves now, master and workers,
    // runs at 0 again.
    let started = env.sh("cat /var/lib/medctrl/backend/development/start-priority");
    assert_eq!(started.lines().count(), 4, "{started}");
    assert!(started.lines().all(|l| l.ends_with(" nice 10")), "{started}");
    let serving =
        env.sh(&format!("for p in $(pgrep -g {}); do cat /proc/$p/autogroup; done", env.main_pid("development")));
    assert_eq!(serving.lines().count(), 3, "master and 2 workers: {serving}");
    assert!(serving.lines().all(|l| l.ends_with(" nice 0")), "{serving}");
}
