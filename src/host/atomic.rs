//! Files and symlinks that users' systems depend on (units, settings, `current`, snippets) are
//! replaced atomically: written to a temp file beside the target, then rename(2)d over it, so a
//! reader sees the old contents or the new ones, never a half-written file.

use std::io::{ErrorKind, Write};
use std::os::unix::fs::{fchown, symlink, MetadataExt, PermissionsExt};
use std::path::Path;

use anyhow::{Context, Result};
use fs_err as fs;

/// Writes `contents` to `path` atomically with `mode`; with `gid`, owned root:`gid`. Returns
/// whether the file changed (an identical file with the same mode and owner is left alone).
pub fn write(path: &Path, contents: &[u8], mode: u32, gid: Option<u32>) -> Result<bool> {
    if let Some(old) = read_if_exists(path)? {
        let meta = fs::metadata(path)?;
        let same_owner = gid.is_none_or(|g| meta.gid() == g && meta.uid() == 0);
        if old == contents && meta.permissions().mode() & 0o7777 == mode && same_owner {
            return Ok(false);
        }
    }
    let dir = parent(path);
    let mut tmp = tempfile::Builder::new()
        .prefix(".relctl-")
        .tempfile_in(dir)
        .with_context(|| format!("creating a temp file in {} to write {}", dir.display(), path.display()))?;
    let written = (|| -> std::io::Result<()> {
        if let Some(g) = gid {
            fchown(tmp.as_file(), Some(0), Some(g))?;
        }
        tmp.as_file().set_permissions(std::fs::Permissions::from_mode(mode))?;
        tmp.write_all(contents)?;
        tmp.as_file().sync_all()
    })();
    written.with_context(|| format!("writing {}", path.display()))?;
    tmp.persist(path).map_err(|e| e.error).with_context(|| format!("replacing {}", path.display()))?;
    Ok(true)
}

/// Creates `path` with `contents` and `mode`, atomically and only if nothing is there: written to
/// a temp file beside it, then linked into place without replacing anything. Fails with
/// `ErrorKind::AlreadyExists` when `path` exists (a file, a directory or a dangling symlink),
/// also when it appeared while this was writing.
pub fn create_new(path: &Path, contents: &[u8], mode: u32) -> std::io::Result<()> {
    let mut tmp = tempfile::Builder::new().prefix(".relctl-").tempfile_in(parent(path))?;
    tmp.as_file().set_permissions(std::fs::Permissions::from_mode(mode))?;
    tmp.write_all(contents)?;
    tmp.as_file().sync_all()?;
    tmp.persist_noclobber(path).map_err(|e| e.error)?;
    Ok(())
}

/// Points the symlink `link` at `target` atomically: a new symlink beside it, then rename(2).
/// Never `ln -sf`, which removes the old link first.
pub fn switch_symlink(link: &Path, target: &Path) -> Result<()> {
    let dir = parent(link);
    let tmp = tempfile::Builder::new()
        .prefix(".relctl-link-")
        .make_in(dir, |p| symlink(target, p))
        .with_context(|| format!("creating a symlink to {} in {}", target.display(), dir.display()))?;
    tmp.persist(link)
        .map_err(|e| e.error)
        .with_context(|| format!("switching {} to {}", link.display(), target.display()))?;
    Ok(())
}

/// A symlink to `target` made ahead of time beside `link`, so that putting it in place when `link`
/// disappears is one rename(2). An unused spare is removed when dropped.
pub struct SpareSymlink {
    link: std::path::PathBuf,
    target: std::path::PathBuf,
    spare: tempfile::TempPath,
}

impl SpareSymlink {
    pub fn new(link: &Path, target: &Path) -> Result<SpareSymlink> {
        let spare = Self::make(link, target)?;
        Ok(SpareSymlink { link: link.to_path_buf(), target: target.to_path_buf(), spare })
    }

    fn make(link: &Path, target: &Path) -> Result<tempfile::TempPath> {
        let dir = parent(link);
        let tmp = tempfile::Builder::new()
            .prefix(".relctl-link-")
            .make_in(dir, |p| symlink(target, p))
            .with_context(|| format!("creating a symlink to {} in {}", target.display(), dir.display()))?;
        Ok(tmp.into_temp_path())
    }

    /// Renames the spare over `link` (whatever is there), then makes the next spare.
    pub fn put(&mut self) -> Result<()> {
        let next = Self::make(&self.link, &self.target)?;
        let spare = std::mem::replace(&mut self.spare, next);
        spare
            .persist(&self.link)
            .map_err(|e| e.error)
            .with_context(|| format!("putting {} back, pointing at {}", self.link.display(), self.target.display()))
    }
}

/// The file's contents, or None when it does not exist; any other read error is an error.
pub fn read_if_exists(path: &Path) -> Result<Option<Vec<u8>>> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Like [`read_if_exists`], as UTF-8 text.
pub fn read_string_if_exists(path: &Path) -> Result<Option<String>> {
    read_if_exists(path)?
        .map(|bytes| String::from_utf8(bytes).with_context(|| format!("{} is not UTF-8 text", path.display())))
        .transpose()
}

