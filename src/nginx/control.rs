//! Installing the snippet safely: validated with the host's `nginx -t` inside a throwaway
//! wrapper, written atomically, nginx reloaded and its new workers awaited, the previous file put
//! back when any of it fails.

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use fs_err as fs;

use crate::host::atomic;
use crate::systemd::dbus::Systemd;
use crate::systemd::manager::Manager;
use crate::systemd::unit::{JobKind, LoadState};

/// Where a file of relctl's is included in nginx's configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Include {
    /// Inside a `server {}` block: `nginx-snippet`'s locations.
    Server,
    /// Inside `http {}`: `relctl site`'s server blocks.
    Http,
}

/// Validates `text` with the host's `nginx -t`, inside a throwaway wrapper config (a server
/// block that includes only the snippet), so a broken snippet never replaces a working one.
pub fn check(text: &str) -> Result<()> {
    check_in(text, Include::Server)
}

/// [`check`] for a file included in `context`.
pub fn check_in(text: &str, context: Include) -> Result<()> {
    let nginx = nginx_binary()?;
    let dir =
        tempfile::Builder::new().prefix("relctl-nginx-check-").tempdir().context("creating a temp dir for nginx -t")?;
    let dir = dir.path();
    let snippet_path = dir.join("snippet.conf");
    fs::write(&snippet_path, text)?;
    let body = match context {
        Include::Server => {
            format!(
                "    server {{\n        listen 127.0.0.1:9 default_server;\n        include {};\n    }}\n",
                snippet_path.display()
            )
        }
        Include::Http => format!("    include {};\n", snippet_path.display()),
    };
    let conf = format!(
        "pid {dir}/nginx.pid;\nerror_log {dir}/error.log;\nevents {{}}\nhttp {{\n    access_log off;\n{body}}}\n",
        dir = dir.display(),
    );
    fs::write(dir.join("nginx.conf"), conf)?;
    let out = Command::new(&nginx)
        .arg("-t")
        .arg("-q")
        .arg("-e")
        .arg(dir.join("error.log"))
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(dir.join("nginx.conf"))
        .output()
        .with_context(|| format!("running {} -t", nginx.display()))?;
    if !out.status.success() {
        let msg = String::from_utf8_lossy(&out.stderr);
        let msg = msg
            .lines()
            .find(|l| l.contains("[emerg]") || l.contains("[error]"))
            .unwrap_or(msg.trim())
            .replace(&snippet_path.display().to_string(), "snippet");
        let what = match context {
            Include::Server => "the snippet",
            Include::Http => "the site's server blocks",
        };
        bail!("nginx -t rejected {what}: {}", msg.trim());
    }
    Ok(())
}

/// Runs the host's full `nginx -t` (with the new file in place).
fn test_host_config() -> Result<()> {
    let nginx = nginx_binary()?;
    let out =
        Command::new(&nginx).args(["-t", "-q"]).output().with_context(|| format!("running {} -t", nginx.display()))?;
    if !out.status.success() {
        let msg = String::from_utf8_lossy(&out.stderr);
        let line = msg.lines().find(|l| l.contains("[emerg]")).unwrap_or(msg.trim()).to_string();
        bail!("nginx -t failed with the new file in place: {line}");
    }
    Ok(())
}

fn nginx_binary() -> Result<PathBuf> {
    which::which("nginx")
        .or_else(|_| which::which_in("nginx", Some("/usr/sbin:/usr/local/sbin:/usr/local/nginx/sbin"), "/"))
        .context("nginx not found in PATH or /usr/sbin (install it, e.g. apt-get install nginx)")
}

/// What [`install`] does after writing the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Steps {
    /// Run the host's full `nginx -t`.
    pub check: bool,
    /// Reload nginx and wait until it serves the new configuration.
    pub reload: bool,
}

