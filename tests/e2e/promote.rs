//! Test once, ship the same bytes: `relctl promote testing production` under load through real
//! nginx (same files, same dependency entry, production's own settings, 0 failed requests), a
//! `verify` hook that gates a release before it takes traffic, and promotes refused for a bad or
//! unverified release. Needs root; fails (never skips) without it.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::common::env::Env;
use crate::common::scratch::{append, replace, variant};
use crate::common::{show, stderr, stdout};

const SNIPPET: &str = "/etc/nginx/relctl-promote.conf";
const ROOT: &str = "/opt/medctrl/backend";

/// The example with a production build at /prod and a verify hook that calls `/smoke` on the new
/// instance through its own socket.
fn manifest(name: &str) -> std::path::PathBuf {
    variant(name, |app| {
        replace(
            &app.join("relctl.toml"),
            "release = [\".venv/bin/python API/manage.py migrate --noinput\"]",
            r#"release = [".venv/bin/python API/manage.py migrate --noinput"]
verify = ["curl -sS --fail --max-time 5 --unix-socket \"$RELCTL_SOCKET\" \"$RELCTL_URL/smoke\""]"#,
        );
        append(&app.join("relctl.toml"), "\n[builds.production]\nroute = \"/prod\"\n");
    })
}

/// The example's views, answering with `version` too.
fn set_version(app: &Path, from: &str, to: &str) {
    replace(
        &app.join("API/api_settings/views.py"),
        &format!("\"version\": \"{from}\","),
        &format!("\"version\": \"{to}\","),
    );
}

impl Env {
    fn current(&self, build: &str) -> String {
        self.sh(&format!("readlink {ROOT}/{build}/current")).trim().trim_start_matches("releases/").to_string()
    }

    /// sha256 of every file of a release but relctl's `.relctl/`, the rendered settings files and
    /// the bytecode (each release compiles its own, for its files' times and its settings), and
    /// where its symlinks point.
    fn tree(&self, build: &str, release: &str) -> String {
        self.sh(&format!(
            "cd {ROOT}/{build}/releases/{release} && find . -path ./.relctl -prune -o -name __pycache__ -prune -o -type f ! -name 'deploy_*.py' -print | sort | xargs sha256sum; find . -path ./.relctl -prune -o -type l -printf '%p -> %l\\n' | sort"
        ))
    }

