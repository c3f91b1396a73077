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
pub const DROPIN_FILE: &str = "dropin.conf";

#[derive(Debug, Clone, Serialize)]
pub struct Release {
    pub id: String,
    pub dir: PathBuf,
    pub complete: bool,
    pub bad: Option<String>,
}

/// relctl's own files inside a release: metadata, environment, start script, drop-in copy.
pub fn meta_dir(release_dir: &Path) -> PathBuf {
    release_dir.join(RELEASE_META_DIR)
}

/// Marks a release complete.
pub fn mark_complete(release_dir: &Path, meta: &ReleaseMeta) -> Result<()> {
    let json = serde_json::to_vec_pretty(meta).expect("metadata serializes");
    layout::ensure_dir(&meta_dir(release_dir))?;
    layout::write_atomic(&meta_dir(release_dir).join(META_FILE), &json, 0o644, None).map(|_| ())
}

/// The metadata of a complete release.
pub fn read_meta(release_dir: &Path) -> Option<ReleaseMeta> {
    serde_json::from_slice(&fs::read(meta_dir(release_dir).join(META_FILE)).ok()?).ok()
}

/// The build's drop-in as recorded with a release (None: the release needs none).
pub fn recorded_dropin(release_dir: &Path) -> Option<String> {
    fs::read_to_string(meta_dir(release_dir).join(DROPIN_FILE)).ok()
}

/// The newest good (complete, not bad) release older than `current`: what rollback returns to.
pub fn previous<'a>(releases: &'a [Release], current: &str) -> Option<&'a Release> {
    releases.iter().rev().find(|r| r.complete && r.bad.is_none() && r.id.as_str() < current)
}

/// Marks a release bad, with the reason.
pub fn mark_bad(release_dir: &Path, reason: &str) -> Result<()> {
    layout::ensure_dir(&meta_dir(release_dir))?;
    layout::write_atomic(&meta_dir(release_dir).join(BAD_FILE), format!("{reason}\n").as_bytes(), 0o644, None)
        .map(|_| ())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::{AppLayout, UNIT_DIR};

    fn build_with(ids: &[(&str, bool)], current: &str) -> (BuildLayout, PathBuf) {
        let root = std::env::temp_dir().join(format!("relctl-store-{}-{}", std::process::id(), ids.len()));
        let _ = fs::remove_dir_all(&root);
        let app = AppLayout {
            app: "a".into(),
            component: "c".into(),
            root: root.clone(),
            unit_dir: UNIT_DIR.into(),
            socket_name: "s".into(),
        };
        let b = app.build("dev");
        for (id, complete) in ids {
            let dir = b.release_dir(id);
            fs::create_dir_all(&dir).unwrap();
            if *complete {
                let meta = ReleaseMeta {
                    id: id.to_string(),
                    app: "a".into(),
                    build: "dev".into(),
                    created: "now".into(),
                    git: None,
                };
                mark_complete(&dir, &meta).unwrap();
            }
        }
        crate::layout::switch_symlink(&b.current, &Path::new("releases").join(current)).unwrap();
        (b, root)
    }

    fn ids(b: &BuildLayout) -> Vec<String> {
        list(b).unwrap().into_iter().map(|r| r.id).collect()
    }

    #[test]
    fn prune_keeps_the_newest_and_always_the_current() {
        let (b, root) = build_with(&[("r1", true), ("r2", true), ("r3", true), ("r4", true)], "r1");
        assert_eq!(prune(&b, 2).unwrap(), ["r2"]);
        assert_eq!(ids(&b), ["r1", "r3", "r4"]);
        fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn incomplete_releases_are_removed_but_never_the_current_one() {
        let (b, root) = build_with(&[("r1", true), ("r2", false), ("r3", false)], "r3");
        assert_eq!(remove_incomplete(&b).unwrap(), ["r2"]);
        assert_eq!(ids(&b), ["r1", "r3"]);
        mark_bad(&b.release_dir("r1"), "health check failed").unwrap();
        let r1 = &list(&b).unwrap()[0];
        assert_eq!((r1.complete, r1.bad.as_deref()), (true, Some("health check failed")));
        fs::remove_dir_all(root).unwrap();
    }
}
