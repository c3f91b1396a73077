//! One lock per app: `flock(2)` on /run/relctl/<app>.lock, held while relctl changes the app
//! (build, promote, rollback, start, stop, restart, reload, destroy). The kernel releases it if
//! relctl dies. The file says who holds it, for the message a waiting relctl prints.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::Path;

use anyhow::{bail, Context, Result};

pub const LOCK_DIR: &str = "/run/relctl";

/// Held until dropped.
#[derive(Debug)]
pub struct AppLock {
    _file: File,
}

/// Takes the app's lock. If another relctl holds it: with `wait`, tells `notify` who holds it
/// and blocks until it is free; without, fails at once naming the holder.
pub fn acquire(dir: &Path, app: &str, command: &str, wait: bool, notify: impl Fn(&str)) -> Result<AppLock> {
    fs::create_dir_all(dir)
        .with_context(|| format!("creating {} (relctl changes systemd units: run it as root)", dir.display()))?;
    let path = dir.join(format!("{app}.lock"));
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("opening lock file {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let holder = holder(&mut file);
            if !wait {
                bail!("{app} is locked by another relctl ({holder}); not waiting (--no-wait)");
            }
            notify(&format!("relctl: waiting for the lock on {app}, held by {holder}"));
            file.lock().with_context(|| format!("locking {}", path.display()))?;
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
pub fn switch_lock_path(dir: &Path, app: &str, build: &str) -> std::path::PathBuf {
    dir.join(format!("{app}@{build}.switch"))
}

/// Takes a build's switch lock (see [`switch_lock_path`]); held until dropped. Only an instance's
/// `ExecStartPost=` can hold it besides relctl (relctl holds the app lock), and only briefly.
pub fn switch_lock(dir: &Path, app: &str, build: &str) -> Result<AppLock> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = switch_lock_path(dir, app, build);
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("opening lock file {}", path.display()))?;
    file.lock().with_context(|| format!("locking {}", path.display()))?;
    Ok(AppLock { _file: file })
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
        let first = acquire(&dir, "medctrl", "relctl build development", true, |_| {}).unwrap();
        let err = acquire(&dir, "medctrl", "relctl build testing", false, |_| {}).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!(
                "medctrl is locked by another relctl (pid {}, `relctl build development`, since ",
                std::process::id()
            )),
            "{err}"
        );
        // another app is not blocked
        drop(acquire(&dir, "other", "relctl build x", false, |_| {}).unwrap());

        let (tx, rx) = mpsc::channel();
        let d = dir.clone();
        let waiter = std::thread::spawn(move || {
            let msg = std::sync::Mutex::new(String::new());
            let lock =
                acquire(&d, "medctrl", "relctl restart", true, |m| *msg.lock().unwrap() = m.to_string()).unwrap();
            tx.send(()).unwrap();
            drop(lock);
            msg.into_inner().unwrap()
        });
        assert!(rx.recv_timeout(Duration::from_millis(300)).is_err(), "the waiter must wait");
        drop(first);
        rx.recv_timeout(Duration::from_secs(5)).expect("the waiter gets the lock once it is free");
        assert!(waiter.join().unwrap().contains("held by pid"));
    }
}
