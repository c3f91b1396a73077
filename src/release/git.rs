//! The git revision of a source tree, which release ids and `relctl releases` show.

use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::Result;
use nix::unistd::{Uid, User};
use serde::{Deserialize, Serialize};

use crate::error::Error;

/// A checkout's short commit hash and whether it has uncommitted changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GitRevision {
    pub short: String,
    pub dirty: bool,
}

impl GitRevision {
    /// `abc1234`, or `abc1234-dirty` with uncommitted changes: the one place that spelling lives.
    pub fn label(&self) -> String {
        if self.dirty {
            format!("{}-dirty", self.short)
        } else {
            self.short.clone()
        }
    }
}

impl GitRevision {
    /// The revision a label (`abc1234[-dirty]`) names.
    pub fn from_label(label: &str) -> GitRevision {
        match label.strip_suffix("-dirty") {
            Some(short) => GitRevision { short: short.to_string(), dirty: true },
            None => GitRevision { short: label.to_string(), dirty: false },
        }
    }
}

/// Set by `relctl -H` on the host: the revision of the sources it shipped (they come without
/// `.git`), as a label (`abc1234[-dirty]`).
pub const SOURCE_REVISION_ENV: &str = "RELCTL_SOURCE_REVISION";

/// What [`SOURCE_REVISION_ENV`] may hold (it becomes part of a release's directory name).
pub const LABEL_RULE: &str = "4 to 40 lowercase hex digits, optionally followed by -dirty";

/// The revision of `source`, when it is inside a git checkout and git is installed (or the one
/// `relctl -H` shipped it from, in [`SOURCE_REVISION_ENV`], which must follow [`LABEL_RULE`]).
pub fn revision(source: &Path) -> Result<Option<GitRevision>> {
    match std::env::var(SOURCE_REVISION_ENV) {
        Ok(label) => Ok(Some(parse_label(&label)?)),
        Err(std::env::VarError::NotUnicode(v)) => Err(bad_label(&v.to_string_lossy()).into()),
        Err(std::env::VarError::NotPresent) => Ok(checkout_revision(source)),
    }
}

/// A label as [`SOURCE_REVISION_ENV`] carries it: `[0-9a-f]{4,40}(-dirty)?`.
pub fn parse_label(label: &str) -> Result<GitRevision, Error> {
    let (short, dirty) = match label.strip_suffix("-dirty") {
        Some(short) => (short, true),
        None => (label, false),
    };
    let hex = short.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if !hex || !(4..=40).contains(&short.len()) {
        return Err(bad_label(label));
    }
    Ok(GitRevision { short: short.to_string(), dirty })
}

fn bad_label(label: &str) -> Error {
    Error::Usage(format!(
        "{SOURCE_REVISION_ENV}=\"{}\" is not a git revision: it must be {LABEL_RULE} (relctl -H sets it to the revision of the sources it ships)",
        label.escape_debug()
    ))
}

