//! A throw-away systemd for end-to-end tests.
//!
//! [`Sandbox::boot`] runs `tests/sandbox/boot.sh`, which starts a real systemd as PID 1 of its
//! own pid/mount/uts/ipc/cgroup namespaces, on an overlay of the host's `/` whose upper layer is
//! a tmpfs, with private `/tmp`, `/run` and `/dev`. Nothing it writes reaches the host except
//! inside the directories passed to `boot` (bind mounted at the same path). The network is the
//! host's. Dropping the [`Sandbox`] SIGKILLs its systemd, which tears down the whole namespace.
//! [`Sandbox::boot_disk`] puts the upper layer on a host directory instead, a disk that outlives
//! the sandbox: killing it is a power cut, and the next `boot_disk` of the same disk a reboot.
//! See `tests/sandbox/README.md`.
//!
//! Needs root. Without it (or on any other problem) `boot` panics with the reason; it never
//! skips.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::{show, stdout};

const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Environment variables passed through from the test process to commands run inside.
const PASS_ENV: &[&str] = &["RUST_BACKTRACE", "RUST_LOG", "RUST_LIB_BACKTRACE"];

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sandbox").join(name)
}

/// A running sandboxed systemd. Killed on drop.
pub struct Sandbox {
    /// Host PID of the sandbox's systemd (PID 1 inside).
    pub pid: u32,
    killed: bool,
}

impl Sandbox {
    /// Boots a sandbox sharing the given host directories (read-write, same path inside).
    /// Returns once systemd inside is `running` (or `degraded`, with a warning on stderr).
    ///
    /// Panics with the reason on failure (not root, unshare failed, systemd did not come up,
    /// ...). Also kills the sandbox when this test process exits without dropping it.
    pub fn boot(binds: &[&Path]) -> Sandbox {
        Sandbox::boot_with(binds, false)
    }

    /// Like [`boot`](Self::boot); with `net`, the sandbox has a network namespace of its own with
    /// only `lo` (see `common::lab`, which joins such sandboxes with a bridge).
    pub fn boot_with(binds: &[&Path], net: bool) -> Sandbox {
        Sandbox::boot_opts(binds, net, None, None, &[])
    }

    /// Like [`boot`](Self::boot), on a disk that outlives the sandbox: the overlay's upper and
    /// work dirs live in the host directory `disk` (empty, or a disk an earlier `boot_disk` wrote;
    /// keep it below a scratch dir, and remove it yourself). A second `boot_disk` of the same
    /// disk boots over what the first one wrote, with a fresh /tmp and /run, as a machine
    /// reboots; [`kill`](Self::kill) in between is a power cut. With `unit` (e.g.
    /// `multi-user.target`), the boot starts that unit too, so what is enabled on the disk
    /// starts as on a real boot; the services the host enables into multi-user.target (sshd, a
    /// database) stay masked, but those in `keep` (e.g. `nginx.service`).
    pub fn boot_disk(binds: &[&Path], disk: &Path, unit: Option<&str>, keep: &[&str]) -> Sandbox {
        Sandbox::boot_opts(binds, false, Some(disk), unit, keep)
    }

    fn boot_opts(binds: &[&Path], net: bool, disk: Option<&Path>, unit: Option<&str>, keep: &[&str]) -> Sandbox {
        let boot = script("boot.sh");
        assert!(boot.is_file(), "sandbox: {} not found", boot.display());
        let mut cmd = Command::new(&boot);
        if net {
            cmd.arg("--net");
        }
        for b in binds {
            cmd.arg("--bind").arg(b);
        }
        if let Some(disk) = disk {
            cmd.arg("--disk").arg(disk);
        }
        if let Some(unit) = unit {
            cmd.arg("--unit").arg(unit);
        }
        for k in keep {
            cmd.arg("--keep").arg(k);
        }
        cmd.arg("--watch").arg(std::process::id().to_string());
        cmd.stdin(Stdio::null());
        let started = Instant::now();
        let out = cmd.output().unwrap_or_else(|e| panic!("sandbox: cannot run {}: {e}", boot.display()));
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() {
            panic!("sandbox: boot failed ({}): {}", out.status, stderr.trim());
        }
        let pid: u32 = stdout.trim().parse().unwrap_or_else(|_| {
            panic!("sandbox: boot.sh printed {stdout:?} instead of a pid; stderr: {}", stderr.trim())
        });
        if !stderr.trim().is_empty() {
            eprintln!("{}", stderr.trim());
        }
        eprintln!("sandbox: booted pid {pid} in {:.2}s", started.elapsed().as_secs_f64());
        Sandbox { pid, killed: false }
    }

