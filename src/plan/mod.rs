//! Parse → **plan** → act: arguments and manifest resolved into plain data (paths, files, units,
//! hooks, jobs) before anything is touched. `--dry-run` prints a plan; the domain modules act on it.
//!
//! This module resolves the app-wide part ([`AppPlan`]); beside it: `build` (a release's plan:
//! `build`, `promote`), `diff` (what the next build would change), `adopt` (taking over a
//! hand-made setup), `host` (pre-flight checks of the host), `routes` (nginx routes), `units`
//! (unit files) and `hook`.

pub mod adopt;
pub mod asgi;
pub mod build;
pub mod bytecode;
pub mod deps;
pub mod diff;
pub mod hook;
pub mod host;
pub mod processes;
pub mod rollback;
pub mod routes;
pub mod script;
pub mod settings;
pub mod site;
pub mod units;

use std::path::{Path, PathBuf};

use anyhow::Result;
use fs_err as fs;
use serde::Serialize;

use crate::error::Error;
use crate::manifest::{self, Loaded};
use crate::name::BuildName;
use crate::plan::hook::{Hook, HookStage};
use crate::release::layout::{self, AppLayout};
use crate::route::Route;

/// Everything about an app that does not depend on a build.
#[derive(Debug, Clone, Serialize)]
pub struct AppPlan {
    pub manifest: PathBuf,
    pub layout: AppLayout,
    /// The service user (created as a system user if missing).
    pub user: String,
    /// The group that may connect to the sockets (nginx's).
    pub socket_group: String,
    /// The gate's HTTP check, through the instance's own socket.
    pub health: HealthPlan,
    /// Seconds a (re)started service must stay up (same main PID, no restarts) to pass.
    pub probation_s: u64,
    pub keep_releases: usize,
    /// Declared builds and their routes, in manifest order (then the members of families on
    /// disk, by name). Routes are shown as the manifest wrote them.
    #[serde(serialize_with = "routes_as_written")]
    pub builds: Vec<(BuildName, Option<Route>)>,
    /// `[hardening]`: how strict the service unit is.
    pub hardening: manifest::Hardening,
    /// `[static]`: the release's directory nginx serves, and at which URL path under the route.
    pub static_files: Option<StaticPlan>,
    /// `[hooks] verify`: run against every release brought live (build, restart, rollback,
    /// promote) once it passed the gate, before it takes traffic.
    pub verify: Vec<Hook>,
    /// `[hooks] release_timeout_s`: how long one release hook's unit may run.
    pub release_timeout_s: u64,
    /// `[schema]`: how a release lists and unapplies its migrations.
    pub schema: Option<manifest::SchemaCommands>,
    /// `[hooks] pre_migrate`: run before a rollback unapplies migrations (and before release hooks).
    pub pre_migrate: Vec<Hook>,
    /// Each build and family (`pr-*`) the manifest declares, and whether it sleeps when idle.
    pub sleepers: Vec<Sleeper>,
}

/// `[builds.<name>] idle_stop_s` of a build or a family (None: it always runs).
#[derive(Debug, Clone, Serialize)]
pub struct Sleeper {
    /// The manifest's key: a build's name, or a family's pattern (`pr-*`).
    pub builds: String,
    pub idle_stop_s: Option<u64>,
}

impl AppPlan {
    /// How long `build` may be idle before it sleeps; None: it always runs. A build declared by
    /// name is its own; else its family's (as `manifest::family_of` matches them).
    pub fn idle_stop_s(&self, build: &str) -> Option<u64> {
        if let Some(own) = self.sleepers.iter().find(|s| s.builds == build) {
            return own.idle_stop_s;
        }
        self.sleepers.iter().find_map(|s| {
            let prefix = s.builds.strip_suffix('*')?;
            (build.len() > prefix.len() && build.starts_with(prefix)).then_some(s.idle_stop_s).flatten()
        })
    }

    /// `build`'s route as a URL prefix, as nginx passes it in `SCRIPT_NAME` ("" at `/`).
    pub fn script_name(&self, build: &str) -> String {
        let route = self.builds.iter().find(|(name, _)| name == build).and_then(|(_, r)| r.as_ref());
        crate::route::script_name(route)
    }
}

/// `AppPlan::builds` as `--dry-run --json` has always shown them: each route as written.
fn routes_as_written<S: serde::Serializer>(
    builds: &[(BuildName, Option<Route>)],
    serializer: S,
) -> std::result::Result<S::Ok, S::Error> {
    let written: Vec<(&BuildName, Option<&str>)> =
        builds.iter().map(|(name, route)| (name, route.as_ref().map(Route::as_written))).collect();
    written.serialize(serializer)
}

