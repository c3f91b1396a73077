//! `relctl logs`: a build's journal, from both its instances, as people and programs read it;
//! filtered, followed live, coloured only on a terminal, and refused clearly to users who may
//! not read it. Needs root; fails (never skips) without it.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::env::{example_manifest, Env, RELCTL, REPO};
use crate::common::{show, stderr, stdout};

const UNITS: [&str; 4] = [
    "medctrl@development.service",
    "medctrl@development.socket",
    "medctrl_next@development.service",
    "medctrl_next@development.socket",
];

/// The lines of human output whose instance column is `instance`.
fn of<'a>(out: &'a str, instance: &str) -> Vec<&'a str> {
    out.lines().filter(|l| l.split_whitespace().nth(2) == Some(instance)).collect()
}

fn has(lines: &[&str], text: &str) -> bool {
    lines.iter().any(|l| l.contains(text))
}

#[test]
fn logs_of_both_instances_filtered_as_json_and_followed() {
    let env = Env::boot();
    env.ok(&["build", "development"]);
    // A restart runs the current release in the other instance (next): both instances wrote.
    env.ok(&["restart", "development"]);

    // -- people: one line an entry, time, instance, message; no colour into a pipe ------------
    let out = env.ok(&["logs", "development", "-n", "200"]);
    let (main, next) = (of(&out, "main"), of(&out, "next"));
    assert_eq!(main.len() + next.len(), out.lines().count(), "every line names its instance:\n{out}");
    for (lines, sock) in [(&main, ".relctl-live.sock"), (&next, ".relctl-next.sock")] {
        assert!(has(lines, "[INFO] Starting gunicorn"), "gunicorn's startup, {sock}:\n{out}");
        assert!(has(lines, &format!("[INFO] Listening at: unix:/opt/medctrl/backend/development/{sock}")), "{out}");
    }
    assert!(has(&next, "Started medctrl_next@development.service"), "systemd's messages too:\n{out}");
    assert!(has(&main, "Listening on medctrl@development.socket"), "the socket unit's too:\n{out}");
    let first = out.lines().next().unwrap();
    assert!(
        jiff::civil::DateTime::strptime("%Y-%m-%d %H:%M:%S%.f", &first[..23]).is_ok(),
        "starts with the time: {first}"
    );
    assert!(!out.contains('\u{1b}'), "no escape sequences when stdout is not a terminal:\n{out}");
    assert_eq!(env.ok(&["logs", "development", "-n", "3"]).lines().count(), 3, "--lines");

    // -- programs: one JSON object a line, each naming its unit --------------------------------
    let out = env.ok(&["--json", "logs", "development", "-n", "200"]);
    let records: Vec<Value> =
        out.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}"))).collect();
    assert!(records.len() > 10, "{out}");
    for r in &records {
        let unit = r["unit"].as_str().unwrap_or_else(|| panic!("no unit: {r}"));
        assert!(UNITS.contains(&unit), "{r}");
        let instance = if unit.starts_with("medctrl_next@") { "next" } else { "main" };
        assert_eq!(r["instance"], instance, "{r}");
        assert!(r["time"].as_str().unwrap().parse::<jiff::Timestamp>().is_ok(), "{r}");
        assert!(r["message"].is_string() && r["priority"].is_u64() && r["pid"].is_u64(), "{r}");
    }
    for unit in ["medctrl@development.service", "medctrl_next@development.service"] {
        assert!(
            records.iter().any(|r| r["unit"] == unit && r["message"].as_str().unwrap().contains("Starting gunicorn")),
            "{unit} in:\n{out}"
        );
    }

    // -- --since: journalctl's syntax; nothing after now; journalctl's own refusal, exit 1 -----
    let out = env.relctl(&["logs", "development", "--since", "2099-01-01 00:00:00"]);
    assert!(out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(), "{}", show(&out));
    assert!(!env.ok(&["logs", "development", "--since", "-1h"]).is_empty(), "relative times pass through");
    let out = env.relctl(&["logs", "development", "--since", "the day after tomorrow"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert_eq!(
        stderr(&out),
        "relctl: reading the journal of medctrl development: journalctl failed (exit status: 1): Failed to parse \
         timestamp: the day after tomorrow\n"
    );

    // -- an undeclared build: the usage error every command gives -----------------------------
    let out = env.relctl(&["logs", "staging"]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(out.stdout.is_empty(), "{}", show(&out));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("relctl: build \"staging\" is not declared in ") && err.contains("development"), "{err}");

    // -- without root: refused clearly unless in the systemd-journal or adm group -------------
    env.sh(&format!(
        "mkdir /tmp/nobody && cp {RELCTL} /tmp/nobody/relctl && cp -a {REPO}/examples/medctrl /tmp/nobody/ && \
         rm -rf /tmp/nobody/medctrl/.venv && chmod -R a+rX /tmp/nobody"
    ));
    let as_nobody = |groups: &str| {
        env.sb.run(
            "setpriv",
            &[
                "--reuid=65534",
                "--regid=65534",
                groups,
                "/tmp/nobody/relctl",
                "-f",
                "/tmp/nobody/medctrl/relctl.toml",
                "logs",
                "development",
            ],
        )
    };
    let out = as_nobody("--clear-groups");
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert_eq!(
        stderr(&out),
        "relctl: reading the journal of medctrl development: journalctl cannot read the system journal as this user \
         (No journal files were opened due to insufficient permissions.): run relctl logs as root (sudo), or as a \
         member of the systemd-journal or adm group\n"
    );
    let out = as_nobody("--groups=systemd-journal");
    assert!(out.status.success() && stdout(&out).contains("Starting gunicorn"), "{}", show(&out));

    // -- --follow streams: an entry written after it started shows up while it runs ----------
    let mut follow = env
        .sb
        .command("sh")
        .args(["-c", &format!("echo $$; exec {RELCTL} -f {} logs development -F -n 1", example_manifest().display())])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, lines) = mpsc::channel();
    let reader = BufReader::new(follow.stdout.take().unwrap());
    std::thread::spawn(move || {
        for line in reader.lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let next = |what: &str| {
        lines.recv_timeout(Duration::from_secs(30)).unwrap_or_else(|e| panic!("no {what} within 30 s: {e}"))
    };
    let pid = next("pid");
    // The last entry so far: journalctl is reading, and follows from there.
    next("first entry");
    env.ok(&["reload", "development"]);
    let mut seen = Vec::new();
    while !seen.iter().any(|l: &String| l.contains("[INFO] Handling signal: hup")) {
        match lines.recv_timeout(Duration::from_secs(30)) {
            Ok(line) => seen.push(line),
            Err(e) => panic!("the reload's entry did not show within 30 s ({e}); saw:\n{}", seen.join("\n")),
        }
    }
    assert!(follow.try_wait().unwrap().is_none(), "still following");
    env.sh(&format!("kill {pid}"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while follow.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "relctl logs -F outlived SIGTERM by 10 s");
        std::thread::sleep(Duration::from_millis(50));
    }

    // -- colour on a terminal: gunicorn's [ERROR] (at info priority) in red; not with NO_COLOR -
    let main = env.main_pid("development");
    let worker = env.sh(&format!("cat /proc/{main}/task/*/children | tr ' ' '\\n' | head -1"));
    env.sh(&format!("kill -KILL {worker}"));
    let killed = format!("[ERROR] Worker (pid:{worker}) was sent SIGKILL!");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !env.ok(&["logs", "development", "-n", "20"]).contains(&killed) {
        assert!(Instant::now() < deadline, "gunicorn did not log {killed:?} within 20 s");
        std::thread::sleep(Duration::from_millis(200));
    }
    let on_terminal = |no_color: &str| {
        env.sh(&format!(
            "NO_COLOR={no_color} script -qec '{RELCTL} -f {} logs development -n 20' /dev/null",
            example_manifest().display()
        ))
    };
    let out = on_terminal("");
    let line = out.lines().find(|l| l.contains(&killed)).unwrap_or_else(|| panic!("{out}"));
    assert!(line.starts_with("\u{1b}[31m") && line.trim_end().ends_with("\u{1b}[0m"), "red: {line:?}");
    let plain = out.lines().find(|l| l.contains("Booting worker")).unwrap_or_else(|| panic!("{out}"));
    assert!(!plain.contains('\u{1b}'), "info stays plain: {plain:?}");
    let out = on_terminal("1");
    assert!(out.contains(&killed) && !out.contains('\u{1b}'), "NO_COLOR=1: no colour: {out:?}");
}
