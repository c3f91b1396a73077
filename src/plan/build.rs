//! A release's plan: `relctl build` (from the source) and `relctl promote` (from another build's
//! release): its files, settings, environment, secrets, hooks, dependencies and start script.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Result;
use serde::Serialize;

use crate::error::Error;
use crate::manifest::{self, Loaded, Manifest};
use crate::name::BuildName;
use crate::plan::asgi;
use crate::plan::bytecode::{self, Bytecode};
use crate::plan::deps::{self, KeyCommands};
use crate::plan::hook::{Hook, HookStage};
use crate::plan::host::check_socket_path;
use crate::plan::processes::{ProcessSet, Script};
use crate::plan::script::start_script;
use crate::plan::settings::{self, Environment, ReleaseFile, Secrets};
use crate::plan::units::{self, UnitFile};
use crate::plan::{source_dir, AppPlan};
use crate::release::deps::{DepPlan, DEPS_DIR};
use crate::release::git::{self, GitRevision};
use crate::release::id::ReleaseId;
use crate::release::layout::BuildLayout;
use crate::release::render;
use crate::release::stage::CopySpec;
use crate::release::store;

/// Everything `relctl build <BUILD>` will do.
#[derive(Debug, Clone, Serialize)]
pub struct BuildPlan {
    pub app: AppPlan,
    pub build: BuildLayout,
    pub release: ReleaseId,
    pub release_dir: PathBuf,
    /// Where the release's files come from.
    pub origin: Origin,
    pub copy: CopySpec,
    pub settings: Option<ReleaseFile>,
    /// The service's environment for this release, written into the release as
    /// `.relctl/environment` and read by the unit through `current`; values rendered from secrets
    /// are shown as `<secret>`.
    pub environment: Environment,
    pub secrets: Secrets,
    pub hooks: Vec<Hook>,
    /// Dependencies shared between releases, each a symlink in the release to its entry.
    pub deps: Vec<DepPlan>,
    /// The per-build drop-in, or None when the build needs none (an old one is then removed).
    pub dropin: Option<UnitFile>,
    pub dropin_path: PathBuf,
    /// Unit files enabled over D-Bus.
    pub enable: Vec<String>,
    /// Unit files disabled (if enabled): a build that sleeps when idle does not start at boot, its
    /// sockets do; one that does not has no wake socket.
    pub disable: Vec<String>,
    /// `idle_stop_s`: the build sleeps after this many seconds without a request through nginx.
    pub idle_stop_s: Option<u64>,
    /// `.relctl/start` of the release.
    pub start_script: String,
    /// The processes and timers the build runs with this release (recorded with it).
    pub processes: ProcessSet,
    /// `.relctl/gunicorn-relctl.conf.py` of the release, for uvicorn's worker (see `asgi`).
    pub gunicorn_conf: Option<String>,
    /// What the user should know about the plan (printed as warnings).
    pub notes: Vec<String>,
    /// The interpreter that compiles the release's bytecode before it is sealed; None when the
    /// service does not run Python.
    pub bytecode: Option<Bytecode>,
}

/// Where a release's files come from.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "lowercase", tag = "kind")]
pub enum Origin {
    /// The manifest's source (`relctl build`), at this git revision when it is a checkout.
    Source { git: Option<GitRevision> },
    /// Byte for byte the files of another build's release (`relctl promote`), but for its
    /// rendered settings file; its dependency entries are linked, not built.
    Promoted {
        from: store::PromotedFrom,
        /// The git label recorded with that release.
        git: Option<String>,
        /// The settings file of that release, left out of the copy.
        settings: Option<String>,
    },
}

impl Origin {
    /// The git label the release records (`abc1234[-dirty]`).
    pub fn git_label(&self) -> Option<String> {
        match self {
            Origin::Source { git } => git.as_ref().map(GitRevision::label),
            Origin::Promoted { git, .. } => git.clone(),
        }
    }

    pub fn promoted_from(&self) -> Option<&store::PromotedFrom> {
        match self {
            Origin::Source { .. } => None,
            Origin::Promoted { from, .. } => Some(from),
        }
    }
}