/// Removes a file; a file that is already gone is fine. Returns whether it was there.
pub fn remove_if_exists(path: &Path) -> Result<bool> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Creates `dir` and its parents (mode 0755) if missing.
pub fn ensure_dir(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).map_err(Into::into)
}

/// Makes `dir` (and its missing parents, 0755) a directory root owns and alone can write, with
/// `mode` when it creates it; an existing one another user owns or can write is refused (relctl
/// would then write, as root, where that user decides). `mode` 0700 also narrows an existing one.
pub fn ensure_root_dir(dir: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    match std::fs::symlink_metadata(dir) {
        Ok(m) => {
            if !m.is_dir() || m.uid() != 0 || m.mode() & 0o022 != 0 {
                anyhow::bail!(
                    "{} must be a directory owned by root and writable by root alone; check it, then remove it or fix its owner and mode",
                    dir.display()
                );
            }
            if mode & 0o077 == 0 && m.mode() & 0o077 != 0 {
                fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))?;
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(p) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                ensure_root_dir(p, 0o755)?;
            }
            std::fs::DirBuilder::new().mode(mode).create(dir).with_context(|| format!("creating {}", dir.display()))?;
            // The umask may have narrowed it.
            fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))?;
            Ok(())
        }
        Err(e) => Err(e).with_context(|| format!("reading {}", dir.display())),
    }
}

fn parent(path: &Path) -> &Path {
    path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_root_dir_is_made_narrow_and_one_another_user_could_change_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("relctl/app/acme");
        ensure_root_dir(&dir, 0o700).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        assert_eq!((mode(&dir), mode(dir.parent().unwrap())), (0o700, 0o755));
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        ensure_root_dir(&dir, 0o700).unwrap();
        assert_eq!(mode(&dir), 0o700, "a private one is narrowed back");
        let other = tmp.path().join("relctl/app");
        std::fs::set_permissions(&other, std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = ensure_root_dir(&other, 0o755).unwrap_err().to_string();
        assert!(err.ends_with("must be a directory owned by root and writable by root alone; check it, then remove it or fix its owner and mode"), "{err}");
        std::fs::set_permissions(&other, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::os::unix::fs::chown(&other, Some(65534), None).unwrap();
        assert!(ensure_root_dir(&other, 0o755).is_err(), "owned by nobody");
    }

    #[test]
    fn write_sets_mode_reports_change_and_leaves_no_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("unit");
        assert!(write(&f, b"a", 0o640, None).unwrap());
        assert_eq!(fs::metadata(&f).unwrap().permissions().mode() & 0o777, 0o640);
        assert!(!write(&f, b"a", 0o640, None).unwrap(), "same contents and mode: unchanged");
        assert!(write(&f, b"a", 0o644, None).unwrap(), "a mode change is a change");
        assert!(write(&f, b"b", 0o644, None).unwrap());
        assert_eq!(fs::read(&f).unwrap(), b"b");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1, "no temp files left behind");
    }

    #[test]
    fn write_into_a_missing_directory_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("missing/unit");
        let err = format!("{:#}", write(&f, b"a", 0o644, None).unwrap_err());
        assert!(err.contains(&f.display().to_string()), "{err}");
    }

    #[test]
    fn create_new_never_replaces_what_is_there() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("relctl.toml");
        create_new(&f, b"one", 0o644).unwrap();
        assert_eq!(fs::metadata(&f).unwrap().permissions().mode() & 0o777, 0o644);
        assert_eq!(create_new(&f, b"two", 0o644).unwrap_err().kind(), ErrorKind::AlreadyExists);
        assert_eq!(fs::read(&f).unwrap(), b"one");
        let dangling = dir.path().join("dangling.toml");
        symlink("nowhere", &dangling).unwrap();
        assert_eq!(create_new(&dangling, b"x", 0o644).unwrap_err().kind(), ErrorKind::AlreadyExists);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 2, "no temp files left behind");
    }

    #[test]
    fn a_spare_symlink_replaces_what_is_there_and_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("gunicorn.sock");
        let socket = std::os::unix::net::UnixListener::bind(&link).unwrap();
        let mut spare = SpareSymlink::new(&link, Path::new(".relctl-next.sock")).unwrap();
        spare.put().unwrap();
        assert_eq!(std::fs::read_link(&link).unwrap(), Path::new(".relctl-next.sock"), "over a socket file");
        std::fs::remove_file(&link).unwrap();
        spare.put().unwrap();
        assert_eq!(std::fs::read_link(&link).unwrap(), Path::new(".relctl-next.sock"), "where nothing was");
        drop((spare, socket));
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1, "the unused spare is removed");
    }

    #[test]
    fn symlink_switches_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("current");
        switch_symlink(&link, Path::new("releases/one")).unwrap();
        switch_symlink(&link, Path::new("releases/two")).unwrap();
        assert_eq!(fs::read_link(&link).unwrap(), Path::new("releases/two"));
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1, "no temp links left behind");
    }

    #[test]
    fn missing_files_read_as_none_other_errors_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_if_exists(&dir.path().join("nope")).unwrap(), None);
        assert!(read_if_exists(dir.path()).is_err(), "reading a directory is an error, not 'missing'");
        assert!(!remove_if_exists(&dir.path().join("nope")).unwrap());
    }
}
