//! `relctl diff BUILD`: what the next `relctl build BUILD` would change on this host, file by
//! file, as unified diffs against what is installed — the app's unit files, the build's drop-in,
//! its processes' and timers' unit files, the files relctl renders into a release (settings,
//! environment, start scripts, `processes.json`, gunicorn's configuration for uvicorn) against the
//! build's current release, and the site's nginx file when `relctl site` serves the build.
//!
//! Two things are never compared as they are:
//! - the release id: the next release's differs from the current one's every time, so the next
//!   build's texts are compared (and shown) as if rendered with the current release's id (and so
//!   its directory);
//! - secrets: nothing printed holds a secret's value. A release keeps its environment and settings
//!   with each secret as `<secret>` beside them (`store::masked_copy`), and those are what is
//!   compared with the next build's rendered the same way; the files themselves are compared too,
//!   so a change of a secret alone still counts ("only secret values differ"). Every value of the
//!   build's secrets file is also masked wherever it occurs, on both sides.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Serialize;

use crate::error::Error;
use crate::host::atomic;
use crate::manifest::Loaded;
use crate::name::BuildName;
use crate::plan::build::BuildPlan;
use crate::plan::settings::SECRET_SHOWN;
use crate::plan::site::DomainPlan;
use crate::plan::{asgi, processes, units, AppPlan};
use crate::release::id::ReleaseId;
use crate::release::layout::BuildLayout;
use crate::release::{render, stage, store};

/// Lines of context around each change.
pub const CONTEXT_LINES: usize = 3;

/// What the diff of a file whose secret values alone differ says instead of its lines.
pub const ONLY_SECRETS: &str = "@@ only secret values differ; relctl does not show them @@\n";

/// What the diff of a settings file says whose template does not render without the secrets'
/// real values.
pub const UNSHOWN: &str =
    "@@ the settings differ; relctl does not show them: their template does not render with each secret as <secret> @@\n";

/// What the next build does to one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// It is there and the next build writes it otherwise.
    Changed,
    /// The next build writes it; it is not there now.
    Added,
    /// It is there now; the next build removes it (or its release no longer has it).
    Removed,
}

/// One file that the next build would change.
#[derive(Debug, Clone, Serialize)]
pub struct FileDiff {
    pub path: PathBuf,
    pub status: Status,
    /// The unified diff, `--- installed <path>` / `+++ next build <path>`, secrets masked.
    pub diff: String,
}

/// Everything the next build of `build` would change; nothing when `files` is empty.
#[derive(Debug, Clone, Serialize)]
pub struct Diff {
    pub build: BuildName,
    pub changed: bool,
    pub files: Vec<FileDiff>,
}

impl Diff {
    /// The diffs, one file after the other.
    pub fn text(&self) -> String {
        self.files.iter().map(|f| f.diff.as_str()).collect()
    }

    /// How `relctl diff` ends, as diff(1): fine when nothing differs, else [`Error::Differs`]
    /// (exit 1, printed as the diffs themselves).
    pub fn outcome(&self) -> Result<(), Error> {
        if self.changed {
            return Err(Error::Differs);
        }
        Ok(())
    }
}

/// The build's current release, which the next build's release files are compared with.
#[derive(Debug, Clone)]
pub struct Current {
    pub id: ReleaseId,
    /// Where its files are read: its directory.
    pub dir: PathBuf,
}

impl Current {
    /// `build`'s current release; None before its first build. A current release whose directory
    /// is gone is a usage error, as for `start`.
    pub fn of(build: &BuildLayout) -> Result<Option<Current>> {
        let Some(id) = build.current_release()? else { return Ok(None) };
        let dir = build.release_dir(&id);
        if !dir.is_dir() {
            return Err(Error::Usage(format!(
                "build {b}'s current release {id} is missing ({} was removed); run relctl build {b}, or relctl rollback {b} to go back to an earlier release",
                dir.display(),
                b = build.build
            ))
            .into());
        }
        Ok(Some(Current { id, dir }))
    }
}

/// The site's nginx file: what is installed and what `relctl site` would write now.
#[derive(Debug, Clone)]
pub struct SiteFile {
    pub path: PathBuf,
    pub installed: String,
    pub next: String,
}

