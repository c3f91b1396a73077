//! A build set up by hand (the app's own deployment guide: sources copied into `<root>/<build>`,
//! hand-written `<app>@.service`, gunicorn binding `<root>/<build>/<socket>` itself), found and
//! taken over by `relctl build <BUILD> --adopt`: its unit files backed up, its files moved into a
//! release of their own (`<time>-adopted`) that a rollback can return to.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use fs_err as fs;
use serde::Serialize;

use crate::host::atomic;
use crate::release::layout::MARKER;
use crate::release::layout::{BuildLayout, Slot};

/// What relctl did not make, found where a build of the app lives.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Found {
    /// The app's unit files in /etc/systemd/system without relctl's marker.
    pub unit_files: Vec<PathBuf>,
    /// `<root>/<build>`.
    pub build_dir: PathBuf,
    /// Names in the build directory that are not relctl's (sources, a venv, ...), sorted.
    pub entries: Vec<String>,
    /// The public socket path holds a socket file (bound by a hand-made server), not relctl's
    /// symlink.
    pub own_socket: bool,
}

impl Found {
    pub fn is_empty(&self) -> bool {
        self.unit_files.is_empty() && self.entries.is_empty() && !self.own_socket
    }

    /// For people: what was found, in one sentence without the final period.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if !self.unit_files.is_empty() {
            let files: Vec<String> = self.unit_files.iter().map(|p| p.display().to_string()).collect();
            parts.push(format!("{} without a \"{MARKER}\" line", files.join(", ")));
        }
        if !self.entries.is_empty() {
            parts.push(format!(
                "a hand-made build directory {} (holding {})",
                self.build_dir.display(),
                self.entries.join(", ")
            ));
        }
        if self.own_socket {
            parts.push(format!("a socket file its server binds itself in {}", self.build_dir.display()));
        }
        parts.join("; ")
    }
}

/// Is `name` (in a build directory) one of relctl's?
fn is_relctls(name: &str, socket_name: &str) -> bool {
    name == "releases"
        || name == "current"
        || name == Slot::Main.link()
        || name == Slot::Next.link()
        || name == socket_name
        || name.starts_with(".relctl")
}

