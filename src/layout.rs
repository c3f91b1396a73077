//! Where things live on disk: `<root>/<build>/{current,releases/<id>,<socket>}`, the state
//! directory under /var/lib, and the unit files under /etc/systemd/system.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Serialize;

use crate::store::ReleaseId;

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
    /// `/var/lib/<app>/<component>/<build>`, the service's StateDirectory=
    pub state_dir: PathBuf,
    pub service_unit: String,
    pub socket_unit: String,
}

pub const UNIT_DIR: &str = "/etc/systemd/system";

impl AppLayout {
    pub fn service_template(&self) -> String {
        format!("{}@.service", self.app)
    }
    pub fn socket_template(&self) -> String {
        format!("{}@.socket", self.app)
    }
    /// A glob matching the service of every build (`ListUnitsByPatterns`).
    pub fn service_glob(&self) -> String {
        format!("{}@*.service", self.app)
    }
    pub fn target(&self) -> String {
        format!("{}.target", self.app)
    }

    pub fn build(&self, build: &str) -> BuildLayout {
        let build_dir = self.root.join(build);
        BuildLayout {
            build: build.to_string(),
            releases_dir: build_dir.join("releases"),
            current: build_dir.join("current"),
            socket: build_dir.join(&self.socket_name),
            state_dir: Path::new("/var/lib").join(&self.app).join(&self.component).join(build),
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
    pub fn release_dir(&self, id: &ReleaseId) -> PathBuf {
        self.releases_dir.join(id.as_str())
    }

    /// The release `current` points at; None before the first build.
    pub fn current_release(&self) -> Result<Option<ReleaseId>> {
        let target = match std::fs::read_link(&self.current) {
            Ok(t) => t,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("reading the symlink {}", self.current.display())),
        };
        let name = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let id = ReleaseId::parse(&name).map_err(|e| {
            anyhow::anyhow!("{} points at {}, which is not a release: {e}", self.current.display(), target.display())
        })?;
        Ok(Some(id))
    }

    /// The switch journal: present only between a switch and its verification.
    pub fn switch_journal(&self) -> PathBuf {
        self.build_dir.join(".relctl-switch")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(app.service_glob(), "medctrl@*.service");
        assert_eq!(
            app.dropin_file("development"),
            Path::new("/etc/systemd/system/medctrl@development.service.d/50-relctl.conf")
        );
    }

    #[test]
    fn current_release_reads_the_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let app = AppLayout {
            app: "a".into(),
            component: "c".into(),
            root: dir.path().into(),
            unit_dir: UNIT_DIR.into(),
            socket_name: "s".into(),
        };
        let b = app.build("dev");
        assert_eq!(b.current_release().unwrap(), None, "no build yet");
        std::fs::create_dir_all(&b.build_dir).unwrap();
        std::os::unix::fs::symlink("releases/20261123T130501Z-abc1234", &b.current).unwrap();
        assert_eq!(b.current_release().unwrap().unwrap().as_str(), "20261123T130501Z-abc1234");
        std::fs::remove_file(&b.current).unwrap();
        std::os::unix::fs::symlink("/etc", &b.current).unwrap();
        let err = b.current_release().unwrap_err().to_string();
        assert!(err.contains("points at /etc, which is not a release"), "{err}");
    }
}