/// Resolves one build: checks the name, reads the secrets and the settings template, picks the
/// release id and renders everything that goes into the release. `key_commands`: whether the
/// `[deps.*] key_commands` run now ([`KeyCommands::NotRun`] for a dry run, which runs no command
/// of the manifest's).
pub fn build(
    app: &AppPlan,
    loaded: &Loaded,
    name: &BuildName,
    now: jiff::Timestamp,
    key_commands: KeyCommands,
) -> Result<BuildPlan> {
    let decl = loaded.build(name)?;
    let m = &loaded.manifest;
    let build = app.layout.build(name);
    let source = source_dir(loaded)?;
    let git = git::revision(&source)?;
    let release = store::new_id(&build, now, git.as_ref())?;
    let deps = m
        .deps
        .iter()
        .map(|(dep_name, d)| deps::plan(&app.layout.root, &source, dep_name, d, key_commands))
        .collect::<Result<Vec<_>>>()?;
    let copy = copy_spec(app, m, source, &deps);
    let made = Made { origin: Origin::Source { git }, copy, deps, hooks: hooks(m), templates_from: None };
    assemble(app, loaded, &decl, build, release, made)
}

/// What differs between a release built from the source and one promoted from another build.
struct Made {
    origin: Origin,
    copy: CopySpec,
    deps: Vec<DepPlan>,
    hooks: Vec<Hook>,
    /// The release whose copy of the source's settings template is used (promote).
    templates_from: Option<PathBuf>,
}

/// The rest of a release's plan: settings, environment, secrets, drop-in, start script.
fn assemble(
    app: &AppPlan,
    loaded: &Loaded,
    decl: &manifest::Build,
    build: BuildLayout,
    release: ReleaseId,
    made: Made,
) -> Result<BuildPlan> {
    let m = &loaded.manifest;
    let name = build.build.clone();
    let release_dir = build.release_dir(&release);
    let secrets = settings::read_secrets(loaded, &name, decl.secrets.as_deref())?;
    check_socket_path(app, &name)?;
    let ctx = settings::template_context(app, m, decl, &build, &release, &release_dir, &secrets);
    let settings = settings::settings_file(loaded, &ctx, made.templates_from.as_deref())?;
    let mut environment = settings::service_environment(m, &ctx, &build, &release)?;
    // uvicorn's worker under a route gets the route from a gunicorn configuration in the release.
    let workdir = made.copy.source.join(m.service.workdir.as_deref().unwrap_or("."));
    let project_conf = std::fs::read_to_string(workdir.join("gunicorn.conf.py")).ok();
    let (gunicorn_conf, notes) = match asgi::uvicorn(&m.service.exec, project_conf.as_deref()) {
        asgi::Uvicorn::No => (None, Vec::new()),
        asgi::Uvicorn::OwnConfig(note) => (None, vec![note]),
        asgi::Uvicorn::Hook => {
            const KEY: &str = "GUNICORN_CMD_ARGS";
            let own = environment.vars().get(KEY).cloned();
            let secret = environment.is_secret(KEY);
            environment.insert(KEY.into(), asgi::cmd_args(&release_dir, own.as_deref()), secret);
            (Some(asgi::CONF_TEXT.to_string()), Vec::new())
        }
    };
    let dropin_path = app.layout.dropin_file(&name);
    let dropin = secrets.file.as_ref().map(|p| dropin(&name, p, &dropin_path));
    let start_script = start_script(
        &release_dir,
        m.service.workdir.as_deref(),
        &m.service.exec,
        &format!("release {release} of {} {name}", m.app),
    );
    let processes = ProcessSet::resolve(m, decl);
    processes.check_calendars()?;
    let bytecode = bytecode::plan(&m.service.exec, &made.deps);
    let (enable, disable) = enabled_units(app, &build);
    Ok(BuildPlan {
        bytecode,
        gunicorn_conf,
        notes,
        processes,
        start_script,
        copy: made.copy,
        enable,
        disable,
        idle_stop_s: app.idle_stop_s(&name),
        app: app.clone(),
        release,
        release_dir,
        origin: made.origin,
        settings,
        environment,
        secrets,
        hooks: made.hooks,
        deps: made.deps,
        dropin,
        dropin_path,
        build,
    })
}