/// Compares the next build of `plan` with what is installed: `current` (None before the first
/// build: every file of the release is added), `site` (see [`site_file`]).
pub fn diff(plan: &BuildPlan, current: Option<&Current>, site: Option<&SiteFile>) -> Result<Diff> {
    let masks = Masks::new(plan, current);
    let mut pairs = Vec::new();
    // What systemd runs: the app's units, the build's drop-in, its processes and timers.
    for unit in units::render(&plan.app)? {
        pairs.push(Pair::plain(&masks, &unit.path, read(&unit.path)?, Some(unit.contents)));
    }
    // The drop-in of the instance that serves: each instance gets the one of its release.
    let serving = plan.build.serving(|_| Ok(true))?.unwrap_or(crate::release::layout::Slot::Main);
    let dropin = plan.app.layout.instance(&plan.build.build, serving).dropin;
    pairs.push(Pair::plain(&masks, &dropin, read(&dropin)?, plan.dropin.as_ref().map(|d| d.contents.clone())));
    let jobs = units::render_jobs(&plan.app, &plan.build.build, &plan.processes)?;
    let mut installed_jobs = units::installed_jobs(&plan.app.layout, &plan.build.build)?;
    for job in jobs {
        installed_jobs.retain(|p| *p != job.path);
        pairs.push(Pair::plain(&masks, &job.path, read(&job.path)?, Some(job.contents)));
    }
    for gone in installed_jobs {
        pairs.push(Pair::plain(&masks, &gone, read(&gone)?, None));
    }
    // What the release carries, against the current release.
    pairs.extend(release_pairs(plan, current, &masks)?);
    if let Some(s) = site {
        pairs.push(Pair::plain(&masks, &s.path, Some(s.installed.clone()), Some(s.next.clone())));
    }
    let files: Vec<FileDiff> = pairs.into_iter().filter_map(Pair::diff).collect();
    Ok(Diff { build: plan.build.build.clone(), changed: !files.is_empty(), files })
}

/// The files the release carries, each shown at `<build>/current/<path>`.
fn release_pairs(plan: &BuildPlan, current: Option<&Current>, masks: &Masks) -> Result<Vec<Pair>> {
    let shown_at = |rel: &str| plan.build.current.join(rel);
    let installed = |rel: &str| -> Result<Option<String>> {
        match current {
            Some(c) => read_in_release(&c.dir, rel),
            None => Ok(None),
        }
    };
    let masked_copy = |name: &str| installed(&store::masked_copy(Path::new(""), name).display().to_string());
    let mut pairs = Vec::new();

    // The settings, where its release recorded them (the path may have changed since).
    let recorded = match current {
        Some(c) => store::read_meta(&c.dir)?.and_then(|m| m.settings),
        None => None,
    };
    let next_settings = plan.settings.as_ref();
    let mut settings_paths: Vec<&str> = next_settings.iter().map(|s| s.path.as_str()).collect();
    if let Some(r) = recorded.as_deref().filter(|r| !settings_paths.contains(r)) {
        settings_paths.push(r);
    }
    for rel in settings_paths {
        let next_file = next_settings.filter(|s| s.path == rel);
        // A template that does not render with each secret as `<secret>` (a filter that needs a
        // secret's real value): what it renders may hold a secret in any form, so none of it shows.
        let unshown = next_file.is_some_and(|s| s.shown.is_none()).then(|| UNSHOWN.to_string());
        let next = next_file.map(|s| {
            let raw = masks.as_current(&s.contents);
            let shown = masks.hide(&masks.as_current(s.shown.as_deref().unwrap_or_default()));
            Text { raw, shown }
        });
        let old = match installed(rel)? {
            Some(raw) => {
                let shown = match masked_copy("settings")? {
                    Some(copy) if recorded.as_deref().is_none_or(|r| r == rel) => masks.hide(&copy),
                    // A release made before relctl kept masked copies.
                    _ => mask_like(&masks.hide(&raw), next.as_ref().map(|n| n.shown.as_str()).unwrap_or("")),
                };
                Some(Text { raw, shown })
            }
            None => None,
        };
        pairs.push(Pair { path: shown_at(rel), installed: old, next, unshown });
    }

    // The environment.
    let rel = store::environment_file(Path::new("")).display().to_string();
    let next = Text {
        raw: masks.as_current(&plan.environment.file()?),
        shown: masks.hide(&masks.as_current(&plan.environment.shown_file()?)),
    };
    let old = match installed(&rel)? {
        Some(raw) => {
            let shown = match masked_copy("environment")? {
                Some(copy) => masks.hide(&copy),
                None => masks.hide(&environment_masked_like(&raw, plan)),
            };
            Some(Text { raw, shown })
        }
        None => None,
    };
    pairs.push(Pair { path: shown_at(&rel), installed: old, next: Some(next), unshown: None });

    // The start scripts: web's, then each process's and timer's, then those the next build drops.
    let mut scripts = vec![(format!("{}/start", store::META_DIR), plan.start_script.clone())];
    scripts.extend(plan.scripts().into_iter().map(|s| (s.path, s.contents)));
    let mut old_scripts = match current {
        Some(c) => job_scripts(&c.dir)?,
        None => Vec::new(),
    };
    for (rel, contents) in scripts {
        old_scripts.retain(|o| *o != rel);
        pairs.push(Pair::plain(masks, &shown_at(&rel), installed(&rel)?, Some(masks.as_current(&contents))));
    }
    for rel in old_scripts {
        pairs.push(Pair::plain(masks, &shown_at(&rel), installed(&rel)?, None));
    }

    // The processes and timers the release runs.
    let rel = processes::recorded_file(Path::new("")).display().to_string();
    let set = processes::to_json(&plan.processes)?;
    pairs.push(Pair::plain(masks, &shown_at(&rel), installed(&rel)?, Some(set)));

    // gunicorn's configuration for uvicorn's worker under a route, when either side has it.
    let next = plan.gunicorn_conf.clone();
    let old = installed(asgi::CONF)?;
    if next.is_some() || old.is_some() {
        pairs.push(Pair::plain(masks, &shown_at(asgi::CONF), old, next));
    }
    Ok(pairs)
}