/// Looks for a hand-made setup of `build`: the app's unit files (`unit_files`, as relctl would
/// write them) that relctl did not write, files in the build directory relctl did not make, and a
/// socket file at the public socket path.
pub fn detect(unit_files: &[PathBuf], build: &BuildLayout, socket_name: &str) -> Result<Found> {
    let mut found = Found { build_dir: build.build_dir.clone(), ..Found::default() };
    for path in unit_files {
        if let Some(bytes) = atomic::read_if_exists(path)? {
            if !String::from_utf8_lossy(&bytes).contains(MARKER) {
                found.unit_files.push(path.clone());
            }
        }
    }
    match std::fs::read_dir(&build.build_dir) {
        Ok(dir) => {
            for entry in dir {
                let entry = entry.with_context(|| format!("listing {}", build.build_dir.display()))?;
                let name = entry.file_name().to_string_lossy().into_owned();
                if !is_relctls(&name, socket_name) {
                    found.entries.push(name);
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("listing {}", build.build_dir.display())),
    }
    found.entries.sort();
    found.own_socket = std::fs::symlink_metadata(&build.socket).is_ok_and(|m| {
        use std::os::unix::fs::FileTypeExt;
        m.file_type().is_socket()
    });
    Ok(found)
}

/// Copies the hand-made unit files into `dir` (created; it must not exist yet).
pub fn back_up(found: &Found, dir: &Path) -> Result<()> {
    if dir.exists() {
        anyhow::bail!("the backup directory {} exists already", dir.display());
    }
    atomic::ensure_dir(dir)?;
    for path in &found.unit_files {
        let name = path.file_name().with_context(|| format!("{} has no file name", path.display()))?;
        let bytes = fs::read(path)?;
        atomic::write(&dir.join(name), &bytes, 0o644, None)?;
    }
    Ok(())
}

/// Puts the backed-up unit files back where they were (after an adoption failed before the
/// hand-made server stopped).
pub fn restore(found: &Found, dir: &Path) -> Result<()> {
    for path in &found.unit_files {
        let name = path.file_name().with_context(|| format!("{} has no file name", path.display()))?;
        let bytes = fs::read(dir.join(name))?;
        atomic::write(path, &bytes, 0o644, None)?;
    }
    Ok(())
}

/// Moves the hand-made entries of the build directory into `release_dir` (created), by rename:
/// the same file system, so nothing is copied and a venv inside keeps working for `python -m`.
pub fn move_into(found: &Found, release_dir: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    atomic::ensure_dir(release_dir)?;
    // Root's alone until the adoption seals it.
    fs::set_permissions(release_dir, std::fs::Permissions::from_mode(0o700))?;
    for name in &found.entries {
        let from = found.build_dir.join(name);
        let to = release_dir.join(name);
        fs::rename(&from, &to)
            .with_context(|| format!("moving the hand-made {} into {}", name, release_dir.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::release::layout::{AppLayout, UNIT_DIR};

    fn build(root: &Path) -> BuildLayout {
        AppLayout {
            app: "medctrl".into(),
            component: "backend".into(),
            root: root.into(),
            unit_dir: UNIT_DIR.into(),
            socket_name: "gunicorn.sock".into(),
        }
        .build(&"development".parse().unwrap())
    }

    #[test]
    fn hand_made_files_units_and_sockets_are_found_relctls_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let b = build(&dir.path().join("root"));
        let units = [dir.path().join("medctrl@.service"), dir.path().join("medctrl.target")];
        let found = detect(&units, &b, "gunicorn.sock").unwrap();
        assert!(found.is_empty(), "nothing there: {found:?}");

        // relctl's own layout is not hand-made.
        std::fs::create_dir_all(b.releases_dir.join("20261123T130501Z")).unwrap();
        std::os::unix::fs::symlink("releases/20261123T130501Z", &b.current).unwrap();
        std::os::unix::fs::symlink(".relctl-live.sock", &b.socket).unwrap();
        std::fs::write(b.build_dir.join(".relctl-switch"), "{}").unwrap();
        std::fs::write(&units[0], format!("# {MARKER} build\n")).unwrap();
        assert!(detect(&units, &b, "gunicorn.sock").unwrap().is_empty());

        std::fs::write(&units[1], "[Unit]\nDescription=by hand\n").unwrap();
        std::fs::create_dir(b.build_dir.join("API")).unwrap();
        std::fs::create_dir(b.build_dir.join(".venv")).unwrap();
        std::fs::write(b.build_dir.join("requirements.txt"), "Django\n").unwrap();
        std::fs::remove_file(&b.socket).unwrap();
        let listener = std::os::unix::net::UnixListener::bind(&b.socket).unwrap();
        let found = detect(&units, &b, "gunicorn.sock").unwrap();
        drop(listener);
        assert_eq!(found.unit_files, [units[1].clone()]);
        assert_eq!(found.entries, [".venv", "API", "requirements.txt"]);
        assert!(found.own_socket);
        let text = found.describe();
        assert!(text.contains("medctrl.target without a \"Written by relctl\" line"), "{text}");
        assert!(text.contains("hand-made build directory") && text.contains("(holding .venv, API, requirements.txt)"));

        let backup = dir.path().join("backup");
        back_up(&found, &backup).unwrap();
        assert_eq!(std::fs::read_to_string(backup.join("medctrl.target")).unwrap(), "[Unit]\nDescription=by hand\n");
        assert!(back_up(&found, &backup).is_err(), "a backup is never overwritten");
        std::fs::write(&units[1], "relctl's\n").unwrap();
        restore(&found, &backup).unwrap();
        assert_eq!(std::fs::read_to_string(&units[1]).unwrap(), "[Unit]\nDescription=by hand\n");

        let release = b.releases_dir.join("20261123T130500Z-adopted");
        move_into(&found, &release).unwrap();
        assert!(release.join("API").is_dir() && release.join("requirements.txt").is_file());
        let left = detect(&units, &b, "gunicorn.sock").unwrap();
        assert!(left.entries.is_empty(), "{left:?}");
    }
}
