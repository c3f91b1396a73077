//! The git revision of a source tree, which release ids and `relctl releases` show.

use std::path::Path;
use std::process::{Command, Stdio};

use serde::{Deserialize, Serialize};

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

/// The revision of `source`, when it is inside a git checkout and git is installed (or the one
/// `relctl -H` shipped it from).
pub fn revision(source: &Path) -> Option<GitRevision> {
    if let Ok(label) = std::env::var(SOURCE_REVISION_ENV) {
        return Some(GitRevision::from_label(&label)).filter(|r| !r.short.is_empty());
    }
    let git = which::which("git").ok()?;
    let run = |args: &[&str]| -> Option<String> {
        let out = Command::new(&git).arg("-C").arg(source).args(args).stderr(Stdio::null()).output().ok()?;
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    let short = run(&["rev-parse", "--short", "HEAD"])?;
    let status = run(&["status", "--porcelain", "--untracked-files=normal", "--", "."])?;
    Some(GitRevision { short, dirty: !status.is_empty() })
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
        assert_eq!(revision(dir.path()), None);
        let git = |args: &[&str]| {
            let ok = Command::new("git").arg("-C").arg(dir.path()).args(args).output().unwrap().status.success();
            assert!(ok, "git {args:?}");
        };
        git(&["init", "-q"]);
        std::fs::write(dir.path().join("a"), "1").unwrap();
        git(&["add", "a"]);
        git(&["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one"]);
        let clean = revision(dir.path()).unwrap();
        assert!(!clean.dirty && clean.short.len() >= 7, "{clean:?}");
        std::fs::write(dir.path().join("a"), "2").unwrap();
        assert!(revision(dir.path()).unwrap().dirty);
    }
}
