//! Is this file only root's? Run as root, relctl uses a manifest, a `[settings]` template, a
//! build's `secrets` and `htpasswd` only when no other user can change them: the file is owned by
//! root and not writable by its group or others, and every directory on the way to it (from `/`,
//! through every symlink followed, each owned by root too) is owned by root and not writable by
//! its group or others, unless it has the sticky bit (`/tmp`: others may add entries there but not
//! replace root's). Modelled on OpenSSH's `safe_path()` (misc.c), which does the same for
//! `authorized_keys` before sshd trusts them.
//!
//! Without root nothing is refused: relctl then runs with the rights of its user, who can only
//! hurt themselves (planning with `--dry-run`, unit tests).

use std::ffi::OsString;
use std::fs::{File, Metadata, OpenOptions};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

use nix::unistd::{Uid, User};

/// Whose files relctl uses: decided by the user it runs as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trust {
    /// Not root: any file the user can read (they can change nothing of anyone else's).
    Anyone,
    /// Root: only files that only root can change.
    RootOnly,
}

impl Trust {
    pub fn for_euid(euid: Uid) -> Trust {
        if euid.is_root() {
            Trust::RootOnly
        } else {
            Trust::Anyone
        }
    }

    /// For the user relctl runs as.
    pub fn current() -> Trust {
        Trust::for_euid(nix::unistd::geteuid())
    }
}

/// Why a file was not opened.
#[derive(Debug)]
pub enum Error {
    /// It could not be read (missing, not a directory on the way…).
    Io(io::Error),
    /// It or a directory on the way is not only root's: the whole message, one line.
    NotRootOnly(String),
}

impl Error {
    /// As a usage error: the refusal as it is, an I/O error as `io_message` words it.
    pub fn into_usage(self, io_message: impl FnOnce(io::Error) -> String) -> crate::error::Error {
        match self {
            Error::Io(e) => crate::error::Error::Usage(io_message(e)),
            Error::NotRootOnly(msg) => crate::error::Error::Usage(msg),
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Error {
        Error::Io(e)
    }
}

/// What the refusals say after naming the problem.
const RULE: &str = "as root, relctl uses only files that only root can change";

/// How many symlinks one path may go through (Linux's limit).
const MAX_LINKS: usize = 40;

/// Opens `path` (`what` names it in messages: "manifest", "[settings] template"…) for reading;
/// with [`Trust::RootOnly`], only when it is root's only (see the module's doc). The check is
/// made on every directory and link the path goes through, then on the opened file itself, so
/// nothing another user does between the check and the read can change what is read.
pub fn open(path: &Path, what: &str, trust: Trust) -> Result<File, Error> {
    if trust == Trust::Anyone {
        return Ok(File::open(path)?);
    }
    let real = resolve(path, what)?;
    let file = OpenOptions::new().read(true).custom_flags(libc_flags()).open(&real)?;
    check_file(path, what, &file.metadata()?)?;
    Ok(file)
}

/// [`open`], then reads the file as UTF-8 text.
pub fn read_to_string(path: &Path, what: &str, trust: Trust) -> Result<String, Error> {
    let mut text = String::new();
    io::Read::read_to_string(&mut open(path, what, trust)?, &mut text)?;
    Ok(text)
}

/// Checks a file relctl does not read itself but hands to a program running as root (nginx's
/// `auth_basic_user_file`) as [`open`] would; without root, nothing (the user may not be able to
/// read it, and need not).
pub fn check(path: &Path, what: &str, trust: Trust) -> Result<(), Error> {
    match trust {
        Trust::Anyone => Ok(()),
        Trust::RootOnly => open(path, what, trust).map(drop),
    }
}

/// No link at the last step (the path is resolved already), no blocking on a FIFO.
fn libc_flags() -> i32 {
    (nix::fcntl::OFlag::O_NOFOLLOW | nix::fcntl::OFlag::O_NONBLOCK | nix::fcntl::OFlag::O_CLOEXEC).bits()
}

/// Walks `path` from `/` one name at a time, following symlinks by hand so that every directory
/// and link on the way is checked; returns the path without links, whose last entry is a
/// regular file that is root's only.
fn resolve(path: &Path, what: &str) -> Result<PathBuf, Error> {
    let abs = std::path::absolute(path)?;
    let mut pending: Vec<OsString> = Vec::new();
    push_components(&mut pending, &abs);
    let mut at = PathBuf::from("/");
    check_dir(path, what, &at, &std::fs::symlink_metadata(&at)?)?;
    let mut links = 0;
    while let Some(name) = pending.pop() {
        if name == ".." {
            at.pop();
            continue;
        }
        let next = at.join(&name);
        let meta = std::fs::symlink_metadata(&next)?;
        if meta.file_type().is_symlink() {
            links += 1;
            if links > MAX_LINKS {
                return Err(Error::Io(io::Error::from_raw_os_error(nix::libc::ELOOP)));
            }
            if meta.uid() != 0 {
                return Err(refuse(
                    path,
                    what,
                    format!(
                        "goes through the symlink {}, which is owned by {}, not root",
                        next.display(),
                        owner(meta.uid())
                    ),
                    "replace the link with a root-owned one (ln -sfn) or with the file itself".into(),
                ));
            }
            let target = std::fs::read_link(&next)?;
            if target.is_absolute() {
                at = PathBuf::from("/");
            }
            push_components(&mut pending, &target);
            continue;
        }
        at = next;
        if pending.is_empty() {
            check_file(path, what, &meta)?;
        } else if meta.is_dir() {
            check_dir(path, what, &at, &meta)?;
        } else {
            return Err(Error::Io(io::Error::from_raw_os_error(nix::libc::ENOTDIR)));
        }
    }
    // A path ending in `.` or `..` names a directory.
    check_file(path, what, &std::fs::symlink_metadata(&at)?)?;
    Ok(at)
}

/// Puts the names of `p` on the stack, first name on top; `/` and `.` are left out.
fn push_components(pending: &mut Vec<OsString>, p: &Path) {
    let names: Vec<OsString> = p
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some("..".into()),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
        })
        .collect();
    pending.extend(names.into_iter().rev());
}

