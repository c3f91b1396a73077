//! `relctl -H host`: a host in its own network namespace, reached over real sshd from a lab
//! namespace (common::lab), builds the example from sources shipped from here and reports as if
//! relctl ran there; an unreachable host, a host with another relctl and a bad -H fail with one
//! clear line. The hosts cannot reach PyPI: the example installs from a wheel directory
//! downloaded here first. Needs root; fails (never skips) without it.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::lab::{offline_example, Lab};
use crate::common::{show, stderr, stdout};

#[test]
fn a_host_over_ssh_builds_and_reports_as_if_relctl_ran_there() {
    let lab = Lab::boot("remote", 1);
    let h1 = &lab.hosts[0].sb;
    assert_eq!(h1.sh_ok("hostname -I"), lab.hosts[0].addr, "the host's own network");
    assert_eq!(lab.hosts[0].name, "h1");
    let m = offline_example("remote");

    let out = lab.relctl(&m, &["-H", "h1", "build", "development"]);
    assert!(out.status.success(), "{}\n{}", show(&out), h1.journal("medctrl@development.service", 30));
    let said = stdout(&out);
    assert!(said.contains("relctl: medctrl development is live at release"), "the host's output came back: {said}");
    let release = h1.sh_ok("readlink /opt/medctrl/backend/development/current");
    let answer = h1.sh_ok("curl -sS --fail --unix-socket /opt/medctrl/backend/development/gunicorn.sock http://x/");
    let answer: Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(format!("releases/{}", answer["release"].as_str().unwrap()), release);
    assert_eq!(h1.sh_ok("ls /var/tmp | grep -c relctl-remote || true"), "0", "the shipped copy is removed");

    // status over -H is the host's systemd's answer; exit codes come back.
    let out = lab.relctl(&m, &["-H", "h1", "--json", "status"]);
    assert_eq!(out.status.code(), Some(3), "testing is not built there: {}", show(&out));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", show(&out)));
    let dev = doc["builds"].as_array().unwrap().iter().find(|b| b["build"] == "development").unwrap();
    let pid = h1.serving_pid("/opt/medctrl/backend", "development");
    assert_eq!(dev["main_pid"].to_string(), pid, "{doc}");
    assert_eq!(dev["state"], "active", "{doc}");
    assert_eq!(format!("releases/{}", dev["release"].as_str().unwrap()), release);
    assert!(!lab.hosts[0].sb.is_active("medctrl@testing.service"));

    // An SSH user that is not root goes through sudo -n, with the same answer.
    h1.sh_ok(
        "useradd -m -s /bin/sh -p '*' deploy && mkdir -p /home/deploy/.ssh && cp /root/.ssh/authorized_keys /home/deploy/.ssh/
chown -R deploy: /home/deploy/.ssh && echo 'deploy ALL=(root) NOPASSWD: ALL' > /etc/sudoers.d/deploy && chmod 0440 /etc/sudoers.d/deploy",
    );
    let out = lab.relctl(&m, &["-H", "deploy@h1", "--json", "status", "development"]);
    assert!(out.status.success(), "{}\n{}", show(&out), h1.journal("ssh.service", 5));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", show(&out)));
    assert_eq!(doc["builds"][0]["main_pid"].to_string(), pid, "{doc}");
    assert_eq!(h1.sh_ok("ls /var/tmp | grep -c relctl-remote || true"), "0", "the deploy user's copy is removed");

    // The host's history names who ran what over -H: root over SSH, then deploy through sudo,
    // each with the address they came from and the user and host relctl ran on here.
    let out = lab.relctl(&m, &["-H", "deploy@h1", "restart", "development"]);
    assert!(out.status.success(), "{}", show(&out));
    let out = lab.relctl(&m, &["-H", "h1", "--json", "history"]);
    assert!(out.status.success(), "{}", show(&out));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", show(&out)));
    let records = doc["history"].as_array().unwrap();
    let who: Vec<(&str, &str, &str)> = records
        .iter()
        .map(|r| (r["command"].as_str().unwrap(), r["user"].as_str().unwrap(), r["via"].as_str().unwrap()))
        .collect();
    assert_eq!(who.len(), 2, "{doc}");
    assert_eq!((who[0].0, who[0].1), ("build", "root"), "{doc}");
    assert!(who[0].2.starts_with("ssh from 10.77.") && who[0].2.contains(", relctl -H from root@"), "{doc}");
    assert_eq!((who[1].0, who[1].1), ("restart", "deploy"), "{doc}");
    assert!(who[1].2.starts_with("sudo, ssh from 10.77.") && who[1].2.contains(", relctl -H from root@"), "{doc}");
    assert_eq!(records[0]["host"], "h1", "{doc}");

    // A usage error on the host is one line and exit 2, as here.
    let out = lab.relctl(&m, &["-H", "h1", "restart", "testing"]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(stderr(&out).starts_with("relctl: build testing has no release yet"), "{}", show(&out));

    // Unreachable: fails fast, naming the host.
    let t = Instant::now();
    let out = lab.relctl(&m, &["-H", "root@10.77.0.99", "status"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(stderr(&out).starts_with("relctl: cannot reach root@10.77.0.99 over SSH: "), "{}", show(&out));
    assert!(t.elapsed() < Duration::from_secs(15), "took {:?}", t.elapsed());

    // A host with another relctl is refused, with the fix.
    h1.sh_ok("printf '#!/bin/sh\\necho relctl 0.0.1\\n' > /usr/local/bin/relctl");
    let out = lab.relctl(&m, &["-H", "h1", "build", "development"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let err = stderr(&out);
    let expected = format!("relctl: h1 runs relctl 0.0.1, this is relctl {}; install", env!("CARGO_PKG_VERSION"));
    assert!(err.starts_with(&expected) && err.contains("dpkg -i"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert_eq!(h1.sh_ok("readlink /opt/medctrl/backend/development/current"), release, "nothing changed");

    let out = lab.relctl(&m, &["--host=-oProxyCommand=sh", "status"]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(stderr(&out).contains("expected [user@]host[:port]"), "{}", show(&out));
}
