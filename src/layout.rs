//! Where things live on disk (DESIGN.md §2), release ids, and atomic file writes.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{fchown, symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Serialize;

/// The paths of one app: where its builds and units live.
#[derive(Debug, Clone, Serialize)]
pub struct AppLayout {
    pub app: String,
    pub component: String,
    /// `<root>`, e.g. /opt/medctrl/backend
    pub root: PathBuf,
    /// /etc/systemd/system
    pub unit_dir: PathBuf,
    /// The socket file name inside each build directory.
    pub socket_name: String,
}

/// The paths of one build of an app.
#[derive(Debug, Clone, Serialize)]
pub struct BuildLayout {
    pub build: String,
    /// `<root>/<build>`
    pub build_dir: PathBuf,
    /// `<root>/<build>/releases`
    pub releases_dir: PathBuf,
    /// `<root>/<build>/current`
    pub current: PathBuf,
    /// `<root>/<build>/<socket>`
    pub socket: PathBuf,
    /// `/var/lib/<app>/<component>/<build>`
    pub state_dir: PathBuf,
    /// `<app>/<component>/<build>`, the service's StateDirectory=
    pub state_dir_rel: String,
    pub service_unit: String,
    pub socket_unit: String,
}

pub const UNIT_DIR: &str = "/etc/systemd/system";
/// relctl's own files inside a release directory.
pub const RELEASE_META_DIR: &str = ".relctl";

impl AppLayout {
    pub fn service_template(&self) -> String {
        format!("{}@.service", self.app)
    }
    pub fn socket_template(&self) -> String {
        format!("{}@.socket", self.app)
    }
    pub fn target(&self) -> String {
        format!("{}.target", self.app)
    }

    pub fn build(&self, build: &str) -> BuildLayout {
        let build_dir = self.root.join(build);
        let state_dir_rel = format!("{}/{}/{}", self.app, self.component, build);
        BuildLayout {
            build: build.to_string(),
            releases_dir: build_dir.join("releases"),
            current: build_dir.join("current"),
            socket: build_dir.join(&self.socket_name),
            state_dir: Path::new("/var/lib").join(&state_dir_rel),
            state_dir_rel,
            service_unit: format!("{}@{}.service", self.app, build),
            socket_unit: format!("{}@{}.socket", self.app, build),
            build_dir,
        }
    }

    /// The per-build drop-in relctl writes for the service.
    pub fn dropin_file(&self, build: &str) -> PathBuf {
        self.unit_dir.join(format!("{}@{}.service.d", self.app, build)).join("50-relctl.conf")
    }
}

impl BuildLayout {
    pub fn release_dir(&self, id: &str) -> PathBuf {
        self.releases_dir.join(id)
    }

    /// The release `current` points at, if any.
    pub fn current_release(&self) -> Option<String> {
        let target = fs::read_link(&self.current).ok()?;
        target.file_name().map(|n| n.to_string_lossy().into_owned())
    }
}

/// A release id: UTC time to the second, then `-<git short hash>[-dirty]` when known.
pub fn release_id(now: jiff::Timestamp, git: Option<&GitRevision>) -> String {
    let mut id = now.strftime("%Y%m%dT%H%M%SZ").to_string();
    if let Some(g) = git {
        id.push('-');
        id.push_str(&g.short);
        if g.dirty {
            id.push_str("-dirty");
        }
    }
    id
}

#[derive(Debug, Clone, Serialize)]
pub struct GitRevision {
    pub short: String,
    pub dirty: bool,
}