/// Resolves `relctl promote FROM TO`: TO gets a new release whose files are those of FROM's
/// current release (but for FROM's rendered settings file and relctl's own `.relctl/`), linked to
/// the same dependency entries, with TO's settings, environment and secrets, and TO's `release`
/// hooks (no `build` hooks: the artefacts come with the files). FROM's current release must be
/// complete, not bad, and verified (it passed the gate and probation as FROM's live release).
pub fn promote(
    app: &AppPlan,
    loaded: &Loaded,
    from: &BuildName,
    to: &BuildName,
    now: jiff::Timestamp,
) -> Result<BuildPlan> {
    let from_decl = loaded.build(from)?;
    let decl = loaded.build(to)?;
    if from == to {
        return Err(Error::Usage(format!(
            "cannot promote build {from} to itself; name two builds, e.g. relctl promote testing production"
        ))
        .into());
    }
    let m = &loaded.manifest;
    let source = app.layout.build(from);
    let refuse = |why: String| -> anyhow::Error {
        Error::Usage(format!("cannot promote {from} to {to}: {why}; nothing was changed")).into()
    };
    let Some(id) = source.current_release()? else {
        return Err(refuse(format!("build {from} has no release yet (run: relctl build {from})")));
    };
    let from_dir = source.release_dir(&id);
    if !from_dir.is_dir() {
        return Err(refuse(format!("{from}'s current release {id} is missing ({} was removed)", from_dir.display())));
    }
    let meta = store::read_meta(&from_dir)
        .map_err(|e| refuse(format!("{from}'s current release {id} cannot be read ({e:#})")))?;
    let Some(meta) = meta else {
        return Err(refuse(format!("{from}'s current release {id} is incomplete (its build never finished)")));
    };
    if meta.app != app.layout.app {
        return Err(refuse(format!(
            "{from}'s current release {id} belongs to app {}, not {}",
            meta.app, app.layout.app
        )));
    }
    if let Some(reason) = store::bad_reason(&from_dir)? {
        return Err(refuse(format!("{from}'s current release {id} is bad ({reason})")));
    }
    if store::verified(&from_dir)?.is_none() {
        return Err(refuse(format!(
            "{from}'s current release {id} has not been verified (it never passed the gate and probation as {from}'s live release: a deploy of it failed or was interrupted); run relctl restart {from} to verify it"
        )));
    }
    // FROM's own settings file is not part of what is promoted.
    let from_settings = match (&meta.settings, &m.settings) {
        (Some(p), _) => Some(p.clone()),
        (None, Some(s)) => {
            let ctx = settings::template_context(app, m, &from_decl, &source, &id, &from_dir, &Secrets::default());
            Some(render::render("[settings] path", &s.path, &ctx).map_err(settings::template_error)?)
        }
        (None, None) => None,
    };
    let mut never: Vec<PathBuf> = from_settings.iter().map(|p| from_dir.join(p)).collect();
    let mut deps = Vec::new();
    for (dep_name, d) in &m.deps {
        let link = from_dir.join(d.path.trim_end_matches('/'));
        let entry =
            std::fs::read_link(&link).ok().filter(|e| e.parent() == Some(app.layout.root.join(DEPS_DIR).as_path()));
        let Some(entry) = entry else {
            return Err(refuse(format!(
                "{from}'s current release {id} has no [deps.{dep_name}] entry linked at {} (it was built before [deps.{dep_name}] was declared); run relctl build {from} first",
                d.path
            )));
        };
        let dep = DepPlan {
            name: dep_name.clone(),
            path: d.path.clone(),
            entry,
            build: d.build.clone(),
            keyed_by: vec![format!("the entry of {from}@{id}")],
            key_commands_not_run: Vec::new(),
        };
        if !dep.is_complete() {
            return Err(refuse(format!(
                "the [deps.{dep_name}] entry {} of {from}@{id} is not complete",
                dep.entry.display()
            )));
        }
        never.push(link);
        deps.push(dep);
    }
    let to_build = app.layout.build(to);
    let git = meta.git.as_deref().map(GitRevision::from_label);
    let release = store::new_id(&to_build, now, git.as_ref())?;
    let copy = CopySpec { source: from_dir.clone(), exclude: Vec::new(), never };
    let hooks = hooks(m).into_iter().filter(|h| h.stage != HookStage::Build).collect();
    let origin = Origin::Promoted {
        from: store::PromotedFrom { build: from.to_string(), release: id },
        git: meta.git,
        settings: from_settings,
    };
    let made = Made { origin, copy, deps, hooks, templates_from: Some(from_dir) };
    assemble(app, loaded, &decl, to_build, release, made)
}

/// What `build` copies of the source, for shipping it to another host (`-H`): the source minus
/// `.git`, the exclude patterns and the dependencies' paths.
pub fn source_copy(loaded: &Loaded) -> Result<CopySpec> {
    let source = source_dir(loaded)?;
    let never = loaded.manifest.deps.values().map(|d| source.join(d.path.trim_end_matches('/'))).collect();
    Ok(CopySpec { exclude: loaded.manifest.exclude.clone(), never, source })
}