/// The scripts of processes and timers in a release's `.relctl/`, relative to the release.
fn job_scripts(release_dir: &Path) -> Result<Vec<String>> {
    let meta = store::meta_dir(release_dir);
    let entries = match std::fs::read_dir(&meta) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(anyhow::Error::new(e).context(format!("listing {}", meta.display()))),
    };
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("listing {}", meta.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let ours = ["process-", "ready-", "timer-"].iter().any(|p| name.starts_with(p));
        if ours && entry.file_type().is_ok_and(|t| t.is_file()) {
            found.push(format!("{}/{name}", store::META_DIR));
        }
    }
    found.sort();
    Ok(found)
}

/// A release's environment file without a masked copy beside it (made by a relctl before
/// `diff`): the values the next build's environment renders from secrets, and those of
/// variables it no longer has (which may have been), as `<secret>`.
fn environment_masked_like(raw: &str, plan: &BuildPlan) -> String {
    let Ok(vars) = render::parse_env_file(raw) else {
        // Not a file relctl wrote: nothing of it is shown.
        return format!("{SECRET_SHOWN}\n");
    };
    let next = plan.environment.vars();
    let shown: BTreeMap<String, String> = vars
        .into_iter()
        .map(|(k, v)| {
            let hidden = plan.environment.is_secret(&k) || !next.contains_key(&k);
            let v = if hidden { SECRET_SHOWN.to_string() } else { v };
            (k, v)
        })
        .collect();
    render::env_file(&shown).unwrap_or_else(|_| format!("{SECRET_SHOWN}\n"))
}

/// `text` (a release's settings without a masked copy) with the secrets in the lines the next
/// build renders from secrets masked: a line that starts and ends as a line of `like` with
/// `<secret>` in it gets `<secret>` between the two (an earlier value of a secret is masked as
/// long as the rest of its line is unchanged).
fn mask_like(text: &str, like: &str) -> String {
    let shapes: Vec<(&str, &str)> = like
        .lines()
        .filter_map(|l| {
            let start = l.find(SECRET_SHOWN)?;
            let end = l.rfind(SECRET_SHOWN)? + SECRET_SHOWN.len();
            Some((&l[..start], &l[end..]))
        })
        .filter(|(prefix, _)| !prefix.trim().is_empty())
        .collect();
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let (body, end) = match line.strip_suffix('\n') {
            Some(b) => (b, "\n"),
            None => (line, ""),
        };
        let shape = shapes.iter().find(|(p, s)| {
            body.len() >= p.len() + s.len() && body.starts_with(p) && body.ends_with(s) && !body.contains(SECRET_SHOWN)
        });
        match shape {
            Some((p, s)) => out.push_str(&format!("{p}{SECRET_SHOWN}{s}{end}")),
            None => out.push_str(line),
        }
    }
    out
}

