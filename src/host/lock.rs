//! One lock per app: `flock(2)` on /run/relctl/<app>.lock, held while relctl changes the app
//! (build, promote, rollback, start, stop, restart, reload, destroy). The kernel releases it if
//! relctl dies. The file says who holds it, for the message a waiting relctl prints.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

pub const LOCK_DIR: &str = "/run/relctl";

/// How long a relctl waits for another one to release the app's lock (a build with slow hooks
/// takes minutes); `--no-wait` does not wait at all.
pub const APP_LOCK_WAIT: Duration = Duration::from_secs(10 * 60);

/// How long relctl waits for a build's switch lock: besides relctl (which holds the app lock),
/// only an instance's `ExecStartPost=` takes it, for the time of a rename.
pub const SWITCH_LOCK_WAIT: Duration = Duration::from_secs(30);

/// Held until dropped.
#[derive(Debug)]
pub struct AppLock {
    _file: File,
}

/// Takes the app's lock. If another relctl holds it: with `wait`, tells `notify` who holds it
/// and waits for it up to `wait`, then fails naming the holder; without, fails at once naming
/// the holder.
pub fn acquire(dir: &Path, app: &str, command: &str, wait: Option<Duration>, notify: impl Fn(&str)) -> Result<AppLock> {
    let path = dir.join(format!("{app}.lock"));
    let mut file = open(dir, &path)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let holder = holder(&mut file);
            let Some(wait) = wait else {
                bail!("{app} is locked by another relctl ({holder}); not waiting (--no-wait)");
            };
            notify(&format!("relctl: waiting for the lock on {app}, held by {holder}"));
            if !lock_within(&file, &path, wait)? {
                let holder = self::holder(&mut file);
                bail!(
                    "{app} is still locked by another relctl ({holder}) after {}; gave up (the lock is {})",
                    human(wait),
                    path.display()
                );
            }
        }
        Err(TryLockError::Error(e)) => return Err(e).with_context(|| format!("locking {}", path.display())),
    }
    let info = format!("pid {}, `{command}`, since {}", std::process::id(), crate::report::utc(jiff::Timestamp::now()));
    (|| -> std::io::Result<()> {
        file.set_len(0)?;
        file.rewind()?;
        file.write_all(info.as_bytes())
    })()
    .with_context(|| format!("writing who holds {}", path.display()))?;
    Ok(AppLock { _file: file })
}

/// The file of a build's switch lock, `<dir>/<app>@<build>.switch` (`build` may be systemd's
/// `%i`). relctl holds it while it starts, stops and switches the build's instances; starting
/// `<app>@<build>` without it held (`systemctl`, boot, `Restart=`) points the public socket at
/// that instance (its `ExecStartPost=` runs `flock -n` on this file).
pub fn switch_lock_path(dir: &Path, app: &str, build: &str) -> PathBuf {
    dir.join(format!("{app}@{build}.switch"))
}

/// Takes a build's switch lock (see [`switch_lock_path`]); held until dropped. Only an instance's
/// `ExecStartPost=` can hold it besides relctl (relctl holds the app lock), and only briefly:
/// waits up to `wait` (None: `--no-wait`, not at all), then fails naming the file and who holds it.
pub fn switch_lock(dir: &Path, app: &str, build: &str, wait: Option<Duration>) -> Result<AppLock> {
    let path = switch_lock_path(dir, app, build);
    let file = open(dir, &path)?;
    if !lock_within(&file, &path, wait.unwrap_or(Duration::ZERO))? {
        let held = match flock_holder(&file) {
            Some(who) => format!("held by {who}"),
            None => "held by another process".to_string(),
        };
        match wait {
            None => bail!("the switch lock of {app}@{build}, {}, is {held}; not waiting (--no-wait)", path.display()),
            Some(w) => bail!(
                "the switch lock of {app}@{build}, {}, is still {held} after {}; gave up",
                path.display(),
                human(w)
            ),
        }
    }
    Ok(AppLock { _file: file })
}

/// Takes `file`'s lock, trying until `wait` has passed; false if it is still held then.
fn lock_within(file: &File, path: &Path, wait: Duration) -> Result<bool> {
    let deadline = Instant::now() + wait;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(true),
            Err(TryLockError::WouldBlock) => {}
            Err(TryLockError::Error(e)) => return Err(e).with_context(|| format!("locking {}", path.display())),
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok(false);
        }
        std::thread::sleep((deadline - now).min(Duration::from_millis(100)));
    }
}