/// What is copied: the source, minus `.git`, the exclude patterns and the build root itself.
fn copy_spec(app: &AppPlan, m: &Manifest, source: PathBuf, deps: &[DepPlan]) -> CopySpec {
    // A dependency's path in the source (a local .venv) is never copied: the release links it.
    let mut never: Vec<PathBuf> = deps.iter().map(|d| source.join(d.path.trim_end_matches('/'))).collect();
    never.push(app.layout.root.clone());
    if let Ok(r) = std::fs::canonicalize(&app.layout.root) {
        never.push(r);
    }
    CopySpec { source, exclude: m.exclude.clone(), never }
}

fn hooks(m: &Manifest) -> Vec<Hook> {
    let stage = |stage: HookStage, commands: &[String]| -> Vec<Hook> {
        commands.iter().map(|c| Hook { stage, command: c.clone() }).collect()
    };
    let schema: Vec<String> = m.schema.iter().map(|s| s.list.clone()).collect();
    [
        stage(HookStage::Build, &m.hooks.build),
        stage(HookStage::PreMigrate, &m.hooks.pre_migrate),
        stage(HookStage::Release, &m.hooks.release),
        stage(HookStage::Schema, &schema),
    ]
    .concat()
}

/// The per-build drop-in that gives the service its secrets file.
/// The units enabled and disabled for `build`: its socket and the target, and its service, or,
/// for a build that sleeps when idle, its wake socket instead (it starts on its first request).
pub(crate) fn enabled_units(app: &AppPlan, build: &BuildLayout) -> (Vec<String>, Vec<String>) {
    let wake = app.layout.wake(&build.build).socket_unit;
    match app.idle_stop_s(&build.build) {
        Some(_) => (vec![build.socket_unit.clone(), wake, app.layout.target()], vec![build.service_unit.clone()]),
        None => (vec![build.socket_unit.clone(), build.service_unit.clone(), app.layout.target()], vec![wake]),
    }
}

fn dropin(build: &str, secrets_file: &Path, path: &Path) -> UnitFile {
    UnitFile {
        path: path.to_path_buf(),
        contents: format!(
            "# Written by relctl for build {build}; `relctl build {build}` rewrites it, do not edit.\n[Service]\nEnvironmentFile={}\n",
            secrets_file.display()
        ),
    }
}

impl BuildPlan {
    /// The scripts the release carries for its processes and timers (`.relctl/process-<name>`,
    /// ...), as `build` writes them and `diff` compares them.
    pub fn scripts(&self) -> Vec<Script> {
        let what = format!("release {} of {} {}", self.release, self.app.layout.app, self.build.build);
        self.processes.scripts(&self.release_dir, &what)
    }

    /// The environment build hooks and `[deps]` builds run with: the service's environment and
    /// `RELCTL_RELEASE_DIR` (release hooks get theirs, and the secrets, as the service does: from
    /// its environment files, see `hooks::run_in_unit`).
    pub fn hook_env(&self) -> BTreeMap<String, String> {
        let mut env = self.environment.vars().clone();
        env.insert("RELCTL_RELEASE_DIR".into(), self.release_dir.display().to_string());
        env
    }

