//! Staging: copying the sources into a new release directory, and sealing it.
//!
//! A release is private until it is sealed: its directory is created 0700 root, so nobody else
//! enters it while the copy, the `[deps]` builds and the build hooks run, and only the final
//! [`seal`] opens it. Everything is done through file descriptors: a source entry is opened by its
//! name in its parent directory's descriptor without following a link, and must still be what the
//! walk saw; a copy is created new (`O_CREAT|O_EXCL|O_NOFOLLOW`, `mkdirat`, `symlinkat`) in its
//! parent's descriptor, so nothing is read from outside the source or written through a link.
//! Modes are not copied: files arrive 0600 (0700 when their owner may execute them), directories
//! 0700; `seal` gives the final owners and modes.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Context, Result};
use ignore::gitignore::{Gitignore, GitignoreBuilder};
use nix::dir::Dir;
use nix::errno::Errno;
use nix::fcntl::{openat, readlinkat, AtFlags, OFlag};
use nix::sys::stat::{fchmod, fstat, fstatat, mkdirat, FileStat, Mode, SFlag};
use nix::unistd::{fchown, fchownat, symlinkat, Gid, Uid};
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

/// How a directory in a release or a source is opened: never through a link.
const DIR_FLAGS: OFlag = OFlag::O_RDONLY.union(OFlag::O_DIRECTORY).union(OFlag::O_NOFOLLOW).union(OFlag::O_CLOEXEC);
/// How a regular file is opened to be read: never through a link, never blocking (a fifo swapped
/// in), never as a controlling terminal.
const FILE_FLAGS: OFlag =
    OFlag::O_RDONLY.union(OFlag::O_NOFOLLOW).union(OFlag::O_NONBLOCK).union(OFlag::O_NOCTTY).union(OFlag::O_CLOEXEC);
/// How a file relctl puts in a release is created: new, never through a link.
const NEW_FILE_FLAGS: OFlag =
    OFlag::O_WRONLY.union(OFlag::O_CREAT).union(OFlag::O_EXCL).union(OFlag::O_NOFOLLOW).union(OFlag::O_CLOEXEC);