/// Installs the snippet at `path` as one transaction: write it atomically (mode 0644), then the
/// `steps`. If a step after the write fails, the previous file is put back.
pub fn install(path: &Path, text: &str, steps: Steps) -> Result<()> {
    let previous = Previous::read(path)?;
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        if !parent.is_dir() {
            bail!("cannot write {}: directory {} does not exist", path.display(), parent.display());
        }
    }
    atomic::write(path, text.as_bytes(), 0o644, None)?;
    let live = (|| -> Result<()> {
        if steps.check {
            test_host_config()?;
        }
        if steps.reload {
            self::reload()?;
        }
        Ok(())
    })();
    if let Err(e) = live {
        previous.restore().with_context(|| format!("putting the previous {} back", path.display()))?;
        return Err(e.context(format!("{} restored to its previous contents", path.display())));
    }
    Ok(())
}

/// Reloads nginx — over D-Bus when nginx.service is an active systemd unit, else with
/// `nginx -s reload` — and waits until the new workers serve (nginx answers a reload before its
/// master has applied the configuration, and a failed reload keeps its old workers).
pub fn reload() -> Result<()> {
    // No system bus (nginx run by hand, outside systemd): fall back to the pid file.
    let systemd = Systemd::connect().ok();
    let unit = match &systemd {
        Some(s) => Some(s.unit_state("nginx.service")?).filter(|u| u.load_state == LoadState::Loaded && u.is_active()),
        None => None,
    };
    let master = match &unit {
        Some(u) => u.main_pid,
        None => {
            atomic::read_string_if_exists(Path::new("/run/nginx.pid"))?.and_then(|p| p.trim().parse().ok()).unwrap_or(0)
        }
    };
    let old_workers = workers(master);
    match (&systemd, &unit) {
        (Some(s), Some(_)) => s.run_job(JobKind::Reload, "nginx.service")?,
        _ => {
            let out =
                Command::new(nginx_binary()?).args(["-s", "reload"]).output().context("running nginx -s reload")?;
            if !out.status.success() {
                bail!("nginx -s reload failed: {}", String::from_utf8_lossy(&out.stderr).trim());
            }
        }
    }
    if master != 0 {
        wait_for_new_workers(master, &old_workers, Duration::from_secs(10))?;
    }
    Ok(())
}

/// The worker processes of the nginx master `pid` (its children).
fn workers(master: u32) -> BTreeSet<u32> {
    let tasks = std::fs::read_dir(format!("/proc/{master}/task")).into_iter().flatten().flatten();
    tasks
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|c| c.split_whitespace().filter_map(|p| p.parse().ok()).collect::<Vec<u32>>())
        .collect()
}

/// Waits until the master has a worker that was not there before the reload (it accepted the new
/// configuration) and every old worker is gone or shutting down (no longer taking requests).
fn wait_for_new_workers(master: u32, old: &BTreeSet<u32>, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    let retired = |pid: &u32| {
        std::fs::read(format!("/proc/{pid}/cmdline"))
            .map_or(true, |c| String::from_utf8_lossy(&c).contains("shutting down"))
    };
    while Instant::now() < deadline {
        let now = workers(master);
        if now.iter().any(|w| !old.contains(w)) && now.iter().filter(|w| old.contains(w)).all(retired) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!(
        "nginx (master pid {master}) did not start new workers within {}s after the reload: it did not apply the new configuration (see its error log)",
        timeout.as_secs()
    )
}

/// The file as it was before relctl replaced it, to put back if nginx refuses the new one.
struct Previous {
    path: PathBuf,
    contents: Option<(Vec<u8>, u32)>,
}

impl Previous {
    fn read(path: &Path) -> Result<Previous> {
        let contents = match atomic::read_if_exists(path)? {
            Some(bytes) => Some((bytes, fs::metadata(path)?.permissions().mode() & 0o7777)),
            None => None,
        };
        Ok(Previous { path: path.to_path_buf(), contents })
    }

    /// Puts the old file back (atomically), or removes the new one if there was none.
    fn restore(self) -> Result<()> {
        match self.contents {
            Some((bytes, mode)) => atomic::write(&self.path, &bytes, mode, None).map(|_| ()),
            None => atomic::remove_if_exists(&self.path).map(|_| ()),
        }
    }
}
