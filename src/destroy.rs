//! `relctl destroy BUILD`: one build of an app torn down while its other builds keep serving.
//!
//! Planned first ([`plan`]: what of the build exists — its instances' units, drop-in directories,
//! build directory, state and cache — whether it is the app's last build on disk, and the nginx
//! snippet without it), then done ([`Destroy::run`]) in an order users do not feel as errors:
//! nginx stops routing to the build before anything of it stops; then its instances stop, its
//! units are disabled and forgotten by systemd, and its files go. The build directory is renamed
//! aside to a hidden name under `<root>` before it is removed, so a crash never leaves something
//! that looks like a half build; the next destroy or build removes such a leftover.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use fs_err as fs;
use serde::Serialize;

use crate::error::Error;
use crate::manifest::Loaded;
use crate::name::BuildName;
use crate::nginx;
use crate::nginx::control::Steps;
use crate::plan::routes;
use crate::plan::AppPlan;
use crate::release::deps;
use crate::release::layout::{BuildLayout, Instance};
use crate::report::Report;
use crate::systemd::dbus::Systemd;
use crate::systemd::manager::Manager;

/// What a build directory is renamed to under `<root>` before it is removed:
/// `.relctl-destroyed-<build>`.
const LEFTOVER_PREFIX: &str = ".relctl-destroyed-";

/// Where the nginx snippet goes, and how it is installed (as `nginx-snippet --output` does).
#[derive(Debug, Clone, Serialize)]
pub struct SnippetOutput {
    pub output: PathBuf,
    /// `nginx -t` on the snippet alone before it is written, and on the host's config after.
    pub check: bool,
    pub reload: bool,
}

/// The snippet without the destroyed build's routes.
#[derive(Debug, Clone, Serialize)]
pub struct SnippetPlan {
    #[serde(flatten)]
    pub output: SnippetOutput,
    /// The routes it keeps.
    pub routes: Vec<nginx::Route>,
    /// The routes it no longer has (the destroyed build's).
    pub removed: Vec<String>,
    #[serde(skip)]
    pub text: String,
}

/// The site's server blocks without the destroyed build (a build with a domain, when
/// `relctl site` wrote them): installed first, as `relctl site` does.
#[derive(Debug, Clone, Serialize)]
pub struct SiteChange {
    pub config: PathBuf,
    pub domain: String,
    #[serde(skip)]
    pub text: String,
}

/// Everything `relctl destroy <BUILD>` will do.
#[derive(Debug, Clone, Serialize)]
pub struct DestroyPlan {
    pub app: String,
    /// `<root>`, where the build directory, its leftover and the dependency entries are.
    pub root: PathBuf,
    pub build: BuildLayout,
    /// The wake units (service, socket) of a build that sleeps when idle, or slept once: stopped
    /// first, so no request starts the build again while it goes.
    pub wake: Vec<String>,
    /// Both instances, next first: their services and sockets are stopped in this order.
    pub instances: Vec<Instance>,
    /// The unit files disabled: main's socket and service (next is never
    /// enabled); none when the app's unit files are not installed.
    pub disable: Vec<String>,
    /// The build's drop-in directories that exist (`<unit>@<build>.service.d`, `.socket.d`, of
    /// both instances), removed with what is in them.
    pub dropin_dirs: Vec<PathBuf>,
    /// The unit files of the build's processes and timers: their units stopped and disabled,
    /// the files removed, before web stops.
    pub jobs: Vec<PathBuf>,
    /// Where the build directory is renamed before it is removed.
    pub leftover: PathBuf,
    /// The build's state and cache directories that exist: removed with --purge, else kept.
    pub data_dirs: Vec<PathBuf>,
    pub purge: bool,
    /// The other builds of the app on disk (directories under `<root>`).
    pub other_builds: Vec<String>,
    /// `<app>.target`, disabled once the last build is gone; None while other builds remain (or
    /// when it is not installed).
    pub disable_target: Option<String>,
    pub nginx: Option<SnippetPlan>,
    pub site: Option<SiteChange>,
}

