//! Dependencies built once per content and shared: `[deps.<name>]` in the manifest names the
//! commands that build a directory (a virtualenv, `node_modules`), the files whose content keys
//! it, and where releases see it. An entry lives at `<root>/.deps/<name>-<key>/`, is built there
//! (virtualenvs are not relocatable), counts as complete only once `<name>-<key>.done` exists
//! beside it, is never changed afterwards, and is shared by every release of every build of the
//! app with the same key (each release holds a symlink to it). It is removed once no kept release
//! links to it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};
use fs_err as fs;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::error::Error;
use crate::host::atomic;
use crate::manifest::Dep;

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
    /// run, at build time (`entry` then ends in [`KEY_AT_BUILD_TIME`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub key_commands_not_run: Vec<String>,
}

/// Whether planning runs `[deps.*] key_commands`: a build does, a dry run runs no command of the
/// manifest's (they run as root, and a dry run is how a manifest is looked at before trusting it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyCommands {
    Run,
    NotRun,
}

/// The key of an entry whose key commands were not run (a dry run).
pub const KEY_AT_BUILD_TIME: &str = "<computed by key commands at build time>";

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

/// Resolves `[deps.<name>]` against the source: its key is a hash of the name, its path, its
/// build commands, the content of its key files and the output of its key commands (with
/// [`KeyCommands::NotRun`], those are not run and the key is left to the build).
pub fn plan(root: &Path, source: &Path, name: &str, dep: &Dep, key_commands: KeyCommands) -> Result<DepPlan> {
    let mut h = Sha256::new();
    let mut feed = |label: &str, bytes: &[u8]| {
        h.update(label.as_bytes());
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    };
    feed("name", name.as_bytes());
    feed("path", dep.path.as_bytes());
    for c in &dep.build {
        feed("build", c.as_bytes());
    }
    let mut keyed_by = Vec::new();
    for file in &dep.key {
        let path = source.join(file);
        let bytes = std::fs::read(&path)
            .map_err(|e| Error::Usage(format!("[deps.{name}] key file {}: {e}", path.display())))?;
        feed("file", file.as_bytes());
        feed("content", &bytes);
        keyed_by.push(file.clone());
    }
    if key_commands == KeyCommands::NotRun && !dep.key_commands.is_empty() {
        keyed_by.extend(dep.key_commands.iter().map(|c| format!("`{c}`")));
        return Ok(DepPlan {
            name: name.to_string(),
            path: dep.path.clone(),
            entry: root.join(DEPS_DIR).join(format!("{name}-{KEY_AT_BUILD_TIME}")),
            build: dep.build.clone(),
            keyed_by,
            key_commands_not_run: dep.key_commands.clone(),
        });
    }
    for c in &dep.key_commands {
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c").arg(c).current_dir(source).stdin(std::process::Stdio::null());
        for var in crate::host::command::NOT_FOR_HOOKS {
            cmd.env_remove(var);
        }
        let out = cmd.output().with_context(|| format!("[deps.{name}] running key command `{c}`"))?;
        if !out.status.success() {
            return Err(Error::Usage(format!(
                "[deps.{name}] key command `{c}` failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ))
            .into());
        }
        feed("command", c.as_bytes());
        feed("output", &out.stdout);
        feed("stderr", &out.stderr);
        keyed_by.push(format!("`{c}`"));
    }
    let key: String = h.finalize().iter().take(8).map(|b| format!("{b:02x}")).collect();
    Ok(DepPlan {
        name: name.to_string(),
        path: dep.path.clone(),
        entry: root.join(DEPS_DIR).join(format!("{name}-{key}")),
        build: dep.build.clone(),
        keyed_by,
        key_commands_not_run: Vec::new(),
    })
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

    fn dep(build: &str) -> Dep {
        Dep {
            path: ".venv".into(),
            key: vec!["requirements.txt".into()],
            key_commands: vec!["echo python 3.11".into()],
            build: vec![build.into()],
        }
    }

    #[test]
    fn the_key_follows_content_commands_and_versions() {
        let src = tempfile::tempdir().unwrap();
        std::fs::write(src.path().join("requirements.txt"), "django==5.2\n").unwrap();
        let root = Path::new("/opt/a/app");
        let one = plan(root, src.path(), "venv", &dep("python3 -m venv $RELCTL_DEP_DIR"), KeyCommands::Run).unwrap();
        assert!(one.entry.to_string_lossy().starts_with("/opt/a/app/.deps/venv-"), "{}", one.entry.display());
        let again = plan(root, src.path(), "venv", &dep("python3 -m venv $RELCTL_DEP_DIR"), KeyCommands::Run).unwrap();
        assert_eq!(one.entry, again.entry, "same inputs, same entry");
        let other_command =
            plan(root, src.path(), "venv", &dep("python3.12 -m venv $RELCTL_DEP_DIR"), KeyCommands::Run).unwrap();
        assert_ne!(one.entry, other_command.entry);
        std::fs::write(src.path().join("requirements.txt"), "django==5.1\n").unwrap();
        let other_content =
            plan(root, src.path(), "venv", &dep("python3 -m venv $RELCTL_DEP_DIR"), KeyCommands::Run).unwrap();
        assert_ne!(one.entry, other_content.entry);
        let mut versioned = dep("python3 -m venv $RELCTL_DEP_DIR");
        versioned.key_commands = vec!["echo python 3.12".into()];
        assert_ne!(other_content.entry, plan(root, src.path(), "venv", &versioned, KeyCommands::Run).unwrap().entry);
        std::fs::remove_file(src.path().join("requirements.txt")).unwrap();
        let err = plan(root, src.path(), "venv", &versioned, KeyCommands::Run).unwrap_err();
        assert!(crate::error::is_usage(&err) && err.to_string().contains("[deps.venv] key file"), "{err}");
    }

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
    fn a_dry_run_runs_no_key_command_and_says_the_key_comes_at_build_time() {
        let src = tempfile::tempdir().unwrap();
        std::fs::write(src.path().join("requirements.txt"), "django==5.2\n").unwrap();
        let marker = src.path().join("ran");
        let mut d = dep("python3 -m venv $RELCTL_DEP_DIR");
        d.key_commands = vec![format!("touch {}", marker.display())];
        let root = Path::new("/opt/a/app");
        let planned = plan(root, src.path(), "venv", &d, KeyCommands::NotRun).unwrap();
        assert!(!marker.exists(), "a dry run ran a key command");
        assert_eq!(planned.entry, Path::new("/opt/a/app/.deps/venv-<computed by key commands at build time>"));
        assert_eq!(planned.key_commands_not_run, [format!("touch {}", marker.display())]);
        assert_eq!(planned.keyed_by, ["requirements.txt".to_string(), format!("`touch {}`", marker.display())]);
        assert!(!planned.is_complete());
        let built = plan(root, src.path(), "venv", &d, KeyCommands::Run).unwrap();
        assert!(marker.exists() && built.key_commands_not_run.is_empty());
        // Without key commands the key is known on a dry run too.
        d.key_commands.clear();
        assert_eq!(
            plan(root, src.path(), "venv", &d, KeyCommands::NotRun).unwrap().entry,
            plan(root, src.path(), "venv", &d, KeyCommands::Run).unwrap().entry
        );
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
