//! The secret key relctl generates once per build: `<build_dir>/.relctl-secret-key`, an
//! environment file (`RELCTL_SECRET_KEY=<64 hex digits>`, 0600 root) that the service unit reads
//! as root and gives the app. Made on the build's first deploy, kept across releases, rollbacks
//! and promotions (sessions and signed values survive a deploy), removed with the build. An app
//! whose own secrets file or settings have no key uses it (`builtin:django` does).

use std::io::{ErrorKind, Read};
use std::path::Path;

use anyhow::{Context, Result};

use crate::host::atomic;

/// The variable the service gets.
pub const VARIABLE: &str = "RELCTL_SECRET_KEY";

/// The file's name in the build directory.
pub const FILE_NAME: &str = ".relctl-secret-key";

/// Creates `path` with a new random key unless it exists; returns whether it made one. A file
/// that is there is kept as it is (its key is the build's), whatever made it.
pub fn ensure(path: &Path) -> Result<bool> {
    // Looked at first so that a build that has its key leaves its directory untouched (not even
    // a temporary file, whose removal would change the directory's times).
    match std::fs::symlink_metadata(path) {
        Ok(_) => return Ok(false),
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => {
            return Err(anyhow::Error::new(e).context(format!("looking for the build's secret key {}", path.display())))
        }
    }
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("reading /dev/urandom for the build's secret key")?;
    let key: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let text = format!(
        "# The secret key relctl generated for this build; the service gets it as {VARIABLE}.\n{VARIABLE}={key}\n"
    );
    match atomic::create_new(path, text.as_bytes(), 0o600) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(anyhow::Error::new(e).context(format!("writing the build's secret key {}", path.display()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_key_is_made_once_root_only_and_then_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        assert!(ensure(&path).unwrap());
        let first = std::fs::read_to_string(&path).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let vars = crate::release::render::parse_env_file(&first).unwrap();
        let key = &vars[VARIABLE];
        assert_eq!(key.len(), 64, "{key}");
        assert!(key.chars().all(|c| c.is_ascii_hexdigit()), "{key}");
        assert!(!ensure(&path).unwrap(), "kept");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), first);
        let other = dir.path().join("other");
        ensure(&other).unwrap();
        assert_ne!(
            crate::release::render::parse_env_file(&std::fs::read_to_string(&other).unwrap()).unwrap()[VARIABLE],
            *key
        );
    }
}
