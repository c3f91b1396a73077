//! Where things live on disk: `<root>/<build>/{current,releases/<id>,<socket>}`, the state and
//! cache directories under /var/lib and /var/cache, and the unit files under /etc/systemd/system.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::name::BuildName;
use crate::release::id::ReleaseId;

/// The line every unit file relctl writes carries: files without it are not relctl's.
pub const MARKER: &str = "Written by relctl";

/// Where relctl keeps an app's own state (not the app's): `/var/lib/relctl/<app>/` — the
/// history, `relctl site`'s certbot directories and webroot.
pub fn relctl_state_dir(app: &str) -> PathBuf {
    Path::new("/var/lib/relctl").join(app)
}

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
    pub build: BuildName,
    /// `<root>/<build>`
    pub build_dir: PathBuf,
    /// `<root>/<build>/releases`
    pub releases_dir: PathBuf,
    /// `<root>/<build>/current`
    pub current: PathBuf,
    /// `<root>/<build>/<socket>`: the public socket nginx connects to, a symlink to the socket of
    /// the instance that serves.
    pub socket: PathBuf,
    /// `/var/lib/<app>/<component>/<build>`, the service's StateDirectory=
    pub state_dir: PathBuf,
    /// `/var/cache/<app>/<component>/<build>`, the service's CacheDirectory= (its HOME)
    pub cache_dir: PathBuf,
    pub service_unit: String,
    pub socket_unit: String,
}

pub const UNIT_DIR: &str = "/etc/systemd/system";

/// The two instances of a build: `<app>@<build>` (main: the one `systemctl` users and boot
/// start, on `.relctl-main`, which is `current` but while main runs a candidate) and `<app>_next@<build>` (next, on `next`). Either may serve: the build's
/// public socket is a symlink to the socket of the one that does. A new or restarted release
/// starts in the other one, the candidate, and takes the public socket once it passed the gate;
/// the one that served then drains and stops. Starting main takes the public socket back (its
/// `ExecStartPost=`), unless relctl holds the build's switch lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Slot {
    Main,
    Next,
}

impl Slot {
    pub const BOTH: [Slot; 2] = [Slot::Main, Slot::Next];

    /// What the instance is called in relctl's output: `main` or `next`.
    pub fn label(self) -> &'static str {
        match self {
            Slot::Main => "main",
            Slot::Next => "next",
        }
    }

    /// The other instance of the build.
    pub fn other(self) -> Slot {
        match self {
            Slot::Main => Slot::Next,
            Slot::Next => Slot::Main,
        }
    }

    /// The instance whose socket `file` (a public socket's symlink target) is.
    pub fn of_socket_file(file: &Path) -> Option<Slot> {
        Slot::BOTH.into_iter().find(|s| file == Path::new(s.socket_file()))
    }

    /// The unit name before `@`. `_` cannot appear in an app name, so no app's units collide.
    pub fn unit_prefix(self, app: &str) -> String {
        match self {
            Slot::Main => app.to_string(),
            Slot::Next => format!("{app}_next"),
        }
    }

    /// The symlink in the build directory that says which release the instance runs. `current`,
    /// the build's current release, is not main's: main may start on a new release as a
    /// candidate, and `current` (what nginx serves static files from) points at a release only
    /// once it serves. Whenever main does not run a candidate, its link equals `current`.
    pub fn link(self) -> &'static str {
        match self {
            Slot::Main => ".relctl-main",
            Slot::Next => "next",
        }
    }

    /// The socket the instance's socket unit listens on, in the build directory.
    pub fn socket_file(self) -> &'static str {
        match self {
            Slot::Main => ".relctl-live.sock",
            Slot::Next => ".relctl-next.sock",
        }
    }
}

/// One instance of one build: its units, its socket, the symlink to its release, its drop-in.
#[derive(Debug, Clone, Serialize)]
pub struct Instance {
    pub slot: Slot,
    pub service_unit: String,
    pub socket_unit: String,
    /// The socket its socket unit listens on (the public socket is a symlink to it while it serves).
    pub socket: PathBuf,
    /// `current` or `next`.
    pub link: PathBuf,
    pub dropin: PathBuf,
}

/// The socket nginx connects to for a build that sleeps when idle (`idle_stop_s`), in its build
/// directory: `<app>_wake@<build>.socket` listens on it, and a connection starts
/// `<app>_wake@<build>.service` (systemd-socket-proxyd), which passes it on to the public socket
/// and exits once no connection came for `idle_stop_s`; the build then sleeps.
pub const WAKE_SOCKET: &str = ".relctl-wake.sock";