/// What `relctl destroy` did.
#[derive(Debug, Serialize)]
pub struct Destroyed {
    pub app: String,
    pub build: BuildName,
    pub build_dir: PathBuf,
    pub stopped: Vec<String>,
    pub disabled: Vec<String>,
    pub reset_failed: Vec<String>,
    pub purged: Vec<PathBuf>,
    pub kept: Vec<PathBuf>,
    /// Dependency entries no kept release uses any more, removed.
    pub collected: Vec<String>,
    pub target_disabled: Option<String>,
    pub nginx: Option<PathBuf>,
}

/// Stops, disables and deletes unit files of `build`'s processes and timers (a template: every
/// instance of it; a timer: the timer), without reloading systemd. Returns the unit files removed.
pub fn remove_job_units(systemd: &dyn Manager, build: &BuildLayout, files: &[PathBuf]) -> Result<Vec<String>> {
    let mut removed = Vec::new();
    for file in files {
        let unit_dir = file.parent().unwrap_or(Path::new(crate::release::layout::UNIT_DIR));
        let wants = unit_dir.join(format!("{}.wants", build.service_unit));
        let Some(name) = file.file_name().map(|n| n.to_string_lossy().into_owned()) else { continue };
        let (pattern, prefix) = match name.strip_suffix("@.service") {
            Some(base) => (format!("{base}@*.service"), format!("{base}@")),
            None => (name.clone(), name.clone()),
        };
        for (unit, _) in systemd.running_units(&pattern)? {
            systemd.stop_if_running(&unit)?;
        }
        let enabled: Vec<String> = match std::fs::read_dir(&wants) {
            Ok(entries) => entries
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(&prefix) && (n == &name || prefix.ends_with('@')))
                .collect(),
            Err(e) if e.kind() == ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(anyhow::Error::new(e).context(format!("listing {}", wants.display()))),
        };
        if !enabled.is_empty() {
            let names: Vec<&str> = enabled.iter().map(String::as_str).collect();
            systemd.disable(&names)?;
        }
        crate::host::atomic::remove_if_exists(file)?;
        systemd.reset_failed(&[&pattern])?;
        removed.push(name);
    }
    Ok(removed)
}

/// Refuses a build with nothing on disk: `<root>/<build>` must be a directory (not a symlink).
pub fn require_on_disk(build: &BuildLayout) -> Result<()> {
    let is_dir = std::fs::symlink_metadata(&build.build_dir).is_ok_and(|m| m.is_dir());
    if !is_dir {
        return Err(Error::Usage(format!(
            "build {} does not exist on disk ({} is not a directory); nothing to destroy",
            build.build,
            build.build_dir.display()
        ))
        .into());
    }
    Ok(())
}