    /// How long ago the sandbox's systemd started (its start time in /proc, in the kernel's
    /// clock ticks: 10 ms).
    pub fn since_start(&self) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid)).unwrap();
        // "pid (comm) S ppid ...": starttime is field 22, the 20th after the comm.
        let after = stat.rsplit_once(") ").map(|(_, rest)| rest).unwrap_or_default();
        let ticks: f64 = after.split(' ').nth(19).and_then(|t| t.parse().ok()).unwrap();
        let uptime: f64 =
            std::fs::read_to_string("/proc/uptime").unwrap().split(' ').next().and_then(|u| u.parse().ok()).unwrap();
        Duration::from_secs_f64((uptime - ticks / 100.0).max(0.0))
    }

    /// A `Command` that runs `program` inside all of the sandbox's namespaces
    /// (`nsenter -t PID -a`), with a clean environment (PATH, LANG, HOME; no colors, no pager),
    /// stdin from /dev/null and working directory `/`. For custom env/stdin; most tests want
    /// [`run`](Self::run) or [`sh`](Self::sh).
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("nsenter");
        c.arg("-t").arg(self.pid.to_string()).arg("-a").arg("--").arg(program);
        c.env_clear()
            .env("PATH", PATH)
            .env("LANG", "C.UTF-8")
            .env("HOME", "/root")
            .env("USER", "root")
            .env("TERM", "dumb")
            .env("SYSTEMD_COLORS", "0")
            .env("SYSTEMD_PAGER", "")
            .env("SYSTEMD_LESS", "");
        for k in PASS_ENV {
            if let Some(v) = std::env::var_os(k) {
                c.env(k, v);
            }
        }
        c.stdin(Stdio::null());
        c
    }

    /// Runs `program args...` inside the sandbox and returns its output. Panics only if nsenter
    /// itself cannot be spawned; check `status` yourself.
    pub fn run(&self, program: &str, args: &[&str]) -> Output {
        self.command(program)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("sandbox {}: cannot run nsenter for {program}: {e}", self.pid))
    }

    /// `sh -c script` inside the sandbox.
    pub fn sh(&self, script: &str) -> Output {
        self.run("sh", &["-c", script])
    }

    /// `sh -c script` inside the sandbox; asserts it succeeds and returns its stdout, trimmed.
    pub fn sh_ok(&self, script: &str) -> String {
        let out = self.sh(script);
        assert!(out.status.success(), "in sandbox {}: sh -c {script:?} failed: {}", self.pid, show(&out));
        stdout(&out)
    }

    /// `systemctl is-active --quiet unit` inside the sandbox.
    /// The main PID of the instance that serves `build` under `root`: `medctrl@<build>` or
    /// `medctrl_next@<build>`, whichever its public socket (`gunicorn.sock`) points at.
    pub fn serving_pid(&self, root: &str, build: &str) -> String {
        self.sh_ok(&format!(
            "case $(readlink {root}/{build}/gunicorn.sock) in .relctl-next.sock) u=medctrl_next;; *) u=medctrl;; esac; systemctl show -P MainPID $u@{build}.service"
        ))
    }

    pub fn is_active(&self, unit: &str) -> bool {
        self.run("systemctl", &["is-active", "--quiet", unit]).status.success()
    }

    /// The last `lines` journal lines of `unit` (stdout and stderr of journalctl), for failure
    /// messages.
    pub fn journal(&self, unit: &str, lines: usize) -> String {
        let n = lines.to_string();
        let out = self.run("journalctl", &["-u", unit, "-n", &n, "--no-pager", "-o", "short-precise"]);
        let mut s = String::from_utf8_lossy(&out.stdout).into_owned();
        s.push_str(&String::from_utf8_lossy(&out.stderr));
        s
    }

    /// The last `lines` lines of the whole journal.
    pub fn journal_all(&self, lines: usize) -> String {
        let n = lines.to_string();
        let out = self.run("journalctl", &["-n", &n, "--no-pager", "-o", "short-precise"]);
        let mut s = String::from_utf8_lossy(&out.stdout).into_owned();
        s.push_str(&String::from_utf8_lossy(&out.stderr));
        s
    }

    /// SIGKILLs the sandbox's systemd and waits until the sandbox is gone (all its processes,
    /// hence its mounts) and its cgroup is removed. Idempotent; `Drop` calls it.
    pub fn kill(&mut self) {
        if self.killed {
            return;
        }
        self.killed = true;
        let kill = script("kill.sh");
        match Command::new(&kill).arg(self.pid.to_string()).stdin(Stdio::null()).output() {
            Ok(o) if o.status.success() => {}
            Ok(o) => {
                eprintln!(
                    "sandbox {}: kill.sh failed ({}): {}; sending SIGKILL directly",
                    self.pid,
                    o.status,
                    String::from_utf8_lossy(&o.stderr).trim()
                );
                let _ = Command::new("kill").args(["-KILL", &self.pid.to_string()]).status();
            }
            Err(e) => {
                eprintln!("sandbox {}: cannot run {}: {e}; sending SIGKILL directly", self.pid, kill.display());
                let _ = Command::new("kill").args(["-KILL", &self.pid.to_string()]).status();
            }
        }
        // Belt and braces: wait for the pid to disappear (or become a zombie).
        let deadline = Instant::now() + Duration::from_secs(20);
        while alive(self.pid) {
            if Instant::now() > deadline {
                eprintln!("sandbox {}: still alive 20s after SIGKILL", self.pid);
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            // "pid (comm) S ..." -- comm may contain spaces and parentheses
            let state = stat.rsplit_once(") ").map(|(_, rest)| rest.chars().next()).unwrap_or(None);
            !matches!(state, Some('Z') | Some('X'))
        }
        Err(_) => false,
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if std::thread::panicking() && !self.killed {
            // Shown with the failing test's output.
            eprintln!("--- sandbox {} journal (last 60 lines) ---\n{}", self.pid, self.journal_all(60));
        }
        self.kill();
    }
}