/// The mode of a copied directory, and of a copied file its owner may execute.
const PRIVATE_DIR: u32 = 0o700;
/// The mode of any other copied file.
const PRIVATE_FILE: u32 = 0o600;

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
                || (entry.depth() == 1 && entry.file_name() == crate::release::store::META_DIR)
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

    /// Copies the tree into `dest`, which must not exist yet: created 0700 for root only (see
    /// the module's comment for how and with which modes).
    pub fn copy_into(&self, dest: &Path) -> Result<CopyStats> {
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
        let source = nix::fcntl::open(&self.source, flags, Mode::empty())
            .with_context(|| format!("opening the source {}", self.source.display()))?;
        let release = create_private_dir(dest)?;
        let mut stats = CopyStats::default();
        // The directories open on the way to the entry visited, source and copy: [i] is depth i + 1.
        let mut open: Vec<(OwnedFd, OwnedFd)> = Vec::new();
        self.walk(|entry, rel| {
            open.truncate(entry.depth() - 1);
            if open.len() != entry.depth() - 1 {
                bail!("{} was visited before its directory", entry.path().display());
            }
            let (src, dst) = open.last().map_or((source.as_fd(), release.as_fd()), |(s, d)| (s.as_fd(), d.as_fd()));
            let (name, path, target) = (entry.file_name(), entry.path(), dest.join(rel));
            let ft = entry.file_type();
            if ft.is_dir() {
                let opened = copy_dir(src, dst, name, path, &target)?;
                open.push(opened);
            } else if ft.is_symlink() {
                copy_link(src, dst, name, path, &target)?;
                stats.files += 1;
            } else if ft.is_file() {
                stats.bytes += copy_file(src, dst, name, path, &target)?;
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

/// Creates `dir`, which must not exist yet, 0700 (root's, as relctl runs as root), and opens it.
pub fn create_private_dir(dir: &Path) -> Result<OwnedFd> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .mode(PRIVATE_DIR)
        .create(dir)
        .with_context(|| format!("creating release directory {}", dir.display()))?;
    let fd = nix::fcntl::open(dir, DIR_FLAGS, Mode::empty()).with_context(|| format!("opening {}", dir.display()))?;
    fchmod(&fd, Mode::from_bits_truncate(PRIVATE_DIR))
        .with_context(|| format!("setting the mode of {}", dir.display()))?;
    Ok(fd)
}

/// The type bits of a `stat`.
fn file_type(st: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits())
}

/// What a file system object is, for messages.
fn kind(st: &FileStat) -> &'static str {
    match file_type(st) {
        SFlag::S_IFREG => "a regular file",
        SFlag::S_IFDIR => "a directory",
        SFlag::S_IFLNK => "a symlink",
        SFlag::S_IFIFO => "a fifo",
        SFlag::S_IFSOCK => "a socket",
        SFlag::S_IFCHR => "a character device",
        SFlag::S_IFBLK => "a block device",
        _ => "of an unknown type",
    }
}

/// The error for an entry that is no longer what it was a moment ago.
fn changed(path: &Path, during: &str, was: &str, now: &str) -> anyhow::Error {
    anyhow::anyhow!("{} changed while {during}: it was {was}, it is now {now}", path.display())
}

/// The error for an entry that could not be opened as `was` by its name (without following a
/// link): it changed, or something else went wrong.
fn open_failed(e: Errno, path: &Path, during: &str, was: &str) -> anyhow::Error {
    match e {
        Errno::ELOOP => changed(path, during, was, "a symlink"),
        Errno::ENOENT => changed(path, during, was, "gone"),
        Errno::ENOTDIR => changed(path, during, was, "not a directory"),
        e => anyhow::Error::new(e).context(format!("opening {}", path.display())),
    }
}

const COPYING: &str = "it was copied";

/// Copies the regular file `name` of the source directory `src` to a new file `name` in the
/// directory `dest`: 0700 when the source's owner may execute it, else 0600. `path` and `target`
/// name them for messages. Returns the bytes copied.
fn copy_file(src: BorrowedFd, dest: BorrowedFd, name: &OsStr, path: &Path, target: &Path) -> Result<u64> {
    let from =
        openat(src, name, FILE_FLAGS, Mode::empty()).map_err(|e| open_failed(e, path, COPYING, "a regular file"))?;
    let st = fstat(&from).with_context(|| format!("reading {}", path.display()))?;
    if file_type(&st) != SFlag::S_IFREG {
        return Err(changed(path, COPYING, "a regular file", kind(&st)));
    }
    let mode = Mode::from_bits_truncate(if st.st_mode & 0o100 != 0 { PRIVATE_DIR } else { PRIVATE_FILE });
    let to = openat(dest, name, NEW_FILE_FLAGS, mode).with_context(|| format!("creating {}", target.display()))?;
    fchmod(&to, mode).with_context(|| format!("setting the mode of {}", target.display()))?;
    std::io::copy(&mut File::from(from), &mut File::from(to))
        .with_context(|| format!("copying {} to {}", path.display(), target.display()))
}

/// Creates the directory `name` in `dest` (0700) for the source directory `name` of `src`;
/// returns both, open.
fn copy_dir(src: BorrowedFd, dest: BorrowedFd, name: &OsStr, path: &Path, target: &Path) -> Result<(OwnedFd, OwnedFd)> {
    let from = openat(src, name, DIR_FLAGS, Mode::empty()).map_err(|e| open_failed(e, path, COPYING, "a directory"))?;
    let mode = Mode::from_bits_truncate(PRIVATE_DIR);
    mkdirat(dest, name, mode).with_context(|| format!("creating {}", target.display()))?;
    let to = openat(dest, name, DIR_FLAGS, Mode::empty()).with_context(|| format!("opening {}", target.display()))?;
    fchmod(&to, mode).with_context(|| format!("setting the mode of {}", target.display()))?;
    Ok((from, to))
}

/// Copies the symlink `name` of `src` (its target, as text) to `name` in `dest`.
fn copy_link(src: BorrowedFd, dest: BorrowedFd, name: &OsStr, path: &Path, target: &Path) -> Result<()> {
    let link = readlinkat(src, name).map_err(|e| match e {
        Errno::EINVAL => changed(path, COPYING, "a symlink", "no longer a symlink"),
        Errno::ENOENT => changed(path, COPYING, "a symlink", "gone"),
        e => anyhow::Error::new(e).context(format!("reading link {}", path.display())),
    })?;
    symlinkat(Path::new(&link), dest, name).with_context(|| format!("creating {}", target.display()))
}

/// The directory `rel` (relative, plain names) beneath the release directory `release`, opened
/// one name at a time without following a link; what is missing is created 0700.
fn open_beneath(release: &Path, rel: &Path) -> Result<OwnedFd> {
    let mut dir = nix::fcntl::open(release, DIR_FLAGS, Mode::empty())
        .with_context(|| format!("opening release {}", release.display()))?;
    let mut shown = release.to_path_buf();
    for c in rel.components() {
        let name = match c {
            Component::Normal(name) => name,
            Component::CurDir => continue,
            _ => bail!("{} is not a path inside the release {}", rel.display(), release.display()),
        };
        shown.push(name);
        match mkdirat(&dir, name, Mode::from_bits_truncate(PRIVATE_DIR)) {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(e) => return Err(e).with_context(|| format!("creating {}", shown.display())),
        }
        dir = openat(&dir, name, DIR_FLAGS, Mode::empty()).map_err(|e| match e {
            Errno::ELOOP | Errno::ENOTDIR => anyhow::anyhow!(
                "{} is not a directory but a symlink or file: relctl writes nothing through it",
                shown.display()
            ),
            e => anyhow::Error::new(e).context(format!("opening {}", shown.display())),
        })?;
    }
    Ok(dir)
}

/// The regular file `rel` beneath the release directory `release`, read one name at a time without
/// following a link (a link in a release may point anywhere: root must not read through it).
pub fn read_beneath(release: &Path, rel: &Path) -> Result<Vec<u8>> {
    use std::io::Read;
    let shown = release.join(rel);
    let refused = |e: Errno| match e {
        Errno::ELOOP | Errno::ENOTDIR => {
            anyhow::anyhow!("{} is a symlink or lies under one: relctl reads nothing through it", shown.display())
        }
        e => anyhow::Error::new(e).context(format!("opening {}", shown.display())),
    };
    let (parent, name) = split(release, rel)?;
    let mut dir = nix::fcntl::open(release, DIR_FLAGS, Mode::empty())
        .with_context(|| format!("opening release {}", release.display()))?;
    for c in parent.components() {
        match c {
            Component::Normal(n) => dir = openat(&dir, n, DIR_FLAGS, Mode::empty()).map_err(refused)?,
            Component::CurDir => {}
            _ => bail!("{} is not a path inside the release {}", rel.display(), release.display()),
        }
    }
    let fd = openat(&dir, name.as_os_str(), OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(refused)?;
    if file_type(&fstat(&fd)?) != SFlag::S_IFREG {
        bail!("{} is not a regular file", shown.display());
    }
    let mut bytes = Vec::new();
    File::from(fd).read_to_end(&mut bytes).with_context(|| format!("reading {}", shown.display()))?;
    Ok(bytes)
}

/// `rel`'s directory and name, for a file relctl puts in a release.
fn split(release: &Path, rel: &Path) -> Result<(PathBuf, OsString)> {
    match (rel.parent(), rel.file_name()) {
        (Some(parent), Some(name)) => Ok((parent.to_path_buf(), name.to_os_string())),
        _ => bail!("{} is not a file path inside the release {}", rel.display(), release.display()),
    }
}

/// Makes `rel` in the release a new symlink to `target`; directories on the way are created 0700.
/// Nothing on the way may be a symlink.
pub fn link_beneath(release: &Path, rel: &Path, target: &Path) -> Result<()> {
    let (parent, name) = split(release, rel)?;
    let dir = open_beneath(release, &parent)?;
    symlinkat(target, &dir, name.as_os_str())
        .with_context(|| format!("linking {} to {}", release.join(rel).display(), target.display()))
}

/// Writes `contents` to `rel` in the release, `mode` and root:`gid`: a new file beside it, then
/// renamed over what is there (never written through it). Directories on the way are created
/// 0700; nothing on the way may be a symlink.
pub fn write_beneath(release: &Path, rel: &Path, contents: &[u8], mode: u32, gid: u32) -> Result<()> {
    use std::io::Write;
    let (parent, name) = split(release, rel)?;
    let shown = release.join(rel);
    let dir = open_beneath(release, &parent)?;
    let tmp = format!(".relctl-{:016x}", fastrand::u64(..));
    let fd = openat(&dir, tmp.as_str(), NEW_FILE_FLAGS, Mode::from_bits_truncate(PRIVATE_FILE))
        .with_context(|| format!("creating a temp file to write {}", shown.display()))?;
    let written = (|| -> Result<()> {
        let mut file = File::from(fd);
        fchown(&file, Some(Uid::from_raw(0)), Some(Gid::from_raw(gid)))?;
        fchmod(&file, Mode::from_bits_truncate(mode))?;
        file.write_all(contents)?;
        file.sync_all()?;
        nix::fcntl::renameat(&dir, tmp.as_str(), &dir, name.as_os_str())?;
        Ok(())
    })();
    if let Err(e) = written {
        // The temp file is relctl's own; a failure to remove it is named with the first error.
        let removed = nix::unistd::unlinkat(&dir, tmp.as_str(), nix::unistd::UnlinkatFlags::NoRemoveDir);
        let e = e.context(format!("writing {}", shown.display()));
        return Err(match removed {
            Ok(()) | Err(Errno::ENOENT) => e,
            Err(r) => e.context(format!("could not remove the temp file {tmp}: {r}")),
        });
    }
    Ok(())
}

/// How far a [`seal`] opens the release.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seal {
    /// While it is staged: everything in it gets its final owner and mode, but the release
    /// directory itself stays 0700, for root only (the `[deps]` builds and build hooks run next).
    Staging,
    /// Done: the release directory opens up too.
    Final,
    /// Like `Final`, for a hand-made tree adopted as a release (`build --adopt`): a socket file its
    /// stopped server left behind is passed over (it is no error then, when the hand-made files
    /// are in the release already).
    Adopted,
}

/// Who may read a staged release: root owns it, the service's group reads it, nobody else —
/// except the `public` directories inside it (static files, for nginx), which everyone reads,
/// and the directories that lead to them, which everyone may pass through without listing.
/// `.relctl/` (relctl's metadata, which `status` and `releases` read without root) stays
/// listable; the files in it written so far are private too, the environment (which may hold
/// secrets) to root alone. With [`Seal::Staging`] the release directory stays 0700.
///
/// Through file descriptors: each directory and file is opened by its name in its parent's
/// descriptor without following a link, then chowned and chmodded through its own; a symlink is
/// chowned itself (`AT_SYMLINK_NOFOLLOW`), never what it points at. A fifo, socket or device is
/// an error naming it: a release holds none.
pub fn seal(release_dir: &Path, gid: u32, public: &[PathBuf], how: Seal) -> Result<()> {
    let top = Dir::open(release_dir, DIR_FLAGS, Mode::empty())
        .with_context(|| format!("opening release {}", release_dir.display()))?;
    let sealer = Sealer { release_dir, public, gid: Gid::from_raw(gid), sockets_left: how == Seal::Adopted };
    let mode = match how {
        Seal::Staging => PRIVATE_DIR,
        Seal::Final | Seal::Adopted => sealed_mode(release_dir, public, release_dir, true, true),
    };
    sealer.set(&top, release_dir, mode)?;
    sealer.below(top, release_dir)
}

const SEALING: &str = "the release was sealed";

struct Sealer<'a> {
    release_dir: &'a Path,
    public: &'a [PathBuf],
    gid: Gid,
    /// Socket files are passed over (`Seal::Adopted`).
    sockets_left: bool,
}

