//! Resolving `[deps.*]` against the source: each dependency's key (a hash of its name, path,
//! build commands, key files and key commands' output), and so the entry a release links to. The
//! entries themselves live in `release::deps`.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

use crate::error::Error;
use crate::manifest::Dep;
use crate::release::deps::{DepPlan, DEPS_DIR};

/// Whether planning runs `[deps.*] key_commands`: a build does, a dry run runs no command of the
/// manifest's (they run as root, and a dry run is how a manifest is looked at before trusting it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyCommands {
    Run,
    NotRun,
}

/// The key of an entry whose key commands were not run (a dry run).
pub const KEY_AT_BUILD_TIME: &str = "<computed by key commands at build time>";

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
}
