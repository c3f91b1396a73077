//! The releases of one build: `<root>/<build>/releases/<id>/`, each with relctl's metadata in
//! `.relctl/` (release.json once complete, `bad` once rejected).

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::layout::{self, BuildLayout, GitRevision, RELEASE_META_DIR};

/// Written last when a release is complete (staged, rendered, hooks passed).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReleaseMeta {
    pub id: String,
    pub app: String,
    pub build: String,
    pub created: String,
    pub git: Option<String>,
}

const META_FILE: &str = "release.json";
const BAD_FILE: &str = "bad";

#[derive(Debug, Clone, Serialize)]
pub struct Release {
    pub id: String,
    pub dir: PathBuf,
    pub complete: bool,
    pub bad: Option<String>,
}

fn meta_dir(release_dir: &Path) -> PathBuf {
    release_dir.join(RELEASE_META_DIR)
}

/// Marks a release complete.
pub fn mark_complete(release_dir: &Path, meta: &ReleaseMeta) -> Result<()> {
    let json = serde_json::to_vec_pretty(meta).expect("metadata serializes");
    layout::write_atomic(&meta_dir(release_dir).join(META_FILE), &json, 0o644, None).map(|_| ())
}

/// The metadata of a complete release.
pub fn read_meta(release_dir: &Path) -> Option<ReleaseMeta> {
    serde_json::from_slice(&fs::read(meta_dir(release_dir).join(META_FILE)).ok()?).ok()
}

/// Marks a release bad, with the reason.
pub fn mark_bad(release_dir: &Path, reason: &str) -> Result<()> {
    layout::write_atomic(&meta_dir(release_dir).join(BAD_FILE), format!("{reason}\n").as_bytes(), 0o644, None).map(|_| ())
}

pub fn git_label(g: Option<&GitRevision>) -> Option<String> {
    g.map(|g| if g.dirty { format!("{}-dirty", g.short) } else { g.short.clone() })
}

/// Every release directory of the build, oldest first.
pub fn list(build: &BuildLayout) -> Result<Vec<Release>> {
    let mut out = Vec::new();
    let entries = match fs::read_dir(&build.releases_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e).with_context(|| format!("reading {}", build.releases_dir.display())),
    };
    for entry in entries {
        let entry = entry?;
        if !entry.file_type()?.is_dir() {
            continue;
        }
        let dir = entry.path();
        let meta = meta_dir(&dir);
        out.push(Release {
            id: entry.file_name().to_string_lossy().into_owned(),
            complete: meta.join(META_FILE).is_file(),
            bad: fs::read_to_string(meta.join(BAD_FILE)).ok().map(|s| s.trim().to_string()),
            dir,
        });
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(out)
}

/// Removes releases a crashed or failed build left half-made (never the current one).
pub fn remove_incomplete(build: &BuildLayout) -> Result<Vec<String>> {
    let current = build.current_release();
    let mut removed = Vec::new();
    for r in list(build)? {
        if !r.complete && current.as_deref() != Some(r.id.as_str()) {
            remove(&r.dir)?;
            removed.push(r.id);
        }
    }
    Ok(removed)
}

/// Keeps the newest `keep` releases, plus the current one; removes the rest.
pub fn prune(build: &BuildLayout, keep: usize) -> Result<Vec<String>> {
    let current = build.current_release();
    let releases = list(build)?;
    let excess = releases.len().saturating_sub(keep);
    let mut removed = Vec::new();
    for r in releases.into_iter().take(excess) {
        if current.as_deref() != Some(r.id.as_str()) {
            remove(&r.dir)?;
            removed.push(r.id);
        }
    }
    Ok(removed)
}

pub fn remove(dir: &Path) -> Result<()> {
    fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))
}
