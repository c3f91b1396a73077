//! relctl destroy end to end: the example's two builds behind real nginx, one torn down while the
//! other keeps serving, then the last one. Needs root; fails (never skips) without it.

use serde_json::Value;

use crate::common::env::{assert_unchanged, Env};
use crate::common::scratch::{append, variant};
use crate::common::{show, stderr, stdout};

const SNIPPET: &str = "/etc/nginx/snippets/medctrl.conf";
/// Where the sandbox's requests through nginx log their status codes, one a line.
const CODES: &str = "/tmp/testapi-codes";
/// A family of review builds, appended to the example's manifest.
const FAMILY: &str = "\n[builds.\"pr-*\"]\nroute = \"/review/{{ build }}\"\n";

impl Env {
    /// `relctl -f manifest args...`, which must succeed; its stdout.
    fn ok_with(&self, manifest: &std::path::Path, args: &[&str]) -> String {
        let out = self.relctl_with(manifest, args);
        assert!(out.status.success(), "relctl {args:?} failed: {}\n{}", show(&out), self.journal_tail());
        stdout(&out)
    }

    /// The status of GET `path` through nginx on `port`.
    fn status_through_nginx(&self, port: u16, path: &str) -> String {
        self.sh(&format!("curl -sS -o /dev/null -w '%{{http_code}}' --max-time 10 http://127.0.0.1:{port}{path}"))
    }

