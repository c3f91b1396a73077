//! Review builds that sleep when idle (`idle_stop_s`): built, they hold no process; a burst of
//! requests through real nginx wakes one with no failed request, and it sleeps again once idle;
//! relctl's own requests (the gate of a restart) do not wake it for good; a deploy of a sleeping
//! build is verified and it sleeps again; its process sleeps and wakes with it; stop, start and
//! destroy handle the wake units. Needs root; fails (never skips) without it.

use crate::common::env::Env;
use crate::common::scratch::{append, variant};
use crate::common::{show, stdout};

const SNIPPET: &str = "/etc/nginx/relctl-sleep.conf";
const IDLE_S: u64 = 6;

/// The processes (in the whole sandbox) whose working directory is in `build`'s directory: its
/// gunicorn master and workers, its process; each as `pid args`.
fn processes_of(env: &Env, build: &str) -> Vec<String> {
    let dir = format!("/opt/medctrl/backend/{build}/");
    let found = env.sh(&format!(
        "for p in /proc/[0-9]*; do case $(readlink $p/cwd) in {dir}*) echo \"${{p#/proc/}} $(tr '\\0' ' ' < $p/cmdline)\";; esac; done 2>/dev/null || true"
    ));
    found.lines().map(str::to_string).collect()
}

fn status_json(env: &Env, m: &std::path::Path, build: &str) -> serde_json::Value {
    let out = env.relctl_with(m, &["status", build, "--json"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap_or_else(|e| panic!("{e}: {}", show(&out)));
    v["builds"][0].clone()
}

fn wait_asleep(env: &Env, m: &std::path::Path, build: &str) -> serde_json::Value {
    for _ in 0..(IDLE_S * 4 + 20) {
        let s = status_json(env, m, build);
        if !s["sleeping"].is_null() {
            return s;
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    panic!("{build} did not fall asleep: {}\n{}", status_json(env, m, build), env.journal_tail());
}

#[test]
fn idle_review_builds_sleep_wake_on_a_request_and_sleep_again_after_a_deploy() {
    let env = Env::boot();
    let m = variant("sleep", |app| {
        append(
            &app.join("relctl.toml"),
            &format!(
                "\n[processes.ticker]\nexec = \"/bin/sleep 86400\"\n\n[builds.\"pr-*\"]\nroute = \"/review/{{{{ build }}}}\"\nidle_stop_s = {IDLE_S}\n"
            ),
        )
    });
    let port = env.nginx_in_front(&m, SNIPPET);

    // Built, each review build is verified (gate, probation) and then sleeps: no process at all.
    for b in ["pr-1", "pr-2"] {
        let out = env.relctl_with(&m, &["build", b]);
        assert!(out.status.success(), "{}\n{}", show(&out), env.journal_tail());
        assert!(show(&out).contains("sleeps: no request came through"), "{}", show(&out));
        assert_eq!(processes_of(&env, b), Vec::<String>::new(), "{b} holds processes while it sleeps");
    }
    let out = env.relctl_with(&m, &["nginx-snippet", "--output", SNIPPET, "--check", "--reload"]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(env.sh(&format!("cat {SNIPPET}")).contains("unix:/opt/medctrl/backend/pr-1/.relctl-wake.sock:"));
    let out = env.relctl_with(&m, &["status", "pr-1"]);
    assert_eq!(out.status.code(), Some(0), "a sleeping build is as it should be: {}", show(&out));
    let row = stdout(&out).lines().find(|l| l.starts_with("pr-1 ")).unwrap_or_default().to_string();
    assert!(row.contains("sleeping ("), "{}", stdout(&out));
    let s = status_json(&env, &m, "pr-1");
    assert_eq!(s["idle_stop_s"], IDLE_S, "{s}");
    assert!(s["sleeping"]["since"].is_string() && s["main_pid"].is_null(), "{s}");

    // A burst through nginx wakes pr-1: every request answered, none failed.
    let url = format!("http://127.0.0.1:{port}/review/pr-1/x");
    let wrk = env.sh(&format!("wrk -t2 -c8 -d4s --timeout 30s {url}"));
    let requests: u64 =
        wrk.split(" requests in").next().and_then(|l| l.split_whitespace().last()).unwrap().parse().unwrap();
    assert!(requests > 8 && !wrk.contains("Non-2xx") && !wrk.contains("Socket errors"), "{wrk}");
    let page = env.sh(&format!("curl -sS --fail {url}"));
    assert!(page.contains("\"build\": \"pr-1\""), "{page}");
    assert!(env.sh("systemctl is-active medctrl_pr-1_ticker@1.service") == "active", "its process woke with it");
    assert!(status_json(&env, &m, "pr-1")["sleeping"].is_null());

    // relctl's own requests do not count: a restart of sleeping pr-2 wakes it, gates the
    // candidate through its own socket and lets it sleep again; nginx's wake service never ran.
    let out = env.relctl_with(&m, &["restart", "pr-2"]);
    assert!(out.status.success(), "{}\n{}", show(&out), env.journal_tail());
    assert!(show(&out).contains("build slept; started") && show(&out).contains("sleeps: no request"), "{}", show(&out));
    assert_eq!(processes_of(&env, "pr-2"), Vec::<String>::new());
    let ran = env.sh("journalctl -q -u medctrl_wake@pr-2.service --no-pager | grep -c Started || true");
    assert_eq!(ran.trim(), "0", "the wake service of pr-2 ran");

    // Idle for idle_stop_s: pr-1 sleeps again, its process too; the time it fell asleep is shown.
    let s = wait_asleep(&env, &m, "pr-1");
    assert!(s["sleeping"]["for_s"].as_u64().unwrap() < 30, "{s}");
    assert_eq!(processes_of(&env, "pr-1"), Vec::<String>::new());
    assert_eq!(env.sh("systemctl is-active medctrl_pr-1_ticker@1.service || true"), "inactive");

    // A deploy of the sleeping pr-1 under requests: woken, the new release verified in the other
    // instance and handed over; requests came, so it stays awake, then sleeps once idle.
    let before = s["release"].as_str().unwrap().to_string();
    let load = env
        .sb
        .command("wrk")
        .args(["-t1", "-c2", "-d8s", "--timeout", "30s", &url])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let out = env.relctl_with(&m, &["build", "pr-1"]);
    assert!(out.status.success(), "{}\n{}", show(&out), env.journal_tail());
    let wrk = String::from_utf8_lossy(&load.wait_with_output().unwrap().stdout).into_owned();
    assert!(!wrk.contains("Non-2xx") && !wrk.contains("Socket errors"), "{wrk}");
    let after = status_json(&env, &m, "pr-1");
    assert_ne!(after["release"].as_str().unwrap(), before, "{after}");
    let page = env.sh(&format!("curl -sS --fail {url}"));
    assert!(page.contains(after["release"].as_str().unwrap()), "{page}");
    let s = wait_asleep(&env, &m, "pr-1");
    assert_eq!(s["release"], after["release"], "{s}");
    assert_eq!(processes_of(&env, "pr-1"), Vec::<String>::new());

    // Stopped, a build is not woken by a request; started, it is verified and sleeps.
    let out = env.relctl_with(&m, &["stop", "pr-1"]);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(env.sh("systemctl is-active medctrl_wake@pr-1.socket || true"), "inactive");
    let code = env.sh(&format!("curl -s -o /dev/null -w '%{{http_code}}' {url} || true"));
    assert_eq!(code, "502", "a stopped build answers nginx's 502");
    let out = env.relctl_with(&m, &["start", "pr-1"]);
    assert!(out.status.success() && show(&out).contains("sleeps: no request"), "{}", show(&out));
    assert!(env.sh(&format!("curl -sS --fail {url}")).contains("\"build\": \"pr-1\""));

    // Destroyed, nothing of its wake units is left.
    let out = env.relctl_with(&m, &["destroy", "pr-2"]);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(env.sh("systemctl list-units --all --plain --no-legend 'medctrl_wake@pr-2*' | wc -l"), "0");
    assert_eq!(env.sh("ls /etc/systemd/system | grep -c 'wake@pr-2' || true"), "0");
}

/// A power cut while a build sleeps on its next instance (whose socket systemd listens on only
/// until the next boot): after the boot, nothing of the build runs, and the first request through
/// nginx wakes it on main's socket and is answered with the same release.
#[test]
fn a_build_asleep_on_next_wakes_after_a_power_cut() {
    use crate::common::env::binds;
    use crate::common::sandbox::Sandbox;
    let disk = crate::common::scratch::scratch_dir("sleep-power").join("disk");
    std::fs::create_dir_all(&disk).unwrap();
    let m = variant("sleep-power", |app| {
        append(&app.join("relctl.toml"), "\n[builds.\"pr-*\"]\nroute = \"/review/{{ build }}\"\nidle_stop_s = 600\n")
    });
    let mut env = Env { sb: Sandbox::boot_disk(&binds(), &disk, None, &[]) };
    for _ in 0..2 {
        let out = env.relctl_with(&m, &["build", "pr-1"]);
        assert!(out.status.success() && show(&out).contains("sleeps:"), "{}\n{}", show(&out), env.journal_tail());
    }
    assert_eq!(env.sh("readlink /opt/medctrl/backend/pr-1/gunicorn.sock"), ".relctl-next.sock");
    let release = status_json(&env, &m, "pr-1")["release"].as_str().unwrap().to_string();
    let port = env.nginx_in_front(&m, SNIPPET);
    env.sh("systemctl enable -q nginx");
    env.sb.kill();
    env.sb = Sandbox::boot_disk(&binds(), &disk, Some("multi-user.target"), &["nginx.service"]);
    assert_eq!(processes_of(&env, "pr-1"), Vec::<String>::new(), "asleep after the boot too");
    // What makes it hard: the public socket still names next's socket, whose file is there with
    // nothing listening on it.
    assert_eq!(env.sh("readlink /opt/medctrl/backend/pr-1/gunicorn.sock"), ".relctl-next.sock");
    assert_eq!(env.sh("test -S /opt/medctrl/backend/pr-1/.relctl-next.sock && echo there"), "there");
    assert_eq!(env.sh("systemctl is-active medctrl_next@pr-1.socket || true"), "inactive");
    let page = env.sh(&format!("curl -sS --fail --max-time 60 http://127.0.0.1:{port}/review/pr-1/x"));
    assert!(page.contains(&release), "{page}");
    assert_eq!(env.sh("readlink /opt/medctrl/backend/pr-1/gunicorn.sock"), ".relctl-live.sock");
    assert!(status_json(&env, &m, "pr-1")["sleeping"].is_null(), "awake now");
    drop(env);
    std::fs::remove_dir_all(&disk).unwrap();
}
