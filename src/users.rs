//! The service user: looked up, or created as a system user when missing.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context, Result};
use serde::Serialize;

/// A user to run as: `release` hooks run as the service user, so what they create in the state
/// directory belongs to the service.
#[derive(Debug, Clone, Serialize)]
pub struct RunAs {
    pub user: String,
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
}

/// Looks up a user's uid, primary gid and home.
pub fn lookup_user(name: &str) -> Result<Option<RunAs>> {
    let user = nix::unistd::User::from_name(name).with_context(|| format!("looking up user {name}"))?;
    Ok(user.map(|u| RunAs { user: name.to_string(), uid: u.uid.as_raw(), gid: u.gid.as_raw(), home: u.dir }))
}

/// Creates `name` as a system user with its own group, no home and no login shell, if missing.
pub fn ensure_system_user(name: &str) -> Result<(RunAs, bool)> {
    if let Some(u) = lookup_user(name)? {
        return Ok((u, false));
    }
    let useradd =
        which::which("useradd").context("creating the service user: useradd not found (install the passwd package)")?;
    let out = Command::new(useradd)
        .args([
            "--system",
            "--user-group",
            "--no-create-home",
            "--home-dir",
            "/nonexistent",
            "--shell",
            "/usr/sbin/nologin",
        ])
        .arg(name)
        .output()
        .with_context(|| format!("running useradd for {name}"))?;
    if !out.status.success() {
        bail!("creating system user {name} failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    let u = lookup_user(name)?.with_context(|| format!("user {name} missing right after useradd"))?;
    Ok((u, true))
}