    /// The plan as text for `--dry-run`.
    pub fn describe(&self) -> String {
        let mut s = String::new();
        let b = &self.build;
        let mut line = |k: &str, v: String| s.push_str(&format!("{k:<12} {v}\n"));
        line("manifest", self.app.manifest.display().to_string());
        line("build", format!("{} of {} ({})", b.build, self.app.layout.app, self.app.layout.component));
        line("release", self.release.to_string());
        match &self.origin {
            Origin::Source { .. } => {
                let excluded: String = self.copy.exclude.iter().map(|e| format!(", {e}")).collect();
                line(
                    "copy",
                    format!(
                        "{} -> {} (excluding .git, {}{excluded})",
                        self.copy.source.display(),
                        self.release_dir.display(),
                        self.app.layout.root.display()
                    ),
                );
            }
            Origin::Promoted { from, settings, .. } => {
                let mut left_out = vec![store::META_DIR.to_string()];
                left_out.extend(settings.iter().map(|s| format!("{s} (its settings)")));
                left_out.extend(self.deps.iter().map(|d| format!("{} (linked below)", d.path)));
                line(
                    "copy",
                    format!(
                        "{} ({from}, byte for byte) -> {} (all but {})",
                        self.copy.source.display(),
                        self.release_dir.display(),
                        left_out.join(", ")
                    ),
                );
            }
        }
        if let Some(f) = &self.settings {
            line(
                "settings",
                format!("{} -> {}/{} (0640 root:{})", f.template, self.release_dir.display(), f.path, self.app.user),
            );
        }
        line("start", self.start_script.lines().last().unwrap_or("").to_string());
        if self.gunicorn_conf.is_some() {
            line(
                "gunicorn",
                format!("{} (uvicorn's worker gets the route as root_path; loaded through GUNICORN_CMD_ARGS, it loads the project's gunicorn.conf.py first)", crate::plan::asgi::CONF),
            );
        }
        for n in &self.notes {
            line("note", n.clone());
        }
        let shown = self.environment.shown();
        line("environment", shown.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" "));
        if let Some(p) = &self.secrets.file {
            line("secrets", format!("{} ({})", p.display(), self.secrets.names.join(", ")));
        }
        for d in &self.deps {
            let state = if !d.key_commands_not_run.is_empty() {
                format!(
                    "the key commands run at build time, not on a dry run; then reused, or built by: {}",
                    d.build.join("; ")
                )
            } else if d.is_complete() {
                "reused".to_string()
            } else {
                format!("built by: {}", d.build.join("; "))
            };
            let keyed = d.keyed_by.join(", ");
            line("deps", format!("{}: {} -> {} (keyed by {keyed}; {state})", d.name, d.path, d.entry.display()));
        }
        for h in self.hooks.iter().chain(&self.app.verify) {
            line(&format!("hook:{}", h.stage), h.command.clone());
        }
        if let Some(bc) = &self.bytecode {
            let dep = match &bc.dep {
                Some(d) => format!("; [deps.{}] too when it is built", d.name),
                None => String::new(),
            };
            line(
                "bytecode",
                format!(
                    "{} -m compileall {}, after the build hooks, before the seal{dep}",
                    bc.python,
                    self.release_dir.display()
                ),
            );
        }
        line("user", format!("{} (system user, created if missing)", self.app.user));
        for u in units::paths(&self.app) {
            line("unit", u.display().to_string());
        }
        line(
            "drop-in",
            match &self.dropin {
                Some(d) => d.path.display().to_string(),
                None => format!("none (removes {} if present)", self.dropin_path.display()),
            },
        );
        line("enable", self.enable.join(", "));
        line("disable", format!("{} (if enabled)", self.disable.join(", ")));
        if let Some(idle) = self.idle_stop_s {
            let wake = self.app.layout.wake(&b.build);
            line(
                "sleep",
                format!(
                    "after {idle}s without a request through {} ({}), and right after this deploy if none came since it last slept",
                    wake.socket.display(),
                    wake.service_unit
                ),
            );
        }
        for p in self.processes.describe() {
            line("process", p);
        }
        match units::render_jobs(&self.app, &b.build, &self.processes) {
            Ok(files) => files.iter().for_each(|u| line("unit", u.path.display().to_string())),
            Err(e) => line("unit", format!("cannot be rendered: {e:#}")),
        }
        line("switch", format!("{} -> releases/{}", b.current.display(), self.release));
        let [main, next] = self.app.layout.instances(&b.build);
        line(
            "job",
            format!(
                "if it serves: the other of {} and {} starts on the release, passes the gate through its own socket and takes the public socket; the one that served drains and stops; else start {} and {}",
                main.service_unit, next.service_unit, main.socket_unit, main.service_unit
            ),
        );
        line("socket", format!("{} (public; a symlink to the serving instance's socket)", b.socket.display()));
        line("state", b.state_dir.display().to_string());
        let h = &self.app.health;
        let route = self.app.script_name(&b.build);
        let header = if route.is_empty() { String::new() } else { format!(" with SCRIPT_NAME: {route}") };
        line(
            "health",
            format!("GET {route}{}{header} through the socket until {}, {}s", h.path, h.accept, h.timeout_s),
        );
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::app;
    use crate::plan::routes::nginx_routes;
    use fs_err as fs;
    use std::os::unix::fs::PermissionsExt;

