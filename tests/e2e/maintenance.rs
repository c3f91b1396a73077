//! Maintenance mode through real nginx: `relctl maintenance on` answers the build's route with
//! 503, the page and `Retry-After` while the health path, the static files and the other build
//! still answer; it survives an nginx reload and shows in `status`; `off` lifts it cleanly. With
//! `[maintenance] page`, the page the app ships. Needs root; fails (never skips) without it.

use crate::common::env::Env;
use crate::common::scratch::{append, variant};
use crate::common::{show, stdout};

const SNIPPET: &str = "/etc/nginx/relctl-maintenance.conf";

#[test]
fn maintenance_answers_503_with_a_page_and_lifts_cleanly() {
    let env = Env::boot();
    let m = variant("maintenance", |app| {
        std::fs::create_dir_all(app.join("maintenance")).unwrap();
        std::fs::write(app.join("maintenance/503.html"), "<h1>MedCtrl is being upgraded</h1>\n").unwrap();
        append(&app.join("relctl.toml"), "\n[maintenance]\nretry_after_s = 120\n");
    });
    for build in ["development", "testing"] {
        let out = env.relctl_with(&m, &["build", build]);
        assert!(out.status.success(), "{}\n{}", show(&out), env.journal_tail());
    }
    let port = env.nginx_in_front(&m, SNIPPET);
    // Status, Retry-After and body of a GET through nginx.
    let get = |path: &str| -> (String, String, String) {
        let out = env.sh(&format!(
            "curl -sS -o /tmp/body -D /tmp/headers -w '%{{http_code}}' http://127.0.0.1:{port}{path}; echo; printf '%s\\n' \"$(grep -i '^retry-after' /tmp/headers | tr -d '\\r')\"; cat /tmp/body"
        ));
        let mut parts = out.splitn(3, '\n');
        let code = parts.next().unwrap_or("").to_string();
        let retry = parts.next().unwrap_or("").to_string();
        (code, retry, parts.next().unwrap_or("").to_string())
    };
    assert_eq!(get("/api/x").0, "200");
    let main_pid = env.main_pid("development");

    let out = env.relctl_with(&m, &["maintenance", "on", "development"]);
    assert!(out.status.success(), "{}", show(&out));
    let (code, retry, body) = get("/api/x");
    assert_eq!((code.as_str(), retry.as_str()), ("503", "Retry-After: 120"), "{body}");
    assert!(body.contains("medctrl (development) is down for maintenance"), "relctl's own page: {body}");
    assert_eq!(get("/api").0, "308", "the route's redirect stays");
    assert_eq!(get("/api/health").0, "200", "the health check still reaches the app");
    assert_eq!(get("/api/static/medctrl/hello.css").0, "200", "static files are still served");
    assert_eq!(get("/testapi/x").0, "200", "the other build is not touched");
    assert_eq!(env.main_pid("development"), main_pid, "the build keeps running");
    let status = env.relctl_with(&m, &["status"]);
    let row = stdout(&status).lines().find(|l| l.starts_with("development ")).unwrap_or_default().to_string();
    assert!(row.contains("active (running), maintenance"), "{}", show(&status));
    let json: serde_json::Value = serde_json::from_str(&env.ok(&["--json", "status", "development"])).unwrap();
    assert!(json["builds"][0]["maintenance"]["since"].is_string(), "{json}");
    let json: serde_json::Value =
        serde_json::from_str(&stdout(&env.relctl_with(&m, &["--json", "status", "testing"]))).unwrap();
    assert!(json["builds"][0]["maintenance"].is_null(), "{json}");

    // An nginx reload, and a deploy meanwhile, keep it.
    env.sh("systemctl reload nginx && sleep 0.5");
    let out = env.relctl_with(&m, &["build", "development"]);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(get("/api/x").0, "503");

    // The app's own page, from its current release.
    append(&m, "page = \"maintenance/503.html\"\n");
    let out = env.relctl_with(&m, &["maintenance", "on", "development"]);
    assert!(out.status.success(), "{}", show(&out));
    let (code, _, body) = get("/api/anything?q=1");
    assert_eq!(
        (code.as_str(), body.trim_end()),
        ("503", "<h1>MedCtrl is being upgraded</h1>"),
        "the page the app ships"
    );

    let out = env.relctl_with(&m, &["maintenance", "off", "development"]);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(get("/api/x").0, "200");
    assert_eq!(env.sh("test -e /opt/medctrl/backend/development/.relctl-maintenance && echo on || echo off"), "off");
    let out = env.relctl_with(&m, &["status", "development"]);
    assert!(!stdout(&out).contains("maintenance"), "{}", show(&out));

    // A page the release does not have is refused, nothing changed.
    let bad = variant("maintenance-bad", |app| {
        append(&app.join("relctl.toml"), "\n[maintenance]\npage = \"maintenance/none.html\"\n");
    });
    let out = env.relctl_with(&bad, &["maintenance", "on", "development"]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(show(&out).contains("has no such file"), "{}", show(&out));
    assert_eq!(get("/api/x").0, "200");
}
