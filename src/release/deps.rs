//! Dependencies built once per content and shared: `[deps.<name>]` in the manifest names the
//! commands that build a directory (a virtualenv, `node_modules`), the files whose content keys
//! it, and where releases see it. An entry lives at `<root>/.deps/<name>-<key>/`, is built there
//! (virtualenvs are not relocatable), counts as complete only once `<name>-<key>.done` exists
//! beside it, is never changed afterwards, and is shared by every release of every build of the
//! app with the same key (each release holds a symlink to it). It is removed once no kept release
//! links to it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use fs_err as fs;
use serde::Serialize;

use crate::host::atomic;

/// The directory under the app's root that holds the entries.
pub const DEPS_DIR: &str = ".deps";

/// One dependency of a release, resolved: which entry, and how to build it if it is missing.
#[derive(Debug, Clone, Serialize)]
pub struct DepPlan {
    pub name: String,
    /// Where the release sees it, relative to the release (a symlink to `entry`).
    pub path: String,
    /// `<root>/.deps/<name>-<key>`
    pub entry: PathBuf,
    /// The commands that build it, run in the new release with `RELCTL_DEP_DIR=<entry>`.
    pub build: Vec<String>,
    /// What the key was computed from, for `--dry-run`.
    pub keyed_by: Vec<String>,
    /// The key commands a dry run did not run: the key, and so `entry`, is only known once they
    /// run, at build time (`entry` then ends in the placeholder `plan::deps::KEY_AT_BUILD_TIME`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub key_commands_not_run: Vec<String>,
}

impl DepPlan {
    /// The marker that says the entry is complete.
    pub fn done_marker(&self) -> PathBuf {
        done_marker(&self.entry)
    }

    pub fn is_complete(&self) -> bool {
        self.key_commands_not_run.is_empty() && self.done_marker().is_file()
    }
}

fn done_marker(entry: &Path) -> PathBuf {
    entry.with_extension("done")
}

/// Removes what a killed build left of an entry: a directory without its `.done` marker is never
/// used. Returns whether there was one.
pub fn remove_half_built(dep: &DepPlan) -> Result<bool> {
    if dep.is_complete() || !dep.entry.exists() {
        return Ok(false);
    }
    fs::remove_dir_all(&dep.entry)?;
    Ok(true)
}

/// Marks an entry complete.
pub fn mark_complete(dep: &DepPlan) -> Result<()> {
    atomic::write(&dep.done_marker(), format!("{}\n", dep.keyed_by.join(" ")).as_bytes(), 0o644, None).map(|_| ())
}

/// Removes the entries no kept release links to (and what killed builds left half-built). Every
/// build directory under `root` counts, declared or not. Returns the entries removed.
pub fn collect(root: &Path) -> Result<Vec<String>> {
    let deps_dir = root.join(DEPS_DIR);
    let entries = match fs::read_dir(&deps_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let used = linked_entries(root)?;
    let mut removed = Vec::new();
    for entry in entries {
        let entry = entry?;
        let path = entry.path();
        if !entry.file_type()?.is_dir() || used.contains(&path) {
            continue;
        }
        fs::remove_dir_all(&path)?;
        atomic::remove_if_exists(&done_marker(&path))?;
        removed.push(entry.file_name().to_string_lossy().into_owned());
    }
    // Markers whose entry is gone.
    for entry in fs::read_dir(&deps_dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "done") && !path.with_extension("").is_dir() {
            atomic::remove_if_exists(&path)?;
        }
    }
    Ok(removed)
}

/// The entries the releases under `root` link to: every symlink anywhere in a release (a
/// dependency's `path` may be nested: `API/.venv`, `web/app/node_modules`) that points into
/// `<root>/.deps/`.
fn linked_entries(root: &Path) -> Result<BTreeSet<PathBuf>> {
    let deps_dir = root.join(DEPS_DIR);
    let mut used = BTreeSet::new();
    for build in fs::read_dir(root)? {
        let releases = build?.path().join("releases");
        let Ok(list) = fs::read_dir(&releases) else { continue };
        for release in list {
            for link in links_in(&release?.path())? {
                if let Some(entry) = link.ancestors().find(|a| a.parent() == Some(deps_dir.as_path())) {
                    used.insert(entry.to_path_buf());
                }
            }
        }
    }
    Ok(used)
}