/// Resolves what destroying `name` touches. `name` must be declared and exist on disk.
pub fn plan(
    app: &AppPlan,
    loaded: &Loaded,
    name: &BuildName,
    purge: bool,
    snippet: Option<SnippetOutput>,
) -> Result<DestroyPlan> {
    loaded.build(name)?;
    let l = &app.layout;
    let build = l.build(name);
    require_on_disk(&build)?;
    let [live, next] = l.instances(name);
    let installed = |unit: &str| l.unit_dir.join(unit).is_file();
    let mut disable = if installed(&l.service_template()) && installed(&l.socket_template()) {
        vec![live.socket_unit.clone(), live.service_unit.clone()]
    } else {
        Vec::new()
    };
    // The wake units, of a build that sleeps when idle or slept once (its wake drop-in is there).
    let wake = l.wake(name);
    let slept = app.idle_stop_s(name).is_some() || wake.dropin.parent().is_some_and(Path::is_dir);
    let wake_units = match slept {
        true => vec![wake.service_unit.clone(), wake.socket_unit.clone()],
        false => Vec::new(),
    };
    if slept && installed(&format!("{}@.socket", l.wake_prefix())) {
        disable.push(wake.socket_unit.clone());
    }
    let dropin_dirs = [&next, &live]
        .iter()
        .flat_map(|i| [&i.service_unit, &i.socket_unit])
        .chain([&wake.service_unit])
        .map(|unit| l.unit_dir.join(format!("{unit}.d")))
        .filter(|d| d.is_dir())
        .collect();
    let data_dirs = [&build.state_dir, &build.cache_dir].into_iter().filter(|d| d.is_dir()).cloned().collect();
    let other_builds = other_builds(&l.root, name)?;
    let target = l.target();
    let disable_target = (other_builds.is_empty() && installed(&target)).then_some(target);
    let nginx = match snippet {
        Some(output) => {
            let (routes, gone): (Vec<_>, Vec<_>) =
                routes::snippet_routes(app, loaded, &[])?.into_iter().partition(|r| r.build != *name);
            let removed = gone.into_iter().map(|r| r.route.to_string()).collect();
            let text = nginx::snippet::render(&routes, Path::new(nginx::snippet::PROXY_PARAMS).exists());
            Some(SnippetPlan { output, routes, removed, text })
        }
        None => None,
    };
    let site = match loaded.build(name)?.domain {
        Some(domain) => {
            let relctl = std::env::current_exe().context("finding relctl's own path")?;
            let site = crate::plan::site::site(app, loaded, &relctl, Some(name))?;
            let proxy_params = Path::new(nginx::snippet::PROXY_PARAMS).exists();
            let text = nginx::site::render(&site.nginx(&loaded.path, crate::site::has_certificate), proxy_params);
            site.config.is_file().then_some(SiteChange { config: site.config, domain, text })
        }
        None => None,
    };
    Ok(DestroyPlan {
        site,
        jobs: crate::plan::units::installed_jobs(l, name)?,
        app: l.app.clone(),
        root: l.root.clone(),
        leftover: leftover_dir(&l.root, name),
        wake: wake_units,
        instances: vec![next, live],
        disable,
        dropin_dirs,
        data_dirs,
        purge,
        other_builds,
        disable_target,
        nginx,
        build,
    })
}

/// The builds on disk under `root` other than `build`: its directories but the hidden ones
/// (`.deps`, leftovers of destroyed builds), declared or not.
fn other_builds(root: &Path, build: &str) -> Result<Vec<String>> {
    let mut found = Vec::new();
    for entry in fs::read_dir(root)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.file_type()?.is_dir() && !name.starts_with('.') && name != build {
            found.push(name);
        }
    }
    found.sort();
    Ok(found)
}

fn leftover_dir(root: &Path, build: &str) -> PathBuf {
    root.join(format!("{LEFTOVER_PREFIX}{build}"))
}