/// What is masked: the next release's id (as the current one's), and the secrets' values.
struct Masks {
    /// The next release's id and the current one's.
    release: Option<(String, String)>,
    /// The values of the build's secrets file, longest first.
    secrets: Vec<String>,
}

impl Masks {
    fn new(plan: &BuildPlan, current: Option<&Current>) -> Masks {
        let mut secrets: Vec<String> = plan.secrets.values.values().filter(|v| !v.is_empty()).cloned().collect();
        secrets.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        secrets.dedup();
        let release = current.map(|c| (plan.release.to_string(), c.id.to_string()));
        Masks { release, secrets }
    }

    /// A text of the next build as if rendered with the current release's id.
    fn as_current(&self, text: &str) -> String {
        match &self.release {
            Some((next, current)) => text.replace(next.as_str(), current),
            None => text.to_string(),
        }
    }

    /// `text` with every secret value as `<secret>`.
    fn hide(&self, text: &str) -> String {
        let mut text = text.to_string();
        for s in &self.secrets {
            if text.contains(s.as_str()) {
                text = text.replace(s.as_str(), SECRET_SHOWN);
            }
        }
        text
    }
}

/// One file as written (compared, never shown) and as shown (secrets masked).
struct Text {
    raw: String,
    shown: String,
}

/// One file on both sides: None where it is not (installed) or will not be (next).
struct Pair {
    path: PathBuf,
    installed: Option<Text>,
    next: Option<Text>,
    /// Why its lines are not shown, if they are not.
    unshown: Option<String>,
}

impl Pair {
    /// A file without secrets of its own (a unit file, a script): shown as it is but for the
    /// secrets' values; the next build's as if rendered with the current release's id.
    fn plain(masks: &Masks, path: &Path, installed: Option<String>, next: Option<String>) -> Pair {
        let text = |raw: String| Text { shown: masks.hide(&raw), raw };
        Pair {
            path: path.to_path_buf(),
            installed: installed.map(text),
            next: next.map(|n| text(masks.as_current(&n))),
            unshown: None,
        }
    }

    /// The file's diff; None when the next build leaves it as it is.
    fn diff(self) -> Option<FileDiff> {
        let status = match (&self.installed, &self.next) {
            (None, None) => return None,
            (Some(old), Some(new)) if old.raw == new.raw => return None,
            (Some(_), Some(_)) => Status::Changed,
            (None, Some(_)) => Status::Added,
            (Some(_), None) => Status::Removed,
        };
        let old = self.installed.as_ref().map_or("", |t| t.shown.as_str());
        let new = self.next.as_ref().map_or("", |t| t.shown.as_str());
        let path = self.path.display();
        let (from, to) = (format!("installed {path}"), format!("next build {path}"));
        let diff = if let Some(why) = &self.unshown {
            format!("--- {from}\n+++ {to}\n{why}")
        } else if old == new {
            format!("--- {from}\n+++ {to}\n{ONLY_SECRETS}")
        } else {
            similar::TextDiff::from_lines(old, new)
                .unified_diff()
                .context_radius(CONTEXT_LINES)
                .header(&from, &to)
                .to_string()
        };
        Some(FileDiff { path: self.path, status, diff })
    }
}

/// A file outside any release, as text; None when it is not there.
fn read(path: &Path) -> Result<Option<String>> {
    Ok(atomic::read_if_exists(path)?.map(|b| String::from_utf8_lossy(&b).into_owned()))
}