/// The targets of the symlinks anywhere under `dir`, which is walked without following links. An
/// entry that disappears during the walk is passed over; any other error is one: an entry a
/// release was not seen to use is removed.
fn links_in(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in walkdir::WalkDir::new(dir).min_depth(1).follow_links(false) {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) if e.io_error().is_some_and(|e| e.kind() == std::io::ErrorKind::NotFound) => continue,
            Err(e) => return Err(e).with_context(|| format!("looking for dependency links in {}", dir.display())),
        };
        if entry.path_is_symlink() {
            out.push(fs::read_link(entry.path())?);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dependency_linked_deep_in_a_release_is_kept_and_links_are_not_followed() {
        let root = tempfile::tempdir().unwrap();
        let root = root.path();
        let deps = root.join(DEPS_DIR);
        for e in ["venv-aaaa", "node-bbbb"] {
            std::fs::create_dir_all(deps.join(e)).unwrap();
            std::fs::write(deps.join(e).with_extension("done"), "").unwrap();
        }
        let release = root.join("testing/releases/20261123T130501Z");
        std::fs::create_dir_all(release.join("srv/api/app")).unwrap();
        std::os::unix::fs::symlink(deps.join("venv-aaaa"), release.join("srv/api/app/.venv")).unwrap();
        // A link out of the release leads to a dependency link: not the release's.
        std::fs::create_dir_all(root.join("elsewhere")).unwrap();
        std::os::unix::fs::symlink(deps.join("node-bbbb"), root.join("elsewhere/node_modules")).unwrap();
        std::os::unix::fs::symlink(root.join("elsewhere"), release.join("web")).unwrap();
        assert_eq!(collect(root).unwrap(), ["node-bbbb"]);
        assert!(deps.join("venv-aaaa").is_dir() && deps.join("venv-aaaa.done").is_file(), "srv/api/app/.venv uses it");
    }

    #[test]
    fn entries_no_release_links_to_are_collected_and_half_built_ones_never_used() {
        let root = tempfile::tempdir().unwrap();
        let root = root.path();
        let deps = root.join(DEPS_DIR);
        for e in ["venv-aaaa", "venv-bbbb", "venv-cccc"] {
            std::fs::create_dir_all(deps.join(e).join("bin")).unwrap();
        }
        std::fs::write(deps.join("venv-aaaa.done"), "").unwrap();
        std::fs::write(deps.join("venv-bbbb.done"), "").unwrap();
        std::fs::write(deps.join("venv-gone.done"), "").unwrap();
        let release = root.join("development/releases/20261123T130501Z");
        std::fs::create_dir_all(&release).unwrap();
        std::os::unix::fs::symlink(deps.join("venv-aaaa"), release.join(".venv")).unwrap();
        let mut removed = collect(root).unwrap();
        removed.sort();
        assert_eq!(removed, ["venv-bbbb", "venv-cccc"]);
        assert!(deps.join("venv-aaaa").is_dir() && deps.join("venv-aaaa.done").is_file());
        assert!(!deps.join("venv-gone.done").exists() && !deps.join("venv-bbbb.done").exists());

        let half = DepPlan {
            name: "venv".into(),
            path: ".venv".into(),
            entry: deps.join("venv-dddd"),
            build: vec![],
            keyed_by: vec![],
            key_commands_not_run: vec![],
        };
        std::fs::create_dir_all(&half.entry).unwrap();
        assert!(!half.is_complete());
        assert!(remove_half_built(&half).unwrap());
        assert!(!half.entry.exists());
    }
}