/// Removes what a destroy interrupted between renaming a build directory aside and removing it
/// left under `root`. Returns the directories removed.
pub fn remove_leftovers(root: &Path) -> Result<Vec<PathBuf>> {
    let entries = match fs::read_dir(root) {
        Ok(e) => e,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let mut removed = Vec::new();
    for entry in entries {
        let entry = entry?;
        if entry.file_name().to_string_lossy().starts_with(LEFTOVER_PREFIX) && entry.file_type()?.is_dir() {
            fs::remove_dir_all(entry.path())?;
            removed.push(entry.path());
        }
    }
    Ok(removed)
}

impl DestroyPlan {
    /// Every unit of the build, in the order they stop: the wake service and socket, next's
    /// service and socket, then main's.
    pub fn units(&self) -> Vec<&str> {
        let instances = self.instances.iter().flat_map(|i| [i.service_unit.as_str(), i.socket_unit.as_str()]);
        self.wake.iter().map(String::as_str).chain(instances).collect()
    }

    /// The plan as text for `--dry-run`.
    pub fn describe(&self) -> String {
        let jobs: Vec<String> = self.jobs.iter().map(|p| p.display().to_string()).collect();
        let mut s = String::new();
        let b = &self.build;
        let mut line = |k: &str, v: String| s.push_str(&format!("{k:<12} {v}\n"));
        line("destroy", format!("build {} of {}", b.build, self.app));
        if !jobs.is_empty() {
            line("processes", format!("{} (stopped, disabled, removed)", jobs.join(", ")));
        }
        if let Some(site) = &self.site {
            line(
                "nginx",
                format!(
                    "first: {} rewritten without {} on {}, checked with nginx -t, nginx reloaded; if that fails, nothing else changes",
                    site.config.display(),
                    b.build,
                    site.domain
                ),
            );
        }
        if let Some(n) = &self.nginx {
            let kept: Vec<&str> = n.routes.iter().map(|r| r.route.as_str()).collect();
            line(
                "nginx",
                format!(
                    "first: {} rewritten without {}'s route{} ({}){}{}; if that fails, nothing else changes",
                    n.output.output.display(),
                    b.build,
                    if n.removed.len() == 1 { "" } else { "s" },
                    if n.removed.is_empty() { "it has none".to_string() } else { n.removed.join(", ") },
                    if kept.is_empty() {
                        ", no route kept".to_string()
                    } else {
                        format!(", keeping {}", kept.join(", "))
                    },
                    match (n.output.check, n.output.reload) {
                        (true, true) => ", checked with nginx -t, nginx reloaded",
                        (true, false) => ", checked with nginx -t",
                        (false, true) => ", nginx reloaded",
                        (false, false) => "",
                    }
                ),
            );
        }
        line("stop", format!("{} (those running)", self.units().join(", ")));
        line(
            "disable",
            if self.disable.is_empty() {
                "nothing (the app's units are not installed)".into()
            } else {
                self.disable.join(", ")
            },
        );
        for d in &self.dropin_dirs {
            line("drop-in", format!("{} (removed)", d.display()));
        }
        line("reload", "systemd; the build's failed units reset, so none stays loaded".into());
        line("remove", format!("{} (renamed to {}, then removed)", b.build_dir.display(), self.leftover.display()));
        for d in &self.data_dirs {
            let what = if self.purge { "removed (--purge)" } else { "kept (--purge removes it)" };
            line("data", format!("{} {what}", d.display()));
        }
        line("deps", "entries no kept release uses any more are removed".into());
        line(
            "target",
            match (&self.disable_target, self.other_builds.is_empty()) {
                (Some(t), _) => {
                    format!("{t} disabled and stopped: {} is the last build of {} on disk", b.build, self.app)
                }
                (None, true) => {
                    format!(
                        "{} is the last build of {} on disk; {}.target is not installed",
                        b.build, self.app, self.app
                    )
                }
                (None, false) => format!("{}.target stays enabled for {}", self.app, self.other_builds.join(", ")),
            },
        );
        s
    }
}

/// Carries out a [`DestroyPlan`].
pub struct Destroy<'a> {
    plan: &'a DestroyPlan,
    systemd: &'a Systemd,
    report: &'a mut Report,
}

impl<'a> Destroy<'a> {
    pub fn new(plan: &'a DestroyPlan, systemd: &'a Systemd, report: &'a mut Report) -> Self {
        Destroy { plan, systemd, report }
    }