impl Sealer<'_> {
    /// Gives what `fd` is open on (`path`) root:gid and `mode`.
    fn set(&self, fd: impl AsFd, path: &Path, mode: u32) -> Result<()> {
        fchown(&fd, Some(Uid::from_raw(0)), Some(self.gid))
            .with_context(|| format!("chown root:{} {}", self.gid, path.display()))?;
        fchmod(&fd, Mode::from_bits_truncate(mode)).with_context(|| format!("setting the mode of {}", path.display()))
    }

    /// Seals what is in `dir` (`path`), depth first.
    fn below(&self, mut dir: Dir, path: &Path) -> Result<()> {
        let mut names: Vec<OsString> = Vec::new();
        for entry in dir.iter() {
            let entry = entry.with_context(|| format!("listing {}", path.display()))?;
            let name = entry.file_name().to_bytes();
            if name != b"." && name != b".." {
                names.push(OsStr::from_bytes(name).to_os_string());
            }
        }
        for name in &names {
            let name = name.as_os_str();
            let p = path.join(name);
            let st = fstatat(&dir, name, AtFlags::AT_SYMLINK_NOFOLLOW)
                .with_context(|| format!("reading {}", p.display()))?;
            match file_type(&st) {
                SFlag::S_IFLNK => {
                    fchownat(&dir, name, Some(Uid::from_raw(0)), Some(self.gid), AtFlags::AT_SYMLINK_NOFOLLOW)
                        .with_context(|| format!("chown root:{} {}", self.gid, p.display()))?;
                }
                SFlag::S_IFDIR => {
                    let sub = Dir::openat(&dir, name, DIR_FLAGS, Mode::empty())
                        .map_err(|e| open_failed(e, &p, SEALING, "a directory"))?;
                    self.set(&sub, &p, sealed_mode(self.release_dir, self.public, &p, true, true))?;
                    self.below(sub, &p)?;
                }
                SFlag::S_IFREG => {
                    let file = openat(&dir, name, FILE_FLAGS, Mode::empty())
                        .map_err(|e| open_failed(e, &p, SEALING, "a regular file"))?;
                    let now = fstat(&file).with_context(|| format!("reading {}", p.display()))?;
                    if file_type(&now) != SFlag::S_IFREG {
                        return Err(changed(&p, SEALING, "a regular file", kind(&now)));
                    }
                    let executable = now.st_mode & 0o100 != 0;
                    self.set(&file, &p, sealed_mode(self.release_dir, self.public, &p, false, executable))?;
                }
                SFlag::S_IFSOCK if self.sockets_left => {}
                _ => bail!(
                    "{} is {}: a release holds only regular files, directories and symlinks",
                    p.display(),
                    kind(&st)
                ),
            }
        }
        Ok(())
    }
}

