//! Who changed what: a build run by another user through sudo is recorded under that user, in
//! `relctl history`, its `--json` and the journal (its MESSAGE_ID); a failed deploy is recorded
//! with its error and reaches the `[notify]` commands; a notification that fails is a warning
//! and the deploy's result stands; dry runs and usage errors leave no record.

use crate::common::env::{Env, RELCTL};
use crate::common::scratch::{append, replace, variant};
use crate::common::{show, stderr, stdout};

#[test]
fn history_names_who_ran_what_and_notifications_hear_of_failures() {
    let env = Env::boot();
    let notify = "\n[notify]\ncommands = [\"cat > /root/notified.json; echo \\\"$RELCTL_EVENT $RELCTL_RESULT $RELCTL_BUILD $RELCTL_USER\\\" >> /root/notified\", \"echo webhook down >&2; exit 7\"]\n";
    let good = variant("audit-good", |app| append(&app.join("relctl.toml"), notify));
    // Every view of this release answers 500, its health path included: its gate fails.
    let broken = variant("audit-broken", |app| {
        append(&app.join("relctl.toml"), notify);
        replace(
            &app.join("API/api_settings/views.py"),
            "def health(request):\n",
            "def health(request):\n    return HttpResponse(\"broken\", status=500)\n",
        );
        replace(&app.join("relctl.toml"), "timeout_s = 30", "timeout_s = 3");
    });
    // alice may run relctl through sudo, as on a team's server.
    env.sh("useradd -m -s /bin/sh alice && echo 'alice ALL=(root) NOPASSWD: ALL' > /etc/sudoers.d/alice && chmod 0440 /etc/sudoers.d/alice");
    let as_alice = |manifest: &std::path::Path, args: &str| {
        env.sb.sh(&format!("cd / && runuser -u alice -- sudo -n {RELCTL} -f {} {args}", manifest.display()))
    };

    let out = as_alice(&good, "build development");
    assert!(out.status.success(), "{}\n{}", show(&out), env.journal_tail());
    // The failing notification is a warning; the deploy's result stands.
    assert!(
        stderr(&out).contains("relctl: notification `echo webhook down >&2; exit 7`: exit status: 7: webhook down (the build itself is not affected)"),
        "{}",
        show(&out)
    );
    let first = env.sh("readlink /opt/medctrl/backend/development/current").trim_start_matches("releases/").to_string();
    // Neither a dry run nor a usage error is a change.
    assert!(as_alice(&good, "build development --dry-run").status.success());
    assert_eq!(as_alice(&good, "build nosuchbuild").status.code(), Some(2));

    let out = as_alice(&broken, "build development");
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    env.ok(&["restart", "development"]);

    let doc: serde_json::Value =
        serde_json::from_str(&stdout(&env.relctl_with(&good, &["--json", "history"]))).unwrap();
    let records = doc["history"].as_array().unwrap();
    let summary: Vec<(String, String, String, String)> = records
        .iter()
        .map(|r| {
            let s = |k: &str| r[k].as_str().unwrap_or("-").to_string();
            (s("command"), s("user"), s("result"), s("via"))
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("build".into(), "alice".into(), "ok".into(), "sudo".into()),
            ("build".into(), "alice".into(), "failed".into(), "sudo".into()),
            ("restart".into(), "root".into(), "ok".into(), "local".into()),
        ],
        "{doc}"
    );
    assert_eq!(records[0]["build"], "development");
    assert!(records[0]["from"].is_null() && records[0]["to"] == first.as_str(), "{doc}");
    assert_eq!(records[1]["from"], first.as_str(), "a failed build leaves the release it had: {doc}");
    assert_eq!(records[1]["to"], first.as_str(), "{doc}");
    let error = records[1]["error"].as_str().unwrap();
    assert!(error.contains("HTTP 500: broken"), "{error}");
    assert_eq!(records[0]["args"], serde_json::json!(["build", "development"]), "{doc}");
    let host = env.sh("cat /proc/sys/kernel/hostname");
    assert_eq!(records[2]["host"], host.as_str());
    assert_eq!(env.sh("stat -c '%a %U' /var/lib/relctl/medctrl/history.jsonl"), "600 root");

    // The table, and one build's records.
    let table = stdout(&env.relctl_with(&good, &["history", "development", "-n", "2"]));
    assert_eq!(table.lines().count(), 3, "a header and the last two: {table}");
    assert!(table.contains("alice (sudo)") && table.contains("failed: ") && table.contains("root (local)"), "{table}");

    // The journal has the same, under one MESSAGE_ID, with the user and the result as fields.
    let journal = env.sh(
        "journalctl -o json --output-fields=RELCTL_USER,RELCTL_COMMAND,RELCTL_RESULT,RELCTL_BUILD,MESSAGE MESSAGE_ID=e9f6fc50b985472cb1378c3103c1040d",
    );
    let entries: Vec<serde_json::Value> = journal.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(entries.len(), 3, "{journal}");
    assert_eq!(entries[1]["RELCTL_USER"], "alice");
    assert_eq!(entries[1]["RELCTL_RESULT"], "failed");
    assert!(
        entries[1]["MESSAGE"].as_str().unwrap().starts_with("relctl build development by alice (sudo) on "),
        "{journal}"
    );

    // The notification command heard of both builds (on = build and failed by default), not of
    // the restart, with the record on its stdin.
    assert_eq!(env.sh("cat /root/notified"), "build ok development alice\nbuild failed development alice");
    let last: serde_json::Value = serde_json::from_str(&env.sh("cat /root/notified.json")).unwrap();
    assert_eq!(last["result"], "failed");
    assert_eq!(last["user"], "alice");
}