    /// nginx first (a failure there leaves everything as it was), then the instances stopped, the
    /// units disabled and their drop-ins removed, systemd reloaded and the failed units reset, the
    /// build directory renamed aside and removed, with --purge its state and cache, unused
    /// dependency entries, and on the last build `<app>.target` disabled.
    pub fn run(mut self) -> Result<Destroyed> {
        let p = self.plan;
        let b = &p.build;
        if let Some(site) = &p.site {
            let t = Instant::now();
            crate::site::install(&site.config, &site.text)
                .with_context(|| format!("updating {}; build {} was left as it was", site.config.display(), b.build))?;
            self.report.step(
                "nginx",
                t,
                format!("{} without {} on {}; nginx reloaded", site.config.display(), b.build, site.domain),
            );
        }
        if let Some(n) = &p.nginx {
            self.snippet(n)?;
        }
        let again = || format!("build {} is partly destroyed; run relctl destroy {} again to finish", b.build, b.build);
        if !p.jobs.is_empty() {
            let t = Instant::now();
            let removed = remove_job_units(self.systemd, b, &p.jobs).with_context(again)?;
            self.report.step("processes", t, format!("stopped, disabled and removed {}", removed.join(", ")));
        }
        let stopped = self.stop().with_context(again)?;
        let (disabled, reset_failed) = self.forget_units().with_context(again)?;
        self.remove_build_dir()?;

        let t = Instant::now();
        let (mut purged, mut kept) = (Vec::new(), Vec::new());
        for d in &p.data_dirs {
            if p.purge {
                remove_dir_if_exists(d).with_context(|| {
                    format!("build {} is gone, but not its data: remove {} by hand", b.build, d.display())
                })?;
                purged.push(d.clone());
            } else {
                kept.push(d.clone());
            }
        }
        if !purged.is_empty() {
            self.report.step("purge", t, join_paths(&purged));
        }
        if !kept.is_empty() {
            self.report.step("keep", t, format!("{} (relctl destroy --purge removes them)", join_paths(&kept)));
        }

        let t = Instant::now();
        let collected = deps::collect(&p.root).with_context(|| {
            format!(
                "build {} is gone; removing the dependency entries no release uses failed (the next build retries)",
                b.build
            )
        })?;
        if !collected.is_empty() {
            self.report.step("deps", t, format!("removed {} (no kept release uses them)", collected.join(", ")));
        }

        let t = Instant::now();
        if let Some(target) = &p.disable_target {
            self.systemd
                .disable(&[target])
                .and_then(|_| self.systemd.reload())
                .and_then(|()| self.systemd.stop_if_running(target))
                .with_context(|| {
                    format!(
                        "build {} is gone; disable and stop {target} with systemctl disable --now {target}",
                        b.build
                    )
                })?;
            self.report.step(
                "target",
                t,
                format!("disabled and stopped {target}: {} was the last build of {}", b.build, p.app),
            );
        }
        Ok(Destroyed {
            app: p.app.clone(),
            build: b.build.clone(),
            build_dir: b.build_dir.clone(),
            stopped,
            disabled,
            reset_failed,
            purged,
            kept,
            collected,
            target_disabled: p.disable_target.clone(),
            nginx: p.nginx.as_ref().map(|n| n.output.output.clone()),
        })
    }

    /// Stops both instances' services and sockets that run, the candidate first. Returns them.
    fn stop(&mut self) -> Result<Vec<String>> {
        let t = Instant::now();
        let mut stopped = Vec::new();
        for unit in self.plan.units() {
            if self.systemd.stop_if_running(unit)? {
                stopped.push(unit.to_string());
            }
        }
        let detail = if stopped.is_empty() { "nothing was running".to_string() } else { stopped.join(", ") };
        self.report.step("stop", t, detail);
        Ok(stopped)
    }

    /// Disables the build's units, removes its drop-ins, reloads systemd and resets the failed
    /// units, so that systemd unloads every unit of the build. Returns the symlinks removed and
    /// the units reset.
    fn forget_units(&mut self) -> Result<(Vec<String>, Vec<String>)> {
        let p = self.plan;
        let t = Instant::now();
        let disable: Vec<&str> = p.disable.iter().map(String::as_str).collect();
        let disabled = if disable.is_empty() { Vec::new() } else { self.systemd.disable(&disable)? };
        for d in &p.dropin_dirs {
            remove_dir_if_exists(d)?;
        }
        self.systemd.reload()?;
        let reset_failed = self.systemd.reset_failed(&p.units())?;
        let mut detail = match disabled.is_empty() {
            true => "nothing was enabled".to_string(),
            false => format!("disabled {}", p.disable.join(", ")),
        };
        if !p.dropin_dirs.is_empty() {
            detail.push_str(&format!("; removed {}", join_paths(&p.dropin_dirs)));
        }
        detail.push_str("; reloaded systemd");
        if !reset_failed.is_empty() {
            detail.push_str(&format!("; reset failed {}", reset_failed.join(", ")));
        }
        self.report.step("units", t, detail);
        Ok((disabled, reset_failed))
    }

