//! Review builds: a family `[builds."pr-*"]` whose members get their own route
//! (`/review/{{ build }}`) and vars; a member built on demand appears in `status` and, through
//! real nginx, under its route with its static files. Needs root; fails (never skips) without it.

use crate::common::env::Env;
use crate::common::scratch::{append, variant};
use crate::common::{show, stderr, stdout};

const SNIPPET: &str = "/etc/nginx/relctl-review.conf";

#[test]
fn a_review_build_gets_its_own_route_through_nginx() {
    let env = Env::boot();
    let m = variant("review", |app| {
        append(
            &app.join("relctl.toml"),
            "\n[builds.\"pr-*\"]\nroute = \"/review/{{ build }}\"\nvars = { base_url = \"review/{{ build }}/\", debug = true }\n",
        );
    });
    let port = env.nginx_in_front(&m, SNIPPET);
    assert!(!env.sh(&format!("cat {SNIPPET}")).contains("review"), "no member exists yet");

    let out = env.relctl_with(&m, &["build", "review-1"]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(
        stderr(&out).contains("build \"review-1\" is not declared in")
            && stderr(&out).contains("declared builds: development, testing, pr-* (a family)"),
        "{}",
        show(&out)
    );

    let out = env.relctl_with(&m, &["build", "pr-42"]);
    assert!(out.status.success(), "{}\n{}", show(&out), env.journal_tail());
    let settings = env.sh("cat /opt/medctrl/backend/pr-42/current/API/api_settings/settings/deploy_pr-42.py");
    assert!(settings.contains("BASE_URL = \"review/pr-42/\"") && settings.contains("DEBUG = True"), "{settings}");

    let out = env.relctl_with(&m, &["nginx-snippet", "--output", SNIPPET, "--check", "--reload"]);
    assert!(out.status.success(), "{}", show(&out));
    let page = env.sh(&format!("curl -sS --fail http://127.0.0.1:{port}/review/pr-42/x?q=1"));
    let page: serde_json::Value = serde_json::from_str(&page).unwrap();
    assert_eq!(page["build"], "pr-42", "{page}");
    assert_eq!(page["script_name"], "/review/pr-42", "{page}");
    assert_eq!(page["path"], "/x", "{page}");
    assert_eq!(page["static"], "/review/pr-42/static/medctrl/hello.css", "{page}");
    let css = env.sh(&format!("curl -sS --fail http://127.0.0.1:{port}/review/pr-42/static/medctrl/hello.css"));
    assert!(css.contains("{"), "{css}");

    let out = env.relctl_with(&m, &["status", "pr-7"]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(
        stderr(&out).contains("build pr-7 of the family [builds.\"pr-*\"] does not exist on disk"),
        "{}",
        show(&out)
    );
    let status = env.relctl_with(&m, &["status"]);
    let table = stdout(&status);
    let row = table.lines().find(|l| l.starts_with("pr-42 ")).unwrap_or_else(|| panic!("no pr-42 in {table}"));
    assert!(row.contains("active (running)") && row.contains("/review/pr-42"), "{row}");
    assert_eq!(status.status.code(), Some(3), "development and testing are not built: {}", show(&status));
}
