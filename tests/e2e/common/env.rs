//! What every end-to-end test needs: a booted sandbox, relctl run inside it, and the checks a
//! user would make (responses through sockets, PIDs, file listings).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;

use super::sandbox::Sandbox;
use super::show;

pub const RELCTL: &str = env!("CARGO_BIN_EXE_relctl");
pub const REPO: &str = env!("CARGO_MANIFEST_DIR");

/// The example's `root`.
const ROOT: &str = "/opt/medctrl/backend";

pub fn example_manifest() -> PathBuf {
    Path::new(REPO).join("examples/medctrl/relctl.toml")
}

/// What every sandbox shares with the host: the checkout and the target dir (relctl and the
/// scratch copies; on its own when CARGO_TARGET_DIR puts it elsewhere).
pub fn binds() -> Vec<&'static Path> {
    let repo = Path::new(REPO);
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).parent().unwrap();
    let mut binds = vec![repo];
    if !target.starts_with(repo) {
        binds.push(target);
    }
    binds
}

pub struct Env {
    pub sb: Sandbox,
}

impl Env {
    /// Boots a sandbox sharing the checkout and the target dir (relctl and the scratch copies;
    /// shared on its own when CARGO_TARGET_DIR puts it elsewhere).
    pub fn boot() -> Env {
        Env { sb: Sandbox::boot(&binds()) }
    }

    /// Runs relctl inside the sandbox with the example manifest (or `manifest`).
    pub fn relctl_with(&self, manifest: &Path, args: &[&str]) -> Output {
        let mut all = vec!["-f", manifest.to_str().unwrap()];
        all.extend_from_slice(args);
        self.sb.run(RELCTL, &all)
    }

    pub fn relctl(&self, args: &[&str]) -> Output {
        self.relctl_with(&example_manifest(), args)
    }

    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.relctl(args);
        assert!(out.status.success(), "relctl {args:?} failed: {}\n{}", show(&out), self.journal_tail());
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn journal_tail(&self) -> String {
        format!(
            "--- journal development ---\n{}\n--- journal testing ---\n{}",
            self.sb.journal("medctrl@development.service", 30),
            self.sb.journal("medctrl@testing.service", 30)
        )
    }

    /// GET through the build's socket, as nginx would; returns the JSON body.
    pub fn get(&self, build: &str, path: &str) -> Value {
        let sock = format!("/opt/medctrl/backend/{build}/gunicorn.sock");
        let out = self
            .sb
            .run("curl", &["-sS", "--fail", "--max-time", "10", "--unix-socket", &sock, &format!("http://x{path}")]);
        assert!(out.status.success(), "GET {path} via {sock} failed: {}\n{}", show(&out), self.journal_tail());
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("GET {path} via {sock}: not JSON ({e}): {}", show(&out)))
    }

    /// The main PID of the instance that serves `build`: the one its public socket points at.
    pub fn main_pid(&self, build: &str) -> u32 {
        self.main_pid_in(ROOT, build)
    }

    /// [`Env::main_pid`] of a build under another root than the example's.
    pub fn main_pid_in(&self, root: &str, build: &str) -> u32 {
        self.sb.serving_pid(root, build).parse().unwrap()
    }

    /// `medctrl@<build>.service` or `medctrl_next@<build>.service`, whichever the public socket
    /// (`gunicorn.sock`, a symlink) points at.
    pub fn serving_unit(&self, build: &str) -> String {
        self.serving_unit_in(ROOT, build)
    }

    pub fn serving_unit_in(&self, root: &str, build: &str) -> String {
        let link = self.sh(&format!("readlink {root}/{build}/gunicorn.sock"));
        match link.as_str() {
            ".relctl-next.sock" => format!("medctrl_next@{build}.service"),
            ".relctl-live.sock" => format!("medctrl@{build}.service"),
            other => panic!("the public socket of {build} points at {other:?}"),
        }
    }

    pub fn sh(&self, script: &str) -> String {
        self.sb.sh_ok(script)
    }

    /// Puts nginx in front of `manifest`'s builds: a server on a free loopback port that includes
    /// `snippet` (nothing else served), nginx started, then `relctl nginx-snippet --output
    /// <snippet> --check --reload`. Returns the port.
    pub fn nginx_in_front(&self, manifest: &Path, snippet: &str) -> u16 {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        self.sh(&format!(
            "rm -f /etc/nginx/sites-enabled/*; : > {snippet}
printf 'server {{\\n  listen 127.0.0.1:{port} default_server;\\n  include {snippet};\\n}}\\n' > /etc/nginx/sites-enabled/relctl-test
systemctl start nginx"
        ));
        let out = self.relctl_with(manifest, &["nginx-snippet", "--output", snippet, "--check", "--reload"]);
        assert!(out.status.success(), "{}", show(&out));
        port
    }

    /// Every path under /opt/medctrl, /etc/systemd/system and /var/lib/medctrl with its type,
    /// mode and owner, files' mtimes, and where symlinks point (venvs left out for brevity).
    pub fn snapshot(&self) -> Snapshot {
        Snapshot(self.sh(
            "find /opt/medctrl /etc/systemd/system /var/lib/medctrl -name .venv -prune -o \\( -type d -printf '%p d %m %u:%g\\n' \\) -o -printf '%p %y %m %u:%g %T@ %l\\n' 2>/dev/null | sort",
        ))
    }
}

/// A listing of files; compared, it shows only the lines that differ.
#[derive(PartialEq)]
pub struct Snapshot(String);

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "<{} paths>", self.0.lines().count())
    }
}

pub fn assert_unchanged(before: &Snapshot, after: &Snapshot, what: &str) {
    // Sets, not nested scans: a listing with a dependency entry (a venv) has thousands of lines.
    let (was, now): (HashSet<&str>, HashSet<&str>) = (before.0.lines().collect(), after.0.lines().collect());
    let gone: Vec<&str> = before.0.lines().filter(|l| !now.contains(l)).collect();
    let new: Vec<&str> = after.0.lines().filter(|l| !was.contains(l)).collect();
    assert!(
        gone.is_empty() && new.is_empty(),
        "{what} changed files:\n- {}\n+ {}",
        gone.join("\n- "),
        new.join("\n+ ")
    );
}