    /// Renames the build directory aside (after removing what an interrupted destroy left), then
    /// removes it.
    fn remove_build_dir(&mut self) -> Result<()> {
        let p = self.plan;
        let b = &p.build;
        let t = Instant::now();
        let leftovers = remove_leftovers(&p.root)?;
        fs::rename(&b.build_dir, &p.leftover).with_context(|| {
            format!(
                "build {} is stopped and disabled, but renaming {} aside failed; run relctl destroy {} again to finish",
                b.build,
                b.build_dir.display(),
                b.build
            )
        })?;
        fs::remove_dir_all(&p.leftover).with_context(|| {
            format!(
                "build {} is gone, but removing what was its directory, {}, failed; the next relctl build or destroy of {} removes it",
                b.build,
                p.leftover.display(),
                p.app
            )
        })?;
        let mut detail = b.build_dir.display().to_string();
        if !leftovers.is_empty() {
            detail.push_str(&format!(" and what an interrupted destroy left: {}", join_paths(&leftovers)));
        }
        self.report.step("remove", t, detail);
        Ok(())
    }

    /// Installs the snippet without the build's routes; on failure the previous file is back
    /// (see [`nginx::control::install`]) and nothing else has changed.
    fn snippet(&mut self, n: &SnippetPlan) -> Result<()> {
        let t = Instant::now();
        let out = &n.output;
        let installed = (|| {
            if out.check {
                nginx::control::check(&n.text)?;
            }
            nginx::control::install(&out.output, &n.text, Steps { check: out.check, reload: out.reload })
        })();
        installed.with_context(|| {
            format!("updating the nginx snippet; build {} was left as it was", self.plan.build.build)
        })?;
        let mut detail = format!("{} without {}", out.output.display(), n.removed.join(", "));
        if n.removed.is_empty() {
            detail = format!("{} rewritten ({} had no route)", out.output.display(), self.plan.build.build);
        }
        if out.reload {
            detail.push_str("; nginx reloaded");
        }
        self.report.step("nginx", t, detail);
        Ok(())
    }
}

fn remove_dir_if_exists(dir: &Path) -> Result<()> {
    match fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e.into()),
    }
}