/// Makes sure the lock directory is root's (relctl's user's) and private: created 0700; an
/// existing one must be a directory owned by that user (else refused, naming it), and a wider
/// mode is narrowed to 0700.
pub fn private_dir(dir: &Path) -> Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating {} (relctl changes systemd units: run it as root)", dir.display()))?;
    let meta = fs::symlink_metadata(dir).with_context(|| format!("reading {}", dir.display()))?;
    let me = nix::unistd::geteuid().as_raw();
    if !meta.is_dir() {
        bail!("{} is not a directory; relctl keeps its locks there: remove it", dir.display());
    }
    if meta.uid() != me {
        bail!(
            "{} is owned by uid {}, not {}; whoever owns it can take or replace relctl's locks: remove it (relctl creates it again, 0700)",
            dir.display(),
            meta.uid(),
            if me == 0 { "root".to_string() } else { format!("uid {me}") }
        );
    }
    if meta.mode() & 0o077 != 0 {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
            .with_context(|| format!("making {} private (0700)", dir.display()))?;
    }
    Ok(())
}

/// Opens (creating it 0600) a lock file in the private lock directory, never through a symlink;
/// an existing file must be a regular file of relctl's user, and a wider mode is narrowed to 0600.
fn open(dir: &Path, path: &Path) -> Result<File> {
    private_dir(dir)?;
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK | nix::libc::O_CLOEXEC)
        .open(path);
    let file = match file {
        Err(e) if e.raw_os_error() == Some(nix::libc::ELOOP) => {
            bail!("lock file {} is a symlink; relctl does not follow links for its locks: remove it", path.display())
        }
        other => other.with_context(|| format!("opening lock file {}", path.display()))?,
    };
    let meta = file.metadata().with_context(|| format!("reading lock file {}", path.display()))?;
    if !meta.is_file() || meta.uid() != nix::unistd::geteuid().as_raw() {
        bail!("lock file {} is not a regular file of relctl's user (uid {}); remove it", path.display(), meta.uid());
    }
    if meta.mode() & 0o077 != 0 {
        file.set_permissions(fs::Permissions::from_mode(0o600))
            .with_context(|| format!("making lock file {} private (0600)", path.display()))?;
    }
    Ok(file)
}

/// Who holds a `flock` on `file`, from /proc/locks: `pid N (comm)`; None if not found.
fn flock_holder(file: &File) -> Option<String> {
    let meta = file.metadata().ok()?;
    let dev = meta.dev();
    let id = format!("{:02x}:{:02x}:{}", nix::sys::stat::major(dev), nix::sys::stat::minor(dev), meta.ino());
    let locks = fs::read_to_string("/proc/locks").ok()?;
    let pid = locks.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.get(1) == Some(&"FLOCK") && f.get(5) == Some(&id.as_str())).then(|| f.get(4).map(|p| p.to_string()))?
    })?;
    let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    Some(format!("pid {pid} ({})", comm.trim()))
}

/// A wait as people say it: `30 s`, `10 min`.
fn human(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 60 && s.is_multiple_of(60) {
        format!("{} min", s / 60)
    } else if s >= 1 {
        format!("{s} s")
    } else {
        format!("{} ms", d.as_millis())
    }
}