/// The git revision of `source`, when it is inside a git checkout and git is installed.
pub fn git_revision(source: &Path) -> Option<GitRevision> {
    let git = which::which("git").ok()?;
    let run = |args: &[&str]| -> Option<String> {
        let out = std::process::Command::new(&git)
            .arg("-C")
            .arg(source)
            .args(args)
            .stderr(std::process::Stdio::null())
            .output()
            .ok()?;
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    let short = run(&["rev-parse", "--short", "HEAD"])?;
    let status = run(&["status", "--porcelain", "--untracked-files=normal", "--", "."])?;
    Some(GitRevision { short, dirty: !status.is_empty() })
}

/// Writes `contents` to `path` atomically: a temp file in the same directory, mode set, fsync,
/// then rename(2) over the old one. With `gid`, the file is owned root:`gid`. Returns whether the
/// file changed.
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32, gid: Option<u32>) -> Result<bool> {
    if let (Ok(old), Ok(meta)) = (fs::read(path), fs::metadata(path)) {
        let same_owner = gid.is_none_or(|g| meta.gid() == g && meta.uid() == 0);
        if old == contents && meta.permissions().mode() & 0o7777 == mode && same_owner {
            return Ok(false);
        }
    }
    let tmp = temp_sibling(path);
    let result = (|| -> std::io::Result<()> {
        let mut f = fs::OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        if let Some(g) = gid {
            fchown(&f, Some(0), Some(g))?;
        }
        f.set_permissions(fs::Permissions::from_mode(mode))?;
        f.write_all(contents)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("writing {}", path.display()));
    }
    Ok(true)
}

/// Points the symlink `link` at `target` atomically: a new symlink beside it, then rename(2).
pub fn switch_symlink(link: &Path, target: &Path) -> Result<()> {
    let tmp = temp_sibling(link);
    let _ = fs::remove_file(&tmp);
    symlink(target, &tmp).with_context(|| format!("creating symlink {}", tmp.display()))?;
    fs::rename(&tmp, link).with_context(|| {
        let _ = fs::remove_file(&tmp);
        format!("switching {} to {}", link.display(), target.display())
    })
}

fn temp_sibling(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.relctl-tmp.{}", std::process::id()))
}

/// Creates `dir` (and parents) with mode 0755 if missing.
pub fn ensure_dir(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_ids_sort_by_time_and_name_the_revision() {
        let t: jiff::Timestamp = "2026-11-23T13:05:01Z".parse().unwrap();
        assert_eq!(release_id(t, None), "20261123T130501Z");
        let g = GitRevision { short: "abc1234".into(), dirty: true };
        assert_eq!(release_id(t, Some(&g)), "20261123T130501Z-abc1234-dirty");
        let later: jiff::Timestamp = "2026-11-23T13:05:02Z".parse().unwrap();
        assert!(release_id(t, Some(&g)) < release_id(later, None));
    }

    #[test]
    fn build_layout_follows_the_design() {
        let app = AppLayout {
            app: "medctrl".into(),
            component: "backend".into(),
            root: "/opt/medctrl/backend".into(),
            unit_dir: UNIT_DIR.into(),
            socket_name: "gunicorn.sock".into(),
        };
        let b = app.build("development");
        assert_eq!(b.socket, Path::new("/opt/medctrl/backend/development/gunicorn.sock"));
        assert_eq!(b.current, Path::new("/opt/medctrl/backend/development/current"));
        assert_eq!(b.state_dir, Path::new("/var/lib/medctrl/backend/development"));
        assert_eq!(b.service_unit, "medctrl@development.service");
        assert_eq!(
            app.dropin_file("development"),
            Path::new("/etc/systemd/system/medctrl@development.service.d/50-relctl.conf")
        );
    }

    #[test]
    fn atomic_write_sets_mode_and_reports_change() {
        let dir = std::env::temp_dir().join(format!("relctl-layout-test-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let f = dir.join("unit");
        assert!(write_atomic(&f, b"a", 0o640, None).unwrap());
        assert_eq!(fs::metadata(&f).unwrap().permissions().mode() & 0o777, 0o640);
        assert!(!write_atomic(&f, b"a", 0o640, None).unwrap());
        assert!(write_atomic(&f, b"b", 0o644, None).unwrap());
        assert_eq!(fs::read(&f).unwrap(), b"b");
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 1, "no temp files left behind");
        let link = dir.join("current");
        switch_symlink(&link, Path::new("releases/one")).unwrap();
        switch_symlink(&link, Path::new("releases/two")).unwrap();
        assert_eq!(fs::read_link(&link).unwrap(), Path::new("releases/two"));
        fs::remove_dir_all(&dir).unwrap();
    }
}