/// The mode `seal` gives `path` (see there).
fn sealed_mode(release_dir: &Path, public: &[PathBuf], path: &Path, dir: bool, executable: bool) -> u32 {
    let is_public = public.iter().any(|p| path.starts_with(p));
    let leads_to_public = public.iter().any(|p| p.starts_with(path));
    match (dir, is_public) {
        // The service's environment may hold secrets: systemd reads it as root.
        (false, _) if path == crate::release::store::environment_file(release_dir) => 0o600,
        (true, true) => 0o755,
        (true, false) if path == release_dir.join(crate::release::store::META_DIR) => 0o755,
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
    use std::fs;
    use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};

    fn mode(p: &Path) -> u32 {
        fs::symlink_metadata(p).unwrap().mode() & 0o7777
    }

    fn chmod(p: &Path, mode: u32) {
        fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
    }

    fn open_dir(p: &Path) -> OwnedFd {
        nix::fcntl::open(p, OFlag::O_RDONLY | OFlag::O_DIRECTORY, Mode::empty()).unwrap()
    }

    const NOGROUP: u32 = 65534;

    #[test]
    fn a_release_is_root_only_until_sealed_and_copies_lose_setuid_and_shared_write() {
        let base = tempfile::tempdir().unwrap();
        let src = base.path().join("src");
        tree(&src, &["bin/tool", "notes.txt", "open/mod.py", "web/static/app.css"]);
        chmod(&src.join("bin/tool"), 0o4755);
        chmod(&src.join("notes.txt"), 0o2666);
        chmod(&src.join("open"), 0o777);
        chmod(&src.join("web"), 0o777);
        let spec = CopySpec { source: src.clone(), exclude: vec![], never: vec![] };
        let dest = base.path().join("release");
        spec.copy_into(&dest).unwrap();
        assert_eq!(mode(&dest), 0o700);
        assert_eq!(mode(&dest.join("bin/tool")), 0o700, "no setuid, nobody else");
        assert_eq!(mode(&dest.join("notes.txt")), 0o600, "no setgid, no group or world write");
        assert_eq!(mode(&dest.join("open")), 0o700);
        assert_eq!(mode(&dest.join("web")), 0o700);
        assert_eq!(fs::read_to_string(dest.join("bin/tool")).unwrap(), "bin/tool");

        let public = [dest.join("web/static")];
        seal(&dest, NOGROUP, &public, Seal::Staging).unwrap();
        assert_eq!(mode(&dest), 0o700, "the deps and build hooks run in a release only root enters");
        assert_eq!(mode(&dest.join("open")), 0o750);
        assert_eq!(mode(&dest.join("web")), 0o751);
        assert_eq!(mode(&dest.join("bin/tool")), 0o750);
        assert_eq!(mode(&dest.join("notes.txt")), 0o640);
        let meta = fs::metadata(dest.join("open/mod.py")).unwrap();
        assert_eq!((meta.uid(), meta.gid(), meta.mode() & 0o7777), (0, NOGROUP, 0o640));

        seal(&dest, NOGROUP, &public, Seal::Final).unwrap();
        assert_eq!(mode(&dest), 0o751);
        assert_eq!(mode(&dest.join("web/static")), 0o755);
        assert_eq!(mode(&dest.join("web/static/app.css")), 0o644);
    }

    #[test]
    fn a_file_is_read_beneath_the_release_never_through_a_link() {
        let dir = tempfile::tempdir().unwrap();
        let release = dir.path().join("r1");
        std::fs::create_dir_all(release.join("pages")).unwrap();
        std::fs::write(release.join("pages/503.html"), "down").unwrap();
        std::fs::write(dir.path().join("secret"), "root's").unwrap();
        symlink(dir.path().join("secret"), release.join("pages/leak.html")).unwrap();
        symlink(dir.path(), release.join("up")).unwrap();
        assert_eq!(read_beneath(&release, Path::new("pages/503.html")).unwrap(), b"down");
        for rel in ["pages/leak.html", "up/secret"] {
            let err = read_beneath(&release, Path::new(rel)).unwrap_err().to_string();
            assert!(err.contains("is a symlink or lies under one"), "{rel}: {err}");
        }
        assert!(read_beneath(&release, Path::new("pages")).is_err(), "a directory is no page");
        assert!(read_beneath(&release, Path::new("../secret")).is_err());
    }

    #[test]
    fn a_copy_never_writes_through_a_link_planted_in_the_release() {
        let base = tempfile::tempdir().unwrap();
        let (src, dest) = (base.path().join("src"), base.path().join("release"));
        tree(&src, &["a.txt", "d/x"]);
        fs::create_dir(&dest).unwrap();
        let victim = base.path().join("victim");
        fs::write(&victim, "old").unwrap();
        chmod(&victim, 0o644);
        symlink(&victim, dest.join("a.txt")).unwrap();
        symlink(base.path(), dest.join("d")).unwrap();
        let (s, d) = (open_dir(&src), open_dir(&dest));
        let name = OsStr::new("a.txt");
        let err = copy_file(s.as_fd(), d.as_fd(), name, &src.join("a.txt"), &dest.join("a.txt")).unwrap_err();
        assert!(
            format!("{err:#}").starts_with(&format!("creating {}: EEXIST", dest.join("a.txt").display())),
            "{err:#}"
        );
        assert_eq!((fs::read_to_string(&victim).unwrap().as_str(), mode(&victim)), ("old", 0o644));
        assert!(copy_dir(s.as_fd(), d.as_fd(), OsStr::new("d"), &src.join("d"), &dest.join("d")).is_err());
        assert!(!base.path().join("x").exists());

        // relctl's own files (settings, dependency links) neither.
        let err = write_beneath(&dest, Path::new("d/settings.py"), b"SECRET", 0o640, NOGROUP).unwrap_err();
        let shown = dest.join("d").display().to_string();
        assert_eq!(
            err.to_string(),
            format!("{shown} is not a directory but a symlink or file: relctl writes nothing through it")
        );
        assert!(!base.path().join("settings.py").exists());
        assert!(link_beneath(&dest, Path::new("d/.venv"), Path::new("/opt/x")).is_err());
        assert!(!base.path().join(".venv").exists());
        write_beneath(&dest, Path::new("new/dir/settings.py"), b"S", 0o640, NOGROUP).unwrap();
        let meta = fs::metadata(dest.join("new/dir/settings.py")).unwrap();
        assert_eq!((meta.gid(), meta.mode() & 0o7777, mode(&dest.join("new/dir"))), (NOGROUP, 0o640, 0o700));
    }

    #[test]
    fn a_source_entry_swapped_for_a_link_or_fifo_is_refused() {
        let base = tempfile::tempdir().unwrap();
        let (src, dest) = (base.path().join("src"), base.path().join("release"));
        tree(&base.path().join("outside"), &["shadow"]);
        fs::create_dir_all(&src).unwrap();
        fs::create_dir(&dest).unwrap();
        // What the walk saw as a file and a directory are links by the time they are opened.
        symlink(base.path().join("outside/shadow"), src.join("secret.txt")).unwrap();
        symlink(base.path().join("outside"), src.join("sub")).unwrap();
        nix::unistd::mkfifo(&src.join("pipe"), Mode::from_bits_truncate(0o600)).unwrap();
        let (s, d) = (open_dir(&src), open_dir(&dest));
        let copy = |name: &str| copy_file(s.as_fd(), d.as_fd(), OsStr::new(name), &src.join(name), &dest.join(name));
        let err = copy("secret.txt").unwrap_err();
        let shown = src.join("secret.txt").display().to_string();
        assert_eq!(
            err.to_string(),
            format!("{shown} changed while it was copied: it was a regular file, it is now a symlink")
        );
        let err = copy("pipe").unwrap_err();
        assert!(err.to_string().ends_with("it was a regular file, it is now a fifo"), "{err}");
        let err = copy_dir(s.as_fd(), d.as_fd(), OsStr::new("sub"), &src.join("sub"), &dest.join("sub")).unwrap_err();
        assert!(err.to_string().contains("sub changed while it was copied: it was a directory"), "{err}");
        assert_eq!(fs::read_dir(&dest).unwrap().count(), 0, "nothing copied");
    }

    #[test]
    fn seal_changes_links_themselves_never_what_they_point_at() {
        let base = tempfile::tempdir().unwrap();
        let outside = base.path().join("outside");
        tree(&outside, &["f"]);
        chmod(&outside.join("f"), 0o606);
        chmod(&outside, 0o777);
        let release = base.path().join("release");
        drop(create_private_dir(&release).unwrap());
        symlink(outside.join("f"), release.join("file-link")).unwrap();
        symlink(&outside, release.join("dir-link")).unwrap();
        symlink("../nowhere", release.join("dangling")).unwrap();
        seal(&release, NOGROUP, &[], Seal::Final).unwrap();
        assert_eq!(fs::read_link(release.join("file-link")).unwrap(), outside.join("f"));
        assert_eq!(fs::read_link(release.join("dir-link")).unwrap(), outside);
        assert_eq!(fs::read_link(release.join("dangling")).unwrap(), Path::new("../nowhere"));
        assert_eq!(fs::symlink_metadata(release.join("file-link")).unwrap().gid(), NOGROUP);
        let f = fs::metadata(outside.join("f")).unwrap();
        assert_eq!((f.mode() & 0o7777, f.gid()), (0o606, 0));
        assert_eq!((mode(&outside), fs::metadata(&outside).unwrap().gid()), (0o777, 0));
    }

    #[test]
    fn seal_gives_the_environment_to_root_alone_and_refuses_fifos_and_sockets() {
        let base = tempfile::tempdir().unwrap();
        let release = base.path().join("release");
        drop(create_private_dir(&release).unwrap());
        tree(&release, &[".relctl/environment", ".relctl/start"]);
        chmod(&release.join(".relctl/environment"), 0o644);
        chmod(&release.join(".relctl/start"), 0o755);
        seal(&release, NOGROUP, &[], Seal::Staging).unwrap();
        let env = fs::metadata(release.join(".relctl/environment")).unwrap();
        assert_eq!((env.uid(), env.mode() & 0o7777), (0, 0o600));
        assert_eq!(mode(&release.join(".relctl/start")), 0o750);
        assert_eq!(mode(&release.join(".relctl")), 0o755);

        let socket = std::os::unix::net::UnixListener::bind(release.join("gunicorn.sock")).unwrap();
        seal(&release, NOGROUP, &[], Seal::Adopted).unwrap();
        assert_eq!(mode(&release), 0o751, "a hand-made server's socket is left in an adopted release");
        let err = seal(&release, NOGROUP, &[], Seal::Final).unwrap_err();
        assert!(
            err.to_string()
                .ends_with("gunicorn.sock is a socket: a release holds only regular files, directories and symlinks"),
            "{err}"
        );
        drop(socket);
        fs::remove_file(release.join("gunicorn.sock")).unwrap();
        nix::unistd::mkfifo(&release.join(".relctl/pipe"), Mode::from_bits_truncate(0o666)).unwrap();
        let err = seal(&release, NOGROUP, &[], Seal::Final).unwrap_err();
        let shown = release.join(".relctl/pipe").display().to_string();
        assert_eq!(
            err.to_string(),
            format!("{shown} is a fifo: a release holds only regular files, directories and symlinks")
        );
    }

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
        assert_eq!(mode(".relctl/environment", false, false), 0o600, "it may hold secrets");
        assert_eq!(sealed_mode(r, &[], r, true, true), 0o751);
        assert_eq!(sealed_mode(r, &[], &r.join("API"), true, true), 0o750);
    }
}