/// Who holds the lock, as its holder wrote it.
fn holder(file: &mut File) -> String {
    let mut s = String::new();
    match file.rewind().and_then(|_| file.read_to_string(&mut s)) {
        Ok(_) if !s.trim().is_empty() => s.trim().to_string(),
        Ok(_) => "a process that has not said who it is yet".into(),
        Err(e) => format!("a process relctl cannot name ({e})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    #[test]
    fn second_holder_waits_or_fails_naming_the_first() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("run-relctl");
        let first = acquire(&dir, "medctrl", "relctl build development", Some(APP_LOCK_WAIT), |_| {}).unwrap();
        let err = acquire(&dir, "medctrl", "relctl build testing", None, |_| {}).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!(
                "medctrl is locked by another relctl (pid {}, `relctl build development`, since ",
                std::process::id()
            )),
            "{err}"
        );
        // another app is not blocked
        drop(acquire(&dir, "other", "relctl build x", None, |_| {}).unwrap());

        let (tx, rx) = mpsc::channel();
        let d = dir.clone();
        let waiter = std::thread::spawn(move || {
            let msg = std::sync::Mutex::new(String::new());
            let lock =
                acquire(&d, "medctrl", "relctl restart", Some(APP_LOCK_WAIT), |m| *msg.lock().unwrap() = m.to_string())
                    .unwrap();
            tx.send(()).unwrap();
            drop(lock);
            msg.into_inner().unwrap()
        });
        assert!(rx.recv_timeout(Duration::from_millis(300)).is_err(), "the waiter must wait");
        drop(first);
        rx.recv_timeout(Duration::from_secs(5)).expect("the waiter gets the lock once it is free");
        assert!(waiter.join().unwrap().contains("held by pid"));
    }

    fn mode(p: &Path) -> u32 {
        fs::symlink_metadata(p).unwrap().mode() & 0o7777
    }

    #[test]
    fn lock_files_are_0600_in_a_0700_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("run-relctl");
        let app = acquire(&dir, "medctrl", "relctl build x", None, |_| {}).unwrap();
        let switch = switch_lock(&dir, "medctrl", "development", None).unwrap();
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join("medctrl.lock")), 0o600);
        assert_eq!(mode(&switch_lock_path(&dir, "medctrl", "development")), 0o600);
        drop((app, switch));
        // Files and a directory left wider by an older relctl are narrowed.
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        fs::set_permissions(dir.join("medctrl.lock"), fs::Permissions::from_mode(0o644)).unwrap();
        fs::set_permissions(switch_lock_path(&dir, "medctrl", "development"), fs::Permissions::from_mode(0o666))
            .unwrap();
        drop(acquire(&dir, "medctrl", "relctl build x", None, |_| {}).unwrap());
        drop(switch_lock(&dir, "medctrl", "development", None).unwrap());
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join("medctrl.lock")), 0o600);
        assert_eq!(mode(&switch_lock_path(&dir, "medctrl", "development")), 0o600);
    }

    #[test]
    fn a_symlink_at_the_lock_path_is_refused_not_followed() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("run-relctl");
        fs::create_dir(&dir).unwrap();
        let target = tmp.path().join("victim");
        fs::write(&target, "precious").unwrap();
        std::os::unix::fs::symlink(&target, dir.join("medctrl.lock")).unwrap();
        std::os::unix::fs::symlink(&target, switch_lock_path(&dir, "medctrl", "dev")).unwrap();
        let err = acquire(&dir, "medctrl", "relctl build x", None, |_| {}).unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "lock file {} is a symlink; relctl does not follow links for its locks: remove it",
                dir.join("medctrl.lock").display()
            )
        );
        let err = switch_lock(&dir, "medctrl", "dev", None).unwrap_err().to_string();
        assert!(err.contains("is a symlink"), "{err}");
        assert_eq!(fs::read_to_string(&target).unwrap(), "precious");
    }

    #[test]
    fn a_lock_directory_of_another_user_is_refused() {
        if !nix::unistd::geteuid().is_root() {
            return; // only root can give a directory away
        }
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("run-relctl");
        fs::create_dir(&dir).unwrap();
        std::os::unix::fs::chown(&dir, Some(65534), None).unwrap();
        let err = acquire(&dir, "medctrl", "relctl build x", None, |_| {}).unwrap_err().to_string();
        assert!(err.starts_with(&format!("{} is owned by uid 65534, not root", dir.display())), "{err}");
    }

    #[test]
    fn a_held_switch_lock_fails_at_once_with_no_wait_and_after_the_bound_otherwise() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("run-relctl");
        let path = switch_lock_path(&dir, "medctrl", "development");
        let held = switch_lock(&dir, "medctrl", "development", None).unwrap();
        let t = Instant::now();
        let err = switch_lock(&dir, "medctrl", "development", None).unwrap_err().to_string();
        assert!(t.elapsed() < Duration::from_millis(500), "--no-wait does not wait");
        assert!(
            err.starts_with(&format!(
                "the switch lock of medctrl@development, {}, is held by pid {} (",
                path.display(),
                std::process::id()
            )),
            "{err}"
        );
        assert!(err.ends_with("; not waiting (--no-wait)"), "{err}");
        let t = Instant::now();
        let err =
            switch_lock(&dir, "medctrl", "development", Some(Duration::from_millis(300))).unwrap_err().to_string();
        assert!(t.elapsed() >= Duration::from_millis(300) && t.elapsed() < Duration::from_secs(2));
        assert!(
            err.starts_with(&format!(
                "the switch lock of medctrl@development, {}, is still held by pid",
                path.display()
            )),
            "{err}"
        );
        assert!(err.ends_with("after 300 ms; gave up"), "{err}");
        // Freed within the bound: taken.
        let d = dir.clone();
        let waiter =
            std::thread::spawn(move || switch_lock(&d, "medctrl", "development", Some(Duration::from_secs(5))));
        std::thread::sleep(Duration::from_millis(200));
        drop(held);
        waiter.join().unwrap().unwrap();
    }

    #[test]
    fn the_app_lock_wait_has_a_bound() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("run-relctl");
        let _first = acquire(&dir, "medctrl", "relctl build development", None, |_| {}).unwrap();
        let t = Instant::now();
        let err = acquire(&dir, "medctrl", "relctl restart", Some(Duration::from_millis(300)), |_| {})
            .unwrap_err()
            .to_string();
        assert!(t.elapsed() < Duration::from_secs(2));
        assert!(err.starts_with("medctrl is still locked by another relctl (pid "), "{err}");
        assert!(
            err.ends_with(&format!("after 300 ms; gave up (the lock is {})", dir.join("medctrl.lock").display())),
            "{err}"
        );
    }
}
