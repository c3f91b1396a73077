//! Rolling deploys across three hosts (common::lab: each a systemd sandbox in its own network
//! namespace with real sshd and nginx): the manifest's `hosts` rolled one at a time under load
//! through each host's nginx with 0 failed requests; a roll that fails on host 2 stops there —
//! host 1 on the new release, host 2 back on its previous one, host 3 untouched — with a table
//! and exit 1; `status` of every host in one table. Needs root; fails (never skips) without it.

use std::process::{Child, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::common::lab::{offline_example, Lab};
use crate::common::scratch::{append, replace};
use crate::common::{show, stderr, stdout};

const SNIPPET: &str = "/etc/nginx/relctl-fleet.conf";
const SECRETS: &str = "/etc/relctl/medctrl-production.env";

fn current(lab: &Lab, i: usize) -> String {
    let link = lab.hosts[i].sb.sh_ok("readlink /opt/medctrl/backend/production/current");
    link.trim_start_matches("releases/").to_string()
}

/// GET /prod/x through host `i`'s nginx, from the lab.
fn version(lab: &Lab, i: usize) -> String {
    let url = format!("http://{}:8080/prod/x", lab.hosts[i].addr);
    let out = lab.command("curl").args(["-sS", "--fail", "--max-time", "10", &url]).output().unwrap();
    assert!(out.status.success(), "{url}: {}", show(&out));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    format!("{} {}", doc["version"].as_str().unwrap(), doc["release"].as_str().unwrap())
}

fn load(lab: &Lab, i: usize) -> Child {
    let url = format!("http://{}:8080/prod/x", lab.hosts[i].addr);
    lab.command("wrk")
        .args(["-t1", "-c4", "-d600s", "--timeout", "10s", &url])
        .stdout(Stdio::piped())
        .spawn()
        .expect("wrk runs (apt-get install wrk)")
}

#[test]
fn a_roll_over_three_hosts_drops_nothing_and_stops_at_the_first_failure() {
    let lab = Lab::boot("fleet", 3);
    let m = offline_example("fleet");
    let app = m.parent().unwrap().to_path_buf();
    append(
        &m,
        &format!(
            "\n[builds.production]\nroute = \"/prod\"\nsecrets = \"{SECRETS}\"\nhosts = [\"h1\", \"h2\", \"h3\"]\n"
        ),
    );
    let views = app.join("API/api_settings/views.py");
    replace(&views, "\"build\": settings.RELCTL_BUILD,", "\"build\": settings.RELCTL_BUILD, \"version\": \"v1\",");
    for h in &lab.hosts {
        h.sb.sh_ok(&format!(
            "mkdir -p /etc/relctl && printf 'SECRET_KEY=fleet\\n' > {SECRETS} && chmod 0640 {SECRETS}
rm -f /etc/nginx/sites-enabled/*; : > {SNIPPET}
printf 'server {{\\n  listen 8080 default_server;\\n  include {SNIPPET};\\n}}\\n' > /etc/nginx/sites-enabled/fleet
systemctl start nginx"
        ));
    }

    // The first roll: the manifest's hosts, one at a time.
    let out = lab.relctl(&m, &["build", "production"]);
    assert!(out.status.success(), "{}", show(&out));
    let said = stdout(&out);
    for h in ["h1", "h2", "h3"] {
        assert!(said.contains(&format!("{h} | relctl: medctrl production is live at release")), "{said}");
        let row = said
            .lines()
            .find(|l| l.starts_with(&format!("{h} ")) && !l.contains(" | "))
            .unwrap_or_else(|| panic!("{said}"));
        assert!(row.contains(" ok "), "{row}");
    }
    for h in ["h1", "h2", "h3"] {
        let out = lab.relctl(&m, &["-H", h, "nginx-snippet", "--output", SNIPPET, "--check", "--reload"]);
        assert!(out.status.success(), "{}", show(&out));
    }
    assert!(version(&lab, 0).starts_with("v1 "));

    // v2 rolled under load through every host's nginx: nobody sees an error.
    replace(&views, "\"version\": \"v1\",", "\"version\": \"v2\",");
    let loads: Vec<Child> = (0..3).map(|i| load(&lab, i)).collect();
    std::thread::sleep(Duration::from_secs(1));
    let out = lab.relctl(&m, &["--serial", "1", "build", "production"]);
    std::thread::sleep(Duration::from_millis(500));
    let reports: Vec<String> =
        loads.into_iter().map(|w| String::from_utf8_lossy(&crate::common::stop_wrk(w).stdout).into_owned()).collect();
    assert!(out.status.success(), "{}", show(&out));
    for (i, report) in reports.iter().enumerate() {
        assert!(!report.contains("Non-2xx") && !report.contains("Socket errors"), "h{}: {report}", i + 1);
        let requests: u64 =
            report.split(" requests in").next().unwrap().rsplit(' ').next().unwrap().trim().parse().unwrap();
        assert!(requests > 100, "h{}: {report}", i + 1);
        assert!(version(&lab, i).starts_with("v2 "), "h{}", i + 1);
    }
    let v2 = [current(&lab, 0), current(&lab, 1), current(&lab, 2)];
    let pid3 = lab.hosts[2].sb.serving_pid("/opt/medctrl/backend", "production");

    // v3, but h2 lost its secrets file: the roll stops at h2.
    replace(&views, "\"version\": \"v2\",", "\"version\": \"v3\",");
    lab.hosts[1].sb.sh_ok(&format!("rm {SECRETS}"));
    let out = lab.relctl(&m, &["build", "production"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let err = stderr(&out);
    assert!(err.contains(&format!("h2 | relctl: secrets file {SECRETS} of build production")), "{err}");
    assert_eq!(
        err.lines().last().unwrap(),
        "relctl: the roll stopped at h2; the hosts after it were not touched",
        "{err}"
    );
    let table = stdout(&out);
    eprintln!("the stopped roll's table:\n{table}\n{err}");
    let row = |h: &str| {
        let is_row = |l: &&str| l.starts_with(&format!("{h} ")) && !l.contains(" | ");
        table.lines().find(is_row).unwrap_or_else(|| panic!("{table}"))
    };
    let v3 = current(&lab, 0);
    assert_ne!(v3, v2[0]);
    assert!(row("h1").contains(" ok ") && row("h1").contains(&v3), "{table}");
    assert!(row("h2").contains("failed (exit 2)") && row("h2").contains(&v2[1]), "{table}");
    assert!(row("h3").contains("not reached"), "{table}");
    assert!(version(&lab, 0).starts_with("v3 "));
    assert!(version(&lab, 1).starts_with("v2 "), "h2 keeps serving its release");
    assert_eq!(current(&lab, 2), v2[2], "h3 untouched");
    assert_eq!(lab.hosts[2].sb.serving_pid("/opt/medctrl/backend", "production"), pid3);

    // rollback and restart roll the same way: h1 back to v2; h1 and h3 restarted.
    let out = lab.relctl(&m, &["--hosts", "h1", "rollback", "production"]);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(current(&lab, 0), v2[0]);
    assert!(version(&lab, 0).starts_with("v2 "));
    let pid1 = lab.hosts[0].sb.serving_pid("/opt/medctrl/backend", "production");
    let out = lab.relctl(&m, &["--hosts", "h1,h3", "--serial", "2", "restart", "production"]);
    assert!(out.status.success(), "{}", show(&out));
    let table = stdout(&out);
    assert_eq!(table.lines().filter(|l| !l.contains(" | ") && l.contains(" ok ")).count(), 2, "{table}");
    assert_ne!(lab.hosts[0].sb.serving_pid("/opt/medctrl/backend", "production"), pid1);
    assert_ne!(lab.hosts[2].sb.serving_pid("/opt/medctrl/backend", "production"), pid3);
    assert_eq!((current(&lab, 0), current(&lab, 2)), (v2[0].clone(), v2[2].clone()), "a restart keeps the release");

    // status of every host, one document.
    let out = lab.relctl(&m, &["--json", "status", "production"]);
    assert!(out.status.success(), "{}", show(&out));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let hosts = doc["hosts"].as_array().unwrap();
    assert_eq!(hosts.len(), 3, "{doc}");
    for (i, h) in hosts.iter().enumerate() {
        assert_eq!(h["host"], format!("h{}", i + 1));
        let b = &h["status"]["builds"][0];
        assert_eq!(b["release"].as_str().unwrap(), current(&lab, i), "{doc}");
        let pid = lab.hosts[i].sb.serving_pid("/opt/medctrl/backend", "production");
        assert_eq!(b["main_pid"].to_string(), pid, "{doc}");
    }
    let table = stdout(&lab.relctl(&m, &["status", "production"]));
    assert_eq!(
        table.lines().filter(|l| l.contains(" production ") && l.contains("active (running)")).count(),
        3,
        "{table}"
    );
}