/// A file of the release, read beneath it without following a link; None when it is not there.
fn read_in_release(release_dir: &Path, rel: &str) -> Result<Option<String>> {
    match stage::read_beneath(release_dir, Path::new(rel)) {
        Ok(b) => Ok(Some(String::from_utf8_lossy(&b).into_owned())),
        Err(e) if e.chain().any(|c| c.downcast_ref::<nix::errno::Errno>() == Some(&nix::errno::Errno::ENOENT)) => {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// The site's nginx file (`[site] config`) as `relctl site` would write it now, when `relctl
/// site` is in use (the file is there) and `build` has a domain; None otherwise. The comments that
/// name each build's release and the manifest are taken from the installed file: they change
/// with every build (which leaves the file alone once its domain is served) and with the
/// manifest's path, never what nginx does.
pub fn site_file(
    app: &AppPlan,
    loaded: &Loaded,
    build: &BuildName,
    relctl: &Path,
    has_certificate: impl Fn(&DomainPlan) -> bool,
) -> Result<Option<SiteFile>> {
    if loaded.build(build)?.domain.is_none() {
        return Ok(None);
    }
    let plan = crate::plan::site::site(app, loaded, relctl, None)?;
    let Some(installed) = read(&plan.config)? else { return Ok(None) };
    let app_name = &app.layout.app;
    let manifest = installed
        .lines()
        .next()
        .and_then(|l| l.strip_prefix(&format!("# Generated by relctl site for {app_name} from ")))
        .and_then(|rest| rest.rsplit_once("; `relctl site` rewrites it"))
        .map_or_else(|| loaded.path.clone(), |(path, _)| PathBuf::from(path));
    let mut releases: BTreeMap<&str, Option<ReleaseId>> = BTreeMap::new();
    for line in installed.lines() {
        let Some(rest) = line.trim_start().strip_prefix(&format!("# {app_name} ")) else { continue };
        let Some((b, rest)) = rest.split_once(" (release ") else { continue };
        let Some((release, _)) = rest.split_once("): ") else { continue };
        let release = match release {
            "none yet" => None,
            id => match ReleaseId::parse(id) {
                Ok(id) => Some(id),
                Err(_) => continue,
            },
        };
        releases.insert(b, release);
    }
    let mut site = plan.nginx(&manifest, has_certificate);
    for route in site.servers.iter_mut().flat_map(|s| s.routes.iter_mut()) {
        if let Some(release) = releases.get(route.build.as_str()) {
            route.release = release.clone();
        }
    }
    let proxy_params = Path::new(crate::nginx::snippet::PROXY_PARAMS).exists();
    let next = crate::nginx::site::render(&site, proxy_params);
    Ok(Some(SiteFile { path: plan.config, installed, next }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest;
    use crate::plan::deps::KeyCommands;
    use crate::release::store::ReleaseMeta;
    use fs_err as fs;
    use std::os::unix::fs::PermissionsExt;

    const MANIFEST: &str = r#"
app = "medctrl"
component = "backend"
[settings]
template = "deploy/settings.py.tera"
path = "API/settings/deploy_{{ build }}.py"
[service]
workdir = "API"
exec = ".venv/bin/python -m gunicorn api.wsgi:application"
environment = { DJANGO_SETTINGS_MODULE = "settings.deploy_{{ build }}", DATABASE_URL = "postgres://u:{{ secrets.DB_PASSWORD }}@h/db" }
[timers.clearsessions]
exec = ".venv/bin/python manage.py clearsessions"
on_calendar = "daily"
[builds.development]
route = "/api"
secrets = "dev.env"
"#;

    const TEMPLATE: &str = "BUILD = \"{{ build }}\"\nRELEASE = \"{{ release }}\"\nROOT = \"{{ release_dir }}\"\nPASSWORD = \"{{ secrets.DB_PASSWORD }}\"\nURL = \"postgres://u:{{ secrets.DB_PASSWORD | replace(from=\"/\", to=\"%2F\") }}@h\"\nDEBUG = False\n";

    /// A project (the manifest `text`, the template, the secrets file with `password`) whose app
    /// writes its units into the tempdir's `units/`, and a release directory for its current
    /// release there.
    struct Project {
        tmp: tempfile::TempDir,
        loaded: Loaded,
    }

    impl Project {
        fn new(text: &str, password: &str) -> Project {
            let tmp = tempfile::tempdir().unwrap();
            let dir = tmp.path().to_path_buf();
            fs::create_dir_all(dir.join("deploy")).unwrap();
            fs::create_dir_all(dir.join("API")).unwrap();
            fs::create_dir_all(dir.join("units")).unwrap();
            fs::write(dir.join("deploy/settings.py.tera"), TEMPLATE).unwrap();
            let p = Project { loaded: Loaded { path: dir.join("relctl.toml"), dir, manifest: parse(text) }, tmp };
            p.secrets(password);
            p
        }

        fn secrets(&self, password: &str) {
            let f = self.loaded.dir.join("dev.env");
            fs::write(&f, format!("DB_PASSWORD={password}\n")).unwrap();
            fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        }

        fn template(&self, text: &str) {
            fs::write(self.loaded.dir.join("deploy/settings.py.tera"), text).unwrap();
        }

        /// The next build's plan at `second` past 13:05.
        fn plan(&self, second: u8) -> BuildPlan {
            let mut app = crate::plan::app(&self.loaded).unwrap();
            app.layout.unit_dir = self.tmp.path().join("units");
            let now = format!("2026-11-23T13:05:{second:02}Z").parse().unwrap();
            crate::plan::build::build(&app, &self.loaded, &"development".parse().unwrap(), now, KeyCommands::NotRun)
                .unwrap()
        }

        /// Installs `p` as `relctl build` would: its units, drop-in and job units, and its release
        /// as the current one.
        fn install(&self, p: &BuildPlan) -> Current {
            let dir = self.tmp.path().join("releases").join(p.release.as_str());
            let write = |path: &Path, text: &str| {
                fs::create_dir_all(path.parent().unwrap()).unwrap();
                fs::write(path, text).unwrap();
            };
            if let Some(s) = &p.settings {
                write(&dir.join(&s.path), &s.contents);
                write(&store::masked_copy(&dir, "settings"), s.shown.as_ref().unwrap());
            }
            write(&store::environment_file(&dir), &p.environment.file().unwrap());
            write(&store::masked_copy(&dir, "environment"), &p.environment.shown_file().unwrap());
            write(&store::meta_dir(&dir).join("start"), &p.start_script);
            for s in p.scripts() {
                write(&dir.join(&s.path), &s.contents);
            }
            processes::record(&dir, &p.processes).unwrap();
            let meta = ReleaseMeta {
                id: p.release.clone(),
                app: "medctrl".into(),
                build: "development".into(),
                created: "2026-11-23T13:05:00Z".parse().unwrap(),
                git: None,
                promoted_from: None,
                settings: p.settings.as_ref().map(|s| s.path.clone()),
            };
            store::mark_complete(&dir, &meta).unwrap();
            let units = units::render(&p.app).unwrap();
            for u in units.iter().chain(&units::render_jobs(&p.app, &p.build.build, &p.processes).unwrap()) {
                write(&u.path, &u.contents);
            }
            match &p.dropin {
                Some(d) => write(&p.dropin_path, &d.contents),
                None => drop(atomic::remove_if_exists(&p.dropin_path).unwrap()),
            }
            Current { id: p.release.clone(), dir }
        }
    }

    fn parse(text: &str) -> manifest::Manifest {
        manifest::parse(text).unwrap_or_else(|e| panic!("{e}\n{text}"))
    }

    fn statuses(d: &Diff) -> Vec<(String, Status)> {
        d.files.iter().map(|f| (f.path.file_name().unwrap().to_string_lossy().into_owned(), f.status)).collect()
    }

    #[test]
    fn the_next_build_of_the_same_inputs_differs_in_nothing_but_its_release_id() {
        let project = Project::new(MANIFEST, "hunter2");
        let built = project.plan(1);
        let current = project.install(&built);
        let next = project.plan(2);
        assert_ne!(next.release, built.release);
        assert!(next.settings.as_ref().unwrap().contents.contains(next.release.as_str()), "the id is rendered");
        assert!(next.start_script.contains(next.release.as_str()));
        let d = diff(&next, Some(&current), None).unwrap();
        assert!(!d.changed && d.files.is_empty(), "{}", d.text());
        assert_eq!(d.text(), "");
        assert_eq!(d.outcome(), Ok(()), "exit 0");
        // Planned twice at the same time, it is the same plan: nothing else is per build.
        assert_eq!(
            serde_json::to_string(&project.plan(3)).unwrap().replace(project.plan(3).release.as_str(), "ID"),
            serde_json::to_string(&next).unwrap().replace(next.release.as_str(), "ID")
        );
    }

    #[test]
    fn a_changed_template_is_a_diff_of_the_settings_file_by_its_path() {
        let project = Project::new(MANIFEST, "hunter2");
        let current = project.install(&project.plan(1));
        project.template(&TEMPLATE.replace("DEBUG = False\n", "DEBUG = False\nALLOWED_HOSTS = [\"example.org\"]\n"));
        let d = diff(&project.plan(2), Some(&current), None).unwrap();
        assert!(d.changed);
        let end = anyhow::Error::from(d.outcome().unwrap_err());
        assert_eq!(crate::error::exit_code(&end), std::process::ExitCode::from(1));
        assert!(!crate::error::is_shown(&end), "the diff says it all");
        assert_eq!(statuses(&d), [("deploy_development.py".to_string(), Status::Changed)]);
        let path = "/opt/medctrl/backend/development/current/API/settings/deploy_development.py";
        assert_eq!(d.files[0].path, Path::new(path));
        let expected = format!(
            "--- installed {path}\n+++ next build {path}\n@@ -4,3 +4,4 @@\n PASSWORD = \"<secret>\"\n URL = \"postgres://u:<secret>@h\"\n DEBUG = False\n+ALLOWED_HOSTS = [\"example.org\"]\n"
        );
        assert_eq!(d.text(), expected);
        let json = serde_json::to_value(&d).unwrap();
        assert_eq!(
            (&json["build"], &json["changed"], &json["files"][0]["status"]),
            (&"development".into(), &true.into(), &"changed".into())
        );
    }

    #[test]
    fn secret_values_are_never_shown_not_even_earlier_ones() {
        let (old, new) = ("0ld-pa55word", "hunter2/ü&x");
        let project = Project::new(MANIFEST, old);
        let current = project.install(&project.plan(1));
        // A new password alone: the settings and environment are named, nothing of either value.
        project.secrets(new);
        let d = diff(&project.plan(2), Some(&current), None).unwrap();
        assert_eq!(
            statuses(&d),
            [("deploy_development.py".to_string(), Status::Changed), ("environment".to_string(), Status::Changed)]
        );
        for f in &d.files {
            assert!(f.diff.ends_with(ONLY_SECRETS), "{}", f.diff);
        }
        // And with other changes: the lines around the secrets show, the secrets do not.
        project.template(&TEMPLATE.replace("PASSWORD =", "# The database\nPASSWORD ="));
        let d = diff(&project.plan(2), Some(&current), None).unwrap();
        let text = d.text();
        assert!(
            text.contains("+# The database\n PASSWORD = \"<secret>\"\n URL = \"postgres://u:<secret>@h\"\n"),
            "{text}"
        );
        let shown = format!("{text}{}", serde_json::to_string(&d).unwrap());
        // As a filter of the template made it.
        for secret in [old, new, "hunter2", "hunter2%2F"] {
            assert!(!shown.contains(secret), "{secret} in:\n{shown}");
        }
        // A release made before relctl kept masked copies: an earlier value is masked on lines
        // that are the same but for it.
        fs::remove_file(store::masked_copy(&current.dir, "settings")).unwrap();
        fs::remove_file(store::masked_copy(&current.dir, "environment")).unwrap();
        let d = diff(&project.plan(2), Some(&current), None).unwrap();
        let text = d.text();
        assert!(!text.contains(old) && !text.contains("hunter2"), "{text}");
        assert!(
            text.contains("+# The database\n PASSWORD = \"<secret>\"\n URL = \"postgres://u:<secret>@h\"\n"),
            "{text}"
        );
        let environment = d.files.iter().find(|f| f.path.ends_with(".relctl/environment")).unwrap();
        assert!(environment.diff.ends_with(ONLY_SECRETS), "{}", environment.diff);
    }

    #[test]
    fn a_dropped_drop_in_and_timer_show_as_removed_and_a_first_build_as_added() {
        let project = Project::new(MANIFEST, "hunter2");
        let current = project.install(&project.plan(1));
        let text = MANIFEST
            .replace("secrets = \"dev.env\"\n", "")
            .replace("DATABASE_URL = \"postgres://u:{{ secrets.DB_PASSWORD }}@h/db\"", "DATABASE_URL = \"sqlite://\"")
            .replace("[timers.clearsessions]\nexec = \".venv/bin/python manage.py clearsessions\"\non_calendar = \"daily\"\n", "");
        let project2 =
            Project { loaded: Loaded { manifest: parse(&text), ..project.loaded.clone() }, tmp: project.tmp };
        project2.template(
            &TEMPLATE
                .replace("{{ secrets.DB_PASSWORD }}", "x")
                .replace("{{ secrets.DB_PASSWORD | replace(from=\"/\", to=\"%2F\") }}", "x"),
        );
        let d = diff(&project2.plan(2), Some(&current), None).unwrap();
        let got = statuses(&d);
        for (file, status) in [
            ("50-relctl.conf", Status::Removed),
            ("medctrl_development_clearsessions.service", Status::Removed),
            ("medctrl_development_clearsessions.timer", Status::Removed),
            ("timer-clearsessions", Status::Removed),
            ("processes.json", Status::Changed),
            ("environment", Status::Changed),
            ("deploy_development.py", Status::Changed),
        ] {
            assert!(got.contains(&(file.to_string(), status)), "{file}: {got:?}");
        }
        let dropin = d.files.iter().find(|f| f.path.ends_with("50-relctl.conf")).unwrap();
        assert!(
            dropin.diff.contains(&format!("-EnvironmentFile={}/dev.env\n", project2.loaded.dir.display())),
            "{}",
            dropin.diff
        );
        assert!(!dropin.diff.lines().any(|l| l.starts_with('+') && !l.starts_with("+++ ")), "{}", dropin.diff);
        assert!(!d.text().contains("hunter2"), "the earlier secret is not shown: {}", d.text());

        // Never built: its release's files and its own units are added.
        let d = diff(&project2.plan(3), None, None).unwrap();
        assert!(
            statuses(&d).iter().any(|(f, s)| f == "deploy_development.py" && *s == Status::Added),
            "{:?}",
            statuses(&d)
        );
        assert!(d
            .files
            .iter()
            .all(|f| f.status != Status::Changed || f.path.starts_with(project2.tmp.path().join("units"))));
    }

    #[test]
    fn the_sites_file_is_compared_but_for_the_comments_naming_releases_and_the_manifest() {
        let tmp = tempfile::tempdir().unwrap();
        let config = tmp.path().join("relctl-medctrl.conf");
        let text = format!(
            "{MANIFEST}domain = \"example.org\"\n[builds.testing]\nroute = \"/t\"\n[site]\nconfig = \"{}\"\n",
            config.display()
        );
        let project = Project::new(&text, "hunter2");
        let (loaded, name) = (&project.loaded, "development".parse().unwrap());
        let app = crate::plan::app(loaded).unwrap();
        let site = |l: &Loaded| site_file(&app, l, &name, Path::new("/usr/bin/relctl"), |_| false).unwrap();
        assert!(site(loaded).is_none(), "relctl site never ran");
        let testing = site_file(&app, loaded, &"testing".parse().unwrap(), Path::new("/usr/bin/relctl"), |_| false);
        assert!(testing.unwrap().is_none(), "testing has no domain");
        // As relctl site wrote it from another copy of the manifest, before the last build.
        fs::write(&config, "x").unwrap();
        let now = site(loaded).unwrap().next;
        assert!(now.contains("(release none yet)") && now.contains(&loaded.path.display().to_string()), "{now}");
        let installed = now
            .replace("(release none yet)", "(release 20261123T130501Z-abc1234)")
            .replace(&loaded.path.display().to_string(), "/srv/medctrl/relctl.toml");
        fs::write(&config, &installed).unwrap();
        let file = site(loaded).unwrap();
        assert_eq!(file.next, installed);
        let built = project.plan(1);
        let d = diff(&built, None, Some(&file)).unwrap();
        assert!(d.files.iter().all(|f| f.path != config), "{}", d.text());
        // What nginx does is compared.
        let port = Loaded { manifest: parse(&format!("{text}http_port = 8080\n")), ..loaded.clone() };
        let file = site(&port).unwrap();
        let d = diff(&built, None, Some(&file)).unwrap();
        let f = d.files.iter().find(|f| f.path == config).unwrap();
        assert_eq!(f.status, Status::Changed);
        assert!(f.diff.contains(&format!("--- installed {}\n", config.display())), "{}", f.diff);
        assert!(f.diff.contains("-    listen 80;\n") && f.diff.contains("+    listen 8080;\n"), "{}", f.diff);
    }

    #[test]
    fn settings_whose_template_needs_a_secrets_real_value_are_not_shown() {
        let project = Project::new(MANIFEST, "user:pw");
        let current = project.install(&project.plan(1));
        // A template that fails on `<secret>`.
        project.template(&format!(
            "{TEMPLATE}{{% if secrets.DB_PASSWORD == \"<secret>\" %}}{{{{ nope }}}}{{% endif %}}PW = \"{{{{ secrets.DB_PASSWORD }}}}\"\n"
        ));
        let next = project.plan(2);
        assert!(next.settings.as_ref().unwrap().shown.is_none());
        let d = diff(&next, Some(&current), None).unwrap();
        assert_eq!(statuses(&d), [("deploy_development.py".to_string(), Status::Changed)]);
        assert!(d.text().ends_with(UNSHOWN) && !d.text().contains("user:pw"), "{}", d.text());
    }
}
