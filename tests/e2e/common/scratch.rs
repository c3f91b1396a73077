//! Scratch directories on the host (under the cargo target dir, which the sandboxes share: their
//! own /tmp is private) and copies of the example app edited for one test.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::env::REPO;
use super::show;

/// A fresh, empty directory named after `name`, unique to this call (tests run in parallel in
/// one process).
pub fn scratch_dir(name: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("e2e-{}-{n}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A copy of the example app (examples/medctrl, its manifest included, without a local .venv) in
/// a scratch dir, with `edit` applied to the copy's directory. Returns the copy's manifest.
pub fn variant(name: &str, edit: impl FnOnce(&Path)) -> PathBuf {
    let app = scratch_dir(name).join("medctrl");
    let out = Command::new("cp").arg("-a").arg(format!("{REPO}/examples/medctrl")).arg(&app).output().unwrap();
    assert!(out.status.success(), "cp: {}", show(&out));
    let _ = std::fs::remove_dir_all(app.join(".venv"));
    edit(&app);
    app.join("relctl.toml")
}

/// Appends `text` to the file.
pub fn append(path: &Path, text: &str) {
    let mut s = std::fs::read_to_string(path).unwrap();
    s.push_str(text);
    std::fs::write(path, s).unwrap();
}

/// Replaces every `from` in the file by `to`; `from` must be there.
pub fn replace(path: &Path, from: &str, to: &str) {
    let s = std::fs::read_to_string(path).unwrap();
    assert!(s.contains(from), "{} has no {from:?}", path.display());
    std::fs::write(path, s.replace(from, to)).unwrap();
}