    /// What systemd lists of `pattern` (units loaded, or unit files enabled), one a line.
    /// `systemctl list-*` exits 1 when it lists nothing.
    fn systemctl_list(&self, what: &str, pattern: &str) -> String {
        let out = self.sb.sh(&format!("systemctl {what} --no-legend --plain '{pattern}'"));
        assert!(matches!(out.status.code(), Some(0 | 1)) && out.stderr.is_empty(), "{}", show(&out));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

/// `relctl destroy testing --purge --output <snippet> --check --reload` behind real nginx (after
/// a --dry-run and a snippet it could not write, which change nothing): requests to
/// testing's route get 200 until nginx stops routing it and 404 after, never an error; development
/// serves throughout with the same main PID; nothing of testing is left on disk, in systemd or in
/// nginx. So for a review build, a member of the family `pr-*`. A second destroy of testing is
/// refused with nothing changed; destroying development, the last build, without --purge keeps
/// its state and leaves nothing of the app enabled.
#[test]
fn destroy_tears_one_build_down_while_the_other_serves() {
    let env = Env::boot();
    let m = variant("destroy", |app| append(&app.join("relctl.toml"), FAMILY));
    for build in ["development", "testing", "pr-7"] {
        env.ok_with(&m, &["build", build]);
    }
    let port = env.nginx_in_front(&m, SNIPPET);
    assert_eq!(env.status_through_nginx(port, "/testapi/"), "200");
    assert_eq!(env.status_through_nginx(port, "/review/pr-7/"), "200");
    let dev_pid = env.main_pid("development");
    // Drop-ins of the user's own go with the build too; so does a candidate that failed (one
    // started by hand without a release fails at once, here without restarts), whose socket
    // still listens.
    env.sh("cd /etc/systemd/system && mkdir medctrl@testing.service.d medctrl_next@testing.service.d
printf '[Service]\\nEnvironment=LOCAL=1\\n' > medctrl@testing.service.d/60-local.conf
printf '[Service]\\nRestart=no\\n' > medctrl_next@testing.service.d/60-local.conf
systemctl daemon-reload
! systemctl start medctrl_next@testing.service 2>/dev/null");
    assert_eq!(env.sh("systemctl is-failed medctrl_next@testing.service; true"), "failed");
    assert!(env.sb.is_active("medctrl_next@testing.socket"));
    assert_eq!(env.sh("ls -d /var/lib/medctrl/backend/testing /var/cache/medctrl/backend/testing | wc -l"), "2");

    // -- --dry-run says what it would do and changes nothing ---------------------------------
    let before = env.snapshot();
    let snippet_before = env.sh(&format!("cat {SNIPPET}"));
    let out = env.relctl_with(&m, &["destroy", "testing", "--purge", "--dry-run", "--output", SNIPPET, "--reload"]);
    assert!(out.status.success(), "{}", show(&out));
    let plan = String::from_utf8_lossy(&out.stdout);
    for want in [
        format!("nginx        first: {SNIPPET} rewritten without testing's route (/testapi), keeping /api"),
        "stop         medctrl_next@testing.service, medctrl_next@testing.socket, medctrl@testing.service, medctrl@testing.socket".into(),
        "disable      medctrl@testing.socket, medctrl@testing.service".into(),
        "drop-in      /etc/systemd/system/medctrl_next@testing.service.d (removed)".into(),
        "drop-in      /etc/systemd/system/medctrl@testing.service.d (removed)".into(),
        "data         /var/lib/medctrl/backend/testing removed (--purge)".into(),
        "target       medctrl.target stays enabled for development".into(),
    ] {
        assert!(plan.contains(&want), "no {want:?} in:\n{plan}");
    }
    let json = env.relctl_with(&m, &["--json", "destroy", "testing", "--dry-run"]);
    let doc: Value = serde_json::from_slice(&json.stdout).unwrap_or_else(|e| panic!("{e}: {}", show(&json)));
    assert_eq!(doc["plan"]["build"]["build_dir"], "/opt/medctrl/backend/testing");
    assert_eq!(doc["plan"]["purge"], false);
    assert_unchanged(&before, &env.snapshot(), "destroy --dry-run");
    assert_eq!(env.sh(&format!("cat {SNIPPET}")), snippet_before);
    assert!(env.sb.is_active("medctrl@testing.service"));

    // -- a snippet that cannot be installed stops the destroy before anything else changes ------
    let out = env.relctl_with(&m, &["destroy", "testing", "--output", "/etc/nginx/missing/medctrl.conf", "--reload"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let err = stderr(&out);
    assert!(
        err.starts_with("relctl: updating the nginx snippet; build testing was left as it was: cannot write /etc/nginx/missing/medctrl.conf")
            && err.lines().count() == 1,
        "{err}"
    );
    assert_unchanged(&before, &env.snapshot(), "destroy with a snippet it could not write");
    assert!(env.sb.is_active("medctrl@testing.service") && env.sb.is_active("medctrl_next@testing.socket"));

    // -- destroy testing while requests go to both routes ------------------------------------
    env.sh(&format!(
        "(while [ ! -e /tmp/stop ]; do curl -sS -o /dev/null -w '%{{http_code}}\\n' --max-time 10 http://127.0.0.1:{port}/testapi/; done) > {CODES} 2>&1 &
for i in $(seq 100); do grep -q 200 {CODES} && break; sleep 0.05; done"
    ));
    let wrk = std::process::Command::new("wrk")
        .stdout(std::process::Stdio::piped())
        // A connection a request: nginx's reload closes idle keep-alive connections, which wrk
        // would count as read errors, as it would for any reload of nginx.
        .args(["-t1", "-c4", "-d600s", "--timeout", "10s", "-H", "Connection: close"])
        .arg(format!("http://127.0.0.1:{port}/api/x"))
        .spawn()
        .expect("wrk runs (apt-get install wrk)");
    let out = env.ok_with(&m, &["destroy", "testing", "--purge", "--output", SNIPPET, "--check", "--reload"]);
    let report = String::from_utf8_lossy(&crate::common::stop_wrk(wrk).stdout).into_owned();
    assert!(out.contains("medctrl_next@testing.socket, medctrl@testing.service, medctrl@testing.socket\n"), "{out}");
    assert!(out.contains("; reset failed medctrl_next@testing.service\n"), "{out}");
    for step in ["nginx", "stop", "units", "remove", "purge"] {
        assert!(out.lines().any(|l| l.trim_start().starts_with(step)), "no step {step} in:\n{out}");
    }
    assert!(out.trim_end().ends_with("relctl: destroyed medctrl testing"), "{out}");
    // Until nginx stopped routing to testing it answered; then nginx said 404. Never a 5xx.
    env.sh(&format!("for i in $(seq 100); do [ \"$(tail -n1 {CODES})\" = 404 ] && break; sleep 0.05; done; touch /tmp/stop; sleep 0.5"));
    let codes = env.sh(&format!("sort {CODES} | uniq -c"));
    let seen: Vec<&str> = codes.lines().map(|l| l.split_whitespace().nth(1).unwrap()).collect();
    assert_eq!(seen, ["200", "404"], "status codes through nginx during the destroy:\n{codes}");
    assert_eq!(env.status_through_nginx(port, "/testapi/"), "404");
    assert!(!env.sh(&format!("cat {SNIPPET}")).contains("testapi"));
    // development served throughout, untouched.
    assert!(!report.contains("Non-2xx") && !report.contains("Socket errors"), "development failed requests:\n{report}");
    assert_eq!(env.status_through_nginx(port, "/api/"), "200");
    assert_eq!(env.main_pid("development"), dev_pid);
    // Nothing of testing on disk, in systemd or in nginx.
    let gone = "/opt/medctrl/backend/testing /var/lib/medctrl/backend/testing /var/cache/medctrl/backend/testing";
    assert_eq!(env.sh(&format!("for p in {gone}; do [ -e $p ] && echo $p; done; true")), "");
    assert_eq!(env.sh("ls -A /opt/medctrl/backend"), ".deps\ndevelopment\npr-7");
    assert_eq!(env.sh("ls -d /etc/systemd/system/*@testing* /etc/systemd/system/*/*@testing* 2>/dev/null; true"), "");
    assert_eq!(env.systemctl_list("list-units --all", "medctrl*@testing*"), "");
    let enabled = env.sb.run("systemctl", &["is-enabled", "medctrl@testing.socket"]);
    assert!(!enabled.status.success(), "{}", show(&enabled));
    let enabled = env.systemctl_list("list-unit-files --state=enabled", "medctrl*");
    assert!(enabled.contains("medctrl.target") && !enabled.contains("testing"), "{enabled}");
    assert_eq!(env.sh("systemctl is-enabled medctrl@development.socket"), "enabled");

    // -- a review build (a member of the family pr-*): its route goes, nothing of it stays ------
    let out = env.ok_with(&m, &["destroy", "pr-7", "--purge", "--output", SNIPPET, "--reload"]);
    assert!(out.contains(&format!("{SNIPPET} without /review/pr-7; nginx reloaded")), "{out}");
    assert_eq!(env.status_through_nginx(port, "/review/pr-7/"), "404");
    assert_eq!(env.status_through_nginx(port, "/api/"), "200");
    assert_eq!(env.main_pid("development"), dev_pid);
    let traces = env.sh(
        "find /opt/medctrl /var/lib/medctrl /var/cache/medctrl /run/medctrl /etc/systemd/system /etc/nginx -name '*pr-7*'
grep -rl pr-7 /etc/systemd/system /etc/nginx; true",
    );
    assert_eq!(traces, "", "what is left of pr-7");
    assert_eq!(env.systemctl_list("list-units --all", "*pr-7*"), "");
    // Exit 3: testing is declared by name, and not built.
    let status = env.relctl_with(&m, &["status"]);
    let table = stdout(&status);
    assert_eq!(status.status.code(), Some(3), "{}", show(&status));
    assert!(table.contains("development ") && !table.contains("pr-7"), "{table}");

    // -- a build not on disk is refused, nothing changed ------------------------------------
    let before = env.snapshot();
    let out = env.relctl_with(&m, &["destroy", "testing", "--purge"]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert_eq!(
        stderr(&out),
        "relctl: build testing does not exist on disk (/opt/medctrl/backend/testing is not a directory); nothing to destroy\n"
    );
    assert_unchanged(&before, &env.snapshot(), "destroy of a build not on disk");
    assert_eq!(env.main_pid("development"), dev_pid);

    // -- the last build, without --purge: its state kept, nothing of the app enabled --------
    // What a destroy killed between renaming and removing would leave, its release linking the
    // venv: removed first, so the venv is collected.
    env.sh(
        "mkdir -p /opt/medctrl/backend/.relctl-destroyed-testing/releases/r
ln -s $(find /opt/medctrl/backend/.deps -mindepth 1 -maxdepth 1 -type d) /opt/medctrl/backend/.relctl-destroyed-testing/releases/r/.venv",
    );
    let out = env.relctl_with(&m, &["--json", "destroy", "development"]);
    assert!(out.status.success(), "{}", show(&out));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", show(&out)));
    let r = &doc["result"];
    assert_eq!(r["kept"][0], "/var/lib/medctrl/backend/development", "{doc}");
    assert_eq!(r["target_disabled"], "medctrl.target", "{doc}");
    assert!(r["collected"].as_array().is_some_and(|c| c.len() == 1), "the venv no release uses: {doc}");
    let steps = doc["steps"].as_array().unwrap();
    assert!(steps.iter().any(|s| s["step"] == "keep"), "{doc}");
    let leftover = "what an interrupted destroy left: /opt/medctrl/backend/.relctl-destroyed-testing";
    assert!(steps.iter().any(|s| s["detail"].as_str().unwrap().contains(leftover)), "{doc}");
    assert!(env.sh("cat /var/lib/medctrl/backend/development/db.sqlite3 | wc -c") != "0", "the database is kept");
    assert_eq!(env.sh("ls -A /opt/medctrl/backend"), ".deps");
    assert_eq!(env.sh("ls -A /opt/medctrl/backend/.deps"), "");
    assert_eq!(env.systemctl_list("list-unit-files --state=enabled", "medctrl*"), "");
    assert_eq!(env.sh("find /etc/systemd/system -path '*.wants/medctrl*'"), "", "nothing of medctrl is wanted");
    assert_eq!(env.systemctl_list("list-units --all", "medctrl*@*"), "");
    let target = env.sb.run("systemctl", &["is-active", "medctrl.target"]);
    assert_eq!(stdout(&target), "inactive", "the last build's destroy stops the target too");
}