/// The checkout's revision, asked of git so that the repository cannot make root run anything:
/// no system or global config, no fsmonitor or hooks, no optional index writes, and, in a tree
/// another user owns, as that user (a filter driver the repository's config names then runs with
/// that user's rights, not root's). No `safe.directory`: git's own check, which refuses a `.git`
/// that is not owned by the user git runs as, stays on.
fn checkout_revision(source: &Path) -> Option<GitRevision> {
    let git = which::which("git").ok()?;
    let owner = tree_owner(source, nix::unistd::geteuid());
    let run = |args: &[&str]| -> Option<String> {
        let mut cmd = Command::new(&git);
        cmd.env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_TERMINAL_PROMPT", "0")
            .env_remove("GIT_DIR")
            .env_remove("GIT_WORK_TREE")
            .env_remove("GIT_CONFIG_PARAMETERS")
            .env_remove("GIT_CONFIG_COUNT")
            .args(["--no-optional-locks", "-c", "core.fsmonitor=false", "-c", "core.hooksPath=/dev/null"])
            .arg("-C")
            .arg(source)
            .args(args)
            .current_dir(source)
            .stdin(Stdio::null())
            .stderr(Stdio::null());
        if let Some((uid, gid)) = owner {
            cmd.uid(uid).gid(gid);
        }
        let out = cmd.output().ok()?;
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    let short = run(&["rev-parse", "--short", "HEAD"])?;
    let status = run(&["status", "--porcelain", "--untracked-files=normal", "--", "."])?;
    Some(GitRevision { short, dirty: !status.is_empty() })
}

/// Whom git runs as in `source`: its owner (uid and primary group) when relctl runs as root and
/// the tree is another user's; None to run as relctl's user.
fn tree_owner(source: &Path, euid: Uid) -> Option<(u32, u32)> {
    let meta = std::fs::metadata(source).ok()?;
    if !euid.is_root() || meta.uid() == 0 {
        return None;
    }
    let gid = match User::from_uid(Uid::from_raw(meta.uid())) {
        Ok(Some(u)) => u.gid.as_raw(),
        _ => meta.gid(),
    };
    Some((meta.uid(), gid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_says_dirty() {
        assert_eq!(GitRevision { short: "abc1234".into(), dirty: false }.label(), "abc1234");
        assert_eq!(GitRevision { short: "abc1234".into(), dirty: true }.label(), "abc1234-dirty");
    }

    #[test]
    fn a_checkout_with_changes_is_dirty_and_a_plain_dir_has_no_revision() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(revision(dir.path()).unwrap(), None);
        let git = |args: &[&str]| {
            let ok = Command::new("git").arg("-C").arg(dir.path()).args(args).output().unwrap().status.success();
            assert!(ok, "git {args:?}");
        };
        git(&["init", "-q"]);
        std::fs::write(dir.path().join("a"), "1").unwrap();
        git(&["add", "a"]);
        git(&["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one"]);
        let clean = revision(dir.path()).unwrap().unwrap();
        assert!(!clean.dirty && clean.short.len() >= 7, "{clean:?}");
        std::fs::write(dir.path().join("a"), "2").unwrap();
        assert!(revision(dir.path()).unwrap().unwrap().dirty);
    }

    /// A committed checkout in a fresh 0755 temp dir (`repo/`), with `a` holding "1\n".
    fn checkout() -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let repo = dir.path().join("repo");
        std::fs::create_dir(&repo).unwrap();
        let git = |args: &[&str]| {
            let ok = Command::new("git").arg("-C").arg(&repo).args(args).output().unwrap().status.success();
            assert!(ok, "git {args:?}");
        };
        git(&["init", "-q"]);
        std::fs::write(repo.join("a"), "1\n").unwrap();
        std::fs::write(repo.join(".gitattributes"), "a filter=x\n").unwrap();
        git(&["add", "a", ".gitattributes"]);
        git(&["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one"]);
        (dir, repo)
    }

    fn set_config(repo: &Path, key: &str, value: &str) {
        let ok = Command::new("git").arg("-C").arg(repo).args(["config", key, value]).status().unwrap().success();
        assert!(ok);
    }

    #[test]
    fn the_repositorys_fsmonitor_never_runs() {
        let (dir, repo) = checkout();
        let marker = dir.path().join("pwned");
        set_config(&repo, "core.fsmonitor", &format!("touch {}", marker.display()));
        std::fs::write(repo.join("a"), "2\n").unwrap();
        let rev = checkout_revision(&repo).unwrap();
        assert!(rev.dirty);
        assert!(!marker.exists(), "git ran the repository's core.fsmonitor");
    }

    #[test]
    fn in_another_users_tree_git_runs_as_that_user() {
        let (dir, repo) = checkout();
        // A filter driver (which git status runs to compare a changed file) that says who it is.
        let out = dir.path().join("out");
        std::fs::create_dir(&out).unwrap();
        std::fs::set_permissions(&out, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
        let said = out.join("uid");
        set_config(&repo, "filter.x.clean", &format!("id -u > {}; cat", said.display()));
        std::fs::write(repo.join("a"), "2\n").unwrap();
        let ok = Command::new("chown").args(["-R", "65534:65534"]).arg(&repo).status().unwrap().success();
        assert!(ok);
        assert_eq!(tree_owner(&repo, Uid::from_raw(0)), Some((65534, 65534)));
        assert_eq!(tree_owner(&repo, Uid::from_raw(1000)), None, "without root git runs as relctl's user");
        let rev = checkout_revision(&repo).expect("the owner's git reads its own checkout");
        assert!(rev.dirty);
        assert_eq!(std::fs::read_to_string(&said).unwrap().trim(), "65534", "the filter ran as root");
    }

    #[test]
    fn a_git_directory_another_user_owns_in_roots_tree_is_not_used() {
        // No safe.directory: git's own check refuses a .git that is not the tree owner's, so the
        // filter that .git's config names never runs as root.
        let (dir, repo) = checkout();
        let marker = dir.path().join("pwned");
        set_config(&repo, "filter.x.clean", &format!("touch {}; cat", marker.display()));
        std::fs::write(repo.join("a"), "2\n").unwrap();
        let ok = Command::new("chown").args(["-R", "65534:65534"]).arg(repo.join(".git")).status().unwrap().success();
        assert!(ok);
        assert_eq!(checkout_revision(&repo), None);
        assert!(!marker.exists(), "git ran another user's filter as root");
    }

    #[test]
    fn the_shipped_revision_must_be_a_hex_label() {
        assert_eq!(parse_label("abc1234").unwrap(), GitRevision { short: "abc1234".into(), dirty: false });
        assert_eq!(parse_label("0123456789abcdef0123456789abcdef01234567-dirty").unwrap().label().len(), 46);
        for bad in
            ["", "-dirty", "abc", "ABC1234", "abc1234-dirty-dirty", "abc1234\n", "../../etc", "abc 1234", "g123456"]
        {
            let err = parse_label(bad).unwrap_err().to_string();
            assert_eq!(
                err,
                format!(
                    "RELCTL_SOURCE_REVISION=\"{}\" is not a git revision: it must be 4 to 40 lowercase hex digits, optionally followed by -dirty (relctl -H sets it to the revision of the sources it ships)",
                    bad.escape_debug()
                )
            );
        }
        assert!(parse_label(&"a".repeat(41)).is_err());
    }
}