    /// A project directory with a settings template, and its manifest `text` loaded.
    fn loaded(text: &str) -> (tempfile::TempDir, Loaded) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        fs::create_dir_all(dir.join("deploy")).unwrap();
        fs::create_dir_all(dir.join("API")).unwrap();
        let template = "BUILD = \"{{ build }}\"\nDB = \"{{ state_dir }}/db.sqlite3\"\n";
        fs::write(dir.join("deploy/settings.py.tera"), template).unwrap();
        (tmp, Loaded { path: dir.join("relctl.toml"), dir, manifest: manifest::parse(text).unwrap() })
    }

    const EXAMPLE: &str = r#"
app = "medctrl"
component = "backend"
[settings]
template = "deploy/settings.py.tera"
path = "API/api_settings/settings/deploy_{{ build }}.py"
[service]
workdir = "API"
exec = ".venv/bin/python -m gunicorn --workers 3 api_settings.wsgi:application"
environment = { DJANGO_SETTINGS_MODULE = "api_settings.settings.deploy_{{ build }}" }
[hooks]
build = ["/usr/bin/python3 -m venv .venv"]
release = ["true"]
[health]
path = "/health"
[builds.development]
route = "/api"
"#;

    fn now() -> jiff::Timestamp {
        "2026-11-23T13:05:01Z".parse().unwrap()
    }

    #[test]
    fn build_plan_resolves_paths_settings_and_environment() {
        let (_tmp, l) = loaded(EXAMPLE);
        let a = app(&l).unwrap();
        let p = build(&a, &l, &"development".parse().unwrap(), now(), KeyCommands::Run).unwrap();
        assert_eq!(p.build.build_dir, Path::new("/opt/medctrl/backend/development"));
        assert!(p.release.as_str().starts_with("20261123T130501Z"));
        assert_eq!(p.release_dir, Path::new("/opt/medctrl/backend/development/releases").join(p.release.as_str()));
        let s = p.settings.as_ref().unwrap();
        assert_eq!(s.path, "API/api_settings/settings/deploy_development.py");
        assert_eq!(s.contents, "BUILD = \"development\"\nDB = \"/var/lib/medctrl/backend/development/db.sqlite3\"\n");
        assert_eq!(p.environment["DJANGO_SETTINGS_MODULE"], "api_settings.settings.deploy_development");
        assert_eq!(p.environment["RELCTL_RELEASE"], p.release.as_str());
        assert_eq!(p.enable, ["medctrl@development.socket", "medctrl@development.service", "medctrl.target"]);
        assert!(p.dropin.is_none());
        assert_eq!(p.hooks.len(), 2);
        let text = p.describe();
        assert!(
            text.contains("switch       /opt/medctrl/backend/development/current -> releases/20261123T130501Z"),
            "{text}"
        );
    }

    #[test]
    fn undefined_template_variable_is_a_usage_error_naming_the_file() {
        let (_tmp, l) = loaded(
            &EXAMPLE.replace("app = \"medctrl\"", "app = \"medctrl\"\n[vars]\nx = 1\n").replace("[vars]\nx = 1\n", ""),
        );
        fs::write(l.dir.join("deploy/settings.py.tera"), "A = 1\nB = {{ vars.nope }}\n").unwrap();
        let a = app(&l).unwrap();
        let err = build(&a, &l, &"development".parse().unwrap(), now(), KeyCommands::Run).unwrap_err();
        assert!(crate::error::is_usage(&err));
        assert!(err.to_string().starts_with("deploy/settings.py.tera:2: undefined variable `vars.nope`"), "{err}");
    }

    #[test]
    fn builtin_django_template_renders_and_names_what_it_needs() {
        let text = EXAMPLE.replace("template = \"deploy/settings.py.tera\"", "template = \"builtin:django\"");
        let (_tmp, l) = loaded(&text);
        let a = app(&l).unwrap();
        let err = build(&a, &l, &"development".parse().unwrap(), now(), KeyCommands::Run).unwrap_err().to_string();
        assert!(
            err.starts_with("builtin:django:") && err.contains("undefined variable `vars.settings_module`"),
            "{err}"
        );
        let (_tmp, l) = loaded(&format!("{text}\n[vars]\nsettings_module = \"api_settings.settings.common\"\n"));
        let p = build(&a, &l, &"development".parse().unwrap(), now(), KeyCommands::Run).unwrap();
        let c = &p.settings.unwrap().contents;
        assert!(c.contains("from api_settings.settings.common import *"), "{c}");
        assert!(c.contains("RELCTL_BUILD = \"development\"") && c.contains("DEBUG = False"), "{c}");
        assert!(c.contains("\"NAME\": \"/var/lib/medctrl/backend/development/db.sqlite3\""), "{c}");
        let (_tmp, l) = loaded(&text.replace("template = \"builtin:django\"", "template = \"builtin:flask\""));
        assert!(build(&a, &l, &"development".parse().unwrap(), now(), KeyCommands::Run)
            .unwrap_err()
            .to_string()
            .contains("builtins: builtin:django"));
    }

    #[test]
    fn world_readable_secrets_are_refused_and_values_never_described() {
        let (_tmp, l) = loaded(&EXAMPLE.replace("route = \"/api\"", "route = \"/api\"\nsecrets = \"dev.env\""));
        let f = l.dir.join("dev.env");
        fs::write(&f, "SECRET_KEY=hunter2\n").unwrap();
        fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        let a = app(&l).unwrap();
        let err = build(&a, &l, &"development".parse().unwrap(), now(), KeyCommands::Run).unwrap_err().to_string();
        assert!(err.contains("world-readable (mode 0644)"), "{err}");
        fs::set_permissions(&f, std::fs::Permissions::from_mode(0o640)).unwrap();
        let p = build(&a, &l, &"development".parse().unwrap(), now(), KeyCommands::Run).unwrap();
        assert_eq!(p.secrets.names, ["SECRET_KEY"]);
        let dropin = p.dropin.as_ref().unwrap();
        assert!(dropin.contents.contains(&format!("EnvironmentFile={}", f.display())));
        let shown = format!("{}{}{}", p.describe(), serde_json::to_string(&p).unwrap(), dropin.contents);
        assert!(!shown.contains("hunter2"));
        assert!(!p.environment.vars().values().any(|v| v.contains("hunter2")));
    }

    #[test]
    fn environment_values_rendered_from_secrets_are_never_shown() {
        let text = EXAMPLE
            .replace("route = \"/api\"", "route = \"/api\"\nsecrets = \"dev.env\"")
            .replace(
                "environment = { DJANGO_SETTINGS_MODULE = \"api_settings.settings.deploy_{{ build }}\" }",
                "environment = { DJANGO_SETTINGS_MODULE = \"api_settings.settings.deploy_{{ build }}\", DATABASE_URL = \"postgres://u:{{ secrets.DB_PASSWORD }}@h/db\", LEN = \"{{ secrets.DB_PASSWORD | length }}\", FROM_SECRET = \"{% set s = secrets %}{{ s.DB_PASSWORD }}\" }",
            );
        let (_tmp, l) = loaded(&text);
        let f = l.dir.join("dev.env");
        fs::write(&f, "DB_PASSWORD=hunter2\n").unwrap();
        fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        let a = app(&l).unwrap();
        let p = build(&a, &l, &"development".parse().unwrap(), now(), KeyCommands::Run).unwrap();
        // The environment file and hooks get the value.
        assert_eq!(p.environment["DATABASE_URL"], "postgres://u:hunter2@h/db");
        assert!(p.hook_env()["DATABASE_URL"].contains("hunter2"));
        // --dry-run and --json do not.
        let described = p.describe();
        let json = serde_json::to_string(&serde_json::json!({ "plan": p })).unwrap();
        for shown in [&described, &json] {
            assert!(!shown.contains("hunter2"), "{shown}");
        }
        assert!(described.contains("DATABASE_URL=<secret>"), "{described}");
        assert!(described.contains("DJANGO_SETTINGS_MODULE=api_settings.settings.deploy_development"), "{described}");
        for key in ["DATABASE_URL", "LEN", "FROM_SECRET"] {
            assert!(p.environment.is_secret(key), "{key}");
            assert!(json.contains(&format!("\"{key}\":\"<secret>\"")), "{json}");
        }
        assert!(!p.environment.is_secret("DJANGO_SETTINGS_MODULE"));

        // A secret that cannot go on one line is refused without being printed.
        fs::write(&f, "DB_PASSWORD=\"hunter2\nsecond line\"\n").unwrap();
        let err = build(&a, &l, &"development".parse().unwrap(), now(), KeyCommands::Run).unwrap_err().to_string();
        assert!(
            err.starts_with(
                "[service] environment.DATABASE_URL contains the control character '\\n' as rendered from secrets"
            ),
            "{err}"
        );
        assert!(!err.contains("hunter2"), "{err}");
        fs::write(&f, "DB_PASSWORD=hunter2\n").unwrap();
        let (_tmp3, l3) = loaded(&text.replace("LEN =", "DUMP = \"{{ __tera_context }}\", LEN ="));
        fs::write(l3.dir.join("dev.env"), "DB_PASSWORD=hunter2\n").unwrap();
        fs::set_permissions(l3.dir.join("dev.env"), std::fs::Permissions::from_mode(0o600)).unwrap();
        let err = build(&a, &l3, &"development".parse().unwrap(), now(), KeyCommands::Run).unwrap_err().to_string();
        assert!(err.starts_with("[service] environment.DUMP contains the control character"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");

        // The settings path, which is printed, cannot use secrets.
        fs::write(&f, "DB_PASSWORD=hunter2\n").unwrap();
        let (_tmp2, l2) = loaded(&text.replace("deploy_{{ build }}.py", "deploy_{{ secrets.DB_PASSWORD }}.py"));
        fs::write(l2.dir.join("dev.env"), "DB_PASSWORD=hunter2\n").unwrap();
        fs::set_permissions(l2.dir.join("dev.env"), std::fs::Permissions::from_mode(0o600)).unwrap();
        let err = build(&a, &l2, &"development".parse().unwrap(), now(), KeyCommands::Run).unwrap_err().to_string();
        assert!(err.contains("[settings] path") && err.contains("secrets.DB_PASSWORD"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn a_dry_run_plan_runs_no_key_command_and_names_them() {
        let (_tmp, l) = loaded(&format!(
            "{EXAMPLE}[deps.venv]\npath = \".venv\"\nkey_commands = [\"touch ran\"]\nbuild = [\"true\"]\n"
        ));
        let a = app(&l).unwrap();
        let p = build(&a, &l, &"development".parse().unwrap(), now(), KeyCommands::NotRun).unwrap();
        assert!(!l.dir.join("ran").exists(), "the dry run ran a key command");
        let text = p.describe();
        assert!(
            text.contains("deps         venv: .venv -> /opt/medctrl/backend/.deps/venv-<computed by key commands at build time> (keyed by `touch ran`; the key commands run at build time, not on a dry run; then reused, or built by: true)"),
            "{text}"
        );
        build(&a, &l, &"development".parse().unwrap(), now(), KeyCommands::Run).unwrap();
        assert!(l.dir.join("ran").exists(), "a build runs them");
    }

    #[test]
    fn as_root_templates_secrets_and_htpasswd_another_user_can_change_are_refused() {
        use std::os::unix::fs::chown;
        let text =
            EXAMPLE.replace("route = \"/api\"", "route = \"/api\"\nsecrets = \"dev.env\"\nhtpasswd = \"dev.htpasswd\"");
        let (_tmp, l) = loaded(&text);
        let a = app(&l).unwrap();
        let secrets = l.dir.join("dev.env");
        fs::write(&secrets, "SECRET_KEY=hunter2\n").unwrap();
        fs::set_permissions(&secrets, std::fs::Permissions::from_mode(0o600)).unwrap();
        let htpasswd = l.dir.join("dev.htpasswd");
        fs::write(&htpasswd, "u:$apr1$x\n").unwrap();
        let template = l.dir.join("deploy/settings.py.tera");
        build(&a, &l, &"development".parse().unwrap(), now(), KeyCommands::Run).unwrap();
        nginx_routes(&a, &l, &[]).unwrap();
        // Tests run as root: Trust::current() is RootOnly.
        let rule = "as root, relctl uses only files that only root can change";

        chown(&template, Some(65534), None).unwrap();
        let err = build(&a, &l, &"development".parse().unwrap(), now(), KeyCommands::Run).unwrap_err();
        assert!(crate::error::is_usage(&err));
        assert!(
            err.to_string().starts_with(&format!(
                "[settings] template {} is owned by nobody, not root: {rule}",
                template.display()
            )),
            "{err}"
        );
        chown(&template, Some(0), None).unwrap();

        fs::set_permissions(&secrets, std::fs::Permissions::from_mode(0o620)).unwrap();
        let err = build(&a, &l, &"development".parse().unwrap(), now(), KeyCommands::Run).unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "[builds.development] secrets {p} is writable by its group (mode 0620): {rule}; run: chmod go-w {p}",
                p = secrets.display()
            )
        );
        fs::set_permissions(&secrets, std::fs::Permissions::from_mode(0o600)).unwrap();

        chown(&htpasswd, Some(65534), None).unwrap();
        let err = nginx_routes(&a, &l, &[]).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!(
                "[builds.development] htpasswd {} is owned by nobody, not root: {rule}",
                htpasswd.display()
            )),
            "{err}"
        );
    }
}