fn join_paths(paths: &[PathBuf]) -> String {
    paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest;
    use crate::plan;

    const EXAMPLE: &str = r#"
app = "medctrl"
component = "backend"
[service]
exec = "x"
[builds.development]
route = "/api"
[builds.testing]
route = "/testapi"
[builds.quiet]
"#;

    /// The example app with its root and unit directory in a temp dir (the real ones are under
    /// /opt and /etc, and a root under /tmp is refused by `plan::app`), `builds` built there.
    fn setup(builds: &[&str]) -> (tempfile::TempDir, Loaded, AppPlan) {
        let tmp = tempfile::tempdir().unwrap();
        let loaded = Loaded {
            path: tmp.path().join("relctl.toml"),
            dir: tmp.path().into(),
            manifest: manifest::parse(EXAMPLE).unwrap(),
        };
        let mut app = plan::app(&loaded).unwrap();
        app.layout.root = tmp.path().join("root");
        app.layout.unit_dir = tmp.path().join("units");
        for b in builds {
            std::fs::create_dir_all(app.layout.build(&b.parse().unwrap()).releases_dir).unwrap();
        }
        std::fs::create_dir_all(&app.layout.unit_dir).unwrap();
        (tmp, loaded, app)
    }

    fn install_units(app: &AppPlan) {
        for name in [app.layout.service_template(), app.layout.socket_template(), app.layout.target()] {
            std::fs::write(app.layout.unit_dir.join(name), "# Written by relctl\n").unwrap();
        }
    }

    #[test]
    fn plan_lists_both_instances_drop_ins_and_the_build_directory() {
        let (_tmp, loaded, app) = setup(&["development", "testing"]);
        install_units(&app);
        let units = &app.layout.unit_dir;
        for d in ["medctrl@testing.service.d", "medctrl_next@testing.service.d", "medctrl@development.service.d"] {
            std::fs::create_dir_all(units.join(d)).unwrap();
        }
        let p = plan(&app, &loaded, &"testing".parse().unwrap(), false, None).unwrap();
        assert_eq!(
            p.units(),
            [
                "medctrl_next@testing.service",
                "medctrl_next@testing.socket",
                "medctrl@testing.service",
                "medctrl@testing.socket"
            ]
        );
        assert_eq!(p.disable, ["medctrl@testing.socket", "medctrl@testing.service"]);
        assert_eq!(
            p.dropin_dirs,
            [units.join("medctrl_next@testing.service.d"), units.join("medctrl@testing.service.d")]
        );
        // With the wake units installed (a build that sleeps when idle), they go too.
        std::fs::write(units.join("medctrl_wake@.socket"), "# Written by relctl\n").unwrap();
        std::fs::create_dir_all(units.join("medctrl_wake@testing.service.d")).unwrap();
        let p = plan(&app, &loaded, &"testing".parse().unwrap(), false, None).unwrap();
        assert_eq!(p.disable, ["medctrl@testing.socket", "medctrl@testing.service", "medctrl_wake@testing.socket"]);
        assert_eq!(p.dropin_dirs.last(), Some(&units.join("medctrl_wake@testing.service.d")));
        assert_eq!(&p.units()[..2], ["medctrl_wake@testing.service", "medctrl_wake@testing.socket"]);
        assert_eq!(p.build.build_dir, app.layout.root.join("testing"));
        assert_eq!(p.leftover, app.layout.root.join(".relctl-destroyed-testing"));
        assert_eq!(p.other_builds, ["development"]);
        assert_eq!(p.disable_target, None, "development still uses the target");
        assert!(p.nginx.is_none());
        let text = p.describe();
        assert!(text.contains("medctrl.target stays enabled for development"), "{text}");
        assert!(!text.contains("nginx"), "{text}");
    }

    #[test]
    fn the_last_build_on_disk_disables_the_target() {
        let (_tmp, loaded, app) = setup(&["testing"]);
        install_units(&app);
        let root = &app.layout.root;
        // Neither dependency entries nor an interrupted destroy's leftover are builds.
        std::fs::create_dir_all(root.join(".deps/venv-abcd")).unwrap();
        std::fs::create_dir_all(root.join(".relctl-destroyed-development/releases")).unwrap();
        std::fs::write(root.join("notes.txt"), "").unwrap();
        let p = plan(&app, &loaded, &"testing".parse().unwrap(), true, None).unwrap();
        assert!(p.other_builds.is_empty());
        assert_eq!(p.disable_target.as_deref(), Some("medctrl.target"));
        assert!(p
            .describe()
            .contains("medctrl.target disabled and stopped: testing is the last build of medctrl on disk"));
        // An undeclared build left on disk still counts: its units may still be enabled.
        std::fs::create_dir_all(root.join("old")).unwrap();
        let p = plan(&app, &loaded, &"testing".parse().unwrap(), true, None).unwrap();
        assert_eq!((p.other_builds.as_slice(), p.disable_target.as_deref()), (["old".to_string()].as_slice(), None));
    }

    #[test]
    fn without_installed_units_nothing_is_disabled() {
        let (_tmp, loaded, app) = setup(&["testing"]);
        let p = plan(&app, &loaded, &"testing".parse().unwrap(), false, None).unwrap();
        assert!(p.disable.is_empty() && p.disable_target.is_none() && p.dropin_dirs.is_empty());
        assert!(p.describe().contains("disable      nothing (the app's units are not installed)"));
    }

    #[test]
    fn a_build_not_on_disk_or_not_declared_is_a_usage_error() {
        let (_tmp, loaded, app) = setup(&["development"]);
        let err = plan(&app, &loaded, &"testing".parse().unwrap(), false, None).unwrap_err();
        assert!(crate::error::is_usage(&err), "{err}");
        let path = app.layout.root.join("testing");
        assert_eq!(
            err.to_string(),
            format!("build testing does not exist on disk ({} is not a directory); nothing to destroy", path.display())
        );
        std::os::unix::fs::symlink(app.layout.root.join("development"), &path).unwrap();
        assert!(
            crate::error::is_usage(&plan(&app, &loaded, &"testing".parse().unwrap(), false, None).unwrap_err()),
            "a symlink is not a build"
        );
        let err = plan(&app, &loaded, &"staging".parse().unwrap(), false, None).unwrap_err();
        assert!(crate::error::is_usage(&err) && err.to_string().contains("\"staging\" is not declared"), "{err}");
    }

    #[test]
    fn the_snippet_leaves_the_build_out() {
        let (_tmp, loaded, app) = setup(&["development", "testing"]);
        let output = SnippetOutput { output: "/etc/nginx/snippets/medctrl.conf".into(), check: true, reload: true };
        let p = plan(&app, &loaded, &"testing".parse().unwrap(), false, Some(output.clone())).unwrap();
        let n = p.nginx.as_ref().unwrap();
        assert_eq!(n.removed, ["/testapi"]);
        assert_eq!(n.routes.iter().map(|r| r.build.as_str()).collect::<Vec<_>>(), ["development"]);
        assert!(n.text.contains("location ^~ /api/ {") && !n.text.contains("testapi"), "{}", n.text);
        let text = p.describe();
        assert!(
            text.contains("nginx        first: /etc/nginx/snippets/medctrl.conf rewritten without testing's route (/testapi), keeping /api, checked with nginx -t, nginx reloaded"),
            "{text}"
        );
        let json = serde_json::to_value(&p).unwrap();
        assert_eq!(json["nginx"]["output"], "/etc/nginx/snippets/medctrl.conf");
        assert!(json["nginx"].get("text").is_none());
        std::fs::create_dir_all(app.layout.build(&"quiet".parse().unwrap()).releases_dir).unwrap();
        let p = plan(&app, &loaded, &"quiet".parse().unwrap(), false, Some(output)).unwrap();
        assert!(p.nginx.unwrap().removed.is_empty(), "a build without a route");
    }

    #[test]
    fn state_and_cache_are_kept_unless_purged() {
        let (_tmp, loaded, app) = setup(&["testing"]);
        let mut p = plan(&app, &loaded, &"testing".parse().unwrap(), false, None).unwrap();
        assert_eq!(p.build.state_dir, Path::new("/var/lib/medctrl/backend/testing"));
        assert_eq!(p.build.cache_dir, Path::new("/var/cache/medctrl/backend/testing"));
        // As if the service had run (the plan lists only those that exist).
        p.data_dirs = vec![p.build.state_dir.clone(), p.build.cache_dir.clone()];
        let kept = p.describe();
        assert!(kept.contains("data         /var/lib/medctrl/backend/testing kept (--purge removes it)\n"), "{kept}");
        p.purge = true;
        let purged = p.describe();
        assert!(purged.contains("data         /var/cache/medctrl/backend/testing removed (--purge)\n"), "{purged}");
    }

    #[test]
    fn leftovers_of_an_interrupted_destroy_are_removed_and_nothing_else() {
        let (_tmp, _loaded, app) = setup(&["development"]);
        let root = &app.layout.root;
        std::fs::create_dir_all(root.join(".relctl-destroyed-testing/releases/r1")).unwrap();
        std::fs::create_dir_all(root.join(".deps/venv-abcd")).unwrap();
        assert_eq!(remove_leftovers(root).unwrap(), [root.join(".relctl-destroyed-testing")]);
        assert!(root.join(".deps/venv-abcd").is_dir() && root.join("development/releases").is_dir());
        assert!(remove_leftovers(root).unwrap().is_empty());
        assert!(remove_leftovers(&root.join("missing")).unwrap().is_empty());
    }
}
