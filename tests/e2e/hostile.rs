//! Hostile but valid input is built safely: a source tree with a symlink to /etc/shadow, a FIFO, a
//! unix socket, a 255-byte file name and names with shell syntax and newlines, and secrets whose
//! values hold `$(…)` and backquotes. The build succeeds, copies links as links (never what they
//! point at), skips what is not a file, runs nothing it was handed as data, and the service gets
//! the secret values literally.

use std::os::unix::fs::symlink;

use crate::common::env::Env;
use crate::common::scratch::{replace, variant};
use crate::common::show;

#[test]
fn hostile_but_valid_sources_and_secrets_are_built_safely() {
    let env = Env::boot();
    let long = "n".repeat(255);
    let manifest = variant("hostile", |app| {
        symlink("/etc/shadow", app.join("API/shadow-link")).unwrap();
        let fifo = app.join("API/a-fifo");
        assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
        let _socket = std::os::unix::net::UnixListener::bind(app.join("API/a.sock")).unwrap();
        std::fs::write(app.join(&long), "long name").unwrap();
        std::fs::write(app.join("$(touch relctl-pwned)`touch relctl-pwned2`;touch relctl-pwned4"), "x").unwrap();
        std::fs::write(app.join("line\nbreak"), "x").unwrap();
        replace(
            &app.join("relctl.toml"),
            "route = \"/api\"",
            "route = \"/api\"\nsecrets = \"/etc/relctl/hostile.env\"",
        );
    });
    env.sh(concat!(
        "mkdir -p /etc/relctl && printf '%s\\n' 'SUBST=$(touch /tmp/relctl-pwned3)' 'TICKS=`id`' ",
        "'QUOTED=\"a b $HOME\"' > /etc/relctl/hostile.env && chmod 600 /etc/relctl/hostile.env"
    ));
    let out = env.relctl_with(&manifest, &["build", "development"]);
    assert!(out.status.success(), "{}\n{}", show(&out), env.journal_tail());

    let release = "/opt/medctrl/backend/development/current";
    assert_eq!(env.sh(&format!("readlink {release}/API/shadow-link")), "/etc/shadow", "a link stays a link");
    assert_eq!(
        env.sh(&format!("find {release}/ -maxdepth 2 \\( -type p -o -type s \\) | wc -l")),
        "0",
        "no FIFO, no socket"
    );
    assert_eq!(env.sh(&format!("cat {release}/{long}")), "long name");
    assert_eq!(env.sh(&format!("ls {release} | grep -c 'touch'")), "1", "the odd name is copied as a name");
    let ran = env.sh(&format!("find / /tmp /root {release}/ {release}/API -maxdepth 1 -name 'relctl-pwned*' | wc -l"));
    assert_eq!(ran, "0", "a file name or a secret value was run as a command");
    let pid = env.main_pid("development");
    let environ = env.sh(&format!("tr '\\0' '\\n' < /proc/{pid}/environ"));
    for expected in ["SUBST=$(touch /tmp/relctl-pwned3)", "TICKS=`id`", "QUOTED=a b $HOME"] {
        assert!(environ.lines().any(|l| l == expected), "the service gets {expected:?} literally:\n{environ}");
    }
    assert_eq!(env.get("development", "/")["build"], "development");
    // The service user cannot read what the link points at.
    let read =
        env.sb.sh(&format!("setpriv --reuid medctrl --regid medctrl --clear-groups cat {release}/API/shadow-link"));
    assert!(!read.status.success(), "the service user read /etc/shadow through the link");
}