/// The units that wake a build that sleeps when idle, and let it sleep (see [`WAKE_SOCKET`]).
#[derive(Debug, Clone, Serialize)]
pub struct Wake {
    /// `<app>_wake@<build>.service`: the proxy; running while requests come.
    pub service_unit: String,
    /// `<app>_wake@<build>.socket`
    pub socket_unit: String,
    /// `<root>/<build>/.relctl-wake.sock`
    pub socket: PathBuf,
    /// The proxy's per-build drop-in (its idle time; the processes and timers that wake with it).
    pub dropin: PathBuf,
}

impl AppLayout {
    /// The unit name before `@` of the wake units: `<app>_wake`.
    pub fn wake_prefix(&self) -> String {
        format!("{}_wake", self.app)
    }

    /// The wake units of `build` (used when it sleeps when idle).
    pub fn wake(&self, build: &str) -> Wake {
        let prefix = self.wake_prefix();
        Wake {
            service_unit: format!("{prefix}@{build}.service"),
            socket_unit: format!("{prefix}@{build}.socket"),
            socket: self.root.join(build).join(WAKE_SOCKET),
            dropin: self.unit_dir.join(format!("{prefix}@{build}.service.d")).join("50-relctl.conf"),
        }
    }

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

    pub fn build(&self, build: &BuildName) -> BuildLayout {
        let build_dir = self.root.join(build);
        BuildLayout {
            build: build.clone(),
            releases_dir: build_dir.join("releases"),
            current: build_dir.join("current"),
            socket: build_dir.join(&self.socket_name),
            state_dir: Path::new("/var/lib").join(&self.app).join(&self.component).join(build),
            cache_dir: Path::new("/var/cache").join(&self.app).join(&self.component).join(build),
            service_unit: format!("{}@{}.service", self.app, build),
            socket_unit: format!("{}@{}.socket", self.app, build),
            build_dir,
        }
    }

    /// The per-build drop-in relctl writes for the service.
    pub fn dropin_file(&self, build: &str) -> PathBuf {
        self.dropin_of(Slot::Main, build)
    }

    fn dropin_of(&self, slot: Slot, build: &str) -> PathBuf {
        self.unit_dir.join(format!("{}@{}.service.d", slot.unit_prefix(&self.app), build)).join("50-relctl.conf")
    }

    /// One instance of `build`.
    pub fn instance(&self, build: &str, slot: Slot) -> Instance {
        let prefix = slot.unit_prefix(&self.app);
        let dir = self.root.join(build);
        Instance {
            slot,
            service_unit: format!("{prefix}@{build}.service"),
            socket_unit: format!("{prefix}@{build}.socket"),
            socket: dir.join(slot.socket_file()),
            link: dir.join(slot.link()),
            dropin: self.dropin_of(slot, build),
        }
    }

    /// Both instances of `build`, main first.
    pub fn instances(&self, build: &str) -> [Instance; 2] {
        Slot::BOTH.map(|slot| self.instance(build, slot))
    }

    /// What every unit of `build`'s processes and timers is named with: `<app>_<build>_`. No app
    /// name, process or timer name has a `_`, so a unit's name says whose it is (`job_of`).
    pub fn job_prefix(&self, build: &str) -> String {
        format!("{}_{build}_", self.app)
    }

    /// Process `name` of `build`: its template `<app>_<build>_<name>@.service`, whose instances
    /// are `@1`, `@2`, ...
    pub fn process_template(&self, build: &str, name: &str) -> String {
        format!("{}{name}@.service", self.job_prefix(build))
    }

    pub fn process_unit(&self, build: &str, name: &str, n: u32) -> String {
        format!("{}{name}@{n}.service", self.job_prefix(build))
    }

    /// A glob matching every instance of process `name` of `build` (`ListUnitsByPatterns`,
    /// `journalctl -u`).
    pub fn process_glob(&self, build: &str, name: &str) -> String {
        format!("{}{name}@*.service", self.job_prefix(build))
    }

    /// Timer `name` of `build`: `<app>_<build>_<name>.timer`, which starts the `.service` of the
    /// same name; its failure starts `<app>_<build>_<name>-failed.service`.
    pub fn timer_unit(&self, build: &str, name: &str) -> String {
        format!("{}{name}.timer", self.job_prefix(build))
    }