/// `[static]`, checked.
#[derive(Debug, Clone, Serialize)]
pub struct StaticPlan {
    /// Relative to the release, without a trailing `/`.
    pub dir: String,
    /// Path segments under the route, without slashes (`static`).
    pub url: String,
    pub max_age_s: u64,
}

/// The gate's request: `[health]`, or without it the route's root, where any answer but a server
/// error (5xx) passes (a 404 or a redirect to a login page is the app's choice there).
#[derive(Debug, Clone, Serialize)]
pub struct HealthPlan {
    /// Under the route: nginx's request is `<route><path>` with the header `SCRIPT_NAME: <route>`.
    pub path: String,
    pub timeout_s: u64,
    pub accept: crate::host::health::Accept,
    /// From `[health]` in the manifest (else the default check of the route's root).
    pub declared: bool,
}

impl HealthPlan {
    /// The check of a manifest without `[health]`.
    pub fn default_check() -> HealthPlan {
        HealthPlan {
            path: "/".into(),
            timeout_s: manifest::default_health_timeout(),
            accept: crate::host::health::Accept::NoServerError,
            declared: false,
        }
    }
}

/// Resolves the app-wide part: layout, user, health gate.
pub fn app(loaded: &Loaded) -> Result<AppPlan> {
    let m = &loaded.manifest;
    let root = match &m.root {
        Some(r) => loaded.resolve(r),
        None => Path::new("/opt").join(&m.app).join(&m.component),
    };
    let root_str = root.to_string_lossy();
    if root_str.chars().any(|c| c.is_whitespace() || c == '%' || c == '"' || c == '\\') || root == Path::new("/") {
        return Err(Error::Usage(format!(
            "{}: root \"{root_str}\" must not be / or contain spaces, quotes, '\\' or '%'",
            loaded.path.display()
        ))
        .into());
    }
    if let Some(system) = system_dir(&root) {
        return Err(Error::Usage(format!(
            "{}: root {root_str} is inside {system}, which belongs to the system; put builds under /opt or /srv",
            loaded.path.display()
        ))
        .into());
    }
    let layout = AppLayout {
        app: m.app.clone(),
        component: m.component.clone(),
        root: root.clone(),
        unit_dir: layout::UNIT_DIR.into(),
        socket_name: m.service.socket.clone(),
    };
    Ok(AppPlan {
        manifest: loaded.path.clone(),
        layout,
        user: m.service.user.clone().unwrap_or_else(|| m.app.clone()),
        socket_group: m.service.socket_group.clone(),
        health: m.health.as_ref().map_or_else(HealthPlan::default_check, |h| HealthPlan {
            path: h.path.clone(),
            timeout_s: h.timeout_s,
            accept: h.accept,
            declared: true,
        }),
        probation_s: m.health.as_ref().map_or(manifest::default_probation(), |h| h.probation_s),
        keep_releases: m.keep_releases,
        builds: builds(loaded, &root)?,
        sleepers: m.builds.iter().map(|(k, b)| Sleeper { builds: k.clone(), idle_stop_s: b.idle_stop_s }).collect(),
        hardening: m.hardening.clone(),
        verify: m.hooks.verify.iter().map(|c| Hook { stage: HookStage::Verify, command: c.clone() }).collect(),
        release_timeout_s: m.hooks.release_timeout_s,
        schema: m.schema.clone(),
        pre_migrate: m
            .hooks
            .pre_migrate
            .iter()
            .map(|c| Hook { stage: HookStage::PreMigrate, command: c.clone() })
            .collect(),
        static_files: match &m.static_files {
            Some(st) => Some(StaticPlan {
                dir: st.dir.trim_end_matches('/').trim_start_matches("./").to_string(),
                url: manifest::static_url(&st.url).map_err(Error::Usage)?,
                max_age_s: st.max_age_s,
            }),
            None => None,
        },
    })
}

