//! `relctl diff` against real builds: a build never built is all new; right after a build nothing
//! differs (exit 0, nothing printed), though the next release gets another id; a changed secret
//! names the settings file without showing either value; a changed settings template is a diff of
//! the settings file (exit 1) that shows the new line but never the secret; the next build applies
//! it all and diff exits 0 again. Needs root; fails (never skips) without it.

use crate::common::env::Env;
use crate::common::scratch::{append, replace, variant};
use crate::common::{show, stdout};

const SETTINGS: &str = "/opt/medctrl/backend/development/current/API/api_settings/settings/deploy_development.py";

#[test]
fn diff_shows_what_the_next_build_changes_and_nothing_right_after_it() {
    let env = Env::boot();
    let secret = "s3cret-do-not-print";
    let secrets = "/etc/relctl/medctrl/development.env";
    env.sh(&format!(
        "mkdir -p /etc/relctl/medctrl && printf 'DB_PASSWORD={secret}\\n' > {secrets} && chmod 0600 {secrets}"
    ));
    let m = variant("diff", |app| {
        replace(&app.join("relctl.toml"), "route = \"/api\"", &format!("route = \"/api\"\nsecrets = \"{secrets}\""));
        append(&app.join("deploy/settings.py.tera"), "\nDB_PASSWORD = \"{{ secrets.DB_PASSWORD }}\"\n");
    });
    let template = m.parent().unwrap().join("deploy/settings.py.tera");
    let diff = |args: &[&str]| {
        let out = env.relctl_with(&m, &[args, &["diff", "development"]].concat());
        assert!(!show(&out).contains(secret), "relctl printed the secret: {}", show(&out));
        out
    };
    let build = |what: &str| {
        let out = env.relctl_with(&m, &["build", "development"]);
        assert!(out.status.success(), "{what}: {}\n{}", show(&out), env.journal_tail());
    };

    // Never built: every file is new.
    let out = diff(&[]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(stdout(&out).contains(&format!("+++ next build {SETTINGS}\n")), "{}", show(&out));
    assert!(stdout(&out).contains("+DB_PASSWORD = \"<secret>\"\n"), "{}", show(&out));

    // Right after a build: nothing, though the next release would get another id.
    build("first build");
    let out = diff(&[]);
    assert_eq!((out.status.code(), stdout(&out).as_str()), (Some(0), ""), "{}", show(&out));
    let json: serde_json::Value = serde_json::from_str(&stdout(&diff(&["--json"]))).unwrap();
    assert_eq!(json, serde_json::json!({ "build": "development", "changed": false, "files": [] }));

    // A new secret alone: the settings file is named, neither the old value nor the new one shown.
    let new_secret = "n3w-s3cret-do-not-print";
    env.sh(&format!("printf 'DB_PASSWORD={new_secret}\\n' > {secrets}"));
    let out = diff(&[]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(!show(&out).contains(new_secret), "relctl printed the new secret: {}", show(&out));
    assert_eq!(
        stdout(&out),
        format!(
            "--- installed {SETTINGS}\n+++ next build {SETTINGS}\n@@ only secret values differ; relctl does not show them @@"
        )
    );

    // A line added to the settings template: the settings file, and nothing else, differs.
    append(&template, "RELCTL_DIFF_CHECK = True\n");
    let out = diff(&[]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let text = stdout(&out);
    assert_eq!(text.matches("--- installed ").count(), 1, "only the settings differ: {text}");
    assert!(text.starts_with(&format!("--- installed {SETTINGS}\n+++ next build {SETTINGS}\n@@ ")), "{text}");
    assert!(text.contains(" DB_PASSWORD = \"<secret>\"\n+RELCTL_DIFF_CHECK = True"), "{text}");
    let json: serde_json::Value = serde_json::from_str(&stdout(&diff(&["--json"]))).unwrap();
    assert_eq!((&json["changed"], &json["files"][0]["path"]), (&true.into(), &SETTINGS.into()), "{json}");
    assert_eq!(json["files"][0]["status"], "changed", "{json}");
    let out = diff(&["-q"]);
    assert_eq!((out.status.code(), stdout(&out).as_str()), (Some(1), ""), "{}", show(&out));
    assert!(!show(&out).contains(new_secret), "relctl printed the new secret: {}", show(&out));

    // The build applies it all: nothing differs any more.
    build("second build");
    let out = env.relctl_with(&m, &["diff", "development"]);
    assert_eq!((out.status.code(), stdout(&out).as_str()), (Some(0), ""), "{}", show(&out));
    assert_eq!(
        env.sh(&format!("grep -rl -e {secret} -e {new_secret} /etc/systemd/system /opt/medctrl/backend/development/current/.relctl || true")),
        "",
        "the masked copies hold no secret"
    );

    // An undeclared build is a usage error.
    let out = env.relctl_with(&m, &["diff", "nope"]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
}