fn check_dir(path: &Path, what: &str, dir: &Path, meta: &Metadata) -> Result<(), Error> {
    let mode = meta.mode() & 0o7777;
    if meta.uid() != 0 {
        return Err(refuse(
            path,
            what,
            format!("is in {}, which is owned by {}, not root", dir.display(), owner(meta.uid())),
            "keep it in a directory only root can change (e.g. under /srv or /etc), or run relctl without sudo (e.g. build --dry-run)".into(),
        ));
    }
    if mode & 0o022 != 0 && mode & 0o1000 == 0 {
        return Err(refuse(
            path,
            what,
            format!(
                "is in {}, which is writable by {} (mode {mode:04o}) without the sticky bit",
                dir.display(),
                writers(mode)
            ),
            format!("run: chmod go-w {}", dir.display()),
        ));
    }
    Ok(())
}

fn check_file(path: &Path, what: &str, meta: &Metadata) -> Result<(), Error> {
    if meta.is_dir() {
        // As reading it would say, so that callers word it as any other read error.
        return Err(Error::Io(io::Error::from_raw_os_error(nix::libc::EISDIR)));
    }
    if !meta.is_file() {
        return Err(Error::NotRootOnly(format!(
            "{what} {} is not a regular file (a FIFO, socket or device); name a regular file",
            path.display()
        )));
    }
    if meta.uid() != 0 {
        return Err(refuse(
            path,
            what,
            format!("is owned by {}, not root", owner(meta.uid())),
            format!(
                "check it, then run: chown root: {}; or run relctl without sudo (e.g. build --dry-run)",
                path.display()
            ),
        ));
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(refuse(
            path,
            what,
            format!("is writable by {} (mode {mode:04o})", writers(mode)),
            format!("run: chmod go-w {}", path.display()),
        ));
    }
    Ok(())
}

/// `<what> <path> <problem>: as root, relctl uses only files that only root can change; <fix>`
fn refuse(path: &Path, what: &str, problem: String, fix: String) -> Error {
    Error::NotRootOnly(format!("{what} {} {problem}: {RULE}; {fix}", path.display()))
}

fn writers(mode: u32) -> &'static str {
    match (mode & 0o020 != 0, mode & 0o002 != 0) {
        (true, true) => "its group and everyone",
        (true, false) => "its group",
        _ => "everyone",
    }
}

