//! Faults that are nobody's input: the disk filling up under a build. The build stops before the
//! switch naming what it could not write, removes its half-made release, the live build keeps
//! serving from the same process, and once there is room again the next build goes through.

use crate::common::env::Env;
use crate::common::scratch::{replace, variant};
use crate::common::{show, stderr};

#[test]
fn a_full_disk_stops_the_build_before_the_switch_and_the_next_build_recovers() {
    let env = Env::boot();
    env.sh("mkdir -p /srv/small && mount -t tmpfs -o size=256m tmpfs /srv/small");
    let manifest = variant("full-disk", |app| {
        replace(
            &app.join("relctl.toml"),
            "component = \"backend\"",
            "component = \"backend\"\nroot = \"/srv/small/medctrl\"",
        );
    });
    let out = env.relctl_with(&manifest, &["build", "development"]);
    assert!(out.status.success(), "{}\n{}", show(&out), env.journal_tail());
    let sock = "/srv/small/medctrl/development/gunicorn.sock";
    let get = || env.sh(&format!("curl -sS --fail --max-time 10 --unix-socket {sock} http://x/"));
    let live: serde_json::Value = serde_json::from_str(&get()).unwrap();
    let pid = env.main_pid_in("/srv/small/medctrl", "development");
    let releases = || env.sh("ls /srv/small/medctrl/development/releases");
    let before = releases();

    // Fill the disk to the last byte.
    env.sh("dd if=/dev/zero of=/srv/small/filler bs=1M 2>/dev/null || true; dd if=/dev/zero of=/srv/small/filler2 bs=4k 2>/dev/null || true");
    assert_eq!(env.sh("df --output=avail /srv/small | tail -1").trim(), "0", "the disk is full");
    let out = env.relctl_with(&manifest, &["build", "development"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let last = stderr(&out).lines().last().unwrap_or_default().to_string();
    assert!(last.starts_with("relctl: build development aborted before the switch; release "), "{last}");
    assert!(last.contains("removed, nothing live changed") && last.contains("No space left on device"), "{last}");
    assert!(last.contains("/srv/small/medctrl/development/releases/"), "names the file it could not write: {last}");
    assert_eq!(releases(), before, "the half-made release is gone");
    let now: serde_json::Value = serde_json::from_str(&get()).unwrap();
    assert_eq!(now["release"], live["release"]);
    assert_eq!(env.main_pid_in("/srv/small/medctrl", "development"), pid, "the live build was not touched");

    // Room again: the next build goes through.
    env.sh("rm /srv/small/filler /srv/small/filler2");
    let out = env.relctl_with(&manifest, &["build", "development"]);
    assert!(out.status.success(), "{}\n{}", show(&out), env.journal_tail());
    let now: serde_json::Value = serde_json::from_str(&get()).unwrap();
    assert_ne!(now["release"], live["release"]);
}