    pub fn timer_service(&self, build: &str, name: &str) -> String {
        format!("{}{name}.service", self.job_prefix(build))
    }

    pub fn timer_failed_unit(&self, build: &str, name: &str) -> String {
        format!("{}{name}-failed.service", self.job_prefix(build))
    }

    /// Whether a unit file name is one of `build`'s processes or timers (its template, timer,
    /// job or failure unit).
    pub fn is_job_of(&self, file_name: &str, build: &str) -> bool {
        file_name
            .strip_prefix(&format!("{}_", self.app))
            .and_then(|rest| rest.rsplit_once('_'))
            .is_some_and(|(b, rest)| b == build && !rest.is_empty())
    }
}

impl BuildLayout {
    /// The instance that serves, given which of them are up: the one the public socket points at
    /// (main when the public socket is no symlink of relctl's, e.g. a hand-made setup being
    /// adopted), if it is up. `relctl status` and the hand-over both ask this.
    pub fn serving(&self, up: impl Fn(Slot) -> Result<bool>) -> Result<Option<Slot>> {
        let slot = std::fs::read_link(&self.socket).ok().and_then(|t| Slot::of_socket_file(&t)).unwrap_or(Slot::Main);
        Ok(up(slot)?.then_some(slot))
    }

    pub fn release_dir(&self, id: &ReleaseId) -> PathBuf {
        self.releases_dir.join(id.as_str())
    }

    /// The release `current` points at; None before the first build.
    pub fn current_release(&self) -> Result<Option<ReleaseId>> {
        link_release(&self.current)
    }
}

/// The link beside the switch journal at `journal` that names the release a boot during the switch
/// comes back to (see `deploy::switch`).
pub fn boot_link(journal: &Path) -> PathBuf {
    journal.with_file_name(".relctl-boot")
}

/// What a release link (`current`, an instance's link) holds: `releases/<id>`, relative to the
/// build directory.
pub fn release_target(release: &ReleaseId) -> PathBuf {
    Path::new("releases").join(release.as_str())
}

/// The release the symlink `link` points at; None when there is no such symlink.
pub fn link_release(link: &Path) -> Result<Option<ReleaseId>> {
    let target = match std::fs::read_link(link) {
        Ok(t) => t,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading the symlink {}", link.display())),
    };
    let name = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let id = ReleaseId::parse(&name).map_err(|e| {
        anyhow::anyhow!("{} points at {}, which is not a release: {e}", link.display(), target.display())
    })?;
    Ok(Some(id))
}

impl BuildLayout {
    /// The switch journal: present only between a switch and its verification.
    /// `.relctl-previous`: the release `current` pointed at before its last switch (nginx serves
    /// its static files where the current release has none).
    pub fn previous_link(&self) -> PathBuf {
        self.build_dir.join(".relctl-previous")
    }

    /// Present while the build is in maintenance (`relctl maintenance on`): nginx answers its
    /// route with 503 (the snippet tests for it on each request).
    pub fn maintenance_flag(&self) -> PathBuf {
        self.build_dir.join(".relctl-maintenance")
    }

    /// relctl's own maintenance page, served when the manifest names none.
    pub fn maintenance_page(&self) -> PathBuf {
        self.build_dir.join(".relctl-maintenance.html")
    }

    pub fn switch_journal(&self) -> PathBuf {
        self.build_dir.join(".relctl-switch")
    }

    /// The release a boot comes back to while a switch is under way: `.relctl-boot`, beside the
    /// journal (see `layout::boot_link`).
    pub fn boot_link(&self) -> PathBuf {
        boot_link(&self.switch_journal())
    }

    /// The secret key relctl generated for the build ([`crate::release::secret_key`]).
    pub fn secret_key_file(&self) -> PathBuf {
        self.build_dir.join(crate::release::secret_key::FILE_NAME)
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
        let b = app.build(&"development".parse().unwrap());
        assert_eq!(b.socket, Path::new("/opt/medctrl/backend/development/gunicorn.sock"));
        assert_eq!(b.current, Path::new("/opt/medctrl/backend/development/current"));
        assert_eq!(b.state_dir, Path::new("/var/lib/medctrl/backend/development"));
        assert_eq!(b.cache_dir, Path::new("/var/cache/medctrl/backend/development"));
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
        let b = app.build(&"dev".parse().unwrap());
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
