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

    /// Visits what is copied, parents before children, sorted by name: each entry with its path
    /// relative to `source`.
    pub fn walk(&self, mut visit: impl FnMut(&walkdir::DirEntry, &Path) -> Result<()>) -> Result<()> {
        let matcher = self.matcher()?;
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
            visit(&entry, rel)?;
        }
        Ok(())
    }

    /// Copies the tree into `dest`, which must not exist yet.
    pub fn copy_into(&self, dest: &Path) -> Result<CopyStats> {
        fs::create_dir(dest).with_context(|| format!("creating release directory {}", dest.display()))?;
        let mut stats = CopyStats::default();
        self.walk(|entry, rel| {
            let path = entry.path();
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
            Ok(())
        })?;
        if stats.files == 0 {
            bail!("nothing to copy from {}: every file is excluded", self.source.display());
        }
        Ok(stats)
    }
}

/// Who may read a staged release: root owns it, the service's group reads it, nobody else —
/// except the `public` directories inside it (static files, for nginx), which everyone reads,
/// and the directories that lead to them, which everyone may pass through without listing.
/// `.relctl/` (relctl's metadata, which `status` and `releases` read without root) stays
/// listable; the files in it written so far (environment, start script) are private too.
pub fn seal(release_dir: &Path, gid: u32, public: &[PathBuf]) -> Result<()> {
    use std::os::unix::fs::{lchown, MetadataExt, PermissionsExt};
    for entry in WalkDir::new(release_dir) {
        let entry = entry.with_context(|| format!("walking release {}", release_dir.display()))?;
        let path = entry.path();
        lchown(path, Some(0), Some(gid)).with_context(|| format!("chown root:{gid} {}", path.display()))?;
        if entry.file_type().is_symlink() {
            continue;
        }
        let mode = entry.metadata().with_context(|| format!("reading {}", path.display()))?.mode();
        let new = sealed_mode(release_dir, public, path, entry.file_type().is_dir(), mode & 0o100 != 0);
        fs::set_permissions(path, fs::Permissions::from_mode(new))
            .with_context(|| format!("setting the mode of {}", path.display()))?;
    }
    Ok(())
}

/// The mode `seal` gives `path` (see there).
fn sealed_mode(release_dir: &Path, public: &[PathBuf], path: &Path, dir: bool, executable: bool) -> u32 {
    let is_public = public.iter().any(|p| path.starts_with(p));
    let leads_to_public = public.iter().any(|p| p.starts_with(path));
    match (dir, is_public) {
        (true, true) => 0o755,
        (true, false) if path == release_dir.join(crate::store::META_DIR) => 0o755,
        (true, false) if leads_to_public || path == release_dir => 0o751,
        (true, false) => 0o750,
        (false, true) if executable => 0o755,
        (false, true) => 0o644,
        (false, false) if executable => 0o750,
        (false, false) => 0o640,
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

    #[test]
    fn sealed_releases_are_private_but_their_static_files() {
        let r = Path::new("/opt/a/b/dev/releases/r1");
        let public = [r.join("API/static")];
        let mode = |p: &str, dir: bool, x: bool| sealed_mode(r, &public, &r.join(p), dir, x);
        assert_eq!(sealed_mode(r, &public, r, true, true), 0o751, "passable, not listable");
        assert_eq!(mode("API", true, true), 0o751, "on the way to the static files");
        assert_eq!(mode("API/static", true, true), 0o755);
        assert_eq!(mode("API/static/admin/css/base.css", false, false), 0o644);
        assert_eq!(mode("API/api_settings", true, true), 0o750);
        assert_eq!(mode("API/api_settings/settings/deploy_dev.py", false, false), 0o640);
        assert_eq!(mode("API/manage.py", false, true), 0o750);
        assert_eq!(mode(".relctl", true, true), 0o755, "status reads release.json without root");
        assert_eq!(mode(".relctl/environment", false, false), 0o640);
        assert_eq!(sealed_mode(r, &[], r, true, true), 0o751);
        assert_eq!(sealed_mode(r, &[], &r.join("API"), true, true), 0o750);
    }
}