    fn releases_json(&self, manifest: &Path, build: &str) -> Value {
        let out = self.relctl_with(manifest, &["--json", "releases", build]);
        assert!(out.status.success(), "{}", show(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

#[test]
fn promote_ships_testings_files_to_production_under_load() {
    let env = Env::boot();
    let m = manifest("promote");
    let app = m.parent().unwrap().to_path_buf();
    replace(
        &app.join("API/api_settings/views.py"),
        "\"build\": settings.RELCTL_BUILD,",
        "\"build\": settings.RELCTL_BUILD, \"version\": \"v1\",",
    );
    for build in ["production", "testing"] {
        let out = env.relctl_with(&m, &["build", build]);
        assert!(out.status.success(), "{}\n{}", show(&out), env.journal_tail());
    }
    let port = env.nginx_in_front(&m, SNIPPET);

    // A change, built and verified in testing; then the checkout moves on (v3, not tested).
    set_version(&app, "v1", "v2");
    let out = env.relctl_with(&m, &["--json", "build", "testing"]);
    assert!(out.status.success(), "{}", show(&out));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let steps: Vec<&str> = doc["steps"].as_array().unwrap().iter().map(|s| s["step"].as_str().unwrap()).collect();
    let at = |name: &str| steps.iter().position(|s| *s == name).unwrap_or_else(|| panic!("no {name} in {steps:?}"));
    assert!(at("hook:verify") < at("handover"), "the verify hook ran before the hand-over: {steps:?}");
    assert_eq!(env.get("testing", "/")["version"], "v2");
    let tested = env.current("testing");
    set_version(&app, "v2", "v3");

    let before = env.current("production");
    let dry = env.relctl_with(&m, &["promote", "testing", "production", "--dry-run"]);
    assert!(dry.status.success(), "{}", show(&dry));
    let plan = stdout(&dry);
    assert!(plan.contains(&format!("(testing@{tested}, byte for byte)")), "{plan}");
    assert!(plan.contains("API/api_settings/settings/deploy_testing.py (its settings)"), "{plan}");
    assert!(plan.contains("reused") && !plan.contains("hook:build"), "no dependency or build hook runs: {plan}");
    assert_eq!(env.current("production"), before, "--dry-run changed nothing");

    let wrk = Command::new("wrk")
        .stdout(Stdio::piped())
        .args(["-t2", "-c8", "-d600s", "--timeout", "10s", &format!("http://127.0.0.1:{port}/prod/x")])
        .spawn()
        .expect("wrk runs (apt-get install wrk; .ci/run installs it)");
    std::thread::sleep(Duration::from_secs(1));
    let out = env.relctl_with(&m, &["promote", "testing", "production"]);
    std::thread::sleep(Duration::from_millis(500));
    let wrk = crate::common::stop_wrk(wrk);
    assert!(out.status.success(), "{}\n{}", show(&out), env.journal_tail());
    let said = stdout(&out);
    assert!(said.contains(&format!("(promoted from testing@{tested})")), "{said}");
    assert!(!said.contains("pip") && said.contains("reused"), "no dependency build: {said}");
    let report = String::from_utf8_lossy(&wrk.stdout).into_owned();
    let requests: u64 =
        report.split(" requests in").next().unwrap().rsplit(' ').next().unwrap().trim().parse().unwrap();
    assert!(requests > 500, "{report}");
    assert!(!report.contains("Non-2xx"), "a user request got an error response during the promote:\n{report}");
    assert!(!report.contains("Socket errors"), "a user request failed during the promote:\n{report}");

    // Production runs v2 (testing's files, not the checkout's v3) with its own settings.
    let promoted = env.current("production");
    assert_ne!(promoted, before);
    assert!(
        promoted.ends_with(tested.split_once('-').map_or("", |(_, git)| git)),
        "{promoted} keeps {tested}'s revision"
    );
    let answer = env.get("production", "/");
    assert_eq!((answer["version"].as_str(), answer["build"].as_str()), (Some("v2"), Some("production")), "{answer}");
    let through_nginx = env.sh(&format!("curl -sS --fail http://127.0.0.1:{port}/prod/x"));
    assert!(
        through_nginx.contains("\"script_name\": \"/prod\"") && through_nginx.contains("\"v2\""),
        "{through_nginx}"
    );
    assert_eq!(env.tree("production", &promoted), env.tree("testing", &tested), "the same bytes");
    assert!(env.tree("production", &promoted).contains("./.venv -> /opt/medctrl/backend/.deps/venv-"));
    let settings = env.sh(&format!("ls {ROOT}/production/releases/{promoted}/API/api_settings/settings/"));
    assert!(settings.contains("deploy_production.py") && !settings.contains("deploy_testing.py"), "{settings}");

    let doc = env.releases_json(&m, "production");
    let r = doc["releases"].as_array().unwrap().iter().find(|r| r["id"] == promoted.as_str()).unwrap();
    assert_eq!(r["promoted_from"], serde_json::json!({ "build": "testing", "release": tested }), "{r}");
    assert_eq!(r["state"], "current");
    assert!(r["verified"].is_string(), "{r}");
    let table = stdout(&env.relctl_with(&m, &["releases", "production"]));
    assert!(table.contains(&format!("promoted from testing@{tested}")), "{table}");
}

#[test]
fn a_failing_verify_hook_and_bad_or_unverified_releases_stop_a_promote() {
    let env = Env::boot();
    let m = manifest("promote-refused");
    for build in ["testing", "production"] {
        let out = env.relctl_with(&m, &["build", build]);
        assert!(out.status.success(), "{}\n{}", show(&out), env.journal_tail());
    }
    let good = env.current("testing");
    let pid = env.main_pid("testing");

    // The smoke test fails on this release: it never takes traffic, testing keeps serving.
    let smoke_fails = variant("promote-smoke-fails", |app| {
        std::fs::copy(m.as_path(), app.join("relctl.toml")).unwrap();
        replace(
            &app.join("API/api_settings/views.py"),
            "def echo(request):\n",
            "def echo(request):\n    if request.path_info == \"/smoke\":\n        return HttpResponse(\"smoke test: payments backend unreachable\", status=500)\n",
        );
    });
    let out = env.relctl_with(&smoke_fails, &["build", "testing"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let err = stderr(&out);
    let last = err.lines().last().unwrap();
    assert!(last.contains("verify hook `curl -sS --fail"), "{last}");
    assert!(last.contains("before it took any traffic and is marked bad"), "{last}");
    assert!(err.contains("The requested URL returned error: 500"), "the hook's output tail: {err}");
    assert_eq!(env.current("testing"), good);
    assert_eq!(env.main_pid("testing"), pid, "the live instance was never touched");

    // A bad current release: the first build of a new build fails its verify hook.
    let staged = variant("promote-staging", |app| {
        std::fs::copy(smoke_fails.as_path(), app.join("relctl.toml")).unwrap();
        std::fs::copy(
            smoke_fails.parent().unwrap().join("API/api_settings/views.py"),
            app.join("API/api_settings/views.py"),
        )
        .unwrap();
        append(&app.join("relctl.toml"), "\n[builds.staging]\nroute = \"/staging\"\n");
    });
    let out = env.relctl_with(&staged, &["build", "staging"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let before = env.snapshot();
    let out = env.relctl_with(&staged, &["promote", "staging", "production"]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let msg = stderr(&out);
    assert!(msg.starts_with("relctl: cannot promote staging to production: staging's current release"), "{msg}");
    assert!(msg.contains("is bad (verify hook") && msg.trim_end().ends_with("nothing was changed"), "{msg}");
    assert_eq!(msg.lines().count(), 1, "{msg}");
    crate::common::env::assert_unchanged(&before, &env.snapshot(), "a refused promote");

    // An unverified current release: relctl killed after the switch of a first start.
    env.sh("systemctl stop medctrl@testing.service medctrl@testing.socket");
    let out = env.sb.run(
        "env",
        &["RELCTL_FAILPOINT=switch", crate::common::env::RELCTL, "-f", m.to_str().unwrap(), "build", "testing"],
    );
    assert!(!out.status.success(), "{}", show(&out));
    let out = env.relctl_with(&m, &["promote", "testing", "production"]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(stderr(&out).contains("has not been verified"), "{}", show(&out));

    for (args, expected) in [
        (&["promote", "testing", "testing"][..], "cannot promote build testing to itself"),
        (&["promote", "qa", "production"][..], "build \"qa\" is not declared"),
    ] {
        let out = env.relctl_with(&m, args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", show(&out));
        assert!(stderr(&out).contains(expected), "{args:?}: {}", show(&out));
    }
}