/// The builds declared by name, in manifest order, then the members of families (`pr-*`) that
/// exist on disk (`<root>/<member>/`), by name; each with its route.
fn builds(loaded: &Loaded, root: &Path) -> Result<Vec<(BuildName, Option<Route>)>> {
    let m = &loaded.manifest;
    let mut out = Vec::new();
    for (name, b) in m.named_builds() {
        out.push((BuildName::parse(name)?, b.route.clone()));
    }
    if !m.builds.keys().any(|k| manifest::is_family(k)) {
        return Ok(out);
    }
    let entries = match fs::read_dir(root) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e.into()),
    };
    let mut members = Vec::new();
    for entry in entries {
        let entry = entry?;
        let Ok(name) = BuildName::parse(&entry.file_name().to_string_lossy()) else { continue };
        if entry.file_type()?.is_dir() && m.family_of(&name).is_some() {
            let route = loaded.build(&name)?.route;
            members.push((name, route));
        }
    }
    members.sort_by(|a, b| a.0.cmp(&b.0));
    out.extend(members);
    Ok(out)
}

/// Directories that belong to the operating system: never a build root, never a source to copy.
pub const SYSTEM_DIRS: &[&str] = &[
    "/bin",
    "/boot",
    "/dev",
    "/etc",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/proc",
    "/root",
    "/run",
    "/sbin",
    "/sys",
    "/tmp",
    "/usr",
    "/var/tmp",
    "/var/lib/dpkg",
    "/var/lib/systemd",
    "/var/log",
];

/// The system directory `path` is (or is inside), if any. `path` is absolute.
fn system_dir(path: &Path) -> Option<&'static str> {
    SYSTEM_DIRS.iter().copied().find(|d| path.starts_with(d))
}

/// The manifest's `source`, which must be a directory, resolved.
pub fn source_dir(loaded: &Loaded) -> Result<PathBuf> {
    let source = loaded.resolve(&loaded.manifest.source);
    if !source.is_dir() {
        return Err(
            Error::Usage(format!("{}: source {} is not a directory", loaded.path.display(), source.display())).into()
        );
    }
    let source = fs::canonicalize(&source)?;
    let whole = |d: &str| source == Path::new(d);
    let virtual_fs = ["/proc", "/sys", "/dev"].iter().any(|d| source.starts_with(d));
    if whole("/") || SYSTEM_DIRS.iter().any(|d| whole(d)) || virtual_fs {
        return Err(Error::Usage(format!(
            "{}: source {} is / or a system directory; it should be your project's checkout",
            loaded.path.display(),
            source.display()
        ))
        .into());
    }
    if let Some(w) = &loaded.manifest.service.workdir {
        if !source.join(w).is_dir() {
            return Err(Error::Usage(format!(
                "{}: [service] workdir \"{w}\" is not a directory in the source {}",
                loaded.path.display(),
                source.display()
            ))
            .into());
        }
    }
    Ok(source)
}

#[cfg(test)]
mod tests {
    use crate::manifest::{self, Loaded};

    #[test]
    fn a_build_sleeps_by_its_own_declaration_else_by_its_familys() {
        let text = "app = \"medctrl\"\n[service]\nexec = \"x\"\n[builds.development]\n[builds.\"pr-*\"]\nroute = \"/r/{{ build }}\"\nidle_stop_s = 600\n[builds.pr-special]\nroute = \"/special\"\n[builds.\"qa-*\"]\nroute = \"/qa/{{ build }}\"\n";
        let loaded =
            Loaded { path: "/srv/relctl.toml".into(), dir: "/srv".into(), manifest: manifest::parse(text).unwrap() };
        let app = super::app(&loaded).unwrap();
        assert_eq!(app.idle_stop_s("pr-42"), Some(600));
        assert_eq!(app.idle_stop_s("pr-special"), None, "declared by its own name, it always runs");
        assert_eq!(app.idle_stop_s("development"), None);
        assert_eq!(app.idle_stop_s("qa-1"), None);
        assert_eq!(app.idle_stop_s("pr-"), None, "not a member: the prefix alone");
        let plan = |b: &str| super::build::enabled_units(&app, &app.layout.build(&b.parse().unwrap()));
        assert_eq!(
            plan("pr-42"),
            (
                vec!["medctrl@pr-42.socket".to_string(), "medctrl_wake@pr-42.socket".into(), "medctrl.target".into()],
                vec!["medctrl@pr-42.service".to_string()]
            ),
            "a build that sleeps starts on its first request, not at boot"
        );
        assert_eq!(
            plan("development"),
            (
                vec![
                    "medctrl@development.socket".to_string(),
                    "medctrl@development.service".into(),
                    "medctrl.target".into()
                ],
                vec!["medctrl_wake@development.socket".to_string()]
            )
        );
    }
}
