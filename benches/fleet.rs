//! Benchmark: a rolling deploy of 3 hosts, `--serial 1` against `--serial 3`: wall seconds, and
//! what each host's users saw through its nginx (failed requests, throughput against a steady
//! window of the same host right before). The hosts are the end-to-end tests' lab (three systemd
//! sandboxes in their own network namespaces with real sshd and nginx; tests/e2e/common/lab.rs).
//! Run it with scripts/bench-fleet (root).

#[allow(dead_code)]
#[path = "../tests/e2e/common/mod.rs"]
mod common;

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::lab::{offline_example, Lab};
use common::scratch::{append, replace};
use common::show;

const SNIPPET: &str = "/etc/nginx/relctl-bench.conf";
const CONNECTIONS_PER_HOST: &str = "-c4";

fn wrk(lab: &Lab, i: usize, seconds: u64) -> Child {
    let url = format!("http://{}:8080/prod/x", lab.hosts[i].addr);
    lab.command("wrk")
        .args(["-t1", CONNECTIONS_PER_HOST, &format!("-d{seconds}s"), "--timeout", "10s", &url])
        .stdout(Stdio::piped())
        .spawn()
        .expect("wrk runs (apt-get install wrk)")
}

/// requests, failed (non-2xx/3xx and socket errors), requests/s of a wrk report.
fn parse(report: &str) -> (u64, u64, f64) {
    let requests = report.split(" requests in").next().unwrap().rsplit(' ').next().unwrap().trim().parse().unwrap();
    let number_after = |key: &str| -> u64 {
        report.split(key).nth(1).map_or(0, |rest| {
            rest.split(|c: char| !c.is_ascii_digit())
                .filter(|s| !s.is_empty())
                .take(4)
                .map(|n| n.parse::<u64>().unwrap())
                .sum()
        })
    };
    let failed = number_after("Non-2xx or 3xx responses:") + number_after("Socket errors:");
    let rps = report.split("Requests/sec:").nth(1).unwrap().split_whitespace().next().unwrap().parse().unwrap();
    (requests, failed, rps)
}

fn main() {
    let lab = Lab::boot("bench-fleet", 3);
    let m = offline_example("bench-fleet");
    let app = m.parent().unwrap().to_path_buf();
    append(&m, "\n[builds.production]\nroute = \"/prod\"\nhosts = [\"h1\", \"h2\", \"h3\"]\n");
    let views = app.join("API/api_settings/views.py");
    replace(&views, "\"build\": settings.RELCTL_BUILD,", "\"build\": settings.RELCTL_BUILD, \"version\": \"v0\",");
    for h in &lab.hosts {
        h.sb.sh_ok(&format!(
            "rm -f /etc/nginx/sites-enabled/*; : > {SNIPPET}
printf 'server {{\\n  listen 8080 default_server;\\n  include {SNIPPET};\\n}}\\n' > /etc/nginx/sites-enabled/bench
systemctl start nginx"
        ));
    }
    let out = lab.relctl(&m, &["-q", "build", "production"]);
    assert!(out.status.success(), "{}", show(&out));
    for h in ["h1", "h2", "h3"] {
        let out = lab.relctl(&m, &["-H", h, "nginx-snippet", "--output", SNIPPET, "--reload"]);
        assert!(out.status.success(), "{}", show(&out));
    }
    for i in 0..3 {
        wrk(&lab, i, 3).wait_with_output().unwrap(); // warm up
    }

    println!("rolling deploy of 3 hosts (a new release each), wrk {CONNECTIONS_PER_HOST} per host through its nginx");
    println!(
        "{:<12} {:>8}   {:<4} {:>9} {:>7} {:>9} {:>10}",
        "roll", "wall s", "host", "requests", "failed", "req/s", "vs steady"
    );
    for (n, serial) in ["1", "3"].iter().enumerate() {
        replace(&views, &format!("\"version\": \"v{n}\","), &format!("\"version\": \"v{}\",", n + 1));
        let steady: Vec<(u64, u64, f64)> = (0..3)
            .map(|i| wrk(&lab, i, 10))
            .collect::<Vec<_>>()
            .into_iter()
            .map(|w| parse(&String::from_utf8_lossy(&w.wait_with_output().unwrap().stdout)))
            .collect();
        let loads: Vec<Child> = (0..3).map(|i| wrk(&lab, i, 600)).collect();
        std::thread::sleep(Duration::from_secs(1));
        let t = Instant::now();
        let out = lab.relctl(&m, &["-q", "--serial", serial, "build", "production"]);
        let wall = t.elapsed().as_secs_f64();
        std::thread::sleep(Duration::from_secs(1));
        assert!(out.status.success(), "{}", show(&out));
        for (i, w) in loads.into_iter().enumerate() {
            let (requests, failed, rps) = parse(&String::from_utf8_lossy(&common::stop_wrk(w).stdout));
            let ratio = 100.0 * rps / steady[i].2;
            let label = if i == 0 { format!("--serial {serial}") } else { String::new() };
            let wall = if i == 0 { format!("{wall:.1}") } else { String::new() };
            println!("{label:<12} {wall:>8}   h{:<3} {requests:>9} {failed:>7} {rps:>9.0} {ratio:>9.0}%", i + 1);
        }
    }
}
