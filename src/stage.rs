//! Staging: copying the sources into a new release directory.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use ignore::gitignore::{Gitignore, GitignoreBuilder};
use walkdir::WalkDir;

/// What to copy: everything under `source` except `.git`, the paths in `never`, and what the
/// gitignore-style `exclude` patterns match.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CopySpec {
    pub source: PathBuf,
    pub exclude: Vec<String>,
    /// Directories that are never copied even when inside `source` (the build root).
    pub never: Vec<PathBuf>,
}

#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct CopyStats {
    pub files: u64,
    pub bytes: u64,
}

impl CopySpec {
    fn matcher(&self) -> Result<Gitignore> {
        let mut b = GitignoreBuilder::new(&self.source);
        for pattern in &self.exclude {
            b.add_line(None, pattern).with_context(|| format!("exclude pattern \"{pattern}\""))?;
        }
        b.build().context("building the exclude patterns")
    }

    /// Copies the tree into `dest`, which must not exist yet.
    pub fn copy_into(&self, dest: &Path) -> Result<CopyStats> {
        let matcher = self.matcher()?;
        fs::create_dir(dest).with_context(|| format!("creating release directory {}", dest.display()))?;
        let mut stats = CopyStats::default();
        let mut walk = WalkDir::new(&self.source).follow_links(false).sort_by_file_name().into_iter();
        while let Some(entry) = walk.next() {
            let entry = entry.with_context(|| format!("reading {}", self.source.display()))?;
            let path = entry.path();
            if entry.depth() == 0 {
                continue;
            }
            let is_dir = entry.file_type().is_dir();
            // .git is never a source; a top-level .relctl would pose as relctl's own metadata.
            let skip = entry.file_name() == ".git"
                || (entry.depth() == 1 && entry.file_name() == crate::store::META_DIR)
                || self.never.iter().any(|n| path == n)
                || matcher.matched_path_or_any_parents(path, is_dir).is_ignore();
            if skip {
                if is_dir {
                    walk.skip_current_dir();
                }
                continue;
            }
            let rel = path.strip_prefix(&self.source).expect("walkdir stays under its root");
            let target = dest.join(rel);
            let ft = entry.file_type();
            if ft.is_dir() {
                fs::create_dir(&target).with_context(|| format!("creating {}", target.display()))?;
                let perms = entry.metadata()?.permissions();
                fs::set_permissions(&target, perms)
                    .with_context(|| format!("setting the mode of {}", target.display()))?;
            } else if ft.is_symlink() {
                let link = fs::read_link(path).with_context(|| format!("reading link {}", path.display()))?;
                symlink(&link, &target).with_context(|| format!("creating {}", target.display()))?;
                stats.files += 1;
            } else if ft.is_file() {
                stats.bytes += fs::copy(path, &target)
                    .with_context(|| format!("copying {} to {}", path.display(), target.display()))?;
                stats.files += 1;
            }
            // sockets, fifos and devices are not sources: skipped
        }
        if stats.files == 0 {
            bail!("nothing to copy from {}: every file is excluded", self.source.display());
        }
        Ok(stats)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(base: &Path, files: &[&str]) {
        for f in files {
            let p = base.join(f);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, f).unwrap();
        }
    }

    #[test]
    fn copies_all_but_git_excludes_and_the_build_root() {
        let base = tempfile::tempdir().unwrap();
        let src = base.path().join("src");
        tree(
            &src,
            &[
                "API/manage.py",
                "API/x/__pycache__/a.pyc",
                "API/y.pyc",
                ".git/HEAD",
                ".relctl/bad",
                "API/.relctl/kept",
                "node_modules/m/index.js",
                "deploy/settings.py.tera",
                "builds/development/current/old.py",
                "sub/node_modules/keep-not.js",
            ],
        );
        let spec = CopySpec {
            source: src.clone(),
            exclude: vec!["__pycache__/".into(), "*.pyc".into(), "node_modules/".into()],
            never: vec![src.join("builds")],
        };
        let dest = base.path().join("release");
        let stats = spec.copy_into(&dest).unwrap();
        assert!(dest.join("API/manage.py").is_file());
        assert!(dest.join("deploy/settings.py.tera").is_file());
        assert!(dest.join("API/.relctl/kept").is_file(), "only the top-level .relctl is relctl's");
        for gone in [".relctl", "API/x/__pycache__", "API/y.pyc", ".git", "node_modules", "builds", "sub/node_modules"]
        {
            assert!(!dest.join(gone).exists(), "{gone} should not be copied");
        }
        assert_eq!(stats.files, 3);
    }
}
