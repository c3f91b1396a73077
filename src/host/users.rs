//! The service user: looked up, or created as a system user when missing.
//!
//! relctl runs a service only as an account that is the app's own: one relctl created (its
//! comment says so), or one relctl's units, or the hand-made units `build --adopt` takes over,
//! already run the app as. Another daemon's account (www-data, postgres, nobody) would share its
//! files and processes with the app, and root is never one.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::error::Error;
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

/// The comment (GECOS) of the accounts relctl creates; an existing account that carries it may
/// run any relctl app.
pub const MARK: &str = "relctl service user";

/// An existing account, as far as the rule on service users goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub uid: u32,
    /// Its comment (GECOS field).
    pub comment: String,
}

/// Looks up `name`'s uid and comment; None if there is no such user.
pub fn lookup_account(name: &str) -> Result<Option<Account>> {
    let user = nix::unistd::User::from_name(name).with_context(|| format!("looking up user {name}"))?;
    Ok(user.map(|u| Account {
        name: name.to_string(),
        uid: u.uid.as_raw(),
        comment: u.gecos.to_string_lossy().into_owned(),
    }))
}

/// Whether the service may run as `account`, an existing user: never root (uid 0); else only if
/// relctl created it (its comment starts with [`MARK`]) or the app already runs as it (`runs_as`:
/// the `User=` of relctl's own units for the app, and of the hand-made units `build --adopt`
/// takes over). `manifest` is named in the refusal.
pub fn check_existing(manifest: &Path, account: &Account, runs_as: &[String]) -> Result<(), Error> {
    let name = &account.name;
    if account.uid == 0 {
        return Err(Error::Usage(format!(
            "{}: [service] user \"{name}\" is root (uid 0); the service runs as an unprivileged user of its own",
            manifest.display()
        )));
    }
    if account.comment.starts_with(MARK) || runs_as.iter().any(|u| u == name) {
        return Ok(());
    }
    Err(Error::Usage(format!(
        "{}: [service] user \"{name}\" already exists and relctl did not create it (its comment is not \"{MARK} ...\"): the app would share files and processes with whatever else runs as {name}; name a user that does not exist yet (relctl creates it), or, if {name} is this app's own account, mark it: usermod --comment '{MARK}' {name}",
        manifest.display()
    )))
}

/// Refuses `user` if it exists and may not run the app (see [`check_existing`]); `unit_files`:
/// the app's unit files in place (relctl's, or hand-made ones `build --adopt` takes over).
pub fn check_service_user(manifest: &Path, user: &str, unit_files: &[PathBuf]) -> Result<()> {
    let Some(account) = lookup_account(user)? else { return Ok(()) };
    check_existing(manifest, &account, &units_run_as(unit_files)?)?;
    Ok(())
}

/// The users `User=` names in `unit_files` (missing files are skipped).
pub fn units_run_as(unit_files: &[PathBuf]) -> Result<Vec<String>> {
    let mut users = Vec::new();
    for path in unit_files {
        let Some(text) = crate::host::atomic::read_string_if_exists(path)? else { continue };
        for line in text.lines() {
            if let Some(u) = line.trim().strip_prefix("User=") {
                users.push(u.trim().to_string());
            }
        }
    }
    Ok(users)
}

/// Creates `name` as a system user with its own group, no home and no login shell, if missing,
/// marked as relctl's for `app` (see [`MARK`]).
pub fn ensure_system_user(name: &str, app: &str) -> Result<(RunAs, bool)> {
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
            "--comment",
        ])
        .arg(format!("{MARK} for {app}"))
        .arg(name)
        .output()
        .with_context(|| format!("running useradd for {name}"))?;
    if !out.status.success() {
        bail!("creating system user {name} failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    let u = lookup_user(name)?.with_context(|| format!("user {name} missing right after useradd"))?;
    Ok((u, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(name: &str, uid: u32, comment: &str) -> Account {
        Account { name: name.into(), uid, comment: comment.into() }
    }

    #[test]
    fn only_the_apps_own_accounts_are_accepted() {
        let m = Path::new("/srv/medctrl/relctl.toml");
        // Made by relctl (for this app or another one).
        check_existing(m, &account("medctrl", 998, "relctl service user for medctrl"), &[]).unwrap();
        check_existing(m, &account("shared", 997, "relctl service user"), &[]).unwrap();
        // Another daemon's account.
        for (name, uid, comment) in [
            ("www-data", 33, "www-data"),
            ("postgres", 112, "PostgreSQL administrator,,,"),
            ("nobody", 65534, "nobody"),
            ("alice", 1000, "Alice,,,"),
        ] {
            let err = check_existing(m, &account(name, uid, comment), &[]).unwrap_err().to_string();
            assert_eq!(
                err,
                format!("/srv/medctrl/relctl.toml: [service] user \"{name}\" already exists and relctl did not create it (its comment is not \"relctl service user ...\"): the app would share files and processes with whatever else runs as {name}; name a user that does not exist yet (relctl creates it), or, if {name} is this app's own account, mark it: usermod --comment 'relctl service user' {name}")
            );
        }
        // The app already runs as it: relctl's units (an install of an older relctl) or the
        // hand-made units `build --adopt` takes over.
        check_existing(m, &account("medctrl", 1001, "MedCtrl,,,"), &["medctrl".into()]).unwrap();
        assert!(check_existing(m, &account("www-data", 33, "www-data"), &["medctrl".into()]).is_err());
        // Root, by any name, never.
        for a in [account("toor", 0, "relctl service user"), account("root", 0, "root")] {
            let err = check_existing(m, &a, std::slice::from_ref(&a.name)).unwrap_err().to_string();
            assert!(err.ends_with("is root (uid 0); the service runs as an unprivileged user of its own"), "{err}");
        }
    }

    #[test]
    fn users_are_read_from_the_units_user_lines() {
        let tmp = tempfile::tempdir().unwrap();
        let unit = tmp.path().join("medctrl@.service");
        std::fs::write(&unit, "[Service]\nType=notify\nUser=medctrl\nGroup=medctrl\n").unwrap();
        let users = units_run_as(&[unit, tmp.path().join("missing.service")]).unwrap();
        assert_eq!(users, ["medctrl"]);
    }
}