/// The user's name, or `uid N` when it has none.
fn owner(uid: u32) -> String {
    match User::from_uid(Uid::from_raw(uid)) {
        Ok(Some(u)) => u.name,
        _ => format!("uid {uid}"),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{symlink, PermissionsExt};

    use super::*;

    const NOBODY: u32 = 65534;

    fn chown(p: &Path, uid: u32) {
        std::os::unix::fs::lchown(p, Some(uid), None).unwrap();
    }

    fn chmod(p: &Path, mode: u32) {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    /// A root-owned 0755 directory (in the 1777 /tmp) with a root-owned 0644 file `f` in it.
    fn setup() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        chmod(dir.path(), 0o755);
        let f = dir.path().join("f");
        std::fs::write(&f, "x").unwrap();
        chmod(&f, 0o644);
        (dir, f)
    }

    fn refused(p: &Path) -> String {
        match open(p, "manifest", Trust::RootOnly) {
            Err(Error::NotRootOnly(msg)) => msg,
            other => panic!("{} was not refused: {other:?}", p.display()),
        }
    }

    #[test]
    fn only_roots_files_in_only_roots_directories_are_opened_as_root() {
        let (dir, f) = setup();
        assert_eq!(read_to_string(&f, "manifest", Trust::RootOnly).unwrap(), "x");

        chown(&f, NOBODY);
        assert_eq!(
            refused(&f),
            format!(
                "manifest {p} is owned by nobody, not root: as root, relctl uses only files that only root can change; check it, then run: chown root: {p}; or run relctl without sudo (e.g. build --dry-run)",
                p = f.display()
            )
        );
        assert_eq!(read_to_string(&f, "manifest", Trust::Anyone).unwrap(), "x", "without root nothing is refused");
        assert!(check(&f, "manifest", Trust::Anyone).is_ok());
        assert!(matches!(check(&f, "manifest", Trust::RootOnly), Err(Error::NotRootOnly(_))));
        chown(&f, 0);

        chmod(&f, 0o664);
        assert!(refused(&f).ends_with(&format!(
            "is writable by its group (mode 0664): as root, relctl uses only files that only root can change; run: chmod go-w {}",
            f.display()
        )));
        chmod(&f, 0o646);
        assert!(refused(&f).contains("is writable by everyone (mode 0646)"));
        chmod(&f, 0o644);

        chown(dir.path(), NOBODY);
        assert!(refused(&f).starts_with(&format!(
            "manifest {} is in {}, which is owned by nobody, not root: ",
            f.display(),
            dir.path().display()
        )));
        chown(dir.path(), 0);

        chmod(dir.path(), 0o777);
        assert!(refused(&f).contains(&format!(
            "is in {}, which is writable by its group and everyone (mode 0777) without the sticky bit",
            dir.path().display()
        )));
        chmod(dir.path(), 0o1777);
        assert!(open(&f, "manifest", Trust::RootOnly).is_ok(), "a sticky directory (/tmp) is fine");

        let missing = dir.path().join("missing");
        assert!(
            matches!(open(&missing, "manifest", Trust::RootOnly), Err(Error::Io(e)) if e.kind() == io::ErrorKind::NotFound)
        );
        let is_dir = open(dir.path(), "manifest", Trust::RootOnly).unwrap_err();
        assert!(matches!(&is_dir, Error::Io(e) if e.to_string() == "Is a directory (os error 21)"), "{is_dir:?}");
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        assert_eq!(
            refused(&fifo),
            format!(
                "manifest {} is not a regular file (a FIFO, socket or device); name a regular file",
                fifo.display()
            )
        );
    }

    #[test]
    fn links_are_followed_and_checked_on_the_way() {
        let (dir, f) = setup();
        // A root-owned link in a root-only directory to a root-only file: fine, relative or not.
        let sub = dir.path().join("sub");
        std::fs::create_dir(&sub).unwrap();
        chmod(&sub, 0o755);
        symlink("../f", sub.join("rel")).unwrap();
        symlink(&f, sub.join("abs")).unwrap();
        assert_eq!(read_to_string(&sub.join("rel"), "manifest", Trust::RootOnly).unwrap(), "x");
        assert_eq!(read_to_string(&sub.join("abs"), "manifest", Trust::RootOnly).unwrap(), "x");
        // Through a linked directory too.
        symlink(&sub, dir.path().join("linked")).unwrap();
        assert!(open(&dir.path().join("linked/rel"), "manifest", Trust::RootOnly).is_ok());

        // Another user's link (in a sticky directory, where they may make one) is refused, though
        // it points at root's file: they could point it elsewhere.
        chmod(dir.path(), 0o1777);
        let theirs = dir.path().join("theirs");
        symlink(&f, &theirs).unwrap();
        chown(&theirs, NOBODY);
        assert!(refused(&theirs).starts_with(&format!(
            "manifest {} goes through the symlink {}, which is owned by nobody, not root: ",
            theirs.display(),
            theirs.display()
        )));

        // Root's link to a file of another user's: the file is what counts.
        let other = tempfile::tempdir().unwrap();
        chmod(other.path(), 0o755);
        let their_file = other.path().join("t.toml");
        std::fs::write(&their_file, "y").unwrap();
        chown(&their_file, NOBODY);
        let link = sub.join("to-theirs");
        symlink(&their_file, &link).unwrap();
        assert!(refused(&link).starts_with(&format!("manifest {} is owned by nobody, not root: ", link.display())));
        // ... or to a root file in another user's directory.
        chown(&their_file, 0);
        chown(other.path(), NOBODY);
        assert!(refused(&link).contains(&format!("is in {}, which is owned by nobody", other.path().display())));
    }

    #[test]
    fn relative_paths_and_dot_dot_resolve_like_the_kernel() {
        let (dir, f) = setup();
        let sub = dir.path().join("sub");
        std::fs::create_dir(&sub).unwrap();
        let via = sub.join("../f");
        assert_eq!(resolve(&via, "manifest").unwrap(), f);
        let loop_link = dir.path().join("loop");
        symlink(&loop_link, &loop_link).unwrap();
        assert!(matches!(open(&loop_link, "manifest", Trust::RootOnly), Err(Error::Io(_))));
    }
}
